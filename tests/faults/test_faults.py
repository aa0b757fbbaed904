"""Faults while frames flow through ingest, scorer, selector and labeling-api on a private
stack: a service SIGKILLed, Kafka, MinIO and PostgreSQL restarted. Each scenario counts frames
in and effects out: nothing lost, nothing done twice, and how long recovery took."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest

from hone_common.storage import ObjectStore
from tests.faults.pipeline import Publisher, wait_until
from tests.faults.scenario import (
    FRAMES,
    Outage,
    Pipeline,
    assert_exactly_once,
    now,
    run_scenario,
)
from tests.faults.stack import PrivateStack, ServiceProcess

MINIO_DOWN_SECONDS = 20.0


@pytest.fixture
def pipe(
    stack: PrivateStack,
    services: dict[str, ServiceProcess],
    pool: asyncpg.Pool[Any],
    store: ObjectStore,
) -> Pipeline:
    return Pipeline(stack, services, pool, store)


async def test_without_faults_every_frame_is_stored_scored_and_decided_once(
    pipe: Pipeline, results: dict[str, Any]
) -> None:
    outcome = await run_scenario(pipe, "none (baseline)", None, count=max(30, FRAMES // 3))
    results["baseline"] = outcome.report()
    assert_exactly_once(outcome)


async def test_a_scorer_killed_mid_stream_loses_and_repeats_nothing(
    pipe: Pipeline, results: dict[str, Any]
) -> None:
    scorer = pipe.services["scorer"]

    async def kill_and_restart(publisher: Publisher) -> Outage:
        scored_before = await pipe.pool.fetchval("SELECT count(*) FROM scorer.predictions")

        async def scoring() -> bool:
            count = await pipe.pool.fetchval("SELECT count(*) FROM scorer.predictions")
            return bool(count > scored_before)

        # Killed while it is working on this run's frames, not while idle.
        await wait_until(scoring, 60, "the scorer scoring this run's frames", 0.05)
        began = now()
        scorer.kill()
        await scorer.start()
        return Outage(began, now())

    outcome = await run_scenario(pipe, "scorer SIGKILL + restart", kill_and_restart)
    results["scorer_sigkill"] = outcome.report()
    assert_exactly_once(outcome)


async def test_minio_down_for_20_seconds_loses_and_repeats_nothing(
    pipe: Pipeline, results: dict[str, Any]
) -> None:
    async def stop_minio(publisher: Publisher) -> Outage:
        began = now()
        await pipe.stack.down("minio")
        # The outage itself lasts a fixed time: this is the fault, not a wait for an outcome.
        await asyncio.sleep(max(0.0, MINIO_DOWN_SECONDS - (now() - began)))
        await pipe.stack.up("minio")
        return Outage(began, now())

    outcome = await run_scenario(pipe, f"MinIO stopped for {MINIO_DOWN_SECONDS:.0f} s", stop_minio)
    results["minio_down_20s"] = outcome.report()
    assert_exactly_once(outcome)


@pytest.mark.parametrize(
    ("server", "fault", "key"),
    [
        ("kafka", "Kafka broker restart", "kafka_restart"),
        ("postgres", "PostgreSQL restart", "postgres_restart"),
        # TorchServe keeps no model across a restart: the gatekeeper must serve production
        # again by itself (no candidate is coming), or scoring would wait for ever.
        ("torchserve", "TorchServe restart", "torchserve_restart"),
    ],
)
async def test_a_server_restarted_mid_stream_loses_and_repeats_nothing(
    pipe: Pipeline, results: dict[str, Any], server: str, fault: str, key: str
) -> None:
    async def restart(publisher: Publisher) -> Outage:
        began = now()
        await pipe.stack.down(server)
        await pipe.stack.up(server)
        return Outage(began, now())

    outcome = await run_scenario(pipe, fault, restart)
    results[key] = outcome.report()
    assert_exactly_once(outcome)
