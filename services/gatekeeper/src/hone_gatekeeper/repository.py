"""The gatekeeper's tables in PostgreSQL: the model registry, evaluations and decisions.

A candidate's decision is stored in one transaction with the claim of its `model.candidate`
event, so a redelivered candidate is never decided twice. A decision is applied to TorchServe
afterwards; the registry's statuses change, and `model.promoted` is queued in the outbox, in the
transaction that marks it applied, so what the registry and Kafka say follows what TorchServe
serves. Decisions on one model are serialised by an advisory lock, across processes (the
service and the CLI).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg

from hone_common.events import Candidate, ModelCandidate, ModelPromoted
from hone_common.idempotency import claim
from hone_common.outbox import Outbox
from hone_gatekeeper.records import PROMOTING, Decision, Evaluation, ModelVersion

MIGRATIONS = Path(__file__).parent / "migrations"


class LockTimeout(TimeoutError):
    """Another decision on the same model held the lock for too long."""


class PostgresRegistry:
    def __init__(
        self, pool: asyncpg.Pool[Any], outbox: Outbox, schema: str, *, lock_timeout: float = 900
    ) -> None:
        self._pool = pool
        self._outbox = outbox
        self._schema = schema
        self._lock_timeout = lock_timeout

    @contextlib.asynccontextmanager
    async def lock(self, model_name: str) -> AsyncIterator[None]:
        """Hold the model's decision lock (a session advisory lock on a connection of its own,
        released by PostgreSQL itself if this process dies)."""
        key = f"hone-gatekeeper/{self._schema}/{model_name}"
        async with self._pool.acquire() as conn:
            deadline = asyncio.get_running_loop().time() + self._lock_timeout
            while not await conn.fetchval("SELECT pg_try_advisory_lock(hashtext($1))", key):
                if asyncio.get_running_loop().time() > deadline:
                    raise LockTimeout(f"another decision on {model_name!r} is still running")
                await asyncio.sleep(0.2)
            try:
                yield
            finally:
                await conn.execute("SELECT pg_advisory_unlock(hashtext($1))", key)

    # --- the registry -------------------------------------------------------------------

    async def is_decided(self, model_name: str, version: str, event_id: uuid.UUID) -> bool:
        """True if this event was processed, or the version already has its verdict."""
        return bool(
            await self._pool.fetchval(
                f"SELECT EXISTS (SELECT 1 FROM {self._schema}.processed_events "  # noqa: S608
                f"WHERE event_id = $1) OR EXISTS (SELECT 1 FROM {self._schema}.models "
                "WHERE model_name = $2 AND model_version = $3 AND status <> 'candidate')",
                event_id,
                model_name,
                version,
            )
        )

    async def record_candidate(self, model_name: str, candidate: Candidate) -> None:
        await self._pool.execute(
            f"INSERT INTO {self._schema}.models (model_name, model_version, status, "  # noqa: S608
            "parent_version, artifact_uri, weakness_model_uri, evaluation_set_uri, classes, "
            "offline_metrics, snapshot) VALUES ($1, $2, 'candidate', $3, $4, $5, $6, $7, $8, $9) "
            "ON CONFLICT (model_name, model_version) DO NOTHING",
            model_name,
            candidate.model_version,
            candidate.parent_version,
            candidate.artifact_uri,
            candidate.weakness_model_uri,
            candidate.evaluation_set_uri,
            list(candidate.classes),
            candidate.metrics.model_dump(mode="json"),
            candidate.snapshot.model_dump(mode="json"),
        )

    async def adopt_production(
        self, model_name: str, version: str, artifact_uri: str | None
    ) -> None:
        """Record a version found serving as TorchServe's default (e.g. bootstrapped) as
        production; whatever the registry held as production is retired."""
        async with self._pool.acquire() as conn, conn.transaction():
            await self._retire_production(conn, model_name, except_version=version)
            await conn.execute(
                f"INSERT INTO {self._schema}.models AS m (model_name, model_version, "  # noqa: S608
                "status, artifact_uri, promoted_at) VALUES ($1, $2, 'production', $3, now()) "
                "ON CONFLICT (model_name, model_version) DO UPDATE SET status = 'production', "
                "artifact_uri = coalesce(m.artifact_uri, excluded.artifact_uri), "
                "promoted_at = now(), updated_at = now()",
                model_name,
                version,
                artifact_uri,
            )

    async def learn_classes(self, model_name: str, version: str, classes: list[str]) -> None:
        """Fill in the classes of a version found serving, once it has answered."""
        await self._pool.execute(
            f"UPDATE {self._schema}.models SET classes = $3, updated_at = now() "  # noqa: S608
            "WHERE model_name = $1 AND model_version = $2 AND cardinality(classes) = 0",
            model_name,
            version,
            classes,
        )

    async def version(self, model_name: str, version: str) -> ModelVersion | None:
        row = await self._pool.fetchrow(
            f"SELECT * FROM {self._schema}.models "  # noqa: S608
            "WHERE model_name = $1 AND model_version = $2",
            model_name,
            version,
        )
        return None if row is None else ModelVersion(**dict(row))

    async def production(self, model_name: str) -> ModelVersion | None:
        row = await self._pool.fetchrow(
            f"SELECT * FROM {self._schema}.models "  # noqa: S608
            "WHERE model_name = $1 AND status = 'production'",
            model_name,
        )
        return None if row is None else ModelVersion(**dict(row))

    async def versions(self, model_name: str) -> list[ModelVersion]:
        rows = await self._pool.fetch(
            f"SELECT * FROM {self._schema}.models WHERE model_name = $1 "  # noqa: S608
            "ORDER BY first_seen_at DESC, model_version DESC",
            model_name,
        )
        return [ModelVersion(**dict(row)) for row in rows]

    async def latest_former_production(
        self, model_name: str, current: str | None
    ) -> ModelVersion | None:
        """The version that was production most recently before `current`."""
        row = await self._pool.fetchrow(
            f"SELECT * FROM {self._schema}.models WHERE model_name = $1 "  # noqa: S608
            "AND promoted_at IS NOT NULL AND model_version IS DISTINCT FROM $2 "
            "ORDER BY promoted_at DESC LIMIT 1",
            model_name,
            current,
        )
        return None if row is None else ModelVersion(**dict(row))

    # --- evaluations and decisions ------------------------------------------------------

    async def save_decision(
        self,
        decision: Decision,
        evaluation: Evaluation | None = None,
        event: ModelCandidate | None = None,
    ) -> bool:
        """Store a decision (and its evaluation), claiming the candidate event in the same
        transaction; False, storing nothing, if the event was processed already."""
        async with self._pool.acquire() as conn, conn.transaction():
            if event is not None and not await claim(conn, self._schema, event):
                return False
            if evaluation is not None:
                await conn.execute(
                    f"INSERT INTO {self._schema}.evaluations (evaluation_id, "  # noqa: S608
                    "model_name, candidate_version, production_version, evaluation_set_uri, "
                    "examples, set_aside, summary, comparison, duration_seconds) "
                    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                    evaluation.evaluation_id,
                    evaluation.model_name,
                    evaluation.candidate_version,
                    evaluation.production_version,
                    evaluation.evaluation_set_uri,
                    evaluation.examples,
                    evaluation.set_aside,
                    evaluation.summary,
                    evaluation.comparison,
                    evaluation.duration_seconds,
                )
            await conn.execute(
                f"INSERT INTO {self._schema}.decisions (decision_id, model_name, "  # noqa: S608
                "model_version, previous_version, kind, reasons, summary, evaluation_id, actor, "
                "candidate_event_id, correlation_id) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                decision.decision_id,
                decision.model_name,
                decision.model_version,
                decision.previous_version,
                decision.kind,
                decision.reasons,
                decision.summary,
                decision.evaluation_id,
                decision.actor,
                decision.candidate_event_id,
                decision.correlation_id,
            )
        return True

    async def pending(self, model_name: str) -> list[Decision]:
        """Decisions stored but not yet applied to TorchServe, oldest first."""
        rows = await self._pool.fetch(
            f"SELECT * FROM {self._schema}.decisions "  # noqa: S608
            "WHERE model_name = $1 AND applied_at IS NULL ORDER BY decided_at",
            model_name,
        )
        return [Decision(**dict(row)) for row in rows]

    async def complete(
        self,
        decision: Decision,
        announcement: ModelPromoted | None = None,
        error: str | None = None,
    ) -> None:
        """Mark a decision applied: statuses follow it and its `model.promoted` is queued; with
        `error`, it could not be applied and nothing else changes."""
        schema = self._schema
        async with self._pool.acquire() as conn, conn.transaction():
            done = await conn.execute(
                f"UPDATE {schema}.decisions SET applied_at = now(), apply_error = $2 "  # noqa: S608
                "WHERE decision_id = $1 AND applied_at IS NULL",
                decision.decision_id,
                error,
            )
            if done != "UPDATE 1" or error is not None:
                return
            name, version = decision.model_name, decision.model_version
            if decision.kind in PROMOTING:
                await self._retire_production(conn, name, except_version=version)
                await conn.execute(
                    f"UPDATE {schema}.models SET status = 'production', "  # noqa: S608
                    "promoted_at = now(), updated_at = now() "
                    "WHERE model_name = $1 AND model_version = $2",
                    name,
                    version,
                )
            else:
                await conn.execute(
                    f"UPDATE {schema}.models SET status = 'rejected', "  # noqa: S608
                    "updated_at = now() "
                    "WHERE model_name = $1 AND model_version = $2 AND status = 'candidate'",
                    name,
                    version,
                )
            if announcement is not None:
                await self._outbox.add(conn, announcement)
        if announcement is not None:
            self._outbox.notify()

    async def _retire_production(
        self, conn: asyncpg.Connection[Any], model_name: str, except_version: str
    ) -> None:
        await conn.execute(
            f"UPDATE {self._schema}.models SET status = 'retired', "  # noqa: S608
            "updated_at = now() WHERE model_name = $1 AND status = 'production' "
            "AND model_version <> $2",
            model_name,
            except_version,
        )

    async def decision(self, decision_id: uuid.UUID) -> Decision | None:
        row = await self._pool.fetchrow(
            f"SELECT * FROM {self._schema}.decisions WHERE decision_id = $1",  # noqa: S608
            decision_id,
        )
        return None if row is None else Decision(**dict(row))

    async def decisions(
        self, model_name: str, version: str | None = None, limit: int = 50
    ) -> list[Decision]:
        """Newest first; of one version, or of every version."""
        rows = await self._pool.fetch(
            f"SELECT * FROM {self._schema}.decisions WHERE model_name = $1 "  # noqa: S608
            "AND ($2::text IS NULL OR model_version = $2) ORDER BY decided_at DESC LIMIT $3",
            model_name,
            version,
            limit,
        )
        return [Decision(**dict(row)) for row in rows]

    async def evaluation(self, evaluation_id: uuid.UUID) -> Evaluation | None:
        row = await self._pool.fetchrow(
            f"SELECT * FROM {self._schema}.evaluations WHERE evaluation_id = $1",  # noqa: S608
            evaluation_id,
        )
        return None if row is None else Evaluation(**dict(row))

    async def latest_accuracy(self, model_name: str, version: str) -> float | None:
        """The version's accuracy in its newest evaluation, as candidate or as production."""
        row = await self._pool.fetchrow(
            f"SELECT candidate_version, summary FROM {self._schema}.evaluations "  # noqa: S608
            "WHERE model_name = $1 AND (candidate_version = $2 OR production_version = $2) "
            "AND examples > 0 ORDER BY created_at DESC LIMIT 1",
            model_name,
            version,
        )
        if row is None:
            return None
        summary = row["summary"] if isinstance(row["summary"], dict) else json.loads(row["summary"])
        key = "candidate_accuracy" if row["candidate_version"] == version else "production_accuracy"
        value = summary.get(key)
        return None if value is None else float(value)
