"""Monte Carlo estimates: a mean with its standard error."""

import dataclasses
import math

import numpy as np


@dataclasses.dataclass(frozen=True)
class Estimate:
    """A Monte Carlo mean with its standard error (sample std / sqrt(num_samples))."""

    mean: float
    stderr: float
    num_samples: int

    @classmethod
    def of(cls, samples: np.ndarray) -> "Estimate":
        samples = np.asarray(samples, dtype=np.float64)
        return cls(
            float(samples.mean()),
            float(samples.std(ddof=1) / math.sqrt(samples.size)),
            samples.size,
        )

    def z_score(self, value: float) -> float:
        """(mean - value) / stderr: how many standard errors the estimate is from ``value``."""
        if self.stderr > 0:
            return (self.mean - value) / self.stderr
        return 0.0 if self.mean == value else math.copysign(math.inf, self.mean - value)

    def to_dict(self) -> dict[str, float]:
        """{mean, stderr}: the JSON form the results store keeps."""
        return {"mean": self.mean, "stderr": self.stderr}

    def __str__(self) -> str:
        return f"{self.mean:.4g} ± {self.stderr:.2g}"
