"""Wiring of the labeling API: Kafka subscriptions, the service layer, routes, the page."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import structlog
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from hone_common.events import ImageScored, ReviewRequested
from hone_common.http import error_body
from hone_common.kafka import BatchFailures, create_broker, subscribe_batch
from hone_common.ratelimit import RateLimiter
from hone_common.service import Runtime, create_service_app, serve
from hone_labeling_api.domain import LabelingError
from hone_labeling_api.middleware import BodyLimitMiddleware, SecurityHeadersMiddleware
from hone_labeling_api.routes import classes, feedback, page, stats, tasks
from hone_labeling_api.service import Labeling
from hone_labeling_api.settings import SERVICE, Settings

log = structlog.get_logger(__name__)

DESCRIPTION = """
The review queue of Hone. Labelers claim tasks with a lease, see the image, the model's
guess and why the image was chosen, and answer with a class, `ambiguous` or `skip`; answers
become `label.submitted` events. End users flag wrong predictions with `POST /v1/feedback`.
Every endpoint needs an API key (`Authorization: Bearer <key>`, issued with `hone-keys`).
The labeling page is at `/label`.
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    config = settings.labeling
    broker = create_broker(settings.kafka, SERVICE)
    runtime = Runtime(SERVICE, settings, broker=broker)

    def labeling() -> Labeling:
        service: Labeling = runtime.extras["labeling"]
        return service

    subscription = {
        "service": SERVICE,
        "group_id": config.consumer_group,
        "auto_offset_reset": settings.kafka.auto_offset_reset,
        "max_message_bytes": settings.kafka.max_message_bytes,
    }

    @subscribe_batch(broker, ReviewRequested, **subscription)  # type: ignore[arg-type]
    async def on_review_requested(events: list[ReviewRequested]) -> BatchFailures:
        """Queue review requests: one open task per image, highest priority first."""
        return await labeling().record_review_requests(events)

    @subscribe_batch(broker, ImageScored, max_records=500, **subscription)  # type: ignore[arg-type]
    async def on_image_scored(events: list[ImageScored]) -> None:
        """Remember each image's URI and newest prediction, for user flags."""
        await labeling().record_scores(events)

    async def on_start(rt: Runtime) -> None:
        service = Labeling(rt.pool, rt.outbox, rt.store, config)
        await service.start()
        rt.extras["labeling"] = service
        rt.extras["housekeeping"] = asyncio.create_task(_housekeeping(service))

    async def on_stop(rt: Runtime) -> None:
        task: asyncio.Task[None] | None = rt.extras.pop("housekeeping", None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    app = create_service_app(
        runtime,
        title="Hone labeling API",
        description=DESCRIPTION,
        schema=config.schema_name,
        migrations=Path(__file__).parent / "migrations",
        uses_auth=True,
        on_start=on_start,
        on_stop=on_stop,
    )
    app.state.labeling_settings = config
    app.state.rate_limiter = RateLimiter(
        config.rate_limit.requests_per_second, config.rate_limit.burst, config.rate_limit.max_keys
    )

    @app.exception_handler(LabelingError)
    async def _refused(_: Request, exc: LabelingError) -> JSONResponse:
        return JSONResponse(error_body(exc.code, exc.message), exc.status)

    for module in (tasks, feedback, classes, stats, page):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=page.STATIC), name="static")
    app.add_middleware(BodyLimitMiddleware, max_bytes=config.max_body_bytes)
    app.add_middleware(SecurityHeadersMiddleware)
    return app


async def _housekeeping(service: Labeling) -> None:
    while True:
        try:
            await service.housekeeping()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("housekeeping_failed")
        await asyncio.sleep(service.settings.housekeeping_seconds)


def main() -> None:
    settings = Settings()
    serve(create_app(settings), settings.http.host, settings.http.port)
