"""API keys against the real PostgreSQL: issue, check, revoke; roles enforced on a route."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from hone_common import auth
from hone_common.auth import ApiKeys, Principal, Role, require_role
from hone_common.http import install_error_handlers
from hone_common.settings import ServiceSettings


@pytest.fixture
async def keys(settings: ServiceSettings, pool: asyncpg.Pool[Any]) -> ApiKeys:
    await auth.migrate(settings.postgres)
    return ApiKeys(pool)


@pytest.fixture
async def client(keys: ApiKeys) -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    app.state.api_keys = keys
    install_error_handlers(app)

    @app.post("/upload")
    async def upload(
        who: Annotated[Principal, require_role(Role.CAMERA, Role.APP)],
    ) -> dict[str, str]:
        return {"name": who.name, "role": who.role.value}

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


async def test_keys_are_stored_hashed_never_in_clear(
    keys: ApiKeys, pool: asyncpg.Pool[Any], unique: str
) -> None:
    principal, key = await keys.issue(f"cam-{unique}", Role.CAMERA)
    stored = await pool.fetchval(
        "SELECT key_hash FROM auth.api_keys WHERE key_id = $1", principal.key_id
    )
    assert stored == auth.hash_key(key)
    assert key not in stored
    assert (await keys.verify(key)) == principal


async def test_a_valid_key_with_an_allowed_role_is_admitted(
    keys: ApiKeys, client: httpx.AsyncClient, unique: str
) -> None:
    _, key = await keys.issue(f"cam-{unique}", Role.CAMERA)
    response = await client.post("/upload", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200
    assert response.json() == {"name": f"cam-{unique}", "role": "camera"}


async def test_admin_keys_are_admitted_everywhere(
    keys: ApiKeys, client: httpx.AsyncClient, unique: str
) -> None:
    _, key = await keys.issue(f"ops-{unique}", Role.ADMIN)
    response = await client.post("/upload", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200


@pytest.mark.parametrize("header", [None, "Bearer ", "Bearer hone_nope_nope", "Basic abc"])
async def test_missing_or_unknown_keys_are_401(
    client: httpx.AsyncClient, header: str | None
) -> None:
    headers = {"Authorization": header} if header is not None else {}
    response = await client.post("/upload", headers=headers)
    assert response.status_code == 401
    assert response.json()["error"]["code"] in ("unauthenticated", "invalid_api_key")
    assert response.headers["www-authenticate"] == "Bearer"


async def test_a_revoked_key_is_401(keys: ApiKeys, client: httpx.AsyncClient, unique: str) -> None:
    principal, key = await keys.issue(f"cam-{unique}", Role.CAMERA)
    assert await keys.revoke(principal.key_id)
    assert not await keys.revoke(principal.key_id)  # revoking twice reports nothing to do
    response = await client.post("/upload", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"


async def test_a_key_of_another_role_is_403(
    keys: ApiKeys, client: httpx.AsyncClient, unique: str
) -> None:
    _, key = await keys.issue(f"ann-{unique}", Role.LABELER)
    response = await client.post("/upload", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"
