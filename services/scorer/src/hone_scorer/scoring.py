"""Scoring a batch of received images: fetch them, ask the model, summarise each answer.

Knows nothing of Kafka, HTTP or SQL: the image source and the classifier are passed in. An
image that can never be scored (missing, refused by the model, nonsense answer) is reported
per event, so the rest of the batch goes on; anything else (a server down) raises.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from pydantic import ValidationError

from hone_common.events import ImageReceived, ImageScored, Scores
from hone_scorer.uncertainty import uncertainty

T = TypeVar("T")

PRODUCER = "scorer"
DECIMALS = 6
"""Probabilities and scores are rounded in events and rows: more digits carry no information
(float32 softmax), and the confidence stays exactly the largest published probability."""


class Unscorable(Exception):
    """This image can never be scored as it is (retrying will not help)."""


class ImageMissing(Unscorable):
    """The object the event points at is not in the object store."""


class ImageCorrupt(Unscorable):
    """The stored bytes are not the ones the event describes (sha256 differs)."""


class ImageRefused(Unscorable):
    """The model server refused the image (e.g. it cannot be decoded)."""


class InvalidPrediction(Unscorable):
    """The model's answer for this image is not a probability distribution over its classes."""


class ImageSource(Protocol):
    async def fetch(self, uri: str) -> bytes:
        """The image bytes; raises `ImageMissing` if there is no such object."""
        ...


@dataclass(frozen=True)
class Answer:
    """What one model version answered for some of the images of a `classify` call."""

    model_version: str
    classes: tuple[str, ...]
    rows: Sequence[Sequence[float]] = field(repr=False)
    positions: Sequence[int] = field(repr=False)
    """Position of each row's image in the `classify` call."""


@dataclass
class Classification:
    answers: list[Answer] = field(default_factory=list)
    refused: dict[int, Unscorable] = field(default_factory=dict)
    """Position in the `classify` call -> why the model refused that image."""


class Classifier(Protocol):
    async def classify(self, images: Sequence[bytes]) -> Classification:
        """Score images with the production model; raises if the model server is unavailable."""
        ...


@dataclass(frozen=True)
class Output:
    """The summary of one image's prediction."""

    model_version: str
    classes: tuple[str, ...]
    label: str
    probabilities: list[float]
    confidence: float
    margin: float
    entropy: float


def summarise(answer: Answer) -> list[Output | InvalidPrediction]:
    """One output per row of the answer, in order; a malformed row is an `InvalidPrediction`."""
    width = len(answer.classes)
    results: list[Output | InvalidPrediction] = [
        InvalidPrediction(f"{len(row)} probabilities for {width} classes") for row in answer.rows
    ]
    shaped = [i for i, row in enumerate(answer.rows) if len(row) == width]
    if width < 2 or not shaped:
        return results
    u = uncertainty([answer.rows[i] for i in shaped])
    rounded = u.probabilities.round(DECIMALS).tolist()
    labels = u.label.tolist()
    confidence, margin, entropy = (
        x.round(DECIMALS).tolist() for x in (u.confidence, u.margin, u.entropy)
    )
    for k, i in enumerate(shaped):
        if not u.valid[k]:
            results[i] = InvalidPrediction("probabilities are not a distribution (sum, sign, NaN)")
            continue
        results[i] = Output(
            model_version=answer.model_version,
            classes=answer.classes,
            label=answer.classes[labels[k]],
            probabilities=rounded[k],
            confidence=confidence[k],
            margin=margin[k],
            entropy=entropy[k],
        )
    return results


