"""The paper's architectures, defined here (no torchvision), and the weights pruning acts on.

Widths follow the authors' code: FC5 is in -> 1000 -> 600 -> 300 -> 100 -> classes, FC12 is a
twelve-layer tapering MLP, LeNet-5 is two 5x5 convolutions (16, 32 channels) with max pooling and
three linear layers (120, 84, classes). The convolutional networks are the usual CIFAR variants
(3x3 stems, no early down-sampling) for square inputs of any side divisible by 32 and any
channel count; ``width`` scales every channel count (1.0 = the paper's networks). Models take
images [N, C, H, W] and return logits [N, classes].
"""

from collections.abc import Sequence
from typing import TypeVar

import torch
from torch import nn

ModuleT = TypeVar("ModuleT", bound=nn.Module)

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


def _channels(base: int, width: float) -> int:
    return max(1, round(base * width))


ALEXNET_CHANNELS = (64, 192, 384, 256, 256)
ALEXNET_HIDDEN = 4096


def alexnet(
    in_channels: int = 3, image_size: int = 32, num_classes: int = 10, width: float = 1.0
) -> nn.Sequential:
    """AlexNet for small images: five 3x3 convolutions (64, 192, 384, 256, 256 channels, max
    pooling after the 1st, 2nd and 5th) and two hidden linear layers of 4096 units.

    The authors' AlexNet opens with an 11x11 stride-4 convolution sized for 224-pixel images; on
    32-pixel inputs its feature map vanishes, so we use the common CIFAR variant.
    """
    c = [_channels(base, width) for base in ALEXNET_CHANNELS]
    hidden = _channels(ALEXNET_HIDDEN, width)
    side = image_size // 8
    pool = {0, 1, 4}
    layers: list[nn.Module] = []
    for index, (fan_in, fan_out) in enumerate(zip((in_channels, *c), c, strict=False)):
        layers += [nn.Conv2d(fan_in, fan_out, 3, padding=1), nn.ReLU()]
        if index in pool:
            layers.append(nn.MaxPool2d(2))
    layers += [nn.Flatten(), *list(mlp(c[-1] * side * side, (hidden, hidden), num_classes))[1:]]
    return kaiming_init(nn.Sequential(*layers))


VGG16_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)


def vgg16_bn(
    in_channels: int = 3, image_size: int = 32, num_classes: int = 10, width: float = 1.0
) -> nn.Sequential:
    """VGG16 with BatchNorm after every convolution, global average pooling and one linear layer
    (the CIFAR variant of the authors' code; 14.7 M weights at width 1)."""
    layers: list[nn.Module] = []
    channels = in_channels
    for entry in VGG16_LAYOUT:
        if entry == "M":
            layers.append(nn.MaxPool2d(2))
            continue
        assert isinstance(entry, int), f"VGG16_LAYOUT holds channel counts and 'M', not {entry!r}"
        out = _channels(entry, width)
        layers += [nn.Conv2d(channels, out, 3, padding=1, bias=False), nn.BatchNorm2d(out)]
        layers.append(nn.ReLU())
        channels = out
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes)]
    return kaiming_init(nn.Sequential(*layers))


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with BatchNorm and an identity (or 1x1 projection) shortcut."""

    expansion = 1

    def __init__(self, fan_in: int, planes: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(fan_in, planes, 3, stride, 1, bias=False),
            nn.BatchNorm2d(planes),
            nn.ReLU(),
            nn.Conv2d(planes, planes, 3, 1, 1, bias=False),
            nn.BatchNorm2d(planes),
        )
        self.shortcut = _shortcut(fan_in, planes * self.expansion, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3, 1x1 expand (x4), each with BatchNorm, plus a shortcut."""

    expansion = 4

    def __init__(self, fan_in: int, planes: int, stride: int) -> None:
        super().__init__()
        out = planes * self.expansion
        self.body = nn.Sequential(
            nn.Conv2d(fan_in, planes, 1, bias=False),
            nn.BatchNorm2d(planes),
            nn.ReLU(),
            nn.Conv2d(planes, planes, 3, stride, 1, bias=False),
            nn.BatchNorm2d(planes),
            nn.ReLU(),
            nn.Conv2d(planes, out, 1, bias=False),
            nn.BatchNorm2d(out),
        )
        self.shortcut = _shortcut(fan_in, out, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


def _shortcut(fan_in: int, fan_out: int, stride: int) -> nn.Module:
    if stride == 1 and fan_in == fan_out:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(fan_in, fan_out, 1, stride, bias=False), nn.BatchNorm2d(fan_out))


