"""Kafka helpers for tests that share the stack's topics with other tests."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, TopicPartition

from hone_common.kafka import ensure_topics
from hone_common.settings import KafkaSettings


async def start_group_at_end(bootstrap_servers: str, group: str, topics: list[str]) -> None:
    """Commit a new consumer group's offsets at the end of its topics, so the consumer under
    test reads only what the test publishes, never the topics' history (and never misses the
    first message, as `auto_offset_reset=latest` can while partitions are being assigned).

    On a fresh broker the topics may not exist yet: they are created first, as the services
    create them at start-up."""
    await ensure_topics(KafkaSettings(bootstrap_servers=bootstrap_servers), topics)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        partitions: list[TopicPartition] = []
        for topic in topics:
            for _ in range(100):
                await consumer._client.force_metadata_update()
                found = consumer.partitions_for_topic(topic)
                if found:
                    partitions += [TopicPartition(topic, p) for p in found]
                    break
                consumer._client.add_topic(topic)
                await asyncio.sleep(0.1)
            else:
                raise AssertionError(f"topic {topic} has no partitions")
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        await consumer.commit(dict(ends))
    finally:
        await consumer.stop()
