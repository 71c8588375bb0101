"""Part I experiments: statistical dimension tables, kinematic-formula checks, projected ellipsoids.

Each experiment is a frozen config (``Config.for_profile(profile)``) and a function of it that
returns a JSON-able dict, which notebooks pass through ``ResultsStore.load_or_compute``.
"""

import dataclasses
import math
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
from tqdm import tqdm

from companion.profiles import ProfiledConfig
from prunelimit import geometry as G


# ----------------------------------------------------------------------------- Moreau decomposition
def moreau_check(
    d: int = 21, num_points: int = 1000, alpha: float = 0.4, seed: int = 0
) -> list[dict]:
    """For each cone: max over random points of |Pi(Pi x) - Pi x|, |<x - Pi x, Pi x>| and
    |x - Pi_C x - Pi_polar x|, the polar's projection taken from its own closed form."""
    x = np.random.default_rng(seed).standard_normal((num_points, d))
    basis = x[:5].T
    cones = {  # name -> (projection onto C, projection onto the polar cone)
        "subspace": (
            lambda v: G.project_subspace(v, basis),
            lambda v: v - G.project_subspace(v, basis),
        ),
        "orthant": (G.project_orthant, lambda v: -G.project_orthant(-v)),
        "second-order": (G.project_second_order, lambda v: -G.project_second_order(-v)),
        f"circular (alpha={alpha})": (
            lambda v: G.project_circular(v, alpha),
            lambda v: -G.project_circular(-v, math.pi / 2 - alpha),
        ),
        "PSD": (G.project_psd, lambda v: -G.project_psd(-v)),
    }
    rows = []
    for name, (project, project_polar) in cones.items():
        p = project(x)
        rows.append(
            {
                "cone": name,
                "idempotence": float(np.abs(project(p) - p).max()),
                "orthogonality": float(np.abs(np.sum((x - p) * p, axis=1)).max()),
                "moreau": float(np.abs(x - p - project_polar(x)).max()),
            }
        )
    return rows


# ----------------------------------------------------------------------------- closed forms vs MC
def _cone_families(
    circular_alpha: float,
) -> dict[str, Callable[[int], tuple[int, G.Projection, float]]]:
    """Cone name -> (requested d -> (actual d, projection, closed-form delta))."""

    def subspace(d: int) -> tuple[int, G.Projection, float]:
        k = max(1, d // 3)
        basis = np.eye(d)[:, :k]
        return d, lambda x: G.project_subspace(x, basis), G.statdim_subspace(k)

    def psd(d: int) -> tuple[int, G.Projection, float]:
        n = max(1, math.floor((math.sqrt(8 * d + 1) - 1) / 2))
        return n * (n + 1) // 2, G.project_psd, G.statdim_psd(n)

    return {
        "subspace (dim d/3)": subspace,
        "orthant": lambda d: (d, G.project_orthant, G.statdim_orthant(d)),
        "second-order": lambda d: (d, G.project_second_order, G.statdim_second_order(d)),
        f"circular (alpha={circular_alpha:.3f})": lambda d: (
            d,
            lambda x: G.project_circular(x, circular_alpha),
            G.statdim_circular(d, circular_alpha),
        ),
        "PSD (n(n+1)/2 <= d)": psd,
    }


@dataclasses.dataclass(frozen=True)
class StatdimTableConfig(ProfiledConfig):
    """Monte Carlo against closed-form statistical dimension for every cone family and d."""

    PROFILE_OVERRIDES: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {"dimensions": (2, 10, 50), "num_samples": 300},
        "full": {"num_samples": 40_000},
    }

    dimensions: tuple[int, ...] = (2, 5, 10, 20, 50, 100, 200, 500)
    num_samples: int = 4000
    circular_alpha: float = math.pi / 6
    seed: int = 0


