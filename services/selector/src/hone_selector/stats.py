"""What the selector has learnt, for operators: labelled-set counts, slice error rates, strategy
yields (overall and per day), the production accuracy estimate from random picks, budget and
queue. Served by `GET /v1/selector/stats` and, for yields, as Prometheus gauges."""

from __future__ import annotations

import time
from datetime import date, datetime
from typing import Any, TypeAlias

import asyncpg
from pydantic import BaseModel, Field

from hone_selector import metrics
from hone_selector.budget import STRATEGIC, Budget, refill_factor
from hone_selector.outcomes import Yield, lift
from hone_selector.settings import SelectorSettings
from hone_selector.strategies import RANDOM, hour_bucket_label
from hone_selector.strategies.slice_risk import SliceTable, Tally
from hone_selector.threshold import AdaptiveThreshold, ThresholdState

Connection: TypeAlias = "asyncpg.Connection[Any]"


class YieldOut(BaseModel):
    strategy: str
    picks: int = Field(description="Images requested with this strategy among the reasons.")
    labelled: int = Field(description="Of those, answered with a label that settles it.")
    wrong: int = Field(description="Of those, the production model had wrong.")
    yield_: float | None = Field(None, serialization_alias="yield")
    interval: tuple[float, float] | None = Field(None, description="95% Wilson interval.")
    lift: float | None = Field(None, description="Yield over the random-control yield.")


class DailyYield(BaseModel):
    day: date
    strategy: str
    labelled: int
    wrong: int
    yield_: float | None = Field(None, serialization_alias="yield")


class SliceOut(BaseModel):
    camera_id: str
    hour_bucket: int
    hours: str
    labelled: int
    wrong: int
    error_rate: float = Field(description="Smoothed estimate used by the slice_risk strategy.")


class Accuracy(BaseModel):
    labelled: int
    accuracy: float | None
    interval: tuple[float, float] | None


class BucketOut(BaseModel):
    tokens: float
    capacity: float
    per_hour: float = Field(description="Refill per hour at full speed.")


class ModelOut(BaseModel):
    model_version: str
    promoted_at: datetime
    weakness_model_uri: str | None
    weakness_model_loaded: bool
    weakness_error: str | None


class Stats(BaseModel):
    production_model: ModelOut | None
    class_counts: dict[str, int]
    slices: list[SliceOut]
    yields: list[YieldOut]
    daily_yields: list[DailyYield]
    production_accuracy: Accuracy = Field(description="From random-control picks only.")
    accuracy_per_camera: dict[str, Accuracy]
    open_reviews: int
    target_queue: int
    refill_factor: float
    threshold: float
    stream_per_hour: float
    budget: dict[str, BucketOut]
    decisions_24h: dict[str, int] = Field(description="Decisions of the last 24 h by outcome.")


async def yields(conn: Connection, schema: str) -> list[Yield]:
    rows = await conn.fetch(
        f"SELECT s AS strategy, count(*) AS picks, count(model_wrong) AS labelled, "  # noqa: S608
        f"count(*) FILTER (WHERE model_wrong) AS wrong "
        f"FROM {schema}.decisions, unnest(strategies) AS s WHERE requested GROUP BY s ORDER BY s"
    )
    return [Yield(r["strategy"], r["picks"], r["labelled"], r["wrong"]) for r in rows]


async def refresh_yield_gauges(pool: asyncpg.Pool[Any], schema: str) -> list[Yield]:
    async with pool.acquire() as conn:
        found = await yields(conn, schema)
    for y in found:
        metrics.STRATEGY_LABELLED.labels(y.strategy).set(y.labelled)
        if y.value is not None:
            metrics.STRATEGY_YIELD.labels(y.strategy).set(y.value)
    return found


def _accuracy(labelled: int, wrong: int) -> Accuracy:
    interval = Yield(RANDOM, labelled, labelled, wrong).interval()
    return Accuracy(
        labelled=labelled,
        accuracy=1 - wrong / labelled if labelled else None,
        interval=(1 - interval[1], 1 - interval[0]) if interval else None,
    )


