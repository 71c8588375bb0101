"""Certified quadrature: Gauss and Gauss-Radau bounds on quadratic forms of a PSD operator A.

For a unit vector v, m steps of Lanczos from v give the Jacobi matrix T_m, and
v^T f(A) v = integral of f against the spectral measure of A seen from v. The Gauss rule
(nodes and weights of T_m) and the Gauss-Radau rule with one node fixed at a floor
a <= lambda_min(A) bracket that integral when the derivatives of f have constant signs on
[a, lambda_max] (Golub and Meurant, "Matrices, Moments and Quadrature", ch. 6). For the
threshold's

    f_c(lambda) = lambda / (lambda + c),  c > 0,

the even derivatives are negative and the odd ones positive, so

    Gauss-Radau(f_c) <= v^T f_c(A) v <= Gauss(f_c)    for every c > -a at once,

and equivalently Gauss <= v^T (A + cI)^{-1} v <= Gauss-Radau. Only the tridiagonal entries are
needed: ``LanczosRecurrence`` runs the three-term recurrence with O(D) memory per probe and no
stored basis. (In floating point, plain Lanczos computes the Gauss rule of a nearby measure
(Greenbaum 1989): the bounds are those of that measure; tests check them against exact spectra.)
"""

import dataclasses

import numpy as np
import torch
from scipy.linalg import eigh_tridiagonal

from prunelimit.lanczos import BREAKDOWN, Operator, Tridiagonal


# ------------------------------------------------------------------------------------ rules
@dataclasses.dataclass(frozen=True)
class QuadratureRule:
    """Nodes [n] and weights [n] (summing to 1) of a quadrature rule for a spectral measure."""

    nodes: np.ndarray
    weights: np.ndarray

    def integrate_ratio(self, scales: np.ndarray) -> np.ndarray:
        """sum_j w_j f(theta_j) with f(lambda) = s lambda / (s lambda + 1), for each s [G].

        s = 1 / c = R^2 / (2 eps); the form lambda s / (lambda s + 1) stays accurate for small c.
        A node with s theta <= -1 (a pole inside the rule) gives -inf: no bound there.
        """
        scaled = np.outer(np.asarray(scales, dtype=np.float64), self.nodes)  # [G, n]
        denominator = scaled + 1.0
        with np.errstate(divide="ignore", invalid="ignore"):
            values = np.where(denominator > 0, scaled / denominator, -np.inf)
        return values @ self.weights

    def integrate_resolvent(self, shifts: np.ndarray) -> np.ndarray:
        """sum_j w_j / (theta_j + c) for each shift c [G] (+inf if some theta_j + c <= 0)."""
        denominator = np.add.outer(np.asarray(shifts, dtype=np.float64), self.nodes)
        with np.errstate(divide="ignore"):
            values = np.where(denominator > 0, 1.0 / denominator, np.inf)
        return values @ self.weights


def _rule(diagonal: np.ndarray, offdiagonal: np.ndarray) -> QuadratureRule:
    if len(diagonal) == 1:
        return QuadratureRule(diagonal.copy(), np.ones(1))
    nodes, vectors = eigh_tridiagonal(diagonal, offdiagonal)
    return QuadratureRule(nodes, vectors[0] ** 2)


def gauss_rule(tridiagonal: Tridiagonal) -> QuadratureRule:
    """The m-node Gauss rule: the Ritz values and the squared first eigenvector components."""
    return _rule(tridiagonal.diagonal, tridiagonal.offdiagonal)


def gauss_radau_rule(tridiagonal: Tridiagonal, floor: float) -> QuadratureRule:
    """The (m + 1)-node Gauss-Radau rule with one node fixed at ``floor`` (<= lambda_min).

    T_m is extended by the last residual beta_m and a last diagonal entry chosen so that
    ``floor`` is an eigenvalue: alpha = floor + beta_m^2 / d_m, with d_m the last pivot of the
    LDL^T factorisation of T_m - floor I (Golub 1973). Needs every Ritz value above ``floor``.
    After a breakdown (beta_m = 0) the Gauss rule is exact and is returned.
    """
    diagonal, offdiagonal = tridiagonal.diagonal, tridiagonal.offdiagonal
    residual = tridiagonal.residual_norm
    if residual == 0.0:
        return gauss_rule(tridiagonal)
    pivots = [diagonal[0] - floor]  # all positive iff T_m - floor I is positive definite
    for alpha, beta in zip(diagonal[1:], offdiagonal, strict=True):
        pivots.append(alpha - floor - beta**2 / pivots[-1])
    pivot = pivots[-1]
    if not min(pivots) > 0:
        raise ValueError(
            f"the Lanczos matrix has a Ritz value at or below the floor {floor:.3g}: the operator "
            "is not positive semidefinite above that floor"
        )
    return _rule(np.append(diagonal, floor + residual**2 / pivot), np.append(offdiagonal, residual))


