"""Valid sample events of every type, for tests."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime

from hone_common.events import (
    Candidate,
    Event,
    Frame,
    FrameCaptured,
    ImageReceived,
    ImageScored,
    Label,
    LabelSubmitted,
    ModelCandidate,
    ModelPromoted,
    OfflineMetrics,
    Prediction,
    Promotion,
    Quality,
    Reason,
    ReceivedImage,
    ReviewRequest,
    ReviewRequested,
    Scores,
    TrainingSnapshot,
    image_id_for,
)

CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
           "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]  # fmt: skip


def sample_events(seed: str = "sample") -> list[Event]:
    now = datetime.now(UTC)
    digest = hashlib.sha256(seed.encode()).hexdigest()
    image_id = image_id_for(digest)
    uri = f"s3://hone-images/images/{digest[:2]}/{digest}.png"
    quality = Quality(brightness=0.4, contrast=0.2, sharpness=12.5)
    probabilities = [0.02] * 9 + [0.82]
    reason = Reason(strategy="uncertainty", score=0.7, detail="margin 0.12")
    return [
        FrameCaptured(
            producer="cam-1",
            payload=Frame(camera_id="cam-1", captured_at=now, image=b"\x89PNG...", object_id="o-1"),
        ),
        ImageReceived(
            producer="ingest",
            correlation_id=image_id,
            payload=ReceivedImage(
                image_id=image_id,
                uri=uri,
                sha256=digest,
                width=28,
                height=28,
                format="PNG",
                camera_id="cam-1",
                captured_at=now,
                object_id="o-1",
                metadata={"site": "north", "exposure": 0.5},
                quality=quality,
            ),
        ),
        ImageScored(
            producer="scorer",
            payload=Scores(
                image_id=image_id,
                uri=uri,
                model_version="v1",
                classes=CLASSES,
                label="Ankle boot",
                probabilities=probabilities,
                confidence=0.82,
                margin=0.8,
                entropy=0.3,
                camera_id="cam-1",
                captured_at=now,
                quality=quality,
            ),
        ),
        ReviewRequested(
            producer="selector",
            payload=ReviewRequest(
                image_id=image_id,
                uri=uri,
                reasons=[reason],
                priority=0.7,
                model_version="v1",
                prediction=Prediction(label="Ankle boot", confidence=0.82),
            ),
        ),
        LabelSubmitted(
            producer="labeling-api",
            payload=Label(
                image_id=image_id,
                verdict="label",
                label="Sneaker",
                labeler_id="ann",
                task_id=uuid.uuid4(),
                model_version="v1",
                reasons=[reason],
            ),
        ),
        ModelCandidate(
            producer="trainer",
            payload=Candidate(
                model_version="v2",
                parent_version="v1",
                artifact_uri="s3://hone-models/hone/v2.mar",
                classes=CLASSES,
                snapshot=TrainingSnapshot(examples_sha256=digest, examples=200),
                metrics=OfflineMetrics(accuracy=0.8, macro_f1=0.79),
            ),
        ),
        ModelPromoted(
            producer="gatekeeper",
            payload=Promotion(
                model_version="v2",
                previous_version="v1",
                artifact_uri="s3://hone-models/hone/v2.mar",
                classes=CLASSES,
                evaluation={"accuracy": 0.81, "p_value": 0.01},
                reasons=["accuracy +3.1 pts"],
            ),
        ),
    ]
