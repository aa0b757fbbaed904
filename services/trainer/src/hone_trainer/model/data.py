"""Labelled images as the trainer receives them (numpy arrays) -> tensors, splits, datasets."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import torch
from torch.utils.data import Dataset
from torchvision.transforms import v2


def as_image_tensor(images: npt.ArrayLike | torch.Tensor) -> torch.Tensor:
    """Accepted layouts -> uint8 (N, C, H, W).

    (N, H, W) grayscale; (N, H, W, C) channels-last with C in {1, 3} (numpy/Pillow order);
    (N, D) flat square grayscale (Fashion-MNIST's 784-long rows). Integer pixels 0..255.
    """
    array = images if isinstance(images, torch.Tensor) else torch.as_tensor(np.asarray(images))
    if array.dtype.is_floating_point or array.dtype == torch.bool:
        raise ValueError(f"images must hold integer pixels 0..255, got {array.dtype}")
    if array.numel() and (int(array.min()) < 0 or int(array.max()) > 255):
        raise ValueError("pixel values must lie in 0..255")
    if array.ndim == 2:
        side = math.isqrt(array.shape[1])
        if side * side != array.shape[1]:
            raise ValueError(f"flat images must be square, got {array.shape[1]} pixels")
        array = array.reshape(-1, 1, side, side)
    elif array.ndim == 3:
        array = array.unsqueeze(1)
    elif array.ndim == 4 and array.shape[-1] in (1, 3):
        array = array.permute(0, 3, 1, 2)
    else:
        raise ValueError(
            f"images shaped {tuple(array.shape)}: expected (N,H,W), (N,H,W,C) or (N,H*W)"
        )
    return array.to(torch.uint8).contiguous()


def as_label_indices(labels: npt.ArrayLike, classes: Sequence[str]) -> npt.NDArray[np.int64]:
    """Labels given as class indices or as class names -> indices into `classes`."""
    array = np.asarray(labels)
    if array.ndim != 1:
        raise ValueError(f"labels must be one-dimensional, got shape {array.shape}")
    if array.dtype.kind in "USO":
        index = {name: i for i, name in enumerate(classes)}
        unknown = sorted({str(v) for v in array} - index.keys())
        if unknown:
            raise ValueError(f"labels name unknown classes: {unknown[:5]}")
        return np.array([index[str(v)] for v in array], dtype=np.int64)
    if array.dtype.kind not in "iu":
        raise ValueError(f"labels must be class indices or names, got {array.dtype}")
    if array.size and (array.min() < 0 or array.max() >= len(classes)):
        raise ValueError(f"label indices must lie in 0..{len(classes) - 1}")
    return array.astype(np.int64)


def validation_split(
    labels: npt.NDArray[np.int64], fraction: float, seed: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Per-class random split (train, validation); every class keeps at least one training
    example, and a class with fewer than 3 examples gives none to validation."""
    rng = np.random.default_rng(seed)
    train: list[npt.NDArray[np.int64]] = []
    held: list[npt.NDArray[np.int64]] = []
    for cls in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == cls))
        take = int(len(members) * fraction) if len(members) >= 3 else 0
        held.append(members[:take])
        train.append(members[take:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(held))


class Examples(Dataset[tuple[torch.Tensor, int, float]]):
    def __init__(
        self,
        pixels: torch.Tensor,
        labels: npt.NDArray[np.int64],
        weights: npt.NDArray[np.float32],
        augment: v2.Transform | None,
    ) -> None:
        self.pixels, self.labels, self.weights, self.augment = pixels, labels, weights, augment

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, float]:
        image = self.pixels[i]
        if self.augment is not None:
            image = self.augment(image)
        return image, int(self.labels[i]), float(self.weights[i])
