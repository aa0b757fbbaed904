"""The production model through TorchServe: several images per request, retries with
exponential backoff for a server that is down or slow, and, when a request is refused because
of some of its images, only those images reported.

An image is blamed only when TorchServe says so: the model handler's 400 names undecodable
images by index in `errors` (they are set aside, the rest resent at once), and a 413 (request
too large) is halved until a single image is left that is itself too large. Any other refusal,
a 400 without named images included (TorchServe answers 400 to a wrong token), says nothing
about the images: it is retried like a server that is down, so a misconfiguration can never
dead-letter the whole stream."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Protocol

import structlog
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

from hone_common.torchserve import BatchPrediction, TorchServeError
from hone_scorer.metrics import IMAGES_PER_REQUEST, TORCHSERVE_ERRORS, TORCHSERVE_SECONDS
from hone_scorer.scoring import Answer, Classification, ImageRefused

log = structlog.get_logger(__name__)

TOO_LARGE = 413


class PredictClient(Protocol):
    async def predict(self, images: Sequence[bytes]) -> BatchPrediction: ...

    async def ping(self) -> bool: ...


class ModelUnavailable(RuntimeError):
    """TorchServe did not answer usefully after every try; the batch will be retried."""


def _named_images(error: TorchServeError, count: int) -> dict[int, str]:
    """Index -> reason from the handler's refusal `{"errors": [{"index", "error"}, ...]}`;
    empty unless every entry names an image of the request by a valid index."""
    body = error.body if isinstance(error.body, dict) else {}
    errors = body.get("errors")
    if error.status >= 500 or not isinstance(errors, list) or not errors:
        return {}
    named: dict[int, str] = {}
    for entry in errors:
        index = entry.get("index") if isinstance(entry, dict) else None
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < count:
            return {}
        named[index] = str(entry.get("error") or error)[:1000]
    return named


def _blames_images(error: BaseException, count: int) -> bool:
    return isinstance(error, TorchServeError) and (
        error.status == TOO_LARGE or bool(_named_images(error, count))
    )


def _log_retry(state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome else None
    log.warning("torchserve_retry", attempt=state.attempt_number, error=repr(error)[:300])


class TorchServeClassifier:
    def __init__(
        self,
        client: PredictClient,
        *,
        attempts: int = 4,
        backoff_seconds: float = 0.2,
        backoff_max_seconds: float = 5.0,
    ) -> None:
        self._client = client
        self._attempts = attempts
        self._backoff = backoff_seconds
        self._backoff_max = backoff_max_seconds

    async def ping(self) -> bool:
        return await self._client.ping()

    async def classify(self, images: Sequence[bytes]) -> Classification:
        classification = Classification()
        await self._classify(images, range(len(images)), classification)
        return classification

    async def _classify(
        self, images: Sequence[bytes], positions: Sequence[int], out: Classification
    ) -> None:
        try:
            prediction = await self._predict(images)
        except TorchServeError as error:  # raised only when it blames some of the images
            named = _named_images(error, len(images))
            if named:
                for index, reason in named.items():
                    out.refused[positions[index]] = ImageRefused(reason)
                rest = [i for i in range(len(images)) if i not in named]
                if rest:
                    await self._classify(
                        [images[i] for i in rest], [positions[i] for i in rest], out
                    )
            elif len(images) == 1:
                out.refused[positions[0]] = ImageRefused(f"too large for TorchServe: {error}")
            else:
                half = len(images) // 2
                await self._classify(images[:half], positions[:half], out)
                await self._classify(images[half:], positions[half:], out)
            return
        out.answers.append(
            Answer(
                model_version=prediction.model_version,
                classes=tuple(prediction.classes),
                rows=prediction.probabilities,
                positions=positions,
            )
        )

    async def _predict(self, images: Sequence[bytes]) -> BatchPrediction:
        retrying = AsyncRetrying(
            retry=retry_if_exception(lambda error: not _blames_images(error, len(images))),
            wait=wait_exponential(multiplier=self._backoff, max=self._backoff_max),
            stop=stop_after_attempt(self._attempts),
            before_sleep=_log_retry,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    return await self._timed_predict(images)
        except Exception as error:
            if _blames_images(error, len(images)):
                raise
            raise ModelUnavailable(f"TorchServe unavailable: {error!r}"[:1000]) from error
        raise AssertionError("unreachable: tenacity either returns or raises")

    async def _timed_predict(self, images: Sequence[bytes]) -> BatchPrediction:
        IMAGES_PER_REQUEST.observe(len(images))
        started = time.perf_counter()
        outcome = "error"
        try:
            prediction = await self._client.predict(images)
            outcome = "ok"
            return prediction
        except TorchServeError as error:
            outcome = "refused" if _blames_images(error, len(images)) else "error"
            TORCHSERVE_ERRORS.labels(str(error.status)).inc()
            raise
        except Exception as error:
            TORCHSERVE_ERRORS.labels(type(error).__name__).inc()
            raise
        finally:
            TORCHSERVE_SECONDS.labels(outcome).observe(time.perf_counter() - started)
