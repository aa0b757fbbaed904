"""What a fault test sends and counts: numbered camera frames in, every effect of them out.

Frames are small random PNGs, one distinct content per (run, number), so each is one image.
The publisher keeps going through a broker outage (a frame is resent until Kafka acks it; a
resend is the same event, which ingest de-duplicates). Effects are counted where they are
stored (each service's tables) and where they are announced (each topic, read from the start),
so a lost frame, a second effect and a redelivery are told apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import json
import statistics
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
from aiokafka import AIOKafkaProducer
from PIL import Image

from hone_common.events import Frame, FrameCaptured, encode, image_id_for
from hone_common.kafka import TopicMissing, read_to_end
from hone_common.storage import sha256_hex
from hone_common.topics import Topic

CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
           "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]  # fmt: skip
DELAYED_SECONDS = 10.0
"""A frame whose decision came later than this after Kafka acked it counts as delayed
(undisturbed, the whole path takes about a second here)."""


def write_seed(path: Path) -> Path:
    """A tiny labelled seed for `hone-bootstrap`: class k is a bright band at row 2k, with the
    labels shuffled, so the production model it makes is poor and a candidate trained on the
    true labels (tests/faults/candidate.py) is clearly better. No data set to fetch."""
    rng = np.random.default_rng(0)
    bands = np.repeat(np.arange(len(CLASSES)), 6)
    images = rng.integers(0, 60, size=(len(bands), 28, 28), dtype=np.uint8)
    for i, band in enumerate(bands):
        images[i, 2 * band : 2 * band + 3, :] = 255
    labels = rng.permutation(bands)
    np.savez(path, images=images, labels=labels, classes=np.array(CLASSES))
    return path


def png(run: str, number: int) -> bytes:
    seed = int.from_bytes(uuid.uuid5(uuid.NAMESPACE_URL, f"{run}/{number}").bytes[:8], "big")
    pixels = np.random.default_rng(seed).integers(0, 256, size=(28, 28), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


@dataclass(frozen=True)
class NumberedFrame:
    number: int
    event: FrameCaptured
    image_id: uuid.UUID


def frames(run: str, count: int) -> list[NumberedFrame]:
    camera = f"fault-{run}"
    out = []
    for number in range(count):
        data = png(run, number)
        event = FrameCaptured(
            producer=camera,
            payload=Frame(
                camera_id=camera,
                captured_at=datetime.now(UTC),
                image=data,
                metadata={"run": run, "n": number},
            ),
        )
        out.append(NumberedFrame(number, event, image_id_for(sha256_hex(data))))
    return out


@dataclass
class Sent:
    frame: NumberedFrame
    first_try: float
    acked_at: float = 0.0
    attempts: int = 0


class Publisher:
    """Publishes frames at a steady rate, each until Kafka acks it (through broker restarts)."""

    def __init__(self, bootstrap: str, *, rate: float, within: float = 300.0) -> None:
        self.bootstrap = bootstrap
        self.rate = rate
        self.within = within
        self.sent: list[Sent] = []
        self.failed_attempts = 0

    @property
    def acked(self) -> int:
        return len(self.sent)

    def _producer(self) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            acks="all",
            enable_idempotence=True,
            request_timeout_ms=10_000,
            max_request_size=4 * 1024 * 1024,
        )

    async def run(self, batch: list[NumberedFrame]) -> list[Sent]:
        deadline = time.monotonic() + self.within
        producer: AIOKafkaProducer | None = None
        try:
            for frame in batch:
                producer = await self._send(producer, frame, deadline)
                # Paced after each ack: time lost to an outage is not made up in a burst.
                await asyncio.sleep(1 / self.rate)
        finally:
            if producer is not None:
                await producer.stop()
        return self.sent

    async def _send(
        self, producer: AIOKafkaProducer | None, frame: NumberedFrame, deadline: float
    ) -> AIOKafkaProducer:
        sent = Sent(frame, time.time())
        while True:
            sent.attempts += 1
            try:
                if producer is None:
                    producer = self._producer()
                    await asyncio.wait_for(producer.start(), 15)
                await asyncio.wait_for(
                    producer.send_and_wait(
                        Topic.CAMERA_FRAMES.value, encode(frame.event), key=frame.event.key
                    ),
                    15,
                )
                sent.acked_at = time.time()
                self.sent.append(sent)
                return producer
            except Exception:
                self.failed_attempts += 1
                if time.monotonic() > deadline:
                    raise
                # A producer that lost its broker, or never reached it, may stay wedged (a
                # send on a producer whose start failed waits for ever): start a new one.
                if producer is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(producer.stop(), 5)
                producer = None
                await asyncio.sleep(0.5)


async def wait_until(
    condition: Callable[[], Awaitable[bool]], within: float, what: str, every: float = 0.5
) -> float:
    """Poll until `condition()` holds; returns the seconds it took, fails after `within`."""
    started = time.monotonic()
    while True:
        try:
            if await condition():
                return time.monotonic() - started
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            pass  # the server under test may be down right now: ask again
        if time.monotonic() - started > within:
            raise AssertionError(f"timed out after {within:.0f}s waiting for {what}")
        await asyncio.sleep(every)


# --- counting ------------------------------------------------------------------------------


@dataclass
class Stored:
    """Rows per image in each service's tables, and when the last stage stored them."""

    images: Counter[uuid.UUID] = field(default_factory=Counter)
    predictions: Counter[uuid.UUID] = field(default_factory=Counter)
    decisions: Counter[uuid.UUID] = field(default_factory=Counter)
    requested: set[uuid.UUID] = field(default_factory=set)
    tasks: Counter[uuid.UUID] = field(default_factory=Counter)
    task_requests: Counter[uuid.UUID] = field(default_factory=Counter)
    answers: int = 0
    scored_at: dict[uuid.UUID, float] = field(default_factory=dict)
    decided_at: dict[uuid.UUID, float] = field(default_factory=dict)


