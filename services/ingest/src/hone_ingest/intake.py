"""The one path every image takes, from Kafka or HTTP: validate it, de-duplicate it by content,
store its bytes, then record it and announce it (image.received) in one transaction.

Work is done per batch: images are decoded in worker threads, the catalog is asked once which
contents it already holds, new bytes are written to the bucket concurrently, and one transaction
records the whole batch. Knows nothing of Kafka or HTTP; the catalog and the bucket are ports.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import UTC
from typing import Literal, Protocol

import structlog

from hone_common.events import FrameCaptured, ImageReceived, ReceivedImage, image_id_for
from hone_ingest import metrics
from hone_ingest.validation import (
    ImageMetadata,
    Inspection,
    Limits,
    Refused,
    check_storable,
    inspect_image,
)

log = structlog.get_logger(__name__)

Source = Literal["kafka", "http"]
PRODUCER = "ingest"


@dataclass(frozen=True, slots=True)
class Submission:
    """An image offered to ingest: its bytes or the URI of an object holding them."""

    source: Source
    metadata: ImageMetadata
    data: bytes | None = None
    uri: str | None = None
    frame: FrameCaptured | None = None
    """The camera frame it came in, whose `event_id` makes a redelivery harmless."""


@dataclass(frozen=True, slots=True)
class Accepted:
    image_id: uuid.UUID
    sha256: str
    duplicate: bool


Outcome = Accepted | Refused


@dataclass(frozen=True, slots=True)
class NewImage:
    """A valid image whose content was not stored yet, with the event that announces it."""

    announcement: ImageReceived
    size: int
    source: Source
    frame_id: uuid.UUID | None


class Unstorable(Exception):
    """The catalog refused the data itself (not a passing failure): retrying cannot help."""


class Catalog(Protocol):
    """The images already stored, and the transactional outbox that announces new ones."""

    async def known(self, sha256s: Sequence[str]) -> set[str]:
        """The given contents that are already stored."""
        ...

    async def record(self, images: Sequence[NewImage], frames: Sequence[FrameCaptured]) -> set[str]:
        """In one transaction: claim `frames`, store the images whose frame was not processed
        before (or that came without one) and whose content is new, and enqueue their
        announcements. Returns the sha256 of the images stored. Raises `Unstorable`."""
        ...


class Bucket(Protocol):
    """Where image bytes live, addressed by content."""

    async def put(self, data: bytes, sha256: str, inspection: Inspection) -> str:
        """Store the bytes; returns their `s3://` URI (the same bytes, the same URI)."""
        ...

    async def fetch(self, uri: str, max_bytes: int) -> bytes:
        """The bytes behind a frame's URI; `Refused` if it is not an object ingest may read."""
        ...


@dataclass(slots=True)
class _Item:
    submission: Submission
    data: bytes = b""
    sha256: str = ""
    inspection: Inspection | None = None
    outcome: Outcome | None = None


