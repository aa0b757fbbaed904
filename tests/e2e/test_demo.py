"""The closed-loop demo, CI-sized: a few hundred frames, two training rounds, on the real stack.

It runs `python -m hone_demo run --small` as a subprocess (its services are subprocesses too,
on their own ports, with their own pid files, schemas, consumer groups and TorchServe model
name), then checks the report against what the stack itself stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from hone_demo.services import unregister_model

from hone_common.settings import ServiceSettings
from hone_common.torchserve import TorchServeClient

ROOT = Path(__file__).resolve().parents[2]
PLOTS = ("accuracy_vs_labels", "per_camera", "strategy_yield", "promotion_timeline",
         "label_latency")  # fmt: skip

pytestmark = pytest.mark.timeout(540)


def _free_base_port() -> int:
    """Six consecutive free ports (labeling-api's first)."""
    for base in range(18000, 19000, 10):
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", base)) != 0 and all(
                socket.socket().connect_ex(("127.0.0.1", base + i)) != 0 for i in range(1, 6)
            ):
                return base
    raise RuntimeError("no free ports for the demo's services")


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    run_id = f"t{uuid.uuid4().hex[:12]}"
    state_dir = tmp_path_factory.mktemp("demo-services")
    artifacts = ROOT / "artifacts" / "demo" / run_id
    command = [
        sys.executable, "-m", "hone_demo", "run", "--small", "--no-live",
        "--run-id", run_id, "--port", str(_free_base_port()), "--state-dir", str(state_dir),
    ]  # fmt: skip
    try:
        finished = subprocess.run(
            command, cwd=ROOT, env=dict(os.environ), capture_output=True, text=True,
            timeout=450, check=False,
        )  # fmt: skip
    finally:
        # The demo leaves its services running for a person; the checks below need only what
        # they stored, and a trainer still running could promote again behind the checks' back.
        subprocess.run(
            [sys.executable, "-m", "hone_demo", "stop", "--state-dir", str(state_dir)],
            cwd=ROOT, check=False, capture_output=True,
        )  # fmt: skip
    try:
        yield {
            "run_id": run_id,
            "dir": artifacts,
            "returncode": finished.returncode,
            "output": finished.stdout[-4000:] + finished.stderr[-4000:],
        }
    finally:
        # A run that failed before its bootstrap has no model: nothing to free, no new error.
        with contextlib.suppress(Exception):
            asyncio.run(_unregister(f"demo_{run_id}"))


async def _unregister(model: str) -> None:
    """Free TorchServe of this run's versions (each holds a worker process)."""
    client = TorchServeClient(ServiceSettings().torchserve)
    try:
        await unregister_model(client, model)
    finally:
        await client.aclose()


def _summary(demo_run: dict[str, Any]) -> dict[str, Any]:
    assert demo_run["returncode"] == 0, demo_run["output"]
    return dict(json.loads((demo_run["dir"] / "summary.json").read_text()))


def test_demo_writes_the_report_files(demo_run: dict[str, Any]) -> None:
    summary = _summary(demo_run)
    for name in PLOTS:
        png = demo_run["dir"] / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    page = (demo_run["dir"] / "index.html").read_text()
    assert summary["run_id"] in page
    assert summary["final"] is not None
    assert 0.0 < summary["final"]["hone_accuracy"] <= 1.0
    assert 0.0 < summary["final"]["control_accuracy"] <= 1.0


def test_labels_went_through_the_labeling_api(demo_run: dict[str, Any]) -> None:
    summary = _summary(demo_run)
    labels = summary["labels"]["human_labels"]
    assert labels > 0

    async def stored() -> int:
        conn = await asyncpg.connect(ServiceSettings().postgres.dsn.get_secret_value())
        try:
            schema = f"labeling_demo_{demo_run['run_id']}"
            return int(
                await conn.fetchval(
                    f"SELECT count(*) FROM {schema}.answers "
                    "WHERE verdict = 'label' AND undone_at IS NULL"
                )
            )
        finally:
            await conn.close()

    assert asyncio.run(stored()) == labels
    assert summary["labels"]["answers_in_labeling_schema"]["label"] == labels


def test_a_retrained_model_was_promoted_and_serves(demo_run: dict[str, Any]) -> None:
    summary = _summary(demo_run)
    runs = [r for r in summary["training_runs"] if r["status"] == "succeeded"]
    assert len(runs) >= 2, summary["training_runs"]
    assert summary["promotions"] >= 1, summary["decisions"]

    async def default() -> str | None:
        client = TorchServeClient(ServiceSettings().torchserve)
        try:
            return await client.default_version(summary["model_name"])
        finally:
            await client.aclose()

    served = asyncio.run(default())
    assert served == summary["production_version"]
    assert served != summary["bootstrap"]["model_version"]
