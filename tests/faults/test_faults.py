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


async def test_a_kafka_restart_mid_stream_loses_and_repeats_nothing(
    pipe: Pipeline, results: dict[str, Any]
) -> None:
    async def restart_kafka(publisher: Publisher) -> Outage:
        began = now()
        await pipe.stack.down("kafka")
        await pipe.stack.up("kafka")
        return Outage(began, now())

    outcome = await run_scenario(pipe, "Kafka broker restart", restart_kafka)
    results["kafka_restart"] = outcome.report()
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


async def test_a_postgres_restart_mid_stream_loses_and_repeats_nothing(
    pipe: Pipeline, results: dict[str, Any]
) -> None:
    async def restart_postgres(publisher: Publisher) -> Outage:
        began = now()
        await pipe.stack.down("postgres")
        await pipe.stack.up("postgres")
        return Outage(began, now())

    outcome = await run_scenario(pipe, "PostgreSQL restart", restart_postgres)
    results["postgres_restart"] = outcome.report()
    assert_exactly_once(outcome)


async def test_a_torchserve_restart_mid_stream_loses_nothing_and_production_comes_back(
    pipe: Pipeline, results: dict[str, Any]
) -> None:
    # TorchServe keeps no model across a restart: the gatekeeper must serve production again
    # by itself (no candidate is coming), or scoring would wait for ever.
    async def restart_torchserve(publisher: Publisher) -> Outage:
        began = now()
        await pipe.stack.down("torchserve")
        await pipe.stack.up("torchserve")
        return Outage(began, now())

    outcome = await run_scenario(pipe, "TorchServe restart", restart_torchserve)
    results["torchserve_restart"] = outcome.report()
    assert_exactly_once(outcome)
