"""camera.frames: frames go down the ingest path in batches; refused ones go to
camera.frames.dlq with their reason while the rest of the batch is stored."""

from __future__ import annotations

from collections.abc import Callable

from faststream.kafka import KafkaBroker

from hone_common.events import FrameCaptured
from hone_common.kafka import BatchFailures, PermanentError, subscribe_batch
from hone_ingest.intake import Ingestor, Submission
from hone_ingest.settings import IngestSettings
from hone_ingest.validation import ImageMetadata, Refused


def frame_submission(event: FrameCaptured) -> Submission:
    frame = event.payload
    # The frame was validated against the same types when it was decoded.
    metadata = ImageMetadata.model_construct(
        camera_id=frame.camera_id,
        captured_at=frame.captured_at,
        object_id=frame.object_id,
        extra=frame.metadata,
    )
    return Submission(
        source="kafka", metadata=metadata, data=frame.image, uri=frame.uri, frame=event
    )


def register(
    broker: KafkaBroker,
    service: str,
    settings: IngestSettings,
    ingestor: Callable[[], Ingestor],
    *,
    max_message_bytes: int = 4 * 1024 * 1024,
) -> None:
    """Subscribe to camera.frames; `ingestor` is called per batch (it exists once started)."""

    @subscribe_batch(
        broker,
        FrameCaptured,
        service=service,
        group_id=settings.consumer_group,
        max_records=settings.max_records,
        batch_timeout_ms=settings.batch_timeout_ms,
        auto_offset_reset=settings.auto_offset_reset,
        retry_seconds=settings.retry_seconds,
        max_message_bytes=max_message_bytes,
    )
    async def on_camera_frames(events: list[FrameCaptured]) -> BatchFailures:
        """Validate, store and announce camera frames (image.received); refuse bad ones."""
        outcomes = await ingestor().ingest([frame_submission(event) for event in events])
        return {
            event.event_id: PermanentError(str(outcome))
            for event, outcome in zip(events, outcomes, strict=True)
            if isinstance(outcome, Refused)
        }
