"""No image is lost while TorchServe cannot answer: the batch is retried, then redelivered,
and scored once the model is there."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

from prometheus_client import REGISTRY

from hone_common.settings import ServiceSettings
from hone_common.storage import ObjectStore
from hone_common.topics import Topic
from tests.integration.scorer.conftest import (
    ServedModel,
    png,
    scored_for,
    serve_tiny_model,
    start_scorer,
    unregister,
)

NOT_FOUND = ("hone_scorer_torchserve_errors_total", {"kind": "404"})
REDELIVERED = (
    "hone_events_consumed_total",
    {"service": "scorer", "topic": Topic.IMAGE_RECEIVED.value, "outcome": "retried"},
)


def _sample(metric: tuple[str, dict[str, str]]) -> float:
    return REGISTRY.get_sample_value(*metric) or 0.0


async def _until(predicate: Callable[[], bool], within: float) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.1)


async def test_images_wait_while_no_model_is_served_and_are_scored_once_it_is(
    settings: ServiceSettings, store: ObjectStore, kafka_tap: Callable[..., Any]
) -> None:
    name = f"hone-scorer-it-late-{uuid.uuid4().hex[:8]}"
    tap = await kafka_tap(Topic.IMAGE_SCORED.value)
    errors_before, retried_before = _sample(NOT_FOUND), _sample(REDELIVERED)

    async with start_scorer(
        name, store, retry_seconds=1.0, torchserve_attempts=2, torchserve_backoff_seconds=0.05
    ) as running:
        events = [await running.put_image(png(5000 + i)) for i in range(5)]
        ids = {e.payload.image_id for e in events}
        for event in events:
            await running.publish(event)

        # No model yet: TorchServe answers 404, the batch is retried, given up, redelivered.
        await _until(lambda: _sample(REDELIVERED) > retried_before, 30)
        assert _sample(NOT_FOUND) >= errors_before + 2

        model = ServedModel(name, await serve_tiny_model(settings, name))
        try:
            records = await tap.wait_for(lambda rs: len(scored_for(rs, ids)) >= len(ids), 120)
        finally:
            await unregister(settings, model)

    scored = scored_for(records, ids)
    assert sorted(str(s.payload.image_id) for s in scored) == sorted(str(i) for i in ids)
    assert {s.payload.model_version for s in scored} == {model.version}
