"""Fixtures for the selector against the real local stack: each test runs the app in-process with
its own PostgreSQL schema, consumer group (pinned to the current end of the topics, so it sees
only what the test publishes) and admin API key, and reads Kafka without a consumer group."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from faststream.kafka import KafkaBroker

from hone_common.auth import ApiKeys, Role
from hone_common.events import Event
from hone_common.kafka import create_broker, publish
from hone_common.topics import Topic
from hone_selector.app import create_app
from hone_selector.settings import SelectorSettings, Settings

T = TypeVar("T")
CONSUMED = (Topic.IMAGE_SCORED, Topic.LABEL_SUBMITTED, Topic.MODEL_PROMOTED)


async def eventually(
    probe: Callable[[], Awaitable[T | None]], within: float = 30.0, what: str = "condition"
) -> T:
    """Poll `probe` until it returns something truthy; fail after `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        result = await probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.2)


async def topic_partitions(bootstrap: str, topics: list[str]) -> list[TopicPartition]:
    """Every partition of `topics`, creating the topics that do not exist yet."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        missing = set(topics) - set(await admin.list_topics())
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics([NewTopic(t, 3, 1) for t in missing])
        described = await admin.describe_topics(topics)
        return [
            TopicPartition(t["topic"], p["partition"]) for t in described for p in t["partitions"]
        ]
    finally:
        await admin.close()


async def pin_group_to_end(bootstrap: str, group: str, topics: list[str]) -> None:
    """Commit the group's offsets at the topics' current ends: the app then reads only what
    comes next, whatever rebalances happen while its subscribers join."""
    partitions = await topic_partitions(bootstrap, topics)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        await consumer.commit(dict(ends.items()))
    finally:
        await consumer.stop()


class TopicReader:
    """Reads one topic from where it ended when the reader was opened; no consumer group."""

    def __init__(self, consumer: AIOKafkaConsumer) -> None:
        self._consumer = consumer
        self.records: list[ConsumerRecord[bytes, bytes]] = []

    @classmethod
    @contextlib.asynccontextmanager
    async def at_end(cls, bootstrap: str, topic: str) -> AsyncIterator[TopicReader]:
        partitions = await topic_partitions(bootstrap, [topic])
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            consumer.assign(partitions)
            for tp, offset in (await consumer.end_offsets(partitions)).items():
                consumer.seek(tp, offset)
            yield cls(consumer)
        finally:
            await consumer.stop()

    async def read(
        self,
        keep: Callable[[ConsumerRecord[bytes, bytes]], bool],
        count: int,
        within: float = 30.0,
    ) -> list[ConsumerRecord[bytes, bytes]]:
        """Records accepted by `keep`, waiting until there are at least `count` of them."""

        async def probe() -> list[ConsumerRecord[bytes, bytes]] | None:
            batches = await self._consumer.getmany(timeout_ms=200)
            self.records.extend(r for batch in batches.values() for r in batch if keep(r))
            return self.records if len(self.records) >= count else None

        return await eventually(probe, within, f"{count} records")

    async def settle(
        self, keep: Callable[[ConsumerRecord[bytes, bytes]], bool], seconds: float
    ) -> int:
        """Keep reading for `seconds` (to see that nothing more arrives); returns the count."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            batches = await self._consumer.getmany(timeout_ms=200)
            self.records.extend(r for batch in batches.values() for r in batch if keep(r))
        return len(self.records)


@dataclass
class Running:
    settings: Settings
    schema: str
    pool: asyncpg.Pool[Any]
    http: httpx.AsyncClient
    broker: KafkaBroker

    async def send(self, *events: Event) -> None:
        for event in events:
            await publish(self.broker, event, "selector-it")

    async def decisions(self, image_ids: list[uuid.UUID]) -> list[asyncpg.Record]:
        return list(
            await self.pool.fetch(
                f"SELECT * FROM {self.schema}.decisions WHERE image_id = ANY($1) "
                "ORDER BY decided_at",
                image_ids,
            )
        )

    async def wait_decided(
        self, image_ids: list[uuid.UUID], within: float = 30.0
    ) -> dict[uuid.UUID, Any]:
        async def probe() -> dict[uuid.UUID, Any] | None:
            rows = await self.decisions(image_ids)
            return {r["image_id"]: r for r in rows} if len(rows) >= len(image_ids) else None

        return await eventually(probe, within, f"decisions for {len(image_ids)} images")

    async def stats(self) -> dict[str, Any]:
        response = await self.http.get("/v1/selector/stats")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


SelectorFactory = Callable[..., contextlib.AbstractAsyncContextManager[Running]]


@pytest.fixture
def start_selector() -> SelectorFactory:
    """`async with start_selector(**selector_settings) as running:` runs a private selector."""

    @contextlib.asynccontextmanager
    async def start(**overrides: Any) -> AsyncIterator[Running]:
        suffix = uuid.uuid4().hex[:10]
        base = Settings()
        selector = SelectorSettings(
            **{
                "schema_name": f"selector_it_{suffix}",
                "consumer_group": f"selector-it-{suffix}",
                **overrides,
            }
        )
        settings = base.model_copy(update={"selector": selector})
        bootstrap = settings.kafka.bootstrap_servers
        await pin_group_to_end(bootstrap, selector.consumer_group, [t.value for t in CONSUMED])
        app = create_app(settings)
        publisher = create_broker(settings.kafka, "selector-it")
        await publisher.connect()
        try:
            async with app.router.lifespan_context(app):
                pool = app.state.runtime.pool
                keys = ApiKeys(pool)
                principal, key = await keys.issue(f"selector-it-{suffix}", Role.ADMIN)
                transport = httpx.ASGITransport(app=app)
                headers = {"Authorization": f"Bearer {key}"}
                try:
                    async with httpx.AsyncClient(
                        transport=transport, base_url="http://selector", headers=headers
                    ) as http:
                        yield Running(settings, selector.schema_name, pool, http, publisher)
                finally:
                    await keys.revoke(principal.key_id)
        finally:
            await publisher.stop()
            conn = await asyncpg.connect(settings.postgres.dsn.get_secret_value())
            try:
                await conn.execute(f"DROP SCHEMA IF EXISTS {selector.schema_name} CASCADE")
            finally:
                await conn.close()

    return start
