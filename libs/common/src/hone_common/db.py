"""PostgreSQL access: one asyncpg pool per service, JSON codecs, and a readiness probe."""

from __future__ import annotations

import json
from typing import Any

import asyncpg

from hone_common.settings import PostgresSettings


async def _init_connection(conn: asyncpg.Connection[Any]) -> None:
    for type_name in ("json", "jsonb"):
        await conn.set_type_codec(
            type_name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
        )


async def create_pool(settings: PostgresSettings) -> asyncpg.Pool[Any]:
    pool = await asyncpg.create_pool(
        settings.dsn.get_secret_value(),
        min_size=settings.pool_min_size,
        max_size=settings.pool_max_size,
        init=_init_connection,
        command_timeout=60,
    )
    assert pool is not None
    return pool


async def ping(pool: asyncpg.Pool[Any]) -> bool:
    try:
        async with pool.acquire(timeout=2) as conn:
            return bool(await conn.fetchval("SELECT 1") == 1)
    except Exception:
        return False
