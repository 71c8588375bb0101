"""The reproducibility page's experiment: a summary of the offline training data."""

import dataclasses

from prunelimit.data import class_summary, load_dataset
from prunelimit.experiments.profiles import by_profile


@dataclasses.dataclass(frozen=True)
class DataSummaryConfig:
    """Which examples the reproducibility page summarises."""

    dataset: str = "fashion-mnist"
    split: str = "train"
    examples: int = 60_000

    @classmethod
    def for_profile(cls, profile: str) -> "DataSummaryConfig":
        return cls(examples=by_profile(profile, smoke=1_000, cpu=60_000, full=60_000))


def summarise_data(config: DataSummaryConfig) -> dict[str, list]:
    """Class counts, class-mean images and pixel statistics of the configured examples."""
    return class_summary(*load_dataset(config.dataset, config.split, limit=config.examples))
