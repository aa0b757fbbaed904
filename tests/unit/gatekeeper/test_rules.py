"""The promotion rules on constructed paired predictions."""

from __future__ import annotations

from hone_gatekeeper.evaluation import Comparison, compare
from hone_gatekeeper.rules import GateRules, judge
from tests.unit.gatekeeper.pairs import Pairs

RULES = GateRules(
    alpha=0.05,
    min_accuracy_gain=0.005,
    slice_tolerance=0.03,
    min_slice_examples=50,
    max_p95_latency_ms=500,
    min_evaluation_examples=200,
)


def better_everywhere() -> Pairs:
    """Two classes on two cameras, 400 images; the candidate fixes 30 of production's errors
    and breaks 5 of its right answers, spread evenly."""
    pairs = Pairs()
    for label in ("shirt", "bag"):
        for camera in ("cam-1", "cam-2"):
            pairs.add(
                label, both=80, candidate_only=8, production_only=1, neither=11, camera=camera
            )
    return pairs


def fast(pairs: Pairs, p95_seconds: float = 0.05) -> Comparison:
    return compare(
        pairs.paired(),
        classes=10,
        candidate_seconds=[0.01] * 18 + [p95_seconds] * 2,
        production_seconds=[0.01] * 20,
    )


def failures(reasons: list[str], word: str) -> list[str]:
    return [reason for reason in reasons if word in reason]


def test_a_significantly_better_candidate_is_promoted() -> None:
    verdict = judge(fast(better_everywhere()), RULES, production="1")
    assert verdict.promote, verdict.reasons
    assert any("McNemar exact p=" in reason for reason in verdict.reasons)
    assert not failures(verdict.reasons, "insufficient")


def test_a_better_on_average_candidate_that_loses_a_class_is_rejected() -> None:
    pairs = Pairs()
    # "shirt": 100 images, the candidate loses 8 pt; "bag": 300 images, it gains 20 pt.
    pairs.add("shirt", both=80, candidate_only=2, production_only=10, neither=8)
    pairs.add("bag", both=200, candidate_only=65, production_only=5, neither=30)
    comparison = fast(pairs)
    assert comparison.accuracy_delta is not None
    assert comparison.accuracy_delta > 0.1

    verdict = judge(comparison, RULES, production="1")

    assert not verdict.promote
    (reason,) = failures(verdict.reasons, "loses more than")
    assert reason.startswith("class 'shirt'")
    assert "-8.0 pt" in reason
    assert "n=100" in reason


def test_a_better_on_average_candidate_that_loses_a_camera_is_rejected() -> None:
    pairs = Pairs()
    pairs.add("shirt", both=80, candidate_only=40, neither=20, camera="cam-1")
    pairs.add("shirt", both=50, production_only=5, neither=5, camera="cam-dusk")
    verdict = judge(fast(pairs), RULES, production="1")
    assert not verdict.promote
    (reason,) = failures(verdict.reasons, "loses more than")
    assert reason.startswith("camera 'cam-dusk'")


def test_a_macro_f1_loss_beyond_the_limit_is_rejected() -> None:
    # A rare class broken: accuracy still gains, macro-F1 falls by 3 pt.
    pairs = better_everywhere().add("belt", both=7, production_only=3, camera="cam-1")
    verdict = judge(fast(pairs), RULES, production="1")
    assert not verdict.promote
    (reason,) = failures(verdict.reasons, "macro-F1")
    assert reason.startswith("macro-F1")
    assert "may drop at most 1.0 pt" in reason


def test_a_slice_too_small_to_check_does_not_block_a_promotion() -> None:
    # "belt" loses 20 pt on 10 images: below the slice minimum, and macro-F1 barely moves.
    pairs = better_everywhere().add("belt", both=8, production_only=2, camera="cam-1")
    verdict = judge(fast(pairs), RULES, production="1")
    assert verdict.promote, verdict.reasons
    assert any("1 with fewer than 50 images not checked" in r for r in verdict.reasons)


