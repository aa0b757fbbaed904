"""Shared pieces of the deployment tests: the repository layout, the services, the tools that
deploy/tools/install.sh puts into its cache, and a check of HONE_ names against Settings."""

from __future__ import annotations

import importlib
import os
import re
import shutil
import subprocess
import sys
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from pydantic_settings import BaseSettings

from hone_common.settings import HttpSettings, ServiceSettings

ROOT = Path(__file__).resolve().parents[3]


@dataclass(frozen=True)
class Service:
    name: str
    port: int

    @property
    def package(self) -> str:
        return f"hone-{self.name}"

    @property
    def module(self) -> str:
        return "hone_" + self.name.replace("-", "_")

    @property
    def dockerfile(self) -> Path:
        return ROOT / "services" / self.name / "Dockerfile"


SERVICES = (
    Service("labeling-api", 8000),
    Service("ingest", 8001),
    Service("scorer", 8002),
    Service("selector", 8003),
    Service("trainer", 8004),
    Service("gatekeeper", 8005),
)
SERVICE_NAMES = [service.name for service in SERVICES]

# ------------------------------------------------------------------------------------ tools

TOOLS_CACHE = Path(os.environ.get("HONE_TOOLS_CACHE", Path.home() / ".cache" / "hone-tools"))
K8S_SCHEMAS = TOOLS_CACHE / "kubernetes-json-schema"
NODE_MODULES = TOOLS_CACHE / "node" / "node_modules"


def tool(name: str) -> str:
    """Path of a tool from deploy/tools/install.sh's cache (or the system, for promtool)."""
    candidate = TOOLS_CACHE / "bin" / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found:
        return found
    pytest.fail(f"{name} is not installed: run deploy/tools/install.sh (cache {TOOLS_CACHE})")


def run(*args: str | Path, cwd: Path = ROOT, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, check=False, **kwargs
    )


def uv(
    *args: str, cwd: Path = ROOT, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """uv as the Makefile runs it (on PATH, else `python3.11 -m uv`), never fetching Pythons."""
    command = [shutil.which("uv") or sys.executable, *([] if shutil.which("uv") else ["-m", "uv"])]
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("UV_", "VIRTUAL_ENV"))},
        "UV_PYTHON_DOWNLOADS": "never",
        "UV_PYTHON": shutil.which("python3.11") or sys.executable,
        **(env or {}),
    }
    return subprocess.run(
        [*command, *args], cwd=cwd, capture_output=True, text=True, check=False, env=env
    )


# ------------------------------------------------------------------------------- Dockerfile


@dataclass(frozen=True)
class Instruction:
    keyword: str
    value: str
    stage: int


def dockerfile_instructions(path: Path) -> list[Instruction]:
    """Instructions with continuation lines joined and heredoc bodies folded into their RUN."""
    instructions: list[Instruction] = []
    lines = path.read_text().splitlines()
    stage = -1
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        i += 1
        if not line or line.startswith("#"):
            continue
        while line.endswith("\\") and i < len(lines):
            line = line[:-1] + " " + lines[i].strip()
            i += 1
        heredoc = re.search(r"<<-?\s*['\"]?(\w+)['\"]?\s*$", line)
        if heredoc:
            body = []
            while i < len(lines) and lines[i].strip() != heredoc.group(1):
                body.append(lines[i])
                i += 1
            i += 1
            line = line + "\n" + "\n".join(body)
        keyword, _, value = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        instructions.append(Instruction(keyword, value.strip(), stage))
    return instructions


# --------------------------------------------------------------------------------- settings


def settings_class(service: str) -> type[ServiceSettings] | None:
    """The service's `Settings`, or None while the service has no settings module yet."""
    module_name = "hone_" + service.replace("-", "_") + ".settings"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name is not None and module_name.startswith(error.name):
            return None
        raise
    cls = module.Settings
    assert issubclass(cls, ServiceSettings)
    return typing.cast(type[ServiceSettings], cls)


class ConventionSettings(ServiceSettings):
    """Stand-in while a service has no settings module: the shared sections plus `http`, as
    every service's Settings has (docs/services.md)."""

    http: HttpSettings = HttpSettings()


