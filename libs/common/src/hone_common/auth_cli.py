"""`hone-keys`: issue, list and revoke API keys."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import typer

from hone_common.auth import ApiKeys, Role, migrate
from hone_common.db import create_pool
from hone_common.settings import ServiceSettings

app = typer.Typer(
    help="Manage Hone API keys (stored hashed in the `auth` schema).", no_args_is_help=True
)
T = TypeVar("T")


def _run(action: Callable[[ApiKeys], Awaitable[T]]) -> T:
    async def main() -> T:
        settings = ServiceSettings()
        await migrate(settings.postgres)
        pool = await create_pool(settings.postgres)
        try:
            return await action(ApiKeys(pool))
        finally:
            await pool.close()

    return asyncio.run(main())


@app.command()
def issue(
    role: Annotated[Role, typer.Option(help="camera, app, labeler or admin")],
    name: Annotated[str, typer.Option(help="Who holds the key (a camera id, a person, an app).")],
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the key.")] = False,
) -> None:
    """Issue a key. It is printed once; only its hash is stored."""
    principal, key = _run(lambda keys: keys.issue(name, role))
    if quiet:
        typer.echo(key)
    else:
        typer.echo(f"key_id: {principal.key_id}\nrole:   {role.value}\nname:   {name}")
        typer.echo(f"key:    {key}")


@app.command("list")
def list_keys() -> None:
    """List keys (never their secrets)."""
    rows: list[Any] = _run(lambda keys: keys.list())
    for k in rows:
        state = f"revoked {k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "active"
        typer.echo(f"{k.key_id}  {k.role.value:<8} {state:<24} {k.name}")


@app.command()
def revoke(key_id: uuid.UUID) -> None:
    """Revoke a key by its id; requests with it are refused from then on."""
    if not _run(lambda keys: keys.revoke(key_id)):
        typer.echo(f"no active key {key_id}", err=True)
        raise typer.Exit(1)
    typer.echo(f"revoked {key_id}")
