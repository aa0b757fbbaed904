"""Kafka plumbing: the broker factory, typed subscriptions with at-least-once delivery, DLQs.

Delivery contract (DESIGN.md §2): producers use acks=all and idempotence; consumers commit
offsets only after the effect is stored (FastStream's NACK_ON_ERROR policy: ack after the
handler returns, rewind the partition when it raises). A message that can never be processed
(undecodable, invalid, or refused by the handler with `PermanentError`) is published to
`<topic>.dlq` with the error and its original bytes, then acked, so it never blocks the
partition. Transient failures (a database or server that is down) are retried with backoff
and, if they persist, the message is redelivered, never skipped.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from pydantic import BaseModel, Field, ValidationError
from tenacity import AsyncRetrying, retry_if_not_exception_type, stop_after_delay, wait_exponential

from hone_common.events import Event, encode
from hone_common.metrics import (
    CONSUMER_LAG,
    DEAD_LETTERS,
    EVENTS_CONSUMED,
    EVENTS_PUBLISHED,
    HANDLER_SECONDS,
)
from hone_common.settings import KafkaSettings
from hone_common.topics import Topic, dead_letter_topic

log = structlog.get_logger(__name__)

E = TypeVar("E", bound=Event)

MAX_DEAD_LETTER_ORIGINAL = 2 * 1024 * 1024
"""Original bytes kept in a dead letter; longer values are cut (and marked so)."""


class PermanentError(Exception):
    """Raised by a handler for a message that can never be processed: it goes to the DLQ."""


BatchFailures = Mapping[uuid.UUID, BaseException]
"""What a batch handler may return: `event_id -> error` for events it could never process
(each is dead-lettered with its error); every other event of the batch counts as processed."""

BatchHandler = Callable[[list[E]], Awaitable[BatchFailures | None]]


class DeadLetter(BaseModel):
    """What `<topic>.dlq` carries: where the message came from, why it failed, its bytes."""

    topic: str
    partition: int
    offset: int
    key: str | None = Field(None, description="Original key, base64.")
    value: str = Field(description="Original value, base64 (cut if longer than 2 MiB).")
    value_truncated: bool = False
    headers: dict[str, str] = Field(default_factory=dict)
    error_type: str
    error: str
    consumer: str
    failed_at: datetime


async def ensure_topics(settings: KafkaSettings, names: Sequence[str] | None = None) -> list[str]:
    """Create every Hone topic and its DLQ with the configured partitions, if missing.

    Topics auto-created by a first producer would get the broker's default partition count,
    which caps how many replicas of a service can share the work. Existing topics are left
    as they are (Kafka cannot shrink partitions; growing them would reorder keys).
    """
    wanted = names or [name for topic in Topic for name in (topic.value, topic.dlq)]
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.bootstrap_servers,
        client_id=f"{settings.client_id_prefix}-admin",
    )
    await admin.start()
    try:
        missing = sorted(set(wanted) - set(await admin.list_topics()))
        if missing:
            # Another service may create them at the same moment.
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(
                    [
                        NewTopic(
                            name,
                            num_partitions=settings.partitions,
                            replication_factor=settings.replication_factor,
                            topic_configs={"max.message.bytes": str(settings.max_message_bytes)},
                        )
                        for name in missing
                    ]
                )
            log.info("topics_created", topics=missing, partitions=settings.partitions)
        return missing
    finally:
        await admin.close()


class TopicMissing(LookupError):
    """The topic does not exist on the cluster."""


async def read_to_end(
    bootstrap_servers: str, topic: str, timeout_s: float = 60.0
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of `topic` up to its end when called, in (partition, offset) order, read
    without a consumer group. Raises `TopicMissing` (never creates the topic) and
    `TimeoutError` if the end is not reached within `timeout_s`."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        # Metadata through the admin client never auto-creates a topic that does not exist.
        (described,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    if described["error_code"] != 0 or not described["partitions"]:
        raise TopicMissing(f"topic {topic!r} does not exist on {bootstrap_servers}")
    partitions = [TopicPartition(topic, p["partition"]) for p in described["partitions"]]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        group_id=None,
        enable_auto_commit=False,
        # "latest" (the default) races with the seek below and may skip every record.
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    try:
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        starts = await consumer.beginning_offsets(partitions)
        await consumer.seek_to_beginning(*partitions)
        remaining = {tp for tp in partitions if ends[tp] > starts[tp]}
        deadline = asyncio.get_running_loop().time() + timeout_s
        while remaining:
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"timed out reading {topic} ({len(records)} records read)")
            batches = await consumer.getmany(*remaining, timeout_ms=500)
            for tp, batch in batches.items():
                records += [r for r in batch if r.offset < ends[tp]]
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
    finally:
        await consumer.stop()
    return sorted(records, key=lambda r: (r.partition, r.offset))


def create_broker(settings: KafkaSettings, service: str) -> KafkaBroker:
    """A broker whose producer waits for all replicas and never duplicates on retry."""
    return KafkaBroker(
        settings.bootstrap_servers,
        client_id=f"{settings.client_id_prefix}-{service}",
        acks="all",
        enable_idempotence=True,
        max_request_size=settings.max_message_bytes,
        ack_policy=AckPolicy.NACK_ON_ERROR,
        graceful_timeout=30.0,
    )


async def publish(broker: KafkaBroker, event: Event, service: str) -> None:
    """Publish one event, keyed as the contract says, and wait for the broker's ack."""
    await broker.publish(
        encode(event),
        event.topic.value,
        key=event.key,
        headers={"content-type": "application/json", "event-type": event.event_type},
    )
    EVENTS_PUBLISHED.labels(service, event.topic.value).inc()


