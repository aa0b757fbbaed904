"""Reading an upload's multipart body within a byte limit: an oversized body is refused from its
Content-Length or as soon as the limit is crossed, never read whole into memory."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass

from fastapi import Request
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from hone_common.http import ApiError


class _BodyTooLarge(Exception):
    pass


@dataclass(frozen=True, slots=True)
class Upload:
    data: bytes
    metadata: bytes


async def read_upload(request: Request, *, max_body: int, max_metadata: int) -> Upload:
    """The `file` and `metadata` parts of a multipart/form-data request."""
    if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        raise ApiError(
            415,
            "unsupported_media_type",
            "send multipart/form-data with a `file` part and a `metadata` part",
        )
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_body:
        raise _too_large(max_body)
    parser = MultiPartParser(
        request.headers,
        _capped(request.stream(), max_body),
        max_files=2,
        max_fields=8,
        max_part_size=max_metadata,
    )
    try:
        form = await parser.parse()
    except _BodyTooLarge:
        raise _too_large(max_body) from None
    except MultiPartException as error:
        raise ApiError(400, "malformed_request", f"unreadable multipart body: {error}") from None
    try:
        file, metadata = form.get("file"), form.get("metadata")
        if not isinstance(file, UploadFile):
            raise ApiError(422, "invalid_request", "a `file` part with a filename is required")
        if metadata is None:
            raise ApiError(422, "invalid_metadata", "a `metadata` part (a JSON object) is required")
        if isinstance(metadata, UploadFile):  # some clients send JSON as a file part
            raw_metadata = await metadata.read(max_metadata + 1)
            if len(raw_metadata) > max_metadata:
                raise ApiError(
                    422, "invalid_metadata", f"metadata is longer than {max_metadata} bytes"
                )
        else:
            raw_metadata = metadata.encode()
        return Upload(data=await file.read(), metadata=raw_metadata)
    finally:
        await form.close()


async def _capped(stream: AsyncIterator[bytes], limit: int) -> AsyncGenerator[bytes, None]:
    seen = 0
    async for chunk in stream:
        seen += len(chunk)
        if seen > limit:
            raise _BodyTooLarge
        yield chunk


def _too_large(limit: int) -> ApiError:
    return ApiError(413, "too_large", f"the request body is larger than {limit} bytes")
