"""Near-duplicate suppression: what was requested once is not requested again.

Three ways an image duplicates an earlier request:
* `image`: the same image (rescored by a newer model, or redelivered under a new event id);
* `object`: the same `object_id` captured within `object_window_seconds` (another camera's
  view, or another frame of the same track), since its label will cover this one;
* `camera`: the same camera within `camera_window_seconds` with a near-identical prediction
  (same label, total-variation distance of the probabilities at most
  `max_prediction_distance`): a camera filming a still scene.
Times are capture times, so a replay decides the same.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from hone_selector.settings import DuplicateSettings

IMAGE = "image"
OBJECT = "object"
CAMERA = "camera"


@dataclass(frozen=True)
class RequestedImage:
    image_id: uuid.UUID
    camera_id: str
    object_id: str | None
    captured_at: datetime
    label: str
    probabilities: tuple[float, ...]


def prediction_distance(p: tuple[float, ...], q: tuple[float, ...]) -> float:
    """Total-variation distance (half the L1 distance); 1 for vectors of different length."""
    if len(p) != len(q):
        return 1.0
    return 0.5 * sum(abs(a - b) for a, b in zip(p, q, strict=True))


class DuplicateIndex:
    def __init__(
        self, settings: DuplicateSettings, requested: Iterable[RequestedImage] = ()
    ) -> None:
        self.settings = settings
        self._images: set[uuid.UUID] = set()
        self._objects: dict[str, list[datetime]] = defaultdict(list)
        self._cameras: dict[str, list[RequestedImage]] = defaultdict(list)
        for item in requested:
            self.add(item)

    def add(self, item: RequestedImage) -> None:
        self._images.add(item.image_id)
        if item.object_id is not None:
            self._objects[item.object_id].append(item.captured_at)
        self._cameras[item.camera_id].append(item)

    def find(self, item: RequestedImage) -> str | None:
        """The kind of duplicate `item` is, or None if it is new."""
        if item.image_id in self._images:
            return IMAGE
        if item.object_id is not None:
            window = self.settings.object_window_seconds
            for captured_at in self._objects.get(item.object_id, ()):
                if abs((item.captured_at - captured_at).total_seconds()) <= window:
                    return OBJECT
        window = self.settings.camera_window_seconds
        for seen in self._cameras.get(item.camera_id, ()):
            if (
                seen.label == item.label
                and abs((item.captured_at - seen.captured_at).total_seconds()) <= window
                and prediction_distance(seen.probabilities, item.probabilities)
                <= self.settings.max_prediction_distance
            ):
                return CAMERA
        return None
