"""The per-key token bucket, on a fake clock."""

from __future__ import annotations

from hone_common.ratelimit import RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_is_allowed_then_requests_wait_for_the_refill() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=2.0, burst=3, clock=clock)

    assert [limiter.take("k") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("k") == 0.5
    clock.now = 0.5
    assert limiter.take("k") == 0.0
    assert limiter.take("k") == 0.5


def test_keys_have_their_own_buckets() -> None:
    limiter = RateLimiter(rate=1.0, burst=1, clock=Clock())

    assert limiter.take("ann") == 0.0
    assert limiter.take("ann") > 0
    assert limiter.take("bob") == 0.0


def test_the_bucket_never_holds_more_than_the_burst() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=10.0, burst=2, clock=clock)
    limiter.take("k")
    clock.now = 3600.0

    assert [limiter.take("k") == 0.0 for _ in range(3)] == [True, True, False]


def test_memory_is_bounded_by_dropping_the_idlest_keys() -> None:
    limiter = RateLimiter(rate=1.0, burst=1, max_keys=2, clock=Clock())
    limiter.take("a")
    limiter.take("b")
    limiter.take("a")  # a is now the most recent
    limiter.take("c")  # evicts b

    assert limiter.take("a") > 0  # still remembered: empty bucket
    assert limiter.take("b") == 0.0  # forgotten: a fresh bucket
