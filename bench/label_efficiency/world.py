"""The benchmark's world for one seed: Fashion-MNIST split into a production pool and a held-out
test set, every image rendered through a simulated camera, cached on disk.

The pool is planned exactly like the simulator's stream (`hone_simulator.schedule.plan_shots`):
each pool image is one object, 30% of objects are seen by two or three cameras within a second
(one frame per view, one `object_id`), capture hours spread over a day, so the dusk camera is dark
in the evening and at night. Held-out images get one camera and one hour each, drawn uniformly,
and are rendered the same way; they are only ever evaluated on.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import numpy.typing as npt

from hone_simulator.cameras import CAMERAS
from hone_simulator.data import FashionMnist, default_cache_dir, load_fashion_mnist, read_manifest
from hone_simulator.schedule import plan_shots
from hone_simulator.splits import HELDOUT_SIZE, split

FORMAT = 2
MULTI_VIEW_SHARE = 0.3
"""The simulator CLI's default share of objects seen by several cameras."""
START = datetime(2026, 1, 5, tzinfo=UTC)
TEST_FRAME_OFFSET = 10_000_000
"""Frame numbers of held-out renders start here, so no held-out render shares its camera
conditions' random draw with a pool frame."""
DUSK = "cam-dusk"


@dataclass(frozen=True)
class Frames:
    """Rendered frames; row i of every array describes frame i."""

    pixels: npt.NDArray[np.uint8]  # (N, 28, 28)
    labels: npt.NDArray[np.int64]
    dataset_index: npt.NDArray[np.int64]
    object_index: npt.NDArray[np.int64]  # frames of one object share it
    camera: npt.NDArray[np.int64]  # index into World.camera_ids
    hour: npt.NDArray[np.float64]  # simulated local time of day, 0-24
    quality: npt.NDArray[np.float64]  # (N, 3): brightness, contrast, sharpness, as ingest

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class World:
    seed: int
    classes: tuple[str, ...]
    camera_ids: tuple[str, ...]
    pool: Frames
    test: Frames
    seed_frames: npt.NDArray[np.int64]
    """Pool frames labelled before the first round: 10 objects per class, one view each (the
    system's bootstrap seed set)."""

    @property
    def dusk(self) -> int:
        return self.camera_ids.index(DUSK)


def build_world(
    seed: int,
    *,
    data_cache: Path | None = None,
    cache_dir: Path | None = None,
    test_size: int = HELDOUT_SIZE,
    pool_objects: int | None = None,
    seed_per_class: int = 10,
) -> World:
    """The world of `seed`, rendered once and then read from `cache_dir`.

    `test_size` and `pool_objects` shrink the world for quick runs (the seed set is always in
    the pool); the defaults are the simulator's split: 10,000 held out, the rest as pool.
    """
    data = load_fashion_mnist(data_cache)
    data_split = split(data, seed=seed, heldout_size=test_size)
    seed_ids = data_split.seed_set(per_class=seed_per_class)
    pool_ids = data_split.pool
    if pool_objects is not None and pool_objects < len(pool_ids):
        others = np.setdiff1d(pool_ids, seed_ids)
        rng = np.random.default_rng([seed, 5])
        extra = rng.choice(others, max(0, pool_objects - len(seed_ids)), replace=False)
        pool_ids = np.sort(np.concatenate([seed_ids, extra]))
    cache = (cache_dir or default_cache_dir() / "label-efficiency").expanduser()
    digest = hashlib.sha256(
        f"{FORMAT}|{camera_fingerprint()}|{_data_fingerprint(data_cache)}|{test_size}|"
        f"{pool_objects}".encode()
    ).hexdigest()[:12]
    path = cache / f"world-seed{seed}-{digest}.npz"
    camera_ids = tuple(sorted(CAMERAS))
    if not path.exists():
        _write(path, _render(data, data_split.heldout, pool_ids, seed, camera_ids))
    with np.load(path, allow_pickle=False) as npz:
        pool = Frames(**{f.name: npz[f"pool_{f.name}"] for f in fields(Frames)})
        test = Frames(**{f.name: npz[f"test_{f.name}"] for f in fields(Frames)})
    first_view = _first_view(pool.dataset_index)
    return World(
        seed=seed,
        classes=tuple(data.classes),
        camera_ids=camera_ids,
        pool=pool,
        test=test,
        seed_frames=np.array([first_view[i] for i in seed_ids.tolist()], dtype=np.int64),
    )


