"""The pruning limit: projection distances, the threshold equation, its bounds, and exact ground
truths on quadratic losses.

Conventions: D prunable weights; the pruning ratio rho = k / D is the fraction KEPT; w^k keeps the
k largest-magnitude weights of w*; R(k) = ||w* - w^k||. The predicted limit is the k solving
k / D = rho*(R(k)) with rho*(R) = (1/D) sum_i f_R(lambda_i), f_R(lambda) = lambda R^2 / (lambda R^2
+ 2 eps). The left side rises with k and the right side falls (R falls), so the root is unique.
"""

import dataclasses
import math
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import torch
from scipy import linalg, stats
from torch import nn

from prunelimit.geometry import kinematic_a_eta
from prunelimit.lanczos import SLQResult
from prunelimit.pruning import magnitude_order
from prunelimit.pruning_function import (
    NegativeCurvature,
    curvature_magnitudes,
    pruning_function,
)

Spectrum = np.ndarray | Sequence[float] | SLQResult
Weights = torch.Tensor | np.ndarray | Iterable[torch.Tensor]  # flat, or one tensor per layer


# ----------------------------------------------------------------------------- weights and R(k)
def flat_weights(weights: Weights) -> np.ndarray:
    """The weights as one float64 vector [D] (a tensor, an array, or a list of tensors)."""
    if isinstance(weights, np.ndarray):
        flat = weights.astype(np.float64).ravel()
    elif isinstance(weights, torch.Tensor):
        flat = weights.detach().double().cpu().numpy().ravel()
    else:
        parts = [w.detach().double().cpu().reshape(-1) for w in weights]
        flat = torch.cat(parts).numpy() if parts else np.zeros(0)
    if flat.size == 0:
        raise ValueError("there are no weights: the model has no prunable (linear or conv) layers")
    return flat


def projection_distances(weights: Weights) -> np.ndarray:
    """R(k) = ||w* - w^k|| for k = 0..D, [D + 1], from one sort and one cumulative sum.

    R(k)^2 is the sum of the D - k smallest squared magnitudes; summing from the small end keeps
    the tail sums accurate.
    """
    flat = flat_weights(weights)
    ascending = np.sort(flat**2)  # the smallest first
    tails = np.concatenate([[0.0], np.cumsum(ascending)])  # tails[j]: sum of the j smallest
    return np.sqrt(tails[::-1])  # k = 0..D keeps the k largest: the D - k smallest remain


def _distance_at(distances: np.ndarray, k: float) -> float:
    """R at a real k: R^2 interpolated linearly between integers (keeping part of a weight)."""
    low = min(math.floor(k), len(distances) - 2)
    fraction = k - low
    squared = (1 - fraction) * distances[low] ** 2 + fraction * distances[low + 1] ** 2
    return math.sqrt(max(squared, 0.0))


# ----------------------------------------------------------------------------- eps
@torch.no_grad()
def loss_tolerance(
    model: nn.Module,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    data: tuple[torch.Tensor, torch.Tensor],
    batch_size: int = 128,
    seed: int = 0,
) -> float:
    """The default eps: the standard deviation of the training loss over mini-batches.

    This is the authors' choice (their code), not something the theory fixes: it reads "a loss
    change smaller than the noise of one mini-batch does not count". Batches of ``batch_size``
    from a seeded shuffle of (x [N, ...], y [N]); the model is evaluated in eval mode.
    """
    inputs, targets = data
    if len(inputs) < 2 * batch_size:
        raise ValueError(f"need at least two batches of {batch_size}; got {len(inputs)} examples")
    was_training = model.training
    model.eval()
    order = torch.randperm(len(inputs), generator=torch.Generator().manual_seed(seed))
    losses = [
        float(loss_fn(model(inputs[batch]), targets[batch]))
        for batch in torch.split(order, batch_size)
        if len(batch) == batch_size
    ]
    model.train(was_training)
    if not all(math.isfinite(loss) for loss in losses):
        raise ValueError("the loss is not finite on some mini-batch: check the model and data")
    return float(np.std(losses, ddof=1))


