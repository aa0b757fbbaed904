"""`POST /v1/images` with an in-memory catalog, object store and key registry."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from hone_common.auth import Principal, Role
from hone_common.events import image_id_for
from hone_common.http import install_error_handlers
from hone_ingest import routes
from hone_ingest.settings import IngestSettings, Settings
from hone_ingest.validation import Limits
from tests.unit.ingest import corpus
from tests.unit.ingest.fakes import FakeCatalog, make_ingestor

KEYS = {f"key-{role.value}": role for role in Role}
KEYS["key-revoked"] = Role.CAMERA
REVOKED = {"key-revoked"}
METADATA = json.dumps({"camera_id": "app-1", "captured_at": "2026-03-01T12:00:00Z"})


class FakeKeys:
    async def verify(self, key: str) -> Principal | None:
        if key not in KEYS or key in REVOKED:
            return None
        return Principal(key_id=uuid.uuid4(), name=key, role=KEYS[key])


@pytest.fixture
def catalog() -> FakeCatalog:
    return FakeCatalog()


@pytest.fixture
def app(catalog: FakeCatalog) -> FastAPI:
    settings = Settings(ingest=IngestSettings(max_image_bytes=64 * 1024))
    limits = Limits(64 * 1024, max_width=4096, max_height=4096, max_pixels=16_777_216)
    ingestor, _, _ = make_ingestor(catalog, limits=limits)
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(routes.router)
    app.state.runtime = SimpleNamespace(settings=settings, extras={"ingestor": ingestor})
    app.state.api_keys = FakeKeys()
    return app


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as client:
        yield client


async def post_streamed(app: FastAPI, headers: dict[str, str], body: AsyncIterator[bytes]) -> Any:
    """Unlike TestClient, httpx's ASGI transport hands the body over chunk by chunk, as the
    server reads it, so a test can tell how much of it was read."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as client:
        return await client.post("/v1/images", headers=headers, content=body)


async def post(
    client: httpx.AsyncClient,
    data: bytes,
    metadata: str | None = METADATA,
    *,
    key: str | None = "key-camera",
    filename: str = "frame.png",
) -> Any:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    form = {"metadata": metadata} if metadata is not None else {}
    return await client.post(
        "/v1/images",
        headers=headers,
        files={"file": (filename, data, "image/png")},
        data=form,
    )


def error(response: Any) -> tuple[int, str]:
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["message"]
    return response.status_code, body["error"]["code"]


async def test_a_new_image_is_created_and_the_same_bytes_again_are_a_duplicate(
    client: httpx.AsyncClient, catalog: FakeCatalog
) -> None:
    data = corpus.png()
    sha = hashlib.sha256(data).hexdigest()

    created = await post(client, data)
    assert created.status_code == 201
    assert created.json() == {"image_id": str(image_id_for(sha)), "sha256": sha, "duplicate": False}

    again = await post(client, data, key="key-app")
    assert again.status_code == 200
    assert again.json() == {"image_id": str(image_id_for(sha)), "sha256": sha, "duplicate": True}
    assert len(catalog.announced) == 1
    assert catalog.announced[0].payload.camera_id == "app-1"


async def test_an_admin_key_may_upload(client: httpx.AsyncClient) -> None:
    assert (await post(client, corpus.jpeg(), key="key-admin")).status_code == 201


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        (None, (401, "unauthenticated")),
        ("key-unknown", (401, "invalid_api_key")),
        ("key-revoked", (401, "invalid_api_key")),
        ("key-labeler", (403, "forbidden")),
    ],
)
async def test_uploads_need_a_valid_camera_or_app_key(
    client: httpx.AsyncClient, catalog: FakeCatalog, key: str | None, expected: tuple[int, str]
) -> None:
    assert error(await post(client, corpus.png(), key=key)) == expected
    assert catalog.announced == []


