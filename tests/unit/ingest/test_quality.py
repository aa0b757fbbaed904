"""Quality features on arrays whose brightness, contrast and sharpness are known."""

from __future__ import annotations

import time

import numpy as np
import pytest
from PIL import Image

from hone_ingest.quality import grayscale, measure


def gray(values: np.ndarray) -> np.ndarray:
    return grayscale(Image.fromarray(values.astype(np.uint8), "L"))


def naive_laplacian_variance(image: np.ndarray) -> float:
    scaled = image.astype(np.float64) * 255.0
    values = [
        scaled[y - 1, x] + scaled[y + 1, x] + scaled[y, x - 1] + scaled[y, x + 1] - 4 * scaled[y, x]
        for y in range(1, image.shape[0] - 1)
        for x in range(1, image.shape[1] - 1)
    ]
    return float(np.var(values))


def test_a_flat_image_has_its_level_as_brightness_and_no_contrast_or_sharpness() -> None:
    quality = measure(gray(np.full((20, 30), 51)))
    assert quality.brightness == pytest.approx(0.2)
    assert quality.contrast == pytest.approx(0.0)
    assert quality.sharpness == pytest.approx(0.0)


def test_half_black_half_white_has_the_largest_contrast() -> None:
    values = np.zeros((10, 10))
    values[:, 5:] = 255
    quality = measure(gray(values))
    assert quality.brightness == pytest.approx(0.5)
    assert quality.contrast == pytest.approx(0.5)


def test_a_checkerboard_is_as_sharp_as_an_8_bit_image_can_be() -> None:
    board = (np.indices((16, 16)).sum(axis=0) % 2) * 255
    # Every interior Laplacian is +-4*255, half of each sign: variance (4*255)^2.
    assert measure(gray(board)).sharpness == pytest.approx((4 * 255) ** 2)


def test_blurring_lowers_sharpness() -> None:
    rng = np.random.default_rng(3)
    noisy = Image.fromarray(rng.integers(0, 256, (64, 64), dtype=np.uint8), "L")
    blurred = noisy.resize((16, 16)).resize((64, 64), Image.Resampling.BILINEAR)
    assert measure(grayscale(blurred)).sharpness < measure(grayscale(noisy)).sharpness / 4


def test_sharpness_matches_the_textbook_laplacian_variance() -> None:
    values = np.random.default_rng(5).integers(0, 256, (23, 17))
    image = gray(values)
    assert measure(image).sharpness == pytest.approx(naive_laplacian_variance(image), rel=1e-5)


@pytest.mark.parametrize("shape", [(1, 1), (2, 50), (50, 2)])
def test_images_too_small_for_a_laplacian_have_zero_sharpness(shape: tuple[int, int]) -> None:
    quality = measure(gray(np.full(shape, 200)))
    assert quality.sharpness == 0.0
    assert quality.brightness == pytest.approx(200 / 255)


def test_colour_images_are_measured_on_their_luminance() -> None:
    red = Image.new("RGB", (8, 8), (255, 0, 0))
    # ITU-R 601-2 luma, as Pillow's convert("L"): 299/1000 of red.
    assert measure(grayscale(red)).brightness == pytest.approx(0.299, abs=0.01)


def test_measuring_a_camera_sized_image_takes_milliseconds() -> None:
    image = gray(np.random.default_rng(1).integers(0, 256, (1080, 1920)))
    started = time.perf_counter()
    measure(image)
    assert time.perf_counter() - started < 0.5
