"""What ingest accepts: image bytes checked by content (PNG, JPEG, WebP within byte and pixel
limits, fully decodable) and metadata checked against the event contract. Plain functions, no
Kafka or HTTP; every refusal is a `Refused` with a stable code."""

from __future__ import annotations

import io
import json
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from PIL import Image
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from hone_common.events import Identifier, Metadata, Quality
from hone_ingest.quality import grayscale, measure

RefusalCode = Literal[
    "empty",
    "too_large",
    "unsupported_format",
    "corrupt",
    "too_many_pixels",
    "invalid_metadata",
    "invalid_uri",
    "not_found",
    "unstorable",
]
ImageFormat = Literal["PNG", "JPEG", "WEBP"]

FORMATS: tuple[ImageFormat, ...] = ("PNG", "JPEG", "WEBP")
CONTENT_TYPES: dict[ImageFormat, str] = {
    "PNG": "image/png",
    "JPEG": "image/jpeg",
    "WEBP": "image/webp",
}
SUFFIXES: dict[ImageFormat, str] = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp"}
RESERVED_KEYS = ("camera_id", "captured_at", "object_id")


class Refused(Exception):
    """Input ingest will never accept, with a stable machine-readable code."""

    def __init__(self, code: RefusalCode, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code: RefusalCode = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Limits:
    max_bytes: int
    max_width: int
    max_height: int
    max_pixels: int


@dataclass(frozen=True, slots=True)
class Inspection:
    """What a valid image is: its format, size and quality features."""

    format: ImageFormat
    width: int
    height: int
    quality: Quality

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.format]

    @property
    def suffix(self) -> str:
        return SUFFIXES[self.format]


def inspect_image(data: bytes, limits: Limits) -> Inspection:
    """Accept `data` only if it is a whole PNG, JPEG or WebP image within the limits.

    The size is read from the header and checked before anything is decompressed, so a
    decompression bomb costs a header parse. The file is then verified (checksums) and decoded
    for real, because `verify()` alone misses truncated pixel data.
    """
    if not data:
        raise Refused("empty", "the image has no bytes")
    if len(data) > limits.max_bytes:
        raise Refused("too_large", f"the image has {len(data)} bytes; at most {limits.max_bytes}")
    claimed = _sniff(data)
    if claimed is None:
        raise Refused("unsupported_format", "not a PNG, JPEG or WebP image (judged by content)")
    try:
        image = _open(data)
    except Image.DecompressionBombError as error:
        raise Refused("too_many_pixels", str(error)) from error
    except Exception as error:  # an unreadable header is the same refusal whatever the cause
        raise Refused("corrupt", f"{claimed} header unreadable ({_why(error)})") from error
    _check_size(image.size, limits)
    try:
        image.verify()
        image = _open(data)
        image.load()
        quality = measure(grayscale(image))
    except Exception as error:  # a decoder failing in any way means the file is broken
        raise Refused("corrupt", f"{claimed} data damaged or truncated ({_why(error)})") from error
    fmt: ImageFormat = "JPEG" if image.format == "MPO" else image.format  # type: ignore[assignment]
    if fmt not in FORMATS:  # pragma: no cover - `_open` only tries these formats
        raise Refused("unsupported_format", f"{image.format} is not accepted")
    width, height = image.size
    return Inspection(format=fmt, width=width, height=height, quality=quality)


def _open(data: bytes) -> Image.Image:
    # Pillow only warns between MAX_IMAGE_PIXELS and twice that; our own limit is lower anyway,
    # so the warning is noise, and an error beyond it is handled by the caller.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        return Image.open(io.BytesIO(data), formats=list(FORMATS))


def _sniff(data: bytes) -> str | None:
    """The accepted format the bytes claim to be, from their signature; None for any other."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def _check_size(size: tuple[int, int], limits: Limits) -> None:
    width, height = size
    if width <= 0 or height <= 0:
        raise Refused("corrupt", f"the image claims a size of {width}x{height}")
    if width > limits.max_width or height > limits.max_height:
        raise Refused(
            "too_many_pixels",
            f"the image is {width}x{height}; at most {limits.max_width}x{limits.max_height}",
        )
    if width * height > limits.max_pixels:
        raise Refused(
            "too_many_pixels",
            f"the image has {width * height} pixels; at most {limits.max_pixels}",
        )


def _why(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"[:300]


# --- metadata ------------------------------------------------------------------------------


class ImageMetadata(BaseModel):
    """Who took an image, when, of what, and free scalar metadata (the event contract's limits)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    camera_id: Identifier
    captured_at: AwareDatetime
    object_id: Identifier | None = None
    extra: Metadata = Field(default_factory=dict)


def parse_upload_metadata(raw: str | bytes, *, received_at: datetime) -> ImageMetadata:
    """The `metadata` part of an upload: one flat JSON object with `camera_id` (required),
    `captured_at` (ISO-8601 with a timezone; the time of receipt when absent), `object_id`
    (optional) and up to 32 free scalar keys."""
    try:
        document = json.loads(raw, parse_constant=_no_constant)
    except (ValueError, UnicodeDecodeError) as error:
        raise Refused("invalid_metadata", f"metadata is not valid JSON ({error})") from error
    if not isinstance(document, dict):
        raise Refused("invalid_metadata", "metadata must be a JSON object")
    captured_at = document.get("captured_at", received_at.astimezone(UTC).isoformat())
    if not isinstance(captured_at, str):
        raise Refused("invalid_metadata", "captured_at: an ISO-8601 string with a timezone")
    known = {k: document[k] for k in ("camera_id", "object_id") if k in document}
    extra = {k: v for k, v in document.items() if k not in RESERVED_KEYS}
    try:
        metadata = ImageMetadata.model_validate(
            {**known, "captured_at": captured_at, "extra": extra}
        )
    except ValidationError as error:
        raise Refused("invalid_metadata", _problems(error)) from error
    check_storable(metadata.extra)
    return metadata


def check_storable(extra: Mapping[str, Any]) -> None:
    """Refuse metadata the contract admits but JSON and PostgreSQL cannot store: NaN and
    infinities, NUL characters and unpaired surrogates (they would fail every retry)."""
    for key, value in extra.items():
        for text in (key, value) if isinstance(value, str) else (key,):
            if "\x00" in text:
                raise Refused("invalid_metadata", f"{key!r}: NUL characters are not allowed")
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as error:
                raise Refused("invalid_metadata", f"{key!r}: not valid Unicode") from error
        if isinstance(value, float) and not math.isfinite(value):
            raise Refused("invalid_metadata", f"{key!r}: {value} is not a finite number")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _problems(error: ValidationError) -> str:
    problems = []
    for problem in error.errors():
        where = ".".join(str(part) for part in problem["loc"] if part != "extra") or "metadata"
        problems.append(f"{where}: {problem['msg']}")
    return "; ".join(problems)[:1000]
