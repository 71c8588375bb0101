"""The reproducibility page's experiment: a summary of the offline training data."""

import dataclasses
from typing import Any, ClassVar

from companion.profiles import ProfiledConfig
from prunelimit.data import class_summary, load_dataset


@dataclasses.dataclass(frozen=True)
class DataSummaryConfig(ProfiledConfig):
    """Which examples the reproducibility page summarises."""

    PROFILE_OVERRIDES: ClassVar[dict[str, dict[str, Any]]] = {"smoke": {"examples": 1_000}}

    dataset: str = "fashion-mnist"
    split: str = "train"
    examples: int = 60_000


def summarise_data(config: DataSummaryConfig) -> dict[str, list]:
    """Class counts, class-mean images and pixel statistics of the configured examples."""
    return class_summary(*load_dataset(config.dataset, config.split, limit=config.examples))