@pytest.mark.parametrize(
    ("data", "filename", "expected"),
    [
        (b"", "empty.png", (422, "empty")),
        (b"just some text", "photo.png", (415, "unsupported_format")),
        (corpus.encode(corpus.pixels(), "GIF"), "a.gif", (415, "unsupported_format")),
        (corpus.encode(corpus.pixels(), "BMP"), "a.png", (415, "unsupported_format")),
        (corpus.png(64, 64)[:200], "cut.png", (422, "corrupt")),
        (corpus.png_bomb(20000, 20000), "bomb.png", (422, "too_many_pixels")),
        (corpus.png(150, 150, "RGB"), "big.png", (413, "too_large")),
    ],
)
async def test_images_that_are_not_acceptable_are_refused_with_a_code(
    client: httpx.AsyncClient,
    catalog: FakeCatalog,
    data: bytes,
    filename: str,
    expected: tuple[int, str],
) -> None:
    assert error(await post(client, data, filename=filename)) == expected
    assert catalog.announced == []


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        (None, (422, "invalid_metadata")),
        ("not json", (422, "invalid_metadata")),
        ("[]", (422, "invalid_metadata")),
        (json.dumps({"captured_at": "2026-03-01T12:00:00Z"}), (422, "invalid_metadata")),
        (
            json.dumps({"camera_id": "a", "captured_at": "2026-03-01 12:00"}),
            (422, "invalid_metadata"),
        ),
        (json.dumps({"camera_id": "app-1", "nested": {"a": 1}}), (422, "invalid_metadata")),
        # Beyond max_metadata_bytes the multipart reader stops: the part is never buffered.
        (json.dumps({"camera_id": "app-1", "pad": "x" * 20_000}), (400, "malformed_request")),
    ],
)
async def test_invalid_metadata_is_refused(
    client: httpx.AsyncClient, catalog: FakeCatalog, metadata: str | None, expected: tuple[int, str]
) -> None:
    assert error(await post(client, corpus.png(), metadata)) == expected
    assert catalog.announced == []


async def test_a_request_without_a_file_part_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/images",
        headers={"Authorization": "Bearer key-app"},
        files={"metadata": (None, METADATA), "file": (None, "not a file part")},
    )
    assert error(response) == (422, "invalid_request")


async def test_a_body_that_is_not_multipart_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/images",
        headers={"Authorization": "Bearer key-app", "Content-Type": "image/png"},
        content=corpus.png(),
    )
    assert error(response) == (415, "unsupported_media_type")


async def test_a_broken_multipart_body_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/images",
        headers={
            "Authorization": "Bearer key-app",
            "Content-Type": "multipart/form-data; boundary=xyz",
        },
        content=b"--xyz\r\nContent-Disposition: form-data\r\n\r\nvalue\r\n--xyz--\r\n",
    )
    assert error(response) == (400, "malformed_request")


async def test_a_declared_body_over_the_limit_is_refused_before_it_is_read(app: FastAPI) -> None:
    sent = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(100):
            sent += 1
            yield b"x" * 8192

    headers = {
        "Authorization": "Bearer key-app",
        "Content-Type": "multipart/form-data; boundary=xyz",
        "Content-Length": str(100 * 8192),
    }
    response = await post_streamed(app, headers, body())
    assert error(response) == (413, "too_large")
    assert sent == 0


async def test_a_streamed_body_over_the_limit_is_cut_off_at_the_limit(app: FastAPI) -> None:
    sent = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal sent
        yield b"--xyz\r\nContent-Disposition: form-data; name=file; filename=a.png\r\n\r\n"
        for _ in range(10_000):  # 80 MB if it were all read
            sent += 1
            yield b"\x00" * 8192

    headers = {
        "Authorization": "Bearer key-app",
        "Content-Type": "multipart/form-data; boundary=xyz",
    }
    response = await post_streamed(app, headers, body())
    assert error(response) == (413, "too_large")
    assert sent <= 13  # stopped at the 96 KiB limit, not after 80 MB


async def test_unauthenticated_requests_are_refused_without_reading_the_body(
    app: FastAPI,
) -> None:
    sent = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(1000):
            sent += 1
            yield b"\x00" * 8192

    headers = {"Content-Type": "multipart/form-data; boundary=xyz"}
    response = await post_streamed(app, headers, body())
    assert error(response) == (401, "unauthenticated")
    assert sent <= 1
