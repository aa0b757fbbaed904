"""Idempotent consumers: a processed `event_id` is recorded in the consumer's own schema, in the
same transaction as the event's effect, so a redelivered event has no second effect.

    async with pool.acquire() as conn, conn.transaction():
        if not await claim(conn, "scorer", event):
            return                      # seen before: its effect is already stored
        ...                             # the effect, in the same transaction
"""

from __future__ import annotations

from typing import Any

import asyncpg

from hone_common.events import Event

PROCESSED_EVENTS_DDL = """
CREATE TABLE IF NOT EXISTS {schema}.processed_events (
    event_id     uuid PRIMARY KEY,
    event_type   text NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now()
)
"""


async def claim(conn: asyncpg.Connection[Any], schema: str, event: Event) -> bool:
    """Record the event as processed; False if it already was (skip its effect)."""
    if not conn.is_in_transaction():
        raise RuntimeError("claim() must run inside the transaction that stores the effect")
    inserted = await conn.fetchval(
        f"INSERT INTO {schema}.processed_events (event_id, event_type) VALUES ($1, $2) "  # noqa: S608
        "ON CONFLICT (event_id) DO NOTHING RETURNING true",
        event.event_id,
        event.event_type,
    )
    return bool(inserted)


async def claim_many(conn: asyncpg.Connection[Any], schema: str, events: list[Any]) -> set[Any]:
    """Batch form of `claim`: returns the event ids that were new (to be processed)."""
    if not conn.is_in_transaction():
        raise RuntimeError("claim_many() must run inside the transaction that stores the effect")
    rows = await conn.fetch(
        f"INSERT INTO {schema}.processed_events (event_id, event_type) "  # noqa: S608
        "SELECT * FROM unnest($1::uuid[], $2::text[]) ON CONFLICT (event_id) DO NOTHING "
        "RETURNING event_id",
        [e.event_id for e in events],
        [e.event_type for e in events],
    )
    return {row["event_id"] for row in rows}
