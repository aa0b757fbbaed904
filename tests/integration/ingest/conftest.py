"""An ingest service running in-process against the real stack, with a consumer group of its
own that starts at the end of camera.frames (so it reads only what these tests publish)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from fastapi import FastAPI

from hone_common.events import FrameCaptured, encode
from hone_common.topics import Topic
from hone_ingest.app import create_app
from hone_ingest.settings import Settings
from tests.kafka_helpers import start_group_at_end


@dataclass
class RunningIngest:
    app: FastAPI
    settings: Settings
    producer: AIOKafkaProducer
    http: httpx.AsyncClient

    async def publish(self, event: FrameCaptured) -> None:
        await self.publish_raw(encode(event), event.key)

    async def publish_raw(self, value: bytes, key: bytes) -> None:
        await self.producer.send_and_wait(Topic.CAMERA_FRAMES.value, value, key=key)


# Module scope: a consumer left running would also process later tests' images.
@pytest.fixture(scope="module")
async def running_ingest() -> AsyncIterator[RunningIngest]:
    base = Settings()
    group = f"ingest-it-{uuid.uuid4().hex[:8]}"
    settings = base.model_copy(
        update={
            "ingest": base.ingest.model_copy(update={"consumer_group": group, "retry_seconds": 5.0})
        }
    )
    await start_group_at_end(settings.kafka.bootstrap_servers, group, [Topic.CAMERA_FRAMES.value])
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka.bootstrap_servers,
        acks="all",
        max_request_size=settings.kafka.max_message_bytes,
    )
    await producer.start()
    app = create_app(settings)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as http:
                yield RunningIngest(app, settings, producer, http)
    finally:
        await producer.stop()
