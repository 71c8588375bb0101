"""Set-up says what it does: the Python version is checked before the virtual environment is
created, and apt-get is announced before it runs."""

import shutil
import subprocess
from pathlib import Path

import pytest

from prunelimit import data
from prunelimit.fetch import MissingDataError
from tests.book.conftest import PROJECT

needs_make = pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")

FAKE_PYTHON = """#!/bin/sh
if [ "$1" = "--version" ]; then echo "Python {version}"; exit 0; fi
if [ "$1" = "-c" ]; then exit {check}; fi
if [ "$1" = "-m" ] && [ "$2" = "venv" ]; then mkdir -p "$3/bin"; touch "$3/created"; exit 0; fi
exit 3
"""


def _project_copy(folder: Path) -> Path:
    for name in ("Makefile", "requirements.txt", "requirements-nodeps.txt", "pyproject.toml"):
        shutil.copy(PROJECT / name, folder / name)
    (folder / "book").mkdir()
    (folder / "lib").mkdir()
    return folder


def _fake_python(folder: Path, version: str, check: int) -> Path:
    path = folder / "fake-python"
    path.write_text(FAKE_PYTHON.format(version=version, check=check))
    path.chmod(0o755)
    return path


@needs_make
def test_make_refuses_a_python_older_than_3_11_before_creating_the_venv(tmp_path: Path) -> None:
    project = _project_copy(tmp_path)
    python = _fake_python(tmp_path, "3.10.12", check=1)
    run = subprocess.run(
        ["make", "-C", str(project), f"PYTHON={python}", "setup"], capture_output=True, text=True
    )
    assert run.returncode != 0
    assert "needs Python 3.11 or newer" in run.stderr and "Python 3.10.12" in run.stderr
    assert not (project / ".venv").exists()


@needs_make
def test_make_says_it_creates_the_venv_and_installs_torch_first(tmp_path: Path) -> None:
    project = _project_copy(tmp_path)
    python = _fake_python(tmp_path, "3.12.1", check=0)
    run = subprocess.run(
        ["make", "-n", "-C", str(project), f"PYTHON={python}", "setup"],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    announce = next(i for i, line in enumerate(lines) if "torch (CPU wheel) first" in line)
    torch = next(i for i, line in enumerate(lines) if "^torch==" in line)
    assert "Creating the virtual environment" in run.stdout
    assert announce < torch


@needs_make
def test_make_dry_run_of_the_book_announces_the_notebooks() -> None:
    run = subprocess.run(["make", "-n", "-C", str(PROJECT)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "notebooks (profile" in run.stdout


def test_data_setup_announces_apt_get_before_running_it(monkeypatch, capsys) -> None:
    events: list[str] = []

    def missing() -> Path:
        raise MissingDataError("not here")

    def install(package: str) -> bool:
        events.append(capsys.readouterr().out)
        return False

    monkeypatch.delenv(data.FASHION_MNIST_ENV, raising=False)
    monkeypatch.setattr(data, "locate_fashion_mnist", missing)
    monkeypatch.setattr(data, "_apt_prefix", lambda: ["/usr/bin/sudo", "-n"])
    monkeypatch.setattr(data, "_apt_install", install)
    monkeypatch.setattr(data, "download_fashion_mnist", lambda folder: folder)
    monkeypatch.setattr(data, "mnist_5k_path", lambda: Path("mnist.csv"))
    monkeypatch.setattr(data, "digits_path", lambda: Path("digits.csv"))
    data.main(["setup"])
    assert len(events) == 1
    printed_before_apt = events[0]
    assert "apt-get as root through sudo" in printed_before_apt
    assert data.DEBIAN_PACKAGE in printed_before_apt


def test_data_setup_says_when_apt_get_cannot_run(monkeypatch, capsys) -> None:
    def missing() -> Path:
        raise MissingDataError("not here")

    monkeypatch.delenv(data.FASHION_MNIST_ENV, raising=False)
    monkeypatch.setattr(data, "locate_fashion_mnist", missing)
    monkeypatch.setattr(data, "_apt_prefix", lambda: None)
    monkeypatch.setattr(data, "download_fashion_mnist", lambda folder: folder)
    monkeypatch.setattr(data, "mnist_5k_path", lambda: Path("mnist.csv"))
    monkeypatch.setattr(data, "digits_path", lambda: Path("digits.csv"))
    data.main(["setup"])
    assert "apt-get cannot run here" in capsys.readouterr().out
