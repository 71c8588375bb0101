"""Function-preserving rescaling of ReLU networks. For a > 0, relu(a z) = a relu(z), and pooling,
flattening and dropout commute with the factor too: scaling one layer's weight and bias by a and
the next layer's weight by 1/a leaves every output unchanged while it moves the weights'
magnitudes, and with them the distance R to a sparse support and the magnitude masks.
"""

import copy
from collections.abc import Sequence

import torch
from torch import nn

LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
# Modules between two layers that commute with a positive factor: f(a x) = a f(x).
HOMOGENEOUS = (
    nn.ReLU,
    nn.Flatten,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool2d,
    nn.Dropout,
    nn.Identity,
)


def relu_pairs(model: nn.Sequential) -> list[tuple[int, int]]:
    """(i, j) for each layer i (linear or convolutional) of ``model`` and the next layer j, when
    only modules that commute with a positive factor (``HOMOGENEOUS``) lie between them. A
    module of any other kind (BatchNorm, a residual block) ends the chain: a ValueError names it."""
    if not isinstance(model, nn.Sequential):
        raise ValueError(f"rescaling needs an nn.Sequential of layers, got {type(model).__name__}")
    pairs, previous = [], None
    for index, module in enumerate(model):
        if isinstance(module, LAYERS):
            if previous is not None:
                pairs.append((previous, index))
            previous = index
        elif not isinstance(module, HOMOGENEOUS):
            raise ValueError(
                f"module {index} ({type(module).__name__}) does not commute with a positive "
                "factor, so rescaling across it would change the network: use a network of "
                f"linear or convolutional layers and {', '.join(m.__name__ for m in HOMOGENEOUS)}"
            )
    return pairs


def rescaled(model: nn.Sequential, factors: Sequence[float]) -> nn.Sequential:
    """A copy of ``model`` with, for the t-th pair (i, j) of ``relu_pairs``, layer i's weight and
    bias multiplied by ``factors[t]`` and layer j's weight divided by it (in that order, so the
    factors of consecutive pairs compound on the shared layer). The copy computes the same
    function; factors must be positive, one per pair."""
    pairs = relu_pairs(model)
    if len(factors) != len(pairs):
        raise ValueError(f"{model.__class__.__name__} has {len(pairs)} pairs, got {len(factors)}")
    if not all(factor > 0 for factor in factors):
        raise ValueError(f"factors must be positive (ReLU commutes only with those): {factors}")
    copied = copy.deepcopy(model)
    layers = {index: module for index, module in enumerate(copied) if isinstance(module, LAYERS)}
    with torch.no_grad():
        for (first, second), factor in zip(pairs, factors, strict=True):
            layers[first].weight.mul_(factor)
            if (bias := layers[first].bias) is not None:
                bias.mul_(factor)
            layers[second].weight.div_(factor)
    return copied
