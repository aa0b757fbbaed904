"""The decision for one scored image: strategies → priority → duplicate, random-control,
threshold and budget checks, in that order. Pure: the state comes in, the decision goes out.

1. Every strategy scores the image and the priority combines them (`priority.py`); the
   priority feeds the adaptive threshold whatever happens next.
2. A near-duplicate of something already requested is never requested (`duplicates.py`).
3. An image in the random-control sample is requested with strategy `random` if the random
   bucket has a token; otherwise it competes like any other image.
4. Otherwise it is requested when its priority is positive, the threshold has warmed up,
   the priority reaches the adaptive threshold (`threshold.py`; with proportional acceptance,
   a reproducible draw per image passes with probability min(1, (priority / threshold) **
   power)) and every budget bucket it needs has a token (`budget.py`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from hone_common.events import Scores
from hone_selector.budget import RANDOM, Budget, refill_factor
from hone_selector.duplicates import DuplicateIndex, RequestedImage
from hone_selector.priority import combine
from hone_selector.settings import SelectorSettings
from hone_selector.strategies import StrategyScore
from hone_selector.strategies.random_control import in_random_control, random_draw, random_reason
from hone_selector.strategies.rarity import rarity
from hone_selector.strategies.slice_risk import SliceTable, slice_risk
from hone_selector.strategies.uncertainty import uncertainty
from hone_selector.strategies.weakness import weakness
from hone_selector.threshold import AdaptiveThreshold
from hone_selector.weakness_model import WeaknessModel

REQUESTED = "requested"
RANDOM_PICK = "random"
BELOW_THRESHOLD = "below_threshold"
NO_SIGNAL = "no_signal"
WARMING_UP = "warming_up"
BUDGET = "budget"
DUPLICATE = "duplicate"


@dataclass
class SelectionState:
    """What the selector knows when it decides; the budget, threshold, duplicates and queue
    are updated by every decision."""

    class_counts: Mapping[str, int]
    slices: SliceTable
    weakness_models: Mapping[str, WeaknessModel | None]
    budget: Budget
    threshold: AdaptiveThreshold
    duplicates: DuplicateIndex
    open_reviews: int = 0


@dataclass(frozen=True)
class Decision:
    scores: Scores
    outcome: str
    """`requested`, `random`, or why not: `below_threshold`, `no_signal`, `warming_up`,
    `budget:<bucket>`, `duplicate:<image|object|camera>`."""
    priority: float = 0.0
    threshold: float | None = None
    strategy_scores: tuple[StrategyScore, ...] = ()
    reasons: tuple[StrategyScore, ...] = ()

    @property
    def requested(self) -> bool:
        return self.outcome in (REQUESTED, RANDOM_PICK)


def requested_image(scores: Scores) -> RequestedImage:
    return RequestedImage(
        scores.image_id,
        scores.camera_id,
        scores.object_id,
        scores.captured_at,
        scores.label,
        tuple(scores.probabilities),
    )


class Selector:
    def __init__(self, settings: SelectorSettings, state: SelectionState) -> None:
        self.settings = settings
        self.state = state

    def score(self, scores: Scores) -> tuple[StrategyScore, ...]:
        s = self.settings
        return (
            rarity(scores, self.state.class_counts, s.rarity.smoothing),
            uncertainty(
                scores, s.uncertainty.margin, s.uncertainty.confidence, s.uncertainty.entropy
            ),
            weakness(scores, self.state.weakness_models.get(scores.model_version)),
            slice_risk(
                scores,
                self.state.slices,
                s.slice_risk.hour_bucket_hours,
                s.slice_risk.prior_strength,
            ),
        )

    def decide(self, scores: Scores, now: float) -> Decision:
        state, budget_settings = self.state, self.settings.budget
        strategy_scores = self.score(scores)
        priority = combine(
            strategy_scores, self.settings.weights.as_dict(), self.settings.reason_min_score
        )
        state.threshold.observe(priority.value, now)

        def decision(
            outcome: str, threshold: float | None = None, reasons: tuple[StrategyScore, ...] = ()
        ) -> Decision:
            if outcome in (REQUESTED, RANDOM_PICK):
                state.duplicates.add(requested_image(scores))
                state.open_reviews += 1
            return Decision(scores, outcome, priority.value, threshold, strategy_scores, reasons)

        kind = state.duplicates.find(requested_image(scores))
        if kind is not None:
            return decision(f"{DUPLICATE}:{kind}")

        factor = refill_factor(
            state.open_reviews, budget_settings.target_queue, budget_settings.min_refill_factor
        )
        share, seed = self.settings.random.share, self.settings.random.seed
        if in_random_control(scores.image_id, share, seed) and (
            state.budget.try_take([RANDOM], now, factor) is None
        ):
            return decision(RANDOM_PICK, reasons=(random_reason(share),))

        threshold = state.threshold.value(state.budget.strategic_rate(factor), now)
        if priority.value <= 0.0 or not priority.reasons:
            return decision(NO_SIGNAL, threshold)
        if state.threshold.warming_up:
            return decision(WARMING_UP)
        chance = state.threshold.acceptance(priority.value, threshold)
        if chance <= 0.0 or (
            chance < 1.0 and random_draw(scores.image_id, f"{seed}:accept") >= chance
        ):
            return decision(BELOW_THRESHOLD, threshold)
        names = state.budget.strategic_buckets(scores.camera_id, scores.label)
        refused = state.budget.try_take(names, now, factor)
        if refused is not None:
            return decision(f"{BUDGET}:{refused}", threshold)
        return decision(REQUESTED, threshold, priority.reasons)
