"""The library's results store: keys by name and by config, reuse and recompute, execution knobs,
atomic writes, refusal of NaN, provenance and the log of uses."""

import dataclasses
import json
import subprocess
from pathlib import Path

import pytest
import torch

from prunelimit.store import (
    ADDED_SETTING,
    EXECUTION_KNOB,
    STORE_LOG_ENV,
    Store,
    config_hash,
    hashed_fields,
    is_fresh,
    provenance,
    write_json_atomic,
)

PROVENANCE_KEYS = {"commit", "utc", "device", "torch", "seconds"}


class Counter:
    def __init__(self, result: object) -> None:
        self.calls, self.result = 0, result

    def __call__(self) -> object:
        self.calls += 1
        return self.result


@dataclasses.dataclass(frozen=True)
class Inner:
    steps: int = 8
    chunk_size: int = dataclasses.field(default=100, metadata=EXECUTION_KNOB)


@dataclasses.dataclass(frozen=True)
class Settings:
    seed: int = 0
    grid: tuple[float, ...] = (0.1, 0.5)
    inner: Inner = Inner()
    workers: int = dataclasses.field(default=1, metadata=EXECUTION_KNOB)


def test_config_hash_depends_on_content_not_key_order() -> None:
    assert config_hash({"a": 1, "b": [1, 2]}) == config_hash({"b": [1, 2], "a": 1})
    assert config_hash({"a": 1}) != config_hash({"a": 2})
    assert len(config_hash({"a": 1})) == 16
    assert config_hash(Settings()) == config_hash(
        {"seed": 0, "grid": [0.1, 0.5], "inner": {"steps": 8}}
    ), "a dataclass hashes as its fields, tuples as lists, execution knobs left out"


def test_execution_knobs_do_not_change_the_hash() -> None:
    """A setting that cannot change a result (a chunk size) must not invalidate stored results,
    at any depth; any other field must."""
    base = Settings()
    assert hashed_fields(base) == {"seed": 0, "grid": [0.1, 0.5], "inner": {"steps": 8}}
    knobs = Settings(inner=Inner(chunk_size=7), workers=4)
    assert config_hash(knobs) == config_hash(base)
    assert config_hash(Settings(seed=1)) != config_hash(base)
    assert config_hash(Settings(inner=Inner(steps=9))) != config_hash(base)


def test_an_added_setting_at_its_default_keeps_the_stored_keys() -> None:
    """A setting added after results were stored (say a training precision) leaves the keys of
    configs at its default unchanged, and changes them when set."""

    @dataclasses.dataclass(frozen=True)
    class Extended(Settings):
        precision: str = dataclasses.field(default="float32", metadata=ADDED_SETTING)

    assert config_hash(Extended()) == config_hash(Settings())
    assert hashed_fields(Extended(precision="bfloat16"))["precision"] == "bfloat16"
    assert config_hash(Extended(precision="bfloat16")) != config_hash(Settings())


def test_results_are_stored_reused_and_recomputed(tmp_path: Path) -> None:
    store = Store(tmp_path / "demo")
    compute = Counter({"loss": 0.25, "curve": (1.0, 0.5)})
    first = store.load_or_compute({"seed": 1}, compute)
    assert first == {"loss": 0.25, "curve": [1.0, 0.5]}, "the stored (JSON) form, also at first"
    assert store.load_or_compute({"seed": 1}, compute) == first and compute.calls == 1
    store.load_or_compute({"seed": 2}, compute)
    assert compute.calls == 2, "a different config must not reuse a stored result"
    store.load_or_compute({"seed": 1}, compute, recompute=True)
    assert compute.calls == 3
    path = store.path({"seed": 1})
    assert path == tmp_path / "demo" / f"{config_hash({'seed': 1})}.json"
    stored = json.loads(path.read_text())
    assert set(stored) == {"config", "result", "provenance"} and stored["config"] == {"seed": 1}
    assert store.load({"seed": 1}) == first and store.load({"seed": 3}) is None
    assert store.load_payload({"seed": 1}) == stored


