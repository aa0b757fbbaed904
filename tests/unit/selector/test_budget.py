"""The review budget: token buckets over simulated time, splits, random share, backpressure."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from hone_selector.budget import RANDOM, STRATEGIC, Budget, refill_factor
from hone_selector.settings import BudgetSettings

HOUR = 3600.0
T0 = 1_800_000_000.0


def simulate(
    budget: Budget,
    names: list[str],
    seconds: float = HOUR,
    step: float = 1.0,
    factor_at: Callable[[int], float] | None = None,
) -> int:
    """Ask for a token every `step` seconds; count the ones granted."""
    granted, t = 0, T0
    while t < T0 + seconds:
        factor = factor_at(granted) if factor_at else 1.0
        if names and budget.try_take(names, t, factor) is None:
            granted += 1
        t += step
    return granted


def test_the_budget_holds_over_a_simulated_hour() -> None:
    settings = BudgetSettings(reviews_per_hour=120, random_share=0.1, burst_minutes=10)
    budget = Budget(settings, {}, T0)
    granted = simulate(budget, [STRATEGIC])
    # 108 strategic reviews per hour, plus the full bucket it starts with (10 min = 18).
    assert 108 <= granted <= 108 + 18 + 1


def test_tokens_refill_with_time_but_never_beyond_the_capacity() -> None:
    budget = Budget(BudgetSettings(reviews_per_hour=60, random_share=0.0, burst_minutes=5), {}, T0)
    bucket = budget.bucket(STRATEGIC)
    assert bucket.tokens == bucket.capacity == pytest.approx(5.0)
    for _ in range(5):
        assert budget.try_take([STRATEGIC], T0, 1.0) is None
    assert budget.try_take([STRATEGIC], T0, 1.0) == STRATEGIC
    assert budget.try_take([STRATEGIC], T0 + 60, 1.0) is None  # one per minute
    budget.bucket(STRATEGIC).refill(T0 + 10 * HOUR, 1.0)
    assert budget.bucket(STRATEGIC).tokens == pytest.approx(5.0)


def test_a_stored_state_is_resumed_and_clipped_to_the_current_capacity() -> None:
    settings = BudgetSettings(reviews_per_hour=60, random_share=0.0, burst_minutes=5)
    budget = Budget(settings, {STRATEGIC: (0.0, T0)}, T0 + 60)
    assert budget.try_take([STRATEGIC], T0 + 60, 1.0) is None
    assert budget.try_take([STRATEGIC], T0 + 60, 1.0) == STRATEGIC
    shrunk = Budget(settings, {STRATEGIC: (1000.0, T0)}, T0)
    assert shrunk.bucket(STRATEGIC).tokens == pytest.approx(5.0)
    tokens, updated_at = budget.state()[STRATEGIC]
    assert tokens == pytest.approx(0.0)
    assert updated_at == T0 + 60


def test_backpressure_slows_the_refill_above_the_target_queue() -> None:
    assert refill_factor(50, 100, 0.05) == 1.0
    assert refill_factor(200, 100, 0.05) == 0.5
    assert refill_factor(100_000, 100, 0.05) == 0.05


def test_a_growing_unanswered_queue_slows_the_request_rate() -> None:
    settings = BudgetSettings(reviews_per_hour=600, random_share=0.0, burst_minutes=1)
    free = simulate(Budget(settings, {}, T0), [STRATEGIC])
    # Nobody answers: the queue is every request granted so far.
    slowed = simulate(
        Budget(settings, {}, T0),
        [STRATEGIC],
        factor_at=lambda queue: refill_factor(queue, 100, 0.05),
    )
    assert free >= 600
    assert 100 < slowed < 400  # roughly 100 + sqrt(2 * 100 * 600 * 1 h / 1 h) = 100 + 346


def test_random_control_keeps_its_share_when_strategic_demand_exhausts_the_budget() -> None:
    settings = BudgetSettings(reviews_per_hour=120, random_share=0.1, burst_minutes=10)
    budget = Budget(settings, {}, T0)
    random_granted = strategic_granted = 0
    t = T0
    while t < T0 + HOUR:
        strategic_granted += budget.try_take([STRATEGIC], t, 1.0) is None
        if int(t) % 60 == 0:  # a random-control image every minute
            random_granted += budget.try_take([RANDOM], t, 1.0) is None
        t += 1
    assert 12 <= random_granted <= 12 + 2 + 1  # 10% of 120/h, plus its starting burst
    assert strategic_granted <= 108 + 18 + 1


def test_camera_shares_split_the_strategic_budget() -> None:
    settings = BudgetSettings(
        reviews_per_hour=100, random_share=0.0, burst_minutes=1, camera_shares={"cam-busy": 0.25}
    )
    budget = Budget(settings, {}, T0)
    busy = simulate(budget, budget.strategic_buckets("cam-busy", "Shirt"))
    others = simulate(Budget(settings, {}, T0), budget.strategic_buckets("cam-2", "Shirt"))
    assert budget.strategic_buckets("cam-busy", "Shirt") == [STRATEGIC, "camera:cam-busy"]
    assert budget.strategic_buckets("cam-2", "Shirt") == [STRATEGIC, "camera:*"]
    assert 25 <= busy <= 25 + 2
    assert 75 <= others <= 75 + 3


def test_class_shares_split_the_budget_by_predicted_class() -> None:
    settings = BudgetSettings(
        reviews_per_hour=100, random_share=0.0, burst_minutes=1,
        class_shares={"Shirt": 0.5, "*": 0.1},
    )  # fmt: skip
    budget = Budget(settings, {}, T0)
    assert budget.strategic_buckets("cam-1", "Bag") == [STRATEGIC, "class:*"]
    assert 10 <= simulate(budget, budget.strategic_buckets("cam-1", "Bag")) <= 12


def test_a_pick_takes_a_token_from_every_bucket_or_from_none() -> None:
    settings = BudgetSettings(
        reviews_per_hour=3600, random_share=0.0, burst_minutes=1, camera_shares={"cam-1": 0.01}
    )
    budget = Budget(settings, {}, T0)
    names = budget.strategic_buckets("cam-1", "Shirt")
    assert budget.try_take(names, T0, 1.0) is None
    before = budget.bucket(STRATEGIC).tokens
    assert budget.try_take(names, T0, 1.0) == "camera:cam-1"
    assert budget.bucket(STRATEGIC).tokens == before


def test_a_zero_share_camera_gets_nothing() -> None:
    settings = BudgetSettings(reviews_per_hour=100, random_share=0.0, camera_shares={"cam-1": 1.0})
    budget = Budget(settings, {}, T0)
    assert simulate(budget, budget.strategic_buckets("cam-other", "Shirt")) == 0


def test_shares_adding_up_to_more_than_one_are_refused() -> None:
    with pytest.raises(ValueError, match="camera shares add up to more than 1"):
        BudgetSettings(camera_shares={"a": 0.7, "b": 0.6})
