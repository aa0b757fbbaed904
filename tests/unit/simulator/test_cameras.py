"""Camera models: replayable per (seed, frame), each with its own measurable conditions."""

from __future__ import annotations

import io

import numpy as np
import pytest
from numpy.typing import NDArray
from PIL import Image

from hone_simulator.cameras import CAMERAS, Camera, cameras, encode_png, is_night


def _garment() -> NDArray[np.uint8]:
    """A bright shape on black, like a Fashion-MNIST image."""
    image = np.zeros((28, 28), dtype=np.uint8)
    image[4:24, 8:20] = 180
    image[4:10, 3:25] = 220
    return image


def _mean_brightness(camera: Camera, hour: float, frames: int = 200) -> float:
    image = _garment()
    return float(
        np.mean([camera.capture(image, seed=1, frame=f, hour=hour).pixels for f in range(frames)])
    )


def _decode(png: bytes) -> NDArray[np.uint8]:
    picture = Image.open(io.BytesIO(png))
    assert picture.format == "PNG"
    assert picture.mode == "L"
    return np.asarray(picture)


@pytest.mark.parametrize("camera_id", list(CAMERAS))
def test_a_capture_is_the_same_for_the_same_seed_and_frame(camera_id: str) -> None:
    camera = CAMERAS[camera_id]
    first = camera.capture(_garment(), seed=5, frame=17, hour=20.0)
    again = camera.capture(_garment(), seed=5, frame=17, hour=20.0)
    assert first.png == again.png
    assert first.metadata == again.metadata


@pytest.mark.parametrize("camera_id", list(CAMERAS))
def test_captures_of_other_frames_or_seeds_differ(camera_id: str) -> None:
    camera = CAMERAS[camera_id]
    base = camera.capture(_garment(), seed=5, frame=17, hour=20.0).png
    assert camera.capture(_garment(), seed=5, frame=18, hour=20.0).png != base
    assert camera.capture(_garment(), seed=6, frame=17, hour=20.0).png != base


@pytest.mark.parametrize("camera_id", list(CAMERAS))
def test_the_png_decodes_to_the_captured_pixels(camera_id: str) -> None:
    shot = CAMERAS[camera_id].capture(_garment(), seed=0, frame=0, hour=12.0)
    assert shot.pixels.shape == (28, 28)
    assert np.array_equal(_decode(shot.png), shot.pixels)


def test_the_png_encoder_round_trips_any_grayscale_image() -> None:
    pixels = np.random.default_rng(0).integers(0, 256, size=(28, 31), dtype=np.uint8)
    assert np.array_equal(_decode(encode_png(pixels)), pixels)
    assert encode_png(pixels) == encode_png(pixels.copy())


def test_the_png_encoder_refuses_what_is_not_grayscale_uint8() -> None:
    with pytest.raises(ValueError, match="2-D uint8"):
        encode_png(np.zeros((28, 28, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="2-D uint8"):
        encode_png(np.zeros((28, 28), dtype=np.float32))


def test_the_normal_camera_keeps_the_image_nearly_as_it_is() -> None:
    image = _garment()
    shot = CAMERAS["cam-north"].capture(image, seed=0, frame=0, hour=12.0)
    assert np.abs(shot.pixels.astype(int) - image).mean() < 12


def test_the_dusk_camera_is_much_darker_than_the_normal_one() -> None:
    north_day = _mean_brightness(CAMERAS["cam-north"], hour=12.0)
    dusk_day = _mean_brightness(CAMERAS["cam-dusk"], hour=12.0)
    dusk_night = _mean_brightness(CAMERAS["cam-dusk"], hour=21.0)
    assert dusk_day < 0.6 * north_day
    assert dusk_night < 0.4 * north_day
    assert dusk_night < dusk_day  # low light is more common after dark


def test_the_dusk_camera_reports_shorter_exposures_when_darker() -> None:
    dusk = CAMERAS["cam-dusk"]
    shots = [dusk.capture(_garment(), seed=2, frame=f, hour=22.0) for f in range(100)]
    exposure = np.array([float(s.metadata["exposure_ms"] or 0) for s in shots])
    brightness = np.array([s.pixels.mean() for s in shots])
    assert np.corrcoef(exposure, brightness)[0, 1] > 0.5


def test_the_dock_camera_is_noisy_and_soft() -> None:
    image = _garment()
    flat = np.s_[12:20, 10:18]  # a uniform patch of the garment: only noise varies it
    dock = [CAMERAS["cam-dock"].capture(image, seed=3, frame=f, hour=12.0) for f in range(20)]
    north = [CAMERAS["cam-north"].capture(image, seed=3, frame=f, hour=12.0) for f in range(20)]
    assert np.mean([s.pixels[flat].std() for s in dock]) > 8
    assert np.mean([s.pixels[flat].std() for s in north]) < 3
    # Blur spreads the garment's edge into the black background beside it.
    assert np.mean([s.pixels[14, 6] for s in dock]) > np.mean([s.pixels[14, 6] for s in north])


def test_the_gate_camera_turns_the_image_and_changes_its_contrast() -> None:
    image = _garment()
    shots = [CAMERAS["cam-gate"].capture(image, seed=4, frame=f, hour=12.0) for f in range(30)]
    assert np.mean([np.abs(s.pixels.astype(int) - image).mean() for s in shots]) > 10
    spreads = [float(s.pixels.std()) for s in shots]
    assert max(spreads) - min(spreads) > 10


def test_camera_metadata_says_nothing_about_the_content() -> None:
    for camera in CAMERAS.values():
        shot = camera.capture(_garment(), seed=0, frame=0, hour=3.0)
        assert set(shot.metadata) == {"site", "exposure_ms", "firmware"}


@pytest.mark.parametrize(
    ("hour", "night"), [(3.0, True), (6.99, True), (7.0, False), (16.9, False), (17.0, True)]
)
def test_night_is_from_five_pm_to_seven_am(hour: float, night: bool) -> None:
    assert is_night(hour) is night


def test_cameras_by_name_in_order_without_repeats() -> None:
    chosen = cameras(["cam-dusk", "cam-north", "cam-dusk"])
    assert [c.camera_id for c in chosen] == ["cam-dusk", "cam-north"]
    assert len(cameras(None)) == len(CAMERAS) >= 4


def test_an_unknown_camera_is_refused_with_the_known_names() -> None:
    with pytest.raises(ValueError, match=r"cam-nowhere.*known: cam-north"):
        cameras(["cam-north", "cam-nowhere"])
    with pytest.raises(ValueError, match="at least one"):
        cameras([])
