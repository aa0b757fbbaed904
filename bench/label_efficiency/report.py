"""From runs to findings: labels needed to reach an accuracy, the area under the accuracy-vs-labels
curve, the dusk camera's gap, their spread over seeds, and the targets of issue 6."""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

THRESHOLDS = (0.85, 0.88)


def labels_to_reach(
    budgets: Sequence[int], accuracy: Sequence[float], target: float
) -> float | None:
    """Labels at which the curve first reaches `target`, interpolated linearly between the two
    budgets around the crossing; None if it never does. Reaching it at the first budget
    counts as that budget (nothing is known below it)."""
    for i, (labels, value) in enumerate(zip(budgets, accuracy, strict=True)):
        if value >= target:
            if i == 0:
                return float(labels)
            below_labels, below = budgets[i - 1], accuracy[i - 1]
            return below_labels + (labels - below_labels) * (target - below) / (value - below)
    return None


def normalised_auc(budgets: Sequence[int], accuracy: Sequence[float]) -> float:
    """Trapezoid area under accuracy-vs-labels over [first, last budget], divided by the width:
    the mean accuracy over the label range (1.0 would be perfect from the first label)."""
    if len(budgets) < 2:
        return float(accuracy[0])
    area = sum(
        (b1 - b0) * (a0 + a1) / 2
        for b0, b1, a0, a1 in zip(budgets, budgets[1:], accuracy, accuracy[1:], strict=False)
    )
    return area / (budgets[-1] - budgets[0])


def spread(values: Sequence[float]) -> dict[str, float | int]:
    """Mean, sample standard deviation, min and max over seeds."""
    return {
        "mean": round(statistics.fmean(values), 4),
        "std": round(statistics.stdev(values), 4) if len(values) > 1 else 0.0,
        "min": round(min(values), 4),
        "max": round(max(values), 4),
        "n": len(values),
    }


def reach_summary(per_seed: Sequence[float | None]) -> dict[str, Any]:
    reached = [v for v in per_seed if v is not None]
    out: dict[str, Any] = {
        "per_seed": [None if v is None else round(v) for v in per_seed],
        "reached": f"{len(reached)}/{len(per_seed)} seeds",
    }
    if len(reached) == len(per_seed) and reached:
        out.update({k: round(v) if k != "n" else v for k, v in spread(reached).items()})
    else:
        out["summary"] = "not reached" if not reached else "not reached in every seed"
    return out


Run = dict[str, Any]


def group(runs: Sequence[Run]) -> dict[tuple[str, str], list[Run]]:
    """Runs by (strategy, recipe), each list in seed order."""
    grouped: defaultdict[tuple[str, str], list[Run]] = defaultdict(list)
    for run in runs:
        spec = run["spec"]
        grouped[(spec.get("label") or spec["strategy"], spec["recipe"])].append(run)
    return {k: sorted(v, key=lambda r: r["spec"]["seed"]) for k, v in sorted(grouped.items())}


def curve(run: Run, metric: str = "accuracy") -> tuple[list[int], list[float]]:
    rounds = run["rounds"]
    return [r["human_labels"] for r in rounds], [r[metric] for r in rounds]


def aggregate(runs: Sequence[Run]) -> dict[str, Any]:
    """Per (strategy, recipe): per-budget spreads and the seed-level summaries."""
    out: dict[str, Any] = {}
    for (strategy, recipe), members in group(runs).items():
        budgets = [r["budget"] for r in members[0]["rounds"]]
        per_budget = []
        for i, budget in enumerate(budgets):
            rows = [m["rounds"][i] for m in members]
            cameras = sorted(rows[0]["per_camera"])
            per_budget.append(
                {
                    "labels": budget,
                    "accuracy": spread([r["accuracy"] for r in rows]),
                    "macro_f1": spread([r["macro_f1"] for r in rows]),
                    "dusk_gap": spread([r["dusk_gap"] for r in rows]),
                    "per_camera": {
                        c: round(statistics.fmean(r["per_camera"][c] for r in rows), 4)
                        for c in cameras
                    },
                }
            )
        summary: dict[str, Any] = {
            "seeds": [m["spec"]["seed"] for m in members],
            "per_budget": per_budget,
            "auc": spread([normalised_auc(*curve(m)) for m in members]),
            "dusk_gap_auc": spread([normalised_auc(*curve(m, "dusk_gap")) for m in members]),
            "final_accuracy": spread([m["rounds"][-1]["accuracy"] for m in members]),
        }
        for threshold in THRESHOLDS:
            summary[f"labels_to_{round(threshold * 100)}"] = reach_summary(
                [labels_to_reach(*curve(m), threshold) for m in members]
            )
        out[f"{strategy}/{recipe}"] = summary
    return out


