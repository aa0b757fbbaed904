"""`POST /v1/images`: an app or camera uploads one image with its metadata (DESIGN.md §6)."""

from __future__ import annotations

import math
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field

from hone_common.auth import Principal, Role, require_role
from hone_common.events import utc_now
from hone_common.http import ApiError
from hone_common.ratelimit import RateLimiter
from hone_ingest import metrics
from hone_ingest.intake import Ingestor, Submission
from hone_ingest.settings import Settings
from hone_ingest.upload import read_upload
from hone_ingest.validation import RefusalCode, Refused, parse_upload_metadata

STATUS: dict[RefusalCode, int] = {
    "empty": 422,
    "too_large": 413,
    "unsupported_format": 415,
    "corrupt": 422,
    "too_many_pixels": 422,
    "invalid_metadata": 422,
    "invalid_uri": 422,
    "not_found": 422,
    "unstorable": 422,
}


class UploadAnswer(BaseModel):
    image_id: uuid.UUID = Field(description="The image's id (derived from its content).")
    sha256: str = Field(description="SHA-256 of the uploaded bytes.")
    duplicate: bool = Field(description="True when these exact bytes were stored before.")


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorAnswer(BaseModel):
    error: ErrorDetail


def _ingestor(request: Request) -> Ingestor:
    ingestor: Ingestor = request.app.state.runtime.extras["ingestor"]
    return ingestor


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.runtime.settings
    return settings


def _rate_limited(
    request: Request, uploader: Annotated[Principal, require_role(Role.CAMERA, Role.APP)]
) -> Principal:
    """The key's holder, charged one upload; 429 with Retry-After beyond its rate."""
    state = request.app.state
    limiter: RateLimiter | None = getattr(state, "upload_limiter", None)
    if limiter is None:  # one per app, made on first use from its settings
        knobs = _settings(request).ingest
        limiter = state.upload_limiter = RateLimiter(knobs.uploads_per_second, knobs.upload_burst)
    wait = limiter.take(uploader.key_id)
    if wait > 0:
        metrics.refused("http", "rate_limited")
        retry = str(max(1, math.ceil(wait)))
        raise ApiError(429, "rate_limited", "too many uploads for this key", {"Retry-After": retry})
    return uploader


Uploader = Annotated[Principal, Depends(_rate_limited)]
IngestorDep = Annotated[Ingestor, Depends(_ingestor)]
SettingsDep = Annotated[Settings, Depends(_settings)]

_MULTIPART: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file", "metadata"],
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "A PNG, JPEG or WebP image (1 MiB at most by default).",
                        },
                        "metadata": {
                            "type": "string",
                            "description": 'A JSON object: {"camera_id": "cam-1", "captured_at":'
                            ' "2026-01-01T12:00:00Z", "object_id": "...", ...free scalar keys}. '
                            "captured_at defaults to the time of receipt.",
                        },
                    },
                }
            }
        },
    }
}
_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorAnswer, "description": description}
    for status, description in {
        200: "These bytes were stored before (`duplicate: true`).",
        400: "The multipart body cannot be read.",
        401: "No API key, or an unknown or revoked one.",
        403: "The key's role may not upload images.",
        413: "The image or the request body is too large.",
        415: "Not a PNG, JPEG or WebP image, or not a multipart body.",
        422: "Invalid metadata, an empty, damaged or oversized (pixels) image.",
        429: "Too many uploads for this key: retry after `Retry-After` seconds.",
    }.items()
}
_ERRORS[200]["model"] = UploadAnswer

router = APIRouter(prefix="/v1", tags=["images"])


@router.post(
    "/images",
    status_code=201,
    response_model=UploadAnswer,
    responses=_ERRORS,
    openapi_extra=_MULTIPART,
)
async def upload_image(
    request: Request,
    response: Response,
    uploader: Uploader,
    ingestor: IngestorDep,
    settings: SettingsDep,
) -> UploadAnswer:
    """Upload one image with its metadata; it is stored once and announced as image.received."""
    received_at = utc_now()
    limits = settings.ingest
    try:
        upload = await read_upload(
            request, max_body=limits.max_body_bytes, max_metadata=limits.max_metadata_bytes
        )
        metadata = parse_upload_metadata(upload.metadata, received_at=received_at)
    except Refused as refusal:
        metrics.refused("http", refusal.code)
        raise ApiError(STATUS[refusal.code], refusal.code, refusal.message) from None
    except ApiError as error:
        metrics.refused("http", error.code)
        raise
    (outcome,) = await ingestor.ingest(
        [Submission(source="http", metadata=metadata, data=upload.data)]
    )
    if isinstance(outcome, Refused):
        raise ApiError(STATUS[outcome.code], outcome.code, outcome.message)
    if outcome.duplicate:
        response.status_code = 200
    return UploadAnswer(
        image_id=outcome.image_id, sha256=outcome.sha256, duplicate=outcome.duplicate
    )