def camera_fingerprint() -> str:
    """Changes whenever a camera's parameters change, so a stale render is never reused."""
    text = "|".join(repr(CAMERAS[name]) for name in sorted(CAMERAS))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _data_fingerprint(data_cache: Path | None) -> str:
    manifest = read_manifest(data_cache)
    return str(manifest.get("sha256")) if manifest else "unknown"


def _first_view(dataset_index: npt.NDArray[np.int64]) -> dict[int, int]:
    first: dict[int, int] = {}
    for frame, index in enumerate(dataset_index.tolist()):
        first.setdefault(index, frame)
    return first


def _render(
    data: FashionMnist,
    heldout: npt.NDArray[np.int64],
    pool_ids: npt.NDArray[np.int64],
    seed: int,
    camera_ids: tuple[str, ...],
) -> dict[str, npt.NDArray[np.generic]]:
    shots = []
    objects: dict[str, int] = {}
    for shot in plan_shots(
        pool_ids,
        count=3 * len(pool_ids),
        seed=seed,
        camera_ids=list(camera_ids),
        multi_view_share=MULTI_VIEW_SHARE,
        start=START,
        span=timedelta(days=1),
    ):
        if shot.object_id not in objects and len(objects) == len(pool_ids):
            break  # every pool image is one object, seen once
        objects.setdefault(shot.object_id, len(objects))
        shots.append(
            (shot.frame, shot.dataset_index, objects[shot.object_id], shot.camera_id, shot.hour)
        )
    pool = _frames(
        data,
        seed,
        camera_ids,
        frame_no=np.array([s[0] for s in shots], dtype=np.int64),
        index=np.array([s[1] for s in shots], dtype=np.int64),
        obj=np.array([s[2] for s in shots], dtype=np.int64),
        cams=[s[3] for s in shots],
        hours=np.array([s[4] for s in shots], dtype=np.float64),
    )
    rng = np.random.default_rng([seed, 7])
    test = _frames(
        data,
        seed,
        camera_ids,
        frame_no=TEST_FRAME_OFFSET + np.arange(len(heldout), dtype=np.int64),
        index=heldout,
        obj=-1 - np.arange(len(heldout), dtype=np.int64),  # never an object of the pool
        cams=[camera_ids[i] for i in rng.integers(len(camera_ids), size=len(heldout))],
        hours=rng.uniform(0.0, 24.0, size=len(heldout)),
    )
    return {f"pool_{k}": v for k, v in pool.items()} | {f"test_{k}": v for k, v in test.items()}


def _frames(
    data: FashionMnist,
    seed: int,
    camera_ids: tuple[str, ...],
    *,
    frame_no: npt.NDArray[np.int64],
    index: npt.NDArray[np.int64],
    obj: npt.NDArray[np.int64],
    cams: list[str],
    hours: npt.NDArray[np.float64],
) -> dict[str, npt.NDArray[np.generic]]:
    pixels = np.empty((len(index), *data.images.shape[1:]), dtype=np.uint8)
    for row, (frame, i, cam, hour) in enumerate(
        zip(frame_no.tolist(), index.tolist(), cams, hours.tolist(), strict=True)
    ):
        shot = CAMERAS[cam].capture(data.images[i], seed=seed, frame=frame, hour=hour)
        pixels[row] = shot.pixels
    return {
        "pixels": pixels,
        "labels": data.labels[index].astype(np.int64),
        "dataset_index": index,
        "object_index": obj,
        "camera": np.array([camera_ids.index(c) for c in cams], dtype=np.int64),
        "hour": hours,
        "quality": quality(pixels),
    }


def quality(pixels: npt.NDArray[np.uint8]) -> npt.NDArray[np.float64]:
    """Brightness, contrast and sharpness per image, as ingest measures them
    (`hone_ingest.quality.measure`), vectorised over the batch."""
    gray = pixels.astype(np.float64) / 255.0
    brightness = gray.mean(axis=(1, 2))
    contrast = gray.std(axis=(1, 2))
    scaled = gray * 255.0
    laplacian = (
        scaled[:, :-2, 1:-1]
        + scaled[:, 2:, 1:-1]
        + scaled[:, 1:-1, :-2]
        + scaled[:, 1:-1, 2:]
        - 4.0 * scaled[:, 1:-1, 1:-1]
    )
    sharpness = laplacian.var(axis=(1, 2))
    return np.stack([brightness, contrast, sharpness], axis=1)


def _write(path: Path, arrays: dict[str, npt.NDArray[np.generic]]) -> None:
    """Atomically, so a killed render never leaves a cache that looks complete."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)  # type: ignore[arg-type]
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
