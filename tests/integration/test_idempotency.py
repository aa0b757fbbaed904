"""At-least-once delivery with idempotent effects, against the real Kafka and PostgreSQL."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from hone_common.events import ImageReceived, encode
from hone_common.idempotency import claim
from hone_common.kafka import create_broker, subscribe
from hone_common.migrations import upgrade
from hone_common.settings import ServiceSettings
from tests.factories import sample_events
from tests.kafka_helpers import start_group_at_end

MIGRATIONS = Path(__file__).with_name("migrations")


async def test_the_same_event_delivered_twice_has_one_effect(
    settings: ServiceSettings, pool: asyncpg.Pool[Any], unique: str
) -> None:
    schema = f"test_idem_{unique}"
    await upgrade(settings.postgres, schema, MIGRATIONS)
    event = sample_events(unique)[1]
    assert isinstance(event, ImageReceived)
    deliveries = 0
    broker = create_broker(settings.kafka, f"test-{unique}")
    await start_group_at_end(
        settings.kafka.bootstrap_servers, f"test-{unique}", [ImageReceived.topic.value]
    )

    @subscribe(broker, ImageReceived, service=f"test-{unique}")
    async def handle(received: ImageReceived) -> None:
        nonlocal deliveries
        if received.event_id != event.event_id:
            return
        deliveries += 1
        async with pool.acquire() as conn, conn.transaction():
            if not await claim(conn, schema, received):
                return
            await conn.execute(
                f"UPDATE {schema}.effects SET applied = applied + 1 WHERE name = 'images'"
            )

    try:
        async with broker:
            await broker.start()
            await broker.publish(encode(event), event.topic.value, key=event.key)
            await broker.publish(encode(event), event.topic.value, key=event.key)
            for _ in range(600):
                if deliveries >= 2:
                    break
                await asyncio.sleep(0.1)
        assert deliveries == 2
        assert await pool.fetchval(f"SELECT applied FROM {schema}.effects") == 1
        assert await pool.fetchval(f"SELECT count(*) FROM {schema}.processed_events") == 1
    finally:
        await pool.execute(f"DROP SCHEMA {schema} CASCADE")


async def test_claim_refuses_to_run_outside_a_transaction(
    pool: asyncpg.Pool[Any], unique: str
) -> None:
    async with pool.acquire() as conn:
        with pytest.raises(RuntimeError, match="inside the transaction"):
            await claim(conn, "anything", sample_events(unique)[1])
