"""A gatekeeper running in-process against the real stack, judging real model archives.

Models are trained once per session on Fashion-MNIST with the trainer's own code and archived
with its archiver: a weak production model, a clearly better candidate and a worthless one
(trained on shuffled labels). Each test serves them under a model name of its own, so
TorchServe's `hone` model is never touched; afterwards only that name's versions are
unregistered and its archives and evaluation sets deleted. Versions are timestamps drawn from
the 2000s, so they cannot collide with the versions other tests register at the same time
(TorchServe names its copy of an archive after the version alone).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import random
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import numpy as np
import numpy.typing as npt
import pytest
from aiokafka import AIOKafkaProducer
from fastapi import FastAPI
from minio import Minio
from PIL import Image

from hone_common.auth import ApiKeys, Role
from hone_common.events import (
    Candidate,
    ModelCandidate,
    OfflineMetrics,
    TrainingSnapshot,
    encode,
)
from hone_common.settings import ServiceSettings
from hone_common.storage import ObjectRef, ObjectStore
from hone_common.topics import Topic
from hone_common.torchserve import TorchServeClient, TorchServeError, register_version
from hone_gatekeeper.app import create_app
from hone_gatekeeper.settings import Settings
from hone_simulator.data import load_fashion_mnist
from hone_trainer.model.archive import build_archive, store_archive
from hone_trainer.model.training import TrainConfig, TrainedModel, train
from tests.kafka_helpers import start_group_at_end

EVALUATION_IMAGES = 400
CAMERAS = ("cam-north", "cam-south")


@dataclass(frozen=True)
class EvaluationImage:
    image_id: str
    uri: str
    label: str
    camera_id: str


@dataclass(frozen=True)
class Models:
    classes: list[str]
    production: TrainedModel
    better: TrainedModel
    worse: TrainedModel
    evaluation: list[EvaluationImage]


def png(pixels: npt.NDArray[np.uint8]) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def _train(
    images: npt.NDArray[np.uint8], labels: list[str], classes: list[str], epochs: int
) -> TrainedModel:
    config = TrainConfig(epochs=epochs, augmentation="none", progress=False, threads=1)
    return train(images, labels, classes, config)


@pytest.fixture(scope="session")
async def models(store: ObjectStore, settings: ServiceSettings) -> AsyncIterator[Models]:
    """Three models of known quality and 400 held-out images stored in the image bucket."""
    data = load_fashion_mnist()
    classes = list(data.classes)
    order = np.random.default_rng(7).permutation(len(data))
    held_out, pool = order[:EVALUATION_IMAGES], order[EVALUATION_IMAGES:]
    names = np.array(classes)

    def labelled(count: int, epochs: int, shuffle: bool = False) -> TrainedModel:
        chosen = pool[:count]
        labels = data.labels[chosen]
        if shuffle:
            labels = np.random.default_rng(8).permutation(labels)
        return _train(data.images[chosen], list(names[labels]), classes, epochs)

    trained = {
        "production": labelled(150, epochs=2),
        "better": labelled(3000, epochs=5),
        "worse": labelled(600, epochs=1, shuffle=True),
    }
    run = uuid.uuid4().hex[:10]
    bucket = settings.s3.images_bucket
    await store.ensure_bucket(bucket)
    evaluation = []
    for n, i in enumerate(held_out):
        ref = ObjectRef(bucket, f"gatekeeper-it/{run}/{n}.png")
        await store.put(ref, png(data.images[i]), "image/png")
        evaluation.append(
            EvaluationImage(f"{run}-{n}", ref.uri, classes[data.labels[i]], CAMERAS[n % 2])
        )
    yield Models(classes, **trained, evaluation=evaluation)
    _remove_objects(settings, bucket, f"gatekeeper-it/{run}/")


def _minio(settings: ServiceSettings) -> Minio:
    s3 = settings.s3
    return Minio(
        s3.endpoint,
        s3.access_key.get_secret_value(),
        s3.secret_key.get_secret_value(),
        secure=s3.secure,
    )


def _remove_objects(settings: ServiceSettings, bucket: str, prefix: str) -> None:
    minio = _minio(settings)
    for item in minio.list_objects(bucket, prefix=prefix, recursive=True):
        minio.remove_object(bucket, str(item.object_name))


@dataclass
class Lab:
    """One test's model name, with helpers to archive, serve and announce its models."""

    name: str
    settings: Settings
    store: ObjectStore
    torchserve: TorchServeClient
    pool: asyncpg.Pool[Any]
    models: Models
    producer: AIOKafkaProducer
    app: FastAPI | None = None
    moment: datetime = field(
        default_factory=lambda: (
            datetime(2001 + random.randrange(9), 1, 1, tzinfo=UTC)
            + timedelta(seconds=random.randrange(300 * 86400))
        )
    )

    def new_version(self) -> str:
        self.moment += timedelta(seconds=1)
        return self.moment.strftime("%Y%m%d.%H%M%S")

    async def archive(self, model: TrainedModel, version: str) -> str:
        bucket = self.settings.s3.models_bucket
        with tempfile.TemporaryDirectory(prefix="gatekeeper-it-") as tmp:
            mar = build_archive(model, self.name, version, Path(tmp))
            return (await store_archive(self.store, mar, bucket, self.name, version)).uri

    async def evaluation_set(self, version: str) -> str:
        ref = ObjectRef(self.settings.s3.models_bucket, f"{self.name}/{version}.evaluation.jsonl")
        lines = [
            json.dumps(
                {"image_id": e.image_id, "uri": e.uri, "label": e.label, "camera_id": e.camera_id}
            )
            for e in self.models.evaluation
        ]
        await self.store.put(ref, ("\n".join(lines) + "\n").encode(), "application/x-ndjson")
        return ref.uri

    async def candidate(self, model: TrainedModel, *, artifact: bool = True) -> ModelCandidate:
        """A candidate as the trainer announces it: archive and evaluation set stored."""
        version = self.new_version()
        if artifact:
            artifact_uri = await self.archive(model, version)
        else:
            artifact_uri = f"s3://{self.settings.s3.models_bucket}/{self.name}/{version}.mar"
        return ModelCandidate(
            producer="gatekeeper-it",
            payload=Candidate(
                model_version=version,
                artifact_uri=artifact_uri,
                evaluation_set_uri=await self.evaluation_set(version),
                classes=self.models.classes,
                snapshot=TrainingSnapshot(examples_sha256="0" * 64, examples=1),
                metrics=OfflineMetrics(accuracy=0.5, macro_f1=0.5),
            ),
        )

    async def serve_directly(self, model: TrainedModel) -> str:
        """A production version bootstrapped outside the gatekeeper: stored and default."""
        version = self.new_version()
        uri = await self.archive(model, version)
        await register_version(
            self.torchserve,
            self.store,
            ObjectRef.parse(uri),
            model_name=self.name,
            model_version=version,
        )
        await self.torchserve.set_default(version, model=self.name)
        return version

    async def publish(self, event: ModelCandidate) -> None:
        await self.producer.send_and_wait(Topic.MODEL_CANDIDATE.value, encode(event), key=event.key)

    async def decision(self, version: str, within: float = 180.0) -> asyncpg.Record:
        """The applied decision on `version`, polled until it exists or the deadline passes."""
        return await poll(
            lambda: self.pool.fetchrow(
                "SELECT * FROM gatekeeper.decisions WHERE model_name = $1 "
                "AND model_version = $2 AND applied_at IS NOT NULL "
                "ORDER BY decided_at DESC LIMIT 1",
                self.name,
                version,
            ),
            within,
            f"no applied decision on {version}",
        )

    def http(self) -> httpx.AsyncClient:
        assert self.app is not None
        transport = httpx.ASGITransport(app=self.app)
        return httpx.AsyncClient(transport=transport, base_url="http://gatekeeper")


