"""Cones and statistical dimension: closed forms against Monte Carlo, ALMT's tables, identities."""

import math

import numpy as np
import pytest

from prunelimit import geometry as G

SAMPLES = 3000
Z_LIMIT = 4.0


def assert_within(estimate: G.Estimate, exact: float) -> None:
    assert abs(estimate.z_score(exact)) < Z_LIMIT, f"Monte Carlo {estimate} vs closed form {exact}"


@pytest.mark.parametrize("d", [2, 7, 60, 500])
def test_orthant(d: int) -> None:
    assert_within(G.statdim_mc(G.project_orthant, d, SAMPLES, seed=d), G.statdim_orthant(d))


@pytest.mark.parametrize(("d", "k"), [(2, 1), (30, 7), (500, 120)])
def test_subspace(d: int, k: int) -> None:
    basis = np.random.default_rng(d).standard_normal((d, k))
    estimate = G.statdim_mc(lambda x: G.project_subspace(x, basis), d, SAMPLES, seed=1)
    assert_within(estimate, G.statdim_subspace(k))


@pytest.mark.parametrize("d", [2, 3, 40, 500])
def test_second_order(d: int) -> None:
    assert_within(
        G.statdim_mc(G.project_second_order, d, SAMPLES, seed=d), G.statdim_second_order(d)
    )


@pytest.mark.parametrize("d", [2, 3, 10, 100, 500])
@pytest.mark.parametrize("alpha", [0.2, math.pi / 4, 1.3])
def test_circular_closed_form_against_monte_carlo(d: int, alpha: float) -> None:
    estimate = G.statdim_mc(lambda x: G.project_circular(x, alpha), d, SAMPLES, seed=d)
    assert_within(estimate, G.statdim_circular(d, alpha))


@pytest.mark.parametrize("d", [2, 5, 100, 500])
@pytest.mark.parametrize("alpha", [0.1, 0.7, 1.5])
def test_circular_cone_and_its_polar_add_up_to_d(d: int, alpha: float) -> None:
    assert G.statdim_circular(d, alpha) + G.statdim_circular(
        d, math.pi / 2 - alpha
    ) == pytest.approx(d, rel=1e-10)


def test_circular_pi_over_4_is_the_second_order_cone_and_approaches_d_sin2() -> None:
    assert G.statdim_circular(37, math.pi / 4) == pytest.approx(37 / 2, rel=1e-12)
    d, alpha = 20_000, 0.6
    assert G.statdim_circular(d, alpha) / d == pytest.approx(math.sin(alpha) ** 2, abs=1e-3)


@pytest.mark.parametrize("n", [1, 3, 10, 31])
def test_psd(n: int) -> None:
    d = n * (n + 1) // 2
    assert_within(G.statdim_mc(G.project_psd, d, SAMPLES, seed=n), G.statdim_psd(n))


def test_psd_projection_against_eigenvalue_clipping() -> None:
    rng = np.random.default_rng(2)
    a = rng.standard_normal((4, 4))
    sym = (a + a.T) / 2
    values, vectors = np.linalg.eigh(sym)
    expected = vectors @ np.diag(np.maximum(values, 0)) @ vectors.T
    rows, cols = np.triu_indices(4)
    scale = np.where(rows == cols, 1, math.sqrt(2))
    projected = G.project_psd((sym[rows, cols] * scale)[None])[0] / scale
    np.testing.assert_allclose(projected, expected[rows, cols], atol=1e-12)


@pytest.mark.parametrize(("rho", "table"), [(0.1, 0.328794), (0.5, 0.831300)])
def test_psi_l1_matches_almt_table(rho: float, table: float) -> None:
    assert G.psi_l1(rho) == pytest.approx(table, abs=1e-6)


def test_psi_l1_is_the_infimum_of_its_objective() -> None:
    from scipy import optimize

    for rho in (0.01, 0.2, 0.9):
        brute = optimize.minimize_scalar(
            lambda t, r=rho: G._psi_objective(t, r), bounds=(0, 10), method="bounded"
        )
        assert G.psi_l1(rho) == pytest.approx(brute.fun, abs=1e-9)


@pytest.mark.parametrize(("d", "s"), [(50, 5), (100, 10), (200, 100), (500, 50)])
def test_l1_descent_cone_between_almt_bounds(d: int, s: int) -> None:
    estimate = G.statdim_l1_descent_mc(d, s, 2000, seed=s)
    psi = G.psi_l1(s / d)
    assert d * (psi - 2 / math.sqrt(s * d)) - Z_LIMIT * estimate.stderr <= estimate.mean
    assert estimate.mean <= d * psi + Z_LIMIT * estimate.stderr


