"""PostgreSQL access for the labeling schema. Every method runs on the caller's connection,
so the caller decides the transaction (the effect, its outbox events and its idempotency
record commit together)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, TypeAlias

import asyncpg

from hone_common.events import ReviewRequest, Scores
from hone_labeling_api.domain import Vote, merge_reasons

Conn: TypeAlias = "asyncpg.Connection[Any]"
Row: TypeAlias = asyncpg.Record

TASK_COLUMNS = (
    "task_id, image_id, uri, priority, outside_budget, reasons, model_version, prediction, "
    "camera_id, object_id, status, leased_by, leased_at, lease_expires_at, label, created_at"
)
TASK_COLUMNS_T = ", ".join(f"t.{column.strip()}" for column in TASK_COLUMNS.split(","))


class Repository:
    def __init__(self, schema: str) -> None:
        # The schema is validated by the settings (a plain identifier) before it gets here.
        self.s = schema

    # --- label set --------------------------------------------------------------------------

    async def seed_classes(self, conn: Conn, classes: list[str]) -> None:
        await conn.execute(
            f"INSERT INTO {self.s}.label_set (id, classes) VALUES (1, $1) "  # noqa: S608
            "ON CONFLICT (id) DO NOTHING",
            classes,
        )

    async def classes(self, conn: Conn) -> Row:
        row = await conn.fetchrow(
            f"SELECT classes, updated_at, updated_by FROM {self.s}.label_set WHERE id = 1"  # noqa: S608
        )
        assert row is not None, "the label set is seeded at start-up"
        return row

    async def replace_classes(self, conn: Conn, classes: list[str], by: str) -> Row:
        row = await conn.fetchrow(
            f"UPDATE {self.s}.label_set SET classes = $1, updated_at = now(), "  # noqa: S608
            "updated_by = $2 WHERE id = 1 RETURNING classes, updated_at, updated_by",
            classes,
            by,
        )
        assert row is not None
        return row

    # --- review requests and scored images -------------------------------------------------

    async def add_review(self, conn: Conn, request: ReviewRequest) -> bool:
        """Queue the request; True if it opened a task, False if it merged into the open one."""
        prediction = request.prediction.model_dump() if request.prediction else None
        existing = await conn.fetchrow(
            f"SELECT task_id, priority, reasons FROM {self.s}.tasks "  # noqa: S608
            "WHERE image_id = $1 AND status = 'open' FOR UPDATE",
            request.image_id,
        )
        if existing is None:
            await conn.execute(
                f"INSERT INTO {self.s}.tasks (task_id, image_id, uri, priority, "  # noqa: S608
                "outside_budget, reasons, model_version, prediction, camera_id, object_id) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                uuid.uuid4(),
                request.image_id,
                request.uri,
                request.priority,
                request.outside_budget,
                merge_reasons([], request.reasons),
                request.model_version,
                prediction,
                request.camera_id,
                request.object_id,
            )
            return True
        # The newest request's guess is shown (it comes from the newest model); the queue
        # position keeps the strongest claim of either request.
        await conn.execute(
            f"UPDATE {self.s}.tasks SET priority = greatest(priority, $2), "  # noqa: S608
            "outside_budget = outside_budget OR $3, reasons = $4, "
            "model_version = coalesce($5, model_version), prediction = coalesce($6, prediction), "
            "requests = requests + 1 WHERE task_id = $1",
            existing["task_id"],
            request.priority,
            request.outside_budget,
            merge_reasons(existing["reasons"], request.reasons),
            request.model_version,
            prediction,
        )
        return False

    async def upsert_images(self, conn: Conn, scores: list[tuple[Scores, datetime]]) -> None:
        """Remember each image's URI and newest prediction; an older score never wins."""
        await conn.executemany(
            f"INSERT INTO {self.s}.images AS i (image_id, uri, model_version, prediction, "  # noqa: S608
            "camera_id, object_id, scored_at) VALUES ($1, $2, $3, $4, $5, $6, $7) "
            "ON CONFLICT (image_id) DO UPDATE SET uri = excluded.uri, "
            "model_version = excluded.model_version, prediction = excluded.prediction, "
            "camera_id = excluded.camera_id, object_id = excluded.object_id, "
            "scored_at = excluded.scored_at WHERE i.scored_at <= excluded.scored_at",
            [
                (
                    s.image_id,
                    s.uri,
                    s.model_version,
                    {
                        "label": s.label,
                        "confidence": s.confidence,
                        "classes": s.classes,
                        "probabilities": s.probabilities,
                    },
                    s.camera_id,
                    s.object_id,
                    at,
                )
                for s, at in scores
            ],
        )

    async def image(self, conn: Conn, image_id: uuid.UUID) -> Row | None:
        return await conn.fetchrow(
            f"SELECT image_id, uri, model_version, prediction, camera_id, object_id "  # noqa: S608
            f"FROM {self.s}.images WHERE image_id = $1",
            image_id,
        )

    # --- leases -----------------------------------------------------------------------------

    async def lock_labeler(self, conn: Conn, key_id: uuid.UUID) -> None:
        """Serialise one labeler's claims (two tabs must not both top up their holdings)."""
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1::text, 7))", str(key_id)
        )

    async def renew_held(self, conn: Conn, key_id: uuid.UUID, lease_seconds: float) -> list[Row]:
        rows = await conn.fetch(
            f"UPDATE {self.s}.tasks SET lease_expires_at = now() + make_interval(secs => $2) "  # noqa: S608
            "WHERE status = 'open' AND leased_by = $1 AND lease_expires_at > now() "
            f"RETURNING {TASK_COLUMNS}",
            key_id,
            lease_seconds,
        )
        return sorted(rows, key=lambda r: (r["leased_at"], r["task_id"]))

    async def claim_new(
        self, conn: Conn, key_id: uuid.UUID, count: int, lease_seconds: float
    ) -> list[Row]:
        """Lease the next `count` waiting tasks, skipping rows other claims hold locked and
        tasks this labeler already answered or skipped (they need someone else's eyes)."""
        rows = await conn.fetch(
            f"""
            WITH picked AS (
                SELECT t.task_id FROM {self.s}.tasks t
                WHERE t.status = 'open'
                  AND (t.lease_expires_at IS NULL OR t.lease_expires_at <= now())
                  AND NOT EXISTS (
                      SELECT 1 FROM {self.s}.answers a
                      WHERE a.task_id = t.task_id AND a.labeler_key = $1 AND a.undone_at IS NULL
                  )
                ORDER BY t.outside_budget DESC, t.priority DESC, t.created_at
                LIMIT $2
                FOR UPDATE SKIP LOCKED
            )
            UPDATE {self.s}.tasks t
               SET leased_by = $1, leased_at = clock_timestamp(),
                   lease_expires_at = now() + make_interval(secs => $3)
              FROM picked WHERE t.task_id = picked.task_id
            RETURNING {TASK_COLUMNS_T}
            """,  # noqa: S608
            key_id,
            count,
            lease_seconds,
        )
        return sorted(
            rows, key=lambda r: (not r["outside_budget"], -r["priority"], r["created_at"])
        )

    async def task(self, conn: Conn, task_id: uuid.UUID, *, for_update: bool = False) -> Row | None:
        """The task, with `lease_live`: whether its lease still runs (by the database's clock)."""
        lock = " FOR UPDATE" if for_update else ""
        return await conn.fetchrow(
            f"SELECT {TASK_COLUMNS}, coalesce(lease_expires_at > now(), false) AS lease_live "  # noqa: S608
            f"FROM {self.s}.tasks WHERE task_id = $1{lock}",
            task_id,
        )

    async def lease(
        self, conn: Conn, task_id: uuid.UUID, key_id: uuid.UUID, lease_seconds: float
    ) -> Row:
        row = await conn.fetchrow(
            f"UPDATE {self.s}.tasks SET status = 'open', label = NULL, resolved_at = NULL, "  # noqa: S608
            "leased_by = $2, leased_at = clock_timestamp(), "
            "lease_expires_at = now() + make_interval(secs => $3) "
            f"WHERE task_id = $1 RETURNING {TASK_COLUMNS}",
            task_id,
            key_id,
            lease_seconds,
        )
        assert row is not None
        return row

    async def release(self, conn: Conn, task_id: uuid.UUID) -> None:
        await conn.execute(
            f"UPDATE {self.s}.tasks SET leased_by = NULL, leased_at = NULL, "  # noqa: S608
            "lease_expires_at = NULL WHERE task_id = $1",
            task_id,
        )

    async def resolve(self, conn: Conn, task_id: uuid.UUID, status: str, label: str | None) -> None:
        await conn.execute(
            f"UPDATE {self.s}.tasks SET status = $2, label = $3, resolved_at = now(), "  # noqa: S608
            "leased_by = NULL, leased_at = NULL, lease_expires_at = NULL WHERE task_id = $1",
            task_id,
            status,
            label,
        )

    async def other_open_task(self, conn: Conn, image_id: uuid.UUID, task_id: uuid.UUID) -> bool:
        return bool(
            await conn.fetchval(
                f"SELECT true FROM {self.s}.tasks WHERE image_id = $1 "  # noqa: S608
                "AND status = 'open' AND task_id <> $2",
                image_id,
                task_id,
            )
        )

    # --- answers ----------------------------------------------------------------------------

    async def add_answer(
        self,
        conn: Conn,
        *,
        task: Row,
        key_id: uuid.UUID,
        labeler_id: str,
        verdict: str,
        label: str | None,
        elapsed_ms: int | None,
    ) -> Row:
        row = await conn.fetchrow(
            f"INSERT INTO {self.s}.answers (answer_id, task_id, image_id, labeler_key, "  # noqa: S608
            "labeler_id, verdict, label, elapsed_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) "
            "RETURNING answer_id, task_id, image_id, verdict, label, created_at, "
            "extract(epoch FROM clock_timestamp() - $9::timestamptz) AS held_seconds",
            uuid.uuid4(),
            task["task_id"],
            task["image_id"],
            key_id,
            labeler_id,
            verdict,
            label,
            elapsed_ms,
            task["leased_at"],
        )
        assert row is not None
        return row

    async def votes(self, conn: Conn, task_id: uuid.UUID) -> list[Vote]:
        rows = await conn.fetch(
            f"SELECT verdict, label FROM {self.s}.answers WHERE task_id = $1 "  # noqa: S608
            "AND undone_at IS NULL AND verdict <> 'skip' ORDER BY created_at, answer_id",
            task_id,
        )
        return [Vote(r["verdict"], r["label"]) for r in rows]

    async def set_answer_event(self, conn: Conn, answer_id: uuid.UUID, event_id: uuid.UUID) -> None:
        await conn.execute(
            f"UPDATE {self.s}.answers SET event_id = $2 WHERE answer_id = $1",  # noqa: S608
            answer_id,
            event_id,
        )

    async def last_answer(self, conn: Conn, key_id: uuid.UUID, undo_seconds: float) -> Row | None:
        """The labeler's newest answer still standing, locked, with whether it may be undone."""
        return await conn.fetchrow(
            f"SELECT answer_id, task_id, image_id, verdict, label, event_id, created_at, "  # noqa: S608
            "clock_timestamp() - created_at <= make_interval(secs => $2) AS undoable "
            f"FROM {self.s}.answers WHERE labeler_key = $1 AND undone_at IS NULL "
            "ORDER BY created_at DESC, answer_id DESC LIMIT 1 FOR UPDATE",
            key_id,
            undo_seconds,
        )

    async def mark_undone(self, conn: Conn, answer_id: uuid.UUID) -> None:
        await conn.execute(
            f"UPDATE {self.s}.answers SET undone_at = now() WHERE answer_id = $1",  # noqa: S608
            answer_id,
        )

    # --- flags ------------------------------------------------------------------------------

    async def add_flag(
        self,
        conn: Conn,
        *,
        image_id: uuid.UUID,
        app_key: uuid.UUID,
        app_id: str,
        label: str | None,
        comment: str,
    ) -> uuid.UUID:
        flag_id = uuid.uuid4()
        await conn.execute(
            f"INSERT INTO {self.s}.flags (flag_id, image_id, app_key, app_id, label, comment) "  # noqa: S608
            "VALUES ($1, $2, $3, $4, $5, $6)",
            flag_id,
            image_id,
            app_key,
            app_id,
            label,
            comment,
        )
        return flag_id

    # --- idempotency ------------------------------------------------------------------------

    async def remember_request(
        self, conn: Conn, key_id: uuid.UUID, operation: str, key: str, request_hash: str
    ) -> Row | None:
        """Reserve the key for this request; if it was used before, the earlier record.

        A concurrent request with the same key waits here on the primary key until the first
        one commits (then sees its record) or rolls back (then takes the key itself)."""
        inserted = await conn.fetchval(
            f"INSERT INTO {self.s}.idempotency_keys (key_id, operation, idempotency_key, "  # noqa: S608
            "request_hash) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING true",
            key_id,
            operation,
            key,
            request_hash,
        )
        if inserted:
            return None
        return await conn.fetchrow(
            f"SELECT request_hash, status_code, response FROM {self.s}.idempotency_keys "  # noqa: S608
            "WHERE key_id = $1 AND operation = $2 AND idempotency_key = $3",
            key_id,
            operation,
            key,
        )

    async def store_response(
        self,
        conn: Conn,
        key_id: uuid.UUID,
        operation: str,
        key: str,
        status_code: int,
        response: dict[str, Any],
    ) -> None:
        await conn.execute(
            f"UPDATE {self.s}.idempotency_keys SET status_code = $4, response = $5 "  # noqa: S608
            "WHERE key_id = $1 AND operation = $2 AND idempotency_key = $3",
            key_id,
            operation,
            key,
            status_code,
            response,
        )

    async def prune_idempotency_keys(self, conn: Conn, hours: float) -> None:
        await conn.execute(
            f"DELETE FROM {self.s}.idempotency_keys "  # noqa: S608
            "WHERE created_at < now() - make_interval(secs => $1)",
            hours * 3600,
        )

    # --- stats ------------------------------------------------------------------------------

    async def queue(self, conn: Conn) -> Row:
        row = await conn.fetchrow(
            f"""
            SELECT count(*) AS open,
                   count(*) FILTER (WHERE lease_expires_at IS NULL
                                       OR lease_expires_at <= now()) AS waiting,
                   count(*) FILTER (WHERE lease_expires_at > now()) AS leased,
                   count(*) FILTER (WHERE outside_budget) AS flagged
              FROM {self.s}.tasks WHERE status = 'open'
            """  # noqa: S608
        )
        assert row is not None
        return row

    async def labelers(
        self, conn: Conn, window_hours: float, key_id: uuid.UUID | None = None
    ) -> list[Row]:
        rows: list[Row] = await conn.fetch(
            f"""
            SELECT labeler_key, max(labeler_id) AS labeler_id, count(*) AS answers,
                   count(*) FILTER (WHERE verdict = 'label') AS labels,
                   count(*) FILTER (WHERE verdict = 'ambiguous') AS ambiguous,
                   count(*) FILTER (WHERE verdict = 'skip') AS skips,
                   count(*) FILTER (WHERE created_at > now() - interval '1 hour') AS last_hour
              FROM {self.s}.answers
             WHERE undone_at IS NULL AND created_at > now() - make_interval(secs => $1)
               AND ($2::uuid IS NULL OR labeler_key = $2)
             GROUP BY labeler_key ORDER BY count(*) DESC, max(labeler_id)
            """,  # noqa: S608
            window_hours * 3600,
            key_id,
        )
        return rows

    async def outcomes(self, conn: Conn) -> list[Row]:
        rows: list[Row] = await conn.fetch(
            f"SELECT status, label, count(*) AS n FROM {self.s}.tasks "  # noqa: S608
            "WHERE status <> 'open' GROUP BY status, label ORDER BY status, label"
        )
        return rows

    async def agreement(self, conn: Conn) -> Row:
        row = await conn.fetchrow(
            f"""
            WITH multi AS (
                SELECT task_id, count(DISTINCT coalesce(label, '')) AS distinct_answers
                  FROM {self.s}.answers
                 WHERE undone_at IS NULL AND verdict <> 'skip'
                 GROUP BY task_id HAVING count(*) >= 2
            )
            SELECT (SELECT count(*) FROM multi) AS multi,
                   (SELECT count(*) FROM multi WHERE distinct_answers = 1) AS agreed,
                   (SELECT count(*) FROM {self.s}.tasks
                     WHERE status = 'done' AND prediction IS NOT NULL) AS labelled,
                   (SELECT count(*) FROM {self.s}.tasks
                     WHERE status = 'done' AND prediction ->> 'label' = label) AS model_right
            """  # noqa: S608
        )
        assert row is not None
        return row

    async def flags_since(self, conn: Conn, window_hours: float) -> int:
        return int(
            await conn.fetchval(
                f"SELECT count(*) FROM {self.s}.flags "  # noqa: S608
                "WHERE created_at > now() - make_interval(secs => $1)",
                window_hours * 3600,
            )
        )
