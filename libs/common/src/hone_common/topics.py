"""Kafka topic names, in one place. Each topic has a `<topic>.dlq` for what cannot be processed."""

from enum import StrEnum


class Topic(StrEnum):
    CAMERA_FRAMES = "camera.frames"
    IMAGE_RECEIVED = "image.received"
    IMAGE_SCORED = "image.scored"
    REVIEW_REQUESTED = "review.requested"
    LABEL_SUBMITTED = "label.submitted"
    MODEL_CANDIDATE = "model.candidate"
    MODEL_PROMOTED = "model.promoted"

    @property
    def dlq(self) -> str:
        return dead_letter_topic(self.value)


def dead_letter_topic(topic: str) -> str:
    return f"{topic}.dlq"
