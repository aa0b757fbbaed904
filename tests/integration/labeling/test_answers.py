"""Answers against the real stack: label.submitted through the outbox, idempotency, undo,
consensus."""

from __future__ import annotations

import uuid
from typing import Any

from hone_common.auth import Role
from hone_common.events import LabelSubmitted
from hone_common.topics import Topic
from tests.integration.labeling.conftest import LabelingHarness, wait_until


async def published_labels(
    harness: LabelingHarness, tap: Any, image_id: uuid.UUID
) -> list[LabelSubmitted]:
    """Every label.submitted the service produced for the image, once each is on Kafka.

    The outbox is the service's only way to publish, so its rows are the exact list of what
    was produced; waiting until all of them are published and read back from Kafka, then
    counting what Kafka holds for the image, shows nothing was published twice."""
    key = str(image_id).encode()

    async def outbox_drained() -> list[uuid.UUID] | None:
        rows = await harness.pool.fetch(
            f"SELECT event_id, published_at FROM {harness.schema}.outbox "
            "WHERE key = $1 AND topic = $2 ORDER BY id",
            key,
            Topic.LABEL_SUBMITTED.value,
        )
        if rows and all(r["published_at"] is not None for r in rows):
            return [r["event_id"] for r in rows]
        return None

    produced = await wait_until(outbox_drained, what="the outbox to publish")

    def on_kafka(records: list[Any]) -> list[LabelSubmitted]:
        return [LabelSubmitted.model_validate_json(r.value) for r in records if r.key == key]

    await tap.wait_for(lambda rs: {e.event_id for e in on_kafka(rs)} >= set(produced))
    events = on_kafka(tap.records)
    assert [e.event_id for e in events] == produced
    return events


async def test_an_answer_publishes_one_label_submitted_with_its_lineage(
    harness: LabelingHarness, kafka_tap: Any
) -> None:
    tap = await kafka_tap(Topic.LABEL_SUBMITTED.value)
    (image_id,) = await harness.queue(1)
    ann = await harness.key(Role.LABELER, name="ann.lee@example")
    (task,) = await harness.claim(ann)

    response = await harness.answer(ann, task["task_id"], label="Coat")

    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["task_status"] == "done"
    assert answer["published"] is True
    (event,) = await published_labels(harness, tap, image_id)
    label = event.payload
    assert (label.verdict, label.label, label.source) == ("label", "Coat", "human")
    assert label.labeler_id == "ann.lee@example"
    assert str(label.task_id) == task["task_id"]
    assert label.model_version == "it-v1"
    assert label.predicted_label == "Shirt"
    assert [(r.strategy, r.detail) for r in label.reasons] == [("uncertainty", "margin 0.05")]
    assert event.correlation_id == image_id


async def test_ambiguous_is_published_without_a_label_and_skip_publishes_nothing(
    harness: LabelingHarness, kafka_tap: Any
) -> None:
    tap = await kafka_tap(Topic.LABEL_SUBMITTED.value)
    skipped, unclear = await harness.queue(2)
    ann, bob = await harness.key(Role.LABELER), await harness.key(Role.LABELER)
    first, second = await harness.claim(ann, count=2)

    skip = await harness.answer(ann, first["task_id"], verdict="skip")
    ambiguous = await harness.answer(ann, second["task_id"], verdict="ambiguous")

    assert skip.status_code == 200
    assert (skip.json()["task_status"], skip.json()["published"]) == ("open", False)
    assert ambiguous.json()["task_status"] == "ambiguous"
    (event,) = await published_labels(harness, tap, unclear)
    assert (event.payload.verdict, event.payload.label) == ("ambiguous", None)
    # The skipped task is back in the queue, for someone else: not for the one who skipped.
    assert await harness.claim(ann) == []
    (again,) = await harness.claim(bob)
    assert again["task_id"] == first["task_id"]
    outbox = await harness.pool.fetchval(
        f"SELECT count(*) FROM {harness.schema}.outbox WHERE key = $1",
        str(skipped).encode(),
    )
    assert outbox == 0


async def test_a_retried_answer_with_the_same_key_is_answered_once(
    harness: LabelingHarness, kafka_tap: Any
) -> None:
    tap = await kafka_tap(Topic.LABEL_SUBMITTED.value)
    (image_id,) = await harness.queue(1)
    ann = await harness.key(Role.LABELER)
    (task,) = await harness.claim(ann)

    first = await harness.answer(ann, task["task_id"], label="Dress", key="k-1")
    retry = await harness.answer(ann, task["task_id"], label="Dress", key="k-1")

    assert first.status_code == retry.status_code == 200
    assert retry.json() == first.json()
    assert (first.headers["idempotent-replayed"], retry.headers["idempotent-replayed"]) == (
        "false",
        "true",
    )
    assert len(await published_labels(harness, tap, image_id)) == 1
    stored = await harness.pool.fetchval(
        f"SELECT count(*) FROM {harness.schema}.answers WHERE task_id = $1",
        uuid.UUID(task["task_id"]),
    )
    assert stored == 1


