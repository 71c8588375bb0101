"""Rescaling a ReLU network's layers by (a, 1/a): the same function, other magnitudes."""

import numpy as np
import pytest
import torch
from torch import nn

from prunelimit.limit import projection_distances
from prunelimit.models import fc5, prunable_parameters
from prunelimit.rescaling import relu_pairs, rescaled


def _flat(model: nn.Module) -> np.ndarray:
    return torch.cat([p.detach().reshape(-1) for p in prunable_parameters(model)]).numpy()


def test_rescaling_fc5_keeps_its_outputs_to_1e12_and_moves_r() -> None:
    torch.manual_seed(0)
    model = fc5(64, 10).double()
    inputs = torch.randn(32, 64, dtype=torch.float64)
    assert relu_pairs(model) == [(1, 3), (3, 5), (5, 7), (7, 9)]
    other = rescaled(model, [3.0, 0.2, 5.0, 0.5])
    with torch.no_grad():
        before, after = model(inputs), other(inputs)
    assert float((before - after).abs().max()) <= 1e-12 * float(before.abs().max())
    first = [p.detach() for p in prunable_parameters(model)]
    second = [p.detach() for p in prunable_parameters(other)]
    assert torch.allclose(second[0], 3.0 * first[0]) and torch.allclose(
        second[1], first[1] * 0.2 / 3
    )
    k = len(_flat(model)) // 10
    assert projection_distances(_flat(model))[k] != pytest.approx(
        projection_distances(_flat(other))[k], rel=1e-3
    ), "the same network, another distance to its 10% support"


def test_rescaling_a_conv_net_across_pooling() -> None:
    torch.manual_seed(1)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(4 * 3 * 3, 6),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Linear(6, 3),
    ).double()
    model.eval()
    inputs = torch.randn(8, 1, 8, 8, dtype=torch.float64)
    other = rescaled(model, [4.0, 0.25])
    other.eval()
    with torch.no_grad():
        assert float((model(inputs) - other(inputs)).abs().max()) <= 1e-12


def test_rescaling_refuses_batch_norm_and_bad_factors() -> None:
    with pytest.raises(ValueError, match="BatchNorm1d"):
        relu_pairs(nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3), nn.Linear(3, 2)))
    model = nn.Sequential(nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 2))
    with pytest.raises(ValueError, match="positive"):
        rescaled(model, [-1.0])
    with pytest.raises(ValueError, match="1 pairs, got 2"):
        rescaled(model, [1.0, 2.0])
