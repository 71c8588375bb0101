"""The exact-spectra chapter's pieces on a tiny network, against truths computed another way:
Hessian and Gauss-Newton matrices from torch.func, quadratic-model limits by least squares,
the one-shot limit by masking by hand, and the retrained-limit search on a known loss."""

import dataclasses
import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call, hessian, jacrev

from companion import exact_spectra as es
from companion import exact_spectra_figures as figures
from prunelimit.curvature import GGNOperator, HessianOperator, dense_ggn, dense_hessian
from prunelimit.lanczos import MatrixOperator, slq
from prunelimit.limit import predict_limit
from prunelimit.models import count_parameters, kaiming_init, mlp, prunable_parameters
from prunelimit.plotting import MIN_TEXT_PX, smallest_text_px
from prunelimit.pruning import global_magnitude_masks, masked
from prunelimit.training import Recipe, evaluate

SPEC = es.NetworkSpec("digits", (6,), pool=2, num_train=300, num_test=100, epochs=10, lr=0.02)
ANALYSIS = es.AnalysisSpec(
    slq_settings=((20, 1), (10, 2)), slq_seeds=2, certified_tolerance=0.2, certified_seeds=1
)
RETRAINING = es.RetrainSpec(epochs=1, doublings=1, lr=0.02, resolution=0.05)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """As the experiment runs: tiny products gain nothing from a second thread."""
    with es.torch_threads(1):
        yield


@pytest.fixture(scope="module")
def result() -> dict:
    spectra = es.analyse_network(SPEC, ANALYSIS)
    ratios = {"abs": spectra["prediction"]["abs"]["rho"], "one_shot": 0.5}
    return spectra | {
        "retrained": es.retrain_network(SPEC, RETRAINING)["retrained"],
        "first_order": es.first_order(SPEC, ratios),
    }


@pytest.fixture(scope="module")
def network() -> tuple[nn.Module, tuple, tuple]:
    """The same network trained again (training is seeded: the same weights)."""
    train, test = es.network_data(SPEC)
    return es.train_network(SPEC, train), train, test


def _weights_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    chosen = {id(p) for p in prunable_parameters(model)}
    return {n: p.detach() for n, p in model.named_parameters() if id(p) in chosen}


def _functional(model: nn.Module, inputs: torch.Tensor):
    frozen = {n: p.detach() for n, p in model.named_parameters()}
    return lambda chosen: functional_call(model, frozen | chosen, (inputs,))


def _reference_hessian(model: nn.Module, data: tuple) -> np.ndarray:
    """torch.func.hessian of the mean loss with respect to the prunable weights only."""
    inputs, targets = data
    outputs = _functional(model, inputs)
    chosen = _weights_dict(model)
    blocks = hessian(lambda c: es.LOSS(outputs(c), targets))(chosen)
    names = list(chosen)
    rows = [
        torch.cat([blocks[a][b].reshape(chosen[a].numel(), chosen[b].numel()) for b in names], 1)
        for a in names
    ]
    return torch.cat(rows).numpy()


def _ggn_root(model: nn.Module, data: tuple) -> np.ndarray:
    """B [N C, D] with G = B^T B: rows S_n^T J_n / sqrt(N), S_n S_n^T = diag(p) - p p^T."""
    inputs, _ = data
    outputs = _functional(model, inputs)
    chosen = _weights_dict(model)
    jacobian = jacrev(outputs)(chosen)
    count = len(inputs)
    stacked = torch.cat([jacobian[n].reshape(count, 10, -1) for n in chosen], dim=2)
    with torch.no_grad():
        p = torch.softmax(outputs(chosen), dim=1)
    root = torch.diag_embed(p.sqrt()) - p[:, :, None] * p.sqrt()[:, None, :]
    rows = torch.einsum("nca,ncd->nad", root, stacked).reshape(-1, stacked.shape[2])
    return (rows / math.sqrt(count)).numpy()


# ----------------------------------------------------------------------------- configs
@pytest.mark.parametrize("profile", ["smoke", "cpu", "full"])
def test_dimension_is_the_models_prunable_count(profile: str) -> None:
    for spec in es.ExactSpectraConfig.for_profile(profile).networks:
        with torch.device("meta"):
            model = mlp(spec.side**2, spec.widths, 10)
        assert spec.dimension == count_parameters(model)["prunable"]


