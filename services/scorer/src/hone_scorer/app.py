"""Wiring of the scorer: settings, broker, subscriptions, collaborators, the FastAPI app."""

from __future__ import annotations

import asyncio
import contextlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import structlog
from fastapi import FastAPI

from hone_common.kafka import create_broker
from hone_common.service import Runtime, create_service_app, serve
from hone_common.torchserve import TorchServeClient
from hone_scorer.adapters.images import ObjectStoreImages
from hone_scorer.adapters.postgres import PostgresPredictions
from hone_scorer.adapters.torchserve import TorchServeClassifier
from hone_scorer.handlers import SERVICE, Dependencies, subscribe_handlers
from hone_scorer.model import ModelTracker
from hone_scorer.scoring import Scorer
from hone_scorer.settings import Settings

log = structlog.get_logger(__name__)

SCHEMA = "scorer"
MIGRATIONS = Path(__file__).parent / "migrations"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    knobs = settings.scorer
    runtime = Runtime(SERVICE, settings, broker=create_broker(settings.kafka, SERVICE))
    torchserve = TorchServeClient(
        settings.torchserve, max_connections=max(4, knobs.inference_concurrency * 2)
    )
    tracker = ModelTracker()

    def dependencies() -> Dependencies:
        deps: Dependencies = runtime.extras["dependencies"]
        return deps

    assert runtime.broker is not None
    subscribe_handlers(runtime.broker, knobs, settings.kafka, dependencies)

    async def refresh_production_version(predictions: PostgresPredictions) -> None:
        # Another replica may have consumed the promotion: the table is the shared truth.
        while True:
            await asyncio.sleep(knobs.model_refresh_seconds)
            try:
                tracker.promoted(await predictions.production_version())
            except Exception:
                log.exception("production_version_refresh_failed")

    async def on_start(rt: Runtime) -> None:
        # The object store's client is synchronous: every read holds a worker thread while it
        # waits for MinIO, and the default pool (cores + 4 threads) capped reads at ~550/s here.
        asyncio.get_running_loop().set_default_executor(
            ThreadPoolExecutor(knobs.fetch_concurrency + 4, thread_name_prefix="scorer-io")
        )
        predictions = PostgresPredictions(rt.pool, rt.outbox, SCHEMA)
        classifier = TorchServeClassifier(
            torchserve,
            attempts=knobs.torchserve_attempts,
            backoff_seconds=knobs.torchserve_backoff_seconds,
            backoff_max_seconds=knobs.torchserve_backoff_max_seconds,
        )
        scorer = Scorer(
            ObjectStoreImages(rt.store, concurrency=knobs.fetch_concurrency),
            classifier,
            images_per_request=knobs.images_per_request,
            inference_concurrency=knobs.inference_concurrency,
        )
        rt.extras["dependencies"] = Dependencies(scorer, predictions, tracker)
        tracker.promoted(await predictions.production_version())
        rt.extras["refresh"] = asyncio.create_task(refresh_production_version(predictions))

    async def on_stop(rt: Runtime) -> None:
        refresh: asyncio.Task[None] | None = rt.extras.pop("refresh", None)
        if refresh is not None:
            refresh.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await refresh
        await torchserve.aclose()

    return create_service_app(
        runtime,
        title="Hone scorer",
        description="Scores received images with the production model served by TorchServe.",
        schema=SCHEMA,
        migrations=MIGRATIONS,
        on_start=on_start,
        on_stop=on_stop,
        extra_checks={"torchserve": torchserve.ping},
    )


def main() -> None:
    settings = Settings()
    serve(create_app(settings), settings.http.host, settings.http.port)
