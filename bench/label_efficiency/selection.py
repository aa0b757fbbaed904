"""Choosing which pool frames people label next, with the selector's own code.

Every candidate becomes the `image.scored` payload the selector would receive (`Scores`), and
the strategies are `hone_selector.strategies.*` with `SelectorSettings` defaults; "hone" is
`hone_selector.priority.combine` with the default weights plus the random-control share of the
budget, exactly as the running selector mixes them. The weakness model is the trainer's
(`hone_trainer.weakness.build_weakness_model`), read back through the selector's loader.

A round's picks are made in chunks: after each chunk its answers update the class counts and
slice table, as labels flow back to the running selector while it keeps choosing. Like the
selector, an object already requested is never requested again.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
import numpy.typing as npt

from bench.label_efficiency.world import World
from hone_common.events import Quality, Scores
from hone_selector.priority import combine
from hone_selector.settings import SelectorSettings
from hone_selector.strategies import StrategyScore, hour_bucket
from hone_selector.strategies.rarity import rarity
from hone_selector.strategies.slice_risk import SliceTable, Tally, slice_risk
from hone_selector.strategies.uncertainty import uncertainty
from hone_selector.strategies.weakness import weakness
from hone_selector.weakness_model import InvalidWeaknessModel, WeaknessModel
from hone_trainer.settings import WeaknessSettings
from hone_trainer.weakness import Context, FailureRows, build_weakness_model
from hone_trainer.weakness import uncertainty as uncertainty_numbers

HONE = "hone"
MARGIN = "margin"
RANDOM = "random"
SELECTOR_STRATEGIES = ("uncertainty", "rarity", "weakness", "slice_risk")
STRATEGIES = (HONE, *SELECTOR_STRATEGIES, MARGIN, RANDOM)
"""`margin` is plain margin sampling (the baseline in DESIGN.md §6), not a selector strategy."""

DAY = datetime(2026, 1, 5, tzinfo=UTC)
Floats = npt.NDArray[np.float64]


@dataclass
class Knowledge:
    """What the selector has learnt from answered requests (event-carried state)."""

    classes: Sequence[str]
    class_counts: dict[str, int] = field(default_factory=dict)
    slices: dict[tuple[str, int], Tally] = field(default_factory=dict)
    rows: list[tuple[int, Floats]] = field(default_factory=list)
    """(frame, probabilities the choosing model gave it) for every answered request."""

    def answered(
        self,
        world: World,
        frames: Sequence[int],
        probabilities: Floats | None,
        hour_bucket_hours: int,
    ) -> None:
        """Record labels; `probabilities` is None for images nobody predicted (the seed set)."""
        for i, frame in enumerate(frames):
            name = world.classes[int(world.pool.labels[frame])]
            self.class_counts[name] = self.class_counts.get(name, 0) + 1
            if probabilities is None:
                continue
            wrong = int(np.argmax(probabilities[i])) != int(world.pool.labels[frame])
            key = (camera_of(world, frame), int(world.pool.hour[frame]) // hour_bucket_hours)
            self.slices[key] = self.slices.get(key, Tally()) + Tally(1, int(wrong))
            self.rows.append((frame, probabilities[i]))


def camera_of(world: World, frame: int) -> str:
    return world.camera_ids[int(world.pool.camera[frame])]


def scores_for(
    world: World, frames: npt.NDArray[np.int64], probabilities: Floats, model_version: str
) -> list[Scores]:
    """The `image.scored` payloads of pool frames (built without validation: the values come
    from our own model and renderer, and 10k validations per round would cost seconds)."""
    confidence, margin, entropy = uncertainty_numbers(probabilities)
    predicted = np.argmax(probabilities, axis=1)
    classes = list(world.classes)
    out = []
    for row, frame in enumerate(frames.tolist()):
        q = world.pool.quality[frame]
        out.append(
            Scores.model_construct(
                image_id=frame_uuid(world.seed, frame),
                uri=f"s3://bench/{world.seed}/{frame}.png",
                model_version=model_version,
                classes=classes,
                label=classes[int(predicted[row])],
                probabilities=probabilities[row].tolist(),
                confidence=float(confidence[row]),
                margin=float(margin[row]),
                entropy=float(entropy[row]),
                camera_id=camera_of(world, frame),
                captured_at=captured_at(float(world.pool.hour[frame])),
                object_id=f"obj-{int(world.pool.object_index[frame])}",
                metadata={},
                quality=Quality.model_construct(
                    brightness=float(q[0]), contrast=float(q[1]), sharpness=float(q[2])
                ),
            )
        )
    return out


def frame_uuid(seed: int, frame: int) -> uuid.UUID:
    return uuid.uuid5(uuid.NAMESPACE_URL, f"hone-bench:{seed}:{frame}")


def captured_at(hour: float) -> datetime:
    return DAY + timedelta(hours=hour)


def weakness_model(
    world: World, knowledge: Knowledge, model_version: str, settings: WeaknessSettings
) -> tuple[WeaknessModel | None, dict[str, object]]:
    """The trainer's weakness model from every answered prediction so far, loaded the way the
    selector loads it; None (the strategy abstains) while there is too little to fit."""
    if not knowledge.rows:
        return None, {"skipped": "no answered predictions yet"}
    frames = [frame for frame, _ in knowledge.rows]
    probabilities = np.stack([p for _, p in knowledge.rows])
    labels = world.pool.labels[frames]
    contexts = [
        Context(
            image_id=str(frame_uuid(world.seed, frame)),
            camera_id=camera_of(world, frame),
            captured_hour=float(world.pool.hour[frame]),
            brightness=float(world.pool.quality[frame, 0]),
            contrast=float(world.pool.quality[frame, 1]),
            sharpness=float(world.pool.quality[frame, 2]),
        )
        for frame in frames
    ]
    rows = FailureRows(
        probabilities,
        np.argmax(probabilities, axis=1) != labels,
        contexts,
        ["answered"] * len(frames),
    )
    result = build_weakness_model(rows, list(world.classes), model_version, settings)
    if result.artifact is None:
        return None, result.report
    try:
        return WeaknessModel.from_json(json.dumps(result.artifact).encode()), result.report
    except InvalidWeaknessModel as error:  # pragma: no cover - the trainer's output is valid
        return None, {**result.report, "invalid": str(error)}


@dataclass(frozen=True)
class Pick:
    frames: npt.NDArray[np.int64]
    probabilities: Floats
    """The choosing model's probabilities for the picked frames."""


