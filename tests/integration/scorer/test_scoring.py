"""The scorer against the real Kafka, MinIO, PostgreSQL and TorchServe."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable
from typing import Any

import asyncpg
import httpx
from pydantic import ValidationError

from hone_common.events import ImageReceived
from hone_common.kafka import DeadLetter
from hone_common.topics import Topic
from tests.integration.scorer.conftest import RunningScorer, image_received, png, scored_for


async def _prediction_rows(pool: asyncpg.Pool[Any], ids: set[uuid.UUID]) -> list[Any]:
    return list(
        await pool.fetch(
            "SELECT image_id, model_version, label, confidence, margin, entropy, probabilities "
            "FROM scorer.predictions WHERE image_id = ANY($1::uuid[])",
            list(ids),
        )
    )


def _letters_for(records: list[Any], ids: set[uuid.UUID]) -> list[DeadLetter]:
    """Dead letters of the image.received events in `ids`."""
    letters = []
    for record in records:
        try:
            letter = DeadLetter.model_validate_json(record.value)
            original = ImageReceived.model_validate_json(base64.b64decode(letter.value))
        except (ValidationError, ValueError):
            continue
        if original.event_id in ids:
            letters.append(letter)
    return letters


async def test_received_images_are_scored_once_each_with_the_version_that_answered(
    running_scorer: RunningScorer, kafka_tap: Callable[..., Any], pool: asyncpg.Pool[Any]
) -> None:
    tap = await kafka_tap(Topic.IMAGE_SCORED.value)
    events = [await running_scorer.put_image(png(seed)) for seed in range(40)]
    ids = {e.payload.image_id for e in events}

    for event in events:
        await running_scorer.publish(event)
    records = await tap.wait_for(lambda rs: len(scored_for(rs, ids)) >= len(ids), within=60)

    scored = scored_for(records, ids)
    assert sorted(str(s.payload.image_id) for s in scored) == sorted(str(i) for i in ids)
    assert {s.payload.model_version for s in scored} == {running_scorer.model.version}
    by_id = {e.payload.image_id: e for e in events}
    for s in scored:
        received = by_id[s.payload.image_id].payload
        assert (s.payload.camera_id, s.payload.metadata) == (received.camera_id, received.metadata)
        assert abs(sum(s.payload.probabilities) - 1) < 1e-4
        assert s.payload.confidence == max(s.payload.probabilities)
    rows = await _prediction_rows(pool, ids)
    assert len(rows) == len(ids)
    assert {row["model_version"] for row in rows} == {running_scorer.model.version}


async def test_an_event_delivered_twice_gives_one_prediction_and_one_image_scored(
    running_scorer: RunningScorer, kafka_tap: Callable[..., Any], pool: asyncpg.Pool[Any]
) -> None:
    tap = await kafka_tap(Topic.IMAGE_SCORED.value)
    twice = await running_scorer.put_image(png(1000))
    # Same key, so same partition: once the sentinel is scored, both copies were handled.
    sentinel = await running_scorer.put_image(png(1001))

    await running_scorer.publish(twice)
    await running_scorer.publish(twice)
    await running_scorer.publish(sentinel, key=twice.key)
    ids = {twice.payload.image_id, sentinel.payload.image_id}
    records = await tap.wait_for(
        lambda rs: sentinel.payload.image_id in {s.payload.image_id for s in scored_for(rs, ids)},
        within=60,
    )

    assert [s.payload.image_id for s in scored_for(records, {twice.payload.image_id})] == [
        twice.payload.image_id
    ]
    assert len(await _prediction_rows(pool, {twice.payload.image_id})) == 1


async def test_a_missing_object_goes_to_the_dlq_and_its_neighbours_are_scored(
    running_scorer: RunningScorer, kafka_tap: Callable[..., Any], pool: asyncpg.Pool[Any]
) -> None:
    tap = await kafka_tap(Topic.IMAGE_SCORED.value, Topic.IMAGE_RECEIVED.dlq)
    present = await running_scorer.put_image(png(2000))
    uri = f"s3://{running_scorer.settings.s3.images_bucket}/scorer-it/gone/{uuid.uuid4()}.png"
    missing = image_received(png(2001), uri)

    await running_scorer.publish(missing, key=present.key)
    await running_scorer.publish(present)

    def done(records: list[Any]) -> bool:
        dlq = [r for r in records if r.topic == Topic.IMAGE_RECEIVED.dlq]
        scored = [r for r in records if r.topic == Topic.IMAGE_SCORED.value]
        return bool(_letters_for(dlq, {missing.event_id})) and bool(
            scored_for(scored, {present.payload.image_id})
        )

    records = await tap.wait_for(done, within=60)
    (letter,) = _letters_for(
        [r for r in records if r.topic == Topic.IMAGE_RECEIVED.dlq], {missing.event_id}
    )
    assert letter.error_type == "ImageMissing"
    assert letter.consumer == "scorer"
    assert await _prediction_rows(pool, {missing.payload.image_id}) == []


async def test_an_image_torchserve_cannot_decode_goes_to_the_dlq(
    running_scorer: RunningScorer, kafka_tap: Callable[..., Any]
) -> None:
    tap = await kafka_tap(Topic.IMAGE_SCORED.value, Topic.IMAGE_RECEIVED.dlq)
    neighbours = [await running_scorer.put_image(png(3000 + i)) for i in range(3)]
    broken = await running_scorer.put_image(b"\x89PNG\r\n\x1a\n but then nothing sensible")

    for event in (neighbours[0], broken, *neighbours[1:]):
        await running_scorer.publish(event, key=b"same-partition")
    ids = {e.payload.image_id for e in neighbours}

    def done(records: list[Any]) -> bool:
        dlq = [r for r in records if r.topic == Topic.IMAGE_RECEIVED.dlq]
        scored = [r for r in records if r.topic == Topic.IMAGE_SCORED.value]
        return bool(_letters_for(dlq, {broken.event_id})) and len(scored_for(scored, ids)) == 3

    records = await tap.wait_for(done, within=60)
    (letter,) = _letters_for(
        [r for r in records if r.topic == Topic.IMAGE_RECEIVED.dlq], {broken.event_id}
    )
    assert letter.error_type == "ImageRefused"
    assert "decodable" in letter.error


async def test_readiness_includes_torchserve(running_scorer: RunningScorer) -> None:
    transport = httpx.ASGITransport(app=running_scorer.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://scorer") as http:
        response = await http.get("/readyz")
        metrics = await http.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.json()["checks"]["torchserve"] is True
    assert "hone_scorer_images_total" in metrics.text
