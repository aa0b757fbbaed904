"""camera.frames through FastStream's in-memory broker: good frames are stored, bad ones go to
camera.frames.dlq with their reason, and one bad frame does not hold back its batch."""

from __future__ import annotations

import base64
import hashlib
import json

from faststream.kafka import KafkaBroker, TestKafkaBroker

from hone_common.events import FrameCaptured, encode
from hone_common.kafka import DeadLetter
from hone_common.topics import Topic
from hone_ingest import handlers
from hone_ingest.settings import IngestSettings
from tests.unit.ingest import corpus
from tests.unit.ingest.fakes import FakeCatalog, frame_event, make_ingestor


def wire() -> tuple[KafkaBroker, FakeCatalog, list[DeadLetter]]:
    broker = KafkaBroker()
    ingestor, catalog, _ = make_ingestor()
    handlers.register(broker, "ingest", IngestSettings(), lambda: ingestor)
    letters: list[DeadLetter] = []

    @broker.subscriber(Topic.CAMERA_FRAMES.dlq)
    async def on_dlq(letter: DeadLetter) -> None:
        letters.append(letter)

    return broker, catalog, letters


async def test_good_frames_are_stored_and_bad_ones_dead_lettered_with_their_reason() -> None:
    broker, catalog, letters = wire()
    good = [frame_event(corpus.png()), frame_event(corpus.jpeg())]
    corrupt = frame_event(corpus.png(64, 64)[:150])
    unsupported = frame_event(corpus.encode(corpus.pixels(), "BMP"))
    outside = frame_event(uri="s3://somebody-elses/bucket.png")

    async with TestKafkaBroker(broker) as br:
        await br.publish_batch(
            encode(good[0]),
            encode(corrupt),
            encode(unsupported),
            encode(outside),
            encode(good[1]),
            topic=Topic.CAMERA_FRAMES.value,
        )

    stored = {hashlib.sha256(e.payload.image or b"").hexdigest() for e in good}
    assert set(catalog.images) == stored
    assert len(catalog.announced) == 2
    reasons = {
        FrameCaptured.model_validate_json(base64.b64decode(letter.value)).event_id: letter.error
        for letter in letters
    }
    assert reasons.keys() == {corrupt.event_id, unsupported.event_id, outside.event_id}
    assert reasons[corrupt.event_id].startswith("corrupt: ")
    assert reasons[unsupported.event_id].startswith("unsupported_format: ")
    assert reasons[outside.event_id].startswith("invalid_uri: ")
    assert {letter.error_type for letter in letters} == {"PermanentError"}


async def test_frames_breaking_the_contract_are_dead_lettered_by_the_subscription() -> None:
    broker, catalog, letters = wire()
    good = frame_event(corpus.png())
    document = frame_event(corpus.png()).model_dump(mode="json")
    document["payload"]["image"] = base64.b64encode(b"\x89PNG" + b"\x00" * 1024 * 1024).decode()
    oversized = json.dumps(document).encode()

    async with TestKafkaBroker(broker) as br:
        await br.publish_batch(
            b"\xff not json", oversized, encode(good), topic=Topic.CAMERA_FRAMES.value
        )

    assert len(catalog.announced) == 1
    assert [letter.error_type for letter in letters] == ["ValidationError", "ValidationError"]
    assert "payload.image" in letters[1].error


async def test_the_same_frame_delivered_twice_is_announced_once() -> None:
    broker, catalog, letters = wire()
    event = frame_event(corpus.webp())

    async with TestKafkaBroker(broker) as br:
        await br.publish_batch(encode(event), encode(event), topic=Topic.CAMERA_FRAMES.value)
        await br.publish(encode(event), Topic.CAMERA_FRAMES.value)

    assert len(catalog.announced) == 1
    assert letters == []
