"""Test images for the benchmarks."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def random_pngs(count: int, seed: int = 0, side: int = 28) -> list[bytes]:
    """`count` distinct grayscale PNGs of random pixels (about 800 bytes at 28x28)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        buffer = io.BytesIO()
        pixels = rng.integers(0, 256, size=(side, side), dtype=np.uint8)
        Image.fromarray(pixels, mode="L").save(buffer, format="PNG")
        out.append(buffer.getvalue())
    return out
