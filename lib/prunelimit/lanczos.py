"""Lanczos, stochastic Lanczos quadrature (SLQ) and stochastic trace estimators.

An operator is anything with ``shape`` (D, D), ``dtype``, ``device`` and
``matmat(V [D, k]) -> [D, k]`` on torch tensors: a ``curvature.HessianOperator``, or a
``MatrixOperator`` around a dense matrix.
Products run in the operator's dtype; the Lanczos basis and coefficients are kept in float64.
"""

import dataclasses
import math
from collections.abc import Callable
from typing import Literal, Protocol

import numpy as np
import torch
from scipy.linalg import eigh_tridiagonal
from tqdm import tqdm

from prunelimit.estimates import Estimate

BREAKDOWN = 1e-12  # beta below this times the largest coefficient: an invariant subspace


class Operator(Protocol):
    shape: tuple[int, int]
    dtype: torch.dtype
    device: torch.device

    def matmat(self, vectors: torch.Tensor) -> torch.Tensor: ...


class MatrixOperator:
    """A dense symmetric matrix [D, D] (torch or numpy) as an operator."""

    def __init__(self, matrix: torch.Tensor | np.ndarray) -> None:
        self.matrix = torch.as_tensor(matrix)
        if self.matrix.ndim != 2 or self.matrix.shape[0] != self.matrix.shape[1]:
            raise ValueError(f"expected a square matrix, got shape {tuple(self.matrix.shape)}")
        self.shape = (self.matrix.shape[0], self.matrix.shape[1])
        self.dtype, self.device = self.matrix.dtype, self.matrix.device

    def matmat(self, vectors: torch.Tensor) -> torch.Tensor:
        return self.matrix @ vectors.to(self.dtype)


