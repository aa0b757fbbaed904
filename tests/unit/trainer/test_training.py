"""Training on CPU: it learns, it is repeatable for a seed, it refuses bad input early."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from hone_trainer.model.augmentation import AUGMENTATIONS
from hone_trainer.model.data import validation_split
from hone_trainer.model.training import TrainConfig, TrainedModel, evaluate, train
from tests.unit.trainer.conftest import QUICK, Task, stripes


def test_training_learns_a_separable_task(trained: TrainedModel) -> None:
    held_out = stripes(per_class=25, seed=99)
    metrics = evaluate(trained, held_out.images, held_out.labels)
    assert metrics.accuracy >= 0.9
    assert metrics.examples == 100
    assert trained.validation is not None
    assert trained.validation.accuracy >= 0.9


def test_the_result_describes_what_the_network_eats(trained: TrainedModel) -> None:
    assert trained.architecture == "small-cnn"
    assert (trained.channels, trained.input_size) == (1, (28, 28))
    assert trained.classes == ["top", "upper", "lower", "bottom"]
    assert 1 <= trained.best_epoch <= len(trained.history) <= QUICK.epochs
    assert (
        trained.train_examples + (trained.validation.examples if trained.validation else 0) == 120
    )


def test_training_is_repeatable_for_a_seed_and_differs_across_seeds(task: Task) -> None:
    config = QUICK.model_copy(update={"epochs": 1})
    first = train(task.images, task.labels, task.classes, config)
    again = train(task.images, task.labels, task.classes, config)
    other = train(task.images, task.labels, task.classes, config.model_copy(update={"seed": 8}))
    for name, tensor in first.state_dict().items():
        assert torch.equal(tensor, again.state_dict()[name]), name
    assert first.history[0].train_loss == again.history[0].train_loss
    weights = "head.4.weight"
    assert not torch.equal(first.state_dict()[weights], other.state_dict()[weights])


def test_training_leaves_the_callers_random_state_and_threads_alone(task: Task) -> None:
    torch.use_deterministic_algorithms(False)  # whatever an earlier test in this process left
    torch.manual_seed(1234)
    expected = torch.rand(3)
    threads = torch.get_num_threads()
    torch.manual_seed(1234)
    config = QUICK.model_copy(update={"epochs": 1, "threads": threads + 1})
    train(task.images[:40], task.labels[:40], task.classes, config)
    assert torch.equal(torch.rand(3), expected)
    assert torch.get_num_threads() == threads
    assert not torch.are_deterministic_algorithms_enabled()


def test_heavier_examples_win_when_labels_conflict() -> None:
    task = stripes(per_class=20, seed=3)
    keep = task.labels < 2
    images = np.concatenate([task.images[keep], task.images[keep]])
    labels = np.concatenate([task.labels[keep], 1 - task.labels[keep]])
    weights = np.concatenate([np.ones(keep.sum()), np.full(keep.sum(), 0.05)])
    config = QUICK.model_copy(update={"validation_fraction": 0.0, "class_balanced": False})
    model = train(images, labels, task.classes[:2], config, weights=weights)
    predicted = model.predict_proba(task.images[keep]).argmax(1)
    assert (predicted == task.labels[keep]).mean() >= 0.9


def test_early_stopping_returns_the_best_epochs_network(task: Task) -> None:
    config = QUICK.model_copy(update={"epochs": 6, "patience": 1, "learning_rate": 0.05})
    model = train(task.images, task.labels, task.classes, config)
    _, held = validation_split(task.labels, config.validation_fraction, config.seed)
    best = min(r.validation_loss for r in model.history if r.validation_loss is not None)
    assert model.history[model.best_epoch - 1].validation_loss == best
    probabilities = model.predict_proba(task.images[held])
    picked = probabilities[np.arange(len(held)), task.labels[held]]
    assert float(-np.log(picked).mean()) == pytest.approx(best, rel=1e-3, abs=1e-4)


def test_without_a_validation_part_every_epoch_runs(task: Task) -> None:
    config = QUICK.model_copy(update={"epochs": 2, "validation_fraction": 0.0})
    model = train(task.images[:40], task.labels[:40], task.classes, config)
    assert len(model.history) == model.best_epoch == 2
    assert model.validation is None


def test_a_parent_state_is_the_starting_point(trained: TrainedModel, task: Task) -> None:
    config = QUICK.model_copy(update={"epochs": 1, "learning_rate": 1e-12, "weight_decay": 0})
    child = train(task.images, task.labels, task.classes, config, init_state=trained.state_dict())
    parent = trained.state_dict()["head.4.weight"]
    assert torch.allclose(child.state_dict()["head.4.weight"], parent, atol=1e-6)


def test_an_rgb_architecture_trains_on_grayscale_arrays(task: Task) -> None:
    config = QUICK.model_copy(
        update={
            "architecture": "mobilenet-v3-small",
            "input_size": (32, 32),
            "epochs": 1,
            "min_samples_per_epoch": 16,
            "batch_size": 8,
            "augmentation": "camera",
        }
    )
    model = train(task.images[:24], task.labels[:24], task.classes, config)
    assert (model.channels, model.input_size) == (3, (32, 32))
    probabilities = model.predict_proba(task.images[:5])
    assert probabilities.shape == (5, 4)
    assert np.allclose(probabilities.sum(1), 1, atol=1e-5)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"labels": np.zeros(3, dtype=np.int64)}, "3 labels"),
        ({"classes": ["only"]}, "at least 2"),
        ({"classes": ["a", "a", "b", "c"]}, "distinct"),
        ({"weights": np.zeros(120)}, "positive"),
        ({"weights": np.ones(7)}, "one positive number per example"),
        ({"images": np.zeros((0, 28, 28), np.uint8), "labels": np.zeros(0, np.int64)}, "no"),
    ],
)
def test_bad_input_is_refused_before_any_training(
    task: Task, change: dict[str, object], message: str
) -> None:
    arguments: dict[str, object] = {
        "images": task.images,
        "labels": task.labels,
        "classes": task.classes,
        "config": QUICK,
    }
    arguments.update(change)
    with pytest.raises(ValueError, match=message):
        train(**arguments)  # type: ignore[arg-type]


def test_configuration_mistakes_are_caught_when_the_config_is_made() -> None:
    with pytest.raises(ValidationError, match="unknown architecture"):
        TrainConfig(architecture="vgg-99")
    with pytest.raises(ValidationError):
        TrainConfig(augmentation="underwater")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        TrainConfig(epochs=0)


def test_each_domain_chooses_its_own_augmentation() -> None:
    assert AUGMENTATIONS["none"].transform(1) is None
    fashion = repr(AUGMENTATIONS["fashion"].transform(1))
    camera = repr(AUGMENTATIONS["camera"].transform(3))
    assert "RandomHorizontalFlip" in fashion
    assert "RandomHorizontalFlip" not in camera
    assert "ColorJitter" in camera
    assert "RandomAffine" in camera


def test_augmentation_changes_images_but_keeps_their_shape_and_type() -> None:
    transform = AUGMENTATIONS["fashion"].transform(1)
    assert transform is not None
    image = torch.from_numpy(stripes(per_class=1).images[:1].copy())
    torch.manual_seed(0)
    changed = transform(image)
    assert changed.shape == image.shape
    assert changed.dtype == torch.uint8
    assert not torch.equal(changed, image)
