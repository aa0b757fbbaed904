"""Every event type through the real Kafka broker, and dead-lettering of bad messages."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient

from hone_common.events import EVENT_TYPES, Event, ImageReceived, decode, encode
from hone_common.kafka import DeadLetter, create_broker, ensure_topics, publish, subscribe
from hone_common.settings import ServiceSettings
from hone_common.topics import Topic
from tests.factories import sample_events
from tests.kafka_helpers import start_group_at_end


async def test_every_event_type_round_trips_with_its_key_and_headers(
    settings: ServiceSettings, kafka_tap: Any, unique: str
) -> None:
    events = sample_events(unique)
    tap = await kafka_tap(*(t.value for t in Topic))
    broker = create_broker(settings.kafka, "test-producer")
    async with broker:
        await broker.connect()
        for event in events:
            await publish(broker, event, "test-producer")

    ids = {str(e.event_id) for e in events}

    def ours(records: list[Any]) -> list[Any]:
        return [r for r in records if any(i.encode() in (r.value or b"") for i in ids)]

    records = ours(await tap.wait_for(lambda rs: len(ours(rs)) >= len(events)))
    assert len(records) == len(events)
    by_topic = {r.topic: r for r in records}
    for event in events:
        record = by_topic[event.topic.value]
        assert record.key == event.key
        headers = dict(record.headers)
        assert headers["event-type"] == event.event_type.encode()
        assert decode(EVENT_TYPES[event.topic], record.value) == event


async def test_a_malformed_message_goes_to_the_dlq_and_the_next_good_one_is_processed(
    settings: ServiceSettings, kafka_tap: Any, unique: str
) -> None:
    good = sample_events(unique)[1]
    assert isinstance(good, ImageReceived)
    seen: list[Event] = []
    dlq = await kafka_tap(Topic.IMAGE_RECEIVED.dlq)
    broker = create_broker(settings.kafka, f"test-{unique}")
    await start_group_at_end(
        settings.kafka.bootstrap_servers, f"test-{unique}", [ImageReceived.topic.value]
    )

    @subscribe(broker, ImageReceived, service=f"test-{unique}")
    async def handle(event: ImageReceived) -> None:
        if event.payload.image_id == good.payload.image_id:
            seen.append(event)

    bad_key = f"bad-{unique}".encode()
    async with broker:
        await broker.start()
        await broker.publish(
            b'{"event_type": "image.received", "oops": true}',
            Topic.IMAGE_RECEIVED.value,
            key=bad_key,
        )
        await broker.publish(encode(good), Topic.IMAGE_RECEIVED.value, key=good.key)
        letters = await dlq.wait_for(lambda rs: any(r.key == bad_key for r in rs), within=60)
        for _ in range(300):
            if seen:
                break
            await asyncio.sleep(0.1)

    assert [e.event_id for e in seen] == [good.event_id]
    letter = DeadLetter.model_validate_json(next(r for r in letters if r.key == bad_key).value)
    assert letter.topic == Topic.IMAGE_RECEIVED.value
    assert letter.error_type == "ValidationError"
    assert "payload: Field required" in letter.error


async def test_topics_are_created_with_the_configured_partitions_once(
    settings: ServiceSettings, unique: str
) -> None:
    names = [f"test.topics.{unique}", f"test.topics.{unique}.dlq"]
    assert sorted(await ensure_topics(settings.kafka, names)) == sorted(names)
    assert await ensure_topics(settings.kafka, names) == []  # a second call creates nothing
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
    await admin.start()
    try:
        described = await admin.describe_topics(names)
    finally:
        await admin.close()
    assert [len(t["partitions"]) for t in described] == [settings.kafka.partitions] * 2
