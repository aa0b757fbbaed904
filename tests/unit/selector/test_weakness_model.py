"""The weakness model's JSON artifact: what it computes, and everything it refuses."""

from __future__ import annotations

import json
import math
import pickle
from typing import Any

import pytest

from hone_selector.strategies.weakness import weakness
from hone_selector.weakness_model import InvalidWeaknessModel, WeaknessModel
from tests.unit.selector.builders import NOON, scores


def artifact(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "format": "hone-weakness-logreg",
        "format_version": 1,
        "model_version": "v1",
        "features": ["margin", "brightness", "camera=cam-dark", "hour_bucket=6", "label=Shirt"],
        "coefficients": [-3.0, -2.0, 2.5, 1.0, 0.5],
        "intercept": -1.0,
        "hour_bucket_hours": 3,
    }
    return {**base, **overrides}


def load(doc: dict[str, Any], expected: str | None = "v1") -> WeaknessModel:
    return WeaknessModel.from_json(json.dumps(doc).encode(), expected_version=expected)


def test_probability_is_the_logistic_of_the_linear_score() -> None:
    model = load(artifact())
    s = scores("Shirt", 0.6, second="Coat", runner_up=0.3, camera_id="cam-dark",
               captured_at=NOON.replace(hour=19), brightness=0.1)  # fmt: skip
    logit = -1.0 - 3.0 * s.margin - 2.0 * 0.1 + 2.5 + 1.0 + 0.5
    probability, top = model.predict(s)
    assert probability == pytest.approx(1 / (1 + math.exp(-logit)))
    assert top[0][0] == "camera=cam-dark"


def test_one_hot_features_are_zero_for_other_cameras_hours_and_labels() -> None:
    model = load(artifact())
    values = model.features(scores("Trouser", 0.9, camera_id="cam-1", captured_at=NOON))
    assert values[2:] == [0.0, 0.0, 0.0]


def test_standardisation_is_applied_when_given() -> None:
    model = load(artifact(features=["brightness"], coefficients=[1.0], intercept=0.0,
                          means=[0.5], scales=[0.25]))  # fmt: skip
    probability, _ = model.predict(scores(brightness=0.75))
    assert probability == pytest.approx(1 / (1 + math.exp(-1.0)))


def test_metadata_features_read_numbers_flags_and_string_values() -> None:
    model = load(artifact(
        features=["metadata.exposure", "metadata.flash", "metadata.site=north", "metadata.absent"],
        coefficients=[1.0, 1.0, 1.0, 1.0],
    ))  # fmt: skip
    s = scores(metadata={"exposure": 0.25, "flash": True, "site": "north"})
    assert model.features(s) == [0.25, 1.0, 1.0, 0.0]
    assert model.features(scores(metadata={"exposure": "high", "site": "south"})) == [0, 0, 0, 0]


def test_hour_features_are_cyclic() -> None:
    model = load(artifact(features=["hour_sin", "hour_cos"], coefficients=[1.0, 1.0]))
    midnight = model.features(scores(captured_at=NOON.replace(hour=0)))
    assert midnight == pytest.approx([0.0, 1.0])


def test_extreme_coefficients_give_a_probability_not_an_overflow() -> None:
    model = load(artifact(features=["margin"], coefficients=[1e300], intercept=1e300))
    assert model.predict(scores())[0] == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (artifact(format="sklearn-pickle"), "format"),
        (artifact(format_version=2), "format_version"),
        (artifact(coefficients=[1.0]), "coefficients has 1 values for 5 features"),
        (artifact(features=["margin", "margin"], coefficients=[1, 1]), "unique"),
        (artifact(features=["__import__('os')"], coefficients=[1]), "unknown feature"),
        (artifact(features=["pixels"], coefficients=[1]), "unknown feature"),
        (artifact(features=["margin"], coefficients=[1], scales=[0.0]), "scales must be positive"),
        (artifact(features=[]), "at least 1"),
        ({"format": "hone-weakness-logreg"}, "Field required"),
    ],
)
def test_invalid_artifacts_are_refused_with_a_reason(doc: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidWeaknessModel, match=message):
        load(doc)


def test_non_finite_numbers_are_refused() -> None:
    raw = json.dumps(artifact(features=["margin"], coefficients=[float("nan")]))
    with pytest.raises(InvalidWeaknessModel):
        WeaknessModel.from_json(raw.encode())


def test_a_pickle_is_refused_not_loaded() -> None:
    with pytest.raises(InvalidWeaknessModel, match="Invalid JSON"):
        WeaknessModel.from_json(pickle.dumps({"format": "hone-weakness-logreg"}))


def test_a_model_built_for_another_production_model_is_refused() -> None:
    with pytest.raises(InvalidWeaknessModel, match="built for model 'v1'"):
        load(artifact(), expected="v2")
    assert load(artifact(model_version=None), expected="v2") is not None


def test_the_strategy_abstains_without_a_model_and_scores_with_one() -> None:
    absent = weakness(scores(), None)
    assert absent.abstained
    assert absent.score == 0.0
    present = weakness(scores(camera_id="cam-dark"), load(artifact()))
    assert not present.abstained
    assert 0.0 < present.score < 1.0
    assert present.detail.startswith("P(wrong) ")
    assert "camera=cam-dark +2.50" in present.detail
