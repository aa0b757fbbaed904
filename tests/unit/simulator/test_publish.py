"""Publishing: token-bucket pacing, and a clear error when Kafka cannot be reached."""

from __future__ import annotations

import pytest

from hone_common.settings import KafkaSettings
from hone_simulator.publish import PublishError, PublishReport, TokenBucket, publish_frames


class FakeTime:
    """A clock that only moves when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


async def test_the_bucket_paces_acquisitions_at_the_rate() -> None:
    time = FakeTime()
    bucket = TokenBucket(rate=50.0, clock=time.clock, sleep=time.sleep)
    for _ in range(101):
        await bucket.acquire()
    assert time.now - 100.0 == pytest.approx(100 / 50.0, rel=1e-6)


async def test_the_bucket_allows_a_burst_after_idling_but_no_more() -> None:
    time = FakeTime()
    bucket = TokenBucket(rate=10.0, burst=5.0, clock=time.clock, sleep=time.sleep)
    time.now += 60.0  # idle for a minute: the bucket fills up to the burst only
    for _ in range(5):
        await bucket.acquire()
    assert time.sleeps == []
    await bucket.acquire()
    assert time.sleeps
    assert sum(time.sleeps) == pytest.approx(0.1)


async def test_a_high_rate_bucket_sleeps_in_batches_not_per_frame() -> None:
    time = FakeTime()
    bucket = TokenBucket(rate=5000.0, clock=time.clock, sleep=time.sleep)
    for _ in range(5000):
        await bucket.acquire()
    assert time.now - 100.0 == pytest.approx(1.0, rel=0.01)


def test_the_bucket_refuses_a_rate_that_is_not_positive() -> None:
    with pytest.raises(ValueError, match="rate"):
        TokenBucket(rate=0.0)


def test_the_report_rate_is_frames_per_second() -> None:
    assert PublishReport(sent=300, seconds=1.5).rate == 200.0
    assert PublishReport().rate == 0.0


async def test_unreachable_kafka_is_a_publish_error_naming_the_address() -> None:
    settings = KafkaSettings(bootstrap_servers="127.0.0.1:1")
    with pytest.raises(PublishError, match=r"127\.0\.0\.1:1"):
        await publish_frames([], settings, rate=None)
