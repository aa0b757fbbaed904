"""Putting a stored model version into TorchServe and moving the production pointer.

Shared by `bootstrap` and the gatekeeper's promotions: `register_version` loads an archive from
the model bucket as a (non-default) version, `set_production` makes a registered version the
default that `/predictions/<model_name>` answers with.

TorchServe fetches the archive itself through a short-lived presigned GET URL of the object;
its `allowed_urls` admits only the model bucket on MinIO. Checked against TorchServe 0.12: the
query string of a presigned URL is no obstacle, the downloaded file is named after the URL path
alone (`<model_version>.mar` in TorchServe's model store) and deleted again on unregistering.
As that name does not include the model name, two model names cannot hold the same version at
once (TorchServe answers "Model file already exists"); versions are per-second timestamps, so
that only happens when two models are trained within the same second.
"""

from __future__ import annotations

from typing import Protocol

import structlog

from hone_common.storage import ObjectRef
from hone_common.torchserve import (
    ArchiveSource,
    ModelServer,
    ServingOptions,
    register_version,
    registered_versions,
)

__all__ = [
    "ArchiveSource",
    "DefaultSetter",
    "ModelServer",
    "ServingOptions",
    "deploy",
    "register_version",
    "registered_versions",
    "set_production",
]

log = structlog.get_logger(__name__)


class DefaultSetter(ModelServer, Protocol):
    """A model server that can also move the production pointer."""

    async def set_default(self, version: str, model: str | None = None) -> None: ...


async def set_production(client: DefaultSetter, model_name: str, model_version: str) -> None:
    """Make a registered version the default that un-versioned predictions use."""
    await client.set_default(model_version, model=model_name)
    log.info("model_version_is_default", model=model_name, version=model_version)


async def deploy(
    client: DefaultSetter,
    store: ArchiveSource,
    artifact: ObjectRef,
    *,
    model_name: str,
    model_version: str,
    make_default: bool,
    options: ServingOptions | None = None,
) -> None:
    await register_version(
        client,
        store,
        artifact,
        model_name=model_name,
        model_version=model_version,
        options=options,
    )
    if make_default:
        await set_production(client, model_name, model_version)
