"""Schema migrations per service with Alembic: one schema and one revision directory each.

Services run `await upgrade(...)` at start-up (idempotent, serialised by an advisory lock);
operators can run `hone-migrate SCHEMA VERSIONS_DIR` by hand.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer
from alembic import command
from alembic.config import Config

from hone_common.settings import PostgresSettings, ServiceSettings

ENV_DIR = Path(__file__).with_name("alembic")


def _config(settings: PostgresSettings, schema: str, versions_dir: Path) -> Config:
    if not versions_dir.is_dir():
        raise FileNotFoundError(f"no migrations directory at {versions_dir}")
    config = Config()
    config.set_main_option("script_location", str(ENV_DIR))
    config.set_main_option("version_locations", str(versions_dir))
    config.set_main_option("path_separator", "os")
    config.attributes["schema"] = schema
    config.attributes["url"] = settings.sqlalchemy_url
    return config


def upgrade_sync(settings: PostgresSettings, schema: str, versions_dir: Path) -> None:
    command.upgrade(_config(settings, schema, versions_dir), "head")


async def upgrade(settings: PostgresSettings, schema: str, versions_dir: Path) -> None:
    """Bring `schema` to its newest revision (runs Alembic in a thread: it owns its loop)."""
    await asyncio.to_thread(upgrade_sync, settings, schema, versions_dir)


def current(settings: PostgresSettings, schema: str, versions_dir: Path) -> None:
    command.current(_config(settings, schema, versions_dir))


cli = typer.Typer(help="Apply a Hone service's schema migrations.", no_args_is_help=True)


@cli.command("upgrade")
def upgrade_command(schema: str, versions_dir: Path) -> None:
    """Upgrade SCHEMA to the newest revision in VERSIONS_DIR."""
    upgrade_sync(ServiceSettings().postgres, schema, versions_dir)
    typer.echo(f"{schema}: up to date")
