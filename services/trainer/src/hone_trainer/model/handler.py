"""TorchServe handler of Hone's image classifiers: image bytes in, every class probability out.

Packed into each model archive next to `architectures.py`, `weights.pt` (a state dict) and
`model-config.json` (`ModelConfig`). It imports only torch, numpy and Pillow (torchvision
for the torchvision networks), which TorchServe's environment has. Each worker process loads
one model once and runs torch with `HONE_HANDLER_THREADS` threads (default 1).

Contract (the client is `hone_common.torchserve.TorchServeClient`):

* Request body JSON `{"instances": [{"b64": "<image bytes, base64>"}, ...]}` is answered 200
  with `{"model_version": str, "classes": [str, ...], "probabilities": [[float, ...], ...]}`:
  softmax, one row per instance, in order. Zero instances give zero rows.
* A raw image body (PNG/JPEG/WebP/... bytes, any content type) is one instance: one row.
* When TorchServe batches several requests (batch_size > 1), each gets its own answer; the
  images of all valid requests go through the network together.
* A request with any undecodable instance is answered **400** as a whole, so a bad image is
  never scored silently and never hides among good rows:
  `{"code": 400, "type": "InvalidInput", "message": "...",
    "errors": [{"index": <instance index or null for the whole body>, "error": "..."}]}`.
  Other requests of the same TorchServe batch are not affected. A client that sends many
  images per request learns from `errors` which ones to set aside (the scorer dead-letters
  them) and resends the rest.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import logging
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps

try:
    from hone_trainer.model.architectures import conform, get_architecture, normalize
except ImportError:  # inside a model archive the module sits next to this file
    from architectures import (  # type: ignore[no-redef]
        conform,
        get_architecture,
        normalize,
    )

log = logging.getLogger(__name__)

CONFIG_FILE = "model-config.json"
WEIGHTS_FILE = "weights.pt"
CONFIG_FORMAT = 1
MAX_PIXELS = 4096 * 4096
"""Larger images are refused before decoding (a small PNG can inflate to gigabytes)."""
FORWARD_CHUNK = 256
"""Images per forward pass, bounding memory when batched requests carry many images."""


@dataclass(frozen=True)
class ModelConfig:
    """`model-config.json`: what the handler needs to rebuild and feed the network."""

    architecture: str
    classes: list[str]
    model_version: str
    input_size: tuple[int, int]
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    format: int = CONFIG_FORMAT

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> ModelConfig:
        raw = json.loads(text)
        if raw.get("format") != CONFIG_FORMAT:
            raise ValueError(f"{CONFIG_FILE}: unsupported format {raw.get('format')!r}")
        config = cls(
            architecture=str(raw["architecture"]),
            classes=[str(c) for c in raw["classes"]],
            model_version=str(raw["model_version"]),
            input_size=(int(raw["input_size"][0]), int(raw["input_size"][1])),
            channels=int(raw["channels"]),
            mean=tuple(float(v) for v in raw["mean"]),
            std=tuple(float(v) for v in raw["std"]),
        )
        if len(config.classes) < 2 or config.channels not in (1, 3):
            raise ValueError(f"{CONFIG_FILE}: needs >= 2 classes and 1 or 3 channels")
        if len(config.mean) != config.channels or len(config.std) != config.channels:
            raise ValueError(f"{CONFIG_FILE}: mean/std must have one value per channel")
        return config


class InvalidInput(ValueError):
    def __init__(self, message: str, errors: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.errors = errors

    def body(self) -> dict[str, Any]:
        return {"code": 400, "type": "InvalidInput", "message": str(self), "errors": self.errors}


def decode_image(data: bytes, channels: int) -> np.ndarray[Any, np.dtype[np.uint8]]:
    """Image file bytes -> uint8 array (H, W) for 1 channel or (H, W, 3), EXIF-rotated.

    The one decoding path for serving and for training on stored images."""
    with Image.open(io.BytesIO(data)) as image:
        if image.width * image.height > MAX_PIXELS:
            raise ValueError(f"image of {image.width}x{image.height} pixels is too large")
        upright = ImageOps.exif_transpose(image)
        return np.asarray(upright.convert("L" if channels == 1 else "RGB"), dtype=np.uint8)


@dataclass(frozen=True)
class Unusable:
    """An instance that carries no image bytes, and why."""

    reason: str


def request_images(body: Any) -> list[bytes | Unusable]:
    """The instances of one request body, in order: image bytes, or why one is unusable.
    `InvalidInput` when the body as a whole is no request."""
    if isinstance(body, bytearray | bytes):
        if body.lstrip()[:1] != b"{":
            return [bytes(body)]  # no image format starts with "{"
        body = _parse_json(body)
    elif isinstance(body, str):
        body = _parse_json(body)
    instances = body.get("instances") if isinstance(body, dict) else None
    if not isinstance(instances, list):
        raise _whole_body('expected {"instances": [{"b64": ...}, ...]} or raw image bytes')
    images: list[bytes | Unusable] = []
    for instance in instances:
        encoded = instance.get("b64") if isinstance(instance, dict) else None
        if not isinstance(encoded, str):
            images.append(Unusable('instance must be {"b64": "<base64>"}'))
            continue
        try:
            images.append(base64.b64decode(encoded, validate=True))
        except (binascii.Error, ValueError):
            images.append(Unusable("b64 is not valid base64"))
    return images


def _whole_body(message: str) -> InvalidInput:
    return InvalidInput(message, [{"index": None, "error": message}])


def _parse_json(body: bytes | bytearray | str) -> Any:
    try:
        return json.loads(body)
    except ValueError as error:
        raise _whole_body(f"body is not valid JSON: {error}") from None


def _image_error(error: Exception) -> str:
    # Pillow's messages embed the repr of the in-memory file; it tells a client nothing.
    detail = re.sub(r"\s*<_io\.BytesIO object at 0x[0-9a-f]+>", "", str(error))
    return f"not a decodable image ({type(error).__name__}: {detail})"[:300]


def _summary(errors: list[dict[str, Any]]) -> str:
    where = ", ".join(str(e["index"]) for e in errors[:10])
    more = f" and {len(errors) - 10} more" if len(errors) > 10 else ""
    return f"{len(errors)} invalid instance(s) at index {where}{more}: {errors[0]['error']}"


class ImageClassifier:
    """The model behind the handler; usable in-process without TorchServe."""

    def __init__(self, network: torch.nn.Module, config: ModelConfig) -> None:
        self.network = network.eval()
        self.config = config

    @classmethod
    def load(cls, model_dir: str | Path) -> ImageClassifier:
        folder = Path(model_dir)
        config = ModelConfig.from_json((folder / CONFIG_FILE).read_text())
        network = get_architecture(config.architecture).build(len(config.classes))
        state = torch.load(folder / WEIGHTS_FILE, map_location="cpu", weights_only=True)
        network.load_state_dict(state)
        return cls(network, config)

    def pixels(self, data: bytes) -> torch.Tensor:
        """One image file -> uint8 (C, H, W) at the network's channels and size."""
        array = decode_image(data, self.config.channels)
        tensor = torch.from_numpy(array.copy())
        tensor = tensor.unsqueeze(0) if tensor.ndim == 2 else tensor.permute(2, 0, 1)
        return conform(tensor.unsqueeze(0), self.config.channels, self.config.input_size)[0]

    def probabilities(self, pixels: torch.Tensor) -> list[list[float]]:
        rows: list[list[float]] = []
        with torch.inference_mode():
            for start in range(0, len(pixels), FORWARD_CHUNK):
                chunk = pixels[start : start + FORWARD_CHUNK]
                x = normalize(chunk, self.config.mean, self.config.std)
                rows += torch.softmax(self.network(x).float(), dim=1).tolist()
        return rows

    def request_pixels(self, body: Any) -> list[torch.Tensor]:
        """Every image of one request at the network's input; `InvalidInput` names each
        instance that is not a decodable image, so a client can set all of them aside."""
        decoded: list[torch.Tensor] = []
        errors: list[dict[str, Any]] = []
        for index, item in enumerate(request_images(body)):
            if isinstance(item, Unusable):
                errors.append({"index": index, "error": item.reason})
                continue
            try:
                decoded.append(self.pixels(item))
            except Exception as error:  # Pillow raises many types for bad bytes
                errors.append({"index": index, "error": _image_error(error)})
        if errors:
            raise InvalidInput(_summary(errors), errors)
        return decoded

    def answer(self, bodies: list[Any]) -> list[tuple[int, dict[str, Any]]]:
        """(status, JSON body) for each request of a TorchServe batch, in order."""
        outcomes: list[tuple[int, dict[str, Any]] | list[torch.Tensor]] = []
        for body in bodies:
            try:
                outcomes.append(self.request_pixels(body))
            except InvalidInput as invalid:
                outcomes.append((400, invalid.body()))
        valid = [pixels for outcome in outcomes if isinstance(outcome, list) for pixels in outcome]
        rows = iter(self.probabilities(torch.stack(valid)) if valid else [])
        answers: list[tuple[int, dict[str, Any]]] = []
        for outcome in outcomes:
            if isinstance(outcome, tuple):
                answers.append(outcome)
                continue
            answers.append(
                (
                    200,
                    {
                        "model_version": self.config.model_version,
                        "classes": self.config.classes,
                        "probabilities": [next(rows) for _ in outcome],
                    },
                )
            )
        return answers


