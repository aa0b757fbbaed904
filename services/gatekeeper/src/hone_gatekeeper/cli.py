"""`hone-gatekeeper` admin commands: list versions, show one, promote or roll back by hand.

They work on the same database, TorchServe and Kafka as the service, through the same use
cases (and the same lock), so a command and a running service never decide at once.
"""

from __future__ import annotations

import asyncio
import getpass
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any, TypeVar

import httpx
import typer

from hone_common.db import create_pool
from hone_common.kafka import create_broker
from hone_common.logging import configure_logging
from hone_common.migrations import upgrade
from hone_common.outbox import Outbox
from hone_common.storage import ObjectStore
from hone_common.torchserve import TorchServeClient, TorchServeError
from hone_gatekeeper.gatekeeper import Gatekeeper, GatekeeperError
from hone_gatekeeper.repository import MIGRATIONS, LockTimeout, PostgresRegistry
from hone_gatekeeper.settings import SCHEMA, SERVICE, Policy, Settings

T = TypeVar("T")

cli = typer.Typer(add_completion=False, help="The Hone gatekeeper: serve, or manage versions.")


Action = Callable[[Gatekeeper, PostgresRegistry, str], Awaitable[T]]


@asynccontextmanager
async def _session(
    settings: Settings, *, publishes: bool
) -> AsyncIterator[tuple[Gatekeeper, PostgresRegistry]]:
    """The use cases outside the service; events they queue are published before it ends."""
    await upgrade(settings.postgres, SCHEMA, MIGRATIONS)
    pool = await create_pool(settings.postgres)
    broker = create_broker(settings.kafka, SERVICE)
    torchserve = TorchServeClient(settings.torchserve)
    try:
        if publishes:
            await broker.connect()
        outbox = Outbox(pool, broker, SCHEMA, SERVICE)
        registry = PostgresRegistry(
            pool, outbox, SCHEMA, lock_timeout=settings.gatekeeper.lock_timeout_seconds
        )
        store = ObjectStore(settings.s3)
        yield Gatekeeper(registry, torchserve, store, Policy.from_settings(settings)), registry
        if publishes:
            await outbox.flush()
    finally:
        await torchserve.aclose()
        await broker.stop()
        await pool.close()


def _run(action: Action[T], *, publishes: bool = False) -> T:
    settings = Settings()
    configure_logging(SERVICE, settings.log_level, json=False)

    async def main() -> T:
        async with _session(settings, publishes=publishes) as (gatekeeper, registry):
            return await action(gatekeeper, registry, settings.torchserve.model_name)

    try:
        return asyncio.run(main())
    except GatekeeperError as error:
        typer.echo(f"refused: {error}", err=True)
        raise typer.Exit(1) from None
    except (LockTimeout, TorchServeError, httpx.HTTPError) as error:
        typer.echo(f"failed: {error}", err=True)
        raise typer.Exit(3) from None


def _echo_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


@cli.command("versions")
def versions_command() -> None:
    """List every version seen, newest first, with its status."""

    async def action(_: Gatekeeper, registry: PostgresRegistry, model: str) -> None:
        rows = await registry.versions(model)
        for row in rows:
            promoted = f"{row.promoted_at:%Y-%m-%d %H:%M}" if row.promoted_at else "-"
            typer.echo(
                f"{row.model_version:<18} {row.status:<10} promoted {promoted:<16} "
                f"{row.artifact_uri or '(no archive known)'}"
            )

    _run(action)


@cli.command("show")
def show_command(version: str) -> None:
    """Show a version with every decision on it and the latest evaluation (JSON)."""

    async def action(_: Gatekeeper, registry: PostgresRegistry, model: str) -> None:
        row = await registry.version(model, version)
        if row is None:
            raise GatekeeperError(f"the gatekeeper has never seen version {version}")
        decisions = await registry.decisions(model, version)
        evaluation = None
        latest = next((d for d in decisions if d.evaluation_id is not None), None)
        if latest is not None and latest.evaluation_id is not None:
            evaluation = await registry.evaluation(latest.evaluation_id)
        _echo_json(
            {
                "version": row.model_dump(mode="json"),
                "decisions": [d.model_dump(mode="json") for d in decisions],
                "evaluation": evaluation.model_dump(mode="json") if evaluation else None,
            }
        )

    _run(action)


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no user name in some containers
        return "cli"


@cli.command("promote")
def promote_command(
    version: str,
    note: Annotated[str | None, typer.Option(help="Why; kept with the decision.")] = None,
) -> None:
    """Make VERSION production by hand (model.promoted with manual=true)."""

    async def action(gatekeeper: Gatekeeper, _: PostgresRegistry, __: str) -> None:
        decision = await gatekeeper.promote(version, actor=_actor(), note=note)
        _echo_json(decision.model_dump(mode="json"))

    _run(action, publishes=True)


@cli.command("rollback")
def rollback_command(
    version: Annotated[str | None, typer.Argument(help="Default: the latest earlier one.")] = None,
    note: Annotated[str | None, typer.Option(help="Why; kept with the decision.")] = None,
) -> None:
    """Serve an earlier production version again, registering it anew if it was unloaded."""

    async def action(gatekeeper: Gatekeeper, _: PostgresRegistry, __: str) -> None:
        decision = await gatekeeper.rollback(version, actor=_actor(), note=note)
        _echo_json(decision.model_dump(mode="json"))

    _run(action, publishes=True)
