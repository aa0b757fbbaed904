"""Classification metrics computed from probabilities, checked against hand-counted cases."""

from __future__ import annotations

import numpy as np
import pytest

from hone_common.events import OfflineMetrics
from hone_trainer.model.metrics import classification_metrics, expected_calibration_error

CLASSES = ["a", "b", "c"]


def one_hot(predicted: list[int], confidence: float = 0.9) -> np.ndarray:
    rows = np.full((len(predicted), 3), (1 - confidence) / 2)
    rows[np.arange(len(predicted)), predicted] = confidence
    return rows


def test_accuracy_per_class_scores_and_macro_f1_match_a_hand_count() -> None:
    targets = np.array([0, 0, 0, 1, 1, 2])
    predicted = [0, 0, 1, 1, 2, 2]
    metrics = classification_metrics(one_hot(predicted), targets, CLASSES)
    assert metrics.accuracy == pytest.approx(4 / 6)
    a, b, c = (metrics.per_class[name] for name in CLASSES)
    assert (a.precision, a.support) == (1.0, 3)
    assert a.recall == pytest.approx(2 / 3)
    assert (b.precision, b.recall) == (0.5, 0.5)
    assert (c.precision, c.recall) == (0.5, 1.0)
    f1 = [0.8, 0.5, 2 / 3]
    assert [s.f1 for s in (a, b, c)] == pytest.approx(f1)
    assert metrics.macro_f1 == pytest.approx(sum(f1) / 3)
    assert metrics.confusion == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]


def test_a_class_absent_from_labels_and_predictions_does_not_count_in_macro_f1() -> None:
    targets = np.array([0, 1])
    metrics = classification_metrics(one_hot([0, 1]), targets, CLASSES)
    assert metrics.macro_f1 == 1.0
    assert metrics.per_class["c"].support == 0


def test_a_class_predicted_but_never_true_lowers_macro_f1() -> None:
    metrics = classification_metrics(one_hot([0, 2]), np.array([0, 1]), CLASSES)
    assert metrics.macro_f1 == pytest.approx(1 / 3)


def test_calibration_error_is_zero_when_confidence_matches_accuracy() -> None:
    probabilities = one_hot([0, 1, 2, 0], confidence=1.0 - 1e-9)
    assert expected_calibration_error(probabilities, np.array([0, 1, 2, 0])) == pytest.approx(
        0, abs=1e-6
    )


def test_calibration_error_measures_overconfidence() -> None:
    probabilities = one_hot([0, 0, 0, 0], confidence=0.9)
    error = expected_calibration_error(probabilities, np.array([0, 0, 1, 1]))
    assert error == pytest.approx(0.4)


def test_mismatched_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        classification_metrics(np.zeros((2, 2)), np.array([0, 1]), CLASSES)
    with pytest.raises(ValueError, match="2 predictions but 3 labels"):
        classification_metrics(one_hot([0, 1]), np.array([0, 1, 2]), CLASSES)


def test_metrics_fit_the_model_candidate_contract() -> None:
    metrics = classification_metrics(one_hot([0, 1]), np.array([0, 1]), CLASSES)
    offline = metrics.as_offline_metrics()
    assert isinstance(offline, OfflineMetrics)
    assert offline.per_class == {"a": 1.0, "b": 1.0}
    assert offline.evaluated_on == 2