def resolvent_bounds(
    tridiagonal: Tridiagonal, shifts: np.ndarray, floor: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper bounds on v^T (A + cI)^{-1} v for unit v and each shift c > -floor [G].

    Gauss from below, Gauss-Radau with a node at ``floor`` from above; A must be PSD with
    lambda_min(A) >= floor.
    """
    return (
        gauss_rule(tridiagonal).integrate_resolvent(shifts),
        gauss_radau_rule(tridiagonal, floor).integrate_resolvent(shifts),
    )


# ------------------------------------------------------------------------------------ recurrence
class LanczosRecurrence:
    """Plain Lanczos from the rows of ``starts`` [p, D], advanced in lockstep: one ``matmat`` of p
    columns per step. Keeps only the current and previous vectors (O(pD) memory, float64) and
    the coefficients; no basis, no re-orthogonalisation. A run whose beta falls below
    BREAKDOWN times its largest coefficient has found an invariant subspace and stops.
    """

    def __init__(self, operator: Operator, starts: torch.Tensor) -> None:
        self.operator = operator
        starts = starts.to(operator.device, torch.float64)
        self.start_norms_sq = (starts**2).sum(dim=1).cpu().numpy()
        self.current = starts / starts.norm(dim=1, keepdim=True)
        self.previous = torch.zeros_like(self.current)
        count = len(starts)
        self.alphas: list[list[float]] = [[] for _ in range(count)]
        self.betas: list[list[float]] = [[] for _ in range(count)]
        self.active = np.ones(count, dtype=bool)
        self.scales = np.zeros(count)  # the largest |coefficient| of each run so far

    @property
    def num_probes(self) -> int:
        return len(self.alphas)

    @property
    def num_steps(self) -> int:
        return max(len(a) for a in self.alphas)

    def step(self) -> int:
        """One Lanczos step for every active run; returns the number of products it took."""
        if not self.active.any():
            return 0
        indices = np.flatnonzero(self.active)
        running = torch.tensor(self.active, device=self.current.device)  # a copy: active changes
        columns = self.current[running]
        product = self.operator.matmat(columns.T.contiguous()).T.to(torch.float64)
        alpha = (columns * product).sum(dim=1)
        last_beta = [self.betas[i][-1] if self.betas[i] else 0.0 for i in indices]
        w = product - alpha[:, None] * columns
        w -= (
            torch.tensor(last_beta, dtype=torch.float64, device=w.device)[:, None]
            * (self.previous[running])
        )
        beta = w.norm(dim=1)
        for index, a, b in zip(indices, alpha.tolist(), beta.tolist(), strict=True):
            self.alphas[index].append(a)
            self.scales[index] = max(self.scales[index], abs(a), b)
            broke = b <= BREAKDOWN * max(self.scales[index], 1e-300)
            self.betas[index].append(0.0 if broke else b)
            self.active[index] = not broke
        self.previous[running] = columns
        self.current[running] = w / torch.clamp(beta, min=1e-300)[:, None]
        return len(columns)

    def tridiagonals(self) -> list[Tridiagonal]:
        """The Jacobi matrix of each run so far (the last beta is its residual norm)."""
        return [
            Tridiagonal(np.array(a), np.array(b[:-1]), float(b[-1]))
            for a, b in zip(self.alphas, self.betas, strict=True)
        ]

    def extend(self, other: "LanczosRecurrence") -> None:
        """Append the runs of ``other`` (at the same number of steps) to this one."""
        if other.num_steps != self.num_steps:
            raise ValueError("only recurrences at the same step can be merged")
        self.start_norms_sq = np.concatenate([self.start_norms_sq, other.start_norms_sq])
        self.current = torch.cat([self.current, other.current])
        self.previous = torch.cat([self.previous, other.previous])
        self.alphas += other.alphas
        self.betas += other.betas
        self.active = np.concatenate([self.active, other.active])
        self.scales = np.concatenate([self.scales, other.scales])
