"""The weakness model: features as the selector computes them, the fit, the hold-out report, the
export (checked by loading it with the selector's own loader), and out-of-fold predictions."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt
import pytest

from hone_common.events import Quality, Scores
from hone_selector.weakness_model import WeaknessModel
from hone_trainer.settings import WeaknessSettings
from hone_trainer.weakness import (
    Context,
    FailureRows,
    build_weakness_model,
    feature_matrix,
    fit_logistic,
    out_of_fold,
    predict,
)

CLASSES = ["cat", "dog", "fox"]


def synthetic(n: int, seed: int = 0) -> FailureRows:
    """Failures concentrated on camera `dark` and on unsure predictions."""
    rng = np.random.default_rng(seed)
    contexts, probabilities, wrong = [], [], []
    for _ in range(n):
        camera = rng.choice(["dark", "day", "side"])
        top = rng.uniform(0.34, 1.0)
        rest = (1 - top) * rng.dirichlet([1, 1])
        order = rng.permutation(3)
        p = np.empty(3)
        p[order] = [top, *rest]
        risk = 0.6 if camera == "dark" else 0.05
        risk += 0.4 * (1 - top)
        contexts.append(
            Context(
                str(uuid.uuid4()),
                str(camera),
                int(rng.integers(0, 24 * 60)) / 60,  # whole minutes, as timestamps carry
                float(rng.uniform(0.05, 0.3) if camera == "dark" else rng.uniform(0.4, 0.8)),
                float(rng.uniform(0.1, 0.3)),
                float(rng.uniform(1, 50)),
            )
        )
        probabilities.append(p)
        wrong.append(rng.random() < risk)
    return FailureRows(np.array(probabilities), np.array(wrong), contexts, ["out_of_fold"] * n)


def test_the_fit_recovers_a_known_logistic_relation() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4000, 2))
    truth = np.array([1.5, -2.0])
    y = rng.random(4000) < 1 / (1 + np.exp(-(x @ truth - 0.5)))
    coefficients, intercept = fit_logistic(x, y, l2=0.0)
    assert coefficients == pytest.approx(truth, abs=0.2)
    assert intercept == pytest.approx(-0.5, abs=0.15)


def test_the_model_finds_the_weak_camera_and_reports_on_rows_it_did_not_fit() -> None:
    rows = synthetic(1200)
    result = build_weakness_model(rows, CLASSES, "20260301.120000", WeaknessSettings())
    assert result.artifact is not None
    report = result.report
    assert report["rows"] == 1200
    assert report["fit_rows"] + report["holdout"]["rows"] == 1200
    assert 0.15 < report["holdout"]["rows"] / 1200 < 0.35
    assert report["holdout"]["auc"] > 0.75
    assert report["holdout"]["at_base_rate"]["precision"] > rows.wrong.mean()
    coefficients = dict(
        zip(result.artifact["features"], result.artifact["coefficients"], strict=True)
    )
    assert coefficients["camera=dark"] > coefficients["camera=day"]


def test_the_export_loads_in_the_selector_and_predicts_what_the_trainer_predicts() -> None:
    rows = synthetic(600, seed=3)
    result = build_weakness_model(rows, CLASSES, "20260301.120000", WeaknessSettings())
    assert result.artifact is not None
    model = WeaknessModel.from_json(
        json.dumps(result.artifact).encode(), expected_version="20260301.120000"
    )
    artifact = result.artifact
    x = feature_matrix(artifact["features"], rows, CLASSES, artifact["hour_bucket_hours"])
    mine = predict(
        (x - np.array(artifact["means"])) / np.array(artifact["scales"]),
        np.array(artifact["coefficients"]),
        artifact["intercept"],
    )
    for i in range(0, 600, 37):
        theirs, _ = model.predict(scores_for(rows, i))
        assert theirs == pytest.approx(mine[i], abs=1e-6)


def scores_for(rows: FailureRows, i: int) -> Scores:
    """The `image.scored` the scorer would publish for row i (probabilities rounded the same)."""
    p = rows.probabilities[i]
    c = rows.contexts[i]
    top = np.sort(p)[::-1]
    entropy = float(-(p * np.log(p)).sum() / np.log(len(p)))
    hour, minute = int(c.captured_hour), round((c.captured_hour % 1) * 60)
    if minute == 60:
        hour, minute = hour + 1, 0
    captured = datetime(2026, 3, 1, hour % 24, minute, tzinfo=UTC)
    return Scores(
        image_id=uuid.UUID(c.image_id),
        uri="s3://hone-images/x/y.png",
        model_version="20260301.120000",
        classes=CLASSES,
        label=CLASSES[int(np.argmax(p))],
        probabilities=[float(v) for v in p],
        confidence=float(top[0]),
        margin=float(top[0] - top[1]),
        entropy=min(1.0, entropy),
        camera_id=c.camera_id,
        captured_at=captured,
        quality=Quality(brightness=c.brightness, contrast=c.contrast, sharpness=c.sharpness),
    )


def test_hour_features_use_the_capture_times_own_clock() -> None:
    rows = synthetic(3)
    rows = FailureRows(
        rows.probabilities,
        rows.wrong,
        [Context(c.image_id, c.camera_id, 18.5, 0.5, 0.2, 3.0) for c in rows.contexts],
        rows.sources,
    )
    x = feature_matrix(["hour_sin", "hour_cos", "hour_bucket=6"], rows, CLASSES, 3)
    assert x[0, 0] == pytest.approx(np.sin(2 * np.pi * 18.5 / 24))
    assert x[0, 1] == pytest.approx(np.cos(2 * np.pi * 18.5 / 24))
    assert x[0, 2] == 1.0


def test_too_few_rows_or_no_failure_give_no_model_and_say_why() -> None:
    few = build_weakness_model(synthetic(10), CLASSES, "20260301.120000", WeaknessSettings())
    assert few.artifact is None
    assert "too little" in few.report["skipped"]
    rows = synthetic(300)
    never_wrong = FailureRows(
        rows.probabilities, np.zeros(300, dtype=bool), rows.contexts, rows.sources
    )
    none = build_weakness_model(never_wrong, CLASSES, "20260301.120000", WeaknessSettings())
    assert none.artifact is None
    assert "0 failures" in none.report["skipped"]


def test_out_of_fold_predicts_each_row_once_with_a_model_that_never_saw_it() -> None:
    n = 60
    targets = np.repeat(np.arange(3), 20)
    evaluate = np.arange(n) % 4 != 0  # e.g. propagated rows are not evaluated
    trained_on: list[set[int]] = []

    def fit_and_predict(
        train_idx: npt.NDArray[np.int64], predict_idx: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.float64]:
        assert not set(train_idx) & set(predict_idx)
        trained_on.append(set(train_idx.tolist()))
        return np.full((len(predict_idx), 3), 1 / 3)

    index, probabilities = out_of_fold(n, targets, evaluate, 3, 0, fit_and_predict)
    assert sorted(index.tolist()) == np.flatnonzero(evaluate).tolist()
    assert probabilities.shape == (len(index), 3)
    assert len(trained_on) == 3
    # Each row is left out of exactly one fold, and folds are stratified by class.
    assert sum(len(s) for s in trained_on) == 2 * n
    for fold in trained_on:
        per_class = set(np.bincount(targets[sorted(fold)]).tolist())
        assert len(per_class) == 1
        assert per_class <= {13, 14}
