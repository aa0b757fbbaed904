"""What the gatekeeper keeps: every model version it has seen, every evaluation, every decision.

These are also the admin API's answers, so their fields carry descriptions.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

Status = Literal["candidate", "production", "rejected", "retired"]
DecisionKind = Literal["promote", "reject", "rollback", "manual"]
PROMOTING: frozenset[str] = frozenset({"promote", "rollback", "manual"})
"""Decisions that make their version production."""


class ModelVersion(BaseModel):
    model_name: str
    model_version: str
    status: Status = Field(
        description="`candidate` (being evaluated), `production` (TorchServe's default), "
        "`rejected`, `retired` (was production, replaced)."
    )
    parent_version: str | None = None
    artifact_uri: str | None = Field(
        None, description="The .mar in the model bucket; unknown for a version found serving."
    )
    weakness_model_uri: str | None = None
    evaluation_set_uri: str | None = None
    classes: list[str] = Field(default_factory=list)
    offline_metrics: dict[str, Any] | None = Field(None, description="As the trainer reported.")
    snapshot: dict[str, Any] | None = Field(None, description="What the trainer trained on.")
    first_seen_at: datetime
    promoted_at: datetime | None = Field(None, description="When it last became production.")
    updated_at: datetime


class Evaluation(BaseModel):
    evaluation_id: uuid.UUID
    model_name: str
    candidate_version: str
    production_version: str | None = Field(None, description="None: nothing to compare with.")
    evaluation_set_uri: str | None = None
    examples: int = Field(description="Images both models were scored on.")
    set_aside: dict[str, int] = Field(
        default_factory=dict,
        description="Images left out, by why: unreadable_lines, duplicates, missing, refused.",
    )
    summary: dict[str, float | int | None] = Field(default_factory=dict)
    comparison: dict[str, Any] | None = Field(
        None, description="Everything measured: per class, per camera, McNemar, latency."
    )
    duration_seconds: float
    created_at: datetime | None = None


class Decision(BaseModel):
    decision_id: uuid.UUID = Field(
        default_factory=uuid.uuid4, description="Also the event id of its `model.promoted`."
    )
    model_name: str
    model_version: str
    previous_version: str | None = Field(None, description="Production when it was decided.")
    kind: DecisionKind
    reasons: list[str]
    summary: dict[str, float | int | None] = Field(default_factory=dict)
    evaluation_id: uuid.UUID | None = None
    actor: str = Field(description="`gatekeeper`, or who acted by hand (`cli:...`, `api:...`).")
    candidate_event_id: uuid.UUID | None = None
    correlation_id: uuid.UUID | None = None
    decided_at: datetime | None = None
    applied_at: datetime | None = Field(
        None, description="When TorchServe was brought in line; None while pending."
    )
    apply_error: str | None = Field(None, description="Why it could not be applied, if so.")
