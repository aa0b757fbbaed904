"""Fixed-step training with pseudo-labels and consistency: it learns, it is repeatable, it uses
what it is given, and it refuses bad input early."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hone_trainer.model.semi_supervised import (
    AUGMENTATION_PRESETS,
    STRONG,
    SemiSupervisedConfig,
    confident_pseudo_labels,
    fit,
)
from hone_trainer.model.training import TrainConfig, evaluate
from tests.unit.trainer.conftest import Task, stripes

CONFIG = TrainConfig(batch_size=32, learning_rate=3e-3, progress=False, seed=3)
SEMI = SemiSupervisedConfig(steps=60, labelled_augmentation="none")


def test_fixed_step_training_learns_a_separable_task(task: Task) -> None:
    model = fit(task.images, task.labels, task.classes, CONFIG, SEMI)
    held_out = stripes(per_class=25, seed=99)
    assert evaluate(model, held_out.images, held_out.labels).accuracy >= 0.9
    assert model.train_examples == len(task.labels)
    assert model.validation is None  # no early stopping, nothing held back


def test_training_is_repeatable_for_a_seed(task: Task) -> None:
    semi = SEMI.model_copy(update={"steps": 5, "labelled_augmentation": "strong"})
    first = fit(task.images, task.labels, task.classes, CONFIG, semi)
    again = fit(task.images, task.labels, task.classes, CONFIG, semi)
    other = fit(task.images, task.labels, task.classes, CONFIG.model_copy(update={"seed": 4}), semi)
    for name, tensor in first.state_dict().items():
        assert torch.equal(tensor, again.state_dict()[name]), name
    assert any(not torch.equal(t, other.state_dict()[n]) for n, t in first.state_dict().items())


def test_a_warm_start_begins_from_the_given_weights(task: Task) -> None:
    parent = fit(task.images, task.labels, task.classes, CONFIG, SEMI)
    tiny = CONFIG.model_copy(update={"learning_rate": 1e-9})
    child = fit(
        task.images,
        task.labels,
        task.classes,
        tiny,
        SEMI.model_copy(update={"steps": 1}),
        init_state=parent.state_dict(),
    )
    held_out = stripes(per_class=25, seed=99)
    assert evaluate(child, held_out.images, held_out.labels).accuracy >= 0.9


def test_pseudo_labels_teach_classes_the_labelled_set_lacks(task: Task) -> None:
    # Labelled: only the first two classes. Pseudo-labelled: the other two, correctly.
    labelled = np.isin(task.labels, [0, 1])
    model = fit(
        task.images[labelled],
        task.labels[labelled],
        task.classes,
        CONFIG,
        SEMI.model_copy(update={"pseudo_weight": 1.0}),
        pseudo=(task.images[~labelled], task.labels[~labelled]),
    )
    held_out = stripes(per_class=25, seed=99)
    predicted = model.predict_proba(held_out.images).argmax(axis=1)
    for cls in (2, 3):
        assert (predicted[held_out.labels == cls] == cls).mean() >= 0.8


def test_consistency_training_runs_on_unlabelled_images(task: Task) -> None:
    unlabelled = stripes(per_class=40, seed=5).images
    semi = SEMI.model_copy(update={"unlabelled_ratio": 1.0, "threshold": 0.5})
    model = fit(task.images, task.labels, task.classes, CONFIG, semi, unlabelled=unlabelled)
    held_out = stripes(per_class=25, seed=99)
    assert evaluate(model, held_out.images, held_out.labels).accuracy >= 0.9


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"labels": np.zeros(3, dtype=np.int64)}, "images but"),
        ({"weights": "zero"}, "weights must be one positive number"),
        ({"pseudo_labels_short": True}, "pseudo images but"),
        ({"classes": ["only"]}, "at least 2 distinct"),
    ],
)
def test_bad_input_is_refused_before_training(
    task: Task, change: dict[str, object], message: str
) -> None:
    labels = change.get("labels", task.labels)
    weights = np.zeros(len(task.labels)) if change.get("weights") == "zero" else None
    pseudo = (task.images[:5], task.labels[:4]) if change.get("pseudo_labels_short") else None
    classes = change.get("classes", task.classes)
    with pytest.raises(ValueError, match=message):
        fit(task.images, labels, classes, CONFIG, SEMI, weights=weights, pseudo=pseudo)  # type: ignore[arg-type]


def test_no_training_examples_is_an_error(task: Task) -> None:
    with pytest.raises(ValueError, match="no training examples"):
        fit(task.images[:0], task.labels[:0], task.classes, CONFIG, SEMI)


def test_confident_pseudo_labels_keep_only_confident_rows_capped_per_class() -> None:
    p = np.array(
        [
            [0.97, 0.03],  # class 0, confident
            [0.60, 0.40],  # not confident
            [0.99, 0.01],  # class 0, most confident
            [0.02, 0.98],  # class 1
            [0.96, 0.04],  # class 0, third: dropped by the cap
        ]
    )
    rows, classes = confident_pseudo_labels(p, threshold=0.95, per_class=2)
    assert rows.tolist() == [0, 2, 3]
    assert classes.tolist() == [0, 0, 1]
    none_rows, _ = confident_pseudo_labels(p, threshold=0.999)
    assert none_rows.size == 0
    with pytest.raises(ValueError, match="probabilities must be"):
        confident_pseudo_labels(np.ones(3))


def test_batch_augmentation_keeps_shape_and_range_and_none_is_identity() -> None:
    x = torch.rand(16, 1, 28, 28)
    generator = torch.Generator().manual_seed(0)
    out = STRONG(x, generator)
    assert out.shape == x.shape
    assert float(out.min()) >= 0.0
    assert float(out.max()) <= 1.0
    assert not torch.equal(out, x)
    assert torch.equal(AUGMENTATION_PRESETS["none"](x, generator), x)
