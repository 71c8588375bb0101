"""The paper's architectures, defined here (no torchvision), and the weights pruning acts on.

Widths follow the authors' code: FC5 is in -> 1000 -> 600 -> 300 -> 100 -> classes, FC12 is a
twelve-layer tapering MLP, LeNet-5 is two 5x5 convolutions (16, 32 channels) with max pooling and
three linear layers (120, 84, classes). Models return logits [N, classes].
"""

from collections.abc import Sequence

import torch
from torch import nn

FC5_WIDTHS = (1000, 600, 300, 100)
FC12_WIDTHS = (1000, 900, 800, 750, 700, 650, 600, 500, 400, 200, 100)


def mlp(in_features: int, widths: Sequence[int], num_classes: int) -> nn.Sequential:
    """Flatten, then Linear + ReLU for each width, then a Linear layer to the classes."""
    layers: list[nn.Module] = [nn.Flatten()]
    for fan_in, fan_out in zip((in_features, *widths), widths, strict=False):
        layers += [nn.Linear(fan_in, fan_out), nn.ReLU()]
    layers.append(nn.Linear(widths[-1] if widths else in_features, num_classes))
    return nn.Sequential(*layers)


def fc5(in_features: int = 784, num_classes: int = 10) -> nn.Sequential:
    """The paper's FC5 (1.6 M weights on 28 x 28 inputs)."""
    return kaiming_init(mlp(in_features, FC5_WIDTHS, num_classes))


def fc12(in_features: int = 784, num_classes: int = 10) -> nn.Sequential:
    """The paper's FC12; it trains only with Kaiming initialisation."""
    return kaiming_init(mlp(in_features, FC12_WIDTHS, num_classes))


def lenet5(in_channels: int = 1, image_size: int = 28, num_classes: int = 10) -> nn.Sequential:
    """LeNet-5 as in the authors' code, for square images of side ``image_size``."""
    side = ((image_size - 4) // 2 - 4) // 2
    return kaiming_init(
        nn.Sequential(
            nn.Conv2d(in_channels, 16, 5),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 5),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(32 * side * side, 120),
            nn.ReLU(),
            nn.Linear(120, 84),
            nn.ReLU(),
            nn.Linear(84, num_classes),
        )
    )


def kaiming_init(model: nn.Module) -> nn.Module:
    """Kaiming-normal weights (fan in) and zero biases for every linear and convolutional layer."""
    for module in model.modules():
        if isinstance(module, nn.Linear | nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    return model


def prunable_parameters(model: nn.Module) -> list[torch.nn.Parameter]:
    """The weights of linear and convolutional layers, in module order: the D coordinates that
    pruning and the Hessian act on (biases and normalisation parameters are not pruned)."""
    return [
        module.weight
        for module in model.modules()
        if isinstance(module, nn.Linear | nn.Conv1d | nn.Conv2d | nn.Conv3d)
    ]