def statdim_table(config: StatdimTableConfig) -> list[dict]:
    """Rows {cone, d, exact, delta: {mean, stderr}, width: {mean, stderr}, z}, every cone and d."""
    rows = []
    families = _cone_families(config.circular_alpha)
    jobs = [(name, d) for name in families for d in config.dimensions]
    for name, requested in tqdm(jobs, desc="cones"):
        d, project, exact = families[name](requested)
        delta = G.statdim_mc(project, d, config.num_samples, seed=config.seed + d)
        width = G.gaussian_width_mc(project, d, config.num_samples, seed=config.seed + d)
        rows.append(
            {
                "cone": name,
                "d": d,
                "exact": exact,
                "delta": delta.to_dict(),
                "width": width.to_dict(),
                "z": delta.z_score(exact),
            }
        )
    return rows


@dataclasses.dataclass(frozen=True)
class L1DescentConfig(ProfiledConfig):
    """delta / d of the l1 descent cone against psi(s/d) and ALMT's lower bound, over sparsity."""

    PROFILE_OVERRIDES: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {"d": 40, "sparsities": (2, 10, 30), "num_samples": 200},
        "full": {"d": 1000, "sparsities": (5, 10, 50, 100, 200, 300, 500, 700, 900, 990)},
    }

    d: int = 200
    sparsities: tuple[int, ...] = (2, 5, 10, 20, 40, 60, 80, 100, 120, 140, 160, 180, 195)
    num_samples: int = 2000
    seed: int = 0


def l1_descent_curve(config: L1DescentConfig) -> dict[str, list[float]]:
    """rho = s/d, Monte Carlo delta/d (mean, stderr), psi(rho) and psi(rho) - 2/sqrt(s d)."""
    d = config.d
    estimates = [
        G.statdim_l1_descent_mc(d, s, config.num_samples, seed=config.seed + s)
        for s in tqdm(config.sparsities, desc="l1 descent cones")
    ]
    return {
        "rho": [s / d for s in config.sparsities],
        "mean": [e.mean / d for e in estimates],
        "stderr": [e.stderr / d for e in estimates],
        "psi": [G.psi_l1(s / d) for s in config.sparsities],
        "lower": [G.psi_l1(s / d) - 2 / math.sqrt(s * d) for s in config.sparsities],
    }


# ----------------------------------------------------------------------------- kinematic formula
@dataclasses.dataclass(frozen=True)
class SubspaceMeetingConfig(ProfiledConfig):
    """How often a random k-dimensional subspace meets a circular cone and the orthant, over k."""

    PROFILE_OVERRIDES: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {"d": 20, "k_step": 5, "trials": 20},
        "full": {"d": 400, "k_step": 8, "trials": 1000},
    }

    d: int = 100
    alpha: float = math.pi / 6
    k_step: int = 4
    trials: int = 100
    eta: float = 0.1
    seed: int = 0


def subspace_meeting(config: SubspaceMeetingConfig) -> dict:
    """Empirical and exact meeting probabilities per k, beside delta and the a_eta window."""
    generator = np.random.default_rng(config.seed)
    d, ks = config.d, list(range(0, config.d + 1, config.k_step))
    circular, orthant = [], []
    for k in tqdm(ks, desc="random subspaces"):
        bases = [G.random_subspace(d, k, generator) for _ in range(config.trials)]
        circular.append(float(np.mean([G.meets_circular(b, config.alpha) for b in bases])))
        orthant.append(float(np.mean([G.meets_orthant(b) for b in bases])) if k else 0.0)
    return {
        "k": ks,
        "window_half_width": G.kinematic_a_eta(config.eta) * math.sqrt(d),
        "circular": {
            "empirical": circular,
            "exact": [G.probability_meets_circular(d, k, config.alpha) for k in ks],
            "statdim": G.statdim_circular(d, config.alpha),
        },
        "orthant": {
            "empirical": orthant,
            "exact": [G.probability_meets_orthant(d, k) for k in ks],
            "statdim": G.statdim_orthant(d),
        },
    }


@dataclasses.dataclass(frozen=True)
class PhaseTransitionConfig(ProfiledConfig):
    """Basis pursuit: success rate against the number of Gaussian measurements, per sparsity."""

    PROFILE_OVERRIDES: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {"d": 30, "sparsities": (3,), "m_step": 6, "trials": 8},
        "full": {"d": 200, "sparsities": (10, 40, 100), "trials": 200},
    }

    d: int = 100
    sparsities: tuple[int, ...] = (10, 30)
    m_step: int = 4
    trials: int = 30
    seed: int = 0


