"""The schedule of a simulated stream: which pool image each camera sees, and when.

Objects are drawn from the pool without replacement (a fresh permutation whenever the pool is
used up) and spread evenly over a simulated span, by default one day, so the hour of capture
varies. A configurable share of objects is seen by two or three different cameras within a
second, under one `object_id`. Planning is cheap and sequential; rendering a planned shot
(`Camera.capture`) depends only on the shot, so it can run anywhere.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
from numpy.typing import NDArray

MAX_VIEWS = 3
_BLOCK = 1024
_POOL_STREAM = (2, 0)
_VIEW_STREAM = (2, 1)


@dataclass(frozen=True, slots=True)
class Shot:
    """One planned frame: camera `camera_id` sees data set image `dataset_index`."""

    frame: int
    dataset_index: int
    camera_id: str
    object_id: str
    captured_at: datetime

    @property
    def hour(self) -> float:
        """Simulated local time of day, 0-24."""
        return self.captured_at.hour + self.captured_at.minute / 60.0


def plan_shots(
    pool: NDArray[np.int64],
    count: int,
    seed: int,
    camera_ids: Sequence[str],
    *,
    multi_view_share: float,
    start: datetime,
    span: timedelta,
) -> Iterator[Shot]:
    """`count` shots, the same for the same arguments; bad arguments fail here, not later."""
    if count < 0:
        raise ValueError("count must be >= 0")
    if not 0.0 <= multi_view_share <= 1.0:
        raise ValueError("multi_view_share must be within [0, 1]")
    if len(pool) == 0:
        raise ValueError("the pool is empty")
    if not camera_ids:
        raise ValueError("at least one camera is needed")
    return _shots(pool, count, seed, camera_ids, multi_view_share, start, span)


def _shots(
    pool: NDArray[np.int64],
    count: int,
    seed: int,
    camera_ids: Sequence[str],
    multi_view_share: float,
    start: datetime,
    span: timedelta,
) -> Iterator[Shot]:
    step = span / max(count, 1)
    objects = _pool_stream(pool, np.random.default_rng([seed, *_POOL_STREAM]))
    views = _view_blocks(np.random.default_rng([seed, *_VIEW_STREAM]), camera_ids, multi_view_share)
    frame = 0
    for number, (index, (seen_by, offsets)) in enumerate(zip(objects, views, strict=False)):
        if frame >= count:
            return
        seen_at = start + step * frame
        object_id = f"obj-{seed}-{number:08d}"
        for camera_id, offset in zip(seen_by[: count - frame], offsets, strict=False):
            captured_at = seen_at + timedelta(seconds=offset)
            yield Shot(frame, index, camera_id, object_id, captured_at)
            frame += 1


def _pool_stream(pool: NDArray[np.int64], rng: np.random.Generator) -> Iterator[int]:
    while True:
        yield from rng.permutation(pool).tolist()


def _view_blocks(
    rng: np.random.Generator, camera_ids: Sequence[str], share: float
) -> Iterator[tuple[list[str], list[float]]]:
    """For each object: the cameras that see it and their delays (seconds) after the first.

    Drawn in blocks because per-object numpy calls cost more than the rest of planning.
    """
    cameras = np.array(camera_ids)
    most = min(MAX_VIEWS, len(camera_ids))
    while True:
        shared = rng.random(_BLOCK) < share
        extra = rng.integers(2, most + 1, size=_BLOCK) if most > 1 else np.ones(_BLOCK, int)
        counts = np.where(shared, extra, 1)
        order = np.argsort(rng.random((_BLOCK, len(camera_ids))), axis=1)
        delays = np.sort(rng.uniform(0.05, 0.95, size=(_BLOCK, MAX_VIEWS - 1)), axis=1)
        for n, row, later in zip(counts.tolist(), order, delays.tolist(), strict=True):
            yield cameras[row[:n]].tolist(), [0.0, *later[: n - 1]]
