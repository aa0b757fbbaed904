"""`hone-sim frames` against the real Kafka: the frames land on the topic asked for."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from typer.testing import CliRunner

from hone_common.events import FrameCaptured, decode
from hone_simulator.cli import app
from hone_simulator.frames import read_truth
from hone_simulator.settings import SimulatorSettings


@pytest.fixture
async def bench_topic() -> AsyncIterator[str]:
    """A topic of this test's own, deleted afterwards."""
    topic = f"sim-it-{uuid.uuid4().hex[:12]}"
    yield topic
    admin = AIOKafkaAdminClient(bootstrap_servers=SimulatorSettings().kafka.bootstrap_servers)
    await admin.start()
    try:
        await admin.delete_topics([topic])
    finally:
        await admin.close()


async def _read_all(topic: str) -> list[FrameCaptured]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=SimulatorSettings().kafka.bootstrap_servers,
        group_id=f"test-simulator-cli-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        events: list[FrameCaptured] = []
        for _ in range(40):
            for records in (await consumer.getmany(timeout_ms=500)).values():
                events += [decode(FrameCaptured, r.value or b"") for r in records]
            if len(events) >= 7:
                break
        return events
    finally:
        await consumer.stop()


def test_frames_go_to_the_topic_given(bench_topic: str, tmp_path: Path) -> None:
    # A plain test: the command runs its own event loop.
    truth = tmp_path / "truth.jsonl"
    seed = str(uuid.uuid4().int % 2**31)
    result = CliRunner().invoke(
        app,
        ["frames", "--count", "7", "--rate", "0", "--seed", seed, "--topic", bench_topic,
         "--truth", str(truth)],
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    assert "sent 7 frames" in result.output
    events = asyncio.run(_read_all(bench_topic))
    assert len(events) == 7
    assert {e.event_id for e in events} == {t.event_id for t in read_truth(truth).values()}
