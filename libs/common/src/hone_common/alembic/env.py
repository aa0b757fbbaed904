"""Alembic environment shared by every Hone service.

Each service owns one PostgreSQL schema and one directory of revisions; the schema name comes
from `config.attributes["schema"]`, and the version table lives inside that schema, so the
services' migration histories never touch each other.
"""

import asyncio

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

config = context.config
schema: str = config.attributes["schema"]
url: str = config.attributes["url"]


def run_with(connection: Connection) -> None:
    connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    context.configure(
        connection=connection,
        version_table_schema=schema,
        transaction_per_migration=True,
    )
    with context.begin_transaction():
        context.run_migrations(schema=schema)


async def run_online() -> None:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            # Serialise concurrent upgrades of one schema (several replicas starting at once).
            await connection.execute(
                text("SELECT pg_advisory_lock(hashtext(:s))"), {"s": f"hone-migrate-{schema}"}
            )
            await connection.run_sync(run_with)
            await connection.commit()
    finally:
        await engine.dispose()


if context.is_offline_mode():
    raise SystemExit("Hone migrations run online only")
asyncio.run(run_online())
