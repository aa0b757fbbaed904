"""The architecture registry: what each network eats and that it answers one logit per class."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from hone_trainer.model.architectures import ARCHITECTURES, conform, get_architecture, normalize


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_every_architecture_answers_one_logit_per_class_for_its_input(name: str) -> None:
    arch = get_architecture(name)
    # The torchvision networks pool adaptively; a small input keeps the test fast.
    size = arch.input_size if name == "small-cnn" else (64, 64)
    network = arch.build(num_classes=5).eval()
    with torch.inference_mode():
        logits = network(torch.zeros(3, arch.channels, *size))
    assert logits.shape == (3, 5)


def test_the_small_cnn_reads_28x28_grayscale() -> None:
    arch = get_architecture("small-cnn")
    assert (arch.channels, arch.input_size) == (1, (28, 28))
    assert len(arch.mean) == len(arch.std) == 1


@pytest.mark.parametrize("name", ["resnet18", "mobilenet-v3-small"])
def test_the_rgb_networks_can_be_built_for_one_channel(name: str) -> None:
    network = get_architecture(name).factory(3, 1).eval()
    with torch.inference_mode():
        assert network(torch.zeros(2, 1, 64, 64)).shape == (2, 3)


def test_an_unknown_architecture_is_refused_with_the_known_names() -> None:
    with pytest.raises(ValueError, match="small-cnn"):
        get_architecture("vgg-99")


def test_a_classifier_needs_at_least_two_classes() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        get_architecture("small-cnn").build(1)


def test_conform_turns_rgb_into_the_luma_pillow_computes() -> None:
    rgb = np.random.default_rng(1).integers(0, 256, (16, 16, 3)).astype(np.uint8)
    expected = np.asarray(Image.fromarray(rgb).convert("L"), dtype=np.int16)
    tensor = torch.from_numpy(rgb).permute(2, 0, 1).unsqueeze(0)
    got = conform(tensor, channels=1, size=(16, 16))[0, 0].numpy().astype(np.int16)
    assert np.abs(got - expected).max() <= 1


def test_conform_repeats_gray_into_rgb_and_resizes() -> None:
    gray = torch.full((2, 1, 28, 28), 200, dtype=torch.uint8)
    out = conform(gray, channels=3, size=(56, 40))
    assert out.shape == (2, 3, 56, 40)
    assert out.dtype == torch.uint8
    assert int(out.min()) == int(out.max()) == 200


def test_conform_refuses_shapes_it_cannot_convert() -> None:
    with pytest.raises(ValueError, match="N, C, H, W"):
        conform(torch.zeros(28, 28, dtype=torch.uint8), 1, (28, 28))
    with pytest.raises(ValueError, match="2-channel"):
        conform(torch.zeros(1, 2, 28, 28, dtype=torch.uint8), 1, (28, 28))


def test_normalize_maps_pixels_with_the_channel_statistics() -> None:
    pixels = torch.tensor([[[[0, 255]]]], dtype=torch.uint8)
    out = normalize(pixels, mean=(0.5,), std=(0.5,))
    assert out.flatten().tolist() == [-1.0, 1.0]
