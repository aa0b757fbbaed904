"""The weakness model: a logistic regression, stored as JSON, that estimates P(production model is
wrong) from the prediction, quality features and metadata of one image.

The trainer writes it, the gatekeeper announces its URI in `model.promoted.weakness_model_uri`.
Format (`hone-weakness-logreg`, version 1; see services/selector/README.md):

    {"format": "hone-weakness-logreg", "format_version": 1,
     "model_version": "v7",                     # the production model it describes (optional)
     "features": ["margin", "log_sharpness", "camera=cam-3", "hour_bucket=6", ...],
     "coefficients": [-2.1, -0.4, 1.3, 0.8, ...],
     "intercept": -1.7,
     "means": [...], "scales": [...],          # optional: x' = (x - mean) / scale
     "hour_bucket_hours": 3}

Feature names form a small closed grammar (`FEATURE`), so a model cannot ask for anything the
selector does not compute; no code is ever loaded (no pickle).
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from hone_common.events import Scores
from hone_selector.strategies import hour_bucket

FORMAT = "hone-weakness-logreg"

PLAIN_FEATURES = frozenset({
    "confidence", "margin", "entropy",               # the prediction
    "brightness", "contrast", "sharpness", "log_sharpness",  # image quality
    "hour_sin", "hour_cos",                          # time of day on the circle
})  # fmt: skip
FEATURE = re.compile(
    r"^(?:(?P<plain>[a-z_]+)"
    r"|camera=(?P<camera>.+)"
    r"|label=(?P<label>.+)"
    r"|hour_bucket=(?P<bucket>\d{1,2})"
    r"|metadata\.(?P<key>[^=]{1,64})(?:=(?P<value>.*))?)$"
)
FeatureName = Annotated[str, StringConstraints(min_length=1, max_length=200)]


class InvalidWeaknessModel(ValueError):
    """The artifact cannot be used; the strategy abstains and the reason is recorded."""


class WeaknessArtifact(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    format: Literal["hone-weakness-logreg"]
    format_version: Literal[1]
    model_version: str | None = None
    features: list[FeatureName] = Field(min_length=1, max_length=10_000)
    coefficients: list[float]
    intercept: float
    means: list[float] | None = None
    scales: list[float] | None = None
    hour_bucket_hours: int = Field(3, ge=1, le=24)

    @model_validator(mode="after")
    def _consistent(self) -> WeaknessArtifact:
        n = len(self.features)
        for name in ("coefficients", "means", "scales"):
            values = getattr(self, name)
            if values is not None and len(values) != n:
                raise ValueError(f"{name} has {len(values)} values for {n} features")
        numbers = [self.intercept, *self.coefficients, *(self.means or []), *(self.scales or [])]
        if not all(math.isfinite(x) for x in numbers):
            raise ValueError("every number must be finite")
        if self.scales is not None and any(s <= 0 for s in self.scales):
            raise ValueError("scales must be positive")
        if len(set(self.features)) != n:
            raise ValueError("features must be unique")
        for feature in self.features:
            match = FEATURE.match(feature)
            if match is None or (match["plain"] and match["plain"] not in PLAIN_FEATURES):
                raise ValueError(f"unknown feature {feature!r}")
        return self


def _metadata_number(value: object) -> float:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return 0.0


class WeaknessModel:
    """A loaded, validated weakness model; `predict` never raises on a valid `Scores`."""

    def __init__(self, artifact: WeaknessArtifact) -> None:
        self.artifact = artifact
        n = len(artifact.features)
        self._means = artifact.means or [0.0] * n
        self._scales = artifact.scales or [1.0] * n

    @classmethod
    def from_json(cls, raw: bytes, *, expected_version: str | None = None) -> WeaknessModel:
        try:
            artifact = WeaknessArtifact.model_validate_json(raw)
        except ValidationError as error:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}"
                for e in error.errors()[:5]
            )
            raise InvalidWeaknessModel(problems) from error
        if expected_version and artifact.model_version not in (None, expected_version):
            raise InvalidWeaknessModel(
                f"built for model {artifact.model_version!r}, "
                f"promoted model is {expected_version!r}"
            )
        return cls(artifact)

    def features(self, scores: Scores) -> list[float]:
        hours = scores.captured_at.hour + scores.captured_at.minute / 60.0
        bucket = hour_bucket(scores.captured_at, self.artifact.hour_bucket_hours)
        plain = {
            "confidence": scores.confidence,
            "margin": scores.margin,
            "entropy": scores.entropy,
            "brightness": scores.quality.brightness,
            "contrast": scores.quality.contrast,
            "sharpness": scores.quality.sharpness,
            "log_sharpness": math.log1p(scores.quality.sharpness),
            "hour_sin": math.sin(2 * math.pi * hours / 24),
            "hour_cos": math.cos(2 * math.pi * hours / 24),
        }
        values: list[float] = []
        for name in self.artifact.features:
            match = FEATURE.match(name)
            assert match is not None  # validated on load
            if match["plain"]:
                values.append(plain[match["plain"]])
            elif match["camera"] is not None:
                values.append(float(scores.camera_id == match["camera"]))
            elif match["label"] is not None:
                values.append(float(scores.label == match["label"]))
            elif match["bucket"] is not None:
                values.append(float(bucket == int(match["bucket"])))
            elif match["value"] is not None:
                values.append(float(str(scores.metadata.get(match["key"])) == match["value"]))
            else:
                values.append(_metadata_number(scores.metadata.get(match["key"])))
        return values

    def predict(self, scores: Scores) -> tuple[float, list[tuple[str, float]]]:
        """P(model wrong) and the features that pushed it most, as (name, logit contribution)."""
        contributions = [
            (name, coef * (x - mean) / scale)
            for name, coef, x, mean, scale in zip(
                self.artifact.features,
                self.artifact.coefficients,
                self.features(scores),
                self._means,
                self._scales,
                strict=True,
            )
        ]
        logit = self.artifact.intercept + sum(c for _, c in contributions)
        probability = 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, logit))))
        top = sorted((c for c in contributions if c[1] != 0), key=lambda c: -abs(c[1]))[:3]
        return probability, top
