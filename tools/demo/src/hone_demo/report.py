"""The run's report: a JSON summary collected from the run and the services, PNG plots and an
HTML page rendered from that JSON alone (so `hone-demo report <run-dir>` can redo them)."""

from __future__ import annotations

import html
import json
import statistics
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg
import matplotlib

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt

from hone_demo import admin as admin_api
from hone_demo.control import Heldout

if TYPE_CHECKING:
    from hone_demo.run import RunState

PLOTS = {
    "accuracy_vs_labels": "Production accuracy vs human labels: Hone vs random control",
    "per_camera": "Held-out accuracy per camera, before and after",
    "strategy_yield": "Strategy yield (share of picks the model had wrong) and lift",
    "promotion_timeline": "Gate decisions over time",
    "label_latency": "Label-to-production latency",
}


def _when(value: Any) -> datetime | None:
    return datetime.fromisoformat(str(value)) if value else None


def label_latencies(
    answered: list[datetime], runs: list[dict[str, Any]], decisions: list[dict[str, Any]]
) -> list[float]:
    """Seconds from each label to the promotion of the first model trained on it: a run's
    snapshot is taken when it starts, so that is the first promoted run started after it."""
    promoted_at = {
        d["model_version"]: _when(d.get("applied_at") or d.get("decided_at"))
        for d in decisions
        if d["kind"] == "promote"
    }
    promoted_runs = sorted(
        (start, promoted_at[r["model_version"]])
        for r in runs
        if r.get("model_version") in promoted_at
        and (start := _when(r["started_at"])) is not None
        and promoted_at[r["model_version"]] is not None
    )
    latencies: list[float] = []
    for at in answered:
        for start, promoted in promoted_runs:
            if start > at and promoted is not None:
                latencies.append((promoted - at).total_seconds())
                break
    return latencies


def own_yields(state: RunState) -> dict[str, dict[str, float | int]]:
    """From the simulated labelers' side: per strategy, picks answered with a label and the
    share the production model had wrong (a cross-check of the selector's own numbers)."""
    picks: Counter[str] = Counter()
    wrong: Counter[str] = Counter()
    for a in state.labels.answers:
        if a.verdict != "label" or a.true_label is None or a.predicted is None:
            continue
        for strategy in a.strategies or ("none",):
            picks[strategy] += 1
            wrong[strategy] += a.predicted != a.true_label
    return {
        s: {"labelled": picks[s], "wrong": wrong[s], "yield": wrong[s] / picks[s]}
        for s in sorted(picks)
    }


async def write_report(
    state: RunState, admin: admin_api.Admin, pool: asyncpg.Pool[Any], heldout: Heldout
) -> dict[str, Any]:
    config = state.config
    decisions = await admin.get("gatekeeper", "/v1/gatekeeper/decisions", limit=500) or []
    runs = await admin.get("trainer", "/v1/trainer/runs", limit=500) or []
    selector = await admin.get("selector", "/v1/selector/stats") or {}
    labeling = await admin.get("labeling-api", "/v1/stats") or {}
    answers = await admin_api.answer_counts(pool, config)
    points = [
        {
            "at_seconds": round(p.at_seconds, 1),
            "labels": p.labels,
            "version": p.version,
            "hone_accuracy": p.hone.accuracy,
            "control_accuracy": p.control.score.accuracy,
            "control_labels": p.control.labels,
            "hone_per_camera": p.hone.per_camera,
            "control_per_camera": p.control.score.per_camera,
            "control_train_seconds": round(p.control.train_seconds, 1),
        }
        for p in state.points
    ]
    latencies = label_latencies(
        [a.answered_at for a in state.labels.answers if a.verdict == "label"], runs, decisions
    )
    final = points[-1] if points else None
    why = Counter(a.why for a in state.labels.answers)
    summary: dict[str, Any] = {
        "run_id": config.run_id,
        "model_name": config.model_name,
        "started_at": state.started_at.isoformat(),
        "finished_at": datetime.now(UTC).isoformat(),
        "config": json.loads(json.dumps(config.__dict__, default=str)),
        "bootstrap": state.bootstrap,
        "frames": {"sent": state.frames_sent, "failed": state.frames_failed},
        "heldout_images": len(heldout.labels),
        "labels": {
            "human_labels": state.labels.labels,
            "ambiguous": state.labels.ambiguous,
            "foreign_tasks": state.labels.foreign,
            "answers_by_reason": dict(why),
            "api_errors": state.labels.errors,
            "answers_in_labeling_schema": answers,
        },
        "production_version": final["version"] if final else None,
        "promotions": sum(1 for d in decisions if d["kind"] == "promote"),
        "final": {
            "labels": final["labels"],
            "hone_accuracy": final["hone_accuracy"],
            "control_accuracy": final["control_accuracy"],
            "bootstrap_accuracy": points[0]["hone_accuracy"],
        }
        if final
        else None,
        "points": points,
        "per_camera": {
            "before": points[0]["hone_per_camera"] if points else {},
            "after_hone": final["hone_per_camera"] if final else {},
            "after_control": final["control_per_camera"] if final else {},
        },
        "strategies": selector.get("yields", []),
        "strategies_seen_by_labelers": own_yields(state),
        "accuracy_estimate": {
            "from_random_picks": selector.get("production_accuracy"),
            "true_heldout": final["hone_accuracy"] if final else None,
        },
        "decisions": sorted(decisions, key=lambda d: str(d.get("decided_at"))),
        "training_runs": [
            {
                k: r.get(k)
                for k in (
                    "run_id",
                    "trigger",
                    "status",
                    "started_at",
                    "finished_at",
                    "model_version",
                    "seconds",
                    "counts",
                )
            }
            for r in sorted(runs, key=lambda r: str(r["started_at"]))
        ],
        "label_to_production_seconds": {
            "labels_in_production": len(latencies),
            "median": statistics.median(latencies) if latencies else None,
            "p90": sorted(latencies)[int(0.9 * (len(latencies) - 1))] if latencies else None,
            "all": [round(x, 1) for x in latencies],
        },
        "labeling_queue": labeling.get("queue"),
    }
    out = config.run_dir
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    render(summary, out)
    return summary