class Ingestor:
    def __init__(
        self,
        catalog: Catalog,
        bucket: Bucket,
        limits: Limits,
        *,
        decoder: Executor | None = None,
        decode_chunks: int = 2,
        store_concurrency: int = 32,
        inline_image_bytes: int = 0,
    ) -> None:
        self._catalog = catalog
        self._bucket = bucket
        self._limits = limits
        self._decoder = decoder
        self._decode_chunks = decode_chunks
        self._store_slots = asyncio.Semaphore(store_concurrency)
        self._inline_image_bytes = inline_image_bytes

    async def ingest(self, submissions: Sequence[Submission]) -> list[Outcome]:
        """One outcome per submission, in order. Refusals are outcomes; a failure of the
        catalog or the bucket is raised, and the whole call may be repeated safely."""
        started = time.perf_counter()
        items = [_Item(s) for s in submissions]
        await self._load(items)
        await self._inspect([i for i in items if i.outcome is None])
        await self._store([i for i in items if i.outcome is None])
        _count(items, time.perf_counter() - started)
        return [_outcome(item) for item in items]

    async def _load(self, items: list[_Item]) -> None:
        async def fetch(item: _Item, uri: str) -> None:
            async with self._store_slots:
                try:
                    item.data = await self._bucket.fetch(uri, self._limits.max_bytes)
                except Refused as refusal:
                    item.outcome = refusal

        fetches = []
        for item in items:
            submission = item.submission
            try:
                check_storable(submission.metadata.extra)
            except Refused as refusal:
                item.outcome = refusal
                continue
            if submission.data is not None:
                item.data = submission.data
            elif submission.uri is not None:
                fetches.append(fetch(item, submission.uri))
            else:
                item.outcome = Refused("invalid_uri", "neither image bytes nor a URI were given")
        await asyncio.gather(*fetches)

    async def _inspect(self, items: list[_Item]) -> None:
        """Decode and measure in worker threads: Pillow and numpy release the GIL, and the
        event loop keeps serving meanwhile."""
        if not items:
            return
        size = -(-len(items) // self._decode_chunks)
        chunks = [items[i : i + size] for i in range(0, len(items), size)]
        loop = asyncio.get_running_loop()
        await asyncio.gather(
            *(loop.run_in_executor(self._decoder, self._inspect_chunk, chunk) for chunk in chunks)
        )

    def _inspect_chunk(self, items: list[_Item]) -> None:
        for item in items:
            try:
                item.inspection = inspect_image(item.data, self._limits)
                item.sha256 = hashlib.sha256(item.data).hexdigest()
            except Refused as refusal:
                item.outcome = refusal

    async def _store(self, items: list[_Item]) -> None:
        if not items:
            return
        firsts: dict[str, _Item] = {}
        for item in items:
            firsts.setdefault(item.sha256, item)
        known = await self._catalog.known(list(firsts))
        fresh = [sha for sha in firsts if sha not in known]
        # Bytes go to the bucket before the catalog commits: the key is the content, so a put
        # repeated after a failed commit rewrites the same object.
        puts = await asyncio.gather(*(self._put(firsts[sha]) for sha in fresh))
        uris = dict(zip(fresh, puts, strict=True))
        try:
            stored = await self._catalog.record(
                [self._new_image(firsts[sha], uris[sha]) for sha in fresh], _unique_frames(items)
            )
        except Unstorable as error:
            log.warning("batch_unstorable_recording_one_by_one", size=len(items), error=str(error))
            await self._record_one_by_one(items, uris)
            return
        for item in items:
            new = item.sha256 in stored and firsts[item.sha256] is item
            item.outcome = Accepted(image_id_for(item.sha256), item.sha256, duplicate=not new)

    async def _record_one_by_one(self, items: list[_Item], uris: dict[str, str]) -> None:
        """One value the database refuses must not take the rest of the batch down with it."""
        stored: set[str] = set()
        for item in items:
            sha, frame = item.sha256, item.submission.frame
            images = [self._new_image(item, uris[sha])] if sha in uris and sha not in stored else []
            try:
                recorded = await self._catalog.record(images, [frame] if frame else [])
            except Unstorable as error:
                item.outcome = Refused("unstorable", str(error)[:500])
                continue
            stored |= recorded
            new = sha in recorded
            item.outcome = Accepted(image_id_for(sha), sha, duplicate=not new)

    async def _put(self, item: _Item) -> str:
        assert item.inspection is not None
        async with self._store_slots:
            return await self._bucket.put(item.data, item.sha256, item.inspection)

    def _new_image(self, item: _Item, uri: str) -> NewImage:
        submission, inspection = item.submission, item.inspection
        assert inspection is not None
        metadata = submission.metadata
        image_id = image_id_for(item.sha256)
        announcement = ImageReceived(
            producer=PRODUCER,
            correlation_id=image_id,
            payload=ReceivedImage(
                image_id=image_id,
                uri=uri,
                sha256=item.sha256,
                width=inspection.width,
                height=inspection.height,
                format=inspection.format,
                camera_id=metadata.camera_id,
                captured_at=metadata.captured_at.astimezone(UTC),
                object_id=metadata.object_id,
                metadata=metadata.extra,
                quality=inspection.quality,
                image=item.data if len(item.data) <= self._inline_image_bytes else None,
            ),
        )
        return NewImage(
            announcement=announcement,
            size=len(item.data),
            source=submission.source,
            frame_id=submission.frame.event_id if submission.frame else None,
        )


def _count(items: Sequence[_Item], elapsed: float) -> None:
    """Metrics once per batch and source, not per image: label lookups add up at 1,000/s."""
    by_source: dict[Source, list[_Item]] = {}
    for item in items:
        by_source.setdefault(item.submission.source, []).append(item)
    for source, group in by_source.items():
        kinds = Counter(_kind(item.outcome) for item in group)
        for kind, count in kinds.items():
            if kind == "accepted":
                metrics.ACCEPTED.labels(source).inc(count)
            elif kind == "duplicate":
                metrics.DUPLICATES.labels(source).inc(count)
            else:
                metrics.REFUSED.labels(source, kind).inc(count)
        metrics.FRAMES_IN.labels(source).inc(len(group))
        metrics.BYTES_IN.labels(source).inc(sum(len(item.data) for item in group))
        metrics.BATCH_SIZE.labels(source).observe(len(group))
        seconds = metrics.PROCESSING_SECONDS.labels(source)
        for _ in group:
            seconds.observe(elapsed)


def _kind(outcome: Outcome | None) -> str:
    if isinstance(outcome, Refused):
        return outcome.code
    return "duplicate" if outcome is not None and outcome.duplicate else "accepted"


def _outcome(item: _Item) -> Outcome:
    assert item.outcome is not None, "every submission gets an outcome"
    return item.outcome


def _unique_frames(items: Sequence[_Item]) -> list[FrameCaptured]:
    frames: dict[uuid.UUID, FrameCaptured] = {}
    for item in items:
        frame = item.submission.frame
        if frame is not None:
            frames.setdefault(frame.event_id, frame)
    return list(frames.values())
