"""The rules of the review queue, free of HTTP, Kafka and SQL: how repeated requests for one
image merge, when answers settle a task (consensus), how labelers are named in events."""

from __future__ import annotations

import re
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from hone_common.events import Reason

Verdict = Literal["label", "ambiguous", "skip"]
TaskStatus = Literal["open", "done", "ambiguous"]

AMBIGUOUS = "ambiguous"


class LabelingError(Exception):
    """A request the queue refuses; `status` is the HTTP status the API answers with."""

    status = 400

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class NotFound(LabelingError):
    status = 404


class Conflict(LabelingError):
    status = 409


class Invalid(LabelingError):
    status = 422


# --- review requests ------------------------------------------------------------------------


def merge_reasons(
    existing: Iterable[dict[str, Any]], new: Iterable[Reason]
) -> list[dict[str, Any]]:
    """One reason per strategy, the highest score wins (its detail too); highest first."""
    best: dict[str, dict[str, Any]] = {}
    for reason in [*existing, *(r.model_dump() for r in new)]:
        current = best.get(reason["strategy"])
        if current is None or reason["score"] > current["score"]:
            best[reason["strategy"]] = reason
    return sorted(best.values(), key=lambda r: (-r["score"], r["strategy"]))


# --- consensus ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Vote:
    verdict: Literal["label", "ambiguous"]
    label: str | None


@dataclass(frozen=True)
class Decision:
    """What a task's answers add up to: still open, or settled with a label or as ambiguous."""

    status: TaskStatus
    label: str | None = None
    why: Literal["pending", "agreement", "disagreement"] = "pending"


def decide(votes: Sequence[Vote], required: int, max_answers: int) -> Decision:
    """A task is settled once one answer (a class, or `ambiguous`) has `required` votes. If
    the answers disagree and `max_answers` are in without such a majority, the task is
    closed as ambiguous: people could not agree on it, so it must not train the model."""
    if not votes:
        return Decision("open")
    counts = Counter(AMBIGUOUS if v.verdict == "ambiguous" else v.label for v in votes)
    # Counter keeps insertion order among ties, so the earliest answer wins a tie.
    top, count = counts.most_common(1)[0]
    if count >= required:
        if top == AMBIGUOUS:
            return Decision("ambiguous", None, "agreement")
        return Decision("done", top, "agreement")
    if len(votes) >= max(required, max_answers):
        return Decision("ambiguous", None, "disagreement")
    return Decision("open")


# --- identities -----------------------------------------------------------------------------

_NOT_ID = re.compile(r"[^A-Za-z0-9._:/@-]+")


def labeler_identifier(name: str, key_id: uuid.UUID) -> str:
    """The key holder's name as an event `Identifier` (printable, no spaces, at most 128
    characters); a name with nothing usable falls back to the key id, which is unique."""
    cleaned = _NOT_ID.sub("-", name).strip("-._:/@")[:128]
    return cleaned or f"key-{key_id.hex[:12]}"


# --- images ---------------------------------------------------------------------------------

_SIGNATURES: tuple[tuple[bytes, int, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", 0, "image/png"),
    (b"\xff\xd8\xff", 0, "image/jpeg"),
    (b"WEBP", 8, "image/webp"),
)


def image_media_type(data: bytes) -> str | None:
    """The media type of a PNG, JPEG or WebP image from its first bytes; None for others."""
    for magic, offset, media_type in _SIGNATURES:
        if data[offset : offset + len(magic)] == magic:
            if media_type == "image/webp" and not data.startswith(b"RIFF"):
                continue
            return media_type
    return None


def top_k(
    classes: Sequence[str], probabilities: Sequence[float], k: int
) -> list[tuple[str, float]]:
    """The k most probable classes, most probable first."""
    pairs = sorted(zip(classes, probabilities, strict=False), key=lambda p: -p[1])
    return pairs[:k]
