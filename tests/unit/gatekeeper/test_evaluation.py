"""The numbers behind a decision: accuracy, macro-F1, slices, exact McNemar, latency."""

from __future__ import annotations

import math

import pytest

from hone_gatekeeper.evaluation import (
    PairedPredictions,
    compare,
    latency_summary,
    macro_f1,
    mcnemar_exact,
)
from tests.unit.gatekeeper.pairs import Pairs


def test_mcnemar_matches_the_hand_computed_binomial_tail() -> None:
    # b=10 discordant pairs the candidate wins, c=2 it loses: P(X >= 10 | X ~ Bin(12, 1/2))
    # = (C(12,10) + C(12,11) + C(12,12)) / 2^12 = (66 + 12 + 1) / 4096.
    test = mcnemar_exact(10, 2)
    assert test.p_value == pytest.approx(79 / 4096, rel=1e-12)
    assert test.discordant == 12


def test_mcnemar_is_one_sided_a_candidate_that_loses_the_discordant_pairs_is_not_significant() -> (
    None
):
    # The mirror case: P(X >= 2 | Bin(12, 1/2)) = 1 - (1 + 12) / 4096.
    assert mcnemar_exact(2, 10).p_value == pytest.approx(1 - 13 / 4096, rel=1e-12)


def test_mcnemar_without_discordant_pairs_shows_no_evidence() -> None:
    assert mcnemar_exact(0, 0).p_value == 1.0


def test_mcnemar_refuses_negative_counts() -> None:
    with pytest.raises(ValueError, match="negative"):
        mcnemar_exact(-1, 3)


def test_compare_counts_accuracy_slices_and_discordant_pairs() -> None:
    pairs = (
        Pairs()
        .add("shirt", both=6, candidate_only=3, production_only=1, camera="cam-1")
        .add("bag", both=8, neither=2, camera="cam-2")
    )
    comparison = compare(pairs.paired(), classes=2)

    assert comparison.examples == 20
    assert comparison.candidate_accuracy == pytest.approx(17 / 20)
    assert comparison.production_accuracy == pytest.approx(15 / 20)
    assert comparison.accuracy_delta == pytest.approx(0.1)
    assert comparison.mcnemar is not None
    assert (comparison.mcnemar.candidate_only, comparison.mcnemar.production_only) == (3, 1)
    shirt = comparison.per_class["shirt"]
    assert (shirt.examples, shirt.candidate, shirt.production) == (10, 0.9, 0.7)
    assert comparison.per_camera["cam-2"].delta == pytest.approx(0.0)


def test_images_without_a_camera_form_one_slice() -> None:
    pairs = Pairs().add("shirt", both=2, camera=None).add("shirt", both=1, camera="cam-1")
    comparison = compare(pairs.paired(), classes=2)
    assert comparison.per_camera["unknown"].examples == 2


def test_without_production_only_the_candidate_is_measured() -> None:
    comparison = compare(
        Pairs().add("shirt", both=3, neither=1).paired(with_production=False), classes=2
    )
    assert comparison.candidate_accuracy == pytest.approx(0.75)
    assert comparison.production_accuracy is None
    assert comparison.mcnemar is None
    assert comparison.per_class["shirt"].delta is None


def test_macro_f1_averages_the_classes_of_the_labels() -> None:
    # class a: tp 1, fp 1, fn 1 -> F1 0.5; class b: tp 1, fp 1, fn 1 -> F1 0.5.
    assert macro_f1(["a", "a", "b", "b"], ["a", "b", "b", "a"]) == pytest.approx(0.5)
    # A class never predicted right scores 0, however common the others are.
    assert macro_f1(["a", "a", "a", "b"], ["a", "a", "a", "a"]) == pytest.approx((6 / 7) / 2)


def test_paired_predictions_of_different_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="different lengths"):
        PairedPredictions(["a", "b"], [None, None], ["a"], ["a", "b"])


def test_latency_summary_reports_percentiles_in_milliseconds() -> None:
    latency = latency_summary([0.010] * 19 + [0.200])
    assert latency is not None
    assert latency.requests == 20
    assert latency.p50_ms == pytest.approx(10.0)
    assert latency.max_ms == pytest.approx(200.0)
    assert 10.0 < latency.p95_ms <= 200.0
    assert latency_summary([]) is None


def test_summary_holds_only_flat_numbers() -> None:
    comparison = compare(Pairs().add("a", both=5, candidate_only=5).paired(), classes=2)
    summary = comparison.summary()
    assert summary["examples"] == 10
    assert summary["accuracy_delta"] == pytest.approx(0.5)
    assert all(v is None or isinstance(v, int | float) for v in summary.values())
    assert not math.isnan(float(summary["p_value"] or 0))
