"""Kafka handlers: decode, load state, call the domain, store the effect and its events in one
transaction. Idempotent: each event's id is claimed in the same transaction as its effect."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import structlog

from hone_common.events import (
    ImageScored,
    LabelSubmitted,
    ModelPromoted,
    Prediction,
    Promotion,
    Reason,
    ReviewRequest,
    ReviewRequested,
)
from hone_common.idempotency import claim, claim_many
from hone_common.kafka import BatchFailures
from hone_common.outbox import Outbox
from hone_common.storage import ObjectNotFound, ObjectRef, ObjectStore
from hone_selector import metrics
from hone_selector.budget import refill_factor
from hone_selector.repository import Repository
from hone_selector.selection import RANDOM_PICK, Decision, SelectionState, Selector
from hone_selector.settings import SERVICE, SelectorSettings, Settings
from hone_selector.stats import refresh_yield_gauges
from hone_selector.strategies import hour_bucket
from hone_selector.weakness_model import InvalidWeaknessModel, WeaknessModel

log = structlog.get_logger(__name__)

REVIEW_NAMESPACE = uuid.UUID("0d5c8a36-7f3e-4b43-9a57-61f1e2a4c9b0")
"""Review events get ids derived from the scored event's id: a redecided image (after a crash
before commit) yields the same review id, which the outbox and consumers de-duplicate."""


@dataclass
class Deps:
    pool: asyncpg.Pool[Any]
    outbox: Outbox
    store: ObjectStore
    settings: Settings
    clock: Callable[[], float] = time.time
    repository: Repository = field(init=False)

    def __post_init__(self) -> None:
        self.repository = Repository(self.settings.selector.schema_name)


def review_event(scored: ImageScored, decision: Decision) -> ReviewRequested:
    s = scored.payload
    return ReviewRequested(
        event_id=uuid.uuid5(REVIEW_NAMESPACE, str(scored.event_id)),
        producer=SERVICE,
        correlation_id=scored.correlation_id or s.image_id,
        payload=ReviewRequest(
            image_id=s.image_id,
            uri=s.uri,
            reasons=[
                Reason(strategy=r.strategy, score=r.score, detail=r.detail[:256])
                for r in decision.reasons
            ],
            # Random-control picks go to the front: the accuracy estimate needs them answered,
            # and a queue ordered by priority would otherwise leave them last.
            priority=1.0 if decision.outcome == RANDOM_PICK else decision.priority,
            model_version=s.model_version,
            prediction=Prediction(
                label=s.label,
                confidence=s.confidence,
                classes=s.classes,
                probabilities=s.probabilities,
            ),
            camera_id=s.camera_id,
            object_id=s.object_id,
        ),
    )


async def on_image_scored(events: list[ImageScored], deps: Deps) -> BatchFailures | None:
    """Decide for every newly scored image whether people should label it.

    An image the selector cannot decide on (a bug, or input the domain cannot handle) is left
    out of the transaction and returned as a failure: it goes to `image.scored.dlq` with its
    error and, unclaimed, can be replayed once fixed; the rest of the batch is stored.
    """
    settings, repo = deps.settings.selector, deps.repository
    now = deps.clock()
    failures: dict[uuid.UUID, BaseException] = {}
    async with deps.pool.acquire() as conn, conn.transaction():
        new_ids = await claim_many(conn, repo.schema, events)
        fresh = list({e.event_id: e for e in events if e.event_id in new_ids}.values())
        if not fresh:
            return None
        batch = [e.payload for e in fresh]
        decided = await repo.already_decided(conn, batch)
        state = await repo.selection_state(conn, batch, settings, now)
        selector = Selector(settings, state)
        rows, reviews = [], []
        for event in fresh:
            key = (event.payload.image_id, event.payload.model_version)
            if key in decided:
                metrics.DECISIONS.labels("already_decided").inc()
                continue
            try:
                decision = selector.decide(event.payload, now)
                review = review_event(event, decision) if decision.requested else None
            except Exception as error:
                log.exception("decision_failed", image_id=str(event.payload.image_id))
                failures[event.event_id] = error
                continue
            decided.add(key)
            bucket = hour_bucket(event.payload.captured_at, settings.slice_risk.hour_bucket_hours)
            rows.append((event.event_id, decision, bucket, review.event_id if review else None))
            if review is not None:
                reviews.append(review)
            metrics.DECISIONS.labels(decision.outcome.partition(":")[0]).inc()
        await repo.insert_decisions(conn, rows)
        await repo.save_state(conn, state)
        await deps.outbox.add_many(conn, reviews)
        await repo.unclaim(conn, list(failures))
    if reviews:
        deps.outbox.notify()
    _export_state(state, settings, now)
    return failures or None


def _export_state(state: SelectionState, settings: SelectorSettings, now: float) -> None:
    budget = settings.budget
    factor = refill_factor(state.open_reviews, budget.target_queue, budget.min_refill_factor)
    metrics.OPEN_REVIEWS.set(state.open_reviews)
    metrics.REFILL_FACTOR.set(factor)
    metrics.THRESHOLD.set(state.threshold.value(state.budget.strategic_rate(factor), now))
    for name, bucket in state.budget.buckets.items():
        metrics.BUDGET_TOKENS.labels(name).set(bucket.tokens)


async def on_label_submitted(event: LabelSubmitted, deps: Deps) -> None:
    """Count the label in the labelled set, the slice error rates and its pick's yield."""
    async with deps.pool.acquire() as conn, conn.transaction():
        if not await claim(conn, deps.repository.schema, event):
            return
        wrong = await deps.repository.record_label(conn, event.payload)
    metrics.LABELS.labels({True: "wrong", False: "right", None: "unknown"}[wrong]).inc()
    await refresh_yield_gauges(deps.pool, deps.repository.schema)


