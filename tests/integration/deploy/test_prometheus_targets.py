"""The local stack's Prometheus (deploy/local/config/prometheus.yml) really scrapes TorchServe
and the Hone services: services are started in-process on their own ports, through uvicorn and
their lifespan, with consumer groups of their own that start at the end of their topics."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

import httpx
import pytest
import uvicorn

PROMETHEUS = os.environ.get("HONE_PROMETHEUS__URL", "http://127.0.0.1:9090")
DEADLINE_SECONDS = 60.0  # the local stack scrapes every 5 s


async def targets(client: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    response = await client.get(f"{PROMETHEUS}/api/v1/targets", params={"state": "active"})
    response.raise_for_status()
    return {t["labels"]["job"]: t for t in response.json()["data"]["activeTargets"]}


async def wait_for_target(job: str, *, scraped_after: float = 0.0) -> dict[str, Any]:
    """Poll Prometheus until `job` is up with a scrape newer than `scraped_after` (epoch s)."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    last: dict[str, Any] = {}
    async with httpx.AsyncClient(timeout=5) as client:
        while time.monotonic() < deadline:
            try:
                last = (await targets(client)).get(job, {})
            except httpx.HTTPError as error:
                pytest.fail(f"Prometheus is not reachable at {PROMETHEUS} ({error})")
            scraped = last.get("lastScrape", "")
            if last.get("health") == "up" and _epoch(scraped) > scraped_after:
                return last
            await asyncio.sleep(1)
    pytest.fail(f"Prometheus target {job!r} not up within {DEADLINE_SECONDS}s: {last}")


def _epoch(timestamp: str) -> float:
    try:
        return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def port_in_use(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


@contextlib.asynccontextmanager
async def serve_in_process(service: str, port: int, env: dict[str, str]) -> AsyncIterator[None]:
    module = importlib.import_module(f"hone_{service}.app")
    settings_module = importlib.import_module(f"hone_{service}.settings")
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        settings = settings_module.Settings()
    app = module.create_app(settings)
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=port, log_config=None, access_log=False, lifespan="on"
        )
    )

    async def run() -> None:
        # uvicorn exits the process when start-up fails; a SystemExit escaping a task would stop
        # the tests' shared event loop, so it becomes an ordinary error of this task.
        try:
            await server.serve()
        except SystemExit as exit_:
            raise RuntimeError(
                f"{service} failed to start (exit {exit_.code}), see the log"
            ) from None

    task = asyncio.create_task(run())
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not server.started:
        if task.done() or time.monotonic() > deadline:
            server.should_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 30)
            error = task.exception() if task.done() and not task.cancelled() else None
            pytest.fail(f"{service} did not start on port {port}: {error}")
        await asyncio.sleep(0.1)
    try:
        yield
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 60)


async def test_prometheus_scrapes_torchserve_metrics() -> None:
    target = await wait_for_target("torchserve")
    metrics_url = os.environ.get("HONE_TORCHSERVE__METRICS_URL", "http://127.0.0.1:8082")
    assert target["scrapeUrl"] == f"{metrics_url}/metrics"


SERVICES: dict[str, tuple[int, Callable[[str], dict[str, str]]]] = {
    "ingest": (
        8001,
        lambda group: {
            "HONE_INGEST__CONSUMER_GROUP": group,
            "HONE_INGEST__AUTO_OFFSET_RESET": "latest",
        },
    ),
    "scorer": (
        8002,
        lambda group: {
            "HONE_SCORER__CONSUMER_GROUP": group,
            "HONE_KAFKA__AUTO_OFFSET_RESET": "latest",
        },
    ),
}


@pytest.mark.parametrize("service", sorted(SERVICES))
async def test_prometheus_scrapes_a_service_started_on_its_port(service: str) -> None:
    port, knobs = SERVICES[service]
    try:
        importlib.import_module(f"hone_{service}.app").create_app  # noqa: B018
    except (ModuleNotFoundError, AttributeError):
        pytest.skip(f"hone_{service}.app.create_app does not exist yet")
    if port_in_use(port):
        pytest.skip(f"port {port} is taken by another process: cannot tell its target from ours")
    group = f"deploy-test-{service}-{uuid.uuid4().hex[:8]}"
    async with serve_in_process(service, port, {"HONE_HTTP__PORT": str(port), **knobs(group)}):
        started = time.time()
        target = await wait_for_target(service, scraped_after=started)
        async with httpx.AsyncClient(timeout=5) as client:
            metrics = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
    assert target["scrapeUrl"] == f"http://127.0.0.1:{port}/metrics"
    assert "hone_events_consumed_total" in metrics or "hone_handler_seconds" in metrics
