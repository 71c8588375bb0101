"""Figures of the methods part (Lanczos and SLQ): their text is readable at the book's width."""

from collections.abc import Callable, Iterator

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.figure import Figure

from companion.curvature_figures import (
    convergence_plot,
    density_plot,
    ghost_plot,
    gridded_bias_plot,
)
from companion.curvature_studies import ghost_counts
from prunelimit.lanczos import SLQResult
from prunelimit.plotting import MIN_TEXT_PX, smallest_text_px


@pytest.fixture(autouse=True)
def close_figures() -> Iterator[None]:
    yield
    plt.close("all")


def spectrum_result() -> dict:
    """A small stand-in for ``spectrum_experiment``'s result, with the same keys."""
    rng = np.random.default_rng(0)
    exact = np.sort(np.concatenate([rng.normal(0, 1e-3, 180), rng.uniform(0.05, 2.0, 20)]))
    top = exact[::-1][:12]
    ritz_with = [np.sort(top[:m])[-12:].tolist() for m in range(1, 16)]
    ritz_without = [*ritz_with[:-1], sorted([*top[:11], top[0]])]
    exact_sum = 0.3
    return {
        "exact_eigenvalues": exact.tolist(),
        "ritz_with": ritz_with,
        "ritz_without": ritz_without,
        "top_exact": float(exact[-1]),
        "exact_sum": exact_sum,
        "convergence": [
            {"steps": steps, "mean": exact_sum + 0.1 / steps, "stderr": 0.01 / steps}
            for steps in (5, 10, 20, 40)
        ],
        "quadrature": {"mean": exact_sum * 0.99, "stderr": 0.002},
        "gridded": [
            {"sigma": sigma, "estimate": exact_sum * (1 + 10 * sigma)} for sigma in (1e-3, 1e-2)
        ],
    }


def slq_density_plot(result: dict) -> Figure:
    rng = np.random.default_rng(1)
    nodes = [np.sort(rng.uniform(-0.01, 2.0, 10)) for _ in range(3)]
    weights = [np.full(10, 0.1) for _ in range(3)]
    slq_result = SLQResult(nodes, weights, dimension=200, seed=0)
    return density_plot(slq_result, np.asarray(result["exact_eigenvalues"]), sigma=0.01)


FIGURES: dict[str, Callable[[dict], Figure]] = {
    "ghost_plot": ghost_plot,
    "density_plot": slq_density_plot,
    "convergence_plot": convergence_plot,
    "gridded_bias_plot": gridded_bias_plot,
}


@pytest.mark.parametrize("name", FIGURES)
def test_figure_text_is_readable_at_the_column_width(name: str) -> None:
    figure = FIGURES[name](spectrum_result())
    assert smallest_text_px(figure) >= MIN_TEXT_PX


def test_figures_leave_the_global_type_sizes_alone() -> None:
    before = plt.rcParams["font.size"], plt.rcParams["legend.fontsize"]
    convergence_plot(spectrum_result())
    assert (plt.rcParams["font.size"], plt.rcParams["legend.fontsize"]) == before


def test_ghost_counts_count_copies_of_the_top_eigenvalue() -> None:
    assert ghost_counts(spectrum_result()) == {"ritz_without": 2, "ritz_with": 1}
