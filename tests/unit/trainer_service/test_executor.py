"""Training off the event loop: results and errors come back from the child process, a dead
child is reported, a cancelled run's child is killed."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from hone_trainer.executor import TrainingCrashed, execute, run_in_process
from tests.unit.trainer_service import child_functions


async def test_the_child_returns_its_result() -> None:
    assert await run_in_process(child_functions.double, 21, log_json=False) == 42


async def test_an_error_in_the_child_comes_back_with_its_message() -> None:
    with pytest.raises(TrainingCrashed, match="ValueError: no good: 7"):
        await run_in_process(child_functions.boom, 7)


async def test_a_child_that_dies_is_reported_with_its_exit_code() -> None:
    with pytest.raises(TrainingCrashed, match="exit code 3"):
        await run_in_process(child_functions.die, 0)


async def test_cancelling_the_run_kills_the_child(tmp_path: Path) -> None:
    marker = tmp_path / "pid"
    task = asyncio.create_task(run_in_process(child_functions.linger, str(marker)))
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert time.monotonic() < deadline, "the child never started"
        await asyncio.sleep(0.1)
    pid = int(marker.read_text())
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


async def test_the_thread_mode_wraps_errors_the_same_way() -> None:
    assert await execute(child_functions.double, 2, "thread") == 4
    with pytest.raises(TrainingCrashed, match="no good"):
        await execute(child_functions.boom, 1, "thread")
