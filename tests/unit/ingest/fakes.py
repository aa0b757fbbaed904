"""In-memory stand-ins for ingest's catalog (PostgreSQL) and image bucket (MinIO)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import obstore
from obstore.store import MemoryStore

from hone_common.events import Frame, FrameCaptured, ImageReceived
from hone_ingest.adapters.bucket import ImageBucket
from hone_ingest.intake import Ingestor, NewImage, Unstorable
from hone_ingest.validation import Limits

BUCKET = "hone-images"
LIMITS = Limits(max_bytes=1024 * 1024, max_width=4096, max_height=4096, max_pixels=16_777_216)


class Objects:
    """An in-memory bucket (obstore's own MemoryStore) and what it holds."""

    def __init__(self) -> None:
        self.store = MemoryStore()

    async def put(self, key: str, data: bytes, content_type: str = "image/png") -> None:
        await obstore.put_async(self.store, key, data, attributes={"Content-Type": content_type})

    async def read(self, key: str) -> tuple[bytes, str | None]:
        result = await obstore.get_async(self.store, key)
        content_type = result.attributes.get("Content-Type")
        return bytes(await result.bytes_async()), str(content_type) if content_type else None

    async def keys(self) -> list[str]:
        return [meta["path"] for batch in obstore.list(self.store) for meta in batch]

    async def delete(self, key: str) -> None:
        await obstore.delete_async(self.store, key)


class FakeCatalog:
    """Records like the PostgreSQL catalog: claims, unique contents, announcements, atomically."""

    def __init__(self) -> None:
        self.images: dict[str, NewImage] = {}
        self.processed: set[uuid.UUID] = set()
        self.announced: list[ImageReceived] = []
        self.unstorable_cameras: set[str] = set()
        self.outage: Exception | None = None
        self.transactions = 0

    async def known(self, sha256s: Sequence[str]) -> set[str]:
        if self.outage:
            raise self.outage
        return {sha for sha in sha256s if sha in self.images}

    async def record(self, images: Sequence[NewImage], frames: Sequence[FrameCaptured]) -> set[str]:
        if self.outage:
            raise self.outage
        for image in images:
            if image.announcement.payload.camera_id in self.unstorable_cameras:
                raise Unstorable(f"DataError: camera {image.announcement.payload.camera_id}")
        self.transactions += 1
        fresh = {f.event_id for f in frames} - self.processed
        self.processed |= fresh
        stored: set[str] = set()
        for image in images:
            sha = image.announcement.payload.sha256
            if (image.frame_id is None or image.frame_id in fresh) and sha not in self.images:
                self.images[sha] = image
                self.announced.append(image.announcement)
                stored.add(sha)
        return stored


def make_ingestor(
    catalog: FakeCatalog | None = None, limits: Limits = LIMITS, inline_image_bytes: int = 0
) -> tuple[Ingestor, FakeCatalog, Objects]:
    catalog = catalog or FakeCatalog()
    objects = Objects()
    bucket = ImageBucket(objects.store, BUCKET, "images")
    ingestor = Ingestor(catalog, bucket, limits, inline_image_bytes=inline_image_bytes)
    return ingestor, catalog, objects


def frame_event(
    data: bytes | None = None,
    *,
    uri: str | None = None,
    camera_id: str = "cam-1",
    object_id: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> FrameCaptured:
    return FrameCaptured(
        producer=camera_id,
        payload=Frame(
            camera_id=camera_id,
            captured_at=datetime(2026, 3, 1, 12, 0, tzinfo=UTC),
            image=data,
            uri=uri,
            object_id=object_id,
            metadata=metadata or {},
        ),
    )