async def test_reusing_an_idempotency_key_for_another_answer_is_422(
    harness: LabelingHarness,
) -> None:
    await harness.queue(2)
    ann = await harness.key(Role.LABELER)
    first, second = await harness.claim(ann, count=2)
    assert (await harness.answer(ann, first["task_id"], label="Dress", key="k-2")).is_success

    other_body = await harness.answer(ann, first["task_id"], label="Coat", key="k-2")
    other_task = await harness.answer(ann, second["task_id"], label="Dress", key="k-2")

    for response in (other_body, other_task):
        assert response.status_code == 422
        assert response.json()["error"]["code"] == "idempotency_key_reused"
    # The refused request changed nothing: the second task is still open and answerable.
    assert (await harness.answer(ann, second["task_id"], label="Dress")).status_code == 200


async def test_the_same_idempotency_key_of_two_labelers_does_not_collide(
    harness: LabelingHarness,
) -> None:
    await harness.queue(2)
    ann, bob = await harness.key(Role.LABELER), await harness.key(Role.LABELER)
    (a,), (b,) = await harness.claim(ann), await harness.claim(bob)

    assert (await harness.answer(ann, a["task_id"], key="shared")).json()["task_id"] == a["task_id"]
    assert (await harness.answer(bob, b["task_id"], key="shared")).json()["task_id"] == b["task_id"]


async def test_answers_are_refused_for_unknown_classes_and_settled_tasks(
    harness: LabelingHarness,
) -> None:
    await harness.queue(1)
    ann = await harness.key(Role.LABELER)
    (task,) = await harness.claim(ann)

    unknown = await harness.answer(ann, task["task_id"], label="Spaceship")
    mixed = await harness.client.post(
        f"/v1/tasks/{task['task_id']}/answer",
        json={"verdict": "ambiguous", "label": "Coat"},
        headers=ann.headers,
    )
    missing = await harness.answer(ann, str(uuid.uuid4()), label="Coat")
    ok = await harness.answer(ann, task["task_id"], label="Coat")
    again = await harness.answer(ann, task["task_id"], label="Coat")

    assert (unknown.status_code, unknown.json()["error"]["code"]) == (422, "unknown_class")
    assert mixed.status_code == 422
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "task_not_found")
    assert ok.status_code == 200
    assert (again.status_code, again.json()["error"]["code"]) == (409, "task_closed")


async def test_undo_reopens_the_task_for_the_labeler_and_the_next_answer_supersedes(
    harness: LabelingHarness, kafka_tap: Any
) -> None:
    tap = await kafka_tap(Topic.LABEL_SUBMITTED.value)
    (image_id,) = await harness.queue(1)
    ann = await harness.key(Role.LABELER)
    (task,) = await harness.claim(ann)
    assert (await harness.answer(ann, task["task_id"], label="Coat")).is_success

    undo = await harness.client.post("/v1/answers/undo", headers=ann.headers)

    assert undo.status_code == 200, undo.text
    body = undo.json()
    assert (body["undone"]["label"], body["undone"]["published"]) == ("Coat", True)
    assert body["task"]["task_id"] == task["task_id"]
    assert (await harness.claim(ann))[0]["task_id"] == task["task_id"]  # leased to ann again
    assert (await harness.answer(ann, task["task_id"], label="Pullover")).is_success
    first, second = await published_labels(harness, tap, image_id)
    assert (first.payload.label, second.payload.label) == ("Coat", "Pullover")
    assert first.payload.task_id == second.payload.task_id
    assert second.occurred_at > first.occurred_at  # consumers keep the latest answer
    rows = await harness.pool.fetch(
        f"SELECT label, undone_at IS NOT NULL AS undone FROM {harness.schema}.answers "
        "WHERE task_id = $1 ORDER BY created_at",
        uuid.UUID(task["task_id"]),
    )
    assert [(r["label"], r["undone"]) for r in rows] == [("Coat", True), ("Pullover", False)]