def phase_transitions(config: PhaseTransitionConfig) -> list[dict]:
    """One curve per sparsity: m values, success rate, stderr, delta = d psi(s/d), 50% point."""
    curves = []
    m_values = np.arange(config.m_step, config.d, config.m_step)
    for s in config.sparsities:
        result = G.phase_transition_l1(config.d, s, m_values, config.trials, seed=config.seed + s)
        curves.append(
            {
                "s": s,
                "m": result.m_values.tolist(),
                "success": result.success_rate.tolist(),
                "stderr": result.stderr.tolist(),
                "statdim": result.statdim,
                "crossing": result.crossing(0.5),
            }
        )
    return curves


# ----------------------------------------------------------------------------- projected ellipsoid
@dataclasses.dataclass(frozen=True)
class EllipsoidConfig(ProfiledConfig):
    """An ellipsoid seen from growing distance R: its cone's delta, the width formula, and how often
    random subspaces meet it. Eigenvalues ~ Exp(1), semi-axes sqrt(2 eps / lambda), random center
    direction."""

    PROFILE_OVERRIDES: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {
            "d": 10,
            "distances": (0.5, 2.0),
            "num_samples": 100,
            "meeting_distances": (2.0,),
            "trials": 20,
        },
        "full": {"d": 200, "num_samples": 4000, "k_step": 5, "trials": 1000},
    }

    d: int = 50
    eps: float = 0.05
    distances: tuple[float, ...] = (0.2, 0.35, 0.6, 1.0, 1.7, 3.0, 5.0)
    num_samples: int = 600
    meeting_distances: tuple[float, ...] = (0.35, 1.0, 3.0)
    k_step: int = 2
    trials: int = 200
    seed: int = 0

    def __post_init__(self) -> None:
        if not set(self.meeting_distances) <= set(self.distances):
            raise ValueError("meeting_distances must be among distances (their delta is reused)")

    def ellipsoid(self) -> tuple[np.ndarray, np.ndarray]:
        """(eigenvalues [d], unit center direction [d]) drawn from the config's seed."""
        generator = np.random.default_rng(self.seed)
        eigenvalues = generator.exponential(1.0, self.d)
        direction = generator.standard_normal(self.d)
        return eigenvalues, direction / np.linalg.norm(direction)


def ellipsoid_experiment(config: EllipsoidConfig) -> dict:
    """Per R: Monte Carlo delta of cone(E) and the formula; per meeting R: P(meet) over k."""
    eigenvalues, direction = config.ellipsoid()
    axes = np.sqrt(2 * config.eps / eigenvalues)
    deltas = []
    for distance in tqdm(config.distances, desc="ellipsoid cones"):
        center = distance * direction
        project = lambda x, c=center: G.project_ellipsoid_cone(x, c, axes)  # noqa: E731
        deltas.append(G.statdim_mc(project, config.d, config.num_samples, config.seed).to_dict())
    generator = np.random.default_rng(config.seed + 1)
    ks = list(range(0, config.d + 1, config.k_step))
    meeting = []
    for distance in config.meeting_distances:
        center = distance * direction
        rates = []
        for k in ks:
            hits = [
                G.meets_ellipsoid_cone(G.random_subspace(config.d, k, generator), center, axes)
                for _ in range(config.trials)
            ]
            rates.append(float(np.mean(hits)))
        meeting.append(
            {
                "R": distance,
                "rate": rates,
                "formula_statdim": G.ellipsoid_width_sq(eigenvalues, config.eps, distance),
                "mc_statdim": deltas[config.distances.index(distance)]["mean"],
            }
        )
    return {
        "R": list(config.distances),
        "delta": deltas,
        "formula": [G.ellipsoid_width_sq(eigenvalues, config.eps, r) for r in config.distances],
        "k": ks,
        "meeting": meeting,
    }
