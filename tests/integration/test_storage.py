"""MinIO put/get/presign round trips against the real server."""

from __future__ import annotations

import httpx
import pytest

from hone_common.settings import ServiceSettings
from hone_common.storage import ObjectNotFound, ObjectRef, ObjectStore, sha256_hex


async def test_put_get_and_presigned_download_round_trip(
    store: ObjectStore, settings: ServiceSettings, unique: str
) -> None:
    bucket = settings.s3.images_bucket
    await store.ensure_bucket(bucket)
    await store.ensure_bucket(bucket)  # a second call is harmless
    data = f"hone {unique}".encode() * 1000
    ref, digest = await store.put_content_addressed(bucket, "tests", data, "text/plain", ".txt")
    assert digest == sha256_hex(data)
    assert ref.uri == f"s3://{bucket}/tests/{digest[:2]}/{digest}.txt"
    assert await store.get(ObjectRef.parse(ref.uri)) == data
    assert await store.exists(ref)

    url = await store.presign_get(ref, seconds=60)
    async with httpx.AsyncClient() as client:
        response = await client.get(url)
        assert response.status_code == 200
        assert response.content == data
        # The signature covers one object: another key with the same query string is refused.
        other = url.replace(digest, "0" * 64)
        assert (await client.get(other)).status_code == 403


async def test_a_missing_object_is_a_clear_not_found(
    store: ObjectStore, settings: ServiceSettings
) -> None:
    await store.ensure_bucket(settings.s3.images_bucket)
    ref = ObjectRef(settings.s3.images_bucket, "tests/does-not-exist")
    assert not await store.exists(ref)
    with pytest.raises(ObjectNotFound):
        await store.get(ref)


@pytest.mark.parametrize(
    "uri", ["http://x/y", "s3://bucket", "s3://bucket/../etc/passwd", "s3:///key"]
)
def test_malformed_object_uris_are_refused(uri: str) -> None:
    with pytest.raises(ValueError, match="URI"):
        ObjectRef.parse(uri)
