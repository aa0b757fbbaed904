"""The typed subscription wrapper, driven through FastStream's in-memory test broker."""

from __future__ import annotations

import pytest
from faststream.kafka import KafkaBroker, TestKafkaBroker

from hone_common.events import ImageReceived, encode
from hone_common.kafka import DeadLetter, PermanentError, subscribe
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
