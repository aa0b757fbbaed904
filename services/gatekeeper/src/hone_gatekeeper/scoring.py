"""Scoring the evaluation set through TorchServe, the real serving path: each image is read
from the object store and sent, in requests of several images, to every model version being
compared, by version. Every request's latency is measured.

Images stay paired: one that cannot be read, or that any version refuses (the handler's 400
names the bad instances), is left out for all versions and counted. The next chunk of images
is read while the current one is scored, so reading and inference overlap.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import httpx
import structlog
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential

from hone_common.storage import ObjectNotFound, ObjectRef
from hone_common.torchserve import BatchPrediction, TorchServeError
from hone_gatekeeper.manifest import EvaluationItem

log = structlog.get_logger(__name__)


class ImageSource(Protocol):
    async def get(self, ref: ObjectRef) -> bytes: ...


class Predictor(Protocol):
    async def predict(
        self, images: Sequence[bytes], model: str | None = None, version: str | None = None
    ) -> BatchPrediction: ...


class ScoringError(RuntimeError):
    """TorchServe answered, but not with what was asked for (a wrong version, a bad row)."""


def is_transient(error: BaseException) -> bool:
    """Worth another try: the server is down, overloaded or still loading the model."""
    if isinstance(error, httpx.HTTPError):
        return True
    return isinstance(error, TorchServeError) and (error.status >= 500 or error.status == 429)


@dataclass
class VersionAnswers:
    classes: list[str] = field(default_factory=list)
    predicted: list[str] = field(default_factory=list)
    """One predicted label per kept image, in `ScoredSet.items` order."""
    seconds: list[float] = field(default_factory=list)
    """Duration of every successful inference request."""


@dataclass
class ScoredSet:
    items: list[EvaluationItem] = field(default_factory=list)
    answers: dict[str, VersionAnswers] = field(default_factory=dict)
    missing_images: int = 0
    refused_images: int = 0


class _Refused(Exception):
    def __init__(self, indices: frozenset[int]) -> None:
        super().__init__(f"{len(indices)} images refused")
        self.indices = indices


class EvaluationScorer:
    def __init__(
        self,
        images: ImageSource,
        predictor: Predictor,
        *,
        model_name: str,
        images_per_request: int = 32,
        fetch_concurrency: int = 16,
        attempts: int = 4,
        backoff_seconds: float = 0.5,
    ) -> None:
        self._images = images
        self._predictor = predictor
        self._model_name = model_name
        self._per_request = images_per_request
        self._slots = asyncio.Semaphore(fetch_concurrency)
        self._attempts = attempts
        self._backoff = backoff_seconds

    async def score(self, items: Sequence[EvaluationItem], versions: Sequence[str]) -> ScoredSet:
        """Every version's predicted label for every usable item, and request timings."""
        result = ScoredSet(answers={version: VersionAnswers() for version in versions})
        chunks = [
            list(items[i : i + self._per_request]) for i in range(0, len(items), self._per_request)
        ]
        if not chunks:
            return result
        upcoming = asyncio.create_task(self._fetch(chunks[0]))
        try:
            for index in range(len(chunks)):
                fetched = await upcoming
                if index + 1 < len(chunks):
                    upcoming = asyncio.create_task(self._fetch(chunks[index + 1]))
                result.missing_images += len(chunks[index]) - len(fetched)
                await self._score_chunk(fetched, versions, result)
        finally:
            if not upcoming.done():
                upcoming.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await upcoming
        return result

    async def _fetch(self, chunk: list[EvaluationItem]) -> list[tuple[EvaluationItem, bytes]]:
        async def one(item: EvaluationItem) -> bytes | None:
            async with self._slots:
                try:
                    return await self._images.get(ObjectRef.parse(item.uri))
                except (ObjectNotFound, ValueError):
                    return None

        data = await asyncio.gather(*(one(item) for item in chunk))
        return [(item, body) for item, body in zip(chunk, data, strict=True) if body is not None]

    async def _score_chunk(
        self,
        chunk: list[tuple[EvaluationItem, bytes]],
        versions: Sequence[str],
        result: ScoredSet,
    ) -> None:
        kept = chunk
        while kept:
            images = [body for _, body in kept]
            labels: dict[str, list[str]] = {}
            try:
                for version in versions:
                    labels[version] = await self._labels(images, version, result.answers[version])
            except _Refused as refused:
                # Keep the pairs intact: an image any version refuses is left out for all.
                result.refused_images += len(refused.indices)
                kept = [pair for i, pair in enumerate(kept) if i not in refused.indices]
                continue
            result.items.extend(item for item, _ in kept)
            for version in versions:
                result.answers[version].predicted.extend(labels[version])
            return

    async def _labels(
        self, images: list[bytes], version: str, answers: VersionAnswers
    ) -> list[str]:
        answer = await self._predict(images, version, answers)
        if answer.model_version != version:
            raise ScoringError(
                f"TorchServe answered with version {answer.model_version} when asked for {version}"
            )
        answers.classes = answers.classes or list(answer.classes)
        labels = []
        for row in answer.probabilities:
            if len(row) != len(answer.classes):
                raise ScoringError(f"version {version} answered a row of the wrong length")
            labels.append(answer.classes[max(range(len(row)), key=row.__getitem__)])
        return labels

    async def _predict(
        self, images: list[bytes], version: str, answers: VersionAnswers
    ) -> BatchPrediction:
        retrying = AsyncRetrying(
            retry=retry_if_exception(is_transient),
            stop=stop_after_attempt(self._attempts),
            wait=wait_exponential(multiplier=self._backoff, max=10.0),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                started = time.perf_counter()
                try:
                    answer = await self._predictor.predict(
                        images, model=self._model_name, version=version
                    )
                except TorchServeError as error:
                    if error.status == 400:
                        raise _Refused(_refused_indices(error, len(images))) from error
                    raise
                answers.seconds.append(time.perf_counter() - started)
                return answer
        raise AssertionError("unreachable: tenacity re-raises the last error")


def _refused_indices(error: TorchServeError, count: int) -> frozenset[int]:
    """The instances the handler named as bad; all of them if it named none it could place."""
    found = set()
    errors = error.body.get("errors") if isinstance(error.body, dict) else None
    for entry in errors if isinstance(errors, list) else []:
        index = entry.get("index") if isinstance(entry, dict) else None
        if isinstance(index, int) and 0 <= index < count:
            found.add(index)
    if not found:
        log.warning("request_refused_without_indices", error=str(error)[:300])
        return frozenset(range(count))
    return frozenset(found)
