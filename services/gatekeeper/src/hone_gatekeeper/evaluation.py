"""Comparing a candidate with production on the same labelled images: accuracy, macro-F1,
per-class and per-camera accuracy, the exact McNemar test on the discordant pairs, latency.

Plain functions over predicted labels; nothing here knows of TorchServe or the database.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.stats import binomtest

UNKNOWN_CAMERA = "unknown"


@dataclass(frozen=True)
class PairedPredictions:
    """True labels and each model's predicted label for the same images, in the same order.

    `production` is None when there is no production model to compare with (bootstrap)."""

    labels: Sequence[str]
    cameras: Sequence[str | None]
    candidate: Sequence[str]
    production: Sequence[str] | None = None

    def __post_init__(self) -> None:
        sizes = {len(self.labels), len(self.cameras), len(self.candidate)}
        if self.production is not None:
            sizes.add(len(self.production))
        if len(sizes) != 1:
            raise ValueError(f"paired predictions of different lengths: {sorted(sizes)}")


@dataclass(frozen=True)
class SliceScore:
    """Accuracy of both models on one slice (a class or a camera) of the evaluation set."""

    examples: int
    candidate: float
    production: float | None = None

    @property
    def delta(self) -> float | None:
        return None if self.production is None else self.candidate - self.production


@dataclass(frozen=True)
class McNemar:
    """Exact McNemar test: of the images exactly one model gets right, how often it is the
    candidate. `p_value` is one-sided (H1: the candidate wins the discordant pairs more
    often), as the gate only asks whether the candidate is better."""

    candidate_only: int
    production_only: int
    p_value: float

    @property
    def discordant(self) -> int:
        return self.candidate_only + self.production_only


@dataclass(frozen=True)
class Latency:
    """Per-request latency of one model while the evaluation set was scored."""

    requests: int
    p50_ms: float
    p95_ms: float
    max_ms: float


@dataclass(frozen=True)
class Comparison:
    examples: int
    classes: int
    """How many classes the candidate predicts between (chance is 1 / classes)."""
    candidate_accuracy: float
    candidate_macro_f1: float
    production_accuracy: float | None
    production_macro_f1: float | None
    per_class: dict[str, SliceScore]
    per_camera: dict[str, SliceScore]
    mcnemar: McNemar | None
    candidate_latency: Latency | None = None
    production_latency: Latency | None = None

    @property
    def accuracy_delta(self) -> float | None:
        if self.production_accuracy is None:
            return None
        return self.candidate_accuracy - self.production_accuracy

    @property
    def macro_f1_delta(self) -> float | None:
        if self.production_macro_f1 is None:
            return None
        return self.candidate_macro_f1 - self.production_macro_f1

    def summary(self) -> dict[str, float | int | None]:
        """The flat numbers `model.promoted` carries (`Promotion.evaluation`)."""
        return {
            "examples": self.examples,
            "candidate_accuracy": _round(self.candidate_accuracy),
            "production_accuracy": _round(self.production_accuracy),
            "accuracy_delta": _round(self.accuracy_delta),
            "candidate_macro_f1": _round(self.candidate_macro_f1),
            "production_macro_f1": _round(self.production_macro_f1),
            "p_value": None if self.mcnemar is None else self.mcnemar.p_value,
            "candidate_only_correct": None if self.mcnemar is None else self.mcnemar.candidate_only,
            "production_only_correct": (
                None if self.mcnemar is None else self.mcnemar.production_only
            ),
            "candidate_p95_ms": _latency(self.candidate_latency),
            "production_p95_ms": _latency(self.production_latency),
        }

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def _latency(latency: Latency | None) -> float | None:
    return None if latency is None else round(latency.p95_ms, 2)


def mcnemar_exact(candidate_only: int, production_only: int) -> McNemar:
    """One-sided exact McNemar p-value: P(X >= candidate_only), X ~ Binomial(b + c, 1/2)."""
    if candidate_only < 0 or production_only < 0:
        raise ValueError("counts of discordant pairs cannot be negative")
    n = candidate_only + production_only
    p_value = 1.0 if n == 0 else float(binomtest(candidate_only, n, 0.5, "greater").pvalue)
    return McNemar(candidate_only, production_only, p_value)


def latency_summary(seconds: Sequence[float]) -> Latency | None:
    if not seconds:
        return None
    ms = np.asarray(seconds, dtype=np.float64) * 1000.0
    p50, p95 = np.percentile(ms, [50, 95])
    return Latency(len(ms), float(p50), float(p95), float(ms.max()))


def accuracy(labels: Sequence[str], predicted: Sequence[str]) -> float:
    if not labels:
        return 0.0
    return float(np.mean(np.asarray(labels, dtype=object) == np.asarray(predicted, dtype=object)))


def macro_f1(labels: Sequence[str], predicted: Sequence[str]) -> float:
    """Mean F1 over the classes present in `labels` (a class the set lacks has no recall)."""
    if not labels:
        return 0.0
    truth = np.asarray(labels, dtype=object)
    guess = np.asarray(predicted, dtype=object)
    scores = []
    for cls in sorted(set(labels)):
        tp = float(np.sum((truth == cls) & (guess == cls)))
        predicted_as = float(np.sum(guess == cls))
        actual = float(np.sum(truth == cls))
        precision = tp / predicted_as if predicted_as else 0.0
        recall = tp / actual
        scores.append(0.0 if tp == 0 else 2 * precision * recall / (precision + recall))
    return float(np.mean(scores))


def _slices(
    keys: Sequence[str],
    candidate_right: np.ndarray[Any, np.dtype[np.bool_]],
    production_right: np.ndarray[Any, np.dtype[np.bool_]] | None,
) -> dict[str, SliceScore]:
    groups = np.asarray(keys, dtype=object)
    scores: dict[str, SliceScore] = {}
    for key in sorted(set(keys)):
        mask = groups == key
        scores[key] = SliceScore(
            examples=int(mask.sum()),
            candidate=float(candidate_right[mask].mean()),
            production=None if production_right is None else float(production_right[mask].mean()),
        )
    return scores


def compare(
    paired: PairedPredictions,
    *,
    classes: int,
    candidate_seconds: Sequence[float] = (),
    production_seconds: Sequence[float] = (),
) -> Comparison:
    """Every number the gate's rules look at, from paired predictions and request timings."""
    truth = np.asarray(paired.labels, dtype=object)
    candidate_right = truth == np.asarray(paired.candidate, dtype=object)
    production_right = (
        None if paired.production is None else truth == np.asarray(paired.production, dtype=object)
    )
    cameras = [camera or UNKNOWN_CAMERA for camera in paired.cameras]
    test = None
    if production_right is not None:
        test = mcnemar_exact(
            int(np.sum(candidate_right & ~production_right)),
            int(np.sum(~candidate_right & production_right)),
        )
    return Comparison(
        examples=len(truth),
        classes=classes,
        candidate_accuracy=accuracy(paired.labels, paired.candidate),
        candidate_macro_f1=macro_f1(paired.labels, paired.candidate),
        production_accuracy=(
            None if paired.production is None else accuracy(paired.labels, paired.production)
        ),
        production_macro_f1=(
            None if paired.production is None else macro_f1(paired.labels, paired.production)
        ),
        per_class=_slices(list(paired.labels), candidate_right, production_right),
        per_camera=_slices(cameras, candidate_right, production_right),
        mcnemar=test,
        candidate_latency=latency_summary(candidate_seconds),
        production_latency=latency_summary(production_seconds),
    )
