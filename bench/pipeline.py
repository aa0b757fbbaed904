"""End-to-end throughput and latency of the image path, against the same model in process.

Frames are published to `camera.frames`; ingest and scorer run as separate processes (as in
production) in consumer groups of their own; the benchmark reads `image.scored` and times each
image from its publish to its score. In the same run it measures the same model (the archive
TorchServe serves, loaded with the same handler code) scoring the same PNGs in process, so
the ratio is comparable even on a shared, noisy machine.

    set -a; . .local-stack/hone.env; set +a
    .venv/bin/python -m bench.pipeline [--frames 3000] [--workers 1] [--out FILE.json]
    .venv/bin/python -m bench.pipeline --architecture resnet18 --frame-size 224 --frames 600 \
        --out bench/results/pipeline_resnet18.json

The second form sends 224x224 RGB frames (the simulator's frames enlarged and tinted) to a
ResNet-18, where the model's own work dominates. The in-process rate uses as many threads as
TorchServe has workers (each worker runs one thread).

Phase 1 publishes every frame at once (throughput); phase 2 publishes new frames at half the
measured throughput (latency under a sustainable load).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
import zipfile
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import torch
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from PIL import Image

from hone_common.events import encode, image_id_for
from hone_common.settings import ServiceSettings
from hone_common.storage import ObjectRef, ObjectStore, sha256_hex
from hone_common.topics import Topic
from hone_common.torchserve import TorchServeClient
from hone_simulator.data import load_fashion_mnist
from hone_simulator.frames import SimFrame, generate_frames
from hone_simulator.publish import TokenBucket
from hone_simulator.splits import split
from hone_trainer.bootstrap import SeedSet, bootstrap
from hone_trainer.model.handler import ImageClassifier
from hone_trainer.model.serving import ServingOptions
from hone_trainer.model.training import TrainConfig
from tests.kafka_helpers import start_group_at_end

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def enlarge(frame: SimFrame, size: int) -> SimFrame:
    """The frame as a `size`x`size` RGB PNG: enlarged, and tinted so its channels differ."""
    if size == 28:
        return frame
    gray = (
        Image.open(io.BytesIO(frame.png))
        .convert("L")
        .resize((size, size), Image.Resampling.BILINEAR)
    )
    tint = np.asarray(gray, dtype=np.float32)[..., None] * np.array([1.0, 0.92, 0.8])
    buffer = io.BytesIO()
    Image.fromarray(tint.round().astype(np.uint8), "RGB").save(buffer, format="PNG")
    payload = frame.event.payload.model_copy(update={"image": buffer.getvalue()})
    return replace(frame, event=frame.event.model_copy(update={"payload": payload}))


async def serve_model(
    settings: ServiceSettings, name: str, workers: int, architecture: str
) -> tuple[str, str]:
    data = load_fashion_mnist()
    seed_ids = split(data, seed=0).seed_set(per_class=20)
    client = TorchServeClient(settings.torchserve)
    try:
        result = await bootstrap(
            SeedSet(data.images[seed_ids], data.labels[seed_ids], list(data.classes)),
            # Throughput does not depend on how well the model is trained: one or two epochs.
            TrainConfig(
                architecture=architecture,
                epochs=2 if architecture == "small-cnn" else 1,
                threads=2,
                progress=False,
            ),
            client=client,
            store=ObjectStore(settings.s3),
            bucket=settings.s3.models_bucket,
            model_name=name,
            serving=ServingOptions(workers=workers),
        )
    finally:
        await client.aclose()
    return result.model_version, result.artifact_uri


async def in_process_rate(
    settings: ServiceSettings, artifact_uri: str, pngs: list[bytes], threads: int
) -> float:
    """The served archive's model and handler code, scoring the same PNGs in batches of 64 on
    `threads` threads (the TorchServe workers' total)."""
    archive = await ObjectStore(settings.s3).get(ObjectRef.parse(artifact_uri))
    with tempfile.TemporaryDirectory() as tmp:
        zipfile.ZipFile(io.BytesIO(archive)).extractall(tmp)
        classifier = ImageClassifier.load(tmp)
    torch.set_num_threads(threads)
    started = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(pngs), 64):
            batch = torch.stack([classifier.pixels(data) for data in pngs[i : i + 64]])
            classifier.probabilities(batch)
    return len(pngs) / (time.perf_counter() - started)