def test_a_gain_that_is_not_significant_is_rejected() -> None:
    pairs = Pairs().add("shirt", both=350, candidate_only=12, production_only=8, neither=30)
    comparison = fast(pairs)
    assert comparison.accuracy_delta is not None
    assert comparison.accuracy_delta >= 0.005

    verdict = judge(comparison, RULES, production="1")

    assert not verdict.promote
    assert failures(verdict.reasons, "improvement not significant")


def test_a_significant_gain_below_the_minimum_is_rejected() -> None:
    # 6 fixes, 0 breaks in 2000 images: p = 1/64 < 0.05, but only +0.3 pt.
    pairs = Pairs().add("shirt", both=1800, candidate_only=6, neither=194)
    verdict = judge(fast(pairs), RULES, production="1")
    assert not verdict.promote
    assert failures(verdict.reasons, "needs +0.5 pt")
    assert not failures(verdict.reasons, "not significant")


def test_a_candidate_over_the_latency_budget_is_rejected() -> None:
    verdict = judge(fast(better_everywhere(), p95_seconds=2.0), RULES, production="1")
    assert not verdict.promote
    (reason,) = failures(verdict.reasons, "too slow")
    assert "budget 500 ms" in reason


def test_a_worse_candidate_is_rejected_on_every_count() -> None:
    pairs = Pairs().add("shirt", both=150, candidate_only=5, production_only=40, neither=5)
    verdict = judge(fast(pairs), RULES, production="1")
    assert not verdict.promote
    assert failures(verdict.reasons, "not significant")
    assert failures(verdict.reasons, "needs +0.5 pt")


def test_a_small_evaluation_set_is_named_as_insufficient_in_the_reasons() -> None:
    pairs = Pairs().add("shirt", both=30, candidate_only=3, production_only=1, neither=6)
    verdict = judge(fast(pairs), RULES, production="1")
    assert not verdict.promote
    assert failures(verdict.reasons, "insufficient evaluation data (n=40 < 200)")


def test_a_lopsided_gain_on_a_small_set_can_still_be_promoted() -> None:
    pairs = Pairs().add("shirt", both=20, candidate_only=15, neither=5)
    verdict = judge(fast(pairs), RULES, production="1")
    assert verdict.promote, verdict.reasons
    assert failures(verdict.reasons, "insufficient evaluation data (n=40 < 200)")


def test_no_evaluation_data_never_replaces_production() -> None:
    verdict = judge(None, RULES, production="1")
    assert not verdict.promote
    assert "no usable evaluation data" in verdict.reasons[0]


def test_the_first_model_is_promoted_when_it_beats_chance_by_the_margin() -> None:
    # 10 classes: chance 0.10, so 0.20 is needed; 0.50 passes.
    pairs = Pairs().add("shirt", both=100, neither=100)
    comparison = compare(pairs.paired(with_production=False), classes=10)
    verdict = judge(comparison, RULES, production=None)
    assert verdict.promote, verdict.reasons
    assert "no production version yet" in verdict.reasons[0]


def test_a_first_model_no_better_than_chance_is_rejected() -> None:
    pairs = Pairs().add("shirt", both=30, neither=170)
    comparison = compare(pairs.paired(with_production=False), classes=10)
    verdict = judge(comparison, RULES, production=None)
    assert not verdict.promote
    assert failures(verdict.reasons, "vs chance 0.100 + margin 0.100")


def test_the_first_model_without_evaluation_data_is_promoted() -> None:
    verdict = judge(None, RULES, production=None)
    assert verdict.promote
    assert any("no evaluation data yet" in reason for reason in verdict.reasons)


def test_failed_checks_come_before_passed_ones() -> None:
    verdict = judge(fast(better_everywhere(), p95_seconds=2.0), RULES, production="1")
    assert verdict.reasons[0].startswith("too slow")
