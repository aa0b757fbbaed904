"""The benchmark end to end in --quick mode, on a synthetic data cache: it learns, it writes the
report and the figure, and a second invocation reuses the finished runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.label_efficiency.__main__ import main


def test_quick_mode_writes_results_and_plot_and_resumes_from_its_run_cache(
    data_cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "results" / "label_efficiency_quick.json"
    args = ["--quick", "--data-cache", str(data_cache), "--cache-dir", str(tmp_path / "cache")]
    # Two workers: the runs go through the process pool as a full benchmark's do.
    assert main([*args, "--out", str(out), "--workers", "2"]) == 0

    document = json.loads(out.read_text())
    runs = {(r["spec"]["strategy"], r["spec"]["recipe"]): r for r in document["runs"]}
    assert set(runs) == {("hone", "full"), ("random", "full")}
    for run in runs.values():
        rounds = run["rounds"]
        assert [r["human_labels"] for r in rounds] == [100, 200, 300]
        assert all(0.0 <= r["accuracy"] <= 1.0 for r in rounds)
        assert set(rounds[0]["per_camera"]) == {"cam-dock", "cam-dusk", "cam-gate", "cam-north"}
        # The stripes are easy: far above chance (10%) even with a few steps.
        assert rounds[-1]["accuracy"] > 0.5
        assert 0.0 <= rounds[-1]["notes"]["picked_model_wrong"] <= 1.0
        assert rounds[-1]["propagated_labels"] > 0  # other camera views of labelled objects
    assert set(document["aggregates"]) == {"hone/full", "random/full"}
    assert "hone_reaches_88_within_2000" in document["targets"]["hone"]
    assert document["command"].startswith(".venv/bin/python -m bench.label_efficiency")
    assert out.with_suffix(".png").stat().st_size > 10_000
    capsys.readouterr()

    assert main([*args, "--out", str(out)]) == 0
    assert "2 runs, 2 from the run cache" in capsys.readouterr().err
