"""The simulated stream: valid FrameCaptured events from the pool, multi-view objects, truth."""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from hone_common.events import FrameCaptured, decode, encode, image_id_for
from hone_simulator.data import FashionMnist
from hone_simulator.frames import SimFrame, TruthWriter, generate_frames, read_truth
from hone_simulator.splits import Split

START = datetime(2025, 3, 1, tzinfo=UTC)


def _frames(
    dataset: FashionMnist,
    split: Split,
    count: int = 300,
    *,
    seed: int = 1,
    camera_ids: list[str] | None = None,
    multi_view_share: float = 0.3,
) -> list[SimFrame]:
    stream = generate_frames(
        dataset,
        split,
        count,
        seed,
        camera_ids=camera_ids,
        multi_view_share=multi_view_share,
        start=START,
    )
    return list(stream)


@pytest.fixture(scope="module")
def frames(dataset: FashionMnist, tiny_split: Split) -> list[SimFrame]:
    return _frames(dataset, tiny_split)


def test_exactly_count_frames_are_made(dataset: FashionMnist, tiny_split: Split) -> None:
    for count in (0, 1, 2, 7, 300):
        assert len(_frames(dataset, tiny_split, count)) == count


def test_every_frame_is_a_valid_frame_captured_event(frames: list[SimFrame]) -> None:
    for frame in frames:
        again = decode(FrameCaptured, encode(frame.event))
        assert again == frame.event
        assert frame.event.producer == frame.event.payload.camera_id
        assert frame.event.key == frame.truth.object_id.encode()


def test_the_truth_has_the_image_id_ingest_will_compute(frames: list[SimFrame]) -> None:
    for frame in frames:
        digest = hashlib.sha256(frame.png).hexdigest()
        assert frame.truth.sha256 == digest
        assert frame.truth.image_id == image_id_for(digest)
        assert frame.truth.event_id == frame.event.event_id
    assert len({f.truth.image_id for f in frames}) == len(frames)


def test_frames_come_from_the_pool_only_and_carry_its_labels(
    dataset: FashionMnist, tiny_split: Split, frames: list[SimFrame]
) -> None:
    indices = [f.truth.dataset_index for f in frames]
    assert np.isin(indices, tiny_split.pool).all()
    assert not np.isin(indices, tiny_split.heldout).any()
    for frame in frames:
        assert frame.truth.label == dataset.labels[frame.truth.dataset_index]
        assert frame.truth.label_name == dataset.classes[frame.truth.label]


def test_pool_images_are_not_repeated_before_the_pool_is_used_up(
    dataset: FashionMnist, tiny_split: Split
) -> None:
    frames = _frames(dataset, tiny_split, 600, multi_view_share=0.0)
    indices = [f.truth.dataset_index for f in frames]
    pool = len(tiny_split.pool)
    assert len(set(indices[:pool])) == pool
    assert set(indices[pool:]) <= set(tiny_split.pool.tolist())  # then a new round


def test_multi_view_frames_share_object_and_image_but_not_camera(
    frames: list[SimFrame],
) -> None:
    by_object: defaultdict[str, list[SimFrame]] = defaultdict(list)
    for frame in frames:
        by_object[frame.truth.object_id].append(frame)
    multi = [views for views in by_object.values() if len(views) > 1]
    assert multi, "some objects must be seen by several cameras"
    for views in multi:
        assert 2 <= len(views) <= 3
        assert len({v.truth.dataset_index for v in views}) == 1
        assert len({v.truth.camera_id for v in views}) == len(views)
        times = [v.event.payload.captured_at for v in views]
        assert max(times) - min(times) < timedelta(seconds=1)
    share = len(multi) / len(by_object)
    assert 0.18 < share < 0.42  # configured 0.3 of ~230 objects


def test_no_multi_view_when_the_share_is_zero_or_there_is_one_camera(
    dataset: FashionMnist, tiny_split: Split
) -> None:
    no_share = _frames(dataset, tiny_split, 100, multi_view_share=0.0)
    one_camera = _frames(dataset, tiny_split, 100, camera_ids=["cam-dusk"])
    for frames in (no_share, one_camera):
        assert len({f.truth.object_id for f in frames}) == 100


