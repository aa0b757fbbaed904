"""`hone-dlq` against the real Kafka: list, show and replay dead letters of a topic of its own."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import ConsumerRecord
from faststream.kafka import KafkaBroker

from hone_common.dlq_cli import REPLAY_HEADER
from hone_common.kafka import PermanentError, create_broker, send_to_dead_letter
from hone_common.settings import ServiceSettings

HONE_DLQ = str(Path(sys.executable).with_name("hone-dlq"))


async def hone_dlq(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        HONE_DLQ, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def record(topic: str, offset: int, key: bytes, value: bytes) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        topic=topic,
        partition=0,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=key,
        value=value,
        checksum=None,
        serialized_key_size=len(key),
        serialized_value_size=len(value),
        headers=[("event-type", b"image.received")],
    )


@pytest.fixture
async def broker(settings: ServiceSettings) -> AsyncIterator[KafkaBroker]:
    broker = create_broker(settings.kafka, "dlq-it")
    await broker.connect()
    yield broker
    await broker.stop()


@pytest.fixture
async def dead_letters(broker: KafkaBroker, unique: str) -> tuple[str, list[bytes]]:
    """A topic of this test with two dead letters; returns the topic and the original values."""
    topic = f"dlq-it-{unique}"
    values = [b'{"n": 1, "why": "missing image"}', b"\x89PNG not json at all"]
    for offset, value in enumerate(values):
        failing = record(topic, offset, f"key-{offset}".encode(), value)
        await send_to_dead_letter(broker, failing, PermanentError(f"failure {offset}"), "dlq-it")
    return topic, values


async def test_list_shows_every_dead_letter_with_its_error_key_and_size(
    dead_letters: tuple[str, list[bytes]],
) -> None:
    topic, values = dead_letters
    code, out, err = await hone_dlq("list", f"{topic}.dlq", "--json")
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["error"] for r in rows] == ["failure 0", "failure 1"]
    assert [r["key"] for r in rows] == ["key-0", "key-1"]
    assert [r["size"] for r in rows] == [len(v) for v in values]
    assert {r["error_type"] for r in rows} == {"PermanentError"}


async def test_show_prints_the_original_bytes_of_one_letter(
    dead_letters: tuple[str, list[bytes]],
) -> None:
    topic, _ = dead_letters
    _, out, _ = await hone_dlq("list", f"{topic}.dlq", "--json")
    first = json.loads(out.splitlines()[0])["position"]
    code, shown, err = await hone_dlq("show", f"{topic}.dlq", "--offset", first)
    assert code == 0, err
    detail = json.loads(shown)
    assert detail["original"] == {"n": 1, "why": "missing image"}
    assert detail["headers"] == {"event-type": "image.received"}


async def test_a_dry_run_sends_nothing_and_a_replay_sends_the_original_bytes_marked(
    dead_letters: tuple[str, list[bytes]], kafka_tap: Any
) -> None:
    topic, values = dead_letters
    tap = await kafka_tap(topic)
    code, out, err = await hone_dlq("replay", f"{topic}.dlq", "--all", "--dry-run")
    assert code == 0, err
    assert "dry run: 2 replayed" in out
    code, out, err = await hone_dlq("replay", f"{topic}.dlq", "--all")
    assert code == 0, err
    received = await tap.wait_for(lambda records: len(records) >= 2)
    # Only the real replay's two records arrived (the tap was open during the dry run).
    assert sorted(r.value for r in received) == sorted(values)
    assert sorted(r.key for r in received) == [b"key-0", b"key-1"]
    for r in received:
        headers = dict(r.headers)
        assert headers[REPLAY_HEADER].decode().startswith(f"{topic}.dlq:")
        assert headers["event-type"] == b"image.received"


async def test_a_missing_topic_or_position_is_a_clear_error(
    dead_letters: tuple[str, list[bytes]],
) -> None:
    topic, _ = dead_letters
    code, _, err = await hone_dlq("list", f"no-such-{uuid.uuid4().hex}.dlq")
    assert code == 1
    assert "does not exist" in err
    code, _, err = await hone_dlq("replay", f"{topic}.dlq", "--offset", "0:999")
    assert code == 1
    assert "no message at 0:999" in err
