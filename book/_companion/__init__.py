"""The book's own code: profiles, the paper's task registry, the book's experiments and figures,
and the build pipeline. The library (``prunelimit``) knows nothing of them.

Every experiment notebook takes a ``profile`` parameter (see ``profiles``); its configs come from
``Config.for_profile(profile)`` and its results from ``ResultsStore.load_or_compute``.
"""

from companion.data_summary import DataSummaryConfig, summarise_data
from companion.profiles import PROFILES, ProfiledConfig, ResultsStore, check_profile

__all__ = [
    "PROFILES",
    "DataSummaryConfig",
    "ProfiledConfig",
    "ResultsStore",
    "check_profile",
    "summarise_data",
]
