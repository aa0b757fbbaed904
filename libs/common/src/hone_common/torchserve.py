"""TorchServe client: inference and management APIs with token authorization.

The model handler's contract (see the trainer's `handler.py`): a request whose body is JSON
`{"instances": [{"b64": "<image bytes, base64>"}, ...]}` is answered with
`{"model_version": str, "classes": [str, ...], "probabilities": [[float, ...], ...]}`, one row
per instance, in order. Sending many images per request amortises TorchServe's per-request
overhead; TorchServe's own batching (batch_size / max_batch_delay) also groups requests.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
from pydantic import BaseModel, Field

from hone_common.settings import TorchServeSettings
from hone_common.storage import ObjectRef


class TorchServeError(RuntimeError):
    def __init__(self, status: int, message: str, body: Any = None) -> None:
        super().__init__(f"TorchServe answered {status}: {message}")
        self.status = status
        self.body = body
        """The parsed JSON answer, if any (the model handler's 400 lists `errors` by index)."""


class BatchPrediction(BaseModel):
    model_version: str
    classes: list[str]
    probabilities: list[list[float]] = Field(description="One row per image, in request order.")


class TorchServeClient:
    def __init__(self, settings: TorchServeSettings, *, max_connections: int = 16) -> None:
        self.settings = settings
        limits = httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        )
        self._inference = httpx.AsyncClient(
            base_url=settings.inference_url, timeout=settings.timeout_seconds, limits=limits
        )
        self._management = httpx.AsyncClient(
            base_url=settings.management_url, timeout=max(settings.timeout_seconds, 120.0)
        )

    def _headers(self, kind: str) -> dict[str, str]:
        token = self.settings.token(kind)  # type: ignore[arg-type]
        return {"Authorization": f"Bearer {token}"} if token else {}

    @staticmethod
    def _check(response: httpx.Response) -> Any:
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = None
            message = body.get("message", response.text) if isinstance(body, dict) else None
            raise TorchServeError(response.status_code, str(message or response.text)[:500], body)
        return response.json() if response.content else None

    async def aclose(self) -> None:
        await self._inference.aclose()
        await self._management.aclose()

    # --- inference -------------------------------------------------------------------------

    async def ping(self) -> bool:
        try:
            # With token authorization on, TorchServe refuses even /ping without the key.
            response = await self._inference.get(
                "/ping", timeout=2.0, headers=self._headers("inference")
            )
            return response.status_code == 200 and response.json().get("status") == "Healthy"
        except (httpx.HTTPError, ValueError):
            return False

    async def predict(
        self, images: Sequence[bytes], model: str | None = None, version: str | None = None
    ) -> BatchPrediction:
        """Score images with the default version of `model` (or a given version)."""
        name = model or self.settings.model_name
        path = f"/predictions/{name}" + (f"/{version}" if version else "")
        body = {"instances": [{"b64": base64.b64encode(image).decode()} for image in images]}
        response = await self._inference.post(path, json=body, headers=self._headers("inference"))
        prediction = BatchPrediction.model_validate(self._check(response))
        if len(prediction.probabilities) != len(images):
            raise TorchServeError(
                502, f"{len(images)} images sent, {len(prediction.probabilities)} scored"
            )
        return prediction

    # --- management ------------------------------------------------------------------------

    async def register(
        self,
        url: str,
        *,
        model: str | None = None,
        batch_size: int = 1,
        max_batch_delay_ms: int = 5,
        workers: int = 1,
    ) -> None:
        """Register an archive (a file name in the model store or an allowed URL)."""
        params: dict[str, str | int] = {
            "url": url,
            "model_name": model or self.settings.model_name,
            "batch_size": batch_size,
            "max_batch_delay": max_batch_delay_ms,
            "initial_workers": workers,
            "synchronous": "true",
        }
        response = await self._management.post(
            "/models", params=params, headers=self._headers("management")
        )
        self._check(response)

    async def set_default(self, version: str, model: str | None = None) -> None:
        name = model or self.settings.model_name
        response = await self._management.put(
            f"/models/{name}/{version}/set-default", headers=self._headers("management")
        )
        self._check(response)

    async def unregister(self, version: str, model: str | None = None) -> None:
        name = model or self.settings.model_name
        response = await self._management.delete(
            f"/models/{name}/{version}", headers=self._headers("management")
        )
        self._check(response)

    async def describe(self, model: str | None = None) -> list[dict[str, Any]]:
        """Every registered version of a model (TorchServe's `describe model ... /all`)."""
        name = model or self.settings.model_name
        response = await self._management.get(
            f"/models/{name}/all", headers=self._headers("management")
        )
        if response.status_code == 404:
            return []
        return list(self._check(response))

    async def default_version(self, model: str | None = None) -> str | None:
        name = model or self.settings.model_name
        response = await self._management.get(
            f"/models/{name}", headers=self._headers("management")
        )
        if response.status_code == 404:
            return None
        versions = self._check(response)
        return str(versions[0]["modelVersion"]) if versions else None

    async def list_models(self) -> list[dict[str, Any]]:
        response = await self._management.get("/models", headers=self._headers("management"))
        return list(self._check(response).get("models", []))


