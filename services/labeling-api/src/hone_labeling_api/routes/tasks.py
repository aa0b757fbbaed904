"""Tasks: claim with a lease, look at one (and its image), answer it, undo the last answer."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Response

from hone_labeling_api.deps import IdempotencyKeyHeader, Labeler, LabelingDep
from hone_labeling_api.routes import errors
from hone_labeling_api.schemas import (
    AnswerOut,
    AnswerRequest,
    ClaimRequest,
    ClaimResponse,
    TaskOut,
    UndoResponse,
)

router = APIRouter(prefix="/v1", tags=["tasks"])

REPLAYED = "Idempotent-Replayed"


@router.post("/tasks/claim", response_model=ClaimResponse, responses=errors())
async def claim_tasks(body: ClaimRequest, who: Labeler, labeling: LabelingDep) -> ClaimResponse:
    """Hold up to `count` tasks: those you hold already (lease renewed), then the next ones."""
    return await labeling.claim(who, body.count)


@router.get("/tasks/{task_id}", response_model=TaskOut, responses=errors(404))
async def get_task(task_id: uuid.UUID, who: Labeler, labeling: LabelingDep) -> TaskOut:
    """One task leased to you: the model's guess, its top classes and why it was chosen."""
    return await labeling.task(who, task_id)


@router.get(
    "/tasks/{task_id}/image",
    response_class=Response,
    responses={
        200: {"content": {"image/png": {}, "image/jpeg": {}, "image/webp": {}}},
        **errors(404, 502),
    },
)
async def get_task_image(task_id: uuid.UUID, who: Labeler, labeling: LabelingDep) -> Response:
    """The task's image, streamed through the API (for clients that cannot reach the store)."""
    data, media_type = await labeling.image(who, task_id)
    return Response(data, media_type=media_type, headers={"Cache-Control": "private, max-age=300"})


@router.post("/tasks/{task_id}/answer", response_model=AnswerOut, responses=errors(404, 409))
async def answer_task(
    task_id: uuid.UUID,
    body: AnswerRequest,
    who: Labeler,
    labeling: LabelingDep,
    response: Response,
    idempotency_key: IdempotencyKeyHeader = None,
) -> AnswerOut:
    """Answer a task you hold with a class, `ambiguous` or `skip`."""
    result, replayed = await labeling.answer(who, task_id, body, idempotency_key)
    response.headers[REPLAYED] = str(replayed).lower()
    return result


@router.post("/answers/undo", response_model=UndoResponse, responses=errors(404, 409))
async def undo_last_answer(
    who: Labeler,
    labeling: LabelingDep,
    response: Response,
    idempotency_key: IdempotencyKeyHeader = None,
) -> UndoResponse:
    """Undo your newest answer (within the undo window); the task comes back to you."""
    result, replayed = await labeling.undo(who, idempotency_key)
    response.headers[REPLAYED] = str(replayed).lower()
    return result
