"""The `hone-sim` command line: exports, and clear failures for bad options or no Kafka."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from hone_simulator.cli import app
from hone_simulator.data import CLASSES, DedupCounts, load_fashion_mnist, write_cache
from hone_simulator.splits import split
from tests.unit.simulator.conftest import synthetic_dataset

runner = CliRunner()


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data cache big enough for the real 10,000-image held-out set."""
    cache = tmp_path_factory.mktemp("data")
    dataset = synthetic_dataset(per_class=1_100)
    n = len(dataset)
    counts = DedupCounts(raw=n, empty=0, duplicate_groups=0, duplicate_images=0,
                         conflicting_groups=0, dropped_duplicates=0, final=n)  # fmt: skip
    write_cache(cache, dataset.images, dataset.labels, counts)
    return cache


def test_export_of_the_seed_set_writes_per_class_images_from_the_pool(
    cache: Path, tmp_path: Path
) -> None:
    out = tmp_path / "seed.npz"
    args = ["export", "--split", "seed", "--per-class", "7", "--split-seed", "3"]
    result = runner.invoke(app, [*args, "--out", str(out), "--cache", str(cache)])

    assert result.exit_code == 0, result.output
    dataset = load_fashion_mnist(cache)
    expected = split(dataset, 3)
    with np.load(out, allow_pickle=False) as npz:
        assert npz["ids"].tolist() == expected.seed_set(7).tolist()
        assert np.bincount(npz["labels"]).tolist() == [7] * len(CLASSES)
        assert np.array_equal(npz["images"], dataset.images[npz["ids"]])


def test_export_of_the_heldout_set_writes_exactly_it(cache: Path, tmp_path: Path) -> None:
    out = tmp_path / "heldout.npz"
    result = runner.invoke(
        app, ["export", "--split", "heldout", "--out", str(out), "--cache", str(cache)]
    )
    assert result.exit_code == 0, result.output
    with np.load(out, allow_pickle=False) as npz:
        assert len(npz["ids"]) == 10_000
        assert npz["ids"].tolist() == split(load_fashion_mnist(cache), 0).heldout.tolist()


def test_an_unknown_split_name_is_refused(cache: Path, tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["export", "--split", "train", "--out", str(tmp_path / "x.npz"), "--cache", str(cache)]
    )
    assert result.exit_code == 2
    assert not (tmp_path / "x.npz").exists()


def test_an_unknown_camera_is_refused_before_anything_is_sent(cache: Path) -> None:
    result = runner.invoke(
        app, ["frames", "--count", "5", "--cameras", "cam-north,cam-moon", "--cache", str(cache)]
    )
    assert result.exit_code == 2
    assert "cam-moon" in result.output


def test_frames_without_kafka_exit_with_an_error_not_a_traceback(
    cache: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HONE_KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:1")
    truth = tmp_path / "truth.jsonl"
    result = runner.invoke(
        app, ["frames", "--count", "5", "--truth", str(truth), "--cache", str(cache)]
    )
    assert result.exit_code == 1
    assert "cannot reach Kafka at 127.0.0.1:1" in result.output
    assert not truth.exists() or truth.read_text() == ""


def test_upload_to_an_unreachable_server_exits_with_an_error(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = runner.invoke(
        app,
        ["upload", "--count", "3", "--url", "http://127.0.0.1:1", "--api-key", "k",
         "--cache", str(cache)],
    )  # fmt: skip
    # Nothing listens on port 1: every frame fails after its retries, and the exit says so.
    assert result.exit_code == 1
    assert "failed 3" in result.output
