"""The trainer's settings: dataset splits and propagation, the schedule, training, weakness model.

Every knob is an environment variable, e.g. `HONE_TRAINER__SCHEDULE__EVERY_LABELS=200`,
`HONE_TRAINER__SPLITS__TEST=0.25` or `HONE_TRAINER__TRAIN__EPOCHS=10` (the `train` section is
`hone_trainer.model.training.TrainConfig`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, model_validator

from hone_common.settings import HttpSettings, ServiceSettings
from hone_trainer.model.training import TrainConfig

SERVICE = "trainer"
SCHEMA = "trainer"


class SplitShares(BaseModel):
    """Shares of labelled images per split. Each image's split is drawn once, from a hash of its
    id, and stored: changing the shares later only affects images labelled afterwards."""

    train: float = Field(0.7, ge=0.0, le=1.0)
    weakness: float = Field(0.1, ge=0.0, le=1.0)
    test: float = Field(0.2, ge=0.0, le=1.0)
    salt: str = Field(
        "hone-split-v1", min_length=1, description="Changing it redraws future assignments."
    )

    @model_validator(mode="after")
    def _sum_to_one(self) -> SplitShares:
        if abs(self.train + self.weakness + self.test - 1.0) > 1e-6:
            raise ValueError("split shares must add up to 1")
        if self.train <= 0:
            raise ValueError("the train share must be positive")
        return self


class DatasetSettings(BaseModel):
    splits: SplitShares = SplitShares()
    consensus: int = Field(
        1,
        ge=1,
        le=10,
        description="Distinct labelers whose latest answers must agree (1: the latest human "
        "answer wins).",
    )
    propagation_weight: float = Field(
        0.5, ge=0.0, le=1.0, description="Loss weight of a propagated label (0: no propagation)."
    )
    propagation_window_seconds: float | None = Field(
        300.0,
        gt=0.0,
        description="Only views of the same object_id captured this close in time share a "
        "label (None: any time).",
    )
    classes: list[str] | None = Field(
        None,
        description="Fixed class list, in model order; labels outside it are left out. Default: "
        "the production model's classes, then any new class in alphabetical order.",
    )


class ScheduleSettings(BaseModel):
    enabled: bool = True
    every_labels: int = Field(100, ge=1, description="Run once this many new labels arrived.")
    every_minutes: float = Field(
        60.0, gt=0.0, description="Or once this long passed since the last run, if any new label."
    )
    check_seconds: float = Field(15.0, gt=0.0, description="How often the schedule is checked.")


class WeaknessSettings(BaseModel):
    enabled: bool = True
    folds: int = Field(3, ge=2, le=10, description="Folds of the out-of-fold predictions.")
    fold_epochs: int = Field(2, ge=1, le=100, description="Short training of each fold model.")
    holdout: float = Field(
        0.25, ge=0.05, le=0.5, description="Share of rows kept out of the fit to report on."
    )
    l2: float = Field(1.0, ge=0.0, description="L2 penalty of the logistic regression.")
    min_rows: int = Field(30, ge=4, description="Fewer rows (or no failure): no weakness model.")
    min_category_rows: int = Field(
        5, ge=1, description="A camera, hour bucket or class needs this many rows to be a feature."
    )
    hour_bucket_hours: int = Field(3, ge=1, le=24)


class TrainerSettings(BaseModel):
    dataset: DatasetSettings = DatasetSettings()
    schedule: ScheduleSettings = ScheduleSettings()
    weakness: WeaknessSettings = WeaknessSettings()
    train: TrainConfig = TrainConfig()
    model_name: str | None = Field(
        None, description="Model name in TorchServe and the model bucket (default: torchserve's)."
    )
    warm_start: bool = Field(True, description="Start from the production model's weights.")
    min_examples: int = Field(20, ge=2, description="Fewer training examples: the run is skipped.")
    executor: Literal["process", "thread"] = Field(
        "process",
        description="Where training runs: a child process (killable, isolated) or a thread.",
    )
    cache_dir: Path = Field(
        Path("/tmp/hone-trainer-cache"),  # noqa: S108 - the one writable path in the container
        description="Decoded images, keyed by sha256, kept between runs.",
    )
    work_dir: Path = Field(
        Path("/tmp/hone-trainer-runs"),  # noqa: S108
        description="Scratch space of a run (archives before upload).",
    )
    fetch_concurrency: int = Field(16, ge=1, le=256)
    consumer_group: str = Field(SERVICE, min_length=1)
    schema_name: str = Field(
        SCHEMA,
        pattern=r"^[a-z_][a-z0-9_]{0,62}$",
        description="PostgreSQL schema (tests use their own).",
    )


class Settings(ServiceSettings):
    http: HttpSettings = HttpSettings(port=8004)
    trainer: TrainerSettings = TrainerSettings()

    @property
    def model_name(self) -> str:
        return self.trainer.model_name or self.torchserve.model_name
