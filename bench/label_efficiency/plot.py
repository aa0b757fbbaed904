"""The benchmark's figure: accuracy vs human labels per strategy (mean, min-max band over seeds),
the dusk camera's gap, and the trainer ablation."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from bench.label_efficiency.report import THRESHOLDS, curve, group

COLOURS = {
    "hone": "tab:red",
    "hone-tuned": "tab:pink",
    "hone-long": "darkred",
    "random-long": "black",
    "margin-long": "navy",
    "hone-power": "tab:olive",
    "margin-power": "tab:cyan",
    "uncertainty": "tab:orange",
    "margin": "tab:blue",
    "rarity": "tab:green",
    "weakness": "tab:purple",
    "slice_risk": "tab:brown",
    "random": "tab:gray",
}


def _band(ax: Any, members: Sequence[dict[str, Any]], metric: str, **style: Any) -> None:
    budgets = curve(members[0], metric)[0]
    values = np.array([curve(m, metric)[1] for m in members])
    line = ax.plot(budgets, values.mean(axis=0), marker="o", markersize=3, **style)[0]
    if len(members) > 1:
        ax.fill_between(
            budgets, values.min(axis=0), values.max(axis=0), color=line.get_color(), alpha=0.15
        )


def plot(runs: Sequence[dict[str, Any]], out: Path, main_recipe: str = "full") -> Path:
    grouped = group(runs)
    ablation = [k for k in grouped if k[0] == "hone" and k[1] != main_recipe]
    panels = 3 if ablation else 2
    # The object API, not pyplot: no global figure state, no display backend needed.
    fig = Figure(figsize=(6 * panels, 4.8))
    axes = fig.subplots(1, panels)
    accuracy_ax, gap_ax = axes[0], axes[1]
    for (strategy, recipe), members in grouped.items():
        if recipe == main_recipe:
            colour = COLOURS.get(strategy)
            _band(accuracy_ax, members, "accuracy", label=strategy, color=colour)
            _band(gap_ax, members, "dusk_gap", label=strategy, color=colour)
        elif strategy.endswith("-long"):
            _band(
                accuracy_ax, members, "accuracy", label=f"{strategy} (light aug., 3x steps)",
                color=COLOURS.get(strategy), linestyle=":",
            )  # fmt: skip
        elif strategy == "random" and recipe == "selection-only":
            _band(
                accuracy_ax, members, "accuracy", label="random, plain trainer",
                color="black", linestyle="--",
            )  # fmt: skip
    for threshold in THRESHOLDS:
        accuracy_ax.axhline(threshold, color="black", linewidth=0.6, linestyle=":")
    accuracy_ax.set(
        title=f"Held-out accuracy (trainer: {main_recipe}; band = min-max over seeds)",
        xlabel="human labels",
        ylabel="accuracy",
        xscale="log",
    )
    gap_ax.axhline(0.0, color="black", linewidth=0.6)
    gap_ax.set(
        title="cam-dusk accuracy minus the other cameras'",
        xlabel="human labels",
        ylabel="accuracy gap",
        xscale="log",
    )
    if ablation:
        ax = axes[2]
        for key in [*ablation, ("hone", main_recipe), ("random", "selection-only")]:
            if key in grouped:
                _band(ax, grouped[key], "accuracy", label=f"{key[0]}: {key[1]}")
        for threshold in THRESHOLDS:
            ax.axhline(threshold, color="black", linewidth=0.6, linestyle=":")
        ax.set(
            title="Ablation of the trainer", xlabel="human labels", ylabel="accuracy", xscale="log"
        )
        ax.legend(fontsize=7)
    budgets = sorted({r["human_labels"] for run in runs for r in run["rounds"]})
    for ax in axes:
        ax.set_xticks(budgets, [str(b) for b in budgets], fontsize=7)
        ax.minorticks_off()
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    return out
