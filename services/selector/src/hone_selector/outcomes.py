"""What a label says about the production model, and strategy yields (pure functions).

A strategy's yield is the share of its labelled picks on which the production model was wrong:
the higher, the more each review teaches. The random-control picks give the baseline (their
yield is the production error rate, without selection bias) and the lift of every other
strategy is its yield over that baseline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

Verdict = Literal["label", "ambiguous", "wrong"]


def model_was_wrong(verdict: Verdict, label: str | None, predicted: str | None) -> bool | None:
    """True/False when the label settles it, None when it cannot (ambiguous, nothing to compare).

    `wrong` counts as an error whatever class comes with it (an end user's flag has none).
    """
    if verdict == "wrong":
        return True
    if verdict == "ambiguous" or label is None or predicted is None:
        return None
    return label != predicted


@dataclass(frozen=True)
class Yield:
    strategy: str
    picks: int
    labelled: int
    wrong: int

    @property
    def value(self) -> float | None:
        return self.wrong / self.labelled if self.labelled else None

    def interval(self, z: float = 1.96) -> tuple[float, float] | None:
        """Wilson score interval of the yield (None before any label)."""
        n = self.labelled
        if n == 0:
            return None
        p = self.wrong / n
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
        return max(0.0, centre - half), min(1.0, centre + half)


def lift(strategy: Yield, baseline: Yield | None) -> float | None:
    """How many times more errors a strategy finds per review than random picks do."""
    if baseline is None or strategy.value is None or not baseline.value:
        return None
    return strategy.value / baseline.value
