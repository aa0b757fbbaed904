"""The API's request and response bodies (they make the OpenAPI document)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from hone_labeling_api.domain import TaskStatus, Verdict

# Text that ends up in PostgreSQL and on the page: no control characters (PostgreSQL refuses
# NUL in text and jsonb, and the rest have no business in a class name).
ClassName = Annotated[
    str,
    StringConstraints(
        min_length=1, max_length=64, strip_whitespace=True, pattern=r"^[^\x00-\x1f\x7f]+$"
    ),
]
Comment = Annotated[str, StringConstraints(max_length=500, pattern=r"^[^\x00]*$")]
IdempotencyKey = Annotated[
    str, StringConstraints(min_length=1, max_length=255, pattern=r"^[\x21-\x7e]+$")
]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- tasks ----------------------------------------------------------------------------------


class ClaimRequest(Body):
    count: int = Field(
        1,
        ge=1,
        le=100,
        description="How many tasks to hold: the tasks you already hold (their leases renewed), "
        "topped up from the queue. Capped by the server's `max_claim`.",
    )


class ReasonOut(BaseModel):
    strategy: str = Field(description="The selection strategy (e.g. `uncertainty`, `user_flag`).")
    score: float
    detail: str = ""


class ClassProbability(BaseModel):
    label: str
    probability: float


class PredictionOut(BaseModel):
    label: str = Field(description="The model's guess.")
    confidence: float
    top_k: list[ClassProbability] = Field(description="The most probable classes, best first.")


class ImageLinks(BaseModel):
    url: str = Field(description="The image streamed through this API (needs the same key).")
    presigned_url: str | None = Field(
        None, description="A short-lived direct link to the one object in the object store."
    )
    presigned_expires_at: datetime | None = None


class TaskOut(BaseModel):
    task_id: uuid.UUID
    image_id: uuid.UUID
    priority: float
    outside_budget: bool = Field(description="Requested by a user flag, outside the budget.")
    reasons: list[ReasonOut] = Field(description="Why the image was chosen, strongest first.")
    model_version: str | None
    prediction: PredictionOut | None
    camera_id: str | None
    lease_expires_at: datetime
    image: ImageLinks


class ClaimResponse(BaseModel):
    tasks: list[TaskOut]
    lease_seconds: float


class AnswerRequest(Body):
    verdict: Verdict = Field(
        description="`label` (with `label`), `ambiguous` (kept out of training) or `skip`."
    )
    label: ClassName | None = Field(None, description="One of the classes of GET /v1/classes.")
    elapsed_ms: int | None = Field(
        None, ge=0, le=3_600_000, description="Time the labeler looked at the image."
    )

    @model_validator(mode="after")
    def _label_iff_verdict_label(self) -> AnswerRequest:
        if self.verdict == "label" and self.label is None:
            raise ValueError("verdict `label` needs a `label`")
        if self.verdict != "label" and self.label is not None:
            raise ValueError(f"verdict `{self.verdict}` carries no `label`")
        return self


class AnswerOut(BaseModel):
    answer_id: uuid.UUID
    task_id: uuid.UUID
    image_id: uuid.UUID
    verdict: Verdict
    label: str | None
    task_status: TaskStatus = Field(
        description="`open` while more answers are needed (consensus) or after a skip."
    )
    published: bool = Field(description="A label.submitted event was written for this answer.")
    answered_at: datetime
    undo_until: datetime


class UndoResponse(BaseModel):
    undone: AnswerOut
    task: TaskOut | None = Field(
        description="The task, leased to you again so it can be answered anew."
    )


# --- feedback -------------------------------------------------------------------------------


class FeedbackRequest(Body):
    image_id: uuid.UUID = Field(description="The image whose prediction is wrong.")
    label: ClassName | None = Field(None, description="The right class, if the user knows it.")
    comment: Comment = ""


class FeedbackOut(BaseModel):
    flag_id: uuid.UUID
    image_id: uuid.UUID
    review_requested: bool
    label: str | None


# --- classes --------------------------------------------------------------------------------


class ClassesIn(Body):
    classes: list[ClassName] = Field(
        min_length=2, max_length=200, description="The label set, in keyboard order."
    )

    @model_validator(mode="after")
    def _unique(self) -> ClassesIn:
        if len({c.casefold() for c in self.classes}) != len(self.classes):
            raise ValueError("classes must be unique (ignoring case)")
        if any(c.casefold() in ("ambiguous", "skip") for c in self.classes):
            raise ValueError("`ambiguous` and `skip` are answers, not classes")
        return self


class ClassesOut(BaseModel):
    classes: list[str]
    updated_at: datetime
    updated_by: str | None


# --- stats ----------------------------------------------------------------------------------


class QueueStats(BaseModel):
    open: int = Field(description="Tasks not settled yet.")
    waiting: int = Field(description="Open tasks nobody holds (never leased or lease expired).")
    leased: int
    flagged: int = Field(description="Open tasks from user flags.")


class LabelerStats(BaseModel):
    labeler_id: str
    answers: int = Field(description="Answers in the window (undone ones excluded).")
    labels: int
    ambiguous: int
    skips: int
    last_hour: int
    per_hour: float = Field(description="Answers per hour over the window.")


class Stats(BaseModel):
    window_hours: float
    queue: QueueStats
    labelers: list[LabelerStats]
    class_counts: dict[str, int] = Field(description="Settled labels per class (all time).")
    ambiguous: int = Field(description="Tasks settled as ambiguous (all time).")
    agreement_rate: float | None = Field(
        description="Share of tasks with several answers whose answers all agree."
    )
    model_agreement_rate: float | None = Field(
        description="Share of labelled tasks where the model's guess was right."
    )
    flags: int = Field(description="User flags received in the window.")


class MyStats(BaseModel):
    window_hours: float
    queue: QueueStats
    me: LabelerStats
    undo_seconds: float