async def publish_many(broker: KafkaBroker, events: Sequence[Event], service: str) -> None:
    """Publish several events concurrently (pipelined), then wait for every ack."""
    futures = [
        await broker.publish(
            encode(event),
            event.topic.value,
            key=event.key,
            headers={"content-type": "application/json", "event-type": event.event_type},
            no_confirm=True,
        )
        for event in events
    ]
    for event, future in zip(events, futures, strict=True):
        await future
        EVENTS_PUBLISHED.labels(service, event.topic.value).inc()


async def send_to_dead_letter(
    broker: KafkaBroker, record: ConsumerRecord[Any, Any], error: BaseException, consumer: str
) -> None:
    value: bytes = record.value or b""
    letter = DeadLetter(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=base64.b64encode(record.key).decode() if record.key else None,
        value=base64.b64encode(value[:MAX_DEAD_LETTER_ORIGINAL]).decode(),
        value_truncated=len(value) > MAX_DEAD_LETTER_ORIGINAL,
        headers={k: v.decode(errors="replace") for k, v in (record.headers or ())},
        error_type=type(error).__name__,
        error=_describe(error)[:4000],
        consumer=consumer,
        failed_at=datetime.now(UTC),
    )
    await broker.publish(
        letter.model_dump_json().encode(),
        dead_letter_topic(record.topic),
        key=record.key,
        headers={"content-type": "application/json", "error-type": letter.error_type},
    )
    DEAD_LETTERS.labels(consumer, record.topic, letter.error_type).inc()
    EVENTS_CONSUMED.labels(consumer, record.topic, "dead_letter").inc()
    log.warning(
        "dead_letter",
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        error_type=letter.error_type,
        error=letter.error[:500],
    )


def _describe(error: BaseException) -> str:
    if isinstance(error, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in error.errors()
        )
    return str(error) or type(error).__name__


def _records(message: Any) -> tuple[ConsumerRecord[Any, Any], ...]:
    raw = message.raw_message
    # aiokafka hands a batch over as a tuple, FastStream's TestKafkaBroker as a list.
    return tuple(raw) if isinstance(raw, tuple | list) else (raw,)


def _record_lag(message: Any, service: str, record: ConsumerRecord[Any, Any]) -> None:
    consumer = getattr(message, "consumer", None)
    highwater = getattr(consumer, "highwater", None)
    if highwater is None:
        return
    end = highwater(TopicPartition(record.topic, record.partition))
    if end is not None:
        CONSUMER_LAG.labels(service, record.topic, str(record.partition)).set(
            max(0, end - record.offset - 1)
        )


def _retrying(retry_seconds: float) -> AsyncRetrying:
    return AsyncRetrying(
        retry=retry_if_not_exception_type((PermanentError, ValidationError)),
        wait=wait_exponential(multiplier=0.2, max=5.0),
        stop=stop_after_delay(retry_seconds),
        reraise=True,
    )