# --- registering stored archives ---------------------------------------------------------
# Torch-free, so both the trainer (bootstrap) and the gatekeeper (promotions, rollbacks) put
# archives from the model bucket into TorchServe the same way. TorchServe downloads the archive
# itself through a short-lived presigned GET URL; its `allowed_urls` admits the model bucket.
# The downloaded file is named after the URL path alone (`<model_version>.mar`), so two model
# names cannot hold the same version at once (TorchServe answers "Model file already exists").


class ModelServer(Protocol):
    """What registration needs of TorchServe (`TorchServeClient`)."""

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


class ArchiveSource(Protocol):
    """Where TorchServe downloads archives from (`hone_common.storage.ObjectStore`)."""

    async def presign_get(self, ref: ObjectRef, seconds: int | None = None) -> str: ...


@dataclass(frozen=True)
class ServingOptions:
    """How TorchServe runs one model version (batching, workers) and how long the archive's
    download URL lives."""

    batch_size: int = 8
    max_batch_delay_ms: int = 5
    workers: int = 1
    url_seconds: int = 300


async def registered_versions(client: ModelServer, model_name: str) -> list[str]:
    return [str(v["modelVersion"]) for v in await client.describe(model_name)]


async def register_version(
    client: ModelServer,
    store: ArchiveSource,
    artifact: ObjectRef,
    *,
    model_name: str,
    model_version: str,
    options: ServingOptions | None = None,
) -> bool:
    """Load a stored archive into TorchServe as `model_name`/`model_version`, workers started.

    Idempotent: False if that version was registered already, True if this call registered it.
    A model's first version becomes its default (TorchServe's rule); later ones stay
    non-default until `set_default`."""
    options = options or ServingOptions()
    if model_version in await registered_versions(client, model_name):
        return False
    url = await store.presign_get(artifact, options.url_seconds)
    try:
        await client.register(
            url,
            model=model_name,
            batch_size=options.batch_size,
            max_batch_delay_ms=options.max_batch_delay_ms,
            workers=options.workers,
        )
    except TorchServeError as error:
        # Someone else registering the same version at the same moment is not a failure.
        if model_version in await registered_versions(client, model_name):
            return False
        stored = artifact.key.rsplit("/", 1)[-1]
        if "already exists" not in str(error):
            raise
        # TorchServe keeps the archives it downloaded in its model store across a restart but
        # forgets their registrations, and then refuses the same download for ever. Archives
        # are never overwritten, so the file left there is this version: load it from the
        # store. (Another model name holding the very same version at once would be refused
        # the same way; versions are per-second timestamps, one model name in production.)
        await client.register(
            stored,
            model=model_name,
            batch_size=options.batch_size,
            max_batch_delay_ms=options.max_batch_delay_ms,
            workers=options.workers,
        )
    return True
