"""Functions run in a spawned child by the executor tests (importable, no torch: quick to start)."""

from __future__ import annotations

import os
import time
from pathlib import Path


def double(x: int) -> int:
    return 2 * x


def boom(x: int) -> int:
    raise ValueError(f"no good: {x}")


def die(x: int) -> int:
    os._exit(3)


def linger(marker: str) -> int:
    """Writes its pid, then works forever (until killed)."""
    Path(marker).write_text(str(os.getpid()))
    while True:
        time.sleep(0.05)
