"""One demo run, start to end: bootstrap, services, cameras, labelers, the control arm, report."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import time
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import numpy as np
from rich.console import Console
from rich.live import Live as RichLive

from hone_common.auth import ApiKeys, Role, migrate
from hone_common.db import create_pool
from hone_common.settings import ServiceSettings
from hone_common.storage import ObjectStore
from hone_common.torchserve import TorchServeClient
from hone_demo import admin as admin_api
from hone_demo import services
from hone_demo.config import ROOT, DemoConfig
from hone_demo.control import (
    ControlResult,
    Heldout,
    Score,
    Stream,
    render_heldout,
    score_production,
    train_and_score_control,
)
from hone_demo.labeler import LabelLog, label_until
from hone_demo.progress import Live
from hone_demo.report import write_report
from hone_simulator.data import FashionMnist, load_fashion_mnist
from hone_simulator.frames import FrameTruth, SimFrame, generate_frames
from hone_simulator.publish import publish_frames
from hone_simulator.settings import SimulatorSettings
from hone_simulator.splits import Split, split
from hone_trainer.bootstrap import SeedSet, bootstrap


@dataclass(frozen=True)
class Point:
    """Production changed: both arms judged on the same held-out frames."""

    at_seconds: float
    labels: int
    version: str
    hone: Score
    control: ControlResult


@dataclass
class RunState:
    config: DemoConfig
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    keys: dict[str, str] = field(default_factory=dict)
    bootstrap: dict[str, Any] = field(default_factory=dict)
    points: list[Point] = field(default_factory=list)
    labels: LabelLog = field(default_factory=LabelLog)
    truth: dict[Any, FrameTruth] = field(default_factory=dict)
    stream: Stream = field(default_factory=Stream)
    frames_sent: int = 0
    frames_failed: int = 0
    live: Live = field(default_factory=Live)


def stream_seed(run_id: str) -> int:
    """Each run streams different frames: ingest keeps every image once (sha256), so
    replaying a previous run's exact bytes would yield duplicates, not new images."""
    return zlib.crc32(run_id.encode()) % (2**31)


def ensure_stack(console: Console) -> None:
    status = subprocess.run(  # noqa: S603
        [str(ROOT / "deploy/local/stack"), "status"], capture_output=True, text=True, check=False
    )
    if status.returncode == 0 and "stopped" not in status.stdout:
        return
    console.print("[yellow]starting the local stack (deploy/local/stack up)[/yellow]")
    subprocess.run([str(ROOT / "deploy/local/stack"), "up"], check=True)  # noqa: S603


def _settings(env: dict[str, str]) -> ServiceSettings:
    # The in-process clients read the same environment the services get.
    os.environ.update(env)
    return ServiceSettings()


async def issue_keys(pool: asyncpg.Pool[Any], config: DemoConfig) -> dict[str, str]:
    registry = ApiKeys(pool)
    keys: dict[str, str] = {}
    for name, role in [
        ("admin", Role.ADMIN),
        ("camera", Role.CAMERA),
        ("you", Role.LABELER),
        *((f"sim-labeler-{i}", Role.LABELER) for i in range(config.labelers)),
    ]:
        _, keys[name] = await registry.issue(f"{config.run_id}-{name}", role)
    return keys


async def run(config: DemoConfig, console: Console, show: bool = True) -> dict[str, Any]:
    """The whole demo; returns the JSON summary it wrote."""
    config.run_dir.mkdir(parents=True, exist_ok=True)
    (config.run_dir / "config.json").write_text(json.dumps(asdict(config), default=str, indent=2))
    env = services.base_env(config)
    settings = _settings(env)
    state = RunState(config)
    state.live.frames_total = config.frames
    dataset = load_fashion_mnist(SimulatorSettings().data_cache)
    data_split = split(dataset, 0)
    heldout = render_heldout(dataset, data_split.heldout, config.heldout, config.seed)
    seed_ids = data_split.seed_set(config.seed_per_class)
    seed_images = dataset.images[seed_ids]
    seed_labels = [dataset.classes[int(i)] for i in dataset.labels[seed_ids]]
    classes = list(dataset.classes)

    await migrate(settings.postgres)
    pool = await create_pool(settings.postgres)
    torchserve = TorchServeClient(settings.torchserve)
    viewer = RichLive(state.live.table(), console=console, refresh_per_second=2) if show else None
    try:
        state.keys = await issue_keys(pool, config)
        key_file = config.run_dir / "keys.json"
        key_file.touch(mode=0o600)
        key_file.write_text(json.dumps(state.keys, indent=2))
        state.live.phase = "bootstrapping the first model"
        if viewer:
            viewer.start()
        started = time.monotonic()
        result = await bootstrap(
            SeedSet(seed_images, np.asarray(seed_labels), classes),
            config.train_config(),
            client=torchserve,
            store=ObjectStore(settings.s3),
            bucket=settings.s3.models_bucket,
            model_name=config.model_name,
        )
        state.bootstrap = result.summary() | {"seconds": round(time.monotonic() - started, 1)}
        state.live.version = result.model_version

        state.live.phase = "starting the services"
        await services.start_groups_at_end(config, settings.kafka)
        services.start(config, env, config.run_dir / "logs")
        await services.wait_ready(config, config.run_dir / "logs")

        admin = admin_api.Admin(config, state.keys["admin"])
        try:
            await _loop(
                state,
                config,
                settings,
                torchserve,
                admin,
                heldout,
                data_split,
                dataset,
                seed_images,
                seed_labels,
                classes,
                viewer,
            )
            state.live.phase = "writing the report"
            summary = await write_report(state, admin, pool, heldout)
        finally:
            await admin.aclose()
        state.live.phase = "done"
    finally:
        if viewer:
            viewer.update(state.live.table())
            viewer.stop()
        await torchserve.aclose()
        await pool.close()
    return summary


