"""Registration in TorchServe from the model bucket, and moving the production pointer."""

from __future__ import annotations

import pytest

from hone_common.storage import ObjectRef
from hone_common.torchserve import TorchServeError
from hone_trainer.model.serving import ServingOptions, deploy, register_version
from tests.unit.trainer.fakes import FakeStore, FakeTorchServe

ARTIFACT = ObjectRef("hone-models", "hone/20260101.000000.mar")
VERSION = "20260101.000000"


async def test_registration_hands_torchserve_a_presigned_url_and_the_options() -> None:
    torchserve = FakeTorchServe()
    options = ServingOptions(batch_size=4, max_batch_delay_ms=7, url_seconds=60)
    registered = await register_version(
        torchserve, FakeStore(), ARTIFACT, model_name="hone", model_version=VERSION, options=options
    )
    assert registered
    [call] = torchserve.registered
    assert call["url"].startswith("http://minio/hone-models/hone/20260101.000000.mar?")
    assert "X-Amz-Expires=60" in call["url"]
    assert (call["model"], call["batch_size"], call["delay"]) == ("hone", 4, 7)


async def test_registering_a_registered_version_again_changes_nothing() -> None:
    torchserve = FakeTorchServe({"hone": [VERSION]})
    again = await register_version(
        torchserve, FakeStore(), ARTIFACT, model_name="hone", model_version=VERSION
    )
    assert again is False
    assert torchserve.registered == []


async def test_a_registration_that_fails_is_reported() -> None:
    torchserve = FakeTorchServe()
    torchserve.refuse = TorchServeError(400, "Failed to download archive")
    with pytest.raises(TorchServeError, match="download"):
        await register_version(
            torchserve, FakeStore(), ARTIFACT, model_name="hone", model_version=VERSION
        )


class OutracedTorchServe(FakeTorchServe):
    """Another process registers the same version first; TorchServe then refuses ours."""

    async def register(self, url: str, *, model: str | None = None, **_: int) -> None:
        self.versions.setdefault(model or "", []).append(VERSION)
        raise TorchServeError(500, f"Model file already exists {VERSION}.mar")


async def test_losing_a_race_to_register_the_same_version_is_no_failure() -> None:
    registered = await register_version(
        OutracedTorchServe(), FakeStore(), ARTIFACT, model_name="hone", model_version=VERSION
    )
    assert registered is False


async def test_deploying_as_default_moves_the_production_pointer() -> None:
    torchserve = FakeTorchServe({"hone": ["20250101.000000"]})
    await deploy(
        torchserve,
        FakeStore(),
        ARTIFACT,
        model_name="hone",
        model_version=VERSION,
        make_default=True,
    )
    assert torchserve.defaults["hone"] == VERSION


async def test_deploying_a_candidate_leaves_production_alone() -> None:
    torchserve = FakeTorchServe({"hone": ["20250101.000000"]})
    await deploy(
        torchserve,
        FakeStore(),
        ARTIFACT,
        model_name="hone",
        model_version=VERSION,
        make_default=False,
    )
    assert torchserve.defaults["hone"] == "20250101.000000"
    assert VERSION in torchserve.versions["hone"]
