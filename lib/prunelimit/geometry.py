"""Convex cones: projections, statistical dimension (closed forms and Monte Carlo), Gaussian width.

Points are float64 arrays of shape [n, d] (a batch of n points in R^d); every projection maps such
a batch to a batch of the same shape. Conventions follow Amelunxen, Lotz, McCoy and Tropp (2014,
"Living on the edge", ALMT): the statistical dimension of a closed convex cone C in R^d is
delta(C) = E ||Pi_C(g)||^2 with g ~ N(0, I_d).
"""

import dataclasses
import math
from collections.abc import Callable

import numpy as np
from scipy import integrate, optimize, stats
from tqdm import tqdm

from prunelimit.estimates import Estimate
from prunelimit.pruning_function import NegativeCurvature, curvature_magnitudes, pruning_function

Projection = Callable[[np.ndarray], np.ndarray]


# ----------------------------------------------------------------------------- argument checks
def _check_dimension(name: str, value: int, minimum: int = 1) -> int:
    if not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_open_interval(name: str, value: float, low: float, high: float, shown: str) -> float:
    if not low < value < high:
        raise ValueError(f"{name} must lie in {shown}, got {value!r}")
    return float(value)


def _check_angle(alpha: float) -> float:
    return _check_open_interval("alpha", alpha, 0.0, math.pi / 2, "(0, pi/2)")


def _batch(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"x must have shape [n, d], got {x.shape}")
    return x


# ----------------------------------------------------------------------------- projections
def project_orthant(x: np.ndarray) -> np.ndarray:
    """Projection onto the non-negative orthant R^d_+: clip negative coordinates to 0."""
    return np.maximum(_batch(x), 0.0)


