"""Wiring of the trainer: settings, broker, subscriptions, the run scheduler, the admin API, and
the `hone-trainer` command (`serve`, the default, and `run-now`)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from fastapi import FastAPI

from hone_common.db import create_pool
from hone_common.events import ImageReceived, LabelSubmitted, ModelPromoted
from hone_common.kafka import create_broker, subscribe
from hone_common.logging import configure_logging
from hone_common.migrations import upgrade
from hone_common.outbox import Outbox
from hone_common.service import Runtime, create_service_app, serve
from hone_common.storage import ObjectStore
from hone_common.torchserve import TorchServeClient
from hone_trainer import handlers
from hone_trainer.handlers import Deps
from hone_trainer.job import compute
from hone_trainer.routes import router
from hone_trainer.runs import Compute, RunBusy, Trainer
from hone_trainer.scheduler import Scheduler
from hone_trainer.settings import SERVICE, Settings

MIGRATIONS = Path(__file__).parent / "migrations"


def create_app(
    settings: Settings | None = None,
    *,
    compute: Compute = compute,
    ask_torchserve: bool = True,
) -> FastAPI:
    """`compute` is the training step (tests swap in one that fails); `ask_torchserve` lets a
    run learn the production version from TorchServe before any `model.promoted`."""
    settings = settings or Settings()
    trainer_settings = settings.trainer
    broker = create_broker(settings.kafka, SERVICE)
    runtime = Runtime(SERVICE, settings, broker=broker)
    options: dict[str, Any] = {
        "service": SERVICE,
        "group_id": trainer_settings.consumer_group,
        "auto_offset_reset": settings.kafka.auto_offset_reset,
        "max_message_bytes": settings.kafka.max_message_bytes,
    }

    def deps() -> Deps:
        return runtime.extras["deps"]  # type: ignore[no-any-return]

    @subscribe(broker, ImageReceived, **options)
    async def on_image_received(event: ImageReceived) -> None:
        """Keep the image's facts for training; labels waiting for them become examples."""
        await handlers.on_image_received(event, deps())

    @subscribe(broker, LabelSubmitted, **options)
    async def on_label_submitted(event: LabelSubmitted) -> None:
        """Resolve the image's label into the dataset (split, propagation)."""
        await handlers.on_label_submitted(event, deps())

    @subscribe(broker, ModelPromoted, **options)
    async def on_model_promoted(event: ModelPromoted) -> None:
        """Track the production version: the parent and warm start of the next run."""
        await handlers.on_model_promoted(event, deps())

    async def on_start(rt: Runtime) -> None:
        deps_ = Deps(rt.pool, settings)
        versions = TorchServeClient(settings.torchserve) if ask_torchserve else None
        trainer = Trainer(
            rt.pool, rt.store, rt.outbox, settings, compute=compute, versions=versions
        )
        scheduler = Scheduler(trainer, rt.pool, deps_.repository, trainer_settings.schedule)
        rt.extras.update(
            deps=deps_,
            trainer=trainer,
            scheduler=scheduler,
            repository=deps_.repository,
            torchserve=versions,
        )
        await trainer.abandon_stale()
        scheduler.start()

    async def on_stop(rt: Runtime) -> None:
        await rt.extras["scheduler"].stop()
        await rt.extras["trainer"].stop()
        if rt.extras.get("torchserve") is not None:
            await rt.extras["torchserve"].aclose()

    app = create_service_app(
        runtime,
        title="Hone trainer",
        description="Keeps the labelled dataset and trains candidate models on a schedule.",
        schema=trainer_settings.schema_name,
        migrations=MIGRATIONS,
        uses_auth=True,
        buckets=(settings.s3.models_bucket,),
        on_start=on_start,
        on_stop=on_stop,
    )
    app.include_router(router)
    return app


async def run_now(settings: Settings, trigger: str = "cli") -> dict[str, Any]:
    """One run in this process, then publish its candidate (the service's relay would too)."""
    schema = settings.trainer.schema_name
    await upgrade(settings.postgres, schema, MIGRATIONS)
    pool = await create_pool(settings.postgres)
    broker = create_broker(settings.kafka, SERVICE)
    versions = TorchServeClient(settings.torchserve)
    try:
        store = ObjectStore(settings.s3)
        await store.ensure_bucket(settings.s3.models_bucket)
        await broker.connect()
        outbox = Outbox(pool, broker, schema, SERVICE)
        trainer = Trainer(pool, store, outbox, settings, versions=versions)
        await trainer.abandon_stale()
        record = await trainer.run(trigger)
        await outbox.flush()
        return record
    finally:
        await versions.aclose()
        await broker.stop()
        await pool.close()


cli = typer.Typer(add_completion=False, help="The Hone trainer service.")


@cli.callback(invoke_without_command=True)
def _default(context: typer.Context) -> None:
    if context.invoked_subcommand is None:
        serve_command()


@cli.command("serve")
def serve_command() -> None:
    """Run the service (Kafka consumers, schedule, admin API)."""
    settings = Settings()
    serve(create_app(settings), settings.http.host, settings.http.port)


@cli.command("run-now")
def run_now_command(
    trigger: Annotated[str, typer.Option(help="Recorded as the run's trigger.")] = "cli",
) -> None:
    """Train now, in this process; prints the run record. Exit 0 succeeded, 1 failed,
    2 skipped (too little data), 3 another run is in progress."""
    settings = Settings()
    configure_logging(SERVICE, settings.log_level, settings.log_json)
    try:
        record = asyncio.run(run_now(settings, trigger))
    except RunBusy as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(3) from None
    typer.echo(json.dumps(record, indent=2, default=str))
    raise typer.Exit({"succeeded": 0, "skipped": 2}.get(record["status"], 1))


def main() -> None:
    cli(args=sys.argv[1:])
