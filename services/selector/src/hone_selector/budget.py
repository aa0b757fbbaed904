"""The review budget: token buckets refilled by time, split per camera and class, slowed down
when the labelers' queue grows.

* `strategic` gets `reviews_per_hour * (1 - random_share)` tokens per hour; `random` gets the
  rest, so random-control picks are never starved by strategic ones (and cannot starve them).
* With camera shares, a strategic pick also needs a token from `camera:<id>` (or `camera:*`
  for unlisted cameras, which share what the listed ones leave); the same for class shares
  with the predicted class. A pick takes one token from every bucket it needs, or none.
* Each bucket holds at most `burst_minutes` of refill and starts full.
* Backpressure: above `target_queue` open reviews every refill is multiplied by
  `target_queue / queue` (never below `min_refill_factor`), so the request rate follows the
  rate at which labelers answer.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from hone_selector.settings import BudgetSettings

STRATEGIC = "strategic"
RANDOM = "random"


@dataclass
class TokenBucket:
    rate: float
    """Tokens per second at full speed."""
    capacity: float
    tokens: float
    updated_at: float
    """Seconds since the epoch of the last refill."""

    def refill(self, now: float, factor: float) -> None:
        if now > self.updated_at:
            self.tokens = min(
                self.capacity, self.tokens + (now - self.updated_at) * self.rate * factor
            )
            self.updated_at = now
        self.tokens = min(self.tokens, self.capacity)


def refill_factor(queue: int, target_queue: int, min_factor: float) -> float:
    """1 up to the target queue depth, then target / queue, floored at `min_factor`."""
    if queue <= target_queue:
        return 1.0
    return max(min_factor, target_queue / queue)


def _share(shares: Mapping[str, float], key: str) -> tuple[str, float]:
    if key in shares and key != "*":
        return key, shares[key]
    rest = shares.get("*", max(0.0, 1.0 - sum(v for k, v in shares.items() if k != "*")))
    return "*", rest


class Budget:
    """The set of buckets; `state` maps a bucket name to (tokens, updated_at) for storage."""

    def __init__(
        self, settings: BudgetSettings, state: Mapping[str, tuple[float, float]], now: float
    ) -> None:
        self.settings = settings
        self._state = dict(state)
        self._now = now
        self.buckets: dict[str, TokenBucket] = {}

    def _rate(self, name: str) -> float:
        per_hour = self.settings.reviews_per_hour
        if name == RANDOM:
            return per_hour * self.settings.random_share / 3600.0
        strategic = per_hour * (1.0 - self.settings.random_share) / 3600.0
        kind, _, key = name.partition(":")
        if kind == "camera":
            return strategic * _share(self.settings.camera_shares, key)[1]
        if kind == "class":
            return strategic * _share(self.settings.class_shares, key)[1]
        return strategic

    def bucket(self, name: str) -> TokenBucket:
        if name not in self.buckets:
            rate = self._rate(name)
            capacity = rate * self.settings.burst_minutes * 60.0
            if rate > 0.0:
                capacity = max(1.0, capacity)
            tokens, updated_at = self._state.get(name, (capacity, self._now))
            self.buckets[name] = TokenBucket(rate, capacity, min(tokens, capacity), updated_at)
        return self.buckets[name]

    def strategic_buckets(self, camera_id: str, label: str) -> list[str]:
        names = [STRATEGIC]
        if self.settings.camera_shares:
            names.append(f"camera:{_share(self.settings.camera_shares, camera_id)[0]}")
        if self.settings.class_shares:
            names.append(f"class:{_share(self.settings.class_shares, label)[0]}")
        return names

    def try_take(self, names: Iterable[str], now: float, factor: float) -> str | None:
        """Take one token from each named bucket; the name of the first empty one (nothing
        taken) or None (taken)."""
        buckets = [(name, self.bucket(name)) for name in names]
        for _, bucket in buckets:
            bucket.refill(now, factor)
        for name, bucket in buckets:
            if bucket.tokens < 1.0:
                return name
        for _, bucket in buckets:
            bucket.tokens -= 1.0
        return None

    def strategic_rate(self, factor: float) -> float:
        """Strategic reviews per second the budget currently allows."""
        return self.bucket(STRATEGIC).rate * factor

    def state(self) -> dict[str, tuple[float, float]]:
        return {name: (b.tokens, b.updated_at) for name, b in self.buckets.items()}
