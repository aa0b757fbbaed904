"""Metadata risk: the measured error rate of the image's slice (camera, hour-of-day bucket).

Error rate = share of human labels that disagreed with the model's prediction. Small slices are
shrunk towards their camera's rate, and cameras towards the overall rate (Beta priors of
`prior_strength` pseudo-labels), so one unlucky label never makes a slice look dangerous.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from hone_common.events import Scores
from hone_selector.strategies import (
    SLICE_RISK,
    StrategyScore,
    clamp01,
    hour_bucket,
    hour_bucket_label,
)


@dataclass(frozen=True)
class Tally:
    labelled: int = 0
    wrong: int = 0

    def __add__(self, other: Tally) -> Tally:
        return Tally(self.labelled + other.labelled, self.wrong + other.wrong)


@dataclass
class SliceTable:
    """Labels and model errors per (camera, hour bucket), with camera and overall totals."""

    slices: Mapping[tuple[str, int], Tally] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.cameras: dict[str, Tally] = {}
        self.overall = Tally()
        for (camera, _), tally in self.slices.items():
            self.cameras[camera] = self.cameras.get(camera, Tally()) + tally
            self.overall = self.overall + tally

    def estimate(self, camera: str, bucket: int, prior_strength: float) -> tuple[float, float]:
        """(slice error rate, overall error rate), both posterior means."""
        overall = (self.overall.wrong + 1.0) / (self.overall.labelled + 2.0)
        cam = self.cameras.get(camera, Tally())
        camera_rate = (cam.wrong + prior_strength * overall) / (cam.labelled + prior_strength)
        one = self.slices.get((camera, bucket), Tally())
        slice_rate = (one.wrong + prior_strength * camera_rate) / (one.labelled + prior_strength)
        return slice_rate, overall


def slice_risk(
    scores: Scores, table: SliceTable, hour_bucket_hours: int, prior_strength: float
) -> StrategyScore:
    """How much worse than average the slice is: (rate - overall) / (1 - overall), 0 if better.

    Measuring the excess keeps a uniform error level from inflating every priority; the
    uncertainty and weakness strategies already speak for the average image.
    """
    if table.overall.labelled == 0:
        return StrategyScore(SLICE_RISK, 0.0, "no labelled data yet", abstained=True)
    bucket = hour_bucket(scores.captured_at, hour_bucket_hours)
    rate, overall = table.estimate(scores.camera_id, bucket, prior_strength)
    score = clamp01((rate - overall) / (1.0 - overall)) if overall < 1.0 else 0.0
    one = table.slices.get((scores.camera_id, bucket), Tally())
    return StrategyScore(
        SLICE_RISK,
        score,
        f"{scores.camera_id} {hour_bucket_label(bucket, hour_bucket_hours)}: "
        f"{one.wrong}/{one.labelled} wrong, est. {rate:.0%} vs {overall:.0%} overall",
    )
