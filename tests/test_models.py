"""The paper's architectures: parameter counts from their widths, and their prunable weights."""

import itertools

import pytest
import torch

from prunelimit.models import FC5_WIDTHS, FC12_WIDTHS, fc5, fc12, lenet5, prunable_parameters


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
