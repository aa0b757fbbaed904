"""Uploads are judged by their bytes, never by their name or declared type, stored with a safe
content type, and hostile bodies (markup posing as images, bombs, oversized or malformed parts)
are refused with a 4xx."""

from __future__ import annotations

import asyncio
import io
import json
import struct
import uuid
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from hone_common.auth import ApiKeys, Role
from hone_common.storage import ObjectStore
from hone_common.topics import Topic
from hone_ingest.app import create_app
from hone_ingest.settings import Settings
from tests.kafka_helpers import start_group_at_end
from tests.security.conftest import Keys
from tests.security.corpus import MARKUP


@asynccontextmanager
async def running_ingest(**knobs: Any) -> AsyncIterator[httpx.AsyncClient]:
    """Ingest in-process, its frames consumer in a group of its own at the topic's end."""
    base = Settings()
    group = f"security-ingest-{uuid.uuid4().hex[:8]}"
    settings = base.model_copy(
        update={"ingest": base.ingest.model_copy(update={"consumer_group": group, **knobs})}
    )
    await start_group_at_end(settings.kafka.bootstrap_servers, group, [Topic.CAMERA_FRAMES.value])
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as client:
            yield client


@pytest.fixture(scope="module")
async def ingest() -> AsyncIterator[httpx.AsyncClient]:
    async with running_ingest() as client:
        yield client


