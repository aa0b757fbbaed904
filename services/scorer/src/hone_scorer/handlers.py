"""The scorer's Kafka handlers: thin wiring from events to the scorer, the tables and metrics."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import structlog
from faststream.kafka import KafkaBroker

from hone_common.events import ImageReceived, ImageScored, ModelPromoted
from hone_common.kafka import BatchFailures, subscribe, subscribe_batch
from hone_common.settings import KafkaSettings
from hone_scorer.metrics import BATCH_SIZE, END_TO_END_SECONDS, IMAGES, IMAGES_SCORED
from hone_scorer.model import ModelTracker
from hone_scorer.scoring import Scorer
from hone_scorer.settings import ScorerSettings

log = structlog.get_logger(__name__)

SERVICE = "scorer"


class Predictions(Protocol):
    async def processed(self, event_ids: Collection[uuid.UUID]) -> set[uuid.UUID]: ...

    async def save(
        self, scored: Sequence[tuple[ImageReceived, ImageScored]]
    ) -> list[ImageScored]: ...

    async def record_promotion(self, event: ModelPromoted) -> bool: ...

    async def production_version(self) -> str | None: ...


@dataclass(frozen=True)
class Dependencies:
    """What the handlers work with, created once at start-up."""

    scorer: Scorer
    predictions: Predictions
    model: ModelTracker


async def score_received(events: list[ImageReceived], deps: Dependencies) -> BatchFailures:
    """Score the batch's new images, store and announce them; report the unscorable ones."""
    BATCH_SIZE.observe(len(events))
    unique = list({event.event_id: event for event in events}.values())
    done = await deps.predictions.processed([event.event_id for event in unique])
    todo = [event for event in unique if event.event_id not in done]
    IMAGES.labels("duplicate").inc(len(events) - len(todo))
    if not todo:
        return {}
    outcome = await deps.scorer.score(todo)
    stored = await deps.predictions.save(outcome.scored)
    now = datetime.now(UTC)
    for received, scored in outcome.scored:
        END_TO_END_SECONDS.observe((now - received.occurred_at).total_seconds())
        deps.model.answered(scored.payload.model_version)
    for event in stored:
        IMAGES_SCORED.labels(event.payload.model_version).inc()
    IMAGES.labels("scored").inc(len(stored))
    IMAGES.labels("duplicate").inc(len(outcome.scored) - len(stored))
    for error in outcome.failed.values():
        IMAGES.labels(type(error).__name__).inc()
    return outcome.failed


async def record_promotion(event: ModelPromoted, deps: Dependencies) -> None:
    """Keep the production version known (scoring itself follows TorchServe's default)."""
    if await deps.predictions.record_promotion(event):
        log.info("model_promoted", model_version=event.payload.model_version)
    deps.model.promoted(await deps.predictions.production_version())


def subscribe_handlers(
    broker: KafkaBroker,
    settings: ScorerSettings,
    kafka: KafkaSettings,
    dependencies: Callable[[], Dependencies],
) -> None:
    """Declare the scorer's subscriptions; `dependencies` is called once the app has started."""

    @subscribe_batch(
        broker,
        ImageReceived,
        service=SERVICE,
        group_id=settings.consumer_group,
        max_records=settings.max_records,
        batch_timeout_ms=settings.batch_timeout_ms,
        auto_offset_reset=kafka.auto_offset_reset,
        retry_seconds=settings.retry_seconds,
        max_message_bytes=kafka.max_message_bytes,
    )
    async def on_image_received(events: list[ImageReceived]) -> BatchFailures:
        """Scores received images with the production model and publishes image.scored."""
        return await score_received(events, dependencies())

    @subscribe(
        broker,
        ModelPromoted,
        service=SERVICE,
        group_id=settings.consumer_group,
        auto_offset_reset=kafka.auto_offset_reset,
        retry_seconds=settings.retry_seconds,
    )
    async def on_model_promoted(event: ModelPromoted) -> None:
        """Records the production model version."""
        await record_promotion(event, dependencies())
