"""The simulator's settings, from the same `HONE_` environment as the services."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from hone_common.settings import KafkaSettings


class SimulatorSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="HONE_", env_nested_delimiter="__", extra="ignore", frozen=True
    )

    kafka: KafkaSettings = KafkaSettings()
    data_cache: Path = Field(
        default_factory=lambda: Path.home() / ".cache" / "hone-data",
        description="Where the Fashion-MNIST tarball and its converted npz are kept "
        "(HONE_DATA_CACHE).",
    )

    @field_validator("data_cache")
    @classmethod
    def _expand_home(cls, value: Path) -> Path:
        return value.expanduser()
