"""Profiles, the book's results store (its layout and provenance; the library's Store is tested
in tests/unit/test_store.py) and the reproducibility records."""

import datetime
import json
from pathlib import Path

import pytest
import torch

import companion.cones  # noqa: F401  (registers its configs as ProfiledConfig subclasses)
from companion import DataSummaryConfig, ProfiledConfig, ResultsStore, check_profile
from companion.profiles import RESULTS_ENV
from companion.records import datasets_table, stored_results_table
from prunelimit.store import Store, config_hash, write_json_atomic


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


def test_a_config_hashes_as_its_fields() -> None:
    assert config_hash(DataSummaryConfig()) == config_hash(
        {"dataset": "fashion-mnist", "split": "train", "examples": 60_000}
    )


def test_the_book_stores_results_per_profile_and_experiment_with_the_profile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The library's Store (tests/unit/test_store.py) in the book's layout:
    results/<profile>/<experiment>/<config hash>.json, the profile in the provenance."""
    store = ResultsStore("demo", "smoke", root=tmp_path)
    assert isinstance(store, Store) and store.profile == "smoke"
    config = DataSummaryConfig.for_profile("smoke")
    result = store.load_or_compute(config, lambda: {"x": 0.5})
    path = store.path(config)
    assert path == tmp_path / "smoke" / "demo" / f"{config_hash(config)}.json"
    stored = json.loads(path.read_text())
    assert stored["result"] == result == {"x": 0.5}
    assert stored["config"] == {"dataset": "fashion-mnist", "split": "train", "examples": 1000}
    assert set(stored["provenance"]) == {"commit", "utc", "device", "torch", "profile", "seconds"}
    assert stored["provenance"]["profile"] == "smoke"
    monkeypatch.setenv(RESULTS_ENV, str(tmp_path / "elsewhere"))
    assert ResultsStore("demo", "cpu").folder == tmp_path / "elsewhere" / "cpu" / "demo"
    with pytest.raises(ValueError, match="unknown profile"):
        ResultsStore("demo", "fast", root=tmp_path)


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
