"""Names private to one integration test (classes, cameras, objects, random seed), so events
other tests publish on the shared topics cannot change what the test measures."""

from __future__ import annotations

import uuid
from typing import Any

from hone_common.events import Label, LabelSubmitted, Scores
from hone_selector.strategies.random_control import in_random_control
from tests.unit.selector import builders


class World:
    def __init__(self, random_share: float = 0.02) -> None:
        self.tag = uuid.uuid4().hex[:8]
        self.seed = f"it-{self.tag}"
        self.random_share = random_share
        self.classes = [self.cls(name) for name in builders.CLASSES]

    def cls(self, name: str) -> str:
        return f"{name} {self.tag}"

    def camera(self, name: str) -> str:
        return f"{name}-{self.tag}"

    def image_id(self, *, random_control: bool = False) -> uuid.UUID:
        """A fresh image id inside (or outside) this world's random-control sample."""
        while True:
            candidate = uuid.uuid4()
            if in_random_control(candidate, self.random_share, self.seed) == random_control:
                return candidate

    def scores(
        self,
        label: str,
        top: float = 0.9,
        *,
        second: str | None = None,
        camera: str = "cam",
        random_control: bool = False,
        **kwargs: Any,
    ) -> Scores:
        return builders.scores(
            self.cls(label),
            top,
            second=self.cls(second) if second else None,
            classes=self.classes,
            camera_id=self.camera(camera),
            image_id=kwargs.pop("image_id", None) or self.image_id(random_control=random_control),
            **kwargs,
        )

    def certain(self, label: str, **kwargs: Any) -> Scores:
        """A prediction with no doubt at all: no strategy but rarity can fire on it."""
        probs = [1.0 if name == self.cls(label) else 0.0 for name in self.classes]
        return self.scores(label, probs=probs, **kwargs)

    def label(self, image_id: uuid.UUID, verdict: str, name: str | None = None) -> LabelSubmitted:
        return LabelSubmitted(
            producer="labeling-api",
            payload=Label(
                image_id=image_id,
                verdict=verdict,  # type: ignore[arg-type]
                label=self.cls(name) if name else None,
                labeler_id="it-labeler",
            ),
        )
