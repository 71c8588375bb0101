"""The results store: JSON results in a folder, one file per key, with their provenance.

A stored result is reused unless told to recompute; writes are atomic (temporary file, then
rename), so an interrupted run leaves either the old file or the new one, and reruns resume from
there. Every stored result carries its ``provenance`` (commit, UTC time, device, torch version,
wall seconds, and whatever the caller adds, e.g. a profile), and every use of a stored result
(reused or computed) is appended to the file named by ``$PRUNELIMIT_STORE_LOG`` when it is set,
so a caller can say what it reused.

>>> store = Store(Path("results/mine"))
>>> result = store.load_or_compute("accuracy", lambda: {"accuracy": 0.88})
"""

import contextlib
import dataclasses
import datetime
import hashlib
import json
import math
import os
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

STORE_LOG_ENV = "PRUNELIMIT_STORE_LOG"

JSONValue = Any  # a value json.dumps accepts: dict, list, str, int, float, bool, None
Recompute = bool | float  # True: recompute; False: reuse; a Unix time: recompute older results


def is_fresh(path: Path, recompute: Recompute) -> bool:
    """Whether the stored file at ``path`` may be reused under ``recompute``.

    A Unix time (``make execute`` passes the time it started) reuses only files written since,
    so a restarted run keeps what it already recomputed.
    """
    if not path.is_file() or recompute is True:
        return False
    return recompute is False or path.stat().st_mtime >= float(recompute)


EXECUTION_KNOB = {"hashed": False}  # field metadata: a setting that cannot change a result
# Field metadata of a setting added after results were stored: hashed only when it differs from
# its default, so results stored before it existed (computed as its default) keep their keys.
ADDED_SETTING = {"hashed": "unless default"}


def _is_hashed(field: dataclasses.Field, value: Any) -> bool:
    rule = field.metadata.get("hashed", True)
    return value != field.default if rule == "unless default" else bool(rule)


def hashed_fields(config: Any) -> JSONValue:
    """A dataclass config as a dict without its execution knobs (fields declared with
    ``metadata=EXECUTION_KNOB``, e.g. a chunk size) and without added settings at their default
    (``metadata=ADDED_SETTING``), recursively; other values unchanged."""
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return {
            field.name: hashed_fields(getattr(config, field.name))
            for field in dataclasses.fields(config)
            if _is_hashed(field, getattr(config, field.name))
        }
    if isinstance(config, list | tuple):
        return [hashed_fields(item) for item in config]
    if isinstance(config, dict):
        return {key: hashed_fields(item) for key, item in config.items()}
    return config


def config_hash(config: Any) -> str:
    """Stable 16-hex-digit digest of a dataclass or JSON-able config (key order does not matter;
    execution knobs, see ``hashed_fields``, do not count)."""
    canonical_input = hashed_fields(config)
    canonical = json.dumps(canonical_input, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


@contextlib.contextmanager
def atomic_file(path: Path, suffix: str = ".tmp") -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; when the block ends without an error it is
    synced and renamed to ``path``, else deleted: readers see the old file or the complete new
    one, never a partial one. The file is made readable by all (0o644)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=suffix, delete=False) as handle:
        partial = Path(handle.name)
    try:
        yield partial
        with open(partial, "rb") as written:
            os.fsync(written.fileno())
        partial.chmod(0o644)  # temporary files are private (0600); results are shared files
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)


def write_json_atomic(path: Path, payload: JSONValue) -> None:
    """Write JSON atomically (see ``atomic_file``)."""
    text = json.dumps(payload, indent=1, sort_keys=True, allow_nan=False)
    with atomic_file(path) as partial:
        partial.write_text(text)