def service_settings(service: str) -> type[ServiceSettings]:
    return settings_class(service) or ConventionSettings


def _unwrap(annotation: Any) -> Any:
    """`X | None` -> X; other annotations unchanged."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def setting_exists(cls: type[BaseSettings] | type[BaseModel], env_name: str) -> bool:
    """True if `HONE_A__B` names a field path (a.b) of the settings model."""
    prefix = str(ServiceSettings.model_config.get("env_prefix", ""))
    delimiter = str(ServiceSettings.model_config.get("env_nested_delimiter", "__"))
    if not env_name.startswith(prefix):
        return False
    path = env_name[len(prefix) :].lower().split(delimiter)
    model: Any = cls
    for part in path:
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return False
        field = model.model_fields.get(part)
        if field is None:
            return False
        annotation = _unwrap(field.annotation)
        if typing.get_origin(annotation) is dict:
            return True  # a mapping (JSON in the variable) takes any key below it
        model = annotation
    return True


def unknown_settings(service: str, names: list[str]) -> list[str]:
    """HONE_ names the service's Settings (before it exists, the convention) does not read."""
    cls = service_settings(service)
    return [name for name in names if name.startswith("HONE_") and not setting_exists(cls, name)]


def load_settings(service: str, env: dict[str, str]) -> ServiceSettings:
    """Instantiate the service's Settings from exactly `env` (the process's HONE_ vars hidden)."""
    cls = service_settings(service)
    saved = {k: v for k, v in os.environ.items() if k.startswith("HONE_")}
    try:
        for key in saved:
            del os.environ[key]
        os.environ.update(env)
        return cls()
    finally:
        for key in env:
            os.environ.pop(key, None)
        os.environ.update(saved)


# ---------------------------------------------------------------------------------- compose

_VARIABLE = re.compile(
    r"\$(?:\{(?P<braced>[^}]+)\}|(?P<plain>[A-Za-z_][A-Za-z0-9_]*)|(?P<dollar>\$))"
)


def _strings(tree: Any) -> list[str]:
    if isinstance(tree, dict):
        return [s for value in tree.values() for s in _strings(value)]
    if isinstance(tree, list):
        return [s for value in tree for s in _strings(value)]
    return [tree] if isinstance(tree, str) else []


def compose_variables(tree: Any) -> dict[str, str | None]:
    """Every ${VAR...} the values of a parsed compose file use -> its default, None if none."""
    found: dict[str, str | None] = {}
    for match in _VARIABLE.finditer("\n".join(_strings(tree))):
        expression = match.group("braced") or match.group("plain")
        if not expression:
            continue
        name, operator, default = re.match(
            r"([A-Za-z_][A-Za-z0-9_]*)(:?[-?]?)(.*)", expression
        ).groups()  # type: ignore[union-attr]
        found[name] = default if operator in (":-", "-") else found.get(name)
    return found


def interpolate(tree: Any, env: dict[str, str]) -> Any:
    """Compose-style interpolation of a parsed compose file's values (compose interpolates
    after parsing, so comments are left alone): ${VAR}, ${VAR:-default}, ${VAR:?error}, $$."""
    if isinstance(tree, dict):
        return {key: interpolate(value, env) for key, value in tree.items()}
    if isinstance(tree, list):
        return [interpolate(value, env) for value in tree]
    if not isinstance(tree, str):
        return tree

    def replace(match: re.Match[str]) -> str:
        if match.group("dollar"):
            return "$"
        expression = match.group("braced") or match.group("plain") or ""
        name, operator, rest = re.match(
            r"([A-Za-z_][A-Za-z0-9_]*)(:?[-?]?)(.*)", expression
        ).groups()  # type: ignore[union-attr]
        value = env.get(name)
        if operator in (":-", "-"):
            return value if value else rest
        if operator in (":?", "?") and not value:
            raise KeyError(f"{name}: {rest}")
        return value or ""

    return _VARIABLE.sub(replace, tree)


def env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values
