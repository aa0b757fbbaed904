"""PostgreSQL access of the trainer: the received images and labels, the resolved dataset, the
runs and the production model. Queries only; the rules live in `dataset.py` and `runs.py`."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypeAlias

import asyncpg

from hone_common.events import Label, Promotion, ReceivedImage
from hone_trainer.dataset import Example, Member, Row, Split, Vote, plan_examples, split_for
from hone_trainer.schedule import ScheduleState
from hone_trainer.settings import DatasetSettings

Conn: TypeAlias = "asyncpg.Connection[Any]"
Source: TypeAlias = "asyncpg.Connection[Any] | asyncpg.Pool[Any]"

ROW_COLUMNS = (
    "e.image_id, e.split, e.kind, e.label, e.weight, i.uri, i.sha256, i.camera_id, "
    "i.captured_hour, i.brightness, i.contrast, i.sharpness"
)
LABELLED = "(verdict = 'label' OR (verdict = 'wrong' AND label IS NOT NULL)) AND source = 'human'"
"""Label events that count as new labels for the schedule."""


class Repository:
    def __init__(self, schema: str) -> None:
        self.schema = schema
        self.s = schema

    # --- events in ------------------------------------------------------------------------

    async def insert_image(self, conn: Conn, image: ReceivedImage) -> bool:
        local = image.captured_at
        inserted = await conn.fetchval(
            f"INSERT INTO {self.s}.images (image_id, uri, sha256, width, height, camera_id, "  # noqa: S608
            "captured_at, captured_hour, object_id, metadata, brightness, contrast, sharpness) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) "
            "ON CONFLICT (image_id) DO NOTHING RETURNING true",
            image.image_id,
            image.uri,
            image.sha256,
            image.width,
            image.height,
            image.camera_id,
            image.captured_at,
            local.hour + local.minute / 60.0,
            image.object_id,
            dict(image.metadata),
            image.quality.brightness,
            image.quality.contrast,
            image.quality.sharpness,
        )
        return bool(inserted)

    async def insert_label(
        self, conn: Conn, event_id: uuid.UUID, label: Label, occurred_at: datetime
    ) -> None:
        await conn.execute(
            f"INSERT INTO {self.s}.label_events (event_id, image_id, verdict, label, labeler_id, "  # noqa: S608
            "task_id, source, model_version, predicted_label, reasons, occurred_at) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) "
            "ON CONFLICT (event_id) DO NOTHING",
            event_id,
            label.image_id,
            label.verdict,
            label.label,
            label.labeler_id,
            label.task_id,
            label.source,
            label.model_version,
            label.predicted_label,
            [r.model_dump() for r in label.reasons],
            occurred_at,
        )

    async def record_promotion(
        self, conn: Conn, model_name: str, promotion: Promotion, promoted_at: datetime
    ) -> bool:
        """Keep the newest promotion of `model_name` (events may come twice or late)."""
        updated = await conn.fetchval(
            f"INSERT INTO {self.s}.production AS p (model_name, model_version, artifact_uri, "  # noqa: S608
            "classes, promoted_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (model_name) DO UPDATE "
            "SET model_version = EXCLUDED.model_version, artifact_uri = EXCLUDED.artifact_uri, "
            "classes = EXCLUDED.classes, promoted_at = EXCLUDED.promoted_at "
            "WHERE p.promoted_at <= EXCLUDED.promoted_at RETURNING true",
            model_name,
            promotion.model_version,
            promotion.artifact_uri,
            list(promotion.classes),
            promoted_at,
        )
        return bool(updated)

    async def production(self, conn: Source, model_name: str) -> Any:
        return await conn.fetchrow(
            f"SELECT model_version, artifact_uri, classes FROM {self.s}.production "  # noqa: S608
            "WHERE model_name = $1",
            model_name,
        )

    # --- the resolved dataset -------------------------------------------------------------

    async def refresh(
        self, conn: Conn, image_ids: Sequence[uuid.UUID], settings: DatasetSettings
    ) -> None:
        """Recompute the examples of these images and of every other view of their objects."""
        objects = sorted(
            r["object_id"]
            for r in await conn.fetch(
                f"SELECT DISTINCT object_id FROM {self.s}.images "  # noqa: S608
                "WHERE image_id = ANY($1) AND object_id IS NOT NULL",
                list(image_ids),
            )
        )
        for object_id in objects:  # sorted: two refreshes never wait on each other in a cycle
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtext($1))", f"{self.s}:object:{object_id}"
            )
        images = await conn.fetch(
            f"SELECT image_id, captured_at, object_id FROM {self.s}.images "  # noqa: S608
            "WHERE image_id = ANY($1) OR object_id = ANY($2)",
            list(image_ids),
            objects,
        )
        ids = sorted({*image_ids, *(r["image_id"] for r in images)})
        votes: dict[uuid.UUID, list[Vote]] = {i: [] for i in ids}
        for r in await conn.fetch(
            f"SELECT seq, image_id, occurred_at, verdict, label, labeler_id, source, "  # noqa: S608
            f"model_version, reasons FROM {self.s}.label_events WHERE image_id = ANY($1)",
            ids,
        ):
            votes[r["image_id"]].append(
                Vote(
                    r["seq"],
                    r["occurred_at"],
                    r["verdict"],
                    r["label"],
                    r["labeler_id"],
                    r["source"],
                    r["model_version"],
                    r["reasons"],
                )
            )
        stored: dict[uuid.UUID, Split] = {
            r["image_id"]: r["split"]
            for r in await conn.fetch(
                f"SELECT image_id, split FROM {self.s}.splits WHERE image_id = ANY($1)",  # noqa: S608
                ids,
            )
        }
        facts = {r["image_id"]: r for r in images}
        members = [
            Member(
                i,
                stored.get(i) or split_for(i, settings.splits),
                facts[i]["captured_at"] if i in facts else None,
                facts[i]["object_id"] if i in facts else None,
                tuple(votes[i]),
            )
            for i in ids
        ]
        plan = plan_examples(members, settings)
        # Labelled and propagated-to images keep their split from now on.
        await conn.executemany(
            f"INSERT INTO {self.s}.splits (image_id, split) VALUES ($1, $2) "  # noqa: S608
            "ON CONFLICT (image_id) DO NOTHING",
            [(m.image_id, m.split) for m in members if m.votes or plan[m.image_id] is not None],
        )
        await self._store_plan(conn, plan)

    async def _store_plan(self, conn: Conn, plan: dict[uuid.UUID, Example | None]) -> None:
        gone = [i for i, e in plan.items() if e is None]
        if gone:
            await conn.execute(
                f"DELETE FROM {self.s}.examples WHERE image_id = ANY($1)",  # noqa: S608
                gone,
            )
        rows = [
            (
                e.image_id,
                e.split,
                e.kind,
                e.label,
                e.weight,
                e.vote.labeler_id if e.vote else None,
                e.vote.model_version if e.vote else None,
                e.vote.reasons if e.vote else [],
                e.propagated_from,
                e.vote.seq if e.vote else None,
            )
            for e in plan.values()
            if e is not None
        ]
        await conn.executemany(
            f"INSERT INTO {self.s}.examples AS x (image_id, split, kind, label, weight, "  # noqa: S608
            "labeler_id, label_model_version, reasons, propagated_from, label_event_id) "
            f"VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, "
            f"(SELECT event_id FROM {self.s}.label_events WHERE seq = $10)) "
            "ON CONFLICT (image_id) DO UPDATE SET split = EXCLUDED.split, kind = EXCLUDED.kind, "
            "label = EXCLUDED.label, weight = EXCLUDED.weight, labeler_id = EXCLUDED.labeler_id, "
            "label_model_version = EXCLUDED.label_model_version, reasons = EXCLUDED.reasons, "
            "propagated_from = EXCLUDED.propagated_from, label_event_id = EXCLUDED.label_event_id, "
            "updated_at = now()",
            rows,
        )

    async def rows(self, conn: Conn, split: Split, kinds: Sequence[str]) -> list[Row]:
        """Labelled examples of one split that have their image's facts (uri, camera, ...)."""
        records = await conn.fetch(
            f"SELECT {ROW_COLUMNS} FROM {self.s}.examples e "  # noqa: S608
            f"JOIN {self.s}.images i USING (image_id) "
            "WHERE e.split = $1 AND e.kind = ANY($2) AND e.label IS NOT NULL ORDER BY e.image_id",
            split,
            list(kinds),
        )
        return [Row(**dict(r)) for r in records]

    async def flagged_rows(self, conn: Conn) -> list[Row]:
        """Images users flagged as wrong that have no settled label, outside `test`; `label`
        is the class the flag says was wrong."""
        records = await conn.fetch(
            f"SELECT DISTINCT ON (f.image_id) f.image_id, s.split, 'human' AS kind, "  # noqa: S608
            "f.predicted_label AS label, 1.0::real AS weight, i.uri, i.sha256, i.camera_id, "
            "i.captured_hour, i.brightness, i.contrast, i.sharpness "
            f"FROM {self.s}.label_events f JOIN {self.s}.images i USING (image_id) "
            f"JOIN {self.s}.splits s USING (image_id) "
            f"LEFT JOIN {self.s}.examples e USING (image_id) "
            "WHERE f.verdict = 'wrong' AND f.label IS NULL AND f.predicted_label IS NOT NULL "
            "AND s.split <> 'test' AND e.image_id IS NULL "
            "ORDER BY f.image_id, f.occurred_at DESC",
        )
        return [Row(**dict(r)) for r in records]

    async def label_watermark(self, conn: Conn) -> int:
        return int(await conn.fetchval(f"SELECT coalesce(max(seq), 0) FROM {self.s}.label_events"))  # noqa: S608

    async def dataset_stats(self, conn: Source) -> dict[str, Any]:
        by = await conn.fetch(
            f"SELECT split, kind, count(*) AS n FROM {self.s}.examples GROUP BY split, kind"  # noqa: S608
        )
        counts: dict[str, dict[str, int]] = {}
        for r in by:
            counts.setdefault(r["split"], {})[r["kind"]] = r["n"]
        extra = await conn.fetchrow(
            f"SELECT (SELECT count(*) FROM {self.s}.images) AS images, "  # noqa: S608
            f"(SELECT count(*) FROM {self.s}.label_events) AS label_events, "
            f"(SELECT count(DISTINCT image_id) FROM {self.s}.label_events "
            "WHERE verdict = 'wrong' AND label IS NULL) AS flagged_images, "
            f"(SELECT count(*) FROM {self.s}.examples e WHERE NOT EXISTS "
            f"(SELECT 1 FROM {self.s}.images i WHERE i.image_id = e.image_id)) "
            "AS examples_waiting_for_image"
        )
        per_class = await conn.fetch(
            f"SELECT label, count(*) AS n FROM {self.s}.examples "  # noqa: S608
            "WHERE split = 'train' AND label IS NOT NULL GROUP BY label ORDER BY label"
        )
        return {
            "splits": counts,
            "ambiguous": sum(c.get("ambiguous", 0) for c in counts.values()),
            "train_per_class": {r["label"]: r["n"] for r in per_class},
            **dict(extra or {}),
        }

    # --- runs -------------------------------------------------------------------------------

    async def schedule_state(self, conn: Source) -> ScheduleState:
        r = await conn.fetchrow(
            f"""
            WITH success AS (
                SELECT coalesce(max(label_seq), 0) AS mark FROM {self.s}.runs
                 WHERE status = 'succeeded'),
                 attempt AS (
                SELECT label_seq AS mark, started_at FROM {self.s}.runs
                 WHERE status <> 'running' ORDER BY started_at DESC LIMIT 1)
            SELECT
              (SELECT count(*) FROM {self.s}.label_events
                WHERE seq > (SELECT mark FROM success) AND {LABELLED}) AS pending,
              (SELECT count(*) FROM {self.s}.label_events
                WHERE seq > coalesce((SELECT mark FROM attempt), 0) AND {LABELLED})
                AS since_attempt,
              (SELECT started_at FROM attempt) AS last_attempt_at,
              (SELECT min(received_at) FROM {self.s}.label_events
                WHERE seq > (SELECT mark FROM success) AND {LABELLED}) AS first_pending_at
            """  # noqa: S608
        )
        assert r is not None
        return ScheduleState(
            r["pending"], r["since_attempt"], r["last_attempt_at"], r["first_pending_at"]
        )

    async def start_run(
        self, conn: Conn, run_id: uuid.UUID, trigger: str, label_seq: int, host: str, pid: int
    ) -> None:
        await conn.execute(
            f"INSERT INTO {self.s}.runs (run_id, trigger, status, label_seq, host, pid) "  # noqa: S608
            "VALUES ($1, $2, 'running', $3, $4, $5)",
            run_id,
            trigger,
            label_seq,
            host,
            pid,
        )

    async def finish_run(self, conn: Conn, run_id: uuid.UUID, status: str, **fields: Any) -> bool:
        """Close a running run; False if it is no longer running (e.g. marked abandoned)."""
        columns = sorted(fields)
        assignments = "".join(f", {c} = ${i + 3}" for i, c in enumerate(columns))
        done = await conn.fetchval(
            f"UPDATE {self.s}.runs SET status = $2, finished_at = now(), "  # noqa: S608
            f"seconds = extract(epoch FROM now() - started_at){assignments} "
            "WHERE run_id = $1 AND status = 'running' RETURNING true",
            run_id,
            status,
            *(fields[c] for c in columns),
        )
        return bool(done)

    async def add_run_examples(
        self, conn: Conn, run_id: uuid.UUID, role: str, rows: Sequence[Row]
    ) -> None:
        await conn.copy_records_to_table(
            "run_examples",
            schema_name=self.s,
            columns=["run_id", "image_id", "role", "label", "weight", "kind"],
            records=[(run_id, r.image_id, role, r.label, r.weight, r.kind) for r in rows],
        )

    async def abandon_running(self, conn: Conn) -> list[uuid.UUID]:
        rows = await conn.fetch(
            f"UPDATE {self.s}.runs SET status = 'abandoned', finished_at = now(), "  # noqa: S608
            "error = 'the process running it stopped before it finished' "
            "WHERE status = 'running' RETURNING run_id"
        )
        return [r["run_id"] for r in rows]

    async def run(self, conn: Source, run_id: uuid.UUID) -> dict[str, Any] | None:
        row = await conn.fetchrow(f"SELECT * FROM {self.s}.runs WHERE run_id = $1", run_id)  # noqa: S608
        return _run_dict(row) if row else None

    async def runs(self, conn: Source, limit: int) -> list[dict[str, Any]]:
        rows = await conn.fetch(
            f"SELECT * FROM {self.s}.runs ORDER BY started_at DESC LIMIT $1",  # noqa: S608
            limit,
        )
        return [_run_dict(r) for r in rows]

    async def run_example_ids(
        self, conn: Source, run_id: uuid.UUID, role: str = "train"
    ) -> list[uuid.UUID]:
        rows = await conn.fetch(
            f"SELECT image_id FROM {self.s}.run_examples WHERE run_id = $1 AND role = $2",  # noqa: S608
            run_id,
            role,
        )
        return [r["image_id"] for r in rows]


def _run_dict(row: Any) -> dict[str, Any]:
    out = dict(row)
    for key in ("counts", "metrics", "weakness"):
        if isinstance(out.get(key), str):
            out[key] = json.loads(out[key])
    return out
