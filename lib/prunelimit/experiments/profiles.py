"""Profiles: how big a run is.

- ``smoke``: seconds per notebook on tiny data (the tests run every notebook this way);
- ``cpu``: real offline data, minutes per notebook on a 2-core machine (the committed book);
- ``full``: the paper's tasks and recipe, for a GPU box.
"""

from typing import TypeVar

PROFILES = ("smoke", "cpu", "full")
T = TypeVar("T")


def check_profile(profile: str) -> str:
    """Return ``profile`` if it is known; a ValueError that lists the choices otherwise."""
    if profile not in PROFILES:
        raise ValueError(
            f"unknown profile {profile!r}: choose one of {', '.join(PROFILES)} "
            f"(for example `make book PROFILE=cpu`, or papermill -p profile cpu)"
        )
    return profile


def by_profile(profile: str, smoke: T, cpu: T, full: T) -> T:
    """The value for ``profile`` among the three given."""
    return {"smoke": smoke, "cpu": cpu, "full": full}[check_profile(profile)]