def project_subspace(x: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """Projection onto the span of the columns of ``basis`` [d, k] (any basis; orthonormalised)."""
    x, basis = _batch(x), np.asarray(basis, dtype=np.float64)
    if basis.ndim != 2 or basis.shape[0] != x.shape[1]:
        raise ValueError(f"basis must have shape [d={x.shape[1]}, k], got {basis.shape}")
    q, _ = np.linalg.qr(basis)
    return (x @ q) @ q.T


def project_circular(x: np.ndarray, alpha: float) -> np.ndarray:
    """Projection onto the circular cone Circ_d(alpha) = {x : x_1 >= ||x|| cos(alpha)}.

    The cone of vectors within angle alpha of the first axis; its polar is Circ_d(pi/2 - alpha)
    around the negative first axis. A point outside both goes to the nearest boundary ray.
    """
    x, alpha = _batch(x), _check_angle(alpha)
    axial, radial = x[:, 0], np.linalg.norm(x[:, 1:], axis=1)
    inside = radial <= axial * math.tan(alpha)
    in_polar = radial * math.tan(alpha) <= -axial
    # Boundary ray in the plane of e_1 and the radial direction: u = (cos a, sin a * y / |y|).
    length = axial * math.cos(alpha) + radial * math.sin(alpha)
    safe_radial = np.where(radial > 0, radial, 1.0)
    projected = np.empty_like(x)
    projected[:, 0] = length * math.cos(alpha)
    projected[:, 1:] = (length * math.sin(alpha) / safe_radial)[:, None] * x[:, 1:]
    projected[inside] = x[inside]
    projected[in_polar & ~inside] = 0.0
    return projected


def project_second_order(x: np.ndarray) -> np.ndarray:
    """Projection onto the second-order (Lorentz) cone {(t, y) : ||y|| <= t}, t coordinate 0.

    It is the circular cone of angle pi/4.
    """
    return project_circular(x, math.pi / 4)


def psd_side(d: int) -> int:
    """The n with n (n + 1) / 2 = d (symmetric n x n matrices as vectors of length d)."""
    n = round((math.sqrt(8 * d + 1) - 1) / 2)
    if n * (n + 1) // 2 != d:
        raise ValueError(f"d = {d} is not n(n+1)/2 for an integer n: not a symmetric-matrix space")
    return n


def _svec_indices(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rows, cols = np.triu_indices(n)
    scale = np.where(rows == cols, 1.0, math.sqrt(2.0))
    return rows, cols, scale


def project_psd(x: np.ndarray) -> np.ndarray:
    """Projection onto the PSD cone, symmetric matrices stored as svec vectors [n, n(n+1)/2].

    svec keeps the upper triangle with off-diagonal entries times sqrt(2), an isometry from the
    Frobenius norm to the Euclidean one; the projection clips negative eigenvalues to 0.
    """
    x = _batch(x)
    side = psd_side(x.shape[1])
    rows, cols, scale = _svec_indices(side)
    matrices = np.zeros((x.shape[0], side, side))
    matrices[:, rows, cols] = x / scale
    matrices[:, cols, rows] = x / scale
    values, vectors = np.linalg.eigh(matrices)
    clipped = (vectors * np.maximum(values, 0.0)[:, None, :]) @ vectors.transpose(0, 2, 1)
    return clipped[:, rows, cols] * scale


def _project_onto_ellipsoid(
    points: np.ndarray, center: np.ndarray, semi_axes: np.ndarray, iterations: int = 60
) -> np.ndarray:
    """Projection of ``points`` [n, d] onto axis-aligned ellipsoids {x : sum((x-c)_i/a_i)^2 <= 1}.

    center [n, d] and semi_axes [n, d] (per point; inf = unbounded axis). Outside points go to
    x_i = c_i + a_i^2 (p_i - c_i) / (a_i^2 + mu), mu > 0 the root of the secular function
    f(mu) = sum a_i^2 (p_i - c_i)^2 / (a_i^2 + mu)^2 - 1. f is convex and decreasing on mu >= 0
    and f(0) > 0 outside, so Newton's method from mu = 0 rises monotonically to the root.
    """
    offset = points - center
    finite = np.isfinite(semi_axes)
    a2 = np.where(finite, semi_axes, 1.0) ** 2
    weighted = np.where(finite, a2 * offset**2, 0.0)
    inside = np.sum(np.where(finite, offset**2 / a2, 0.0), axis=1) <= 1.0
    mu = np.zeros((points.shape[0], 1))
    for _ in range(iterations):
        shifted = a2 + mu
        value = np.sum(weighted / shifted**2, axis=1, keepdims=True) - 1.0
        slope = -2.0 * np.sum(weighted / shifted**3, axis=1, keepdims=True)
        mu = np.where(value > 0, mu - value / np.where(slope < 0, slope, -1.0), mu)
    projected = np.where(finite, center + a2 * offset / (a2 + mu), points)
    return np.where(inside[:, None], points, projected)


def project_ellipsoid_cone(
    x: np.ndarray, center: np.ndarray, semi_axes: np.ndarray, iterations: int = 60
) -> np.ndarray:
    """Projection onto the cone of an axis-aligned ellipsoid E (center [d], semi_axes [d]).

    cone(E) = {t y : t >= 0, y in E}. Pi(g) minimises dist(g, t E) over t >= 0, a convex function
    of t (partial minimisation over a convex cone in (y, t)); golden-section search on
    [0, |g| / dist(0, E)] finds it. If E contains the origin, the cone is R^d: identity.
    """
    x = _batch(x)
    center, semi_axes = np.asarray(center, np.float64), np.asarray(semi_axes, np.float64)
    if center.shape != (x.shape[1],) or semi_axes.shape != center.shape:
        raise ValueError(f"center and semi_axes must have shape [{x.shape[1]}]")
    if np.any(semi_axes <= 0):
        raise ValueError("semi_axes must be positive (inf for an unbounded axis)")
    if np.sum(np.where(np.isfinite(semi_axes), (center / semi_axes) ** 2, 0.0)) <= 1.0:
        return x.copy()  # E contains the origin: its cone is all of R^d
    n = x.shape[0]
    origin_gap = np.linalg.norm(
        _project_onto_ellipsoid(np.zeros((1, x.shape[1])), center[None], semi_axes[None])
    )

    def nearest(t: np.ndarray) -> np.ndarray:
        return _project_onto_ellipsoid(
            x, t[:, None] * center, t[:, None] * np.broadcast_to(semi_axes, x.shape)
        )

    def distance(t: np.ndarray) -> np.ndarray:
        return np.linalg.norm(x - nearest(t), axis=1)

    low, high = np.zeros(n), np.linalg.norm(x, axis=1) / origin_gap + 1e-12
    ratio = (math.sqrt(5) - 1) / 2
    left, right = high - ratio * (high - low), low + ratio * (high - low)
    f_left, f_right = distance(left), distance(right)
    for _ in range(iterations):
        move_right = f_left > f_right
        low = np.where(move_right, left, low)
        high = np.where(move_right, high, right)
        left, right = high - ratio * (high - low), low + ratio * (high - low)
        f_left, f_right = distance(left), distance(right)
    t = (low + high) / 2
    candidate = nearest(t)
    # The apex (t = 0) is the answer when g is in the polar cone.
    at_apex = np.linalg.norm(x, axis=1) <= np.linalg.norm(x - candidate, axis=1)
    return np.where(at_apex[:, None], 0.0, candidate)


# ----------------------------------------------------------------------------- closed forms
def statdim_subspace(dim: int) -> float:
    """delta of a linear subspace of dimension ``dim``: its dimension."""
    return float(_check_dimension("dim", dim, minimum=0))


def statdim_orthant(d: int) -> float:
    """delta(R^d_+) = d / 2 (each coordinate is kept with probability 1/2)."""
    return _check_dimension("d", d) / 2


def statdim_second_order(d: int) -> float:
    """delta of the second-order cone in R^d: d / 2 (ALMT, Sec. 3.4)."""
    return _check_dimension("d", d, minimum=2) / 2


def statdim_psd(n: int) -> float:
    """delta of the n x n PSD cone (in R^{n(n+1)/2}): n(n+1)/4, as its polar is its negative."""
    n = _check_dimension("n", n)
    return n * (n + 1) / 4


def statdim_circular(d: int, alpha: float) -> float:
    """delta(Circ_d(alpha)), exact for finite d by one-dimensional quadrature.

    The angle theta between g and e_1 has density proportional to sin^(d-2) theta on [0, pi] and
    is independent of |g|^2 (mean d). ||Pi(g)||^2 = |g|^2 h(theta), with h = 1 inside the cone,
    cos^2(theta - alpha) up to alpha + pi/2, and 0 in the polar cone; so delta = d E h(theta).
    (ALMT give d sin^2(alpha) + O(1); this is the exact value.)
    """
    d, alpha = _check_dimension("d", d, minimum=2), _check_angle(alpha)

    def density(theta: float) -> float:  # sin^(d-2), kept finite for large d
        return (
            math.exp((d - 2) * math.log(math.sin(theta))) if 0 < theta < math.pi else float(d == 2)
        )

    options = {"limit": 200, "epsabs": 0.0, "epsrel": 1e-12}
    total = integrate.quad(density, 0, math.pi, points=[math.pi / 2], **options)[0]
    inside = integrate.quad(density, 0, alpha, **options)[0]
    edge = integrate.quad(
        lambda theta: math.cos(theta - alpha) ** 2 * density(theta),
        alpha,
        alpha + math.pi / 2,
        points=[math.pi / 2],
        **options,
    )[0]
    return d * (inside + edge) / total


def _psi_objective(tau: float, rho: float) -> float:
    tail = (1 + tau**2) * stats.norm.sf(tau) - tau * stats.norm.pdf(tau)
    return rho * (1 + tau**2) + (1 - rho) * 2 * tail


def psi_l1(rho: float) -> float:
    """ALMT's psi(rho) = inf_tau rho (1 + tau^2) + 2 (1 - rho) [(1 + tau^2) Q(tau) - tau phi(tau)].

    delta / d of the l1 descent cone at a point with a fraction rho of non-zeros. The objective is
    convex in tau; its stationarity equation rho tau = 2 (1 - rho) (phi(tau) - tau Q(tau)) has a
    unique root (left minus right rises from -2(1 - rho) phi(0)), found by Brent's method.
    """
    rho = _check_open_interval("rho", rho, 0.0, 1.0, "(0, 1)")

    def stationarity(tau: float) -> float:
        return rho * tau - 2 * (1 - rho) * (stats.norm.pdf(tau) - tau * stats.norm.sf(tau))

    tau = optimize.brentq(stationarity, 0.0, 40.0, xtol=1e-15, rtol=1e-15)
    return _psi_objective(tau, rho)


def kinematic_a_eta(eta: float) -> float:
    """a_eta = sqrt(8 log(4 / eta)): half-width of ALMT's transition window, in units of sqrt(d)."""
    eta = _check_open_interval("eta", eta, 0.0, 1.0, "(0, 1)")
    return math.sqrt(8 * math.log(4 / eta))


# ----------------------------------------------------------------------------- Monte Carlo
def _gaussian_batches(d: int, num_samples: int, seed: int, batch_size: int):
    d = _check_dimension("d", d)
    num_samples = _check_dimension("num_samples", num_samples, minimum=2)
    generator = np.random.default_rng(seed)
    for start in range(0, num_samples, batch_size):
        yield generator.standard_normal((min(batch_size, num_samples - start), d))


def _projected_norms(
    project: Projection, d: int, num_samples: int, seed: int, batch_size: int
) -> np.ndarray:
    batches = _gaussian_batches(d, num_samples, seed, batch_size)
    return np.concatenate([np.linalg.norm(project(g), axis=1) for g in batches])


def statdim_mc(
    project: Projection, d: int, num_samples: int, seed: int = 0, batch_size: int = 4096
) -> Estimate:
    """delta(C) = E ||Pi_C(g)||^2 by Monte Carlo, for the cone whose projection is ``project``."""
    return Estimate.of(_projected_norms(project, d, num_samples, seed, batch_size) ** 2)


def gaussian_width_mc(
    project: Projection, d: int, num_samples: int, seed: int = 0, batch_size: int = 4096
) -> Estimate:
    """w(C cap B^d) = E sup_{x in C, |x| <= 1} <g, x> = E ||Pi_C(g)|| by Monte Carlo.

    It equals the width of C cap S^{d-1} except on the event g in polar(C), and satisfies
    w^2 <= delta(C) <= w^2 + 1 exactly: Jensen below, and above Var ||Pi_C(g)|| <= 1 (Gaussian
    Poincare inequality, ||Pi_C(.)|| being 1-Lipschitz). Works for the cone of a projected
    ellipsoid too, with ``project_ellipsoid_cone``.
    """
    return Estimate.of(_projected_norms(project, d, num_samples, seed, batch_size))


def _l1_descent_distances(g: np.ndarray, s: int) -> np.ndarray:
    """Per row, min over tau >= 0 of dist^2(g, tau * subdifferential of |.|_1 at x), x = (1_s, 0).

    On the support the subgradient is tau; off it, any value in [-tau, tau]. The objective
    sum_S (g_i - tau)^2 + sum_off (|g_i| - tau)_+^2 is a convex piecewise quadratic in tau; on each
    interval between consecutive sorted |g_off| it is one quadratic, minimised in closed form.
    """
    support, off = g[:, :s], np.sort(np.abs(g[:, s:]), axis=1)[:, ::-1]
    n, m = off.shape
    sum_s, sumsq_s = support.sum(axis=1), (support**2).sum(axis=1)
    zeros = np.zeros((n, 1))
    cum1 = np.concatenate([zeros, np.cumsum(off, axis=1)], axis=1)  # [n, m+1]: j largest |g_off|
    cum2 = np.concatenate([zeros, np.cumsum(off**2, axis=1)], axis=1)
    j = np.arange(m + 1)
    upper = np.concatenate([np.full((n, 1), np.inf), off], axis=1)  # interval j: [a_{j+1}, a_j]
    lower = np.concatenate([off, zeros], axis=1)
    tau = (sum_s[:, None] + cum1) / (s + j)
    tau = np.clip(tau, lower, upper)
    values = (
        sumsq_s[:, None]
        - 2 * tau * sum_s[:, None]
        + s * tau**2
        + cum2
        - 2 * tau * cum1
        + j * tau**2
    )
    return values.min(axis=1)


def statdim_l1_descent_mc(
    d: int, s: int, num_samples: int, seed: int = 0, batch_size: int = 1024
) -> Estimate:
    """delta of the l1 descent cone at an s-sparse point of R^d, by Monte Carlo.

    delta(D) = E dist^2(g, polar D) and polar D = cone(subdifferential), so each sample takes the
    exact infimum over tau >= 0 (not ALMT's bound inf_tau E dist^2, which exchanges E and inf).
    """
    d = _check_dimension("d", d)
    s = _check_dimension("s", s)
    if s > d:
        raise ValueError(f"s must be at most d = {d}, got {s}")
    batches = _gaussian_batches(d, num_samples, seed, batch_size)
    return Estimate.of(np.concatenate([_l1_descent_distances(g, s) for g in batches]))


# ----------------------------------------------------------------------------- projected ellipsoid
def ellipsoid_width_sq(
    eigenvalues: np.ndarray, eps: float, R: float | np.ndarray, negative: NegativeCurvature = "abs"
) -> float | np.ndarray:
    """Approximate squared width of an ellipsoid seen from distance R, projected on the sphere.

    w^2 ~ sum_i r_i^2 / (R^2 + r_i^2) with r_i = sqrt(2 eps / lambda_i) (Larsen et al. 2022), i.e.
    sum_i 2 eps / (lambda_i R^2 + 2 eps). lambda = 0 means r = inf (term 1). Negative eigenvalues:
    ``negative="abs"`` uses |lambda| (the authors' code); ``"flat"`` counts them as 0 (the sublevel
    set is unbounded there). R may be an array (one width per R, e.g. R(k) for all k).
    """
    if not eps > 0:
        raise ValueError(f"eps must be positive, got {eps!r}")
    R = np.asarray(R, dtype=np.float64)
    if np.any(R < 0):
        raise ValueError("R must be non-negative")
    lam = curvature_magnitudes(np.ravel(eigenvalues), negative)
    scale = R.reshape(-1, 1) ** 2 / (2 * eps)
    width = np.sum(1.0 - pruning_function(lam[None, :], scale), axis=1)
    return float(width[0]) if R.ndim == 0 else width.reshape(R.shape)


# ----------------------------------------------------------------------------- random subspaces
def random_subspace(d: int, k: int, generator: np.random.Generator) -> np.ndarray:
    """Orthonormal basis [d, k] of a uniformly random k-dimensional subspace of R^d."""
    d, k = _check_dimension("d", d), _check_dimension("k", k, minimum=0)
    if k > d:
        raise ValueError(f"k must be at most d = {d}, got {k}")
    q, r = np.linalg.qr(generator.standard_normal((d, k)))
    return q * np.sign(np.diag(r))  # sign fix: Haar-distributed, not just any orthonormal basis


def meets_circular(basis: np.ndarray, alpha: float) -> bool:
    """Does span(basis) (orthonormal [d, k]) meet Circ_d(alpha) outside 0?

    The largest x_1 / |x| over the subspace is |P_L e_1|, so it meets iff |P_L e_1| >= cos(alpha).
    """
    return bool(np.linalg.norm(basis[0]) >= math.cos(_check_angle(alpha)))


def meets_orthant(basis: np.ndarray) -> bool:
    """Does span(basis) meet the non-negative orthant outside 0? LP feasibility by HiGHS.

    Feasible iff some y has B y >= 0 and sum(B y) = 1.
    """
    result = optimize.linprog(
        np.zeros(basis.shape[1]),
        A_ub=-basis,
        b_ub=np.zeros(basis.shape[0]),
        A_eq=basis.sum(axis=0, keepdims=True),
        b_eq=[1.0],
        bounds=(None, None),
        method="highs",
    )
    return result.status == 0


def meets_ellipsoid_cone(basis: np.ndarray, center: np.ndarray, semi_axes: np.ndarray) -> bool:
    """Does span(basis) meet cone(E) outside 0, E the axis-aligned ellipsoid (center, semi_axes)?

    A subspace is closed under scaling, so it meets cone(E) iff it meets E: iff the least-squares
    minimum of sum_i ((B y - c)_i / a_i)^2 over y is at most 1 (axes with a_i = inf drop out).
    """
    finite = np.isfinite(semi_axes)
    weights = 1.0 / semi_axes[finite]
    a, b = basis[finite] * weights[:, None], center[finite] * weights
    if basis.shape[1] == 0:
        return bool(b @ b <= 1.0)
    y = np.linalg.lstsq(a, b, rcond=None)[0]
    return bool(np.sum((a @ y - b) ** 2) <= 1.0)


def probability_meets_circular(d: int, k: int, alpha: float) -> float:
    """Exact P(random k-dim subspace meets Circ_d(alpha)): |P_L e_1|^2 ~ Beta(k/2, (d-k)/2)."""
    d, k, alpha = _check_dimension("d", d), _check_dimension("k", k, minimum=0), _check_angle(alpha)
    if k > d:
        raise ValueError(f"k must be at most d = {d}, got {k}")
    if k in (0, d):
        return float(k == d)
    return float(stats.beta.sf(math.cos(alpha) ** 2, k / 2, (d - k) / 2))


def probability_meets_orthant(d: int, k: int) -> float:
    """Exact P(random k-dim subspace meets R^d_+ outside 0) from the orthant's intrinsic volumes.

    The conic Crofton formula gives 2 (v_{m+1} + v_{m+3} + ...) with m = d - k, and the orthant's
    intrinsic volumes are v_j = C(d, j) / 2^d (ALMT, Sec. 5).
    """
    d, k = _check_dimension("d", d), _check_dimension("k", k, minimum=0)
    if k > d:
        raise ValueError(f"k must be at most d = {d}, got {k}")
    return float(min(1.0, 2 * stats.binom.pmf(np.arange(d - k + 1, d + 1, 2), d, 0.5).sum()))


# ----------------------------------------------------------------------------- phase transition
@dataclasses.dataclass(frozen=True)
class PhaseTransition:
    """Basis-pursuit success rate per number of measurements m; delta = d psi(s/d) beside it."""

    d: int
    s: int
    m_values: np.ndarray
    success_rate: np.ndarray
    stderr: np.ndarray
    trials: int
    statdim: float

    def crossing(self, level: float = 0.5) -> float:
        """The m at which the success rate first reaches ``level`` (linear interpolation)."""
        return first_crossing(self.m_values, self.success_rate, level)


def first_crossing(x: np.ndarray, y: np.ndarray, level: float) -> float:
    """The x at which y(x) first reaches ``level``, interpolating linearly between points."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    above = np.nonzero(y >= level)[0]
    if above.size == 0 or above[0] == 0:
        raise ValueError(f"the curve does not cross {level} inside the range given")
    i = above[0]
    return float(x[i - 1] + (level - y[i - 1]) * (x[i] - x[i - 1]) / (y[i] - y[i - 1]))


def _basis_pursuit_recovers(a: np.ndarray, x0: np.ndarray, tolerance: float = 1e-5) -> bool:
    """Solve min |x|_1 s.t. A x = A x0 as an LP (x = u - v; u, v >= 0) by HiGHS; True if x = x0."""
    d = a.shape[1]
    result = optimize.linprog(
        np.ones(2 * d), A_eq=np.hstack([a, -a]), b_eq=a @ x0, bounds=(0, None), method="highs"
    )
    if result.status != 0:
        return False
    x = result.x[:d] - result.x[d:]
    return bool(np.linalg.norm(x - x0) <= tolerance * np.linalg.norm(x0))


def phase_transition_l1(
    d: int, s: int, m_values: np.ndarray, trials: int, seed: int = 0, progress: bool = True
) -> PhaseTransition:
    """Success rate of basis pursuit recovering an s-sparse x0 in R^d from m Gaussian measurements.

    x0 has a uniformly random support, random signs and standard normal magnitudes; A is m x d
    with i.i.d. N(0, 1) entries, redrawn every trial. ALMT: the 50% point sits near m = d psi(s/d).
    """
    d, s = _check_dimension("d", d), _check_dimension("s", s)
    trials = _check_dimension("trials", trials)
    if s >= d:
        raise ValueError(f"s must be below d = {d}, got {s}")
    m_values = np.asarray(m_values, dtype=int)
    if m_values.ndim != 1 or np.any(m_values < 1):
        raise ValueError("m_values must be a 1-D array of positive integers")
    generator = np.random.default_rng(seed)
    rate_per_m = []
    for m in tqdm(m_values, desc="basis pursuit", disable=not progress):
        successes = 0
        for _ in range(trials):
            x0 = np.zeros(d)
            support = generator.choice(d, size=s, replace=False)
            x0[support] = generator.standard_normal(s)
            successes += _basis_pursuit_recovers(generator.standard_normal((m, d)), x0)
        rate_per_m.append(successes / trials)
    rates = np.asarray(rate_per_m)
    return PhaseTransition(
        d=d,
        s=s,
        m_values=m_values,
        success_rate=rates,
        stderr=np.sqrt(rates * (1 - rates) / trials),
        trials=trials,
        statdim=d * psi_l1(s / d),
    )
