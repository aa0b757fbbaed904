"""The benchmark's world: held-out frames apart from the pool, camera views, ingest's quality."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from bench.label_efficiency.world import World, build_world
from hone_ingest.quality import measure


def test_no_held_out_image_is_in_the_pool(world: World) -> None:
    assert len(world.test) == 300
    assert not set(world.test.dataset_index.tolist()) & set(world.pool.dataset_index.tolist())


def test_every_pool_object_is_one_image_seen_by_one_to_three_distinct_cameras(world: World) -> None:
    views: defaultdict[int, list[int]] = defaultdict(list)
    for frame, obj in enumerate(world.pool.object_index.tolist()):
        views[obj].append(frame)
    assert len(views) == len(set(world.pool.dataset_index.tolist()))
    sizes = [len(v) for v in views.values()]
    assert max(sizes) <= 3
    assert sum(s > 1 for s in sizes) > 0.15 * len(sizes)  # 30% multi-view, give or take
    for frames in views.values():
        assert len(set(world.pool.dataset_index[frames].tolist())) == 1
        assert len(set(world.pool.camera[frames].tolist())) == len(frames)


def test_the_seed_set_is_ten_pool_frames_of_every_class(world: World) -> None:
    labels = world.pool.labels[world.seed_frames]
    assert np.bincount(labels, minlength=10).tolist() == [10] * 10
    assert len(set(world.pool.object_index[world.seed_frames].tolist())) == 100


def test_every_camera_renders_both_pool_and_held_out_frames(world: World) -> None:
    for frames in (world.pool, world.test):
        assert set(frames.camera.tolist()) == set(range(len(world.camera_ids)))
    dusk = world.pool.camera == world.dusk
    assert world.pool.quality[dusk, 0].mean() < world.pool.quality[~dusk, 0].mean()


def test_quality_features_are_what_ingest_measures(world: World) -> None:
    for frame in (0, 7, len(world.pool) - 1):
        expected = measure(world.pool.pixels[frame].astype(np.float32) / np.float32(255.0))
        brightness, contrast, sharpness = world.pool.quality[frame]
        assert abs(brightness - expected.brightness) < 1e-6
        assert abs(contrast - expected.contrast) < 1e-6
        assert abs(sharpness - expected.sharpness) < 1e-3 * max(1.0, expected.sharpness)


def test_a_world_is_read_back_from_its_cache_identically(
    world: World, data_cache: Path, tmp_path: Path
) -> None:
    first = build_world(0, data_cache=data_cache, cache_dir=tmp_path, test_size=300)
    files = list(tmp_path.glob("world-*.npz"))
    again = build_world(0, data_cache=data_cache, cache_dir=tmp_path, test_size=300)
    assert list(tmp_path.glob("world-*.npz")) == files
    assert np.array_equal(first.pool.pixels, again.pool.pixels)
    assert np.array_equal(first.pool.pixels, world.pool.pixels)
    other = build_world(1, data_cache=data_cache, cache_dir=tmp_path, test_size=300)
    assert not np.array_equal(other.test.dataset_index, first.test.dataset_index)
