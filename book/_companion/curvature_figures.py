"""Figures of the methods part: Lanczos, spectral densities and quadrature error."""

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from prunelimit.lanczos import SLQResult
from prunelimit.plotting import book_figure


@book_figure
def ghost_plot(result: dict) -> Figure:
    """The largest Ritz values after each Lanczos step, with and without re-orthogonalisation."""
    figure, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    top = np.sort(result["exact_eigenvalues"])[::-1][:6]
    for ax, key, title in zip(
        axes,
        ("ritz_without", "ritz_with"),
        ("no re-orthogonalisation", "full re-orthogonalisation"),
        strict=True,
    ):
        for step, values in enumerate(result[key], start=1):
            ax.plot([step] * len(values), values, ".", ms=2, color="k")
        for value in top:
            ax.axhline(value, color="crimson", lw=0.6, alpha=0.6)
        ax.set(xlabel="Lanczos step $m$", title=title)
    axes[0].set_ylabel("largest Ritz values (red: exact eigenvalues)")
    figure.tight_layout()
    return figure


@book_figure
def density_plot(slq_result: SLQResult, exact: np.ndarray, sigma: float) -> Figure:
    """SLQ density (smoothed) against the histogram of the exact eigenvalues, linear and log."""
    figure, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    grid = np.linspace(exact.min() - 3 * sigma, exact.max() + 3 * sigma, 4000)
    density = slq_result.density(grid, sigma)
    for ax, log in zip(axes, (False, True), strict=True):
        ax.hist(exact, bins=200, density=True, color="0.75", label="exact eigenvalues")
        ax.plot(
            grid, density, color="tab:blue", lw=1.2, label=f"SLQ density, $\\sigma$ = {sigma:g}"
        )
        ax.set(xlabel="eigenvalue", yscale="log" if log else "linear")
        if log:
            ax.set_ylim(bottom=1e-3)
    axes[0].set_ylabel("density")
    axes[0].legend()
    axes[0].set_title("Hessian spectrum of the digits network")
    axes[1].set_title("the same, log scale: the outliers")
    figure.tight_layout()
    return figure


@book_figure
def convergence_plot(result: dict) -> Figure:
    """SLQ estimate of (1/D) tr f_R(H) against Lanczos steps (±2 s.e.), with the exact value."""
    figure, ax = plt.subplots(figsize=(6, 3.8))
    steps = [c["steps"] for c in result["convergence"]]
    means = np.array([c["mean"] for c in result["convergence"]])
    errors = np.array([c["stderr"] for c in result["convergence"]])
    ax.errorbar(
        steps, means, 2 * errors, fmt="o-", capsize=3, label="SLQ, mean over probes ± 2 s.e."
    )
    ax.axhline(result["exact_sum"], color="crimson", label="exact (dense eigenvalues)")
    ax.set(
        xscale="log", xlabel="Lanczos steps $m$", ylabel="$\\frac{1}{D}\\,\\mathrm{tr}\\, f_R(H)$"
    )
    ax.set_xticks(steps, [str(s) for s in steps])
    ax.minorticks_off()
    ax.legend()
    ax.set_title("Convergence of the pruning functional")
    return figure


@book_figure
def gridded_bias_plot(result: dict) -> Figure:
    """Integrating f_R against a smoothed density: error against sigma, beside direct quadrature."""
    figure, ax = plt.subplots(figsize=(6, 3.8))
    exact = result["exact_sum"]
    sigmas = [g["sigma"] for g in result["gridded"]]
    errors = [abs(g["estimate"] - exact) / exact for g in result["gridded"]]
    ax.plot(sigmas, errors, "o-", label="integral of f against the smoothed density")
    direct = abs(result["quadrature"]["mean"] - exact) / exact
    ax.axhline(direct, color="tab:green", label="Gauss quadrature on the nodes and weights")
    ax.axhline(
        2 * result["quadrature"]["stderr"] / exact,
        color="tab:green",
        ls=":",
        label="2 s.e. of the quadrature",
    )
    ax.set(xscale="log", yscale="log", xlabel="smoothing width $\\sigma$", ylabel="relative error")
    ax.legend()
    ax.set_title("Why spectral sums skip the density")
    return figure
