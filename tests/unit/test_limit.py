"""The pruning limit: R(k), the threshold root and bounds, eps, zero rows, quadratic truth."""

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from prunelimit.curvature import HessianOperator, dense_hessian
from prunelimit.lanczos import MatrixOperator, SLQResult, lanczos, rademacher_probes, slq
from prunelimit.limit import (
    LanczosSpread,
    _distance_at,
    critical_distances,
    loss_tolerance,
    magnitude_order,
    predict_limit,
    prediction_spread,
    projection_distances,
    quadratic_limit,
    support_minimum,
    zero_row_share,
)
from prunelimit.models import prunable_parameters


def random_quadratic(
    size: int, seed: int, spectrum: str = "exp2"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(H with a random eigenbasis, its eigenvalues, w*)."""
    rng = np.random.default_rng(seed)
    rotation, _ = np.linalg.qr(rng.standard_normal((size, size)))
    eigenvalues = {
        "exp2": rng.exponential(1.0, size) ** 2,
        "powerlaw": 10.0 / np.arange(1, size + 1),
        "indefinite": rng.standard_normal(size),
        "null": np.concatenate([np.zeros(size // 4), rng.exponential(1.0, size - size // 4)]),
    }[spectrum]
    hessian = (rotation * eigenvalues) @ rotation.T
    return (hessian + hessian.T) / 2, eigenvalues, rng.standard_normal(size)


def test_projection_distances_against_a_loop_with_ties_and_tensor_lists() -> None:
    weights = np.array([0.5, -2.0, 0.5, 1.0, -0.5, 0.0, 3.0])
    order = magnitude_order(weights)
    assert order.tolist() == [6, 1, 3, 0, 2, 4, 5]  # ties by index
    expected = [np.linalg.norm(np.delete(weights, order[:k])) for k in range(len(weights) + 1)]
    np.testing.assert_allclose(projection_distances(weights), expected, atol=1e-15)
    as_tensors = [torch.tensor(weights[:3]), torch.tensor(weights[3:]).reshape(2, 2)]
    np.testing.assert_allclose(projection_distances(as_tensors), expected, atol=1e-15)
    rng = np.random.default_rng(0)
    big = rng.standard_normal(300)
    order = magnitude_order(big)
    loop = [math.sqrt(sum(big[i] ** 2 for i in order[k:])) for k in range(301)]
    np.testing.assert_allclose(projection_distances(big), loop, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("spectrum", ["exp2", "powerlaw", "indefinite", "null"])
@pytest.mark.parametrize("negative", ["abs", "flat"])
def test_root_solves_its_equation_and_the_bounds_hold(spectrum: str, negative: str) -> None:
    _, eigenvalues, weights = random_quadratic(300, 1, spectrum)
    for eps in (0.01, 0.3, 3.0):
        prediction = predict_limit(eigenvalues, weights, eps, negative=negative)
        curvature = np.abs(eigenvalues) if negative == "abs" else np.maximum(eigenvalues, 0)
        distance = _distance_at(projection_distances(weights), prediction.k)
        ratio = np.mean(curvature * distance**2 / (curvature * distance**2 + 2 * eps))
        assert abs(prediction.rho - ratio) <= 1e-9
        assert prediction.lower <= prediction.rho <= prediction.upper
        assert prediction.rho <= prediction.sharpness_bound + 1e-12


def test_flatter_spectra_and_smaller_weights_allow_sparser_networks() -> None:
    _, eigenvalues, weights = random_quadratic(300, 2)
    base = predict_limit(eigenvalues, weights, 0.3).rho
    assert predict_limit(eigenvalues / 10, weights, 0.3).rho < base
    assert predict_limit(eigenvalues, weights / 3, 0.3).rho < base
    assert predict_limit(eigenvalues, weights, 3.0).rho < base
    assert predict_limit(eigenvalues, weights, 0.3, zero_row_share=0.2).rho < base


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_slq_prediction_within_three_standard_errors_of_the_exact_one(seed: int) -> None:
    """A positive spectrum without weight near 2 eps / R^2 and 80 steps for D = 400: Lanczos
    has converged, and the probe standard error is the whole error. (Not so for |H| of a
    network: see the spread tests below.)"""
    hessian, eigenvalues, weights = random_quadratic(400, 10 + seed, "powerlaw")
    exact = predict_limit(eigenvalues, weights, 1.0)
    estimate = predict_limit(
        slq(MatrixOperator(hessian), 80, 16, seed=seed, progress=False), weights, 1.0
    )
    assert estimate.rho_stderr > 0 and exact.rho_stderr is None
    assert abs(estimate.rho - exact.rho) <= 3 * estimate.rho_stderr


def test_the_spread_is_the_range_of_predictions_from_shorter_runs_and_single_probes() -> None:
    """low / high against separate runs of m steps (not truncations), for every m from half the
    steps to all: each probe alone (its own Lanczos run) and the probes together."""
    hessian, _, weights = random_quadratic(150, 5, "indefinite")
    operator, eps = MatrixOperator(hessian), 0.05
    full = slq(operator, 24, 3, seed=1, progress=False)
    spread = prediction_spread(full, weights, eps)
    assert (spread.num_steps, spread.from_steps, spread.num_probes) == (24, 12, 3)
    assert spread.rho == predict_limit(full, weights, eps).rho
    together, alone = [], []
    for m in range(12, 25):
        together.append(predict_limit(slq(operator, m, 3, seed=1, progress=False), weights, eps))
        for probe in rademacher_probes(150, 3, seed=1):
            run = lanczos(operator, m, start=probe, progress=False)
            single = SLQResult.from_tridiagonals([run.tridiagonal], 150, 1)
            alone.append(predict_limit(single, weights, eps).rho)
    rhos = [p.rho for p in together] + alone
    assert spread.low == pytest.approx(min(rhos), abs=1e-9)
    assert spread.high == pytest.approx(max(rhos), abs=1e-9)
    np.testing.assert_allclose(spread.mean, [p.rho for p in together], atol=1e-9)
    np.testing.assert_allclose(np.ravel(spread.per_probe, order="F"), alone, atol=1e-9)
    assert max(alone) - min(alone) > 0.01, "the probes disagree here: the test sees them"


def test_the_spread_holds_the_exact_prediction_when_the_last_truncation_is_exact() -> None:
    """On a diagonal matrix every sign probe has weight 1/D on each eigenvalue, so D steps give
    the exact spectrum: the spread from D/2 to D steps must hold the exact prediction. Earlier,
    the probes agree exactly (their standard error is 0) while the prediction is still off by
    points, and a spread over early truncations can miss the exact value: it is not a bound."""
    rng = np.random.default_rng(3)
    eigenvalues = rng.standard_normal(120) * rng.exponential(1.0, 120) ** 3  # many near 0
    weights, eps = rng.standard_normal(120), 0.01
    result = slq(MatrixOperator(np.diag(eigenvalues)), 120, 3, seed=0, progress=False)
    exact = predict_limit(eigenvalues, weights, eps).rho
    spread = prediction_spread(result, weights, eps)
    assert spread.from_steps == 60 and spread.rho == pytest.approx(exact, abs=1e-10)
    assert spread.low - 1e-10 <= exact <= spread.high + 1e-10
    early = predict_limit(result.truncated(30), weights, eps)
    assert early.rho_stderr == pytest.approx(0, abs=1e-12) and early.rho - exact > 0.01
    assert not prediction_spread(result.truncated(30), weights, eps).contains(exact)


def test_the_spread_reads_as_prediction_range_steps_and_probes() -> None:
    spread = LanczosSpread(0.4012, 0.3104, 0.4431, 80, 3, 40, "abs", [], [], [])
    assert str(spread) == "0.40 (0.31-0.44 over 40-80 Lanczos steps x 3 probes)"
    assert spread.describe(compact=True) == "0.40 (0.31-0.44, 40-80 steps x 3 probes)"
    small = dataclasses.replace(spread, rho=0.0036, low=0.0025, high=0.041, num_probes=1)
    assert str(small) == "0.0036 (0.0025-0.0410 over 40-80 Lanczos steps x 1 probe)"
    narrow = dataclasses.replace(spread, rho=0.44823, low=0.44711, high=0.44934, from_steps=80)
    assert narrow.describe(compact=True) == "0.448 (0.447-0.449, 80 steps x 3 probes)"
    assert LanczosSpread.from_dict(json.loads(json.dumps(spread.to_dict()))) == spread


def test_the_spread_needs_the_tridiagonals_and_survives_storage() -> None:
    hessian, _, weights = random_quadratic(60, 2, "indefinite")
    result = slq(MatrixOperator(hessian), 12, 2, seed=0, progress=False)
    stored = SLQResult.from_dict(json.loads(json.dumps(result.to_dict())))
    assert prediction_spread(stored, weights, 0.1) == prediction_spread(result, weights, 0.1)
    bare = SLQResult(result.nodes, result.weights, 60, 0)
    with pytest.raises(ValueError, match="tridiagonal"):
        prediction_spread(bare, weights, 0.1)
    with pytest.raises(ValueError, match=r"from_steps must be in 1\.\.12"):
        prediction_spread(result, weights, 0.1, from_steps=13)
    with pytest.raises(TypeError, match="SLQ result"):
        prediction_spread(np.ones(60), weights, 0.1)


@pytest.mark.parametrize("spectrum", ["exp2", "null", "indefinite"])
def test_quadratic_limit_against_brute_force(spectrum: str) -> None:
    for size, seed in ((12, 0), (40, 1), (60, 2)):
        hessian, _, weights = random_quadratic(size, seed, spectrum)
        order = magnitude_order(weights)
        for eps in (0.05, 0.5, 5.0):
            brute = next(
                k for k in range(size + 1) if support_minimum(hessian, weights, order[:k]) <= eps
            )
            assert quadratic_limit(hessian, weights, eps) == brute


def test_support_minimum_against_a_direct_least_squares() -> None:
    hessian, _, weights = random_quadratic(20, 3)
    support = magnitude_order(weights)[:8]
    rest = np.setdiff1d(np.arange(20), support)

    def loss(free: np.ndarray) -> float:
        d = np.zeros(20)
        d[support], d[rest] = free, -weights[rest]
        return 0.5 * d @ hessian @ d

    block = hessian[np.ix_(support, support)]
    best = np.linalg.solve(block, -hessian[np.ix_(support, rest)] @ -weights[rest])
    assert support_minimum(hessian, weights, support) == pytest.approx(loss(best), rel=1e-10)
    assert loss(best) <= loss(best + 1e-3)


def test_prediction_error_on_random_eigenbases_at_scale() -> None:
    """Measured first (D = 2,000, two spectra, two eps): errors of -6.3 to +1.0 ratio points."""
    errors = []
    for spectrum in ("exp2", "powerlaw"):
        hessian, eigenvalues, weights = random_quadratic(2000, 5, spectrum)
        for eps in (0.1, 1.0):
            exact = quadratic_limit(hessian, weights, eps) / 2000
            errors.append(predict_limit(eigenvalues, weights, eps).rho - exact)
    print("prediction - exact limit, ratio points:", np.round(100 * np.array(errors), 1))
    assert max(abs(e) for e in errors) <= 0.08


def test_loss_tolerance_is_the_std_of_minibatch_losses() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3))
    inputs, targets = torch.randn(512, 4), torch.randint(0, 3, (512,))
    eps = loss_tolerance(model, nn.CrossEntropyLoss(), (inputs, targets), batch_size=64, seed=1)
    order = torch.randperm(512, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        losses = [
            float(nn.functional.cross_entropy(model(inputs[b]), targets[b]))
            for b in order.split(64)
        ]
    assert eps == pytest.approx(np.std(losses, ddof=1))


def test_zero_row_share_finds_dead_units() -> None:
    """A hidden unit whose incoming weights and bias make it dead has zero Hessian rows."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 10), nn.ReLU(), nn.Linear(10, 3)).double()
    with torch.no_grad():
        model[0].weight[:4] = 0.0
        model[0].bias[:4] = -1.0  # units 0..3 never fire
    data = (torch.randn(200, 6, dtype=torch.float64), torch.randint(0, 3, (200,)))
    weights = prunable_parameters(model)
    operator = HessianOperator(model, nn.CrossEntropyLoss(), data, weights)
    matrix = dense_hessian(model, nn.CrossEntropyLoss(), data, weights)
    exact_share = float((matrix.abs().sum(dim=1) <= 1e-10).double().mean())
    result = zero_row_share(operator, weights, num_rows=90, tol=1e-10, seed=0)
    assert exact_share == pytest.approx((4 * 6 + 4 * 3) / 90)
    assert result.share == pytest.approx(exact_share)  # all 90 rows sampled
    sampled = zero_row_share(operator, weights, num_rows=40, seed=1)
    assert sampled.low <= exact_share <= sampled.high


def test_meaningless_inputs_are_refused() -> None:
    _, eigenvalues, weights = random_quadratic(50, 0)
    with pytest.raises(ValueError, match="eps must be positive"):
        predict_limit(eigenvalues, weights, 0.0)
    with pytest.raises(ValueError, match="49 eigenvalues for D = 50"):
        predict_limit(eigenvalues[:49], weights, 1.0)
    with pytest.raises(ValueError, match="no prunable"):
        predict_limit(eigenvalues, prunable_parameters(nn.Sequential(nn.ReLU())), 1.0)
    with pytest.raises(ValueError, match="negative must be"):
        predict_limit(eigenvalues, weights, 1.0, negative="clip")
    with pytest.raises(ValueError, match="must match"):
        quadratic_limit(np.eye(3), weights, 1.0)


def test_critical_distances_invert_the_threshold_equation() -> None:
    rng = np.random.default_rng(0)
    eigenvalues, weights = rng.exponential(1.0, 400), rng.normal(size=400)
    prediction = predict_limit(eigenvalues, weights, eps=0.5)
    allowed = critical_distances(eigenvalues, 400, 0.5, np.array([prediction.rho, 0.999, 1.0]))
    assert allowed[0] == pytest.approx(prediction.R, rel=1e-8)
    assert allowed[1] > allowed[0] and allowed[2] == np.inf