# --- rendering from the JSON ----------------------------------------------------------------


def render(summary: dict[str, Any], out: Path) -> list[Path]:
    """PNG plots and index.html beside summary.json; returns the files written."""
    written = [
        _accuracy_plot(summary, out / "accuracy_vs_labels.png"),
        _camera_plot(summary, out / "per_camera.png"),
        _yield_plot(summary, out / "strategy_yield.png"),
        _timeline_plot(summary, out / "promotion_timeline.png"),
        _latency_plot(summary, out / "label_latency.png"),
    ]
    page = out / "index.html"
    page.write_text(_html(summary))
    return [*written, page]


def _save(figure: Any, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _accuracy_plot(summary: dict[str, Any], path: Path) -> Path:
    points = summary["points"]
    figure, axes = plt.subplots(figsize=(7, 4.6))
    labels = [p["labels"] for p in points]
    # Both arms are measured at the same moments (each change of production), so both are
    # drawn the same way: points joined by lines, no implied value between measurements.
    axes.plot(
        labels,
        [p["hone_accuracy"] * 100 for p in points],
        marker="o",
        label="Hone (production model, scored via TorchServe)",
    )
    axes.plot(
        labels,
        [p["control_accuracy"] * 100 for p in points],
        marker="s",
        linestyle="--",
        label="random control, same number of labels",
    )
    for p in points[1:]:
        axes.annotate(
            f"{(p['hone_accuracy'] - p['control_accuracy']) * 100:+.1f} pt",
            (p["labels"], p["hone_accuracy"] * 100),
            xytext=(-4, 6),
            textcoords="offset points",
            ha="right",
            fontsize=8,
        )
    axes.set_xlabel("human labels used")
    axes.set_ylabel(f"held-out accuracy (%), n={summary['heldout_images']}")
    axes.set_title(PLOTS["accuracy_vs_labels"], fontsize=10)
    axes.grid(alpha=0.3)
    # Below the axes: inside, it hides a point wherever the curves happen to go.
    axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, fontsize=8)
    return _save(figure, path)


def _camera_plot(summary: dict[str, Any], path: Path) -> Path:
    cams = summary["per_camera"]
    names = sorted(cams["before"])
    figure, axes = plt.subplots(figsize=(7, 4))
    width = 0.27
    for i, (key, title) in enumerate(
        [("before", "bootstrap"), ("after_hone", "Hone, end"), ("after_control", "control, end")]
    ):
        values = [cams[key].get(n, 0.0) * 100 for n in names]
        axes.bar([x + (i - 1) * width for x in range(len(names))], values, width, label=title)
    axes.set_xticks(range(len(names)), names)
    axes.set_ylabel("held-out accuracy (%)")
    axes.set_title(PLOTS["per_camera"], fontsize=10)
    # Headroom above 100% keeps the legend clear of the bars.
    axes.set_ylim(0, 118)
    axes.legend(loc="upper center", ncol=3, fontsize=8)
    axes.grid(alpha=0.3, axis="y")
    return _save(figure, path)


