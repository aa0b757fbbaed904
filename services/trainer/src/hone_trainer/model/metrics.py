"""Classification metrics from predicted probabilities: accuracy, macro-F1, per class, ECE."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from hone_common.events import OfflineMetrics


@dataclass(frozen=True)
class ClassScores:
    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True)
class Metrics:
    examples: int
    accuracy: float
    macro_f1: float
    expected_calibration_error: float
    log_loss: float
    per_class: dict[str, ClassScores] = field(default_factory=dict)
    confusion: list[list[int]] = field(default_factory=list)

    def as_offline_metrics(self) -> OfflineMetrics:
        """The `model.candidate` summary; per class is recall (the accuracy on that class)."""
        return OfflineMetrics(
            accuracy=self.accuracy,
            macro_f1=self.macro_f1,
            calibration_error=min(1.0, self.expected_calibration_error),
            per_class={name: s.recall for name, s in self.per_class.items() if s.support},
            evaluated_on=self.examples,
        )


def expected_calibration_error(
    probabilities: npt.NDArray[np.floating], targets: npt.NDArray[np.integer], bins: int = 15
) -> float:
    """Mean |accuracy - confidence| over equal-width confidence bins, weighted by bin size."""
    if len(targets) == 0:
        return 0.0
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == targets
    edges = np.linspace(0.0, 1.0, bins + 1)
    # Bins are (lo, hi]; a confidence of exactly 0 cannot happen with a softmax.
    which = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    error = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            error += abs(correct[members].mean() - confidence[members].mean()) * members.mean()
    return float(error)


def classification_metrics(
    probabilities: npt.NDArray[np.floating],
    targets: npt.NDArray[np.integer],
    classes: Sequence[str],
) -> Metrics:
    """Macro-F1 averages over the classes that occur in the labels or the predictions, so a
    class absent from a small evaluation set neither counts as perfect nor as zero."""
    k = len(classes)
    if probabilities.ndim != 2 or probabilities.shape[1] != k:
        raise ValueError(f"probabilities must be shaped (N, {k}), got {probabilities.shape}")
    if len(probabilities) != len(targets):
        raise ValueError(f"{len(probabilities)} predictions but {len(targets)} labels")
    n = len(targets)
    predicted = probabilities.argmax(axis=1)
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (targets, predicted), 1)
    true_positive = np.diag(confusion).astype(np.float64)
    support = confusion.sum(axis=1)
    predicted_count = confusion.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted_count > 0, true_positive / predicted_count, 0.0)
        recall = np.where(support > 0, true_positive / support, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    present = (support > 0) | (predicted_count > 0)
    picked = np.clip(probabilities[np.arange(n), targets], 1e-12, 1.0) if n else np.ones(0)
    return Metrics(
        examples=n,
        accuracy=float((predicted == targets).mean()) if n else 0.0,
        macro_f1=float(f1[present].mean()) if present.any() else 0.0,
        expected_calibration_error=expected_calibration_error(probabilities, targets),
        log_loss=float(-np.log(picked).mean()) if n else 0.0,
        per_class={
            name: ClassScores(float(precision[i]), float(recall[i]), float(f1[i]), int(support[i]))
            for i, name in enumerate(classes)
        },
        confusion=confusion.tolist(),
    )
