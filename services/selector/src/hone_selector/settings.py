"""The selector's settings: strategy weights, review budget, duplicate windows, random control.

Every knob is an environment variable, e.g. `HONE_SELECTOR__BUDGET__REVIEWS_PER_HOUR=300` or
`HONE_SELECTOR__BUDGET__CAMERA_SHARES='{"cam-1": 0.5}'` (JSON for mappings).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, model_validator

from hone_common.settings import HttpSettings, ServiceSettings

SERVICE = "selector"
SCHEMA = "selector"

Share = Annotated[float, Field(ge=0.0, le=1.0)]


class WeightSettings(BaseModel):
    """Weights of the strategies in the priority (a weighted mean, see `priority.py`)."""

    rarity: float = Field(1.0, ge=0.0, description="Predicted class rare in the labelled set.")
    uncertainty: float = Field(2.0, ge=0.0, description="Small margin, low confidence.")
    weakness: float = Field(1.5, ge=0.0, description="Weakness model's P(model wrong).")
    slice_risk: float = Field(1.0, ge=0.0, description="Measured error rate of the slice.")

    def as_dict(self) -> dict[str, float]:
        return self.model_dump()


class UncertaintySettings(BaseModel):
    """Mix of the three uncertainty signals; margin dominates (it beats entropy on this data)."""

    margin: float = Field(0.6, ge=0.0)
    confidence: float = Field(0.3, ge=0.0)
    entropy: float = Field(0.1, ge=0.0)

    @model_validator(mode="after")
    def _some_weight(self) -> UncertaintySettings:
        if self.margin + self.confidence + self.entropy <= 0:
            raise ValueError("at least one uncertainty weight must be positive")
        return self


class RaritySettings(BaseModel):
    smoothing: float = Field(1.0, gt=0.0, description="Pseudo-labels added to every class.")


class SliceRiskSettings(BaseModel):
    hour_bucket_hours: int = Field(3, ge=1, le=24, description="Width of the hour-of-day slices.")
    prior_strength: float = Field(
        20.0, gt=0.0, description="Beta prior weight, in labels: tiny slices stay near the mean."
    )


class RandomSettings(BaseModel):
    share: Share = Field(0.02, description="Share of the stream requested uniformly at random.")
    seed: str = Field("hone", min_length=1, description="Changing it draws a new random sample.")


class BudgetSettings(BaseModel):
    reviews_per_hour: float = Field(120.0, gt=0.0)
    burst_minutes: float = Field(
        10.0, gt=0.0, description="Bucket capacity, in minutes of refill (bursts allowed)."
    )
    random_share: Share = Field(
        0.1, description="Share of the budget reserved for random-control picks."
    )
    camera_shares: dict[str, Share] = Field(
        default_factory=dict,
        description='Split of the budget per camera; "*" (default: the rest) for the others.',
    )
    class_shares: dict[str, Share] = Field(
        default_factory=dict,
        description='Split of the budget per predicted class; "*" for the others.',
    )
    target_queue: int = Field(
        200, ge=1, description="Open reviews above which the refill slows (backpressure)."
    )
    min_refill_factor: Share = Field(0.05, description="The refill never slows below this.")
    queue_ttl_hours: float = Field(
        24.0, gt=0.0, description="Unanswered requests older than this leave the queue estimate."
    )

    @model_validator(mode="after")
    def _shares_fit(self) -> BudgetSettings:
        for name, shares in (("camera", self.camera_shares), ("class", self.class_shares)):
            if sum(shares.values()) > 1.0 + 1e-9:
                raise ValueError(f"{name} shares add up to more than 1")
        return self


class ThresholdSettings(BaseModel):
    window_images: int = Field(
        2000, ge=10, description="Recent priorities the quantile is taken over (decaying)."
    )
    rate_window_seconds: float = Field(600.0, gt=0.0, description="Stream rate averaging time.")
    headroom: float = Field(
        1.25,
        ge=1.0,
        description="Aim this much above the budget so tokens, not the threshold, cap.",
    )
    bins: int = Field(200, ge=10, le=10_000)
    warmup_images: int = Field(
        100, ge=0, description="Priorities to see before the first strategic request."
    )
    acceptance: Literal["quantile", "proportional"] = Field(
        "quantile",
        description="`quantile`: request every image at or above the threshold (the top of the "
        "stream). `proportional`: request an image with probability min(1, (priority / "
        "threshold) ** power), the threshold set so the expected share is the same; keeps "
        "some lower-priority images (see docs/label-efficiency.md).",
    )
    power: float = Field(
        1.0, gt=0.0, description="Proportional acceptance: sharpness of the draw (1 = linear)."
    )


class DuplicateSettings(BaseModel):
    object_window_seconds: float = Field(
        86_400.0, ge=0.0, description="A requested object_id is not requested again within this."
    )
    camera_window_seconds: float = Field(
        10.0, ge=0.0, description="Same camera, near-identical prediction, within this window."
    )
    max_prediction_distance: float = Field(
        0.05,
        ge=0.0,
        le=1.0,
        description="Total-variation distance under which two predictions match.",
    )


class SelectorSettings(BaseModel):
    weights: WeightSettings = WeightSettings()
    uncertainty: UncertaintySettings = UncertaintySettings()
    rarity: RaritySettings = RaritySettings()
    slice_risk: SliceRiskSettings = SliceRiskSettings()
    random: RandomSettings = RandomSettings()
    budget: BudgetSettings = BudgetSettings()
    threshold: ThresholdSettings = ThresholdSettings()
    duplicates: DuplicateSettings = DuplicateSettings()
    reason_min_score: Share = Field(
        0.2, description="A strategy is listed as a reason (and credited) from this score."
    )
    max_weakness_model_bytes: int = Field(1024 * 1024, ge=1024)
    batch_size: int = Field(256, ge=1, le=10_000)
    consumer_group: str = Field(SERVICE, min_length=1)
    schema_name: str = Field(
        SCHEMA,
        pattern=r"^[a-z_][a-z0-9_]{0,62}$",
        description="PostgreSQL schema (tests use their own).",
    )


class Settings(ServiceSettings):
    http: HttpSettings = HttpSettings(port=8003)
    selector: SelectorSettings = SelectorSettings()
