"""Model versions and archives: what a .mar holds, that its handler runs as TorchServe loads it,
and that a stored version is never overwritten."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from hone_common.storage import ObjectRef
from hone_trainer.model.archive import (
    ArtifactExists,
    allocate_version,
    archive_ref,
    build_archive,
    new_model_version,
    store_archive,
    version_time,
)
from hone_trainer.model.handler import ImageClassifier
from hone_trainer.model.training import TrainedModel
from tests.unit.trainer.conftest import Task, png
from tests.unit.trainer.fakes import FakeStore

VERSION = "20260301.142530"


@pytest.fixture(scope="module")
def mar(trained: TrainedModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_archive(trained, "hone-unit", VERSION, tmp_path_factory.mktemp("mar"))


def test_the_archive_holds_handler_architectures_weights_config_and_manifest(mar: Path) -> None:
    names = set(zipfile.ZipFile(mar).namelist())
    assert names == {
        "handler.py",
        "architectures.py",
        "weights.pt",
        "model-config.json",
        "MAR-INF/MANIFEST.json",
    }


def test_the_manifest_names_the_model_version_and_entry_points(mar: Path) -> None:
    manifest = json.loads(zipfile.ZipFile(mar).read("MAR-INF/MANIFEST.json"))
    assert manifest["model"] == {
        "modelName": "hone-unit",
        "modelVersion": VERSION,
        "handler": "handler.py",
        "modelFile": "architectures.py",
        "serializedFile": "weights.pt",
    }


def test_the_model_config_describes_the_trained_network(mar: Path, trained: TrainedModel) -> None:
    config = json.loads(zipfile.ZipFile(mar).read("model-config.json"))
    assert config["architecture"] == "small-cnn"
    assert config["classes"] == trained.classes
    assert config["model_version"] == VERSION
    assert config["input_size"] == [28, 28]
    assert config["channels"] == 1


def test_the_unpacked_archive_predicts_what_the_trained_model_predicts(
    mar: Path, trained: TrainedModel, task: Task, tmp_path: Path
) -> None:
    zipfile.ZipFile(mar).extractall(tmp_path)
    classifier = ImageClassifier.load(tmp_path)
    [(status, body)] = classifier.answer([png(task.images[0])])
    assert status == 200
    assert np.allclose(body["probabilities"], trained.predict_proba(task.images[:1]), atol=1e-5)


def test_the_archived_handler_runs_without_hone_packages(
    mar: Path, task: Task, tmp_path: Path
) -> None:
    """TorchServe imports handler.py as a top-level module from the unpacked archive, in an
    environment without hone_trainer; the handler must then use the archived architectures."""
    zipfile.ZipFile(mar).extractall(tmp_path)
    (tmp_path / "image.png").write_bytes(png(task.images[0]))
    script = (
        "import sys, json, types\n"
        "sys.modules['hone_trainer'] = None  # as if not installed\n"
        f"sys.path.insert(0, {str(tmp_path)!r})\n"
        "import handler\n"
        "class C:\n"
        f"    system_properties = {{'model_dir': {str(tmp_path)!r}}}\n"
        f"    manifest = {{'model': {{'modelVersion': {VERSION!r}}}}}\n"
        "    def set_response_content_type(self, i, v): pass\n"
        "    def set_response_status(self, c, p, i): pass\n"
        "handler.handle(None, C())\n"
        f"image = open({str(tmp_path / 'image.png')!r}, 'rb').read()\n"
        "print(handler.handle([{'body': image}], C())[0])\n"
        "print(handler.architectures.__file__ if hasattr(handler, 'architectures') else "
        "sys.modules['architectures'].__file__)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    answer, origin = done.stdout.strip().splitlines()
    assert json.loads(answer)["model_version"] == VERSION
    assert Path(origin).parent == tmp_path


def test_versions_are_utc_timestamps_that_sort_and_parse() -> None:
    moment = datetime(2026, 3, 1, 15, 25, 30, tzinfo=timezone(timedelta(hours=1)))
    version = new_model_version(moment)
    assert version == VERSION
    assert version_time(version) == moment
    assert float(version) > 0  # TorchServe reads versions as numbers
    later = new_model_version(moment + timedelta(seconds=1))
    assert sorted([later, version]) == [version, later]
    assert float(later) > float(version)


@pytest.mark.parametrize("bad", ["v0001-ab12cd", "2026-03-01", "../20260301.142530", ""])
def test_a_malformed_version_never_names_an_archive(bad: str, trained: TrainedModel) -> None:
    with pytest.raises(ValueError, match=r"YYYYMMDD\.HHMMSS"):
        archive_ref("hone-models", "hone", bad)
    with pytest.raises(ValueError, match=r"YYYYMMDD\.HHMMSS"):
        build_archive(trained, "hone", bad, Path("/nonexistent"))


async def test_allocating_a_version_skips_seconds_already_stored() -> None:
    store = FakeStore()
    now = datetime(2026, 3, 1, 14, 25, 30, 999, tzinfo=UTC)
    for taken in ("20260301.142530", "20260301.142531"):
        store.objects[archive_ref("b", "hone", taken)] = (b"", "", None)
    assert await allocate_version(store, "b", "hone", now) == "20260301.142532"
    assert await allocate_version(store, "b", "other", now) == "20260301.142530"


async def test_storing_puts_the_archive_under_model_and_version(mar: Path) -> None:
    archived = mar.read_bytes()  # noqa: ASYNC240 - a small local file
    store = FakeStore()
    ref = await store_archive(store, mar, "hone-models", "hone", VERSION)
    assert ref == ObjectRef("hone-models", f"hone/{VERSION}.mar")
    data, content_type, metadata = store.objects[ref]
    assert data == archived
    assert content_type == "application/zip"
    assert metadata == {"hone-model-name": "hone", "hone-model-version": VERSION}


async def test_a_stored_version_is_never_overwritten(mar: Path) -> None:
    store = FakeStore()
    ref = archive_ref("hone-models", "hone", VERSION)
    store.objects[ref] = (b"the original", "application/zip", None)
    with pytest.raises(ArtifactExists):
        await store_archive(store, mar, "hone-models", "hone", VERSION)
    assert store.objects[ref][0] == b"the original"
