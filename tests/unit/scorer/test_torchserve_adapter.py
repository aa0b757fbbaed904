"""Which images the TorchServe adapter blames: those the handler names, those too large."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from hone_common.torchserve import BatchPrediction, TorchServeError
from hone_scorer.adapters.torchserve import ModelUnavailable, TorchServeClassifier
from tests.unit.scorer.fakes import CLASSES


class Refusing:
    """Refuses any request holding a `bad*` image, with the given `errors` body."""

    def __init__(self, errors: Any) -> None:
        self.errors = errors
        self.requests: list[list[bytes]] = []

    async def predict(self, images: Sequence[bytes]) -> BatchPrediction:
        self.requests.append(list(images))
        if any(image.startswith(b"bad") for image in images):
            body = None if self.errors is None else {"errors": self.errors(images)}
            raise TorchServeError(400, "invalid instances", body)
        rows = [[1.0] + [0.0] * (len(CLASSES) - 1) for _ in images]
        return BatchPrediction(model_version="v1", classes=CLASSES, probabilities=rows)

    async def ping(self) -> bool:
        return True


def _named(images: Sequence[bytes]) -> list[dict[str, Any]]:
    return [{"index": i, "error": f"cannot decode {image!r}"} for i, image in enumerate(images)
            if image.startswith(b"bad")]  # fmt: skip


IMAGES = [b"a", b"bad1", b"b", b"c", b"bad2", b"d"]


async def test_images_the_handler_names_are_refused_and_the_rest_resent_in_one_request() -> None:
    client = Refusing(_named)

    result = await TorchServeClassifier(client).classify(IMAGES)

    assert sorted(result.refused) == [1, 4]
    assert "cannot decode b'bad2'" in str(result.refused[4])
    assert [list(a.positions) for a in result.answers] == [[0, 2, 3, 5]]
    assert client.requests[1] == [b"a", b"b", b"c", b"d"]
    assert len(client.requests) == 2


@pytest.mark.parametrize(
    "errors",
    [
        None,
        lambda images: [{"index": None, "error": "body is not JSON"}],
        lambda images: [{"index": 99, "error": "out of range"}],
        lambda images: [{"index": True, "error": "not an index"}],
        lambda images: "not a list",
        lambda images: [],
    ],
)
async def test_a_refusal_that_names_no_valid_image_blames_none_and_is_retried(
    errors: Any,
) -> None:
    client = Refusing(errors)
    classifier = TorchServeClassifier(client, attempts=2, backoff_seconds=0.001)

    with pytest.raises(ModelUnavailable, match="400"):
        await classifier.classify(IMAGES)
    assert len(client.requests) == 2


async def test_a_request_too_large_is_halved_until_an_image_alone_is_too_large() -> None:
    class Limited(Refusing):
        async def predict(self, images: Sequence[bytes]) -> BatchPrediction:
            if sum(len(image) for image in images) > 10:
                self.requests.append(list(images))
                raise TorchServeError(413, "Request Entity Too Large")
            return await super().predict(images)

    huge = b"x" * 11
    client = Limited(_named)

    result = await TorchServeClassifier(client).classify([b"a", b"b", huge, b"c", b"d"])

    assert list(result.refused) == [2]
    assert "too large" in str(result.refused[2])
    assert sorted(p for a in result.answers for p in a.positions) == [0, 1, 3, 4]


async def test_every_row_keeps_the_position_of_its_image() -> None:
    class Echo(Refusing):
        async def predict(self, images: Sequence[bytes]) -> BatchPrediction:
            prediction = await super().predict(images)
            # Mark each row with its image so a mix-up would show.
            rows = [[0.0] * len(CLASSES) for _ in images]
            for row, image in zip(rows, images, strict=True):
                row[ord(image[:1]) % len(CLASSES)] = 1.0
            return prediction.model_copy(update={"probabilities": rows})

    result = await TorchServeClassifier(Echo(_named)).classify(IMAGES)

    for answer in result.answers:
        for position, row in zip(answer.positions, answer.rows, strict=True):
            assert row.index(1.0) == ord(IMAGES[position][:1]) % len(CLASSES)


async def test_giving_up_raises_model_unavailable_with_the_last_error() -> None:
    class Down(Refusing):
        async def predict(self, images: Sequence[bytes]) -> BatchPrediction:
            self.requests.append(list(images))
            raise TorchServeError(503, "Prediction failed")

    client = Down(None)
    classifier = TorchServeClassifier(client, attempts=3, backoff_seconds=0.001)

    with pytest.raises(ModelUnavailable, match="503"):
        await classifier.classify([b"a"])
    assert len(client.requests) == 3
