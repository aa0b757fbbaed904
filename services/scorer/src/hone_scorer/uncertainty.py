"""How sure a prediction is: confidence, margin and normalised entropy, vectorised over rows."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

SUM_TOLERANCE = 1e-3
"""How far from 1 a row of probabilities may sum (float32 softmax rounding) and still count."""


@dataclass(frozen=True)
class Uncertainty:
    """One entry per row of the probability matrix; rows where `valid` is False are garbage."""

    probabilities: npt.NDArray[np.float64]
    label: npt.NDArray[np.intp]
    confidence: npt.NDArray[np.float64]
    margin: npt.NDArray[np.float64]
    entropy: npt.NDArray[np.float64]
    valid: npt.NDArray[np.bool_]


def uncertainty(probabilities: npt.ArrayLike) -> Uncertainty:
    """Top-1 probability, top-1 minus top-2, and entropy divided by log(classes) (so in [0, 1]).

    Rows with a non-finite or negative value, or that do not sum to 1, are marked invalid
    instead of raising, so one bad row does not sink the others. Valid rows are renormalised
    to sum to exactly 1 and every result is clipped to [0, 1].
    """
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 2:
        raise ValueError(f"expected a (rows, classes >= 2) matrix, got shape {p.shape}")
    with np.errstate(invalid="ignore"):
        sums = p.sum(axis=1)
        valid = (
            np.isfinite(p).all(axis=1)
            & (p >= 0).all(axis=1)
            & (np.abs(sums - 1.0) <= SUM_TOLERANCE)
        )
    # Invalid rows are replaced by a uniform row so the arithmetic stays quiet; callers drop them.
    uniform = np.full(p.shape[1], 1.0 / p.shape[1])
    p = np.where(valid[:, None], p / np.where(valid, sums, 1.0)[:, None], uniform)
    top_two = np.partition(p, -2, axis=1)[:, -2:]
    confidence = top_two[:, 1]
    margin = top_two[:, 1] - top_two[:, 0]
    # 0 * log(0) is 0: log of the zero entries is taken as log(1).
    plogp = p * np.log(np.where(p > 0, p, 1.0))
    entropy = -plogp.sum(axis=1) / np.log(p.shape[1])
    return Uncertainty(
        probabilities=p,
        label=np.argmax(p, axis=1),
        confidence=np.clip(confidence, 0.0, 1.0),
        margin=np.clip(margin, 0.0, 1.0),
        entropy=np.clip(entropy, 0.0, 1.0),
        valid=valid,
    )
