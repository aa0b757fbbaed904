"""A private local stack and Hone services as killable subprocesses, for fault injection.

Fault tests stop and restart servers, so they never touch the shared stack (`.local-stack` on
the default ports) that other tests use: `deploy/local/stack` runs a second copy with its own
state directory and every port moved by one offset (`free_ports`: +100 unless taken). The state
directory is under /tmp on purpose: the stack recognises its processes by the state directory
in their command line, and a path that extends the shared one (`.local-stack-faults`) would
match the shared stack's check too.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from pydantic import SecretStr

from hone_common.settings import (
    KafkaSettings,
    PostgresSettings,
    S3Settings,
    ServiceSettings,
    TorchServeSettings,
)
from tests.live_api import free_port

ROOT = Path(__file__).resolve().parents[2]
STACK = ROOT / "deploy" / "local" / "stack"
BIN = Path(sys.executable).parent

DEFAULT_PORTS = {
    "HONE_STACK_POSTGRES_PORT": 5432,
    "HONE_STACK_KAFKA_PORT": 9092,
    "HONE_STACK_KAFKA_CONTROLLER_PORT": 9093,
    "HONE_STACK_MINIO_PORT": 9000,
    "HONE_STACK_MINIO_CONSOLE_PORT": 9001,
    "HONE_STACK_TORCHSERVE_INFERENCE_PORT": 8080,
    "HONE_STACK_TORCHSERVE_MANAGEMENT_PORT": 8081,
    "HONE_STACK_TORCHSERVE_METRICS_PORT": 8082,
    "HONE_STACK_TORCHSERVE_GRPC_INFERENCE_PORT": 7070,
    "HONE_STACK_TORCHSERVE_GRPC_MANAGEMENT_PORT": 7071,
    "HONE_STACK_PROMETHEUS_PORT": 9090,
}
"""The shared stack's ports; a private stack moves every one by the same offset."""
OFFSETS = (100, 300, 500, 700, 900)
"""Tried in order; +200 is left to bench/load.py."""


def shifted(offset: int) -> dict[str, int]:
    return {name: port + offset for name, port in DEFAULT_PORTS.items()}


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_ports() -> dict[str, int]:
    """The first offset whose ports are all free (another checkout's fault tier, e.g. CI on
    the same machine, may hold +100); HONE_FAULTS_PORT_OFFSET forces one."""
    forced = os.environ.get("HONE_FAULTS_PORT_OFFSET")
    for offset in [int(forced)] if forced else OFFSETS:
        ports = shifted(offset)
        if all(port_free(p) for p in ports.values()):
            return ports
    raise StackError(f"no free port set for a private stack (offsets tried: {OFFSETS})")


def default_state() -> Path:
    """Per checkout, so two checkouts on one machine never share (or wipe) a private stack."""
    digest = hashlib.sha1(str(ROOT).encode()).hexdigest()[:8]
    return Path(f"/tmp/hone-faults-{digest}")


COMPONENTS = ("postgres", "kafka", "minio", "torchserve")
"""Prometheus is left out: nothing here reads it, and the machine is small."""


def clean_environment() -> dict[str, str]:
    """This process's environment without any Hone setting: tests/conftest.py loads the shared
    stack's addresses into it, and a subprocess must never inherit them."""
    return {k: v for k, v in os.environ.items() if not k.startswith("HONE_")}


class StackError(RuntimeError):
    pass


