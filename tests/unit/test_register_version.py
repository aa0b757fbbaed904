"""Registering a stored archive in TorchServe, including after TorchServe restarted and kept
the downloaded archive in its model store while forgetting the registration."""

from __future__ import annotations

from typing import Any

import pytest

from hone_common.storage import ObjectRef
from hone_common.torchserve import TorchServeError, register_version


class RestartedTorchServe:
    """Holds files in its model store; knows only the registrations made since it started."""

    def __init__(self, files: set[str]) -> None:
        self.files = files
        self.versions: dict[str, str] = {}  # version -> what it was loaded from
        self.calls: list[str] = []

    async def register(self, url: str, *, model: str | None = None, **_: Any) -> None:
        self.calls.append(url)
        if url.startswith("http"):
            name = url.split("?", 1)[0].rsplit("/", 1)[-1]
            if name in self.files:
                raise TorchServeError(500, f"Model file already exists {name}")
            self.files.add(name)
        elif url not in self.files:
            raise TorchServeError(404, f"Model not found in model store: {url}")
        self.versions[url.split("?", 1)[0].rsplit("/", 1)[-1].removesuffix(".mar")] = url

    async def describe(self, model: str | None = None) -> list[dict[str, Any]]:
        # Like TorchServeClient.describe: an unknown model has no versions.
        return [{"modelVersion": v} for v in self.versions]


class Store:
    async def presign_get(self, ref: ObjectRef, seconds: int | None = None) -> str:
        return f"http://127.0.0.1:9000/{ref.bucket}/{ref.key}?X-Amz-Signature=abc"


ARCHIVE = ObjectRef("hone-models", "hone/20260101.120000.mar")


async def test_a_fresh_version_is_downloaded_through_a_presigned_url() -> None:
    server = RestartedTorchServe(files=set())
    assert await register_version(
        server, Store(), ARCHIVE, model_name="hone", model_version="20260101.120000"
    )
    assert server.calls[0].startswith("http://127.0.0.1:9000/hone-models/hone/20260101.120000.mar")


async def test_an_archive_left_in_the_model_store_by_a_restart_is_loaded_from_there() -> None:
    server = RestartedTorchServe(files={"20260101.120000.mar"})
    assert await register_version(
        server, Store(), ARCHIVE, model_name="hone", model_version="20260101.120000"
    )
    assert server.calls[-1] == "20260101.120000.mar"
    assert "20260101.120000" in server.versions


async def test_other_refusals_are_still_raised() -> None:
    class Refusing(RestartedTorchServe):
        async def register(self, url: str, *, model: str | None = None, **_: Any) -> None:
            raise TorchServeError(400, "url not allowed")

    with pytest.raises(TorchServeError, match="not allowed"):
        await register_version(
            Refusing(set()), Store(), ARCHIVE, model_name="hone", model_version="20260101.120000"
        )
