"""A Part III task computed under ``torchrun`` with two gloo processes on CPU stores what one
process stores: the same training and pruning, and curvature stages equal to rounding."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.book.conftest import PROJECT

TASK = "fc5-cifar10"


def _compute(results: Path, *launcher: str) -> dict[str, dict]:
    """Run ``companion.compute`` on TASK (smoke profile) into ``results``; stage -> result."""
    environment = os.environ | {"PRUNELIMIT_RESULTS": str(results), "OMP_NUM_THREADS": "1"}
    command = [*launcher, "-m", "companion.compute", TASK, "--profile", "smoke"]
    run = subprocess.run(command, capture_output=True, text=True, env=environment, cwd=PROJECT)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count(f"{TASK} (smoke):") == 1, run.stdout  # process 0 alone reports
    folders = sorted((results / "smoke" / "experiments" / TASK).iterdir())
    return {
        f"{folder.name}/{path.stem}": json.loads(path.read_text())["result"]
        for folder in folders
        for path in folder.glob("*.json")
    }


@pytest.mark.skipif(sys.platform == "win32", reason="torchrun's gloo on Linux and macOS")
def test_two_processes_store_what_one_process_stores(tmp_path) -> None:
    alone = _compute(tmp_path / "one", sys.executable)
    torchrun = (sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2")
    shared = _compute(tmp_path / "two", *torchrun)
    assert shared.keys() == alone.keys()
    curvature = [name for name in alone if name.split("/")[1].startswith(("limit", "certified"))]
    assert len(curvature) == 2  # the |H| spectrum and the certified G bounds
    for name in alone.keys() - set(curvature):
        if not name.endswith("/train"):  # training records its wall time
            assert shared[name] == alone[name], name
    bounds = next(name for name in curvature if "certified" in name)
    for end in ("low", "high"):
        assert shared[bounds][end] == pytest.approx(alone[bounds][end], abs=1e-9)
    spectral = next(name for name in curvature if "limit" in name)
    rho, expected = shared[spectral]["prediction"]["rho"], alone[spectral]["prediction"]["rho"]
    assert rho == pytest.approx(expected, abs=1e-4)  # float32 products summed in another order
