"""Markdown tables of a results file, for docs/label-efficiency.md (numbers are generated, never
copied by hand): `python -m bench.label_efficiency.tables [bench/results/label_efficiency.json]`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parents[1] / "results" / "label_efficiency.json"


def _pm(spread: dict[str, Any], scale: float = 100.0, digits: int = 1) -> str:
    return f"{spread['mean'] * scale:.{digits}f} ± {spread['std'] * scale:.{digits}f}"


def _reach(summary: dict[str, Any]) -> str:
    if "mean" in summary:
        return f"{summary['mean']} ± {summary['std']}"
    seeds = ", ".join("-" if v is None else str(v) for v in summary["per_seed"])
    return f"{summary.get('summary', 'not reached')} ({seeds})"


def accuracy_table(aggregates: dict[str, Any], recipe: str = "full") -> str:
    """Accuracy (mean ± std over seeds, %) per budget, per strategy, and the summaries."""
    rows = {k.split("/")[0]: v for k, v in aggregates.items() if k.split("/")[1] == recipe}
    if not rows:
        return ""
    budgets = [b["labels"] for b in next(iter(rows.values()))["per_budget"]]
    head = "| strategy | " + " | ".join(str(b) for b in budgets) + " | AUC | to 85% | to 88% |"
    lines = [head, "|" + " --- |" * (len(budgets) + 4)]
    for name, summary in sorted(rows.items(), key=lambda kv: -kv[1]["auc"]["mean"]):
        cells = [_pm(b["accuracy"]) for b in summary["per_budget"]]
        lines.append(
            f"| {name} | " + " | ".join(cells) + f" | {_pm(summary['auc'])} | "
            f"{_reach(summary['labels_to_85'])} | {_reach(summary['labels_to_88'])} |"
        )
    return "\n".join(lines)


def gap_table(aggregates: dict[str, Any], recipe: str = "full") -> str:
    """The dusk camera's gap (points, mean ± std over seeds) per budget."""
    rows = {k.split("/")[0]: v for k, v in aggregates.items() if k.split("/")[1] == recipe}
    if not rows:
        return ""
    budgets = [b["labels"] for b in next(iter(rows.values()))["per_budget"]]
    lines = [
        "| strategy | " + " | ".join(str(b) for b in budgets) + " | mean over range |",
        "|" + " --- |" * (len(budgets) + 2),
    ]
    for name, summary in sorted(rows.items()):
        cells = [_pm(b["dusk_gap"]) for b in summary["per_budget"]]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {_pm(summary['dusk_gap_auc'])} |")
    return "\n".join(lines)


