"""When a scheduled run is due: every N new labels or every T minutes with new labels."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hone_trainer.schedule import ScheduleState, due
from hone_trainer.settings import ScheduleSettings

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
EVERY = ScheduleSettings(every_labels=100, every_minutes=30)


def state(
    pending: int,
    since_attempt: int | None = None,
    last_minutes_ago: float | None = 1,
    first_minutes_ago: float | None = 1,
) -> ScheduleState:
    return ScheduleState(
        pending,
        pending if since_attempt is None else since_attempt,
        None if last_minutes_ago is None else NOW - timedelta(minutes=last_minutes_ago),
        None if first_minutes_ago is None else NOW - timedelta(minutes=first_minutes_ago),
    )


def test_n_new_labels_start_a_run_at_once() -> None:
    assert due(state(100), EVERY, NOW) == "labels"
    assert due(state(99), EVERY, NOW) is None


def test_t_minutes_start_a_run_when_there_is_any_new_label() -> None:
    assert due(state(1, last_minutes_ago=30), EVERY, NOW) == "time"
    assert due(state(1, last_minutes_ago=29), EVERY, NOW) is None


def test_nothing_new_means_no_run_however_long_it_has_been() -> None:
    assert due(state(0, last_minutes_ago=10_000), EVERY, NOW) is None


def test_the_first_run_waits_t_minutes_from_the_oldest_pending_label() -> None:
    assert due(state(3, last_minutes_ago=None, first_minutes_ago=5), EVERY, NOW) is None
    assert due(state(3, last_minutes_ago=None, first_minutes_ago=31), EVERY, NOW) == "time"


def test_a_failed_run_is_not_retried_in_a_loop() -> None:
    # 150 labels wait since the last success, but the failed attempt a minute ago saw them.
    failed = state(150, since_attempt=0, last_minutes_ago=1)
    assert due(failed, EVERY, NOW) is None
    assert due(state(150, since_attempt=0, last_minutes_ago=31), EVERY, NOW) == "time"
    assert due(state(250, since_attempt=100, last_minutes_ago=1), EVERY, NOW) == "labels"