def process_tree_cpu_seconds(root: int) -> float:
    """CPU seconds (user + system, with reaped children) of a process and its descendants,
    read from /proc (Linux)."""
    tick = os.sysconf("SC_CLK_TCK")
    parents: dict[int, list[int]] = {}
    used: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid = int(entry.name)
        parents.setdefault(int(fields[1]), []).append(pid)
        used[pid] = sum(int(v) for v in fields[11:15]) / tick
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        total += used.get(pid, 0.0)
        todo.extend(parents.get(pid, []))
    return total


def components(procs: dict[str, int]) -> dict[str, int]:
    """The benchmark's services and the local stack's servers, by name, as root pids."""
    found = dict(procs)
    for pid_file in sorted((ROOT / ".local-stack" / "run").glob("*.pid")):
        with contextlib.suppress(OSError, ValueError):
            found[pid_file.stem] = int(pid_file.read_text().split()[0])
    return found


def cpu_snapshot(pids: dict[str, int]) -> dict[str, float]:
    return {name: process_tree_cpu_seconds(pid) for name, pid in pids.items()}


@contextlib.asynccontextmanager
async def services(run: str, model_name: str) -> AsyncIterator[dict[str, int]]:
    env = {
        **os.environ,
        "HONE_LOG_LEVEL": "WARNING",
        "HONE_INGEST__CONSUMER_GROUP": f"bench-ingest-{run}",
        "HONE_SCORER__CONSUMER_GROUP": f"bench-scorer-{run}",
        "HONE_TORCHSERVE__MODEL_NAME": model_name,
    }
    bootstrap_servers = env.get("HONE_KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    await start_group_at_end(bootstrap_servers, f"bench-ingest-{run}", [Topic.CAMERA_FRAMES.value])
    await start_group_at_end(
        bootstrap_servers,
        f"bench-scorer-{run}",
        [Topic.IMAGE_RECEIVED.value, Topic.MODEL_PROMOTED.value],
    )
    procs = []
    # Started once, before the event loop has work to do: a blocking Popen costs nothing here.
    for name, port in (("ingest", 18101), ("scorer", 18102)):
        procs.append(
            subprocess.Popen(
                [str(ROOT / ".venv" / "bin" / f"hone-{name}")],
                env={**env, "HONE_HTTP__PORT": str(port)},
                stdout=subprocess.DEVNULL,
                stderr=open(RESULTS / f"pipeline-{name}.log", "w"),
            )
        )
    try:
        async with httpx.AsyncClient() as http:
            for port in (18101, 18102):
                for _ in range(600):
                    with contextlib.suppress(httpx.HTTPError):
                        if (await http.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200:
                            break
                    await asyncio.sleep(0.2)
                else:
                    raise RuntimeError(f"service on {port} never became ready")
        yield {name: proc.pid for name, proc in zip(("ingest", "scorer"), procs, strict=True)}
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=60)


async def stream(
    frames: list[SimFrame], bootstrap_servers: str, rate: float | None, patience: float
) -> dict[str, Any]:
    """Publish frames (at `rate`/s, or all at once) and time each until its image.scored."""
    consumer = AIOKafkaConsumer(
        Topic.IMAGE_SCORED.value,
        bootstrap_servers=bootstrap_servers,
        group_id=None,
        auto_offset_reset="latest",
        enable_auto_commit=False,
    )
    await consumer.start()
    await consumer.seek_to_end()
    for tp in consumer.assignment():
        await consumer.position(tp)
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers,
        acks="all",
        enable_idempotence=True,
        max_batch_size=256 * 1024,
        linger_ms=5,
    )
    await producer.start()
    sent: dict[uuid.UUID, float] = {}
    latencies: list[float] = []
    done: float | None = None

    async def collect() -> None:
        nonlocal done
        while len(latencies) < len(frames):
            batches = await consumer.getmany(timeout_ms=200)
            now = time.perf_counter()
            for records in batches.values():
                for record in records:
                    image_id = uuid.UUID(json.loads(record.value)["payload"]["image_id"])
                    if image_id in sent:
                        latencies.append(now - sent.pop(image_id))
        done = time.perf_counter()

    collector = asyncio.create_task(collect())
    bucket = TokenBucket(rate) if rate else None
    started = time.perf_counter()
    futures = []
    for frame in frames:
        if bucket:
            await bucket.acquire()
        sent[image_id_for(sha256_hex(frame.png))] = time.perf_counter()
        futures.append(
            await producer.send(Topic.CAMERA_FRAMES.value, encode(frame.event), key=frame.event.key)
        )
    await asyncio.gather(*futures)
    published = time.perf_counter()
    try:
        await asyncio.wait_for(collector, patience)
    except TimeoutError:
        collector.cancel()
    await producer.stop()
    await consumer.stop()
    end = done or time.perf_counter()
    return {
        "frames": len(frames),
        "scored": len(latencies),
        "lost_or_late": len(frames) - len(latencies),
        "offered_rate": rate,
        "publish_seconds": round(published - started, 3),
        "seconds": round(end - started, 3),
        "throughput_images_per_second": round(len(latencies) / (end - started), 1),
        "latency_p50_seconds": round(percentile(latencies, 50), 4),
        "latency_p99_seconds": round(percentile(latencies, 99), 4),
    }


