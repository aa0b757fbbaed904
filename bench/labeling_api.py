"""Benchmark of the labeling API against the real local stack.

Starts `hone-labeling-api` as its own process (a schema and consumer group of its own),
queues a realistic backlog of review requests through Kafka (real images in MinIO), then:

1. latency, one labeler working like the labeling page: after each answer the page shows
   the next, already prefetched image at once and refills its buffer in the background
   (answer, claim, image). Measured per answer: the answer itself, the refill, and, for a
   client without prefetching, answer -> claim one -> fetch its image (what a labeler would
   wait for before the next image appears);
2. throughput: N labelers answering concurrently for a fixed time; answers/s and latency.

Afterwards it checks that every settling answer produced exactly one label.submitted.
Results go to bench/results/labeling_api.json.

    .venv/bin/python -m bench.labeling_api [--tasks 2000] [--labelers 8] [--seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from bench.images import random_pngs
from hone_common.auth import ApiKeys, Role
from hone_common.db import create_pool
from hone_common.events import Prediction, Reason, ReviewRequest, ReviewRequested
from hone_common.kafka import create_broker, publish_many
from hone_common.settings import ServiceSettings
from hone_common.storage import ObjectRef, ObjectStore, sha256_hex
from hone_common.topics import Topic
from tests.kafka_helpers import start_group_at_end
from tests.live_api import free_port

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "labeling_api.json"
CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
           "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]  # fmt: skip
PREFETCH = 4


def load_stack_env() -> None:
    env = ROOT / ".local-stack" / "hone.env"
    if not env.exists():
        return
    for line in env.read_text().splitlines():
        line = line.strip().removeprefix("export ").strip()
        if line and not line.startswith("#") and "=" in line:
            name, _, value = line.partition("=")
            os.environ.setdefault(name, value.strip().strip("'\""))


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2)

    return {
        "n": len(ordered),
        "p50_ms": at(0.50),
        "p95_ms": at(0.95),
        "p99_ms": at(0.99),
        "mean_ms": round(statistics.fmean(ordered) * 1000, 2),
    }


async def queue_tasks(settings: ServiceSettings, schema: str, pool: Any, count: int) -> float:
    """Publish `count` review requests (200 distinct images) and wait until all are queued;
    returns how many the API took in per second."""
    store = ObjectStore(settings.s3)
    await store.ensure_bucket(settings.s3.images_bucket)
    uris = []
    for data in random_pngs(200, seed=7):
        ref = ObjectRef(settings.s3.images_bucket, f"bench-labeling/{sha256_hex(data)}.png")
        await store.put(ref, data, "image/png")
        uris.append(ref.uri)
    rng = random.Random(11)
    events = []
    for i in range(count):
        guess = rng.choice(CLASSES)
        probabilities = [0.05] * len(CLASSES)
        probabilities[CLASSES.index(guess)] = 0.55
        events.append(
            ReviewRequested(
                producer="bench",
                payload=ReviewRequest(
                    image_id=uuid.uuid4(),
                    uri=uris[i % len(uris)],
                    reasons=[Reason(strategy="uncertainty", score=0.7, detail="margin 0.08")],
                    priority=rng.random(),
                    model_version="bench-v1",
                    prediction=Prediction(
                        label=guess, confidence=0.55, classes=CLASSES, probabilities=probabilities
                    ),
                    camera_id=f"cam-{i % 4}",
                ),
            )
        )
    before = await pool.fetchval(f"SELECT count(*) FROM {schema}.tasks")
    broker = create_broker(settings.kafka, "bench-labeling")
    started = time.perf_counter()
    async with broker:
        await broker.connect()
        for start in range(0, count, 500):
            await publish_many(broker, events[start : start + 500], "bench-labeling")
    deadline = time.monotonic() + 300
    while await pool.fetchval(f"SELECT count(*) FROM {schema}.tasks") < before + count:
        if time.monotonic() > deadline:
            raise SystemExit("review requests were not queued within 300 s")
        await asyncio.sleep(0.1)
    return count / (time.perf_counter() - started)


def random_answer(rng: random.Random) -> dict[str, Any]:
    draw = rng.random()
    if draw < 0.05:
        return {"verdict": "skip"}
    if draw < 0.15:
        return {"verdict": "ambiguous"}
    return {"verdict": "label", "label": rng.choice(CLASSES), "elapsed_ms": rng.randint(800, 4000)}


class Labeler:
    def __init__(self, http: httpx.AsyncClient, key: str, seed: int) -> None:
        self.http = http
        self.headers = {"Authorization": f"Bearer {key}"}
        self.rng = random.Random(seed)

    async def claim(self, count: int) -> list[dict[str, Any]]:
        response = await self.http.post(
            "/v1/tasks/claim", json={"count": count}, headers=self.headers
        )
        response.raise_for_status()
        tasks: list[dict[str, Any]] = response.json()["tasks"]
        return tasks

    async def image(self, task: dict[str, Any]) -> None:
        (await self.http.get(task["image"]["url"], headers=self.headers)).raise_for_status()

    async def answer(self, task: dict[str, Any]) -> None:
        response = await self.http.post(
            f"/v1/tasks/{task['task_id']}/answer",
            json=random_answer(self.rng),
            headers={**self.headers, "Idempotency-Key": uuid.uuid4().hex},
        )
        response.raise_for_status()


async def prefetching_labeler(labeler: Labeler, answers: int) -> dict[str, Any]:
    """The page: the next image is already decoded, so it shows at once; in the background
    it sends the answer and refills its buffer (claim, fetch the new image)."""
    answer_s, refill_s = [], []
    buffer = await labeler.claim(PREFETCH)
    for task in buffer:
        await labeler.image(task)
    for _ in range(answers):
        current, buffer = buffer[0], buffer[1:]
        t0 = time.perf_counter()
        await labeler.answer(current)
        t1 = time.perf_counter()
        known = {t["task_id"] for t in buffer}
        new = [t for t in await labeler.claim(PREFETCH) if t["task_id"] not in known]
        for task in new:
            await labeler.image(task)
        buffer += new
        answer_s.append(t1 - t0)
        refill_s.append(time.perf_counter() - t1)
    return {"answer": percentiles(answer_s), "refill": percentiles(refill_s)}


async def plain_labeler(labeler: Labeler, answers: int) -> dict[str, Any]:
    """A client without prefetching: the next image appears after answer, claim, fetch."""
    answer_s, claim_s, image_s, total_s = [], [], [], []
    (current,) = await labeler.claim(1)
    await labeler.image(current)
    for _ in range(answers):
        t0 = time.perf_counter()
        await labeler.answer(current)
        t1 = time.perf_counter()
        (current,) = await labeler.claim(1)
        t2 = time.perf_counter()
        await labeler.image(current)
        t3 = time.perf_counter()
        answer_s.append(t1 - t0)
        claim_s.append(t2 - t1)
        image_s.append(t3 - t2)
        total_s.append(t3 - t0)
    return {
        "answer": percentiles(answer_s),
        "claim": percentiles(claim_s),
        "image": percentiles(image_s),
        "answer_to_next_image": percentiles(total_s),
    }


async def throughput_phase(
    http: httpx.AsyncClient, keys: list[str], seconds: float
) -> dict[str, Any]:
    latencies: list[float] = []
    counts = [0] * len(keys)
    errors: list[str] = []
    stop = time.perf_counter() + seconds

    async def work(index: int) -> None:
        labeler = Labeler(http, keys[index], seed=100 + index)
        while time.perf_counter() < stop:
            tasks = await labeler.claim(PREFETCH)
            if not tasks:
                return
            for task in tasks:
                if time.perf_counter() >= stop:
                    return
                t0 = time.perf_counter()
                try:
                    await labeler.answer(task)
                except httpx.HTTPStatusError as error:
                    errors.append(f"{error.response.status_code} {error.response.text[:120]}")
                    continue
                latencies.append(time.perf_counter() - t0)
                counts[index] += 1

    started = time.perf_counter()
    await asyncio.gather(*(work(i) for i in range(len(keys))))
    elapsed = time.perf_counter() - started
    return {
        "labelers": len(keys),
        "seconds": round(elapsed, 2),
        "answers": sum(counts),
        "answers_per_second": round(sum(counts) / elapsed, 1),
        "answer_latency": percentiles(latencies),
        "errors": len(errors),
        "error_samples": errors[:5],
    }


async def main(args: argparse.Namespace) -> None:
    load_stack_env()
    settings = ServiceSettings()
    unique = uuid.uuid4().hex[:8]
    schema, group, port = f"bench_labeling_{unique}", f"bench-labeling-{unique}", free_port()
    pool = await create_pool(settings.postgres)
    await start_group_at_end(
        settings.kafka.bootstrap_servers,
        group,
        [Topic.REVIEW_REQUESTED.value, Topic.IMAGE_SCORED.value],
    )
    env = {
        **os.environ,
        "HONE_HTTP__PORT": str(port),
        "HONE_LABELING__SCHEMA_NAME": schema,
        "HONE_LABELING__CONSUMER_GROUP": group,
        "HONE_LABELING__RATE_LIMIT__REQUESTS_PER_SECOND": "100000",
        "HONE_LABELING__RATE_LIMIT__BURST": "100000",
        "HONE_LOG_LEVEL": "WARNING",
    }
    server = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).with_name("hone-labeling-api")),
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    keys_made: list[uuid.UUID] = []
    try:
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as http:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if (await http.get("/readyz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if server.returncode is not None or time.monotonic() > deadline:
                    raise SystemExit("the API did not start")
                await asyncio.sleep(0.2)
            registry = ApiKeys(pool)
            keys = []
            for i in range(max(args.labelers, 2)):
                principal, key = await registry.issue(f"bench-{unique}-{i}", Role.LABELER)
                keys_made.append(principal.key_id)
                keys.append(key)

            print(f"queueing {args.tasks} review requests ...", flush=True)
            intake = await queue_tasks(settings, schema, pool, args.tasks)
            print(f"  taken in at {intake:.0f}/s; latency phase ({args.answers} answers) ...")
            latency = {
                "with_prefetch": {
                    "note": "the labeling page: the next image is decoded before the key "
                    "press, so it shows at once; answer and refill run in the background",
                    **await prefetching_labeler(Labeler(http, keys[0], seed=1), args.answers),
                },
                "without_prefetch": await plain_labeler(
                    Labeler(http, keys[1], seed=2), args.answers
                ),
            }
            depth = await pool.fetchval(
                f"SELECT count(*) FROM {schema}.tasks WHERE status = 'open'"
            )
            # Keep the backlog realistic for the throughput phase.
            refill = max(0, args.tasks - depth) + args.labelers * 40 * int(args.seconds)
            print(f"  queueing {refill} more; throughput phase ({args.labelers} labelers) ...")
            await queue_tasks(settings, schema, pool, refill)
            queue_before = await pool.fetchval(
                f"SELECT count(*) FROM {schema}.tasks WHERE status = 'open'"
            )
            throughput = await throughput_phase(http, keys[: args.labelers], args.seconds)

        settled = await pool.fetchval(
            f"SELECT count(*) FROM {schema}.answers WHERE event_id IS NOT NULL"
        )
        deadline = time.monotonic() + 60
        while True:
            published, pending = await pool.fetchrow(
                f"SELECT count(*) FILTER (WHERE published_at IS NOT NULL), "
                f"count(*) FILTER (WHERE published_at IS NULL) FROM {schema}.outbox "
                "WHERE topic = $1",
                Topic.LABEL_SUBMITTED.value,
            )
            if pending == 0 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
    finally:
        if server.returncode is None:
            server.terminate()
            await server.wait()
        for key_id in keys_made:
            await ApiKeys(pool).revoke(key_id)
        if not args.keep:
            await pool.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await pool.close()

    result = {
        "benchmark": "labeling_api",
        "command": "python -m bench.labeling_api " + " ".join(sys.argv[1:]),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "server": "one hone-labeling-api process (uvicorn, 1 worker) on the local stack",
        "client": "httpx in one process on the same machine",
        "queue": {
            "tasks": args.tasks,
            "review_requests_taken_in_per_second": round(intake, 1),
            "open_before_throughput_phase": queue_before,
        },
        "latency_one_labeler": latency,
        "throughput": throughput,
        "events": {
            "settling_answers": settled,
            "label_submitted_published": published,
            "label_submitted_pending": pending,
            "exactly_one_per_settling_answer": published == settled and pending == 0,
        },
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=2000, help="backlog of review requests")
    parser.add_argument("--answers", type=int, default=300, help="answers in the latency phase")
    parser.add_argument("--labelers", type=int, default=8, help="concurrent labelers")
    parser.add_argument("--seconds", type=float, default=20.0, help="throughput phase length")
    parser.add_argument("--keep", action="store_true", help="keep the bench schema afterwards")
    asyncio.run(main(parser.parse_args()))
