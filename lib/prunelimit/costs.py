"""What a computation will cost before it runs: a few units timed on the device, times how many
of each the remaining work needs.

``LimitStudy.estimate()`` builds a ``CostEstimate`` from three units: a training epoch (timed
over a few batches), one curvature product (a matrix-vector product over the curvature data)
and one evaluation of the fixed training examples.
"""

import dataclasses
import time
from collections.abc import Callable

import torch


def timed(work: Callable[[], object], device: torch.device) -> float:
    """Wall seconds of ``work()``, waiting for a GPU's queue before and after."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    work()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def _duration(seconds: float) -> str:
    """'42 s', '3.5 min' or '2.1 h'."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


@dataclasses.dataclass(frozen=True)
class Unit:
    """One kind of work: its measured seconds each and how many the remaining work needs."""

    name: str
    seconds: float
    count: float

    @property
    def total(self) -> float:
        return self.seconds * self.count


@dataclasses.dataclass(frozen=True)
class CostEstimate:
    """The projected wall time of the work still to do on ``device``, unit by unit. Counts are
    upper bounds where the work stops early (a certified budget, retraining trials)."""

    device: str
    units: tuple[Unit, ...]

    @property
    def seconds(self) -> float:
        return sum(unit.total for unit in self.units)

    def __str__(self) -> str:
        rows = [
            f"  {unit.name:<20} {unit.seconds:9.3f} s x {unit.count:>8,.0f} = "
            f"{_duration(unit.total)}"
            for unit in self.units
        ]
        return "\n".join(
            [
                f"Estimated time on {self.device}:",
                *rows,
                f"  total at most {_duration(self.seconds)}",
            ]
        )