def test_the_cpu_networks_span_what_the_chapter_claims() -> None:
    networks = es.ExactSpectraConfig.for_profile("cpu").networks
    sizes = [spec.dimension for spec in networks]
    assert len(networks) >= 3 and len({spec.dataset for spec in networks}) >= 2
    assert len({spec.widths for spec in networks}) == len(networks)
    assert len({len(spec.widths) for spec in networks}) >= 2  # different depths
    assert min(sizes) <= 3500 and max(sizes) >= 6000
    assert max(sizes) <= 20_000  # what a dense float64 Hessian allows here


def test_retraining_budgets_double() -> None:
    assert es.RetrainSpec(epochs=40, doublings=2).budgets == (40, 80, 160)
    assert es.RetrainSpec(epochs=3, doublings=0).budgets == (3,)


def test_num_examples_is_the_training_set(network) -> None:
    _, train, _ = network
    assert len(train[1]) == SPEC.num_examples == 300
    assert train[0].dtype == torch.float64 and abs(float(train[0].mean())) < 1e-9


def test_description_names_every_network() -> None:
    config = es.ExactSpectraConfig.for_profile("cpu")
    text = es.describe_networks(config, "cpu")
    for spec in config.networks:
        assert f"D = {spec.dimension:,}" in text and f"N = {spec.num_examples:,}" in text


# ----------------------------------------------------------------------------- exact spectra
def test_stored_weights_are_the_trained_networks(result, network) -> None:
    model, _, _ = network
    weights = torch.cat([w.detach().reshape(-1) for w in prunable_parameters(model)])
    np.testing.assert_array_equal(result["weights"], weights.numpy())
    assert result["dimension"] == SPEC.dimension and result["num_examples"] == 300


def test_hessian_eigenvalues_match_torch_func(result, network) -> None:
    model, train, _ = network
    reference = np.linalg.eigvalsh(_reference_hessian(model, train))
    stored = np.asarray(result["hessian_eigenvalues"])
    assert np.abs(stored - reference).max() <= 1e-10 * np.abs(reference).max()
    assert reference.min() < 0  # a trained network's Hessian is indefinite: |H| matters


def test_ggn_eigenvalues_match_jacobians(result, network) -> None:
    model, train, _ = network
    root = _ggn_root(model, train)
    reference = np.linalg.eigvalsh(root.T @ root)
    stored = np.asarray(result["ggn_eigenvalues"])
    assert np.abs(stored - reference).max() <= 1e-10 * reference.max()
    assert result["rank_bound"] == 300 * 9


def test_dense_matrices_equal_the_library_ones(network) -> None:
    model, train, _ = network
    weights = prunable_parameters(model)
    for kind, library in ((HessianOperator, dense_hessian), (GGNOperator, dense_ggn)):
        ours = es.dense_matrix(kind, model, train, weights, block_size=64)
        theirs = library(model, es.LOSS, train, weights, chunk_size=300).numpy()
        np.testing.assert_allclose(ours, (theirs + theirs.T) / 2, rtol=0, atol=1e-12)


def test_predictions_solve_the_threshold_equation(result) -> None:
    weights, eps = np.asarray(result["weights"]), result["eps"]
    curvatures = {
        "abs": np.abs(result["hessian_eigenvalues"]),
        "flat": np.maximum(result["hessian_eigenvalues"], 0),
        "ggn": np.maximum(result["ggn_eigenvalues"], 0),
    }
    squared = np.sort(weights**2)
    for rule, curvature in curvatures.items():
        prediction = result["prediction"][rule]
        k = prediction["rho"] * len(weights)
        low = math.floor(k)  # R^2 is interpolated linearly between integer k
        tail = np.sum(squared[: len(weights) - low]), np.sum(squared[: len(weights) - low - 1])
        radius2 = (1 - (k - low)) * tail[0] + (k - low) * tail[1]
        assert prediction["R"] ** 2 == pytest.approx(radius2, rel=1e-9)
        ratio = np.mean(curvature * radius2 / (curvature * radius2 + 2 * eps))
        assert prediction["rho"] == pytest.approx(ratio, abs=1e-8)
    stored = result["prediction"]["abs"]
    again = predict_limit(np.asarray(result["hessian_eigenvalues"]), weights, eps, "abs")
    assert again.to_dict() == stored


def _support_minimum_by_least_squares(root: np.ndarray, w_star: np.ndarray, k: int) -> float:
    """min over w on the k largest |w*| of 1/2 |B (w - w*)|^2, by least squares."""
    order = np.argsort(-np.abs(w_star), kind="stable")
    kept, dropped = order[:k], order[k:]
    residual = root[:, dropped] @ (-w_star[dropped])
    if k == 0:
        return 0.5 * float(residual @ residual)
    step, *_ = np.linalg.lstsq(root[:, kept], -residual, rcond=None)
    remaining = root[:, kept] @ step + residual
    return 0.5 * float(remaining @ remaining)


