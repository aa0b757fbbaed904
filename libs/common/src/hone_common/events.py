"""The event contracts of Hone: one envelope, one payload model per topic (DESIGN.md §2).

Events are pydantic models serialised as JSON. The envelope carries `event_id` (the
idempotency key), `event_type`, `schema_version`, `occurred_at` (UTC), `producer` and
`correlation_id`; the payload follows under `payload`. Consumers refuse a schema version
they do not know (the message goes to the topic's DLQ) instead of guessing.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal, TypeVar

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from hone_common.topics import Topic

MAX_FRAME_BYTES = 1024 * 1024
"""Largest image a camera frame may carry inline (DESIGN.md §2)."""

MAX_INLINE_RECEIVED_BYTES = 64 * 1024
"""Largest image an `image.received` event may carry beside its URI."""

Identifier = Annotated[
    str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/@-]*$")
]
"""Camera, object, labeler and model identifiers: printable, no spaces, bounded."""

ClassName = Annotated[str, StringConstraints(min_length=1, max_length=64, strip_whitespace=True)]
Score = Annotated[float, Field(ge=0.0, le=1.0)]
MetadataValue = str | int | float | bool | None
Metadata = Annotated[
    dict[Annotated[str, StringConstraints(max_length=64)], MetadataValue],
    Field(max_length=32, description="Free metadata: up to 32 scalar values."),
]
S3Uri = Annotated[str, StringConstraints(pattern=r"^s3://[a-z0-9][a-z0-9.-]{1,62}/[^\s]+$")]


def utc_now() -> datetime:
    return datetime.now(UTC)


class Contract(BaseModel):
    """Strict base for payloads: unknown fields are errors, instances are immutable."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, ser_json_bytes="base64", val_json_bytes="base64"
    )


class Event(Contract):
    """The envelope. Subclasses fix `event_type`, `topic` and the payload model."""

    topic: ClassVar[Topic]

    event_id: uuid.UUID = Field(default_factory=uuid.uuid4, description="Idempotency key.")
    event_type: str
    schema_version: Literal[1] = 1
    occurred_at: AwareDatetime = Field(default_factory=utc_now)
    producer: Identifier = Field(description="Name of the service or device that produced it.")
    correlation_id: uuid.UUID | None = Field(
        None, description="Ties together the events caused by one image or one model."
    )
    payload: Any

    @property
    def key(self) -> bytes:
        """Kafka message key: image id for image events, model version for model events."""
        raise NotImplementedError

    @field_validator("occurred_at")
    @classmethod
    def _to_utc(cls, value: datetime) -> datetime:
        return value.astimezone(UTC)


class Quality(Contract):
    brightness: Score = Field(description="Mean intensity in [0, 1].")
    contrast: Score = Field(description="Standard deviation of intensity in [0, 1].")
    sharpness: float = Field(ge=0.0, description="Variance of the Laplacian (higher is sharper).")


# --- camera.frames -------------------------------------------------------------------------


class Frame(Contract):
    camera_id: Identifier
    captured_at: AwareDatetime
    image: bytes | None = Field(
        None, max_length=MAX_FRAME_BYTES, description="PNG/JPEG/WebP bytes (base64 in JSON)."
    )
    uri: S3Uri | None = Field(None, description="Or the image's object URI in the image bucket.")
    object_id: Identifier | None = Field(
        None, description="Same physical object seen by several cameras (barcode, track id)."
    )
    metadata: Metadata = Field(default_factory=dict)

    @model_validator(mode="after")
    def _image_or_uri(self) -> Frame:
        if (self.image is None) == (self.uri is None):
            raise ValueError("a frame carries exactly one of `image` or `uri`")
        return self


class FrameCaptured(Event):
    topic: ClassVar[Topic] = Topic.CAMERA_FRAMES
    event_type: Literal["camera.frames"] = "camera.frames"
    payload: Frame

    @property
    def key(self) -> bytes:
        return (self.payload.object_id or self.payload.camera_id).encode()


# --- image.received ------------------------------------------------------------------------


