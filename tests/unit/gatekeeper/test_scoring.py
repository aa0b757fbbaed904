"""Scoring the evaluation set through (fake) TorchServe: batching, pairing, retries."""

from __future__ import annotations

from collections.abc import Sequence

import httpx
import pytest

from hone_common.storage import ObjectRef
from hone_common.torchserve import BatchPrediction, TorchServeError
from hone_gatekeeper.manifest import EvaluationItem
from hone_gatekeeper.scoring import EvaluationScorer, ScoringError
from tests.unit.gatekeeper.fakes import FakeStore


class FlakyServer:
    """Answers every image with class `a`; fails the first `failures` requests with `error`."""

    def __init__(
        self, failures: int = 0, error: Exception | None = None, answer_as: str = ""
    ) -> None:
        self.failures = failures
        self.error = error
        self.answer_as = answer_as
        self.calls = 0

    async def predict(
        self, images: Sequence[bytes], model: str | None = None, version: str | None = None
    ) -> BatchPrediction:
        self.calls += 1
        if self.calls <= self.failures and self.error is not None:
            raise self.error
        return BatchPrediction(
            model_version=self.answer_as or str(version),
            classes=["a", "b"],
            probabilities=[[0.9, 0.1] for _ in images],
        )


def items(store: FakeStore, count: int) -> list[EvaluationItem]:
    result = []
    for i in range(count):
        uri = f"s3://hone-images/eval/{i}.png"
        store.put(uri, b"png")
        result.append(EvaluationItem(image_id=str(i), uri=uri, label="a"))
    return result


def scorer(store: FakeStore, server: FlakyServer) -> EvaluationScorer:
    return EvaluationScorer(
        store, server, model_name="hone", images_per_request=4, backoff_seconds=0.001
    )


async def test_items_are_sent_in_requests_of_the_configured_size() -> None:
    store, server = FakeStore(), FlakyServer()
    scored = await scorer(store, server).score(items(store, 10), ["1", "2"])
    assert server.calls == 6  # 3 requests (4 + 4 + 2) per version
    assert len(scored.items) == 10
    assert scored.answers["1"].predicted == ["a"] * 10
    assert len(scored.answers["2"].seconds) == 3


async def test_a_transient_failure_is_retried() -> None:
    store = FakeStore()
    server = FlakyServer(failures=2, error=TorchServeError(503, "workers busy"))
    scored = await scorer(store, server).score(items(store, 3), ["1"])
    assert len(scored.items) == 3
    assert server.calls == 3


async def test_a_server_that_stays_down_fails_the_scoring() -> None:
    store = FakeStore()
    server = FlakyServer(failures=100, error=httpx.ConnectError("refused"))
    with pytest.raises(httpx.ConnectError):
        await scorer(store, server).score(items(store, 3), ["1"])
    assert server.calls == 4  # the configured attempts


async def test_a_not_found_version_is_not_retried() -> None:
    store = FakeStore()
    server = FlakyServer(failures=100, error=TorchServeError(404, "no such version"))
    with pytest.raises(TorchServeError):
        await scorer(store, server).score(items(store, 3), ["1"])
    assert server.calls == 1


async def test_an_answer_from_another_version_is_an_error() -> None:
    store = FakeStore()
    with pytest.raises(ScoringError, match="answered with version 9"):
        await scorer(store, FlakyServer(answer_as="9")).score(items(store, 3), ["1"])


async def test_a_refusal_that_names_no_instance_sets_the_whole_request_aside() -> None:
    store = FakeStore()
    server = FlakyServer(failures=1, error=TorchServeError(400, "bad body", {"errors": []}))
    scored = await scorer(store, server).score(items(store, 6), ["1"])
    assert scored.refused_images == 4
    assert len(scored.items) == 2


async def test_missing_images_are_counted_and_skipped() -> None:
    store = FakeStore()
    listed = items(store, 5)
    del store.objects[listed[2].uri]
    listed.append(EvaluationItem(image_id="x", uri="s3://hone-images/../etc", label="a"))
    scored = await scorer(store, FlakyServer()).score(listed, ["1"])
    assert scored.missing_images == 2
    assert [item.image_id for item in scored.items] == ["0", "1", "3", "4"]
    assert ObjectRef.parse(scored.items[0].uri).bucket == "hone-images"


async def test_an_empty_set_scores_nothing() -> None:
    server = FlakyServer()
    scored = await scorer(FakeStore(), server).score([], ["1"])
    assert scored.items == []
    assert server.calls == 0
