"""Part II experiments: the two factors of the limit on a real network, and exact ground truths
on quadratic losses with controlled spectra, weights and eigenbases."""

import dataclasses
import math
import time
from typing import Any, ClassVar

import numpy as np
from tqdm import tqdm

from companion.curvature_studies import LOSS, DigitsNetworkConfig, digits_network
from companion.profiles import ProfiledConfig
from prunelimit.curvature import dense_hessian
from prunelimit.lanczos import MatrixOperator, slq
from prunelimit.limit import (
    flat_weights,
    loss_tolerance,
    predict_limit,
    prediction_spread,
    quadratic_limit,
)
from prunelimit.models import prunable_parameters


# ----------------------------------------------------------------------------- a real network
@dataclasses.dataclass(frozen=True)
class LimitFactorsConfig(ProfiledConfig):
    """The digits network: its limit, and how it moves with eps, weight scale and curvature."""

    PROFILE_OVERRIDES: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {"network": DigitsNetworkConfig(hidden=6, epochs=3)}
    }

    network: DigitsNetworkConfig = dataclasses.field(default_factory=DigitsNetworkConfig)
    eps_factors: tuple[float, ...] = (0.1, 0.3, 1.0, 3.0, 10.0)
    scales: tuple[float, ...] = (0.5, 1.0, 2.0, 3.0, 5.0)


def limit_factors(config: LimitFactorsConfig) -> dict:
    """Exact spectrum over the prunable weights, eps from mini-batch noise, rho under changes."""
    network = digits_network(config.network)
    weights = prunable_parameters(network.model)
    matrix = dense_hessian(network.model, LOSS, network.train, weights, chunk_size=1000)
    eigenvalues = np.linalg.eigvalsh(((matrix + matrix.T) / 2).numpy())
    w_star = flat_weights(weights)
    eps = loss_tolerance(network.model, LOSS, network.train)
    base = {
        rule: predict_limit(eigenvalues, w_star, eps, negative=rule).to_dict()
        for rule in ("abs", "flat")
    }
    return {
        "eps": eps,
        "dimension": len(w_star),
        "eigenvalues": eigenvalues.tolist(),
        "weights": w_star.tolist(),
        "prediction": base,
        "vs_eps": [predict_limit(eigenvalues, w_star, eps * f).rho for f in config.eps_factors],
        "vs_weight_scale": [predict_limit(eigenvalues, w_star * c, eps).rho for c in config.scales],
        "vs_spectrum_scale": [
            predict_limit(eigenvalues * c, w_star, eps).rho for c in config.scales
        ],
    }


# ----------------------------------------------------------------------------- quadratic losses
SPECTRA = ("power law", "bulk + outliers", "null space", "negative")
WEIGHT_LAWS = ("Gaussian", "Laplace", "Student-t(3)")
BASES = ("random", "aligned")


