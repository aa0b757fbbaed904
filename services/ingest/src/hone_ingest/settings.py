"""The ingest service's settings: shared sections plus its own knobs under `HONE_INGEST__...`."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from hone_common.events import MAX_FRAME_BYTES, MAX_INLINE_RECEIVED_BYTES
from hone_common.settings import HttpSettings, ServiceSettings


class IngestSettings(BaseModel):
    max_image_bytes: int = Field(
        MAX_FRAME_BYTES, ge=1, description="Largest image accepted, in bytes (inline or upload)."
    )
    max_width: int = Field(4096, ge=1, description="Widest image accepted, in pixels.")
    max_height: int = Field(4096, ge=1, description="Tallest image accepted, in pixels.")
    max_pixels: int = Field(
        16_777_216, ge=1, description="Most pixels (width x height) an image may have."
    )
    max_metadata_bytes: int = Field(
        16 * 1024, ge=64, description="Largest `metadata` JSON part of an upload, in bytes."
    )
    inline_image_bytes: int = Field(
        8 * 1024,
        ge=0,
        le=MAX_INLINE_RECEIVED_BYTES,
        description="Images up to this size also travel inside image.received, so the scorer "
        "need not read them back from the object store; 0 turns this off.",
    )
    images_prefix: str = Field(
        "images", pattern=r"^[a-z0-9][a-z0-9/_-]*$", description="Key prefix in the image bucket."
    )
    consumer_group: str = Field(
        "ingest", description="Consumer group of the camera.frames subscriber."
    )
    auto_offset_reset: Literal["earliest", "latest"] = Field(
        "earliest", description="Where a new consumer group starts reading camera.frames."
    )
    max_records: int = Field(
        256, ge=1, le=5000, description="Most camera frames handled as one batch."
    )
    batch_timeout_ms: int = Field(
        20, ge=0, description="How long a poll waits to fill a batch before handling it."
    )
    decode_threads: int = Field(
        2, ge=1, description="Threads that decode and measure images (Pillow frees the GIL)."
    )
    store_concurrency: int = Field(32, ge=1, description="Object-store calls in flight at once.")
    retry_seconds: float = Field(
        30.0, gt=0, description="How long a failing batch is retried before its partition rewinds."
    )
    uploads_per_second: float = Field(
        100.0, gt=0, description="Sustained HTTP uploads allowed per API key (per process)."
    )
    upload_burst: int = Field(
        500, ge=1, description="Uploads one API key may send at once before being slowed (429)."
    )

    @property
    def max_body_bytes(self) -> int:
        """Largest upload request body: the image, its metadata and the multipart framing."""
        return self.max_image_bytes + self.max_metadata_bytes + 16 * 1024


class Settings(ServiceSettings):
    http: HttpSettings = HttpSettings(port=8001)
    ingest: IngestSettings = IngestSettings()
