"""Methods experiments for certified bounds on the predicted limit: the threshold as a
regularised trace, why Lanczos does not converge for the |lambda| rule, and certified bounds
closing as Lanczos steps are added.

Everything runs on the digits network of Part II (``limit_factors``): its exact Hessian
eigenvalues, weights and eps, and the exact eigenvalues of its Gauss-Newton matrix G over the same
training images. Lanczos runs on diagonal operators holding these eigenvalues: a symmetric matrix
and the diagonal matrix of its eigenvalues have the same spectral measure from a probe whose
squared components along the eigenvectors are all 1/D, and a random-sign probe of unit length
has exactly these components on a diagonal matrix. So the only error left is that of stopping
Lanczos after m steps.
"""

import dataclasses
import math
from typing import Any, ClassVar

import numpy as np
import torch

from companion.curvature_studies import LOSS, digits_network
from companion.limit_studies import LimitFactorsConfig
from companion.profiles import ProfiledConfig
from prunelimit.certified import certified_limit
from prunelimit.curvature import dense_ggn
from prunelimit.lanczos import SLQResult, rademacher_probes
from prunelimit.limit import (
    flat_weights,
    predict_limit,
    predictions_by_steps,
    projection_distances,
)
from prunelimit.models import prunable_parameters
from prunelimit.pruning_function import NegativeCurvature, curvature_magnitudes
from prunelimit.quadrature import LanczosRecurrence


class DiagonalOperator:
    """diag(values) [D, D] as a float64 operator: a product costs O(D)."""

    def __init__(self, values: np.ndarray | torch.Tensor) -> None:
        self.values = torch.as_tensor(np.asarray(values, dtype=np.float64))
        if self.values.ndim != 1:
            raise ValueError(f"expected a vector of diagonal entries, got {self.values.ndim} dims")
        size = len(self.values)
        self.shape = (size, size)
        self.dtype, self.device = torch.float64, self.values.device

    def matmat(self, vectors: torch.Tensor) -> torch.Tensor:
        return self.values[:, None] * vectors.to(self.dtype)


# ------------------------------------------------------------------------ the regularised trace
def regularisation_scale(weights: np.ndarray, eps: float, ratio: float) -> float:
    """c = 2 eps / R(k)^2 at k = ratio D (R^2 interpolated linearly between integers)."""
    distances = projection_distances(weights)
    size = len(distances) - 1
    squared = float(np.interp(ratio * size, np.arange(size + 1), distances**2))
    return 2 * eps / squared


def regularised_trace(curvature: np.ndarray, scale: float) -> float:
    """(1/D) tr A (A + cI)^{-1} = 1 - (c/D) tr (A + cI)^{-1} for A with eigenvalues ``curvature``
    (>= 0) and c = ``scale`` > 0, computed from the right-hand side."""
    curvature = np.asarray(curvature, dtype=np.float64)
    return 1.0 - scale * float(np.mean(1.0 / (curvature + scale)))


def regularised_trace_rows(
    eigenvalues: np.ndarray,
    weights: np.ndarray,
    eps: float,
    ratios: list[float],
    negative: NegativeCurvature,
) -> list[dict[str, float]]:
    """At each ratio k/D: c, lambda_max / c, rho*(k) as a regularised trace, the share of
    eigenvalues of A above c, and the share within a factor 10 of c."""
    curvature = curvature_magnitudes(eigenvalues, negative)
    rows = []
    for ratio in ratios:
        scale = regularisation_scale(weights, eps, ratio)
        rows.append(
            {
                "ratio": float(ratio),
                "c": scale,
                "top_over_c": float(curvature.max() / scale),
                "rho_star": regularised_trace(curvature, scale),
                "share_above": float(np.mean(curvature > scale)),
                "share_near": float(np.mean((curvature > scale / 10) & (curvature < 10 * scale))),
            }
        )
    return rows


