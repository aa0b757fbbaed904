"""The outbox relay deletes what it published long enough ago, so the table stays small
(a prune that failed on every round once let it grow for ever)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import asyncpg

from hone_common.kafka import create_broker
from hone_common.migrations import upgrade
from hone_common.outbox import Outbox
from hone_common.settings import ServiceSettings
from tests.factories import sample_events

MIGRATIONS = Path(__file__).with_name("migrations")


async def test_the_relay_prunes_published_events_and_keeps_pending_ones(
    settings: ServiceSettings, pool: asyncpg.Pool[Any], unique: str
) -> None:
    schema = f"test_prune_{unique}"
    await upgrade(settings.postgres, schema, MIGRATIONS)
    broker = create_broker(settings.kafka, f"test-{unique}")
    # Pruning runs every 60 relay rounds: fast rounds, and published rows expire at once.
    outbox = Outbox(pool, broker, schema, f"test-{unique}", poll_seconds=0.01)
    outbox._keep_published_seconds = 0
    published = sample_events(f"{unique}-published")[1]
    try:
        async with broker:
            await broker.connect()
            async with pool.acquire() as conn, conn.transaction():
                await outbox.add(conn, published)
            outbox.start()
            try:
                loop = asyncio.get_running_loop()
                deadline = loop.time() + 30
                while await pool.fetchval(f"SELECT count(*) FROM {schema}.outbox"):
                    assert loop.time() < deadline, "published events were never pruned"
                    await asyncio.sleep(0.1)
            finally:
                await outbox.stop()
        # A row not yet published is never pruned, however old.
        pending = sample_events(f"{unique}-pending")[1]
        async with pool.acquire() as conn, conn.transaction():
            await outbox.add(conn, pending)
        await pool.execute(f"UPDATE {schema}.outbox SET created_at = now() - interval '1 day'")
        await outbox._prune()
        assert await pool.fetchval(f"SELECT count(*) FROM {schema}.outbox") == 1
    finally:
        await pool.execute(f"DROP SCHEMA {schema} CASCADE")