def subscribe(
    broker: KafkaBroker,
    event_cls: type[E],
    *,
    service: str,
    group_id: str | None = None,
    auto_offset_reset: Literal["earliest", "latest"] = "earliest",
    retry_seconds: float = 30.0,
    max_message_bytes: int = 4 * 1024 * 1024,
) -> Callable[[Callable[[E], Awaitable[None]]], Callable[[E], Awaitable[None]]]:
    """Register `handler(event)` for the event's topic with at-least-once semantics.

    The handler must be idempotent (see `hone_common.idempotency`). It may raise
    `PermanentError` to dead-letter the message; other exceptions are retried for
    `retry_seconds`, then the partition is rewound and the message delivered again.
    """

    def decorator(handler: Callable[[E], Awaitable[None]]) -> Callable[[E], Awaitable[None]]:
        topic = event_cls.topic.value

        @broker.subscriber(  # type: ignore[untyped-decorator]
            topic,
            group_id=group_id or service,
            auto_offset_reset=auto_offset_reset,
            ack_policy=AckPolicy.NACK_ON_ERROR,
            max_partition_fetch_bytes=max_message_bytes,
            title=f"{service}:{topic}",
            description=handler.__doc__,
        )
        async def on_message(message: KafkaMessage) -> None:
            (record,) = _records(message)
            started = time.perf_counter()
            try:
                event = event_cls.model_validate_json(record.value or b"")
                async for attempt in _retrying(retry_seconds):
                    with attempt:
                        await handler(event)
            except (ValidationError, PermanentError, UnicodeDecodeError) as error:
                await send_to_dead_letter(broker, record, error, service)
                return
            except Exception:
                EVENTS_CONSUMED.labels(service, topic, "retried").inc()
                log.exception("handler_failed_will_redeliver", topic=topic, offset=record.offset)
                raise
            finally:
                HANDLER_SECONDS.labels(service, topic).observe(time.perf_counter() - started)
                _record_lag(message, service, record)
            EVENTS_CONSUMED.labels(service, topic, "processed").inc()

        return handler

    return decorator


def subscribe_batch(
    broker: KafkaBroker,
    event_cls: type[E],
    *,
    service: str,
    group_id: str | None = None,
    max_records: int = 64,
    batch_timeout_ms: int = 50,
    auto_offset_reset: Literal["earliest", "latest"] = "earliest",
    retry_seconds: float = 30.0,
    max_message_bytes: int = 4 * 1024 * 1024,
) -> Callable[[BatchHandler[E]], BatchHandler[E]]:
    """Like `subscribe`, for handlers that work on a batch: bad messages are dead-lettered one
    by one and the rest of the batch goes on; a failing batch is retried, then redelivered.

    The handler may return `BatchFailures` (`event_id -> error`) for events it can never
    process, once the rest of the batch is stored: those are dead-lettered one by one, so
    one bad event does not hold the others back. Returning None means all were processed.
    """

    def decorator(handler: BatchHandler[E]) -> BatchHandler[E]:
        topic = event_cls.topic.value

        @broker.subscriber(  # type: ignore[untyped-decorator]
            topic,
            batch=True,
            max_records=max_records,
            batch_timeout_ms=batch_timeout_ms,
            group_id=group_id or service,
            auto_offset_reset=auto_offset_reset,
            ack_policy=AckPolicy.NACK_ON_ERROR,
            max_partition_fetch_bytes=max_message_bytes,
            title=f"{service}:{topic}",
            description=handler.__doc__,
        )
        async def on_batch(message: KafkaMessage) -> None:
            records = _records(message)
            started = time.perf_counter()
            events: list[E] = []
            sources: dict[uuid.UUID, list[ConsumerRecord[Any, Any]]] = {}
            for record in records:
                try:
                    event = event_cls.model_validate_json(record.value or b"")
                except (ValidationError, UnicodeDecodeError) as error:
                    await send_to_dead_letter(broker, record, error, service)
                    continue
                events.append(event)
                sources.setdefault(event.event_id, []).append(record)
            dead = 0
            try:
                failures: BatchFailures | None = None
                if events:
                    async for attempt in _retrying(retry_seconds):
                        with attempt:
                            failures = await handler(events)
                for event_id, reason in (failures or {}).items():
                    failed = sources.get(event_id, [])
                    if not failed:
                        log.warning("batch_failure_for_unknown_event", event_id=str(event_id))
                    for record in failed:
                        await send_to_dead_letter(broker, record, reason, service)
                        dead += 1
            except Exception:
                EVENTS_CONSUMED.labels(service, topic, "retried").inc(len(events))
                log.exception("batch_failed_will_redeliver", topic=topic, size=len(records))
                raise
            finally:
                HANDLER_SECONDS.labels(service, topic).observe(time.perf_counter() - started)
                if records:
                    _record_lag(message, service, records[-1])
            EVENTS_CONSUMED.labels(service, topic, "processed").inc(len(events) - dead)

        return handler

    return decorator
