"""Seeded splits: deterministic, disjoint, stratified; seed sets from the pool; npz export."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hone_simulator.data import CLASSES, FashionMnist
from hone_simulator.splits import Split, export_npz, split
from tests.unit.simulator.conftest import PER_CLASS, synthetic_dataset


def test_the_same_seed_gives_the_same_split(dataset: FashionMnist) -> None:
    a, b = split(dataset, seed=3, heldout_size=100), split(dataset, seed=3, heldout_size=100)
    assert np.array_equal(a.pool, b.pool)
    assert np.array_equal(a.heldout, b.heldout)
    assert np.array_equal(a.seed_set(5), b.seed_set(5))


def test_another_seed_gives_another_split(dataset: FashionMnist) -> None:
    a, b = split(dataset, seed=3, heldout_size=100), split(dataset, seed=4, heldout_size=100)
    assert not np.array_equal(a.heldout, b.heldout)
    assert not np.array_equal(a.seed_set(5), b.seed_set(5))


def test_pool_and_heldout_are_disjoint_and_cover_the_data(tiny_split: Split) -> None:
    assert len(np.intersect1d(tiny_split.pool, tiny_split.heldout)) == 0
    together = np.sort(np.concatenate([tiny_split.pool, tiny_split.heldout]))
    assert together.tolist() == list(range(PER_CLASS * len(CLASSES)))
    assert len(tiny_split.heldout) == 100


def test_heldout_is_stratified_by_class(dataset: FashionMnist, tiny_split: Split) -> None:
    per_class = np.bincount(dataset.labels[tiny_split.heldout], minlength=len(CLASSES))
    assert per_class.tolist() == [10] * len(CLASSES)


def test_heldout_quotas_follow_uneven_class_sizes_and_sum_exactly() -> None:
    labels = np.array([0] * 50 + [1] * 30 + [2] * 20, dtype=np.int64)
    uneven = FashionMnist(images=np.zeros((100, 28, 28), np.uint8), labels=labels)
    held = split(uneven, seed=0, heldout_size=11).heldout
    # 11 * (0.5, 0.3, 0.2) = (5.5, 3.3, 2.2): floors 5, 3, 2, the spare one to the largest rest
    assert np.bincount(labels[held]).tolist() == [6, 3, 2]


def test_seed_set_has_per_class_images_all_from_the_pool(
    dataset: FashionMnist, tiny_split: Split
) -> None:
    seed_set = tiny_split.seed_set(per_class=4)
    assert np.bincount(dataset.labels[seed_set]).tolist() == [4] * len(CLASSES)
    assert np.isin(seed_set, tiny_split.pool).all()
    assert not np.isin(seed_set, tiny_split.heldout).any()


def test_a_larger_seed_set_contains_the_smaller_one(tiny_split: Split) -> None:
    assert np.isin(tiny_split.seed_set(3), tiny_split.seed_set(8)).all()


def test_a_seed_set_larger_than_the_pool_allows_is_refused(tiny_split: Split) -> None:
    with pytest.raises(ValueError, match="fewer than"):
        tiny_split.seed_set(per_class=PER_CLASS)
    with pytest.raises(ValueError, match=">= 0"):
        tiny_split.seed_set(per_class=-1)


@pytest.mark.parametrize("size", [-1, 10_000])
def test_an_impossible_heldout_size_is_refused(dataset: FashionMnist, size: int) -> None:
    with pytest.raises(ValueError, match="heldout_size"):
        split(dataset, heldout_size=size)


def test_split_by_name(tiny_split: Split) -> None:
    assert tiny_split.ids("pool") is tiny_split.pool
    assert tiny_split.ids("heldout") is tiny_split.heldout
    assert np.array_equal(tiny_split.ids("seed", 2), tiny_split.seed_set(2))


def test_export_writes_what_the_trainer_reads(tmp_path: Path) -> None:
    dataset = synthetic_dataset()
    ids = split(dataset, seed=0, heldout_size=100).seed_set(3)
    out = export_npz(dataset, ids, tmp_path / "sub" / "seed.npz")

    with np.load(out, allow_pickle=False) as npz:
        assert set(npz.files) == {"images", "labels", "classes", "ids"}
        assert npz["ids"].dtype == np.int64
        assert npz["ids"].tolist() == ids.tolist()
        assert np.array_equal(npz["images"], dataset.images[ids])
        assert npz["images"].shape == (30, 28, 28)
        assert npz["labels"].tolist() == dataset.labels[ids].tolist()
        assert npz["classes"].tolist() == list(CLASSES)
