"""Selection in the benchmark: the selector's strategies, one request per object, the random
control share, what the selector learns from answers, and labels that never leak."""

from __future__ import annotations

import numpy as np
import pytest

from bench.label_efficiency.loop import Labels, RunSpec, pseudo_labels
from bench.label_efficiency.selection import STRATEGIES, Knowledge, choose, weakness_model
from bench.label_efficiency.world import World
from hone_selector.settings import SelectorSettings
from hone_trainer.settings import WeaknessSettings


def probabilities_for(world: World, frames: np.ndarray, seed: int = 0) -> np.ndarray:
    """Made-up predictions: right for even frames, unsure and wrong for odd ones."""
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.ones(10) * 0.3, size=len(frames))
    truth = world.pool.labels[frames]
    for row, (frame, label) in enumerate(zip(frames.tolist(), truth.tolist(), strict=True)):
        if frame % 2 == 0:
            p[row] = 0.01
            p[row, label] = 0.91
    return p


def candidates_of(world: World) -> np.ndarray:
    labels = Labels(world, propagation=True)
    labels.add(world.seed_frames)
    return np.flatnonzero(labels.candidates())


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_picks_the_asked_number_at_most_one_per_object(
    world: World, strategy: str
) -> None:
    candidates = candidates_of(world)
    probabilities = probabilities_for(world, candidates)
    pick = choose(
        strategy, 60, world, candidates, probabilities, Knowledge(world.classes), None,
        SelectorSettings(), np.random.default_rng(0), "v1", chunk=20,
    )  # fmt: skip
    assert len(pick.frames) == 60
    assert set(pick.frames.tolist()) <= set(candidates.tolist())
    objects = world.pool.object_index[pick.frames]
    assert len(set(objects.tolist())) == 60


def test_margin_picks_the_smallest_margins(world: World) -> None:
    candidates = candidates_of(world)
    probabilities = probabilities_for(world, candidates)
    pick = choose(
        "margin", 20, world, candidates, probabilities, Knowledge(world.classes), None,
        SelectorSettings(), np.random.default_rng(0), "v1",
    )  # fmt: skip
    top2 = np.sort(probabilities, axis=1)[:, -2:]
    margins = top2[:, 1] - top2[:, 0]
    chosen = np.isin(candidates, pick.frames)
    assert margins[chosen].max() <= np.sort(margins)[40]  # among the smallest (one per object)
    assert (pick.frames % 2 == 1).all()  # the unsure, wrong ones


def test_hone_spends_the_random_control_share_of_its_budget_uniformly(world: World) -> None:
    candidates = candidates_of(world)
    probabilities = probabilities_for(world, candidates)
    settings = SelectorSettings()
    pick = choose(
        "hone", 50, world, candidates, probabilities, Knowledge(world.classes), None,
        settings, np.random.default_rng(0), "v1",
    )  # fmt: skip
    controls = round(50 * settings.budget.random_share)
    # Priority picks are the unsure odd frames; random controls are a mix of both.
    assert (pick.frames[controls:] % 2 == 1).all()
    assert controls == 5


def test_an_unknown_strategy_is_refused(world: World) -> None:
    candidates = candidates_of(world)
    with pytest.raises(ValueError, match="unknown strategy"):
        choose(
            "entropy", 5, world, candidates, probabilities_for(world, candidates),
            Knowledge(world.classes), None, SelectorSettings(), np.random.default_rng(0), "v1",
        )  # fmt: skip


def test_answers_update_class_counts_and_slice_errors(world: World) -> None:
    knowledge = Knowledge(world.classes)
    frames = np.array([0, 1, 2, 3])
    knowledge.answered(world, world.seed_frames[:3].tolist(), None, 3)
    assert sum(knowledge.class_counts.values()) == 3
    assert knowledge.slices == {}
    probabilities = probabilities_for(world, frames)
    knowledge.answered(world, frames.tolist(), probabilities, 3)
    assert sum(knowledge.class_counts.values()) == 7
    assert sum(t.labelled for t in knowledge.slices.values()) == 4
    wrong = int((probabilities.argmax(1) != world.pool.labels[frames]).sum())
    assert sum(t.wrong for t in knowledge.slices.values()) == wrong
    assert len(knowledge.rows) == 4


def test_the_weakness_model_needs_answers_then_comes_from_the_trainer(world: World) -> None:
    knowledge = Knowledge(world.classes)
    model, report = weakness_model(world, knowledge, "v1", WeaknessSettings())
    assert model is None
    assert "skipped" in report
    frames = np.arange(200)
    knowledge.answered(world, frames.tolist(), probabilities_for(world, frames), 3)
    model, report = weakness_model(world, knowledge, "v1", WeaknessSettings())
    assert model is not None
    assert report["rows"] == 200
    assert model.artifact.model_version == "v1"


def test_a_label_propagates_to_the_other_views_of_its_object_only(world: World) -> None:
    obj = next(o for o in set(world.pool.object_index.tolist())
               if (world.pool.object_index == o).sum() > 1)  # fmt: skip
    views = np.flatnonzero(world.pool.object_index == obj)
    labels = Labels(world, propagation=True)
    labels.add(views[:1])
    frames, weights = labels.training_set()
    assert sorted(frames.tolist()) == sorted(views.tolist())
    assert weights.tolist() == [1.0] + [0.5] * (len(views) - 1)
    assert not labels.candidates()[views].any()
    without = Labels(world, propagation=False)
    without.add(views[:1])
    assert without.training_set()[0].tolist() == [int(views[0])]
    assert not without.candidates()[views].any()  # the object was requested


def test_pseudo_labels_skip_labelled_frames_and_requested_objects(world: World) -> None:
    labels = Labels(world, propagation=True)
    labels.add(world.seed_frames)
    candidates = np.arange(len(world.pool))
    confident = np.full((len(candidates), 10), 0.001)
    confident[np.arange(len(candidates)), world.pool.labels] = 0.991
    frames, classes = pseudo_labels(
        world,
        labels,
        candidates,
        confident.astype(np.float32),
        RunSpec("hone", 0, pseudo_per_class=10_000),
    )
    requested = np.isin(world.pool.object_index[frames], world.pool.object_index[world.seed_frames])
    assert not requested.any()
    assert len(frames) == int(labels.candidates().sum())
    assert (world.pool.labels[frames] == classes).all()


def test_power_sampling_favours_high_priorities_without_taking_only_the_top(world: World) -> None:
    candidates = candidates_of(world)
    probabilities = probabilities_for(world, candidates)
    top2 = np.sort(probabilities, axis=1)[:, -2:]
    margins = top2[:, 1] - top2[:, 0]

    def picked_margins(power: float | None, seed: int) -> np.ndarray:
        pick = choose(
            "margin", 40, world, candidates, probabilities, Knowledge(world.classes), None,
            SelectorSettings(), np.random.default_rng(seed), "v1", power=power,
        )  # fmt: skip
        assert len(set(world.pool.object_index[pick.frames].tolist())) == 40
        return margins[np.isin(candidates, pick.frames)]

    top = picked_margins(None, 0)
    drawn = np.concatenate([picked_margins(1.0, seed) for seed in range(5)])
    # Stochastic: some picks are not among the 40 smallest margins ...
    assert drawn.max() > top.max()
    # ... but it still prefers small margins over a uniform draw.
    assert drawn.mean() < margins.mean()
