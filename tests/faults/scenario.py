"""One fault scenario: publish K numbered frames, inject a fault while they flow, wait until the
pipeline has settled, then count what came out (lost, duplicated, delayed) and how long
recovery took.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg

from hone_common.storage import ObjectRef, ObjectStore
from hone_common.topics import Topic
from tests.faults.pipeline import (
    DELAYED_SECONDS,
    Announced,
    Publisher,
    Stored,
    announced,
    dead_letters,
    frames,
    longest_gap,
    percentile,
    stored,
    wait_until,
)
from tests.faults.stack import PrivateStack, ServiceProcess

FRAMES = int(os.environ.get("HONE_FAULTS_FRAMES", "300"))
RATE = float(os.environ.get("HONE_FAULTS_RATE", "10"))
SETTLE_SECONDS = float(os.environ.get("HONE_FAULTS_SETTLE_SECONDS", "240"))
SCHEMAS = ("ingest", "scorer", "selector", "labeling")


@dataclass(frozen=True)
class Outage:
    """When the fault began and when the faulty part answered again (epoch seconds)."""

    began: float
    restored: float


@dataclass
class Pipeline:
    stack: PrivateStack
    services: dict[str, ServiceProcess]
    pool: asyncpg.Pool[Any]
    store: ObjectStore

    @property
    def bootstrap(self) -> str:
        return self.stack.env["HONE_KAFKA__BOOTSTRAP_SERVERS"]


@dataclass
class Outcome:
    """Everything counted after a scenario; `report()` is what goes to faults.json."""

    fault: str
    count: int
    publisher: Publisher
    outage: Outage | None
    rows: Stored
    missing_objects: int
    topics: dict[str, Announced]
    labels_announced: int
    dead: dict[str, int]

    @property
    def ids(self) -> set[uuid.UUID]:
        return {s.frame.image_id for s in self.publisher.sent}

    def duplicate_effects(self) -> dict[str, int]:
        rows = self.rows
        return {
            "images": sum(n - 1 for n in rows.images.values() if n > 1),
            "predictions": sum(n - 1 for n in rows.predictions.values() if n > 1),
            "decisions": sum(n - 1 for n in rows.decisions.values() if n > 1),
            "tasks": sum(n - 1 for n in rows.tasks.values() if n > 1),
            "task_requests": sum(n - 1 for n in rows.task_requests.values() if n > 1),
            **{f"{t} events": a.duplicate_events() for t, a in self.topics.items()},
        }

    def report(self) -> dict[str, Any]:
        acked = {s.frame.image_id: s.acked_at for s in self.publisher.sent}
        decided = self.rows.decided_at
        latency = [decided[i] - t for i, t in acked.items() if i in decided]
        # From the first attempt to send: includes time a frame waited for Kafka to take it.
        tried = {s.frame.image_id: s.first_try for s in self.publisher.sent}
        from_first_try = [decided[i] - t for i, t in tried.items() if i in decided]
        report: dict[str, Any] = {
            "fault": self.fault,
            "frames": self.count,
            "published": len(acked),
            "publish_failed_attempts": self.publisher.failed_attempts,
            "stored": len(self.rows.images),
            "objects_missing": self.missing_objects,
            "scored": len(self.rows.predictions),
            "decided": len(self.rows.decisions),
            "review_requests": len(self.rows.requested),
            "tasks": len(self.rows.tasks),
            "labels": self.rows.answers + self.labels_announced,
            "lost": self.count - len(self.rows.decisions),
            "duplicate_effects": self.duplicate_effects(),
            "duplicate_deliveries": {t: a.duplicate_deliveries() for t, a in self.topics.items()},
            "dead_letters": dict(self.dead),
            "delayed": sum(1 for s in latency if s > DELAYED_SECONDS),
            "delayed_threshold_s": DELAYED_SECONDS,
            "latency_s": {
                "p50": percentile(latency, 50),
                "p95": percentile(latency, 95),
                "max": round(max(latency), 3) if latency else None,
            },
            "latency_from_first_send_s": {
                "p50": percentile(from_first_try, 50),
                "max": round(max(from_first_try), 3) if from_first_try else None,
            },
            "publish_blocked_s": round(
                max((s.acked_at - s.first_try for s in self.publisher.sent), default=0.0), 3
            ),
            "stall_s": longest_gap(
                list(self.rows.decided_at.values()), min(acked.values(), default=0.0)
            ),
        }
        if self.outage is not None:
            report |= self._recovery(acked)
        return report

    def _recovery(self, acked: dict[uuid.UUID, float]) -> dict[str, Any]:
        assert self.outage is not None
        restored, decided = self.outage.restored, self.rows.decided_at
        pending = [i for i, t in acked.items() if t < restored and decided.get(i, 0) > restored]
        return {
            "outage_s": round(restored - self.outage.began, 3),
            "waiting_at_restore": len(pending),
            # From the part being back to the first decision on a frame that waited for it...
            "recovery_s": round(min(decided[i] for i in pending) - restored, 3) if pending else 0,
            # ...and to the last one: the backlog built up during the outage is gone.
            "backlog_cleared_s": (
                round(max(decided[i] for i in pending) - restored, 3) if pending else 0
            ),
        }


async def settled(pipe: Pipeline, ids: list[uuid.UUID]) -> bool:
    """Every frame decided, every requested review queued, no outbox holding anything back."""
    rows = await stored(pipe.pool, ids)
    if len(rows.decisions) < len(ids) or len(rows.tasks) < len(rows.requested):
        return False
    async with pipe.pool.acquire() as conn:
        for schema in SCHEMAS:
            if await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", f"{schema}.outbox"):
                pending = await conn.fetchval(
                    f"SELECT count(*) FROM {schema}.outbox WHERE published_at IS NULL"
                )
                if pending:
                    return False
    return True


async def missing_objects(pipe: Pipeline, ids: list[uuid.UUID]) -> int:
    rows = await pipe.pool.fetch("SELECT uri FROM ingest.images WHERE image_id = ANY($1)", ids)
    found = await asyncio.gather(*(pipe.store.exists(ObjectRef.parse(r["uri"])) for r in rows))
    return len(ids) - sum(found)


async def run_scenario(
    pipe: Pipeline,
    fault: str,
    inject: Callable[[Publisher], Awaitable[Outage]] | None,
    *,
    count: int = FRAMES,
    fault_after: int | None = None,
) -> Outcome:
    """Publish `count` frames; once `fault_after` are acked, run `inject`; then wait until the
    pipeline has settled and count everything."""
    run = uuid.uuid4().hex[:10]
    batch = frames(run, count)
    publisher = Publisher(pipe.bootstrap, rate=RATE)
    publishing = asyncio.create_task(publisher.run(batch))
    outage = None
    if inject is not None:
        threshold = count // 3 if fault_after is None else fault_after
        await wait_until(_acked(publisher, threshold), 120, f"{threshold} frames acked", 0.05)
        outage = await inject(publisher)
    await publishing
    ids = [f.image_id for f in batch]
    await wait_until(lambda: settled(pipe, ids), SETTLE_SECONDS, f"{count} frames settled")
    id_set = set(ids)
    topics = {
        topic.value: await announced(pipe.bootstrap, topic.value, id_set)
        for topic in (Topic.IMAGE_RECEIVED, Topic.IMAGE_SCORED, Topic.REVIEW_REQUESTED)
    }
    labels = await announced(pipe.bootstrap, Topic.LABEL_SUBMITTED.value, id_set)
    return Outcome(
        fault=fault,
        count=count,
        publisher=publisher,
        outage=outage,
        rows=await stored(pipe.pool, ids),
        missing_objects=await missing_objects(pipe, ids),
        topics=topics,
        labels_announced=sum(labels.records.values()),
        dead=dict(await dead_letters(pipe.bootstrap, id_set, f"fault-{run}")),
    )


def _acked(publisher: Publisher, threshold: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return publisher.acked >= threshold

    return check


def assert_exactly_once(outcome: Outcome) -> None:
    """K in, K stored, K scored once, K decided once, reviews queued once, no label invented."""
    ids, rows, k = outcome.ids, outcome.rows, outcome.count
    assert len(ids) == k, f"only {len(ids)} of {k} frames were acked by Kafka"
    assert set(rows.images) == ids, f"{k - len(rows.images)} frames never stored"
    assert outcome.missing_objects == 0, f"{outcome.missing_objects} images missing in MinIO"
    assert set(rows.predictions) == ids, f"{k - len(rows.predictions)} images never scored"
    assert set(rows.decisions) == ids, f"{k - len(rows.decisions)} images never decided"
    duplicates = {what: n for what, n in outcome.duplicate_effects().items() if n}
    assert not duplicates, f"duplicate effects: {duplicates}"
    for topic in (Topic.IMAGE_RECEIVED.value, Topic.IMAGE_SCORED.value):
        assert set(outcome.topics[topic].records) == ids, f"not every image announced on {topic}"
    reviews = outcome.topics[Topic.REVIEW_REQUESTED.value]
    assert set(reviews.records) == rows.requested, "review requests differ from the decisions"
    assert set(rows.tasks) == rows.requested, "review tasks differ from the review requests"
    assert rows.answers == 0, "labels appeared that nobody gave"
    assert outcome.labels_announced == 0, "label.submitted events appeared that nobody gave"
    assert not outcome.dead, f"good frames were dead-lettered: {outcome.dead}"


def now() -> float:
    return time.time()
