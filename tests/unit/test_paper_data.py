"""CIFAR-10/100 and TinyImageNet readers on synthetic archives in the official layouts, the data
views (normalisation, padding, fixed subsets) and the training augmentation."""

import io
import pickle
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from prunelimit import paper_data
from prunelimit.data import MissingDataError, load_dataset
from prunelimit.views import DataSpec, load_views, make_views, prepare, random_crop_flip


def cifar_batch(count: int, classes: int, key: bytes, seed: int) -> dict:
    """A CIFAR pickle batch: rows of 3072 bytes (R plane, G plane, B plane), labels under key."""
    rng = np.random.default_rng(seed)
    return {
        b"data": rng.integers(0, 256, (count, 3072), dtype=np.uint8),
        key: rng.integers(0, classes, count).tolist(),
    }


def write_cifar(root: Path, name: str, as_archive: bool, count: int = 7) -> dict[str, list[dict]]:
    """A synthetic CIFAR archive (or its extracted folder) in the official layout, ``count``
    random images per pickled batch; the batches written, by split."""
    archive = paper_data.ARCHIVES[name]
    key = paper_data.CIFAR_LABEL_KEY[name]
    classes = paper_data.NUM_CLASSES[name]
    batches: dict[str, list[dict]] = {}
    members = {}
    for split, names in paper_data.CIFAR_MEMBERS[name].items():
        batches[split] = [cifar_batch(count, classes, key, seed=i) for i, _ in enumerate(names)]
        members |= dict(zip(names, (pickle.dumps(b) for b in batches[split]), strict=True))
    if as_archive:
        with tarfile.open(root / archive.filename, "w:gz") as bundle:
            for member, payload in members.items():
                info = tarfile.TarInfo(f"{archive.folder}/{member}")
                info.size = len(payload)
                bundle.addfile(info, io.BytesIO(payload))
    else:
        (root / archive.folder).mkdir(parents=True)
        for member, payload in members.items():
            (root / archive.folder / member).write_bytes(payload)
    return batches


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PRUNELIMIT_DATA", str(tmp_path))
    return tmp_path


@pytest.mark.parametrize("as_archive", [False, True])
@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_reader_matches_the_pickled_batches(data_dir: Path, name: str, as_archive: bool):
    batches = write_cifar(data_dir, name, as_archive)
    for split in ("train", "test"):
        images, labels = paper_data.load_cifar(name, split)
        expected = np.concatenate([b[b"data"] for b in batches[split]])
        assert images.dtype == torch.uint8 and images.shape == (len(expected), 3, 32, 32)
        # the first 1024 bytes of a row are the red plane, row by row
        np.testing.assert_array_equal(images[:, 0].reshape(len(expected), -1), expected[:, :1024])
        np.testing.assert_array_equal(images[:, 2, 31, 31], expected[:, 3071])
        key = paper_data.CIFAR_LABEL_KEY[name]
        assert labels.tolist() == [y for b in batches[split] for y in b[key]]
        through_data = load_dataset(name, split)  # the one entry point reads the same
        assert torch.equal(through_data[0], images) and torch.equal(through_data[1], labels)


def jpeg(color: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), color).save(buffer, format="JPEG", quality=100)
    return buffer.getvalue()


def write_tiny(root: Path, as_zip: bool) -> list[str]:
    """Two classes, two training images each (solid colours), three validation images."""
    wnids = ["n01", "n02"]
    files = {"wnids.txt": "\n".join(wnids).encode()}
    for index, wnid in enumerate(wnids):
        for i in range(2):
            files[f"train/{wnid}/images/{wnid}_{i}.JPEG"] = jpeg((200 * index, 50 * i, 0))
    files["val/val_annotations.txt"] = b"val_0.JPEG\tn02\t0\t0\t1\t1\nval_1.JPEG\tn01\t0\t0\t1\t1\n"
    files["val/images/val_0.JPEG"] = jpeg((200, 0, 0))
    files["val/images/val_1.JPEG"] = jpeg((0, 0, 0))
    folder = paper_data.ARCHIVES["tinyimagenet"].folder
    if as_zip:
        with zipfile.ZipFile(root / "tiny-imagenet-200.zip", "w") as bundle:
            for member, payload in files.items():
                bundle.writestr(f"{folder}/{member}", payload)
    else:
        for member, payload in files.items():
            (root / folder / member).parent.mkdir(parents=True, exist_ok=True)
            (root / folder / member).write_bytes(payload)
    return wnids


