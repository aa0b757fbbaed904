"""Confidence, margin and normalised entropy on vectors whose answers are known by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hone_scorer.uncertainty import uncertainty


def test_a_certain_prediction_has_full_confidence_and_margin_and_no_entropy() -> None:
    u = uncertainty([[0.0, 1.0, 0.0, 0.0]])
    assert u.label.tolist() == [1]
    assert u.confidence.tolist() == [1.0]
    assert u.margin.tolist() == [1.0]
    assert u.entropy.tolist() == [0.0]
    assert u.valid.tolist() == [True]


@pytest.mark.parametrize("classes", [2, 3, 10])
def test_a_uniform_prediction_has_maximal_entropy_one_and_no_margin(classes: int) -> None:
    u = uncertainty([[1.0 / classes] * classes])
    assert u.confidence[0] == pytest.approx(1.0 / classes)
    assert u.margin[0] == pytest.approx(0.0)
    assert u.entropy[0] == pytest.approx(1.0)


def test_known_vector_gives_known_values() -> None:
    u = uncertainty([[0.1, 0.7, 0.2]])
    expected_entropy = -(0.1 * math.log(0.1) + 0.7 * math.log(0.7) + 0.2 * math.log(0.2))
    assert u.label.tolist() == [1]
    assert u.confidence[0] == pytest.approx(0.7)
    assert u.margin[0] == pytest.approx(0.5)
    assert u.entropy[0] == pytest.approx(expected_entropy / math.log(3))


def test_zero_probabilities_count_as_zero_entropy_not_nan() -> None:
    u = uncertainty([[0.0, 0.5, 0.5]])
    assert u.entropy[0] == pytest.approx(math.log(2) / math.log(3))
    assert np.isfinite(u.entropy).all()


def test_a_tie_at_the_top_has_zero_margin_and_picks_the_first_class() -> None:
    u = uncertainty([[0.4, 0.1, 0.4, 0.1]])
    assert u.margin[0] == pytest.approx(0.0)
    assert u.label.tolist() == [0]


def test_float32_rounding_is_tolerated_and_renormalised() -> None:
    row = np.array([0.3, 0.3, 0.4], dtype=np.float32) * np.float32(0.9999)
    u = uncertainty([row])
    assert u.valid.tolist() == [True]
    assert u.probabilities.sum() == pytest.approx(1.0, abs=1e-12)
    assert 0.0 <= u.entropy[0] <= 1.0


@pytest.mark.parametrize(
    "bad_row",
    [
        [float("nan"), 0.5, 0.5],
        [float("inf"), 0.0, 0.0],
        [-0.1, 0.6, 0.5],
        [0.2, 0.2, 0.1],
        [0.0, 0.0, 0.0],
        [1.0, 1.0, 1.0],
    ],
)
def test_rows_that_are_not_distributions_are_invalid_and_leave_the_others_alone(
    bad_row: list[float],
) -> None:
    u = uncertainty([[0.1, 0.7, 0.2], bad_row, [1.0, 0.0, 0.0]])
    assert u.valid.tolist() == [True, False, True]
    assert u.confidence[[0, 2]].tolist() == pytest.approx([0.7, 1.0])
    assert np.isfinite(u.entropy).all()
    assert ((u.entropy >= 0) & (u.entropy <= 1)).all()


def test_rows_are_computed_independently_in_one_call() -> None:
    rng = np.random.default_rng(7)
    matrix = rng.dirichlet(np.ones(10), size=50)
    together = uncertainty(matrix)
    for i, row in enumerate(matrix):
        alone = uncertainty([row])
        assert together.confidence[i] == pytest.approx(alone.confidence[0])
        assert together.margin[i] == pytest.approx(alone.margin[0])
        assert together.entropy[i] == pytest.approx(alone.entropy[0])
        assert together.label[i] == alone.label[0]


@pytest.mark.parametrize("shape", [(3,), (2, 1), (0,), (1, 2, 3)])
def test_anything_but_a_matrix_of_at_least_two_classes_is_refused(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="classes >= 2"):
        uncertainty(np.full(shape, 0.5))
