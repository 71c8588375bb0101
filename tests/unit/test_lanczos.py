"""Lanczos, SLQ and trace estimators against eigvalsh, eigsh and exact traces."""

import json
import math

import numpy as np
import pytest
import torch
from scipy.sparse.linalg import eigsh
from torch import nn

from prunelimit.curvature import HessianOperator, dense_hessian
from prunelimit.lanczos import MatrixOperator, hutchinson_trace, hutchpp_trace, lanczos, slq
from prunelimit.training import Recipe, train
from tests.unit.test_certified import CountingOperator

LOSS = nn.CrossEntropyLoss()


@pytest.fixture(scope="module")
def network() -> tuple[HessianOperator, np.ndarray]:
    """A small MLP trained on synthetic classes, its Hessian operator and its exact spectrum."""
    torch.manual_seed(0)
    inputs = torch.randn(600, 8, dtype=torch.float64)
    targets = (inputs[:, :3].sum(dim=1) > 0).long() + (inputs[:, 3] > 0.5).long()
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3)).double()
    train(model, inputs, targets, Recipe(20, 0.1), progress=False)
    operator = HessianOperator(model, LOSS, (inputs, targets), chunk_size=256)
    matrix = dense_hessian(model, LOSS, (inputs, targets))
    return operator, np.linalg.eigvalsh(((matrix + matrix.T) / 2).numpy())


def test_extreme_ritz_values_match_eigvalsh_and_eigsh(network) -> None:
    operator, exact = network
    result = lanczos(operator, 60, seed=1)
    assert np.all(np.abs(result.top(3) - exact[::-1][:3]) <= 1e-8 * np.abs(exact[::-1][:3]))
    assert abs(result.bottom(1)[0] - exact[0]) <= 1e-8 * abs(exact[0])
    assert exact[0] < 0, "the test network should have negative curvature"
    assert result.converged[-1] and result.residuals[-1] <= 1e-8 * abs(result.ritz_values).max()
    scipy_top = eigsh(operator.to_scipy(), k=3, which="LA", return_eigenvectors=False)
    np.testing.assert_allclose(np.sort(result.top(3)), np.sort(scipy_top), rtol=1e-8)
    by_magnitude = result.top(2, order="magnitude")
    assert np.all(np.abs(by_magnitude) >= np.sort(np.abs(exact))[-2] * (1 - 1e-8))


def test_num_steps_equal_to_dimension_gives_the_whole_spectrum(network) -> None:
    """Every eigenvalue is found. Repeated ones once: cross-entropy is blind to adding a constant to
    all logits, so each hidden unit's outgoing weights (and the output bias) give an exactly flat
    direction, and one Krylov sequence sees the eigenvalue 0 once; it breaks down at the number
    of distinct eigenvalues."""
    operator, exact = network
    result = lanczos(operator, operator.shape[0], seed=2)
    tolerance = 1e-9 * np.abs(exact).max()
    nearest = np.abs(exact[:, None] - result.ritz_values[None, :]).min(axis=1)
    assert nearest.max() <= tolerance, "an eigenvalue was missed"
    distinct = np.sum(np.diff(exact) > 1e-7 * np.abs(exact).max()) + 1
    assert result.num_steps == distinct == operator.shape[0] - 16
    assert np.all(np.abs(exact[:, None] - result.ritz_values).min(axis=0) <= tolerance), "a ghost"


def test_breakdown_on_a_matrix_with_few_distinct_eigenvalues() -> None:
    """Three distinct eigenvalues: the Krylov space has dimension 3; Lanczos stops there, exact."""
    values = np.repeat([1.0, 4.0, -2.0], 10)
    rotation, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((30, 30)))
    result = lanczos(MatrixOperator(rotation @ np.diag(values) @ rotation.T), 20, seed=0)
    assert result.num_steps == 3
    np.testing.assert_allclose(result.ritz_values, [-2.0, 1.0, 4.0], atol=1e-10)
    assert result.converged.all()


