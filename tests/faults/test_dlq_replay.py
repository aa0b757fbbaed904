"""A dead letter replayed with `hone-dlq` once its cause is fixed: the scorer dead-letters an
image whose object is missing, the object is restored, and replaying the letter twice scores
the image exactly once."""

from __future__ import annotations

import asyncio
import io
import json
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from PIL import Image

from hone_common.events import ImageReceived, Quality, ReceivedImage, encode
from hone_common.storage import ObjectRef, ObjectStore, sha256_hex
from hone_common.topics import Topic
from tests.faults.pipeline import announced, read_topic, wait_until
from tests.faults.stack import PrivateStack, ServiceProcess, clean_environment

HONE_DLQ = str(Path(sys.executable).with_name("hone-dlq"))


async def hone_dlq(stack: PrivateStack, *args: str) -> str:
    process = await asyncio.create_subprocess_exec(
        HONE_DLQ,
        *args,
        "--bootstrap",
        stack.env["HONE_KAFKA__BOOTSTRAP_SERVERS"],
        env=clean_environment() | stack.env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    return out.decode()


async def caught_up(bootstrap: str, group: str, topic: str) -> bool:
    """The group has committed every partition of `topic` up to its end."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        if not partitions:
            await consumer._client.force_metadata_update()
            consumer._client.add_topic(topic)
            await consumer._client.force_metadata_update()
            partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        ends = await consumer.end_offsets(partitions)
        for tp in partitions:
            if ends[tp] and (await consumer.committed(tp) or 0) < ends[tp]:
                return False
        return True
    finally:
        await consumer.stop()


def missing_image() -> tuple[bytes, ImageReceived, ObjectRef]:
    pixels = np.random.default_rng().integers(0, 256, size=(28, 28), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, format="PNG")
    data = buffer.getvalue()
    digest = sha256_hex(data)
    ref = ObjectRef("hone-images", f"replay/{digest}.png")
    image_id = uuid.uuid4()
    event = ImageReceived(
        producer="faults-replay",
        correlation_id=image_id,
        payload=ReceivedImage(
            image_id=image_id,
            uri=ref.uri,
            sha256=digest,
            width=28,
            height=28,
            format="PNG",
            camera_id="cam-replay",
            captured_at=datetime.now(UTC),
            quality=Quality(brightness=0.5, contrast=0.2, sharpness=3.0),
        ),
    )
    return data, event, ref


async def test_a_dead_letter_replayed_twice_after_the_fix_is_scored_exactly_once(
    stack: PrivateStack,
    services: dict[str, ServiceProcess],
    pool: asyncpg.Pool[Any],
    store: ObjectStore,
) -> None:
    bootstrap = stack.env["HONE_KAFKA__BOOTSTRAP_SERVERS"]
    data, event, ref = missing_image()
    image_id = event.payload.image_id
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(Topic.IMAGE_RECEIVED.value, encode(event), key=event.key)
    finally:
        await producer.stop()

    async def dead_lettered() -> bool:
        letters = await read_topic(bootstrap, Topic.IMAGE_RECEIVED.dlq)
        return any(key == event.key for key, _ in letters)

    await wait_until(dead_lettered, 120, "the scorer dead-lettering the missing image")
    listed = [
        json.loads(line)
        for line in (await hone_dlq(stack, "list", "image.received.dlq", "--json")).splitlines()
    ]
    ours = [row for row in listed if row["key"] == str(image_id)]
    assert [row["error_type"] for row in ours] == ["ImageMissing"]
    assert (
        await pool.fetchval("SELECT count(*) FROM scorer.predictions WHERE image_id = $1", image_id)
        == 0
    )

    await store.put(ref, data, "image/png")  # the cause, fixed
    position = ours[0]["position"]
    for _ in range(2):  # a second replay must be harmless
        out = await hone_dlq(stack, "replay", "image.received.dlq", "--offset", position)
        assert "1 replayed" in out

    async def scored() -> bool:
        n = await pool.fetchval(
            "SELECT count(*) FROM scorer.predictions WHERE image_id = $1", image_id
        )
        return bool(n) and await caught_up(bootstrap, "scorer", Topic.IMAGE_RECEIVED.value)

    await wait_until(scored, 120, "the replayed image scored and both replays consumed")
    assert (
        await pool.fetchval("SELECT count(*) FROM scorer.predictions WHERE image_id = $1", image_id)
        == 1
    )
    received = await announced(bootstrap, Topic.IMAGE_RECEIVED.value, {image_id})
    assert received.records[image_id] == 3  # the original and two replays...
    scored_events = await announced(bootstrap, Topic.IMAGE_SCORED.value, {image_id})
    assert len(scored_events.events[image_id]) == 1  # ...and one effect
    letters = await read_topic(bootstrap, Topic.IMAGE_RECEIVED.dlq)
    assert sum(1 for key, _ in letters if key == event.key) == 1  # not dead-lettered again
