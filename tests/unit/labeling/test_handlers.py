"""The Kafka subscriptions, driven through FastStream's in-memory test broker with a fake
service layer: typed events in, refused ones to the DLQ, the rest of a batch goes on."""

from __future__ import annotations

import base64
import uuid

import pytest
from faststream.kafka import KafkaBroker, TestKafkaBroker

from hone_common.events import ImageScored, ReviewRequested, encode
from hone_common.kafka import BatchFailures, DeadLetter, PermanentError
from hone_common.topics import Topic
from hone_labeling_api.app import create_app
from hone_labeling_api.settings import Settings
from tests.factories import sample_events


class FakeLabeling:
    def __init__(self) -> None:
        self.requests: list[ReviewRequested] = []
        self.scores: list[ImageScored] = []
        self.refuse: set[uuid.UUID] = set()

    async def record_review_requests(self, events: list[ReviewRequested]) -> BatchFailures:
        self.requests += events
        return {e.event_id: PermanentError("bad uri") for e in events if e.event_id in self.refuse}

    async def record_scores(self, events: list[ImageScored]) -> None:
        self.scores += events


def review(seed: str) -> ReviewRequested:
    return ReviewRequested.model_validate(sample_events(seed)[3])


@pytest.fixture
def wired() -> tuple[KafkaBroker, FakeLabeling]:
    app = create_app(Settings())
    fake = FakeLabeling()
    app.state.runtime.extras["labeling"] = fake
    broker = app.state.runtime.broker
    assert broker is not None
    return broker, fake


async def test_review_requests_reach_the_queue_typed(
    wired: tuple[KafkaBroker, FakeLabeling],
) -> None:
    broker, fake = wired
    events = [review("a"), review("b")]

    async with TestKafkaBroker(broker) as br:
        await br.publish_batch(*(encode(e) for e in events), topic=Topic.REVIEW_REQUESTED.value)

    assert fake.requests == events


async def test_undecodable_and_refused_requests_are_dead_lettered_and_the_rest_queued(
    wired: tuple[KafkaBroker, FakeLabeling],
) -> None:
    broker, fake = wired
    letters: list[DeadLetter] = []

    @broker.subscriber(Topic.REVIEW_REQUESTED.dlq)
    async def on_dlq(letter: DeadLetter) -> None:
        letters.append(letter)

    good, refused = review("good"), review("refused")
    fake.refuse.add(refused.event_id)
    async with TestKafkaBroker(broker) as br:
        await br.publish_batch(
            b'{"event_type": "review.requested"}',
            encode(good),
            encode(refused),
            topic=Topic.REVIEW_REQUESTED.value,
        )

    assert fake.requests == [good, refused]
    assert sorted(letter.error_type for letter in letters) == ["PermanentError", "ValidationError"]
    refused_letter = next(x for x in letters if x.error_type == "PermanentError")
    assert base64.b64decode(refused_letter.value) == encode(refused)


async def test_scored_images_are_recorded(wired: tuple[KafkaBroker, FakeLabeling]) -> None:
    broker, fake = wired
    scored = ImageScored.model_validate(sample_events("s")[2])

    async with TestKafkaBroker(broker) as br:
        await br.publish_batch(encode(scored), topic=Topic.IMAGE_SCORED.value)

    assert fake.scores == [scored]
