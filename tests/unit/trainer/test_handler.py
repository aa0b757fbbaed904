"""The TorchServe handler's logic on in-memory bytes: the JSON contract, raw bodies, batches of
requests, and refusals that name the bad images."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from hone_trainer.model import handler
from hone_trainer.model.archive import model_config
from hone_trainer.model.handler import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    ImageClassifier,
    ModelConfig,
    Unusable,
    request_images,
)
from hone_trainer.model.training import TrainedModel
from tests.unit.trainer.conftest import Task, png

VERSION = "20260301.142530"


@pytest.fixture(scope="module")
def classifier(trained: TrainedModel) -> ImageClassifier:
    return ImageClassifier(trained.network, model_config(trained, VERSION))


def instances(*images: bytes) -> dict[str, Any]:
    return {"instances": [{"b64": base64.b64encode(i).decode()} for i in images]}


def test_a_json_request_gets_one_softmax_row_per_instance_in_order(
    classifier: ImageClassifier, trained: TrainedModel, task: Task
) -> None:
    [(status, body)] = classifier.answer([instances(*(png(i) for i in task.images[:5]))])
    assert status == 200
    assert body["model_version"] == VERSION
    assert body["classes"] == task.classes
    rows = np.array(body["probabilities"])
    assert rows.shape == (5, 4)
    assert np.allclose(rows.sum(1), 1, atol=1e-5)
    assert np.allclose(rows, trained.predict_proba(task.images[:5]), atol=1e-5)


@pytest.mark.parametrize("encode", [lambda d: json.dumps(d).encode(), json.dumps, bytearray])
def test_a_json_body_may_arrive_as_bytes_or_text(
    classifier: ImageClassifier, task: Task, encode: Any
) -> None:
    payload = instances(png(task.images[0]), png(task.images[1]))
    body = encode(json.dumps(payload).encode()) if encode is bytearray else encode(payload)
    [(status, answer)] = classifier.answer([body])
    assert status == 200
    assert len(answer["probabilities"]) == 2


def test_a_raw_image_body_is_one_instance(classifier: ImageClassifier, task: Task) -> None:
    [(status, body)] = classifier.answer([png(task.images[3])])
    assert status == 200
    assert len(body["probabilities"]) == 1


def test_zero_instances_give_zero_rows(classifier: ImageClassifier) -> None:
    assert classifier.answer([{"instances": []}]) == [
        (200, {"model_version": VERSION, "classes": classifier.config.classes, "probabilities": []})
    ]


def test_batched_requests_each_get_their_own_answer(
    classifier: ImageClassifier, trained: TrainedModel, task: Task
) -> None:
    images = [png(i) for i in task.images[:6]]
    answers = classifier.answer(
        [
            instances(*images[:3]),
            images[3],
            instances(images[4], b"not an image"),
            instances(images[5]),
        ]
    )
    assert [status for status, _ in answers] == [200, 200, 400, 200]
    expected = trained.predict_proba(task.images[:6])
    assert np.allclose(answers[0][1]["probabilities"], expected[:3], atol=1e-5)
    assert np.allclose(answers[1][1]["probabilities"], expected[3:4], atol=1e-5)
    assert np.allclose(answers[3][1]["probabilities"], expected[5:6], atol=1e-5)


def test_a_corrupt_image_refuses_its_request_and_names_it(
    classifier: ImageClassifier, task: Task
) -> None:
    good = png(task.images[0])
    truncated = good[: len(good) // 2]
    [(status, body)] = classifier.answer([instances(good, b"\x89PNG garbage", good, truncated)])
    assert status == 400
    assert body["code"] == 400
    assert body["type"] == "InvalidInput"
    assert [e["index"] for e in body["errors"]] == [1, 3]
    assert all(e["error"].startswith("not a decodable image") for e in body["errors"])
    assert "BytesIO" not in json.dumps(body)
    assert "index 1, 3" in body["message"]


@pytest.mark.parametrize(
    ("body", "indices"),
    [
        ({"instances": [{"b64": "!!!not base64"}]}, [0]),
        ({"instances": [{"b64": base64.b64encode(b"x").decode()}, "raw", {"url": "x"}]}, [0, 1, 2]),
        ({"images": []}, [None]),
        ([1, 2], [None]),
        (b'{"instances": [', [None]),
        ("not json", [None]),
        (None, [None]),
    ],
)
def test_malformed_requests_are_refused_with_the_parts_at_fault(
    classifier: ImageClassifier, body: Any, indices: list[int | None]
) -> None:
    [(status, answer)] = classifier.answer([body])
    assert status == 400
    assert [e["index"] for e in answer["errors"]] == indices
    assert all(e["error"] for e in answer["errors"])


def test_an_image_of_too_many_pixels_is_refused_before_decoding(
    classifier: ImageClassifier,
) -> None:
    buffer = io.BytesIO()
    Image.new("L", (5000, 4000)).save(buffer, format="PNG")
    [(status, body)] = classifier.answer([instances(buffer.getvalue())])
    assert status == 400
    assert "too large" in body["errors"][0]["error"]


def test_colour_and_larger_images_are_brought_to_the_networks_input(
    classifier: ImageClassifier,
) -> None:
    rows = np.repeat(np.arange(28, dtype=np.uint8)[:, None] * 9, 28, axis=1)
    big_rgb = Image.fromarray(rows).convert("RGB").resize((112, 112), Image.Resampling.NEAREST)
    for kind in ("PNG", "JPEG", "WEBP"):
        buffer = io.BytesIO()
        big_rgb.save(buffer, format=kind)
        pixels = classifier.pixels(buffer.getvalue())
        assert tuple(pixels.shape) == (1, 28, 28)
        difference = pixels[0].int() - torch.from_numpy(rows).int()
        assert difference.abs().float().mean() < 3, kind


def test_request_images_decodes_base64_in_order() -> None:
    assert request_images(instances(b"one", b"two")) == [b"one", b"two"]
    assert request_images({"instances": [{"b64": "%"}]}) == [Unusable("b64 is not valid base64")]


def test_the_model_config_survives_a_round_trip(trained: TrainedModel) -> None:
    config = model_config(trained, VERSION)
    assert ModelConfig.from_json(config.to_json()) == config


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"format": 2}, "unsupported format"),
        ({"classes": ["one"]}, ">= 2 classes"),
        ({"mean": [0.1, 0.2]}, "one value per channel"),
    ],
)
def test_a_bad_model_config_is_refused(
    trained: TrainedModel, change: dict[str, Any], message: str
) -> None:
    raw = json.loads(model_config(trained, VERSION).to_json()) | change
    with pytest.raises(ValueError, match=message):
        ModelConfig.from_json(json.dumps(raw))


class FakeContext:
    """What TorchServe's Context offers the handler."""

    def __init__(self, model_dir: Path, version: str) -> None:
        self.system_properties = {"model_dir": str(model_dir)}
        self.manifest = {"model": {"modelName": "hone", "modelVersion": version}}
        self.statuses: dict[int, tuple[int, str]] = {}
        self.content_types: dict[int, str] = {}

    def set_response_status(self, code: int = 200, phrase: str = "", idx: int = 0) -> None:
        self.statuses[idx] = (code, phrase)

    def set_response_content_type(self, idx: int, value: str) -> None:
        self.content_types[idx] = value


@pytest.fixture
def model_dir(tmp_path: Path, trained: TrainedModel, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(handler, "_classifier", None)
    torch.save(trained.state_dict(), tmp_path / WEIGHTS_FILE)
    (tmp_path / CONFIG_FILE).write_text(model_config(trained, VERSION).to_json())
    return tmp_path


def test_the_entry_point_loads_once_then_answers_each_request(model_dir: Path, task: Task) -> None:
    context = FakeContext(model_dir, VERSION)
    assert handler.handle(None, context) is None
    out = handler.handle(
        [
            {"body": instances(png(task.images[0]))},
            {"body": b"garbage"},
            {"data": png(task.images[1])},
        ],
        context,
    )
    assert out is not None
    answers = [json.loads(o) for o in out]
    assert len(answers[0]["probabilities"]) == len(answers[2]["probabilities"]) == 1
    assert answers[1]["errors"][0]["index"] == 0
    assert context.statuses == {1: (400, "Bad Request")}
    assert context.content_types == dict.fromkeys(range(3), "application/json")


def test_the_entry_point_refuses_an_archive_whose_versions_disagree(model_dir: Path) -> None:
    with pytest.raises(ValueError, match="differs"):
        handler.handle(None, FakeContext(model_dir, "20990101.000000"))
