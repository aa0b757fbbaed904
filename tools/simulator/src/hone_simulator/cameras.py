"""Camera models: what a particular camera makes of a clean 28x28 image, as PNG bytes.

Each camera is a fixed chain geometry → optics → exposure → contrast → sensor noise with its own
parameter ranges; the values drawn for one frame depend only on (seed, frame, camera), so a
stream can be replayed byte for byte. The dusk camera is dark most of the evening and night,
which is the weak spot the system has to discover. The metadata a camera reports is what a real
one would (site, exposure time, firmware), never anything about what is in the picture.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageFilter

from hone_common.events import MetadataValue

Range = tuple[float, float]

NIGHT_HOURS = (17.0, 7.0)
"""Dusk and night in simulated local time: from 17:00 to 07:00."""


@dataclass(frozen=True)
class Capture:
    pixels: NDArray[np.uint8]
    png: bytes
    metadata: dict[str, MetadataValue]


@dataclass(frozen=True)
class Camera:
    """One camera's conditions; a range `(lo, hi)` is drawn uniformly for every frame."""

    camera_id: str
    site: str
    firmware: str
    exposure_ms: float = 8.0
    gain: Range = (0.95, 1.05)
    gamma: Range = (1.0, 1.0)
    low_light_gain: Range = (0.25, 0.4)
    low_light_gamma: Range = (1.3, 1.8)
    low_light_share_day: float = 0.0
    low_light_share_night: float = 0.0
    contrast: Range = (1.0, 1.0)
    rotation_deg: float = 0.0
    blur_radius: Range = (0.0, 0.0)
    noise_sigma: Range = (0.0, 1.5)

    def capture(self, image: NDArray[np.uint8], *, seed: int, frame: int, hour: float) -> Capture:
        """The frame this camera takes of `image` at `hour` (0-24, simulated local time)."""
        rng = np.random.default_rng([seed, frame, zlib.crc32(self.camera_id.encode())])
        # One draw for every per-frame condition (cheaper than one call each, and the same
        # draws are used whether or not a stage is enabled, so stages stay independent).
        angle_u, blur_u, light_u, gain_u, gamma_u, contrast_u, sigma_u, jitter_u = rng.random(8)
        low_light = light_u < (
            self.low_light_share_night if is_night(hour) else self.low_light_share_day
        )
        gain = _within(self.low_light_gain if low_light else self.gain, gain_u)
        gamma = _within(self.low_light_gamma if low_light else self.gamma, gamma_u)
        contrast = _within(self.contrast, contrast_u)
        sigma = _within(self.noise_sigma, sigma_u)
        blur = _within(self.blur_radius, blur_u)

        pixels = np.ascontiguousarray(image, dtype=np.uint8)
        if self.rotation_deg or blur > 0:
            picture = Image.fromarray(pixels)
            if self.rotation_deg:
                angle = self.rotation_deg * (2.0 * angle_u - 1.0)
                picture = picture.rotate(angle, resample=Image.Resampling.BILINEAR, fillcolor=0)
            if blur > 0:
                picture = picture.filter(ImageFilter.GaussianBlur(blur))
            pixels = np.asarray(picture)

        # In-place ufuncs throughout: on 784 pixels numpy's per-call overhead is the cost.
        x = pixels.astype(np.float32)
        if gamma != 1.0:
            x *= np.float32(1.0 / 255.0)
            np.power(x, np.float32(gamma), out=x)
            x *= np.float32(gain * 255.0)
        else:
            x *= np.float32(gain)
        if contrast != 1.0:
            mean = np.add.reduce(x, axis=None) / x.size
            x -= mean
            x *= np.float32(contrast)
            x += mean
        if sigma > 0:
            noise = rng.standard_normal(x.shape, dtype=np.float32)
            noise *= np.float32(sigma)
            x += noise
        np.rint(x, out=x)
        np.clip(x, 0.0, 255.0, out=x)
        out = x.astype(np.uint8)

        # Auto-exposure: the shutter time follows the light the sensor gets, with jitter.
        exposure = self.exposure_ms * gain * (0.9 + 0.2 * jitter_u)
        metadata: dict[str, MetadataValue] = {
            "site": self.site,
            "exposure_ms": round(float(exposure), 2),
            "firmware": self.firmware,
        }
        return Capture(pixels=out, png=encode_png(out), metadata=metadata)


def _within(bounds: Range, u: float) -> float:
    low, high = bounds
    return float(low + (high - low) * u)


def is_night(hour: float) -> bool:
    start, end = NIGHT_HOURS
    return hour >= start or hour < end


def encode_png(pixels: NDArray[np.uint8]) -> bytes:
    """An 8-bit grayscale PNG of `pixels`; the same pixels always give the same bytes.

    Written directly with zlib because Pillow's per-call overhead (~10x the compression of a
    28x28 image) capped the simulator below the frame rates it has to reach; the output is a
    plain baseline PNG that any decoder, Pillow included, reads.
    """
    if pixels.ndim != 2 or pixels.dtype != np.uint8:
        raise ValueError("expected a 2-D uint8 array")
    height, width = pixels.shape
    # Every scanline starts with filter type 0 ("None").
    scanlines = np.zeros((height, width + 1), dtype=np.uint8)
    scanlines[:, 1:] = pixels
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"".join(
        (
            _PNG_SIGNATURE,
            _png_chunk(b"IHDR", header),
            _png_chunk(b"IDAT", zlib.compress(scanlines.tobytes(), 6)),
            _png_chunk(b"IEND", b""),
        )
    )


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


CAMERAS: dict[str, Camera] = {
    camera.camera_id: camera
    for camera in (
        # Normal: good light, a clean sensor.
        Camera(camera_id="cam-north", site="warehouse-north", firmware="4.2.1"),
        # Low exposure: a loading bay that works into the night with a weak lamp.
        Camera(
            camera_id="cam-dusk",
            site="yard-west",
            firmware="3.9.0",
            exposure_ms=12.0,
            gain=(0.5, 0.75),
            gamma=(1.0, 1.2),
            low_light_share_day=0.35,
            low_light_share_night=0.9,
            noise_sigma=(2.0, 5.0),
        ),
        # Noisy and soft: an old sensor behind a scratched cover, vibration on the dock.
        Camera(
            camera_id="cam-dock",
            site="dock-7",
            firmware="2.0.14",
            exposure_ms=6.0,
            blur_radius=(0.6, 1.2),
            noise_sigma=(12.0, 24.0),
        ),
        # Slightly off-axis, with automatic contrast that over- and under-shoots.
        Camera(
            camera_id="cam-gate",
            site="gate-1",
            firmware="4.2.1",
            exposure_ms=9.0,
            contrast=(0.7, 1.3),
            rotation_deg=12.0,
        ),
    )
}


def cameras(ids: Iterable[str] | None = None) -> list[Camera]:
    """The named cameras, each once (all of them when `ids` is None); unknown names are errors."""
    if ids is None:
        return list(CAMERAS.values())
    names = list(dict.fromkeys(ids))
    unknown = [name for name in names if name not in CAMERAS]
    if unknown:
        raise ValueError(f"unknown camera(s) {', '.join(unknown)}; known: {', '.join(CAMERAS)}")
    if not names:
        raise ValueError("at least one camera is needed")
    return [CAMERAS[name] for name in names]