class ReceivedImage(Contract):
    image_id: uuid.UUID
    uri: S3Uri
    sha256: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
    width: int = Field(gt=0)
    height: int = Field(gt=0)
    format: Literal["PNG", "JPEG", "WEBP"]
    camera_id: Identifier
    captured_at: AwareDatetime
    object_id: Identifier | None = None
    metadata: Metadata = Field(default_factory=dict)
    quality: Quality
    image: bytes | None = Field(
        None,
        max_length=MAX_INLINE_RECEIVED_BYTES,
        description="The stored bytes again, for small images (base64 in JSON): consumers may "
        "use them instead of reading `uri`. Absent for large images.",
    )


class ImageReceived(Event):
    topic: ClassVar[Topic] = Topic.IMAGE_RECEIVED
    event_type: Literal["image.received"] = "image.received"
    payload: ReceivedImage

    @property
    def key(self) -> bytes:
        return str(self.payload.image_id).encode()


# --- image.scored --------------------------------------------------------------------------


class Scores(Contract):
    image_id: uuid.UUID
    uri: S3Uri
    model_version: Identifier
    classes: list[ClassName] = Field(min_length=2, description="Class names, in model order.")
    label: ClassName = Field(description="The predicted class.")
    probabilities: list[Score]
    confidence: Score = Field(description="Top-1 probability.")
    margin: Score = Field(description="Top-1 minus top-2 probability.")
    entropy: Score = Field(description="Entropy of the prediction, normalised to [0, 1].")
    camera_id: Identifier
    captured_at: AwareDatetime
    object_id: Identifier | None = None
    metadata: Metadata = Field(default_factory=dict)
    quality: Quality

    @model_validator(mode="after")
    def _consistent(self) -> Scores:
        if len(self.probabilities) != len(self.classes):
            raise ValueError("one probability per class is required")
        if self.label not in self.classes:
            raise ValueError(f"label {self.label!r} is not one of the model's classes")
        return self


class ImageScored(Event):
    topic: ClassVar[Topic] = Topic.IMAGE_SCORED
    event_type: Literal["image.scored"] = "image.scored"
    payload: Scores

    @property
    def key(self) -> bytes:
        return str(self.payload.image_id).encode()


# --- review.requested ----------------------------------------------------------------------


class Reason(Contract):
    strategy: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    score: Score
    detail: Annotated[str, StringConstraints(max_length=256)] = ""


class Prediction(Contract):
    label: ClassName
    confidence: Score
    classes: list[ClassName] = Field(default_factory=list)
    probabilities: list[Score] = Field(default_factory=list)


class ReviewRequest(Contract):
    image_id: uuid.UUID
    uri: S3Uri
    reasons: list[Reason] = Field(min_length=1)
    priority: float = Field(ge=0.0, description="Higher is reviewed first.")
    model_version: Identifier | None = Field(None, description="The model whose guess is shown.")
    prediction: Prediction | None = None
    camera_id: Identifier | None = None
    object_id: Identifier | None = None
    outside_budget: bool = Field(False, description="User flags bypass the review budget.")


class ReviewRequested(Event):
    topic: ClassVar[Topic] = Topic.REVIEW_REQUESTED
    event_type: Literal["review.requested"] = "review.requested"
    payload: ReviewRequest

    @property
    def key(self) -> bytes:
        return str(self.payload.image_id).encode()


# --- label.submitted -----------------------------------------------------------------------


class Label(Contract):
    image_id: uuid.UUID
    verdict: Literal["label", "ambiguous", "wrong"] = Field(
        description="`label`: the class; `ambiguous`: kept out of training; "
        "`wrong`: the shown prediction is wrong (with the right class if known)."
    )
    label: ClassName | None = None
    labeler_id: Identifier
    task_id: uuid.UUID | None = None
    source: Literal["human", "propagated"] = "human"
    model_version: Identifier | None = Field(None, description="Model whose guess was shown.")
    predicted_label: ClassName | None = None
    reasons: list[Reason] = Field(default_factory=list, description="Why the image was chosen.")

    @model_validator(mode="after")
    def _label_matches_verdict(self) -> Label:
        if self.verdict == "label" and self.label is None:
            raise ValueError("verdict `label` needs a label")
        if self.verdict == "ambiguous" and self.label is not None:
            raise ValueError("verdict `ambiguous` carries no label")
        return self


