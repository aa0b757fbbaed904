"""The weakness model: a logistic regression predicting P(classifier wrong) from the prediction,
the image's quality and its metadata, exported in the selector's `hone-weakness-logreg` format.

Its rows are the classifier's failures and successes on images it did not train on: out-of-fold
predictions on `train` (k short fold models), the candidate's predictions on the `weakness`
split, and images end users flagged as wrong. Test images never reach it. A hash-chosen share
of the rows is held out of the fit, and the exported model is the one the reported precision
and recall describe.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from hone_trainer.settings import WeaknessSettings

FORMAT = "hone-weakness-logreg"
PLAIN = (
    "confidence",
    "margin",
    "entropy",
    "brightness",
    "contrast",
    "log_sharpness",
    "hour_sin",
    "hour_cos",
)
Floats = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Context:
    """What the selector knows of an image besides the prediction."""

    image_id: str
    camera_id: str
    captured_hour: float
    """Hour of day with minutes as a fraction, in the capture time's own offset."""
    brightness: float
    contrast: float
    sharpness: float


@dataclass(frozen=True)
class FailureRows:
    """Predictions on images the predicting model did not train on, and whether they failed."""

    probabilities: Floats
    wrong: npt.NDArray[np.bool_]
    contexts: Sequence[Context]
    sources: Sequence[str]

    def __post_init__(self) -> None:
        n = len(self.contexts)
        if not (len(self.probabilities) == len(self.wrong) == len(self.sources) == n):
            raise ValueError("one probability row, outcome, context and source per image")

    @classmethod
    def concat(cls, parts: Sequence[FailureRows], classes: int) -> FailureRows:
        kept = [p for p in parts if len(p.contexts)]
        if not kept:
            return cls(np.zeros((0, classes)), np.zeros(0, dtype=bool), [], [])
        return cls(
            np.concatenate([p.probabilities for p in kept]),
            np.concatenate([p.wrong for p in kept]),
            [c for p in kept for c in p.contexts],
            [s for p in kept for s in p.sources],
        )


def uncertainty(probabilities: Floats) -> tuple[Floats, Floats, Floats]:
    """Confidence, margin and entropy / log(classes), exactly as the scorer reports them."""
    p = np.clip(np.asarray(probabilities, dtype=np.float64), 0.0, 1.0)
    p = p / np.where(p.sum(axis=1, keepdims=True) > 0, p.sum(axis=1, keepdims=True), 1.0)
    top_two = np.sort(p, axis=1)[:, -2:]
    plogp = p * np.log(np.where(p > 0, p, 1.0))
    entropy = -plogp.sum(axis=1) / np.log(p.shape[1])
    return top_two[:, 1], top_two[:, 1] - top_two[:, 0], np.clip(entropy, 0.0, 1.0)


def hour_bucket(hour: float, bucket_hours: int) -> int:
    return int(hour) // bucket_hours


def choose_features(
    rows: FailureRows, classes: Sequence[str], settings: WeaknessSettings
) -> list[str]:
    """The plain features, then one indicator per camera, hour bucket and predicted class
    seen often enough to estimate a coefficient."""
    predicted = [classes[i] for i in np.argmax(rows.probabilities, axis=1)]
    categories = [
        ("camera", Counter(c.camera_id for c in rows.contexts)),
        (
            "hour_bucket",
            Counter(
                str(hour_bucket(c.captured_hour, settings.hour_bucket_hours)) for c in rows.contexts
            ),
        ),
        ("label", Counter(predicted)),
    ]
    names = list(PLAIN)
    for prefix, counts in categories:
        names += [
            f"{prefix}={value}"
            for value, n in sorted(counts.items())
            if n >= settings.min_category_rows
        ]
    return names


