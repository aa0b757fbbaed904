"""Who may do what, against the real key registry: 401 without a valid key, 403 for the
wrong role, nothing of another labeler's reachable, 429 past the rate limit, 413 past the
size limit."""

from __future__ import annotations

import uuid

import pytest

from hone_common.auth import Role
from hone_common.ratelimit import RateLimiter
from tests.integration.labeling.conftest import LabelingHarness

TASK = str(uuid.uuid4())
ENDPOINTS = [
    ("POST", "/v1/tasks/claim", {"count": 1}),
    ("GET", f"/v1/tasks/{TASK}", None),
    ("GET", f"/v1/tasks/{TASK}/image", None),
    ("POST", f"/v1/tasks/{TASK}/answer", {"verdict": "skip"}),
    ("POST", "/v1/answers/undo", None),
    ("POST", "/v1/feedback", {"image_id": TASK}),
    ("GET", "/v1/classes", None),
    ("PUT", "/v1/classes", {"classes": ["a", "b"]}),
    ("GET", "/v1/stats", None),
    ("GET", "/v1/stats/me", None),
]


@pytest.mark.parametrize(("method", "path", "body"), ENDPOINTS)
async def test_every_endpoint_refuses_missing_unknown_and_revoked_keys(
    harness: LabelingHarness, method: str, path: str, body: object
) -> None:
    revoked = await harness.key(Role.ADMIN)
    assert await harness.keys.revoke(revoked.key_id)
    for headers in (
        {},
        {"Authorization": "Bearer hone_000000000000_not-a-key"},
        {"Authorization": "Basic YWRtaW46YWRtaW4="},
        revoked.headers,
    ):
        response = await harness.client.request(method, path, json=body, headers=headers)
        assert response.status_code == 401, (headers, response.text)
        assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    ("role", "method", "path", "body"),
    [
        (Role.APP, "POST", "/v1/tasks/claim", {"count": 1}),
        (Role.APP, "POST", "/v1/answers/undo", None),
        (Role.CAMERA, "GET", "/v1/classes", None),
        (Role.LABELER, "POST", "/v1/feedback", {"image_id": TASK}),
        (Role.LABELER, "PUT", "/v1/classes", {"classes": ["a", "b"]}),
        (Role.LABELER, "GET", "/v1/stats", None),
        (Role.APP, "GET", "/v1/stats/me", None),
    ],
)
async def test_a_key_of_the_wrong_role_is_403(
    harness: LabelingHarness, role: Role, method: str, path: str, body: object
) -> None:
    who = await harness.key(role)

    response = await harness.client.request(method, path, json=body, headers=who.headers)

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"


async def test_a_labeler_cannot_see_or_answer_a_task_leased_to_someone_else(
    harness: LabelingHarness,
) -> None:
    await harness.queue(1)
    ann, bob = await harness.key(Role.LABELER), await harness.key(Role.LABELER)
    (task,) = await harness.claim(ann)
    url = f"/v1/tasks/{task['task_id']}"

    seen = await harness.client.get(url, headers=bob.headers)
    image = await harness.client.get(f"{url}/image", headers=bob.headers)
    answered = await harness.answer(bob, task["task_id"], label="Coat")
    skipped = await harness.answer(bob, task["task_id"], verdict="skip")

    assert (seen.status_code, image.status_code) == (404, 404)
    assert answered.status_code == skipped.status_code == 409
    assert answered.json()["error"]["code"] == "task_not_leased"
    assert (await harness.client.get(url, headers=ann.headers)).status_code == 200
    assert (await harness.answer(ann, task["task_id"], label="Coat")).status_code == 200


async def test_undo_only_ever_takes_back_the_callers_own_answer(harness: LabelingHarness) -> None:
    await harness.queue(1)
    ann, bob = await harness.key(Role.LABELER), await harness.key(Role.LABELER)
    (task,) = await harness.claim(ann)
    await harness.answer(ann, task["task_id"], label="Coat")

    bobs_undo = await harness.client.post("/v1/answers/undo", headers=bob.headers)

    assert bobs_undo.status_code == 404
    status = await harness.pool.fetchval(
        f"SELECT status FROM {harness.schema}.tasks WHERE task_id = $1",
        uuid.UUID(task["task_id"]),
    )
    assert status == "done"


async def test_past_the_rate_limit_a_key_gets_429_with_retry_after_and_others_do_not(
    harness: LabelingHarness,
) -> None:
    ann, bob = await harness.key(Role.LABELER), await harness.key(Role.LABELER)
    original = harness.app.state.rate_limiter
    harness.app.state.rate_limiter = RateLimiter(rate=0.5, burst=3)
    try:
        codes = [
            (await harness.client.get("/v1/stats/me", headers=ann.headers)).status_code
            for _ in range(4)
        ]
        limited = await harness.client.get("/v1/stats/me", headers=ann.headers)
        other = await harness.client.get("/v1/stats/me", headers=bob.headers)
    finally:
        harness.app.state.rate_limiter = original

    assert codes == [200, 200, 200, 429]
    assert limited.status_code == 429
    assert limited.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(limited.headers["retry-after"]) <= 2
    assert other.status_code == 200


async def test_a_body_over_the_size_limit_is_413_before_anything_else(
    harness: LabelingHarness,
) -> None:
    admin = await harness.key(Role.ADMIN)
    huge = {"classes": [f"class-{i:06d}" for i in range(10_000)]}

    response = await harness.client.put("/v1/classes", json=huge, headers=admin.headers)

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"
