"""The HTTP routes, one module per resource; they decode, call the service layer, answer."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the refusals a route can answer with (besides auth's)."""
    described = {
        400: "Malformed request",
        401: "Missing, unknown or revoked API key",
        403: "The key's role may not do this",
        404: "Not found (or not yours)",
        409: "Conflicts with the task's current state",
        413: "Request body too large",
        422: "Invalid request",
        429: "Rate limited (see Retry-After)",
        502: "The object store failed",
    }
    wanted = sorted({400, 401, 403, 413, 422, 429, *statuses})
    return {s: {"model": ErrorBody, "description": described[s]} for s in wanted}