def targets(runs: Sequence[Run], main_recipe: str = "full", hone: str = "hone") -> dict[str, Any]:
    """The three targets of issue 6 for the strategy named `hone`, measured seed by seed
    against random and margin on the same world."""
    grouped = group(runs)
    ours = {r["spec"]["seed"]: r for r in grouped.get((hone, main_recipe), [])}
    out: dict[str, Any] = {}
    for label, baseline in (
        ("vs_random_same_trainer", grouped.get(("random", main_recipe), [])),
        ("vs_random_selection_only", grouped.get(("random", "selection-only"), [])),
    ):
        rows = []
        for base in baseline:
            seed = base["spec"]["seed"]
            if seed not in ours:
                continue
            budgets, accuracy = curve(base)
            goal = accuracy[-1]
            random_needs = labels_to_reach(budgets, accuracy, goal)
            hone_needs = labels_to_reach(*curve(ours[seed]), goal)
            rows.append(
                {
                    "seed": seed,
                    "random_accuracy_at_2000": goal,
                    "random_labels": None if random_needs is None else round(random_needs),
                    "hone_labels": None if hone_needs is None else round(hone_needs),
                    "ratio": None
                    if hone_needs is None or random_needs is None
                    else round(hone_needs / random_needs, 3),
                }
            )
        ratios = [r["ratio"] for r in rows]
        met = bool(rows) and all(r is not None and r <= 1 / 3 for r in ratios)
        out[f"one_third_of_random_labels_{label}"] = {
            "per_seed": rows,
            "ratio": spread([r for r in ratios if r is not None]) if any(ratios) else None,
            "met_in_every_seed": met,
        }
    out["label_share_to_match_random_same_trainer"] = savings(
        ours, grouped.get(("random", main_recipe), [])
    )
    reach = [labels_to_reach(*curve(r), 0.88) for r in ours.values()]
    out["hone_reaches_88_within_2000"] = {
        "labels": reach_summary(reach),
        "met_in_every_seed": bool(reach) and all(v is not None and v <= 2000 for v in reach),
    }
    margin = {r["spec"]["seed"]: r for r in grouped.get(("margin", main_recipe), [])}
    gaps = []
    for seed, run in ours.items():
        if seed in margin:
            hone_gap = normalised_auc(*curve(run, "dusk_gap"))
            margin_gap = normalised_auc(*curve(margin[seed], "dusk_gap"))
            gaps.append({"seed": seed, "hone": round(hone_gap, 4), "margin": round(margin_gap, 4)})
    out["dusk_gap_closes_faster_than_margin"] = {
        "measure": "mean dusk gap over the label range (area under gap-vs-labels, normalised); "
        "closer to 0 (or positive) is better",
        "per_seed": gaps,
        "met_in_every_seed": bool(gaps) and all(g["hone"] > g["margin"] for g in gaps),
    }
    return out


def savings(ours: dict[int, Run], baseline: Sequence[Run]) -> dict[str, Any]:
    """For every budget b of the baseline: the labels ours needs to reach the baseline's
    accuracy at b, as a share of b (seed by seed; below 1 means fewer labels)."""
    shares: defaultdict[int, list[float]] = defaultdict(list)
    missing: defaultdict[int, int] = defaultdict(int)
    for base in baseline:
        run = ours.get(base["spec"]["seed"])
        if run is None:
            continue
        for budget, accuracy in zip(*curve(base), strict=True):
            needed = labels_to_reach(*curve(run), accuracy)
            if needed is None:
                missing[budget] += 1
            else:
                shares[budget].append(needed / budget)
    return {
        "measure": "labels needed to match random's accuracy at each budget, / that budget",
        "per_budget": {
            str(b): {**(spread(shares[b]) if shares[b] else {}), "not_reached": missing[b]}
            for b in sorted(set(shares) | set(missing))
        },
    }
