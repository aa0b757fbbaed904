"""Shared fixtures of the trainer's unit tests: a tiny separable image task and one model
trained on it once per session (training is the slow part)."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from hone_trainer.model.training import TrainConfig, TrainedModel, train

CLASSES = ["top", "upper", "lower", "bottom"]


@dataclass(frozen=True)
class Task:
    images: npt.NDArray[np.uint8]
    labels: npt.NDArray[np.int64]
    classes: list[str]


def stripes(per_class: int, seed: int = 0) -> Task:
    """28x28 grayscale noise with a bright horizontal band whose height names the class:
    separable, and unchanged by the mirror flips the "fashion" augmentation makes."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(CLASSES)), per_class)
    rng.shuffle(labels)
    images = rng.integers(0, 70, (len(labels), 28, 28)).astype(np.uint8)
    for i, label in enumerate(labels):
        images[i, label * 7 : label * 7 + 7, :] += 150
    return Task(images, labels.astype(np.int64), list(CLASSES))


def png(array: npt.NDArray[np.uint8]) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


QUICK = TrainConfig(epochs=3, min_samples_per_epoch=256, progress=False, seed=7)


@pytest.fixture(scope="session")
def task() -> Task:
    return stripes(per_class=30)


@pytest.fixture(scope="session")
def trained(task: Task) -> TrainedModel:
    return train(task.images, task.labels, task.classes, QUICK)
