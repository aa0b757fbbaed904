"""Training and evaluating an image classifier on CPU, deterministically for a seed.

`train()` takes labelled images as numpy arrays and returns a `TrainedModel` (network, input
specification, history). It knows nothing of Kafka, MinIO or TorchServe: the trainer service
and the `bootstrap` command feed it and archive what it returns (see `archive.py`).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt
import structlog
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn
from torch.utils.data import DataLoader, WeightedRandomSampler
from torchvision.transforms import v2
from tqdm import tqdm

from hone_trainer.model.architectures import Architecture, conform, get_architecture, normalize
from hone_trainer.model.augmentation import AUGMENTATIONS, Augmentation
from hone_trainer.model.data import Examples, as_image_tensor, as_label_indices, validation_split
from hone_trainer.model.metrics import Metrics, classification_metrics

log = structlog.get_logger(__name__)


class TrainConfig(BaseModel):
    """Every knob of one training run; usable as a nested settings section."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    architecture: str = "small-cnn"
    input_size: tuple[int, int] | None = Field(
        None, description="(height, width) fed to the network; the architecture's default if unset."
    )
    epochs: int = Field(15, ge=1, le=1000, description="At most; early stopping may end sooner.")
    batch_size: int = Field(64, ge=1, le=4096)
    learning_rate: float = Field(2e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    augmentation: Augmentation | Literal["none", "fashion", "camera"] = "fashion"
    class_balanced: bool = Field(True, description="Draw every class equally often.")
    validation_fraction: float = Field(
        0.15, ge=0, le=0.5, description="Share of each class held out for early stopping."
    )
    patience: int = Field(3, ge=1, description="Epochs without a better validation loss.")
    seed: int = 0
    min_samples_per_epoch: int = Field(
        1024,
        ge=1,
        description="Draws per epoch at least this many examples (with replacement), "
        "so a small seed set still gets enough optimiser steps per epoch.",
    )
    threads: int = Field(
        1,
        ge=1,
        le=256,
        description="torch.set_num_threads during training. On a busy 2-core machine one thread "
        "was 7x faster than two for the small CNN (threads spin instead of computing).",
    )
    loader_workers: int = Field(
        0, ge=0, le=16, description="DataLoader processes augmenting images beside training."
    )
    deterministic: bool = Field(True, description="torch.use_deterministic_algorithms.")
    progress: bool = Field(True, description="A tqdm bar per epoch on stderr.")

    @model_validator(mode="after")
    def _known_architecture(self) -> TrainConfig:
        get_architecture(self.architecture)
        return self

    @property
    def spec(self) -> Architecture:
        return get_architecture(self.architecture)

    @property
    def size(self) -> tuple[int, int]:
        return self.input_size or self.spec.input_size

    def augmenter(self) -> v2.Transform | None:
        aug = self.augmentation
        chosen = AUGMENTATIONS[aug] if isinstance(aug, str) else aug
        return chosen.transform(self.spec.channels)


@dataclass(frozen=True)
class EpochRecord:
    epoch: int
    train_loss: float
    train_accuracy: float
    validation_loss: float | None
    validation_accuracy: float | None
    seconds: float


@dataclass
class TrainedModel:
    """A trained network with everything needed to feed it and to archive it."""

    network: nn.Module
    architecture: str
    classes: list[str]
    input_size: tuple[int, int]
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    config: TrainConfig
    history: list[EpochRecord] = field(default_factory=list)
    best_epoch: int = 0
    train_examples: int = 0
    validation: Metrics | None = None
    seconds: float = 0.0

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.network.state_dict().items()}

    def predict_proba(
        self, images: npt.ArrayLike | torch.Tensor, batch_size: int = 256
    ) -> npt.NDArray[np.float32]:
        """Softmax probabilities, one row per image (any layout `as_image_tensor` accepts),
        computed the way the handler does."""
        pixels = conform(as_image_tensor(images), self.channels, self.input_size)
        return self.probabilities(pixels, batch_size)

    def probabilities(self, pixels: torch.Tensor, batch_size: int = 256) -> npt.NDArray[np.float32]:
        """Softmax probabilities of uint8 (N, C, H, W) images already conformed to the input."""
        self.network.eval()
        rows: list[torch.Tensor] = []
        with torch.inference_mode():
            for start in range(0, len(pixels), batch_size):
                chunk = normalize(pixels[start : start + batch_size], self.mean, self.std)
                rows.append(torch.softmax(self.network(chunk), dim=1))
        if not rows:
            return np.zeros((0, len(self.classes)), dtype=np.float32)
        return torch.cat(rows).numpy().astype(np.float32)


