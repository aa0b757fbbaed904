"""Each selection strategy on its own: scores in [0, 1], abstention, and the reason it gives."""

from __future__ import annotations

import uuid
from datetime import timedelta, timezone

import pytest

from hone_selector.strategies import RANDOM, hour_bucket, hour_bucket_label
from hone_selector.strategies.random_control import in_random_control, random_draw, random_reason
from hone_selector.strategies.rarity import rarity
from hone_selector.strategies.slice_risk import SliceTable, Tally, slice_risk
from hone_selector.strategies.uncertainty import uncertainty
from tests.unit.selector.builders import CLASSES, NOON, scores

EVEN = dict.fromkeys(CLASSES, 100)

# --- rarity --------------------------------------------------------------------------------


def test_rarity_abstains_before_any_label() -> None:
    result = rarity(scores("Shirt"), {})
    assert result.abstained
    assert result.score == 0.0


def test_a_class_without_labels_among_many_scores_close_to_one() -> None:
    counts = {**EVEN, "Shirt": 0}
    result = rarity(scores("Shirt"), counts)
    assert result.score > 0.9
    assert not result.abstained
    assert "Shirt: 0 of 900 labels" in result.detail


def test_a_class_holding_its_even_share_scores_zero() -> None:
    assert rarity(scores("Shirt"), EVEN).score == 0.0
    assert rarity(scores("Shirt"), {**EVEN, "Shirt": 400}).score == 0.0


def test_rarity_grows_as_the_class_gets_rarer() -> None:
    values = [rarity(scores("Shirt"), {**EVEN, "Shirt": n}).score for n in (90, 50, 10, 1)]
    assert values == sorted(values)
    assert values[0] < values[-1]


def test_rarity_ignores_counts_of_classes_the_model_does_not_have() -> None:
    counts = {**EVEN, "Hat": 100_000}
    assert rarity(scores("Shirt"), counts).score == 0.0


# --- uncertainty ---------------------------------------------------------------------------


def test_a_confident_prediction_scores_low_and_a_torn_one_high() -> None:
    sure = uncertainty(scores("Trouser", 0.99))
    torn = uncertainty(scores("Shirt", 0.45, second="T-shirt/top", runner_up=0.44))
    assert sure.score < 0.05
    assert torn.score > 0.6
    assert "margin 0.01" in torn.detail


def test_margin_dominates_uncertainty_by_default() -> None:
    # Same confidence; the small-margin image must rank above the high-entropy one.
    small_margin = scores("Shirt", 0.5, second="Coat", runner_up=0.48)
    spread = scores("Shirt", 0.5)  # the other 0.5 spread over nine classes: higher entropy
    assert small_margin.entropy < spread.entropy
    assert uncertainty(small_margin).score > uncertainty(spread).score


def test_uncertainty_weights_can_select_pure_margin() -> None:
    s = scores("Shirt", 0.6, second="Coat", runner_up=0.3)
    assert uncertainty(s, margin=1, confidence=0, entropy=0).score == pytest.approx(0.7)


def test_uncertainty_stays_in_unit_interval_for_a_uniform_prediction() -> None:
    s = scores(probs=[0.1] * 10)
    result = uncertainty(s)
    assert 0.99 <= result.score <= 1.0


# --- slice risk ----------------------------------------------------------------------------


def test_slice_risk_abstains_without_labelled_data() -> None:
    result = slice_risk(scores(), SliceTable({}), 3, 20)
    assert result.abstained
    assert result.score == 0.0


def test_a_slice_with_many_errors_is_risky_and_an_average_one_is_not() -> None:
    table = SliceTable(
        {
            ("cam-dark", 6): Tally(labelled=200, wrong=120),
            ("cam-1", 4): Tally(labelled=2000, wrong=200),
        }
    )
    at_dusk = NOON.replace(hour=19)  # bucket 6 of 3-hour buckets
    risky = slice_risk(scores(camera_id="cam-dark", captured_at=at_dusk), table, 3, 20)
    normal = slice_risk(scores(camera_id="cam-1", captured_at=NOON), table, 3, 20)
    assert risky.score > 0.3
    assert normal.score == 0.0
    assert "cam-dark 18-21h: 120/200 wrong" in risky.detail


def test_a_tiny_slice_does_not_dominate_thanks_to_the_prior() -> None:
    table = SliceTable(
        {
            ("cam-1", 4): Tally(labelled=1000, wrong=100),
            ("cam-new", 4): Tally(labelled=1, wrong=1),
        }
    )
    tiny = slice_risk(scores(camera_id="cam-new"), table, 3, prior_strength=20)
    assert tiny.score < 0.1
    big = SliceTable({**table.slices, ("cam-new", 4): Tally(labelled=100, wrong=100)})
    assert slice_risk(scores(camera_id="cam-new"), big, 3, 20).score > 0.7


def test_an_unseen_slice_of_a_bad_camera_inherits_the_cameras_rate() -> None:
    table = SliceTable(
        {
            ("cam-1", 4): Tally(labelled=1000, wrong=100),
            ("cam-bad", 4): Tally(labelled=300, wrong=150),
        }
    )
    night = NOON.replace(hour=1)  # bucket 0: no label there yet
    result = slice_risk(scores(camera_id="cam-bad", captured_at=night), table, 3, 20)
    assert result.score > 0.2


def test_hour_buckets_follow_the_capture_times_own_offset() -> None:
    local = NOON.astimezone(timezone(timedelta(hours=9)))  # 21:00 local
    assert hour_bucket(local, 3) == 7
    assert hour_bucket_label(7, 3) == "21-24h"
    assert hour_bucket_label(4, 5) == "20-24h"


# --- random control ------------------------------------------------------------------------


def test_random_control_decides_the_same_for_the_same_image_and_seed() -> None:
    image_id = uuid.uuid4()
    assert random_draw(image_id, "s") == random_draw(image_id, "s")
    assert random_draw(image_id, "s") != random_draw(image_id, "other seed")


def test_random_control_picks_its_share_of_the_stream() -> None:
    ids = [uuid.UUID(int=i) for i in range(20_000)]
    picked = sum(in_random_control(i, 0.02, "hone") for i in ids)
    assert 330 <= picked <= 470  # 2% of 20,000 = 400, ±3.5 standard deviations


def test_random_control_share_zero_picks_nothing_and_one_picks_everything() -> None:
    ids = [uuid.uuid4() for _ in range(200)]
    assert not any(in_random_control(i, 0.0, "hone") for i in ids)
    assert all(in_random_control(i, 1.0, "hone") for i in ids)


def test_random_reason_is_marked_random() -> None:
    reason = random_reason(0.02)
    assert reason.strategy == RANDOM
    assert reason.score == 1.0
    assert "2.0%" in reason.detail