def test_without_reorthogonalisation_ghost_copies_appear() -> None:
    spectrum = np.concatenate([np.linspace(0, 1, 195), [5, 6, 8, 9, 10]])
    rotation, _ = np.linalg.qr(np.random.default_rng(1).standard_normal((200, 200)))
    operator = MatrixOperator(rotation @ np.diag(spectrum) @ rotation.T)
    copies = [
        np.sum(np.abs(lanczos(operator, 120, reorthogonalize=r).ritz_values - 10) < 1e-6)
        for r in (True, False)
    ]
    assert copies[0] == 1 and copies[1] > 1


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_slq_spectral_sums_within_four_standard_errors(network, seed: int) -> None:
    operator, exact = network
    result = slq(operator, 30, 12, seed=seed)
    size = operator.shape[0]
    functions = {
        "trace": lambda x: x,
        "square": lambda x: x**2,
        "f_R": lambda x: np.abs(x) * 0.5 / (np.abs(x) * 0.5 + 2e-3),  # the pruning functional
    }
    for name, f in functions.items():
        estimate = result.spectral_sum(f)
        assert abs(estimate.z_score(np.sum(f(exact)) / size)) < 4, name
    for weights in result.weights:
        assert weights.sum() == pytest.approx(1.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_trace_estimators_within_four_standard_errors(network, seed: int) -> None:
    operator, exact = network
    for estimate in (
        hutchinson_trace(operator, 40, seed=seed),
        hutchpp_trace(operator, 60, seed=seed),
    ):
        assert abs(estimate.z_score(exact.sum())) < 4


def test_hutchpp_beats_hutchinson_on_a_decaying_spectrum() -> None:
    spectrum = 100.0 * 0.7 ** np.arange(300)
    rotation, _ = np.linalg.qr(np.random.default_rng(2).standard_normal((300, 300)))
    operator = MatrixOperator(rotation @ np.diag(spectrum) @ rotation.T)
    plain, plus = hutchinson_trace(operator, 60, seed=0), hutchpp_trace(operator, 60, seed=0)
    assert plus.stderr < plain.stderr / 5
    assert abs(plus.mean - spectrum.sum()) < 4 * max(plus.stderr, 1e-9 * spectrum.sum())


def test_density_integrates_to_one_and_results_round_trip() -> None:
    operator = MatrixOperator(np.diag(np.linspace(-1, 3, 50)))
    result = slq(operator, 20, 3, seed=0)
    grid = np.linspace(-3, 5, 4001)
    assert np.trapezoid(result.density(grid, 0.1), grid) == pytest.approx(1.0, abs=1e-3)
    restored = type(result).from_dict(result.to_dict())
    assert restored.spectral_sum(np.square).mean == result.spectral_sum(np.square).mean
    assert math.isnan(slq(operator, 5, 1).spectral_sum(np.square).stderr)


def test_stop_tol_stops_early_with_a_guaranteed_bound(network) -> None:
    operator, exact = network
    full = lanczos(operator, 60, seed=3)
    early = lanczos(operator, 60, seed=3, stop_tol=1e-3)
    assert early.num_steps < full.num_steps
    top = early.top(1)[0]
    assert early.residuals[-1] <= 1e-3 * abs(top)
    assert np.min(np.abs(exact - top)) <= early.residuals[-1]  # an eigenvalue within the residual


def test_truncating_an_slq_run_equals_a_shorter_run(network) -> None:
    operator, _ = network
    long, short = slq(operator, 40, 3, seed=5), slq(operator, 12, 3, seed=5)
    truncated = long.truncated(12)
    for a, b in zip(truncated.nodes + truncated.weights, short.nodes + short.weights, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


def test_a_float32_basis_gives_the_same_quadrature_to_single_precision(network) -> None:
    operator, _ = network
    double = slq(operator, 40, 4, seed=6, progress=False)
    single = slq(operator, 40, 4, seed=6, progress=False, basis_dtype=torch.float32)
    f = lambda x: np.abs(x) / (np.abs(x) + 1e-2)  # noqa: E731
    assert single.spectral_sum(f).mean == pytest.approx(double.spectral_sum(f).mean, rel=1e-4)
    np.testing.assert_allclose(single.nodes[0][-3:], double.nodes[0][-3:], rtol=1e-5)


def test_lanczos_result_serialises_to_json(network) -> None:
    operator, _ = network
    result = lanczos(operator, 10, seed=4, progress=False)
    stored = json.loads(json.dumps(result.to_dict()))
    np.testing.assert_array_equal(stored["ritz_values"], result.ritz_values)
    assert stored["converged"] == result.converged.tolist() and stored["seed"] == 4


def test_slq_without_reorthogonalisation_keeps_no_basis() -> None:
    """The limit stage's plain recurrence: live memory is the same after 20 and 200 steps and a
    few probe vectors, while the re-orthogonalised run holds its p x steps x D basis."""
    size, probes = 5000, 2
    diagonal = torch.tensor(np.random.default_rng(3).lognormal(0, 2, size))
    peaks = {}
    for steps, reorthogonalize in ((20, False), (200, False), (200, True)):
        operator = CountingOperator(diagonal)
        slq(operator, steps, probes, reorthogonalize=reorthogonalize, progress=False)
        peaks[steps, reorthogonalize] = max(operator.live_bytes)
    assert peaks[200, False] == peaks[20, False] < 12 * probes * size * 8
    assert peaks[200, True] >= 190 * probes * size * 8  # the stored basis (float64 here)
