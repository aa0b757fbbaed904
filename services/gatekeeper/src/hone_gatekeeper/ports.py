"""What the use cases need of the outside world: the registry's storage, TorchServe and the
object store, as protocols (the real ones: `repository.PostgresRegistry`,
`hone_common.torchserve.TorchServeClient`, `hone_common.storage.ObjectStore`)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from hone_common.events import Candidate, ModelCandidate, ModelPromoted
from hone_common.storage import ObjectRef
from hone_common.torchserve import BatchPrediction
from hone_gatekeeper.records import Decision, Evaluation, ModelVersion


class Registry(Protocol):
    """The registry's storage (`repository.PostgresRegistry`)."""

    def lock(self, model_name: str) -> AbstractAsyncContextManager[None]: ...
    async def is_decided(self, model_name: str, version: str, event_id: uuid.UUID) -> bool: ...
    async def record_candidate(self, model_name: str, candidate: Candidate) -> None: ...
    async def adopt_production(
        self, model_name: str, version: str, artifact_uri: str | None
    ) -> None: ...
    async def learn_classes(self, model_name: str, version: str, classes: list[str]) -> None: ...
    async def version(self, model_name: str, version: str) -> ModelVersion | None: ...
    async def production(self, model_name: str) -> ModelVersion | None: ...
    async def latest_former_production(
        self, model_name: str, current: str | None
    ) -> ModelVersion | None: ...
    async def save_decision(
        self,
        decision: Decision,
        evaluation: Evaluation | None = None,
        event: ModelCandidate | None = None,
    ) -> bool: ...
    async def pending(self, model_name: str) -> list[Decision]: ...
    async def complete(
        self,
        decision: Decision,
        announcement: ModelPromoted | None = None,
        error: str | None = None,
    ) -> None: ...
    async def latest_accuracy(self, model_name: str, version: str) -> float | None: ...


class Serving(Protocol):
    """TorchServe (`hone_common.torchserve.TorchServeClient`)."""

    async def predict(
        self, images: Sequence[bytes], model: str | None = None, version: str | None = None
    ) -> BatchPrediction: ...
    async def register(
        self,
        url: str,
        *,
        model: str | None = None,
        batch_size: int = 1,
        max_batch_delay_ms: int = 5,
        workers: int = 1,
    ) -> None: ...
    async def describe(self, model: str | None = None) -> list[dict[str, Any]]: ...
    async def default_version(self, model: str | None = None) -> str | None: ...
    async def set_default(self, version: str, model: str | None = None) -> None: ...
    async def unregister(self, version: str, model: str | None = None) -> None: ...


class Store(Protocol):
    """The object store (`hone_common.storage.ObjectStore`)."""

    async def get(self, ref: ObjectRef) -> bytes: ...
    async def exists(self, ref: ObjectRef) -> bool: ...
    async def presign_get(self, ref: ObjectRef, seconds: int | None = None) -> str: ...
