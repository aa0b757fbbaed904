"""The adaptive threshold: a running quantile that lets through what the budget can take."""

from __future__ import annotations

import random

import pytest

from hone_selector.settings import ThresholdSettings
from hone_selector.threshold import AdaptiveThreshold

T0 = 1_800_000_000.0
SETTINGS = ThresholdSettings(window_images=2000, rate_window_seconds=600, headroom=1.0, bins=200)


def feed(
    threshold: AdaptiveThreshold, priorities: list[float], per_second: float, start: float
) -> float:
    t = start
    for p in priorities:
        threshold.observe(p, t)
        t += 1.0 / per_second
    return t


def test_the_threshold_is_zero_before_any_image() -> None:
    assert AdaptiveThreshold(SETTINGS, None, T0).value(budget_rate=0.01, now=T0) == 0.0


def test_the_stream_rate_is_measured_and_corrected_for_warm_up() -> None:
    threshold = AdaptiveThreshold(SETTINGS, None, T0)
    now = feed(threshold, [0.5] * 300, per_second=10, start=T0)
    assert threshold.stream_rate(now) == pytest.approx(10, rel=0.1)
    now = feed(threshold, [0.5] * 6000, per_second=2, start=now)
    assert threshold.stream_rate(now) == pytest.approx(2, rel=0.1)


def test_the_threshold_lets_through_the_share_the_budget_allows() -> None:
    rng = random.Random(1)
    threshold = AdaptiveThreshold(SETTINGS, None, T0)
    now = feed(threshold, [rng.random() for _ in range(6000)], per_second=5, start=T0)
    # Budget 0.05 reviews/s for 5 images/s: the top 1% of uniform priorities.
    assert threshold.value(budget_rate=0.05, now=now) == pytest.approx(0.99, abs=0.01)
    assert threshold.value(budget_rate=0.5, now=now) == pytest.approx(0.90, abs=0.02)


def test_the_threshold_is_zero_when_the_budget_exceeds_the_stream() -> None:
    threshold = AdaptiveThreshold(SETTINGS, None, T0)
    now = feed(threshold, [0.9] * 100, per_second=1, start=T0)
    assert threshold.value(budget_rate=2.0, now=now) == 0.0


def test_the_threshold_follows_a_shift_in_priorities() -> None:
    rng = random.Random(2)
    threshold = AdaptiveThreshold(SETTINGS, None, T0)
    now = feed(threshold, [rng.random() * 0.5 for _ in range(5000)], per_second=5, start=T0)
    low = threshold.value(0.5, now)  # the top 10%
    now = feed(
        threshold, [0.5 + rng.random() * 0.5 for _ in range(10_000)], per_second=5, start=now
    )
    high = threshold.value(0.5, now)
    assert low == pytest.approx(0.45, abs=0.02)
    assert high == pytest.approx(0.95, abs=0.02)


def test_the_state_survives_a_round_trip() -> None:
    threshold = AdaptiveThreshold(SETTINGS, None, T0)
    now = feed(threshold, [i / 1000 for i in range(1000)], per_second=5, start=T0)
    resumed = AdaptiveThreshold(SETTINGS, threshold.state(), now)
    assert resumed.value(0.1, now) == threshold.value(0.1, now) > 0.0


def test_a_state_of_another_bin_count_starts_afresh() -> None:
    threshold = AdaptiveThreshold(SETTINGS, None, T0)
    feed(threshold, [0.9] * 100, per_second=1, start=T0)
    other = AdaptiveThreshold(SETTINGS.model_copy(update={"bins": 50}), threshold.state(), T0)
    assert other.value(0.001, T0) == 0.0


PROPORTIONAL = SETTINGS.model_copy(update={"acceptance": "proportional"})


def expected_share(threshold: AdaptiveThreshold, priorities: list[float], value: float) -> float:
    return sum(threshold.acceptance(p, value) for p in priorities) / len(priorities)


@pytest.mark.parametrize(
    ("power", "budget_rate"), [(1.0, 0.05), (1.0, 0.5), (2.0, 0.5), (1.0, 4.0)]
)
def test_proportional_acceptance_expects_the_share_the_budget_allows(
    power: float, budget_rate: float
) -> None:
    rng = random.Random(3)
    priorities = [rng.random() ** 2 for _ in range(6000)]  # skewed low, like real priorities
    threshold = AdaptiveThreshold(PROPORTIONAL.model_copy(update={"power": power}), None, T0)
    now = feed(threshold, priorities, per_second=5, start=T0)
    recent = priorities[-2000:]  # the histogram decays over 2,000 images

    value = threshold.value(budget_rate, now)

    assert expected_share(threshold, recent, value) == pytest.approx(budget_rate / 5, rel=0.1)


def test_proportional_acceptance_keeps_some_images_the_quantile_turns_away() -> None:
    rng = random.Random(4)
    priorities = [rng.random() for _ in range(6000)]
    quantile, proportional = (AdaptiveThreshold(s, None, T0) for s in (SETTINGS, PROPORTIONAL))
    for t in (quantile, proportional):
        now = feed(t, priorities, per_second=5, start=T0)
    q, p = quantile.value(0.5, now), proportional.value(0.5, now)

    assert quantile.acceptance(0.5, q) == 0.0  # the top 10% only
    assert 0.0 < proportional.acceptance(0.5, p) < proportional.acceptance(0.6, p) < 1.0
    assert proportional.acceptance(0.0, p) == 0.0
    assert quantile.acceptance(q, q) == 1.0
