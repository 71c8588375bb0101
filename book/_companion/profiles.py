"""Profiles: how big a run is.

- ``smoke``: seconds per notebook on tiny data (the tests run every notebook this way);
- ``cpu``: real offline data, minutes per notebook on a 2-core machine (the committed book);
- ``full``: the paper's tasks and recipe, for a GPU box.
"""

import os
from pathlib import Path
from typing import Any, ClassVar, Self

from prunelimit.store import Store

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


PROJECT_ROOT = Path(__file__).resolve().parents[2]
RESULTS_ENV = "PRUNELIMIT_RESULTS"


def results_root() -> Path:
    """Folder of the book's stored results: ``$PRUNELIMIT_RESULTS`` or ``<checkout>/results``."""
    configured = os.environ.get(RESULTS_ENV)
    return Path(configured).expanduser() if configured else PROJECT_ROOT / "results"


class ResultsStore(Store):
    """The stored results of one of the book's experiments under one profile, in
    ``results/<profile>/<experiment>/<config hash>.json``, with the profile in their provenance.

    >>> store = ResultsStore("data_summary", "cpu")
    >>> result = store.load_or_compute(config, lambda: {"accuracy": 0.88})
    """

    def __init__(self, experiment: str, profile: str, root: Path | None = None) -> None:
        self.profile = check_profile(profile)
        super().__init__((root or results_root()) / profile / experiment, profile=profile)
