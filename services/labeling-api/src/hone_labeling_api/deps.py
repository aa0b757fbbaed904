"""FastAPI dependencies as typed aliases: the service layer, and the caller's key (checked
for its role, then charged against its rate limit)."""

from __future__ import annotations

import math
from typing import Annotated, Any

from fastapi import Depends, Header, Request

from hone_common.auth import Principal, Role, require_role
from hone_common.http import ApiError
from hone_common.ratelimit import RateLimiter
from hone_labeling_api import metrics
from hone_labeling_api.schemas import IdempotencyKey
from hone_labeling_api.service import Labeling


def get_labeling(request: Request) -> Labeling:
    labeling: Labeling | None = request.app.state.runtime.extras.get("labeling")
    if labeling is None:
        raise ApiError(503, "starting", "the service is starting")
    return labeling


def _limited(*roles: Role) -> Any:
    checked = require_role(*roles)

    # `checked` as a default, not in an annotation: annotations are strings here and FastAPI
    # resolves them in the module's globals, where this local does not exist.
    async def dependency(request: Request, who: Principal = checked) -> Principal:
        limiter: RateLimiter = request.app.state.rate_limiter
        wait = limiter.take(who.key_id)
        if wait > 0:
            metrics.RATE_LIMITED.inc()
            raise ApiError(
                429,
                "rate_limited",
                "too many requests for this key; retry later",
                {"Retry-After": str(max(1, math.ceil(wait)))},
            )
        return who

    return Depends(dependency)


LabelingDep = Annotated[Labeling, Depends(get_labeling)]
Labeler = Annotated[Principal, _limited(Role.LABELER)]
App = Annotated[Principal, _limited(Role.APP)]
Admin = Annotated[Principal, _limited(Role.ADMIN)]
AnyRole = Annotated[Principal, _limited(Role.LABELER, Role.APP)]
IdempotencyKeyHeader = Annotated[
    IdempotencyKey | None,
    Header(
        alias="Idempotency-Key",
        description="Makes the request safe to retry: the same key with the same request "
        "returns the first response and repeats nothing; with another request, 422.",
    ),
]