def _yield_plot(summary: dict[str, Any], path: Path) -> Path:
    rows = [r for r in summary["strategies"] if r.get("yield") is not None]
    figure, axes = plt.subplots(figsize=(7, 4))
    axes.bar([r["strategy"] for r in rows], [r["yield"] * 100 for r in rows], color="tab:purple")
    for i, r in enumerate(rows):
        lift = r.get("lift")
        note = f"n={r['labelled']}" + (f"\nlift {lift:.2f}x" if lift is not None else "")
        axes.annotate(note, (i, r["yield"] * 100), ha="center", va="bottom", fontsize=8)
    if rows:
        axes.set_ylim(0, max(r["yield"] for r in rows) * 100 * 1.25 + 1)
    axes.set_ylabel("yield: picks the model had wrong (%)")
    axes.set_title(PLOTS["strategy_yield"], fontsize=10)
    axes.grid(alpha=0.3, axis="y")
    return _save(figure, path)


def _timeline_plot(summary: dict[str, Any], path: Path) -> Path:
    start = datetime.fromisoformat(summary["started_at"])
    figure, axes = plt.subplots(figsize=(7, 3.2))
    colours = {"promote": "tab:green", "reject": "tab:red"}
    for d in summary["decisions"]:
        if not d.get("decided_at"):
            continue
        minutes = (datetime.fromisoformat(str(d["decided_at"])) - start).total_seconds() / 60
        accuracy = (d.get("summary") or {}).get("candidate_accuracy")
        y = float(accuracy) * 100 if isinstance(accuracy, int | float) else 0.0
        axes.scatter(minutes, y, color=colours.get(d["kind"], "tab:gray"), s=50)
        axes.annotate(
            d["kind"], (minutes, y), fontsize=7, xytext=(3, 3), textcoords="offset points"
        )
    axes.set_xlabel("minutes since start")
    axes.set_ylabel("candidate accuracy on test split (%)")
    axes.set_title(PLOTS["promotion_timeline"], fontsize=10)
    axes.grid(alpha=0.3)
    return _save(figure, path)


def _latency_plot(summary: dict[str, Any], path: Path) -> Path:
    values = [v / 60 for v in summary["label_to_production_seconds"]["all"]]
    figure, axes = plt.subplots(figsize=(7, 3.2))
    if values:
        axes.hist(values, bins=20, color="tab:orange")
    axes.set_xlabel("minutes from a label to the first production model trained on it")
    axes.set_ylabel("labels")
    axes.set_title(PLOTS["label_latency"], fontsize=10)
    return _save(figure, path)


def _pct(value: Any) -> str:
    return f"{float(value) * 100:.1f}%" if isinstance(value, int | float) else "-"


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _html(summary: dict[str, Any]) -> str:
    final = summary.get("final") or {}
    estimate = summary["accuracy_estimate"]
    from_random = estimate.get("from_random_picks") or {}
    latency = summary["label_to_production_seconds"]
    sections = [
        f"<h1>Hone demo {html.escape(summary['run_id'])}</h1>",
        f"<p>Model <code>{html.escape(summary['model_name'])}</code>; "
        f"{summary['frames']['sent']} frames streamed; {summary['labels']['human_labels']} human "
        f"labels (+{summary['labels']['ambiguous']} ambiguous); "
        f"{summary['promotions']} promotions.</p>",
        _table(
            ["", "held-out accuracy"],
            [
                ["bootstrap (seed set only)", _pct(final.get("bootstrap_accuracy"))],
                [f"Hone at {final.get('labels', '-')} labels", _pct(final.get("hone_accuracy"))],
                ["random control, same labels", _pct(final.get("control_accuracy"))],
                [
                    f"estimated from random picks (n={from_random.get('labelled', '-')})",
                    _pct(from_random.get("accuracy")),
                ],
            ],
        ),
        *(
            f"<h2>{html.escape(title)}</h2><img src='{name}.png' alt='{html.escape(title)}'>"
            for name, title in PLOTS.items()
        ),
        "<h2>Strategies</h2>",
        _table(
            ["strategy", "picks", "labelled", "wrong", "yield", "lift vs random"],
            [
                [
                    r["strategy"],
                    r["picks"],
                    r["labelled"],
                    r["wrong"],
                    _pct(r.get("yield")),
                    "-" if r.get("lift") is None else f"{r['lift']:.2f}x",
                ]
                for r in summary["strategies"]
            ],
        ),
        "<h2>Gate decisions</h2>",
        _table(
            ["decided at", "kind", "version", "reasons"],
            [
                [d.get("decided_at"), d["kind"], d["model_version"], "; ".join(d["reasons"] or [])]
                for d in summary["decisions"]
            ],
        ),
        f"<p>Label to production: median {latency['median'] or '-'} s, p90 {latency['p90'] or '-'}"
        f" s over {latency['labels_in_production']} labels.</p>",
        "<p>Data: <a href='summary.json'>summary.json</a></p>",
    ]
    style = (
        "body{font-family:sans-serif;max-width:60em;margin:2em auto}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;"
        "font-size:0.9em;vertical-align:top}img{max-width:100%}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>Hone demo "
        f"{html.escape(summary['run_id'])}</title><style>{style}</style></head><body>"
        + "\n".join(sections)
        + "</body></html>"
    )
