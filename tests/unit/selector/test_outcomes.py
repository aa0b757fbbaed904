"""What a label says about the model, and strategy yields."""

from __future__ import annotations

import pytest

from hone_selector.outcomes import Yield, lift, model_was_wrong


def test_a_label_different_from_the_prediction_means_the_model_was_wrong() -> None:
    assert model_was_wrong("label", "Shirt", "T-shirt/top") is True
    assert model_was_wrong("label", "Shirt", "Shirt") is False


def test_verdict_wrong_counts_as_an_error_with_or_without_a_class() -> None:
    assert model_was_wrong("wrong", None, "Shirt") is True
    assert model_was_wrong("wrong", "Coat", "Shirt") is True
    assert model_was_wrong("wrong", None, None) is True


def test_ambiguous_or_uncomparable_labels_settle_nothing() -> None:
    assert model_was_wrong("ambiguous", None, "Shirt") is None
    assert model_was_wrong("label", "Shirt", None) is None


def test_yield_is_the_share_of_labelled_picks_the_model_had_wrong() -> None:
    y = Yield("uncertainty", picks=50, labelled=40, wrong=10)
    assert y.value == 0.25
    low, high = y.interval() or (0, 0)
    assert low < 0.25 < high
    assert low > 0.13
    assert high < 0.41


def test_yield_is_unknown_before_any_label() -> None:
    y = Yield("rarity", picks=3, labelled=0, wrong=0)
    assert y.value is None
    assert y.interval() is None


def test_lift_compares_a_strategy_with_the_random_baseline() -> None:
    baseline = Yield("random", 20, 20, 2)
    assert lift(Yield("uncertainty", 40, 40, 12), baseline) == pytest.approx(3.0)
    assert lift(Yield("uncertainty", 40, 40, 12), None) is None
    assert lift(Yield("uncertainty", 40, 40, 12), Yield("random", 5, 5, 0)) is None
