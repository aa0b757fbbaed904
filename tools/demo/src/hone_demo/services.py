"""The six Hone services as subprocesses: their environment, pid files, readiness and stop.

Each service runs from its console script with the local stack's env file plus the demo's
settings; pid files live under `.local-stack/services/` so `python -m hone_demo stop` (or
another shell) can end them after the demo itself has exited.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import OffsetAndMetadata

from hone_common.kafka import ensure_topics
from hone_common.settings import KafkaSettings
from hone_common.topics import Topic
from hone_common.torchserve import TorchServeClient, registered_versions
from hone_demo.config import DemoConfig
from hone_simulator.data import CLASSES


@dataclass(frozen=True)
class Service:
    name: str
    offset: int
    """Port = the demo's base port + offset."""
    group_env: str
    topics: tuple[Topic, ...]
    schema_env: str | None = None

    def port(self, config: DemoConfig) -> int:
        return config.http_port + self.offset


SERVICES: tuple[Service, ...] = (
    Service(
        "labeling-api",
        0,
        "HONE_LABELING__CONSUMER_GROUP",
        (Topic.REVIEW_REQUESTED,),
        "HONE_LABELING__SCHEMA_NAME",
    ),
    Service("ingest", 1, "HONE_INGEST__CONSUMER_GROUP", (Topic.CAMERA_FRAMES,)),
    Service(
        "scorer", 2, "HONE_SCORER__CONSUMER_GROUP", (Topic.IMAGE_RECEIVED, Topic.MODEL_PROMOTED)
    ),
    Service(
        "selector",
        3,
        "HONE_SELECTOR__CONSUMER_GROUP",
        (Topic.IMAGE_SCORED, Topic.LABEL_SUBMITTED, Topic.MODEL_PROMOTED),
        "HONE_SELECTOR__SCHEMA_NAME",
    ),
    Service(
        "trainer",
        4,
        "HONE_TRAINER__CONSUMER_GROUP",
        (Topic.IMAGE_RECEIVED, Topic.LABEL_SUBMITTED, Topic.MODEL_PROMOTED),
        "HONE_TRAINER__SCHEMA_NAME",
    ),
    Service("gatekeeper", 5, "HONE_GATEKEEPER__CONSUMER_GROUP", (Topic.MODEL_CANDIDATE,)),
)


class ServiceError(RuntimeError):
    """A service did not start or become ready."""


def read_env_file(path: Path) -> dict[str, str]:
    """`export NAME=value` lines of the local stack's env file."""
    env: dict[str, str] = {}
    if not path.exists():
        return env
    for raw in path.read_text().splitlines():
        line = raw.strip().removeprefix("export ").strip()
        if line and not line.startswith("#") and "=" in line:
            name, _, value = line.partition("=")
            env[name.strip()] = value.strip().strip("'\"")
    return env


def group_id(config: DemoConfig, service: Service) -> str:
    return f"hone-{config.schema_suffix}-{service.name}"


def demo_env(config: DemoConfig) -> dict[str, str]:
    """Settings every service of this run shares (each reads only its own section)."""
    train = config.train_config()
    env = {
        "HONE_TORCHSERVE__MODEL_NAME": config.model_name,
        "HONE_KAFKA__AUTO_OFFSET_RESET": "latest",
        "HONE_INGEST__AUTO_OFFSET_RESET": "latest",
        "HONE_LOG_JSON": "true",
        # Demo pace: retrain every few labels, spend the label budget in minutes, not hours.
        "HONE_TRAINER__SCHEDULE__EVERY_LABELS": str(config.every_labels),
        "HONE_TRAINER__SCHEDULE__EVERY_MINUTES": str(config.every_minutes),
        "HONE_TRAINER__SCHEDULE__CHECK_SECONDS": "5",
        "HONE_TRAINER__TRAIN__EPOCHS": str(train.epochs),
        "HONE_TRAINER__TRAIN__THREADS": str(train.threads),
        "HONE_TRAINER__TRAIN__SEED": str(train.seed),
        "HONE_TRAINER__TRAIN__PROGRESS": "false",
        "HONE_TRAINER__DATASET__SPLITS__TRAIN": f"{0.9 - config.test_share:.4f}",
        "HONE_TRAINER__DATASET__SPLITS__WEAKNESS": "0.1",
        "HONE_TRAINER__DATASET__SPLITS__TEST": f"{config.test_share:.4f}",
        # The bootstrap's classes, in its order. Labels of other classes (other tests publish
        # to the same topics with their own class names) stay out of training and evaluation.
        "HONE_TRAINER__DATASET__CLASSES": json.dumps(list(CLASSES)),
        "HONE_SELECTOR__BUDGET__REVIEWS_PER_HOUR": str(config.reviews_per_hour),
        "HONE_SELECTOR__BUDGET__BURST_MINUTES": "1",
        "HONE_SELECTOR__RANDOM__SHARE": str(config.random_share),
        "HONE_SELECTOR__RANDOM__SEED": config.run_id,
        "HONE_SELECTOR__THRESHOLD__WARMUP_IMAGES": "50",
        # Test splits of a few dozen labels: a 20% significance level and no minimum gain let
        # a clear improvement through while a worse model is still refused.
        "HONE_GATEKEEPER__RULES__ALPHA": str(config.alpha),
        "HONE_GATEKEEPER__RULES__MIN_ACCURACY_GAIN": str(config.min_accuracy_gain),
        "HONE_GATEKEEPER__RULES__MAX_MACRO_F1_DROP": str(config.max_macro_f1_drop),
    }
    for service in SERVICES:
        env[service.group_env] = group_id(config, service)
        if service.schema_env:
            env[service.schema_env] = f"{service.name.split('-')[0]}_{config.schema_suffix}"
    return env


