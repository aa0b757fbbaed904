"""Wiring of the gatekeeper: settings, broker, subscription, collaborators, the admin API, and
the `hone-gatekeeper` command (`serve`, the default, plus the admin commands of `cli.py`)."""

from __future__ import annotations

import asyncio
import contextlib
import sys

import structlog
import typer
from fastapi import FastAPI

from hone_common.kafka import create_broker
from hone_common.service import Runtime, create_service_app, serve
from hone_common.torchserve import TorchServeClient
from hone_gatekeeper.cli import cli
from hone_gatekeeper.gatekeeper import Gatekeeper
from hone_gatekeeper.handlers import subscribe_handlers
from hone_gatekeeper.repository import MIGRATIONS, PostgresRegistry
from hone_gatekeeper.routes import router
from hone_gatekeeper.settings import SCHEMA, SERVICE, Policy, Settings

log = structlog.get_logger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    runtime = Runtime(SERVICE, settings, broker=create_broker(settings.kafka, SERVICE))
    torchserve = TorchServeClient(settings.torchserve)

    def gatekeeper() -> Gatekeeper:
        found: Gatekeeper = runtime.extras["gatekeeper"]
        return found

    assert runtime.broker is not None
    subscribe_handlers(runtime.broker, settings.gatekeeper, settings.kafka, gatekeeper)

    async def on_start(rt: Runtime) -> None:
        registry = PostgresRegistry(
            rt.pool, rt.outbox, SCHEMA, lock_timeout=settings.gatekeeper.lock_timeout_seconds
        )
        keeper = Gatekeeper(registry, torchserve, rt.store, Policy.from_settings(settings))
        rt.extras.update(
            gatekeeper=keeper, registry=registry, model_name=settings.torchserve.model_name
        )
        try:
            # A decision interrupted by a crash is finished before anything else is decided;
            # if TorchServe is not up yet, the next candidate or command finishes it.
            await keeper.apply_pending()
            await keeper.refresh_production_accuracy()
        except Exception:
            log.exception("startup_reconciliation_failed")
        rt.extras["reconcile"] = asyncio.create_task(
            _keep_production_served(keeper, settings.gatekeeper.reconcile_seconds)
        )

    async def on_stop(rt: Runtime) -> None:
        task: asyncio.Task[None] | None = rt.extras.pop("reconcile", None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await torchserve.aclose()

    app = create_service_app(
        runtime,
        title="Hone gatekeeper",
        description="Tests candidate models through TorchServe and promotes only better ones.",
        schema=SCHEMA,
        migrations=MIGRATIONS,
        uses_auth=True,
        buckets=(settings.s3.models_bucket,),
        on_start=on_start,
        on_stop=on_stop,
        extra_checks={"torchserve": torchserve.ping},
    )
    app.include_router(router)
    return app


async def _keep_production_served(keeper: Gatekeeper, every: float) -> None:
    while True:
        await asyncio.sleep(every)
        try:
            await keeper.ensure_production_served()
        except Exception:
            log.exception("production_reconciliation_failed")


@cli.callback(invoke_without_command=True)
def _default(context: typer.Context) -> None:
    if context.invoked_subcommand is None:
        serve_command()


@cli.command("serve")
def serve_command() -> None:
    """Run the service (the model.candidate consumer and the admin API)."""
    settings = Settings()
    serve(create_app(settings), settings.http.host, settings.http.port)


def main() -> None:
    cli(args=sys.argv[1:])
