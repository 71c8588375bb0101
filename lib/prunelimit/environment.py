"""What a run ran on: versions, device and profile, for the top of every executed notebook."""

import os
import platform
import subprocess
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version

import torch

from prunelimit.paths import project_root

REPORTED_PACKAGES = (
    "torch",
    "numpy",
    "scipy",
    "matplotlib",
    "papermill",
    "jupytext",
    "jupyter-book",
)


def _package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def _git(*arguments: str) -> str:
    return subprocess.run(
        ["git", *arguments],
        cwd=project_root(),
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    ).stdout.strip()


def git_commit() -> str:
    """The checkout's commit (short hash), with ``-dirty`` when the library (``lib/``) has
    uncommitted changes; other files (results being written, pages) do not count. A sentence
    says so when this is not a git checkout."""
    try:
        head = _git("rev-parse", "--short", "HEAD")
        changed = _git("status", "--porcelain", "--", "lib")
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"
    return f"{head}-dirty" if changed else head


def device_description() -> str:
    """The accelerator torch will use, or the CPU with its thread count."""
    if torch.cuda.is_available():
        return f"cuda: {torch.cuda.get_device_name(0)} (CUDA {torch.version.cuda})"
    return f"cpu: {os.cpu_count()} cores, torch uses {torch.get_num_threads()} threads"


def environment_report(profile: str) -> dict[str, str]:
    """Name -> value lines describing this run (profile, commit, Python, packages, device)."""
    report = {
        "profile": profile,
        "commit": git_commit(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": device_description(),
    }
    report.update({name: _package_version(name) for name in REPORTED_PACKAGES})
    return report


def _shown(value: object) -> str:
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)


def format_report(report: Mapping[str, object]) -> str:
    """Aligned ``name  value`` lines (values formatted with ``str``; ints with thousands commas)."""
    width = max(map(len, report))
    return "\n".join(f"{name:<{width}}  {_shown(value)}" for name, value in report.items())