def make_spectrum(name: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """Eigenvalues [D] of a named shape (their order is random)."""
    if name == "power law":
        values = 1.0 / np.arange(1, size + 1)
    elif name == "bulk + outliers":
        values = np.concatenate([np.abs(rng.normal(0, 0.02, size - 10)), rng.uniform(1, 5, 10)])
    elif name == "null space":
        zeros = int(0.3 * size)
        values = np.concatenate([np.zeros(zeros), rng.exponential(0.2, size - zeros)])
    elif name == "negative":
        negatives = int(0.2 * size)
        values = np.concatenate(
            [-np.abs(rng.normal(0, 0.02, negatives)), rng.exponential(0.2, size - negatives)]
        )
    else:
        raise ValueError(f"unknown spectrum {name!r}; choose from {SPECTRA}")
    return rng.permutation(values)


def make_weights(law: str, size: int, rng: np.random.Generator) -> np.ndarray:
    if law == "Gaussian":
        return rng.standard_normal(size)
    if law == "Laplace":
        return rng.laplace(0, 1 / math.sqrt(2), size)
    if law == "Student-t(3)":
        return rng.standard_t(3, size) / math.sqrt(3)
    raise ValueError(f"unknown weight law {law!r}; choose from {WEIGHT_LAWS}")


def make_hessian(
    eigenvalues: np.ndarray, basis: str, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(H = Q diag(lambda) Q^T, Q): Q uniformly random, or Q = I (eigenbasis on the coordinates)."""
    if basis == "aligned":
        return np.diag(eigenvalues), np.eye(len(eigenvalues))
    if basis != "random":
        raise ValueError(f"unknown basis {basis!r}; choose from {BASES}")
    rotation, upper = np.linalg.qr(rng.standard_normal((len(eigenvalues), len(eigenvalues))))
    rotation *= np.sign(np.diag(upper))
    hessian = (rotation * eigenvalues) @ rotation.T
    return (hessian + hessian.T) / 2, rotation


@dataclasses.dataclass(frozen=True)
class QuadraticStudyConfig(ProfiledConfig):
    """Exact limits against predictions on quadratic losses.

    eps is ``eps_fraction`` of the loss of the all-zero network under |H|,
    1/2 sum_i |lambda_i| (u_i^T w*)^2, so that the limit is neither trivially 0 nor 1.
    """

    PROFILE_OVERRIDES: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {"size": 60, "sizes": (40, 80), "slq_size": 80, "slq_steps": 20, "slq_probes": 4},
        "full": {"sizes": (100, 300, 1000, 2000, 5000, 8000)},
    }

    size: int = 1000
    sizes: tuple[int, ...] = (100, 300, 1000, 2000, 5000)
    eps_fraction: float = 0.05
    slq_size: int = 2000
    slq_steps: int = 150
    slq_probes: int = 16
    seed: int = 0


def _eps_for(
    eigenvalues: np.ndarray, basis: np.ndarray, w_star: np.ndarray, fraction: float
) -> float:
    """``fraction`` of 1/2 w*^T |H| w*, with |H| = Q |Lambda| Q^T."""
    return fraction * 0.5 * float(np.sum(np.abs(eigenvalues) * (basis.T @ w_star) ** 2))


def _case(spectrum: str, law: str, basis: str, size: int, fraction: float, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    eigenvalues = make_spectrum(spectrum, size, rng)
    w_star = make_weights(law, size, rng)
    hessian, rotation = make_hessian(eigenvalues, basis, rng)
    eps = _eps_for(eigenvalues, rotation, w_star, fraction)
    start = time.perf_counter()
    exact = quadratic_limit(hessian, w_star, eps) / size
    prediction = predict_limit(eigenvalues, w_star, eps)
    return {
        "spectrum": spectrum,
        "weights": law,
        "basis": basis,
        "D": size,
        "eps": eps,
        "exact": exact,
        "rho": prediction.rho,
        "lower": prediction.lower,
        "upper": prediction.upper,
        "sharpness": prediction.sharpness_bound,
        "seconds": time.perf_counter() - start,
    }


def quadratic_study(config: QuadraticStudyConfig) -> dict:
    """A table over spectra x weight laws x eigenbases at one D, scaling in D, SLQ vs exact
    (the SLQ prediction with its spread over Lanczos truncations and probes)."""
    jobs = [(s, w, b) for s in SPECTRA for w in WEIGHT_LAWS for b in BASES]
    table = [
        _case(s, w, b, config.size, config.eps_fraction, config.seed + i)
        for i, (s, w, b) in enumerate(tqdm(jobs, desc="quadratic cases"))
    ]
    scaling = [
        _case(
            "power law", "Gaussian", "random", size, config.eps_fraction, config.seed + 100 + size
        )
        for size in tqdm(config.sizes, desc="sizes")
    ]
    rng = np.random.default_rng(config.seed + 7)
    eigenvalues = make_spectrum("power law", config.slq_size, rng)
    w_star = make_weights("Gaussian", config.slq_size, rng)
    hessian, rotation = make_hessian(eigenvalues, "random", rng)
    eps = _eps_for(eigenvalues, rotation, w_star, config.eps_fraction)
    estimate = slq(MatrixOperator(hessian), config.slq_steps, config.slq_probes, seed=config.seed)
    return {
        "table": table,
        "scaling": scaling,
        "slq": {
            "D": config.slq_size,
            "exact_spectrum": predict_limit(eigenvalues, w_star, eps).to_dict(),
            "slq": predict_limit(estimate, w_star, eps).to_dict(),
            "spread": prediction_spread(estimate, w_star, eps).to_dict(),
            "exact_limit": quadratic_limit(hessian, w_star, eps) / config.slq_size,
        },
    }


def error_summary(rows: list[dict]) -> dict[str, dict[str, float]]:
    """Per eigenbasis: mean and largest |prediction - exact| in ratio points, and the share of cases
    whose exact limit lies inside the bounds."""
    summary = {}
    for basis in dict.fromkeys(r["basis"] for r in rows):
        mine = [r for r in rows if r["basis"] == basis]
        errors = np.array([100 * (r["rho"] - r["exact"]) for r in mine])
        summary[basis] = {
            "mean": float(errors.mean()),
            "max_abs": float(np.abs(errors).max()),
            "inside": float(np.mean([r["lower"] <= r["exact"] <= r["upper"] for r in mine])),
        }
    return summary
