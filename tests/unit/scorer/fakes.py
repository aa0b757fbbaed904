"""In-memory stand-ins for the scorer's collaborators: object store, TorchServe, PostgreSQL."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Collection, Sequence
from datetime import UTC, datetime

import httpx

from hone_common.events import (
    ImageReceived,
    ImageScored,
    ModelPromoted,
    Quality,
    ReceivedImage,
)
from hone_common.storage import ObjectNotFound, ObjectRef
from hone_common.torchserve import BatchPrediction, TorchServeError

CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
           "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]  # fmt: skip
UNDECODABLE = b"not an image at all"


def received(data: bytes, camera: str = "cam-1", *, inline: bytes | None = None) -> ImageReceived:
    digest = hashlib.sha256(data).hexdigest()
    image_id = uuid.uuid5(uuid.NAMESPACE_OID, digest)
    return ImageReceived(
        producer="ingest",
        correlation_id=image_id,
        payload=ReceivedImage(
            image_id=image_id,
            uri=f"s3://hone-images/images/{digest[:2]}/{digest}.png",
            sha256=digest,
            width=28,
            height=28,
            format="PNG",
            camera_id=camera,
            captured_at=datetime(2026, 11, 25, 12, 0, tzinfo=UTC),
            object_id="obj-1",
            metadata={"site": "north", "exposure": 0.25},
            quality=Quality(brightness=0.4, contrast=0.2, sharpness=12.5),
            image=inline,
        ),
    )


class FakeStore:
    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.reads = 0

    def put(self, event: ImageReceived, data: bytes) -> None:
        self.objects[event.payload.uri] = data

    async def get(self, ref: ObjectRef) -> bytes:
        self.reads += 1
        try:
            return self.objects[ref.uri]
        except KeyError:
            raise ObjectNotFound(ref.uri) from None


class FakeTorchServe:
    """Answers like the model handler: one row per image; 400 for a request holding an image
    it cannot decode; fails the next `failures` requests with `failure`."""

    def __init__(self, version: str = "v2", classes: list[str] = CLASSES) -> None:
        self.version = version
        self.classes = classes
        self.requests: list[int] = []
        self.failures = 0
        self.failure: Exception = httpx.ConnectError("connection refused")
        self.rows: dict[bytes, list[float]] = {}

    def row(self, image: bytes) -> list[float]:
        if image in self.rows:
            return self.rows[image]
        # A deterministic, image-dependent distribution.
        top = hashlib.sha256(image).digest()[0] % len(self.classes)
        rest = 0.1 / (len(self.classes) - 1)
        return [0.9 if k == top else rest for k in range(len(self.classes))]

    async def predict(self, images: Sequence[bytes]) -> BatchPrediction:
        self.requests.append(len(images))
        if self.failures > 0:
            self.failures -= 1
            raise self.failure
        bad = [i for i, image in enumerate(images) if image == UNDECODABLE]
        if bad:
            errors = [{"index": i, "error": "not a decodable image: cannot identify"} for i in bad]
            body = {"code": 400, "message": "invalid instances", "errors": errors}
            raise TorchServeError(400, "invalid instances", body)
        return BatchPrediction(
            model_version=self.version,
            classes=self.classes,
            probabilities=[self.row(image) for image in images],
        )

    async def ping(self) -> bool:
        return self.failures == 0


class FakePredictions:
    """The PostgreSQL adapter's semantics: claims, one row per (image, version), outbox."""

    def __init__(self) -> None:
        self.claimed: set[uuid.UUID] = set()
        self.rows: dict[tuple[uuid.UUID, str], ImageScored] = {}
        self.outbox: list[ImageScored] = []
        self.promotions: dict[uuid.UUID, ModelPromoted] = {}

    async def processed(self, event_ids: Collection[uuid.UUID]) -> set[uuid.UUID]:
        return self.claimed & set(event_ids)

    async def save(self, scored: Sequence[tuple[ImageReceived, ImageScored]]) -> list[ImageScored]:
        queued = []
        for received_event, event in scored:
            if received_event.event_id in self.claimed:
                continue
            self.claimed.add(received_event.event_id)
            key = (event.payload.image_id, event.payload.model_version)
            if key not in self.rows:
                self.rows[key] = event
                queued.append(event)
        self.outbox.extend(queued)
        return queued

    async def record_promotion(self, event: ModelPromoted) -> bool:
        if event.event_id in self.promotions:
            return False
        self.promotions[event.event_id] = event
        return True

    async def production_version(self) -> str | None:
        if not self.promotions:
            return None
        latest = max(self.promotions.values(), key=lambda e: e.occurred_at)
        return latest.payload.model_version
