"""Wiring of the selector: settings, broker, subscriptions, admin API, lifespan."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from fastapi import FastAPI

from hone_common.events import ImageScored, LabelSubmitted, ModelPromoted
from hone_common.kafka import BatchFailures, create_broker, subscribe, subscribe_batch
from hone_common.service import Runtime, create_service_app, serve
from hone_selector import handlers
from hone_selector.handlers import Deps
from hone_selector.routes import router
from hone_selector.settings import SERVICE, Settings
from hone_selector.stats import refresh_yield_gauges

MIGRATIONS = Path(__file__).parent / "migrations"


def create_app(
    settings: Settings | None = None, *, clock: Callable[[], float] = time.time
) -> FastAPI:
    settings = settings or Settings()
    selector = settings.selector
    broker = create_broker(settings.kafka, SERVICE)
    runtime = Runtime(SERVICE, settings, broker=broker)
    options = {
        "service": SERVICE,
        "group_id": selector.consumer_group,
        "auto_offset_reset": settings.kafka.auto_offset_reset,
        "max_message_bytes": settings.kafka.max_message_bytes,
    }

    def deps() -> Deps:
        return runtime.extras["deps"]  # type: ignore[no-any-return]

    @subscribe_batch(broker, ImageScored, max_records=selector.batch_size, **options)  # type: ignore[arg-type]
    async def on_image_scored(events: list[ImageScored]) -> BatchFailures | None:
        """Decide which scored images people should label."""
        return await handlers.on_image_scored(events, deps())

    @subscribe(broker, LabelSubmitted, **options)  # type: ignore[arg-type]
    async def on_label_submitted(event: LabelSubmitted) -> None:
        """Fold labels into class counts, slice error rates and strategy yields."""
        await handlers.on_label_submitted(event, deps())

    @subscribe(broker, ModelPromoted, **options)  # type: ignore[arg-type]
    async def on_model_promoted(event: ModelPromoted) -> None:
        """Record the production version and load its weakness model."""
        await handlers.on_model_promoted(event, deps())

    async def on_start(rt: Runtime) -> None:
        rt.extras["deps"] = Deps(rt.pool, rt.outbox, rt.store, settings, clock)
        await refresh_yield_gauges(rt.pool, selector.schema_name)

    app = create_service_app(
        runtime,
        title="Hone selector",
        description="Chooses which scored images people should label, within a review budget.",
        schema=selector.schema_name,
        migrations=MIGRATIONS,
        uses_auth=True,
        on_start=on_start,
    )
    app.include_router(router)
    return app


def main() -> None:
    settings = Settings()
    serve(create_app(settings), settings.http.host, settings.http.port)