def png(side: int = 28) -> bytes:
    pixels = np.random.default_rng().integers(0, 256, size=(side, side), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def png_bomb(side: int = 60_000) -> bytes:
    """A valid PNG header announcing side x side pixels, a few KiB on the wire."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    rows = zlib.compress(b"\x00" * (side // 8 + 1) * 64)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")
    )


def metadata(**extra: Any) -> dict[str, str]:
    return {"metadata": json.dumps({"camera_id": "cam-security", **extra})}


async def upload(
    http: httpx.AsyncClient, key: str, data: bytes, name: str, content_type: str, **form: Any
) -> httpx.Response:
    return await http.post(
        "/v1/images",
        headers={"Authorization": f"Bearer {key}"},
        files={"file": (name, data, content_type)},
        data=form or metadata(),
    )


async def test_an_image_is_judged_by_its_bytes_and_stored_with_its_true_type(
    ingest: httpx.AsyncClient, keys: Keys, store: ObjectStore, pool: Any
) -> None:
    answer = await upload(ingest, keys.by_role[Role.CAMERA], png(), "../../evil.html", "text/html")
    assert answer.status_code == 201, answer.text
    uri = await pool.fetchval(
        "SELECT uri FROM ingest.images WHERE image_id = $1", uuid.UUID(answer.json()["image_id"])
    )
    bucket, key = uri.removeprefix("s3://").split("/", 1)
    assert key.endswith(".png")
    # The name the client gave is never used.
    assert "evil" not in key
    assert ".." not in key
    stat = await asyncio.to_thread(store._client.stat_object, bucket, key)
    assert stat.content_type == "image/png"


@pytest.mark.parametrize(
    ("data", "name"),
    [
        (b"<html><script>alert(1)</script></html>", "x.png"),
        (b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>', "x.png"),
        (b"GIF89a<script>alert(1)</script>", "x.jpg"),
        (b"\x89PNG\r\n\x1a\n<script>alert(1)</script>", "x.png"),
        (b"\xff\xd8\xff\xe0" + b"<script>" * 10, "x.jpg"),
        (b"%PDF-1.7\n", "x.webp"),
        (b"MZ\x90\x00" + b"\x00" * 64, "x.png"),
        (b"", "x.png"),
    ],
    ids=[
        "html",
        "svg",
        "gif-polyglot",
        "png-magic-then-markup",
        "jpeg-magic-then-markup",
        "pdf",
        "exe",
        "empty",
    ],
)
async def test_markup_and_other_files_posing_as_images_are_refused(
    ingest: httpx.AsyncClient, keys: Keys, data: bytes, name: str
) -> None:
    answer = await upload(ingest, keys.by_role[Role.APP], data, name, "image/png")
    assert answer.status_code in (415, 422), answer.text
    assert answer.json()["error"]["code"] in ("unsupported_format", "corrupt", "empty")


async def test_a_decompression_bomb_is_refused_from_its_header(
    ingest: httpx.AsyncClient, keys: Keys
) -> None:
    answer = await upload(ingest, keys.by_role[Role.APP], png_bomb(), "x.png", "image/png")
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["code"] in ("too_many_pixels", "corrupt")


async def test_oversized_images_and_bodies_are_refused_with_413(
    ingest: httpx.AsyncClient, keys: Keys
) -> None:
    big = png() + b"\x00" * (1024 * 1024 + 1)
    answer = await upload(ingest, keys.by_role[Role.APP], big, "x.png", "image/png")
    assert answer.status_code == 413, answer.text


@pytest.mark.parametrize(
    "form",
    [
        {"metadata": "{"},
        {"metadata": "[]"},
        {"metadata": json.dumps({"camera_id": "<script>"})},
        {"metadata": json.dumps({"camera_id": "cam", "nested": {"a": 1}})},
        {"metadata": json.dumps({"camera_id": "cam", "x": "y" * 20_000})},
        {"metadata": json.dumps({"camera_id": "cam", **{f"k{i}": i for i in range(100)}})},
        {"metadata": json.dumps({"camera_id": "cam", "captured_at": "yesterday"})},
        {"metadata": json.dumps({"camera_id": "cam", "note": "\u0000"})},
        {"other": "x"},
    ],
    ids=[
        "truncated",
        "not-an-object",
        "markup-id",
        "nested",
        "long",
        "many-keys",
        "bad-time",
        "nul",
        "missing",
    ],
)
async def test_malformed_metadata_is_refused_with_a_4xx(
    ingest: httpx.AsyncClient, keys: Keys, form: dict[str, str]
) -> None:
    answer = await upload(ingest, keys.by_role[Role.APP], png(), "x.png", "image/png", **form)
    assert 400 <= answer.status_code < 500, answer.text
    assert "error" in answer.json()


async def test_markup_in_free_metadata_is_kept_as_data_not_refused_nor_rewritten(
    ingest: httpx.AsyncClient, keys: Keys, pool: Any
) -> None:
    # Free metadata values are data: stored and passed on verbatim; every place that shows
    # them escapes them (see test_stored_xss.py).
    answer = await upload(
        ingest, keys.by_role[Role.APP], png(), "x.png", "image/png", **metadata(note=MARKUP[1])
    )
    assert answer.status_code == 201, answer.text
    stored = await pool.fetchval(
        "SELECT metadata FROM ingest.images WHERE image_id = $1",
        uuid.UUID(answer.json()["image_id"]),
    )
    assert stored["note"] == MARKUP[1]


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "text/plain", "multipart/form-data; boundary=", "multipart/mixed"],
)
async def test_a_body_that_is_not_a_readable_form_is_refused_with_a_4xx(
    ingest: httpx.AsyncClient, keys: Keys, content_type: str
) -> None:
    answer = await ingest.post(
        "/v1/images",
        headers={"Authorization": f"Bearer {keys.by_role[Role.APP]}", "Content-Type": content_type},
        content=b"--x\r\nnot a form\r\n",
    )
    assert 400 <= answer.status_code < 500, answer.text


async def test_a_key_uploading_over_its_rate_is_told_to_wait_and_other_keys_are_not(
    pool: Any,
) -> None:
    registry = ApiKeys(pool)
    greedy, greedy_key = await registry.issue(
        f"security-greedy-{uuid.uuid4().hex[:6]}", Role.CAMERA
    )
    polite, polite_key = await registry.issue(
        f"security-polite-{uuid.uuid4().hex[:6]}", Role.CAMERA
    )
    # One token back every 1,000 s: far longer than the test, however slow the machine.
    async with running_ingest(uploads_per_second=0.001, upload_burst=3) as http:
        statuses = [
            (await upload(http, greedy_key, png(), "x.png", "image/png")).status_code
            for _ in range(5)
        ]
        assert statuses[:3] == [201, 201, 201]
        limited = await upload(http, greedy_key, png(), "x.png", "image/png")
        assert limited.status_code == 429, limited.text
        assert limited.json()["error"]["code"] == "rate_limited"
        assert int(limited.headers["retry-after"]) >= 1
        assert (await upload(http, polite_key, png(), "x.png", "image/png")).status_code == 201
    for principal in (greedy, polite):
        await registry.revoke(principal.key_id)
