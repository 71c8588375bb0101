"""Two-sided bounds on the predicted pruning limit for a positive semidefinite curvature.

With c(k) = 2 eps / R(k)^2 the threshold is a regularised trace,

    rho*(k) = (1/D) tr A (A + c I)^{-1},

and the predicted limit is the root of k / D = rho*(k). Each Gaussian probe g gives an unbiased
estimate (|g|^2 / D) v^T f_c(A) v of rho*(k), v = g / |g|, and Lanczos from v brackets that
quadratic form for every k at once (``prunelimit.quadrature``). The probes' sampling error is
bounded by the Gaussian trace-estimation tail of Cortinovis and Kressner (2022, Thm. 1),

    P(|tr_m(B) - tr B| >= e) <= 2 exp(-m e^2 / (4 |B|_F^2 + 4 e |B|_2)),

with B = f_c(A): |B|_2 <= 1 and |B|_F^2 <= tr B = D rho*. It is applied on a fixed grid of k
(a union bound), rho* decreasing in k carries it between grid points, and every probe count the
search tries gets its own share of the failure probability (1 - confidence) / 2^(r + 1): the
interval holds with at least the stated confidence however the search stops.
"""

import dataclasses
import math
import time

import numpy as np
import torch
from tqdm import tqdm

from prunelimit.lanczos import Operator, Tridiagonal
from prunelimit.limit import Weights, projection_distances
from prunelimit.quadrature import LanczosRecurrence, gauss_radau_rule, gauss_rule

FLOOR_ROUNDING = 100 * float(np.finfo(np.float64).eps)  # Ritz values this far below 0 are rounding
# ... and so are those within 1e-9 / s_max of 0: a Radau node there moves no bound by more than
# 1e-9, though rounding in a product's intermediate terms (a saturated softmax) can put it below
# rounding relative to |T| when the curvature itself is tiny
FLOOR_NEGLIGIBLE = 1e-9


class NotPositiveSemidefiniteError(ValueError):
    """The curvature has clearly negative eigenvalues: no quadrature certificate exists."""


@dataclasses.dataclass(frozen=True)
class CertifiedLimit:
    """The predicted limit (fraction kept) lies in [low, high] with probability >= confidence.

    rho: the middle of the interval. trace: one entry per check (steps, probes, products,
    seconds, low, high, and the bracket of the probe estimate alone, quadrature_low/high).
    """

    low: float
    high: float
    rho: float
    num_steps: int
    num_probes: int
    num_products: int
    seconds: float
    converged: bool
    stop_reason: str
    tolerance: float
    confidence: float
    dimension: int
    eps: float
    num_examples: int | None
    curvature: str
    trace: list[dict[str, float]]

    @property
    def width(self) -> float:
        return self.high - self.low

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, stored: dict) -> "CertifiedLimit":
        return cls(**stored)

    def __str__(self) -> str:
        data = f" over N = {self.num_examples}" if self.num_examples else ""
        return (
            f"{self.low:.4f}-{self.high:.4f} ({self.confidence:.0%} confidence; {self.curvature}"
            f"{data}; {self.num_steps} Lanczos steps x {self.num_probes} probes)"
        )


@dataclasses.dataclass(frozen=True)
class _Grid:
    """Fixed points k_j = j D / G and the scales R(k_j)^2 / (2 eps) of f at them."""

    ks: np.ndarray
    scales: np.ndarray
    dimension: int

    @classmethod
    def build(cls, distances: np.ndarray, eps: float, points: int) -> "_Grid":
        dimension = len(distances) - 1
        ks = np.linspace(0.0, dimension, points + 1)
        squared = np.interp(ks, np.arange(dimension + 1), distances**2)
        return cls(ks, squared / (2 * eps), dimension)

    def root_bounds(self, lower: np.ndarray, upper: np.ndarray) -> tuple[float, float]:
        """Bounds on the root of k / D = rho*(k) from bounds lower <= rho* <= upper on the grid.

        rho* decreases in k, so on [k_j, k_j+1] it lies between lower(k_j+1) and upper(k_j).
        The root lies above every k with k / D <= lower there, below every k with k / D >= upper.
        """
        size = self.dimension
        left, right = self.ks[:-1], self.ks[1:]
        ceiling = np.maximum(left, upper[:-1] * size)
        high = float(np.min(ceiling[ceiling <= right], initial=size))
        floor = np.minimum(right, lower[1:] * size)
        low = float(np.max(floor[floor >= left], initial=0.0))
        return low / size, high / size