def git_commit() -> str:
    """The commit (short hash) of the git checkout holding this library, with ``-dirty`` when
    the library's folder has uncommitted changes; a sentence says so outside a git checkout."""
    folder = Path(__file__).resolve().parent

    def git(*arguments: str) -> str:
        return subprocess.run(
            ["git", *arguments], cwd=folder, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()

    try:
        head = git("rev-parse", "--short", "HEAD")
        changed = git("status", "--porcelain", "--", ".")
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"
    return f"{head}-dirty" if changed else head


def device_description() -> str:
    """The accelerator torch will use, or the CPU with its thread count."""
    if torch.cuda.is_available():
        return f"cuda: {torch.cuda.get_device_name(0)} (CUDA {torch.version.cuda})"
    threads = torch.get_num_threads()
    return f"cpu: {os.cpu_count()} cores, torch uses {threads} thread{'s' if threads > 1 else ''}"


def provenance(seconds: float, **extra: JSONValue) -> dict[str, JSONValue]:
    """Where a result computed now came from; ``seconds`` is the wall time it took, ``extra``
    (e.g. ``profile="cpu"``) is added as it is."""
    return {
        "commit": git_commit(),
        "utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "device": device_description(),
        "torch": torch.__version__,
        **extra,
        "seconds": round(seconds, 3),
    }


def record_use(path: Path, action: str, payload: dict[str, JSONValue]) -> None:
    """Append ``{"path", "action" ("reused" | "computed"), "provenance"}`` as a JSON line to
    ``$PRUNELIMIT_STORE_LOG`` (nothing when it is unset)."""
    log = os.environ.get(STORE_LOG_ENV)
    if log:
        line = {"path": str(path), "action": action, "provenance": payload.get("provenance")}
        with open(log, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(line) + "\n")


def check_finite(value: JSONValue, where: str = "result") -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(
            f"{where} is {value}: a NaN or infinite result is not stored; check the loss"
        )
    if isinstance(value, dict):
        for key, item in value.items():
            check_finite(item, f"{where}[{key!r}]")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            check_finite(item, f"{where}[{index}]")


class Store:
    """Stored results in one folder: ``<folder>/<key>.json`` holding ``{"config", "result",
    "provenance"}``. ``key`` is a name (a stage of a study) or a config (dataclass or JSON-able
    dict), which is then hashed (``config_hash``); ``provenance`` is added to every record."""

    def __init__(self, folder: Path, **provenance: JSONValue) -> None:
        self.folder, self.extra_provenance = Path(folder), provenance

    def path(self, key: Any) -> Path:
        name = key if isinstance(key, str) else config_hash(key)
        return self.folder / f"{name}.json"

    def load_payload(self, key: Any) -> dict[str, JSONValue] | None:
        """The stored ``{"config", "result", "provenance"}`` under ``key``, or None."""
        path = self.path(key)
        return json.loads(path.read_text()) if path.is_file() else None

    def load(self, key: Any) -> JSONValue | None:
        """The stored result under ``key``, or None."""
        payload = self.load_payload(key)
        return None if payload is None else payload["result"]

    def is_fresh(self, key: Any, recompute: Recompute = False) -> bool:
        """Whether the result under ``key`` may be reused (see ``is_fresh``)."""
        return is_fresh(self.path(key), recompute)

    def load_or_compute(
        self,
        key: Any,
        compute: Callable[[], JSONValue],
        recompute: Recompute = False,
        config: JSONValue = None,
    ) -> JSONValue:
        """The result stored under ``key`` if fresh under ``recompute`` (see ``is_fresh``); else
        ``compute()``, stored atomically with ``config`` (default: the key's hashed fields) and its
        provenance. Returns the stored (JSON) form, so a first run and a rerun return the same."""
        path = self.path(key)
        if is_fresh(path, recompute):
            payload = json.loads(path.read_text())
            record_use(path, "reused", payload)
            return payload["result"]
        start = time.perf_counter()
        result = compute()
        check_finite(result, path.stem)
        payload = {
            "config": hashed_fields(key) if config is None else config,
            "result": result,
            "provenance": provenance(time.perf_counter() - start, **self.extra_provenance),
        }
        write_json_atomic(path, payload)
        record_use(path, "computed", payload)
        return json.loads(path.read_text())["result"]
