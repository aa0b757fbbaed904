"""Image quality features the selector and the weakness model use: brightness, contrast and
sharpness of the grayscale image, vectorised with numpy."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from PIL import Image

from hone_common.events import Quality

Gray = npt.NDArray[np.float32]

_SIXTEEN_BIT = {"I;16", "I;16B", "I;16L", "I;16N", "I"}


def grayscale(image: Image.Image) -> Gray:
    """Intensities in [0, 1]. 16-bit images keep their depth instead of being clipped to 8 bits,
    which is what `convert("L")` would do to them."""
    if image.mode in _SIXTEEN_BIT:
        wide: Gray = np.asarray(image, dtype=np.float32) / np.float32(65535.0)
        return np.clip(wide, 0.0, 1.0, out=wide)
    if image.mode == "F":
        floats: Gray = np.nan_to_num(np.array(image, dtype=np.float32), nan=0.0)
        return np.clip(floats, 0.0, 1.0, out=floats)
    if image.mode != "L":
        image = image.convert("L")
    gray: Gray = np.asarray(image, dtype=np.float32) / np.float32(255.0)
    return gray


def measure(gray: Gray) -> Quality:
    """Brightness (mean), contrast (standard deviation), both in [0, 1], and sharpness: the
    variance of the 4-neighbour Laplacian on the 0-255 scale, the usual focus measure (the same
    number as OpenCV's `Laplacian(gray, CV_64F).var()` away from the borders)."""
    brightness = float(gray.mean(dtype=np.float64)) if gray.size else 0.0
    contrast = float(gray.std(dtype=np.float64)) if gray.size else 0.0
    sharpness = 0.0
    if gray.shape[0] >= 3 and gray.shape[1] >= 3:
        scaled = gray * np.float32(255.0)
        laplacian = (
            scaled[:-2, 1:-1]
            + scaled[2:, 1:-1]
            + scaled[1:-1, :-2]
            + scaled[1:-1, 2:]
            - 4.0 * scaled[1:-1, 1:-1]
        )
        sharpness = float(laplacian.var(dtype=np.float64))
    return Quality(
        brightness=min(max(brightness, 0.0), 1.0),
        contrast=min(max(contrast, 0.0), 1.0),
        sharpness=max(sharpness, 0.0),
    )
