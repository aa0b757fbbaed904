"""PostgreSQL access for the selector: loading the selection state, storing decisions, labels and
promoted models. Every function runs on the caller's connection, inside its transaction."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeAlias

import asyncpg
import structlog
from pydantic import ValidationError

from hone_common.events import Label, ModelPromoted, Scores
from hone_selector.budget import Budget
from hone_selector.duplicates import DuplicateIndex, RequestedImage
from hone_selector.outcomes import model_was_wrong
from hone_selector.selection import Decision, SelectionState
from hone_selector.settings import DuplicateSettings, SelectorSettings
from hone_selector.strategies.slice_risk import SliceTable, Tally
from hone_selector.threshold import AdaptiveThreshold, ThresholdState
from hone_selector.weakness_model import WeaknessArtifact, WeaknessModel

log = structlog.get_logger(__name__)

Connection: TypeAlias = "asyncpg.Connection[Any]"


class Repository:
    def __init__(self, schema: str) -> None:
        self.schema = schema

    # --- decisions ------------------------------------------------------------------------

    async def selection_state(
        self, conn: Connection, batch: Sequence[Scores], settings: SelectorSettings, now: float
    ) -> SelectionState:
        """Everything a batch of decisions needs, with the shared state locked until commit."""
        threshold = await self.lock_threshold(conn)
        artifacts = await self.weakness_artifacts(conn, list({s.model_version for s in batch}))
        return SelectionState(
            class_counts=await self.class_counts(conn),
            slices=SliceTable(await self.slices(conn)),
            weakness_models={
                version: _weakness_model(version, artifact)
                for version, artifact in artifacts.items()
            },
            budget=Budget(settings.budget, await self.budget_state(conn), now),
            threshold=AdaptiveThreshold(settings.threshold, threshold, now),
            duplicates=DuplicateIndex(
                settings.duplicates, await self.requested_near(conn, batch, settings.duplicates)
            ),
            open_reviews=await self.open_reviews(conn, settings.budget.queue_ttl_hours),
        )

    async def save_state(self, conn: Connection, state: SelectionState) -> None:
        await self.save_budget(conn, state.budget.state())
        await self.save_threshold(conn, state.threshold.state())

    async def lock_threshold(self, conn: Connection) -> ThresholdState | None:
        """Lock the selector's shared state for this transaction and return the threshold's."""
        row = await conn.fetchrow(
            "SELECT histogram, arrivals, started_at, updated_at, observed "  # noqa: S608
            f"FROM {self.schema}.threshold_state WHERE id = 1 FOR UPDATE"
        )
        if row is None or row["started_at"] is None:
            return None
        return ThresholdState(
            list(row["histogram"]),
            row["arrivals"],
            row["started_at"],
            row["updated_at"],
            row["observed"],
        )

    async def save_threshold(self, conn: Connection, state: ThresholdState) -> None:
        await conn.execute(
            f"UPDATE {self.schema}.threshold_state SET histogram = $1, arrivals = $2, "  # noqa: S608
            "started_at = $3, updated_at = $4, observed = $5 WHERE id = 1",
            state.histogram,
            state.arrivals,
            state.started_at,
            state.updated_at,
            state.observed,
        )

    async def budget_state(self, conn: Connection) -> dict[str, tuple[float, float]]:
        rows = await conn.fetch(
            f"SELECT name, tokens, updated_at FROM {self.schema}.budget_buckets"  # noqa: S608
        )
        return {row["name"]: (row["tokens"], row["updated_at"]) for row in rows}

    async def save_budget(self, conn: Connection, state: dict[str, tuple[float, float]]) -> None:
        await conn.executemany(
            f"INSERT INTO {self.schema}.budget_buckets (name, tokens, updated_at) "  # noqa: S608
            "VALUES ($1, $2, $3) ON CONFLICT (name) DO UPDATE "
            "SET tokens = EXCLUDED.tokens, updated_at = EXCLUDED.updated_at",
            [(name, tokens, updated_at) for name, (tokens, updated_at) in state.items()],
        )

    async def class_counts(self, conn: Connection) -> dict[str, int]:
        rows = await conn.fetch(f"SELECT class, labelled FROM {self.schema}.class_counts")  # noqa: S608
        return {row["class"]: row["labelled"] for row in rows}

    async def slices(self, conn: Connection) -> dict[tuple[str, int], Tally]:
        rows = await conn.fetch(
            f"SELECT camera_id, hour_bucket, labelled, wrong FROM {self.schema}.slice_stats"  # noqa: S608
        )
        return {
            (row["camera_id"], row["hour_bucket"]): Tally(row["labelled"], row["wrong"])
            for row in rows
        }

    async def open_reviews(self, conn: Connection, ttl_hours: float) -> int:
        count = await conn.fetchval(
            f"SELECT count(*) FROM {self.schema}.decisions "  # noqa: S608
            "WHERE requested AND answered_at IS NULL AND decided_at > now() - $1::interval",
            timedelta(hours=ttl_hours),
        )
        return int(count)

    async def weakness_artifacts(
        self, conn: Connection, versions: Sequence[str]
    ) -> dict[str, dict[str, Any]]:
        rows = await conn.fetch(
            f"SELECT model_version, weakness_model FROM {self.schema}.models "  # noqa: S608
            "WHERE model_version = ANY($1) AND weakness_model IS NOT NULL",
            list(versions),
        )
        return {row["model_version"]: row["weakness_model"] for row in rows}

    async def already_decided(
        self, conn: Connection, batch: Sequence[Scores]
    ) -> set[tuple[uuid.UUID, str]]:
        rows = await conn.fetch(
            f"SELECT image_id, model_version FROM {self.schema}.decisions "  # noqa: S608
            "WHERE (image_id, model_version) IN "
            "(SELECT * FROM unnest($1::uuid[], $2::text[]))",
            [s.image_id for s in batch],
            [s.model_version for s in batch],
        )
        return {(row["image_id"], row["model_version"]) for row in rows}

    async def requested_near(
        self, conn: Connection, batch: Sequence[Scores], settings: DuplicateSettings
    ) -> list[RequestedImage]:
        """Earlier requests that could make an image of the batch a duplicate."""
        first = min(s.captured_at for s in batch)
        last = max(s.captured_at for s in batch)
        object_window = timedelta(seconds=settings.object_window_seconds)
        camera_window = timedelta(seconds=settings.camera_window_seconds)
        rows = await conn.fetch(
            f"SELECT image_id, camera_id, object_id, captured_at, predicted_label, probabilities "  # noqa: S608
            f"FROM {self.schema}.decisions WHERE requested AND ("
            " image_id = ANY($1)"
            " OR (object_id = ANY($2) AND captured_at BETWEEN $3 AND $4)"
            " OR (camera_id = ANY($5) AND captured_at BETWEEN $6 AND $7))",
            [s.image_id for s in batch],
            list({s.object_id for s in batch if s.object_id is not None}),
            _shift(first, -object_window),
            _shift(last, object_window),
            list({s.camera_id for s in batch}),
            _shift(first, -camera_window),
            _shift(last, camera_window),
        )
        return [
            RequestedImage(
                row["image_id"],
                row["camera_id"],
                row["object_id"],
                row["captured_at"],
                row["predicted_label"],
                tuple(row["probabilities"]),
            )
            for row in rows
        ]

    async def insert_decisions(
        self,
        conn: Connection,
        decisions: Sequence[tuple[uuid.UUID, Decision, int, uuid.UUID | None]],
    ) -> None:
        """Store (scored event id, decision, hour bucket, review event id) rows."""
        await conn.executemany(
            f"INSERT INTO {self.schema}.decisions (image_id, model_version, event_id, uri, "  # noqa: S608
            "camera_id, object_id, captured_at, hour_bucket, predicted_label, confidence, "
            "probabilities, priority, threshold, scores, outcome, requested, strategies, reasons, "
            "review_event_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, "
            "$13, $14, $15, $16, $17, $18, $19) "
            "ON CONFLICT (image_id, model_version) DO NOTHING",
            [
                _decision_row(event_id, d, bucket, review_id)
                for event_id, d, bucket, review_id in decisions
            ],
        )

    async def unclaim(self, conn: Connection, event_ids: list[uuid.UUID]) -> None:
        """Forget events that were dead-lettered, so a replay of them is processed."""
        if event_ids:
            await conn.execute(
                f"DELETE FROM {self.schema}.processed_events WHERE event_id = ANY($1)",  # noqa: S608
                event_ids,
            )

    # --- labels ---------------------------------------------------------------------------

    async def record_label(self, conn: Connection, label: Label) -> bool | None:
        """Fold one label into the counts and the decisions it answers; returns whether the
        model was wrong (None: the label cannot tell).

        The latest label of an image wins: its previous contribution to the class counts and
        slice statistics is taken back first. A propagated label never replaces a human one.
        Only human labels count towards slice error rates and answer review requests.
        """
        s = self.schema
        decision = await conn.fetchrow(
            f"SELECT predicted_label, camera_id, hour_bucket FROM {s}.decisions "  # noqa: S608
            "WHERE image_id = $1 ORDER BY (model_version = $2) DESC NULLS LAST, decided_at DESC "
            "LIMIT 1",
            label.image_id,
            label.model_version,
        )
        predicted = decision["predicted_label"] if decision else label.predicted_label
        wrong = model_was_wrong(label.verdict, label.label, predicted)
        human = label.source == "human"
        previous = await conn.fetchrow(
            f"SELECT label, source, camera_id, hour_bucket, model_wrong FROM {s}.labels "  # noqa: S608
            "WHERE image_id = $1 FOR UPDATE",
            label.image_id,
        )
        if previous is not None and previous["source"] == "human" and not human:
            return wrong
        if previous is not None:
            await self._count(conn, previous["label"], -1)
            await self._tally(
                conn, previous["camera_id"], previous["hour_bucket"], previous["model_wrong"], -1
            )
        counted_class = label.label if label.verdict != "ambiguous" else None
        slice_counted = human and wrong is not None and decision is not None
        camera = decision["camera_id"] if slice_counted and decision else None
        bucket = decision["hour_bucket"] if slice_counted and decision else None
        await self._count(conn, counted_class, +1)
        await self._tally(conn, camera, bucket, wrong if slice_counted else None, +1)
        await conn.execute(
            f"INSERT INTO {s}.labels (image_id, verdict, label, source, camera_id, hour_bucket, "  # noqa: S608
            "model_wrong) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (image_id) DO UPDATE SET "
            "verdict = EXCLUDED.verdict, label = EXCLUDED.label, source = EXCLUDED.source, "
            "camera_id = EXCLUDED.camera_id, hour_bucket = EXCLUDED.hour_bucket, "
            "model_wrong = EXCLUDED.model_wrong, labelled_at = now()",
            label.image_id,
            label.verdict,
            counted_class,
            label.source,
            camera,
            bucket,
            wrong if slice_counted else None,
        )
        if human:
            await conn.execute(
                f"UPDATE {s}.decisions SET answered_at = coalesce(answered_at, now()), "  # noqa: S608
                "verdict = $2, human_label = $3, labeler_id = $4, model_wrong = $5 "
                "WHERE image_id = $1 AND requested",
                label.image_id,
                label.verdict,
                label.label,
                label.labeler_id,
                wrong,
            )
        return wrong

    async def _count(self, conn: Connection, name: str | None, delta: int) -> None:
        if name is None:
            return
        await conn.execute(
            f"INSERT INTO {self.schema}.class_counts (class, labelled) "  # noqa: S608
            "VALUES ($1, GREATEST($2, 0)) ON CONFLICT (class) "
            "DO UPDATE SET labelled = GREATEST(0, class_counts.labelled + $2)",
            name,
            delta,
        )

    async def _tally(
        self,
        conn: Connection,
        camera: str | None,
        bucket: int | None,
        wrong: bool | None,
        delta: int,
    ) -> None:
        if camera is None or bucket is None or wrong is None:
            return
        await conn.execute(
            f"INSERT INTO {self.schema}.slice_stats AS t "  # noqa: S608
            "(camera_id, hour_bucket, labelled, wrong) "
            "VALUES ($1, $2, GREATEST($3, 0), GREATEST($4, 0)) "
            "ON CONFLICT (camera_id, hour_bucket) "
            "DO UPDATE SET labelled = GREATEST(0, t.labelled + $3), "
            "wrong = LEAST(GREATEST(0, t.labelled + $3), GREATEST(0, t.wrong + $4))",
            camera,
            bucket,
            delta,
            delta if wrong else 0,
        )

    # --- models ---------------------------------------------------------------------------

    async def record_promotion(
        self,
        conn: Connection,
        event: ModelPromoted,
        artifact: dict[str, Any] | None,
        error: str | None,
    ) -> None:
        promotion = event.payload
        await conn.execute(
            f"INSERT INTO {self.schema}.models (model_version, previous_version, promoted_at, "  # noqa: S608
            "event_id, weakness_model_uri, weakness_model, weakness_error) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (model_version) DO UPDATE SET "
            "previous_version = EXCLUDED.previous_version, "
            "promoted_at = GREATEST(models.promoted_at, EXCLUDED.promoted_at), "
            "event_id = EXCLUDED.event_id, weakness_model_uri = EXCLUDED.weakness_model_uri, "
            "weakness_model = EXCLUDED.weakness_model, weakness_error = EXCLUDED.weakness_error",
            promotion.model_version,
            promotion.previous_version,
            event.occurred_at,
            event.event_id,
            promotion.weakness_model_uri,
            artifact,
            error,
        )


def _weakness_model(version: str, artifact: dict[str, Any]) -> WeaknessModel | None:
    """The stored artifact was validated on promotion; should it still not load (edited by
    hand, older format), the strategy abstains rather than blocking every decision."""
    try:
        return WeaknessModel(WeaknessArtifact.model_validate(artifact))
    except ValidationError:
        log.exception("stored_weakness_model_unusable", model_version=version)
        return None


def _shift(moment: datetime, delta: timedelta) -> datetime:
    """`moment + delta`, held at the ends of the calendar (a capture time in year 1 or 9999
    must not make a batch fail forever)."""
    try:
        return moment + delta
    except OverflowError:
        return (datetime.min if delta < timedelta(0) else datetime.max).replace(tzinfo=UTC)


def _decision_row(
    event_id: uuid.UUID, d: Decision, bucket: int, review_id: uuid.UUID | None
) -> tuple[Any, ...]:
    s = d.scores
    return (
        s.image_id,
        s.model_version,
        event_id,
        s.uri,
        s.camera_id,
        s.object_id,
        s.captured_at,
        bucket,
        s.label,
        s.confidence,
        list(s.probabilities),
        d.priority,
        d.threshold,
        {
            x.strategy: {"score": round(x.score, 6), "detail": x.detail, "abstained": x.abstained}
            for x in d.strategy_scores
        },
        d.outcome,
        d.requested,
        [r.strategy for r in d.reasons] if d.requested else [],
        [{"strategy": r.strategy, "score": r.score, "detail": r.detail} for r in d.reasons],
        review_id,
    )
