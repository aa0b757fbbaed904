"""The labeling API running in-process against the real stack, in a schema of its own.

The app gets its own PostgreSQL schema and consumer group (started at the end of the shared
topics), so it queues only what these tests publish; each test starts with an empty queue.
"""

from __future__ import annotations

import asyncio
import io
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
import numpy as np
import pytest
from fastapi import FastAPI
from PIL import Image

from hone_common.auth import ApiKeys, Role
from hone_common.events import (
    Event,
    Prediction,
    Reason,
    ReviewRequest,
    ReviewRequested,
    encode,
)
from hone_common.storage import ObjectRef, ObjectStore, sha256_hex
from hone_common.topics import Topic
from hone_labeling_api.app import create_app
from hone_labeling_api.service import Labeling
from hone_labeling_api.settings import (
    FASHION_MNIST_CLASSES,
    LabelingSettings,
    RateLimitSettings,
    Settings,
)
from tests.kafka_helpers import start_group_at_end

CLASSES = FASHION_MNIST_CLASSES


def png(seed: int | str, side: int = 28) -> bytes:
    """A distinct small grayscale PNG per seed."""
    rng = np.random.default_rng(abs(hash(seed)) % 2**32)
    pixels = rng.integers(0, 256, size=(side, side), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


async def wait_until(
    check: Callable[[], Awaitable[Any]], within: float = 20.0, what: str = "condition"
) -> Any:
    """Poll `check` until it returns something truthy, or fail after `within` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        result = await check()
        if result:
            return result
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


@dataclass
class Labeler:
    name: str
    key: str
    key_id: uuid.UUID

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


@dataclass
class LabelingHarness:
    app: FastAPI
    settings: Settings
    client: httpx.AsyncClient
    pool: asyncpg.Pool[Any]
    store: ObjectStore
    keys: ApiKeys
    schema: str
    unique: str
    issued: list[uuid.UUID] = field(default_factory=list)
    mine: set[uuid.UUID] = field(default_factory=set)
    """Images these tests queued; anything else came from others on the shared topic."""

    @property
    def service(self) -> Labeling:
        service: Labeling = self.app.state.runtime.extras["labeling"]
        return service

    def configure(self, **overrides: Any) -> None:
        """Change the service's knobs for one test (restored by the `harness` fixture)."""
        self.service.settings = self.service.settings.model_copy(update=overrides)

    async def key(self, role: Role, name: str | None = None) -> Labeler:
        name = name or f"{role.value}-{uuid.uuid4().hex[:8]}"
        principal, key = await self.keys.issue(name, role)
        self.issued.append(principal.key_id)
        return Labeler(name, key, principal.key_id)

    async def put_image(self, seed: int | str) -> str:
        data = png(f"{self.unique}-{seed}")
        digest = sha256_hex(data)
        ref = ObjectRef(self.settings.s3.images_bucket, f"labeling-it/{digest[:2]}/{digest}.png")
        await self.store.put(ref, data, "image/png")
        return ref.uri

    def review(
        self,
        uri: str,
        *,
        image_id: uuid.UUID | None = None,
        priority: float = 0.5,
        strategy: str = "uncertainty",
        detail: str = "margin 0.05",
        label: str = "Shirt",
        outside_budget: bool = False,
    ) -> ReviewRequested:
        probabilities = [0.02] * len(CLASSES)
        probabilities[CLASSES.index(label)] = 0.46
        probabilities[CLASSES.index("T-shirt/top" if label != "T-shirt/top" else "Coat")] = 0.38
        image_id = image_id or uuid.uuid4()
        self.mine.add(image_id)
        return ReviewRequested(
            producer="labeling-it",
            correlation_id=image_id,
            payload=ReviewRequest(
                image_id=image_id,
                uri=uri,
                reasons=[Reason(strategy=strategy, score=0.8, detail=detail)],
                priority=priority,
                model_version="it-v1",
                prediction=Prediction(
                    label=label, confidence=0.46, classes=CLASSES, probabilities=probabilities
                ),
                camera_id="cam-it",
                outside_budget=outside_budget,
            ),
        )

    async def publish(self, *events: Event) -> None:
        broker = self.app.state.runtime.broker
        for event in events:
            await broker.publish(encode(event), event.topic.value, key=event.key)

    async def publish_raw(self, topic: str, value: bytes) -> None:
        await self.app.state.runtime.broker.publish(value, topic, key=uuid.uuid4().bytes)

    async def queue(self, count: int, *, priorities: list[float] | None = None) -> list[uuid.UUID]:
        """Publish `count` review requests (real images in MinIO) and wait until all are
        queued; returns their image ids, highest priority first."""
        priorities = priorities or [0.9 - i * 0.01 for i in range(count)]
        events = [
            self.review(await self.put_image(f"{uuid.uuid4()}"), priority=p) for p in priorities
        ]
        await self.publish(*events)
        ids = [e.payload.image_id for e in events]
        await self.wait_for_tasks(ids)
        return ids

    async def wait_for_tasks(self, image_ids: list[uuid.UUID], within: float = 30.0) -> None:
        async def queued() -> bool:
            n = await self.pool.fetchval(
                f"SELECT count(DISTINCT image_id) FROM {self.schema}.tasks "
                "WHERE image_id = ANY($1)",
                image_ids,
            )
            return bool(n == len(set(image_ids)))

        await wait_until(queued, within, f"{len(image_ids)} tasks to be queued")

    async def set_aside_foreign_tasks(self) -> None:
        """Close tasks queued from review requests that others published on the shared
        topic meanwhile, so claims see only this test's tasks."""
        await self.pool.execute(
            f"UPDATE {self.schema}.tasks SET status = 'ambiguous', leased_by = NULL "
            "WHERE status = 'open' AND NOT (image_id = ANY($1))",
            list(self.mine),
        )

    async def claim(self, who: Labeler, count: int = 1) -> list[dict[str, Any]]:
        await self.set_aside_foreign_tasks()
        response = await self.client.post(
            "/v1/tasks/claim", json={"count": count}, headers=who.headers
        )
        assert response.status_code == 200, response.text
        tasks: list[dict[str, Any]] = response.json()["tasks"]
        return tasks

    async def answer(
        self,
        who: Labeler,
        task_id: str,
        verdict: str = "label",
        label: str | None = "Coat",
        key: str | None = None,
    ) -> httpx.Response:
        body: dict[str, Any] = {"verdict": verdict}
        if verdict == "label":
            body["label"] = label
        headers = dict(who.headers)
        if key is not None:
            headers["Idempotency-Key"] = key
        return await self.client.post(f"/v1/tasks/{task_id}/answer", json=body, headers=headers)


def make_settings(unique: str, **labeling: Any) -> Settings:
    return Settings(
        log_json=False,
        labeling=LabelingSettings(
            schema_name=f"test_labeling_{unique}",
            consumer_group=f"test-labeling-{unique}",
            rate_limit=RateLimitSettings(requests_per_second=1000, burst=1000),
            housekeeping_seconds=0.5,
            **labeling,
        ),
    )


@pytest.fixture(scope="module")
async def running(pool: asyncpg.Pool[Any], store: ObjectStore) -> AsyncIterator[LabelingHarness]:
    unique = uuid.uuid4().hex[:10]
    settings = make_settings(unique)
    await start_group_at_end(
        settings.kafka.bootstrap_servers,
        settings.labeling.consumer_group,
        [Topic.REVIEW_REQUESTED.value, Topic.IMAGE_SCORED.value],
    )
    await store.ensure_bucket(settings.s3.images_bucket)
    app = create_app(settings)
    schema = settings.labeling.schema_name
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                harness = LabelingHarness(
                    app, settings, client, pool, store, app.state.api_keys, schema, unique
                )
                yield harness
                for key_id in harness.issued:
                    await harness.keys.revoke(key_id)
    finally:
        await pool.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


@pytest.fixture
async def harness(running: LabelingHarness) -> AsyncIterator[LabelingHarness]:
    """The running app with an empty queue and the default settings."""
    running.mine.clear()
    await running.set_aside_foreign_tasks()
    original = running.service.settings
    yield running
    running.service.settings = original
