"""A small learnable stand-in for Fashion-MNIST, written as a data cache, and its world."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.label_efficiency.world import World, build_world
from hone_simulator.data import CLASSES, DedupCounts, write_cache

PER_CLASS = 200


def stripes_dataset(per_class: int = PER_CLASS, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Mid-grey noise with a bright band whose height names the class (10 classes)."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(CLASSES), dtype=np.int64), per_class)
    images = rng.integers(40, 90, size=(len(labels), 28, 28)).astype(np.uint8)
    for i, label in enumerate(labels):
        top = 1 + 2 * int(label) + int(rng.integers(0, 2))
        images[i, top : top + 3, 4:24] = 230
    return images, labels


@pytest.fixture(scope="session")
def data_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache = tmp_path_factory.mktemp("data")
    images, labels = stripes_dataset()
    n = len(labels)
    counts = DedupCounts(raw=n, empty=0, duplicate_groups=0, duplicate_images=0,
                         conflicting_groups=0, dropped_duplicates=0, final=n)  # fmt: skip
    write_cache(cache, images, labels, counts)
    return cache


@pytest.fixture(scope="session")
def world(data_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> World:
    return build_world(
        0, data_cache=data_cache, cache_dir=tmp_path_factory.mktemp("worlds"), test_size=300
    )
