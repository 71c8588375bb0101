"""Experiments: profiles, one config type per experiment, and the results store.

Every experiment notebook takes a ``profile`` parameter (see ``profiles``); its configs come from
``Config.for_profile(profile)`` and its results from ``ResultsStore.load_or_compute``.
"""

from prunelimit.experiments.data_summary import DataSummaryConfig, summarise_data
from prunelimit.experiments.profiles import PROFILES, ProfiledConfig, check_profile
from prunelimit.experiments.store import ResultsStore, config_hash, write_json_atomic

__all__ = [
    "PROFILES",
    "DataSummaryConfig",
    "ProfiledConfig",
    "ResultsStore",
    "check_profile",
    "config_hash",
    "summarise_data",
    "write_json_atomic",
]
