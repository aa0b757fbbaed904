"""The bootstrap command with an in-memory bucket and TorchServe: what it stores, registers and
makes the default, and what it refuses."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from hone_trainer.bootstrap import BootstrapRefused, SeedSet, app, bootstrap, load_seed
from hone_trainer.model.archive import version_time
from tests.unit.trainer.conftest import QUICK, Task
from tests.unit.trainer.fakes import FakeStore, FakeTorchServe


@pytest.fixture
def seed(task: Task) -> SeedSet:
    return SeedSet(task.images[:40], task.labels[:40], task.classes)


async def test_bootstrap_stores_registers_and_serves_the_first_model(seed: SeedSet) -> None:
    store, torchserve = FakeStore(), FakeTorchServe()
    result = await bootstrap(
        seed,
        QUICK.model_copy(update={"epochs": 1}),
        client=torchserve,
        store=store,
        bucket="hone-models",
        model_name="hone",
    )
    version_time(result.model_version)  # a well-formed version
    [(ref, (data, _, _))] = store.objects.items()
    assert ref.uri == result.artifact_uri == f"s3://hone-models/hone/{result.model_version}.mar"
    assert data[:2] == b"PK"  # a zip archive
    [call] = torchserve.registered
    assert call["url"].startswith(f"http://minio/hone-models/hone/{result.model_version}.mar?")
    assert (call["batch_size"], call["delay"]) == (8, 5)
    assert await torchserve.default_version("hone") == result.model_version
    assert result.examples == 40
    assert result.summary()["validation_accuracy"] is not None


async def test_bootstrap_refuses_to_replace_production_before_training(seed: SeedSet) -> None:
    store, torchserve = FakeStore(), FakeTorchServe({"hone": ["20250101.000000"]})
    with pytest.raises(BootstrapRefused, match=r"20250101\.000000"):
        await bootstrap(
            seed, QUICK, client=torchserve, store=store, bucket="hone-models", model_name="hone"
        )
    assert store.objects == {}
    assert torchserve.registered == []


async def test_bootstrap_replaces_production_when_told_to(seed: SeedSet) -> None:
    torchserve = FakeTorchServe({"hone": ["20250101.000000"]})
    result = await bootstrap(
        seed,
        QUICK.model_copy(update={"epochs": 1}),
        client=torchserve,
        store=FakeStore(),
        bucket="hone-models",
        model_name="hone",
        replace_production=True,
    )
    assert torchserve.defaults["hone"] == result.model_version != "20250101.000000"


def test_a_seed_set_is_read_from_npz(tmp_path: Path, task: Task) -> None:
    path = tmp_path / "seed.npz"
    np.savez_compressed(
        path,
        images=task.images,
        labels=task.labels,
        classes=np.array(task.classes),
        ids=task.labels,
    )
    seed = load_seed(path)
    assert seed.classes == task.classes
    assert seed.images.shape == (120, 28, 28)


def test_a_seed_set_missing_an_array_is_refused(tmp_path: Path, task: Task) -> None:
    path = tmp_path / "seed.npz"
    np.savez(path, images=task.images, classes=np.array(task.classes))
    with pytest.raises(ValueError, match="labels"):
        load_seed(path)


def test_a_seed_set_that_needs_unpickling_is_refused(tmp_path: Path, task: Task) -> None:
    path = tmp_path / "seed.npz"
    np.savez(path, images=task.images, labels=task.labels, classes=np.array(task.classes, object))
    with pytest.raises(ValueError, match="cannot read seed set"):
        load_seed(path)


def test_the_command_refuses_a_missing_seed_file(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["--seed-npz", str(tmp_path / "nope.npz")])
    assert result.exit_code == 2
    assert "does not exist" in result.output


def test_the_command_refuses_a_bad_seed_file_or_option_before_calling_servers(
    tmp_path: Path,
) -> None:
    bad = tmp_path / "seed.npz"
    bad.write_bytes(b"not a zip")
    result = CliRunner().invoke(app, ["--seed-npz", str(bad)])
    assert result.exit_code == 2
    assert "cannot read seed set" in result.output

    np.savez(bad, images=np.zeros((4, 28, 28), np.uint8), labels=np.zeros(4), classes=["a", "b"])
    result = CliRunner().invoke(app, ["--seed-npz", str(bad), "--architecture", "vgg-99"])
    assert result.exit_code == 2
    assert "unknown architecture" in result.output
