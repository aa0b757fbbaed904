"""The label-efficiency benchmark: `python -m bench.label_efficiency [--quick]` from the repo root.

Runs the loop for every strategy and seed with Hone's trainer ("full"), random with the plain
trainer (the baseline of DESIGN.md §6), and the trainer ablation with Hone's selection; writes
bench/results/label_efficiency.json and .png. Every finished run is kept in the run cache, so
an interrupted benchmark resumes where it stopped (`--fresh` ignores the cache).
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import logging
import multiprocessing
import os
import shlex
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from bench.label_efficiency.loop import BUDGETS, RECIPES, RoundResult, RunSpec, run
from bench.label_efficiency.plot import plot
from bench.label_efficiency.report import aggregate, targets
from bench.label_efficiency.selection import SELECTOR_STRATEGIES as STRATEGY_WEIGHTS
from bench.label_efficiency.selection import STRATEGIES
from bench.label_efficiency.world import World, build_world
from hone_simulator.data import default_cache_dir

RESULTS = Path(__file__).resolve().parents[1] / "results"
ABLATION = ("selection-only", "full+pseudo-labels", "full+warm-start", "full+augmentation")


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.label_efficiency", description=__doc__)
    p.add_argument("--quick", action="store_true", help="1 seed, hone+random, to 300 labels.")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES)
    p.add_argument(
        "--ablation-seeds", type=int, nargs="*", default=None,
        help="Seeds of the trainer ablation (default: the first seed).",
    )  # fmt: skip
    p.add_argument("--budgets", type=int, nargs="+", default=list(BUDGETS))
    p.add_argument(
        "--candidates", type=int, default=RunSpec.candidates,
        help="Unlabelled pool frames scored per round (the selector's view of the stream).",
    )  # fmt: skip
    p.add_argument(
        "--power", type=float, default=None,
        help='Also run "hone-power" and "margin-power": picks drawn with probability '
        "priority ** POWER instead of the top priorities.",
    )  # fmt: skip
    p.add_argument("--workers", type=int, default=2, help="Runs in parallel, 1 thread each.")
    p.add_argument("--out", type=Path, default=RESULTS / "label_efficiency.json")
    p.add_argument("--plot", type=Path, default=None, help="Default: --out with .png.")
    p.add_argument("--data-cache", type=Path, default=None, help="Fashion-MNIST cache.")
    p.add_argument("--cache-dir", type=Path, default=None, help="Rendered worlds and runs.")
    p.add_argument("--fresh", action="store_true", help="Rerun runs found in the run cache.")
    p.add_argument(
        "--extra-recipes", nargs="*", default=[], choices=sorted(RECIPES),
        help="Also run hone, margin and random with these trainer recipes on every seed.",
    )  # fmt: skip
    p.add_argument(
        "--long-seeds", type=int, nargs="*", default=[],
        help="Also run hone, margin and random with light augmentation and 3x the training "
        "steps on these seeds (what more compute per round buys).",
    )  # fmt: skip
    p.add_argument(
        "--only", default=None, metavar="GLOB",
        help="Only the planned runs whose key matches, e.g. 'hone-full-seed*'.",
    )  # fmt: skip
    p.add_argument(
        "--report-only", action="store_true",
        help="Only rebuild the report and figure from the runs already in the run cache.",
    )  # fmt: skip
    p.add_argument(
        "--tuned-weights", type=_weights, default=None, metavar="NAME=W,...",
        help='Also run "hone-tuned": hone with these strategy weights, e.g. '
        "uncertainty=3,weakness=1,rarity=0.5,slice_risk=0.5.",
    )  # fmt: skip
    return p.parse_args(argv)


def plan(args: argparse.Namespace) -> list[RunSpec]:
    """Most important first, so a benchmark cut short still answers the main questions."""
    if args.quick:
        quick = RunSpec(
            strategy="hone", seed=args.seeds[0], budgets=(100, 200, 300), min_steps=20,
            max_steps=20, candidates=600, unlabelled_sample=1000, chunk=25,
        )  # fmt: skip
        return [quick, replace(quick, strategy="random")]
    budgets = tuple(args.budgets)
    ablation_seeds = args.ablation_seeds if args.ablation_seeds is not None else args.seeds[:1]
    first = [s for s in ("hone", "random", "margin") if s in args.strategies]
    specs = [RunSpec(s, seed, budgets=budgets) for seed in args.seeds for s in first]
    specs += [RunSpec("random", seed, "selection-only", budgets) for seed in args.seeds]
    specs += [
        RunSpec(s, seed, budgets=budgets)
        for seed in args.seeds
        for s in args.strategies
        if s not in first
    ]
    specs += [
        RunSpec("hone", seed, recipe, budgets) for seed in ablation_seeds for recipe in ABLATION
    ]
    specs += [
        RunSpec(strategy, seed, recipe, budgets)
        for recipe in args.extra_recipes
        for seed in args.seeds
        for strategy in ("hone", "random", "margin")
    ]
    specs += [
        RunSpec(
            strategy,
            seed,
            "full+augmentation",
            budgets,
            epochs=60.0,
            min_steps=600,
            max_steps=3000,
            label=f"{strategy}-long",
        )
        for seed in args.long_seeds
        for strategy in ("hone", "random", "margin")
    ]
    if args.power is not None:
        specs += [
            RunSpec(strategy, seed, budgets=budgets, power=args.power, label=f"{strategy}-power")
            for seed in args.seeds
            for strategy in ("hone", "margin")
        ]
    if args.tuned_weights:
        specs += [
            RunSpec("hone", seed, budgets=budgets, weights=args.tuned_weights, label="hone-tuned")
            for seed in args.seeds
        ]
    return [replace(spec, candidates=args.candidates) for spec in specs]


def _weights(text: str) -> tuple[tuple[str, float], ...]:
    """`uncertainty=3,weakness=1` -> (("uncertainty", 3.0), ("weakness", 1.0)), checked."""
    pairs = []
    for part in text.split(","):
        name, _, value = part.partition("=")
        if name.strip() not in STRATEGY_WEIGHTS:
            raise argparse.ArgumentTypeError(f"unknown strategy weight {name.strip()!r}")
        try:
            pairs.append((name.strip(), float(value)))
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    return tuple(pairs)


def world_options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {"data_cache": args.data_cache, "cache_dir": args.cache_dir}
    if args.quick:
        options.update(test_size=1000, pool_objects=2500)
    return options


_worlds: dict[int, World] = {}


def _execute(spec: RunSpec, options: dict[str, Any]) -> dict[str, Any]:
    """One run in a worker process (worlds are cached per process)."""
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    if spec.seed not in _worlds:
        _worlds[spec.seed] = build_world(spec.seed, **options)

    def progress(spec: RunSpec, result: RoundResult) -> None:
        print(
            f"{spec.key}: {result.human_labels} labels, accuracy {result.accuracy:.4f}, "
            f"dusk gap {result.dusk_gap:+.4f}, {result.seconds}",
            file=sys.stderr,
            flush=True,
        )

    return run(_worlds[spec.seed], spec, progress).to_json()


def _run_all(
    todo: list[RunSpec], options: dict[str, Any], workers: int
) -> Iterator[tuple[RunSpec, dict[str, Any]]]:
    """Runs in this process (one worker), or in a pool of fresh "spawn" processes: forking a
    process that already runs threads (torch, a test session's clients) can deadlock."""
    if workers <= 1 or len(todo) == 1:
        for spec in todo:
            yield spec, _execute(spec, options)
        return
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(min(workers, len(todo)), mp_context=context) as pool:
        futures = {pool.submit(_execute, spec, options): spec for spec in todo}
        for future in as_completed(futures):
            yield futures[future], future.result()


def run_cache(args: argparse.Namespace) -> Path:
    base = args.cache_dir or default_cache_dir() / "label-efficiency"
    return Path(base).expanduser() / ("runs-quick" if args.quick else "runs")


def _cached(path: Path, spec: RunSpec) -> dict[str, Any] | None:
    """A finished run of exactly `spec` (fields added since it ran take their defaults)."""
    try:
        found: dict[str, Any] = json.loads(path.read_text())
        same = RunSpec(**_spec_args(found["spec"])) == spec
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return found if same else None


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    started = time.time()
    load_before = os.getloadavg()
    specs = plan(args)
    if args.only:
        specs = [spec for spec in specs if fnmatch.fnmatchcase(spec.key, args.only)]
    cache = run_cache(args)
    cache.mkdir(parents=True, exist_ok=True)
    options = world_options(args)
    runs: list[dict[str, Any]] = []
    todo: list[RunSpec] = []
    for spec in specs:
        found = None if args.fresh else _cached(cache / f"{spec.key}.json", spec)
        if found is None:
            todo.append(spec)
        else:
            runs.append(found)
    print(f"{len(specs)} runs, {len(runs)} from the run cache {cache}", file=sys.stderr)
    if args.report_only:
        specs = [spec for spec in specs if spec not in todo]
        todo = []
    if not runs and not todo:
        print("no runs to report on", file=sys.stderr)
        return 1
    if todo:
        # Worlds are rendered once per seed before the pool starts, not by racing workers.
        for seed in sorted({s.seed for s in todo}):
            build_world(seed, **options)
        for spec, result in _run_all(todo, options, args.workers):
            (cache / f"{spec.key}.json").write_text(json.dumps(result, indent=1))
            runs.append(result)
            print(f"done {spec.key} in {result['seconds']:.0f} s", file=sys.stderr)
    order = {spec.key: i for i, spec in enumerate(specs)}
    runs.sort(key=lambda r: order[RunSpec(**_spec_args(r["spec"])).key])
    document = {
        "benchmark": "label efficiency (issue 6)",
        "command": " ".join(
            [".venv/bin/python -m bench.label_efficiency", *map(shlex.quote, sys.argv[1:])]
        ),
        "started_at": datetime.fromtimestamp(started, UTC).isoformat(),
        "wall_seconds": None if args.report_only else round(time.time() - started),
        "report_only": args.report_only,
        "compute": compute(runs),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "configuration": {
            "world": {k: str(v) if isinstance(v, Path) else v for k, v in options.items()},
            "recipes": {name: asdict(recipe) for name, recipe in RECIPES.items()},
            "runs": [asdict(spec) for spec in specs],
        },
        "targets": {
            name: targets(runs, hone=name)
            for name in ("hone", "hone-tuned", "hone-power")
            if any((r["spec"].get("label") or r["spec"]["strategy"]) == name for r in runs)
        },
        "aggregates": aggregate(runs),
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, indent=1) + "\n")
    figure = plot(runs, args.plot or args.out.with_suffix(".png"))
    print(f"wrote {args.out} and {figure}", file=sys.stderr)
    return 0


def compute(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """What the runs cost: their total seconds and the mean seconds of each phase of a round."""
    phases: dict[str, list[float]] = {}
    for finished in runs:
        for r in finished["rounds"]:
            for phase, seconds in r["seconds"].items():
                phases.setdefault(phase, []).append(seconds)
    return {
        "runs": len(runs),
        "run_seconds_total": round(sum(r["seconds"] for r in runs)),
        "mean_seconds_per_round": {k: round(sum(v) / len(v), 1) for k, v in sorted(phases.items())},
    }


def _spec_args(raw: dict[str, Any]) -> dict[str, Any]:
    """A spec read back from JSON: lists back into the tuples the dataclass holds."""
    args = {**raw, "budgets": tuple(raw["budgets"])}
    if "weights" in raw:
        args["weights"] = tuple((name, float(w)) for name, w in raw["weights"])
    return args


if __name__ == "__main__":
    raise SystemExit(main())
