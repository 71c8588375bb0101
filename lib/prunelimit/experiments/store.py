"""The results store: JSON results keyed by profile, experiment and config hash.

Results live under ``results/<profile>/<experiment>/<config hash>.json``. A stored result is reused
when its config is identical; writes are atomic (temporary file, then rename), so an interrupted
run leaves either the old file or the new one, and reruns resume from there. Every stored result
carries its ``provenance`` (commit, UTC time, device, torch version, profile, wall seconds), and
every use of a stored result (reused or computed) is appended to the file named by
``$PRUNELIMIT_STORE_LOG`` when it is set, so the book's build can say what it reused.
"""

import dataclasses
import datetime
import hashlib
import json
import math
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from prunelimit.environment import device_description, git_commit
from prunelimit.experiments.profiles import check_profile
from prunelimit.paths import results_root

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


def provenance(profile: str, seconds: float) -> dict[str, JSONValue]:
    """Where a result computed now came from; ``seconds`` is the wall time it took."""
    return {
        "commit": git_commit(),
        "utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "device": device_description(),
        "torch": torch.__version__,
        "profile": profile,
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


def summarise_provenance(
    records: list[dict[str, JSONValue] | None], time_digits: int = 16
) -> dict[str, str] | None:
    """The provenance of a group of results as text: "when" (the UTC span, to the minute, or to
    the day with ``time_digits=10``), and each of "device", "torch", "commit", "profile" as the
    distinct values joined by "; ", and "seconds" (total wall time). Records that are None
    (stored before provenance was recorded) are skipped; None when no record is known."""
    known = [r for r in records if r]
    if not known:
        return None
    times = sorted(r["utc"][:time_digits].replace("T", " ") for r in known)
    summary = {"when": times[0] if times[0] == times[-1] else f"{times[0]} to {times[-1]}"}
    for key in ("device", "torch", "commit", "profile"):
        summary[key] = "; ".join(sorted({str(r[key]) for r in known}))
    summary["seconds"] = f"{sum(r['seconds'] for r in known):,.0f}"
    return summary


def describe_provenance(records: list[dict[str, JSONValue] | None]) -> str:
    """One sentence on where the results with these provenance records were computed (see
    ``summarise_provenance``)."""
    summary = summarise_provenance(records)
    parts = []
    if summary:
        parts.append(
            f"computed {summary['when']} UTC on {summary['device']} with torch "
            f"{summary['torch']} at commit {summary['commit']} (profile {summary['profile']}), "
            f"{summary['seconds']} s of wall time in all"
        )
    unrecorded = len(records) - sum(1 for r in records if r)
    if unrecorded:
        parts.append(f"{unrecorded} stored before provenance was recorded")
    return "; ".join(parts)


def load_or_compute_payload(
    path: Path,
    compute: Callable[[], JSONValue],
    recompute: Recompute,
    config: JSONValue,
    profile: str,
    where: str = "result",
) -> JSONValue:
    """The result stored at ``path`` if fresh under ``recompute`` (see ``is_fresh``); else
    ``compute()``, stored atomically as ``{"config", "result", "provenance"}``. Returns the stored
    (JSON) form, so a first run and a rerun return the same."""
    if is_fresh(path, recompute):
        payload = json.loads(path.read_text())
        record_use(path, "reused", payload)
        return payload["result"]
    start = time.perf_counter()
    result = compute()
    check_finite(result, where)
    payload = {
        "config": config,
        "result": result,
        "provenance": provenance(profile, time.perf_counter() - start),
    }
    write_json_atomic(path, payload)
    record_use(path, "computed", payload)
    return json.loads(path.read_text())["result"]


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
        self.profile = check_profile(profile)
        self.folder = (root or results_root()) / self.profile / experiment

    def path(self, config: Any) -> Path:
        return self.folder / f"{config_hash(config)}.json"

    def load(self, config: Any) -> JSONValue | None:
        """The stored result for exactly this config, or None."""
        path = self.path(config)
        return json.loads(path.read_text())["result"] if path.is_file() else None

    def load_or_compute(
        self, config: Any, compute: Callable[[], JSONValue], recompute: Recompute = False
    ) -> JSONValue:
        """The stored result if fresh under ``recompute`` (see ``is_fresh``); else ``compute()``,
        then stored with its provenance."""
        as_dict = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else config
        return load_or_compute_payload(self.path(config), compute, recompute, as_dict, self.profile)
