"""Profiles and the results store: hashing, reuse, recompute, atomic writes, refusal of NaN."""

import datetime
import json
import subprocess
from pathlib import Path

import pytest
import torch

import prunelimit.experiments.cones  # noqa: F401  (registers its configs as ProfiledConfig subclasses)
from prunelimit.experiments import (
    DataSummaryConfig,
    ProfiledConfig,
    ResultsStore,
    check_profile,
    config_hash,
    write_json_atomic,
)
from prunelimit.experiments.records import datasets_table, stored_results_table
from prunelimit.experiments.store import STORE_LOG_ENV, is_fresh


def test_profiles() -> None:
    assert [check_profile(name) for name in ("smoke", "cpu", "full")] == ["smoke", "cpu", "full"]
    with pytest.raises(ValueError, match=r"unknown profile 'fast'.*PROFILE=cpu"):
        check_profile("fast")
    assert (
        DataSummaryConfig.for_profile("smoke").examples
        < DataSummaryConfig.for_profile("cpu").examples
    )


@pytest.mark.parametrize("config_type", ProfiledConfig.__subclasses__(), ids=lambda t: t.__name__)
@pytest.mark.parametrize("profile", ["smoke", "cpu", "full"])
def test_every_config_builds_for_every_profile(config_type: type, profile: str) -> None:
    config = config_type.for_profile(profile)
    assert set(config_type.PROFILE_OVERRIDES) <= {"smoke", "full"}, "cpu is the defaults"
    assert config_hash(config)  # JSON-able, so it can key the results store
    assert (config == config_type()) == (
        profile == "cpu" or profile not in config_type.PROFILE_OVERRIDES
    )


def test_config_hash_depends_on_content_not_key_order() -> None:
    assert config_hash({"a": 1, "b": [1, 2]}) == config_hash({"b": [1, 2], "a": 1})
    assert config_hash({"a": 1}) != config_hash({"a": 2})
    assert config_hash(DataSummaryConfig()) == config_hash(
        {"dataset": "fashion-mnist", "split": "train", "examples": 60_000}
    )


class Counter:
    def __init__(self, result: object) -> None:
        self.calls, self.result = 0, result

    def __call__(self) -> object:
        self.calls += 1
        return self.result


def test_results_are_stored_reused_and_recomputed(tmp_path: Path) -> None:
    store = ResultsStore("demo", "smoke", root=tmp_path)
    compute = Counter({"loss": 0.25, "curve": (1.0, 0.5)})
    first = store.load_or_compute({"seed": 1}, compute)
    assert first == {
        "loss": 0.25,
        "curve": [1.0, 0.5],
    }  # the stored (JSON) form, also on a first run
    assert store.load_or_compute({"seed": 1}, compute) == first and compute.calls == 1
    store.load_or_compute({"seed": 2}, compute)
    assert compute.calls == 2, "a different config must not reuse a stored result"
    store.load_or_compute({"seed": 1}, compute, recompute=True)
    assert compute.calls == 3
    stored = json.loads(store.path({"seed": 1}).read_text())
    assert stored["config"] == {"seed": 1}
    assert store.path({"seed": 1}).parent == tmp_path / "smoke" / "demo"
    assert store.path({"seed": 1}).stat().st_mode & 0o777 == 0o644


def test_a_stored_result_says_where_it_came_from_and_every_use_is_logged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "uses.jsonl"
    monkeypatch.setenv(STORE_LOG_ENV, str(log))
    store = ResultsStore("demo", "smoke", root=tmp_path)
    store.load_or_compute({"seed": 1}, lambda: {"loss": 0.5})
    store.load_or_compute({"seed": 1}, lambda: {"loss": 0.5})
    stored = json.loads(store.path({"seed": 1}).read_text())["provenance"]
    assert set(stored) == {"commit", "utc", "device", "torch", "profile", "seconds"}
    assert stored["profile"] == "smoke" and stored["torch"] == torch.__version__
    assert stored["seconds"] >= 0 and stored["utc"].endswith("+00:00")
    assert stored["device"].startswith(("cpu", "cuda"))
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert stored["commit"].removesuffix("-dirty") == head
    uses = [json.loads(line) for line in log.read_text().splitlines()]
    assert [use["action"] for use in uses] == ["computed", "reused"]
    assert all(use["path"] == str(store.path({"seed": 1})) for use in uses)
    assert uses[1]["provenance"] == stored


def test_a_failing_computation_keeps_the_old_result(tmp_path: Path) -> None:
    store = ResultsStore("demo", "cpu", root=tmp_path)
    store.load_or_compute({"seed": 1}, lambda: {"loss": 1.0})

    def crash() -> dict:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        store.load_or_compute({"seed": 1}, crash, recompute=True)
    assert store.load({"seed": 1}) == {"loss": 1.0}
    assert [path.name for path in store.folder.iterdir()] == [store.path({"seed": 1}).name]


def test_nan_results_are_refused_with_a_clear_error(tmp_path: Path) -> None:
    store = ResultsStore("demo", "cpu", root=tmp_path)
    with pytest.raises(ValueError, match=r"result\['curve'\]\[1\] is nan"):
        store.load_or_compute({"seed": 1}, lambda: {"curve": [0.5, float("nan")]})
    assert not store.folder.exists() or not any(store.folder.iterdir())


def test_atomic_write_leaves_no_temporary_files(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "result.json"
    write_json_atomic(target, {"x": 1})
    write_json_atomic(target, {"x": 2})
    assert json.loads(target.read_text()) == {"x": 2}
    assert [path.name for path in target.parent.iterdir()] == ["result.json"]


def test_a_start_time_recomputes_only_results_stored_before_it(tmp_path: Path) -> None:
    """What `make execute` passes: results written since its start are reused on a restart."""
    store = ResultsStore("demo", "cpu", root=tmp_path)
    compute = Counter({"loss": 0.5})
    store.load_or_compute({"seed": 1}, compute)
    written = store.path({"seed": 1}).stat().st_mtime
    store.load_or_compute({"seed": 1}, compute, recompute=written - 10)
    assert compute.calls == 1, "stored after the start: reused"
    store.load_or_compute({"seed": 1}, compute, recompute=written + 10)
    assert compute.calls == 2, "stored before the start: recomputed"
    assert is_fresh(store.path({"seed": 1}), False) and not is_fresh(tmp_path / "none", False)


def test_the_reproducibility_records_list_stored_results_and_data_sets(tmp_path: Path) -> None:
    store = ResultsStore("demo", "smoke", root=tmp_path)
    store.load_or_compute({"seed": 1}, lambda: {"loss": 0.5})
    old = tmp_path / "smoke" / "older" / "result.json"
    write_json_atomic(old, {"config": {}, "result": {}})  # stored before provenance existed
    rows = {row[0]: row for row in stored_results_table("smoke", root=tmp_path).rows}
    assert rows["demo"][1:3] == ("1", datetime.datetime.now(datetime.UTC).date().isoformat())
    assert rows["demo"][4] == torch.__version__ and rows["older"][2] == "not recorded"
    with pytest.raises(ValueError, match="make execute PROFILE=cpu"):
        stored_results_table("cpu", root=tmp_path)
    data = datasets_table("cpu")
    by_name = {row[0]: row for row in data.rows}
    assert set(by_name) == {"Fashion-MNIST", "MNIST-5k", "digits"}
    assert "exact spectra" in by_name["digits"][-1]
    assert "resnet18-tinyimagenet" in by_name["MNIST-5k"][-1]
    assert "fc5-cifar10" in by_name["Fashion-MNIST"][-1]
