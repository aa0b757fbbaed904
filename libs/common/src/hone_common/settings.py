"""Settings shared by every Hone service: one `HONE_` prefix, nested sections joined by `__`.

A service composes its own `Settings` from these pieces (see `ServiceSettings`), so every
address and secret is configurable from the environment, e.g. `HONE_KAFKA__BOOTSTRAP_SERVERS`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, computed_field
from pydantic_settings import BaseSettings, SettingsConfigDict


class KafkaSettings(BaseModel):
    bootstrap_servers: str = Field("127.0.0.1:9092", description="host:port[,host:port...]")
    client_id_prefix: str = "hone"
    max_message_bytes: int = Field(
        4 * 1024 * 1024, description="Largest message produced or fetched (frames carry images)."
    )
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    partitions: int = Field(
        6,
        ge=1,
        description="Partitions of each topic Hone creates: the most replicas of one "
        "consumer group that can share the work.",
    )
    replication_factor: int = Field(1, ge=1, description="3 on a real cluster.")


class PostgresSettings(BaseModel):
    dsn: SecretStr = Field(
        SecretStr("postgresql://hone:hone@127.0.0.1:5432/hone"),
        description="libpq-style URL of the one PostgreSQL server that holds every schema.",
    )
    pool_min_size: int = 1
    pool_max_size: int = 10

    @computed_field  # type: ignore[prop-decorator]
    @property
    def sqlalchemy_url(self) -> str:
        """The same DSN for SQLAlchemy/Alembic's asyncpg dialect."""
        dsn = self.dsn.get_secret_value()
        return dsn.replace("postgresql://", "postgresql+asyncpg://", 1).replace(
            "postgres://", "postgresql+asyncpg://", 1
        )


class S3Settings(BaseModel):
    endpoint: str = Field("127.0.0.1:9000", description="host:port of the S3 API (MinIO).")
    access_key: SecretStr = SecretStr("hone-admin")
    secret_key: SecretStr = SecretStr("hone-admin-secret")
    secure: bool = False
    region: str = "us-east-1"
    images_bucket: str = "hone-images"
    models_bucket: str = "hone-models"
    presign_seconds: int = Field(300, description="Lifetime of presigned GET URLs.")


class TorchServeSettings(BaseModel):
    inference_url: str = "http://127.0.0.1:8080"
    management_url: str = "http://127.0.0.1:8081"
    metrics_url: str = "http://127.0.0.1:8082"
    key_file: Path | None = Field(
        None, description="TorchServe's key_file.json (token authorization); read on every use."
    )
    inference_token: SecretStr | None = None
    management_token: SecretStr | None = None
    model_name: str = "hone"
    timeout_seconds: float = 30.0

    def token(self, kind: Literal["inference", "management"]) -> str | None:
        """The bearer token for one TorchServe API: explicit setting first, else the key file."""
        explicit = self.inference_token if kind == "inference" else self.management_token
        if explicit is not None:
            return explicit.get_secret_value()
        if self.key_file is None or not self.key_file.exists():
            return None
        keys = json.loads(self.key_file.read_text())
        entry = keys.get(kind, {})
        key = entry.get("key") if isinstance(entry, dict) else None
        return str(key) if key else None


class HttpSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = 8000


class ServiceSettings(BaseSettings):
    """Base of every service's settings; subclasses add their own fields and defaults."""

    model_config = SettingsConfigDict(
        env_prefix="HONE_", env_nested_delimiter="__", extra="ignore", frozen=True
    )

    environment: Literal["local", "test", "production"] = "local"
    log_level: str = "INFO"
    log_json: bool = True
    kafka: KafkaSettings = KafkaSettings()
    postgres: PostgresSettings = PostgresSettings()
    s3: S3Settings = S3Settings()
    torchserve: TorchServeSettings = TorchServeSettings()
