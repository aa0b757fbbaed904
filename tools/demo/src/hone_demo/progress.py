"""The live terminal view: one rich table refreshed while the loop runs."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from rich.table import Table


@dataclass
class Live:
    """What the view shows; the demo's tasks write it, the view only reads it."""

    started: float = field(default_factory=time.monotonic)
    phase: str = "starting"
    frames_sent: int = 0
    frames_total: int = 0
    labels: int = 0
    ambiguous: int = 0
    queue: int | None = None
    version: str | None = None
    promotions: int = 0
    hone_accuracy: float | None = None
    control_accuracy: float | None = None
    selector_estimate: float | None = None
    last_decision: str = "-"
    errors: int = 0

    def table(self) -> Table:
        table = Table(title="Hone closed-loop demo", show_header=False, min_width=60)
        table.add_column(style="bold cyan")
        table.add_column()
        elapsed = time.monotonic() - self.started
        rows = [
            ("phase", self.phase),
            ("elapsed", f"{elapsed // 60:.0f} min {elapsed % 60:02.0f} s"),
            ("frames sent", f"{self.frames_sent} / {self.frames_total}"),
            ("human labels used", f"{self.labels} (+{self.ambiguous} ambiguous)"),
            ("review queue depth", "-" if self.queue is None else str(self.queue)),
            ("production version", self.version or "-"),
            ("promotions", str(self.promotions)),
            ("production accuracy (held-out)", _pct(self.hone_accuracy)),
            ("random control, same labels", _pct(self.control_accuracy)),
            ("accuracy estimated from random picks", _pct(self.selector_estimate)),
            ("last gate decision", self.last_decision),
            ("API errors", str(self.errors)),
        ]
        for name, value in rows:
            table.add_row(name, value)
        return table


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"
