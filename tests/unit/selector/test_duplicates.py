"""Near-duplicate suppression: same image, same object within a window, same camera and scene."""

from __future__ import annotations

from datetime import timedelta

from hone_selector.duplicates import CAMERA, IMAGE, OBJECT, DuplicateIndex, prediction_distance
from hone_selector.selection import requested_image
from hone_selector.settings import DuplicateSettings
from tests.unit.selector.builders import NOON, scores

SETTINGS = DuplicateSettings(
    object_window_seconds=3600, camera_window_seconds=10, max_prediction_distance=0.05
)


def index_with(*items: object) -> DuplicateIndex:
    return DuplicateIndex(SETTINGS, [requested_image(i) for i in items])  # type: ignore[arg-type]


def test_a_new_image_is_not_a_duplicate() -> None:
    index = index_with(scores(camera_id="cam-1"))
    assert index.find(requested_image(scores(camera_id="cam-2"))) is None


def test_the_same_image_rescored_by_another_model_is_a_duplicate() -> None:
    first = scores(model_version="v1")
    again = scores(image_id=first.image_id, model_version="v2", camera_id="cam-9")
    assert index_with(first).find(requested_image(again)) == IMAGE


def test_the_same_object_within_the_window_is_a_duplicate_even_from_another_camera() -> None:
    first = scores(object_id="sku-1", camera_id="cam-1")
    other_view = scores(
        object_id="sku-1", camera_id="cam-2", captured_at=NOON + timedelta(minutes=30)
    )
    assert index_with(first).find(requested_image(other_view)) == OBJECT


def test_the_same_object_outside_the_window_is_requested_again() -> None:
    first = scores(object_id="sku-1")
    later = scores(object_id="sku-1", captured_at=NOON + timedelta(hours=2), camera_id="cam-2")
    assert index_with(first).find(requested_image(later)) is None


def test_a_still_scene_on_one_camera_is_a_duplicate() -> None:
    first = scores("Shirt", 0.50, second="Coat", runner_up=0.40)
    next_frame = scores(
        "Shirt", 0.52, second="Coat", runner_up=0.38, captured_at=NOON + timedelta(seconds=3)
    )
    assert index_with(first).find(requested_image(next_frame)) == CAMERA


def test_a_different_prediction_on_the_same_camera_is_not_a_duplicate() -> None:
    first = scores("Shirt", 0.50, second="Coat", runner_up=0.40)
    changed = scores(
        "Shirt", 0.50, second="Bag", runner_up=0.40, captured_at=NOON + timedelta(seconds=3)
    )
    other_label = scores(
        "Coat", 0.50, second="Shirt", runner_up=0.40, captured_at=NOON + timedelta(seconds=3)
    )
    index = index_with(first)
    assert index.find(requested_image(changed)) is None
    assert index.find(requested_image(other_label)) is None


def test_the_same_scene_after_the_camera_window_is_not_a_duplicate() -> None:
    first = scores("Shirt", 0.5, second="Coat", runner_up=0.4)
    later = scores(
        "Shirt", 0.5, second="Coat", runner_up=0.4, captured_at=NOON + timedelta(seconds=11)
    )
    assert index_with(first).find(requested_image(later)) is None


def test_images_added_during_a_batch_count_as_requested() -> None:
    index = index_with()
    first = scores(object_id="sku-7")
    assert index.find(requested_image(first)) is None
    index.add(requested_image(first))
    assert index.find(requested_image(scores(object_id="sku-7", camera_id="cam-3"))) == OBJECT


def test_prediction_distance_is_total_variation() -> None:
    assert prediction_distance((0.5, 0.5), (0.5, 0.5)) == 0.0
    assert prediction_distance((1.0, 0.0), (0.0, 1.0)) == 1.0
    assert prediction_distance((1.0, 0.0), (1.0, 0.0, 0.0)) == 1.0