@contextlib.contextmanager
def _reproducible(config: TrainConfig) -> Iterator[None]:
    """Seed, threads and deterministic kernels for one run, restored afterwards so a service
    that trains in-process keeps its own random state and settings."""
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        torch.set_num_threads(config.threads)
        if config.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        try:
            yield
        finally:
            torch.set_num_threads(threads)
            torch.use_deterministic_algorithms(deterministic)


def labelled_examples(
    images: npt.ArrayLike | torch.Tensor,
    labels: npt.ArrayLike,
    classes: Sequence[str],
    config: TrainConfig,
    weights: npt.ArrayLike | None = None,
) -> tuple[list[str], torch.Tensor, npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """Checked training inputs: class names, images conformed to the architecture, label
    indices and per-example loss weights (default 1)."""
    classes = [str(c) for c in classes]
    if len(classes) < 2 or len(set(classes)) != len(classes):
        raise ValueError(f"need at least 2 distinct class names, got {classes}")
    spec = config.spec
    pixels = conform(as_image_tensor(images), spec.channels, config.size)
    targets = as_label_indices(labels, classes)
    if len(pixels) != len(targets):
        raise ValueError(f"{len(pixels)} images but {len(targets)} labels")
    if len(targets) == 0:
        raise ValueError("no training examples")
    example_weights = (
        np.ones(len(targets), dtype=np.float32)
        if weights is None
        else np.asarray(weights, dtype=np.float32)
    )
    if example_weights.shape != targets.shape or not np.all(example_weights > 0):
        raise ValueError("weights must be one positive number per example")
    return classes, pixels, targets, example_weights


def new_model(
    config: TrainConfig, classes: list[str], init_state: dict[str, torch.Tensor] | None = None
) -> TrainedModel:
    """A network of `config.architecture` for `classes`, fresh or warm-started from a parent's
    weights (same classes and architecture)."""
    spec = config.spec
    network = spec.build(len(classes))
    if init_state is not None:
        network.load_state_dict(init_state)
    return TrainedModel(
        network=network,
        architecture=spec.name,
        classes=classes,
        input_size=config.size,
        channels=spec.channels,
        mean=spec.mean,
        std=spec.std,
        config=config,
    )


def train(
    images: npt.ArrayLike | torch.Tensor,
    labels: npt.ArrayLike,
    classes: Sequence[str],
    config: TrainConfig | None = None,
    init_state: dict[str, torch.Tensor] | None = None,
    *,
    weights: npt.ArrayLike | None = None,
) -> TrainedModel:
    """Train `config.architecture` on labelled images; returns the best epoch's network.

    `weights` (one per example, default 1) scale each example's loss: propagated labels count
    less than human ones. `init_state` warm-starts from a parent model with the same classes.
    """
    config = config or TrainConfig()
    classes, pixels, targets, example_weights = labelled_examples(
        images, labels, classes, config, weights
    )
    spec = config.spec

    started = time.perf_counter()
    with _reproducible(config):
        trained = new_model(config, classes, init_state)
        train_idx, val_idx = validation_split(targets, config.validation_fraction, config.seed)
        _fit(trained, pixels, targets, example_weights, train_idx, val_idx)
        trained.train_examples = len(train_idx)
        if len(val_idx):
            probabilities = trained.probabilities(pixels[val_idx])
            trained.validation = classification_metrics(probabilities, targets[val_idx], classes)
    trained.seconds = time.perf_counter() - started
    log.info(
        "training_finished",
        architecture=spec.name,
        examples=len(targets),
        best_epoch=trained.best_epoch,
        epochs_run=len(trained.history),
        seconds=round(trained.seconds, 2),
        validation_accuracy=trained.validation.accuracy if trained.validation else None,
    )
    return trained


def _fit(
    trained: TrainedModel,
    pixels: torch.Tensor,
    targets: npt.NDArray[np.int64],
    weights: npt.NDArray[np.float32],
    train_idx: npt.NDArray[np.int64],
    val_idx: npt.NDArray[np.int64],
) -> None:
    config, network = trained.config, trained.network
    train_labels = targets[train_idx]
    draw = weights[train_idx].astype(np.float64)
    if config.class_balanced:
        counts = np.bincount(train_labels, minlength=len(trained.classes))
        draw = draw / counts[train_labels]
    generator = torch.Generator().manual_seed(config.seed)
    draws = max(len(train_idx), config.min_samples_per_epoch)
    sampler = WeightedRandomSampler(draw.tolist(), draws, generator=generator)
    dataset = Examples(pixels[train_idx], train_labels, weights[train_idx], config.augmenter())
    loader = DataLoader(
        dataset,
        batch_size=config.batch_size,
        sampler=sampler,
        num_workers=config.loader_workers,
        persistent_workers=config.loader_workers > 0,
        generator=generator,
    )
    optimizer = torch.optim.AdamW(
        network.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    val_x = normalize(pixels[val_idx], trained.mean, trained.std) if len(val_idx) else None
    val_y = torch.as_tensor(targets[val_idx])

    best_loss, best_state, stale = math.inf, trained.state_dict(), 0
    for epoch in range(1, config.epochs + 1):
        began = time.perf_counter()
        network.train()
        seen, loss_sum, correct = 0, 0.0, 0
        bar = tqdm(
            loader, desc=f"epoch {epoch}", unit="batch", leave=False, disable=not config.progress
        )
        for batch, y, w in bar:
            x = normalize(batch, trained.mean, trained.std)
            logits = network(x)
            per_example = F.cross_entropy(logits, y, reduction="none")
            loss = (per_example * w).sum() / w.sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            seen += len(y)
            loss_sum += float(per_example.detach().sum())
            correct += int((logits.argmax(1) == y).sum())
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}")
        schedule.step()

        val_loss = val_acc = None
        if val_x is not None:
            network.eval()
            with torch.inference_mode():
                logits = network(val_x)
                val_loss = float(F.cross_entropy(logits, val_y))
                val_acc = float((logits.argmax(1) == val_y).float().mean())
        record = EpochRecord(
            epoch, loss_sum / seen, correct / seen, val_loss, val_acc, time.perf_counter() - began
        )
        trained.history.append(record)
        log.info(
            "epoch_finished",
            epoch=epoch,
            train_loss=round(record.train_loss, 4),
            train_accuracy=round(record.train_accuracy, 4),
            validation_loss=None if val_loss is None else round(val_loss, 4),
            validation_accuracy=None if val_acc is None else round(val_acc, 4),
            seconds=round(record.seconds, 2),
            images_per_second=round(seen / max(record.seconds, 1e-9)),
        )
        if val_loss is None:
            trained.best_epoch = epoch
            continue
        if val_loss < best_loss - 1e-4:
            best_loss, best_state, stale = val_loss, trained.state_dict(), 0
            trained.best_epoch = epoch
        else:
            stale += 1
            if stale >= config.patience:
                log.info("early_stopping", epoch=epoch, best_epoch=trained.best_epoch)
                break
    if val_x is not None:
        network.load_state_dict(best_state)
    network.eval()


def evaluate(
    model: TrainedModel, images: npt.ArrayLike | torch.Tensor, labels: npt.ArrayLike
) -> Metrics:
    """Accuracy, macro-F1, per-class scores and expected calibration error on labelled images."""
    probabilities = model.predict_proba(images)
    targets = as_label_indices(labels, model.classes)
    return classification_metrics(probabilities, targets, model.classes)
