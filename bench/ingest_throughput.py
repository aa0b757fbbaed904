"""How many camera frames per second one ingest process turns into stored, announced images.

Publishes N frames (28x28 grayscale PNGs like Fashion-MNIST's, random so each run's are new) to
camera.frames first, then starts ingest in-process with a fresh consumer group positioned just
before them, and times from start-up until every frame's image.received has been read back.
Runs against the local stack:

    .venv/bin/python bench/ingest_throughput.py --frames 5000
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import resource
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from PIL import Image

from hone_common.events import Frame, FrameCaptured, encode, image_id_for
from hone_common.storage import sha256_hex
from hone_common.topics import Topic
from hone_ingest.app import create_app
from hone_ingest.settings import Settings


def load_stack_env() -> None:
    env = Path(__file__).resolve().parents[1] / ".local-stack" / "hone.env"
    if env.exists():
        for line in env.read_text().splitlines():
            line = line.strip().removeprefix("export ").strip()
            if line and not line.startswith("#") and "=" in line:
                name, _, value = line.partition("=")
                os.environ.setdefault(name, value.strip().strip("'\""))


def frames(count: int, cameras: int) -> list[FrameCaptured]:
    rng = np.random.default_rng()
    now = datetime.now(UTC)
    out = []
    for i in range(count):
        pixels = rng.integers(0, 256, (28, 28), dtype=np.uint8)
        pixels[rng.random((28, 28)) < 0.5] = 0  # half background, like a garment on black
        buffer = io.BytesIO()
        Image.fromarray(pixels, "L").save(buffer, "PNG")
        camera = f"bench-cam-{i % cameras}"
        out.append(
            FrameCaptured(
                producer=camera,
                payload=Frame(camera_id=camera, captured_at=now, image=buffer.getvalue()),
            )
        )
    return out


async def partitions_of(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    for _ in range(50):
        consumer._client.add_topic(topic)
        await consumer._client.force_metadata_update()
        found = consumer.partitions_for_topic(topic)
        if found:
            return [TopicPartition(topic, p) for p in found]
        await asyncio.sleep(0.1)
    raise SystemExit(f"topic {topic} has no partitions")


async def run(count: int, cameras: int, settings: Settings) -> None:
    bootstrap = settings.kafka.bootstrap_servers
    group = settings.ingest.consumer_group
    batch = frames(count, cameras)
    wanted = {str(image_id_for(sha256_hex(f.payload.image or b""))).encode() for f in batch}

    positioner = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group)
    await positioner.start()
    try:
        parts = await partitions_of(positioner, Topic.CAMERA_FRAMES.value)
        positioner.assign(parts)
        await positioner.commit(dict(await positioner.end_offsets(parts)))
    finally:
        await positioner.stop()

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    started = time.perf_counter()
    sends = [await producer.send(Topic.CAMERA_FRAMES.value, encode(f), key=f.key) for f in batch]
    await asyncio.gather(*sends)
    await producer.stop()
    print(f"published {count} frames in {time.perf_counter() - started:.2f} s")

    tap = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await tap.start()
    received = await partitions_of(tap, Topic.IMAGE_RECEIVED.value)
    tap.assign(received)
    await tap.seek_to_end(*received)
    for tp in received:
        await tap.position(tp)

    app = create_app(settings)
    seen: set[bytes] = set()
    async with app.router.lifespan_context(app):
        started = time.perf_counter()
        cpu_before = _cpu_seconds()
        first_at = None
        while len(seen) < len(wanted):
            if time.perf_counter() - started > 600:
                raise SystemExit(f"timed out with {len(seen)}/{count} announced")
            for records in (await tap.getmany(timeout_ms=500)).values():
                for record in records:
                    if record.key in wanted:
                        first_at = first_at or time.perf_counter()
                        seen.add(record.key)
        elapsed = time.perf_counter() - started
        cpu = _cpu_seconds() - cpu_before
    await tap.stop()
    steady = elapsed - ((first_at or started) - started)
    print(
        f"ingested and announced {count} frames in {elapsed:.2f} s: {count / elapsed:.0f} frames/s"
    )
    print(
        f"(after the first announcement: {steady:.2f} s, {count / max(steady, 1e-9):.0f} frames/s)"
    )
    print(f"CPU of this process (ingest and the reading tap): {cpu / count * 1000:.2f} ms/frame")


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--frames", type=int, default=5000)
    parser.add_argument("--cameras", type=int, default=12, help="distinct keys (partitions)")
    parser.add_argument("--max-records", type=int, default=None)
    parser.add_argument("--decode-threads", type=int, default=None)
    parser.add_argument("--store-concurrency", type=int, default=None)
    args = parser.parse_args()
    load_stack_env()
    base = Settings()
    knobs: dict[str, object] = {"consumer_group": f"ingest-bench-{uuid.uuid4().hex[:8]}"}
    for name in ("max_records", "decode_threads", "store_concurrency"):
        if getattr(args, name) is not None:
            knobs[name] = getattr(args, name)
    settings = base.model_copy(
        update={"ingest": base.ingest.model_copy(update=knobs), "log_level": "WARNING"}
    )
    asyncio.run(run(args.frames, args.cameras, settings))


if __name__ == "__main__":
    main()
