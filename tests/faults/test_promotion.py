"""TorchServe restarted while the gatekeeper is promoting a candidate, with frames flowing:
TorchServe keeps no model across a restart, so production must be served again and the
promotion finished once; every frame is still scored exactly once, by one version or the
other."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from hone_common.events import Candidate, ModelCandidate, encode
from hone_common.storage import ObjectStore
from hone_common.torchserve import TorchServeClient
from tests.faults.pipeline import Publisher, announced_models, wait_until
from tests.faults.scenario import Outage, Pipeline, assert_exactly_once, now, run_scenario
from tests.faults.stack import ROOT, PrivateStack, ServiceProcess, clean_environment


@pytest.fixture
def pipe(
    stack: PrivateStack,
    services: dict[str, ServiceProcess],
    pool: asyncpg.Pool[Any],
    store: ObjectStore,
) -> Pipeline:
    return Pipeline(stack, services, pool, store)


async def build_candidate(stack: PrivateStack, parent: str) -> Candidate:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "tests.faults.candidate", "--parent", parent),
        cwd=ROOT,
        env=clean_environment() | stack.env | {"PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 600)
    assert process.returncode == 0, err.decode()[-3000:]
    return Candidate.model_validate_json(out.decode().strip().splitlines()[-1])


async def test_a_torchserve_restart_during_a_promotion_ends_in_one_promotion_and_no_lost_frame(
    pipe: Pipeline, model: str, results: dict[str, Any]
) -> None:
    candidate = await build_candidate(pipe.stack, parent=model)
    version = candidate.model_version
    torchserve = TorchServeClient(pipe.stack.settings().torchserve)

    async def registered() -> bool:
        described = await torchserve.describe()
        return any(entry.get("modelVersion") == version for entry in described)

    async def restart_while_promoting(publisher: Publisher) -> Outage:
        producer = AIOKafkaProducer(bootstrap_servers=pipe.bootstrap, acks="all")
        await producer.start()
        try:
            event = ModelCandidate(producer="trainer", payload=candidate)
            await producer.send_and_wait(event.topic.value, encode(event), key=event.key)
        finally:
            await producer.stop()
        # The gatekeeper registers the candidate before scoring it: restart in the middle.
        await wait_until(registered, 180, f"the gatekeeper registering {version}", 0.2)
        began = now()
        await pipe.stack.down("torchserve")
        await pipe.stack.up("torchserve")
        return Outage(began, now())

    try:
        outcome = await run_scenario(
            pipe, "TorchServe restart during a promotion", restart_while_promoting
        )

        async def promoted() -> bool:
            return await torchserve.default_version() == version

        promoted_after = await wait_until(promoted, 240, f"{version} served as production")
    finally:
        await torchserve.aclose()
    decisions = await pipe.pool.fetch(
        "SELECT kind, applied_at, apply_error FROM gatekeeper.decisions WHERE model_version = $1",
        version,
    )
    announcements = await announced_models(pipe.bootstrap, "model.promoted", version)
    promotions_seen = await pipe.pool.fetchval(
        "SELECT count(*) FROM scorer.promotions WHERE model_version = $1", version
    )
    versions_scored = await pipe.pool.fetch(
        "SELECT model_version, count(*) AS n FROM scorer.predictions "
        "WHERE image_id = ANY($1) GROUP BY model_version",
        list(outcome.ids),
    )
    report = outcome.report() | {
        "candidate": version,
        "decisions": [dict(d) | {"applied_at": str(d["applied_at"])} for d in decisions],
        "promotion_served_after_scenario_s": round(promoted_after, 3),
        "model_promoted_events": len(announcements),
        "scored_by_version": {r["model_version"]: r["n"] for r in versions_scored},
    }
    results["torchserve_restart_during_promotion"] = json.loads(json.dumps(report, default=str))

    assert_exactly_once(outcome)
    assert [(d["kind"], d["apply_error"]) for d in decisions] == [("promote", None)]
    assert decisions[0]["applied_at"] is not None
    assert len(announcements) == 1, f"model.promoted events for {version}: {announcements}"
    assert promotions_seen == 1