def test_l1_descent_distance_against_brute_force_over_tau() -> None:
    g = np.random.default_rng(4).standard_normal((20, 12))
    taus = np.linspace(0, 6, 60001)
    for row in g:
        objective = ((row[:3, None] - taus) ** 2).sum(0) + (
            np.maximum(np.abs(row[3:, None]) - taus, 0) ** 2
        ).sum(0)
        assert G._l1_descent_distances(row[None], 3)[0] == pytest.approx(objective.min(), abs=1e-6)


@pytest.mark.parametrize("project", [G.project_orthant, G.project_second_order, G.project_psd])
def test_width_sandwich(project: G.Projection) -> None:
    """w^2 <= delta <= w^2 + 1 (checked on the same samples, so the left side holds exactly)."""
    d = 45
    width, delta = (
        G.gaussian_width_mc(project, d, SAMPLES, seed=3),
        G.statdim_mc(project, d, SAMPLES, seed=3),
    )
    assert width.mean**2 <= delta.mean <= width.mean**2 + 1 + Z_LIMIT * delta.stderr


def test_ellipsoid_cone_of_a_ball_is_a_circular_cone() -> None:
    """A ball of radius r at distance R generates the circular cone of half-angle asin(r / R)."""
    d, R, r = 15, 3.0, 1.2
    rotation, _ = np.linalg.qr(np.random.default_rng(5).standard_normal((d, d)))
    center = rotation @ np.eye(d)[0] * R
    g = np.random.default_rng(6).standard_normal((400, d))
    expected = G.project_circular(g @ rotation, math.asin(r / R)) @ rotation.T
    np.testing.assert_allclose(
        G.project_ellipsoid_cone(g, center, np.full(d, r)), expected, atol=1e-6
    )


def test_ellipsoid_width_formula_against_monte_carlo_on_random_ellipsoids() -> None:
    """The formula is an approximation: measure its relative error against the Monte Carlo delta."""
    rng = np.random.default_rng(7)
    errors = []
    for d in (8, 20, 40):
        eigenvalues, eps, distance = rng.exponential(1.0, d), 0.05, 1.0
        direction = rng.standard_normal(d)
        center = distance * direction / np.linalg.norm(direction)
        axes = np.sqrt(2 * eps / eigenvalues)
        estimate = G.statdim_mc(
            lambda x, c=center, a=axes: G.project_ellipsoid_cone(x, c, a), d, 800, seed=d
        )
        formula = G.ellipsoid_width_sq(eigenvalues, eps, distance)
        errors.append((formula - estimate.mean) / estimate.mean)
    print("relative error of the width formula vs Monte Carlo delta:", np.round(errors, 3))
    assert all(abs(error) < 0.35 for error in errors)


def test_ellipsoid_width_sq_limits_and_curvature_rules() -> None:
    eigenvalues = np.array([2.0, 0.0, -1.0])
    assert G.ellipsoid_width_sq(eigenvalues, 0.1, 0.0) == pytest.approx(
        3.0
    )  # R = 0: every term is 1
    abs_rule = 2 * 0.1 / (2 * 4 + 0.2) + 1 + 2 * 0.1 / (1 * 4 + 0.2)
    assert G.ellipsoid_width_sq(eigenvalues, 0.1, 2.0, "abs") == pytest.approx(abs_rule)
    assert G.ellipsoid_width_sq(eigenvalues, 0.1, 2.0, "flat") == pytest.approx(2 * 0.1 / 8.2 + 2)
    widths = G.ellipsoid_width_sq(eigenvalues, 0.1, np.array([0.0, 1.0, 2.0]))
    assert widths.shape == (3,) and np.all(np.diff(widths) < 0)


def test_basis_pursuit_phase_transition_at_the_statistical_dimension() -> None:
    d, s = 100, 10
    result = G.phase_transition_l1(d, s, np.arange(20, 48, 2), trials=30, seed=0, progress=False)
    assert result.statdim == pytest.approx(100 * 0.328794, abs=1e-3)
    assert abs(result.crossing(0.5) - result.statdim) < 4, (result.crossing(0.5), result.statdim)
    assert result.success_rate[0] < 0.1 and result.success_rate[-1] > 0.9


