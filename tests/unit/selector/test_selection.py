"""The whole decision, in memory: strategies, priority, duplicates, random control, threshold,
budget; and a simulated hour of stream."""

from __future__ import annotations

import random
import uuid
from collections import Counter
from datetime import timedelta

from hone_common.events import Scores
from hone_selector.budget import Budget
from hone_selector.duplicates import DuplicateIndex
from hone_selector.selection import (
    BELOW_THRESHOLD,
    NO_SIGNAL,
    RANDOM_PICK,
    REQUESTED,
    WARMING_UP,
    SelectionState,
    Selector,
)
from hone_selector.settings import BudgetSettings, RandomSettings, SelectorSettings
from hone_selector.strategies.random_control import in_random_control
from hone_selector.strategies.slice_risk import SliceTable
from hone_selector.threshold import AdaptiveThreshold
from hone_selector.weakness_model import WeaknessArtifact, WeaknessModel
from tests.unit.selector.builders import CLASSES, NOON, scores

T0 = 1_800_000_000.0
NO_RANDOM = RandomSettings(share=0.0)


def selector(
    settings: SelectorSettings | None = None,
    class_counts: dict[str, int] | None = None,
    weakness: dict[str, WeaknessModel | None] | None = None,
    open_reviews: int = 0,
    warmup: int = 0,
) -> Selector:
    settings = settings or SelectorSettings()
    threshold = settings.threshold.model_copy(update={"warmup_images": warmup})
    settings = settings.model_copy(update={"threshold": threshold})
    state = SelectionState(
        class_counts=class_counts or {},
        slices=SliceTable({}),
        weakness_models=weakness or {},
        budget=Budget(settings.budget, {}, T0),
        threshold=AdaptiveThreshold(settings.threshold, None, T0),
        duplicates=DuplicateIndex(settings.duplicates),
        open_reviews=open_reviews,
    )
    return Selector(settings, state)


def not_random(seed: str = "hone", share: float = 0.02) -> uuid.UUID:
    while in_random_control(image_id := uuid.uuid4(), share, seed):
        pass
    return image_id


def random_one(seed: str = "hone", share: float = 0.02) -> uuid.UUID:
    while not in_random_control(image_id := uuid.uuid4(), share, seed):
        pass
    return image_id


def stream(n: int, rng: random.Random, per_second: float = 3.0) -> list[tuple[float, Scores]]:
    """n images from 4 cameras; the model is sure of most of them and torn on some."""
    items = []
    for i in range(n):
        label = rng.choice(CLASSES)
        top = rng.betavariate(5, 1.2)  # mostly confident
        second = rng.choice([c for c in CLASSES if c != label])
        runner_up = rng.uniform(0, 1 - top)
        at = NOON + timedelta(seconds=i / per_second)
        s = scores(label, top, second=second, runner_up=runner_up,
                   camera_id=f"cam-{i % 4}", captured_at=at)  # fmt: skip
        items.append((T0 + i / per_second, s))
    return items


def test_an_uncertain_image_is_requested_with_uncertainty_as_its_reason() -> None:
    sel = selector(SelectorSettings(random=NO_RANDOM))
    decision = sel.decide(scores("Shirt", 0.45, second="T-shirt/top", runner_up=0.40), T0)
    assert decision.outcome == REQUESTED
    assert decision.requested
    assert [r.strategy for r in decision.reasons] == ["uncertainty"]
    assert sel.state.open_reviews == 1


def test_a_certain_prediction_has_no_signal_and_is_not_requested() -> None:
    sel = selector(SelectorSettings(random=NO_RANDOM))
    decision = sel.decide(scores(probs=[1.0] + [0.0] * 9), T0)
    assert decision.outcome == NO_SIGNAL
    assert not decision.requested


def test_no_strategic_request_is_made_while_the_threshold_warms_up() -> None:
    sel = selector(SelectorSettings(random=NO_RANDOM), warmup=3)
    torn = [
        scores("Shirt", 0.45, second="Coat", runner_up=0.44, camera_id=f"c{i}") for i in range(4)
    ]
    outcomes = [sel.decide(s, T0 + i).outcome for i, s in enumerate(torn)]
    assert outcomes == [WARMING_UP, WARMING_UP, REQUESTED, REQUESTED]
    # Random control does not wait for the threshold.
    assert selector(warmup=5).decide(scores(image_id=random_one()), T0).outcome == RANDOM_PICK


def test_a_rare_class_outranks_a_common_one_at_equal_confidence() -> None:
    counts = {**dict.fromkeys(CLASSES, 300), "Shirt": 2}
    sel = selector(SelectorSettings(random=NO_RANDOM), class_counts=counts)
    rare = sel.decide(scores("Shirt", 0.8), T0)
    common = sel.decide(scores("Trouser", 0.8, camera_id="cam-2"), T0)
    assert rare.priority > common.priority
    assert "rarity" in [r.strategy for r in rare.reasons]
    assert "rarity" not in [r.strategy for r in common.reasons]


def test_the_weakness_model_of_the_scoring_model_version_is_used() -> None:
    artifact = WeaknessArtifact(
        format="hone-weakness-logreg", format_version=1,
        features=["camera=cam-dark"], coefficients=[6.0], intercept=-3.0,
    )  # fmt: skip
    sel = selector(SelectorSettings(random=NO_RANDOM), weakness={"v2": WeaknessModel(artifact)})
    dark_v2 = sel.decide(scores(camera_id="cam-dark", model_version="v2"), T0)
    dark_v1 = sel.decide(scores(camera_id="cam-dark", model_version="v1", object_id="x"), T0)
    by_name = {s.strategy: s for s in dark_v2.strategy_scores}
    assert by_name["weakness"].score > 0.9
    assert "weakness" in [r.strategy for r in dark_v2.reasons]
    assert {s.strategy: s for s in dark_v1.strategy_scores}["weakness"].abstained


