"""User flags against the real stack: a flag becomes a review request outside the budget
(published, then consumed back into the queue) and a `wrong` verdict on label.submitted."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from hone_common.auth import Role
from hone_common.events import ImageScored, LabelSubmitted, Quality, ReviewRequested, Scores
from hone_common.topics import Topic
from hone_labeling_api.repository import Repository
from tests.integration.labeling.conftest import CLASSES, LabelingHarness, wait_until


async def scored_image(harness: LabelingHarness, label: str = "Sneaker") -> ImageScored:
    """Publish an image.scored for a new image and wait until the API knows the image."""
    uri = await harness.put_image(f"scored-{uuid.uuid4()}")
    probabilities = [0.05] * len(CLASSES)
    probabilities[CLASSES.index(label)] = 0.55
    event = ImageScored(
        producer="labeling-it",
        payload=Scores(
            image_id=uuid.uuid4(),
            uri=uri,
            model_version="it-v2",
            classes=CLASSES,
            label=label,
            probabilities=probabilities,
            confidence=0.55,
            margin=0.5,
            entropy=0.4,
            camera_id="cam-flag",
            captured_at=datetime.now(UTC),
            object_id="obj-7",
            quality=Quality(brightness=0.5, contrast=0.2, sharpness=10.0),
        ),
    )
    harness.mine.add(event.payload.image_id)
    await harness.publish(event)

    async def known() -> bool:
        return bool(
            await harness.pool.fetchval(
                f"SELECT true FROM {harness.schema}.images WHERE image_id = $1",
                event.payload.image_id,
            )
        )

    await wait_until(known, what="the scored image to be recorded")
    return event


async def test_a_flag_requests_a_review_outside_the_budget_and_publishes_a_wrong_verdict(
    harness: LabelingHarness, kafka_tap: Any
) -> None:
    tap = await kafka_tap(Topic.REVIEW_REQUESTED.value, Topic.LABEL_SUBMITTED.value)
    scored = await scored_image(harness, label="Sneaker")
    image_id = scored.payload.image_id
    app = await harness.key(Role.APP, name="shop-app")

    response = await harness.client.post(
        "/v1/feedback",
        json={"image_id": str(image_id), "label": "Sandal", "comment": "it's a sandal"},
        headers=app.headers,
    )

    assert response.status_code == 202, response.text
    key = str(image_id).encode()

    def mine(records: list[Any]) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for record in records:
            if record.key != key:
                continue
            if record.topic == Topic.REVIEW_REQUESTED.value:
                found["review"] = ReviewRequested.model_validate_json(record.value)
            else:
                found["label"] = LabelSubmitted.model_validate_json(record.value)
        return found

    await tap.wait_for(lambda rs: len(mine(rs)) == 2)
    found = mine(tap.records)
    review, label = found["review"].payload, found["label"].payload
    assert review.outside_budget is True
    assert [(r.strategy, r.score) for r in review.reasons] == [("user_flag", 1.0)]
    assert review.uri == scored.payload.uri
    assert review.prediction is not None
    assert review.prediction.label == "Sneaker"
    assert (review.model_version, review.camera_id, review.object_id) == (
        "it-v2",
        "cam-flag",
        "obj-7",
    )
    assert (label.verdict, label.label, label.labeler_id, label.source) == (
        "wrong",
        "Sandal",
        "shop-app",
        "human",
    )
    assert label.predicted_label == "Sneaker"

    # The API consumes its own request: the image is queued first, ahead of the budgeted ones.
    await harness.queue(1, priorities=[0.99])
    await harness.wait_for_tasks([image_id])
    ann = await harness.key(Role.LABELER)
    (task, _) = await harness.claim(ann, count=2)
    assert task["image_id"] == str(image_id)
    assert task["outside_budget"] is True
    assert task["reasons"][0]["strategy"] == "user_flag"


async def test_a_flag_without_the_right_class_is_accepted(harness: LabelingHarness) -> None:
    scored = await scored_image(harness)
    app = await harness.key(Role.APP)

    response = await harness.client.post(
        "/v1/feedback", json={"image_id": str(scored.payload.image_id)}, headers=app.headers
    )

    assert response.status_code == 202
    assert response.json()["label"] is None


async def test_flags_that_cannot_be_taken_are_refused_and_leave_nothing_behind(
    harness: LabelingHarness,
) -> None:
    scored = await scored_image(harness, label="Sneaker")
    image_id = str(scored.payload.image_id)
    app, ann = await harness.key(Role.APP), await harness.key(Role.LABELER)

    unknown_image = await harness.client.post(
        "/v1/feedback", json={"image_id": str(uuid.uuid4())}, headers=app.headers
    )
    unknown_class = await harness.client.post(
        "/v1/feedback", json={"image_id": image_id, "label": "Hat"}, headers=app.headers
    )
    same_as_model = await harness.client.post(
        "/v1/feedback", json={"image_id": image_id, "label": "Sneaker"}, headers=app.headers
    )
    from_a_labeler = await harness.client.post(
        "/v1/feedback", json={"image_id": image_id}, headers=ann.headers
    )

    assert (unknown_image.status_code, unknown_image.json()["error"]["code"]) == (
        404,
        "unknown_image",
    )
    assert (unknown_class.status_code, unknown_class.json()["error"]["code"]) == (
        422,
        "unknown_class",
    )
    assert same_as_model.json()["error"]["code"] == "label_is_the_prediction"
    assert from_a_labeler.status_code == 403
    flags = await harness.pool.fetchval(
        f"SELECT count(*) FROM {harness.schema}.flags WHERE image_id = $1",
        scored.payload.image_id,
    )
    assert flags == 0


async def test_a_retried_flag_with_the_same_key_is_recorded_once(harness: LabelingHarness) -> None:
    scored = await scored_image(harness)
    app = await harness.key(Role.APP)
    headers = {**app.headers, "Idempotency-Key": "flag-1"}
    body = {"image_id": str(scored.payload.image_id)}

    first = await harness.client.post("/v1/feedback", json=body, headers=headers)
    second = await harness.client.post("/v1/feedback", json=body, headers=headers)

    assert first.json() == second.json()
    events = await harness.pool.fetchval(
        f"SELECT count(*) FROM {harness.schema}.outbox WHERE key = $1",
        str(scored.payload.image_id).encode(),
    )
    assert events == 2  # one review.requested and one label.submitted, not four


async def test_an_older_score_never_replaces_a_newer_one(harness: LabelingHarness) -> None:
    newer = await scored_image(harness, label="Bag")
    stale = newer.payload.model_copy(update={"model_version": "it-v0", "label": "Coat"})
    repository = Repository(harness.schema)

    async with harness.pool.acquire() as conn:
        await repository.upsert_images(conn, [(stale, datetime(2020, 1, 1, tzinfo=UTC))])
        row = await repository.image(conn, newer.payload.image_id)

    assert row is not None
    assert (row["model_version"], row["prediction"]["label"]) == ("it-v2", "Bag")