async def poll(
    probe: Callable[[], Awaitable[Any]], within: float, failure: str, every: float = 0.25
) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        found = await probe()
        if found:
            return found
        if loop.time() > deadline:
            raise AssertionError(f"{failure} within {within} s")
        await asyncio.sleep(every)


async def _forget(settings: ServiceSettings, pool: asyncpg.Pool[Any], name: str) -> None:
    """Unregister this test's versions (the default last: TorchServe keeps it while others
    exist), delete its archives and evaluation sets, and its rows in the registry."""
    client = TorchServeClient(settings.torchserve)
    try:
        default = await client.default_version(name)
        versions = [str(v["modelVersion"]) for v in await client.describe(name)]
        for version in sorted(versions, key=lambda v: v == default):
            with contextlib.suppress(TorchServeError):
                await client.unregister(version, model=name)
    finally:
        await client.aclose()
    _remove_objects(settings, settings.s3.models_bucket, f"{name}/")
    for table in ("decisions", "evaluations", "models"):
        await pool.execute(f"DELETE FROM gatekeeper.{table} WHERE model_name = $1", name)


@pytest.fixture
async def lab(
    models: Models, store: ObjectStore, pool: asyncpg.Pool[Any], settings: ServiceSettings
) -> AsyncIterator[Lab]:
    """A running gatekeeper for a model name of its own, in a consumer group of its own."""
    name = f"hone-gk-it-{uuid.uuid4().hex[:8]}"
    group = f"gatekeeper-it-{uuid.uuid4().hex[:8]}"
    base = Settings()
    gk_settings = base.model_copy(
        update={
            "torchserve": base.torchserve.model_copy(update={"model_name": name}),
            "gatekeeper": base.gatekeeper.model_copy(
                update={"consumer_group": group, "retry_seconds": 20.0}
            ),
        }
    )
    kafka = gk_settings.kafka.bootstrap_servers
    await start_group_at_end(kafka, group, [Topic.MODEL_CANDIDATE.value])
    producer = AIOKafkaProducer(bootstrap_servers=kafka, acks="all")
    await producer.start()
    torchserve = TorchServeClient(gk_settings.torchserve)
    lab = Lab(name, gk_settings, store, torchserve, pool, models, producer)
    app = create_app(gk_settings)
    try:
        async with app.router.lifespan_context(app):
            lab.app = app
            yield lab
    finally:
        await producer.stop()
        await torchserve.aclose()
        await _forget(settings, pool, name)


@pytest.fixture
async def issue_key(pool: asyncpg.Pool[Any]) -> AsyncIterator[Callable[[Role], Awaitable[str]]]:
    keys = ApiKeys(pool)
    issued: list[uuid.UUID] = []

    async def issue(role: Role = Role.ADMIN) -> str:
        principal, key = await keys.issue(f"gatekeeper-it-{uuid.uuid4().hex[:6]}", role)
        issued.append(principal.key_id)
        return key

    yield issue
    for key_id in issued:
        await keys.revoke(key_id)
