"""Figures of Part II: the threshold equation, the two factors, predictions against exact limits."""

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from prunelimit.plotting import book_figure


@book_figure
def threshold_plot(ratio: np.ndarray, rho_star: np.ndarray, prediction: dict) -> Figure:
    """rho*(R(k)) against k / D, the diagonal k / D, their crossing, and the bounds: ``ratio``
    and ``rho_star`` as computed by ``prunelimit.limit.threshold_curve``."""
    figure, ax = plt.subplots(figsize=(6.5, 4))
    ax.plot(ratio, rho_star, label=r"$\rho^*(R(k)) = \frac{1}{D}\mathrm{tr}\, f_{R(k)}(H)$")
    ax.plot(ratio, ratio, color="k", lw=0.8, label="$k / D$")
    ax.axvspan(prediction["lower"], prediction["upper"], color="0.9", label="lower to upper bound")
    ax.axvline(prediction["sharpness_bound"], color="tab:orange", ls="--", label="sharpness bound")
    ax.plot(
        prediction["rho"],
        prediction["rho"],
        "o",
        color="crimson",
        label=f"limit {prediction['rho']:.3f}",
    )
    ax.set(xlabel="pruning ratio $k / D$ (fraction kept)", ylabel="ratio", xlim=(0, 1), ylim=(0, 1))
    ax.legend()
    ax.set_title("The threshold equation")
    return figure


@book_figure
def factors_plot(result: dict, eps_factors, scales) -> Figure:
    """The predicted limit against eps, against scaled weights and against a scaled spectrum."""
    figure, axes = plt.subplots(1, 3, figsize=(10, 3.4), sharey=True)
    panels = [
        (
            eps_factors,
            result["vs_eps"],
            r"$\epsilon$ / default $\epsilon$",
            "log",
            "larger tolerance",
        ),
        (
            scales,
            result["vs_weight_scale"],
            "weights multiplied by",
            "linear",
            "larger weights (R)",
        ),
        (
            scales,
            result["vs_spectrum_scale"],
            "Hessian multiplied by",
            "linear",
            "sharper landscape",
        ),
    ]
    for ax, (x, y, label, scale, title) in zip(axes, panels, strict=True):
        ax.plot(x, y, "o-")
        ax.set(xlabel=label, xscale=scale, title=title)
    axes[0].set_ylabel("predicted limit (fraction kept)")
    figure.tight_layout()
    return figure


@book_figure
def prediction_scatter(rows: list[dict]) -> Figure:
    """Predicted against exact limit, one point per quadratic case, by eigenbasis."""
    figure, ax = plt.subplots(figsize=(5, 5))
    for basis, marker in (("random", "o"), ("aligned", "x")):
        mine = [r for r in rows if r["basis"] == basis]
        ax.plot(
            [r["exact"] for r in mine],
            [r["rho"] for r in mine],
            marker,
            ls="",
            label=f"{basis} eigenbasis",
        )
    ax.plot([0, 1], [0, 1], color="k", lw=0.8)
    ax.set(
        xlabel="exact limit (magnitude support)", ylabel="predicted limit", xlim=(0, 1), ylim=(0, 1)
    )
    ax.legend()
    ax.set_title("Quadratic losses: prediction against truth")
    return figure


@book_figure
def scaling_plot(rows: list[dict]) -> Figure:
    """Exact limit, prediction and bounds against D."""
    figure, ax = plt.subplots(figsize=(6, 3.8))
    sizes = [r["D"] for r in rows]
    ax.fill_between(
        sizes, [r["lower"] for r in rows], [r["upper"] for r in rows], color="0.9", label="bounds"
    )
    ax.plot(sizes, [r["rho"] for r in rows], "o-", label="prediction")
    ax.plot(sizes, [r["exact"] for r in rows], "s-", color="crimson", label="exact")
    ax.set(xscale="log", xlabel="number of weights $D$", ylabel="limit (fraction kept)")
    ax.legend()
    ax.set_title("Power-law spectrum, Gaussian weights, random eigenbasis")
    return figure
