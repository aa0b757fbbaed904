"""Wiring of the ingest service: settings, broker, the camera.frames subscriber, the upload API,
and the ingest path built once the database, bucket and outbox are up."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from fastapi import FastAPI

from hone_common.kafka import create_broker
from hone_common.service import Runtime, create_service_app, serve
from hone_ingest import handlers, routes
from hone_ingest.adapters.bucket import ImageBucket, s3_store
from hone_ingest.adapters.catalog import PostgresCatalog
from hone_ingest.intake import Ingestor
from hone_ingest.settings import Settings
from hone_ingest.validation import Limits

SERVICE = "ingest"
SCHEMA = "ingest"
MIGRATIONS = Path(__file__).parent / "migrations"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    knobs = settings.ingest
    runtime = Runtime(SERVICE, settings, broker=create_broker(settings.kafka, SERVICE))
    assert runtime.broker is not None
    handlers.register(
        runtime.broker,
        SERVICE,
        knobs,
        lambda: ingestor_of(runtime),
        max_message_bytes=settings.kafka.max_message_bytes,
    )

    async def on_start(rt: Runtime) -> None:
        decoder = ThreadPoolExecutor(knobs.decode_threads, thread_name_prefix="ingest-decode")
        rt.extras["decoder"] = decoder
        rt.extras["ingestor"] = Ingestor(
            PostgresCatalog(rt.pool, rt.outbox, SCHEMA),
            ImageBucket(
                s3_store(settings.s3, settings.s3.images_bucket, knobs.store_concurrency),
                settings.s3.images_bucket,
                knobs.images_prefix,
            ),
            Limits(
                max_bytes=knobs.max_image_bytes,
                max_width=knobs.max_width,
                max_height=knobs.max_height,
                max_pixels=knobs.max_pixels,
            ),
            decoder=decoder,
            decode_chunks=knobs.decode_threads,
            store_concurrency=knobs.store_concurrency,
            inline_image_bytes=knobs.inline_image_bytes,
        )

    async def on_stop(rt: Runtime) -> None:
        decoder: ThreadPoolExecutor | None = rt.extras.pop("decoder", None)
        if decoder is not None:
            decoder.shutdown(wait=True)

    app = create_service_app(
        runtime,
        title="Hone ingest",
        description="Validates camera frames and uploads, stores each distinct image once in "
        "the image bucket and announces it as image.received.",
        schema=SCHEMA,
        migrations=MIGRATIONS,
        uses_auth=True,
        buckets=(settings.s3.images_bucket,),
        on_start=on_start,
        on_stop=on_stop,
    )
    app.include_router(routes.router)
    return app


def ingestor_of(runtime: Runtime) -> Ingestor:
    ingestor: Ingestor = runtime.extras["ingestor"]
    return ingestor


def main() -> None:
    settings = Settings()
    serve(create_app(settings), settings.http.host, settings.http.port)