def image_scored(received: ImageReceived, output: Output) -> ImageScored:
    """The `image.scored` event for one image, echoing what the selector needs from its receipt.

    Raises `InvalidPrediction` if the model's answer does not fit the contract (class names).
    """
    image = received.payload
    try:
        return ImageScored(
            producer=PRODUCER,
            correlation_id=received.correlation_id or image.image_id,
            payload=Scores(
                image_id=image.image_id,
                uri=image.uri,
                model_version=output.model_version,
                classes=list(output.classes),
                label=output.label,
                probabilities=output.probabilities,
                confidence=output.confidence,
                margin=output.margin,
                entropy=output.entropy,
                camera_id=image.camera_id,
                captured_at=image.captured_at,
                object_id=image.object_id,
                metadata=image.metadata,
                quality=image.quality,
            ),
        )
    except ValidationError as error:
        raise InvalidPrediction(
            f"the model's answer breaks the image.scored contract: {error}"
        ) from error


@dataclass
class BatchOutcome:
    scored: list[tuple[ImageReceived, ImageScored]] = field(default_factory=list)
    failed: dict[uuid.UUID, Unscorable] = field(default_factory=dict)


class Scorer:
    """Scores a batch in chunks of `images_per_request`: each chunk's images (those not carried
    inline by their event) are fetched concurrently and sent to the model as soon as they are
    in, so fetching one chunk overlaps with inference on another; at most
    `inference_concurrency` requests are in flight."""

    def __init__(
        self,
        images: ImageSource,
        classifier: Classifier,
        *,
        images_per_request: int,
        inference_concurrency: int,
    ) -> None:
        self._images = images
        self._classifier = classifier
        self._images_per_request = images_per_request
        self._inference_slots = asyncio.Semaphore(inference_concurrency)

    async def score(self, events: Sequence[ImageReceived]) -> BatchOutcome:
        outcome = BatchOutcome()
        size = self._images_per_request
        chunks = [events[start : start + size] for start in range(0, len(events), size)]
        results: list[BatchOutcome] = [BatchOutcome() for _ in chunks]
        await _all_or_first_error(
            self._score_chunk(chunk, result) for chunk, result in zip(chunks, results, strict=True)
        )
        for result in results:  # keep the batch's order in what is stored and published
            outcome.scored.extend(result.scored)
            outcome.failed.update(result.failed)
        return outcome

    async def _score_chunk(self, chunk: Sequence[ImageReceived], outcome: BatchOutcome) -> None:
        fetched = await _all_or_first_error(self._fetch(event, outcome) for event in chunk)
        ready = [(event, data) for event, data in zip(chunk, fetched, strict=True) if data]
        if not ready:
            return
        async with self._inference_slots:
            classification = await self._classifier.classify([data for _, data in ready])
        for position, error in classification.refused.items():
            outcome.failed[ready[position][0].event_id] = error
        outputs: dict[int, Output | InvalidPrediction] = {}
        for answer in classification.answers:
            outputs.update(zip(answer.positions, summarise(answer), strict=True))
        for position in sorted(outputs):
            event, output = ready[position][0], outputs[position]
            try:
                if isinstance(output, InvalidPrediction):
                    raise output
                outcome.scored.append((event, image_scored(event, output)))
            except InvalidPrediction as error:
                outcome.failed[event.event_id] = error

    async def _fetch(self, event: ImageReceived, outcome: BatchOutcome) -> bytes | None:
        """The event's image: carried inline when small, else read from the object store."""
        image = event.payload
        data = image.image
        if data is None:
            try:
                data = await self._images.fetch(image.uri)
            except Unscorable as error:
                outcome.failed[event.event_id] = error
                return None
        if hashlib.sha256(data).hexdigest() != image.sha256:
            where = "the inline image" if image.image is not None else image.uri
            outcome.failed[event.event_id] = ImageCorrupt(
                f"{where} does not hash to the event's sha256"
            )
            return None
        return data


async def _all_or_first_error(awaitables: Iterable[Coroutine[Any, Any, T]]) -> list[T]:
    """Run concurrently; on the first failure cancel the rest and raise that failure itself,
    not an ExceptionGroup, so retry policies and logs see the real error."""
    tasks: list[asyncio.Task[T]] = []
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(awaitable) for awaitable in awaitables]
    except BaseExceptionGroup as errors:
        first: BaseException = errors
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        raise first from None
    return [task.result() for task in tasks]