def _body(item: Any) -> Any:
    """TorchServe hands each request as a dict: the raw body under "body" (or "data"); a
    multipart upload under its field name."""
    if not isinstance(item, dict):
        return item
    for key in ("body", "data"):
        if item.get(key) is not None:
            return item[key]
    values = list(item.values())
    return values[0] if len(values) == 1 else None


_classifier: ImageClassifier | None = None


def handle(data: list[Any] | None, context: Any) -> list[str] | None:
    """TorchServe's entry point; called once with `data=None` when a worker starts."""
    global _classifier
    if _classifier is None:
        torch.set_num_threads(int(os.environ.get("HONE_HANDLER_THREADS", "1")))
        _classifier = ImageClassifier.load(context.system_properties["model_dir"])
        manifest = (getattr(context, "manifest", None) or {}).get("model", {})
        archived = manifest.get("modelVersion")
        if archived is not None and str(archived) != _classifier.config.model_version:
            raise ValueError(
                f"archive version {archived} differs from {CONFIG_FILE}'s "
                f"{_classifier.config.model_version}"
            )
        log.info("loaded %s %s", _classifier.config.architecture, _classifier.config.model_version)
    if data is None:
        return None
    answers = _classifier.answer([_body(item) for item in data])
    for index, (status, _) in enumerate(answers):
        context.set_response_content_type(index, "application/json")
        if status != 200:
            context.set_response_status(status, "Bad Request", index)
    return [json.dumps(payload) for _, payload in answers]
