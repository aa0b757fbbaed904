"""The gatekeeper's admin API: the model registry, decisions, promotion and rollback by hand."""

from __future__ import annotations

import uuid
from typing import Annotated

import httpx
from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from hone_common.auth import Principal, Role, require_role
from hone_common.http import ApiError
from hone_common.torchserve import TorchServeError
from hone_gatekeeper.gatekeeper import Gatekeeper, GatekeeperError
from hone_gatekeeper.records import Decision, Evaluation, ModelVersion
from hone_gatekeeper.repository import LockTimeout, PostgresRegistry

router = APIRouter(prefix="/v1/gatekeeper", tags=["gatekeeper"])
Admin = Annotated[Principal, require_role(Role.ADMIN)]


class VersionDetail(BaseModel):
    version: ModelVersion
    decisions: list[Decision] = Field(description="Newest first.")


class DecisionDetail(BaseModel):
    decision: Decision
    evaluation: Evaluation | None = None


class ByHand(BaseModel):
    note: str | None = Field(None, max_length=500, description="Why; kept with the decision.")


class Rollback(ByHand):
    version: str | None = Field(
        None, max_length=128, description="An earlier production version; default the latest."
    )


def _parts(request: Request) -> tuple[Gatekeeper, PostgresRegistry, str]:
    extras = request.app.state.runtime.extras
    return extras["gatekeeper"], extras["registry"], extras["model_name"]


@router.get("/versions", response_model=list[ModelVersion])
async def list_versions(request: Request, admin_: Admin) -> list[ModelVersion]:
    """Every version the gatekeeper has seen, newest first, with its status."""
    _, registry, model = _parts(request)
    return await registry.versions(model)


@router.get("/versions/{version}", response_model=VersionDetail)
async def show_version(request: Request, admin_: Admin, version: str) -> VersionDetail:
    """One version and every decision taken on it."""
    _, registry, model = _parts(request)
    row = await registry.version(model, version)
    if row is None:
        raise ApiError(404, "unknown_version", f"the gatekeeper has never seen version {version}")
    return VersionDetail(version=row, decisions=await registry.decisions(model, version))


@router.get("/decisions", response_model=list[Decision])
async def list_decisions(
    request: Request, admin_: Admin, limit: Annotated[int, Query(ge=1, le=500)] = 50
) -> list[Decision]:
    """The newest decisions first."""
    _, registry, model = _parts(request)
    return await registry.decisions(model, limit=limit)


@router.get("/decisions/{decision_id}", response_model=DecisionDetail)
async def show_decision(request: Request, admin_: Admin, decision_id: uuid.UUID) -> DecisionDetail:
    """One decision with its reasons and the evaluation behind it."""
    _, registry, model = _parts(request)
    decision = await registry.decision(decision_id)
    if decision is None or decision.model_name != model:
        raise ApiError(404, "unknown_decision", f"no decision {decision_id}")
    evaluation = None
    if decision.evaluation_id is not None:
        evaluation = await registry.evaluation(decision.evaluation_id)
    return DecisionDetail(decision=decision, evaluation=evaluation)


@router.post("/versions/{version}/promote", response_model=Decision)
async def promote(request: Request, admin: Admin, version: str, body: ByHand) -> Decision:
    """Make a version production by hand, whatever the rules said (publishes model.promoted
    with manual=true)."""
    gatekeeper, _, _ = _parts(request)
    try:
        return await gatekeeper.promote(version, actor=f"api:{admin.name}", note=body.note)
    except Exception as error:
        raise _refusal(error) from error


@router.post("/rollback", response_model=Decision)
async def rollback(request: Request, admin: Admin, body: Rollback) -> Decision:
    """Serve an earlier production version again (the latest one unless named)."""
    gatekeeper, _, _ = _parts(request)
    try:
        return await gatekeeper.rollback(body.version, actor=f"api:{admin.name}", note=body.note)
    except Exception as error:
        raise _refusal(error) from error


def _refusal(error: Exception) -> Exception:
    if isinstance(error, GatekeeperError):
        return ApiError(error.status, error.code, str(error))
    if isinstance(error, LockTimeout):
        return ApiError(409, "busy", str(error))
    if isinstance(error, TorchServeError | httpx.HTTPError):
        return ApiError(503, "torchserve_unavailable", f"TorchServe did not answer: {error}")
    return error
