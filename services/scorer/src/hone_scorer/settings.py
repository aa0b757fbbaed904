"""The scorer's settings: shared sections plus its own knobs under `HONE_SCORER__...`."""

from __future__ import annotations

from pydantic import BaseModel, Field

from hone_common.settings import HttpSettings, ServiceSettings


class ScorerSettings(BaseModel):
    consumer_group: str = Field("scorer", description="Consumer group of both subscriptions.")
    max_records: int = Field(
        256, ge=1, le=5000, description="Most image.received events handled as one batch."
    )
    batch_timeout_ms: int = Field(
        20, ge=0, description="How long a poll waits to fill a batch before handling it."
    )
    images_per_request: int = Field(
        32, ge=1, le=1024, description="Images sent to TorchServe in one inference request."
    )
    inference_concurrency: int = Field(
        2, ge=1, description="Inference requests in flight at once (per process)."
    )
    fetch_concurrency: int = Field(32, ge=1, description="Object-store reads in flight at once.")
    torchserve_attempts: int = Field(
        4, ge=1, description="Tries of one inference request before the batch is retried."
    )
    torchserve_backoff_seconds: float = Field(
        0.2, gt=0, description="First wait between tries; doubles up to the maximum."
    )
    torchserve_backoff_max_seconds: float = Field(5.0, gt=0)
    retry_seconds: float = Field(
        30.0,
        gt=0,
        description="How long a failing batch is retried before its partition is rewound.",
    )
    model_refresh_seconds: float = Field(
        30.0, gt=0, description="How often the production version is re-read from the database."
    )


class Settings(ServiceSettings):
    http: HttpSettings = HttpSettings(port=8002)
    scorer: ScorerSettings = ScorerSettings()
