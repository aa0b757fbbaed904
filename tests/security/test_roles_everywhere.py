"""Every operation of every HTTP service needs an API key, and only the roles the threat model
(docs/security.md, "Who may do what") grants it; keys are stored hashed and revocable."""

from __future__ import annotations

import asyncio
import hashlib
import re
import sys
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from hone_common.auth import ApiKeys, Role
from tests.security.conftest import Keys

PUBLIC = {"/healthz", "/readyz"}
"""Operations anyone may call: liveness and readiness, which say nothing but "ok"."""

# (service, method, path) -> roles admitted besides admin; every other operation of a
# service is admin-only. docs/security.md carries the same table.
GRANTS: dict[tuple[str, str, str], set[Role]] = {
    ("ingest", "POST", "/v1/images"): {Role.CAMERA, Role.APP},
    ("labeling-api", "POST", "/v1/tasks/claim"): {Role.LABELER},
    ("labeling-api", "GET", "/v1/tasks/{task_id}"): {Role.LABELER},
    ("labeling-api", "GET", "/v1/tasks/{task_id}/image"): {Role.LABELER},
    ("labeling-api", "POST", "/v1/tasks/{task_id}/answer"): {Role.LABELER},
    ("labeling-api", "POST", "/v1/answers/undo"): {Role.LABELER},
    ("labeling-api", "GET", "/v1/stats/me"): {Role.LABELER},
    ("labeling-api", "GET", "/v1/classes"): {Role.LABELER, Role.APP},
    ("labeling-api", "POST", "/v1/feedback"): {Role.APP},
}


def operations(apps: dict[str, FastAPI]) -> list[tuple[str, str, str, dict[str, Any]]]:
    found = []
    for service, app in apps.items():
        for path, item in app.openapi()["paths"].items():
            for method, operation in item.items():
                found.append((service, method.upper(), path, operation))
    return found


def concrete(path: str) -> str:
    """A path with every parameter filled in (ids that exist nowhere)."""
    return re.sub(r"\{[^}]+\}", lambda _: str(uuid.uuid4()), path)


async def call(app: FastAPI, method: str, path: str, key: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
        return await client.request(method, concrete(path), headers=headers, json={})


def test_every_operation_but_liveness_and_readiness_requires_a_key(
    apps: dict[str, FastAPI],
) -> None:
    unprotected = [
        f"{service} {method} {path}"
        for service, method, path, operation in operations(apps)
        if path not in PUBLIC and not operation.get("security")
    ]
    assert not unprotected


def test_the_grants_name_only_operations_that_exist(apps: dict[str, FastAPI]) -> None:
    existing = {(s, m, p) for s, m, p, _ in operations(apps)}
    assert set(GRANTS) <= existing, set(GRANTS) - existing


async def test_no_key_an_unknown_key_a_revoked_key_or_another_scheme_is_refused_with_401(
    apps: dict[str, FastAPI], keys: Keys
) -> None:
    unknown = f"hone_{uuid.uuid4().hex[:12]}_{uuid.uuid4().hex}"
    admin = keys.by_role[Role.ADMIN]
    for service, method, path, _ in operations(apps):
        if path in PUBLIC:
            continue
        app = apps[service]
        for key in (None, unknown, keys.revoked, "", admin[:-1]):
            answer = await call(app, method, path, key)
            assert answer.status_code == 401, (service, method, path, key, answer.text)
            assert answer.headers["www-authenticate"] == "Bearer"
        basic = await _request(app, method, path, {"Authorization": f"Basic {admin}"})
        assert basic.status_code == 401, (service, method, path, basic.text)


async def _request(app: FastAPI, method: str, path: str, headers: dict[str, str]) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
        return await client.request(method, concrete(path), headers=headers, json={})


async def test_each_role_is_admitted_exactly_where_it_is_granted(
    apps: dict[str, FastAPI], keys: Keys
) -> None:
    for service, method, path, _ in operations(apps):
        if path in PUBLIC:
            continue
        granted = GRANTS.get((service, method, path), set()) | {Role.ADMIN}
        for role, key in keys.by_role.items():
            answer = await call(apps[service], method, path, key)
            where = (service, method, path, role.value, answer.status_code, answer.text[:200])
            if role in granted:
                # Past the key check (what happens next needs the running service).
                assert answer.status_code not in (401, 403), where
            else:
                assert answer.status_code == 403, where
                assert answer.json()["error"]["code"] == "forbidden", where


async def test_keys_are_stored_as_hashes_only(pool: asyncpg.Pool[Any], keys: Keys) -> None:
    rows = await pool.fetch("SELECT * FROM auth.api_keys WHERE key_id = ANY($1)", keys.ids)
    stored = {row["key_hash"] for row in rows}
    assert stored == {hashlib.sha256(k.encode()).hexdigest() for k in keys.by_role.values()}
    for row in rows:
        text = " ".join(str(value) for value in dict(row).values())
        for key in keys.by_role.values():
            secret = key.rsplit("_", 1)[1]
            assert secret not in text


async def test_listing_keys_never_shows_a_secret_or_its_hash(
    keys: Keys, pool: asyncpg.Pool[Any]
) -> None:
    hone_keys = str(Path(sys.executable).with_name("hone-keys"))
    process = await asyncio.create_subprocess_exec(
        hone_keys, "list", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    listing = out.decode()
    assert str(keys.ids[0]) in listing
    for key in keys.by_role.values():
        assert key.rsplit("_", 1)[1] not in listing
        assert hashlib.sha256(key.encode()).hexdigest() not in listing


async def test_a_revoked_key_is_refused_at_once(
    apps: dict[str, FastAPI], pool: asyncpg.Pool[Any]
) -> None:
    registry = ApiKeys(pool)
    principal, key = await registry.issue(f"security-revoke-{uuid.uuid4().hex[:8]}", Role.ADMIN)
    app = apps["selector"]
    assert (await call(app, "GET", "/v1/selector/stats", key)).status_code not in (401, 403)
    assert await registry.revoke(principal.key_id)
    assert (await call(app, "GET", "/v1/selector/stats", key)).status_code == 401


@pytest.mark.parametrize(
    "header",
    ["Bearer", "Bearer  ", "bearer hone_x_y", "Bearer hone_x_y extra", "Token abc", "Bearer \x00"],
)
async def test_malformed_authorization_headers_are_refused_without_a_server_error(
    apps: dict[str, FastAPI], header: str
) -> None:
    answer = await _request(
        apps["selector"], "GET", "/v1/selector/stats", {"Authorization": header}
    )
    assert answer.status_code in (401, 403), answer.text
