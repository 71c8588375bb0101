"""The certified-bounds chapter: the regularised-trace identity, the repeated problem, diagonal
operators with random-sign probes, the Lanczos convergence study, the closing bounds, and the
figures' type size."""

from collections.abc import Iterator

import matplotlib.pyplot as plt
import numpy as np
import pytest

from companion.certified_figures import closing_plot, lanczos_rules_plot
from companion.certified_methods import (
    SERIES,
    CertifiedMethodsConfig,
    DiagonalOperator,
    bounds_closing,
    lanczos_convergence,
    regularisation_scale,
    regularised_trace,
    regularised_trace_rows,
    repeat_problem,
    settled_after,
)
from companion.limit_studies import LimitFactorsConfig
from prunelimit.lanczos import slq
from prunelimit.limit import predict_limit, threshold_curve
from prunelimit.plotting import MIN_TEXT_PX, smallest_text_px


@pytest.fixture(autouse=True)
def close_figures() -> Iterator[None]:
    yield
    plt.close("all")


def network_like(size: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(Hessian eigenvalues, a PSD spectrum, weights, eps) shaped like a small trained net's:
    most eigenvalues near 0 of both signs, a few large ones."""
    rng = np.random.default_rng(seed)
    bulk = rng.normal(0, 1e-3, size - size // 10)
    top = rng.lognormal(-2, 1.5, size // 10)
    hessian = np.concatenate([bulk, top])
    psd = np.concatenate([np.abs(rng.normal(0, 1e-3, size - size // 10)), top])
    weights = rng.laplace(0, 0.1, size)
    return hessian, psd, weights, 0.05 * 0.5 * float(np.sum(np.abs(hessian) * weights**2))


def test_the_repeated_problem_has_the_same_prediction_and_threshold_curve():
    hessian, _, weights, eps = network_like(300, seed=0)
    repeats = 7
    values, tiled, scaled = repeat_problem(hessian, weights, eps, repeats)
    assert len(values) == len(tiled) == 7 * 300 and scaled == 7 * eps
    for rule in ("abs", "flat"):
        original = predict_limit(hessian, weights, eps, negative=rule).rho
        repeated = predict_limit(values, tiled, scaled, negative=rule).rho
        assert repeated == pytest.approx(original, rel=1e-9, abs=1e-12)
        ratios, curve = threshold_curve(hessian, weights, eps, negative=rule, points=101)
        ratios_r, curve_r = threshold_curve(values, tiled, scaled, negative=rule, points=101)
        np.testing.assert_allclose(ratios_r, ratios, atol=1e-12)
        np.testing.assert_allclose(curve_r, curve, atol=1e-12)
    # eps not scaled: a different problem, with a different limit
    assert predict_limit(values, tiled, eps).rho != pytest.approx(
        predict_limit(hessian, weights, eps).rho, abs=1e-3
    )


def test_the_regularised_trace_is_the_threshold_of_part_two():
    size = 60
    rng = np.random.default_rng(1)
    eigenvalues = np.concatenate([np.zeros(10), rng.lognormal(-3, 2, size - 10)])
    basis, _ = np.linalg.qr(rng.standard_normal((size, size)))
    matrix = (basis * eigenvalues) @ basis.T
    weights = rng.standard_normal(size)
    eps = 0.3
    ratios, curve = threshold_curve(eigenvalues, weights, eps, points=size + 1)
    for index in (1, 10, 25, 40, 59):
        scale = regularisation_scale(weights, eps, ratios[index])
        shifted = matrix + scale * np.eye(size)
        effective = np.trace(np.linalg.solve(shifted, matrix)) / size
        resolvent = 1 - scale * np.trace(np.linalg.inv(shifted)) / size
        assert effective == pytest.approx(resolvent, abs=1e-10)
        assert resolvent == pytest.approx(curve[index], abs=1e-10)
        assert regularised_trace(eigenvalues, scale) == pytest.approx(curve[index], abs=1e-12)


def test_at_the_predicted_limit_the_regularised_trace_is_the_ratio():
    hessian, _, weights, eps = network_like(400, seed=2)
    for rule in ("abs", "flat"):
        limit = predict_limit(hessian, weights, eps, negative=rule).rho
        (row,) = regularised_trace_rows(hessian, weights, eps, [limit], rule)
        assert row["rho_star"] == pytest.approx(limit, abs=1e-8)
        curvature = np.abs(hessian) if rule == "abs" else np.maximum(hessian, 0)
        assert row["share_above"] == np.mean(curvature > row["c"])
        assert row["top_over_c"] == pytest.approx(curvature.max() / row["c"])


def test_a_random_sign_probe_sees_every_eigenvalue_of_a_diagonal_matrix_with_weight_1_over_d():
    eigenvalues = np.random.default_rng(3).permutation(np.linspace(-1, 2, 40))
    result = slq(DiagonalOperator(eigenvalues), 40, 2, seed=5, progress=False)
    for nodes, weights in zip(result.nodes, result.weights, strict=True):
        np.testing.assert_allclose(np.sort(nodes), np.sort(eigenvalues), atol=1e-10)
        np.testing.assert_allclose(weights, 1 / 40, atol=1e-10)


def test_settled_after_is_the_first_step_from_which_the_error_stays_small():
    series = {"steps": [1, 2, 3, 4], "rho": [0.5, 0.2, 0.31, 0.3005], "exact": 0.3}
    assert settled_after(series, 0.011) == 3
    assert settled_after(series, 1e-3) == 4
    assert settled_after(series, 1e-5) is None
    assert settled_after(series, 1.0) == 1


@pytest.fixture(scope="module")
def convergence() -> dict:
    hessian, psd, weights, eps = network_like(300, seed=4)
    return lanczos_convergence(hessian, psd, weights, eps, num_steps=120, seed=0)


def test_lanczos_on_a_psd_spectrum_converges_to_the_exact_prediction(convergence):
    hessian, psd, weights, eps = network_like(300, seed=4)
    assert [s["label"] for s in convergence["series"]] == [label for label, _, _ in SERIES]
    by_operator = {(s["operator"], s["rule"]): s for s in convergence["series"]}
    assert by_operator["H", "abs"]["exact"] == predict_limit(hessian, weights, eps).rho
    assert by_operator["G", "flat"]["exact"] == predict_limit(psd, weights, eps).rho
    for key in (("G", "flat"), ("|H|", "flat")):
        assert abs(by_operator[key]["rho"][-1] - by_operator[key]["exact"]) < 1e-6


def test_lanczos_convergence_refuses_a_negative_gauss_newton_spectrum():
    hessian, psd, weights, eps = network_like(100, seed=5)
    with pytest.raises(ValueError, match="Gauss-Newton"):
        lanczos_convergence(hessian, psd - 1e-3, weights, eps, num_steps=10)


@pytest.fixture(scope="module")
def closing() -> dict:
    _, psd, weights, eps = network_like(200, seed=6)
    config = CertifiedMethodsConfig(
        factors=LimitFactorsConfig(),
        dimension=20_000,
        grid_points=1024,
        max_products=25,
    )
    return bounds_closing(psd, weights, eps, config)


def test_the_certified_bounds_contain_the_exact_prediction_at_every_step(closing):
    assert closing["dimension"] == closing["repeats"] * 200 >= 20_000
    assert closing["exact_repeated"] == pytest.approx(closing["exact"], rel=1e-9)
    trace = closing["certified"]["trace"]
    assert len(trace) == 25
    assert all(t["low"] <= closing["exact"] <= t["high"] for t in trace)
    first, last = trace[0], trace[-1]
    assert last["high"] - last["low"] < (first["high"] - first["low"]) / 4
    assert last["quadrature_high"] - last["quadrature_low"] < last["high"] - last["low"]


def test_the_figures_are_readable_at_the_column_width(convergence, closing):
    assert smallest_text_px(lanczos_rules_plot(convergence)) >= MIN_TEXT_PX
    assert smallest_text_px(closing_plot(closing)) >= MIN_TEXT_PX


def test_the_figures_leave_the_global_type_sizes_alone(closing):
    before = plt.rcParams["font.size"], plt.rcParams["legend.fontsize"]
    closing_plot(closing)
    assert (plt.rcParams["font.size"], plt.rcParams["legend.fontsize"]) == before
