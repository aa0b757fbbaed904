"""Object URIs and URLs are untrusted: nothing a frame, an event or a user names makes a
service read, serve or presign an object outside the image bucket, or fetch a URL; presigned
URLs are short-lived and open one object only."""

from __future__ import annotations

import asyncio
import io
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
import httpx
import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError

from hone_common.auth import Role
from hone_common.events import Frame, Reason, ReviewRequest
from hone_common.settings import ServiceSettings
from hone_common.storage import ObjectRef, ObjectStore
from hone_ingest.adapters.bucket import ImageBucket, s3_store
from hone_ingest.validation import Refused
from tests.security.conftest import Keys
from tests.security.corpus import ESCAPING_URIS, FOREIGN_URLS
from tests.security.labeling import LabelingProcess, labeling_process


def png() -> bytes:
    pixels = np.random.default_rng().integers(0, 256, size=(28, 28), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
async def secret(store: ObjectStore) -> AsyncIterator[ObjectRef]:
    """An image in a bucket of its own, which nothing may ever hand out."""
    ref = ObjectRef(f"hone-security-{uuid.uuid4().hex[:10]}", "secret.png")
    await store.ensure_bucket(ref.bucket)
    await store.put(ref, png(), "image/png")
    yield ref
    client = store._client
    await asyncio.to_thread(client.remove_object, ref.bucket, ref.key)
    await asyncio.to_thread(client.remove_bucket, ref.bucket)


def aimed_at(secret: ObjectRef) -> list[str]:
    return [
        *ESCAPING_URIS,
        secret.uri,
        f"s3://hone-images/../{secret.bucket}/{secret.key}",
        f"s3://hone-images/%2e%2e/{secret.bucket}/{secret.key}",
    ]


@pytest.mark.parametrize("url", FOREIGN_URLS)
def test_a_frame_cannot_name_anything_but_an_s3_object(url: str) -> None:
    with pytest.raises(ValidationError):
        Frame.model_validate(
            {"camera_id": "cam-1", "captured_at": "2026-01-01T00:00:00Z", "uri": url}
        )


@pytest.mark.parametrize("url", FOREIGN_URLS)
def test_a_review_request_cannot_name_a_url(url: str) -> None:
    with pytest.raises(ValidationError):
        ReviewRequest(
            image_id=uuid.uuid4(), uri=url, reasons=[Reason(strategy="x", score=0.5)], priority=1
        )


async def test_ingest_reads_frames_only_from_the_image_bucket(
    settings: ServiceSettings, store: ObjectStore, secret: ObjectRef
) -> None:
    images = settings.s3.images_bucket
    bucket = ImageBucket(s3_store(settings.s3, images, 4), images, "images")
    allowed = ObjectRef(images, f"security-test/{uuid.uuid4()}.png")
    data = png()
    await store.put(allowed, data, "image/png")
    assert await bucket.fetch(allowed.uri, 1024 * 1024) == data  # the control: reads work
    for uri in aimed_at(secret) + FOREIGN_URLS:
        with pytest.raises(Refused) as refusal:
            await bucket.fetch(uri, 1024 * 1024)
        assert refusal.value.code in ("invalid_uri", "not_found"), (uri, refusal.value)


@pytest.fixture(scope="module")
async def api(pool: asyncpg.Pool[Any], store: ObjectStore) -> AsyncIterator[LabelingProcess]:
    async with labeling_process(pool, store) as running:
        yield running


async def test_the_labeling_api_refuses_reviews_of_objects_outside_the_image_bucket(
    api: LabelingProcess, secret: ObjectRef
) -> None:
    from hone_common.events import ReviewRequested

    for uri in [secret.uri, f"s3://hone-models/hone/{uuid.uuid4()}.mar"]:
        event = ReviewRequested(
            producer="security-test",
            payload=ReviewRequest(
                image_id=uuid.uuid4(),
                uri=uri,
                reasons=[Reason(strategy="x", score=0.5)],
                priority=1,
            ),
        )
        failures = await api.labeling.record_review_requests([event])
        assert event.event_id in failures, f"a review of {uri} was queued"


async def test_presigned_urls_open_one_object_for_a_short_time(
    api: LabelingProcess, keys: Keys, store: ObjectStore
) -> None:
    image_id, ref = await api.queue_task([Reason(strategy="x", score=0.5)], None)
    labeler = {"Authorization": f"Bearer {keys.by_role[Role.LABELER]}"}
    async with httpx.AsyncClient(base_url=api.base_url) as http:
        claimed = (await http.post("/v1/tasks/claim", json={"count": 20}, headers=labeler)).json()
    (task,) = [t for t in claimed["tasks"] if t["image_id"] == str(image_id)]
    url = task["image"]["presigned_url"]
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    assert int(query["X-Amz-Expires"][0]) <= 60
    assert parts.path == f"/{ref.bucket}/{ref.key}"
    other = ObjectRef(ref.bucket, f"security-test/{uuid.uuid4()}.png")
    await store.put(other, png(), "image/png")
    async with httpx.AsyncClient() as http:
        assert (await http.get(url)).status_code == 200
        swapped = url.replace(ref.key, other.key)
        assert (await http.get(swapped)).status_code == 403  # the signature covers the key
        assert (await http.put(url, content=b"x")).status_code == 403  # and the method


async def test_a_presigned_url_stops_working_when_it_expires(store: ObjectStore) -> None:
    ref = ObjectRef(store.settings.images_bucket, f"security-test/{uuid.uuid4()}.png")
    await store.put(ref, png(), "image/png")
    url = await store.presign_get(ref, seconds=1)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 15
    async with httpx.AsyncClient() as http:
        while (answer := await http.get(url)).status_code == 200:
            assert loop.time() < deadline, "the URL still works long after it expired"
            await asyncio.sleep(0.2)
    assert answer.status_code == 403
    assert "expired" in answer.text.lower()
