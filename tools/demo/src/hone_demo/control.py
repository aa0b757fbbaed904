"""The yardstick: held-out images rendered through the cameras, Hone's production model scored
on them through TorchServe, and the random-selection control arm trained in-process with the
trainer's own code on as many uniformly random streamed frames as Hone has human labels."""

from __future__ import annotations

import io
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from PIL import Image

from hone_common.torchserve import TorchServeClient
from hone_simulator.cameras import CAMERAS
from hone_simulator.data import FashionMnist
from hone_trainer.model.training import TrainConfig, train

UInt8 = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class Heldout:
    """Images never streamed, as the cameras would have taken them."""

    pngs: list[bytes]
    pixels: UInt8
    labels: list[str]
    cameras: list[str]


def render_heldout(
    dataset: FashionMnist, heldout_ids: npt.NDArray[np.int64], count: int, seed: int
) -> Heldout:
    rng = np.random.default_rng([seed, 7])
    ids = rng.choice(heldout_ids, size=min(count, len(heldout_ids)), replace=False)
    hours = rng.uniform(0.0, 24.0, size=len(ids))
    cameras = list(CAMERAS.values())
    pngs: list[bytes] = []
    pixels: list[UInt8] = []
    names: list[str] = []
    for i, index in enumerate(ids.tolist()):
        camera = cameras[i % len(cameras)]
        # A seed far from the stream's so no held-out frame repeats a streamed one's noise.
        shot = camera.capture(
            dataset.images[index], seed=seed + 1_000_003, frame=i, hour=float(hours[i])
        )
        pngs.append(shot.png)
        pixels.append(shot.pixels)
        names.append(camera.camera_id)
    labels = [dataset.classes[int(dataset.labels[i])] for i in ids.tolist()]
    return Heldout(pngs, np.stack(pixels), labels, names)


@dataclass(frozen=True)
class Score:
    accuracy: float
    per_camera: dict[str, float]
    examples: int


def score(predicted: Sequence[str], heldout: Heldout) -> Score:
    right = np.array([p == t for p, t in zip(predicted, heldout.labels, strict=True)])
    cams = np.array(heldout.cameras)
    per_camera = {c: float(right[cams == c].mean()) for c in sorted(set(heldout.cameras))}
    return Score(float(right.mean()), per_camera, len(right))


async def score_production(
    client: TorchServeClient, heldout: Heldout, model: str, version: str, batch: int = 64
) -> Score:
    """Score the held-out frames with one version through the real serving path."""
    predicted: list[str] = []
    for start in range(0, len(heldout.pngs), batch):
        answer = await client.predict(heldout.pngs[start : start + batch], model, version)
        best = np.argmax(np.asarray(answer.probabilities), axis=1)
        predicted.extend(answer.classes[int(i)] for i in best)
    return score(predicted, heldout)


def decode(png: bytes) -> UInt8:
    with Image.open(io.BytesIO(png)) as image:
        return np.asarray(image.convert("L"), dtype=np.uint8)


@dataclass
class Stream:
    """The frames this run sent, with their truth: the control arm's pool."""

    pngs: list[bytes] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)

    def add(self, png: bytes, label: str) -> None:
        self.pngs.append(png)
        self.labels.append(label)


@dataclass(frozen=True)
class ControlResult:
    labels: int
    score: Score
    train_seconds: float


def train_and_score_control(
    seed_images: UInt8,
    seed_labels: list[str],
    stream: Stream,
    labels: int,
    classes: list[str],
    config: TrainConfig,
    heldout: Heldout,
    rng_seed: int,
) -> ControlResult:
    """Seed set + `labels` frames drawn uniformly from the stream, trained like Hone's models."""
    available = len(stream.pngs)
    chosen = random.Random(f"{rng_seed}-{labels}").sample(range(available), min(labels, available))
    images = [*seed_images, *(decode(stream.pngs[i]) for i in chosen)]
    targets = [*seed_labels, *(stream.labels[i] for i in chosen)]
    model = train(np.stack(images), targets, classes, config)
    probabilities = model.predict_proba(heldout.pixels)
    predicted = [model.classes[int(i)] for i in np.argmax(probabilities, axis=1)]
    return ControlResult(len(chosen), score(predicted, heldout), model.seconds)
