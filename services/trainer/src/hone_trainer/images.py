"""Training images from the image bucket, decoded once and cached on local disk by sha256, so
repeated runs read a small .npy instead of fetching and decoding again.

Images are decoded by the handler's own `decode_image` and resized by `conform`, so the model
trains on the pixels TorchServe will feed it. An image that is gone or undecodable is left out
of the run and reported; a store that does not answer fails the run (it is retried later).
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import structlog
import torch
from minio.error import S3Error

from hone_common.storage import ObjectNotFound, ObjectRef, ObjectStore, sha256_hex
from hone_trainer.model.architectures import conform
from hone_trainer.model.handler import decode_image

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Loaded:
    pixels: npt.NDArray[np.uint8]
    """(N, H, W, C) uint8 for the images that loaded, in request order."""
    usable: list[bool]
    problems: dict[str, str]
    """sha256 -> why the image was left out."""
    fetched: int
    """Images that came from the bucket rather than the cache."""


class ImageCache:
    def __init__(self, store: ObjectStore, directory: Path, concurrency: int = 16) -> None:
        self._store = store
        self._directory = directory
        self._limit = asyncio.Semaphore(concurrency)

    def path(self, sha256: str, channels: int) -> Path:
        return self._directory / sha256[:2] / f"{sha256}.c{channels}.npy"

    async def load(
        self, images: Sequence[tuple[str, str]], channels: int, size: tuple[int, int]
    ) -> Loaded:
        """(uri, sha256) pairs -> pixels at the network's channels and size."""
        results = await asyncio.gather(*(self._one(uri, sha, channels) for uri, sha in images))
        problems: dict[str, str] = {}
        arrays: list[npt.NDArray[np.uint8]] = []
        usable: list[bool] = []
        fetched = 0
        for (_, sha), (array, problem, was_fetched) in zip(images, results, strict=True):
            fetched += was_fetched
            if array is None:
                problems[sha] = problem or "unusable"
                usable.append(False)
            else:
                arrays.append(array)
                usable.append(True)
        pixels = await asyncio.to_thread(_conform_all, arrays, channels, size)
        if problems:
            log.warning("images_left_out", count=len(problems), first=next(iter(problems.values())))
        return Loaded(pixels, usable, problems, fetched)

    async def _one(
        self, uri: str, sha256: str, channels: int
    ) -> tuple[npt.NDArray[np.uint8] | None, str | None, bool]:
        path = self.path(sha256, channels)
        cached = await asyncio.to_thread(_read, path)
        if cached is not None:
            return cached, None, False
        try:
            ref = ObjectRef.parse(uri)
            async with self._limit:
                data = await self._store.get(ref)
        except (ObjectNotFound, ValueError) as error:
            return None, f"{type(error).__name__}: {error}", True
        except S3Error as error:
            if error.code in ("AccessDenied", "NoSuchKey", "NoSuchBucket"):
                return None, f"{error.code}: {uri}", True
            raise
        if sha256_hex(data) != sha256:
            return None, f"{uri} does not hold the image with sha256 {sha256}", True
        try:
            array = await asyncio.to_thread(_decode_and_keep, data, channels, path)
        except Exception as error:  # Pillow raises many types for bad bytes
            return None, f"undecodable: {type(error).__name__}: {str(error)[:200]}", True
        return array, None, True


def _read(path: Path) -> npt.NDArray[np.uint8] | None:
    try:
        array: npt.NDArray[Any] = np.load(path, allow_pickle=False)
    except (FileNotFoundError, ValueError, OSError):
        return None
    return array.astype(np.uint8, copy=False)


def _decode_and_keep(data: bytes, channels: int, path: Path) -> npt.NDArray[np.uint8]:
    array = decode_image(data, channels)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written aside then renamed: a reader never sees half a file, even with two runs at once.
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            np.save(out, array, allow_pickle=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return array


def _conform_all(
    arrays: list[npt.NDArray[np.uint8]], channels: int, size: tuple[int, int]
) -> npt.NDArray[np.uint8]:
    out = np.zeros((len(arrays), size[0], size[1], channels), dtype=np.uint8)
    for i, array in enumerate(arrays):
        tensor = torch.from_numpy(np.array(array))  # a writable copy: decoded arrays are not
        tensor = tensor.unsqueeze(0) if tensor.ndim == 2 else tensor.permute(2, 0, 1)
        out[i] = conform(tensor.unsqueeze(0), channels, size)[0].permute(1, 2, 0).numpy()
    return out