def test_quadratic_limits_are_the_smallest_feasible_supports(result, network) -> None:
    model, train, _ = network
    w_star, eps, size = np.asarray(result["weights"]), result["eps"], result["dimension"]
    values, vectors = np.linalg.eigh(_reference_hessian(model, train))
    roots = {
        "abs": np.sqrt(np.abs(values))[:, None] * vectors.T,  # |H| = B^T B
        "ggn": _ggn_root(model, train),
    }
    for rule, root in roots.items():
        k = round(result["quadratic"][rule] * size)
        assert 0 < k < size
        assert _support_minimum_by_least_squares(root, w_star, k) <= eps * (1 + 1e-6)
        assert _support_minimum_by_least_squares(root, w_star, k - 1) > eps * (1 - 1e-6)


def test_one_shot_limit_is_where_the_loss_leaves_the_tolerance(result, network) -> None:
    model, train, _ = network
    weights, size = prunable_parameters(model), result["dimension"]
    dense_loss = evaluate(model, *train)[0]
    assert dense_loss == pytest.approx(result["dense"]["loss"], rel=1e-12)
    k = round(result["one_shot"]["limit"] * size)

    def loss_at(kept: int) -> float:
        with masked(weights, global_magnitude_masks(weights, kept / size)):
            return evaluate(model, *train)[0]

    assert loss_at(k) <= dense_loss + result["eps"] < loss_at(k - 1)


def test_retrained_limits_pass_and_the_count_below_fails(result) -> None:
    threshold = result["dense"]["loss"] + result["eps"]
    for entry, budget in zip(result["retrained"], (1, 2), strict=True):
        assert entry["epochs"] == budget
        trials = {t["k"]: t for t in entry["trials"]}
        assert trials[entry["k"]]["loss"] <= threshold
        below = [t for t in entry["trials"] if t["k"] < entry["k"]]
        assert below and not below[-1]["passed"]
        assert entry["k"] - below[-1]["k"] <= math.ceil(0.05 * result["dimension"])


def test_retrained_search_finds_the_smallest_passing_count(monkeypatch) -> None:
    model = kaiming_init(mlp(10, (10,), 10))  # D = 200
    calls = []

    def known_loss(model, data, k, recipe) -> float:
        calls.append(k)
        return 1.0 / k  # passes (<= 1/37) exactly for k >= 37

    monkeypatch.setattr(es, "_retrained_loss", known_loss)
    recipe = Recipe(1, 0.01)
    for start in (200, 120, 20, 1):  # from above, and from below (it must double up)
        found = es.retrained_limit(model, None, 1.0 / 37, start, recipe)
        assert found["k"] == 37 and found["limit"] == 37 / 200
        assert all(t["passed"] == (t["k"] >= 37) for t in found["trials"])
    coarse = es.retrained_limit(model, None, 1.0 / 37, 200, recipe, resolution=10)
    assert 37 <= coarse["k"] <= 47


def test_first_order_terms_by_hand(result, network) -> None:
    model, train, _ = network
    chosen = _weights_dict(model)
    outputs = _functional(model, train[0])
    gradient = torch.func.grad(lambda c: es.LOSS(outputs(c), train[1]))(chosen)
    g = torch.cat([gradient[n].reshape(-1) for n in chosen]).numpy()
    w_star = np.asarray(result["weights"])
    stored = result["first_order"]
    assert stored["gradient_norm"] == pytest.approx(np.linalg.norm(g), rel=1e-9)
    terms = stored["terms"]["one_shot"]
    k = terms["k"]
    assert k == round(0.5 * len(w_star))
    pruned = w_star.copy()
    pruned[np.argsort(np.abs(w_star), kind="stable")[: len(w_star) - k]] = 0.0
    assert terms["first_order"] == pytest.approx(g @ (pruned - w_star), rel=1e-9, abs=1e-15)
    with torch.no_grad():
        state = dict(
            zip(
                chosen,
                torch.split(torch.from_numpy(pruned), [v.numel() for v in chosen.values()]),
                strict=True,
            )
        )
        state = {n: t.reshape(chosen[n].shape) for n, t in state.items()}
        loss = float(es.LOSS(outputs(state), train[1]))
    assert terms["increase"] == pytest.approx(loss - result["dense"]["loss"], abs=1e-10)