def _floor(tridiagonal: Tridiagonal) -> float:
    """A floor for the spectrum: zero minus rounding relative to |T| (Gershgorin)."""
    off = np.abs(np.append(tridiagonal.offdiagonal, tridiagonal.residual_norm))
    norm = np.max(np.abs(tridiagonal.diagonal) + off + np.append(0.0, off[:-1]))
    return -FLOOR_ROUNDING * float(norm)


def _probe_bounds(recurrence: LanczosRecurrence, grid: _Grid) -> tuple[np.ndarray, np.ndarray]:
    """Mean over probes of the Gauss-Radau (lower) and Gauss (upper) estimates of rho*, [G + 1]."""
    lows, highs = [], []
    for tridiagonal, norm_sq in zip(
        recurrence.tridiagonals(), recurrence.start_norms_sq, strict=True
    ):
        floor = min(_floor(tridiagonal), -FLOOR_NEGLIGIBLE / float(np.max(grid.scales)))
        try:
            radau = gauss_radau_rule(tridiagonal, floor)
        except ValueError as error:
            raise NotPositiveSemidefiniteError(
                "the curvature has a negative eigenvalue (a Ritz value below "
                f"{floor:.3g}): certified bounds need a positive semidefinite operator such as "
                "GGNOperator. For the Hessian's |lambda| rule use prediction_spread."
            ) from error
        factor = norm_sq / grid.dimension
        lows.append(factor * radau.integrate_ratio(grid.scales))
        highs.append(factor * gauss_rule(tridiagonal).integrate_ratio(grid.scales))
    return np.mean(lows, axis=0), np.mean(highs, axis=0)


def _sampling_margin(upper: np.ndarray, probes: int, dimension: int, failure: float) -> np.ndarray:
    """Half-width t [G + 1] with |estimate - rho*| <= t on the whole grid w.p. >= 1 - failure.

    t solves t^2 = a (rho* + t), a = 4 log(2 (G + 1) / failure) / (m D), from the tail bound with
    |B|_F^2 <= D rho*; rho* <= upper + t turns it into t = a + sqrt(a^2 + a upper).
    """
    a = 4 * math.log(2 * len(upper) / failure) / (probes * dimension)
    return a + np.sqrt(a**2 + a * np.maximum(upper, 0.0))


