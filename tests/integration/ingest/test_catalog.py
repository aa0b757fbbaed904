"""The PostgreSQL catalog on its own: unique contents, claims, and values it cannot store."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from faststream.kafka import KafkaBroker

from hone_common.events import ImageReceived, Quality, ReceivedImage, image_id_for
from hone_common.migrations import upgrade
from hone_common.outbox import Outbox
from hone_common.settings import ServiceSettings
from hone_ingest.adapters.catalog import PostgresCatalog
from hone_ingest.app import MIGRATIONS
from hone_ingest.intake import NewImage, Unstorable
from tests.unit.ingest.fakes import frame_event


def new_image(seed: str, frame_id: uuid.UUID | None = None, **metadata: Any) -> NewImage:
    sha = hashlib.sha256(seed.encode()).hexdigest()
    payload = ReceivedImage.model_construct(  # bypasses validation, as a bug upstream would
        image_id=image_id_for(sha),
        uri=f"s3://hone-images/images/{sha[:2]}/{sha}.png",
        sha256=sha,
        width=28,
        height=28,
        format="PNG",
        camera_id="cam-catalog-it",
        captured_at=datetime.now(UTC),
        object_id=None,
        metadata=metadata,
        quality=Quality(brightness=0.5, contrast=0.1, sharpness=3.0),
    )
    announcement = ImageReceived(producer="ingest", payload=payload)
    return NewImage(announcement=announcement, size=100, source="kafka", frame_id=frame_id)


@pytest.fixture(scope="module")
async def schema(settings: ServiceSettings, pool: asyncpg.Pool[Any]) -> AsyncIterator[str]:
    """A throwaway copy of ingest's schema: nothing recorded here is ever announced (no relay
    reads its outbox), so these made-up images never reach the shared topics."""
    name = f"ingest_it_{uuid.uuid4().hex[:8]}"
    await upgrade(settings.postgres, name, MIGRATIONS)
    yield name
    await pool.execute(f"DROP SCHEMA {name} CASCADE")


@pytest.fixture
def catalog(schema: str, pool: asyncpg.Pool[Any]) -> PostgresCatalog:
    outbox = Outbox(pool, KafkaBroker(), schema, "ingest-it")  # never started: never publishes
    return PostgresCatalog(pool, outbox, schema)


async def count(pool: asyncpg.Pool[Any], schema: str, table: str, event_id: uuid.UUID) -> int:
    query = f"SELECT count(*) FROM {schema}.{table} WHERE event_id = $1"
    return int(await pool.fetchval(query, event_id))


async def test_an_image_is_recorded_once_with_its_announcement(
    catalog: PostgresCatalog, pool: asyncpg.Pool[Any], schema: str, unique: str
) -> None:
    first, again = new_image(unique), new_image(unique)
    assert await catalog.record([first], []) == {first.announcement.payload.sha256}
    assert await catalog.record([again], []) == set()
    assert await catalog.known([first.announcement.payload.sha256, "0" * 64]) == {
        first.announcement.payload.sha256
    }
    assert await count(pool, schema, "outbox", first.announcement.event_id) == 1
    assert await count(pool, schema, "outbox", again.announcement.event_id) == 0


async def test_an_image_of_an_already_processed_frame_is_not_recorded(
    catalog: PostgresCatalog, unique: str
) -> None:
    frame = frame_event(b"\x89PNG")
    await catalog.record([], [frame])
    image = new_image(unique, frame_id=frame.event_id)
    assert await catalog.record([image], [frame]) == set()
    assert await catalog.known([image.announcement.payload.sha256]) == set()


async def test_a_value_postgresql_refuses_is_unstorable_and_leaves_nothing_behind(
    catalog: PostgresCatalog, pool: asyncpg.Pool[Any], schema: str, unique: str
) -> None:
    frame = frame_event(b"\x89PNG")
    bad = new_image(unique, frame_id=frame.event_id, note="nul \x00 inside")
    with pytest.raises(Unstorable):
        await catalog.record([bad], [frame])
    assert await catalog.known([bad.announcement.payload.sha256]) == set()
    assert await count(pool, schema, "outbox", bad.announcement.event_id) == 0
    assert await count(pool, schema, "processed_events", frame.event_id) == 0
