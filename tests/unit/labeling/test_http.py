"""The HTTP layer without servers: the page and its security headers, size and rate limits,
role checks. The app is driven through ASGI without its lifespan, with a fake key registry
and a fake service layer."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from hone_common.auth import Principal, Role
from hone_common.ratelimit import RateLimiter
from hone_labeling_api.app import create_app
from hone_labeling_api.routes.page import STATIC
from hone_labeling_api.schemas import ClassesOut
from hone_labeling_api.settings import LabelingSettings, Settings

KEYS = {
    "labeler-key": Principal(key_id=uuid.uuid4(), name="ann", role=Role.LABELER),
    "app-key": Principal(key_id=uuid.uuid4(), name="shop", role=Role.APP),
    "admin-key": Principal(key_id=uuid.uuid4(), name="ops", role=Role.ADMIN),
}


class FakeKeys:
    async def verify(self, key: str) -> Principal | None:
        return KEYS.get(key)


class FakeLabeling:
    async def classes(self) -> ClassesOut:
        return ClassesOut(classes=["<b>Coat</b>", "Bag"], updated_at="2026-01-01T00:00:00Z",
                          updated_by=None)  # fmt: skip


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def app() -> FastAPI:
    app = create_app(Settings(labeling=LabelingSettings(max_body_bytes=2048, undo_seconds=45)))
    app.state.api_keys = FakeKeys()
    app.state.runtime.extras["labeling"] = FakeLabeling()
    return app


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


async def test_the_page_is_served_with_a_strict_content_security_policy(
    client: httpx.AsyncClient,
) -> None:
    root = await client.get("/")
    page = await client.get("/label")

    assert root.status_code == 307
    assert root.headers["location"] == "/label"
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert "unsafe-eval" not in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["x-frame-options"] == "DENY"
    assert 'data-undo-seconds="45.0"' in page.text


async def test_the_page_has_no_inline_script_or_style_and_its_assets_are_served(
    client: httpx.AsyncClient,
) -> None:
    page = (await client.get("/label")).text
    assets = re.findall(r'(?:src|href)="(/static/[^"]+)"', page)

    assert "<script>" not in page
    assert "style=" not in page
    assert "<style" not in page
    assert len(assets) == 2
    for asset in assets:
        response = await client.get(asset)
        assert response.status_code == 200
        assert "content-security-policy" in response.headers


async def test_the_page_is_usable_with_a_keyboard_and_a_screen_reader(
    client: httpx.AsyncClient,
) -> None:
    page = (await client.get("/label")).text

    assert '<label for="api-key">' in page
    assert 'role="status" aria-live="polite"' in page
    assert 'role="alert"' in page
    for key in ("a", "s", "z"):
        assert f'aria-keyshortcuts="{key}"' in page
    assert '<html lang="en">' in page


def test_the_script_never_writes_html_from_data() -> None:
    script = (STATIC / "label.js").read_text()

    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in script, sink
    assert "textContent" in script
    assert "sessionStorage" in script
    assert "localStorage" not in script


async def test_api_answers_are_never_cached_and_docs_are_not_blocked_by_the_csp(
    client: httpx.AsyncClient,
) -> None:
    classes = await client.get("/v1/classes", headers=auth("labeler-key"))
    docs = await client.get("/docs")

    assert classes.status_code == 200
    assert classes.headers["cache-control"] == "no-store"
    assert classes.json()["classes"][0] == "<b>Coat</b>"  # data stays data: JSON, never HTML
    assert docs.status_code == 200
    assert "content-security-policy" not in docs.headers


@pytest.mark.parametrize("key", [None, "nope"])
async def test_requests_without_a_valid_key_are_401(
    client: httpx.AsyncClient, key: str | None
) -> None:
    headers = auth(key) if key else {}

    response = await client.post("/v1/tasks/claim", json={"count": 1}, headers=headers)

    assert response.status_code == 401
    assert response.json()["error"]["code"] in ("unauthenticated", "invalid_api_key")


async def test_admin_only_endpoints_refuse_labelers_and_apps(client: httpx.AsyncClient) -> None:
    for key in ("labeler-key", "app-key"):
        response = await client.put("/v1/classes", json={"classes": ["a", "b"]}, headers=auth(key))
        assert response.status_code == 403


async def test_a_declared_body_over_the_limit_is_413_without_being_read(
    client: httpx.AsyncClient,
) -> None:
    response = await client.put(
        "/v1/classes",
        content=b"x" * 4096,
        headers={**auth("admin-key"), "content-type": "application/json"},
    )

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"
    assert "content-security-policy" in response.headers


async def test_a_streamed_body_over_the_limit_is_413(client: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(8):
            yield b"x" * 512

    response = await client.put(
        "/v1/classes",
        content=chunks(),
        headers={**auth("admin-key"), "content-type": "application/json"},
    )

    assert "content-length" not in response.request.headers
    assert response.status_code == 413


async def test_a_body_within_the_limit_reaches_the_route(client: httpx.AsyncClient) -> None:
    response = await client.put(
        "/v1/classes", json={"classes": ["x" * 70, "b"]}, headers=auth("admin-key")
    )

    assert response.status_code == 422  # validated by the route: the body got through


async def test_past_its_rate_limit_a_key_gets_429_with_retry_after(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    app.state.rate_limiter = RateLimiter(rate=0.25, burst=2)

    codes = [
        (await client.get("/v1/classes", headers=auth("labeler-key"))).status_code for _ in range(3)
    ]
    limited = await client.get("/v1/classes", headers=auth("labeler-key"))
    other = await client.get("/v1/classes", headers=auth("app-key"))

    assert codes == [200, 200, 429]
    assert limited.headers["retry-after"] == "4"
    assert other.status_code == 200


def test_the_openapi_document_versions_and_describes_every_endpoint(app: FastAPI) -> None:
    document: dict[str, Any] = app.openapi()
    paths = set(document["paths"])

    assert {
        "/v1/tasks/claim",
        "/v1/tasks/{task_id}",
        "/v1/tasks/{task_id}/image",
        "/v1/tasks/{task_id}/answer",
        "/v1/answers/undo",
        "/v1/feedback",
        "/v1/classes",
        "/v1/stats",
        "/v1/stats/me",
    } <= paths
    assert "/label" not in paths
    answer = document["paths"]["/v1/tasks/{task_id}/answer"]["post"]
    assert {"401", "403", "404", "409", "422", "429"} <= set(answer["responses"])
    assert any(p["name"] == "Idempotency-Key" for p in answer["parameters"])
    assert "HTTPBearer" in document["components"]["securitySchemes"]


def test_static_files_live_beside_the_package() -> None:
    assert {p.name for p in Path(STATIC).iterdir()} == {"label.js", "label.css"}