class LabelSubmitted(Event):
    topic: ClassVar[Topic] = Topic.LABEL_SUBMITTED
    event_type: Literal["label.submitted"] = "label.submitted"
    payload: Label

    @property
    def key(self) -> bytes:
        return str(self.payload.image_id).encode()


# --- model.candidate / model.promoted ------------------------------------------------------


class TrainingSnapshot(Contract):
    examples_sha256: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")] = Field(
        description="Hash of the sorted example ids the run trained on."
    )
    examples: int = Field(ge=0)
    per_class: dict[str, int] = Field(default_factory=dict)
    per_source: dict[str, int] = Field(default_factory=dict)


class OfflineMetrics(Contract):
    accuracy: Score
    macro_f1: Score
    calibration_error: Score | None = None
    per_class: dict[str, float] = Field(default_factory=dict)
    per_camera: dict[str, float] = Field(default_factory=dict)
    evaluated_on: int = Field(0, ge=0, description="Number of examples the metrics come from.")


class Candidate(Contract):
    model_version: Identifier
    parent_version: Identifier | None = None
    artifact_uri: S3Uri = Field(description="The TorchServe archive (.mar) in the model bucket.")
    weakness_model_uri: S3Uri | None = None
    evaluation_set_uri: S3Uri | None = Field(
        None,
        description="JSON Lines manifest of the frozen test split at training time (image_id, "
        "uri, label, camera_id): what the gatekeeper scores candidate and production on.",
    )
    classes: list[ClassName] = Field(min_length=2)
    snapshot: TrainingSnapshot
    metrics: OfflineMetrics


class ModelCandidate(Event):
    topic: ClassVar[Topic] = Topic.MODEL_CANDIDATE
    event_type: Literal["model.candidate"] = "model.candidate"
    payload: Candidate

    @property
    def key(self) -> bytes:
        return self.payload.model_version.encode()


class Promotion(Contract):
    model_version: Identifier
    previous_version: Identifier | None = None
    artifact_uri: S3Uri
    weakness_model_uri: S3Uri | None = None
    classes: list[ClassName] = Field(min_length=2)
    evaluation: dict[str, float | int | None] = Field(
        default_factory=dict, description="Summary numbers of the gate (accuracy, p-value, ...)."
    )
    reasons: list[Annotated[str, StringConstraints(max_length=512)]] = Field(default_factory=list)
    manual: bool = Field(False, description="Promoted or rolled back by hand.")

    @property
    def model_name(self) -> str:
        """The served model this promotion is for: archives live at `<bucket>/<model>/...`."""
        return self.artifact_uri.removeprefix("s3://").split("/")[1]


class ModelPromoted(Event):
    topic: ClassVar[Topic] = Topic.MODEL_PROMOTED
    event_type: Literal["model.promoted"] = "model.promoted"
    payload: Promotion

    @property
    def key(self) -> bytes:
        return self.payload.model_version.encode()


EVENT_TYPES: dict[Topic, type[Event]] = {
    cls.topic: cls
    for cls in (
        FrameCaptured,
        ImageReceived,
        ImageScored,
        ReviewRequested,
        LabelSubmitted,
        ModelCandidate,
        ModelPromoted,
    )
}

E = TypeVar("E", bound=Event)


def decode(event_cls: type[E], raw: bytes | str) -> E:
    """Parse one event; raises `pydantic.ValidationError` with every problem found."""
    return event_cls.model_validate_json(raw)


def encode(event: Event) -> bytes:
    return event.model_dump_json().encode()


def image_id_for(sha256: str) -> uuid.UUID:
    """Images are identified by content: the same bytes always get the same id."""
    return uuid.uuid5(IMAGE_NAMESPACE, sha256)


IMAGE_NAMESPACE = uuid.UUID("6f0f2d0e-4d0b-4c1b-9d7e-3a4f5b6c7d8e")
