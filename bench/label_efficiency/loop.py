"""One active-learning run in-process: label the seed set, then at every budget train, evaluate
on the held-out frames, score unlabelled pool frames and choose the next ones to label.

A `Recipe` says how the trainer learns (augmentation, consistency training on unlabelled pool
frames, warm starts, propagation of a label to the other views of its object); the strategy
says what gets labelled. Held-out frames are only ever passed to `evaluate`.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from bench.label_efficiency.selection import Knowledge, choose, weakness_model
from bench.label_efficiency.world import World
from hone_selector.settings import SelectorSettings, WeightSettings
from hone_trainer.model.metrics import classification_metrics
from hone_trainer.model.semi_supervised import (
    SemiSupervisedConfig,
    confident_pseudo_labels,
    fit,
)
from hone_trainer.model.training import TrainConfig, TrainedModel
from hone_trainer.settings import DatasetSettings, WeaknessSettings

BUDGETS = (100, 200, 300, 500, 750, 1000, 1500, 2000)


@dataclass(frozen=True)
class Recipe:
    """How the trainer learns from what is labelled."""

    augmentation: str = "none"
    """Batched augmentation preset of labelled images (`semi_supervised.AUGMENTATION_PRESETS`)."""
    pseudo_labels: bool = False
    """Confident predictions on unlabelled pool frames (from the scoring pass selection makes
    anyway) train the next round as pseudo-labels."""
    consistency: bool = False
    """FixMatch-style consistency loss on unlabelled pool frames, online."""
    warm_start: bool = False
    """Start each round from the previous round's weights."""
    propagation: bool = True
    """A label also trains the other camera views of its object, at the trainer's weight."""


RECIPES: dict[str, Recipe] = {
    "selection-only": Recipe(pseudo_labels=False, warm_start=False, propagation=False),
    "full": Recipe(pseudo_labels=False, warm_start=False, propagation=True),
    "full+pseudo-labels": Recipe(pseudo_labels=True, warm_start=False, propagation=True),
    "full+warm-start": Recipe(pseudo_labels=False, warm_start=True, propagation=True),
    "full+augmentation": Recipe("light", pseudo_labels=False, warm_start=False, propagation=True),
    "full+warm-start+pseudo-labels": Recipe(pseudo_labels=True, warm_start=True, propagation=True),
    "full+consistency": Recipe(consistency=True, pseudo_labels=False, warm_start=False),
}
""""full" is Hone's trainer: what measurably helped (propagation) on top of selection alone.
The others add one thing each that was measured and did not help (docs/label-efficiency.md)."""


@dataclass(frozen=True)
class RunSpec:
    strategy: str
    seed: int
    recipe: str = "full"
    budgets: tuple[int, ...] = BUDGETS
    architecture: str = "small-cnn"
    batch_size: int = 64
    learning_rate: float = 3e-3
    warm_learning_rate: float = 1e-3
    """Peak learning rate of a warm-started round: the full rate would throw away much of what
    the previous round learnt, and a short round cannot win it back."""
    epochs: float = 20.0
    """Optimiser steps of a round from scratch: this many passes over the human labels, within
    [min_steps, max_steps]. Counting human labels only keeps every recipe on the same compute."""
    min_steps: int = 300
    max_steps: int = 800
    warm_share: float = 0.5
    """A warm-started round takes this share of a cold round's steps."""
    candidates: int = 5_000
    """Unlabelled pool frames scored per round (a fresh random sample each round)."""
    unlabelled_sample: int = 20_000
    """Unlabelled pool frames the consistency loss draws from per round."""
    pseudo_threshold: float = 0.95
    pseudo_per_class: int = 500
    pseudo_weight: float = 0.5
    chunk: int = 50
    threads: int = 1
    power: float | None = None
    """Stochastic acquisition: draw picks with probability priority ** power (None: top-k)."""
    weights: tuple[tuple[str, float], ...] = ()
    """Strategy weights of "hone" other than the selector's defaults (name, weight) pairs."""
    label: str = ""
    """Name of the strategy in the report (default: `strategy`), e.g. for tuned weights."""

    @property
    def name(self) -> str:
        return self.label or self.strategy

    @property
    def key(self) -> str:
        return f"{self.name}-{self.recipe}-seed{self.seed}"


@dataclass
class RoundResult:
    budget: int
    human_labels: int
    propagated_labels: int
    accuracy: float
    macro_f1: float
    per_camera: dict[str, float]
    dusk_gap: float
    """Dusk camera accuracy minus the mean accuracy of the other cameras' frames."""
    seconds: dict[str, float]
    notes: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunResult:
    spec: RunSpec
    rounds: list[RoundResult]
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {"spec": asdict(self.spec), "rounds": [asdict(r) for r in self.rounds],
                "seconds": round(self.seconds, 1)}  # fmt: skip


