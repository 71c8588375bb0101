"""The library imports, and needs no torchvision (there is no CPU build of it)."""

import importlib
import subprocess
import sys

import pytest

MODULES = [
    "prunelimit",
    "prunelimit.paths",
    "prunelimit.geometry",
    "prunelimit.estimates",
    "prunelimit.models",
    "prunelimit.curvature",
    "prunelimit.lanczos",
    "prunelimit.training",
    "prunelimit.limit",
    "prunelimit.pruning",
    "prunelimit.data",
    "prunelimit.experiments",
    "prunelimit.environment",
    "prunelimit.plotting",
    "prunelimit.book_pipeline",
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
