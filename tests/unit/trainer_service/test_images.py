"""Training images: fetched once and cached by sha256, decoded like the handler does, resized to
the network's input; gone, corrupt or mismatching objects are left out with a reason."""

from __future__ import annotations

import asyncio
import hashlib
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hone_common.storage import ObjectNotFound, ObjectRef
from hone_trainer.images import ImageCache


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


class CountingStore:
    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.gets = 0

    def add(self, data: bytes, key: str | None = None) -> tuple[str, str]:
        sha = hashlib.sha256(data).hexdigest()
        uri = f"s3://hone-images/{key or sha}.png"
        self.objects[uri] = data
        return uri, sha

    async def get(self, ref: ObjectRef) -> bytes:
        self.gets += 1
        if ref.uri not in self.objects:
            raise ObjectNotFound(ref.uri)
        return self.objects[ref.uri]


@pytest.fixture
def store() -> CountingStore:
    return CountingStore()


async def test_a_second_load_reads_the_local_cache_not_the_bucket(
    store: CountingStore, tmp_path: Path
) -> None:
    rng = np.random.default_rng(0)
    images = [store.add(png(rng.integers(0, 255, (28, 28), dtype=np.uint8))) for _ in range(5)]
    cache = ImageCache(store, tmp_path)  # type: ignore[arg-type]
    first = await cache.load(images, 1, (28, 28))
    assert first.fetched == 5
    assert store.gets == 5
    again = await ImageCache(store, tmp_path).load(images, 1, (28, 28))  # type: ignore[arg-type]
    assert again.fetched == 0
    assert store.gets == 5
    assert np.array_equal(first.pixels, again.pixels)
    assert first.pixels.shape == (5, 28, 28, 1)


async def test_images_are_converted_and_resized_to_the_networks_input(
    store: CountingStore, tmp_path: Path
) -> None:
    colour = np.zeros((56, 40, 3), dtype=np.uint8)
    colour[..., 0] = 255
    loaded = await ImageCache(store, tmp_path).load([store.add(png(colour))], 1, (28, 28))  # type: ignore[arg-type]
    assert loaded.pixels.shape == (1, 28, 28, 1)
    assert int(loaded.pixels.mean()) == 76  # luma of pure red, as Pillow's convert("L")


async def test_missing_corrupt_or_mismatching_images_are_left_out_and_the_rest_kept(
    store: CountingStore, tmp_path: Path
) -> None:
    good = store.add(png(np.full((28, 28), 100, dtype=np.uint8)))
    corrupt = store.add(b"\x89PNG not really")
    other = png(np.zeros((28, 28), dtype=np.uint8))
    wrong_bytes = (store.add(other, key="swapped")[0], "f" * 64)
    missing = ("s3://hone-images/gone.png", "e" * 64)
    bad_uri = ("http://elsewhere/x.png", "d" * 64)
    loaded = await ImageCache(store, tmp_path).load(  # type: ignore[arg-type]
        [corrupt, good, wrong_bytes, missing, bad_uri], 1, (28, 28)
    )
    assert loaded.usable == [False, True, False, False, False]
    assert loaded.pixels.shape == (1, 28, 28, 1)
    assert int(loaded.pixels[0].mean()) == 100
    assert "undecodable" in loaded.problems[corrupt[1]]
    assert "does not hold" in loaded.problems["f" * 64]
    assert "ObjectNotFound" in loaded.problems["e" * 64]
    assert not await asyncio.to_thread(lambda: list(tmp_path.rglob("*.tmp")))
