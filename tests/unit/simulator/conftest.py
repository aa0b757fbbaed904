"""A small synthetic stand-in for Fashion-MNIST, so simulator unit tests need no download."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest

from hone_simulator.data import CLASSES, FashionMnist
from hone_simulator.splits import Split, split

PER_CLASS = 40


def synthetic_dataset(per_class: int = PER_CLASS, seed: int = 0) -> FashionMnist:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(per_class * len(CLASSES), 28, 28), dtype=np.uint8)
    labels = np.repeat(np.arange(len(CLASSES), dtype=np.int64), per_class)
    return FashionMnist(images=images, labels=labels)


def class_file(rows: list[list[int]]) -> bytes:
    """One `{label}.json` in the package's compact layout."""
    return json.dumps({"data": rows}, separators=(",", ":")).encode()


def write_tarball(path: Path, files: dict[int, list[list[int]]]) -> Path:
    """A tarball shaped like the npm package, with the given rows per class."""
    with tarfile.open(path, "w:gz") as archive:
        for label, rows in files.items():
            data = class_file(rows)
            info = tarfile.TarInfo(f"package/src/clothes/{label}.json")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture(scope="session")
def dataset() -> FashionMnist:
    return synthetic_dataset()


@pytest.fixture(scope="session")
def tiny_split(dataset: FashionMnist) -> Split:
    return split(dataset, seed=0, heldout_size=100)
