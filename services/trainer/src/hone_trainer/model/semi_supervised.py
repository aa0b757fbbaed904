"""Training with the unlabelled production images: a fixed number of optimiser steps over the
labelled images plus a consistency loss on unlabelled ones (FixMatch-style confident
pseudo-labels), batched augmentation on whole tensors, and warm starts.

Why not `training.train`: its per-image torchvision transforms and epoch loop cost most of a
round on a busy 2-core machine, and it cannot learn from unlabelled images. Here every step
draws a class-balanced labelled batch and, when unlabelled images are given, an unlabelled
batch: the network's prediction on a weakly augmented copy becomes the target of a strongly
augmented copy wherever it is confident enough. The cost of a round is `steps` and does not
grow with the size of the labelled or unlabelled set. The caller decides which images count as
unlabelled; images of a test split must never be passed in.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator, Sequence

import numpy as np
import numpy.typing as npt
import structlog
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

from hone_trainer.model.architectures import conform
from hone_trainer.model.data import as_image_tensor, as_label_indices
from hone_trainer.model.training import (
    TrainConfig,
    TrainedModel,
    labelled_examples,
    new_model,
)

log = structlog.get_logger(__name__)


class BatchAugmentation(BaseModel):
    """Random changes drawn per image but applied to a whole batch at once (tensor ops).

    The first fields mean what they mean in `augmentation.Augmentation`; the last ones model a
    camera's bad moments (dark frames, gamma, sensor noise, blur) and occlusion (cutout).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    horizontal_flip: bool = False
    rotation_degrees: float = Field(0.0, ge=0, le=180)
    translate: float = Field(0.0, ge=0, le=0.5)
    scale: tuple[float, float] = (1.0, 1.0)
    brightness: float = Field(0.0, ge=0, le=1, description="Gain jitter, +-share.")
    contrast: float = Field(0.0, ge=0, le=1)
    low_light: float = Field(0.0, ge=0, le=1, description="Share of frames made dark.")
    low_light_gain: tuple[float, float] = (0.25, 0.75)
    gamma: tuple[float, float] = (1.0, 1.0)
    noise_sigma: float = Field(0.0, ge=0, description="Largest Gaussian noise, 0-255 scale.")
    blur: float = Field(0.0, ge=0, le=1, description="Share of frames softened by a 3x3 blur.")
    cutout: float = Field(0.0, ge=0, le=1, description="Share of frames with a square blanked.")
    cutout_size: int = Field(10, ge=1)

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Augment float images in [0, 1] shaped (N, C, H, W); returns a new tensor."""
        n = len(x)
        if n == 0 or self == _IDENTITY:
            return x

        def uniform(low: float, high: float, *shape: int) -> torch.Tensor:
            return low + (high - low) * torch.rand(n, *shape, generator=generator)

        if self.horizontal_flip:
            flip = torch.rand(n, generator=generator) < 0.5
            x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
        if self.rotation_degrees or self.translate or self.scale != (1.0, 1.0):
            angle = uniform(-self.rotation_degrees, self.rotation_degrees) * math.pi / 180
            zoom = uniform(*self.scale)
            shift = uniform(-2 * self.translate, 2 * self.translate, 2)  # grid spans [-1, 1]
            theta = torch.zeros(n, 2, 3)
            theta[:, 0, 0] = torch.cos(angle) / zoom
            theta[:, 0, 1] = -torch.sin(angle) / zoom
            theta[:, 1, 0] = torch.sin(angle) / zoom
            theta[:, 1, 1] = torch.cos(angle) / zoom
            theta[:, :, 2] = shift
            grid = F.affine_grid(theta, list(x.shape), align_corners=False)
            x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        if self.gamma != (1.0, 1.0):
            x = x.clamp(1e-6, 1.0) ** uniform(*self.gamma).view(-1, 1, 1, 1)
        gain = uniform(1 - self.brightness, 1 + self.brightness)
        if self.low_light:
            dark = torch.rand(n, generator=generator) < self.low_light
            gain = torch.where(dark, uniform(*self.low_light_gain), gain)
        x = x * gain.view(-1, 1, 1, 1)
        if self.contrast:
            mean = x.mean(dim=(1, 2, 3), keepdim=True)
            factor = uniform(1 - self.contrast, 1 + self.contrast).view(-1, 1, 1, 1)
            x = (x - mean) * factor + mean
        if self.blur:
            kernel = torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]) / 16
            kernel = kernel.view(1, 1, 3, 3).repeat(x.shape[1], 1, 1, 1)
            soft = F.conv2d(x, kernel, padding=1, groups=x.shape[1])
            which = (torch.rand(n, generator=generator) < self.blur).view(-1, 1, 1, 1)
            x = torch.where(which, soft, x)
        if self.noise_sigma:
            sigma = uniform(0.0, self.noise_sigma / 255.0).view(-1, 1, 1, 1)
            x = x + sigma * torch.randn(x.shape, generator=generator)
        if self.cutout:
            x = _cutout(x, self.cutout, self.cutout_size, generator)
        return x.clamp(0.0, 1.0)


_IDENTITY = BatchAugmentation()


def _cutout(x: torch.Tensor, share: float, size: int, generator: torch.Generator) -> torch.Tensor:
    n, _, height, width = x.shape
    top = torch.randint(-size // 2, height - size // 2, (n,), generator=generator)
    left = torch.randint(-size // 2, width - size // 2, (n,), generator=generator)
    rows = torch.arange(height).view(1, -1, 1)
    cols = torch.arange(width).view(1, 1, -1)
    inside = (
        (rows >= top.view(-1, 1, 1))
        & (rows < (top + size).view(-1, 1, 1))
        & (cols >= left.view(-1, 1, 1))
        & (cols < (left + size).view(-1, 1, 1))
    )
    chosen = (torch.rand(n, generator=generator) < share).view(-1, 1, 1)
    return x.masked_fill((inside & chosen).unsqueeze(1), 0.0)


WEAK = BatchAugmentation(
    horizontal_flip=True,
    rotation_degrees=10,
    translate=0.08,
    scale=(0.9, 1.1),
    brightness=0.3,
    contrast=0.3,
)
"""The trainer's "fashion" augmentation, batched."""

