"""User flags: an end user says a prediction was wrong."""

from __future__ import annotations

from fastapi import APIRouter, Response

from hone_labeling_api.deps import App, IdempotencyKeyHeader, LabelingDep
from hone_labeling_api.routes import errors
from hone_labeling_api.routes.tasks import REPLAYED
from hone_labeling_api.schemas import FeedbackOut, FeedbackRequest

router = APIRouter(prefix="/v1", tags=["feedback"])


@router.post("/feedback", status_code=202, response_model=FeedbackOut, responses=errors(404))
async def flag_prediction(
    body: FeedbackRequest,
    who: App,
    labeling: LabelingDep,
    response: Response,
    idempotency_key: IdempotencyKeyHeader = None,
) -> FeedbackOut:
    """Flag an image's prediction as wrong: it is queued for review outside the budget."""
    result, replayed = await labeling.feedback(who, body, idempotency_key)
    response.headers[REPLAYED] = str(replayed).lower()
    return result
