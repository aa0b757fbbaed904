"""Kafka helpers for tests that share the stack's topics with other tests."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, TopicPartition


async def start_group_at_end(bootstrap_servers: str, group: str, topics: list[str]) -> None:
    """Commit a new consumer group's offsets at the end of its topics, so the consumer under
    test reads only what the test publishes, never the topics' history (and never misses the
    first message, as `auto_offset_reset=latest` can while partitions are being assigned)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        partitions: list[TopicPartition] = []
        for topic in topics:
            await consumer._client.force_metadata_update()
            consumer._client.add_topic(topic)
            await consumer._client.force_metadata_update()
            found = consumer.partitions_for_topic(topic) or set()
            partitions += [TopicPartition(topic, p) for p in found]
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        await consumer.commit(dict(ends))
    finally:
        await consumer.stop()
