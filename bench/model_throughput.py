"""The classifier's speed on this machine: training time on Fashion-MNIST seed sets, in-process
inference of the small CNN, and TorchServe through `TorchServeClient.predict` with 1 and with
32-64 images per request. Registers a model of its own (`hone-bench-<hex>`), removes it after.

    set -a; . .local-stack/hone.env; set +a
    .venv/bin/python bench/model_throughput.py [--images 1024] [--skip-torchserve]
        [--ts-batch-size 8 --ts-max-batch-delay-ms 5] [--out bench/results/x.json]

Writes bench/results/model_throughput.json by default. The machine is shared: the load average
before and after is recorded with the numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import platform
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from minio import Minio
from PIL import Image

from hone_common.settings import ServiceSettings
from hone_common.storage import ObjectStore
from hone_common.torchserve import TorchServeClient
from hone_simulator.data import load_fashion_mnist
from hone_simulator.splits import split
from hone_trainer.model.archive import allocate_version, build_archive, model_config, store_archive
from hone_trainer.model.handler import ImageClassifier
from hone_trainer.model.serving import ServingOptions, register_version
from hone_trainer.model.training import TrainConfig, TrainedModel, evaluate, train

RESULTS = Path(__file__).parent / "results"


def png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def training_runs(sizes: list[int]) -> tuple[list[dict[str, Any]], TrainedModel, np.ndarray]:
    data = load_fashion_mnist()
    parts = split(data, seed=0)
    held = parts.ids("heldout")
    runs, first = [], None
    for per_class in sizes:
        ids = parts.seed_set(per_class=per_class)
        config = TrainConfig(progress=False)
        started = time.perf_counter()
        model = train(data.images[ids], data.labels[ids], data.classes, config)
        seconds = time.perf_counter() - started
        draws = max(model.train_examples, config.min_samples_per_epoch)  # drawn per epoch
        metrics = evaluate(model, data.images[held], data.labels[held])
        runs.append(
            {
                "labelled_images": len(ids),
                "seconds": round(seconds, 2),
                "epochs_run": len(model.history),
                "best_epoch": model.best_epoch,
                "training_images_per_second": round(draws * len(model.history) / seconds),
                "heldout_images": len(held),
                "heldout_accuracy": round(metrics.accuracy, 4),
                "heldout_macro_f1": round(metrics.macro_f1, 4),
                "heldout_ece": round(metrics.expected_calibration_error, 4),
                "config": config.model_dump(mode="json"),
            }
        )
        first = first or model
    assert first is not None
    return runs, first, data.images[held]


def in_process(model: TrainedModel, images: np.ndarray, count: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    batch = torch.from_numpy(images[:64].copy()).unsqueeze(1)
    x = (batch.float() / 255 - model.mean[0]) / model.std[0]
    model.network.eval()
    for threads in (1, 2):
        torch.set_num_threads(threads)
        with torch.inference_mode():
            model.network(x)
            started = time.perf_counter()
            for _ in range(count // 64):
                model.network(x)
            out[f"network_batch64_threads{threads}"] = round(
                64 * (count // 64) / (time.perf_counter() - started)
            )
    torch.set_num_threads(1)
    classifier = ImageClassifier(model.network, model_config(model, "20000101.000000"))
    body = {"instances": [{"b64": base64.b64encode(png(i)).decode()} for i in images[:64]]}
    started = time.perf_counter()
    for _ in range(count // 64):
        classifier.answer([body])
    out["handler_decode_and_forward_64_per_request_threads1"] = round(
        64 * (count // 64) / (time.perf_counter() - started)
    )
    return out


async def timed(
    calls: int, concurrency: int, call: Callable[[], Awaitable[Any]]
) -> tuple[float, list[float]]:
    latencies: list[float] = []
    queue = list(range(calls))

    async def worker() -> None:
        while queue:
            queue.pop()
            began = time.perf_counter()
            await call()
            latencies.append(time.perf_counter() - began)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started, latencies


async def through_torchserve(
    model: TrainedModel, images: np.ndarray, count: int, options: ServingOptions
) -> dict[str, Any]:
    settings = ServiceSettings()
    store, client = ObjectStore(settings.s3), TorchServeClient(settings.torchserve)
    name, bucket = f"hone-bench-{uuid.uuid4().hex[:8]}", settings.s3.models_bucket
    out: dict[str, Any] = {"model_name": name, "serving_options": options.__dict__}
    try:
        version = await allocate_version(store, bucket, name)
        with tempfile.TemporaryDirectory() as tmp:
            mar = build_archive(model, name, version, Path(tmp))
            ref = await store_archive(store, mar, bucket, name, version)
        started = time.perf_counter()
        await register_version(
            client, store, ref, model_name=name, model_version=version, options=options
        )
        out["register_seconds"] = round(time.perf_counter() - started, 2)
        pngs = [png(i) for i in images[:64]]
        await client.predict(pngs[:1], model=name)  # warm-up
        for per_request, concurrency in ((1, 1), (1, 8), (32, 1), (64, 1), (64, 2)):
            calls = max(count // per_request, 8)

            async def call(n: int = per_request) -> None:
                await client.predict(pngs[:n], model=name)

            seconds, latencies = await timed(calls, concurrency, call)
            quantiles = statistics.quantiles(latencies, n=20)
            out[f"{per_request}_per_request_concurrency{concurrency}"] = {
                "requests": calls,
                "images_per_second": round(calls * per_request / seconds),
                "latency_ms_p50": round(statistics.median(latencies) * 1000, 1),
                "latency_ms_p95": round(quantiles[18] * 1000, 1),
            }
    finally:
        for entry in await client.describe(name):
            await client.unregister(str(entry["modelVersion"]), model=name)
        await client.aclose()
        s3 = settings.s3
        minio = Minio(
            s3.endpoint,
            s3.access_key.get_secret_value(),
            s3.secret_key.get_secret_value(),
            secure=s3.secure,
        )
        for item in minio.list_objects(bucket, prefix=f"{name}/", recursive=True):
            minio.remove_object(bucket, str(item.object_name))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1024, help="images per measurement")
    parser.add_argument("--train-per-class", type=int, nargs="+", default=[20, 200])
    parser.add_argument("--skip-torchserve", action="store_true")
    parser.add_argument("--ts-batch-size", type=int, default=ServingOptions.batch_size)
    parser.add_argument(
        "--ts-max-batch-delay-ms", type=int, default=ServingOptions.max_batch_delay_ms
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "model_throughput.json")
    args = parser.parse_args()

    report: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "torch": torch.__version__,
        "load_average_before": os.getloadavg(),
    }
    runs, model, held = training_runs(args.train_per_class)
    report["training"] = runs
    report["in_process_images_per_second"] = in_process(model, held, args.images)
    if not args.skip_torchserve:
        report["torchserve"] = asyncio.run(
            through_torchserve(
                model,
                held,
                args.images,
                ServingOptions(args.ts_batch_size, args.ts_max_batch_delay_ms),
            )
        )
    report["load_average_after"] = os.getloadavg()
    out: Path = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
