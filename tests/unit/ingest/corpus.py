"""Images good and bad for ingest tests, made in memory (random pixels, so each run's are new)."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image

_rng = np.random.default_rng()


def pixels(width: int = 28, height: int = 28, mode: str = "L") -> Image.Image:
    """Random pixels: every call gives different bytes, so tests never see stale duplicates."""
    channels = {"L": 1, "RGB": 3, "RGBA": 4}[mode]
    shape = (height, width) if channels == 1 else (height, width, channels)
    return Image.fromarray(_rng.integers(0, 256, shape, dtype=np.uint8), mode)


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def png(width: int = 28, height: int = 28, mode: str = "L") -> bytes:
    return encode(pixels(width, height, mode), "PNG")


def jpeg(width: int = 28, height: int = 28) -> bytes:
    return encode(pixels(width, height, "RGB"), "JPEG", quality=90)


def webp(width: int = 28, height: int = 28) -> bytes:
    return encode(pixels(width, height, "RGB"), "WEBP", lossless=True)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(width: int = 20000, height: int = 20000) -> bytes:
    """A valid 1-bit PNG of width x height black pixels: ~50 KB on disk, 400 megapixels decoded.
    Written chunk by chunk, so making it never holds the decoded image in memory."""
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    squeeze = zlib.compressobj(9)
    row = b"\x00" * (1 + (width + 7) // 8)
    data = b"".join(squeeze.compress(row) for _ in range(height)) + squeeze.flush()
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", data)
        + _chunk(b"IEND", b"")
    )


def with_bad_crc(data: bytes) -> bytes:
    """A PNG whose first data chunk's checksum is wrong (a flipped bit in transit)."""
    at = data.index(b"IDAT") + 4
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :]