def choose(
    strategy: str,
    count: int,
    world: World,
    candidates: npt.NDArray[np.int64],
    probabilities: Floats,
    knowledge: Knowledge,
    weak_model: WeaknessModel | None,
    settings: SelectorSettings,
    rng: np.random.Generator,
    model_version: str,
    chunk: int = 50,
    power: float | None = None,
) -> Pick:
    """`count` candidates for `strategy`, at most one per object, answered chunk by chunk.

    By default the highest priorities are taken (top-k). With `power`, candidates are drawn
    without replacement with probability proportional to priority ** power (Gumbel top-k):
    stochastic acquisition, which spreads a batch over many moderately uncertain images
    instead of the few most extreme ones (Kirsch et al., 2023).
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; known: {', '.join(STRATEGIES)}")
    scores = scores_for(world, candidates, probabilities, model_version)
    tiebreak = rng.random(len(candidates))
    free = np.ones(len(candidates), dtype=bool)
    taken_objects: set[int] = set()
    picked: list[int] = []

    def take(order: npt.NDArray[np.int64], limit: int) -> list[int]:
        got: list[int] = []
        for i in order.tolist():
            if len(got) >= limit:
                break
            obj = int(world.pool.object_index[candidates[i]])
            if free[i] and obj not in taken_objects:
                free[i] = False
                taken_objects.add(obj)
                got.append(i)
        return got

    hours = settings.slice_risk.hour_bucket_hours
    if strategy == HONE and settings.budget.random_share > 0:
        controls = round(count * settings.budget.random_share)
        got = take(rng.permutation(len(candidates)).astype(np.int64), controls)
        picked += got
        knowledge.answered(world, candidates[got].tolist(), probabilities[got], hours)
    fixed = _fixed_priorities(strategy, scores, weak_model, settings)
    u = settings.uncertainty
    per_image = (
        [
            (uncertainty(s, u.margin, u.confidence, u.entropy), weakness(s, weak_model))
            for s in scores
        ]
        if strategy == HONE
        else []
    )
    while len(picked) < count and free.any():
        priority = (
            fixed
            if fixed is not None
            else _state_priorities(strategy, scores, knowledge, per_image, settings)
        )
        if power is None:
            order = np.lexsort((tiebreak, -priority)).astype(np.int64)
        else:
            keys = power * np.log(np.maximum(priority, 1e-9)) + rng.gumbel(size=len(priority))
            order = np.argsort(-keys, kind="stable").astype(np.int64)
        got = take(order, min(chunk, count - len(picked)))
        if not got:
            break
        picked += got
        answered = candidates[got]
        knowledge.answered(world, answered.tolist(), probabilities[got], hours)
    index = np.array(picked, dtype=np.int64)
    return Pick(candidates[index], probabilities[index])


def _fixed_priorities(
    strategy: str,
    scores: list[Scores],
    weak_model: WeaknessModel | None,
    settings: SelectorSettings,
) -> Floats | None:
    """Priorities that do not change while a round's answers come in (None if they do)."""
    u = settings.uncertainty
    if strategy == RANDOM:
        return np.zeros(len(scores))
    if strategy == MARGIN:
        return np.array([1.0 - s.margin for s in scores])
    if strategy == "uncertainty":
        return np.array([uncertainty(s, u.margin, u.confidence, u.entropy).score for s in scores])
    if strategy == "weakness":
        return np.array([weakness(s, weak_model).score for s in scores])
    return None


