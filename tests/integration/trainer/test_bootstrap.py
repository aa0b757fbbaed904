"""Bootstrapping against the real MinIO and TorchServe: the seed model is stored, registered,
made the default, and answers the scorer's client with one probability row per image."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import numpy as np
import pytest
from typer.testing import CliRunner

from hone_common.settings import ServiceSettings
from hone_common.storage import ObjectRef, ObjectStore
from hone_common.torchserve import TorchServeClient, TorchServeError
from hone_trainer.bootstrap import BootstrapRefused, BootstrapResult, SeedSet, app, bootstrap
from hone_trainer.model.training import TrainConfig
from tests.integration.trainer.conftest import CLASSES, png, remove_model, stripes

TINY = TrainConfig(epochs=1, min_samples_per_epoch=64, progress=False)


@pytest.fixture
async def client(settings: ServiceSettings) -> AsyncIterator[TorchServeClient]:
    client = TorchServeClient(settings.torchserve)
    yield client
    await client.aclose()


@pytest.fixture(scope="module")
async def served(settings: ServiceSettings, store: ObjectStore) -> AsyncIterator[BootstrapResult]:
    """One bootstrapped throwaway model for the module: starting a TorchServe worker is slow."""
    name = f"hone-it-{uuid.uuid4().hex[:10]}"
    images, labels = stripes(per_class=10)
    client = TorchServeClient(settings.torchserve)
    try:
        yield await bootstrap(
            SeedSet(images, labels, CLASSES),
            TINY,
            client=client,
            store=store,
            bucket=settings.s3.models_bucket,
            model_name=name,
        )
    finally:
        await client.aclose()
        await remove_model(settings, name)


async def test_the_bootstrapped_model_is_stored_and_served_as_the_default_version(
    served: BootstrapResult, client: TorchServeClient, store: ObjectStore
) -> None:
    assert await store.exists(ObjectRef.parse(served.artifact_uri))
    assert await client.default_version(served.model_name) == served.model_version
    images, _ = stripes(per_class=2, seed=5)
    prediction = await client.predict([png(i) for i in images], model=served.model_name)
    assert prediction.model_version == served.model_version
    assert prediction.classes == CLASSES
    assert len(prediction.probabilities) == len(images)
    for row in prediction.probabilities:
        assert len(row) == len(CLASSES)
        assert sum(row) == pytest.approx(1.0, abs=1e-4)


async def test_a_corrupt_image_refuses_its_request_and_is_named_by_index(
    served: BootstrapResult, client: TorchServeClient
) -> None:
    images, _ = stripes(per_class=1)
    batch = [png(images[0]), b"\x89PNG\r\n\x1a\n broken", png(images[1])]
    with pytest.raises(TorchServeError) as refused:
        await client.predict(batch, model=served.model_name)
    assert refused.value.status == 400
    assert isinstance(refused.value.body, dict)
    assert [e["index"] for e in refused.value.body["errors"]] == [1]


async def test_concurrent_requests_each_get_their_own_rows(
    served: BootstrapResult, client: TorchServeClient
) -> None:
    images, _ = stripes(per_class=3, seed=8)
    requests = [[png(i) for i in images[: n % 4 + 1]] for n in range(10)]
    answers = await asyncio.gather(
        *(client.predict(r, model=served.model_name) for r in requests),
        client.predict([b"garbage"], model=served.model_name),
        return_exceptions=True,
    )
    *good, bad = answers
    for request, answer in zip(requests, good, strict=True):
        assert not isinstance(answer, BaseException), answer
        assert len(answer.probabilities) == len(request)
    assert isinstance(bad, TorchServeError)
    assert bad.status == 400


async def test_a_raw_image_body_gets_one_row(
    served: BootstrapResult, settings: ServiceSettings
) -> None:
    images, _ = stripes(per_class=1)
    token = settings.torchserve.token("inference")
    async with httpx.AsyncClient(base_url=settings.torchserve.inference_url) as http:
        response = await http.post(
            f"/predictions/{served.model_name}",
            content=png(images[0]),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "image/png"},
        )
    assert response.status_code == 200, response.text
    assert len(response.json()["probabilities"]) == 1


async def test_a_second_bootstrap_refuses_to_replace_production(
    served: BootstrapResult, client: TorchServeClient, store: ObjectStore, settings: ServiceSettings
) -> None:
    images, labels = stripes(per_class=10)
    with pytest.raises(BootstrapRefused):
        await bootstrap(
            SeedSet(images, labels, CLASSES),
            TINY,
            client=client,
            store=store,
            bucket=settings.s3.models_bucket,
            model_name=served.model_name,
        )
    assert await client.default_version(served.model_name) == served.model_version


def test_the_command_bootstraps_from_a_seed_file(
    tmp_path: Path, throwaway_model: Callable[[], str], settings: ServiceSettings
) -> None:
    images, labels = stripes(per_class=10)
    seed = tmp_path / "seed.npz"
    np.savez_compressed(seed, images=images, labels=labels, classes=np.array(CLASSES))
    name = throwaway_model()
    result = CliRunner().invoke(
        app, ["--seed-npz", str(seed), "--epochs", "1", "--model-name", name, "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout[result.stdout.index("{") :])
    assert summary["model_name"] == name

    async def default_version() -> str | None:
        client = TorchServeClient(settings.torchserve)
        try:
            return await client.default_version(name)
        finally:
            await client.aclose()

    assert asyncio.run(default_version()) == summary["model_version"]
