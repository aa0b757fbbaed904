"""The catalog of stored images in PostgreSQL (schema `ingest`), written in one transaction
with the processed-event claims and the outbox that announces new images."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg

from hone_common.events import FrameCaptured
from hone_common.idempotency import claim_many
from hone_common.outbox import Outbox
from hone_ingest.intake import NewImage, Unstorable

_COLUMNS = (
    ("image_id", "uuid"),
    ("sha256", "text"),
    ("uri", "text"),
    ("width", "int"),
    ("height", "int"),
    ("format", "text"),
    ("size_bytes", "int"),
    ("camera_id", "text"),
    ("captured_at", "timestamptz"),
    ("object_id", "text"),
    ("metadata", "jsonb"),
    ("brightness", "float8"),
    ("contrast", "float8"),
    ("sharpness", "float8"),
    ("source", "text"),
    ("frame_event_id", "uuid"),
)


class PostgresCatalog:
    def __init__(self, pool: asyncpg.Pool[Any], outbox: Outbox, schema: str) -> None:
        self._pool = pool
        self._outbox = outbox
        self._schema = schema
        names = ", ".join(name for name, _ in _COLUMNS)
        arrays = ", ".join(f"${i}::{kind}[]" for i, (_, kind) in enumerate(_COLUMNS, start=1))
        # One statement for the whole batch; a content stored meanwhile by another request or
        # replica is skipped by the unique sha256 and reported back as not inserted.
        self._insert = (
            f"INSERT INTO {schema}.images ({names}) SELECT * FROM unnest({arrays}) "  # noqa: S608
            "ON CONFLICT DO NOTHING RETURNING sha256"
        )

    async def known(self, sha256s: Sequence[str]) -> set[str]:
        if not sha256s:
            return set()
        rows = await self._pool.fetch(
            f"SELECT sha256 FROM {self._schema}.images WHERE sha256 = ANY($1::text[])",  # noqa: S608
            list(sha256s),
        )
        return {row["sha256"] for row in rows}

    async def record(self, images: Sequence[NewImage], frames: Sequence[FrameCaptured]) -> set[str]:
        if not images and not frames:
            return set()
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                fresh: set[uuid.UUID] = (
                    await claim_many(conn, self._schema, list(frames)) if frames else set()
                )
                wanted = [i for i in images if i.frame_id is None or i.frame_id in fresh]
                inserted = await self._insert_images(conn, wanted)
                await self._outbox.add_many(
                    conn,
                    [i.announcement for i in wanted if i.announcement.payload.sha256 in inserted],
                )
        except asyncpg.DataError as error:
            raise Unstorable(f"{type(error).__name__}: {error}") from error
        if inserted:
            self._outbox.notify()
        return inserted

    async def _insert_images(
        self, conn: asyncpg.Connection[Any], images: Sequence[NewImage]
    ) -> set[str]:
        if not images:
            return set()
        columns: list[list[Any]] = [[] for _ in _COLUMNS]
        for image in images:
            p = image.announcement.payload
            row = (
                p.image_id,
                p.sha256,
                p.uri,
                p.width,
                p.height,
                p.format,
                image.size,
                p.camera_id,
                p.captured_at,
                p.object_id,
                dict(p.metadata),
                p.quality.brightness,
                p.quality.contrast,
                p.quality.sharpness,
                image.source,
                image.frame_id,
            )
            for column, value in zip(columns, row, strict=True):
                column.append(value)
        rows = await conn.fetch(self._insert, *columns)
        return {row["sha256"] for row in rows}
