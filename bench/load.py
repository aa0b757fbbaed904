"""Sustained load: camera frames at a steady rate for several minutes through ingest, scorer,
selector and labeling-api, on a private stack of its own (its own state dir and ports, so the
shared stack is never disturbed), sampling every few seconds:

* the resident memory (RSS) of each service process, to see that it stays flat (no leak);
* each consumer group's lag (end offsets minus committed offsets), to see that it stays bounded;
* the rows stored and the events waiting in each outbox.

    .venv/bin/python -m bench.load [--rate 200] [--duration 300] [--out bench/results/load.json]

A verdict is written with the samples: lag bounded (in the last third of the run no group is
further behind than `--max-lag-seconds` of traffic, and the lag is not growing) and memory flat
(each service's RSS grows by less than `--max-rss-growth-mb-per-min` over the run after its
warm-up). The machine is shared with other work; the load average is recorded too.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import statistics
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from PIL import Image

from hone_common.db import create_pool
from hone_common.events import Frame, FrameCaptured, encode
from hone_common.topics import Topic
from tests.faults.pipeline import write_seed
from tests.faults.stack import (
    BIN,
    ROOT,
    PrivateStack,
    ServiceProcess,
    clean_environment,
    shifted,
)

PORTS = shifted(200)  # beside the shared stack (+0) and the fault tier (+100, +300, ...)
SERVICES = {
    "ingest": "hone-ingest",
    "scorer": "hone-scorer",
    "selector": "hone-selector",
    "labeling-api": "hone-labeling-api",
}
GROUPS = {  # consumer group -> topics it consumes (the ones with traffic here)
    "ingest": [Topic.CAMERA_FRAMES],
    "scorer": [Topic.IMAGE_RECEIVED],
    "selector": [Topic.IMAGE_SCORED],
    "labeling-api": [Topic.REVIEW_REQUESTED, Topic.IMAGE_SCORED],
}
SCHEMAS = ("ingest", "scorer", "selector", "labeling")


@dataclass
class Sample:
    t: float
    published: int
    rss_mb: dict[str, float]
    lag: dict[str, int]
    rows: dict[str, int]
    """Row estimates (pg_class.reltuples: cheap, updated by autovacuum)."""
    outbox_pending: dict[str, int]


@dataclass
class Run:
    rate: float
    duration: float
    published: int = 0
    failed: int = 0
    samples: list[Sample] = field(default_factory=list)


def frame(camera: str, number: int, rng: np.random.Generator) -> FrameCaptured:
    pixels = rng.integers(0, 256, size=(28, 28), dtype=np.uint8)
    pixels[rng.random((28, 28)) < 0.5] = 0  # half background, like a garment on black
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, format="PNG")
    return FrameCaptured(
        producer=camera,
        payload=Frame(
            camera_id=camera,
            captured_at=datetime.now(UTC),
            image=buffer.getvalue(),
            metadata={"n": number},
        ),
    )


async def publish(bootstrap: str, run: Run, stop_at: float) -> None:
    """Frames at `run.rate` per second in 100 ms ticks; sends are pipelined, acks awaited."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5
    )
    await producer.start()
    rng = np.random.default_rng()
    cameras = [f"load-cam-{i}" for i in range(8)]
    started, sent = time.monotonic(), 0
    try:
        while time.monotonic() < stop_at:
            due = int((time.monotonic() - started) * run.rate)
            futures = []
            while sent < due:
                event = frame(cameras[sent % len(cameras)], sent, rng)
                futures.append(
                    await producer.send(Topic.CAMERA_FRAMES.value, encode(event), key=event.key)
                )
                sent += 1
            for result in await asyncio.gather(*futures, return_exceptions=True):
                if isinstance(result, BaseException):
                    run.failed += 1
                else:
                    run.published += 1
            await asyncio.sleep(0.1)
    finally:
        await producer.stop()