@pytest.mark.parametrize(
    ("call", "argument"),
    [
        (lambda: G.statdim_orthant(-3), "d"),
        (lambda: G.statdim_subspace(-1), "dim"),
        (lambda: G.statdim_psd(0), "n"),
        (lambda: G.statdim_circular(10, 0.0), "alpha"),
        (lambda: G.statdim_circular(10, math.pi / 2), "alpha"),
        (lambda: G.project_circular(np.zeros((1, 3)), 2.0), "alpha"),
        (lambda: G.psi_l1(0.0), "rho"),
        (lambda: G.psi_l1(1.5), "rho"),
        (lambda: G.kinematic_a_eta(1.0), "eta"),
        (lambda: G.statdim_mc(G.project_orthant, -2, 10), "d"),
        (lambda: G.statdim_l1_descent_mc(10, 11, 10), "s"),
        (lambda: G.ellipsoid_width_sq(np.ones(3), -1.0, 1.0), "eps"),
    ],
)
def test_bad_input_names_the_argument(call, argument: str) -> None:
    with pytest.raises(ValueError, match=rf"^{argument} must"):
        call()


def test_kinematic_a_eta() -> None:
    assert G.kinematic_a_eta(0.05) == pytest.approx(math.sqrt(8 * math.log(80)))


def empirical_rate(meets, trials: int) -> tuple[float, float]:
    hits = np.array([meets() for _ in range(trials)], dtype=float)
    return hits.mean(), max(hits.std(ddof=1) / math.sqrt(trials), 1e-3)


@pytest.mark.parametrize("k", [8, 15, 22])
def test_random_subspace_meets_the_orthant_as_the_crofton_formula_says(k: int) -> None:
    rng, d = np.random.default_rng(k), 30
    rate, stderr = empirical_rate(lambda: G.meets_orthant(G.random_subspace(d, k, rng)), 600)
    assert abs(rate - G.probability_meets_orthant(d, k)) < Z_LIMIT * stderr


def test_orthant_meeting_probability_small_cases_and_duality() -> None:
    assert G.probability_meets_orthant(1, 1) == pytest.approx(1.0)
    assert G.probability_meets_orthant(2, 1) == pytest.approx(0.5)  # a random line, a quadrant
    assert G.probability_meets_orthant(3, 1) == pytest.approx(0.25)  # two opposite octants of 8
    assert G.probability_meets_orthant(9, 0) == 0.0
    for k in range(1, 9):  # Gordon's alternative: L meets the orthant iff its complement misses it
        assert G.probability_meets_orthant(9, k) + G.probability_meets_orthant(
            9, 9 - k
        ) == pytest.approx(1.0)


@pytest.mark.parametrize(("k", "alpha"), [(10, 0.5), (22, 0.5), (5, 1.2)])
def test_random_subspace_meets_a_circular_cone_as_the_beta_law_says(k: int, alpha: float) -> None:
    rng, d = np.random.default_rng(k), 30
    rate, stderr = empirical_rate(
        lambda: G.meets_circular(G.random_subspace(d, k, rng), alpha), 2000
    )
    assert abs(rate - G.probability_meets_circular(d, k, alpha)) < Z_LIMIT * stderr


def test_subspace_meets_the_cone_of_a_ball_like_the_circular_cone() -> None:
    rng, d, R, r = np.random.default_rng(9), 12, 2.0, 1.5
    center = np.zeros(d)
    center[0] = R
    for k in (1, 3, 6, 9):
        for _ in range(50):
            basis = G.random_subspace(d, k, rng)
            assert G.meets_ellipsoid_cone(basis, center, np.full(d, r)) == G.meets_circular(
                basis, math.asin(r / R)
            )


def test_random_subspace_is_orthonormal_and_unbiased() -> None:
    rng = np.random.default_rng(0)
    basis = G.random_subspace(20, 7, rng)
    np.testing.assert_allclose(basis.T @ basis, np.eye(7), atol=1e-12)
    mean_projection = np.mean(
        [G.random_subspace(6, 2, rng)[0] ** 2 for _ in range(4000)], axis=0
    ).sum()
    assert mean_projection == pytest.approx(2 / 6, abs=0.02)  # E |P_L e_1|^2 = k / d


def test_an_ellipsoid_around_the_origin_generates_the_whole_space() -> None:
    x = np.random.default_rng(1).standard_normal((5, 4))
    np.testing.assert_array_equal(G.project_ellipsoid_cone(x, np.full(4, 0.1), np.ones(4)), x)


def test_first_crossing_interpolates_and_refuses_curves_that_never_cross() -> None:
    assert G.first_crossing([0, 10, 20], [0.0, 0.2, 0.6], 0.5) == pytest.approx(17.5)
    with pytest.raises(ValueError, match="does not cross"):
        G.first_crossing([0, 1], [0.1, 0.2], 0.5)