# ----------------------------------------------------------------------------- estimators
def test_slq_on_the_dense_matrix_equals_slq_on_the_operator(result, network) -> None:
    model, train, _ = network
    weights = prunable_parameters(model)
    operator = HessianOperator(model, es.LOSS, train, weights, dtype=torch.float64)
    matrix = es.dense_matrix(HessianOperator, model, train, weights)
    from_operator = slq(operator, 20, 1, seed=0, progress=False)
    from_matrix = slq(MatrixOperator(matrix), 20, 1, seed=0, progress=False)
    np.testing.assert_allclose(from_matrix.nodes[0], from_operator.nodes[0], atol=1e-9)
    w_star, eps = np.asarray(result["weights"]), result["eps"]
    rho = predict_limit(from_operator, w_star, eps, "abs").rho
    stored = result["slq"][0]["runs"][0]
    assert (stored["steps"], stored["probes"], stored["seed"]) == (20, 1, 0)
    assert stored["rho"] == pytest.approx(rho, abs=1e-7)
    assert stored["error"] == pytest.approx(rho - result["prediction"]["abs"]["rho"], abs=1e-7)


def test_certified_rows_describe_their_interval(result) -> None:
    exact = result["prediction"]["ggn"]["rho"]
    for run in result["certified"]:
        assert run["low"] <= run["rho"] <= run["high"]
        assert run["width"] == pytest.approx(run["high"] - run["low"])
        assert run["midpoint_error"] == pytest.approx((run["low"] + run["high"]) / 2 - exact)
        assert run["inside"] == (run["low"] <= exact <= run["high"])


# ----------------------------------------------------------------------------- summaries
def _handmade() -> dict:
    """A result whose summaries are known by hand."""
    weights = np.array([3.0, -2.0, 1.0, 0.5])
    return {
        "label": "hand, made",
        "eps": 0.5,
        "weights": weights.tolist(),
        "hessian_eigenvalues": [-4.0, -0.1, 0.0, 0.5],
        "ggn_eigenvalues": [-1e-18, 0.2, 0.3, 5.0],
        "prediction": {"abs": {"rho": 0.5, "R": 2.0}, "ggn": {"rho": 0.25, "R": 1.0}},
        "slq": [
            {
                "steps": 8,
                "probes": 1,
                "runs": [{"error": 0.02, "stderr": None}, {"error": -0.04, "stderr": None}],
            },
        ],
        "certified": [
            {
                "low": 0.2,
                "high": 0.3,
                "width": 0.1,
                "midpoint_error": 0.0,
                "inside": True,
                "num_products": 100,
                "converged": True,
            },
            {
                "low": 0.26,
                "high": 0.3,
                "width": 0.04,
                "midpoint_error": 0.03,
                "inside": False,
                "num_products": 300,
                "converged": False,
            },
        ],
    }


def test_curvature_scale_by_hand() -> None:
    result = _handmade()
    absolute = es.curvature_scale(result, "abs")  # c = 2 * 0.5 / 4 = 0.25
    assert absolute == pytest.approx({"shift": 0.25, "share_within": 0.5, "top_over_shift": 16})
    ggn = es.curvature_scale(result, "ggn")  # c = 1: -1e-18, 0.2, 0.3 lie within
    assert ggn == pytest.approx({"shift": 1.0, "share_within": 0.75, "top_over_shift": 5.0})


def test_estimator_summaries_by_hand() -> None:
    result = _handmade()
    (summary,) = es.slq_summary(result)
    assert summary["mean_error"] == pytest.approx(-0.01)
    assert summary["max_abs_error"] == pytest.approx(0.04)
    assert math.isnan(summary["mean_stderr"]) and summary["spreads"] == 0
    certified = es.certified_summary(result)
    assert (certified["inside"], certified["runs"], certified["converged"]) == (1, 2, 1)
    assert certified["mean_width"] == pytest.approx(0.07)
    assert certified["mean_products"] == 200
    assert certified["max_abs_midpoint_error"] == pytest.approx(0.03)


def test_tables_figures_and_text(result) -> None:
    other = dataclasses.replace(SPEC).label  # same label: a second row
    results = [result, result | {"label": other + " (again)"}]
    for made in (figures.limits_table(results), figures.estimates_table(results)):
        assert len(made.rows) == 2
    for draw in (figures.spectrum_plot, figures.error_plot):
        assert smallest_text_px(draw(results)) >= MIN_TEXT_PX
    text = es.findings(results, ANALYSIS.certified_tolerance)
    assert "nan" not in text.lower() and result["label"].split(",")[0] in text
