"""The transactional outbox: what commits is published, what rolls back never is."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg

from hone_common.events import ImageReceived, decode
from hone_common.kafka import create_broker
from hone_common.migrations import upgrade
from hone_common.outbox import Outbox
from hone_common.settings import ServiceSettings
from hone_common.topics import Topic
from tests.factories import sample_events

MIGRATIONS = Path(__file__).with_name("migrations")


async def test_committed_events_are_published_and_rolled_back_ones_never(
    settings: ServiceSettings, pool: asyncpg.Pool[Any], kafka_tap: Any, unique: str
) -> None:
    schema = f"test_outbox_{unique}"
    await upgrade(settings.postgres, schema, MIGRATIONS)
    committed = sample_events(f"{unique}-a")[1]
    rolled_back = sample_events(f"{unique}-b")[1]
    tap = await kafka_tap(Topic.IMAGE_RECEIVED.value)
    broker = create_broker(settings.kafka, f"test-{unique}")
    outbox = Outbox(pool, broker, schema, f"test-{unique}")
    try:
        async with broker:
            await broker.connect()
            async with pool.acquire() as conn, conn.transaction():
                await outbox.add(conn, committed)
            try:
                async with pool.acquire() as conn, conn.transaction():
                    await outbox.add(conn, rolled_back)
                    raise RuntimeError("the effect failed")
            except RuntimeError:
                pass
            assert await outbox.flush() == 1
            assert await outbox.flush() == 0  # nothing is published twice

            def ids(records: list[Any]) -> set[Any]:
                return {
                    decode(ImageReceived, r.value).event_id
                    for r in records
                    if r.key in (committed.key, rolled_back.key)
                }

            await tap.wait_for(lambda rs: committed.event_id in ids(rs))
        assert ids(tap.records) == {committed.event_id}
        pending = await pool.fetchval(
            f"SELECT count(*) FROM {schema}.outbox WHERE published_at IS NULL"
        )
        assert pending == 0
    finally:
        await pool.execute(f"DROP SCHEMA {schema} CASCADE")