async def lags(bootstrap: str) -> dict[str, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await admin.start()
    await consumer.start()
    try:
        out = {}
        for group, topics in GROUPS.items():
            committed = await admin.list_consumer_group_offsets(group)
            for topic in topics:
                partitions = [tp for tp in committed if tp.topic == topic.value]
                if not partitions:
                    continue
                ends = await consumer.end_offsets(partitions)
                out[f"{group}:{topic.value}"] = sum(
                    max(0, ends[tp] - committed[tp].offset) for tp in partitions
                )
        return out
    finally:
        await consumer.stop()
        await admin.close()


async def counts(pool: asyncpg.Pool[Any]) -> tuple[dict[str, int], dict[str, int]]:
    rows, pending = {}, {}
    async with pool.acquire() as conn:
        for name, table in (
            ("images", "ingest.images"),
            ("predictions", "scorer.predictions"),
            ("decisions", "selector.decisions"),
            ("tasks", "labeling.tasks"),
        ):
            # Estimates: a count(*) over a growing table every few seconds would be load itself.
            rows[name] = (
                await conn.fetchval(
                    "SELECT GREATEST(reltuples, 0)::bigint FROM pg_class "
                    "WHERE oid = to_regclass($1)",
                    table,
                )
                or 0
            )
        for schema in SCHEMAS:
            pending[schema] = await conn.fetchval(
                f"SELECT count(*) FROM {schema}.outbox WHERE published_at IS NULL"
            )
    return rows, pending


async def sample(
    run: Run,
    started: float,
    services: dict[str, ServiceProcess],
    pool: asyncpg.Pool[Any],
    bootstrap: str,
) -> None:
    rows, pending = await counts(pool)
    run.samples.append(
        Sample(
            t=round(time.monotonic() - started, 1),
            published=run.published,
            rss_mb={name: round((s.rss_bytes() or 0) / 2**20, 1) for name, s in services.items()},
            lag=await lags(bootstrap),
            rows=rows,
            outbox_pending=pending,
        )
    )


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of y over x (per second)."""
    if len(points) < 2:
        return 0.0
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    var = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var if var else 0.0


def verdict(run: Run, max_lag_seconds: float, max_growth: float, warmup: float) -> dict[str, Any]:
    samples = run.samples
    last_third = [s for s in samples if s.t >= samples[-1].t * 2 / 3]
    settled = [s for s in samples if s.t >= warmup]
    lag_bound = max_lag_seconds * run.rate
    lag_report = {}
    for key in sorted({k for s in samples for k in s.lag}):
        series = [(s.t, float(s.lag.get(key, 0))) for s in last_third]
        lag_report[key] = {
            "max": max((s.lag.get(key, 0) for s in samples), default=0),
            "max_last_third": max((v for _, v in series), default=0),
            "slope_last_third_per_min": round(slope(series) * 60, 1),
            "final": samples[-1].lag.get(key, 0),
        }
    memory: dict[str, dict[str, Any]] = {}
    for name in SERVICES:
        series = [(s.t, s.rss_mb[name]) for s in settled if s.rss_mb.get(name)]
        memory[name] = {
            "rss_mb_first": series[0][1] if series else None,
            "rss_mb_last": series[-1][1] if series else None,
            "rss_mb_max": max((v for _, v in series), default=None),
            "growth_mb_per_min": round(slope(series) * 60, 2),
        }
    bounded = all(
        r["max_last_third"] <= lag_bound and r["slope_last_third_per_min"] <= run.rate * 6
        for r in lag_report.values()
    )
    flat = all(m["growth_mb_per_min"] <= max_growth for m in memory.values())
    return {
        "lag_bound_messages": lag_bound,
        "lag_bounded": bounded,
        "memory_flat": flat,
        "lag": lag_report,
        "memory": memory,
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    stack = PrivateStack(Path(args.state), PORTS)
    print(f"starting a private stack in {args.state} ...", flush=True)
    await stack.start()
    services: dict[str, ServiceProcess] = {}
    pool = None
    try:
        env = clean_environment() | stack.env
        seed = write_seed(Path(args.state) / "seed.npz")
        boot = await asyncio.create_subprocess_exec(
            str(BIN / "hone-bootstrap"),
            *("--seed-npz", str(seed), "--epochs", "1", "--augmentation", "none", "--no-progress"),
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        assert await boot.wait() == 0, "hone-bootstrap failed"
        keys = await asyncio.create_subprocess_exec(str(BIN / "hone-keys"), "list", env=env)
        await keys.wait()  # migrates the shared auth schema once, before the services race on it
        logs = Path(args.state) / "logs" / "services"
        services = {n: ServiceProcess(n, s, stack.env, logs) for n, s in SERVICES.items()}
        await asyncio.gather(*(s.start() for s in services.values()))
        pool = await create_pool(stack.settings().postgres)
        bootstrap = stack.env["HONE_KAFKA__BOOTSTRAP_SERVERS"]
        run = Run(args.rate, args.duration)
        load_before = os.getloadavg()
        print(f"publishing {args.rate} frames/s for {args.duration} s ...", flush=True)
        started = time.monotonic()
        publishing = asyncio.create_task(publish(bootstrap, run, started + args.duration))
        while not publishing.done():
            await sample(run, started, services, pool, bootstrap)
            last = run.samples[-1]
            print(f"t={last.t:6.1f}s published={last.published} lag={last.lag} rss={last.rss_mb}")
            await asyncio.wait({publishing}, timeout=args.sample_every)
        await publishing
        await sample(run, started, services, pool, bootstrap)
        dead = [n for n, s in services.items() if not s.alive()]
        result = {
            "written_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": {
                "cpus": os.cpu_count(),
                "load_average_before": load_before,
                "load_average_after": os.getloadavg(),
            },
            "rate_frames_per_s": args.rate,
            "duration_s": args.duration,
            "published": run.published,
            "publish_failures": run.failed,
            "achieved_rate_frames_per_s": round(run.published / args.duration, 1),
            "services_died": dead,
            "verdict": verdict(
                run, args.max_lag_seconds, args.max_rss_growth_mb_per_min, args.warmup
            ),
            "samples": [s.__dict__ for s in run.samples],
        }
        return result
    finally:
        if pool is not None:
            await pool.close()
        for service in services.values():
            await service.stop()
        if not args.keep_stack:
            await stack.stop()


def cli() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=200.0, help="frames per second")
    parser.add_argument("--duration", type=float, default=300.0, help="seconds of load")
    parser.add_argument("--sample-every", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=60.0, help="seconds before RSS counts")
    parser.add_argument("--max-lag-seconds", type=float, default=10.0)
    parser.add_argument("--max-rss-growth-mb-per-min", type=float, default=2.0)
    parser.add_argument("--state", default=f"/tmp/hone-load-stack-{uuid.uuid4().hex[:6]}")
    parser.add_argument("--keep-stack", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "load.json")
    args = parser.parse_args()
    result = asyncio.run(main(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    v = result["verdict"]
    print(
        json.dumps(
            {k: v[k] for k in ("lag_bounded", "memory_flat")}
            | {"memory": v["memory"], "lag": v["lag"]},
            indent=2,
        )
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    cli()
