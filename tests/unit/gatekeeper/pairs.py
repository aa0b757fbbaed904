"""Building paired predictions by counts: how many images both models get right, only the
candidate, only production, neither, per class and camera."""

from __future__ import annotations

from dataclasses import dataclass, field

from hone_gatekeeper.evaluation import PairedPredictions


@dataclass
class Pairs:
    labels: list[str] = field(default_factory=list)
    cameras: list[str | None] = field(default_factory=list)
    candidate: list[str] = field(default_factory=list)
    production: list[str] = field(default_factory=list)

    def add(
        self,
        label: str,
        *,
        both: int = 0,
        candidate_only: int = 0,
        production_only: int = 0,
        neither: int = 0,
        camera: str | None = "cam-1",
    ) -> Pairs:
        wrong = f"not-{label}"
        for n, cand_right, prod_right in (
            (both, True, True),
            (candidate_only, True, False),
            (production_only, False, True),
            (neither, False, False),
        ):
            self.labels += [label] * n
            self.cameras += [camera] * n
            self.candidate += [label if cand_right else wrong] * n
            self.production += [label if prod_right else wrong] * n
        return self

    def paired(self, *, with_production: bool = True) -> PairedPredictions:
        return PairedPredictions(
            self.labels,
            self.cameras,
            self.candidate,
            self.production if with_production else None,
        )
