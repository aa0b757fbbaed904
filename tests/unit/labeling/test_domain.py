"""The queue's rules without servers: consensus, merging requests, names, image types."""

from __future__ import annotations

import uuid

import pytest

from hone_common.events import Reason
from hone_labeling_api.domain import (
    Decision,
    Vote,
    decide,
    image_media_type,
    labeler_identifier,
    merge_reasons,
    top_k,
)
from hone_labeling_api.schemas import AnswerRequest
from hone_labeling_api.service import fingerprint


def votes(*answers: str) -> list[Vote]:
    return [Vote("ambiguous", None) if a == "?" else Vote("label", a) for a in answers]


@pytest.mark.parametrize(
    ("answers", "required", "max_answers", "expected"),
    [
        ((), 1, 1, Decision("open")),
        (("Coat",), 1, 1, Decision("done", "Coat", "agreement")),
        (("?",), 1, 1, Decision("ambiguous", None, "agreement")),
        (("Coat",), 2, 3, Decision("open")),
        (("Coat", "Coat"), 2, 3, Decision("done", "Coat", "agreement")),
        (("Coat", "Bag"), 2, 3, Decision("open")),
        (("Coat", "Bag", "Coat"), 2, 3, Decision("done", "Coat", "agreement")),
        (("Coat", "Bag", "Dress"), 2, 3, Decision("ambiguous", None, "disagreement")),
        (("?", "?"), 2, 3, Decision("ambiguous", None, "agreement")),
        (("Coat", "?", "Bag"), 2, 3, Decision("ambiguous", None, "disagreement")),
        (("Coat", "Bag"), 2, 2, Decision("ambiguous", None, "disagreement")),
    ],
)
def test_a_task_settles_once_enough_answers_agree_or_too_many_disagree(
    answers: tuple[str, ...], required: int, max_answers: int, expected: Decision
) -> None:
    assert decide(votes(*answers), required, max_answers) == expected


def test_merging_keeps_one_reason_per_strategy_with_the_highest_score() -> None:
    existing = [
        {"strategy": "uncertainty", "score": 0.4, "detail": "margin 0.3"},
        {"strategy": "rarity", "score": 0.9, "detail": "rare"},
    ]
    new = [
        Reason(strategy="uncertainty", score=0.7, detail="margin 0.1"),
        Reason(strategy="rarity", score=0.2, detail="less rare"),
        Reason(strategy="user_flag", score=1.0),
    ]

    merged = merge_reasons(existing, new)

    assert merged == [
        {"strategy": "user_flag", "score": 1.0, "detail": ""},
        {"strategy": "rarity", "score": 0.9, "detail": "rare"},
        {"strategy": "uncertainty", "score": 0.7, "detail": "margin 0.1"},
    ]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("ann", "ann"),
        ("ann.lee@example.org", "ann.lee@example.org"),
        ("Ann Lee", "Ann-Lee"),
        ("  <script>x</script> ", "script-x-/script"),
        ("名前", "key-0123456789ab"),
        ("-" * 10, "key-0123456789ab"),
        ("a" * 300, "a" * 128),
    ],
)
def test_labeler_names_become_valid_event_identifiers(name: str, expected: str) -> None:
    key_id = uuid.UUID("0123456789abcdef0123456789abcdef")
    assert labeler_identifier(name, key_id) == expected


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"\x89PNG\r\n\x1a\n....", "image/png"),
        (b"\xff\xd8\xff\xe0....", "image/jpeg"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "image/webp"),
        (b"RIFF\x00\x00\x00\x00WAVEfmt ", None),
        (b"<svg onload=alert(1)>", None),
        (b"", None),
    ],
)
def test_only_png_jpeg_and_webp_are_served_as_images(head: bytes, expected: str | None) -> None:
    assert image_media_type(head) == expected


def test_top_k_lists_the_most_probable_classes_first() -> None:
    assert top_k(["a", "b", "c", "d"], [0.1, 0.5, 0.3, 0.1], 2) == [("b", 0.5), ("c", 0.3)]
    assert top_k([], [], 3) == []


def test_an_idempotency_fingerprint_depends_on_target_and_body_not_on_formatting() -> None:
    same = AnswerRequest.model_validate_json('{"verdict": "label", "label": " Coat "}')
    also = AnswerRequest(verdict="label", label="Coat")
    other = AnswerRequest(verdict="label", label="Bag")

    assert fingerprint("answer", "t1", same) == fingerprint("answer", "t1", also)
    assert fingerprint("answer", "t1", same) != fingerprint("answer", "t2", same)
    assert fingerprint("answer", "t1", same) != fingerprint("answer", "t1", other)


@pytest.mark.parametrize(
    "body",
    [
        {"verdict": "label"},
        {"verdict": "skip", "label": "Coat"},
        {"verdict": "ambiguous", "label": "Coat"},
        {"verdict": "maybe"},
        {"verdict": "label", "label": ""},
        {"verdict": "label", "label": "Coat", "elapsed_ms": -1},
        {"verdict": "label", "label": "Coat", "extra": 1},
    ],
)
def test_malformed_answers_are_refused(body: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="validation error"):
        AnswerRequest.model_validate(body)
