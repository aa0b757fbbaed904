"""Simulated frames published to the real Kafka, read back with a consumer group of our own."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from pydantic import ValidationError

from hone_common.events import FrameCaptured, decode
from hone_common.settings import KafkaSettings
from hone_common.topics import Topic
from hone_simulator.cameras import encode_png
from hone_simulator.data import FashionMnist, load_fashion_mnist
from hone_simulator.frames import SimFrame, generate_frames, read_truth
from hone_simulator.publish import publish_frames
from hone_simulator.settings import SimulatorSettings
from hone_simulator.splits import Split, split

TOPIC = Topic.CAMERA_FRAMES.value


@pytest.fixture(scope="module")
def kafka() -> KafkaSettings:
    return SimulatorSettings().kafka


@pytest.fixture(scope="module")
def data() -> tuple[FashionMnist, Split]:
    dataset = load_fashion_mnist()  # the shared cache; fetched on first use
    return dataset, split(dataset, seed=0)


def _frames(data: tuple[FashionMnist, Split], count: int) -> list[SimFrame]:
    # A fresh seed per run: the same seed would resend byte-identical images.
    seed = uuid.uuid4().int % 2**31
    start = datetime(2025, 3, 1, tzinfo=UTC)
    return list(generate_frames(*data, count, seed, start=start))


@pytest.fixture
async def reader(kafka: KafkaSettings) -> AsyncIterator[AIOKafkaConsumer]:
    """A consumer in a group of its own, positioned at the topic's current end."""
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap_servers)
    await producer.start()
    try:
        partitions = await producer.partitions_for(TOPIC)  # creates the topic if need be
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka.bootstrap_servers,
        group_id=f"test-simulator-{uuid.uuid4().hex[:8]}",
        enable_auto_commit=False,
        max_partition_fetch_bytes=kafka.max_message_bytes,
    )
    await consumer.start()
    try:
        assigned = [TopicPartition(TOPIC, p) for p in partitions]
        consumer.assign(assigned)
        for partition, offset in (await consumer.end_offsets(assigned)).items():
            consumer.seek(partition, offset)
        yield consumer
    finally:
        await consumer.stop()


async def _read(
    consumer: AIOKafkaConsumer, wanted: set[uuid.UUID], within: float = 30.0
) -> dict[uuid.UUID, ConsumerRecord[bytes, bytes]]:
    """Our records by event id; others' records on the shared topic, even broken ones, are
    skipped."""
    found: dict[uuid.UUID, ConsumerRecord[bytes, bytes]] = {}
    deadline = time.monotonic() + within
    while wanted - found.keys() and time.monotonic() < deadline:
        batches = await consumer.getmany(timeout_ms=500)
        for records in batches.values():
            for record in records:
                try:
                    event = decode(FrameCaptured, record.value or b"")
                except ValidationError:
                    continue
                if event.event_id in wanted:
                    found[event.event_id] = record
    return found


async def test_published_frames_arrive_intact_keyed_and_with_their_truth(
    kafka: KafkaSettings,
    data: tuple[FashionMnist, Split],
    reader: AIOKafkaConsumer,
    tmp_path: Path,
) -> None:
    frames = _frames(data, 200)
    truth = tmp_path / "truth.jsonl"

    report = await publish_frames(frames, kafka, rate=None, truth=truth)

    assert (report.sent, report.failed) == (200, 0)
    sent = {f.event.event_id: f for f in frames}
    received = await _read(reader, set(sent))
    assert received.keys() == sent.keys()
    for event_id, record in received.items():
        event = decode(FrameCaptured, record.value or b"")
        assert event == sent[event_id].event
        assert record.key == sent[event_id].event.key
        assert dict(record.headers)["event-type"] == b"camera.frames"
    written = read_truth(truth)
    assert written.keys() == {f.truth.image_id for f in frames}


async def test_publishing_keeps_to_the_requested_rate(
    kafka: KafkaSettings, data: tuple[FashionMnist, Split]
) -> None:
    frames = _frames(data, 61)
    started = time.perf_counter()
    report = await publish_frames(frames, kafka, rate=40.0)
    elapsed = time.perf_counter() - started

    assert report.sent == 61
    assert elapsed >= 60 / 40.0 * 0.95
    assert report.seconds < 60 / 40.0 * 3  # generous: a shared two-core machine


async def test_a_frame_kafka_refuses_is_counted_and_the_others_still_go(
    data: tuple[FashionMnist, Split], reader: AIOKafkaConsumer, tmp_path: Path
) -> None:
    small = KafkaSettings(
        bootstrap_servers=SimulatorSettings().kafka.bootstrap_servers, max_message_bytes=20_000
    )
    frames = _frames(data, 5)
    noise = np.random.default_rng(0).integers(0, 256, size=(120, 120), dtype=np.uint8)
    payload = frames[2].event.payload.model_copy(update={"image": encode_png(noise)})
    too_big = SimFrame(frames[2].event.model_copy(update={"payload": payload}), frames[2].truth)
    frames[2] = too_big
    truth = tmp_path / "truth.jsonl"

    report = await publish_frames(frames, small, rate=None, truth=truth)

    assert (report.sent, report.failed) == (4, 1)
    assert str(too_big.event.event_id) in report.errors[0]
    expected = {f.event.event_id for i, f in enumerate(frames) if i != 2}
    assert (await _read(reader, expected)).keys() == expected
    assert too_big.truth.image_id not in read_truth(truth)
    assert len(read_truth(truth)) == 4


async def test_a_stream_that_breaks_off_still_leaves_truth_for_what_was_sent(
    kafka: KafkaSettings, data: tuple[FashionMnist, Split], tmp_path: Path
) -> None:
    frames = _frames(data, 5)

    def breaks_off() -> Iterator[SimFrame]:
        yield from frames
        raise RuntimeError("the camera died")

    truth = tmp_path / "truth.jsonl"
    with pytest.raises(RuntimeError, match="camera died"):
        await publish_frames(breaks_off(), kafka, rate=None, truth=truth)
    assert read_truth(truth).keys() == {f.truth.image_id for f in frames}
