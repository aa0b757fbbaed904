"""camera.frames through the real Kafka, MinIO and PostgreSQL: good frames are stored once and
announced once as image.received; bad ones land in camera.frames.dlq with their reason, and the
frames behind them keep flowing."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import asyncpg

from hone_common.events import Frame, FrameCaptured, ImageReceived, encode, image_id_for
from hone_common.kafka import DeadLetter
from hone_common.storage import ObjectRef, ObjectStore
from hone_common.topics import Topic
from tests.integration.ingest.conftest import RunningIngest
from tests.unit.ingest import corpus


def frame(
    camera: str, data: bytes | None = None, uri: str | None = None, **extra: Any
) -> FrameCaptured:
    return FrameCaptured(
        producer=camera,
        payload=Frame(
            camera_id=camera,
            captured_at=datetime.now(UTC),
            image=data,
            uri=uri,
            metadata={"test": "ingest-it", **extra},
        ),
    )


def announced(records: list[Any], image_ids: set[str]) -> list[ImageReceived]:
    return [
        event
        for event in (ImageReceived.model_validate_json(r.value) for r in records)
        if str(event.payload.image_id) in image_ids
    ]


def letters_for(records: list[Any], event_ids: set[str]) -> dict[str, DeadLetter]:
    found = {}
    for record in records:
        letter = DeadLetter.model_validate_json(record.value)
        original = base64.b64decode(letter.value)
        for event_id in event_ids:
            if event_id.encode() in original:
                found[event_id] = letter
    return found


async def test_good_frames_are_stored_and_announced_once_and_bad_ones_dead_lettered(
    running_ingest: RunningIngest,
    kafka_tap: Any,
    pool: asyncpg.Pool[Any],
    store: ObjectStore,
    unique: str,
) -> None:
    settings = running_ingest.settings
    bucket = settings.s3.images_bucket
    camera = f"cam-it-{unique}"  # one key: every frame below shares one partition, in order
    staged = corpus.png(32, 32)
    staged_ref = ObjectRef(bucket, f"uploads/ingest-it/{unique}.png")
    await store.put(staged_ref, staged, "image/png")

    repeated = corpus.png()
    good = [
        frame(camera, repeated),
        frame(camera, corpus.jpeg(40, 30)),
        frame(camera, corpus.webp()),
        frame(camera, uri=staged_ref.uri),
    ]
    same_bytes_again = frame(camera, repeated, note="same bytes, another event")
    bad = {
        "corrupt": frame(camera, corpus.png(64, 64)[:200]),
        "unsupported_format": frame(camera, corpus.encode(corpus.pixels(), "GIF")),
        "invalid_uri": frame(camera, uri=f"s3://not-{bucket}/x.png"),
        "not_found": frame(camera, uri=f"s3://{bucket}/uploads/ingest-it/missing-{unique}.png"),
    }
    oversized = json.loads(encode(frame(camera, corpus.png())))
    oversized["payload"]["image"] = base64.b64encode(b"\x89PNG" + b"\0" * (1 << 20)).decode()
    sentinel = frame(camera, corpus.png(), note="published last")

    received = await kafka_tap(Topic.IMAGE_RECEIVED.value)
    dlq = await kafka_tap(Topic.CAMERA_FRAMES.dlq)
    await running_ingest.publish(good[0])
    for event in bad.values():
        await running_ingest.publish(event)
    await running_ingest.publish_raw(b"\xff" + unique.encode(), camera.encode())
    await running_ingest.publish_raw(json.dumps(oversized).encode(), camera.encode())
    for event in [*good[1:], same_bytes_again, good[0]]:  # good[0] again: a redelivery
        await running_ingest.publish(event)
    await running_ingest.publish(sentinel)

    digests = [hashlib.sha256(e.payload.image or staged).hexdigest() for e in [*good, sentinel]]
    ids = {str(image_id_for(d)) for d in digests}
    # The sentinel is the last frame of the partition and the outbox publishes in commit
    # order: once it is announced, any second announcement of an earlier frame would be too.
    records = await received.wait_for(lambda rs: len(announced(rs, ids)) == len(ids), within=60)
    events = announced(records, ids)
    assert sorted(str(e.payload.image_id) for e in events) == sorted(ids)

    by_id = {str(e.payload.image_id): e.payload for e in events}
    for digest, event in zip(digests, [*good, sentinel], strict=True):
        payload = by_id[str(image_id_for(digest))]
        assert payload.sha256 == digest
        assert payload.camera_id == camera
        assert payload.metadata == event.payload.metadata
        ref = ObjectRef.parse(payload.uri)
        assert ref.bucket == bucket
        assert ref.key.startswith(f"images/{digest[:2]}/{digest}.")
        stored = await store.get(ref)
        assert hashlib.sha256(stored).hexdigest() == digest
        assert payload.image == stored  # small images travel inline too (default 8 KiB)
    assert by_id[str(image_id_for(digests[1]))].format == "JPEG"
    assert (
        by_id[str(image_id_for(digests[1]))].width,
        by_id[str(image_id_for(digests[1]))].height,
    ) == (40, 30)

    rows = await pool.fetch(
        "SELECT sha256, source, camera_id, size_bytes, brightness, frame_event_id "
        "FROM ingest.images WHERE sha256 = ANY($1::text[])",
        digests,
    )
    assert sorted(r["sha256"] for r in rows) == sorted(digests)
    assert {r["source"] for r in rows} == {"kafka"}
    assert {r["frame_event_id"] for r in rows if r["sha256"] == digests[0]} == {good[0].event_id}

    wanted = {str(e.event_id) for e in bad.values()}
    letters = letters_for(
        (await dlq.wait_for(lambda rs: len(letters_for(rs, wanted)) == len(wanted), within=60)),
        wanted,
    )
    for code, event in bad.items():
        letter = letters[str(event.event_id)]
        assert letter.topic == Topic.CAMERA_FRAMES.value
        assert letter.error_type == "PermanentError"
        assert letter.error.startswith(f"{code}: "), letter.error

    # Frames that break the contract are dead-lettered by the subscription, with their bytes.
    not_json = b"\xff" + unique.encode()
    oversized_id = oversized["event_id"].encode()

    def contract_letters(records: list[Any]) -> dict[str, DeadLetter]:
        found = {}
        for record in records:
            letter = DeadLetter.model_validate_json(record.value)
            original = base64.b64decode(letter.value)
            if original == not_json:
                found["not_json"] = letter
            elif oversized_id in original:
                found["oversized"] = letter
        return found

    raw = contract_letters(await dlq.wait_for(lambda rs: len(contract_letters(rs)) == 2))
    assert raw["not_json"].error_type == "ValidationError"
    assert raw["oversized"].error_type == "ValidationError"
    assert "payload.image" in raw["oversized"].error