async def _loop(
    state: RunState,
    config: DemoConfig,
    settings: ServiceSettings,
    torchserve: TorchServeClient,
    admin: admin_api.Admin,
    heldout: Heldout,
    data_split: Split,
    dataset: FashionMnist,
    seed_images: Any,
    seed_labels: list[str],
    classes: list[str],
    viewer: RichLive | None,
) -> None:
    live = state.live
    run_started = time.monotonic()

    async def judge(version: str) -> None:
        labels = state.labels.labels
        hone = await score_production(torchserve, heldout, config.model_name, version)
        live.hone_accuracy = hone.accuracy
        control = await asyncio.to_thread(
            train_and_score_control,
            seed_images,
            seed_labels,
            state.stream,
            labels,
            classes,
            config.train_config(),
            heldout,
            config.seed,
        )
        live.control_accuracy = control.score.accuracy
        state.points.append(Point(time.monotonic() - run_started, labels, version, hone, control))

    stop_labeling = asyncio.Event()
    stop_watching = asyncio.Event()

    async def watch() -> None:
        """Judge both arms whenever TorchServe's default version of our model moves."""
        current = str(state.bootstrap["model_version"])
        # The bootstrap model is the first point of both curves (0 human labels).
        with contextlib.suppress(Exception):
            await judge(current)
        while True:
            with contextlib.suppress(Exception):
                version = await torchserve.default_version(config.model_name)
                if version and version != current:
                    current = version
                    live.version = version
                    live.promotions += 1
                    await judge(version)
            if stop_watching.is_set():
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop_watching.wait(), 3.0)

    async def refresh() -> None:
        """Keep the terminal view current (separate from `watch`, which trains for a while)."""
        while not stop_watching.is_set():
            with contextlib.suppress(Exception):
                live.queue = await admin.queue_open()
                decisions = await admin.get("gatekeeper", "/v1/gatekeeper/decisions", limit=1)
                if decisions:
                    d = decisions[0]
                    live.last_decision = f"{d['kind']} {d['model_version']}"
                stats = await admin.get("selector", "/v1/selector/stats")
                if stats:
                    live.selector_estimate = stats["production_accuracy"]["accuracy"]
            live.labels, live.ambiguous = state.labels.labels, state.labels.ambiguous
            live.errors = state.labels.errors
            if viewer:
                viewer.update(live.table())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop_watching.wait(), 2.0)

    labeling_url = admin_api.base_url(config, "labeling-api")
    async with httpx.AsyncClient(base_url=labeling_url, timeout=30.0) as client:
        labelers = [
            asyncio.create_task(
                label_until(
                    stop_labeling,
                    client,
                    state.keys[f"sim-labeler-{i}"],
                    f"sim-labeler-{i}",
                    state.truth,
                    classes,
                    state.labels,
                    seed=config.seed,
                    error_rate=config.error_rate,
                    ambiguous_share=config.ambiguous_share,
                    answer_seconds=config.answer_seconds,
                )
            )
            for i in range(config.labelers)
        ]
        watcher = asyncio.create_task(watch())
        refresher = asyncio.create_task(refresh())
        live.phase = "streaming frames, labeling, retraining"
        frames = generate_frames(
            dataset, data_split, config.frames, stream_seed(config.run_id), multi_view_share=0.3
        )

        def tracked() -> Iterator[SimFrame]:
            for frame in frames:
                # Known before it is sent, so a labeler never meets an image without truth.
                state.truth[frame.truth.image_id] = frame.truth
                state.stream.add(frame.png, frame.truth.label_name)
                yield frame

        def advance(n: int) -> None:
            state.frames_sent += n
            live.frames_sent = state.frames_sent

        report = await publish_frames(
            tracked(),
            settings.kafka,
            config.rate or None,
            truth=config.run_dir / "truth.jsonl",
            on_progress=advance,
        )
        state.frames_failed = report.failed

        live.phase = "stream ended: labeling what is queued"
        drain_started = time.monotonic()
        while time.monotonic() - drain_started < 120.0:
            await asyncio.sleep(2.0)
            # The last frames need a few seconds to be scored and selected.
            if time.monotonic() - drain_started > 15.0 and live.queue == 0:
                break
        stop_labeling.set()
        await asyncio.gather(*labelers, return_exceptions=True)
        last_label = datetime.now(UTC)

        live.phase = "waiting for the last training round and its gate decision"
        await _settle(admin, last_label, config.settle_minutes * 60.0)
        # One more look at production after the last decision, then stop watching.
        await asyncio.sleep(4.0)
        stop_watching.set()
        await asyncio.gather(watcher, refresher)


async def _settle(admin: admin_api.Admin, after: datetime, within: float) -> None:
    """Wait until a training run that started after `after` has been trained and judged."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        runs = await admin.get("trainer", "/v1/trainer/runs", limit=20) or []
        later = [r for r in runs if datetime.fromisoformat(str(r["started_at"])) > after]
        for run_row in later:
            if run_row["status"] in ("failed", "skipped", "abandoned"):
                return
            if run_row["status"] == "succeeded" and run_row.get("model_version"):
                version = await admin.get(
                    "gatekeeper", f"/v1/gatekeeper/versions/{run_row['model_version']}"
                )
                if version and version["version"]["status"] != "candidate":
                    return
        await asyncio.sleep(3.0)
