"""The image path end to end on the real stack: simulated cameras → camera.frames → ingest →
image.received → scorer (TorchServe) → image.scored → selector → review.requested.

Ingest, scorer and selector run in-process through their lifespans, each in a consumer group
of its own that starts at the end of the shared topics; the scorer uses a Fashion-MNIST model
bootstrapped under a model name of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import numpy as np
import pytest
from pydantic import ValidationError

from hone_common.events import FrameCaptured, ImageScored, ReviewRequested, image_id_for
from hone_common.settings import ServiceSettings
from hone_common.storage import ObjectStore, sha256_hex
from hone_common.topics import Topic
from hone_common.torchserve import TorchServeClient
from hone_ingest.app import create_app as create_ingest
from hone_ingest.settings import Settings as IngestSettings
from hone_scorer.app import create_app as create_scorer
from hone_scorer.settings import Settings as ScorerSettings
from hone_selector.app import create_app as create_selector
from hone_selector.settings import Settings as SelectorSettings
from hone_simulator.data import load_fashion_mnist
from hone_simulator.frames import SimFrame, generate_frames
from hone_simulator.publish import publish_frames
from hone_simulator.splits import split
from hone_trainer.bootstrap import SeedSet, bootstrap
from hone_trainer.model.serving import ServingOptions
from hone_trainer.model.training import TrainConfig
from tests.kafka_helpers import start_group_at_end

FRAMES = 150


@pytest.fixture(scope="module")
async def fashion_model(settings: ServiceSettings) -> AsyncIterator[tuple[str, str]]:
    """A first model bootstrapped from 20 labelled images per class, served as its own name."""
    dataset = load_fashion_mnist()
    seed_ids = split(dataset, seed=0).seed_set(per_class=20)
    name = f"hone-e2e-{uuid.uuid4().hex[:8]}"
    client = TorchServeClient(settings.torchserve)
    try:
        result = await bootstrap(
            SeedSet(dataset.images[seed_ids], dataset.labels[seed_ids], list(dataset.classes)),
            TrainConfig(epochs=3, threads=2, progress=False),
            client=client,
            store=ObjectStore(settings.s3),
            bucket=settings.s3.models_bucket,
            model_name=name,
            serving=ServingOptions(batch_size=1, max_batch_delay_ms=1, workers=1),
        )
        yield name, result.model_version
        await client.unregister(result.model_version, model=name)
    finally:
        await client.aclose()


@contextlib.asynccontextmanager
async def pipeline(model_name: str, run: str) -> AsyncIterator[None]:
    """Ingest, scorer and selector in-process, in consumer groups and a selector schema of
    this run's own."""
    ingest = IngestSettings()
    ingest = ingest.model_copy(
        update={"ingest": ingest.ingest.model_copy(update={"consumer_group": f"ingest-{run}"})}
    )
    scorer = ScorerSettings()
    scorer = scorer.model_copy(
        update={
            "torchserve": scorer.torchserve.model_copy(update={"model_name": model_name}),
            "scorer": scorer.scorer.model_copy(update={"consumer_group": f"scorer-{run}"}),
        }
    )
    selector = SelectorSettings()
    knobs = selector.selector
    selector = selector.model_copy(
        update={
            "selector": knobs.model_copy(
                update={
                    "consumer_group": f"selector-{run}",
                    "schema_name": f"selector_{run}",
                    "random": knobs.random.model_copy(update={"share": 0.1}),
                    "threshold": knobs.threshold.model_copy(update={"warmup_images": 10}),
                    "budget": knobs.budget.model_copy(update={"reviews_per_hour": 3600.0}),
                }
            )
        }
    )
    bootstrap_servers = ingest.kafka.bootstrap_servers
    await start_group_at_end(bootstrap_servers, f"ingest-{run}", [Topic.CAMERA_FRAMES.value])
    await start_group_at_end(
        bootstrap_servers, f"scorer-{run}", [Topic.IMAGE_RECEIVED.value, Topic.MODEL_PROMOTED.value]
    )
    await start_group_at_end(
        bootstrap_servers,
        f"selector-{run}",
        [Topic.IMAGE_SCORED.value, Topic.LABEL_SUBMITTED.value, Topic.MODEL_PROMOTED.value],
    )
    apps = [create_ingest(ingest), create_scorer(scorer), create_selector(selector)]
    async with contextlib.AsyncExitStack() as stack:
        for app in apps:
            await stack.enter_async_context(app.router.lifespan_context(app))
        yield


def _ours(records: list[Any], cls: type[Any], ids: set[uuid.UUID]) -> list[Any]:
    events = []
    for record in records:
        try:
            event = cls.model_validate_json(record.value)
        except ValidationError:
            continue
        if event.payload.image_id in ids:
            events.append(event)
    return events


async def test_frames_become_scored_images_and_prioritised_review_requests(
    settings: ServiceSettings,
    pool: asyncpg.Pool[Any],
    kafka_tap: Any,
    fashion_model: tuple[str, str],
) -> None:
    model_name, model_version = fashion_model
    run = uuid.uuid4().hex[:8]
    dataset = load_fashion_mnist()
    frames: list[SimFrame] = list(
        generate_frames(dataset, split(dataset, seed=0), FRAMES, seed=int(run, 16) % 10_000)
    )
    # The same bytes again, as a new event: stored once, scored once.
    repeat = frames[0].event.model_copy(update={"event_id": uuid.uuid4()})
    frames.append(SimFrame(FrameCaptured.model_validate(repeat.model_dump()), frames[0].truth))
    ids = {image_id_for(sha256_hex(frame.png)) for frame in frames}
    tap = await kafka_tap(Topic.IMAGE_SCORED.value, Topic.REVIEW_REQUESTED.value)

    async with pipeline(model_name, run):
        report = await publish_frames(frames, settings.kafka)
        assert report.sent == len(frames)
        records = await tap.wait_for(
            lambda rs: len({e.payload.image_id for e in _ours(rs, ImageScored, ids)}) >= len(ids),
            within=240,
        )
        # Give the selector a moment to finish deciding on the last batch.
        await asyncio.sleep(0)
        records = await tap.wait_for(
            lambda rs: len(_ours(rs, ReviewRequested, ids)) >= 1, within=60
        )

    scored = _ours(records, ImageScored, ids)
    assert {e.payload.image_id for e in scored} == ids
    assert len(scored) == len(ids), "every image is scored exactly once"
    assert {e.payload.model_version for e in scored} == {model_version}
    for event in scored:
        assert np.isclose(sum(event.payload.probabilities), 1.0, atol=1e-3)
        assert (
            event.payload.label
            == event.payload.classes[int(np.argmax(event.payload.probabilities))]
        )

    stored = await pool.fetchval(
        "SELECT count(*) FROM ingest.images WHERE image_id = ANY($1::uuid[])", list(ids)
    )
    assert stored == len(ids), "the repeated frame is stored once"

    requested = _ours(records, ReviewRequested, ids)
    assert requested, "some images are sent to people"
    assert len({e.payload.image_id for e in requested}) == len(requested)
    objects = [e.payload.object_id for e in requested if e.payload.object_id]
    assert len(objects) == len(set(objects)), "one object is requested once"
    for event in requested:
        assert event.payload.model_version == model_version
        assert event.payload.reasons
        assert all(0 <= r.score <= 1 for r in event.payload.reasons)
    await pool.execute(f"DROP SCHEMA IF EXISTS selector_{run} CASCADE")