def certified_limit(
    operator: Operator,
    weights: Weights,
    eps: float,
    tolerance: float = 0.01,
    *,
    confidence: float = 0.99,
    num_probes: int = 1,
    max_probes: int = 64,
    max_products: int = 20_000,
    check_every: int = 10,
    grid_points: int = 2048,
    seed: int = 0,
    progress: bool = True,
) -> CertifiedLimit:
    """Bounds [low, high] on the predicted limit for a PSD curvature ``operator`` (e.g. G).

    Adds Lanczos steps (checking every ``check_every``) until the interval is at most
    ``tolerance`` wide; when the quadrature has closed to half the tolerance and the probes'
    sampling error keeps it open, doubles the probes (up to ``max_probes``). Stops when
    ``max_products`` operator products are spent and says so. An operator with a ``rank_bound``
    (GGNOperator: N (C - 1)) caps rho* at rank_bound / D: no more eigenvalues are nonzero, and
    f_c < 1 on each. ``weights`` [D] are the weights the
    operator is taken over; eps > 0 the loss tolerance. The operator must compute in float64.
    """
    if not eps > 0:
        raise ValueError(f"eps must be positive (a loss increase), got {eps!r}")
    if not 0.5 <= confidence < 1:
        raise ValueError(f"confidence must be in [0.5, 1), got {confidence!r}")
    if not tolerance > 0:
        raise ValueError(f"tolerance must be positive, got {tolerance!r}")
    if not 1 <= num_probes <= max_probes:
        raise ValueError(f"need 1 <= num_probes <= max_probes, got {num_probes}, {max_probes}")
    if operator.dtype != torch.float64:
        raise ValueError(
            f"the operator computes in {operator.dtype}: certified bounds need float64 "
            "products (build it with dtype=torch.float64)"
        )
    distances = projection_distances(weights)
    size = len(distances) - 1
    if operator.shape[0] != size:
        raise ValueError(f"the operator has D = {operator.shape[0]}, the weights D = {size}")
    grid = _Grid.build(distances, eps, grid_points)
    ceiling = min(getattr(operator, "rank_bound", size), size) / size
    generator = torch.Generator().manual_seed(seed)

    def new_runs(count: int) -> LanczosRecurrence:
        starts = torch.randn(count, size, generator=generator, dtype=torch.float64)
        return LanczosRecurrence(operator, starts)

    start = time.perf_counter()
    recurrence, products, rounds = new_runs(num_probes), 0, 0
    trace: list[dict[str, float]] = []
    bar = tqdm(total=max_products, desc="certified limit", unit="product", disable=not progress)
    while True:
        for _ in range(check_every):
            if recurrence.num_steps < size and products + recurrence.num_probes <= max_products:
                taken = recurrence.step()
                products += taken
                bar.update(taken)
        lower, upper = _probe_bounds(recurrence, grid)
        failure = (1 - confidence) / 2 ** (rounds + 1)
        margin = _sampling_margin(upper, recurrence.num_probes, size, failure)
        low, high = grid.root_bounds(
            np.maximum(lower - margin, 0.0), np.minimum(upper + margin, ceiling)
        )
        quadrature_low, quadrature_high = grid.root_bounds(lower, np.minimum(upper, ceiling))
        trace.append(
            {
                "steps": recurrence.num_steps,
                "probes": recurrence.num_probes,
                "products": products,
                "seconds": time.perf_counter() - start,
                "low": low,
                "high": high,
                "quadrature_low": quadrature_low,
                "quadrature_high": quadrature_high,
            }
        )
        bar.set_postfix(low=f"{low:.4f}", high=f"{high:.4f}")
        if high - low <= tolerance:
            converged, reason = True, f"the interval is at most {tolerance:g} wide"
            break
        if products + recurrence.num_probes > max_products:  # not one more step affordable
            converged, reason = False, f"the budget of {max_products} products is spent"
            break
        quadrature_closed = (
            quadrature_high - quadrature_low <= tolerance / 2 or recurrence.num_steps >= size
        )
        if quadrature_closed and recurrence.num_probes >= max_probes:
            converged = False
            reason = f"the probes' sampling error keeps it open at {max_probes} probes"
            break
        if quadrature_closed:
            extra = min(recurrence.num_probes, max_probes - recurrence.num_probes)
            if products + extra * recurrence.num_steps > max_products:
                converged = False
                reason = (
                    f"the budget of {max_products} products cannot pay for {extra} more probes "
                    f"at {recurrence.num_steps} steps"
                )
                break
            added = new_runs(extra)
            while added.num_steps < recurrence.num_steps and (taken := added.step()):
                products += taken
                bar.update(taken)
            recurrence.extend(added)
            rounds += 1
    bar.close()
    return CertifiedLimit(
        low=low,
        high=high,
        rho=(low + high) / 2,
        num_steps=recurrence.num_steps,
        num_probes=recurrence.num_probes,
        num_products=products,
        seconds=time.perf_counter() - start,
        converged=converged,
        stop_reason=reason,
        tolerance=tolerance,
        confidence=confidence,
        dimension=size,
        eps=eps,
        num_examples=getattr(operator, "num_examples", None),
        curvature=type(operator).__name__,
        trace=trace,
    )
