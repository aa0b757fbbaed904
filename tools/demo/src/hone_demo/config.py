"""The demo's knobs: one frozen object built by the CLI, turned into the services' environment."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from hone_trainer.model.training import TrainConfig

ROOT = Path(__file__).resolve().parents[4]
"""The repository checkout (tools/demo/src/hone_demo/config.py -> the root)."""

CONFUSABLE = frozenset({"T-shirt/top", "Pullover", "Coat", "Shirt"})
"""Fashion-MNIST's upper-body garments: genuinely hard to tell apart at 28x28."""


def new_run_id(now: datetime | None = None) -> str:
    """Sortable and usable as a PostgreSQL schema suffix, Kafka group and model name."""
    return (now or datetime.now(UTC)).strftime("d%Y%m%d%H%M%S")


@dataclass(frozen=True)
class DemoConfig:
    run_id: str = field(default_factory=new_run_id)
    frames: int = 4500
    rate: float = 7.5
    """Frames per second the cameras send: 4500 at 7.5/s is a 10-minute stream; with start-up,
    the last round and its gate the default run takes about 15 minutes on 2 cores (measured:
    5400 frames took 17 min on a busy machine)."""
    labelers: int = 3
    answer_seconds: float = 0.6
    """How long one simulated labeler takes per answer."""
    error_rate: float = 0.03
    ambiguous_share: float = 0.5
    """Share of genuinely confusable images (see `CONFUSABLE`) answered `ambiguous`."""
    reviews_per_hour: float = 4800.0
    """Labels come at the budget's pace, not the stream's: ~700 answers in a 10-minute stream."""
    random_share: float = 0.04
    """Share of the stream the selector requests uniformly at random (its control sample)."""
    seed: int = 0
    seed_per_class: int = 20
    every_labels: int = 150
    every_minutes: float = 4.0
    epochs: int = 8
    heldout: int = 1000
    """Held-out images rendered through the cameras to judge Hone and the control."""
    settle_minutes: float = 4.0
    """After the stream ends: how long to wait for the last training round to be judged."""
    alpha: float = 0.2
    min_accuracy_gain: float = 0.0
    max_macro_f1_drop: float = 0.03
    test_share: float = 0.25
    http_port: int = 8000
    """labeling-api's port; ingest, scorer, selector, trainer, gatekeeper take the next five."""
    artifacts: Path = ROOT / "artifacts" / "demo"
    state_dir: Path = ROOT / ".local-stack" / "services"
    env_file: Path = ROOT / ".local-stack" / "hone.env"

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z][a-z0-9_]{0,30}", self.run_id):
            raise ValueError("run id: lowercase letters, digits and _, at most 31 characters")

    @classmethod
    def small(cls, **overrides: object) -> DemoConfig:
        """A few hundred frames and two quick training rounds (CI, a first look)."""
        base = cls(
            frames=700,
            rate=12.0,
            labelers=2,
            answer_seconds=0.2,
            reviews_per_hour=20000.0,
            random_share=0.05,
            seed_per_class=5,
            every_labels=50,
            every_minutes=2.0,
            epochs=3,
            heldout=300,
            settle_minutes=3.0,
            alpha=0.5,
            max_macro_f1_drop=0.1,
            test_share=0.3,
        )
        return replace(base, **overrides)  # type: ignore[arg-type]

    @property
    def model_name(self) -> str:
        return f"demo_{self.run_id}"

    @property
    def run_dir(self) -> Path:
        return self.artifacts / self.run_id

    @property
    def schema_suffix(self) -> str:
        return f"demo_{self.run_id}"

    def train_config(self) -> TrainConfig:
        """The one training configuration of the bootstrap, the trainer and the control arm."""
        return TrainConfig(epochs=self.epochs, threads=1, progress=False, seed=self.seed)