def rademacher_probes(
    size: int, count: int, seed: int, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """[count, size] float64 vectors of independent random signs, reproducible from ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    signs = torch.randint(0, 2, (count, size), generator=generator, dtype=torch.int8)
    return (2.0 * signs.double() - 1.0).to(device)


# ------------------------------------------------------------------------------------ core
@dataclasses.dataclass(frozen=True)
class Tridiagonal:
    """One Lanczos run: T = tridiag(offdiagonal, diagonal, offdiagonal) of size m, and the norm of
    the last residual (0 after a breakdown, when the Ritz values are exact)."""

    diagonal: np.ndarray
    offdiagonal: np.ndarray
    residual_norm: float

    def leading(self, steps: int) -> "Tridiagonal":
        """The tridiagonal a run of ``steps`` steps from the same start would have produced."""
        if steps >= len(self.diagonal):
            return self
        return Tridiagonal(
            self.diagonal[:steps], self.offdiagonal[: steps - 1], float(self.offdiagonal[steps - 1])
        )

    def eigen(self) -> tuple[np.ndarray, np.ndarray]:
        """Ritz values [m] (ascending) and the eigenvectors of T [m, m] (columns)."""
        if len(self.diagonal) == 1:
            return self.diagonal.copy(), np.ones((1, 1))
        return eigh_tridiagonal(self.diagonal, self.offdiagonal)

    def to_dict(self) -> dict:
        return {
            "diagonal": self.diagonal.tolist(),
            "offdiagonal": self.offdiagonal.tolist(),
            "residual_norm": self.residual_norm,
        }

    @classmethod
    def from_dict(cls, stored: dict) -> "Tridiagonal":
        return cls(
            np.asarray(stored["diagonal"], dtype=np.float64),
            np.asarray(stored["offdiagonal"], dtype=np.float64),
            float(stored["residual_norm"]),
        )


def _project_out(basis: torch.Tensor, w: torch.Tensor, block: int = 16) -> torch.Tensor:
    """w minus its projection on the stored basis [p, j, D], in float64: a float32 basis is
    converted ``block`` vectors at a time, so the extra memory is one block, not the basis."""
    if basis.dtype == torch.float64:
        return w - torch.einsum("pjd,pj->pd", basis, torch.einsum("pjd,pd->pj", basis, w))
    for start in range(0, basis.shape[1], block):
        part = basis[:, start : start + block].double()
        w = w - torch.einsum("pjd,pj->pd", part, torch.einsum("pjd,pd->pj", part, w))
    return w


def _lanczos_runs(
    operator: Operator,
    starts: torch.Tensor,
    num_steps: int,
    reorthogonalize: bool,
    progress: bool,
    converged: Callable[[Tridiagonal], bool] | None = None,
    basis_dtype: torch.dtype = torch.float64,
) -> list[Tridiagonal]:
    """Independent Lanczos runs from the rows of ``starts`` [p, D], advanced in lockstep so that one
    ``matmat`` (one graph per data chunk) serves all p of them.

    Full re-orthogonalisation against the stored float64 basis: without it, rounding lets
    converged Ritz values reappear as spurious copies. A second pass follows when the first
    removed most of the vector (its norm fell below 1/sqrt(2): Kahan and Parlett's "twice is
    enough" test), the only case in which one pass can leave it non-orthogonal. A run stops at
    breakdown (beta ~ 0) and contributes zero vectors from then on. With one run, ``converged``
    (called on the tridiagonal so far) can stop the iteration early. ``basis_dtype``: how the
    stored basis is kept (float32 halves its memory, p x steps x D values); the current vectors,
    the coefficients and all dot products stay float64. Without re-orthogonalisation no basis
    is kept: memory is a few p x D vectors, whatever the number of steps.
    """
    count, size = starts.shape
    steps = min(num_steps, size)
    basis = (
        torch.zeros(count, steps, size, dtype=basis_dtype, device=starts.device)
        if reorthogonalize
        else None
    )
    current = starts.double() / starts.double().norm(dim=1, keepdim=True)
    previous = torch.zeros_like(current)
    alphas, betas = np.zeros((count, steps)), np.zeros((count, steps))
    lengths = np.full(count, steps)
    active = torch.ones(count, dtype=torch.bool, device=starts.device)
    for j in tqdm(range(steps), desc="Lanczos", disable=not progress):
        if basis is not None:
            basis[:, j] = current
        product = operator.matmat(current.T.to(operator.dtype)).T.double()
        alpha = torch.einsum("pd,pd->p", current, product)
        w = product - alpha[:, None] * current
        if j:
            w -= torch.as_tensor(betas[:, j - 1], device=w.device)[:, None] * previous
        if basis is not None:
            for _ in range(2):
                before = w.norm(dim=1)
                w = _project_out(basis[:, : j + 1], w)
                if not bool((w.norm(dim=1) < before / math.sqrt(2)).any()):
                    break
        beta = w.norm(dim=1)
        alphas[:, j], betas[:, j] = alpha.cpu().numpy(), beta.cpu().numpy()
        scale = np.maximum(
            np.abs(alphas[:, : j + 1]).max(axis=1), np.abs(betas[:, : j + 1]).max(axis=1)
        )
        broke = active.cpu().numpy() & (betas[:, j] <= BREAKDOWN * np.maximum(scale, 1e-300))
        lengths[broke] = j + 1
        active &= ~torch.as_tensor(broke, device=active.device)
        if not bool(active.any()):
            break
        if converged is not None and converged(_tridiagonal(alphas[0], betas[0], j + 1)):
            lengths[0] = j + 1
            break
        previous = current
        current = torch.where(
            active[:, None], w / torch.clamp(beta, min=1e-300)[:, None], torch.zeros_like(w)
        )
    return [_tridiagonal(alphas[i], betas[i], lengths[i]) for i in range(count)]


def _tridiagonal(alphas: np.ndarray, betas: np.ndarray, length: int) -> Tridiagonal:
    """The first ``length`` steps of one run's coefficients."""
    return Tridiagonal(alphas[:length].copy(), betas[: length - 1].copy(), float(betas[length - 1]))


# ------------------------------------------------------------------------------------ Lanczos
@dataclasses.dataclass(frozen=True)
class LanczosResult:
    """Ritz values (ascending) with their residual norms |H y - theta y| and convergence flags."""

    ritz_values: np.ndarray
    residuals: np.ndarray
    converged: np.ndarray
    tridiagonal: Tridiagonal
    seed: int

    @property
    def num_steps(self) -> int:
        return len(self.ritz_values)

    def top(self, k: int, order: Literal["algebraic", "magnitude"] = "algebraic") -> np.ndarray:
        """The k largest Ritz values, by value or by absolute value, largest first."""
        keys = self.ritz_values if order == "algebraic" else np.abs(self.ritz_values)
        return self.ritz_values[np.argsort(keys)[::-1][:k]]

    def bottom(self, k: int) -> np.ndarray:
        """The k smallest (most negative) Ritz values, smallest first."""
        return self.ritz_values[:k]

    def to_dict(self) -> dict[str, list | int]:
        return {
            "ritz_values": self.ritz_values.tolist(),
            "residuals": self.residuals.tolist(),
            "converged": self.converged.tolist(),
            "seed": self.seed,
        }


def lanczos(
    operator: Operator,
    num_steps: int,
    seed: int = 0,
    start: torch.Tensor | None = None,
    reorthogonalize: bool = True,
    tol: float = 1e-8,
    stop_tol: float | None = None,
    progress: bool = True,
) -> LanczosResult:
    """``num_steps`` Lanczos steps from ``start`` (default: random signs from ``seed``).

    A Ritz value counts as converged when its residual norm |beta_m s_m| is at most ``tol`` times
    the largest |Ritz value|. With num_steps = D and re-orthogonalisation, the Ritz values are
    the whole spectrum (for distinct eigenvalues). ``stop_tol``: stop as soon as the largest Ritz
    value's residual is below stop_tol times its size; some eigenvalue then lies that close
    (relatively) to it, a guaranteed bound.
    """
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    size = operator.shape[0]
    starts = (rademacher_probes(size, 1, seed) if start is None else start.reshape(1, -1)).to(
        operator.device
    )

    def top_converged(partial: Tridiagonal) -> bool:
        values, vectors = partial.eigen()
        return abs(partial.residual_norm * vectors[-1, -1]) <= stop_tol * abs(values[-1])

    (tridiagonal,) = _lanczos_runs(
        operator, starts, num_steps, reorthogonalize, progress, top_converged if stop_tol else None
    )
    values, vectors = tridiagonal.eigen()
    residuals = np.abs(tridiagonal.residual_norm * vectors[-1])
    converged = residuals <= tol * max(np.abs(values).max(), 1e-300)
    return LanczosResult(values, residuals, converged, tridiagonal, seed)


# ------------------------------------------------------------------------------------ SLQ
@dataclasses.dataclass(frozen=True)
class SLQResult:
    """Gauss quadrature rules, one per probe: (1/D) tr f(H) ~ mean_p sum_j w_pj f(theta_pj).

    The probes are random sign vectors of unit length, so E v^T f(H) v = tr f(H) / D.
    """

    nodes: list[np.ndarray]
    weights: list[np.ndarray]
    dimension: int
    seed: int
    tridiagonals: list[Tridiagonal] | None = None  # what truncation needs (serialised if known)

    @classmethod
    def from_tridiagonals(
        cls, tridiagonals: list[Tridiagonal], dimension: int, seed: int
    ) -> "SLQResult":
        """Nodes: the Ritz values; weights: squared first components of T's eigenvectors."""
        rules = [t.eigen() for t in tridiagonals]
        return cls(
            [v for v, _ in rules], [u[0] ** 2 for _, u in rules], dimension, seed, tridiagonals
        )

    @property
    def num_probes(self) -> int:
        return len(self.nodes)

    def truncated(self, steps: int) -> "SLQResult":
        """The result of the same probes with only ``steps`` Lanczos steps (leading blocks of T)."""
        if self.tridiagonals is None:
            raise ValueError("truncation needs the tridiagonal matrices: use the result of slq()")
        return SLQResult.from_tridiagonals(
            [t.leading(steps) for t in self.tridiagonals], self.dimension, self.seed
        )

    def spectral_sum(self, f: Callable[[np.ndarray], np.ndarray]) -> Estimate:
        """(1/D) tr f(H): mean over probes, with the standard error from their spread."""
        values = np.array([np.sum(w * f(n)) for n, w in zip(self.nodes, self.weights, strict=True)])
        if len(values) == 1:
            return Estimate(float(values[0]), math.nan, 1)
        return Estimate.of(values)

    def density(self, grid: np.ndarray, sigma: float) -> np.ndarray:
        """Spectral density on ``grid`` smoothed by a Gaussian of width ``sigma``: for plots only.

        Spectral sums must come from ``spectral_sum``: integrating this smoothed density against a
        narrow f biases the result.
        """
        grid = np.asarray(grid, dtype=np.float64)[:, None]
        per_probe = [
            np.sum(w * np.exp(-((grid - n) ** 2) / (2 * sigma**2)), axis=1)
            / (sigma * math.sqrt(2 * math.pi))
            for n, w in zip(self.nodes, self.weights, strict=True)
        ]
        return np.mean(per_probe, axis=0)

    def to_dict(self) -> dict:
        """The JSON form: nodes, weights, D, seed, and the tridiagonals when known (so that a
        stored result can still be truncated)."""
        stored = {
            "nodes": [n.tolist() for n in self.nodes],
            "weights": [w.tolist() for w in self.weights],
            "dimension": self.dimension,
            "seed": self.seed,
        }
        if self.tridiagonals is not None:
            stored["tridiagonals"] = [t.to_dict() for t in self.tridiagonals]
        return stored

    @classmethod
    def from_dict(cls, stored: dict) -> "SLQResult":
        tridiagonals = stored.get("tridiagonals")
        return cls(
            [np.asarray(n) for n in stored["nodes"]],
            [np.asarray(w) for w in stored["weights"]],
            stored["dimension"],
            stored["seed"],
            None if tridiagonals is None else [Tridiagonal.from_dict(t) for t in tridiagonals],
        )


def slq(
    operator: Operator,
    num_steps: int,
    num_probes: int,
    seed: int = 0,
    reorthogonalize: bool = True,
    progress: bool = True,
    basis_dtype: torch.dtype = torch.float64,
) -> SLQResult:
    """Stochastic Lanczos quadrature with ``num_probes`` random sign probes run in lockstep.

    Each probe's nodes are its Ritz values and its weights the squared first components of the
    eigenvectors of its tridiagonal matrix (they sum to 1).
    """
    if num_probes < 1:
        raise ValueError(f"num_probes must be >= 1, got {num_probes}")
    size = operator.shape[0]
    starts = rademacher_probes(size, num_probes, seed, operator.device)
    runs = _lanczos_runs(
        operator, starts, num_steps, reorthogonalize, progress, basis_dtype=basis_dtype
    )
    return SLQResult.from_tridiagonals(runs, size, seed)


# ------------------------------------------------------------------------------------ traces
def _quadratic_forms(operator: Operator, probes: torch.Tensor, batch_size: int) -> np.ndarray:
    """z^T H z for each row z of ``probes`` [p, D], ``batch_size`` probes per product."""
    forms = []
    for block in torch.split(probes, batch_size):
        product = operator.matmat(block.T.to(operator.dtype)).T.double()
        forms.append(torch.einsum("pd,pd->p", block, product).cpu().numpy())
    return np.concatenate(forms)


def hutchinson_trace(
    operator: Operator, num_probes: int, seed: int = 0, batch_size: int = 8
) -> Estimate:
    """tr(H) ~ mean of z^T H z over random sign vectors z, with its standard error."""
    if num_probes < 2:
        raise ValueError(f"num_probes must be >= 2 for a standard error, got {num_probes}")
    probes = rademacher_probes(operator.shape[0], num_probes, seed, operator.device)
    return Estimate.of(_quadratic_forms(operator, probes, batch_size))


def hutchpp_trace(
    operator: Operator, num_matvecs: int, seed: int = 0, batch_size: int = 8
) -> Estimate:
    """Hutch++ (Meyer, Musco, Musco, Woodruff 2021) with about ``num_matvecs`` products.

    A third of the products sketch the top of the spectrum (Q = orth(H S)), whose trace
    tr(Q^T H Q) is taken exactly; the rest estimate the trace of the deflated remainder by
    Hutchinson, which alone carries the standard error.
    """
    k = num_matvecs // 3
    if k < 2:
        raise ValueError(f"num_matvecs must be >= 6, got {num_matvecs}")
    size = operator.shape[0]
    sketch, probes = rademacher_probes(size, 2 * k, seed, operator.device).split(k)
    range_basis, _ = torch.linalg.qr(operator.matmat(sketch.T.to(operator.dtype)).double())
    exact_part = float(np.sum(_quadratic_forms(operator, range_basis.T.contiguous(), batch_size)))
    deflated = probes - (probes @ range_basis) @ range_basis.T
    remainder = Estimate.of(_quadratic_forms(operator, deflated, batch_size))
    return Estimate(exact_part + remainder.mean, remainder.stderr, remainder.num_samples)
