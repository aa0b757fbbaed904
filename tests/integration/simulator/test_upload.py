"""Simulated frames uploaded to the real ingest service (in-process, on the real stack)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from pydantic import ValidationError

from hone_common.auth import ApiKeys, Role
from hone_common.events import ImageReceived, decode
from hone_common.topics import Topic
from hone_ingest.app import create_app
from hone_ingest.settings import Settings
from hone_simulator.data import load_fashion_mnist
from hone_simulator.frames import SimFrame, generate_frames, read_truth
from hone_simulator.splits import split
from hone_simulator.upload import UploadError, upload_frames


@pytest.fixture(scope="module")
async def ingest() -> AsyncIterator[FastAPI]:
    base = Settings()
    # A group of its own that starts at the end: this test only uses the HTTP way in.
    group = f"ingest-sim-it-{uuid.uuid4().hex[:8]}"
    own = base.ingest.model_copy(update={"consumer_group": group, "auto_offset_reset": "latest"})
    app = create_app(base.model_copy(update={"ingest": own}))
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture(scope="module")
def frames() -> list[SimFrame]:
    dataset = load_fashion_mnist()
    seed = uuid.uuid4().int % 2**31  # new bytes every run, so the first upload is new
    start = datetime(2025, 3, 1, tzinfo=UTC)
    return list(generate_frames(dataset, split(dataset, 0), 12, seed, start=start))


async def test_uploaded_frames_are_stored_and_announced_under_the_truth_image_ids(
    ingest: FastAPI,
    pool: asyncpg.Pool[Any],
    kafka_tap: Any,
    frames: list[SimFrame],
    tmp_path: Path,
) -> None:
    _, key = await ApiKeys(pool).issue(f"sim-it-{uuid.uuid4().hex[:8]}", Role.CAMERA)
    received = await kafka_tap(Topic.IMAGE_RECEIVED.value)
    truth = tmp_path / "truth.jsonl"
    transport = httpx.ASGITransport(app=ingest)

    first = await upload_frames(frames, "http://ingest", key, transport=transport, truth=truth)
    again = await upload_frames(frames, "http://ingest", key, transport=transport)

    assert (first.created, first.duplicates, first.failed) == (12, 0, 0), first.errors
    assert not first.refused
    assert (again.created, again.duplicates) == (0, 12)
    expected = {f.truth.image_id: f for f in frames}
    assert read_truth(truth).keys() == expected.keys()

    def ours(records: list[Any]) -> dict[uuid.UUID, ImageReceived]:
        found = {}
        for record in records:
            try:
                event = decode(ImageReceived, record.value)
            except ValidationError:  # someone else's test data on the shared topic
                continue
            if event.payload.image_id in expected:
                found[event.payload.image_id] = event
        return found

    records = await received.wait_for(lambda rs: len(ours(rs)) == len(expected))
    for image_id, event in ours(records).items():
        payload, sent = event.payload, expected[image_id].event.payload
        assert payload.camera_id == sent.camera_id
        assert payload.object_id == sent.object_id
        assert payload.captured_at == sent.captured_at
        assert payload.metadata["site"] == sent.metadata["site"]
        assert "label" not in json.dumps(payload.metadata)


async def test_a_key_ingest_does_not_know_stops_the_upload(
    ingest: FastAPI, frames: list[SimFrame]
) -> None:
    transport = httpx.ASGITransport(app=ingest)
    with pytest.raises(UploadError, match="401"):
        await upload_frames(frames, "http://ingest", "not-a-key", transport=transport)
