"""The paper's architectures: parameter counts from their widths, and their prunable weights."""

import itertools

import pytest
import torch
from torch import nn

from prunelimit.models import (
    FC5_WIDTHS,
    FC12_WIDTHS,
    VGG16_LAYOUT,
    build_model,
    count_parameters,
    fc5,
    fc12,
    lenet5,
    prunable_parameters,
)


def dense_count(widths: tuple[int, ...]) -> int:
    """Weights plus biases of a chain of linear layers through ``widths``."""
    return sum(a * b + b for a, b in itertools.pairwise(widths))


@pytest.mark.parametrize(("make", "widths"), [(fc5, FC5_WIDTHS), (fc12, FC12_WIDTHS)])
def test_fully_connected_counts(make, widths) -> None:
    model = make()
    assert sum(p.numel() for p in model.parameters()) == dense_count((784, *widths, 10))
    biases = sum(widths) + 10
    assert (
        sum(p.numel() for p in prunable_parameters(model))
        == dense_count((784, *widths, 10)) - biases
    )
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


@pytest.mark.parametrize(("channels", "side", "flat"), [(1, 28, 32 * 4 * 4), (3, 32, 32 * 5 * 5)])
def test_lenet5_counts_for_both_input_sizes(channels: int, side: int, flat: int) -> None:
    model = lenet5(channels, side)
    convs = (channels * 25 * 16 + 16) + (16 * 25 * 32 + 32)
    assert sum(p.numel() for p in model.parameters()) == convs + dense_count((flat, 120, 84, 10))
    assert model(torch.zeros(2, channels, side, side)).shape == (2, 10)


def test_fc5_is_the_papers_size() -> None:
    assert sum(p.numel() for p in fc5().parameters()) == 1_597_010


def vgg16_bn_count(classes: int) -> int:
    """3x3 convolutions without bias, BatchNorm (2 per channel), a linear head: from the layout."""
    channels = [3, *(c for c in VGG16_LAYOUT if c != "M")]
    convs = sum(9 * a * b + 2 * b for a, b in itertools.pairwise(channels))
    return convs + 512 * classes + classes


def test_conv_nets_have_their_published_sizes() -> None:
    """ResNet18 / ResNet50 (CIFAR-100) match the widely quoted 11,220,132 and 23,705,252."""
    assert count_parameters(build_model("resnet18", 3, 32, 100))["total"] == 11_220_132
    assert count_parameters(build_model("resnet50", 3, 32, 100))["total"] == 23_705_252
    assert count_parameters(build_model("vgg16_bn", 3, 32, 10))["total"] == vgg16_bn_count(10)


@pytest.mark.parametrize("name", ["alexnet", "vgg16_bn", "resnet18", "resnet50"])
@pytest.mark.parametrize(("channels", "side", "classes"), [(1, 32, 10), (3, 64, 200)])
def test_narrow_conv_nets_run_on_both_input_sizes(
    name: str, channels: int, side: int, classes: int
) -> None:
    model = build_model(name, channels, side, classes, width=0.0625).eval()
    assert model(torch.zeros(2, channels, side, side)).shape == (2, classes)
    counts = count_parameters(model)
    convs_and_linears = [
        m for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)
    ]  # every one of them is pruned, nothing else is
    assert counts["prunable"] == sum(m.weight.numel() for m in convs_and_linears)
    assert counts["prunable"] < counts["total"]


def test_width_scales_the_channels() -> None:
    narrow, wide = (build_model("resnet18", 3, 32, 10, width=w) for w in (0.125, 0.25))
    ratio = count_parameters(wide)["prunable"] / count_parameters(narrow)["prunable"]
    assert 3.8 < ratio < 4.0  # convolutions scale with width squared; the head does not


def test_build_model_refuses_what_it_cannot_build() -> None:
    with pytest.raises(ValueError, match="paper's widths"):
        build_model("fc5", 1, 28, 10, width=0.5)
    with pytest.raises(ValueError, match="unknown model"):
        build_model("resnet34", 3, 32, 10)