# ----------------------------------------------------------------------------- the threshold
@dataclasses.dataclass(frozen=True)
class _SpectralMeasure:
    """Quadrature rules (nodes, weights) whose weights sum to 1, one per probe (one for exact)."""

    rules: list[tuple[np.ndarray, np.ndarray]]
    zero_share: float

    def ratio(self, distance: float, eps: float, rules=None) -> float:
        """rho*(R) = (1 - z) * mean over rules of sum_j w_j f_R(theta_j), z the extra mass at 0."""
        scale = distance**2 / (2 * eps)
        per_rule = [np.sum(w * pruning_function(n, scale)) for n, w in (rules or self.rules)]
        return (1 - self.zero_share) * float(np.mean(per_rule))

    def meancurvature_magnitudes(self, rules=None) -> float:
        """tr(H) / D under the same negative-curvature rule (for the sharpness bound)."""
        return (1 - self.zero_share) * float(
            np.mean([np.sum(w * n) for n, w in (rules or self.rules)])
        )


def _measure(
    spectrum: Spectrum, size: int, negative: NegativeCurvature, zero_share: float
) -> _SpectralMeasure:
    if not 0 <= zero_share < 1:
        raise ValueError(f"zero_row_share must be in [0, 1), got {zero_share}")
    if isinstance(spectrum, SLQResult):
        if spectrum.dimension != size:
            raise ValueError(
                f"the SLQ result is for D = {spectrum.dimension}, the weights have D = {size}"
            )
        rules = [
            (curvature_magnitudes(n, negative), w)
            for n, w in zip(spectrum.nodes, spectrum.weights, strict=True)
        ]
    else:
        eigenvalues = np.asarray(spectrum, dtype=np.float64).ravel()
        if eigenvalues.size != size:
            raise ValueError(
                f"{eigenvalues.size} eigenvalues for D = {size} weights: they must match"
            )
        rules = [(curvature_magnitudes(eigenvalues, negative), np.full(size, 1.0 / size))]
    return _SpectralMeasure(rules, zero_share)


def _root(equation: Callable[[float], float], size: int, tolerance: float = 1e-12) -> float:
    """The k in [0, D] where the increasing function ``equation`` crosses 0, by bisection."""
    low, high = 0.0, float(size)
    if equation(low) >= 0:
        return low
    if equation(high) <= 0:
        return high
    while high - low > tolerance * size:
        middle = (low + high) / 2
        low, high = (middle, high) if equation(middle) < 0 else (low, middle)
    return (low + high) / 2


def _threshold_root(
    distances: np.ndarray, measure: _SpectralMeasure, eps: float, rules=None
) -> float:
    """The k solving k / D = rho*(R(k)) under ``measure`` (its ``rules``, default all)."""
    size = len(distances) - 1
    return _root(lambda k: k / size - measure.ratio(_distance_at(distances, k), eps, rules), size)


@dataclasses.dataclass(frozen=True)
class LimitPrediction:
    """The predicted pruning limit (ratios are fractions KEPT) with its bounds.

    rho: root of k/D = rho*(R(k)); k = rho D; R: R(k) there. lower / upper: roots with the
    kinematic window (rho* - 1/D - a_eta/sqrt(D) and rho* + a_eta/sqrt(D)); sharpness_bound: root
    with rho* replaced by its Jensen bound R^2 tr(H) / (R^2 tr(H) + 2 D eps). rho_stderr:
    jackknife over SLQ probes (None for exact eigenvalues or a single probe). It is the probe
    sampling error alone, at the number of Lanczos steps run: it does not include the error of
    stopping Lanczos there, which for the |lambda| rule is larger and does not shrink in any
    affordable number of steps. It is not the error of ``rho``: report ``prediction_spread``.
    """

    rho: float
    k: float
    R: float
    lower: float
    upper: float
    sharpness_bound: float
    rho_stderr: float | None
    dimension: int
    eps: float
    negative: str
    eta: float
    zero_row_share: float

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def predict_limit(
    spectrum: Spectrum,
    weights: Weights,
    eps: float,
    negative: NegativeCurvature = "abs",
    eta: float = 0.01,
    zero_row_share: float = 0.0,
) -> LimitPrediction:
    """The predicted limit from a spectrum (exact eigenvalues [D] or an SLQ result) and weights w*.

    ``zero_row_share`` adds that much mass at lambda = 0 (rows of H that are exactly zero, which a
    few Lanczos nodes cannot resolve).
    """
    if not eps > 0:
        raise ValueError(f"eps must be positive (a loss increase), got {eps!r}")
    distances = projection_distances(weights)
    size = len(distances) - 1
    measure = _measure(spectrum, size, negative, zero_row_share)
    window = kinematic_a_eta(eta) / math.sqrt(size)

    def solve(rules=None) -> float:
        return _threshold_root(distances, measure, eps, rules)

    def bound(shift: float) -> float:
        return _root(
            lambda k: k / size - (measure.ratio(_distance_at(distances, k), eps) + shift), size
        )

    curvature = measure.meancurvature_magnitudes()

    def sharpness(k: float) -> float:
        spread = _distance_at(distances, k) ** 2 * curvature
        return k / size - spread / (spread + 2 * eps)

    k = solve()
    stderr = None
    if len(measure.rules) > 1:  # jackknife over probes
        count = len(measure.rules)
        leave_one_out = [
            solve(measure.rules[:i] + measure.rules[i + 1 :]) / size for i in range(count)
        ]
        stderr = math.sqrt(
            (count - 1) / count * np.sum((np.array(leave_one_out) - np.mean(leave_one_out)) ** 2)
        )
    return LimitPrediction(
        rho=k / size,
        k=k,
        R=_distance_at(distances, k),
        lower=bound(-1 / size - window) / size,
        upper=bound(window) / size,
        sharpness_bound=_root(sharpness, size) / size,
        rho_stderr=stderr,
        dimension=size,
        eps=eps,
        negative=negative,
        eta=eta,
        zero_row_share=zero_row_share,
    )


