"""Figures of a ``LimitReport``: they draw what the study computed and compute nothing.

Ratios on the x axes are fractions of the D prunable weights KEPT (log scale).
"""

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from prunelimit.plotting import book_figure
from prunelimit.report import LimitReport

PREDICTED, ONE_SHOT, RETRAINED = "crimson", "tab:blue", "tab:green"


def actual_limit_lines(ax: Axes, one_shot: float, retrained: float | None) -> None:
    """Vertical lines at the actual one-shot limit (dashed) and the retrained one (dotted)."""
    ax.axvline(one_shot, color=ONE_SHOT, ls="--", lw=2, label=f"one-shot limit {one_shot:.3f}")
    if retrained is not None:
        ax.axvline(
            retrained, color=RETRAINED, ls=":", lw=2, label=f"retrained limit {retrained:.3f}"
        )


@book_figure
def pruning_plot(report: LimitReport) -> Figure:
    """One-shot magnitude pruning: the loss on the fixed training examples at every evaluated
    ratio with the dense loss + eps (left), and test accuracy on the grid (right); the predicted
    limit with its bounds (band) and the actual one-shot and retrained limits (lines)."""
    one_shot, prediction, retrained = report.one_shot, report.prediction, report.retrained
    figure, (loss_ax, accuracy_ax) = plt.subplots(1, 2, figsize=(9, 3.8))
    loss_ax.plot(one_shot.ratios, one_shot.losses, "o-", ms=3, color="k", label="pruned")
    loss_ax.axhline(
        one_shot.dense_loss + one_shot.tolerance,
        color="tab:purple",
        label=r"dense loss + $\epsilon$",
    )
    accuracy_ax.plot(one_shot.test_ratios, one_shot.test_accuracies, "o-", ms=3, color="k")
    for ax in (loss_ax, accuracy_ax):
        ax.axvspan(prediction.low, prediction.high, color=PREDICTED, alpha=0.2)
        ax.axvline(prediction.rho, color=PREDICTED, lw=2, label=f"predicted {prediction.rho:.3f}")
        actual_limit_lines(ax, one_shot.limit, retrained.limit if retrained else None)
        ax.set(xscale="log", xlabel="pruning ratio (fraction kept)")
    loss_ax.set(ylabel="training loss (fixed examples)", yscale="log")
    accuracy_ax.set(ylabel="test accuracy", ylim=(0, 1))
    handles, labels = loss_ax.get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=3, frameon=False)
    figure.tight_layout(rect=(0, 0.16, 1, 1))
    return figure


@book_figure
def certified_plot(report: LimitReport) -> Figure:
    """How the certified bounds on the prediction closed: low and high against the curvature
    products spent (rule "ggn")."""
    if report.certified is None:
        raise ValueError("the report has no certified bounds: run the study with curvature='ggn'")
    trace = report.certified.trace
    products = [row["products"] for row in trace]
    figure, ax = plt.subplots(figsize=(6.5, 3.6))
    ax.fill_between(
        products,
        [row["low"] for row in trace],
        [row["high"] for row in trace],
        color=PREDICTED,
        alpha=0.25,
        label=f"certified bounds ({report.certified.confidence:.0%})",
    )
    ax.axhline(report.one_shot.limit, color=ONE_SHOT, ls="--", label="actual one-shot limit")
    if report.retrained is not None:
        ax.axhline(report.retrained.limit, color=RETRAINED, ls=":", label="actual retrained")
    ax.set(xlabel="curvature products", ylabel="predicted ratio", yscale="log")
    ax.legend()
    return figure