async def collect(
    conn: Connection, schema: str, settings: SelectorSettings, days: int = 14
) -> Stats:
    now = time.time()
    found = await yields(conn, schema)
    baseline = next((y for y in found if y.strategy == RANDOM), None)
    daily = await conn.fetch(
        f"SELECT date_trunc('day', decided_at)::date AS day, s AS strategy, "  # noqa: S608
        f"count(model_wrong) AS labelled, count(*) FILTER (WHERE model_wrong) AS wrong "
        f"FROM {schema}.decisions, unnest(strategies) AS s "
        f"WHERE requested AND decided_at > now() - make_interval(days => $1) "
        f"GROUP BY 1, 2 ORDER BY 1, 2",
        days,
    )
    random_rows = await conn.fetch(
        f"SELECT camera_id, count(model_wrong) AS labelled, "  # noqa: S608
        f"count(*) FILTER (WHERE model_wrong) AS wrong FROM {schema}.decisions "
        f"WHERE requested AND outcome = 'random' GROUP BY camera_id ORDER BY camera_id"
    )
    slice_rows = await conn.fetch(
        f"SELECT camera_id, hour_bucket, labelled, wrong FROM {schema}.slice_stats "  # noqa: S608
        f"ORDER BY camera_id, hour_bucket"
    )
    table = SliceTable({(r["camera_id"], r["hour_bucket"]): _tally(r) for r in slice_rows})
    model = await conn.fetchrow(
        "SELECT model_version, promoted_at, weakness_model_uri, "  # noqa: S608
        "weakness_model IS NOT NULL AS loaded, "
        f"weakness_error FROM {schema}.models ORDER BY promoted_at DESC LIMIT 1"
    )
    counts = await conn.fetch(f"SELECT class, labelled FROM {schema}.class_counts ORDER BY class")  # noqa: S608
    outcomes = await conn.fetch(
        f"SELECT split_part(outcome, ':', 1) AS outcome, count(*) AS n FROM {schema}.decisions "  # noqa: S608
        f"WHERE decided_at > now() - interval '24 hours' GROUP BY 1 ORDER BY 1"
    )
    open_reviews = await conn.fetchval(
        f"SELECT count(*) FROM {schema}.decisions WHERE requested AND answered_at IS NULL "  # noqa: S608
        f"AND decided_at > now() - make_interval(secs => $1)",
        settings.budget.queue_ttl_hours * 3600,
    )
    buckets = await conn.fetch(f"SELECT name, tokens, updated_at FROM {schema}.budget_buckets")  # noqa: S608
    state = await conn.fetchrow(f"SELECT * FROM {schema}.threshold_state")  # noqa: S608

    factor = refill_factor(
        open_reviews, settings.budget.target_queue, settings.budget.min_refill_factor
    )
    budget = Budget(
        settings.budget, {r["name"]: (r["tokens"], r["updated_at"]) for r in buckets}, now
    )
    for name in {STRATEGIC, RANDOM, *(r["name"] for r in buckets)}:
        budget.bucket(name).refill(now, factor)
    threshold = _threshold(settings, state, now)
    per_camera = {r["camera_id"]: _accuracy(r["labelled"], r["wrong"]) for r in random_rows}
    return Stats(
        production_model=ModelOut(
            model_version=model["model_version"],
            promoted_at=model["promoted_at"],
            weakness_model_uri=model["weakness_model_uri"],
            weakness_model_loaded=model["loaded"],
            weakness_error=model["weakness_error"],
        )
        if model
        else None,
        class_counts={r["class"]: r["labelled"] for r in counts},
        slices=[
            SliceOut(
                camera_id=r["camera_id"],
                hour_bucket=r["hour_bucket"],
                hours=hour_bucket_label(r["hour_bucket"], settings.slice_risk.hour_bucket_hours),
                labelled=r["labelled"],
                wrong=r["wrong"],
                error_rate=table.estimate(
                    r["camera_id"], r["hour_bucket"], settings.slice_risk.prior_strength
                )[0],
            )
            for r in slice_rows
        ],
        yields=[
            YieldOut(
                strategy=y.strategy,
                picks=y.picks,
                labelled=y.labelled,
                wrong=y.wrong,
                yield_=y.value,
                interval=y.interval(),
                lift=lift(y, baseline),
            )
            for y in found
        ],
        daily_yields=[
            DailyYield(
                day=r["day"],
                strategy=r["strategy"],
                labelled=r["labelled"],
                wrong=r["wrong"],
                yield_=r["wrong"] / r["labelled"] if r["labelled"] else None,
            )
            for r in daily
        ],
        production_accuracy=_accuracy(
            sum(a.labelled for a in per_camera.values()),
            sum(r["wrong"] for r in random_rows),
        ),
        accuracy_per_camera=per_camera,
        open_reviews=open_reviews,
        target_queue=settings.budget.target_queue,
        refill_factor=factor,
        threshold=threshold.value(budget.strategic_rate(factor), now),
        stream_per_hour=threshold.stream_rate(now) * 3600,
        budget={
            name: BucketOut(tokens=b.tokens, capacity=b.capacity, per_hour=b.rate * 3600)
            for name, b in sorted(budget.buckets.items())
        },
        decisions_24h={r["outcome"]: r["n"] for r in outcomes},
    )


def _tally(row: Any) -> Tally:
    return Tally(row["labelled"], row["wrong"])


def _threshold(settings: SelectorSettings, row: Any, now: float) -> AdaptiveThreshold:
    state = (
        ThresholdState(
            list(row["histogram"]), row["arrivals"], row["started_at"], row["updated_at"]
        )
        if row is not None and row["started_at"] is not None
        else None
    )
    return AdaptiveThreshold(settings.threshold, state, now)
