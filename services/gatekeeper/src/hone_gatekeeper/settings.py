"""The gatekeeper's settings: shared sections plus its own knobs under `HONE_GATEKEEPER__...`."""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import BaseModel, Field

from hone_common.settings import HttpSettings, ServiceSettings
from hone_common.torchserve import ServingOptions
from hone_gatekeeper.rules import GateRules

SERVICE = "gatekeeper"
SCHEMA = "gatekeeper"


class ScoringSettings(BaseModel):
    """How the evaluation set is scored through TorchServe."""

    images_per_request: int = Field(
        32, ge=1, le=1024, description="Images per inference request (the latency unit)."
    )
    fetch_concurrency: int = Field(16, ge=1, le=256, description="Image reads in flight.")
    attempts: int = Field(4, ge=1, description="Tries of one inference request on server errors.")
    backoff_seconds: float = Field(0.5, gt=0, description="First wait between tries; doubles.")
    max_manifest_bytes: int = Field(
        64 * 1024 * 1024, ge=1, description="Larger evaluation manifests are refused."
    )


class ServingSettings(BaseModel):
    """How TorchServe runs a version the gatekeeper registers (see `ServingOptions`)."""

    batch_size: int = Field(8, ge=1)
    max_batch_delay_ms: int = Field(5, ge=0)
    workers: int = Field(1, ge=1)
    url_seconds: int = Field(300, ge=10, description="Lifetime of the archive's download URL.")

    def options(self) -> ServingOptions:
        return ServingOptions(
            self.batch_size, self.max_batch_delay_ms, self.workers, self.url_seconds
        )


class GatekeeperSettings(BaseModel):
    consumer_group: str = Field("gatekeeper", description="Consumer group of `model.candidate`.")
    retry_seconds: float = Field(
        60.0, gt=0, description="How long a failing candidate is retried before redelivery."
    )
    lock_timeout_seconds: float = Field(
        900.0, gt=0, description="Longest wait for another decision on the same model to end."
    )
    reconcile_seconds: float = Field(
        15.0,
        gt=0,
        description="How often TorchServe is checked for a lost production version (it keeps "
        "no model across a restart), which is then loaded again from its archive.",
    )
    keep_previous_registered: bool = Field(
        True,
        description="After a promotion, keep the previous production version loaded in "
        "TorchServe (instant rollback) and unload older retired versions.",
    )
    rules: GateRules = GateRules()
    scoring: ScoringSettings = ScoringSettings()
    serving: ServingSettings = ServingSettings()


class Settings(ServiceSettings):
    http: HttpSettings = HttpSettings(port=8005)
    gatekeeper: GatekeeperSettings = GatekeeperSettings()


@dataclass(frozen=True)
class Policy:
    """The knobs the use cases need (from `Settings`)."""

    model_name: str
    models_bucket: str
    rules: GateRules = field(default_factory=GateRules)
    scoring: ScoringSettings = field(default_factory=ScoringSettings)
    serving: ServingOptions = field(default_factory=ServingOptions)
    keep_previous_registered: bool = True

    @classmethod
    def from_settings(cls, settings: Settings) -> Policy:
        knobs = settings.gatekeeper
        return cls(
            model_name=settings.torchserve.model_name,
            models_bucket=settings.s3.models_bucket,
            rules=knobs.rules,
            scoring=knobs.scoring,
            serving=knobs.serving.options(),
            keep_previous_registered=knobs.keep_previous_registered,
        )