def distinct(frames: list[SimFrame]) -> list[SimFrame]:
    seen: set[bytes] = set()
    out = []
    for frame in frames:
        if frame.png not in seen:
            seen.add(frame.png)
            out.append(frame)
    return out


async def main(args: argparse.Namespace) -> dict[str, Any]:
    settings = ServiceSettings()
    RESULTS.mkdir(parents=True, exist_ok=True)
    run = uuid.uuid4().hex[:8]
    name = f"hone-bench-pipeline-{run}"
    data = load_fashion_mnist()
    parts = split(data, seed=0)
    seed = int(run, 16) % 9973
    frames = distinct(
        [enlarge(f, args.frame_size) for f in generate_frames(data, parts, args.frames, seed=seed)]
    )
    later = distinct(
        [
            enlarge(f, args.frame_size)
            for f in generate_frames(data, parts, args.frames, seed=seed + 1)
        ]
    )
    later = [f for f in later if f.png not in {g.png for g in frames}]
    version, artifact = await serve_model(settings, name, args.workers, args.architecture)
    result: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(),
        "command": " ".join(sys.argv),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "load_average_before": os.getloadavg(),
        "model": {
            "name": name,
            "version": version,
            "architecture": args.architecture,
            "frame_size": args.frame_size,
            "frame_bytes_mean": round(sum(len(f.png) for f in frames) / len(frames)),
            "torchserve_workers": args.workers,
        },
    }
    try:
        result["in_process_images_per_second"] = round(
            await in_process_rate(settings, artifact, [f.png for f in frames], args.workers), 1
        )
        async with services(run, name) as procs:
            pids = components(procs)
            before = cpu_snapshot(pids) | {"benchmark": time.process_time()}
            burst = await stream(frames, settings.kafka.bootstrap_servers, None, args.timeout)
            after = cpu_snapshot(pids) | {"benchmark": time.process_time()}
            # Where the CPU went during the burst: milliseconds per scored image by component
            # (the benchmark itself publishes and consumes; it stands in for the cameras).
            scored = max(1, burst["scored"])
            burst["cpu_ms_per_image"] = {
                name: round(1000 * (after[name] - before[name]) / scored, 3) for name in after
            }
            burst["cpu_ms_per_image_total"] = round(sum(burst["cpu_ms_per_image"].values()), 3)
            result["burst"] = burst
            half = burst["throughput_images_per_second"] / 2
            result["half_load"] = await stream(
                later, settings.kafka.bootstrap_servers, half, args.timeout
            )
        result["pipeline_to_in_process_ratio"] = round(
            burst["throughput_images_per_second"] / result["in_process_images_per_second"], 3
        )
    finally:
        client = TorchServeClient(settings.torchserve)
        with contextlib.suppress(Exception):
            await client.unregister(version, model=name)
        await client.aclose()
        result["load_average_after"] = os.getloadavg()
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=3000)
    parser.add_argument("--workers", type=int, default=1, help="TorchServe workers")
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--architecture", default="small-cnn", help="e.g. resnet18")
    parser.add_argument("--frame-size", type=int, default=28, help="28, or e.g. 224 (RGB)")
    parser.add_argument("--out", type=Path, default=RESULTS / "pipeline.json")
    arguments = parser.parse_args()
    outcome = asyncio.run(main(arguments))
    arguments.out.write_text(json.dumps(outcome, indent=2) + "\n")
    print(json.dumps(outcome, indent=2))
