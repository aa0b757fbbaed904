"""Object storage (MinIO or any S3 server): content-addressed puts, gets, presigned URLs.

The MinIO client is synchronous; every call runs in a worker thread so the event loop keeps
serving. Objects are addressed by `s3://bucket/key` URIs, which is what events carry.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import urllib3
from minio import Minio
from minio.error import S3Error

from hone_common.settings import S3Settings


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class ObjectRef:
    bucket: str
    key: str

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @classmethod
    def parse(cls, uri: str) -> ObjectRef:
        if not uri.startswith("s3://"):
            raise ValueError(f"not an s3:// URI: {uri!r}")
        bucket, _, key = uri[len("s3://") :].partition("/")
        if not bucket or not key or ".." in key.split("/") or key.startswith("/"):
            raise ValueError(f"malformed object URI: {uri!r}")
        return cls(bucket, key)


class ObjectNotFound(LookupError):
    pass


class ObjectStore:
    def __init__(self, settings: S3Settings, *, max_connections: int = 32) -> None:
        self.settings = settings
        http = urllib3.PoolManager(
            maxsize=max_connections,
            timeout=urllib3.Timeout(connect=5, read=30),
            retries=urllib3.Retry(
                total=3, backoff_factor=0.2, status_forcelist=(500, 502, 503, 504)
            ),
        )
        self._client = Minio(
            settings.endpoint,
            access_key=settings.access_key.get_secret_value(),
            secret_key=settings.secret_key.get_secret_value(),
            secure=settings.secure,
            region=settings.region,
            http_client=http,
        )

    async def ensure_bucket(self, bucket: str) -> None:
        def _ensure() -> None:
            try:
                if not self._client.bucket_exists(bucket):
                    self._client.make_bucket(bucket)
            except S3Error as error:  # another replica created it first
                if error.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise

        await asyncio.to_thread(_ensure)

    async def put(
        self,
        ref: ObjectRef,
        data: bytes,
        content_type: str = "application/octet-stream",
        metadata: dict[str, str] | None = None,
    ) -> ObjectRef:
        def _put() -> None:
            self._client.put_object(
                ref.bucket,
                ref.key,
                io.BytesIO(data),
                len(data),
                content_type=content_type,
                metadata=metadata,  # type: ignore[arg-type]
            )

        await asyncio.to_thread(_put)
        return ref

    async def put_content_addressed(
        self, bucket: str, prefix: str, data: bytes, content_type: str, suffix: str = ""
    ) -> tuple[ObjectRef, str]:
        """Store under `<prefix>/<sha256[:2]>/<sha256><suffix>`: the same bytes, the same key,
        so a repeated put is harmless."""
        digest = sha256_hex(data)
        ref = ObjectRef(bucket, f"{prefix}/{digest[:2]}/{digest}{suffix}")
        await self.put(ref, data, content_type)
        return ref, digest

    async def get(self, ref: ObjectRef) -> bytes:
        def _get() -> bytes:
            response: Any = None
            try:
                response = self._client.get_object(ref.bucket, ref.key)
                return bytes(response.read())
            except S3Error as error:
                if error.code in ("NoSuchKey", "NoSuchBucket"):
                    raise ObjectNotFound(ref.uri) from error
                raise
            finally:
                if response is not None:
                    response.close()
                    response.release_conn()

        return await asyncio.to_thread(_get)

    async def exists(self, ref: ObjectRef) -> bool:
        def _stat() -> bool:
            try:
                self._client.stat_object(ref.bucket, ref.key)
                return True
            except S3Error as error:
                if error.code in ("NoSuchKey", "NoSuchBucket"):
                    return False
                raise

        return await asyncio.to_thread(_stat)

    async def presign_get(self, ref: ObjectRef, seconds: int | None = None) -> str:
        """A short-lived URL for one object (default lifetime from settings)."""
        lifetime = timedelta(seconds=seconds or self.settings.presign_seconds)
        return await asyncio.to_thread(
            self._client.presigned_get_object, ref.bucket, ref.key, expires=lifetime
        )

    async def ping(self) -> bool:
        try:
            await asyncio.to_thread(self._client.list_buckets)
            return True
        except Exception:
            return False
