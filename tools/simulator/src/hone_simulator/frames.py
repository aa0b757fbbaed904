"""The simulated production stream: `FrameCaptured` events from the pool, with their ground truth.

The schedule (`hone_simulator.schedule`) says which camera sees which pool image when; each shot
is rendered by its camera model into PNG bytes. The truth of every frame (which data set image,
which label) is kept beside the event, never inside it: the image id is derived from the PNG
bytes exactly as ingest derives it, so the demo's labeler and the evaluation can look answers
up by image id.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Generator, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from hone_common.events import Frame, FrameCaptured, MetadataValue, image_id_for
from hone_simulator.cameras import CAMERAS, cameras
from hone_simulator.data import FashionMnist
from hone_simulator.schedule import Shot, plan_shots
from hone_simulator.splits import Split

Metadata = dict[str, MetadataValue]


@dataclass(frozen=True)
class FrameTruth:
    """What the simulator knows about a frame and a camera does not say."""

    image_id: uuid.UUID
    sha256: str
    event_id: uuid.UUID
    dataset_index: int
    label: int
    label_name: str
    camera_id: str
    object_id: str
    captured_at: datetime

    def to_json(self) -> str:
        record: dict[str, Any] = asdict(self)
        record["image_id"] = str(self.image_id)
        record["event_id"] = str(self.event_id)
        record["captured_at"] = self.captured_at.isoformat()
        return json.dumps(record)

    @classmethod
    def from_json(cls, line: str) -> FrameTruth:
        record = json.loads(line)
        return cls(
            image_id=uuid.UUID(record["image_id"]),
            sha256=record["sha256"],
            event_id=uuid.UUID(record["event_id"]),
            dataset_index=int(record["dataset_index"]),
            label=int(record["label"]),
            label_name=record["label_name"],
            camera_id=record["camera_id"],
            object_id=record["object_id"],
            captured_at=datetime.fromisoformat(record["captured_at"]),
        )


@dataclass(frozen=True)
class SimFrame:
    event: FrameCaptured
    truth: FrameTruth

    @property
    def png(self) -> bytes:
        assert self.event.payload.image is not None  # the simulator always sends bytes inline
        return self.event.payload.image


def generate_frames(
    dataset: FashionMnist,
    split: Split,
    count: int,
    seed: int = 0,
    *,
    camera_ids: Sequence[str] | None = None,
    multi_view_share: float = 0.3,
    start: datetime | None = None,
    span: timedelta = timedelta(days=1),
) -> Generator[SimFrame, None, None]:
    """`count` frames of pool images spread over `span` from `start` (default: the last
    `span` until now); the same frames for a given seed and `start`.

    Rendering is most of the cost (~150-250 us of CPU a frame); to publish faster than that,
    render first (`list(...)`) and publish the list.
    """
    chosen = [camera.camera_id for camera in cameras(camera_ids)]
    # By default the span ends now, so no camera reports a time in the future.
    start = start or datetime.now(UTC).replace(microsecond=0) - span
    shots = plan_shots(
        split.pool,
        count,
        seed,
        chosen,
        multi_view_share=multi_view_share,
        start=start,
        span=span,
    )
    return _render(dataset, shots, seed)


def _render(
    dataset: FashionMnist, shots: Iterator[Shot], seed: int
) -> Generator[SimFrame, None, None]:
    for shot in shots:
        capture = CAMERAS[shot.camera_id].capture(
            dataset.images[shot.dataset_index], seed=seed, frame=shot.frame, hour=shot.hour
        )
        yield _frame(dataset, shot, capture.png, capture.metadata)


def _frame(dataset: FashionMnist, shot: Shot, png: bytes, metadata: Metadata) -> SimFrame:
    digest = hashlib.sha256(png).hexdigest()
    image_id = image_id_for(digest)
    event = FrameCaptured(
        producer=shot.camera_id,
        correlation_id=image_id,
        payload=Frame(
            camera_id=shot.camera_id,
            captured_at=shot.captured_at,
            image=png,
            object_id=shot.object_id,
            metadata=metadata,
        ),
    )
    label = int(dataset.labels[shot.dataset_index])
    truth = FrameTruth(
        image_id=image_id,
        sha256=digest,
        event_id=event.event_id,
        dataset_index=shot.dataset_index,
        label=label,
        label_name=dataset.classes[label],
        camera_id=shot.camera_id,
        object_id=shot.object_id,
        captured_at=shot.captured_at,
    )
    return SimFrame(event=event, truth=truth)


class TruthWriter:
    """Appends ground truth as JSON lines (one per frame that reached the system)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._file: IO[str] | None = None

    def __enter__(self) -> TruthWriter:
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("a", encoding="utf-8")
        return self

    def write(self, truths: Iterable[FrameTruth]) -> None:
        if self._file is not None:
            self._file.writelines(truth.to_json() + "\n" for truth in truths)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def read_truth(path: Path) -> dict[uuid.UUID, FrameTruth]:
    """The ground truth manifest by image id (later lines win for a repeated image)."""
    with path.open(encoding="utf-8") as f:
        truths = (FrameTruth.from_json(line) for line in f if line.strip())
        return {truth.image_id: truth for truth in truths}
