"""Builds a candidate model as the trainer would, for the promotion fault scenario: trains it,
archives it, stores the .mar in the model bucket with a frozen evaluation set beside it, and
prints the `Candidate` payload as JSON. Run as a child process (torch stays out of the tests):

    python -m tests.faults.candidate --parent <version>     # settings from the HONE_ env

The evaluation set and the training seed share one rule (class k is a bright band at row 2k);
the production model the fault tier bootstraps was trained on shuffled labels, so this
candidate is clearly, significantly better and the gatekeeper promotes it.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import io
import json
import tempfile
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image

from hone_common.events import Candidate, OfflineMetrics, TrainingSnapshot
from hone_common.settings import ServiceSettings
from hone_common.storage import ObjectRef, ObjectStore, sha256_hex
from hone_trainer.model.archive import allocate_version, build_archive, store_archive
from hone_trainer.model.training import TrainConfig, train
from tests.faults.pipeline import CLASSES

EVALUATION_PER_CLASS = 24


def banded(per_class: int, seed: int) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(CLASSES)), per_class)
    images = rng.integers(0, 60, size=(len(labels), 28, 28), dtype=np.uint8)
    for i, label in enumerate(labels):
        images[i, 2 * label : 2 * label + 3, :] = 255
    return images, labels


def png(pixels: npt.NDArray[np.uint8]) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


async def build(parent: str | None, seed: int) -> Candidate:
    settings = ServiceSettings()
    store = ObjectStore(settings.s3)
    model, bucket = settings.torchserve.model_name, settings.s3.models_bucket
    images, labels = banded(6, seed)
    trained = await asyncio.to_thread(
        train,
        images,
        labels,
        CLASSES,
        TrainConfig(epochs=2, augmentation="none", threads=1, progress=False, seed=seed),
    )
    version = await allocate_version(store, bucket, model)
    with tempfile.TemporaryDirectory(prefix="hone-faults-") as tmp:
        mar = await asyncio.to_thread(build_archive, trained, model, version, Path(tmp))
        artifact = await store_archive(store, mar, bucket, model, version)
    lines = []
    test_images, test_labels = banded(EVALUATION_PER_CLASS, seed + 1)
    await store.ensure_bucket(settings.s3.images_bucket)
    for pixels, label in zip(test_images, test_labels, strict=True):
        data = png(pixels)
        digest = sha256_hex(data)
        ref = ObjectRef(settings.s3.images_bucket, f"evaluation/{digest}.png")
        await store.put(ref, data, "image/png")
        lines.append(
            json.dumps(
                {"image_id": digest, "uri": ref.uri, "label": CLASSES[label], "camera_id": "cam-0"}
            )
        )
    manifest = ObjectRef(bucket, f"{model}/{version}.evaluation.jsonl")
    await store.put(manifest, "\n".join(lines).encode(), "application/x-ndjson")
    return Candidate(
        model_version=version,
        parent_version=parent,
        artifact_uri=artifact.uri,
        evaluation_set_uri=manifest.uri,
        classes=CLASSES,
        snapshot=TrainingSnapshot(
            examples_sha256=hashlib.sha256(images.tobytes()).hexdigest(),
            examples=len(labels),
            per_class={c: int((labels == i).sum()) for i, c in enumerate(CLASSES)},
        ),
        metrics=OfflineMetrics(accuracy=1.0, macro_f1=1.0, evaluated_on=0),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--parent", default=None)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    print(asyncio.run(build(args.parent, args.seed)).model_dump_json())


if __name__ == "__main__":
    main()