class PrivateStack:
    """`deploy/local/stack` on its own state directory and ports."""

    def __init__(self, state: Path, ports: dict[str, int] | None = None) -> None:
        self.state = state
        self.ports = ports or {}
        self.env: dict[str, str] = {}

    def _stack_env(self) -> dict[str, str]:
        env = clean_environment()
        env["HONE_STACK_STATE"] = str(self.state)
        env.update({name: str(port) for name, port in self.ports.items()})
        return env

    async def run(self, *args: str, within: float = 600.0) -> float:
        """Run one stack command; returns how long it took. Its output goes to the state's
        logs (stack.log), and into the error if it fails."""
        log = self.state / "logs" / "stack.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        with log.open("ab") as out:
            out.write(f"\n$ stack {' '.join(args)}\n".encode())
            out.flush()
            process = await asyncio.create_subprocess_exec(
                str(STACK), *args, env=self._stack_env(), stdout=out, stderr=out
            )
            try:
                code = await asyncio.wait_for(process.wait(), within)
            except TimeoutError:
                process.kill()
                await process.wait()
                raise StackError(f"stack {' '.join(args)}: no answer after {within:.0f}s") from None
        if code != 0:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
            raise StackError(f"stack {' '.join(args)} failed ({code}):\n{tail}")
        return time.monotonic() - started

    async def start(self) -> None:
        """A fresh stack: whatever a previous session left is stopped and wiped first."""
        if self.state.exists():
            await self.run("down")
            shutil.rmtree(self.state)
        # Chosen once the old one is down: its ports are free again.
        self.ports = self.ports or free_ports()
        # The PostgreSQL server runs as its own OS user, which must reach its data directory.
        self.state.mkdir(parents=True)
        self.state.chmod(0o755)
        await self.run("up", *COMPONENTS)
        self.env = self._client_env()

    async def stop(self) -> None:
        await self.run("down")
        # Keep the logs for a post-mortem; the data (Kafka preallocates indexes) goes.
        for child in self.state.iterdir():
            if child.name != "logs":
                shutil.rmtree(child) if child.is_dir() else child.unlink()

    async def down(self, component: str) -> float:
        return await self.run("down", component)

    async def up(self, component: str) -> float:
        return await self.run("up", component)

    def _client_env(self) -> dict[str, str]:
        lines = subprocess.run(
            [str(STACK), "env"], env=self._stack_env(), check=True, capture_output=True, text=True
        ).stdout
        env = {}
        for line in lines.splitlines():
            line = line.strip().removeprefix("export ").strip()
            if line and not line.startswith("#") and "=" in line:
                name, _, value = line.partition("=")
                env[name] = value
        return env

    def settings(self) -> ServiceSettings:
        """Settings of this process for the private stack (never from the environment)."""
        e = self.env
        return ServiceSettings(
            kafka=KafkaSettings(bootstrap_servers=e["HONE_KAFKA__BOOTSTRAP_SERVERS"]),
            postgres=PostgresSettings(dsn=SecretStr(e["HONE_POSTGRES__DSN"])),
            s3=S3Settings(
                endpoint=e["HONE_S3__ENDPOINT"],
                access_key=SecretStr(e["HONE_S3__ACCESS_KEY"]),
                secret_key=SecretStr(e["HONE_S3__SECRET_KEY"]),
            ),
            torchserve=TorchServeSettings(
                inference_url=e["HONE_TORCHSERVE__INFERENCE_URL"],
                management_url=e["HONE_TORCHSERVE__MANAGEMENT_URL"],
                metrics_url=e["HONE_TORCHSERVE__METRICS_URL"],
                key_file=Path(e["HONE_TORCHSERVE__KEY_FILE"]),
            ),
        )


class ServiceProcess:
    """One Hone service as a subprocess of its console script, so it can be SIGKILLed."""

    def __init__(self, name: str, script: str, env: dict[str, str], logs: Path) -> None:
        self.name = name
        self.script = BIN / script
        self.port = free_port()
        self.env = clean_environment() | env | {"HONE_HTTP__PORT": str(self.port)}
        self.log = logs / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    async def start(self, ready_within: float = 120.0) -> float:
        """Start and wait until /readyz answers 200; returns the seconds it took."""
        self.log.parent.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        with self.log.open("ab") as out:
            out.write(f"\n===== start {time.strftime('%H:%M:%S')} =====\n".encode())
            out.flush()
            self.process = subprocess.Popen(  # noqa: ASYNC220 - returns at once
                [str(self.script)],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        await self.wait_ready(ready_within)
        return time.monotonic() - started

    async def wait_ready(self, within: float) -> None:
        deadline = time.monotonic() + within
        async with httpx.AsyncClient(timeout=5.0) as client:
            while True:
                if not self.alive():
                    raise RuntimeError(f"{self.name} exited: see {self.log}")
                try:
                    if (await client.get(f"{self.url}/readyz")).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{self.name} not ready after {within:.0f}s: see {self.log}")
                await asyncio.sleep(0.25)

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks, no offset commits, no outbox flush."""
        if self.process is not None and self.alive():
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)

    async def stop(self, within: float = 40.0) -> None:
        if self.process is None or not self.alive():
            return
        self.process.terminate()
        try:
            await asyncio.wait_for(asyncio.to_thread(self.process.wait), within)
        except TimeoutError:
            self.kill()

    def rss_bytes(self) -> int | None:
        """Resident memory of the process now (VmRSS), None if it is gone."""
        if self.pid is None:
            return None
        try:
            status = Path(f"/proc/{self.pid}/status").read_text()
        except OSError:
            return None
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return None
