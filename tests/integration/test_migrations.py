"""Schema migrations from empty against the real PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg
import pytest

from hone_common import auth
from hone_common.migrations import upgrade
from hone_common.settings import ServiceSettings

MIGRATIONS = Path(__file__).with_name("migrations")


async def test_migrations_create_a_schema_from_empty_and_rerun_as_a_no_op(
    settings: ServiceSettings, pool: asyncpg.Pool[Any], unique: str
) -> None:
    schema = f"test_mig_{unique}"
    try:
        await upgrade(settings.postgres, schema, MIGRATIONS)
        await upgrade(settings.postgres, schema, MIGRATIONS)
        tables = {
            r["table_name"]
            for r in await pool.fetch(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = $1", schema
            )
        }
        assert tables == {"alembic_version", "effects", "outbox", "processed_events"}
        assert await pool.fetchval(f"SELECT version_num FROM {schema}.alembic_version") == (
            "test_0001"
        )
        assert await pool.fetchval(f"SELECT applied FROM {schema}.effects") == 0
    finally:
        await pool.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


async def test_the_auth_schema_migrates_and_keeps_its_own_version_table(
    settings: ServiceSettings, pool: asyncpg.Pool[Any]
) -> None:
    await auth.migrate(settings.postgres)
    assert await pool.fetchval("SELECT version_num FROM auth.alembic_version") == "auth_0001"


async def test_a_missing_migrations_directory_is_a_clear_error(settings: ServiceSettings) -> None:
    with pytest.raises(FileNotFoundError, match="no migrations directory"):
        await upgrade(settings.postgres, "nowhere", Path("/nonexistent/migrations"))