def feature_matrix(
    names: Sequence[str], rows: FailureRows, classes: Sequence[str], bucket_hours: int
) -> Floats:
    """The features the selector computes from an `image.scored` (`hone_selector.weakness_model`),
    computed from probabilities and stored image facts."""
    confidence, margin, entropy = uncertainty(rows.probabilities)
    predicted = np.argmax(rows.probabilities, axis=1)
    hours = np.array([c.captured_hour for c in rows.contexts], dtype=np.float64)
    plain: dict[str, Floats] = {
        "confidence": confidence,
        "margin": margin,
        "entropy": entropy,
        "brightness": np.array([c.brightness for c in rows.contexts], dtype=np.float64),
        "contrast": np.array([c.contrast for c in rows.contexts], dtype=np.float64),
        "sharpness": np.array([c.sharpness for c in rows.contexts], dtype=np.float64),
        "log_sharpness": np.log1p([c.sharpness for c in rows.contexts]).astype(np.float64),
        "hour_sin": np.sin(2 * math.pi * hours / 24),
        "hour_cos": np.cos(2 * math.pi * hours / 24),
    }
    columns: list[Floats] = []
    for name in names:
        prefix, _, value = name.partition("=")
        if not value:
            columns.append(plain[name])
        elif prefix == "camera":
            columns.append(np.array([c.camera_id == value for c in rows.contexts], dtype=float))
        elif prefix == "hour_bucket":
            buckets = np.array([hour_bucket(h, bucket_hours) for h in hours])
            columns.append((buckets == int(value)).astype(float))
        elif prefix == "label":
            columns.append((predicted == list(classes).index(value)).astype(float))
        else:
            raise ValueError(f"unknown feature {name!r}")
    return np.stack(columns, axis=1) if columns else np.zeros((len(hours), 0))


def fit_logistic(
    x: Floats, y: npt.NDArray[np.bool_], l2: float, iterations: int = 100
) -> tuple[Floats, float]:
    """L2-penalised logistic regression by Newton's method (the intercept is not penalised).
    Converges in a few steps for the tens of features and thousands of rows it gets."""
    n, d = x.shape
    design = np.hstack([x, np.ones((n, 1))])
    target = y.astype(np.float64)
    penalty = np.full(d + 1, l2)
    penalty[-1] = 0.0
    w = np.zeros(d + 1)
    for _ in range(iterations):
        logits = np.clip(design @ w, -30, 30)
        p = 1.0 / (1.0 + np.exp(-logits))
        gradient = design.T @ (p - target) + penalty * w
        hessian = (design * (p * (1 - p))[:, None]).T @ design + np.diag(penalty + 1e-9)
        step = np.linalg.solve(hessian, gradient)
        w -= step
        if np.max(np.abs(step)) < 1e-8:
            break
    return w[:-1], float(w[-1])


def predict(x: Floats, coefficients: Floats, intercept: float) -> Floats:
    logits = np.clip(x @ coefficients + intercept, -60, 60)
    return np.asarray(1.0 / (1.0 + np.exp(-logits)), dtype=np.float64)


