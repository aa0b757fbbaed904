"""Priority: the strategies' scores combined into one number, and the reasons shown with it.

    priority = sum(w_s * score_s) / sum(w_s)     over strategies s that did not abstain

so the priority stays in [0, 1] and a strategy with nothing to say (no labels yet, no weakness
model) neither lowers nor raises it. The reasons are the strategies scoring at least
`min_reason_score`, strongest weighted contribution first (at least the strongest one), and
they are what a pick's yield is credited to.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from hone_selector.strategies import StrategyScore


@dataclass(frozen=True)
class Priority:
    value: float
    reasons: tuple[StrategyScore, ...]


def combine(
    scores: Sequence[StrategyScore], weights: Mapping[str, float], min_reason_score: float
) -> Priority:
    active = [s for s in scores if not s.abstained and weights.get(s.strategy, 0.0) > 0.0]
    total_weight = sum(weights[s.strategy] for s in active)
    if total_weight == 0.0:
        return Priority(0.0, ())
    value = sum(weights[s.strategy] * s.score for s in active) / total_weight
    ranked = sorted(active, key=lambda s: -weights[s.strategy] * s.score)
    reasons = tuple(s for s in ranked if s.score >= min_reason_score and s.score > 0.0)
    if not reasons and ranked[0].score > 0.0:
        reasons = (ranked[0],)
    return Priority(value, reasons)
