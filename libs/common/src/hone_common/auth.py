"""API keys with roles (DESIGN.md §1): issued by a CLI, stored hashed in the `auth` schema,
checked by a FastAPI dependency on every HTTP-facing service.

A key is `hone_<key id>_<secret>`: 32 random bytes, so a plain SHA-256 of the whole key is a
safe way to store it (nothing to brute-force; slow password hashes protect low-entropy
secrets). Only the hash is stored; the key is shown once, when it is issued.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import asyncpg
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel

from hone_common.http import ApiError
from hone_common.migrations import upgrade
from hone_common.settings import PostgresSettings

SCHEMA = "auth"
MIGRATIONS = Path(__file__).with_name("auth_migrations")


class Role(StrEnum):
    CAMERA = "camera"
    APP = "app"
    LABELER = "labeler"
    ADMIN = "admin"


class Principal(BaseModel):
    key_id: uuid.UUID
    name: str
    role: Role


class KeyInfo(Principal):
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


async def migrate(settings: PostgresSettings) -> None:
    await upgrade(settings, SCHEMA, MIGRATIONS)


class ApiKeys:
    """The key registry over the `auth` schema."""

    def __init__(self, pool: asyncpg.Pool[Any]) -> None:
        self._pool = pool

    async def issue(self, name: str, role: Role) -> tuple[Principal, str]:
        key_id = uuid.uuid4()
        key = f"hone_{key_id.hex[:12]}_{secrets.token_urlsafe(32)}"
        await self._pool.execute(
            "INSERT INTO auth.api_keys (key_id, name, role, key_hash) VALUES ($1, $2, $3, $4)",
            key_id,
            name,
            role.value,
            hash_key(key),
        )
        return Principal(key_id=key_id, name=name, role=role), key

    async def verify(self, key: str) -> Principal | None:
        """The holder of `key`, or None if it is unknown or revoked."""
        row = await self._pool.fetchrow(
            "UPDATE auth.api_keys SET last_used_at = now() "
            "WHERE key_hash = $1 AND revoked_at IS NULL RETURNING key_id, name, role",
            hash_key(key),
        )
        if row is None:
            return None
        return Principal(key_id=row["key_id"], name=row["name"], role=Role(row["role"]))

    async def revoke(self, key_id: uuid.UUID) -> bool:
        status = await self._pool.execute(
            "UPDATE auth.api_keys SET revoked_at = now() WHERE key_id = $1 AND revoked_at IS NULL",
            key_id,
        )
        return bool(status.endswith(" 1"))

    async def list(self) -> list[KeyInfo]:
        rows = await self._pool.fetch(
            "SELECT key_id, name, role, created_at, revoked_at, last_used_at "
            "FROM auth.api_keys ORDER BY created_at"
        )
        return [KeyInfo(**dict(row)) for row in rows]


_bearer = HTTPBearer(auto_error=False, description="An API key issued with `hone-keys issue`.")


def require_role(*roles: Role) -> Any:
    """A dependency that admits a valid, unrevoked key holding one of `roles` (admin: any).

    401 for a missing, unknown or revoked key; 403 for a valid key of another role.
    The service puts its `ApiKeys` at `app.state.api_keys` at start-up.
    """
    allowed = {*roles, Role.ADMIN}

    async def check(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Principal:
        challenge = {"WWW-Authenticate": "Bearer"}
        if credentials is None or credentials.scheme.lower() != "bearer":
            raise ApiError(
                401,
                "unauthenticated",
                "an API key is required (Authorization: Bearer <key>)",
                challenge,
            )
        registry: ApiKeys = request.app.state.api_keys
        principal = await registry.verify(credentials.credentials)
        if principal is None:
            raise ApiError(401, "invalid_api_key", "the API key is unknown or revoked", challenge)
        if principal.role not in allowed:
            raise ApiError(
                403,
                "forbidden",
                f"role {principal.role.value!r} may not do this "
                f"(needs {', '.join(sorted(r.value for r in roles))})",
            )
        return principal

    return Depends(check)
