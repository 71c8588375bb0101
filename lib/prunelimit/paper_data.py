"""The paper's data sets: CIFAR-10, CIFAR-100 and TinyImageNet, read from their standard archives.

Each lives under ``data_root()`` (``$PRUNELIMIT_DATA``, default ``<checkout>/data``), extracted or
as the archive itself. When it is missing and ``download=True``, it is fetched: through
torchvision when installed (CIFAR), else by our own MD5-checked download. Images come back as
uint8 tensors [N, 3, H, W] (CIFAR 32 x 32, TinyImageNet 64 x 64) and labels as int64 [N];
normalisation and augmentation live in ``prunelimit.views``.
"""

import contextlib
import dataclasses
import importlib.util
import io
import pickle
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

from prunelimit.fetch import MissingDataError, download_checked
from prunelimit.paths import data_root


@dataclasses.dataclass(frozen=True)
class Archive:
    """Where a data set comes from and what it unpacks to."""

    name: str
    url: str
    md5: str
    folder: str  # the folder the archive unpacks to

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]


ARCHIVES = {
    "cifar10": Archive(
        "cifar10",
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "c58f30108f718f92721af3b95e74349a",
        "cifar-10-batches-py",
    ),
    "cifar100": Archive(
        "cifar100",
        "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        "eb9058c3a382ffc7106e4002c42a8d85",
        "cifar-100-python",
    ),
    "tinyimagenet": Archive(
        "tinyimagenet",
        "http://cs231n.stanford.edu/tiny-imagenet-200.zip",
        "90528d7ca1a48142e341f4ef8d21d0de",
        "tiny-imagenet-200",
    ),
}
CIFAR_MEMBERS = {
    "cifar10": {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]},
    "cifar100": {"train": ["train"], "test": ["test"]},
}
CIFAR_LABEL_KEY = {"cifar10": b"labels", "cifar100": b"fine_labels"}
NUM_CLASSES = {"cifar10": 10, "cifar100": 100, "tinyimagenet": 200}


def _how_to_get(archive: Archive) -> str:
    root = data_root()
    return (
        f"{archive.name} is not in {root}. Either put {archive.filename} (or its extracted folder "
        f"{archive.folder}/) there, set PRUNELIMIT_DATA to the folder that holds it, or run with "
        f"network access and download=True (the full profile does) to fetch {archive.url}."
    )


def _torchvision_download(name: str, root: Path) -> bool:
    """Let torchvision fetch and extract CIFAR when it is installed; True if it did."""
    if name not in CIFAR_MEMBERS or importlib.util.find_spec("torchvision") is None:
        return False
    from torchvision import datasets  # optional dependency

    dataset = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
    for train in (True, False):
        dataset(root=str(root), train=train, download=True)
    return True


def locate(name: str, download: bool = False) -> Path:
    """The extracted folder or the archive of data set ``name`` (downloaded if allowed)."""
    if name not in ARCHIVES:
        raise ValueError(f"unknown data set {name!r}; choose one of {sorted(ARCHIVES)}")
    archive, root = ARCHIVES[name], data_root()
    for candidate in (root / archive.folder, root / archive.filename):
        if candidate.exists():
            return candidate
    if not download:
        raise MissingDataError(_how_to_get(archive))
    try:
        if _torchvision_download(name, root):
            return root / archive.folder
        return download_checked(archive.url, root / archive.filename, archive.md5)
    except OSError as error:
        raise MissingDataError(f"download failed ({error}). {_how_to_get(archive)}") from error


@contextlib.contextmanager
def _opened(source: Path, folder: str) -> Iterator[Callable[[str], bytes]]:
    """A reader of ``folder/<member>`` bytes from an extracted folder, a .tar.gz or a .zip,
    opening the archive once."""
    if source.is_dir():
        yield lambda member: (source / member).read_bytes()
    elif source.suffix == ".zip":
        with zipfile.ZipFile(source) as bundle:
            yield lambda member: bundle.read(f"{folder}/{member}")
    else:
        with tarfile.open(source, "r:gz") as tar:

            def read(member: str) -> bytes:
                handle = tar.extractfile(f"{folder}/{member}")
                if handle is None:
                    raise ValueError(f"{source} has no file {folder}/{member}")
                return handle.read()

            yield read


def load_cifar(
    name: str, split: str = "train", download: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """CIFAR-10 or CIFAR-100 ``split`` as (uint8 images [N, 3, 32, 32], int64 labels [N])."""
    if name not in CIFAR_MEMBERS or split not in ("train", "test"):
        raise ValueError(f"unknown CIFAR data set {name!r} / split {split!r}")
    source, folder = locate(name, download), ARCHIVES[name].folder
    images, labels = [], []
    with _opened(source, folder) as read:
        for member in CIFAR_MEMBERS[name][split]:
            batch = pickle.loads(read(member), encoding="bytes")
            images.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            labels.append(np.asarray(batch[CIFAR_LABEL_KEY[name]], dtype=np.int64))
    return torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(labels))


def _decode_jpeg(payload: bytes) -> np.ndarray:
    from PIL import Image  # pillow comes with matplotlib

    with Image.open(io.BytesIO(payload)) as image:
        return np.asarray(image.convert("RGB"), dtype=np.uint8).transpose(2, 0, 1)


def _tiny_listing(source: Path, read: Callable[[str], bytes], split: str) -> list[tuple[str, str]]:
    """(member path, wnid) of every image of a TinyImageNet split ('test' = the labelled val)."""
    if split == "test":
        lines = read("val/val_annotations.txt").decode().splitlines()
        return [(f"val/images/{line.split()[0]}", line.split()[1]) for line in lines if line]
    if source.is_dir():
        return [
            (f"train/{wnid}/images/{path.name}", wnid)
            for wnid in read("wnids.txt").decode().split()
            for path in sorted((source / "train" / wnid / "images").glob("*.JPEG"))
        ]
    with zipfile.ZipFile(source) as bundle:
        names = sorted(n for n in bundle.namelist() if n.endswith(".JPEG") and "/train/" in n)
    return [(n.split("/", 1)[1], n.split("/")[2]) for n in names]


def load_tiny_imagenet(
    split: str = "train", download: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """TinyImageNet ``split`` ('train' 100,000 or 'test' = the 10,000 labelled validation images)
    as (uint8 images [N, 3, 64, 64], int64 labels [N]); classes are numbered in wnids.txt order.

    Decoding 110,000 JPEGs takes minutes, so the tensors are cached next to the archive.
    """
    if split not in ("train", "test"):
        raise ValueError(f"unknown TinyImageNet split {split!r}: use 'train' or 'test'")
    source, folder = locate("tinyimagenet", download), ARCHIVES["tinyimagenet"].folder
    cache = source.parent / f"tinyimagenet-{split}.pt"
    if cache.is_file():
        images, labels = torch.load(cache)
        return images, labels
    with _opened(source, folder) as read:
        index = {wnid: i for i, wnid in enumerate(read("wnids.txt").decode().split())}
        listing = _tiny_listing(source, read, split)
        images = np.stack([_decode_jpeg(read(member)) for member, _ in listing])
    labels = np.array([index[wnid] for _, wnid in listing], dtype=np.int64)
    result = torch.from_numpy(images), torch.from_numpy(labels)
    partial = cache.with_suffix(".part")
    torch.save(result, partial)
    partial.replace(cache)
    return result
