"""The compute step of a run on a tiny separable task: a .mar, validation metrics on human
labels (per class and per camera) and a weakness model fed by all three failure sources."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from hone_trainer.job import ImageSet, TrainingJob, TrainingOutput, compute
from hone_trainer.model.training import TrainConfig
from hone_trainer.settings import WeaknessSettings
from hone_trainer.weakness import Context

CLASSES = ["top", "upper", "lower", "bottom"]
QUICK = TrainConfig(epochs=2, min_samples_per_epoch=128, progress=False, seed=3)


def bands(per_class: int, seed: int, noisy: float = 0.0) -> tuple[npt.NDArray[np.uint8], list[str]]:
    """28x28 noise with a bright band whose height names the class; `noisy` of them are
    given a random band (hard cases, so some predictions fail)."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(CLASSES)), per_class)
    images = rng.integers(0, 70, (len(labels), 28, 28, 1)).astype(np.uint8)
    for i, label in enumerate(labels):
        band = rng.integers(0, 4) if rng.random() < noisy else label
        images[i, band * 7 : band * 7 + 7, :, 0] += 150
    return images, [CLASSES[i] for i in labels]


def image_set(per_class: int, seed: int, propagated_every: int = 0, noisy: float = 0.0) -> ImageSet:
    pixels, labels = bands(per_class, seed, noisy)
    n = len(labels)
    human = np.array([not propagated_every or i % propagated_every for i in range(n)], dtype=bool)
    return ImageSet(
        [f"{seed}-{i}" for i in range(n)],
        pixels,
        labels,
        np.where(human, 1.0, 0.5).astype(np.float32),
        human,
        [Context(f"{seed}-{i}", ("cam-a", "cam-b")[i % 2], 10.0, 0.5, 0.2, 5.0) for i in range(n)],
    )


@pytest.fixture(scope="module")
def output(tmp_path_factory: pytest.TempPathFactory) -> TrainingOutput:
    flagged = image_set(3, seed=9)
    # The flags say the shown class was wrong: claim the true class was "top" everywhere.
    flagged.labels = ["top"] * len(flagged)
    job = TrainingJob(
        run_id="r1",
        model_name="hone-unit",
        model_version="20260301.120000",
        classes=CLASSES,
        config=QUICK,
        weakness=WeaknessSettings(fold_epochs=1, min_rows=10, min_category_rows=2),
        train=image_set(25, seed=1, propagated_every=5, noisy=0.3),
        weakness_split=image_set(6, seed=2, noisy=0.5),
        flagged=flagged,
        work_dir=tmp_path_factory.mktemp("run"),
    )
    return compute(job)


def test_the_run_writes_a_model_archive(output: TrainingOutput) -> None:
    names = zipfile.ZipFile(output.mar_path).namelist()
    assert "weights.pt" in names
    assert "model-config.json" in names
    assert output.epochs_run >= 1
    assert output.history


def test_metrics_come_from_human_labels_of_the_validation_part(output: TrainingOutput) -> None:
    metrics = output.metrics
    # 100 examples, 15% per class held out = 12; a fifth of the examples are propagated.
    assert 0 < metrics.evaluated_on < 12
    assert set(metrics.per_camera) <= {"cam-a", "cam-b"}
    assert metrics.per_camera
    assert 0.0 <= metrics.accuracy <= 1.0
    assert metrics.calibration_error is not None


def test_the_weakness_model_sees_out_of_fold_weakness_split_and_flagged_rows(
    output: TrainingOutput,
) -> None:
    report = output.weakness.report
    assert report["sources"]["out_of_fold"] == 80  # the human train rows only
    assert report["sources"]["weakness_split"] == 24
    # Flagged rows count only where this model repeats the flagged class.
    assert report["sources"].get("flagged", 0) <= 12
    assert output.weakness.artifact is not None, report.get("skipped")
    assert output.weakness.artifact["model_version"] == "20260301.120000"
    assert report["holdout"]["rows"] > 0
    assert report["fit_rows"] + report["holdout"]["rows"] == report["rows"]


def test_a_job_without_any_human_validation_label_reports_zero_evaluated(tmp_path: Path) -> None:
    train = image_set(5, seed=4)
    train.human[:] = False
    job = TrainingJob(
        run_id="r2",
        model_name="hone-unit",
        model_version="20260301.120001",
        classes=CLASSES,
        config=QUICK.model_copy(update={"epochs": 1}),
        weakness=WeaknessSettings(enabled=False),
        train=train,
        weakness_split=image_set(0, seed=5),
        flagged=image_set(0, seed=6),
        work_dir=tmp_path,
    )
    out = compute(job)
    assert out.metrics.evaluated_on == 0
    assert out.weakness.artifact is None
    assert out.weakness.report == {"skipped": "disabled"}
