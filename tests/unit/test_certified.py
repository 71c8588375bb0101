"""Certified bounds: Gauss / Gauss-Radau quadrature against exact quadratic forms, the sampling
margin against Monte Carlo, and certified_limit against exact spectra."""

import gc

import numpy as np
import pytest
import torch
from torch import nn

from prunelimit.certified import (
    NotPositiveSemidefiniteError,
    _Grid,
    _probe_bounds,
    _sampling_margin,
    certified_limit,
)
from prunelimit.curvature import dense_ggn
from prunelimit.lanczos import MatrixOperator, rademacher_probes, slq
from prunelimit.limit import flat_weights, predict_limit, projection_distances
from prunelimit.models import prunable_parameters
from prunelimit.quadrature import LanczosRecurrence, resolvent_bounds


def psd_matrix(size: int, zeros: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A PSD matrix [D, D] with ``zeros`` zero eigenvalues and a wide spread of the others."""
    rng = np.random.default_rng(seed)
    eigenvalues = np.concatenate([np.zeros(zeros), rng.lognormal(-2, 2.5, size - zeros)])
    basis, _ = np.linalg.qr(rng.standard_normal((size, size)))
    return (basis * eigenvalues) @ basis.T, eigenvalues, basis


def test_gauss_and_radau_bracket_the_quadratic_form_at_ten_shifts():
    matrix, _, _ = psd_matrix(300, 120, seed=1)
    v = np.random.default_rng(2).standard_normal(300)
    v /= np.linalg.norm(v)
    shifts = np.logspace(-6, 1, 10)
    exact = np.array([v @ np.linalg.solve(matrix + c * np.eye(300), v) for c in shifts])
    recurrence = LanczosRecurrence(MatrixOperator(torch.tensor(matrix)), torch.tensor(v)[None])
    widths = []
    for steps in (3, 10, 30):
        while recurrence.num_steps < steps:
            recurrence.step()
        (tridiagonal,) = recurrence.tridiagonals()
        lower, upper = resolvent_bounds(tridiagonal, shifts, floor=-1e-12)
        assert np.all(lower <= exact * (1 + 1e-9))
        assert np.all(exact <= upper * (1 + 1e-9))
        widths.append(np.max((upper - lower) / exact))
    assert widths[0] > 0.1  # a real bracket, not a coincidence of equal numbers
    assert widths[2] < widths[0]


def test_the_recurrence_reproduces_reorthogonalised_lanczos_early_on():
    matrix, _, _ = psd_matrix(200, 50, seed=3)
    operator = MatrixOperator(torch.tensor(matrix))
    reference = slq(operator, 8, 1, seed=4, progress=False).tridiagonals[0]
    recurrence = LanczosRecurrence(operator, rademacher_probes(200, 1, seed=4))
    for _ in range(8):
        recurrence.step()
    (plain,) = recurrence.tridiagonals()
    np.testing.assert_allclose(plain.diagonal, reference.diagonal, rtol=1e-8)
    np.testing.assert_allclose(plain.offdiagonal, reference.offdiagonal, rtol=1e-8)


def test_probe_bounds_bracket_the_exact_probe_estimate_at_every_grid_point():
    matrix, eigenvalues, basis = psd_matrix(250, 100, seed=6)
    weights = np.random.default_rng(7).standard_normal(250)
    grid = _Grid.build(projection_distances(weights), eps=0.05, points=256)
    starts = torch.tensor(np.random.default_rng(8).standard_normal((3, 250)))
    recurrence = LanczosRecurrence(MatrixOperator(torch.tensor(matrix)), starts)
    for _ in range(25):
        recurrence.step()
    lower, upper = _probe_bounds(recurrence, grid)
    components = (basis.T @ starts.numpy().T) ** 2 / 250  # [D, probes]: |g|^2/D times weights
    scaled = np.outer(grid.scales, eigenvalues)
    exact = (scaled / (scaled + 1)) @ components.mean(axis=1)
    assert np.all(lower <= exact + 1e-12) and np.all(exact <= upper + 1e-12)
    assert np.max(upper - lower) > 0.01


def test_sampling_margin_covers_the_probe_error_uniformly_over_the_grid():
    rng = np.random.default_rng(9)
    size = 400
    eigenvalues = np.concatenate([np.zeros(250), rng.lognormal(0, 2, 150)])
    scales = np.logspace(-3, 3, 33)
    f = np.outer(scales, eigenvalues) / (np.outer(scales, eigenvalues) + 1)  # [G, D]
    exact = f.mean(axis=1)
    misses = 0
    for _ in range(2000):  # a diagonal matrix: g^T f(A) g / D with g Gaussian
        estimate = f @ rng.standard_normal(size) ** 2 / size
        margin = _sampling_margin(estimate, 1, size, failure=0.01)
        misses += bool(np.any(np.abs(estimate - exact) > margin))
    assert misses <= 20


def test_certified_interval_contains_the_exact_prediction_of_a_psd_matrix():
    matrix, eigenvalues, _ = psd_matrix(400, 250, seed=10)
    weights = np.random.default_rng(11).standard_normal(400) * np.exp(
        np.random.default_rng(12).standard_normal(400)
    )
    exact = predict_limit(eigenvalues, weights, eps=0.05, negative="flat").rho
    result = certified_limit(
        MatrixOperator(torch.tensor(matrix)),
        weights,
        eps=0.05,
        tolerance=0.15,
        grid_points=256,
        progress=False,
    )
    assert result.low <= exact <= result.high
    assert result.converged and result.width <= 0.15
    assert result.num_probes > 1  # D = 400: the sampling error needs more than one probe
    assert [entry["probes"] for entry in result.trace] == sorted(
        entry["probes"] for entry in result.trace
    )
    assert result.num_products == result.trace[-1]["products"]


def test_rounding_level_negative_curvature_of_a_tiny_operator_is_not_refused():
    """A tiny PSD curvature (a saturated softmax makes G ~ 1e-30) with one eigenvalue at
    -1e-36: far below 0 relative to |G|, far below anything a shift c = 2 eps / R^2 can see.
    Lanczos run over its whole spectrum finds it, and the probe bounds are still given
    (test_an_indefinite_operator_is_refused keeps a real negative eigenvalue refused)."""
    eigenvalues = np.append(1e-30 * np.arange(1.0, 50.0), -1e-36)
    recurrence = LanczosRecurrence(
        MatrixOperator(torch.tensor(np.diag(eigenvalues))), rademacher_probes(50, 1, 0, "cpu")
    )
    for _ in range(49):
        recurrence.step()
    (tridiagonal,) = recurrence.tridiagonals()
    assert np.linalg.eigvalsh(np.diag(tridiagonal.diagonal)
                              + np.diag(tridiagonal.offdiagonal, 1)
                              + np.diag(tridiagonal.offdiagonal, -1)).min() < -1e-37  # fmt: skip
    grid = _Grid.build(projection_distances(np.ones(50)), 0.05, 64)
    lower, upper = _probe_bounds(recurrence, grid)
    assert np.all(np.isfinite(lower)) and np.all(lower <= upper + 1e-12)


def test_a_rank_bound_caps_the_interval():
    matrix, eigenvalues, _ = psd_matrix(300, 285, seed=17)  # rank 15
    operator = MatrixOperator(torch.tensor(matrix))
    operator.rank_bound = 15
    weights = np.random.default_rng(18).standard_normal(300)
    exact = predict_limit(eigenvalues, weights, eps=1e-3, negative="flat").rho
    result = certified_limit(
        operator,
        weights,
        1e-3,
        tolerance=1e-6,
        max_products=5,
        check_every=5,
        grid_points=256,
        progress=False,
    )
    assert result.low <= exact <= result.high <= 15 / 300 + 1 / 256
    uncapped = certified_limit(
        MatrixOperator(torch.tensor(matrix)),
        weights,
        1e-3,
        tolerance=1e-6,
        max_products=5,
        check_every=5,
        grid_points=256,
        progress=False,
    )
    assert uncapped.high > result.high


def test_a_budget_stops_the_search_and_says_so():
    matrix, _, _ = psd_matrix(200, 100, seed=13)
    result = certified_limit(
        MatrixOperator(torch.tensor(matrix)),
        np.linspace(-1, 1, 200),
        eps=0.01,
        tolerance=1e-6,
        max_products=30,
        grid_points=64,
        progress=False,
    )
    assert not result.converged and "budget" in result.stop_reason
    assert result.num_products == 30


def test_doubling_the_probes_never_overspends_the_budget():
    matrix, _, _ = psd_matrix(200, 190, seed=13)  # rank 10: the quadrature closes at once
    for budget in (40, 75, 130):
        result = certified_limit(
            MatrixOperator(torch.tensor(matrix)),
            np.linspace(-1, 1, 200),
            eps=0.01,
            tolerance=0.01,
            max_products=budget,
            check_every=5,
            grid_points=64,
            progress=False,
        )
        assert result.num_probes > 1, "the test needs probe doublings"
        assert result.num_products <= budget and "budget" in result.stop_reason


def test_an_indefinite_operator_is_refused():
    matrix, _, _ = psd_matrix(100, 0, seed=14)
    indefinite = matrix - 2 * np.median(np.linalg.eigvalsh(matrix)) * np.eye(100)
    with pytest.raises(NotPositiveSemidefiniteError, match="GGNOperator"):
        certified_limit(MatrixOperator(torch.tensor(indefinite)), np.ones(100), 0.1, progress=False)


def test_a_float32_operator_is_refused():
    matrix, _, _ = psd_matrix(50, 0, seed=15)
    with pytest.raises(ValueError, match="float64"):
        certified_limit(MatrixOperator(torch.tensor(matrix).float()), np.ones(50), 0.1)


def _large_tensors(size: int) -> list[torch.Tensor]:
    """The live tensors of at least ``size`` values (a scan of all objects)."""
    return [t for t in gc.get_objects() if type(t) is torch.Tensor and t.numel() >= size]


class CountingOperator:
    """A diagonal operator that records, at every 10th product, the bytes of the live tensors of
    at least D values made since it was built (tensors other tests left alive do not count; a
    scan of all objects is too slow for every product)."""

    def __init__(self, diagonal: torch.Tensor) -> None:
        self.diagonal = diagonal
        self.shape = (len(diagonal), len(diagonal))
        self.dtype, self.device = diagonal.dtype, diagonal.device
        self.calls = 0
        self.live_bytes: list[int] = []
        self.before = {id(t) for t in _large_tensors(len(diagonal))}

    def matmat(self, vectors: torch.Tensor) -> torch.Tensor:
        if self.calls % 10 == 0:
            self.live_bytes.append(
                sum(
                    t.element_size() * t.numel()
                    for t in _large_tensors(self.shape[0])
                    if id(t) not in self.before
                )
            )
        self.calls += 1
        return self.diagonal[:, None] * vectors


def test_peak_memory_does_not_grow_with_the_number_of_steps():
    size = 5000
    diagonal = torch.tensor(np.random.default_rng(16).lognormal(0, 3, size))
    peaks = []
    for steps in (20, 200):
        operator = CountingOperator(diagonal)
        certified_limit(
            operator,
            np.ones(size),
            eps=1.0,
            tolerance=1e-9,
            max_products=steps,
            check_every=steps,
            grid_points=64,
            progress=False,
        )
        peaks.append(max(operator.live_bytes))
    assert peaks[1] == peaks[0]
    assert peaks[0] < 12 * size * 8  # a few vectors of D float64 values, not a basis


def tiny_networks() -> dict[str, tuple[nn.Module, torch.Tensor]]:
    """Three small networks (D = 100 to 256) with inputs: N (C - 1) is 75-80% of D, so G has a
    null space (as real networks do) but its rank bound alone does not decide the limit."""
    torch.manual_seed(0)
    conv = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 4 * 4, 4))
    mlp = nn.Sequential(nn.Linear(12, 16), nn.Tanh(), nn.Linear(16, 4))
    return {
        "linear": (nn.Linear(20, 5), torch.randn(20, 20)),
        "mlp": (mlp, torch.randn(64, 12)),
        "conv": (conv, torch.randn(60, 1, 6, 6)),
    }


@pytest.mark.parametrize("name", ["linear", "mlp", "conv"])
def test_certified_interval_contains_the_exact_prediction_of_a_tiny_network(name):
    """On the exact G of each network (dense_ggn, itself tested against J^T H_z J)."""
    model, inputs = tiny_networks()[name]
    model, inputs = model.double().eval(), inputs.double()
    targets = torch.randint(0, model(inputs).shape[1], (len(inputs),))
    weights = prunable_parameters(model)
    ggn = dense_ggn(model, nn.CrossEntropyLoss(), (inputs, targets), weights)
    eps = 1e-2
    exact = predict_limit(
        np.linalg.eigvalsh(ggn.numpy()), flat_weights(weights), eps, negative="flat"
    ).rho
    result = certified_limit(
        MatrixOperator(ggn),
        weights,
        eps,
        tolerance=0.15,
        max_probes=128,
        grid_points=256,
        seed=1,
        progress=False,
    )
    assert result.low <= exact <= result.high
    assert result.converged and 0 < result.width <= 0.15


def test_a_zero_curvature_predicts_nothing_to_keep():
    """Lanczos breaks down at once in every run: the quadrature is exact (0) and only the
    probes' sampling margin keeps the interval open."""
    result = certified_limit(
        MatrixOperator(torch.zeros(50, 50, dtype=torch.float64)),
        np.ones(50),
        0.1,
        grid_points=64,
        progress=False,
    )
    assert result.low == 0 and 0 < result.high < 0.05
    assert all(entry["quadrature_high"] <= 1 / 64 + 1e-12 for entry in result.trace)
    assert "sampling" in result.stop_reason
