"""The dataset's rules, as plain functions: split assignment, label resolution, propagation to
other views of the same object, and the training-set filter that never lets a test image in.

Nothing here knows PostgreSQL or Kafka; `repository.py` feeds these functions and stores what
they decide.
"""

from __future__ import annotations

import hashlib
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from hone_trainer.settings import DatasetSettings, SplitShares

Split = Literal["train", "weakness", "test"]
Kind = Literal["human", "propagated", "ambiguous"]
SPLITS: tuple[Split, ...] = ("train", "weakness", "test")


class SplitLeak(AssertionError):
    """A test-split image reached a training set: a bug, never a data problem."""


def split_for(image_id: uuid.UUID, shares: SplitShares) -> Split:
    """The split an image belongs to, from a salted hash of its id alone: the same image always
    lands in the same split, whichever replica or run asks, in whatever order."""
    digest = hashlib.sha256(f"{shares.salt}:{image_id}".encode()).digest()
    point = int.from_bytes(digest[:8], "big") / 2**64
    if point < shares.train:
        return "train"
    if point < shares.train + shares.weakness:
        return "weakness"
    return "test"


@dataclass(frozen=True)
class Vote:
    """One `label.submitted` for an image, as stored (seq orders events that share a time)."""

    seq: int
    occurred_at: datetime
    verdict: Literal["label", "ambiguous", "wrong"]
    label: str | None
    labeler_id: str
    source: Literal["human", "propagated"] = "human"
    model_version: str | None = None
    reasons: list[dict[str, Any]] = field(default_factory=list)

    @property
    def answer(self) -> str | None:
        """What the vote says the image is: a class, `None` for ambiguous. A `wrong` without a
        class is a flag on the prediction, not an answer (see `is_flag`)."""
        return None if self.verdict == "ambiguous" else self.label

    @property
    def is_flag(self) -> bool:
        return self.verdict == "wrong" and self.label is None

    @property
    def order(self) -> tuple[datetime, int]:
        return (self.occurred_at, self.seq)


@dataclass(frozen=True)
class Resolution:
    """What an image's human answers add up to, and the vote that decided it (its lineage)."""

    kind: Literal["human", "ambiguous"]
    label: str | None
    vote: Vote


AMBIGUOUS = "\x00ambiguous"


def resolve(votes: Iterable[Vote], consensus: int = 1) -> Resolution | None:
    """Resolve an image's human answers; None when they do not settle it (yet).

    With `consensus` 1 the latest answer wins: a corrected or undone-and-redone answer
    supersedes the earlier one. With N > 1, each labeler's latest answer counts once and a
    class (or `ambiguous`) needs N agreeing labelers; a tie goes to the most recent answer.
    Flags (`wrong` without a class) and propagated labels are not answers.
    """
    answers = sorted(
        (v for v in votes if v.source == "human" and not v.is_flag), key=lambda v: v.order
    )
    if not answers:
        return None
    if consensus <= 1:
        return _resolution(answers[-1])
    latest: dict[str, Vote] = {}
    for vote in answers:
        latest[vote.labeler_id] = vote
    counts = Counter(_key(v) for v in latest.values())
    newest: dict[str, Vote] = {}
    for vote in sorted(latest.values(), key=lambda v: v.order):
        newest[_key(vote)] = vote
    winner = max(counts, key=lambda k: (counts[k], newest[k].order))
    if counts[winner] < consensus:
        return None
    return _resolution(newest[winner])


def _key(vote: Vote) -> str:
    return AMBIGUOUS if vote.answer is None else vote.answer


def _resolution(vote: Vote) -> Resolution:
    if vote.answer is None:
        return Resolution("ambiguous", None, vote)
    return Resolution("human", vote.answer, vote)


@dataclass(frozen=True)
class Member:
    """An image of the dataset with what propagation needs to know of it."""

    image_id: uuid.UUID
    split: Split
    captured_at: datetime | None = None
    object_id: str | None = None
    votes: tuple[Vote, ...] = ()


@dataclass(frozen=True)
class Example:
    """An image's place in the dataset: a training label (human or propagated) or an image
    kept out as ambiguous. Images with no answer, only flags, or an unsettled consensus have
    no example."""

    image_id: uuid.UUID
    split: Split
    kind: Kind
    label: str | None
    weight: float
    vote: Vote | None = None
    propagated_from: uuid.UUID | None = None


