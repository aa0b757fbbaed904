"""Transactional outbox: events are stored in the service's schema in the same transaction as
the state change that causes them, then published by a relay. A crash between the database
commit and the Kafka publish loses nothing: the relay publishes what is pending on restart.
Consumers are idempotent, so a publish repeated after a crash is harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import asyncpg
import structlog
from faststream.kafka import KafkaBroker

from hone_common.events import Event, encode
from hone_common.metrics import EVENTS_PUBLISHED, OUTBOX_PENDING

log = structlog.get_logger(__name__)

OUTBOX_DDL = """
CREATE TABLE IF NOT EXISTS {schema}.outbox (
    id           bigserial PRIMARY KEY,
    event_id     uuid NOT NULL UNIQUE,
    topic        text NOT NULL,
    key          bytea,
    value        bytea NOT NULL,
    event_type   text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);
CREATE INDEX IF NOT EXISTS outbox_pending ON {schema}.outbox (id) WHERE published_at IS NULL
"""


class Outbox:
    """Stores events with the effect that caused them and publishes them afterwards."""

    def __init__(
        self,
        pool: asyncpg.Pool[Any],
        broker: KafkaBroker,
        schema: str,
        service: str,
        *,
        poll_seconds: float = 1.0,
        batch_size: int = 500,
        keep_published_seconds: int = 3600,
    ) -> None:
        self._pool = pool
        self._broker = broker
        self._schema = schema
        self._service = service
        self._poll_seconds = poll_seconds
        self._batch_size = batch_size
        self._keep_published_seconds = keep_published_seconds
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    async def add(self, conn: asyncpg.Connection[Any], *events: Event) -> None:
        """Store events inside the caller's transaction; published after it commits."""
        await self.add_many(conn, events)

    async def add_many(self, conn: asyncpg.Connection[Any], events: Sequence[Event]) -> None:
        if not events:
            return
        await conn.executemany(
            f"INSERT INTO {self._schema}.outbox (event_id, topic, key, value, event_type) "  # noqa: S608
            "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (event_id) DO NOTHING",
            [(e.event_id, e.topic.value, e.key, encode(e), e.event_type) for e in events],
        )

    def notify(self) -> None:
        """Tell the relay new events were committed (it also polls, so this only cuts latency)."""
        self._wake.set()

    async def flush(self) -> int:
        """Publish every pending event in insertion order; returns how many were published."""
        published = 0
        async with self._lock:
            while True:
                count = await self._publish_batch()
                published += count
                if count < self._batch_size:
                    break
        return published

    async def _publish_batch(self) -> int:
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                f"SELECT id, topic, key, value, event_type FROM {self._schema}.outbox "  # noqa: S608
                "WHERE published_at IS NULL ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
                self._batch_size,
            )
            if not rows:
                OUTBOX_PENDING.labels(self._service).set(0)
                return 0
            futures = [
                await self._broker.publish(
                    bytes(row["value"]),
                    row["topic"],
                    key=bytes(row["key"]) if row["key"] is not None else None,
                    headers={"content-type": "application/json", "event-type": row["event_type"]},
                    no_confirm=True,
                )
                for row in rows
            ]
            for row, future in zip(rows, futures, strict=True):
                await future
                EVENTS_PUBLISHED.labels(self._service, row["topic"]).inc()
            await conn.execute(
                f"UPDATE {self._schema}.outbox SET published_at = now() WHERE id = ANY($1)",  # noqa: S608
                [row["id"] for row in rows],
            )
            return len(rows)

    async def _prune(self) -> None:
        async with self._pool.acquire() as conn:
            await conn.execute(
                f"DELETE FROM {self._schema}.outbox WHERE published_at < now() - $1::interval",  # noqa: S608
                # asyncpg encodes an interval from a timedelta only (a string fails every prune).
                timedelta(seconds=self._keep_published_seconds),
            )
            pending = await conn.fetchval(
                f"SELECT count(*) FROM {self._schema}.outbox WHERE published_at IS NULL"  # noqa: S608
            )
            OUTBOX_PENDING.labels(self._service).set(pending)

    async def _run(self) -> None:
        rounds = 0
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._poll_seconds)
            self._wake.clear()
            try:
                await self.flush()
                rounds += 1
                if rounds % 60 == 0:
                    await self._prune()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox_publish_failed", schema=self._schema)
                await asyncio.sleep(self._poll_seconds)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"outbox-{self._schema}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(Exception):
            await self.flush()
