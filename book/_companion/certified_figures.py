"""Figures of the certified-bounds chapter: Lanczos convergence of the prediction under each
rule, and certified bounds closing as Lanczos steps are added."""

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from prunelimit.plotting import book_figure

ERROR_FLOOR = 1e-10  # errors below this are drawn at it (the root is found to ~1e-12)
_COLOURS = ("tab:red", "tab:orange", "tab:blue", "tab:green")
_STYLES = ("-", "-", "-", "--")


@book_figure
def lanczos_rules_plot(convergence: dict) -> Figure:
    """Predicted ratio from m plain Lanczos steps against m (left, with the exact predictions
    dotted) and its distance to the exact prediction (right, log-log), for each series of
    ``lanczos_convergence``."""
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for entry, colour, style in zip(convergence["series"], _COLOURS, _STYLES, strict=True):
        steps, rho = np.asarray(entry["steps"]), np.asarray(entry["rho"])
        left.plot(steps, rho, style, color=colour, lw=1.2, label=entry["label"])
        left.axhline(entry["exact"], color=colour, ls=":", lw=1)
        error = np.maximum(np.abs(rho - entry["exact"]), ERROR_FLOOR)
        right.plot(steps, error, style, color=colour, lw=1.2, label=entry["label"])
    left.set(
        xscale="log",
        xlabel="Lanczos steps $m$",
        ylabel="predicted ratio $k/D$",
        title="Prediction from $m$ steps (dotted: exact)",
    )
    right.set(
        xscale="log",
        yscale="log",
        xlabel="Lanczos steps $m$",
        ylabel="|prediction - exact|",
        title="Distance to the exact prediction",
        ylim=(ERROR_FLOOR / 2, 1),
    )
    right.legend(loc="lower left")
    figure.tight_layout()
    return figure


@book_figure
def closing_plot(closing: dict, tolerance: float = 0.01) -> Figure:
    """Certified bounds on the predicted ratio (and the quadrature-only bracket) against Lanczos
    steps, with the exact prediction (left); the widths on a log scale (right)."""
    trace = closing["certified"]["trace"]
    steps = np.array([t["steps"] for t in trace])
    low, high = np.array([t["low"] for t in trace]), np.array([t["high"] for t in trace])
    q_low = np.array([t["quadrature_low"] for t in trace])
    q_high = np.array([t["quadrature_high"] for t in trace])
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.fill_between(steps, low, high, color="tab:blue", alpha=0.25, lw=0)
    left.plot(steps, low, color="tab:blue", lw=1.2, label="certified bounds")
    left.plot(steps, high, color="tab:blue", lw=1.2)
    left.plot(steps, q_low, color="tab:orange", ls="--", lw=1.2, label="quadrature only")
    left.plot(steps, q_high, color="tab:orange", ls="--", lw=1.2)
    left.axhline(closing["exact"], color="crimson", lw=1, label="exact prediction")
    left.set(
        xlabel="Lanczos steps $m$",
        ylabel="predicted ratio $k/D$",
        title=f"Bounds, one probe, D = {closing['dimension']:,}",
    )
    left.legend(loc="upper right")
    right.plot(steps, high - low, color="tab:blue", lw=1.2, label="certified width")
    right.plot(
        steps,
        np.maximum(q_high - q_low, 1e-12),
        color="tab:orange",
        ls="--",
        lw=1.2,
        label="quadrature-only width",
    )
    right.axhline(tolerance, color="0.4", ls=":", lw=1, label=f"width {tolerance:g}")
    right.set(
        yscale="log",
        xlabel="Lanczos steps $m$",
        ylabel="width of the interval",
        title="Widths",
    )
    right.legend(loc="upper right")
    figure.tight_layout()
    return figure
