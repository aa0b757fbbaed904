"""Fault-injection tier: a private stack on ports of its own (never the shared one), a model
served on it, the Hone services as subprocesses, and the measurements file.

    .venv/bin/pytest -m faults -ra       # ~10 minutes; HONE_FAULTS_FRAMES / _RATE to change K

Results go to bench/results/faults.json (one entry per scenario, merged with earlier runs).
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from hone_common.db import create_pool
from hone_common.storage import ObjectStore
from tests.faults.pipeline import write_seed
from tests.faults.stack import (
    BIN,
    ROOT,
    PrivateStack,
    ServiceProcess,
    clean_environment,
    default_state,
)

STATE = Path(os.environ.get("HONE_FAULTS_STATE", default_state()))
RESULTS = ROOT / "bench" / "results" / "faults.json"
SERVICES = {
    "ingest": "hone-ingest",
    "scorer": "hone-scorer",
    "selector": "hone-selector",
    "labeling-api": "hone-labeling-api",
    "gatekeeper": "hone-gatekeeper",
}


KNOBS = {
    # Enough review requests to count (a fifth of the stream at random, no budget cap), so
    # "every review requested once" is checked on real requests.
    "HONE_SELECTOR__RANDOM__SHARE": "0.2",
    "HONE_SELECTOR__BUDGET__REVIEWS_PER_HOUR": "1000000",
    "HONE_SELECTOR__DUPLICATES__CAMERA_WINDOW_SECONDS": "0",
    # How soon the gatekeeper notices TorchServe lost production (15 s by default).
    "HONE_GATEKEEPER__RECONCILE_SECONDS": "5",
}


async def _run(*command: str | Path, env: dict[str, str], within: float = 120) -> bytes:
    process = await asyncio.create_subprocess_exec(
        *map(str, command), env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), within)
    assert process.returncode == 0, f"{command} failed: {err.decode()[-2000:]}"
    return out


@pytest.fixture(scope="session")
async def stack() -> AsyncIterator[PrivateStack]:
    private = PrivateStack(STATE)
    await private.start()
    yield private
    await private.stop()


@pytest.fixture(scope="session")
async def model(stack: PrivateStack) -> str:
    """A tiny model trained and served as production (`hone`) by the trainer's bootstrap."""
    seed = write_seed(STATE / "seed.npz")
    stdout = await _run(
        BIN / "hone-bootstrap",
        *("--seed-npz", seed, "--epochs", "1", "--augmentation", "none"),
        *("--batch-size", "8", "--max-batch-delay-ms", "5", "--no-progress"),
        env=clean_environment() | stack.env,
        within=600,
    )
    version: str = json.loads(stdout)["model_version"]
    return version


@pytest.fixture(scope="session")
async def services(stack: PrivateStack, model: str) -> AsyncIterator[dict[str, ServiceProcess]]:
    logs = STATE / "logs" / "services"
    env = stack.env | KNOBS
    running = {name: ServiceProcess(name, script, env, logs) for name, script in SERVICES.items()}
    try:
        # Three services migrate the shared `auth` schema at start-up: done once beforehand, so
        # they can start side by side without racing on its first revision.
        await _run(BIN / "hone-keys", "list", env=clean_environment() | env)
        await asyncio.gather(*(service.start() for service in running.values()))
        yield running
    finally:
        for service in running.values():
            await service.stop()


@pytest.fixture(autouse=True)
async def every_service_running(services: dict[str, ServiceProcess]) -> AsyncIterator[None]:
    """A scenario starts with every service up, and must leave them up (or restart them)."""
    for service in services.values():
        if not service.alive():
            await service.start()
    yield
    dead = [name for name, service in services.items() if not service.alive()]
    assert not dead, f"services died during the scenario: {dead}"


@pytest.fixture(scope="session")
async def pool(
    stack: PrivateStack, services: dict[str, ServiceProcess]
) -> AsyncIterator[asyncpg.Pool[Any]]:
    pool = await create_pool(stack.settings().postgres)
    yield pool
    await pool.close()


@pytest.fixture(scope="session")
def store(stack: PrivateStack) -> ObjectStore:
    return ObjectStore(stack.settings().s3)


@pytest.fixture(scope="session")
def results() -> Iterator[dict[str, Any]]:
    """Scenario name -> measurements; written to bench/results/faults.json at the end."""
    found: dict[str, Any] = {}
    yield found
    if not found:
        return
    previous = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    scenarios = previous.get("scenarios", {}) | found
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "written_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "machine": {"cpus": os.cpu_count(), "load_average": os.getloadavg()},
                "scenarios": scenarios,
            },
            indent=2,
        )
        + "\n"
    )
