"""The adaptive threshold: a running quantile of recent priorities chosen so that the share of
images above it matches what the budget allows.

The selector sees a stream, not a pool, so it decides per image: an image is requested when
its priority reaches the threshold (and a token is available). With a stream of R images/s and
a budget of B reviews/s, the threshold is the (1 - h*B/R) quantile of recent priorities (h, the
headroom, aims a little high so that the budget rather than the threshold is what binds).
Recent priorities live in a histogram whose weights decay by 1 - 1/window per image; the stream
rate is an exponentially weighted count over `rate_window_seconds`, corrected for warm-up.
Until `warmup_images` priorities have been seen the threshold means nothing, so no strategic
request is made (random control goes on): a fresh selector does not spend its first burst on
whatever arrives first. When the budget exceeds the stream, the threshold is 0: every image
with any priority may be requested and the tokens alone cap the rate.

With `acceptance="proportional"` an image is requested with probability
min(1, (priority / threshold) ** power) instead of only when it reaches the threshold (the
streaming form of the label-efficiency benchmark's stochastic picks); the threshold is then the
one whose expected share of recent priorities, so weighted, is the same h*B/R.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from hone_selector.settings import ThresholdSettings


@dataclass
class ThresholdState:
    histogram: list[float]
    arrivals: float
    started_at: float
    updated_at: float
    observed: int = 0


class AdaptiveThreshold:
    def __init__(
        self, settings: ThresholdSettings, state: ThresholdState | None, now: float
    ) -> None:
        self.settings = settings
        if state is None or len(state.histogram) != settings.bins:
            state = ThresholdState([0.0] * settings.bins, 0.0, now, now, 0)
        self._hist: npt.NDArray[np.float64] = np.asarray(state.histogram, dtype=np.float64)
        self._arrivals = state.arrivals
        self._started_at = state.started_at
        self._updated_at = state.updated_at
        self._observed = state.observed
        self._decay = 1.0 - 1.0 / settings.window_images

    def observe(self, priority: float, now: float) -> None:
        elapsed = max(0.0, now - self._updated_at)
        self._arrivals = self._arrivals * math.exp(-elapsed / self.settings.rate_window_seconds) + 1
        self._updated_at = max(self._updated_at, now)
        self._hist *= self._decay
        index = min(self.settings.bins - 1, max(0, int(priority * self.settings.bins)))
        self._hist[index] += 1.0
        self._observed += 1

    @property
    def warming_up(self) -> bool:
        return self._observed < self.settings.warmup_images

    def stream_rate(self, now: float) -> float:
        """Images per second over the recent window (0 before the first image)."""
        tau = self.settings.rate_window_seconds
        age = max(now - self._started_at, 1.0)
        decayed = self._arrivals * math.exp(-max(0.0, now - self._updated_at) / tau)
        return decayed / (tau * (1.0 - math.exp(-age / tau)))

    def value(self, budget_rate: float, now: float) -> float:
        """The priority an image needs to be requested, given `budget_rate` reviews/s."""
        rate = self.stream_rate(now)
        total = float(self._hist.sum())
        if rate <= 0.0 or total <= 0.0:
            return 0.0
        share = self.settings.headroom * budget_rate / rate
        if share >= 1.0:
            return 0.0
        if self.settings.acceptance == "proportional":
            return self._proportional_threshold(share * total)
        above = np.cumsum(self._hist[::-1])  # mass at or above each bin, from the top
        top_bins = int(np.searchsorted(above, share * total)) + 1
        return max(0.0, (self.settings.bins - top_bins) / self.settings.bins)

    def acceptance(self, priority: float, threshold: float) -> float:
        """The probability that an image of this priority is requested (budget permitting)."""
        if threshold <= 0.0:
            return 1.0
        if self.settings.acceptance == "quantile":
            return 1.0 if priority >= threshold else 0.0
        return float(min(1.0, (max(priority, 0.0) / threshold) ** self.settings.power))

    def _proportional_threshold(self, wanted: float) -> float:
        """The t at which sum(histogram * min(1, (priority / t) ** power)) is `wanted`."""
        bins, power = self.settings.bins, self.settings.power
        if wanted <= 0.0:  # no budget at all: leave the refusing to the tokens, as `quantile` does
            return 1.0
        weights = ((np.arange(bins) + 0.5) / bins) ** power  # bin centres, so weighted
        unclipped = float(self._hist @ weights)
        if unclipped >= wanted:  # even t = 1 expects too many: t >= 1, where nothing clips
            return float((unclipped / wanted) ** (1.0 / power))
        low, high = 0.0, 1.0  # expected picks fall as t rises; bisect on t
        for _ in range(30):  # to ~1e-9: far below a bin
            t = (low + high) / 2
            expected = float(self._hist @ np.minimum(1.0, weights / t**power))
            low, high = (t, high) if expected > wanted else (low, t)
        return (low + high) / 2

    def state(self) -> ThresholdState:
        return ThresholdState(
            [float(x) for x in self._hist],
            self._arrivals,
            self._started_at,
            self._updated_at,
            self._observed,
        )
