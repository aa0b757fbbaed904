"""Fixtures for tests against the real local stack (`deploy/local/stack up`), shared by the
integration, e2e and fault tiers."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from hone_common.db import create_pool
from hone_common.settings import ServiceSettings
from hone_common.storage import ObjectStore


@pytest.fixture(scope="session")
def settings() -> ServiceSettings:
    return ServiceSettings()


@pytest.fixture(scope="session")
async def pool(settings: ServiceSettings) -> AsyncIterator[asyncpg.Pool[Any]]:
    try:
        pool = await create_pool(settings.postgres)
    except OSError as error:  # a missing stack is a failure, never a skip
        pytest.fail(f"PostgreSQL is not reachable ({error}); run `deploy/local/stack up`")
    yield pool
    await pool.close()


@pytest.fixture(scope="session")
def store(settings: ServiceSettings) -> ObjectStore:
    return ObjectStore(settings.s3)


class KafkaTap:
    """Reads what is published to some topics from the moment it is opened."""

    def __init__(self, bootstrap: str, topics: list[str]) -> None:
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=None,
            enable_auto_commit=False,
            fetch_max_bytes=16 * 1024 * 1024,
            max_partition_fetch_bytes=8 * 1024 * 1024,
        )
        self._topics = topics
        self.records: list[ConsumerRecord[bytes, bytes]] = []

    async def open(self) -> KafkaTap:
        await self._consumer.start()
        partitions: list[TopicPartition] = []
        for topic in self._topics:
            found = await self._wait_for_partitions(topic)
            partitions += [TopicPartition(topic, p) for p in found]
        self._consumer.assign(partitions)
        await self._consumer.seek_to_end(*partitions)
        for tp in partitions:  # resolve positions now, before anything is published
            await self._consumer.position(tp)
        return self

    async def _wait_for_partitions(self, topic: str) -> set[int]:
        # Asking for metadata makes the broker auto-create the topic.
        for _ in range(50):
            await self._consumer._client.force_metadata_update()
            self._consumer._client.add_topic(topic)
            await self._consumer._client.force_metadata_update()
            found = self._consumer.partitions_for_topic(topic)
            if found:
                return set(found)
            await asyncio.sleep(0.1)
        raise AssertionError(f"topic {topic} has no partitions")

    async def close(self) -> None:
        await self._consumer.stop()

    async def wait_for(
        self, predicate: Callable[[list[ConsumerRecord[bytes, bytes]]], bool], within: float = 30.0
    ) -> list[ConsumerRecord[bytes, bytes]]:
        """Collect records until `predicate(all records so far)` holds or the deadline passes."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while not predicate(self.records):
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"timed out; {len(self.records)} records seen")
            batches = await self._consumer.getmany(timeout_ms=int(min(remaining, 0.5) * 1000))
            for records in batches.values():
                self.records.extend(records)
        return self.records


@pytest.fixture
async def kafka_tap(settings: ServiceSettings) -> AsyncIterator[Callable[..., Any]]:
    taps: list[KafkaTap] = []

    async def open_tap(*topics: str) -> KafkaTap:
        tap = await KafkaTap(settings.kafka.bootstrap_servers, list(topics)).open()
        taps.append(tap)
        return tap

    yield open_tap
    for tap in taps:
        await tap.close()


@pytest.fixture
def unique() -> str:
    return uuid.uuid4().hex[:12]