async def fetch_weakness_model(
    store: ObjectStore, promotion: Promotion, models_bucket: str, max_bytes: int
) -> tuple[dict[str, Any] | None, str | None]:
    """The validated artifact announced with a promotion, or why it cannot be used.

    Only JSON files in the model bucket are read. A missing or invalid artifact is a fact to
    record (the strategy abstains), not a reason to stop; an unreachable store is retried.
    """
    uri = promotion.weakness_model_uri
    if uri is None:
        return None, None
    try:
        ref = ObjectRef.parse(uri)
    except ValueError as error:
        return None, str(error)
    if ref.bucket != models_bucket or not ref.key.endswith(".json"):
        return None, f"weakness models are JSON files in the {models_bucket} bucket, not {uri}"
    try:
        raw = await store.get(ref)
    except ObjectNotFound:
        return None, f"{uri} does not exist"
    if len(raw) > max_bytes:
        return None, f"{uri} is {len(raw)} bytes, more than the {max_bytes} allowed"
    try:
        model = WeaknessModel.from_json(raw, expected_version=promotion.model_version)
    except InvalidWeaknessModel as error:
        return None, f"invalid weakness model {uri}: {error}"[:1000]
    return model.artifact.model_dump(mode="json"), None


async def on_model_promoted(event: ModelPromoted, deps: Deps) -> None:
    """Record the new production version and load the weakness model promoted with it."""
    if event.payload.model_name != deps.settings.torchserve.model_name:
        # Another model served from the same TorchServe (a test, a second product): not ours.
        log.info("promotion_of_another_model_ignored", model=event.payload.model_name)
        return
    artifact, error = await fetch_weakness_model(
        deps.store,
        event.payload,
        deps.settings.s3.models_bucket,
        deps.settings.selector.max_weakness_model_bytes,
    )
    async with deps.pool.acquire() as conn, conn.transaction():
        if not await claim(conn, deps.repository.schema, event):
            return
        await deps.repository.record_promotion(conn, event, artifact, error)
    outcome = "loaded" if artifact else ("refused" if error else "absent")
    metrics.PROMOTIONS.labels(outcome).inc()
    log_method = log.warning if error else log.info
    log_method(
        "model_promoted",
        model_version=event.payload.model_version,
        weakness_model=outcome,
        error=error,
    )
