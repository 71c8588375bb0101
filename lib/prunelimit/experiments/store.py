"""The results store: JSON results keyed by profile, experiment and config hash.

Results live under ``results/<profile>/<experiment>/<config hash>.json``. A stored result is reused
when its config is identical; writes are atomic (temporary file, then rename), so an interrupted
run leaves either the old file or the new one, and reruns resume from there.
"""

import dataclasses
import hashlib
import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prunelimit.experiments.profiles import check_profile
from prunelimit.paths import results_root

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


def config_hash(config: Any) -> str:
    """Stable 16-hex-digit digest of a dataclass or JSON-able config (key order does not matter)."""
    as_dict = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else config
    canonical = json.dumps(as_dict, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def write_json_atomic(path: Path, payload: JSONValue) -> None:
    """Write JSON so that readers see the old file or the complete new one, never a partial one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(payload, indent=1, sort_keys=True, allow_nan=False)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False) as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(handle.name, 0o644)  # temporary files are private (0600); results are shared files
    Path(handle.name).replace(path)


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


class ResultsStore:
    """Stored results of one experiment under one profile.

    >>> store = ResultsStore("data_summary", "cpu")
    >>> result = store.load_or_compute(config, lambda: {"accuracy": 0.88})
    """

    def __init__(self, experiment: str, profile: str, root: Path | None = None) -> None:
        self.folder = (root or results_root()) / check_profile(profile) / experiment

    def path(self, config: Any) -> Path:
        return self.folder / f"{config_hash(config)}.json"

    def load(self, config: Any) -> JSONValue | None:
        """The stored result for exactly this config, or None."""
        path = self.path(config)
        return json.loads(path.read_text())["result"] if path.is_file() else None

    def save(self, config: Any, result: JSONValue) -> Path:
        check_finite(result)
        as_dict = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else config
        path = self.path(config)
        write_json_atomic(path, {"config": as_dict, "result": result})
        return path

    def load_or_compute(
        self, config: Any, compute: Callable[[], JSONValue], recompute: Recompute = False
    ) -> JSONValue:
        """The stored result if fresh under ``recompute`` (see ``is_fresh``); else ``compute()``,
        then stored."""
        if is_fresh(self.path(config), recompute):
            return self.load(config)
        self.save(config, compute())
        return self.load(config)  # the stored form, so a first run and a rerun return the same
