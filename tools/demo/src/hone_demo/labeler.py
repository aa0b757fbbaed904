"""Simulated labelers: they claim tasks through the real labeling API and answer from the
simulator's ground truth, with a configurable error rate and honest `ambiguous` answers on
genuinely confusable images."""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import structlog

from hone_demo.config import CONFUSABLE
from hone_simulator.frames import FrameTruth

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Answer:
    verdict: str
    label: str | None
    why: str
    """`truth`, `error`, `confusable` or `unknown` (an image of another run)."""


@dataclass(frozen=True)
class Answered:
    image_id: uuid.UUID
    task_id: uuid.UUID
    labeler: str
    verdict: str
    label: str | None
    why: str
    true_label: str | None
    predicted: str | None
    model_version: str | None
    strategies: tuple[str, ...]
    camera_id: str | None
    answered_at: datetime


@dataclass
class LabelLog:
    """Every answer the simulated labelers gave, in order (shared by all of them)."""

    answers: list[Answered] = field(default_factory=list)
    errors: int = 0

    @property
    def labels(self) -> int:
        return sum(1 for a in self.answers if a.verdict == "label")

    @property
    def ambiguous(self) -> int:
        return sum(1 for a in self.answers if a.verdict == "ambiguous" and a.why != "unknown")

    @property
    def foreign(self) -> int:
        """Tasks for images of other runs or tests (answered `ambiguous`, not counted)."""
        return sum(1 for a in self.answers if a.why == "unknown")


def top_two(task: Mapping[str, Any]) -> list[str]:
    prediction = task.get("prediction") or {}
    return [str(c["label"]) for c in (prediction.get("top_k") or [])[:2]]


def decide(
    truth: FrameTruth | None,
    top2: list[str],
    classes: list[str],
    rng: random.Random,
    *,
    error_rate: float,
    ambiguous_share: float,
) -> Answer:
    """What a careful but human labeler answers for one image."""
    if truth is None:
        # Not one of this run's frames (the topics are shared): never guess a label.
        return Answer("ambiguous", None, "unknown")
    if (
        truth.label_name in CONFUSABLE
        and len(top2) == 2
        and set(top2) <= CONFUSABLE
        and rng.random() < ambiguous_share
    ):
        return Answer("ambiguous", None, "confusable")
    if rng.random() < error_rate:
        others = [c for c in classes if c != truth.label_name]
        return Answer("label", rng.choice(others), "error")
    return Answer("label", truth.label_name, "truth")


async def label_until(
    stop: asyncio.Event,
    client: httpx.AsyncClient,
    key: str,
    name: str,
    truth: Mapping[uuid.UUID, FrameTruth],
    classes: list[str],
    record: LabelLog,
    *,
    seed: int,
    error_rate: float,
    ambiguous_share: float,
    answer_seconds: float,
) -> None:
    """Claim, answer, repeat until `stop` is set; API errors are counted, never fatal."""
    rng = random.Random(f"{seed}-{name}")
    headers = {"Authorization": f"Bearer {key}"}
    while not stop.is_set():
        try:
            response = await client.post("/v1/tasks/claim", json={"count": 4}, headers=headers)
            response.raise_for_status()
            tasks = response.json()["tasks"]
        except (httpx.HTTPError, ValueError, KeyError) as error:
            record.errors += 1
            log.warning("claim_failed", labeler=name, error=str(error)[:200])
            tasks = []
        if not tasks:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)
            continue
        for task in tasks:
            if stop.is_set():
                return
            await _answer(
                client,
                headers,
                name,
                task,
                truth,
                classes,
                record,
                rng,
                error_rate,
                ambiguous_share,
                answer_seconds,
            )


async def _answer(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    name: str,
    task: Mapping[str, Any],
    truth: Mapping[uuid.UUID, FrameTruth],
    classes: list[str],
    record: LabelLog,
    rng: random.Random,
    error_rate: float,
    ambiguous_share: float,
    answer_seconds: float,
) -> None:
    image_id = uuid.UUID(task["image_id"])
    known = truth.get(image_id)
    top2 = top_two(task)
    answer = decide(
        known, top2, classes, rng, error_rate=error_rate, ambiguous_share=ambiguous_share
    )
    if known is not None:
        # Foreign tasks (other runs share the topics) are closed at once, without "looking".
        await asyncio.sleep(answer_seconds)
    body: dict[str, Any] = {"verdict": answer.verdict, "elapsed_ms": int(answer_seconds * 1000)}
    if answer.label is not None:
        body["label"] = answer.label
    try:
        response = await client.post(
            f"/v1/tasks/{task['task_id']}/answer",
            json=body,
            headers={**headers, "Idempotency-Key": f"{name}-{task['task_id']}"},
        )
        response.raise_for_status()
    except httpx.HTTPError as error:
        record.errors += 1
        log.warning("answer_failed", labeler=name, error=str(error)[:200])
        return
    prediction = task.get("prediction") or {}
    record.answers.append(
        Answered(
            image_id=image_id,
            task_id=uuid.UUID(task["task_id"]),
            labeler=name,
            verdict=answer.verdict,
            label=answer.label,
            why=answer.why,
            true_label=known.label_name if known else None,
            predicted=prediction.get("label"),
            model_version=task.get("model_version"),
            strategies=tuple(r["strategy"] for r in task.get("reasons") or ()),
            camera_id=task.get("camera_id"),
            answered_at=datetime.now(UTC),
        )
    )
