"""The trainer's admin API: start a run, look at runs and at the dataset."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from hone_common.auth import Principal, Role, require_role
from hone_common.http import ApiError
from hone_trainer.repository import Repository
from hone_trainer.runs import Trainer

router = APIRouter(prefix="/v1/trainer", tags=["trainer"])
Admin = Annotated[Principal, require_role(Role.ADMIN)]


class RunAccepted(BaseModel):
    run_id: uuid.UUID
    status: str = Field(description="`running`: poll GET /v1/trainer/runs/{run_id}.")
    trigger: str


def _trainer(request: Request) -> tuple[Trainer, Repository]:
    extras = request.app.state.runtime.extras
    return extras["trainer"], extras["repository"]


@router.post("/runs", status_code=202, response_model=RunAccepted)
async def start_run(request: Request, admin: Admin) -> RunAccepted:
    """Start a training run now (one at a time: 409 while another runs)."""
    trainer, _ = _trainer(request)
    trigger = f"api:{admin.name}"[:200]
    started = await trainer.start(trigger)
    if started is None:
        raise ApiError(409, "run_in_progress", "a training run is in progress; try again later")
    return RunAccepted(run_id=started.run_id, status="running", trigger=trigger)


@router.get("/runs")
async def list_runs(
    request: Request, admin_: Admin, limit: Annotated[int, Query(ge=1, le=500)] = 20
) -> list[dict[str, Any]]:
    """The newest runs first, with their outcome, metrics and artifacts."""
    _, repo = _trainer(request)
    return await repo.runs(request.app.state.runtime.pool, limit)


@router.get("/runs/{run_id}")
async def get_run(request: Request, admin_: Admin, run_id: uuid.UUID) -> dict[str, Any]:
    """One run, with how many examples of each role it used."""
    _, repo = _trainer(request)
    pool = request.app.state.runtime.pool
    run = await repo.run(pool, run_id)
    if run is None:
        raise ApiError(404, "run_not_found", f"no run {run_id}")
    run["examples_used"] = {
        role: len(await repo.run_example_ids(pool, run_id, role))
        for role in ("train", "weakness", "flagged")
    }
    return run


@router.get("/dataset")
async def dataset(request: Request, admin_: Admin) -> dict[str, Any]:
    """Examples per split and kind, ambiguous and flagged images, training labels per class."""
    _, repo = _trainer(request)
    return await repo.dataset_stats(request.app.state.runtime.pool)
