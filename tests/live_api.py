"""A FastAPI app served by a real uvicorn server on a free local port, in a thread with its own
event loop, with an API key of a chosen role: for clients that call it synchronously over HTTP
(schemathesis)."""

from __future__ import annotations

import asyncio
import socket
import threading
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg
import uvicorn
from fastapi import FastAPI

from hone_common.auth import ApiKeys, Role


@dataclass(frozen=True)
class LiveApi:
    base_url: str
    key: str


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@asynccontextmanager
async def live(
    app: FastAPI, pool: asyncpg.Pool[Any], role: Role, start_seconds: float = 90
) -> AsyncIterator[LiveApi]:
    """Serve `app` until the block ends; the key is revoked and the server stopped after it."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False)
    )
    thread = threading.Thread(target=server.run, name=f"live-api-{port}", daemon=True)
    thread.start()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + start_seconds
    while not server.started:
        assert thread.is_alive(), "the API did not start"
        assert loop.time() < deadline, f"the API did not start within {start_seconds:.0f} s"
        await asyncio.sleep(0.05)
    principal, key = await ApiKeys(pool).issue(f"live-{uuid.uuid4().hex[:8]}", role)
    try:
        yield LiveApi(f"http://127.0.0.1:{port}", key)
    finally:
        await ApiKeys(pool).revoke(principal.key_id)
        server.should_exit = True
        await asyncio.to_thread(thread.join, 30)
