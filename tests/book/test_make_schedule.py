"""`make execute` runs notebooks side by side: the threads each gets, and the pages that must wait
for another (those that read what it computes or reuse the network it trains)."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.book.conftest import PROJECT

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")


def _dry_run(executed: Path, *targets: str, **variables: str) -> list[str]:
    """The pages a dry run of ``make`` would execute into ``executed`` (a folder with nothing
    executed yet), in order, as 'threads page' strings."""
    settings = [f"{name}={value}" for name, value in variables.items()]
    run = subprocess.run(
        ["make", "-n", "-C", str(PROJECT), f"EXECUTED_DIR={executed}", *settings]
        + [str(executed / target) for target in targets],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    command = r"OMP_NUM_THREADS=(\d+) \S+ -m companion.pipeline execute \S+ (\S+)"
    found = re.findall(command, run.stdout)
    return [f"{threads} {Path(page).relative_to(executed)}" for threads, page in found]


def test_notebooks_share_the_cores(tmp_path) -> None:
    page = "book/intro.ipynb"
    assert _dry_run(tmp_path, page, PROFILE="smoke", CORES="4", JOBS="2")[-1] == f"2 {page}"
    assert _dry_run(tmp_path, page, PROFILE="smoke", CORES="2", JOBS="2")[-1] == f"1 {page}"
    assert _dry_run(tmp_path, page, PROFILE="smoke", CORES="2", JOBS="4")[-1] == f"1 {page}"
    # the full profile's notebooks share one GPU: one at a time, on every core
    assert _dry_run(tmp_path, page, PROFILE="full", CORES="8")[-1] == f"8 {page}"


def test_pages_that_read_another_pages_results_run_after_it(tmp_path) -> None:
    summary, data_size = "book/experiments/summary.ipynb", "book/experiments/data_size.ipynb"
    gradual, scaling = "book/heuristics/gradual.ipynb", "book/heuristics/scaling.ipynb"
    order = [
        line.split()[1]
        for line in _dry_run(tmp_path, summary, data_size, gradual, scaling, PROFILE="smoke")
    ]
    tasks = [page for page in order if page.startswith("book/experiments/") and "_" in page]
    task_pages = [page for page in tasks if page not in (summary, data_size)]
    assert len(task_pages) == 8
    assert all(order.index(page) < order.index(summary) for page in task_pages)
    assert order.index("book/experiments/fc5_cifar10.ipynb") < order.index(data_size)
    baselines = order.index("book/heuristics/baselines.ipynb")
    assert baselines < order.index(gradual) and baselines < order.index(scaling)
