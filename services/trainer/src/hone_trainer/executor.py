"""Running the compute part of a training run off the event loop, in a child process or a thread.

A child process (spawned, so it shares no locks or threads with the service) can be killed
when the run is cancelled, and a crash inside torch cannot take the service down with it. A
thread is cheaper to start but cannot be stopped: a cancelled run's thread trains on until it
ends and its result is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any, Literal, TypeVar

from hone_common.logging import configure_logging

J = TypeVar("J")
R = TypeVar("R")


class TrainingCrashed(RuntimeError):
    """The compute step raised or its process died; the message says how."""


def _child(fn: Callable[[Any], Any], job: Any, out: Connection, log: tuple[str, bool]) -> None:
    configure_logging("trainer", log[0], log[1])
    try:
        result = fn(job)
    except BaseException as error:  # everything must reach the parent, even KeyboardInterrupt
        out.send(("error", f"{type(error).__name__}: {error}\n{traceback.format_exc()[-4000:]}"))
    else:
        out.send(("ok", result))
    finally:
        out.close()


async def run_in_process(
    fn: Callable[[J], R], job: J, *, log_level: str = "INFO", log_json: bool = True
) -> R:
    """`fn(job)` in a spawned child; cancelling the caller kills the child."""
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    process = context.Process(
        target=_child,
        args=(fn, job, send, (log_level, log_json)),
        name="hone-training",
        daemon=True,
    )
    process.start()
    send.close()  # the child holds the only writer: its death ends the pipe (EOF)
    loop = asyncio.get_running_loop()
    readable = asyncio.Event()
    loop.add_reader(receive.fileno(), readable.set)
    try:
        await readable.wait()
        try:
            # The child sends one small message at once: reading it here does not block long.
            status, value = receive.recv()
        except EOFError:
            await asyncio.to_thread(process.join, 10)
            raise TrainingCrashed(
                f"the training process died (exit code {process.exitcode})"
            ) from None
        if status != "ok":
            raise TrainingCrashed(str(value))
        return value  # type: ignore[no-any-return]
    finally:
        loop.remove_reader(receive.fileno())
        receive.close()
        if process.is_alive():
            process.kill()
        with contextlib.suppress(Exception):
            await asyncio.to_thread(process.join, 10)


async def run_in_thread(fn: Callable[[J], R], job: J) -> R:
    try:
        return await asyncio.to_thread(fn, job)
    except asyncio.CancelledError:
        raise
    except Exception as error:
        raise TrainingCrashed(f"{type(error).__name__}: {error}") from error


async def execute(
    fn: Callable[[J], R],
    job: J,
    mode: Literal["process", "thread"],
    *,
    log_level: str = "INFO",
    log_json: bool = True,
) -> R:
    if mode == "process":
        return await run_in_process(fn, job, log_level=log_level, log_json=log_json)
    return await run_in_thread(fn, job)