def test_only_the_chosen_cameras_are_used(dataset: FashionMnist, tiny_split: Split) -> None:
    frames = _frames(dataset, tiny_split, 200, camera_ids=["cam-north", "cam-gate"])
    assert {f.event.payload.camera_id for f in frames} == {"cam-north", "cam-gate"}
    views = Counter(f.truth.object_id for f in frames)
    assert set(views.values()) == {1, 2}  # two cameras: a shared object is seen twice


def test_metadata_is_what_a_camera_reports(frames: list[SimFrame]) -> None:
    for frame in frames:
        assert set(frame.event.payload.metadata) == {"site", "exposure_ms", "firmware"}


def test_events_carry_no_ground_truth(dataset: FashionMnist, tiny_split: Split) -> None:
    """Relabelling the data set changes the truth and nothing at all in the events."""
    relabelled = FashionMnist(images=dataset.images, labels=(dataset.labels + 3) % 10)
    split_relabelled = Split(
        seed=0, pool=tiny_split.pool, heldout=tiny_split.heldout, labels=relabelled.labels
    )
    original = _frames(dataset, tiny_split, 100)
    changed = _frames(relabelled, split_relabelled, 100)
    assert [f.truth.label for f in original] != [f.truth.label for f in changed]
    for a, b in zip(original, changed, strict=True):
        assert a.event.payload == b.event.payload
        assert a.event.producer == b.event.producer
        assert a.event.correlation_id == b.event.correlation_id


def test_captures_spread_over_the_simulated_day(frames: list[SimFrame]) -> None:
    times = [f.event.payload.captured_at for f in frames]
    assert min(times) >= START
    assert max(times) < START + timedelta(days=1, seconds=1)
    assert len({t.hour for t in times}) == 24
    assert all(t.tzinfo is not None for t in times)


def test_by_default_the_frames_cover_the_last_day_and_none_is_in_the_future(
    dataset: FashionMnist, tiny_split: Split
) -> None:
    before = datetime.now(UTC)
    times = [f.event.payload.captured_at for f in generate_frames(dataset, tiny_split, 50)]
    assert max(times) <= datetime.now(UTC)
    assert min(times) >= before - timedelta(days=1, seconds=1)
    assert max(times) - min(times) > timedelta(hours=23)


def test_the_stream_is_the_same_for_the_same_seed(
    dataset: FashionMnist, tiny_split: Split, frames: list[SimFrame]
) -> None:
    again = _frames(dataset, tiny_split)
    assert [f.png for f in again] == [f.png for f in frames]
    assert [(f.truth.image_id, f.truth.object_id) for f in again] == [
        (f.truth.image_id, f.truth.object_id) for f in frames
    ]
    other = _frames(dataset, tiny_split, seed=2)
    assert {f.truth.image_id for f in other}.isdisjoint({f.truth.image_id for f in frames})


def test_bad_stream_options_are_refused_at_once(dataset: FashionMnist, tiny_split: Split) -> None:
    with pytest.raises(ValueError, match="count"):
        generate_frames(dataset, tiny_split, -1)
    with pytest.raises(ValueError, match="multi_view_share"):
        generate_frames(dataset, tiny_split, 5, multi_view_share=1.5)
    with pytest.raises(ValueError, match="unknown camera"):
        generate_frames(dataset, tiny_split, 5, camera_ids=["cam-north", "cam-x"])


def test_an_empty_pool_is_refused(dataset: FashionMnist, tiny_split: Split) -> None:
    empty = Split(seed=0, pool=np.empty(0, np.int64), heldout=tiny_split.heldout,
                  labels=tiny_split.labels)  # fmt: skip
    with pytest.raises(ValueError, match="pool is empty"):
        generate_frames(dataset, empty, 3)


def test_truth_written_as_json_lines_reads_back_by_image_id(
    tmp_path: Path, frames: list[SimFrame]
) -> None:
    path = tmp_path / "out" / "truth.jsonl"
    with TruthWriter(path) as writer:
        writer.write(f.truth for f in frames[:10])
    with TruthWriter(path) as writer:  # a second run appends
        writer.write(f.truth for f in frames[10:20])
    truth = read_truth(path)
    assert len(truth) == 20
    assert truth[frames[15].truth.image_id] == frames[15].truth
    assert len(path.read_text().splitlines()) == 20


def test_a_truth_writer_without_a_path_writes_nothing(frames: list[SimFrame]) -> None:
    with TruthWriter(None) as writer:
        writer.write(f.truth for f in frames)
