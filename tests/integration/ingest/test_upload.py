"""`POST /v1/images` on the running service: real keys, real storage, real announcements."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import asyncpg
import pytest

from hone_common.auth import ApiKeys, Role
from hone_common.events import ImageReceived, image_id_for
from hone_common.storage import ObjectRef, ObjectStore
from hone_common.topics import Topic
from tests.integration.ingest.conftest import RunningIngest
from tests.unit.ingest import corpus


@pytest.fixture
async def keys(pool: asyncpg.Pool[Any], running_ingest: RunningIngest) -> ApiKeys:
    return ApiKeys(pool)  # the running service has migrated the auth schema


async def upload(
    running_ingest: RunningIngest, key: str | None, data: bytes, metadata: dict[str, Any]
) -> Any:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return await running_ingest.http.post(
        "/v1/images",
        headers=headers,
        files={"file": ("photo.png", data, "image/png")},
        data={"metadata": json.dumps(metadata)},
    )


async def test_an_upload_is_created_then_a_duplicate_and_announced_once(
    running_ingest: RunningIngest,
    keys: ApiKeys,
    kafka_tap: Any,
    pool: asyncpg.Pool[Any],
    store: ObjectStore,
    unique: str,
) -> None:
    _, key = await keys.issue(f"app-it-{unique}", Role.APP)
    data = corpus.png(50, 40, "RGB")
    sha = hashlib.sha256(data).hexdigest()
    image_id = str(image_id_for(sha))
    metadata = {"camera_id": f"app-{unique}", "captured_at": "2026-03-01T12:00:00+01:00"}
    received = await kafka_tap(Topic.IMAGE_RECEIVED.value)

    first = await upload(running_ingest, key, data, {**metadata, "object_id": "sku-1"})
    second = await upload(running_ingest, key, data, {**metadata, "note": "again"})
    sentinel = await upload(running_ingest, key, corpus.png(), metadata)

    assert first.status_code == 201, first.text
    assert first.json() == {"image_id": image_id, "sha256": sha, "duplicate": False}
    assert second.status_code == 200, second.text
    assert second.json() == {"image_id": image_id, "sha256": sha, "duplicate": True}
    assert sentinel.status_code == 201

    ours = {image_id, sentinel.json()["image_id"]}

    def announced(records: list[Any]) -> list[ImageReceived]:
        events = (ImageReceived.model_validate_json(r.value) for r in records)
        return [e for e in events if str(e.payload.image_id) in ours]

    # The outbox publishes in commit order: the sentinel's announcement comes after any
    # (wrong) second announcement of the duplicate.
    events = announced(await received.wait_for(lambda rs: len(announced(rs)) == 2, within=30))
    (event,) = [e for e in events if str(e.payload.image_id) == image_id]
    assert event.payload.object_id == "sku-1"
    assert event.payload.captured_at.isoformat() == "2026-03-01T11:00:00+00:00"
    assert (event.payload.width, event.payload.height, event.payload.format) == (50, 40, "PNG")
    assert await store.get(ObjectRef.parse(event.payload.uri)) == data

    row = await pool.fetchrow(
        "SELECT source, camera_id, object_id, size_bytes FROM ingest.images WHERE sha256 = $1",
        sha,
    )
    assert dict(row) == {
        "source": "http",
        "camera_id": f"app-{unique}",
        "object_id": "sku-1",
        "size_bytes": len(data),
    }


async def test_a_camera_key_may_upload(
    running_ingest: RunningIngest, keys: ApiKeys, unique: str
) -> None:
    _, key = await keys.issue(f"cam-it-{unique}", Role.CAMERA)
    response = await upload(running_ingest, key, corpus.jpeg(), {"camera_id": f"cam-{unique}"})
    assert response.status_code == 201, response.text


async def test_uploads_without_a_valid_camera_or_app_key_are_refused(
    running_ingest: RunningIngest, keys: ApiKeys, pool: asyncpg.Pool[Any], unique: str
) -> None:
    revoked_principal, revoked = await keys.issue(f"gone-it-{unique}", Role.CAMERA)
    await keys.revoke(revoked_principal.key_id)
    _, labeler = await keys.issue(f"labeler-it-{unique}", Role.LABELER)
    data = corpus.png()
    metadata = {"camera_id": f"cam-{unique}"}

    cases = {
        None: (401, "unauthenticated"),
        "hone_000000000000_not-a-real-key": (401, "invalid_api_key"),
        revoked: (401, "invalid_api_key"),
        labeler: (403, "forbidden"),
    }
    for key, (status, code) in cases.items():
        response = await upload(running_ingest, key, data, metadata)
        assert (response.status_code, response.json()["error"]["code"]) == (status, code)

    stored = await pool.fetchval(
        "SELECT count(*) FROM ingest.images WHERE sha256 = $1", hashlib.sha256(data).hexdigest()
    )
    assert stored == 0


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (corpus.encode(corpus.pixels(), "GIF"), (415, "unsupported_format")),
        (corpus.png(64, 64)[:200], (422, "corrupt")),
        (b"", (422, "empty")),
        (corpus.png_bomb(20000, 20000), (422, "too_many_pixels")),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * (1 << 20), (413, "too_large")),
    ],
)
async def test_unacceptable_uploads_are_refused_with_their_code(
    running_ingest: RunningIngest,
    keys: ApiKeys,
    unique: str,
    data: bytes,
    expected: tuple[int, str],
) -> None:
    _, key = await keys.issue(f"app-it-{unique}", Role.APP)
    response = await upload(running_ingest, key, data, {"camera_id": f"app-{unique}"})
    assert (response.status_code, response.json()["error"]["code"]) == expected


async def test_the_service_reports_ready_and_counts_uploads_in_its_metrics(
    running_ingest: RunningIngest, keys: ApiKeys, unique: str
) -> None:
    ready = await running_ingest.http.get("/readyz")
    assert ready.status_code == 200, ready.text

    async def counted(name: str) -> float:
        text = (await running_ingest.http.get("/metrics")).text
        sample = f'{name}{{source="http"}} '
        lines = [line for line in text.splitlines() if line.startswith(sample)]
        return float(lines[0].split()[-1]) if lines else 0.0

    before = await counted("hone_ingest_accepted_total")
    offered_before = await counted("hone_ingest_images_in_total")
    _, key = await keys.issue(f"app-it-{unique}", Role.APP)
    await upload(running_ingest, key, corpus.png(), {"camera_id": f"app-{unique}"})
    await upload(running_ingest, key, b"GIF89a", {"camera_id": f"app-{unique}"})

    assert await counted("hone_ingest_accepted_total") == before + 1
    assert await counted("hone_ingest_images_in_total") == offered_before + 2
