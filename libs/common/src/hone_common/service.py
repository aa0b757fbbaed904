"""The life of a Hone service: one FastAPI app (ops endpoints, admin or public API) whose
lifespan migrates the service's schema, opens its pool, object store and outbox, and runs its
Kafka subscribers. Collaborators are created once here and handed to the domain code.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import structlog
import uvicorn
from fastapi import FastAPI
from faststream.kafka import KafkaBroker

from hone_common import auth
from hone_common.db import create_pool, ping
from hone_common.http import ReadinessCheck, install_error_handlers, ops_router
from hone_common.kafka import ensure_topics
from hone_common.logging import configure_logging
from hone_common.migrations import upgrade
from hone_common.outbox import Outbox
from hone_common.settings import ServiceSettings
from hone_common.storage import ObjectStore

log = structlog.get_logger(__name__)


@dataclass
class Runtime:
    """Collaborators of one service process, ready once the app has started."""

    service: str
    settings: ServiceSettings
    broker: KafkaBroker | None = None
    pool: asyncpg.Pool[Any] = field(default=None)  # type: ignore[assignment]
    store: ObjectStore = field(default=None)  # type: ignore[assignment]
    outbox: Outbox = field(default=None)  # type: ignore[assignment]
    extras: dict[str, Any] = field(default_factory=dict)


Hook = Callable[[Runtime], Awaitable[None]]


def create_service_app(
    runtime: Runtime,
    *,
    title: str,
    schema: str,
    migrations: Path,
    description: str = "",
    uses_auth: bool = False,
    buckets: tuple[str, ...] = (),
    on_start: Hook | None = None,
    on_stop: Hook | None = None,
    extra_checks: dict[str, ReadinessCheck] | None = None,
) -> FastAPI:
    settings = runtime.settings

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging(runtime.service, settings.log_level, settings.log_json)
        await upgrade(settings.postgres, schema, migrations)
        if uses_auth:
            await auth.migrate(settings.postgres)
        runtime.pool = await create_pool(settings.postgres)
        runtime.store = ObjectStore(settings.s3)
        for bucket in buckets:
            await runtime.store.ensure_bucket(bucket)
        if uses_auth:
            app.state.api_keys = auth.ApiKeys(runtime.pool)
        if runtime.broker is not None:
            await ensure_topics(settings.kafka)
            runtime.outbox = Outbox(runtime.pool, runtime.broker, schema, runtime.service)
            await runtime.broker.connect()
            runtime.outbox.start()
        if on_start is not None:
            await on_start(runtime)
        if runtime.broker is not None:
            await runtime.broker.start()
        log.info("service_started", service=runtime.service)
        try:
            yield
        finally:
            if runtime.broker is not None:
                await runtime.broker.stop()
            if on_stop is not None:
                await on_stop(runtime)
            if runtime.outbox is not None:
                await runtime.outbox.stop()
            await runtime.pool.close()
            log.info("service_stopped", service=runtime.service)

    async def database_ready() -> bool:
        return runtime.pool is not None and await ping(runtime.pool)

    async def kafka_ready() -> bool:
        return runtime.broker is None or bool(await runtime.broker.ping(timeout=2.0))

    async def store_ready() -> bool:
        return runtime.store is not None and await runtime.store.ping()

    checks: dict[str, ReadinessCheck] = {
        "postgres": database_ready,
        "kafka": kafka_ready,
        "object_store": store_ready,
        **(extra_checks or {}),
    }
    app = FastAPI(title=title, description=description, version="0.1.0", lifespan=lifespan)
    app.state.runtime = runtime
    install_error_handlers(app)
    app.include_router(ops_router(checks))
    return app


def serve(app: FastAPI, host: str, port: int) -> None:
    """Run the app with uvicorn; logging is configured by the app itself."""
    uvicorn.run(app, host=host, port=port, log_config=None, access_log=False, lifespan="on")
