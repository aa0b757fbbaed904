"""The selector's admin API: what it has learnt, and why an image was or was not chosen."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from hone_common.auth import Principal, Role, require_role
from hone_common.http import ApiError
from hone_common.service import Runtime
from hone_selector.settings import Settings
from hone_selector.stats import Stats, collect

_ERROR = {
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {
                    "error": {
                        "type": "object",
                        "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
                    }
                },
            }
        }
    }
}
router = APIRouter(
    prefix="/v1/selector",
    tags=["selector"],
    responses={
        401: {"description": "No API key, or an unknown or revoked one.", **_ERROR},
        403: {"description": "The key's role may not do this (admin only).", **_ERROR},
    },
)
Admin = Annotated[Principal, require_role(Role.ADMIN)]


def _runtime(request: Request) -> tuple[Runtime, Settings]:
    runtime: Runtime = request.app.state.runtime
    settings = runtime.settings
    assert isinstance(settings, Settings)
    return runtime, settings


@router.get("/stats", response_model=Stats)
async def stats(
    request: Request, _: Admin, days: Annotated[int, Query(ge=1, le=365)] = 14
) -> Stats:
    """Class counts, slice error rates, strategy yields, accuracy estimate, budget and queue."""
    runtime, settings = _runtime(request)
    async with runtime.pool.acquire() as conn:
        return await collect(conn, settings.selector.schema_name, settings.selector, days)


@router.get(
    "/decisions/{image_id}",
    responses={404: {"description": "No decision for this image.", **_ERROR}},
)
async def decisions(request: Request, _: Admin, image_id: uuid.UUID) -> list[dict[str, Any]]:
    """Every decision taken for one image (one per model version that scored it)."""
    runtime, settings = _runtime(request)
    rows = await runtime.pool.fetch(
        "SELECT image_id, model_version, camera_id, object_id, captured_at, predicted_label, "  # noqa: S608
        "confidence, priority, threshold, scores, outcome, requested, reasons, review_event_id, "
        "decided_at, answered_at, verdict, human_label, labeler_id, model_wrong "
        f"FROM {settings.selector.schema_name}.decisions WHERE image_id = $1 "
        "ORDER BY decided_at",
        image_id,
    )
    if not rows:
        raise ApiError(404, "not_found", f"no decision for image {image_id}")
    return [dict(row) for row in rows]
