"""Model versions and TorchServe archives (.mar): build one from a trained model, store it in
the model bucket under `<model_name>/<model_version>.mar`, never overwriting a version.

Model versions are UTC timestamps `YYYYMMDD.HHMMSS` (e.g. `20260301.142530`): sortable as text
and as numbers, readable, unique per model name (`allocate_version` moves on a second while one
is taken). TorchServe 0.12 parses every model version as a positive decimal number (a version
such as `v0001-ab12cd` is refused), so versions carry no letters; 14 digits stay exact in a
double.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

import torch

from hone_common.storage import ObjectRef
from hone_trainer.model.handler import CONFIG_FILE, WEIGHTS_FILE, ModelConfig
from hone_trainer.model.training import TrainedModel

VERSION_FORMAT = "%Y%m%d.%H%M%S"
MODEL_DIR = Path(__file__).parent
ARCHIVER = "from model_archiver.model_packaging import generate_model_archive as g; g()"
MANIFEST = "MAR-INF/MANIFEST.json"
ARCHIVE_FILES = ("handler.py", "architectures.py", WEIGHTS_FILE, CONFIG_FILE, MANIFEST)


class ArchiveStore(Protocol):
    """The part of `hone_common.storage.ObjectStore` archives need."""

    async def exists(self, ref: ObjectRef) -> bool: ...

    async def ensure_bucket(self, bucket: str) -> None: ...

    async def put(
        self,
        ref: ObjectRef,
        data: bytes,
        content_type: str = "application/octet-stream",
        metadata: dict[str, str] | None = None,
    ) -> ObjectRef: ...


class ArtifactExists(FileExistsError):
    """A model version's archive is already stored; artifacts are never overwritten."""


def new_model_version(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).astimezone(UTC).strftime(VERSION_FORMAT)


def version_time(model_version: str) -> datetime:
    """The UTC moment a version names; ValueError for anything not `YYYYMMDD.HHMMSS`."""
    try:
        return datetime.strptime(model_version, VERSION_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        raise ValueError(
            f"model version {model_version!r} is not a UTC timestamp YYYYMMDD.HHMMSS"
        ) from None


def archive_ref(bucket: str, model_name: str, model_version: str) -> ObjectRef:
    version_time(model_version)  # refuses a malformed version before it names an object
    return ObjectRef(bucket, f"{model_name}/{model_version}.mar")


async def allocate_version(
    store: ArchiveStore, bucket: str, model_name: str, now: datetime | None = None
) -> str:
    """A version no stored archive of `model_name` uses yet: now, or the next free second."""
    moment = (now or datetime.now(UTC)).replace(microsecond=0)
    for _ in range(60):
        version = new_model_version(moment)
        if not await store.exists(archive_ref(bucket, model_name, version)):
            return version
        moment += timedelta(seconds=1)
    raise ArtifactExists(f"no free version for {model_name} within a minute of {moment}")


def model_config(trained: TrainedModel, model_version: str) -> ModelConfig:
    return ModelConfig(
        architecture=trained.architecture,
        classes=list(trained.classes),
        model_version=model_version,
        input_size=trained.input_size,
        channels=trained.channels,
        mean=trained.mean,
        std=trained.std,
    )


def build_archive(
    trained: TrainedModel, model_name: str, model_version: str, out_dir: Path
) -> Path:
    """Write `<out_dir>/<model_name>.mar` with torch-model-archiver and return its path."""
    version_time(model_version)
    with tempfile.TemporaryDirectory(prefix="hone-mar-") as tmp:
        staging = Path(tmp)
        shutil.copy(MODEL_DIR / "handler.py", staging / "handler.py")
        shutil.copy(MODEL_DIR / "architectures.py", staging / "architectures.py")
        torch.save(trained.state_dict(), staging / WEIGHTS_FILE)
        (staging / CONFIG_FILE).write_text(model_config(trained, model_version).to_json())
        out_dir.mkdir(parents=True, exist_ok=True)
        args = [
            "--model-name", model_name,
            "--version", model_version,
            "--handler", "handler.py",
            "--model-file", "architectures.py",
            "--serialized-file", WEIGHTS_FILE,
            "--extra-files", CONFIG_FILE,
            "--archive-format", "default",
            "--export-path", str(out_dir.resolve()),
            "--force",
        ]  # fmt: skip
        # A child process with its own TMPDIR: the archiver stages files in
        # `$TMPDIR/<model_name>` and deletes that folder first, which would clash with any
        # other archive of the same name being built on this machine at the same moment.
        done = subprocess.run(  # noqa: S603 - fixed interpreter and arguments
            [sys.executable, "-c", ARCHIVER, *args],
            cwd=staging,
            env={**os.environ, "TMPDIR": str(staging)},
            capture_output=True,
            text=True,
            check=False,
        )
        mar = out_dir / f"{model_name}.mar"
        if done.returncode != 0 or not mar.exists():
            raise RuntimeError(f"torch-model-archiver failed: {done.stderr.strip()[-2000:]}")
    missing = set(ARCHIVE_FILES) - set(zipfile.ZipFile(mar).namelist())
    if missing:
        raise RuntimeError(f"{mar} lacks {sorted(missing)}")
    return mar


async def store_archive(
    store: ArchiveStore, mar: Path, bucket: str, model_name: str, model_version: str
) -> ObjectRef:
    """Upload the archive as `<model_name>/<model_version>.mar`; `ArtifactExists` if taken.

    Checking then writing leaves a narrow race between two writers of the same model name;
    one trainer process writes each model name, so the check is what stops mistakes."""
    ref = archive_ref(bucket, model_name, model_version)
    if await store.exists(ref):
        raise ArtifactExists(f"{ref.uri} already exists")
    data = await asyncio.to_thread(mar.read_bytes)
    await store.ensure_bucket(bucket)
    await store.put(
        ref,
        data,
        content_type="application/zip",
        metadata={"hone-model-name": model_name, "hone-model-version": model_version},
    )
    return ref