def evaluate(model: TrainedModel, world: World) -> tuple[float, float, dict[str, float], float]:
    """Accuracy, macro-F1, per-camera accuracy and the dusk gap on the held-out frames."""
    probabilities = model.predict_proba(world.test.pixels, batch_size=1000)
    metrics = classification_metrics(probabilities, world.test.labels, model.classes)
    correct = probabilities.argmax(axis=1) == world.test.labels
    per_camera = {
        cam: float(correct[world.test.camera == i].mean()) for i, cam in enumerate(world.camera_ids)
    }
    dusk = world.test.camera == world.dusk
    gap = float(correct[dusk].mean() - correct[~dusk].mean())
    return metrics.accuracy, metrics.macro_f1, per_camera, gap


class Labels:
    """Which pool frames carry a label, human or propagated, and which objects were requested."""

    def __init__(self, world: World, propagation: bool) -> None:
        self.world = world
        self.propagation = propagation
        self.weight = DatasetSettings().propagation_weight
        self.human: list[int] = []
        self.propagated: dict[int, int] = {}  # frame -> frame it got its label from
        self.requested_objects: set[int] = set()
        views: defaultdict[int, list[int]] = defaultdict(list)
        for frame, obj in enumerate(world.pool.object_index.tolist()):
            views[obj].append(frame)
        self.views = dict(views)

    def add(self, frames: npt.NDArray[np.int64]) -> None:
        for frame in frames.tolist():
            obj = int(self.world.pool.object_index[frame])
            self.human.append(frame)
            self.requested_objects.add(obj)
            self.propagated.pop(frame, None)
            if self.propagation:
                for view in self.views[obj]:
                    if view != frame and view not in self.human:
                        self.propagated[view] = frame

    def training_set(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        frames = np.array(self.human + list(self.propagated), dtype=np.int64)
        weights = np.concatenate(
            [np.ones(len(self.human)), np.full(len(self.propagated), self.weight)]
        ).astype(np.float32)
        return frames, weights

    def unlabelled(self) -> npt.NDArray[np.bool_]:
        mask = np.ones(len(self.world.pool), dtype=bool)
        mask[np.array(self.human + list(self.propagated), dtype=np.int64)] = False
        return mask

    def candidates(self) -> npt.NDArray[np.bool_]:
        """Unlabelled frames of objects nobody was asked about yet."""
        requested = np.isin(
            self.world.pool.object_index, np.fromiter(self.requested_objects, dtype=np.int64)
        )
        return self.unlabelled() & ~requested


def run(world: World, spec: RunSpec, log: Any = None) -> RunResult:
    """Every budget of `spec.budgets` in turn; the first must be the seed set's size."""
    if spec.budgets[0] != len(world.seed_frames):
        raise ValueError(f"the first budget must be the seed set ({len(world.seed_frames)})")
    recipe = RECIPES[spec.recipe]
    settings = SelectorSettings()
    if spec.weights:
        settings = settings.model_copy(
            update={"weights": WeightSettings(**settings.weights.as_dict() | dict(spec.weights))}
        )
    weakness_settings = WeaknessSettings()
    rng = np.random.default_rng([spec.seed, 11, sum(map(ord, spec.strategy + spec.recipe))])
    labels = Labels(world, recipe.propagation)
    knowledge = Knowledge(world.classes)
    labels.add(world.seed_frames)
    knowledge.answered(
        world, world.seed_frames.tolist(), None, settings.slice_risk.hour_bucket_hours
    )
    started = time.perf_counter()
    model: TrainedModel | None = None
    pseudo: tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]] | None = None
    rounds: list[RoundResult] = []
    for number, budget in enumerate(spec.budgets):
        seconds: dict[str, float] = {}
        notes: dict[str, Any] = {}
        if budget > len(labels.human):
            assert model is not None
            began = time.perf_counter()
            version = f"round{number - 1}"
            weak_model, report = weakness_model(world, knowledge, version, weakness_settings)
            notes["weakness_model"] = _weakness_note(report)
            pool = np.flatnonzero(labels.candidates())
            candidates = np.sort(rng.choice(pool, min(spec.candidates, len(pool)), replace=False))
            probabilities = model.predict_proba(world.pool.pixels[candidates], batch_size=1000)
            seconds["score"] = time.perf_counter() - began
            pick = choose(
                spec.strategy,
                budget - len(labels.human),
                world,
                candidates,
                probabilities.astype(np.float64),
                knowledge,
                weak_model,
                settings,
                rng,
                version,
                chunk=spec.chunk,
                power=spec.power,
            )
            labels.add(pick.frames)
            seconds["select"] = time.perf_counter() - began - seconds["score"]
            if recipe.pseudo_labels:
                pseudo = pseudo_labels(world, labels, candidates, probabilities, spec)
                notes["pseudo_labels"] = len(pseudo[0])
                notes["pseudo_label_accuracy"] = (
                    round(float((world.pool.labels[pseudo[0]] == pseudo[1]).mean()), 4)
                    if len(pseudo[0])
                    else None
                )
            notes["picked_dusk_share"] = round(
                float((world.pool.camera[pick.frames] == world.dusk).mean()), 4
            )
            notes["picked_model_wrong"] = round(
                float((pick.probabilities.argmax(1) != world.pool.labels[pick.frames]).mean()), 4
            )
        began = time.perf_counter()
        model = train_round(world, labels, spec, recipe, model, pseudo, rng, number)
        seconds["train"] = time.perf_counter() - began
        began = time.perf_counter()
        accuracy, macro_f1, per_camera, gap = evaluate(model, world)
        seconds["evaluate"] = time.perf_counter() - began
        result = RoundResult(
            budget=len(labels.human),
            human_labels=len(labels.human),
            propagated_labels=len(labels.propagated),
            accuracy=round(accuracy, 4),
            macro_f1=round(macro_f1, 4),
            per_camera={k: round(v, 4) for k, v in per_camera.items()},
            dusk_gap=round(gap, 4),
            seconds={k: round(v, 2) for k, v in seconds.items()},
            notes=notes,
        )
        rounds.append(result)
        if log is not None:
            log(spec, result)
    return RunResult(spec, rounds, time.perf_counter() - started)


