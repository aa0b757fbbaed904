"""Registering candidates in the real TorchServe from presigned model-bucket URLs, the path the
gatekeeper promotes through: a candidate stays non-default until it is made production."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hone_common.settings import ServiceSettings
from hone_common.storage import ObjectRef, ObjectStore
from hone_common.torchserve import TorchServeClient, TorchServeError
from hone_trainer.model.archive import allocate_version, build_archive, store_archive
from hone_trainer.model.serving import register_version, registered_versions, set_production
from hone_trainer.model.training import TrainConfig, train
from tests.integration.trainer.conftest import CLASSES, png, stripes


@pytest.fixture
async def client(settings: ServiceSettings) -> AsyncIterator[TorchServeClient]:
    client = TorchServeClient(settings.torchserve)
    yield client
    await client.aclose()


async def stored_archive(
    store: ObjectStore, bucket: str, name: str, when: datetime
) -> tuple[str, ObjectRef]:
    images, labels = stripes(per_class=5)
    model = train(images, labels, CLASSES, TrainConfig(epochs=1, progress=False))
    version = await allocate_version(store, bucket, name, when)
    with tempfile.TemporaryDirectory() as tmp:
        mar = build_archive(model, name, version, Path(tmp))
        return version, await store_archive(store, mar, bucket, name, version)


async def test_a_candidate_is_served_by_version_and_becomes_production_only_when_told(
    settings: ServiceSettings,
    store: ObjectStore,
    client: TorchServeClient,
    throwaway_model: Callable[[], str],
) -> None:
    name, bucket = throwaway_model(), settings.s3.models_bucket
    now = datetime.now(UTC)
    first, first_ref = await stored_archive(store, bucket, name, now)
    second, second_ref = await stored_archive(store, bucket, name, now + timedelta(seconds=1))

    assert await register_version(client, store, first_ref, model_name=name, model_version=first)
    assert await register_version(client, store, second_ref, model_name=name, model_version=second)
    assert await client.default_version(name) == first  # TorchServe's first version

    image = png(stripes(per_class=1)[0][0])
    assert (await client.predict([image], model=name)).model_version == first
    by_version = await client.predict([image], model=name, version=second)
    assert by_version.model_version == second

    await set_production(client, name, second)
    assert await client.default_version(name) == second
    assert (await client.predict([image], model=name)).model_version == second


async def test_registering_again_is_harmless_and_an_unregistered_version_can_return(
    settings: ServiceSettings,
    store: ObjectStore,
    client: TorchServeClient,
    throwaway_model: Callable[[], str],
) -> None:
    name = throwaway_model()
    version, ref = await stored_archive(store, settings.s3.models_bucket, name, datetime.now(UTC))
    assert await register_version(client, store, ref, model_name=name, model_version=version)
    [described] = await client.describe(name)
    assert "X-Amz-Signature=" in described["modelUrl"]  # fetched through a presigned URL
    again = await register_version(client, store, ref, model_name=name, model_version=version)
    assert again is False
    assert await registered_versions(client, name) == [version]

    # TorchServe deletes its downloaded copy on unregistering, so a rollback can re-register.
    await client.unregister(version, model=name)
    assert await register_version(client, store, ref, model_name=name, model_version=version)
    assert await registered_versions(client, name) == [version]


async def test_registering_an_archive_that_is_not_stored_fails_and_registers_nothing(
    settings: ServiceSettings,
    store: ObjectStore,
    client: TorchServeClient,
    throwaway_model: Callable[[], str],
) -> None:
    name = throwaway_model()
    missing = ObjectRef(settings.s3.models_bucket, f"{name}/20200101.000000.mar")
    with pytest.raises(TorchServeError):
        await register_version(
            client, store, missing, model_name=name, model_version="20200101.000000"
        )
    assert await registered_versions(client, name) == []
