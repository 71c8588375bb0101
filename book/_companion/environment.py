"""What a run ran on: versions, device and profile, for the top of every executed notebook."""

import platform
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version

from prunelimit.store import JSONValue, device_description, git_commit

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