def test_keys_are_names_or_configs(tmp_path: Path) -> None:
    """A name (a study's stage) is the file's name; a config is hashed, a dataclass without its
    execution knobs, and stored as its hashed fields unless a config is given."""
    store = Store(tmp_path)
    store.load_or_compute("dense", lambda: {"eps": 0.1}, config={"model": "fc5"})
    assert store.path("dense") == tmp_path / "dense.json"
    assert json.loads(store.path("dense").read_text())["config"] == {"model": "fc5"}
    store.load_or_compute(Settings(workers=8), lambda: {"x": 1.0})
    assert store.path(Settings(workers=8)) == store.path(Settings()), "knobs do not key"
    stored = json.loads(store.path(Settings()).read_text())
    assert stored["config"] == hashed_fields(Settings())
    assert store.load(Settings(inner=Inner(chunk_size=1))) == {"x": 1.0}
    assert store.is_fresh("dense") and not store.is_fresh("dense", recompute=True)
    assert not store.is_fresh("limit")


def test_a_stored_result_says_where_it_came_from_and_every_use_is_logged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "uses.jsonl"
    monkeypatch.setenv(STORE_LOG_ENV, str(log))
    store = Store(tmp_path / "demo", profile="smoke", machine="test")
    store.load_or_compute({"seed": 1}, lambda: {"loss": 0.5})
    store.load_or_compute({"seed": 1}, lambda: {"loss": 0.5})
    stored = json.loads(store.path({"seed": 1}).read_text())["provenance"]
    assert set(stored) == PROVENANCE_KEYS | {"profile", "machine"}
    assert stored["profile"] == "smoke" and stored["machine"] == "test"
    assert stored["torch"] == torch.__version__
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


def test_provenance_has_its_keys_and_the_extra_ones() -> None:
    record = provenance(1.23456, profile="cpu")
    assert set(record) == PROVENANCE_KEYS | {"profile"}
    assert record["seconds"] == 1.235 and record["profile"] == "cpu"
    assert set(provenance(0.0)) == PROVENANCE_KEYS


def test_nothing_is_logged_without_the_log_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(STORE_LOG_ENV, raising=False)
    store = Store(tmp_path / "demo")
    store.load_or_compute("x", lambda: {"loss": 0.5})
    assert [path.name for path in tmp_path.rglob("*") if path.is_file()] == ["x.json"]


def test_a_failing_computation_keeps_the_old_result(tmp_path: Path) -> None:
    store = Store(tmp_path / "demo")
    store.load_or_compute({"seed": 1}, lambda: {"loss": 1.0})

    def crash() -> dict:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        store.load_or_compute({"seed": 1}, crash, recompute=True)
    assert store.load({"seed": 1}) == {"loss": 1.0}
    assert [path.name for path in store.folder.iterdir()] == [store.path({"seed": 1}).name]


def test_nan_results_are_refused_with_a_clear_error(tmp_path: Path) -> None:
    store = Store(tmp_path / "demo")
    with pytest.raises(ValueError, match=r"\['curve'\]\[1\] is nan.*not stored"):
        store.load_or_compute({"seed": 1}, lambda: {"curve": [0.5, float("nan")]})
    with pytest.raises(ValueError, match=r"limit\['rho'\] is inf"):
        store.load_or_compute("limit", lambda: {"rho": float("inf")})
    assert not store.folder.exists() or not any(store.folder.iterdir())


def test_atomic_write_leaves_a_shared_file_and_no_temporary_files(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "result.json"
    write_json_atomic(target, {"x": 1})
    write_json_atomic(target, {"x": 2})
    assert json.loads(target.read_text()) == {"x": 2}
    assert [path.name for path in target.parent.iterdir()] == ["result.json"]
    assert target.stat().st_mode & 0o777 == 0o644, "results are shared files, not private ones"
    store = Store(tmp_path / "store")
    store.load_or_compute("stage", lambda: {"x": 1.0})
    assert store.path("stage").stat().st_mode & 0o777 == 0o644
    with pytest.raises(ValueError):
        write_json_atomic(tmp_path / "nan.json", {"x": float("nan")})
    assert not (tmp_path / "nan.json").exists()


def test_a_start_time_recomputes_only_results_stored_before_it(tmp_path: Path) -> None:
    """What `make execute` passes: results written since its start are reused on a restart."""
    store = Store(tmp_path / "demo")
    compute = Counter({"loss": 0.5})
    store.load_or_compute({"seed": 1}, compute)
    written = store.path({"seed": 1}).stat().st_mtime
    store.load_or_compute({"seed": 1}, compute, recompute=written - 10)
    assert compute.calls == 1, "stored after the start: reused"
    store.load_or_compute({"seed": 1}, compute, recompute=written + 10)
    assert compute.calls == 2, "stored before the start: recomputed"
    assert is_fresh(store.path({"seed": 1}), False) and not is_fresh(tmp_path / "none", False)
