"""The labeling API's settings: shared sections plus its own knobs under `HONE_LABELING__...`.

Every knob is an environment variable, e.g. `HONE_LABELING__LEASE_SECONDS=120`,
`HONE_LABELING__CONSENSUS=2` or `HONE_LABELING__DEFAULT_CLASSES='["cat", "dog"]'`.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field, StringConstraints, model_validator

from hone_common.events import ClassName
from hone_common.settings import HttpSettings, ServiceSettings

SERVICE = "labeling-api"

FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip

SchemaName = Annotated[str, StringConstraints(pattern=r"^[a-z_][a-z0-9_]{0,62}$")]
"""A PostgreSQL schema name; it is formatted into SQL, so nothing but this shape is accepted."""


class RateLimitSettings(BaseModel):
    """A token bucket per API key (in memory, per process)."""

    requests_per_second: float = Field(20.0, gt=0.0, description="Refill rate of each bucket.")
    burst: int = Field(60, ge=1, description="Bucket capacity: requests allowed at once.")
    max_keys: int = Field(10_000, ge=1, description="Buckets kept; the least recent are dropped.")


class LabelingSettings(BaseModel):
    schema_name: SchemaName = Field("labeling", description="PostgreSQL schema the API owns.")
    consumer_group: str = Field(SERVICE, min_length=1)
    lease_seconds: float = Field(
        300.0, gt=0.0, description="How long a claimed task stays reserved for its labeler."
    )
    max_claim: int = Field(20, ge=1, le=100, description="Most tasks one labeler holds at once.")
    undo_seconds: float = Field(60.0, ge=0.0, description="How long an answer can be undone.")
    consensus: int = Field(
        1, ge=1, le=10, description="Agreeing answers a task needs before its label is published."
    )
    max_extra_answers: int = Field(
        2,
        ge=0,
        le=20,
        description="Answers collected beyond `consensus` on disagreement before the task is "
        "closed as ambiguous.",
    )
    default_classes: list[ClassName] = Field(
        default_factory=lambda: list(FASHION_MNIST_CLASSES),
        min_length=2,
        description="The label set stored at first start; admins change it with PUT /v1/classes.",
    )
    flag_priority: float = Field(
        10.0, ge=0.0, description="Priority of review requests made from user flags."
    )
    presign_seconds: int = Field(60, ge=1, le=3600, description="Lifetime of presigned URLs.")
    max_body_bytes: int = Field(64 * 1024, ge=1024, description="Larger requests get a 413.")
    idempotency_hours: float = Field(
        24.0, gt=0.0, description="How long an Idempotency-Key is remembered."
    )
    housekeeping_seconds: float = Field(
        5.0, gt=0.0, description="How often queue metrics are refreshed and old keys pruned."
    )
    prefetch: int = Field(4, ge=1, le=20, description="Tasks the labeling page keeps ready.")
    rate_limit: RateLimitSettings = RateLimitSettings()

    @model_validator(mode="after")
    def _classes_unique(self) -> LabelingSettings:
        if len(set(self.default_classes)) != len(self.default_classes):
            raise ValueError("default_classes must not repeat a class")
        return self


class Settings(ServiceSettings):
    http: HttpSettings = HttpSettings(port=8000)
    labeling: LabelingSettings = LabelingSettings()
