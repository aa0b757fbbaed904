"""Builders of `image.scored` payloads for the selector's tests."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime
from typing import Any

from hone_common.events import ImageScored, MetadataValue, Quality, Scores

CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
           "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]  # fmt: skip
NOON = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def probabilities(
    label: str,
    top: float,
    second: str | None = None,
    runner_up: float = 0.0,
    classes: list[str] = CLASSES,
) -> list[float]:
    """A distribution with `top` on `label`, `runner_up` on `second`, the rest spread evenly."""
    rest = (1.0 - top - runner_up) / (len(classes) - (2 if second else 1))
    return [top if name == label else runner_up if name == second else rest for name in classes]


def scores(
    label: str = "Trouser",
    top: float = 0.9,
    *,
    second: str | None = None,
    runner_up: float = 0.0,
    probs: list[float] | None = None,
    camera_id: str = "cam-1",
    object_id: str | None = None,
    captured_at: datetime = NOON,
    image_id: uuid.UUID | None = None,
    model_version: str = "v1",
    brightness: float = 0.5,
    metadata: dict[str, MetadataValue] | None = None,
    classes: list[str] = CLASSES,
) -> Scores:
    p = probs or probabilities(label, top, second, runner_up, classes)
    ranked = sorted(p, reverse=True)
    entropy = -sum(x * math.log(x) for x in p if x > 0) / math.log(len(p))
    return Scores(
        image_id=image_id or uuid.uuid4(),
        uri="s3://hone-images/images/ab/test.png",
        model_version=model_version,
        classes=classes,
        label=classes[p.index(ranked[0])],
        probabilities=p,
        confidence=ranked[0],
        margin=ranked[0] - ranked[1],
        entropy=min(1.0, max(0.0, entropy)),
        camera_id=camera_id,
        captured_at=captured_at,
        object_id=object_id,
        metadata=metadata or {},
        quality=Quality(brightness=brightness, contrast=0.2, sharpness=40.0),
    )


def scored_event(payload: Scores, **envelope: Any) -> ImageScored:
    return ImageScored(
        producer="scorer", correlation_id=payload.image_id, payload=payload, **envelope
    )
