"""The scorer's handlers driven through FastStream's in-memory broker, with fakes for the
object store, TorchServe and PostgreSQL."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from faststream.kafka import KafkaBroker, TestKafkaBroker
from prometheus_client import REGISTRY

from hone_common.events import ImageReceived, ModelPromoted, Promotion, encode
from hone_common.kafka import DeadLetter
from hone_common.settings import KafkaSettings
from hone_common.topics import Topic
from hone_common.torchserve import TorchServeError
from hone_scorer.adapters.images import ObjectStoreImages
from hone_scorer.adapters.torchserve import ModelUnavailable, TorchServeClassifier
from hone_scorer.handlers import Dependencies, subscribe_handlers
from hone_scorer.model import ModelTracker
from hone_scorer.scoring import Scorer
from hone_scorer.settings import ScorerSettings
from tests.unit.scorer.fakes import (
    CLASSES,
    UNDECODABLE,
    FakePredictions,
    FakeStore,
    FakeTorchServe,
    received,
)

IMAGES_PER_REQUEST = 4


@dataclass
class Harness:
    broker: KafkaBroker
    store: FakeStore
    torchserve: FakeTorchServe
    predictions: FakePredictions
    tracker: ModelTracker
    letters: list[DeadLetter] = field(default_factory=list)

    def stored_images(self, *data: bytes) -> list[ImageReceived]:
        events = [received(d) for d in data]
        for event, d in zip(events, data, strict=True):
            self.store.put(event, d)
        return events

    async def deliver(self, *events: ImageReceived) -> None:
        await self.broker.publish_batch(
            *(encode(e) for e in events), topic=Topic.IMAGE_RECEIVED.value
        )

    def scored_ids(self) -> list[object]:
        return [e.payload.image_id for e in self.predictions.outbox]


@pytest.fixture
async def scorer() -> AsyncIterator[Harness]:
    broker = KafkaBroker(KafkaSettings().bootstrap_servers)
    store, torchserve, predictions, tracker = (
        FakeStore(),
        FakeTorchServe(version="v2"),
        FakePredictions(),
        ModelTracker(),
    )
    settings = ScorerSettings(
        images_per_request=IMAGES_PER_REQUEST,
        torchserve_attempts=3,
        torchserve_backoff_seconds=0.001,
        torchserve_backoff_max_seconds=0.002,
        retry_seconds=0.2,
    )
    classifier = TorchServeClassifier(
        torchserve,
        attempts=settings.torchserve_attempts,
        backoff_seconds=settings.torchserve_backoff_seconds,
        backoff_max_seconds=settings.torchserve_backoff_max_seconds,
    )
    deps = Dependencies(
        scorer=Scorer(
            ObjectStoreImages(store, concurrency=3),
            classifier,
            images_per_request=settings.images_per_request,
            inference_concurrency=2,
        ),
        predictions=predictions,
        model=tracker,
    )
    subscribe_handlers(broker, settings, KafkaSettings(), lambda: deps)
    letters: list[DeadLetter] = []

    @broker.subscriber(Topic.IMAGE_RECEIVED.dlq)
    async def on_dlq(letter: DeadLetter) -> None:
        letters.append(letter)

    async with TestKafkaBroker(broker) as br:
        yield Harness(br, store, torchserve, predictions, tracker, letters)


def _metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_a_batch_of_n_images_gives_n_image_scored_with_the_answering_version(
    scorer: Harness,
) -> None:
    scorer.tracker.promoted("v1")  # what model.promoted said; TorchServe answers with v2
    events = scorer.stored_images(*(f"image-{i}".encode() for i in range(10)))
    latencies = _metric("hone_scorer_end_to_end_seconds_count")

    await scorer.deliver(*events)

    assert scorer.scored_ids() == [e.payload.image_id for e in events]
    assert {e.payload.model_version for e in scorer.predictions.outbox} == {"v2"}
    assert sorted(scorer.torchserve.requests) == [2, 4, 4]
    assert scorer.letters == []
    assert scorer.tracker.answering == "v2"
    assert _metric("hone_scorer_model_info", model_version="v2", role="answering") == 1
    assert _metric("hone_scorer_end_to_end_seconds_count") == latencies + 10


async def test_image_scored_carries_the_prediction_and_echoes_the_receipt(
    scorer: Harness,
) -> None:
    (event,) = scorer.stored_images(b"one image")
    scorer.torchserve.rows[b"one image"] = [0.0, 0.6, 0.3, 0.1, 0, 0, 0, 0, 0, 0]

    await scorer.deliver(event)

    (scored,) = scorer.predictions.outbox
    s, r = scored.payload, event.payload
    assert s.label == "Trouser"
    assert (s.confidence, s.margin) == pytest.approx((0.6, 0.3))
    assert 0 < s.entropy < 1
    assert s.classes == CLASSES
    assert s.probabilities[:4] == pytest.approx([0.0, 0.6, 0.3, 0.1])
    assert (s.image_id, s.uri, s.camera_id, s.captured_at, s.object_id) == (
        r.image_id,
        r.uri,
        r.camera_id,
        r.captured_at,
        r.object_id,
    )
    assert (s.metadata, s.quality) == (r.metadata, r.quality)
    assert scored.correlation_id == event.correlation_id
    assert scored.key == event.key


async def test_a_missing_image_is_dead_lettered_and_the_rest_scored(scorer: Harness) -> None:
    present = scorer.stored_images(b"a", b"b", b"c")
    missing = received(b"never stored")
    before = _metric("hone_scorer_images_total", outcome="ImageMissing")

    await scorer.deliver(present[0], missing, *present[1:])

    assert scorer.scored_ids() == [e.payload.image_id for e in present]
    (letter,) = scorer.letters
    assert letter.error_type == "ImageMissing"
    assert missing.payload.uri in letter.error
    assert ImageReceived.model_validate_json(base64.b64decode(letter.value)) == missing
    assert _metric("hone_scorer_images_total", outcome="ImageMissing") == before + 1


async def test_an_image_the_model_cannot_decode_is_dead_lettered_alone(scorer: Harness) -> None:
    events = scorer.stored_images(b"a", b"b", UNDECODABLE, b"c", b"d", b"e")

    await scorer.deliver(*events)

    assert scorer.scored_ids() == [e.payload.image_id for i, e in enumerate(events) if i != 2]
    (letter,) = scorer.letters
    assert letter.error_type == "ImageRefused"
    assert "not a decodable image" in letter.error
    # The refused chunk of 4 is resent once without the image the handler named.
    assert sorted(scorer.torchserve.requests) == [2, 3, 4]


async def test_a_refusal_that_blames_no_image_is_retried_and_dead_letters_nothing(
    scorer: Harness,
) -> None:
    events = scorer.stored_images(b"a", b"b")
    # What TorchServe answers to a wrong token: a 400 that is no image's fault.
    scorer.torchserve.failures = 10_000
    scorer.torchserve.failure = TorchServeError(
        400, "Token Authorization failed", {"code": 400, "type": "InvalidKeyException"}
    )

    with pytest.raises(ModelUnavailable, match="Token Authorization failed"):
        await scorer.deliver(*events)

    assert scorer.letters == []
    assert scorer.predictions.outbox == []


async def test_bytes_that_do_not_match_the_events_hash_are_dead_lettered(
    scorer: Harness,
) -> None:
    good, swapped = scorer.stored_images(b"good", b"original")
    scorer.store.put(swapped, b"replaced by something else")

    await scorer.deliver(good, swapped)

    assert scorer.scored_ids() == [good.payload.image_id]
    assert [letter.error_type for letter in scorer.letters] == ["ImageCorrupt"]


async def test_images_carried_inline_are_scored_without_reading_the_store(
    scorer: Harness,
) -> None:
    inline = [received(data, inline=data) for data in (b"one", b"two", b"three")]
    (stored,) = scorer.stored_images(b"four")

    await scorer.deliver(*inline, stored)

    assert scorer.scored_ids() == [e.payload.image_id for e in (*inline, stored)]
    assert scorer.store.reads == 1
    assert scorer.letters == []


async def test_inline_bytes_that_do_not_match_the_events_hash_are_dead_lettered(
    scorer: Harness,
) -> None:
    good = received(b"good", inline=b"good")
    swapped = received(b"original", inline=b"replaced by something else")

    await scorer.deliver(good, swapped)

    assert scorer.scored_ids() == [good.payload.image_id]
    assert [letter.error_type for letter in scorer.letters] == ["ImageCorrupt"]
    assert "inline image" in scorer.letters[0].error
    assert scorer.store.reads == 0


async def test_a_prediction_that_is_not_a_distribution_is_dead_lettered(scorer: Harness) -> None:
    good, bad = scorer.stored_images(b"good", b"bad")
    scorer.torchserve.rows[b"bad"] = [float("nan")] * len(CLASSES)

    await scorer.deliver(good, bad)

    assert scorer.scored_ids() == [good.payload.image_id]
    assert [letter.error_type for letter in scorer.letters] == ["InvalidPrediction"]


async def test_a_model_with_unusable_class_names_dead_letters_instead_of_looping(
    scorer: Harness,
) -> None:
    scorer.torchserve.classes = ["", *CLASSES[1:]]
    scorer.torchserve.rows[b"x"] = [0.9] + [0.1 / 9] * 9
    (event,) = scorer.stored_images(b"x")

    await scorer.deliver(event)

    assert scorer.predictions.outbox == []
    assert [letter.error_type for letter in scorer.letters] == ["InvalidPrediction"]


async def test_torchserve_down_raises_so_the_batch_is_redelivered_and_nothing_is_lost(
    scorer: Harness,
) -> None:
    events = scorer.stored_images(b"a", b"b")
    scorer.torchserve.failures = 10_000

    with pytest.raises(ModelUnavailable, match="connection refused"):
        await scorer.deliver(*events)

    assert scorer.predictions.outbox == []
    assert scorer.predictions.claimed == set()
    assert scorer.letters == []

    scorer.torchserve.failures = 0  # TorchServe is back: the redelivered batch is scored
    await scorer.deliver(*events)
    assert scorer.scored_ids() == [e.payload.image_id for e in events]


@pytest.mark.parametrize(
    "failure",
    [
        httpx.ReadTimeout("slow"),
        TorchServeError(503, "Prediction failed"),
        TorchServeError(404, "Model not found"),
        ValueError("answer is not JSON"),
    ],
)
async def test_a_short_torchserve_hiccup_is_retried_with_backoff(
    scorer: Harness, failure: Exception
) -> None:
    events = scorer.stored_images(b"a", b"b")
    scorer.torchserve.failures, scorer.torchserve.failure = 2, failure

    await scorer.deliver(*events)

    assert scorer.scored_ids() == [e.payload.image_id for e in events]
    assert scorer.torchserve.requests == [2, 2, 2]
    assert scorer.letters == []


async def test_the_same_event_delivered_twice_is_scored_once(scorer: Harness) -> None:
    (event,) = scorer.stored_images(b"a")

    await scorer.deliver(event)
    await scorer.deliver(event)
    await scorer.deliver(event, event)

    assert scorer.scored_ids() == [event.payload.image_id]
    assert scorer.torchserve.requests == [1]


async def test_another_event_for_an_already_scored_image_publishes_nothing_new(
    scorer: Harness,
) -> None:
    (event,) = scorer.stored_images(b"a")
    again = event.model_copy(update={"event_id": received(b"a").event_id})

    await scorer.deliver(event)
    await scorer.deliver(again)

    assert scorer.scored_ids() == [event.payload.image_id]


def _promotion(version: str, at: datetime) -> ModelPromoted:
    return ModelPromoted(
        producer="gatekeeper",
        occurred_at=at,
        payload=Promotion(
            model_version=version,
            artifact_uri=f"s3://hone-models/hone/{version}.mar",
            classes=CLASSES,
        ),
    )


async def test_model_promoted_makes_the_version_known_and_tags_the_info_gauge(
    scorer: Harness,
) -> None:
    now = datetime.now(UTC)

    async def promote(version: str, at: datetime) -> None:
        event = _promotion(version, at)
        await scorer.broker.publish(encode(event), Topic.MODEL_PROMOTED.value, key=event.key)

    await promote("v8", now - timedelta(minutes=5))
    assert scorer.tracker.production == "v8"
    await promote("v9", now)
    await promote("v7", now - timedelta(minutes=10))  # late and older: does not win

    assert scorer.tracker.production == "v9"
    assert _metric("hone_scorer_model_info", model_version="v9", role="production") == 1
    for replaced in ("v8", "v7"):
        labels = {"model_version": replaced, "role": "production"}
        assert REGISTRY.get_sample_value("hone_scorer_model_info", labels) is None
