"""Under-represented class: the predicted class is rare in the labelled set."""

from __future__ import annotations

from collections.abc import Mapping

from hone_common.events import Scores
from hone_selector.strategies import RARITY, StrategyScore, clamp01


def rarity(
    scores: Scores, class_counts: Mapping[str, int], smoothing: float = 1.0
) -> StrategyScore:
    """1 - share / even share, with `smoothing` pseudo-labels per class.

    A class holding its even share (1/K) of the labels or more scores 0; a class with no
    labels while the others have many scores close to 1. With no labels at all every class
    is equally unknown, so the strategy abstains.
    """
    k = len(scores.classes)
    total = sum(max(0, class_counts.get(name, 0)) for name in scores.classes)
    count = max(0, class_counts.get(scores.label, 0))
    if total == 0:
        return StrategyScore(RARITY, 0.0, "no labels yet", abstained=True)
    share = (count + smoothing) / (total + smoothing * k)
    score = clamp01(1.0 - share * k)
    return StrategyScore(
        RARITY, score, f"{scores.label}: {count} of {total} labels (even share {total / k:.0f})"
    )
