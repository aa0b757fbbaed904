"""The selector's admin API against the real database: authentication, empty state, lineage."""

from __future__ import annotations

import uuid

from tests.integration.selector.conftest import SelectorFactory


async def test_stats_require_an_admin_key_and_start_empty(start_selector: SelectorFactory) -> None:
    async with start_selector() as running:
        anonymous = await running.http.get("/v1/selector/stats", headers={"Authorization": ""})
        assert anonymous.status_code == 401
        assert anonymous.json()["error"]["code"] == "unauthenticated"
        wrong_key = await running.http.get(
            "/v1/selector/stats", headers={"Authorization": "Bearer hone_nope_nope"}
        )
        assert wrong_key.status_code == 401

        stats = await running.stats()
        assert stats["class_counts"] == {}
        assert stats["yields"] == []
        assert stats["open_reviews"] == 0
        assert stats["production_model"] is None
        assert stats["budget"]["strategic"]["per_hour"] == 108.0
        assert stats["budget"]["random"]["per_hour"] == 12.0


async def test_decisions_of_an_unknown_image_are_a_clear_404(
    start_selector: SelectorFactory,
) -> None:
    async with start_selector() as running:
        response = await running.http.get(f"/v1/selector/decisions/{uuid.uuid4()}")
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
        malformed = await running.http.get("/v1/selector/decisions/not-a-uuid")
        assert malformed.status_code == 422