def held_out(image_id: str, share: float) -> bool:
    digest = hashlib.sha256(f"hone-weakness-holdout:{image_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < share


@dataclass(frozen=True)
class WeaknessResult:
    artifact: dict[str, Any] | None
    """The selector's JSON document; None when there was too little to fit on."""
    report: dict[str, Any]


def build_weakness_model(
    rows: FailureRows, classes: Sequence[str], model_version: str, settings: WeaknessSettings
) -> WeaknessResult:
    """Fit on the rows outside the hold-out, report on the hold-out, export the fitted model."""
    sources = dict(Counter(rows.sources))
    report: dict[str, Any] = {
        "rows": len(rows.contexts),
        "failures": int(rows.wrong.sum()),
        "sources": sources,
        "failures_by_source": {
            s: int(sum(w for w, r in zip(rows.wrong, rows.sources, strict=True) if r == s))
            for s in sources
        },
    }
    holdout = np.array([held_out(c.image_id, settings.holdout) for c in rows.contexts], dtype=bool)
    fit = ~holdout
    positives = int(rows.wrong[fit].sum())
    negatives = int((~rows.wrong[fit]).sum())
    if len(rows.contexts) < settings.min_rows or positives < 2 or negatives < 2:
        report["skipped"] = (
            f"too little to fit on: {len(rows.contexts)} rows (need {settings.min_rows}), "
            f"{positives} failures and {negatives} successes outside the hold-out (need 2 each)"
        )
        return WeaknessResult(None, report)
    fit_rows = _subset(rows, fit)
    names = choose_features(fit_rows, classes, settings)
    x_all = feature_matrix(names, rows, classes, settings.hour_bucket_hours)
    plain = np.array([n in PLAIN for n in names])
    means = np.where(plain, x_all[fit].mean(axis=0), 0.0)
    scales = np.where(plain, x_all[fit].std(axis=0), 1.0)
    scales = np.where(scales > 1e-9, scales, 1.0)
    standard = (x_all - means) / scales
    coefficients, intercept = fit_logistic(standard[fit], rows.wrong[fit], settings.l2)
    report["fit_rows"] = int(fit.sum())
    report["holdout"] = _holdout_report(
        predict(standard[holdout], coefficients, intercept),
        rows.wrong[holdout],
        base_rate=positives / (positives + negatives),
    )
    artifact = {
        "format": FORMAT,
        "format_version": 1,
        "model_version": model_version,
        "features": names,
        "coefficients": [round(float(c), 6) for c in coefficients],
        "intercept": round(intercept, 6),
        "means": [round(float(m), 6) for m in means],
        "scales": [round(float(s), 6) for s in scales],
        "hour_bucket_hours": settings.hour_bucket_hours,
    }
    return WeaknessResult(artifact, report)


def _subset(rows: FailureRows, mask: npt.NDArray[np.bool_]) -> FailureRows:
    return FailureRows(
        rows.probabilities[mask],
        rows.wrong[mask],
        [c for c, keep in zip(rows.contexts, mask, strict=True) if keep],
        [s for s, keep in zip(rows.sources, mask, strict=True) if keep],
    )


def _holdout_report(
    probability: Floats, wrong: npt.NDArray[np.bool_], base_rate: float
) -> dict[str, Any]:
    """Precision and recall of "predicted wrong" at P >= 0.5, and when flagging the same share
    of images as failed in the fit rows (the rate a budget-limited selector would act at)."""
    out: dict[str, Any] = {"rows": len(wrong), "failures": int(wrong.sum())}
    if len(wrong) == 0:
        return out
    out["at_0.5"] = _precision_recall(probability >= 0.5, wrong)
    k = max(1, round(base_rate * len(wrong)))
    top = np.zeros(len(wrong), dtype=bool)
    top[np.argsort(-probability, kind="stable")[:k]] = True
    out["at_base_rate"] = _precision_recall(top, wrong)
    out["auc"] = _auc(probability, wrong)
    return out


def _precision_recall(
    flagged: npt.NDArray[np.bool_], wrong: npt.NDArray[np.bool_]
) -> dict[str, Any]:
    hits = int((flagged & wrong).sum())
    return {
        "flagged": int(flagged.sum()),
        "precision": round(hits / int(flagged.sum()), 4) if flagged.any() else None,
        "recall": round(hits / int(wrong.sum()), 4) if wrong.any() else None,
    }


def _auc(score: Floats, positive: npt.NDArray[np.bool_]) -> float | None:
    """Area under the ROC curve (Mann-Whitney, ties counted half)."""
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(score, kind="stable")
    ranks = np.empty(len(score))
    sorted_scores = score[order]
    i = 0
    while i < len(score):
        j = i
        while j + 1 < len(score) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return round(float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)), 4)


def out_of_fold(
    count: int,
    targets: npt.NDArray[np.int64],
    evaluate_on: npt.NDArray[np.bool_],
    folds: int,
    seed: int,
    fit_and_predict: Callable[[npt.NDArray[np.int64], npt.NDArray[np.int64]], Floats],
) -> tuple[npt.NDArray[np.int64], Floats]:
    """Predictions of k fold models, each on the rows it did not train on.

    Rows are dealt to folds class by class (stratified); every fold model trains on the other
    folds (all rows) and predicts its own fold's `evaluate_on` rows. Returns the predicted row
    indices and their probabilities."""
    rng = np.random.default_rng(seed)
    fold_of = np.zeros(count, dtype=np.int64)
    labels = np.asarray(targets)
    for cls in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == cls))
        fold_of[members] = np.arange(len(members)) % folds
    indices: list[npt.NDArray[np.int64]] = []
    probabilities: list[Floats] = []
    for fold in range(folds):
        train_idx = np.flatnonzero(fold_of != fold)
        predict_idx = np.flatnonzero((fold_of == fold) & evaluate_on)
        if len(predict_idx) == 0 or len(np.unique(labels[train_idx])) < 2:
            continue
        indices.append(predict_idx)
        probabilities.append(fit_and_predict(train_idx, predict_idx))
    if not indices:
        return np.zeros(0, dtype=np.int64), np.zeros((0, 0))
    return np.concatenate(indices), np.concatenate(probabilities)
