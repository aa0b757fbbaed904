"""Test tiers by folder: tests/unit (no servers), tests/integration, tests/security and
tests/e2e (the real local stack started by `deploy/local/stack up`; settings come from its env
file), tests/faults (a private stack of their own, see tests/faults/conftest.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STACK_ENV = Path(os.environ.get("HONE_STACK_STATE", ROOT / ".local-stack")) / "hone.env"


def _load_stack_env() -> None:
    """Use the local stack's addresses and secrets unless the environment already has them."""
    if not STACK_ENV.exists():
        return
    for line in STACK_ENV.read_text().splitlines():
        line = line.strip().removeprefix("export ").strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        name, _, value = line.partition("=")
        os.environ.setdefault(name, value.strip().strip("'\""))


_load_stack_env()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        tier = Path(str(item.fspath)).relative_to(ROOT).parts
        if len(tier) < 2 or tier[0] != "tests":
            continue
        if tier[1] in ("unit", "integration", "e2e", "faults"):
            item.add_marker(getattr(pytest.mark, tier[1]))
        elif tier[1] == "security":  # against the real local stack, like integration
            item.add_marker(pytest.mark.integration)


pytest_plugins = ("tests.stack",)