def train_round(
    world: World,
    labels: Labels,
    spec: RunSpec,
    recipe: Recipe,
    previous: TrainedModel | None,
    pseudo: tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]] | None,
    rng: np.random.Generator,
    number: int,
) -> TrainedModel:
    frames, weights = labels.training_set()
    warm = recipe.warm_start and previous is not None
    config = TrainConfig(
        architecture=spec.architecture,
        batch_size=spec.batch_size,
        learning_rate=spec.warm_learning_rate if warm else spec.learning_rate,
        seed=spec.seed * 1000 + number,
        threads=spec.threads,
        progress=False,
    )
    cold = round(spec.epochs * len(labels.human) / spec.batch_size)
    steps = min(spec.max_steps, max(spec.min_steps, cold))
    semi = SemiSupervisedConfig(
        steps=max(1, round(steps * spec.warm_share)) if warm else steps,
        labelled_augmentation=recipe.augmentation,
        unlabelled_ratio=1.0 if recipe.consistency else 0.0,
        pseudo_weight=spec.pseudo_weight,
    )
    unlabelled = None
    if recipe.consistency:
        free = np.flatnonzero(labels.unlabelled())
        sample = np.sort(rng.choice(free, min(spec.unlabelled_sample, len(free)), replace=False))
        unlabelled = torch.from_numpy(world.pool.pixels[sample])
    return fit(
        world.pool.pixels[frames],
        world.pool.labels[frames],
        world.classes,
        config,
        semi,
        weights=weights,
        unlabelled=unlabelled,
        pseudo=None if pseudo is None else (world.pool.pixels[pseudo[0]], pseudo[1]),
        init_state=previous.state_dict() if warm and previous is not None else None,
    )


def pseudo_labels(
    world: World,
    labels: Labels,
    candidates: npt.NDArray[np.int64],
    probabilities: npt.NDArray[np.float32],
    spec: RunSpec,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Confident predictions on scored candidates that are still unlabelled and whose object
    nobody was asked about (pool frames only: held-out frames are never scored here)."""
    still_free = labels.candidates()[candidates]
    rows, classes = confident_pseudo_labels(
        probabilities[still_free], spec.pseudo_threshold, spec.pseudo_per_class
    )
    return candidates[still_free][rows], classes


def _weakness_note(report: dict[str, Any]) -> dict[str, Any]:
    holdout = report.get("holdout", {})
    return {
        "rows": report.get("rows"),
        "failures": report.get("failures"),
        "holdout_auc": holdout.get("auc") if isinstance(holdout, dict) else None,
        "skipped": report.get("skipped"),
    }
