"""Weakness model: a parallel classifier's estimate that the production model is wrong here."""

from __future__ import annotations

from hone_common.events import Scores
from hone_selector.strategies import WEAKNESS, StrategyScore, clamp01
from hone_selector.weakness_model import WeaknessModel


def weakness(scores: Scores, model: WeaknessModel | None) -> StrategyScore:
    """P(wrong) from the weakness model promoted with the model that scored the image; abstains
    (score 0, left out of the priority) when there is none."""
    if model is None:
        return StrategyScore(
            WEAKNESS, 0.0, f"no weakness model for {scores.model_version}", abstained=True
        )
    probability, top = model.predict(scores)
    drivers = ", ".join(f"{name} {value:+.2f}" for name, value in top)
    return StrategyScore(
        WEAKNESS,
        clamp01(probability),
        f"P(wrong) {probability:.2f}" + (f"; {drivers}" if drivers else ""),
    )
