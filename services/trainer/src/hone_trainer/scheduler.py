"""The schedule loop: check every few seconds whether a run is due and start it in the background
(the loop goes on checking while it runs; a due run finds the lock taken and waits its turn)."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from typing import Any

import asyncpg
import structlog

from hone_trainer.repository import Repository
from hone_trainer.runs import Trainer
from hone_trainer.schedule import due
from hone_trainer.settings import ScheduleSettings

log = structlog.get_logger(__name__)


class Scheduler:
    def __init__(
        self,
        trainer: Trainer,
        pool: asyncpg.Pool[Any],
        repository: Repository,
        settings: ScheduleSettings,
    ) -> None:
        self._trainer = trainer
        self._pool = pool
        self._repo = repository
        self._settings = settings
        self._task: asyncio.Task[None] | None = None

    async def tick(self) -> bool:
        """One check; True if it started a run."""
        if self._trainer.current is not None:
            return False
        state = await self._repo.schedule_state(self._pool)
        trigger = due(state, self._settings, datetime.now(UTC))
        if trigger is None:
            return False
        started = await self._trainer.start(f"schedule:{trigger}", only_if_due=True)
        return started is not None

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._settings.check_seconds)
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("schedule_check_failed")

    def start(self) -> None:
        if self._task is None and self._settings.enabled:
            self._task = asyncio.create_task(self._loop(), name="trainer-schedule")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