def plan_examples(
    members: Sequence[Member], settings: DatasetSettings
) -> dict[uuid.UUID, Example | None]:
    """The example every member should have (None: none), its object group taken into account.

    A human answer always beats a propagated label. A label propagates only to `train` images
    of the same `object_id` captured within the window, only when the labelled views agree,
    and never to an image a person called ambiguous: a weakness or test image never gets a
    propagated label.
    """
    resolutions = {m.image_id: resolve(m.votes, settings.consensus) for m in members}
    plan: dict[uuid.UUID, Example | None] = {}
    for member in members:
        resolution = resolutions[member.image_id]
        if resolution is not None:
            plan[member.image_id] = Example(
                member.image_id,
                member.split,
                resolution.kind,
                resolution.label,
                1.0 if resolution.kind == "human" else 0.0,
                resolution.vote,
            )
        else:
            plan[member.image_id] = _propagated(member, members, resolutions, settings)
    return plan


def _propagated(
    target: Member,
    members: Sequence[Member],
    resolutions: Mapping[uuid.UUID, Resolution | None],
    settings: DatasetSettings,
) -> Example | None:
    if target.split != "train" or settings.propagation_weight <= 0:
        return None
    sources: list[tuple[Member, Resolution]] = []
    if target.object_id is not None and target.captured_at is not None:
        for member in members:
            resolution = resolutions[member.image_id]
            if (
                member.image_id != target.image_id
                and member.object_id == target.object_id
                and member.captured_at is not None
                and resolution is not None
                and resolution.kind == "human"
                and _close(member.captured_at, target.captured_at, settings)
            ):
                sources.append((member, resolution))
    if sources:
        labels = {r.label for _, r in sources}
        if len(labels) != 1:
            return None  # the labelled views disagree: the object id is not to be trusted
        source, resolution = max(sources, key=lambda s: s[1].vote.order)
        return Example(
            target.image_id,
            "train",
            "propagated",
            resolution.label,
            settings.propagation_weight,
            resolution.vote,
            source.image_id,
        )
    # Another service may have propagated a label already (`source: propagated`).
    external = sorted(
        (v for v in target.votes if v.source == "propagated" and v.answer is not None),
        key=lambda v: v.order,
    )
    if external:
        vote = external[-1]
        return Example(
            target.image_id, "train", "propagated", vote.answer, settings.propagation_weight, vote
        )
    return None


def _close(a: datetime, b: datetime, settings: DatasetSettings) -> bool:
    window = settings.propagation_window_seconds
    return window is None or abs((a - b).total_seconds()) <= window


@dataclass(frozen=True)
class Row:
    """One example as a run reads it: enough to fetch the image, train and trace its lineage."""

    image_id: uuid.UUID
    split: Split
    kind: Kind
    label: str
    weight: float
    uri: str
    sha256: str
    camera_id: str
    captured_hour: float
    brightness: float
    contrast: float
    sharpness: float


def training_set(rows: Iterable[Row]) -> list[Row]:
    """The rows a model may train on: labelled (human or propagated) `train` images. Checked
    again after filtering, so a bug upstream fails the run instead of leaking test images."""
    chosen = [r for r in rows if r.split == "train" and r.kind in ("human", "propagated")]
    assert_no_test(chosen)
    return chosen


def assert_no_test(rows: Iterable[Row]) -> None:
    leaked = [str(r.image_id) for r in rows if r.split == "test"]
    if leaked:
        raise SplitLeak(f"{len(leaked)} test-split images in a training set: {leaked[:5]}")


def examples_sha256(rows: Iterable[Row]) -> str:
    """Identity of a training set: the sorted example ids, each with its label and weight, so
    a relabelled image changes the hash too."""
    lines = sorted(f"{r.image_id}\t{r.label}\t{r.weight:g}" for r in rows)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def choose_classes(
    labels: Iterable[str], production: Sequence[str] | None, fixed: Sequence[str] | None
) -> list[str]:
    """The candidate's classes: the fixed list if configured, else the production model's (same
    order, so warm starts and comparisons line up) followed by new classes alphabetically."""
    if fixed:
        return list(fixed)
    known = list(production or [])
    return known + sorted(set(labels) - set(known))
