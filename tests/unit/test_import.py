"""The library imports, and needs no torchvision (there is no CPU build of it) nor any of the
book's packages."""

import importlib
import pkgutil
import subprocess
import sys

import pytest

import prunelimit

# Every module of the package, found by walking it, so a new module is covered without listing it.
MODULES = [
    "prunelimit",
    *sorted(m.name for m in pkgutil.walk_packages(prunelimit.__path__, "prunelimit.")),
]


@pytest.mark.parametrize("name", MODULES)
def test_module_imports(name: str) -> None:
    assert importlib.import_module(name).__doc__


def test_library_imports_with_torchvision_blocked() -> None:
    # A None entry in sys.modules makes `import torchvision` raise ImportError, installed or not.
    code = "import sys; sys.modules['torchvision'] = None\n" + "".join(
        f"import {m}\n" for m in MODULES
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


def test_library_stands_alone_without_the_books_packages() -> None:
    """The library needs none of the book's tools (notebooks, Jupyter Book) nor its code."""
    blocked = ["companion", "papermill", "jupytext", "nbformat", "IPython", "yaml", "jupyter_book"]
    code = "".join(f"import sys; sys.modules[{name!r}] = None\n" for name in blocked) + "".join(
        f"import {m}\n" for m in MODULES
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