async def test_undo_takes_back_answers_newest_first_and_only_within_the_window(
    harness: LabelingHarness,
) -> None:
    await harness.queue(2)
    ann = await harness.key(Role.LABELER)
    first, second = await harness.claim(ann, count=2)
    nothing = await harness.client.post("/v1/answers/undo", headers=ann.headers)
    await harness.answer(ann, first["task_id"], label="Coat")
    await harness.answer(ann, second["task_id"], verdict="skip")

    undo_skip = await harness.client.post("/v1/answers/undo", headers=ann.headers)
    harness.configure(undo_seconds=0)
    too_late = await harness.client.post("/v1/answers/undo", headers=ann.headers)

    assert (nothing.status_code, nothing.json()["error"]["code"]) == (404, "nothing_to_undo")
    assert undo_skip.json()["undone"]["verdict"] == "skip"
    assert undo_skip.json()["task"]["task_id"] == second["task_id"]
    assert (too_late.status_code, too_late.json()["error"]["code"]) == (409, "undo_window_passed")
    status = await harness.pool.fetchval(
        f"SELECT status FROM {harness.schema}.tasks WHERE task_id = $1",
        uuid.UUID(first["task_id"]),
    )
    assert status == "done"


async def test_undo_is_refused_when_another_labeler_holds_the_task_now(
    harness: LabelingHarness,
) -> None:
    await harness.queue(1)
    ann, bob = await harness.key(Role.LABELER), await harness.key(Role.LABELER)
    (task,) = await harness.claim(ann)
    await harness.answer(ann, task["task_id"], verdict="skip")
    assert (await harness.claim(bob))[0]["task_id"] == task["task_id"]

    undo = await harness.client.post("/v1/answers/undo", headers=ann.headers)

    assert (undo.status_code, undo.json()["error"]["code"]) == (409, "task_taken")


async def test_a_retried_undo_with_the_same_key_undoes_only_one_answer(
    harness: LabelingHarness,
) -> None:
    await harness.queue(2)
    ann = await harness.key(Role.LABELER)
    first, second = await harness.claim(ann, count=2)
    await harness.answer(ann, first["task_id"], label="Coat")
    await harness.answer(ann, second["task_id"], label="Bag")
    headers = {**ann.headers, "Idempotency-Key": "undo-1"}

    once = await harness.client.post("/v1/answers/undo", headers=headers)
    twice = await harness.client.post("/v1/answers/undo", headers=headers)

    assert once.json()["undone"] == twice.json()["undone"]
    assert twice.headers["idempotent-replayed"] == "true"
    undone = await harness.pool.fetchval(
        f"SELECT count(*) FROM {harness.schema}.answers "
        "WHERE labeler_key = $1 AND undone_at IS NOT NULL",
        ann.key_id,
    )
    assert undone == 1


async def test_with_consensus_a_label_is_published_once_two_labelers_agree(
    harness: LabelingHarness, kafka_tap: Any
) -> None:
    tap = await kafka_tap(Topic.LABEL_SUBMITTED.value)
    harness.configure(consensus=2, max_extra_answers=1)
    (image_id,) = await harness.queue(1)
    ann, bob = await harness.key(Role.LABELER), await harness.key(Role.LABELER)

    (task,) = await harness.claim(ann)
    first = await harness.answer(ann, task["task_id"], label="Bag")
    assert await harness.claim(ann) == []  # one answer per labeler and task
    (same,) = await harness.claim(bob)
    second = await harness.answer(bob, same["task_id"], label="Bag")

    assert (first.json()["task_status"], first.json()["published"]) == ("open", False)
    assert (second.json()["task_status"], second.json()["published"]) == ("done", True)
    (event,) = await published_labels(harness, tap, image_id)
    assert (event.payload.label, event.payload.labeler_id) == ("Bag", bob.name)


async def test_with_consensus_disagreement_is_requeued_then_closed_as_ambiguous(
    harness: LabelingHarness, kafka_tap: Any
) -> None:
    tap = await kafka_tap(Topic.LABEL_SUBMITTED.value)
    harness.configure(consensus=2, max_extra_answers=1)
    (image_id,) = await harness.queue(1)
    people = [await harness.key(Role.LABELER) for _ in range(3)]

    statuses = []
    for who, label in zip(people, ["Bag", "Coat", "Dress"], strict=True):
        (task,) = await harness.claim(who)
        statuses.append((await harness.answer(who, task["task_id"], label=label)).json())

    assert [s["task_status"] for s in statuses] == ["open", "open", "ambiguous"]
    (event,) = await published_labels(harness, tap, image_id)
    assert (event.payload.verdict, event.payload.label) == ("ambiguous", None)
    stats = await harness.client.get("/v1/stats", headers=(await harness.key(Role.ADMIN)).headers)
    assert stats.json()["agreement_rate"] is not None
