"""The benchmark's arithmetic: labels to reach an accuracy, the normalised AUC, the targets."""

from __future__ import annotations

from typing import Any

import pytest

from bench.label_efficiency.report import (
    aggregate,
    labels_to_reach,
    normalised_auc,
    reach_summary,
    targets,
)

BUDGETS = [100, 200, 500, 1000, 2000]


def test_labels_to_reach_interpolates_between_the_budgets_around_the_crossing() -> None:
    assert labels_to_reach([100, 200, 300], [0.80, 0.84, 0.90], 0.85) == pytest.approx(
        200 + 100 * 0.01 / 0.06
    )


def test_labels_to_reach_uses_the_first_crossing_even_if_the_curve_dips_later() -> None:
    assert labels_to_reach([100, 200, 300], [0.86, 0.84, 0.90], 0.85) == 100


def test_a_target_never_reached_is_none_not_the_last_budget() -> None:
    assert labels_to_reach([100, 200], [0.80, 0.849], 0.85) is None


def test_normalised_auc_is_the_mean_accuracy_over_the_label_range() -> None:
    assert normalised_auc([100, 2000], [0.8, 0.8]) == pytest.approx(0.8)
    # 0.7 over [100, 200], then 0.9 over [200, 300]: trapezoids of a rising-then-flat curve.
    assert normalised_auc([100, 200, 300], [0.7, 0.9, 0.9]) == pytest.approx((0.8 + 0.9) / 2)


def test_reach_summary_says_not_reached_unless_every_seed_reached() -> None:
    assert reach_summary([300.4, 500.0, 400.0])["mean"] == 400
    partly = reach_summary([300.0, None, 400.0])
    assert partly["summary"] == "not reached in every seed"
    assert partly["reached"] == "2/3 seeds"
    assert "mean" not in partly


def run(strategy: str, seed: int, accuracy: list[float], recipe: str = "full") -> dict[str, Any]:
    return {
        "spec": {"strategy": strategy, "seed": seed, "recipe": recipe},
        "rounds": [
            {
                "budget": b,
                "human_labels": b,
                "accuracy": a,
                "macro_f1": a,
                "dusk_gap": -0.05 if strategy == "margin" else -0.01,
                "per_camera": {"cam-dusk": a - 0.02, "cam-north": a},
            }
            for b, a in zip(BUDGETS, accuracy, strict=True)
        ],
    }


def test_targets_compare_hone_with_random_seed_by_seed() -> None:
    runs = [
        run("random", 0, [0.70, 0.75, 0.80, 0.83, 0.85]),
        run("hone", 0, [0.70, 0.80, 0.86, 0.88, 0.89]),
        run("random", 1, [0.70, 0.75, 0.80, 0.83, 0.86]),
        run("hone", 1, [0.70, 0.78, 0.84, 0.87, 0.87]),
        run("margin", 0, [0.70, 0.78, 0.84, 0.87, 0.88]),
        run("margin", 1, [0.70, 0.78, 0.84, 0.87, 0.88]),
    ]
    found = targets(runs)
    rows = found["one_third_of_random_labels_vs_random_same_trainer"]["per_seed"]
    # Seed 0: random reaches 0.85 at 2000; hone crosses 0.85 between 200 and 500 labels.
    assert rows[0]["random_labels"] == 2000
    assert rows[0]["hone_labels"] == round(200 + 300 * 0.05 / 0.06)
    assert rows[0]["ratio"] == pytest.approx(450 / 2000, abs=1e-3)
    # Seed 1: hone gets to 0.86 between 500 and 1000 labels: more than a third.
    assert found["one_third_of_random_labels_vs_random_same_trainer"]["met_in_every_seed"] is False
    reach = found["hone_reaches_88_within_2000"]
    assert reach["labels"]["per_seed"] == [1000, None]
    assert reach["met_in_every_seed"] is False
    assert found["dusk_gap_closes_faster_than_margin"]["met_in_every_seed"] is True
    assert found["one_third_of_random_labels_vs_random_selection_only"]["per_seed"] == []


def test_aggregate_gives_per_budget_spread_over_seeds() -> None:
    runs = [
        run("hone", 0, [0.7, 0.8, 0.85, 0.88, 0.9]),
        run("hone", 1, [0.7, 0.8, 0.83, 0.86, 0.88]),
    ]
    summary = aggregate(runs)["hone/full"]
    last = summary["per_budget"][-1]
    assert last["labels"] == 2000
    assert last["accuracy"]["mean"] == pytest.approx(0.89)
    assert last["accuracy"]["min"] == pytest.approx(0.88)
    assert summary["labels_to_88"]["per_seed"] == [1000, 2000]
    assert summary["labels_to_85"]["per_seed"] == [500, 833]
    assert summary["labels_to_85"]["mean"] == 667


def test_label_share_measures_how_many_labels_hone_needs_for_randoms_accuracy() -> None:
    runs = [
        run("random", 0, [0.70, 0.75, 0.80, 0.83, 0.85]),
        run("hone", 0, [0.70, 0.80, 0.86, 0.88, 0.89]),
        run("margin", 0, [0.70, 0.78, 0.84, 0.87, 0.88]),
    ]
    shares = targets(runs)["label_share_to_match_random_same_trainer"]["per_budget"]
    # Random's 0.75 at 200 labels: hone gets there half-way from 100 to 200 labels.
    assert shares["200"]["mean"] == pytest.approx(150 / 200)
    assert shares["100"]["mean"] == 1.0
    assert shares["2000"]["mean"] == pytest.approx(450 / 2000, abs=1e-3)
    assert all(v["not_reached"] == 0 for v in shares.values())