def test_two_frames_of_the_same_object_give_one_request() -> None:
    sel = selector(SelectorSettings(random=NO_RANDOM))
    first = sel.decide(scores("Shirt", 0.4, object_id="sku-9", camera_id="cam-1"), T0)
    second = sel.decide(scores("Shirt", 0.4, object_id="sku-9", camera_id="cam-2"), T0 + 1)
    assert first.outcome == REQUESTED
    assert second.outcome == "duplicate:object"
    assert sel.state.open_reviews == 1


def test_a_random_control_image_is_requested_whatever_its_scores() -> None:
    sel = selector()
    decision = sel.decide(scores(probs=[1.0] + [0.0] * 9, image_id=random_one()), T0)
    assert decision.outcome == RANDOM_PICK
    assert [r.strategy for r in decision.reasons] == ["random"]


def test_an_exhausted_budget_refuses_with_the_bucket_that_ran_out() -> None:
    budget = BudgetSettings(reviews_per_hour=6, random_share=0.0, burst_minutes=10)
    sel = selector(SelectorSettings(random=NO_RANDOM, budget=budget))
    first = sel.decide(scores("Shirt", 0.4, image_id=not_random()), T0)
    second = sel.decide(scores("Coat", 0.4, camera_id="cam-2"), T0 + 1)
    assert first.outcome == REQUESTED
    assert second.outcome == "budget:strategic"
    later = sel.decide(scores("Bag", 0.4, camera_id="cam-3"), T0 + 601)
    assert later.outcome == REQUESTED


def test_a_simulated_hour_stays_within_budget_and_picks_the_uncertain_images() -> None:
    settings = SelectorSettings(
        budget=BudgetSettings(reviews_per_hour=120, random_share=0.1, burst_minutes=10)
    )
    sel = selector(settings)
    items = stream(10_800, random.Random(7))  # 3 images/s for an hour
    decisions = [sel.decide(s, now) for now, s in items]
    outcomes = Counter(d.outcome.partition(":")[0] for d in decisions)
    strategic = [d for d in decisions if d.outcome == REQUESTED]
    randoms = [d for d in decisions if d.outcome == RANDOM_PICK]

    assert 108 <= len(strategic) <= 108 + 18 + 1  # 90% of 120/h plus the starting burst
    assert 12 <= len(randoms) <= 12 + 2 + 1  # 10% of 120/h plus its burst
    assert outcomes["below_threshold"] > 9000  # the threshold, not the tokens, turns most away
    mean_margin = sum(s.margin for _, s in items) / len(items)
    picked_margin = sum(d.scores.margin for d in strategic) / len(strategic)
    random_margin = sum(d.scores.margin for d in randoms) / len(randoms)
    assert picked_margin < mean_margin / 3
    assert random_margin > picked_margin * 2  # random picks ignore the scores


def test_backpressure_slows_requests_as_the_unanswered_queue_grows() -> None:
    budget = BudgetSettings(reviews_per_hour=120, random_share=0.0, burst_minutes=10,
                            target_queue=20)  # fmt: skip
    items = stream(10_800, random.Random(8))
    answered = selector(SelectorSettings(budget=budget, random=NO_RANDOM))
    unanswered = selector(SelectorSettings(budget=budget, random=NO_RANDOM))
    jammed = selector(SelectorSettings(budget=budget, random=NO_RANDOM), open_reviews=200)
    answered_count = unanswered_count = jammed_count = 0
    for now, s in items:
        answered_count += answered.decide(s, now).requested
        answered.state.open_reviews = 0  # labelers answer at once
        unanswered_count += unanswered.decide(s, now).requested
        jammed_count += jammed.decide(s, now).requested
    assert 120 <= answered_count <= 120 + 20 + 1
    assert unanswered.state.open_reviews == unanswered_count
    assert 40 < unanswered_count < answered_count * 0.75
    # 200 open reviews, target 20: refill at 10% or less (12/h), plus the starting burst of 20.
    assert jammed_count <= 12 + 20 + 1


def test_the_same_stream_replayed_gives_the_same_decisions() -> None:
    items = stream(2000, random.Random(9))
    runs = []
    for _ in range(2):
        sel = selector()
        runs.append([sel.decide(s, now).outcome for now, s in items])
    assert runs[0] == runs[1]
    assert runs[0].count(BELOW_THRESHOLD) > 0


def test_proportional_acceptance_requests_some_images_below_the_quantile_reproducibly() -> None:
    budget = BudgetSettings(reviews_per_hour=120, random_share=0.0, burst_minutes=10)
    settings = SelectorSettings(budget=budget, random=NO_RANDOM)
    proportional = settings.model_copy(
        update={"threshold": settings.threshold.model_copy(update={"acceptance": "proportional"})}
    )
    items = stream(10_800, random.Random(10))

    def requested(s: SelectorSettings) -> list[Scores]:
        sel = selector(s)
        return [d.scores for d in (sel.decide(x, now) for now, x in items) if d.requested]

    top, drawn = requested(settings), requested(proportional)
    assert drawn == requested(proportional)  # the draw is a hash of the image: a replay agrees
    assert 108 <= len(drawn) <= 120 + 20 + 1  # the same budget holds
    top_margin = sum(s.margin for s in top) / len(top)
    drawn_margin = sum(s.margin for s in drawn) / len(drawn)
    mean_margin = sum(s.margin for _, s in items) / len(items)
    assert top_margin < drawn_margin < mean_margin  # less extreme than the top, still skewed
