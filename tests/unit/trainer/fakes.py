"""In-memory stand-ins for the model bucket and TorchServe's management API."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from hone_common.storage import ObjectRef
from hone_common.torchserve import TorchServeError


class FakeStore:
    def __init__(self) -> None:
        self.objects: dict[ObjectRef, tuple[bytes, str, dict[str, str] | None]] = {}
        self.buckets: set[str] = set()

    async def exists(self, ref: ObjectRef) -> bool:
        return ref in self.objects

    async def ensure_bucket(self, bucket: str) -> None:
        self.buckets.add(bucket)

    async def put(
        self,
        ref: ObjectRef,
        data: bytes,
        content_type: str = "application/octet-stream",
        metadata: dict[str, str] | None = None,
    ) -> ObjectRef:
        assert ref.bucket in self.buckets, "put into a bucket nobody ensured"
        self.objects[ref] = (data, content_type, metadata)
        return ref

    async def presign_get(self, ref: ObjectRef, seconds: int | None = None) -> str:
        return f"http://minio/{ref.bucket}/{ref.key}?X-Amz-Expires={seconds}&X-Amz-Signature=f00"


class FakeTorchServe:
    """Registers what it is asked to; `refuse` makes registering fail like TorchServe."""

    def __init__(self, versions: dict[str, list[str]] | None = None) -> None:
        self.versions: dict[str, list[str]] = versions or {}
        self.defaults: dict[str, str] = {m: v[0] for m, v in self.versions.items() if v}
        self.registered: list[dict[str, Any]] = []
        self.refuse: TorchServeError | None = None

    async def register(
        self,
        url: str,
        *,
        model: str | None = None,
        batch_size: int = 1,
        max_batch_delay_ms: int = 5,
        workers: int = 1,
    ) -> None:
        if self.refuse is not None:
            raise self.refuse
        assert model is not None
        self.registered.append(
            {"url": url, "model": model, "batch_size": batch_size, "delay": max_batch_delay_ms}
        )
        # The real one reads the version from the archive's manifest; ours are named after it.
        version = PurePosixPath(urlsplit(url).path).stem
        self.versions.setdefault(model, []).append(version)
        self.defaults.setdefault(model, version)

    async def set_default(self, version: str, model: str | None = None) -> None:
        assert model is not None
        if version not in self.versions.get(model, []):
            raise TorchServeError(404, f"{model} has no version {version}")
        self.defaults[model] = version

    async def describe(self, model: str | None = None) -> list[dict[str, Any]]:
        assert model is not None
        return [{"modelName": model, "modelVersion": v} for v in self.versions.get(model, [])]

    async def default_version(self, model: str | None = None) -> str | None:
        assert model is not None
        return self.defaults.get(model)
