"""Selection strategies: each turns one `image.scored` payload (plus selector state) into a
score in [0, 1] and a short reason. They are pure functions; the state is passed in."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

RARITY = "rarity"
UNCERTAINTY = "uncertainty"
WEAKNESS = "weakness"
SLICE_RISK = "slice_risk"
RANDOM = "random"

STRATEGIES = (RARITY, UNCERTAINTY, WEAKNESS, SLICE_RISK)
"""The strategies combined into the priority; `random` bypasses the priority."""


@dataclass(frozen=True)
class StrategyScore:
    strategy: str
    score: float
    detail: str = ""
    abstained: bool = False
    """True when the strategy has nothing to say (no data, no model): it is left out of the
    priority instead of counting as a zero."""


def clamp01(value: float) -> float:
    if value != value:  # NaN: treat as no signal rather than poison the priority
        return 0.0
    return min(1.0, max(0.0, value))


def hour_bucket(captured_at: datetime, hours: int) -> int:
    """Hour-of-day slice of a capture time, in the time's own offset (the camera's local time
    when the camera sends one), so "this camera at dusk" is one slice."""
    return captured_at.hour // hours


def hour_bucket_label(bucket: int, hours: int) -> str:
    return f"{bucket * hours:02d}-{min(24, (bucket + 1) * hours):02d}h"
