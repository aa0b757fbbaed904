"""The typed subscription wrapper, driven through FastStream's in-memory test broker."""

from __future__ import annotations

import base64

import pytest
from faststream.kafka import KafkaBroker, TestKafkaBroker

from hone_common.events import ImageReceived, encode
from hone_common.kafka import BatchFailures, DeadLetter, PermanentError, subscribe, subscribe_batch
from hone_common.settings import KafkaSettings
from hone_common.topics import Topic
from tests.factories import sample_events


def _received() -> ImageReceived:
    event = sample_events()[1]
    assert isinstance(event, ImageReceived)
    return event


@pytest.fixture
def broker() -> KafkaBroker:
    return KafkaBroker(KafkaSettings().bootstrap_servers)


async def test_a_valid_event_reaches_the_handler_typed(broker: KafkaBroker) -> None:
    seen: list[ImageReceived] = []

    @subscribe(broker, ImageReceived, service="t")
    async def handle(event: ImageReceived) -> None:
        seen.append(event)

    event = _received()
    async with TestKafkaBroker(broker) as br:
        await br.publish(encode(event), Topic.IMAGE_RECEIVED.value, key=event.key)
    assert seen == [event]


async def test_malformed_messages_go_to_the_dlq_and_the_next_one_is_processed(
    broker: KafkaBroker,
) -> None:
    seen: list[ImageReceived] = []
    letters: list[DeadLetter] = []

    @subscribe(broker, ImageReceived, service="t")
    async def handle(event: ImageReceived) -> None:
        seen.append(event)

    @broker.subscriber(Topic.IMAGE_RECEIVED.dlq)
    async def on_dlq(letter: DeadLetter) -> None:
        letters.append(letter)

    good = _received()
    async with TestKafkaBroker(broker) as br:
        await br.publish(b'{"not": "an event"}', Topic.IMAGE_RECEIVED.value, key=b"bad")
        await br.publish(encode(good), Topic.IMAGE_RECEIVED.value, key=good.key)

    assert seen == [good]
    assert len(letters) == 1
    assert letters[0].topic == Topic.IMAGE_RECEIVED.value
    assert letters[0].error_type == "ValidationError"
    assert "payload: Field required" in letters[0].error


async def test_a_permanent_error_dead_letters_the_message_with_its_reason(
    broker: KafkaBroker,
) -> None:
    letters: list[DeadLetter] = []

    @subscribe(broker, ImageReceived, service="t")
    async def handle(event: ImageReceived) -> None:
        raise PermanentError("image bucket refused this object")

    @broker.subscriber(Topic.IMAGE_RECEIVED.dlq)
    async def on_dlq(letter: DeadLetter) -> None:
        letters.append(letter)

    async with TestKafkaBroker(broker) as br:
        await br.publish(encode(_received()), Topic.IMAGE_RECEIVED.value)

    assert [letter.error for letter in letters] == ["image bucket refused this object"]


async def test_transient_errors_are_retried_before_giving_up(broker: KafkaBroker) -> None:
    attempts = 0

    @subscribe(broker, ImageReceived, service="t", retry_seconds=5)
    async def handle(event: ImageReceived) -> None:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            raise ConnectionError("database restarting")

    async with TestKafkaBroker(broker) as br:
        await br.publish(encode(_received()), Topic.IMAGE_RECEIVED.value)

    assert attempts == 3


async def test_a_batch_handler_gets_the_valid_events_and_bad_ones_are_dead_lettered(
    broker: KafkaBroker,
) -> None:
    seen: list[list[ImageReceived]] = []
    letters: list[DeadLetter] = []

    @subscribe_batch(broker, ImageReceived, service="t")
    async def handle(events: list[ImageReceived]) -> None:
        seen.append(events)

    @broker.subscriber(Topic.IMAGE_RECEIVED.dlq)
    async def on_dlq(letter: DeadLetter) -> None:
        letters.append(letter)

    first, second = _received(), ImageReceived.model_validate(sample_events("other")[1])
    async with TestKafkaBroker(broker) as br:
        await br.publish_batch(
            encode(first), b"not json", encode(second), topic=Topic.IMAGE_RECEIVED.value
        )

    assert seen == [[first, second]]
    assert [letter.error_type for letter in letters] == ["ValidationError"]


async def test_events_a_batch_handler_reports_as_failed_are_dead_lettered_alone(
    broker: KafkaBroker,
) -> None:
    letters: list[DeadLetter] = []
    events = [ImageReceived.model_validate(sample_events(f"s{i}")[1]) for i in range(3)]

    @subscribe_batch(broker, ImageReceived, service="t")
    async def handle(batch: list[ImageReceived]) -> BatchFailures:
        return {batch[1].event_id: PermanentError("object missing")}

    @broker.subscriber(Topic.IMAGE_RECEIVED.dlq)
    async def on_dlq(letter: DeadLetter) -> None:
        letters.append(letter)

    async with TestKafkaBroker(broker) as br:
        await br.publish_batch(*(encode(e) for e in events), topic=Topic.IMAGE_RECEIVED.value)

    assert [(letter.error_type, letter.error) for letter in letters] == [
        ("PermanentError", "object missing")
    ]
    original = ImageReceived.model_validate_json(base64.b64decode(letters[0].value))
    assert original == events[1]


async def test_a_failing_batch_is_retried_then_raised_for_redelivery(broker: KafkaBroker) -> None:
    attempts = 0

    @subscribe_batch(broker, ImageReceived, service="t", retry_seconds=0.5)
    async def handle(batch: list[ImageReceived]) -> None:
        nonlocal attempts
        attempts += 1
        raise ConnectionError("model server down")

    async with TestKafkaBroker(broker) as br:
        with pytest.raises(ConnectionError):
            await br.publish_batch(encode(_received()), topic=Topic.IMAGE_RECEIVED.value)

    assert attempts > 1
