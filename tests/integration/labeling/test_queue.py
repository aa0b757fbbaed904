"""The review queue against the real stack: review.requested in, tasks out with leases."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx

from hone_common.auth import Role
from hone_common.events import ReviewRequested, encode
from hone_common.kafka import DeadLetter
from hone_common.storage import ObjectRef
from hone_common.topics import Topic
from tests.integration.labeling.conftest import LabelingHarness, wait_until


async def test_tasks_are_claimed_in_priority_order_with_the_guess_and_the_reasons(
    harness: LabelingHarness,
) -> None:
    _low, high, middle = await harness.queue(3, priorities=[0.2, 0.9, 0.5])
    ann = await harness.key(Role.LABELER)

    tasks = await harness.claim(ann, count=2)

    assert [uuid.UUID(t["image_id"]) for t in tasks] == [high, middle]
    first = tasks[0]
    assert first["prediction"]["label"] == "Shirt"
    assert [c["label"] for c in first["prediction"]["top_k"]] == ["Shirt", "T-shirt/top", "Trouser"]
    assert first["reasons"] == [{"strategy": "uncertainty", "score": 0.8, "detail": "margin 0.05"}]
    assert first["model_version"] == "it-v1"
    assert first["image"]["url"] == f"/v1/tasks/{first['task_id']}/image"
    assert datetime.fromisoformat(first["lease_expires_at"]) > datetime.now(UTC)


async def test_a_leased_task_is_not_handed_to_another_labeler(harness: LabelingHarness) -> None:
    first, second = await harness.queue(2)
    ann, bob = await harness.key(Role.LABELER), await harness.key(Role.LABELER)

    ann_tasks = await harness.claim(ann, count=1)
    bob_tasks = await harness.claim(bob, count=5)

    assert [uuid.UUID(t["image_id"]) for t in ann_tasks] == [first]
    assert [uuid.UUID(t["image_id"]) for t in bob_tasks] == [second]
    assert await harness.claim(await harness.key(Role.LABELER), count=3) == []


async def test_claiming_again_returns_the_tasks_already_held_with_renewed_leases(
    harness: LabelingHarness,
) -> None:
    await harness.queue(3)
    ann = await harness.key(Role.LABELER)

    before = await harness.claim(ann, count=2)
    again = await harness.claim(ann, count=2)
    more = await harness.claim(ann, count=3)

    assert [t["task_id"] for t in again] == [t["task_id"] for t in before]
    assert again[0]["lease_expires_at"] > before[0]["lease_expires_at"]
    assert [t["task_id"] for t in more][:2] == [t["task_id"] for t in before]
    assert len(more) == 3


async def test_claims_are_capped_by_max_claim(harness: LabelingHarness) -> None:
    await harness.queue(3)
    harness.configure(max_claim=2)
    ann = await harness.key(Role.LABELER)

    assert len(await harness.claim(ann, count=3)) == 2


async def test_expired_leases_return_to_the_queue(harness: LabelingHarness) -> None:
    (_image_id,) = await harness.queue(1)
    harness.configure(lease_seconds=0.5)
    ann, bob = await harness.key(Role.LABELER), await harness.key(Role.LABELER)
    (task,) = await harness.claim(ann)
    assert await harness.claim(bob) == []

    async def bob_gets_it() -> list[dict[str, Any]]:
        return await harness.claim(bob)

    (again,) = await wait_until(bob_gets_it, within=10, what="the lease to expire")

    assert again["task_id"] == task["task_id"]
    late = await harness.answer(ann, task["task_id"], label="Coat")
    assert late.status_code == 409
    assert late.json()["error"]["code"] == "task_not_leased"
    assert (await harness.answer(bob, task["task_id"], label="Coat")).status_code == 200


async def test_the_image_is_streamed_and_the_presigned_url_serves_the_same_object(
    harness: LabelingHarness,
) -> None:
    await harness.queue(1)
    ann = await harness.key(Role.LABELER)
    (task,) = await harness.claim(ann)
    stored_uri = await harness.pool.fetchval(
        f"SELECT uri FROM {harness.schema}.tasks WHERE task_id = $1",
        uuid.UUID(task["task_id"]),
    )
    _, _, key = stored_uri.removeprefix("s3://").partition("/")
    original = await harness.store.get(ObjectRef(harness.settings.s3.images_bucket, key))

    streamed = await harness.client.get(task["image"]["url"], headers=ann.headers)
    async with httpx.AsyncClient() as direct:
        presigned = await direct.get(task["image"]["presigned_url"])

    assert streamed.status_code == 200
    assert streamed.headers["content-type"] == "image/png"
    assert streamed.content == original
    assert presigned.status_code == 200
    assert presigned.content == original


async def test_a_missing_image_is_a_404_not_a_crash(harness: LabelingHarness) -> None:
    uri = f"s3://{harness.settings.s3.images_bucket}/labeling-it/missing/{uuid.uuid4()}.png"
    event = harness.review(uri, priority=0.99)
    await harness.publish(event)
    await harness.wait_for_tasks([event.payload.image_id])
    ann = await harness.key(Role.LABELER)
    (task,) = await harness.claim(ann)

    response = await harness.client.get(task["image"]["url"], headers=ann.headers)

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "image_missing"


async def test_repeated_requests_for_one_image_merge_into_one_open_task(
    harness: LabelingHarness,
) -> None:
    uri = await harness.put_image("merge")
    image_id = uuid.uuid4()
    first = harness.review(uri, image_id=image_id, priority=0.3, strategy="uncertainty")
    second = harness.review(
        uri, image_id=image_id, priority=0.7, strategy="random_control", detail="2% sample"
    )
    await harness.publish(first, first, second)  # the first one delivered twice

    async def merged() -> Any:
        return await harness.pool.fetchrow(
            f"SELECT count(*) AS n, max(priority) AS priority, max(requests) AS requests, "
            f"jsonb_agg(reasons) AS reasons FROM {harness.schema}.tasks "
            "WHERE image_id = $1 HAVING max(requests) >= 2",
            image_id,
        )

    row = await wait_until(merged, what="the second request to merge")
    assert row["n"] == 1
    assert row["priority"] == 0.7
    assert row["requests"] == 2  # the duplicate delivery changed nothing
    strategies = [r["strategy"] for r in row["reasons"][0]]
    assert sorted(strategies) == ["random_control", "uncertainty"]


async def test_a_request_that_can_never_be_queued_goes_to_the_dlq_and_the_rest_is_queued(
    harness: LabelingHarness, kafka_tap: Any
) -> None:
    tap = await kafka_tap(Topic.REVIEW_REQUESTED.dlq)
    bad = harness.review(f"s3://{harness.settings.s3.images_bucket}/../escape.png")
    good = harness.review(await harness.put_image("after-bad"))
    await harness.publish(bad, good)
    await harness.publish_raw(Topic.REVIEW_REQUESTED.value, b'{"not": "an event"}')

    def letters(records: list[Any]) -> list[DeadLetter]:
        found = [DeadLetter.model_validate_json(r.value) for r in records]
        return [d for d in found if d.key == base64.b64encode(bad.key).decode()]

    await tap.wait_for(lambda rs: bool(letters(rs)))
    await harness.wait_for_tasks([good.payload.image_id])
    (letter,) = letters(tap.records)
    assert letter.error_type == "PermanentError"
    assert "malformed object URI" in letter.error
    original = ReviewRequested.model_validate_json(base64.b64decode(letter.value))
    assert encode(original) == encode(bad)
    queued = await harness.pool.fetchval(
        f"SELECT count(*) FROM {harness.schema}.tasks WHERE image_id = $1",
        bad.payload.image_id,
    )
    assert queued == 0
