"""The data an experiment sees: a training set for SGD (augmented on the fly if asked), and fixed,
unaugmented views of the training data for everything that must see the same loss every time
(the loss tolerance, the Hessian, the one-shot limit), plus a test set.

Images are normalised per channel with the training set's mean and standard deviation and
zero-padded to ``image_size`` (Fashion-MNIST 28 -> 32 for the convolutional networks).
"""

import dataclasses

import torch

from prunelimit.data import DATASETS, NUM_CLASSES, Data, balanced_subset, limited, load_dataset
from prunelimit.store import EXECUTION_KNOB


@dataclasses.dataclass(frozen=True)
class DataSpec:
    """Which data and how much of it. ``None`` limits mean the whole split.

    fixed_size: examples of the unaugmented training view used for eps and the one-shot limit;
    hessian_size: the first examples of that view, on which the Hessian is taken.
    """

    name: str
    image_size: int
    train_limit: int | None = None
    test_limit: int | None = None
    fixed_size: int = 10_000
    hessian_size: int = 2_000
    augment: bool = False
    download: bool = dataclasses.field(default=False, metadata=EXECUTION_KNOB)

    def __post_init__(self) -> None:
        if self.name not in DATASETS:
            raise ValueError(f"unknown data set {self.name!r}: choose one of {DATASETS}")
        if not 0 < self.hessian_size <= self.fixed_size:
            raise ValueError("need 0 < hessian_size <= fixed_size")


@dataclasses.dataclass(frozen=True)
class Views:
    """train: what SGD sees; fixed: unaugmented training examples; hessian: its first part."""

    train: Data
    fixed: Data
    hessian: Data
    test: Data
    num_classes: int

    @property
    def channels(self) -> int:
        return self.train[0].shape[1]


def prepare(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, size: int) -> torch.Tensor:
    """Float images [N, C, size, size]: scaled to [0, 1] if uint8, normalised, zero-padded."""
    images = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
    images = (images - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)
    margin = size - images.shape[-1]
    if margin < 0 or margin % 2:
        raise ValueError(f"cannot pad {images.shape[-1]}-pixel images to {size}")
    return torch.nn.functional.pad(images, [margin // 2] * 4)


def channel_statistics(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and standard deviation [C] (float32) of images [N, C, H, W] scaled to
    [0, 1]. Summed in float64 and rounded once, so that the result (and with it every prepared
    image and the study key) is the same bits however many threads share the reduction."""
    scaled = images.double() / 255.0 if images.dtype == torch.uint8 else images.double()
    return scaled.mean(dim=(0, 2, 3)).float(), scaled.std(dim=(0, 2, 3)).float()


def make_views(spec: DataSpec, raw: tuple[Data, Data]) -> Views:
    """Views of already loaded (train, test) splits, images uint8 or floats in [0, 1]."""
    (train_x, train_y), test = limited(raw[0], spec.train_limit), limited(raw[1], spec.test_limit)
    mean, std = channel_statistics(train_x)
    train = prepare(train_x, mean, std, spec.image_size), train_y
    fixed_index = balanced_subset(train_y, min(spec.fixed_size, len(train_y)))
    fixed = train[0][fixed_index], train_y[fixed_index]
    hessian_index = balanced_subset(fixed[1], min(spec.hessian_size, len(fixed[1])))
    return Views(
        train=train,
        fixed=fixed,
        hessian=(fixed[0][hessian_index], fixed[1][hessian_index]),
        test=(prepare(test[0], mean, std, spec.image_size), test[1]),
        num_classes=NUM_CLASSES[spec.name],
    )


def load_views(spec: DataSpec) -> Views:
    """Read the data set named by ``spec`` (MissingDataError says how to get it) into views."""
    train, test = (load_dataset(spec.name, s, download=spec.download) for s in ("train", "test"))
    return make_views(spec, (train, test))


def random_crop_flip(
    images: torch.Tensor, generator: torch.Generator, padding: int = 4
) -> torch.Tensor:
    """The standard CIFAR augmentation on a batch [B, C, H, W]: a random H x W crop of the
    zero-padded image, then a horizontal flip with probability 1/2."""
    batch, channels, height, width = images.shape
    device = images.device  # the generator's too: everything is drawn where the images are
    padded = torch.nn.functional.pad(images, [padding] * 4)
    dy = torch.randint(0, 2 * padding + 1, (batch, 1), generator=generator, device=device)
    dx = torch.randint(0, 2 * padding + 1, (batch, 1), generator=generator, device=device)
    flip = torch.rand(batch, generator=generator, device=device) < 0.5
    cols = dx + torch.arange(width, device=device)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    rows = dy + torch.arange(height, device=device)
    return padded[
        torch.arange(batch, device=device)[:, None, None, None],
        torch.arange(channels, device=device)[None, :, None, None],
        rows[:, None, :, None],
        cols[:, None, None, :],
    ]
