"""Labelled arrays as the trainer receives them: accepted layouts, labels, validation split."""

from __future__ import annotations

import numpy as np
import pytest

from hone_trainer.model.data import as_image_tensor, as_label_indices, validation_split


@pytest.mark.parametrize(
    ("shape", "expected"),
    [
        ((5, 28, 28), (5, 1, 28, 28)),
        ((5, 784), (5, 1, 28, 28)),
        ((5, 32, 24, 3), (5, 3, 32, 24)),
        ((5, 28, 28, 1), (5, 1, 28, 28)),
    ],
)
def test_accepted_layouts_become_uint8_nchw(
    shape: tuple[int, ...], expected: tuple[int, ...]
) -> None:
    tensor = as_image_tensor(np.full(shape, 9, dtype=np.int64))
    assert tuple(tensor.shape) == expected
    assert str(tensor.dtype) == "torch.uint8"


def test_the_layout_keeps_pixels_in_place() -> None:
    rgb = np.arange(2 * 3 * 4 * 3).reshape(2, 3, 4, 3).astype(np.uint8)
    tensor = as_image_tensor(rgb)
    assert tensor[1, 2, 0, 3] == rgb[1, 0, 3, 2]


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros((2, 780), dtype=np.uint8), "square"),
        (np.zeros((2, 28, 28), dtype=np.float32), "integer pixels"),
        (np.full((2, 28, 28), 256, dtype=np.int64), "0..255"),
        (np.full((2, 28, 28), -1, dtype=np.int64), "0..255"),
        (np.zeros((2, 3, 28, 28), dtype=np.uint8), "expected"),
        (np.zeros(5, dtype=np.uint8), "expected"),
    ],
)
def test_other_image_arrays_are_refused_with_a_reason(array: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        as_image_tensor(array)


def test_labels_may_be_indices_or_class_names() -> None:
    classes = ["cat", "dog", "eel"]
    assert as_label_indices(np.array([2, 0]), classes).tolist() == [2, 0]
    assert as_label_indices(np.array(["dog", "eel"]), classes).tolist() == [1, 2]


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (np.array(["dog", "fox"]), "unknown classes"),
        (np.array([0, 3]), r"0\.\.2"),
        (np.array([-1]), r"0\.\.2"),
        (np.array([0.5]), "indices or names"),
        (np.zeros((2, 2), dtype=np.int64), "one-dimensional"),
    ],
)
def test_bad_labels_are_refused(labels: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        as_label_indices(labels, ["cat", "dog", "eel"])


def test_the_validation_split_is_disjoint_complete_and_per_class() -> None:
    labels = np.array([0] * 20 + [1] * 10 + [2] * 2, dtype=np.int64)
    train, held = validation_split(labels, 0.2, seed=3)
    assert set(train).isdisjoint(held)
    assert sorted([*train, *held]) == list(range(len(labels)))
    assert np.bincount(labels[held], minlength=3).tolist() == [4, 2, 0]


def test_a_class_with_fewer_than_three_examples_keeps_them_all_for_training() -> None:
    labels = np.array([0, 0, 1, 1, 1, 1, 1, 1], dtype=np.int64)
    train, held = validation_split(labels, 0.5, seed=0)
    assert set(np.flatnonzero(labels == 0)) <= set(train)
    assert len(held) == 3


def test_the_validation_split_depends_only_on_the_seed() -> None:
    labels = np.repeat(np.arange(4), 25).astype(np.int64)
    first = validation_split(labels, 0.2, seed=5)
    again = validation_split(labels, 0.2, seed=5)
    other = validation_split(labels, 0.2, seed=6)
    assert first[1].tolist() == again[1].tolist()
    assert first[1].tolist() != other[1].tolist()
