"""Publishing simulated frames to `camera.frames` at a steady rate, as production cameras would.

Sends are pipelined (aiokafka `send` futures, a bounded number in flight) behind a token bucket,
so the rate holds from a few frames per second up to what the producer can push. The producer
is configured like every Hone producer (acks=all, idempotent). Ground truth is written only for
frames the broker acknowledged.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from hone_common.events import encode
from hone_common.settings import KafkaSettings
from hone_common.topics import Topic
from hone_simulator.frames import SimFrame, TruthWriter

MAX_ERRORS_KEPT = 10


class PublishError(RuntimeError):
    """Kafka could not be reached at all."""


@dataclass
class PublishReport:
    sent: int = 0
    failed: int = 0
    bytes: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        """Acknowledged frames per second of wall time."""
        return self.sent / self.seconds if self.seconds > 0 else 0.0


class TokenBucket:
    """Allows `rate` acquisitions per second on average, in bursts of at most `burst`."""

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be > 0")
        self.rate = rate
        # A burst of ~20 ms keeps high rates smooth without sleeping for every frame.
        self.burst = burst if burst is not None else max(1.0, rate / 50)
        self._clock = clock
        self._sleep = sleep
        self._tokens = 1.0
        self._last = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now

    async def acquire(self) -> None:
        # Take the token now, on credit if need be, and sleep off the debt: no retry loop, so
        # rounding in the clock can never spin it.
        self._refill()
        self._tokens -= 1.0
        if self._tokens < 0.0:
            await self._sleep(-self._tokens / self.rate)


def create_producer(settings: KafkaSettings) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers,
        client_id=f"{settings.client_id_prefix}-simulator",
        acks="all",
        enable_idempotence=True,
        max_request_size=settings.max_message_bytes,
        # Frames are ~1-2 KiB: bigger batches and a short linger are what make thousands/s.
        max_batch_size=256 * 1024,
        linger_ms=5,
    )


async def publish_frames(
    frames: Iterable[SimFrame],
    settings: KafkaSettings,
    rate: float | None = None,
    *,
    truth: Path | None = None,
    on_progress: Callable[[int], None] | None = None,
    max_in_flight: int = 2000,
    topic: str = Topic.CAMERA_FRAMES.value,
) -> PublishReport:
    """Publish `frames` at `rate` frames/s (None: as fast as possible); wait for every ack."""
    bucket = TokenBucket(rate) if rate else None
    producer = create_producer(settings)
    try:
        await producer.start()
    except KafkaError as error:
        await producer.stop()
        raise PublishError(
            f"cannot reach Kafka at {settings.bootstrap_servers}: {error}"
        ) from error
    report = PublishReport()
    in_flight: deque[tuple[SimFrame, int, asyncio.Future[object]]] = deque()
    started = time.perf_counter()
    try:
        with TruthWriter(truth) as writer:

            async def settle() -> None:
                frame, size, future = in_flight.popleft()
                try:
                    await future
                except KafkaError as error:
                    _failed(report, frame, error)
                    return
                report.sent += 1
                report.bytes += size
                writer.write([frame.truth])
                if on_progress is not None:
                    on_progress(1)

            try:
                for frame in frames:
                    if bucket is not None:
                        await bucket.acquire()
                    value = encode(frame.event)
                    try:
                        future = await producer.send(
                            topic,
                            value,
                            key=frame.event.key,
                            headers=[
                                ("content-type", b"application/json"),
                                ("event-type", frame.event.event_type.encode()),
                            ],
                        )
                    except KafkaError as error:  # refused before sending, e.g. too large
                        _failed(report, frame, error)
                        continue
                    in_flight.append((frame, len(value), future))
                    while in_flight and (len(in_flight) > max_in_flight or in_flight[0][2].done()):
                        await settle()
            finally:
                # Even when interrupted: what Kafka has acknowledged gets its ground truth.
                while in_flight:
                    await settle()
    finally:
        report.seconds = time.perf_counter() - started
        await producer.stop()
    return report


def _failed(report: PublishReport, frame: SimFrame, error: BaseException) -> None:
    report.failed += 1
    if len(report.errors) < MAX_ERRORS_KEPT:
        report.errors.append(f"{frame.event.event_id}: {error!r}")
