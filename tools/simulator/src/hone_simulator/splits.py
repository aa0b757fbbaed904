"""Seeded, stratified splits of the data set: a production pool, a held-out set, a seed set.

The held-out images are never streamed (they judge models offline); the pool plays
"production" and is the only source of simulated camera frames; the seed set, drawn from the
pool, bootstraps the first model. Everything is a pure function of the seed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from hone_simulator.data import FashionMnist

HELDOUT_SIZE = 10_000
SplitName = Literal["pool", "heldout", "seed"]

_SPLIT_STREAM = 0
_SEED_SET_STREAM = 1


@dataclass(frozen=True)
class Split:
    """Index arrays (sorted ids into the data set) of one seeded split."""

    seed: int
    pool: NDArray[np.int64]
    heldout: NDArray[np.int64]
    labels: NDArray[np.int64] = field(repr=False)

    def seed_set(self, per_class: int = 20) -> NDArray[np.int64]:
        """`per_class` pool images of every class; a larger set contains every smaller one."""
        if per_class < 0:
            raise ValueError("per_class must be >= 0")
        rng = np.random.default_rng([self.seed, _SEED_SET_STREAM])
        pool_labels = self.labels[self.pool]
        chosen: list[NDArray[np.int64]] = []
        for label in range(int(self.labels.max()) + 1 if len(self.labels) else 0):
            candidates = self.pool[pool_labels == label]
            if len(candidates) < per_class:
                raise ValueError(
                    f"class {label} has {len(candidates)} pool images, fewer than {per_class}"
                )
            # Permuting the whole class and taking a prefix keeps seed sets nested.
            chosen.append(rng.permutation(candidates)[:per_class])
        return np.sort(np.concatenate(chosen)) if chosen else np.empty(0, dtype=np.int64)

    def ids(self, name: SplitName, per_class: int = 20) -> NDArray[np.int64]:
        if name == "pool":
            return self.pool
        if name == "heldout":
            return self.heldout
        return self.seed_set(per_class)


def split(dataset: FashionMnist, seed: int = 0, heldout_size: int = HELDOUT_SIZE) -> Split:
    """Hold out `heldout_size` images, stratified by class (largest remainder); the rest is pool."""
    labels = dataset.labels
    if not 0 <= heldout_size <= len(labels):
        raise ValueError(f"heldout_size must be within 0..{len(labels)}")
    classes, counts = np.unique(labels, return_counts=True)
    exact = counts * heldout_size / len(labels) if len(labels) else counts.astype(float)
    quotas = np.floor(exact).astype(np.int64)
    # Ties in the remainder go to the lower class index, so quotas depend on counts alone.
    order = np.lexsort((classes, -(exact - quotas)))
    quotas[order[: heldout_size - int(quotas.sum())]] += 1
    rng = np.random.default_rng([seed, _SPLIT_STREAM])
    heldout = [
        rng.permutation(np.flatnonzero(labels == label))[:quota]
        for label, quota in zip(classes, quotas, strict=True)
    ]
    held = np.sort(np.concatenate(heldout)).astype(np.int64) if heldout else np.empty(0, np.int64)
    pool = np.setdiff1d(np.arange(len(labels), dtype=np.int64), held, assume_unique=True)
    return Split(seed=seed, pool=pool, heldout=held, labels=labels)


def export_npz(dataset: FashionMnist, ids: NDArray[np.int64], out: Path) -> Path:
    """Write `images`, `labels`, `classes`, `ids` of the chosen images (what the trainer reads)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("wb") as f:
        np.savez_compressed(
            f,
            images=dataset.images[ids],
            labels=dataset.labels[ids],
            classes=np.array(dataset.classes, dtype=np.str_),
            ids=np.asarray(ids, dtype=np.int64),
        )
    return out
