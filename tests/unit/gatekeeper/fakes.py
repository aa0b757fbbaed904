"""In-memory stand-ins for TorchServe, the object store and the gatekeeper's registry."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import httpx

from hone_common.events import Candidate, ModelCandidate, ModelPromoted
from hone_common.storage import ObjectNotFound, ObjectRef
from hone_common.torchserve import BatchPrediction, TorchServeError
from hone_gatekeeper.records import PROMOTING, Decision, Evaluation, ModelVersion

Model = Callable[[bytes], str]
"""A fake model: image bytes -> predicted class."""


class FakeStore:
    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def put(self, uri: str, data: bytes) -> None:
        self.objects[uri] = data

    async def get(self, ref: ObjectRef) -> bytes:
        if ref.uri not in self.objects:
            raise ObjectNotFound(ref.uri)
        return self.objects[ref.uri]

    async def exists(self, ref: ObjectRef) -> bool:
        return ref.uri in self.objects

    async def presign_get(self, ref: ObjectRef, seconds: int | None = None) -> str:
        return f"http://minio/{ref.bucket}/{ref.key}?X-Amz-Signature=f00"


class FakeTorchServe:
    """Serves versions registered from archives; an archive's bytes name its fake model in
    `models` (archive bytes -> model)."""

    def __init__(self, classes: list[str], models: dict[bytes, Model], store: FakeStore) -> None:
        self.classes = classes
        self.models = models
        self.store = store
        self.versions: dict[str, dict[str, Model]] = {}
        self.defaults: dict[str, str] = {}
        self.registrations: list[str] = []
        self.unregistered: list[str] = []
        self.down = False
        self.refuse_register: TorchServeError | None = None
        self.requests: list[tuple[str | None, int]] = []

    def _check_up(self) -> None:
        if self.down:
            raise httpx.ConnectError("connection refused")

    def serve(self, model: str, version: str, fake: Model) -> None:
        self.versions.setdefault(model, {})[version] = fake
        self.defaults.setdefault(model, version)

    async def register(self, url: str, *, model: str | None = None, **_: Any) -> None:
        self._check_up()
        if self.refuse_register is not None:
            raise self.refuse_register
        assert model is not None
        path = PurePosixPath(urlsplit(url).path)
        version = path.stem
        archive = self.store.objects[f"s3://{path.parts[1]}/{'/'.join(path.parts[2:])}"]
        self.registrations.append(version)
        self.serve(model, version, self.models[archive])

    async def describe(self, model: str | None = None) -> list[dict[str, Any]]:
        self._check_up()
        assert model is not None
        return [{"modelVersion": v} for v in self.versions.get(model, {})]

    async def default_version(self, model: str | None = None) -> str | None:
        self._check_up()
        assert model is not None
        return self.defaults.get(model)

    async def set_default(self, version: str, model: str | None = None) -> None:
        self._check_up()
        assert model is not None
        if version not in self.versions.get(model, {}):
            raise TorchServeError(404, f"no version {version}")
        self.defaults[model] = version

    async def unregister(self, version: str, model: str | None = None) -> None:
        self._check_up()
        assert model is not None
        if version not in self.versions.get(model, {}):
            raise TorchServeError(404, f"no version {version}")
        del self.versions[model][version]
        self.unregistered.append(version)
        if self.defaults.get(model) == version:
            del self.defaults[model]

    async def predict(
        self, images: Sequence[bytes], model: str | None = None, version: str | None = None
    ) -> BatchPrediction:
        self._check_up()
        assert model is not None
        assert version is not None
        self.requests.append((version, len(images)))
        fake = self.versions.get(model, {}).get(version)
        if fake is None:
            raise TorchServeError(404, f"no version {version}")
        bad = [i for i, image in enumerate(images) if image.startswith(b"corrupt")]
        if bad:
            errors = [{"index": i, "error": "cannot decode"} for i in bad]
            raise TorchServeError(400, "bad instances", {"errors": errors})
        rows = []
        for image in images:
            label = fake(image)
            rows.append([1.0 if c == label else 0.0 for c in self.classes])
        return BatchPrediction(model_version=version, classes=self.classes, probabilities=rows)


class FakeRegistry:
    """The registry's semantics (`PostgresRegistry`) in memory."""

    def __init__(self) -> None:
        self.models: dict[tuple[str, str], ModelVersion] = {}
        self.decisions: list[Decision] = []
        self.evaluations: dict[uuid.UUID, Evaluation] = {}
        self.processed: set[uuid.UUID] = set()
        self.outbox: list[ModelPromoted] = []
        self._lock = asyncio.Lock()

    @contextlib.asynccontextmanager
    async def lock(self, model_name: str) -> AsyncIterator[None]:
        async with self._lock:
            yield

    async def is_decided(self, model_name: str, version: str, event_id: uuid.UUID) -> bool:
        row = self.models.get((model_name, version))
        return event_id in self.processed or (row is not None and row.status != "candidate")

    def _row(self, model_name: str, version: str, **fields: Any) -> ModelVersion:
        now = datetime.now(UTC)
        return ModelVersion(
            model_name=model_name,
            model_version=version,
            first_seen_at=now,
            updated_at=now,
            **fields,
        )

    async def record_candidate(self, model_name: str, candidate: Candidate) -> None:
        self.models.setdefault(
            (model_name, candidate.model_version),
            self._row(
                model_name,
                candidate.model_version,
                status="candidate",
                artifact_uri=candidate.artifact_uri,
                weakness_model_uri=candidate.weakness_model_uri,
                evaluation_set_uri=candidate.evaluation_set_uri,
                classes=list(candidate.classes),
            ),
        )

    def _set(self, model_name: str, version: str, **fields: Any) -> None:
        key = (model_name, version)
        self.models[key] = self.models[key].model_copy(update=fields)

    def _retire(self, model_name: str, except_version: str) -> None:
        for (name, version), row in list(self.models.items()):
            if name == model_name and row.status == "production" and version != except_version:
                self._set(name, version, status="retired")

    async def adopt_production(
        self, model_name: str, version: str, artifact_uri: str | None
    ) -> None:
        self._retire(model_name, version)
        now = datetime.now(UTC)
        if (model_name, version) not in self.models:
            self.models[(model_name, version)] = self._row(
                model_name, version, status="candidate", artifact_uri=artifact_uri
            )
        self._set(model_name, version, status="production", promoted_at=now)

    async def learn_classes(self, model_name: str, version: str, classes: list[str]) -> None:
        if not self.models[(model_name, version)].classes:
            self._set(model_name, version, classes=classes)

    async def version(self, model_name: str, version: str) -> ModelVersion | None:
        return self.models.get((model_name, version))

    async def production(self, model_name: str) -> ModelVersion | None:
        found = [
            row
            for (name, _), row in self.models.items()
            if name == model_name and row.status == "production"
        ]
        return found[0] if found else None

    async def latest_former_production(
        self, model_name: str, current: str | None
    ) -> ModelVersion | None:
        former = [
            row
            for (name, version), row in self.models.items()
            if name == model_name and row.promoted_at is not None and version != current
        ]
        return max(former, key=lambda row: row.promoted_at or datetime.min, default=None)

    async def save_decision(
        self,
        decision: Decision,
        evaluation: Evaluation | None = None,
        event: ModelCandidate | None = None,
    ) -> bool:
        if event is not None:
            if event.event_id in self.processed:
                return False
            self.processed.add(event.event_id)
        if evaluation is not None:
            self.evaluations[evaluation.evaluation_id] = evaluation
        self.decisions.append(decision.model_copy(update={"decided_at": datetime.now(UTC)}))
        return True

    async def pending(self, model_name: str) -> list[Decision]:
        return [d for d in self.decisions if d.model_name == model_name and d.applied_at is None]

    async def complete(
        self,
        decision: Decision,
        announcement: ModelPromoted | None = None,
        error: str | None = None,
    ) -> None:
        ids = [d.decision_id for d in self.decisions]
        index = ids.index(decision.decision_id)
        if self.decisions[index].applied_at is not None:
            return
        now = datetime.now(UTC)
        self.decisions[index] = self.decisions[index].model_copy(
            update={"applied_at": now, "apply_error": error}
        )
        if error is not None:
            return
        name, version = decision.model_name, decision.model_version
        if decision.kind in PROMOTING:
            self._retire(name, version)
            self._set(name, version, status="production", promoted_at=now)
        elif self.models[(name, version)].status == "candidate":
            self._set(name, version, status="rejected")
        if announcement is not None:
            self.outbox.append(announcement)

    async def latest_accuracy(self, model_name: str, version: str) -> float | None:
        for evaluation in reversed(list(self.evaluations.values())):
            if evaluation.model_name != model_name or not evaluation.examples:
                continue
            if evaluation.candidate_version == version:
                value = evaluation.summary.get("candidate_accuracy")
            elif evaluation.production_version == version:
                value = evaluation.summary.get("production_accuracy")
            else:
                continue
            return None if value is None else float(value)
        return None
