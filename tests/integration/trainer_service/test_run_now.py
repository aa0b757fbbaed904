"""`hone-trainer run-now`: a run in the calling process that publishes its candidate itself, and
refuses to start while another run holds the lock."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import pytest

from hone_common.events import ModelCandidate
from hone_common.topics import Topic
from hone_trainer.app import run_now
from hone_trainer.runs import RunBusy
from tests.integration.trainer_service.conftest import TrainerFactory
from tests.integration.trainer_service.test_run_failures import seed


async def test_run_now_trains_here_and_publishes_the_candidate(
    start_trainer: TrainerFactory, kafka_tap: Any
) -> None:
    tap = await kafka_tap(Topic.MODEL_CANDIDATE.value)
    suffix = uuid.uuid4().hex[:10]
    async with start_trainer(suffix=suffix, keep=True) as t:
        await seed(t, 16)
        settings = t.settings
    # The service is stopped: nothing but run-now can publish this candidate.
    lock = f"hone-trainer-run:{settings.trainer.schema_name}"
    other = await asyncpg.connect(settings.postgres.dsn.get_secret_value())
    try:
        await other.execute("SELECT pg_advisory_lock(hashtext($1))", lock)
        with pytest.raises(RunBusy):
            await run_now(settings, "cli-test")
    finally:
        await other.close()

    record = await run_now(settings, "cli-test")
    assert record["status"] == "succeeded", record.get("error")
    assert record["trigger"] == "cli-test"
    records = await tap.wait_for(
        lambda rs: any(settings.model_name in r.value.decode() for r in rs), within=60
    )
    candidate = next(
        ModelCandidate.model_validate_json(r.value)
        for r in records
        if settings.model_name in r.value.decode()
    )
    assert candidate.payload.model_version == record["model_version"]
    async with start_trainer(suffix=suffix) as t:  # cleans up the schema and the bucket
        published = await t.pool.fetchval(
            f"SELECT count(*) FROM {t.schema}.outbox WHERE published_at IS NOT NULL"
        )
        assert published == 1
