"""Scorer throughput on the local stack: TorchServe alone and the whole scorer, by images per
request. Registers a small-cnn model of its own (never touches the `hone` model) and removes it.

    set -a; . .local-stack/hone.env; set +a
    .venv/bin/python -m bench.scorer_throughput --images 2000 --profile

Writes bench/results/scorer_throughput.json (and scorer.prof with --profile).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import json
import os
import platform
import pstats
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from pydantic import ValidationError

import hone_scorer.app
from bench.images import random_pngs
from hone_common.events import ImageReceived, ImageScored, Quality, ReceivedImage, encode
from hone_common.storage import ObjectRef, ObjectStore, sha256_hex
from hone_common.topics import Topic
from hone_common.torchserve import TorchServeClient
from hone_scorer.app import create_app
from hone_scorer.scoring import Answer, Classification
from hone_scorer.settings import Settings
from hone_trainer.bootstrap import SeedSet, bootstrap
from hone_trainer.model.serving import ServingOptions
from hone_trainer.model.training import TrainConfig
from tests.kafka_helpers import start_group_at_end

RESULTS = Path(__file__).parent / "results"
CLASSES = [f"class-{k}" for k in range(10)]


async def serve_model(settings: Settings, name: str) -> str:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), 6)
    images = rng.integers(0, 256, size=(len(labels), 28, 28), dtype=np.uint8)
    client = TorchServeClient(settings.torchserve)
    try:
        result = await bootstrap(
            SeedSet(images, labels, CLASSES),
            TrainConfig(epochs=1, augmentation="none", threads=1, progress=False),
            client=client,
            store=ObjectStore(settings.s3),
            bucket=settings.s3.models_bucket,
            model_name=name,
            serving=ServingOptions(),  # what production registers with
        )
    finally:
        await client.aclose()
    return result.model_version


async def torchserve_alone(
    client: TorchServeClient,
    model: str,
    images: Sequence[bytes],
    per_request: int,
    concurrency: int,
) -> dict[str, Any]:
    chunks = [images[i : i + per_request] for i in range(0, len(images), per_request)]
    slots = asyncio.Semaphore(concurrency)
    latencies: list[float] = []

    async def one(chunk: Sequence[bytes]) -> None:
        async with slots:
            started = time.perf_counter()
            await client.predict(chunk, model=model)
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(one(chunk) for chunk in chunks))
    seconds = time.perf_counter() - started
    return {
        "images_per_request": per_request,
        "concurrency": concurrency,
        "images": len(images),
        "seconds": round(seconds, 3),
        "images_per_second": round(len(images) / seconds, 1),
        "request_p50_ms": round(1000 * float(np.percentile(latencies, 50)), 2),
        "request_p95_ms": round(1000 * float(np.percentile(latencies, 95)), 2),
    }


@contextlib.asynccontextmanager
async def scored_tap(servers: str) -> AsyncIterator[AIOKafkaConsumer]:
    consumer = AIOKafkaConsumer(bootstrap_servers=servers, group_id=None)
    await consumer.start()
    topic = Topic.IMAGE_SCORED.value
    await consumer._client.force_metadata_update()
    consumer._client.add_topic(topic)
    await consumer._client.force_metadata_update()
    partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
    consumer.assign(partitions)
    await consumer.seek_to_end(*partitions)
    for tp in partitions:
        await consumer.position(tp)
    try:
        yield consumer
    finally:
        await consumer.stop()


async def whole_scorer(
    base: Settings,
    model: str,
    refs: list[tuple[bytes, str]],
    per_request: int,
    profile: cProfile.Profile | None,
    inline: bool = False,
) -> dict[str, Any]:
    """The scorer app working through a backlog; with `inline`, the events carry the image
    bytes as ingest sends small images, and MinIO is not read."""
    group = f"scorer-bench-{uuid.uuid4().hex[:8]}"
    settings = base.model_copy(
        update={
            "torchserve": base.torchserve.model_copy(update={"model_name": model}),
            "scorer": base.scorer.model_copy(
                update={"consumer_group": group, "images_per_request": per_request}
            ),
        }
    )
    servers = settings.kafka.bootstrap_servers
    await start_group_at_end(servers, group, [Topic.IMAGE_RECEIVED.value])
    now = datetime.now(UTC)
    events = [
        ImageReceived(
            producer="scorer-bench",
            payload=ReceivedImage(
                image_id=uuid.uuid4(), uri=uri, sha256=digest, width=28, height=28,
                format="PNG", camera_id="cam-bench", captured_at=now,
                quality=Quality(brightness=0.5, contrast=0.2, sharpness=1.0),
                image=data if inline else None,
            ),
        )
        for data, digest, uri in ((data, sha256_hex(data), uri) for data, uri in refs)
    ]  # fmt: skip
    ids = {e.payload.image_id for e in events}
    app = create_app(settings)
    seen: set[uuid.UUID] = set()
    producer = AIOKafkaProducer(bootstrap_servers=servers, acks="all", linger_ms=5)
    await producer.start()
    async with scored_tap(servers) as tap:
        started = time.perf_counter()
        async with app.router.lifespan_context(app):
            ready = time.perf_counter()
            if profile:
                profile.enable()
            # The whole backlog at once, once the scorer (and its outbox relay) is running: the
            # clock runs from the first publish to the last image.scored read back.
            first_sent = time.perf_counter()
            for event in events:
                await producer.send(Topic.IMAGE_RECEIVED.value, encode(event), key=event.key)
            await producer.flush()
            deadline = time.perf_counter() + 600
            while len(seen) < len(ids) and time.perf_counter() < deadline:
                batches = await tap.getmany(timeout_ms=500)
                for records in batches.values():
                    for record in records:
                        with contextlib.suppress(ValidationError):  # others' junk on the topic
                            scored = ImageScored.model_validate_json(record.value)
                            if scored.payload.image_id in ids:
                                seen.add(scored.payload.image_id)
            finished = time.perf_counter()
            if profile:
                profile.disable()
    await producer.stop()
    seconds = finished - first_sent
    return {
        "images_per_request": per_request,
        "images": len(ids),
        "scored": len(seen),
        "startup_seconds": round(ready - started, 2),
        "seconds": round(seconds, 3),
        "images_per_second": round(len(seen) / seconds, 1),
    }


async def main(args: argparse.Namespace) -> None:
    settings = Settings()
    name = f"hone-scorer-bench-{uuid.uuid4().hex[:6]}"
    version = await serve_model(settings, name)
    client = TorchServeClient(settings.torchserve)
    store = ObjectStore(settings.s3)
    results: dict[str, Any] = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "load_average_at_start": os.getloadavg(),
        "model": {"name": name, "version": version, "architecture": "small-cnn"},
        "torchserve_alone": [],
        "whole_scorer": [],
    }
    try:
        images = random_pngs(args.images)
        await store.ensure_bucket(settings.s3.images_bucket)
        refs: list[tuple[bytes, str]] = []
        for data in images:
            digest = sha256_hex(data)
            ref = ObjectRef(settings.s3.images_bucket, f"bench/{digest[:2]}/{digest}.png")
            refs.append((data, ref.uri))
        await asyncio.gather(*(store.put(ObjectRef.parse(uri), d) for d, uri in refs))
        await client.predict(images[:8], model=name)  # warm the worker up
        for per_request in [] if args.skip_alone else args.per_request:
            for concurrency in args.concurrency:
                subset = images[: args.alone_images if per_request == 1 else len(images)]
                row = await torchserve_alone(client, name, subset, per_request, concurrency)
                print(json.dumps(row))
                results["torchserve_alone"].append(row)
        profile = cProfile.Profile() if args.profile else None
        for per_request in args.scorer_per_request:
            row = await whole_scorer(settings, name, refs, per_request, profile)
            print(json.dumps(row))
            results["whole_scorer"].append({"model": "torchserve", **row})
        if args.inline:
            row = await whole_scorer(settings, name, refs, 32, None, inline=True)
            print(json.dumps(row))
            results["whole_scorer"].append({"model": "torchserve", "inline": True, **row})
        if args.instant_model:
            real = hone_scorer.app.TorchServeClassifier  # type: ignore[attr-defined]
            hone_scorer.app.TorchServeClassifier = InstantModel  # type: ignore[attr-defined,assignment]
            try:
                row = await whole_scorer(settings, name, refs, 32, None)
            finally:
                hone_scorer.app.TorchServeClassifier = real  # type: ignore[attr-defined]
            print(json.dumps(row))
            results["whole_scorer"].append({"model": "instant", **row})
        if profile:
            profile.dump_stats(RESULTS / "scorer.prof")
            text = io.StringIO()
            pstats.Stats(profile, stream=text).sort_stats("cumulative").print_stats(40)
            (RESULTS / "scorer-profile.txt").write_text(text.getvalue())
    finally:
        with contextlib.suppress(Exception):
            await client.unregister(version, model=name)
        await client.aclose()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "scorer_throughput.json").write_text(json.dumps(results, indent=2) + "\n")


class InstantModel:
    """Stands in for TorchServe (`--instant-model`): measures the scorer's own ceiling with
    the real Kafka, MinIO and PostgreSQL."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    async def classify(self, images: Sequence[bytes]) -> Classification:
        rows = [[0.55] + [0.05] * 9 for _ in images]
        answer = Answer("instant", tuple(CLASSES), rows, list(range(len(images))))
        return Classification(answers=[answer])


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",")]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--alone-images", type=int, default=500, help="for 1 image/request")
    parser.add_argument("--per-request", type=_ints, default=[1, 8, 32, 64])
    parser.add_argument("--concurrency", type=_ints, default=[1, 2])
    parser.add_argument("--scorer-per-request", type=_ints, default=[1, 32])
    parser.add_argument(
        "--instant-model", action="store_true", help="also the scorer with an instant model"
    )
    parser.add_argument(
        "--inline", action="store_true", help="also the scorer with images inline (32/request)"
    )
    parser.add_argument("--skip-alone", action="store_true", help="only the whole scorer")
    parser.add_argument("--profile", action="store_true", help="cProfile the scorer runs")
    asyncio.run(main(parser.parse_args()))
