"""The event contracts: round trips, keys, and clear validation errors for bad payloads."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from hone_common.events import (
    EVENT_TYPES,
    MAX_FRAME_BYTES,
    Event,
    Frame,
    FrameCaptured,
    ImageScored,
    Label,
    LabelSubmitted,
    decode,
    encode,
    image_id_for,
)
from hone_common.topics import Topic
from tests.factories import sample_events


def test_every_topic_has_an_event_model() -> None:
    assert set(EVENT_TYPES) == set(Topic)


@pytest.mark.parametrize("event", sample_events(), ids=lambda e: e.event_type)
def test_events_round_trip_through_json(event: Event) -> None:
    cls = type(event)
    again = decode(cls, encode(event))
    assert again == event
    assert again.event_type == cls.topic.value


def test_image_events_are_keyed_by_image_id_and_model_events_by_version() -> None:
    for event in sample_events():
        if event.topic in (Topic.MODEL_CANDIDATE, Topic.MODEL_PROMOTED):
            assert event.key == event.payload.model_version.encode()
        elif event.topic is not Topic.CAMERA_FRAMES:
            assert event.key == str(event.payload.image_id).encode()


def test_envelope_times_are_stored_in_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    frame = Frame(camera_id="cam-1", captured_at=datetime.now(plus_two), image=b"x")
    event = FrameCaptured(producer="cam-1", occurred_at=datetime.now(plus_two), payload=frame)
    assert event.occurred_at.tzinfo == UTC


def test_naive_timestamps_are_refused() -> None:
    with pytest.raises(ValidationError, match="timezone"):
        Frame(camera_id="cam-1", captured_at=datetime(2026, 1, 1), image=b"x")


def test_a_frame_needs_exactly_one_of_image_or_uri() -> None:
    now = datetime.now(UTC)
    with pytest.raises(ValidationError, match="exactly one"):
        Frame(camera_id="cam-1", captured_at=now)
    with pytest.raises(ValidationError, match="exactly one"):
        Frame(camera_id="cam-1", captured_at=now, image=b"x", uri="s3://hone-images/a/b.png")


def test_oversized_frames_are_refused() -> None:
    with pytest.raises(ValidationError, match="at most"):
        Frame(camera_id="c", captured_at=datetime.now(UTC), image=b"\0" * (MAX_FRAME_BYTES + 1))


@pytest.mark.parametrize("camera_id", ["", "has space", "../etc/passwd", "x" * 200, "<script>"])
def test_identifiers_are_bounded_and_printable(camera_id: str) -> None:
    with pytest.raises(ValidationError, match="camera_id"):
        Frame(camera_id=camera_id, captured_at=datetime.now(UTC), image=b"x")


def test_unknown_fields_and_schema_versions_are_refused() -> None:
    event = sample_events()[1]
    raw = encode(event).decode()
    with pytest.raises(ValidationError, match="schema_version"):
        decode(type(event), raw.replace('"schema_version":1', '"schema_version":2'))
    with pytest.raises(ValidationError, match="surprise"):
        decode(type(event), raw.replace('"payload":{', '"payload":{"surprise":1,'))


def test_scores_must_match_the_model_classes() -> None:
    scored = next(e for e in sample_events() if isinstance(e, ImageScored))
    data = scored.payload.model_dump()
    with pytest.raises(ValidationError, match="one probability per class"):
        type(scored.payload)(**{**data, "probabilities": [1.0]})
    with pytest.raises(ValidationError, match="not one of the model's classes"):
        type(scored.payload)(**{**data, "label": "Spaceship"})


def test_a_label_verdict_needs_a_label_and_ambiguous_has_none() -> None:
    image_id = uuid.uuid4()
    with pytest.raises(ValidationError, match="needs a label"):
        Label(image_id=image_id, verdict="label", labeler_id="ann")
    with pytest.raises(ValidationError, match="carries no label"):
        Label(image_id=image_id, verdict="ambiguous", label="Coat", labeler_id="ann")
    wrong = Label(image_id=image_id, verdict="wrong", labeler_id="user-7")
    assert LabelSubmitted(producer="labeling-api", payload=wrong).payload.label is None


def test_garbage_is_a_validation_error_not_a_crash() -> None:
    for raw in (b"", b"not json", b"{}", b"\xff\xfe", b"[1,2,3]"):
        with pytest.raises(ValidationError):
            decode(FrameCaptured, raw)


def test_image_ids_follow_content() -> None:
    digest = "a" * 64
    assert image_id_for(digest) == image_id_for(digest)
    assert image_id_for(digest) != image_id_for("b" * 64)


def test_a_promotion_names_the_served_model_its_archive_belongs_to() -> None:
    promoted = sample_events()[-1]
    assert promoted.payload.model_name == "hone"
