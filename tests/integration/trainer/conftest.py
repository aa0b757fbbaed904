"""Fixtures of the trainer's integration tests: throwaway model names in the real TorchServe
and model bucket, removed afterwards (only what the tests created)."""

from __future__ import annotations

import io
import uuid
from collections.abc import AsyncIterator, Callable

import numpy as np
import numpy.typing as npt
import pytest
from minio import Minio
from PIL import Image

from hone_common.settings import ServiceSettings
from hone_common.torchserve import TorchServeClient, TorchServeError

CLASSES = ["top", "upper", "lower", "bottom"]


def stripes(per_class: int, seed: int = 0) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
    """28x28 noise with a bright band whose height names the class."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(CLASSES)), per_class)
    images = rng.integers(0, 70, (len(labels), 28, 28)).astype(np.uint8)
    for i, label in enumerate(labels):
        images[i, label * 7 : label * 7 + 7, :] += 150
    return images, labels.astype(np.int64)


def png(array: npt.NDArray[np.uint8]) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


async def remove_model(settings: ServiceSettings, name: str) -> None:
    """Unregister every version of a test model (the default last: TorchServe keeps it while
    others exist) and delete its archives from the model bucket."""
    client = TorchServeClient(settings.torchserve)
    try:
        default = await client.default_version(name)
        versions = [str(v["modelVersion"]) for v in await client.describe(name)]
        for version in sorted(versions, key=lambda v: v == default):
            try:
                await client.unregister(version, model=name)
            except TorchServeError as error:
                if error.status != 404:
                    raise
    finally:
        await client.aclose()
    s3 = settings.s3
    minio = Minio(
        s3.endpoint,
        s3.access_key.get_secret_value(),
        s3.secret_key.get_secret_value(),
        secure=s3.secure,
    )
    if minio.bucket_exists(s3.models_bucket):
        for item in minio.list_objects(s3.models_bucket, prefix=f"{name}/", recursive=True):
            minio.remove_object(s3.models_bucket, str(item.object_name))


@pytest.fixture
async def throwaway_model(settings: ServiceSettings) -> AsyncIterator[Callable[[], str]]:
    """Hands out model names nobody else uses; removes them after the test."""
    names: list[str] = []

    def new_name() -> str:
        names.append(f"hone-it-{uuid.uuid4().hex[:10]}")
        return names[-1]

    yield new_name
    for name in names:
        await remove_model(settings, name)
