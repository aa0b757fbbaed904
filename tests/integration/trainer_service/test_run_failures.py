"""Runs that go wrong leave no candidate behind and do not stop the next run: a failure inside
training, a run cancelled mid-way, a process that died (abandoned at the next start-up), and a
run that another replica holds (one at a time). Also the admin API's refusals."""

from __future__ import annotations

import asyncio
import threading
import uuid
from typing import Any

import asyncpg
import httpx

from hone_common.auth import ApiKeys, Role
from hone_common.topics import Topic
from hone_trainer.job import TrainingJob, TrainingOutput, compute
from tests.integration.trainer_service.conftest import (
    Running,
    TrainerFactory,
    eventually,
    label_event,
)


async def seed(t: Running, count: int = 24) -> None:
    pictures = [await t.picture(i % 4, seed=2000 + i, camera=f"cam-{i % 2}") for i in range(count)]
    events: list[Any] = [p.event for p in pictures]
    events += [label_event(p.image_id, p.label) for p in pictures]
    await t.send(*events)
    await t.wait_processed(*events)


async def start_run(t: Running) -> str:
    response = await t.http.post("/v1/trainer/runs")
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "running"
    return str(body["run_id"])


class Flaky:
    """Fails the first `failures` runs inside training, then trains for real."""

    def __init__(self, failures: int = 1) -> None:
        self.failures = failures
        self.calls = 0

    def __call__(self, job: TrainingJob) -> TrainingOutput:
        self.calls += 1
        if self.calls <= self.failures:
            raise RuntimeError("disk on fire")
        return compute(job)


class Blocking:
    """Holds the first run inside training until released."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, job: TrainingJob) -> TrainingOutput:
        self.entered.set()
        self.release.wait(120)
        return compute(job)


async def test_a_run_failing_inside_training_enqueues_nothing_and_the_next_one_succeeds(
    start_trainer: TrainerFactory, kafka_tap: Any
) -> None:
    tap = await kafka_tap(Topic.MODEL_CANDIDATE.value)
    async with start_trainer(compute=Flaky()) as t:
        await seed(t)
        failed = await t.wait_run(await start_run(t))
        assert failed["status"] == "failed"
        assert "disk on fire" in failed["error"]
        assert failed["examples_used"] == {"train": 0, "weakness": 0, "flagged": 0}
        assert await t.candidates_in_outbox() == 0

        succeeded = await t.wait_run(await start_run(t))
        assert succeeded["status"] == "succeeded", succeeded.get("error")
        assert succeeded["examples_used"]["train"] > 0
        records = await tap.wait_for(
            lambda rs: any(t.model_name in r.value.decode() for r in rs), within=60
        )
        published = [r for r in records if t.model_name in r.value.decode()]
        assert len(published) == 1
        assert succeeded["model_version"] in published[0].value.decode()
        assert await t.candidates_in_outbox() == 1


async def test_a_run_cancelled_mid_training_is_marked_failed_and_one_runs_at_a_time(
    start_trainer: TrainerFactory,
) -> None:
    blocking = Blocking()
    async with start_trainer(compute=blocking) as t:
        await seed(t)
        run_id = await start_run(t)
        await eventually(
            lambda: asyncio.to_thread(blocking.entered.wait, 0.2), 60, "training to start"
        )
        busy = await t.http.post("/v1/trainer/runs")
        assert busy.status_code == 409
        assert busy.json()["error"]["code"] == "run_in_progress"

        # What a shutdown does: the run task is cancelled while training.
        await t.app.state.runtime.extras["trainer"].stop()
        blocking.release.set()
        cancelled = await t.wait_run(run_id)
        assert cancelled["status"] == "failed"
        assert "cancelled" in cancelled["error"]
        assert await t.candidates_in_outbox() == 0

        again = await t.wait_run(await start_run(t))
        assert again["status"] == "succeeded", again.get("error")
        assert await t.candidates_in_outbox() == 1


async def test_a_run_another_replica_holds_blocks_new_runs(start_trainer: TrainerFactory) -> None:
    async with start_trainer() as t:
        await seed(t)
        lock = f"hone-trainer-run:{t.schema}"
        other = await asyncpg.connect(t.settings.postgres.dsn.get_secret_value())
        try:
            assert await other.fetchval("SELECT pg_try_advisory_lock(hashtext($1))", lock)
            refused = await t.http.post("/v1/trainer/runs")
            assert refused.status_code == 409
        finally:
            await other.close()  # the replica goes away: its lock with it
        finished = await t.wait_run(await start_run(t))
        assert finished["status"] == "succeeded", finished.get("error")


async def test_a_run_left_running_by_a_dead_process_is_abandoned_at_start_up(
    start_trainer: TrainerFactory,
) -> None:
    suffix = uuid.uuid4().hex[:10]
    stale = uuid.uuid4()
    async with start_trainer(suffix=suffix, keep=True) as t:
        await seed(t)
        # What a killed process leaves: a `running` row and no lock.
        await t.pool.execute(
            f"INSERT INTO {t.schema}.runs (run_id, trigger, status, label_seq) "
            "VALUES ($1, 'test', 'running', 0)",
            stale,
        )
    async with start_trainer(suffix=suffix) as t:
        status = await t.pool.fetchval(
            f"SELECT status FROM {t.schema}.runs WHERE run_id = $1", stale
        )
        assert status == "abandoned"
        finished = await t.wait_run(await start_run(t))
        assert finished["status"] == "succeeded", finished.get("error")
        runs = (await t.http.get("/v1/trainer/runs")).json()
        assert [r["status"] for r in runs] == ["succeeded", "abandoned"]


async def test_a_running_row_of_a_live_run_elsewhere_is_not_abandoned(
    start_trainer: TrainerFactory,
) -> None:
    async with start_trainer() as t:
        live = uuid.uuid4()
        await t.pool.execute(
            f"INSERT INTO {t.schema}.runs (run_id, trigger, status, label_seq) "
            "VALUES ($1, 'replica-2', 'running', 0)",
            live,
        )
        other = await asyncpg.connect(t.settings.postgres.dsn.get_secret_value())
        try:
            await other.execute(
                "SELECT pg_advisory_lock(hashtext($1))", f"hone-trainer-run:{t.schema}"
            )
            assert await t.app.state.runtime.extras["trainer"].abandon_stale() == []
        finally:
            await other.close()
        status = await t.pool.fetchval(
            f"SELECT status FROM {t.schema}.runs WHERE run_id = $1", live
        )
        assert status == "running"


async def test_the_admin_api_refuses_missing_or_non_admin_keys(
    start_trainer: TrainerFactory,
) -> None:
    async with start_trainer() as t:
        transport = httpx.ASGITransport(app=t.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://trainer") as anonymous:
            response = await anonymous.post("/v1/trainer/runs")
            assert response.status_code == 401
            _, labeler_key = await ApiKeys(t.pool).issue(f"labeler-{t.suffix}", Role.LABELER)
            response = await anonymous.post(
                "/v1/trainer/runs", headers={"Authorization": f"Bearer {labeler_key}"}
            )
            assert response.status_code == 403
        missing = await t.http.get(f"/v1/trainer/runs/{uuid.uuid4()}")
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "run_not_found"
        assert await t.pool.fetchval(f"SELECT count(*) FROM {t.schema}.runs") == 0
