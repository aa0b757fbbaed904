"""A gatekeeper over in-memory fakes: a production model already serving, an evaluation set of
400 images, and archives of fake models of known quality."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from hone_common.events import Candidate, ModelCandidate, OfflineMetrics, TrainingSnapshot
from hone_gatekeeper.gatekeeper import Gatekeeper
from hone_gatekeeper.rules import GateRules
from hone_gatekeeper.settings import Policy
from tests.unit.gatekeeper.fakes import FakeRegistry, FakeStore, FakeTorchServe, Model

MODEL = "hone"
BUCKET = "hone-models"
CLASSES = ["a", "b", "c", "d"]
PRODUCTION = "20260101.000000"
CANDIDATE_VERSION = "20260102.000000"
SHA = "0" * 64


def image(i: int) -> bytes:
    return f"img-{i}-{CLASSES[i % 4]}".encode()


def index(data: bytes) -> int:
    return int(data.split(b"-")[1])


def truth(data: bytes) -> str:
    return data.decode().rsplit("-", 1)[1]


def right_unless(every: int) -> Model:
    """Right on every image but each `every`-th; wrong ones are predicted as the next class."""

    def predict(data: bytes) -> str:
        label = truth(data)
        if index(data) % every == 0:
            return CLASSES[(CLASSES.index(label) + 1) % 4]
        return label

    return predict


MODELS: dict[bytes, Model] = {
    b"archive-production": right_unless(5),  # 80 %
    b"archive-better": right_unless(20),  # 95 %, right wherever production is
    b"archive-constant": lambda _: "a",  # 25 %: chance
}


@dataclass
class World:
    store: FakeStore
    torchserve: FakeTorchServe
    registry: FakeRegistry
    gatekeeper: Gatekeeper

    def archive(self, version: str, kind: str, model: str = MODEL) -> str:
        uri = f"s3://{BUCKET}/{model}/{version}.mar"
        self.store.put(uri, f"archive-{kind}".encode())
        return uri

    def evaluation_set(self, version: str, images: int = 400) -> str:
        lines = []
        for i in range(images):
            uri = f"s3://hone-images/eval/{i}.png"
            self.store.put(uri, image(i))
            row = {"image_id": str(i), "uri": uri, "label": CLASSES[i % 4]}
            lines.append(json.dumps({**row, "camera_id": f"cam-{i % 2}"}))
        uri = f"s3://{BUCKET}/{MODEL}/{version}.evaluation.jsonl"
        self.store.put(uri, "\n".join(lines).encode())
        return uri

    def candidate(
        self,
        version: str,
        kind: str = "better",
        *,
        evaluation: bool = True,
        model: str = MODEL,
    ) -> ModelCandidate:
        return ModelCandidate(
            producer="trainer",
            payload=Candidate(
                model_version=version,
                parent_version=None,
                artifact_uri=self.archive(version, kind, model),
                evaluation_set_uri=self.evaluation_set(version) if evaluation else None,
                classes=CLASSES,
                snapshot=TrainingSnapshot(examples_sha256=SHA, examples=100),
                metrics=OfflineMetrics(accuracy=0.9, macro_f1=0.9),
            ),
        )


def build_world(*, production: bool = True, rules: GateRules | None = None) -> World:
    store = FakeStore()
    torchserve = FakeTorchServe(CLASSES, MODELS, store)
    registry = FakeRegistry()
    policy = Policy(model_name=MODEL, models_bucket=BUCKET, rules=rules or GateRules())
    world = World(store, torchserve, registry, Gatekeeper(registry, torchserve, store, policy))
    if production:
        # Bootstrapped outside the gatekeeper: serving, its archive stored, unknown to the
        # registry until the gatekeeper first looks.
        world.archive(PRODUCTION, "production")
        torchserve.serve(MODEL, PRODUCTION, MODELS[b"archive-production"])
    return world


@pytest.fixture
def world() -> World:
    return build_world()


@pytest.fixture
def empty_world() -> World:
    return build_world(production=False)
