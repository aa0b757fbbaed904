"""Combining strategy scores into a priority and choosing the reasons shown with it."""

from __future__ import annotations

import pytest

from hone_selector.priority import combine
from hone_selector.strategies import StrategyScore

WEIGHTS = {"rarity": 1.0, "uncertainty": 2.0, "weakness": 1.5, "slice_risk": 1.0}


def s(name: str, score: float, abstained: bool = False) -> StrategyScore:
    return StrategyScore(name, score, f"{name} detail", abstained)


def test_priority_is_the_weighted_mean_of_the_scores() -> None:
    result = combine(
        [s("rarity", 1.0), s("uncertainty", 0.5), s("weakness", 0.2), s("slice_risk", 0.0)],
        WEIGHTS,
        0.2,
    )
    assert result.value == pytest.approx((1.0 + 2 * 0.5 + 1.5 * 0.2) / 5.5)


def test_abstaining_strategies_are_left_out_instead_of_counting_as_zero() -> None:
    result = combine([s("uncertainty", 0.8), s("weakness", 0.0, abstained=True)], WEIGHTS, 0.2)
    assert result.value == pytest.approx(0.8)


def test_reasons_list_every_strategy_that_fired_strongest_contribution_first() -> None:
    result = combine(
        [s("rarity", 0.9), s("uncertainty", 0.6), s("weakness", 0.1), s("slice_risk", 0.3)],
        WEIGHTS,
        0.2,
    )
    assert [r.strategy for r in result.reasons] == ["uncertainty", "rarity", "slice_risk"]
    assert [r.score for r in result.reasons] == [0.6, 0.9, 0.3]


def test_the_strongest_strategy_is_a_reason_even_below_the_reason_score() -> None:
    result = combine([s("uncertainty", 0.1), s("rarity", 0.05)], WEIGHTS, 0.2)
    assert [r.strategy for r in result.reasons] == ["uncertainty"]


def test_nothing_fires_when_every_score_is_zero() -> None:
    result = combine([s("uncertainty", 0.0), s("rarity", 0.0)], WEIGHTS, 0.2)
    assert result.value == 0.0
    assert result.reasons == ()


def test_a_zero_weight_switches_a_strategy_off() -> None:
    result = combine([s("rarity", 1.0), s("uncertainty", 0.2)], {**WEIGHTS, "rarity": 0.0}, 0.1)
    assert result.value == pytest.approx(0.2)
    assert [r.strategy for r in result.reasons] == ["uncertainty"]


def test_no_active_strategy_gives_zero_priority() -> None:
    result = combine([s("weakness", 0.0, abstained=True)], WEIGHTS, 0.2)
    assert result.value == 0.0
    assert result.reasons == ()
