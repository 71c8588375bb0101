"""Every figure function of Parts I and II draws, on small inputs, text readable in the book:
at least MIN_TEXT_PX pixels high at the text column's width."""

import inspect
from collections.abc import Callable

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.figure import Figure

from companion import cone_figures, limit_figures
from prunelimit.limit import predict_limit, threshold_curve
from prunelimit.plotting import MIN_TEXT_PX, smallest_text_px


def _statdim_rows() -> list[dict]:
    return [
        {
            "cone": cone,
            "d": d,
            "exact": d / 2,
            "delta": {"mean": d / 2 + 0.01, "stderr": 0.02},
            "z": 0.5,
        }
        for cone in ("orthant", "circular")
        for d in (10, 100)
    ]


def _meeting() -> dict:
    k = list(range(1, 11))
    cone = {"statdim": 5.0, "exact": np.linspace(0, 1, 10), "empirical": np.linspace(0, 1, 10)}
    return {"k": k, "window_half_width": 2.0, "circular": cone, "orthant": cone}


def _ellipsoid() -> dict:
    return {
        "R": [0.5, 1.0, 2.0],
        "delta": [{"mean": m, "stderr": 0.1} for m in (8.0, 6.0, 3.0)],
        "formula": [7.5, 5.0, 2.5],
        "k": list(range(1, 11)),
        "meeting": [
            {"R": r, "rate": np.linspace(0, 1, 10), "formula_statdim": f, "mc_statdim": m}
            for r, f, m in ((0.5, 7.5, 8.0), (2.0, 2.5, 3.0))
        ],
    }


def _quadratic_rows() -> list[dict]:
    return [
        {"basis": basis, "D": size, "exact": 0.3, "rho": 0.35, "lower": 0.2, "upper": 0.5}
        for basis in ("random", "aligned")
        for size in (100, 1000)
    ]


def _threshold_args() -> tuple:
    rng = np.random.default_rng(0)
    eigenvalues, weights = rng.exponential(1.0, 50), rng.standard_normal(50)
    ratio, rho_star = threshold_curve(eigenvalues, weights, 0.1)
    return ratio, rho_star, predict_limit(eigenvalues, weights, 0.1).to_dict()


FIGURES: dict[str, Callable[[], Figure]] = {
    "cone_and_polar_2d": cone_figures.cone_and_polar_2d,
    "conic_hull_2d": cone_figures.conic_hull_2d,
    "circular_cones_3d": cone_figures.circular_cones_3d,
    "ellipse_projection_vs_distance": cone_figures.ellipse_projection_vs_distance,
    "statdim_comparison": lambda: cone_figures.statdim_comparison(_statdim_rows()),
    "l1_descent_plot": lambda: cone_figures.l1_descent_plot(
        {"rho": [0.1, 0.5], "lower": [0.3, 0.8], "mean": [0.33, 0.83], "stderr": [0.01, 0.01]}
    ),
    "meeting_plot": lambda: cone_figures.meeting_plot(_meeting()),
    "phase_transition_plot": lambda: cone_figures.phase_transition_plot(
        [{"s": 2, "m": [5, 10, 15], "success": [0.0, 0.5, 1.0], "statdim": 10.0}], 30
    ),
    "ellipsoid_plots": lambda: cone_figures.ellipsoid_plots(_ellipsoid(), 10),
    "threshold_plot": lambda: limit_figures.threshold_plot(*_threshold_args()),
    "factors_plot": lambda: limit_figures.factors_plot(
        {
            "vs_eps": [0.5, 0.4, 0.3],
            "vs_weight_scale": [0.2, 0.3, 0.4],
            "vs_spectrum_scale": [0.2, 0.3, 0.4],
        },
        (0.1, 1.0, 10.0),
        (0.5, 1.0, 2.0),
    ),
    "prediction_scatter": lambda: limit_figures.prediction_scatter(_quadratic_rows()),
    "scaling_plot": lambda: limit_figures.scaling_plot(_quadratic_rows()[:2]),
}


def _figure_functions() -> set[str]:
    return {
        name
        for module in (cone_figures, limit_figures)
        for name, function in inspect.getmembers(module, inspect.isfunction)
        if function.__module__ == module.__name__ and not name.startswith("_")
    }


def test_every_figure_function_is_checked() -> None:
    assert _figure_functions() == set(FIGURES)


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_figure_text_is_readable_at_column_width(name: str) -> None:
    figure = FIGURES[name]()
    try:
        assert isinstance(figure, Figure)
        assert smallest_text_px(figure) >= MIN_TEXT_PX, (
            f"{name}: smallest text {smallest_text_px(figure):.1f} px < {MIN_TEXT_PX} px"
        )
    finally:
        plt.close(figure)