def labeling_schema(config: DemoConfig) -> str:
    return f"labeling_{config.schema_suffix}"


def base_env(config: DemoConfig) -> dict[str, str]:
    """The stack's addresses and secrets (the process environment wins), then the demo's."""
    return {**read_env_file(config.env_file), **os.environ, **demo_env(config)}


async def start_groups_at_end(config: DemoConfig, kafka: KafkaSettings) -> None:
    """Commit every consumer group of this run at the current end of its topics.

    The topics are shared with other runs and tests: a new group reading from the beginning
    would replay their history, and one starting at `latest` could miss the first frames if it
    joins after they are sent. A committed offset at the end is exactly "from now on".
    """
    await ensure_topics(kafka)
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
    await admin.start()
    try:
        described = await admin.describe_topics([t.value for t in Topic])
    finally:
        await admin.close()
    partitions = {d["topic"]: sorted(p["partition"] for p in d["partitions"]) for d in described}
    for service in SERVICES:
        owned = [TopicPartition(t.value, p) for t in service.topics for p in partitions[t.value]]
        consumer = AIOKafkaConsumer(
            bootstrap_servers=kafka.bootstrap_servers,
            group_id=group_id(config, service),
            enable_auto_commit=False,
        )
        await consumer.start()
        try:
            consumer.assign(owned)
            ends = await consumer.end_offsets(owned)
            await consumer.commit({tp: OffsetAndMetadata(end, "") for tp, end in ends.items()})
        finally:
            await consumer.stop()


def pid_file(config: DemoConfig, name: str) -> Path:
    return config.state_dir / f"{name}.pid"


def start(config: DemoConfig, env: Mapping[str, str], log_dir: Path) -> dict[str, int]:
    """Start every service in its own session (it outlives the demo); returns pids."""
    config.state_dir.mkdir(parents=True, exist_ok=True)
    log_dir.mkdir(parents=True, exist_ok=True)
    running = running_pids(config)
    if running:
        raise ServiceError(
            f"services already running ({', '.join(running)}); stop them first: "
            "python -m hone_demo stop"
        )
    bin_dir = Path(sys.executable).parent
    pids: dict[str, int] = {}
    for service in SERVICES:
        script = bin_dir / f"hone-{service.name}"
        service_env = {**env, "HONE_HTTP__PORT": str(service.port(config))}
        with (log_dir / f"{service.name}.log").open("ab") as log:
            process = subprocess.Popen(  # noqa: S603 - our own console script
                [str(script)],
                env=service_env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=config.run_dir,
            )
        pid_file(config, service.name).write_text(f"{process.pid}\n")
        pids[service.name] = process.pid
    return pids


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours still answers kill(0); reap it if it is one.
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    return True


def running_pids(config: DemoConfig) -> dict[str, int]:
    found: dict[str, int] = {}
    for service in SERVICES:
        path = pid_file(config, service.name)
        if not path.exists():
            continue
        try:
            pid = int(path.read_text().strip())
        except ValueError:
            continue
        if _alive(pid):
            found[service.name] = pid
    return found


async def wait_ready(config: DemoConfig, log_dir: Path, within: float = 180.0) -> None:
    """Poll every service's /readyz until all answer 200; fail early if one exits."""
    deadline = time.monotonic() + within
    pending = {s.name: f"http://127.0.0.1:{s.port(config)}/readyz" for s in SERVICES}
    async with httpx.AsyncClient(timeout=2.0) as client:
        while pending:
            for name, url in list(pending.items()):
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(url)).status_code == 200:
                        del pending[name]
                        continue
                if name not in running_pids(config):
                    raise ServiceError(f"{name} exited:\n{tail(log_dir / f'{name}.log')}")
            if not pending:
                return
            if time.monotonic() > deadline:
                raise ServiceError(f"not ready after {within:.0f} s: {', '.join(pending)}")
            await asyncio.sleep(0.5)


def tail(path: Path, lines: int = 20) -> str:
    if not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def stop(config: DemoConfig, timeout: float = 30.0) -> list[str]:
    """SIGTERM every service this state dir knows of (its whole session), then SIGKILL."""
    pids = running_pids(config)
    for pid in pids.values():
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_alive(pid) for pid in pids.values()):
        time.sleep(0.2)
    for pid in pids.values():
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
    for service in SERVICES:
        pid_file(config, service.name).unlink(missing_ok=True)
    return sorted(pids)


async def unregister_model(client: TorchServeClient, model: str) -> list[str]:
    """Remove every version of a demo's model from TorchServe (each holds a worker process);
    the default goes last, since TorchServe refuses to drop a default while others remain."""
    versions = await registered_versions(client, model)
    default = await client.default_version(model)
    removed: list[str] = []
    for version in sorted(versions, key=lambda v: v == default):
        await client.unregister(version, model)
        removed.append(version)
    return removed
