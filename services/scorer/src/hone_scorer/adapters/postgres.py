"""The scorer's tables: predictions per (image, model version), models, promotions.

A batch is stored in one transaction with its `image.scored` events (outbox) and the claim of
the `image.received` events it answers, so a redelivered batch has no second effect.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from typing import Any

import asyncpg

from hone_common.events import ImageReceived, ImageScored, ModelPromoted
from hone_common.idempotency import claim, claim_many
from hone_common.outbox import Outbox


class PostgresPredictions:
    def __init__(self, pool: asyncpg.Pool[Any], outbox: Outbox, schema: str) -> None:
        self._pool = pool
        self._outbox = outbox
        self._schema = schema
        self._known_models: set[str] = set()

    async def processed(self, event_ids: Collection[uuid.UUID]) -> set[uuid.UUID]:
        """The events among these whose effect is already stored."""
        rows = await self._pool.fetch(
            f"SELECT event_id FROM {self._schema}.processed_events "  # noqa: S608
            "WHERE event_id = ANY($1::uuid[])",
            list(event_ids),
        )
        return {row["event_id"] for row in rows}

    async def save(self, scored: Sequence[tuple[ImageReceived, ImageScored]]) -> list[ImageScored]:
        """Store the predictions of events not processed yet and queue their `image.scored`;
        returns the events queued (one per new (image, model version))."""
        if not scored:
            return []
        async with self._pool.acquire() as conn, conn.transaction():
            new = await claim_many(conn, self._schema, [received for received, _ in scored])
            fresh: dict[tuple[uuid.UUID, str], tuple[ImageReceived, ImageScored]] = {}
            for received, event in scored:
                key = (event.payload.image_id, event.payload.model_version)
                if received.event_id in new and key not in fresh:
                    fresh[key] = (received, event)
            if not fresh:
                return []
            models = await self._add_models(conn, [event for _, event in fresh.values()])
            inserted = await self._insert(conn, list(fresh.values()))
            events = [event for key, (_, event) in fresh.items() if key in inserted]
            await self._outbox.add_many(conn, events)
        self._known_models |= models
        self._outbox.notify()
        return events

    async def _add_models(
        self, conn: asyncpg.Connection[Any], events: Collection[ImageScored]
    ) -> set[str]:
        classes = {e.payload.model_version: e.payload.classes for e in events}
        unknown = [version for version in classes if version not in self._known_models]
        if unknown:
            await conn.executemany(
                f"INSERT INTO {self._schema}.models (model_version, classes) "  # noqa: S608
                "VALUES ($1, $2) ON CONFLICT (model_version) DO NOTHING",
                [(version, classes[version]) for version in unknown],
            )
        return set(classes)

    async def _insert(
        self, conn: asyncpg.Connection[Any], scored: list[tuple[ImageReceived, ImageScored]]
    ) -> set[tuple[uuid.UUID, str]]:
        payloads = [event.payload for _, event in scored]
        # unnest() flattens a 2-D array, so each row's probabilities travel as an array literal.
        rows = await conn.fetch(
            f"INSERT INTO {self._schema}.predictions "  # noqa: S608
            "(image_id, model_version, label, confidence, margin, entropy, probabilities, "
            "received_event_id) "
            "SELECT i, v, l, c, m, e, p::real[], r FROM unnest("
            "$1::uuid[], $2::text[], $3::text[], $4::real[], $5::real[], $6::real[], "
            "$7::text[], $8::uuid[]) AS t(i, v, l, c, m, e, p, r) "
            "ON CONFLICT (image_id, model_version) DO NOTHING "
            "RETURNING image_id, model_version",
            [p.image_id for p in payloads],
            [p.model_version for p in payloads],
            [p.label for p in payloads],
            [p.confidence for p in payloads],
            [p.margin for p in payloads],
            [p.entropy for p in payloads],
            ["{" + ",".join(map(repr, p.probabilities)) + "}" for p in payloads],
            [received.event_id for received, _ in scored],
        )
        return {(row["image_id"], row["model_version"]) for row in rows}

    async def record_promotion(self, event: ModelPromoted) -> bool:
        """Remember a promotion (or rollback); False if this event was seen before."""
        promotion = event.payload
        async with self._pool.acquire() as conn, conn.transaction():
            if not await claim(conn, self._schema, event):
                return False
            await conn.execute(
                f"INSERT INTO {self._schema}.promotions "  # noqa: S608
                "(event_id, model_version, previous_version, promoted_at, manual) "
                "VALUES ($1, $2, $3, $4, $5)",
                event.event_id,
                promotion.model_version,
                promotion.previous_version,
                event.occurred_at,
                promotion.manual,
            )
        return True

    async def production_version(self) -> str | None:
        """The version of the latest promotion (events of different versions may arrive out
        of order: they are keyed, hence partitioned, by version)."""
        version = await self._pool.fetchval(
            f"SELECT model_version FROM {self._schema}.promotions "  # noqa: S608
            "ORDER BY promoted_at DESC, recorded_at DESC LIMIT 1"
        )
        return str(version) if version is not None else None