def _state_priorities(
    strategy: str,
    scores: list[Scores],
    knowledge: Knowledge,
    per_image: list[tuple[StrategyScore, StrategyScore]],
    settings: SelectorSettings,
) -> Floats:
    """Rarity and slice risk read the answers so far; only their keys (predicted class,
    camera and hour bucket) matter, so each key is scored once by the real function. For
    "hone", `per_image` holds every candidate's uncertainty and weakness scores."""
    table = SliceTable(dict(knowledge.slices))
    s = settings.slice_risk
    by_label: dict[str, StrategyScore] = {}
    by_slice: dict[tuple[str, int], StrategyScore] = {}

    def cached(score: Scores) -> tuple[StrategyScore, StrategyScore]:
        if score.label not in by_label:
            by_label[score.label] = rarity(score, knowledge.class_counts, settings.rarity.smoothing)
        key = (score.camera_id, hour_bucket(score.captured_at, s.hour_bucket_hours))
        if key not in by_slice:
            by_slice[key] = slice_risk(score, table, s.hour_bucket_hours, s.prior_strength)
        return by_label[score.label], by_slice[key]

    if strategy == "rarity":
        return np.array([cached(sc)[0].score for sc in scores])
    if strategy == "slice_risk":
        return np.array([cached(sc)[1].score for sc in scores])
    # hone: the selector's weighted mean of all four, abstaining strategies left out.
    weights = settings.weights.as_dict()
    return np.array(
        [
            combine(
                [cached(sc)[0], unc, weak, cached(sc)[1]], weights, settings.reason_min_score
            ).value
            for sc, (unc, weak) in zip(scores, per_image, strict=True)
        ]
    )
