"""The compute part of a training run, off the event loop: train the candidate, measure it on the
validation part of `train`, build the weakness model, write the .mar. Pure CPU and local files;
it runs in a child process or a thread (`executor.py`) and returns what the run stores.
"""

from __future__ import annotations

import io
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import structlog
import torch

from hone_common.events import OfflineMetrics
from hone_trainer.model.archive import build_archive
from hone_trainer.model.data import as_label_indices, validation_split
from hone_trainer.model.metrics import classification_metrics
from hone_trainer.model.training import TrainConfig, TrainedModel, train
from hone_trainer.settings import WeaknessSettings
from hone_trainer.weakness import (
    Context,
    FailureRows,
    WeaknessResult,
    build_weakness_model,
    out_of_fold,
)

log = structlog.get_logger(__name__)


@dataclass
class ImageSet:
    """Images of one role, channels-last uint8 (N, H, W, C), with labels and lineage."""

    ids: list[str]
    pixels: npt.NDArray[np.uint8]
    labels: list[str]
    weights: npt.NDArray[np.float32]
    human: npt.NDArray[np.bool_]
    contexts: list[Context]

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, index: npt.NDArray[np.int64]) -> ImageSet:
        return ImageSet(
            [self.ids[i] for i in index],
            self.pixels[index],
            [self.labels[i] for i in index],
            self.weights[index],
            self.human[index],
            [self.contexts[i] for i in index],
        )


@dataclass
class TrainingJob:
    run_id: str
    model_name: str
    model_version: str
    classes: list[str]
    config: TrainConfig
    weakness: WeaknessSettings
    train: ImageSet
    weakness_split: ImageSet
    flagged: ImageSet
    """Images users flagged as wrong; `labels` holds the class they said was wrong."""
    work_dir: Path
    init_state: bytes | None = None
    log_level: str = "INFO"
    log_json: bool = True


@dataclass
class TrainingOutput:
    mar_path: Path
    metrics: OfflineMetrics
    weakness: WeaknessResult
    seconds: float
    epochs_run: int
    best_epoch: int
    history: list[dict[str, Any]] = field(default_factory=list)


def compute(job: TrainingJob) -> TrainingOutput:
    started = time.perf_counter()
    init_state = (
        torch.load(io.BytesIO(job.init_state), map_location="cpu", weights_only=True)
        if job.init_state
        else None
    )
    data = job.train
    trained = train(
        data.pixels, data.labels, job.classes, job.config, init_state, weights=data.weights
    )
    metrics = validation_metrics(trained, data, job.config)
    weakness = (
        failure_model(trained, job)
        if job.weakness.enabled
        else WeaknessResult(None, {"skipped": "disabled"})
    )
    mar = build_archive(trained, job.model_name, job.model_version, job.work_dir)
    return TrainingOutput(
        mar_path=mar,
        metrics=metrics,
        weakness=weakness,
        seconds=time.perf_counter() - started,
        epochs_run=len(trained.history),
        best_epoch=trained.best_epoch,
        history=[
            {
                "epoch": r.epoch,
                "train_loss": round(r.train_loss, 4),
                "validation_loss": None
                if r.validation_loss is None
                else round(r.validation_loss, 4),
                "validation_accuracy": r.validation_accuracy,
            }
            for r in trained.history
        ],
    )


def validation_metrics(
    trained: TrainedModel, data: ImageSet, config: TrainConfig
) -> OfflineMetrics:
    """Metrics on the human-labelled part of the validation split `train()` held out (the same
    per-class draw, recomputed from the same labels and seed); per camera is accuracy."""
    targets = as_label_indices(np.asarray(data.labels), trained.classes)
    _, held = validation_split(targets, config.validation_fraction, config.seed)
    held = held[data.human[held]]
    if len(held) == 0:
        return OfflineMetrics(accuracy=0.0, macro_f1=0.0, evaluated_on=0)
    probabilities = trained.predict_proba(data.pixels[held])
    scores = classification_metrics(probabilities, targets[held], trained.classes)
    correct = probabilities.argmax(axis=1) == targets[held]
    per_camera: dict[str, list[bool]] = defaultdict(list)
    for i, ok in zip(held, correct, strict=True):
        per_camera[data.contexts[i].camera_id].append(bool(ok))
    return scores.as_offline_metrics().model_copy(
        update={"per_camera": {c: round(sum(v) / len(v), 4) for c, v in sorted(per_camera.items())}}
    )


def failure_model(trained: TrainedModel, job: TrainingJob) -> WeaknessResult:
    classes = trained.classes
    data = job.train
    targets = as_label_indices(np.asarray(data.labels), classes)
    fold_config = job.config.model_copy(
        update={"epochs": job.weakness.fold_epochs, "validation_fraction": 0.0, "progress": False}
    )

    def fit_and_predict(
        train_idx: npt.NDArray[np.int64], predict_idx: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.float64]:
        fold = train(
            data.pixels[train_idx],
            targets[train_idx],
            classes,
            fold_config,
            weights=data.weights[train_idx],
        )
        return fold.predict_proba(data.pixels[predict_idx]).astype(np.float64)

    # Only human labels say whether a prediction failed; propagated ones still train the folds.
    index, oof = out_of_fold(
        len(data), targets, data.human, job.weakness.folds, job.config.seed, fit_and_predict
    )
    parts = [_rows(oof, targets[index], [data.contexts[i] for i in index], "out_of_fold")]
    split = job.weakness_split
    if len(split):
        probabilities = trained.predict_proba(split.pixels).astype(np.float64)
        split_targets = as_label_indices(np.asarray(split.labels), classes)
        parts.append(_rows(probabilities, split_targets, split.contexts, "weakness_split"))
    flagged = job.flagged
    if len(flagged):
        probabilities = trained.predict_proba(flagged.pixels).astype(np.float64)
        said_wrong = as_label_indices(np.asarray(flagged.labels), classes)
        # A flag says the shown class was wrong; it is a failure of this model only where the
        # model still predicts that class.
        repeats = probabilities.argmax(axis=1) == said_wrong
        parts.append(
            FailureRows(
                probabilities[repeats],
                np.ones(int(repeats.sum()), dtype=bool),
                [c for c, r in zip(flagged.contexts, repeats, strict=True) if r],
                ["flagged"] * int(repeats.sum()),
            )
        )
    rows = FailureRows.concat(parts, len(classes))
    result = build_weakness_model(rows, classes, job.model_version, job.weakness)
    log.info("weakness_model_built", run_id=job.run_id, **_flat(result.report))
    return result


def _rows(
    probabilities: npt.NDArray[np.float64],
    targets: npt.NDArray[np.int64],
    contexts: list[Context],
    source: str,
) -> FailureRows:
    if len(contexts) == 0:
        return FailureRows(np.zeros((0, 1)), np.zeros(0, dtype=bool), [], [])
    wrong = probabilities.argmax(axis=1) != targets
    return FailureRows(probabilities, wrong, contexts, [source] * len(contexts))


def _flat(report: dict[str, Any]) -> dict[str, Any]:
    holdout = report.get("holdout", {})
    return {
        "rows": report.get("rows"),
        "failures": report.get("failures"),
        "skipped": report.get("skipped"),
        "holdout_precision": holdout.get("at_0.5", {}).get("precision"),
        "holdout_recall": holdout.get("at_0.5", {}).get("recall"),
        "holdout_auc": holdout.get("auc"),
    }
