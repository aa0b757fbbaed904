"""The gatekeeper against the real Kafka, MinIO, PostgreSQL and TorchServe, with real models."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client import REGISTRY
from pydantic import ValidationError

from hone_common.auth import Role
from hone_common.events import ModelPromoted
from hone_common.topics import Topic
from tests.integration.gatekeeper.conftest import Lab, png, poll

CLI = Path(sys.executable).with_name("hone-gatekeeper")


def promotions(records: list[Any], version: str) -> list[ModelPromoted]:
    """The model.promoted events of `version` among records of a shared topic."""
    found = []
    for record in records:
        try:
            event = ModelPromoted.model_validate_json(record.value)
        except ValidationError:
            continue
        if event.payload.model_version == version:
            found.append(event)
    return found


def duplicates() -> float:
    value = REGISTRY.get_sample_value("hone_gatekeeper_candidates_total", {"outcome": "duplicate"})
    return value or 0.0


async def _true(value: bool) -> bool:
    return value


async def served_by_default(lab: Lab) -> str:
    image = png(np.zeros((28, 28), dtype=np.uint8))
    return (await lab.torchserve.predict([image], model=lab.name)).model_version


async def test_a_better_candidate_is_promoted_and_served_by_default(
    lab: Lab, kafka_tap: Callable[..., Any]
) -> None:
    production = await lab.serve_directly(lab.models.production)
    tap = await kafka_tap(Topic.MODEL_PROMOTED.value)
    candidate = await lab.candidate(lab.models.better)
    version = candidate.payload.model_version

    await lab.publish(candidate)

    records = await tap.wait_for(lambda rs: bool(promotions(rs, version)), within=180)
    (announcement,) = promotions(records, version)
    assert announcement.payload.previous_version == production
    assert announcement.payload.manual is False
    assert announcement.payload.artifact_uri == candidate.payload.artifact_uri
    assert announcement.correlation_id == candidate.event_id
    summary = announcement.payload.evaluation
    assert summary["examples"] == 400
    assert float(summary["candidate_accuracy"] or 0) > float(summary["production_accuracy"] or 1)
    assert float(summary["p_value"] or 1) < 0.05
    assert await lab.torchserve.default_version(lab.name) == version
    assert await served_by_default(lab) == version
    decision = await lab.decision(version)
    assert decision["kind"] == "promote"
    evaluation = await lab.pool.fetchrow(
        "SELECT * FROM gatekeeper.evaluations WHERE evaluation_id = $1", decision["evaluation_id"]
    )
    assert evaluation["production_version"] == production
    assert set(evaluation["comparison"]["per_camera"]) == {"cam-north", "cam-south"}
    assert evaluation["comparison"]["candidate_latency"]["requests"] == 13  # 400 / 32
    statuses = dict(
        await lab.pool.fetch(
            "SELECT model_version, status FROM gatekeeper.models WHERE model_name = $1", lab.name
        )
    )
    assert statuses == {production: "retired", version: "production"}


async def test_a_worse_candidate_is_rejected_with_its_reasons_once_and_unloaded(lab: Lab) -> None:
    production = await lab.serve_directly(lab.models.production)
    candidate = await lab.candidate(lab.models.worse)
    version = candidate.payload.model_version

    duplicates_before = duplicates()
    await lab.publish(candidate)
    await lab.publish(candidate)  # redelivered: decided once, registered once

    decision = await lab.decision(version)
    assert decision["kind"] == "reject"
    reasons = list(decision["reasons"])
    assert any(r.startswith("improvement not significant") for r in reasons), reasons
    assert any("needs +0.5 pt" in r for r in reasons), reasons
    assert await lab.torchserve.default_version(lab.name) == production
    registered = [str(v["modelVersion"]) for v in await lab.torchserve.describe(lab.name)]
    assert registered == [production]
    await poll(
        lambda: _true(duplicates() > duplicates_before), 60, "the redelivery was not skipped"
    )
    count = await lab.pool.fetchval(
        "SELECT count(*) FROM gatekeeper.decisions WHERE model_name = $1 AND model_version = $2",
        lab.name,
        version,
    )
    assert count == 1
    queued = await lab.pool.fetchval(
        "SELECT count(*) FROM gatekeeper.outbox WHERE key = $1", version.encode()
    )
    assert queued == 0


async def test_a_candidate_whose_archive_is_missing_is_rejected_not_retried(lab: Lab) -> None:
    candidate = await lab.candidate(lab.models.better, artifact=False)
    await lab.publish(candidate)
    decision = await lab.decision(candidate.payload.model_version, within=60)
    assert decision["kind"] == "reject"
    assert list(decision["reasons"]) == [
        f"the archive {candidate.payload.artifact_uri} does not exist"
    ]
    assert await lab.torchserve.describe(lab.name) == []


async def test_rollback_restores_the_earlier_version_and_announces_it_as_manual(
    lab: Lab,
    kafka_tap: Callable[..., Any],
    issue_key: Callable[[Role], Awaitable[str]],
) -> None:
    # The first model goes through the gatekeeper's bootstrap path, the second replaces it.
    first = await lab.candidate(lab.models.production)
    await lab.publish(first)
    assert (await lab.decision(first.payload.model_version))["kind"] == "promote"
    second = await lab.candidate(lab.models.better)
    await lab.publish(second)
    assert (await lab.decision(second.payload.model_version))["kind"] == "promote"
    old, new = first.payload.model_version, second.payload.model_version
    assert await lab.torchserve.default_version(lab.name) == new
    # Unloaded meanwhile: rolling back must load it again from its archive.
    await lab.torchserve.unregister(old, model=lab.name)
    tap = await kafka_tap(Topic.MODEL_PROMOTED.value)

    async with lab.http() as http:
        headers = {"Authorization": f"Bearer {await issue_key(Role.ADMIN)}"}
        response = await http.post(
            "/v1/gatekeeper/rollback", json={"note": "it test"}, headers=headers
        )
        assert response.status_code == 200, response.text
        assert response.json()["model_version"] == old
        assert response.json()["kind"] == "rollback"

        records = await tap.wait_for(lambda rs: bool(promotions(rs, old)), within=30)
        (announcement,) = promotions(records, old)
        assert announcement.payload.manual is True
        assert announcement.payload.previous_version == new
        assert await lab.torchserve.default_version(lab.name) == old
        assert await served_by_default(lab) == old

        shown = await http.get(f"/v1/gatekeeper/versions/{old}", headers=headers)
        assert shown.status_code == 200
        assert [d["kind"] for d in shown.json()["decisions"]] == ["rollback", "promote"]
        assert shown.json()["version"]["status"] == "production"


async def test_the_cli_lists_versions_and_rolls_back(lab: Lab) -> None:
    first = await lab.candidate(lab.models.production)
    await lab.publish(first)
    await lab.decision(first.payload.model_version)
    second = await lab.candidate(lab.models.better)
    await lab.publish(second)
    await lab.decision(second.payload.model_version)
    env = {**os.environ, "HONE_TORCHSERVE__MODEL_NAME": lab.name, "HONE_LOG_LEVEL": "WARNING"}

    async def cli(*args: str) -> tuple[int, str, str]:
        process = await asyncio.create_subprocess_exec(
            str(CLI), *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        out, err = await asyncio.wait_for(process.communicate(), timeout=120)
        assert process.returncode is not None
        return process.returncode, out.decode(), err.decode()

    code, out, _ = await cli("versions")
    assert code == 0
    lines = {line.split()[0]: line.split()[1] for line in out.splitlines() if line.strip()}
    assert lines == {
        first.payload.model_version: "retired",
        second.payload.model_version: "production",
    }

    code, out, err = await cli("rollback")
    assert code == 0, err
    assert await lab.torchserve.default_version(lab.name) == first.payload.model_version

    code, _, err = await cli("promote", "20990101.000000")
    assert code == 1
    assert "never seen" in err


async def test_the_admin_api_needs_an_admin_key(
    lab: Lab, issue_key: Callable[[Role], Awaitable[str]]
) -> None:
    async with lab.http() as http:
        assert (await http.get("/v1/gatekeeper/versions")).status_code == 401
        labeler = {"Authorization": f"Bearer {await issue_key(Role.LABELER)}"}
        assert (await http.get("/v1/gatekeeper/versions", headers=labeler)).status_code == 403
        admin = {"Authorization": f"Bearer {await issue_key(Role.ADMIN)}"}
        response = await http.post("/v1/gatekeeper/rollback", json={}, headers=admin)
        assert response.status_code == 409
        assert response.json()["error"]["code"] == "refused"
        unknown = await http.post(
            "/v1/gatekeeper/versions/20990101.000000/promote", json={}, headers=admin
        )
        assert unknown.status_code == 404
        assert (await http.get("/readyz")).status_code == 200
