"""Time of one trainer run against dataset size: Fashion-MNIST training sets of 200, 500, 1,000
and 2,000 labelled images, the small CNN and the service's default settings (TrainConfig(),
WeaknessSettings()), each step of the run's compute part timed on its own: the candidate's
training, its validation metrics, the weakness model (3 fold models + fit) and the .mar.

With the local stack up it also times loading the largest set's images from MinIO, once cold
(fetch + decode + cache) and once warm (the local cache only), as a run does.

    set -a; . .local-stack/hone.env; set +a
    .venv/bin/python bench/training_time.py [--sizes 200 500 1000 2000] [--skip-minio]

Writes bench/results/training_time.json. The machine is shared: the load average before and
after each size is recorded with the numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from minio import Minio
from PIL import Image

from hone_common.settings import ServiceSettings
from hone_common.storage import ObjectRef, ObjectStore, sha256_hex
from hone_simulator.data import load_fashion_mnist
from hone_simulator.splits import split
from hone_trainer.images import ImageCache
from hone_trainer.job import ImageSet, TrainingJob, failure_model, validation_metrics
from hone_trainer.model.archive import build_archive
from hone_trainer.model.training import TrainConfig, evaluate, train
from hone_trainer.settings import WeaknessSettings
from hone_trainer.weakness import Context

RESULTS = Path(__file__).parent / "results"
CAMERAS = ("cam-1", "cam-2", "cam-3")


def image_set(
    images: np.ndarray, labels: np.ndarray, classes: tuple[str, ...], role: str
) -> ImageSet:
    rng = np.random.default_rng(0)
    n = len(labels)
    ids = [str(uuid.uuid5(uuid.NAMESPACE_OID, f"{role}-{i}")) for i in range(n)]
    return ImageSet(
        ids,
        images[..., None],
        [classes[i] for i in labels],
        np.ones(n, dtype=np.float32),
        np.ones(n, dtype=bool),
        [
            Context(ids[i], CAMERAS[i % 3], float(rng.integers(0, 1440)) / 60, 0.4, 0.2, 5.0)
            for i in range(n)
        ],
    )


def timed(fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - started


def one_run(size: int, work: Path) -> dict[str, Any]:
    data = load_fashion_mnist()
    parts = split(data, seed=0)
    ids = parts.seed_set(per_class=size // len(data.classes))
    held = parts.ids("heldout")
    # A weakness split of a seventh of the training size, as with 70/10 shares.
    rest = np.setdiff1d(parts.pool, ids)
    weak_ids = np.random.default_rng(1).choice(rest, size // 7, replace=False)
    config = TrainConfig(progress=False)
    settings = WeaknessSettings()
    train_set = image_set(data.images[ids], data.labels[ids], data.classes, "train")
    job = TrainingJob(
        run_id="bench",
        model_name="hone-bench",
        model_version="20260101.000000",
        classes=list(data.classes),
        config=config,
        weakness=settings,
        train=train_set,
        weakness_split=image_set(
            data.images[weak_ids], data.labels[weak_ids], data.classes, "weak"
        ),
        flagged=image_set(data.images[:0], data.labels[:0], data.classes, "flagged"),
        work_dir=work,
    )
    load_before = os.getloadavg()[0]
    model, train_s = timed(
        train, train_set.pixels, train_set.labels, job.classes, config, weights=train_set.weights
    )
    metrics, metrics_s = timed(validation_metrics, model, train_set, config)
    weakness, weakness_s = timed(failure_model, model, job)
    _, archive_s = timed(build_archive, model, job.model_name, job.model_version, work)
    heldout = evaluate(model, data.images[held], data.labels[held])
    report = weakness.report
    return {
        "labelled_images": len(ids),
        "seconds_total": round(train_s + metrics_s + weakness_s + archive_s, 2),
        "seconds_train": round(train_s, 2),
        "seconds_validation_metrics": round(metrics_s, 2),
        "seconds_weakness_model": round(weakness_s, 2),
        "seconds_archive": round(archive_s, 2),
        "epochs_run": len(model.history),
        "best_epoch": model.best_epoch,
        "validation_accuracy": round(metrics.accuracy, 4),
        "validation_examples": metrics.evaluated_on,
        "heldout_accuracy": round(heldout.accuracy, 4),
        "heldout_images": len(held),
        "weakness_rows": report.get("rows"),
        "weakness_failures": report.get("failures"),
        "weakness_holdout": report.get("holdout"),
        "weakness_skipped": report.get("skipped"),
        "load_average_before": round(load_before, 2),
        "load_average_after": round(os.getloadavg()[0], 2),
    }


async def image_loading(count: int) -> dict[str, Any]:
    """Upload `count` PNGs, load them cold (fetch + decode + cache) and warm (cache only)."""
    settings = ServiceSettings()
    store = ObjectStore(settings.s3)
    data = load_fashion_mnist()
    prefix = f"bench-training-time/{uuid.uuid4().hex[:8]}"
    refs: list[tuple[str, str]] = []
    await store.ensure_bucket(settings.s3.images_bucket)
    for pixels in data.images[:count]:
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="PNG")
        body = buffer.getvalue()
        sha = sha256_hex(body)
        ref = ObjectRef(settings.s3.images_bucket, f"{prefix}/{sha}.png")
        await store.put(ref, body, "image/png")
        refs.append((ref.uri, sha))
    try:
        with tempfile.TemporaryDirectory() as tmp:
            cache = ImageCache(store, Path(tmp))
            started = time.perf_counter()
            cold = await cache.load(refs, 1, (28, 28))
            cold_s = time.perf_counter() - started
            started = time.perf_counter()
            warm = await cache.load(refs, 1, (28, 28))
            warm_s = time.perf_counter() - started
        assert cold.fetched == len(set(refs))
        assert warm.fetched == 0
        return {
            "images": count,
            "cold_seconds": round(cold_s, 2),
            "cold_images_per_second": round(count / cold_s),
            "warm_seconds": round(warm_s, 2),
            "warm_images_per_second": round(count / warm_s),
        }
    finally:
        s3 = settings.s3
        minio = Minio(
            s3.endpoint,
            s3.access_key.get_secret_value(),
            s3.secret_key.get_secret_value(),
            secure=s3.secure,
        )
        for item in minio.list_objects(s3.images_bucket, prefix=f"{prefix}/", recursive=True):
            minio.remove_object(s3.images_bucket, str(item.object_name))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[200, 500, 1000, 2000])
    parser.add_argument("--skip-minio", action="store_true")
    args = parser.parse_args()
    runs = []
    with tempfile.TemporaryDirectory(prefix="hone-bench-") as tmp:
        for size in args.sizes:
            run = one_run(size, Path(tmp))
            print(json.dumps(run), flush=True)
            runs.append(run)
    loading = None if args.skip_minio else asyncio.run(image_loading(max(args.sizes)))
    result = {
        "what": "one trainer run's compute part vs training-set size (small CNN, defaults)",
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "config": {
            "train": TrainConfig(progress=False).model_dump(mode="json"),
            "weakness": WeaknessSettings().model_dump(mode="json"),
        },
        "runs": runs,
        "image_loading": loading,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "training_time.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(loading))


if __name__ == "__main__":
    main()
