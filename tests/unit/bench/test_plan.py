"""The benchmark's plan: what runs, in which order, with recipes that exist."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.label_efficiency.__main__ import main, parse, plan
from bench.label_efficiency.loop import BUDGETS, RECIPES, RunSpec
from bench.label_efficiency.selection import STRATEGIES


def test_the_full_plan_covers_every_strategy_on_three_seeds_with_known_recipes() -> None:
    specs = plan(parse([]))
    assert all(spec.recipe in RECIPES for spec in specs)
    assert all(spec.budgets == BUDGETS for spec in specs)
    main = {(s.strategy, s.seed) for s in specs if s.recipe == "full"}
    assert main == {(strategy, seed) for strategy in STRATEGIES for seed in (0, 1, 2)}
    assert {s.seed for s in specs if s.recipe == "selection-only" and s.strategy == "random"} == {
        0,
        1,
        2,
    }
    assert len({spec.key for spec in specs}) == len(specs)


def test_the_targets_runs_come_first_so_a_cut_short_benchmark_still_answers_them() -> None:
    keys = [spec.key for spec in plan(parse([]))]
    first = {f"{s}-full-seed{seed}" for s in ("hone", "random", "margin") for seed in (0, 1, 2)}
    assert set(keys[: len(first)]) == first
    assert keys[-1].startswith("hone-full+")  # the ablation last


def test_quick_mode_is_one_seed_hone_and_random_to_300_labels() -> None:
    specs = plan(parse(["--quick", "--seeds", "4"]))
    assert [(s.strategy, s.seed, s.budgets[-1]) for s in specs] == [
        ("hone", 4, 300),
        ("random", 4, 300),
    ]


def test_tuned_weights_add_a_labelled_hone_run_per_seed() -> None:
    specs = plan(parse(["--tuned-weights", "uncertainty=3,rarity=0.5"]))
    tuned = [s for s in specs if s.label == "hone-tuned"]
    assert [s.seed for s in tuned] == [0, 1, 2]
    assert tuned[0].weights == (("uncertainty", 3.0), ("rarity", 0.5))
    assert tuned[0].key == "hone-tuned-full-seed0"


@pytest.mark.parametrize("bad", ["entropy=1", "uncertainty=lots"])
def test_bad_tuned_weights_are_refused(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse(["--tuned-weights", bad])
    assert "--tuned-weights" in capsys.readouterr().err


def test_long_seeds_add_hone_margin_and_random_with_more_steps_and_light_augmentation() -> None:
    long = [s for s in plan(parse(["--long-seeds", "1"])) if s.name.endswith("-long")]
    assert sorted(s.name for s in long) == ["hone-long", "margin-long", "random-long"]
    assert all(s.recipe == "full+augmentation" and s.seed == 1 for s in long)
    assert all(s.max_steps > RunSpec("hone", 0).max_steps for s in long)


def test_the_report_only_mode_refuses_to_write_an_empty_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "r.json"
    assert main(["--report-only", "--cache-dir", str(tmp_path), "--out", str(out)]) == 1
    assert "no runs to report on" in capsys.readouterr().err
    assert not out.exists()


def test_extra_recipes_run_hone_margin_and_random_on_every_seed() -> None:
    specs = plan(parse(["--extra-recipes", "full+warm-start+pseudo-labels"]))
    extra = {(s.strategy, s.seed) for s in specs if s.recipe == "full+warm-start+pseudo-labels"}
    assert extra == {(s, seed) for s in ("hone", "random", "margin") for seed in (0, 1, 2)}


def test_an_unknown_extra_recipe_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse(["--extra-recipes", "magic"])
    assert "invalid choice" in capsys.readouterr().err