# ----------------------------------------------------------------------------- Lanczos spread
def lanczos_steps(spectrum: SLQResult) -> int:
    """The number of Lanczos steps of ``spectrum`` (its longest run); it must be truncatable."""
    if not isinstance(spectrum, SLQResult):
        raise TypeError("the spread over Lanczos steps needs an SLQ result, not eigenvalues")
    if spectrum.tridiagonals is None:
        raise ValueError(
            "the spread over Lanczos steps needs the tridiagonal matrices: use the result of "
            "slq(), or one stored with them"
        )
    return max(len(t.diagonal) for t in spectrum.tridiagonals)


def predictions_by_steps(
    spectrum: SLQResult,
    weights: Weights,
    eps: float,
    steps: Sequence[int],
    negative: NegativeCurvature = "abs",
    zero_row_share: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """The predicted rho from the first m Lanczos steps, for each m in ``steps``: (the prediction
    from the mean over probes [len(steps)], each probe's own prediction [num_probes, len(steps)]).

    A truncation is the leading block of each probe's tridiagonal matrix, exactly what a run of
    m steps from the same probe would give. The mean's entry at the full number of steps is
    ``predict_limit(spectrum, ...).rho``.
    """
    if not eps > 0:
        raise ValueError(f"eps must be positive (a loss increase), got {eps!r}")
    num_steps = lanczos_steps(spectrum)
    distances = projection_distances(weights)
    size = len(distances) - 1
    means, per_probe = [], []
    for m in steps:
        if not 1 <= m <= num_steps:
            raise ValueError(f"a truncation must be in 1..{num_steps} steps, got {m}")
        truncated = spectrum if m == num_steps else spectrum.truncated(m)
        measure = _measure(truncated, size, negative, zero_row_share)
        means.append(_threshold_root(distances, measure, eps) / size)
        per_probe.append(
            [_threshold_root(distances, measure, eps, [rule]) / size for rule in measure.rules]
        )
    return np.array(means), np.array(per_probe).T


def _decimals(rho: float, low: float, high: float) -> int:
    """Decimal places for a prediction and its spread: at least 2, enough to show the smallest
    positive value to two significant digits, and the width high - low to one (up to 4)."""
    places = 2
    positive = [abs(v) for v in (rho, low, high) if v != 0]
    if positive:
        places = max(places, 1 - math.floor(math.log10(min(positive))))
    if high > low:
        places = max(places, min(4, -math.floor(math.log10(high - low))))
    return places


@dataclasses.dataclass(frozen=True)
class LanczosSpread:
    """How far the predicted limit from SLQ moves over Lanczos truncations and probes.

    rho: the prediction from every step and probe (``predict_limit(...).rho``). low / high: the
    smallest and largest of the predictions of each single probe, and of the mean over probes,
    from the first m steps, for every m from ``from_steps`` to ``num_steps``. For the |lambda|
    rule the SLQ estimate does not converge in an affordable number of steps and nothing bounds
    its error: this spread is the uncertainty to report with it, not the probe standard error.
    It is an empirical range, not a confidence interval: nothing guarantees that the prediction
    from the exact spectrum lies inside it. steps: the truncations m; mean: the mean's prediction
    at each [len(steps)]; per_probe: each probe's [num_probes][len(steps)].
    """

    rho: float
    low: float
    high: float
    num_steps: int
    num_probes: int
    from_steps: int
    negative: str
    steps: list[int]
    mean: list[float]
    per_probe: list[list[float]]

    def describe(self, compact: bool = False) -> str:
        """The prediction with its spread, e.g. "0.40 (0.31-0.44 over 40-80 Lanczos steps x 3
        probes)", or with ``compact`` "0.40 (0.31-0.44, 40-80 steps x 3 probes)"."""
        places = _decimals(self.rho, self.low, self.high)
        probes = f"{self.num_probes} probe{'s' if self.num_probes != 1 else ''}"
        window = (
            f"{self.from_steps}-{self.num_steps}"
            if self.from_steps < self.num_steps
            else f"{self.num_steps}"
        )
        where = f", {window} steps" if compact else f" over {window} Lanczos steps"
        return (
            f"{self.rho:.{places}f} ({self.low:.{places}f}-{self.high:.{places}f}{where} x "
            f"{probes})"
        )

    def __str__(self) -> str:
        return self.describe()

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, stored: dict) -> "LanczosSpread":
        return cls(**{field.name: stored[field.name] for field in dataclasses.fields(cls)})