def recipe_table(document: dict[str, Any], strategy: str = "hone") -> str:
    """One strategy under every trainer recipe (the ablation), on the seeds every recipe ran,
    so each row compares like with like."""
    from bench.label_efficiency.report import curve, group, normalised_auc

    grouped = {k[1]: v for k, v in group(document["runs"]).items() if k[0] == strategy}
    if len(grouped) < 2:
        return ""
    common = set.intersection(*({r["spec"]["seed"] for r in v} for v in grouped.values()))
    budgets = curve(next(iter(grouped.values()))[0])[0]
    lines = _seeded_header(sorted(common), "recipe", budgets, ["AUC"])
    for recipe, members in sorted(grouped.items()):
        chosen = [m for m in members if m["spec"]["seed"] in common]
        auc = sum(normalised_auc(*curve(m)) for m in chosen) / len(chosen)
        cells = [*_mean_accuracy(chosen), f"{100 * auc:.1f}"]
        lines.append(f"| {recipe} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _seeded_header(seeds: list[int], first: str, budgets: list[int], extra: list[str]) -> list[str]:
    """A table's seed line and header: `first`, one column per budget, then `extra`."""
    columns = [first, *map(str, budgets), *extra]
    return [
        f"Seeds: {', '.join(map(str, seeds))}.",
        "",
        "| " + " | ".join(columns) + " |",
        "|" + " --- |" * len(columns),
    ]


def _mean_accuracy(runs: list[dict[str, Any]]) -> list[str]:
    """Accuracy (%) per budget, averaged over `runs`."""
    from bench.label_efficiency.report import curve

    columns = zip(*(curve(r)[1] for r in runs), strict=True)
    return [f"{100 * sum(c) / len(c):.1f}" for c in columns]


def savings_table(document: dict[str, Any]) -> str:
    """Labels Hone needs to match random's accuracy at each budget, as a share of the budget."""
    per_budget = document["targets"]["hone"]["label_share_to_match_random_same_trainer"]
    lines = [
        "| random's budget | Hone's labels / budget | seeds not reaching it |",
        "| --- | --- | --- |",
    ]
    for budget, share in per_budget["per_budget"].items():
        measured = _pm(share, 1.0, 2) if "mean" in share else "-"
        lines.append(f"| {budget} | {measured} | {share['not_reached']} |")
    return "\n".join(lines)


def targets_table(document: dict[str, Any]) -> str:
    """The three targets of issue 6, seed by seed."""
    hone = document["targets"]["hone"]

    def ratios(key: str) -> str:
        rows = hone[key]["per_seed"]
        if not rows:
            return "not run"
        return ", ".join("not reached" if r["ratio"] is None else f"{r['ratio']:.2f}" for r in rows)

    reach = hone["hone_reaches_88_within_2000"]["labels"]["per_seed"]
    gaps = hone["dusk_gap_closes_faster_than_margin"]["per_seed"]
    gap_cells = "; ".join(
        f"seed {g['seed']}: {100 * g['hone']:+.1f} vs {100 * g['margin']:+.1f}" for g in gaps
    )

    def met(key: str) -> str:
        return "yes" if hone[key]["met_in_every_seed"] else "no"

    first = "one_third_of_random_labels_vs_random_same_trainer"
    second = "one_third_of_random_labels_vs_random_selection_only"
    third = "hone_reaches_88_within_2000"
    fourth = "dusk_gap_closes_faster_than_margin"
    return "\n".join(
        [
            "| target | measured (per seed) | met |",
            "| --- | --- | --- |",
            f"| labels to reach random's 2,000-label accuracy, / random's (≤ 0.33), random with "
            f"the same trainer | {ratios(first)} | {met(first)} |",
            f"| the same, random with the plain trainer | {ratios(second)} | {met(second)} |",
            f"| 88% within 2,000 labels | "
            f"{', '.join('not reached' if v is None else str(v) for v in reach)} | {met(third)} |",
            f"| dusk gap closes faster than margin (mean gap over the range, points, Hone vs "
            f"margin) | {gap_cells} | {met(fourth)} |",
        ]
    )


def long_table(document: dict[str, Any]) -> str:
    """Each strategy at the normal step budget beside the same strategy with 3x the steps and
    light augmentation ("-long"), on the seeds the long runs used."""
    from bench.label_efficiency.report import curve, group

    grouped = group(document["runs"])
    longs = {k[0][: -len("-long")]: v for k, v in grouped.items() if k[0].endswith("-long")}
    if not longs:
        return ""
    seeds = sorted({r["spec"]["seed"] for v in longs.values() for r in v})
    budgets = curve(next(iter(longs.values()))[0])[0]
    lines = _seeded_header(seeds, "strategy, trainer", budgets, [])
    for strategy, members in sorted(longs.items()):
        normal = [r for r in grouped.get((strategy, "full"), []) if r["spec"]["seed"] in seeds]
        for name, runs in ((f"{strategy}, full", normal), (f"{strategy}, long", members)):
            if not runs:
                continue
            lines.append(f"| {name} | " + " | ".join(_mean_accuracy(runs)) + " |")
    return "\n".join(lines)


def cost_line(document: dict[str, Any]) -> str:
    compute = document["compute"]
    per_round = ", ".join(f"{k} {v} s" for k, v in compute["mean_seconds_per_round"].items())
    return (
        f"{compute['runs']} runs, {compute['run_seconds_total'] / 3600:.1f} CPU-hours of run "
        f"time in all (one thread per run); mean per round: {per_round}."
    )


def markdown(document: dict[str, Any]) -> str:
    aggregates = document["aggregates"]
    parts = [
        "### Accuracy (%) by human labels, trainer `full`",
        accuracy_table(aggregates),
        "### cam-dusk gap (points), trainer `full`",
        gap_table(aggregates),
        "### Hone's selection under each trainer recipe",
        recipe_table(document, "hone"),
        "### Random under each trainer recipe",
        recipe_table(document, "random"),
        "### Label savings against random (same trainer)",
        savings_table(document),
        "### More compute per round",
        long_table(document),
        "### Targets of issue 6",
        targets_table(document),
        "### Cost",
        cost_line(document),
    ]
    return "\n\n".join(p for p in parts if p) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0]) if args else RESULTS
    print(markdown(json.loads(path.read_text())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
