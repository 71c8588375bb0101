"""Profiles: how big a run is.

- ``smoke``: seconds per notebook on tiny data (the tests run every notebook this way);
- ``cpu``: real offline data, minutes per notebook on a 2-core machine (the committed book);
- ``full``: the paper's tasks and recipe, for a GPU box.
"""

from typing import Any, ClassVar, Self

PROFILES = ("smoke", "cpu", "full")


def check_profile(profile: str) -> str:
    """Return ``profile`` if it is known; a ValueError that lists the choices otherwise."""
    if profile not in PROFILES:
        raise ValueError(
            f"unknown profile {profile!r}: choose one of {', '.join(PROFILES)} "
            f"(for example `make book PROFILE=cpu`, or papermill -p profile cpu)"
        )
    return profile


class ProfiledConfig:
    """Base of the experiment configs (frozen dataclasses): their defaults are the ``cpu`` profile,
    and ``PROFILE_OVERRIDES`` lists, per other profile, the fields that differ."""

    PROFILE_OVERRIDES: ClassVar[dict[str, dict[str, Any]]] = {}

    @classmethod
    def for_profile(cls, profile: str) -> Self:
        return cls(**cls.PROFILE_OVERRIDES.get(check_profile(profile), {}))