async def _exists(conn: asyncpg.Connection[Any], table: str) -> bool:
    return bool(await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", table))


async def stored(pool: asyncpg.Pool[Any], ids: list[uuid.UUID]) -> Stored:
    out = Stored()
    async with pool.acquire() as conn:
        if await _exists(conn, "ingest.images"):
            for row in await conn.fetch(
                "SELECT image_id FROM ingest.images WHERE image_id = ANY($1)", ids
            ):
                out.images[row["image_id"]] += 1
        if await _exists(conn, "scorer.predictions"):
            for row in await conn.fetch(
                "SELECT image_id, extract(epoch FROM scored_at) AS t "
                "FROM scorer.predictions WHERE image_id = ANY($1)",
                ids,
            ):
                out.predictions[row["image_id"]] += 1
                out.scored_at[row["image_id"]] = float(row["t"])
        if await _exists(conn, "selector.decisions"):
            for row in await conn.fetch(
                "SELECT image_id, requested, extract(epoch FROM decided_at) AS t "
                "FROM selector.decisions WHERE image_id = ANY($1)",
                ids,
            ):
                out.decisions[row["image_id"]] += 1
                out.decided_at[row["image_id"]] = float(row["t"])
                if row["requested"]:
                    out.requested.add(row["image_id"])
        if await _exists(conn, "labeling.tasks"):
            for row in await conn.fetch(
                "SELECT image_id, requests FROM labeling.tasks WHERE image_id = ANY($1)", ids
            ):
                out.tasks[row["image_id"]] += 1
                out.task_requests[row["image_id"]] += row["requests"]
            out.answers = await conn.fetchval(
                "SELECT count(*) FROM labeling.answers a JOIN labeling.tasks t USING (task_id) "
                "WHERE t.image_id = ANY($1)",
                ids,
            )
    return out


async def read_topic(bootstrap: str, topic: str) -> list[tuple[bytes | None, bytes]]:
    """(key, value) of every record of `topic` up to its current end; [] if it does not exist."""
    try:
        records = await read_to_end(bootstrap, topic)
    except TopicMissing:
        return []
    return [(r.key, r.value or b"") for r in records]


@dataclass
class Announced:
    """Per image: records seen on a topic and distinct event ids among them."""

    records: Counter[uuid.UUID] = field(default_factory=Counter)
    events: dict[uuid.UUID, set[str]] = field(default_factory=dict)

    def duplicate_deliveries(self) -> int:
        return sum(n - len(self.events.get(i, ())) for i, n in self.records.items())

    def duplicate_events(self) -> int:
        """Images announced by more than one distinct event: a second effect, not a redelivery."""
        return sum(len(ids) - 1 for ids in self.events.values() if len(ids) > 1)


async def announced(bootstrap: str, topic: str, ids: set[uuid.UUID]) -> Announced:
    out = Announced()
    for _, value in await read_topic(bootstrap, topic):
        try:
            event = json.loads(value)
            image_id = uuid.UUID(event["payload"]["image_id"])
        except (ValueError, KeyError, TypeError):
            continue  # other tests' or malformed records
        if image_id in ids:
            out.records[image_id] += 1
            out.events.setdefault(image_id, set()).add(event["event_id"])
    return out


async def announced_models(bootstrap: str, topic: str, version: str) -> set[str]:
    """Distinct event ids on a model topic about one model version."""
    found = set()
    for _, value in await read_topic(bootstrap, topic):
        try:
            event = json.loads(value)
        except ValueError:
            continue
        if isinstance(event, dict) and event.get("payload", {}).get("model_version") == version:
            found.add(str(event["event_id"]))
    return found


async def dead_letters(bootstrap: str, ids: set[uuid.UUID], camera: str) -> Counter[str]:
    """Dead letters about these images (or this camera's frames), per DLQ."""
    keys = {str(i).encode() for i in ids} | {camera.encode()}
    found: Counter[str] = Counter()
    for topic in (
        Topic.CAMERA_FRAMES,
        Topic.IMAGE_RECEIVED,
        Topic.IMAGE_SCORED,
        Topic.REVIEW_REQUESTED,
    ):
        for key, _ in await read_topic(bootstrap, topic.dlq):
            if key in keys:
                found[topic.dlq] += 1
    return found


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return round(values[0], 3)
    return round(statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1], 3)


def longest_gap(times: list[float], start: float) -> float:
    """The longest time without a new effect, from `start` to the last one."""
    points = sorted([start, *times])
    return round(max((b - a for a, b in itertools.pairwise(points)), default=0.0), 3)
