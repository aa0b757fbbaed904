"""A scorer running in-process against the real stack, scoring with a tiny model of its own.

The model is trained and served by the trainer's own `bootstrap` (the same path production
uses) under a model name of its own, so TorchServe's `hone` model is never touched, and only
the version this fixture registered is unregistered afterwards.
"""

from __future__ import annotations

import contextlib
import io
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from aiokafka import AIOKafkaProducer
from fastapi import FastAPI
from PIL import Image
from pydantic import ValidationError

from hone_common.events import ImageReceived, ImageScored, Quality, ReceivedImage, encode
from hone_common.settings import ServiceSettings
from hone_common.storage import ObjectRef, ObjectStore, sha256_hex
from hone_common.topics import Topic
from hone_common.torchserve import TorchServeClient
from hone_scorer.app import create_app
from hone_scorer.settings import Settings
from hone_trainer.bootstrap import SeedSet, bootstrap
from hone_trainer.model.serving import ServingOptions
from hone_trainer.model.training import TrainConfig
from tests.kafka_helpers import start_group_at_end

CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
           "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]  # fmt: skip


@dataclass(frozen=True)
class ServedModel:
    name: str
    version: str


async def serve_tiny_model(settings: ServiceSettings, name: str) -> str:
    """Train a tiny model, archive it and make it `name`'s default version; returns it."""
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(len(CLASSES)), 6)
    # Class k is a bright band at row 2k: learnable in one epoch, and no data set to fetch.
    images = rng.integers(0, 60, size=(len(labels), 28, 28), dtype=np.uint8)
    for i, label in enumerate(labels):
        images[i, 2 * label : 2 * label + 3, :] = 255
    client = TorchServeClient(settings.torchserve)
    try:
        result = await bootstrap(
            SeedSet(images, labels, CLASSES),
            TrainConfig(epochs=1, augmentation="none", threads=1, progress=False),
            client=client,
            store=ObjectStore(settings.s3),
            bucket=settings.s3.models_bucket,
            model_name=name,
            serving=ServingOptions(batch_size=1, max_batch_delay_ms=1, workers=1),
        )
    finally:
        await client.aclose()
    return result.model_version


async def unregister(settings: ServiceSettings, model: ServedModel) -> None:
    client = TorchServeClient(settings.torchserve)
    try:
        await client.unregister(model.version, model=model.name)
    finally:
        await client.aclose()


@pytest.fixture(scope="session")
async def served_model(settings: ServiceSettings) -> AsyncIterator[ServedModel]:
    name = f"hone-scorer-it-{uuid.uuid4().hex[:8]}"
    model = ServedModel(name, await serve_tiny_model(settings, name))
    yield model
    await unregister(settings, model)


@dataclass
class RunningScorer:
    app: FastAPI
    settings: Settings
    model: ServedModel
    store: ObjectStore
    producer: AIOKafkaProducer

    async def put_image(self, data: bytes) -> ImageReceived:
        digest = sha256_hex(data)
        ref = ObjectRef(self.settings.s3.images_bucket, f"scorer-it/{digest[:2]}/{digest}.png")
        await self.store.put(ref, data, "image/png")
        return image_received(data, ref.uri)

    async def publish(self, event: ImageReceived, key: bytes | None = None) -> None:
        await self.producer.send_and_wait(
            Topic.IMAGE_RECEIVED.value, encode(event), key=key or event.key
        )


def image_received(data: bytes, uri: str) -> ImageReceived:
    digest = sha256_hex(data)
    image_id = uuid.uuid4()
    return ImageReceived(
        producer="scorer-it",
        correlation_id=image_id,
        payload=ReceivedImage(
            image_id=image_id,
            uri=uri,
            sha256=digest,
            width=28,
            height=28,
            format="PNG",
            camera_id="cam-it",
            captured_at=datetime.now(UTC),
            metadata={"test": "scorer-it"},
            quality=Quality(brightness=0.3, contrast=0.2, sharpness=5.0),
        ),
    )


def png(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, size=(28, 28), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


@contextlib.asynccontextmanager
async def start_scorer(
    model_name: str, store: ObjectStore, **knobs: Any
) -> AsyncIterator[RunningScorer]:
    """The scorer app through its lifespan, scoring with `model_name`'s default version, in a
    consumer group of its own that starts at the end of the topics."""
    base = Settings()
    group = f"scorer-it-{uuid.uuid4().hex[:8]}"
    settings = base.model_copy(
        update={
            "torchserve": base.torchserve.model_copy(update={"model_name": model_name}),
            "scorer": base.scorer.model_copy(update={"consumer_group": group, **knobs}),
        }
    )
    await store.ensure_bucket(settings.s3.images_bucket)
    await start_group_at_end(
        settings.kafka.bootstrap_servers,
        group,
        [Topic.IMAGE_RECEIVED.value, Topic.MODEL_PROMOTED.value],
    )
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers, acks="all")
    await producer.start()
    app = create_app(settings)
    try:
        async with app.router.lifespan_context(app):
            yield RunningScorer(app, settings, ServedModel(model_name, ""), store, producer)
    finally:
        await producer.stop()


# Module scope: a consumer left running would also process later tests' images.
@pytest.fixture(scope="module")
async def running_scorer(
    served_model: ServedModel, store: ObjectStore
) -> AsyncIterator[RunningScorer]:
    async with start_scorer(served_model.name, store, retry_seconds=5.0) as running:
        running.model = served_model
        yield running


def scored_for(records: list[Any], ids: set[uuid.UUID]) -> list[ImageScored]:
    """The image.scored events among `records` that answer images of `ids` (other tests put
    anything on the shared topics, malformed messages included)."""
    events = []
    for record in records:
        try:
            event = ImageScored.model_validate_json(record.value)
        except ValidationError:
            continue
        if event.payload.image_id in ids:
            events.append(event)
    return events