# ------------------------------------------------------------------------ repeated problems
def repeat_problem(
    eigenvalues: np.ndarray, weights: np.ndarray, eps: float, repeats: int
) -> tuple[np.ndarray, np.ndarray, float]:
    """The problem ``repeats`` times over: eigenvalues and weights tiled, eps multiplied.

    Its R^2 at r k is r R(k)^2, so c(r k) = c(k), and its spectral averages equal the original's:
    the predicted ratio is the same (the page proves it, the tests check it).
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    return (
        np.tile(np.asarray(eigenvalues, dtype=np.float64), repeats),
        np.tile(np.asarray(weights, dtype=np.float64), repeats),
        eps * repeats,
    )


# ------------------------------------------------------------------------ Lanczos convergence
def truncation_steps(num_steps: int, dense_until: int = 50, points: int = 60) -> list[int]:
    """Every m up to ``dense_until``, then ``points`` geometrically spaced m up to ``num_steps``."""
    dense = range(1, min(dense_until, num_steps) + 1)
    sparse = np.geomspace(min(dense_until, num_steps), num_steps, points).round().astype(int)
    return sorted({*dense, *sparse.tolist()})


def _lanczos_run(values: np.ndarray, num_steps: int, seed: int) -> SLQResult:
    """Plain Lanczos (no re-orthogonalisation) on diag(values) from one random-sign probe."""
    size = len(values)
    recurrence = LanczosRecurrence(DiagonalOperator(values), rademacher_probes(size, 1, seed))
    while recurrence.num_steps < num_steps and recurrence.step():
        pass
    return SLQResult.from_tridiagonals(recurrence.tridiagonals(), size, seed)


# (label, the operator Lanczos runs on, the rule applied to its Ritz values); "G" is the
# Gauss-Newton matrix, "|H|" the absolute value of the Hessian (a product with it needs the
# eigendecomposition of H: possible here, not on a real network).
SERIES = (
    ("|λ| rule, Lanczos on H", "H", "abs"),
    ("flat rule, Lanczos on H", "H", "flat"),
    ("Lanczos on G", "G", "flat"),
    ("Lanczos on |H|", "|H|", "flat"),
)


def lanczos_convergence(
    hessian: np.ndarray,
    gauss_newton: np.ndarray,
    weights: np.ndarray,
    eps: float,
    num_steps: int,
    seed: int = 0,
) -> dict:
    """The predicted ratio from the first m steps of plain Lanczos, against m, for each of
    ``SERIES``, with the exact prediction from the eigenvalues. ``gauss_newton`` must be >= 0."""
    if np.min(gauss_newton) < 0:
        raise ValueError("the Gauss-Newton eigenvalues must be >= 0 (clip rounding first)")
    operators = {"H": hessian, "G": gauss_newton, "|H|": np.abs(hessian)}
    num_steps = min(num_steps, len(hessian))
    runs = {name: _lanczos_run(values, num_steps, seed) for name, values in operators.items()}
    series = []
    for label, name, rule in SERIES:
        run = runs[name]
        available = max(len(t.diagonal) for t in run.tridiagonals)
        steps = truncation_steps(available)
        predictions, _ = predictions_by_steps(run, weights, eps, steps, negative=rule)
        exact = predict_limit(operators[name], weights, eps, negative=rule).rho
        series.append(
            {
                "label": label,
                "operator": name,
                "steps": steps,
                "rho": predictions.tolist(),
                "exact": exact,
                "rule": rule,
            }
        )
    return {"num_steps": num_steps, "series": series}


def settled_after(series: dict, tolerance: float) -> int | None:
    """The smallest m from which every computed truncation is within ``tolerance`` of the exact
    prediction; None when the last one is not."""
    errors = np.abs(np.asarray(series["rho"]) - series["exact"])
    if errors[-1] > tolerance:
        return None
    outside = np.flatnonzero(errors > tolerance)
    return series["steps"][0] if len(outside) == 0 else series["steps"][outside[-1] + 1]


# ------------------------------------------------------------------------ the experiment
@dataclasses.dataclass(frozen=True)
class CertifiedMethodsConfig(ProfiledConfig):
    """The digits network (``factors``), the Lanczos convergence study and the certified run.

    lanczos_steps: steps of the convergence study (at most D). dimension: the repeated problem
    has at least this many weights. The certified run uses one probe (``max_probes`` 1) and a
    tolerance far below what one probe can certify, so that it runs to its budget of
    ``max_products`` Lanczos steps and shows the bounds over all of them.
    """

    PROFILE_OVERRIDES: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {
            "factors": LimitFactorsConfig.for_profile("smoke"),
            "lanczos_steps": 150,
            "dimension": 50_000,
            "grid_points": 8192,
            "max_products": 30,
        }
    }

    factors: LimitFactorsConfig = dataclasses.field(default_factory=LimitFactorsConfig)
    lanczos_steps: int = 1000
    probe_seed: int = 0
    dimension: int = 1_000_000
    tolerance: float = 1e-6
    confidence: float = 0.99
    check_every: int = 1
    grid_points: int = 65_536
    max_products: int = 60


def gauss_newton_spectrum(config: LimitFactorsConfig, weights: np.ndarray) -> dict:
    """Exact eigenvalues of G over the digits network's training images (the network is trained
    again from the same seed; its weights must be the stored ``weights``)."""
    network = digits_network(config.network)
    params = prunable_parameters(network.model)
    trained = flat_weights(params)
    if trained.shape != weights.shape or not np.allclose(trained, weights, rtol=0, atol=1e-12):
        raise RuntimeError(
            "the retrained digits network differs from the stored one (limit_factors): "
            "recompute limit_factors on this machine"
        )
    matrix = dense_ggn(network.model, LOSS, network.train, params)
    eigenvalues = np.linalg.eigvalsh(((matrix + matrix.T) / 2).numpy())
    num_examples, classes = len(network.train[0]), int(network.train[1].max()) + 1
    return {
        "eigenvalues": eigenvalues.tolist(),
        "num_examples": num_examples,
        "rank_bound": num_examples * (classes - 1),  # rank G <= N (C - 1)
    }


def bounds_closing(
    gauss_newton: np.ndarray, weights: np.ndarray, eps: float, config: CertifiedMethodsConfig
) -> dict:
    """``certified_limit`` on diag(G) repeated to at least ``config.dimension`` weights, with
    the exact prediction of the original and of the repeated problem."""
    repeats = math.ceil(config.dimension / len(gauss_newton))
    values, tiled, scaled_eps = repeat_problem(gauss_newton, weights, eps, repeats)
    result = certified_limit(
        DiagonalOperator(values),
        tiled,
        scaled_eps,
        tolerance=config.tolerance,
        confidence=config.confidence,
        num_probes=1,
        max_probes=1,
        max_products=config.max_products,
        check_every=config.check_every,
        grid_points=config.grid_points,
        seed=config.probe_seed,
        progress=False,
    )
    return {
        "repeats": repeats,
        "dimension": len(values),
        "exact": predict_limit(gauss_newton, weights, eps, negative="flat").rho,
        "exact_repeated": predict_limit(values, tiled, scaled_eps, negative="flat").rho,
        "certified": result.to_dict(),
    }


def certified_methods(config: CertifiedMethodsConfig, factors: dict) -> dict:
    """G's spectrum, the Lanczos convergence study and the certified run on the digits network
    (``factors``: the stored result of ``limit_factors(config.factors)``)."""
    hessian = np.asarray(factors["eigenvalues"])
    weights = np.asarray(factors["weights"])
    eps = factors["eps"]
    gauss_newton = gauss_newton_spectrum(config.factors, weights)
    computed = np.asarray(gauss_newton["eigenvalues"])
    clipped = np.maximum(computed, 0.0)  # G is PSD: negative values are rounding
    return {
        "gauss_newton": {**gauss_newton, "most_negative": float(computed.min())},
        "convergence": lanczos_convergence(
            hessian, clipped, weights, eps, config.lanczos_steps, config.probe_seed
        ),
        "closing": bounds_closing(clipped, weights, eps, config),
    }