def prediction_spread(
    spectrum: SLQResult,
    weights: Weights,
    eps: float,
    negative: NegativeCurvature = "abs",
    zero_row_share: float = 0.0,
    from_steps: int | None = None,
) -> LanczosSpread:
    """The prediction with its spread over the truncations m = ``from_steps`` (default: half
    the steps run) .. all steps, and over the probes (see ``LanczosSpread``).

    Needs the tridiagonal matrices (a result of ``slq``, or one stored with them).
    """
    num_steps = lanczos_steps(spectrum)
    start = max(1, num_steps // 2) if from_steps is None else from_steps
    if not 1 <= start <= num_steps:
        raise ValueError(f"from_steps must be in 1..{num_steps}, got {from_steps}")
    steps = list(range(start, num_steps + 1))
    mean, per_probe = predictions_by_steps(spectrum, weights, eps, steps, negative, zero_row_share)
    every = np.concatenate([mean, per_probe.ravel()])
    return LanczosSpread(
        rho=float(mean[-1]),
        low=float(every.min()),
        high=float(every.max()),
        num_steps=num_steps,
        num_probes=spectrum.num_probes,
        from_steps=start,
        negative=negative,
        steps=steps,
        mean=mean.tolist(),
        per_probe=per_probe.tolist(),
    )


def threshold_curve(
    spectrum: Spectrum,
    weights: Weights,
    eps: float,
    negative: NegativeCurvature = "abs",
    points: int = 400,
) -> tuple[np.ndarray, np.ndarray]:
    """(k / D, rho*(R(k))) on ``points`` values of k: the threshold equation's right side."""
    distances = projection_distances(weights)
    size = len(distances) - 1
    measure = _measure(spectrum, size, negative, 0.0)
    ks = np.linspace(0, size, points)
    return ks / size, np.array([measure.ratio(_distance_at(distances, k), eps) for k in ks])


def critical_distances(
    spectrum: Spectrum,
    size: int,
    eps: float,
    ratios: np.ndarray,
    negative: NegativeCurvature = "abs",
    zero_row_share: float = 0.0,
) -> np.ndarray:
    """The theory's largest allowed distance at each ratio: R with rho*(R) = ratio [len(ratios)].

    rho*(R) increases from 0 to (1 - zero share) as R grows, so pruning to k = ratio D is
    predicted to work while R(k) <= this distance; +inf where the ratio is beyond rho*'s range.
    """
    measure = _measure(spectrum, size, negative, zero_row_share)
    ceiling = 1.0 - zero_row_share
    result = []
    for ratio in np.asarray(ratios, dtype=np.float64):
        if ratio >= ceiling:
            result.append(math.inf)
            continue
        low, high = -30.0, 30.0  # log R
        for _ in range(100):
            middle = (low + high) / 2
            low, high = (
                (middle, high) if measure.ratio(math.exp(middle), eps) < ratio else (low, middle)
            )
        result.append(math.exp((low + high) / 2))
    return np.array(result)


# ----------------------------------------------------------------------------- zero rows of H
@dataclasses.dataclass(frozen=True)
class ZeroRowShare:
    """Share of sampled Hessian rows with l1 norm <= tol, with a 95% Wilson interval."""

    share: float
    low: float
    high: float
    num_rows: int
    zero_rows: list[int]


def zero_row_share(
    operator,
    weights: Weights,
    num_rows: int,
    tol: float = 1e-10,
    seed: int = 0,
) -> ZeroRowShare:
    """Sample ``num_rows`` coordinates i uniformly and count rows H e_i with ||H e_i||_1 <= tol.

    One Hessian-vector product per row (``num_rows`` of them in blocks). ``weights`` are the
    weights the operator is taken over (their number must be D). Dead units show up as zero rows.
    """
    size = flat_weights(weights).size
    if operator.shape[0] != size:
        raise ValueError(f"the operator has D = {operator.shape[0]}, the weights D = {size}")
    if not 1 <= num_rows <= size:
        raise ValueError(f"num_rows must be in 1..{size}, got {num_rows}")
    rows = np.sort(np.random.default_rng(seed).choice(size, num_rows, replace=False))
    zero = []
    for block in np.array_split(rows, max(1, num_rows // 16)):
        basis = torch.zeros(size, len(block), dtype=operator.dtype, device=operator.device)
        basis[torch.as_tensor(block), torch.arange(len(block))] = 1.0
        norms = operator.matmat(basis).abs().sum(dim=0).cpu().numpy()
        zero += [int(i) for i, norm in zip(block, norms, strict=True) if norm <= tol]
    share = len(zero) / num_rows
    z = stats.norm.ppf(0.975)
    center = (share + z**2 / (2 * num_rows)) / (1 + z**2 / num_rows)
    half = (
        z
        / (1 + z**2 / num_rows)
        * math.sqrt(share * (1 - share) / num_rows + z**2 / (4 * num_rows**2))
    )
    return ZeroRowShare(share, max(0.0, center - half), min(1.0, center + half), num_rows, zero)


# ----------------------------------------------------------------------------- quadratic truth
def support_minimum(hessian: np.ndarray, w_star: np.ndarray, support: np.ndarray) -> float:
    """min over w supported on ``support`` of 1/2 (w - w*)^T H (w - w*) (-inf if unbounded below).

    With d = w - w*, d is free on the support T and fixed to -w* off it (C): the minimum is the
    Schur complement 1/2 (d_C^T H_CC d_C - b^T H_TT^+ b), b = H_TC d_C, when H_TT is positive
    semidefinite and b lies in its range; otherwise the quadratic is unbounded below.
    """
    mask = np.zeros(len(w_star), dtype=bool)
    mask[support] = True
    fixed = -w_star[~mask]
    outside = fixed @ hessian[np.ix_(~mask, ~mask)] @ fixed
    if mask.sum() == 0:
        return 0.5 * float(outside)
    block = hessian[np.ix_(mask, mask)]
    coupling = hessian[np.ix_(mask, ~mask)] @ fixed
    try:  # positive definite: a Cholesky solve (fast path)
        factor = linalg.cho_factor(block)
        return 0.5 * float(outside - coupling @ linalg.cho_solve(factor, coupling))
    except linalg.LinAlgError:
        pass
    values, vectors = np.linalg.eigh(block)
    scale = max(np.abs(values).max(), 1e-300)
    if values[0] < -1e-12 * scale:
        return -math.inf
    projected = vectors.T @ coupling
    positive = values > 1e-12 * scale
    if np.any(np.abs(projected[~positive]) > 1e-9 * max(np.abs(projected).max(), 1e-300)):
        return -math.inf  # a flat direction of H_TT with a linear term: unbounded below
    return 0.5 * float(outside - np.sum(projected[positive] ** 2 / values[positive]))


def quadratic_limit(
    hessian: np.ndarray, w_star: np.ndarray, eps: float, support_order: np.ndarray | None = None
) -> int:
    """The exact smallest k such that some w supported on the first k coordinates of
    ``support_order`` (default: decreasing |w*|) has 1/2 (w - w*)^T H (w - w*) <= eps.

    Supports are nested, so feasibility is monotone in k and bisection finds the smallest k.
    """
    if not eps > 0:
        raise ValueError(f"eps must be positive, got {eps!r}")
    hessian, w_star = (
        np.asarray(hessian, dtype=np.float64),
        np.asarray(w_star, dtype=np.float64).ravel(),
    )
    size = len(w_star)
    if hessian.shape != (size, size):
        raise ValueError(f"H has shape {hessian.shape}, w* has D = {size}: they must match")
    order = magnitude_order(w_star) if support_order is None else np.asarray(support_order)

    def feasible(k: int) -> bool:
        return support_minimum(hessian, w_star, order[:k]) <= eps

    low, high = 0, size  # feasible(size) holds: w = w* gives 0
    if feasible(0):
        return 0
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if feasible(middle) else (middle, high)
    return high
