"""Fixtures for the trainer service against the real local stack: each test runs the app
in-process with its own PostgreSQL schema, consumer group (pinned to the current end of the
topics, so it sees only what the test publishes), model name, cache and admin API key, and
removes what it created afterwards."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import httpx
import numpy as np
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from faststream.kafka import KafkaBroker
from minio import Minio
from PIL import Image

from hone_common.auth import ApiKeys, Role
from hone_common.events import (
    Event,
    ImageReceived,
    Label,
    LabelSubmitted,
    Quality,
    Reason,
    ReceivedImage,
    image_id_for,
)
from hone_common.kafka import create_broker, publish
from hone_common.storage import ObjectRef, ObjectStore
from hone_common.topics import Topic
from hone_trainer.app import create_app
from hone_trainer.dataset import split_for
from hone_trainer.model.training import TrainConfig
from hone_trainer.settings import (
    DatasetSettings,
    ScheduleSettings,
    Settings,
    TrainerSettings,
    WeaknessSettings,
)

T = TypeVar("T")
CONSUMED = (Topic.IMAGE_RECEIVED, Topic.LABEL_SUBMITTED, Topic.MODEL_PROMOTED)
CLASSES = ["top", "upper", "lower", "bottom"]
OUR_LABELERS = ("ann", "bob")
TINY = TrainConfig(epochs=1, min_samples_per_epoch=64, progress=False, seed=1)


async def eventually(
    probe: Callable[[], Awaitable[T | None]], within: float = 60.0, what: str = "condition"
) -> T:
    """Poll `probe` until it returns something truthy; fail after `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        result = await probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.25)


async def pin_group_to_end(bootstrap: str, group: str, topics: list[str]) -> None:
    """Commit the group's offsets at the topics' current ends (creating missing topics)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        missing = set(topics) - set(await admin.list_topics())
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics([NewTopic(t, 3, 1) for t in missing])
        described = await admin.describe_topics(topics)
    finally:
        await admin.close()
    partitions = [
        TopicPartition(t["topic"], p["partition"]) for t in described for p in t["partitions"]
    ]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        consumer.assign(partitions)
        await consumer.commit(dict((await consumer.end_offsets(partitions)).items()))
    finally:
        await consumer.stop()


def band_png(label: int, seed: int) -> bytes:
    """A 28x28 grayscale PNG: noise with a bright band whose height names the class."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 70, (28, 28)).astype(np.uint8)
    pixels[label * 7 : label * 7 + 7, :] += 150
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


@dataclass
class Picture:
    image_id: uuid.UUID
    label: str
    event: ImageReceived


@dataclass
class Running:
    settings: Settings
    schema: str
    pool: asyncpg.Pool[Any]
    http: httpx.AsyncClient
    broker: KafkaBroker
    store: ObjectStore
    app: Any
    suffix: str
    uploaded: list[ObjectRef] = field(default_factory=list)

    @property
    def model_name(self) -> str:
        return self.settings.model_name

    def split(self, image_id: uuid.UUID) -> str:
        return split_for(image_id, self.settings.trainer.dataset.splits)

    async def send(self, *events: Event) -> None:
        for event in events:
            await publish(self.broker, event, "trainer-it")

    async def picture(
        self,
        label: int,
        seed: int,
        *,
        camera: str = "cam-1",
        object_id: str | None = None,
        at: datetime | None = None,
        upload: bool = True,
    ) -> Picture:
        data = band_png(label, seed)
        sha = hashlib.sha256(data).hexdigest()
        ref = ObjectRef("hone-images", f"trainer-it/{self.suffix}/{sha}.png")
        if upload:
            await self.store.ensure_bucket(ref.bucket)
            await self.store.put(ref, data, "image/png")
            self.uploaded.append(ref)
        image_id = image_id_for(f"{self.suffix}:{sha}")
        event = ImageReceived(
            producer="trainer-it",
            payload=ReceivedImage(
                image_id=image_id,
                uri=ref.uri,
                sha256=sha,
                width=28,
                height=28,
                format="PNG",
                camera_id=camera,
                captured_at=at or datetime(2026, 3, 1, 18, 30, tzinfo=UTC),
                object_id=object_id,
                quality=Quality(brightness=0.3, contrast=0.2, sharpness=10.0),
            ),
        )
        return Picture(image_id, CLASSES[label], event)

    async def wait_examples(
        self, image_ids: list[uuid.UUID], within: float = 30.0
    ) -> dict[uuid.UUID, Any]:
        async def probe() -> dict[uuid.UUID, Any] | None:
            rows = await self.pool.fetch(
                f"SELECT * FROM {self.schema}.examples WHERE image_id = ANY($1)", image_ids
            )
            return {r["image_id"]: r for r in rows} if len(rows) >= len(image_ids) else None

        return await eventually(probe, within, f"examples for {len(image_ids)} images")

    async def wait_processed(self, *events: Event, within: float = 60.0) -> None:
        """Until these events are stored (other tests' events on the topics are ignored)."""
        ids = list({e.event_id for e in events})

        async def probe() -> bool:
            n = await self.pool.fetchval(
                f"SELECT count(*) FROM {self.schema}.processed_events WHERE event_id = ANY($1)",
                ids,
            )
            return bool(n == len(ids))

        await eventually(probe, within, f"{len(ids)} processed events")

    async def wait_run(self, run_id: str, within: float = 240.0) -> dict[str, Any]:
        async def probe() -> dict[str, Any] | None:
            response = await self.http.get(f"/v1/trainer/runs/{run_id}")
            assert response.status_code == 200, response.text
            body: dict[str, Any] = response.json()
            return body if body["status"] != "running" else None

        return await eventually(probe, within, f"run {run_id} to finish")

    async def touched_by_others(self, image_ids: list[uuid.UUID]) -> set[uuid.UUID]:
        """Images someone else labelled too. The shared topics carry other pipelines' work: a
        running end-to-end stack scores the images these tests publish and its simulated
        labelers answer for them, so assertions about exact labels leave those images out."""
        rows = await self.pool.fetch(
            f"SELECT DISTINCT image_id FROM {self.schema}.label_events "
            "WHERE image_id = ANY($1) AND NOT (labeler_id = ANY($2))",
            image_ids,
            list(OUR_LABELERS),
        )
        return {r["image_id"] for r in rows}

    async def candidates_in_outbox(self) -> int:
        return int(
            await self.pool.fetchval(
                f"SELECT count(*) FROM {self.schema}.outbox WHERE event_type = 'model.candidate'"
            )
        )


def label_event(
    image_id: uuid.UUID,
    label: str | None,
    *,
    verdict: str = "label",
    labeler: str = "ann",
    at: datetime | None = None,
    predicted: str | None = None,
) -> LabelSubmitted:
    return LabelSubmitted(
        producer="trainer-it",
        occurred_at=at or datetime.now(UTC),
        payload=Label(
            image_id=image_id,
            verdict=verdict,  # type: ignore[arg-type]
            label=label,
            labeler_id=labeler,
            model_version="20260101.000000",
            predicted_label=predicted,
            reasons=[Reason(strategy="uncertainty", score=0.8, detail="margin 0.05")],
        ),
    )


def later(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


TrainerFactory = Callable[..., contextlib.AbstractAsyncContextManager[Running]]


def trainer_settings(suffix: str, tmp: Path, **overrides: Any) -> TrainerSettings:
    values: dict[str, Any] = {
        "schema_name": f"trainer_it_{suffix}",
        "consumer_group": f"trainer-it-{suffix}",
        "model_name": f"hone-it-{suffix}",
        "cache_dir": tmp / "cache",
        "work_dir": tmp / "runs",
        "executor": "thread",
        "min_examples": 8,
        "train": TINY,
        "schedule": ScheduleSettings(enabled=False),
        # Other tests publish labels of other classes on the same topics: they stay out.
        "dataset": DatasetSettings(classes=CLASSES),
        "weakness": WeaknessSettings(fold_epochs=1, min_rows=8, min_category_rows=2),
    }
    values.update(overrides)
    return TrainerSettings(**values)


@pytest.fixture
def start_trainer(tmp_path: Path) -> TrainerFactory:
    """`async with start_trainer(**trainer_settings) as running:` runs a private trainer;
    `suffix=` reuses the schema of an earlier one (a restart)."""

    @contextlib.asynccontextmanager
    async def start(
        suffix: str | None = None, compute: Any = None, keep: bool = False, **overrides: Any
    ) -> AsyncIterator[Running]:
        suffix = suffix or uuid.uuid4().hex[:10]
        trainer = trainer_settings(suffix, tmp_path, **overrides)
        settings = Settings().model_copy(update={"trainer": trainer})
        bootstrap = settings.kafka.bootstrap_servers
        await pin_group_to_end(bootstrap, trainer.consumer_group, [t.value for t in CONSUMED])
        kwargs: dict[str, Any] = {"ask_torchserve": False}
        if compute is not None:
            kwargs["compute"] = compute
        app = create_app(settings, **kwargs)
        publisher = create_broker(settings.kafka, "trainer-it")
        await publisher.connect()
        store = ObjectStore(settings.s3)
        running: Running | None = None
        try:
            async with app.router.lifespan_context(app):
                pool = app.state.runtime.pool
                keys = ApiKeys(pool)
                principal, key = await keys.issue(f"trainer-it-{suffix}", Role.ADMIN)
                transport = httpx.ASGITransport(app=app)
                headers = {"Authorization": f"Bearer {key}"}
                try:
                    async with httpx.AsyncClient(
                        transport=transport, base_url="http://trainer", headers=headers
                    ) as http:
                        running = Running(
                            settings, trainer.schema_name, pool, http, publisher, store, app, suffix
                        )
                        yield running
                finally:
                    await keys.revoke(principal.key_id)
        finally:
            await publisher.stop()
            if not keep:
                await _clean(settings, trainer.schema_name, running)

    return start


async def _clean(settings: Settings, schema: str, running: Running | None) -> None:
    conn = await asyncpg.connect(settings.postgres.dsn.get_secret_value())
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    finally:
        await conn.close()
    s3 = settings.s3
    minio = Minio(
        s3.endpoint,
        s3.access_key.get_secret_value(),
        s3.secret_key.get_secret_value(),
        secure=s3.secure,
    )
    if minio.bucket_exists(s3.models_bucket):
        for item in minio.list_objects(
            s3.models_bucket, prefix=f"{settings.model_name}/", recursive=True
        ):
            minio.remove_object(s3.models_bucket, str(item.object_name))
    for ref in running.uploaded if running else []:
        with contextlib.suppress(Exception):
            minio.remove_object(ref.bucket, ref.key)