STRONG = WEAK.model_copy(
    update={
        "rotation_degrees": 15,
        "translate": 0.12,
        "brightness": 0.4,
        "contrast": 0.4,
        "low_light": 0.3,
        "gamma": (0.8, 1.8),
        "noise_sigma": 20.0,
        "blur": 0.3,
        "cutout": 0.5,
    }
)
"""Weak plus what the cameras do to a frame (dark, gamma, noise, blur) and cutout: the view
that must agree with the confident weak view."""

LIGHT = BatchAugmentation(horizontal_flip=True, translate=0.06)
"""Mirror and shift only: geometry that keeps a garment's class and its pixel statistics."""

AUGMENTATION_PRESETS: dict[str, BatchAugmentation] = {
    "none": _IDENTITY,
    "light": LIGHT,
    "weak": WEAK,
    "strong": STRONG,
}


class SemiSupervisedConfig(BaseModel):
    """The knobs `fit` adds to `TrainConfig` (which gives architecture, batch size, learning
    rate, weight decay, class balancing, seed and threads)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    steps: int = Field(300, ge=1, description="Optimiser steps, whatever the data size.")
    labelled_augmentation: str | BatchAugmentation = "strong"
    weak_augmentation: str | BatchAugmentation = "weak"
    strong_augmentation: str | BatchAugmentation = "strong"
    unlabelled_ratio: float = Field(
        1.0, ge=0, description="Unlabelled images per labelled image in a step (0: none)."
    )
    threshold: float = Field(
        0.95, ge=0, le=1, description="Confidence a weak-view prediction needs to be a target."
    )
    unlabelled_weight: float = Field(1.0, ge=0, description="Weight of the consistency loss.")
    warmup_steps: int = Field(
        0, ge=0, description="Steps of labelled loss only, before consistency starts."
    )
    pseudo_ratio: float = Field(
        1.0, ge=0, description="Pseudo-labelled images per labelled image in a step."
    )
    pseudo_weight: float = Field(0.5, gt=0, description="Loss weight of a pseudo-label.")
    pseudo_augmentation: str | BatchAugmentation = "none"
    pseudo_class_balanced: bool = Field(
        False,
        description="Draw pseudo-labels class-balanced. Off by default: the classes with few "
        "confident predictions are the ones whose pseudo-labels are most often wrong, and "
        "balancing would repeat those most.",
    )

    def augmentation(self, which: str | BatchAugmentation) -> BatchAugmentation:
        return AUGMENTATION_PRESETS[which] if isinstance(which, str) else which


@contextlib.contextmanager
def _seeded(config: TrainConfig) -> Iterator[None]:
    """Seed and threads for one run, restored afterwards (a service may train in-process)."""
    threads = torch.get_num_threads()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        torch.set_num_threads(config.threads)
        try:
            yield
        finally:
            torch.set_num_threads(threads)


def fit(
    images: npt.ArrayLike | torch.Tensor,
    labels: npt.ArrayLike,
    classes: Sequence[str],
    config: TrainConfig | None = None,
    semi: SemiSupervisedConfig | None = None,
    *,
    weights: npt.ArrayLike | None = None,
    unlabelled: npt.ArrayLike | torch.Tensor | None = None,
    pseudo: tuple[npt.ArrayLike | torch.Tensor, npt.ArrayLike] | None = None,
    init_state: dict[str, torch.Tensor] | None = None,
) -> TrainedModel:
    """Train on labelled images for `semi.steps` steps, with what is given besides them:
    `unlabelled` images for the consistency loss, `pseudo` (images, labels) that a model
    labelled with confidence (see `confident_pseudo_labels`), mixed into every step at
    `semi.pseudo_ratio` and `semi.pseudo_weight`.

    `weights` scale each labelled example's loss (propagated labels count less); `init_state`
    warm-starts from a model with the same classes and architecture. The returned model has no
    validation metrics: with a fixed step count there is no early stopping to hold data for.
    """
    config = config or TrainConfig()
    semi = semi or SemiSupervisedConfig()
    classes, pixels, targets, example_weights = labelled_examples(
        images, labels, classes, config, weights
    )
    spec = config.spec
    pool = (
        conform(as_image_tensor(unlabelled), spec.channels, config.size)
        if unlabelled is not None and semi.unlabelled_ratio > 0
        else None
    )
    if pool is not None and len(pool) == 0:
        pool = None
    extra: tuple[torch.Tensor, npt.NDArray[np.int64]] | None = None
    if pseudo is not None and semi.pseudo_ratio > 0:
        extra_pixels = conform(as_image_tensor(pseudo[0]), spec.channels, config.size)
        extra_targets = as_label_indices(pseudo[1], classes)
        if len(extra_pixels) != len(extra_targets):
            raise ValueError(f"{len(extra_pixels)} pseudo images but {len(extra_targets)} labels")
        if len(extra_targets):
            extra = (extra_pixels, extra_targets)

    started = time.perf_counter()
    with _seeded(config):
        trained = new_model(config, classes, init_state)
        stats = _steps(trained, pixels, targets, example_weights, pool, extra, semi)
        trained.train_examples = len(targets)
        trained.best_epoch = 1
    trained.seconds = time.perf_counter() - started
    log.info(
        "semi_supervised_training_finished",
        architecture=spec.name,
        examples=len(targets),
        unlabelled=0 if pool is None else len(pool),
        pseudo_labelled=0 if extra is None else len(extra[1]),
        steps=semi.steps,
        warm_start=init_state is not None,
        seconds=round(trained.seconds, 2),
        **stats,
    )
    return trained


def _steps(
    trained: TrainedModel,
    pixels: torch.Tensor,
    targets: npt.NDArray[np.int64],
    weights: npt.NDArray[np.float32],
    pool: torch.Tensor | None,
    extra: tuple[torch.Tensor, npt.NDArray[np.int64]] | None,
    semi: SemiSupervisedConfig,
) -> dict[str, float]:
    config, network = trained.config, trained.network
    generator = torch.Generator().manual_seed(config.seed)
    k = len(trained.classes)
    draw_t = _draw_probabilities(targets, weights, k, config.class_balanced)
    y_all = torch.as_tensor(targets)
    w_all = torch.as_tensor(weights)
    pseudo_batch = round(config.batch_size * semi.pseudo_ratio) if extra is not None else 0
    if extra is not None:
        pseudo_draw = _draw_probabilities(
            extra[1], np.ones(len(extra[1]), dtype=np.float32), k, semi.pseudo_class_balanced
        )
        pseudo_y = torch.as_tensor(extra[1])
    pseudo_aug = semi.augmentation(semi.pseudo_augmentation)
    labelled_aug = semi.augmentation(semi.labelled_augmentation)
    weak = semi.augmentation(semi.weak_augmentation)
    strong = semi.augmentation(semi.strong_augmentation)
    unlabelled_batch = round(config.batch_size * semi.unlabelled_ratio) if pool is not None else 0

    optimizer = torch.optim.AdamW(
        network.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.learning_rate, total_steps=semi.steps, pct_start=0.15
    )
    network.train()
    masked_share = loss_sum = 0.0
    for step in range(semi.steps):
        index = torch.multinomial(draw_t, config.batch_size, replacement=True, generator=generator)
        x = labelled_aug(pixels[index].float() / 255.0, generator)
        y, w = y_all[index], w_all[index]
        if extra is not None and pseudo_batch:
            chosen = torch.multinomial(pseudo_draw, pseudo_batch, True, generator=generator)
            x = torch.cat([x, pseudo_aug(extra[0][chosen].float() / 255.0, generator)])
            y = torch.cat([y, pseudo_y[chosen]])
            w = torch.cat([w, torch.full((pseudo_batch,), semi.pseudo_weight)])
        consistent = pool is not None and unlabelled_batch > 0 and step >= semi.warmup_steps
        if consistent:
            assert pool is not None
            raw = pool[torch.randint(len(pool), (unlabelled_batch,), generator=generator)]
            raw_x = raw.float() / 255.0
            with torch.no_grad():
                guess = torch.softmax(network(_normalise(weak(raw_x, generator), trained)), dim=1)
            confidence, pseudo = guess.max(dim=1)
            mask = (confidence >= semi.threshold).float()
            masked_share += float(mask.mean())
            # One forward over labelled and strong views: cheaper than two, and batch norm
            # sees both kinds of image together.
            x = torch.cat([x, strong(raw_x, generator)])
        logits = network(_normalise(x, trained))
        per_example = F.cross_entropy(logits[: len(y)], y, reduction="none")
        loss = (per_example * w).sum() / w.sum()
        if consistent:
            consistency = F.cross_entropy(logits[len(y) :], pseudo, reduction="none")
            # Averaged over the whole unlabelled batch (FixMatch): few confident images early
            # on give a small loss instead of an overconfident one.
            loss = loss + semi.unlabelled_weight * (consistency * mask).mean()
        optimizer.zero_grad(set_to_none=True)
        torch.autograd.backward(loss)
        optimizer.step()
        schedule.step()
        loss_sum += float(loss.detach())
    network.eval()
    active = max(1, semi.steps - semi.warmup_steps)
    return {
        "mean_loss": round(loss_sum / semi.steps, 4),
        "confident_share": round(masked_share / active, 4) if unlabelled_batch else 0.0,
    }


def _draw_probabilities(
    targets: npt.NDArray[np.int64], weights: npt.NDArray[np.float32], k: int, balanced: bool
) -> torch.Tensor:
    """Per-example draw probabilities: by weight, and every class equally often if balanced."""
    draw = weights.astype(np.float64)
    if balanced:
        counts = np.bincount(targets, minlength=k)
        draw = draw / counts[targets]
    return torch.as_tensor(draw / draw.sum())


def confident_pseudo_labels(
    probabilities: npt.NDArray[np.floating],
    threshold: float = 0.95,
    per_class: int | None = None,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """(row indices, predicted classes) of the predictions at least `threshold` confident,
    keeping at most the `per_class` most confident of each predicted class, in row order.

    Only images nobody labelled belong here, and never images of a test split: a pseudo-label
    of a test image would leak it into training.
    """
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"probabilities must be (N, classes), got shape {p.shape}")
    confidence, predicted = p.max(axis=1), p.argmax(axis=1)
    keep = np.flatnonzero(confidence >= threshold)
    if per_class is not None:
        chosen = []
        for cls in np.unique(predicted[keep]):
            members = keep[predicted[keep] == cls]
            chosen.append(members[np.argsort(-confidence[members], kind="stable")[:per_class]])
        keep = np.sort(np.concatenate(chosen)) if chosen else keep[:0]
    return keep.astype(np.int64), predicted[keep].astype(np.int64)


def _normalise(x: torch.Tensor, trained: TrainedModel) -> torch.Tensor:
    mean = torch.tensor(trained.mean, dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(trained.std, dtype=torch.float32).view(1, -1, 1, 1)
    return (x - mean) / std
