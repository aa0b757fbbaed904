"""Image and metadata validation on a corpus of good and bad inputs."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pytest
from PIL import Image

from hone_ingest.validation import (
    Limits,
    Refused,
    check_storable,
    inspect_image,
    parse_upload_metadata,
)
from tests.unit.ingest import corpus

LIMITS = Limits(max_bytes=1024 * 1024, max_width=4096, max_height=4096, max_pixels=16_777_216)
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def refusal(data: bytes, limits: Limits = LIMITS) -> Refused:
    with pytest.raises(Refused) as caught:
        inspect_image(data, limits)
    return caught.value


@pytest.mark.parametrize(
    ("data", "fmt", "content_type"),
    [
        (corpus.png(), "PNG", "image/png"),
        (corpus.jpeg(), "JPEG", "image/jpeg"),
        (corpus.webp(), "WEBP", "image/webp"),
    ],
)
def test_png_jpeg_and_webp_are_accepted_with_their_format_and_size(
    data: bytes, fmt: str, content_type: str
) -> None:
    inspection = inspect_image(data, LIMITS)
    assert (inspection.format, inspection.width, inspection.height) == (fmt, 28, 28)
    assert inspection.content_type == content_type


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA"])
def test_every_common_pixel_mode_is_measured(mode: str) -> None:
    inspection = inspect_image(corpus.png(40, 30, mode), LIMITS)
    assert (inspection.width, inspection.height) == (40, 30)
    assert 0.0 < inspection.quality.brightness < 1.0


def test_a_palette_png_is_accepted() -> None:
    data = corpus.encode(corpus.pixels(16, 16, "RGB").convert("P"), "PNG")
    assert inspect_image(data, LIMITS).format == "PNG"


def test_a_16_bit_png_keeps_its_depth_when_measured() -> None:
    bright = Image.fromarray(np.full((8, 8), 60000, dtype=np.uint16))
    quality = inspect_image(corpus.encode(bright, "PNG"), LIMITS).quality
    assert quality.brightness == pytest.approx(60000 / 65535, abs=1e-4)


def test_a_zero_byte_file_is_refused_as_empty() -> None:
    assert refusal(b"").code == "empty"


def test_a_file_over_the_byte_limit_is_refused_before_decoding() -> None:
    data = corpus.png(64, 64)
    small = Limits(max_bytes=len(data) - 1, max_width=4096, max_height=4096, max_pixels=1 << 24)
    refused = refusal(data, small)
    assert refused.code == "too_large"
    assert str(len(data)) in refused.message


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(np.random.default_rng(7).bytes(2000), id="random bytes"),
        pytest.param(b"this is plain text, whatever the file is called.png", id="text"),
        pytest.param(corpus.encode(corpus.pixels(8, 8, "RGB"), "GIF"), id="gif"),
        pytest.param(corpus.encode(corpus.pixels(8, 8, "RGB"), "BMP"), id="bmp"),
        pytest.param(corpus.encode(corpus.pixels(8, 8, "RGB"), "TIFF"), id="tiff"),
        pytest.param(b"<svg xmlns='http://www.w3.org/2000/svg'/>", id="svg"),
    ],
)
def test_anything_but_png_jpeg_and_webp_is_refused_as_unsupported(data: bytes) -> None:
    assert refusal(data).code == "unsupported_format"


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(corpus.png(64, 64)[:300], id="png cut in the pixel data"),
        pytest.param(corpus.png(64, 64)[:-6], id="png cut in the end chunk"),
        pytest.param(corpus.png()[:20], id="png cut in the header"),
        pytest.param(corpus.with_bad_crc(corpus.png()), id="png with a bad checksum"),
        pytest.param(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, id="png signature then zeros"),
        pytest.param(corpus.jpeg(64, 64)[:400], id="jpeg cut in the scan"),
        # Only the end marker missing is sometimes decodable in full (every pixel is there),
        # so the cut goes into the entropy-coded data.
        pytest.param(corpus.jpeg()[:-40], id="jpeg cut just before its end"),
        pytest.param(corpus.jpeg()[:20], id="jpeg cut in the header"),
        pytest.param(corpus.webp(64, 64)[:200], id="webp cut"),
    ],
)
def test_truncated_or_damaged_images_are_refused_as_corrupt(data: bytes) -> None:
    assert refusal(data).code == "corrupt"


def test_a_decompression_bomb_is_refused_from_its_header_quickly() -> None:
    bomb = corpus.png_bomb(20000, 20000)
    assert len(bomb) < 100_000
    started = time.perf_counter()
    refused = refusal(bomb)
    # Decoding 400 megapixels would take seconds and hundreds of MB; the header check is instant.
    assert time.perf_counter() - started < 0.5
    assert refused.code == "too_many_pixels"


def test_an_image_within_pillows_limit_but_over_ours_is_refused_without_decoding() -> None:
    started = time.perf_counter()
    refused = refusal(corpus.png_bomb(5000, 100))
    assert time.perf_counter() - started < 0.5
    assert refused.code == "too_many_pixels"
    assert "5000x100" in refused.message


def test_the_total_pixel_limit_applies_within_the_side_limits() -> None:
    tight = Limits(max_bytes=1 << 20, max_width=4096, max_height=4096, max_pixels=1000)
    assert refusal(corpus.png(40, 30), tight).code == "too_many_pixels"
    assert inspect_image(corpus.png(40, 25), tight).width == 40


# --- metadata ------------------------------------------------------------------------------


def parse(document: object) -> object:
    return parse_upload_metadata(json.dumps(document), received_at=NOW)


def metadata_refusal(raw: str | bytes) -> Refused:
    with pytest.raises(Refused) as caught:
        parse_upload_metadata(raw, received_at=NOW)
    assert caught.value.code == "invalid_metadata"
    return caught.value


def test_upload_metadata_splits_known_fields_from_free_keys() -> None:
    metadata = parse_upload_metadata(
        json.dumps(
            {
                "camera_id": "cam-1",
                "captured_at": "2026-02-01T08:30:00+02:00",
                "object_id": "sku:123",
                "site": "north",
                "exposure": 0.25,
                "flash": False,
                "note": None,
            }
        ),
        received_at=NOW,
    )
    assert metadata.camera_id == "cam-1"
    assert metadata.captured_at == datetime(2026, 2, 1, 8, 30, tzinfo=timezone(timedelta(hours=2)))
    assert metadata.object_id == "sku:123"
    assert metadata.extra == {"site": "north", "exposure": 0.25, "flash": False, "note": None}


def test_captured_at_defaults_to_the_time_of_receipt() -> None:
    metadata = parse_upload_metadata('{"camera_id": "cam-1"}', received_at=NOW)
    assert metadata.captured_at == NOW
    assert metadata.object_id is None


@pytest.mark.parametrize(
    ("raw", "mentions"),
    [
        pytest.param("{not json", "not valid JSON", id="not json"),
        pytest.param('["cam-1"]', "JSON object", id="array"),
        pytest.param(b"\xff\xfe{}", "not valid JSON", id="undecodable bytes"),
        pytest.param("{}", "camera_id: Field required", id="camera missing"),
        pytest.param('{"camera_id": "cam 1"}', "camera_id", id="camera with a space"),
        pytest.param('{"camera_id": ""}', "camera_id", id="camera empty"),
        pytest.param('{"camera_id": 7}', "camera_id", id="camera a number"),
        pytest.param(
            '{"camera_id": "c", "captured_at": "2026-02-01T08:30:00"}',
            "timezone",
            id="naive time",
        ),
        pytest.param('{"camera_id": "c", "captured_at": "yesterday"}', "captured_at", id="prose"),
        pytest.param('{"camera_id": "c", "captured_at": 1767225600}', "captured_at", id="epoch"),
        pytest.param('{"camera_id": "c", "captured_at": null}', "captured_at", id="null time"),
        pytest.param('{"camera_id": "c", "object_id": ""}', "object_id", id="object empty"),
        pytest.param('{"camera_id": "c", "pose": {"x": 1}}', "pose", id="nested value"),
        pytest.param('{"camera_id": "c", "tags": ["a"]}', "tags", id="list value"),
        pytest.param('{"camera_id": "c", "exposure": NaN}', "NaN", id="nan"),
        pytest.param('{"camera_id": "c", "exposure": Infinity}', "Infinity", id="infinity"),
        pytest.param('{"camera_id": "c", "note": "a\\u0000b"}', "NUL", id="nul in value"),
        pytest.param('{"camera_id": "c", "note": "\\ud800"}', "Unicode", id="lone surrogate"),
        pytest.param(
            json.dumps({"camera_id": "c", "k" * 65: 1}), "at most 64 characters", id="long key"
        ),
        pytest.param(
            json.dumps({"camera_id": "c", **{f"k{i}": i for i in range(33)}}),
            "at most 32 items",
            id="33 free keys",
        ),
    ],
)
def test_metadata_outside_the_contract_is_refused_with_the_reason(
    raw: str | bytes, mentions: str
) -> None:
    assert mentions in metadata_refusal(raw).message


def test_metadata_that_fits_the_contract_but_not_storage_is_refused() -> None:
    for extra in ({"x": float("nan")}, {"x\x00": 1}, {"x": "\udcff"}):
        with pytest.raises(Refused) as caught:
            check_storable(extra)
        assert caught.value.code == "invalid_metadata"
    check_storable({"site": "north", "exposure": 0.5, "n": 3, "ok": True, "none": None})


@pytest.mark.parametrize(("fmt", "stored_as"), [("PNG", "PNG"), ("WEBP", "WEBP"), ("MPO", "JPEG")])
def test_multi_frame_images_are_accepted_and_measured_on_their_first_frame(
    fmt: str, stored_as: str
) -> None:
    first, *rest = [corpus.pixels(20, 10, "RGB") for _ in range(3)]
    data = corpus.encode(first, fmt, save_all=True, append_images=rest)
    inspection = inspect_image(data, LIMITS)
    assert (inspection.format, inspection.width, inspection.height) == (stored_as, 20, 10)
