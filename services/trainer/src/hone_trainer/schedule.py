"""When a scheduled training run is due: every N new labels or every T minutes if there is any
new label, whichever comes first."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from hone_trainer.settings import ScheduleSettings

Trigger = Literal["labels", "time"]


@dataclass(frozen=True)
class ScheduleState:
    """What the schedule looks at, read from the runs and label tables.

    `pending` counts labels since the last successful run (what a run would add); `since_attempt`
    counts those since the last run of any outcome, so a failed or skipped run is retried when
    new labels come or after T minutes, not in a tight loop.
    """

    pending: int
    since_attempt: int
    last_attempt_at: datetime | None
    first_pending_at: datetime | None


def due(state: ScheduleState, settings: ScheduleSettings, now: datetime) -> Trigger | None:
    if state.pending <= 0:
        return None
    if state.since_attempt >= settings.every_labels:
        return "labels"
    # Without an earlier run, T is counted from the oldest label waiting for one.
    since = state.last_attempt_at or state.first_pending_at
    if since is None or now - since >= timedelta(minutes=settings.every_minutes):
        return "time"
    return None