def _resnet(
    block: type[BasicBlock | Bottleneck],
    depths: Sequence[int],
    in_channels: int,
    num_classes: int,
    width: float,
) -> nn.Sequential:
    stem = _channels(64, width)
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, stem, 3, 1, 1, bias=False),
        nn.BatchNorm2d(stem),
        nn.ReLU(),
    ]
    channels = stem
    for stage, depth in enumerate(depths):
        planes = _channels(64 * 2**stage, width)
        for index in range(depth):
            layers.append(block(channels, planes, 2 if stage and not index else 1))
            channels = planes * block.expansion
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes)]
    return kaiming_init(nn.Sequential(*layers))


def resnet18(
    in_channels: int = 3, image_size: int = 32, num_classes: int = 100, width: float = 1.0
) -> nn.Sequential:
    """ResNet18, CIFAR variant (3x3 stem, no max pooling): 11.2 M weights at width 1.

    ``image_size`` is accepted for a uniform signature: global pooling handles any size >= 8.
    """
    del image_size
    return _resnet(BasicBlock, (2, 2, 2, 2), in_channels, num_classes, width)


def resnet50(
    in_channels: int = 3, image_size: int = 32, num_classes: int = 100, width: float = 1.0
) -> nn.Sequential:
    """ResNet50, CIFAR variant (3x3 stem, no max pooling): 23.5 M weights at width 1."""
    del image_size
    return _resnet(Bottleneck, (3, 4, 6, 3), in_channels, num_classes, width)


def kaiming_init(model: ModuleT) -> ModuleT:
    """Kaiming-normal weights (fan in) and zero biases for every linear and convolutional layer."""
    for module in model.modules():
        if isinstance(module, nn.Linear | nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
    return model


def prunable_parameters(model: nn.Module) -> list[torch.nn.Parameter]:
    """The weights of linear and convolutional layers, in module order: the D coordinates that
    pruning and the Hessian act on (biases and normalisation parameters are not pruned)."""
    weights = []
    for module in model.modules():
        if isinstance(module, nn.Linear | nn.Conv1d | nn.Conv2d | nn.Conv3d):
            # These layers register their weight as a Parameter; torch's stubs say only Tensor.
            assert isinstance(module.weight, nn.Parameter)
            weights.append(module.weight)
    return weights


def count_parameters(model: nn.Module) -> dict[str, int]:
    """{'total': all parameters, 'prunable': the D weights pruning acts on}."""
    return {
        "total": sum(p.numel() for p in model.parameters()),
        "prunable": sum(p.numel() for p in prunable_parameters(model)),
    }


CONVOLUTIONAL = {
    "alexnet": alexnet,
    "vgg16_bn": vgg16_bn,
    "resnet18": resnet18,
    "resnet50": resnet50,
}
FULLY_CONNECTED = {"fc5": fc5, "fc12": fc12}
MODEL_NAMES = (*FULLY_CONNECTED, *CONVOLUTIONAL)


def build_model(
    name: str, in_channels: int, image_size: int, num_classes: int, width: float = 1.0
) -> nn.Module:
    """One of ``MODEL_NAMES`` for [N, in_channels, image_size, image_size] inputs. The FC nets
    keep the paper's widths (``width`` must be 1); the conv nets scale their channels by it."""
    if name in FULLY_CONNECTED:
        if width != 1.0:
            raise ValueError(f"{name} keeps the paper's widths: width must be 1.0, got {width}")
        return FULLY_CONNECTED[name](in_channels * image_size**2, num_classes)
    if name in CONVOLUTIONAL:
        return CONVOLUTIONAL[name](in_channels, image_size, num_classes, width)
    raise ValueError(f"unknown model {name!r}: choose one of {MODEL_NAMES}")
