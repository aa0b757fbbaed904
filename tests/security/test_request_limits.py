"""Request size and rate limits, malformed bodies, and forged or replayed Idempotency-Keys on
the labeling API (a process of its own): every refusal is a 4xx with the error body, never a
5xx, and a replayed answer is never a second answer."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest

from hone_common.auth import ApiKeys, Role
from hone_common.events import Reason
from hone_common.storage import ObjectStore
from tests.security.labeling import LabelingProcess, labeling_process

MAX_BODY = 64 * 1024


@pytest.fixture(scope="module")
async def api(pool: asyncpg.Pool[Any], store: ObjectStore) -> AsyncIterator[LabelingProcess]:
    # A small bucket per key, so the rate limit is reached within a test, refilling slowly enough
    # (a token per 20 s) that a slow machine cannot refill it between two requests of one test.
    knobs = {
        "HONE_LABELING__RATE_LIMIT__REQUESTS_PER_SECOND": "0.05",
        "HONE_LABELING__RATE_LIMIT__BURST": "40",
    }
    async with labeling_process(pool, store, **knobs) as running:
        yield running


@pytest.fixture
async def http(api: LabelingProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=api.base_url, timeout=30) as client:
        yield client


@pytest.fixture
async def fresh_key(pool: asyncpg.Pool[Any]) -> AsyncIterator[Any]:
    """Keys of their own per test, so one test's requests do not drain another's bucket."""
    registry, issued = ApiKeys(pool), []

    async def issue(role: Role) -> dict[str, str]:
        principal, key = await registry.issue(f"security-limits-{uuid.uuid4().hex[:8]}", role)
        issued.append(principal.key_id)
        return {"Authorization": f"Bearer {key}"}

    yield issue
    for key_id in issued:
        await registry.revoke(key_id)


async def chunks(total: int, size: int = 8192) -> AsyncIterator[bytes]:
    """A body sent in chunks without a Content-Length."""
    sent = 0
    while sent < total:
        yield b" " * min(size, total - sent)
        sent += size


def refused(answer: httpx.Response, *statuses: int) -> str:
    assert answer.status_code in statuses, (answer.status_code, answer.text[:300])
    code: str = answer.json()["error"]["code"]
    return code


async def test_an_oversized_body_is_refused_with_413_whether_or_not_its_length_is_declared(
    http: httpx.AsyncClient, fresh_key: Any
) -> None:
    app = await fresh_key(Role.APP)
    body = b'{"image_id": "' + b"x" * (MAX_BODY + 10) + b'"}'
    declared = await http.post("/v1/feedback", content=body, headers=app)
    assert refused(declared, 413) == "request_too_large"
    try:
        streamed = await http.post(
            "/v1/feedback",
            content=chunks(MAX_BODY * 4),
            headers=app | {"Content-Type": "application/json"},
        )
        assert refused(streamed, 413) == "request_too_large"
    except (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError):
        pass  # refused and closed before the client had sent it all: also a refusal
    assert (await http.get("/v1/classes", headers=app)).status_code != 500  # still serving


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{",
        b'{"image_id": "not-a-uuid"}',
        b'{"image_id": null, "label": 7}',
        b"[" * 20000 + b"]" * 20000,
        b'{"a": ' * 5000 + b"1" + b"}" * 5000,
        b'{"image_id": "00000000-0000-0000-0000-000000000000", "comment": "\\u0000"}',
        b"\xff\xfe\x00garbage",
        b'{"image_id": "00000000-0000-0000-0000-000000000000", "label": 1e999}',
        b"NaN",
    ],
    ids=[
        "empty",
        "truncated",
        "bad-uuid",
        "wrong-types",
        "nested-arrays",
        "nested-objects",
        "nul-char",
        "not-utf8",
        "huge-number",
        "nan",
    ],
)
async def test_malformed_bodies_are_refused_with_a_4xx(
    http: httpx.AsyncClient, fresh_key: Any, body: bytes
) -> None:
    app = await fresh_key(Role.APP)
    answer = await http.post(
        "/v1/feedback", content=body, headers=app | {"Content-Type": "application/json"}
    )
    refused(answer, 400, 404, 413, 422)


async def test_a_key_over_its_rate_is_told_to_wait_and_other_keys_are_not(
    http: httpx.AsyncClient, fresh_key: Any
) -> None:
    greedy, other = await fresh_key(Role.LABELER), await fresh_key(Role.LABELER)
    statuses = [(await http.get("/v1/classes", headers=greedy)).status_code for _ in range(60)]
    assert statuses[0] == 200
    assert 429 in statuses, statuses
    limited = await http.get("/v1/classes", headers=greedy)
    assert refused(limited, 429) == "rate_limited"
    assert int(limited.headers["retry-after"]) >= 1
    assert (await http.get("/v1/classes", headers=other)).status_code == 200


async def claim_one(
    api: LabelingProcess, http: httpx.AsyncClient, who: dict[str, str]
) -> dict[str, Any]:
    image_id, _ = await api.queue_task([Reason(strategy="x", score=0.5)], None)
    claimed = (await http.post("/v1/tasks/claim", json={"count": 20}, headers=who)).json()
    tasks: list[dict[str, Any]] = [t for t in claimed["tasks"] if t["image_id"] == str(image_id)]
    assert len(tasks) == 1, claimed
    return tasks[0]


async def test_a_replayed_answer_returns_the_first_response_and_answers_once(
    api: LabelingProcess, http: httpx.AsyncClient, pool: asyncpg.Pool[Any], fresh_key: Any
) -> None:
    labeler = await fresh_key(Role.LABELER)
    task = await claim_one(api, http, labeler)
    path, key = f"/v1/tasks/{task['task_id']}/answer", {"Idempotency-Key": uuid.uuid4().hex}
    first = await http.post(path, json={"verdict": "ambiguous"}, headers=labeler | key)
    again = await http.post(path, json={"verdict": "ambiguous"}, headers=labeler | key)
    assert first.status_code == again.status_code == 200, (first.text, again.text)
    assert first.json() == again.json()
    answers = await pool.fetchval(
        f"SELECT count(*) FROM {api.schema}.answers WHERE task_id = $1",
        uuid.UUID(task["task_id"]),
    )
    assert answers == 1
    other_body = await http.post(path, json={"verdict": "skip"}, headers=labeler | key)
    assert refused(other_body, 422) == "idempotency_key_reused"


async def test_another_key_holder_replaying_an_idempotency_key_gets_nothing_of_the_first(
    api: LabelingProcess, http: httpx.AsyncClient, fresh_key: Any
) -> None:
    alice, mallory = await fresh_key(Role.LABELER), await fresh_key(Role.LABELER)
    task = await claim_one(api, http, alice)
    path, key = f"/v1/tasks/{task['task_id']}/answer", {"Idempotency-Key": uuid.uuid4().hex}
    assert (await http.post(path, json={"verdict": "ambiguous"}, headers=alice | key)).is_success
    # Same key, same request, another principal: not the stored response, and no answer.
    stolen = await http.post(path, json={"verdict": "ambiguous"}, headers=mallory | key)
    refused(stolen, 404, 409)


@pytest.mark.parametrize(
    "idempotency_key",
    ["", "x" * 256, "has space", "tab\tin", "é-unicode", "x" * 10_000],
    ids=["empty", "too-long", "space", "control", "non-ascii", "huge"],
)
async def test_forged_idempotency_keys_are_refused_with_a_4xx(
    api: LabelingProcess, http: httpx.AsyncClient, fresh_key: Any, idempotency_key: str
) -> None:
    labeler = await fresh_key(Role.LABELER)
    headers = [
        (b"authorization", labeler["Authorization"].encode()),
        (b"idempotency-key", idempotency_key.encode()),
    ]
    answer = await http.post(
        f"/v1/tasks/{uuid.uuid4()}/answer", json={"verdict": "skip"}, headers=headers
    )
    refused(answer, 400, 404, 422, 431)
