"""What the demo reads back from the services' admin APIs and the labeling schema."""

from __future__ import annotations

from typing import Any

import asyncpg
import httpx

from hone_demo.config import DemoConfig
from hone_demo.services import SERVICES, labeling_schema


def base_url(config: DemoConfig, name: str) -> str:
    service = next(s for s in SERVICES if s.name == name)
    return f"http://127.0.0.1:{service.port(config)}"


class Admin:
    """GETs with the run's admin key; a service that does not answer gives None."""

    def __init__(self, config: DemoConfig, key: str) -> None:
        self._config = config
        self._client = httpx.AsyncClient(timeout=15.0, headers={"Authorization": f"Bearer {key}"})

    async def aclose(self) -> None:
        await self._client.aclose()

    async def get(self, service: str, path: str, **params: Any) -> Any:
        try:
            response = await self._client.get(base_url(self._config, service) + path, params=params)
            response.raise_for_status()
            return response.json()
        except (httpx.HTTPError, ValueError):
            return None

    async def queue_open(self) -> int | None:
        stats = await self.get("labeling-api", "/v1/stats")
        return int(stats["queue"]["open"]) if stats else None


async def answer_counts(pool: asyncpg.Pool[Any], config: DemoConfig) -> dict[str, int]:
    """Answers per verdict in this run's labeling schema (undone answers left out)."""
    schema = labeling_schema(config)
    columns = {
        r["column_name"]
        for r in await pool.fetch(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = $1 AND table_name = 'answers'",
            schema,
        )
    }
    where = "WHERE undone_at IS NULL" if "undone_at" in columns else ""
    rows = await pool.fetch(
        f"SELECT verdict, count(*) AS n FROM {schema}.answers {where} GROUP BY verdict"  # noqa: S608
    )
    return {str(r["verdict"]): int(r["n"]) for r in rows}
