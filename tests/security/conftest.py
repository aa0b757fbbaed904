"""Security tests against the real local stack: API keys of every role, and every HTTP
service's app built from its own `create_app` (the role checks need only the key registry)."""

from __future__ import annotations

import importlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest
from fastapi import FastAPI

from hone_common.auth import ApiKeys, Role

SERVICES = {
    "ingest": "hone_ingest.app",
    "scorer": "hone_scorer.app",
    "selector": "hone_selector.app",
    "labeling-api": "hone_labeling_api.app",
    "trainer": "hone_trainer.app",
    "gatekeeper": "hone_gatekeeper.app",
}


@dataclass(frozen=True)
class Keys:
    by_role: dict[Role, str]
    revoked: str
    """An admin key that was revoked: it must open nothing."""
    ids: list[uuid.UUID]


@pytest.fixture(scope="session")
async def keys(pool: asyncpg.Pool[Any]) -> AsyncIterator[Keys]:
    registry = ApiKeys(pool)
    unique = uuid.uuid4().hex[:8]
    by_role, ids = {}, []
    for role in Role:
        principal, key = await registry.issue(f"security-test-{role.value}-{unique}", role)
        by_role[role] = key
        ids.append(principal.key_id)
    revoked_principal, revoked = await registry.issue(f"security-test-revoked-{unique}", Role.ADMIN)
    await registry.revoke(revoked_principal.key_id)
    yield Keys(by_role, revoked, ids)
    for key_id in ids:
        await registry.revoke(key_id)


@pytest.fixture(scope="session")
def apps(pool: asyncpg.Pool[Any]) -> dict[str, FastAPI]:
    """Every HTTP service's app, not started: its routes and its key checks, nothing else
    (no consumers join the shared topics' groups). Requests that pass the key check reach
    handlers whose collaborators do not exist, so only refusals are meaningful here."""
    built = {}
    for service, module in SERVICES.items():
        app: FastAPI = importlib.import_module(module).create_app()
        app.state.api_keys = ApiKeys(pool)
        built[service] = app
    return built