@pytest.mark.parametrize("as_zip", [False, True])
def test_tiny_imagenet_reader_labels_by_wnid_order(data_dir: Path, as_zip: bool) -> None:
    write_tiny(data_dir, as_zip)
    images, labels = paper_data.load_tiny_imagenet("train")
    assert images.shape == (4, 3, 64, 64) and labels.tolist() == [0, 0, 1, 1]
    assert abs(int(images[2, 0].float().mean()) - 200) <= 2  # class n02, red 200
    test_images, test_labels = paper_data.load_tiny_imagenet("test")
    assert test_labels.tolist() == [1, 0]
    assert abs(int(test_images[0, 0].float().mean()) - 200) <= 2
    cached = paper_data.load_tiny_imagenet("train")  # from the tensor cache now
    assert torch.equal(cached[0], images) and (data_dir / "tinyimagenet-train.pt").is_file()


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "tinyimagenet"])
def test_missing_data_says_how_to_get_it_and_never_downloads(data_dir: Path, name: str) -> None:
    archive = paper_data.ARCHIVES[name]
    with pytest.raises(MissingDataError) as error:
        paper_data.locate(name, download=False)
    message = str(error.value)
    assert archive.filename in message and archive.url in message and "PRUNELIMIT_DATA" in message
    assert not any(data_dir.iterdir())


def test_views_normalise_pad_and_fix_a_balanced_subset() -> None:
    generator = torch.Generator().manual_seed(0)
    train = torch.randint(0, 256, (200, 1, 28, 28), dtype=torch.uint8, generator=generator)
    labels = torch.arange(200) % 10
    test = (train[:50], labels[:50])
    spec = DataSpec("fashion-mnist", 32, fixed_size=100, hessian_size=40)
    views = make_views(spec, ((train, labels), test))
    assert views.train[0].shape == (200, 1, 32, 32)
    inner = views.train[0][:, :, 2:30, 2:30]
    assert abs(float(inner.mean())) < 1e-5 and abs(float(inner.std()) - 1) < 1e-3
    assert float(views.train[0][:, :, :2].abs().max()) == 0.0  # zero padding
    assert torch.bincount(views.fixed[1]).tolist() == [10] * 10
    assert torch.bincount(views.hessian[1]).tolist() == [4] * 10
    # the fixed view is the unaugmented training images, the same on every call
    again = make_views(spec, ((train, labels), test))
    assert torch.equal(views.fixed[0], again.fixed[0])
    assert any(torch.equal(views.fixed[0][0], row) for row in views.train[0])
    with pytest.raises(ValueError, match="cannot pad"):
        prepare(train.float(), torch.zeros(1), torch.ones(1), 31)


def test_views_are_the_same_bits_with_one_and_two_threads() -> None:
    """The study key hashes the prepared images, so their normalisation must not depend on how a
    reduction over 47M pixels is split between threads (float32 sums did, in the last bit)."""
    generator = torch.Generator().manual_seed(1)
    train = torch.randint(0, 256, (60_000, 1, 28, 28), dtype=torch.uint8, generator=generator)
    labels = torch.arange(60_000) % 10
    spec = DataSpec("fashion-mnist", 28, fixed_size=100, hessian_size=40)
    threads = torch.get_num_threads()
    views = []
    try:
        for count in (1, 2):
            torch.set_num_threads(count)
            views.append(make_views(spec, ((train, labels), (train[:10], labels[:10]))))
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(views[0].train[0], views[1].train[0])
    assert torch.equal(views[0].test[0], views[1].test[0])


def test_full_profile_views_read_cifar_from_the_archive(data_dir: Path) -> None:
    write_cifar(data_dir, "cifar100", as_archive=True)
    spec = DataSpec("cifar100", 32, fixed_size=5, hessian_size=3, augment=True, download=True)
    views = load_views(spec)
    assert views.num_classes == 100 and views.channels == 3
    assert views.train[0].shape == (7, 3, 32, 32) and len(views.hessian[1]) == 3


def test_random_crop_flip_is_a_shifted_and_mirrored_window() -> None:
    images = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    for seed in range(20):
        out = random_crop_flip(images, torch.Generator().manual_seed(seed), padding=2)
        padded = torch.nn.functional.pad(images, [2] * 4)
        for i in range(2):
            windows = [padded[i, :, y : y + 8, x : x + 8] for y in range(5) for x in range(5)]
            candidates = windows + [w.flip(-1) for w in windows]
            assert any(torch.equal(out[i], c) for c in candidates)
    flips = [
        torch.equal(random_crop_flip(images, torch.Generator().manual_seed(s), 0), images)
        for s in range(40)
    ]
    assert 5 < sum(flips) < 35  # unflipped about half the time (padding 0: no shift)


def test_unknown_data_set_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown data set"):
        DataSpec("imagenet", 224)
