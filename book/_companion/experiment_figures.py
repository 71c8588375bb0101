"""Figures and tables of Part III, drawn from the typed reports of the tasks' studies
(``prunelimit.LimitReport``); they compute nothing.

The predicted limit under the |lambda| rule is shown with its spread over Lanczos truncations
and probes and the number of steps it was computed with (``limit.LanczosSpread``): the SLQ
estimate does not converge in the steps run, so the standard error over probes is not its error.
"""

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from companion.tasks import ExperimentConfig, PlainRun, describe_run
from prunelimit.lanczos import SLQResult
from prunelimit.limit import LanczosSpread
from prunelimit.plots import ONE_SHOT, PREDICTED, RETRAINED, actual_limit_lines
from prunelimit.plotting import book_figure
from prunelimit.report import (
    LimitReport,
    OneShotRecord,
    SpectralPrediction,
    TrainingRecord,
    agreement,
)
from prunelimit.tables import Table, records_table


def _spectral(report: LimitReport) -> SpectralPrediction:
    if report.spectral is None:
        raise ValueError("Part III's figures draw SLQ predictions: run the study with 'abs'")
    return report.spectral


def prediction_text(report: LimitReport) -> str:
    """Markdown: the predicted limit under both readings of negative curvature, each with its
    spread over Lanczos truncations and probes and the steps and probes it was computed with,
    and the N examples the Hessian was taken over."""
    spectral = _spectral(report)
    return (
        f"Predicted limit with its spread, from the Hessian over N = {report.num_examples:,} "
        f"training examples: {spectral.spread} under the authors' $|\\lambda|$ rule; "
        f"{spectral.spread_flat} with negative curvature counted as flat."
    )


def training_table(report: LimitReport, plain: PlainRun) -> Table:
    """Sizes, accuracy, eps and training time of the LOMP network and its plain twin."""
    dense, training = report.dense, report.training
    return records_table(
        [
            {
                "parameters": f"{training.parameters['total']:,}",
                "D (prunable)": f"{dense.dimension:,}",
                "test accuracy LOMP": f"{dense.test_accuracy:.3f}",
                "test accuracy plain": f"{plain.dense.test_accuracy:.3f}",
                "eps (std of mini-batch loss)": f"{dense.eps:.4g}",
                "training time": f"{training.seconds:.0f} s",
            }
        ]
    )


@book_figure
def training_plot(lomp: TrainingRecord, plain: TrainingRecord | None = None) -> Figure:
    """Training loss and test accuracy per epoch (LOMP, and plain training if given)."""
    figure, (loss_ax, accuracy_ax) = plt.subplots(1, 2, figsize=(9, 3.4))
    runs = [("l1-trained (LOMP)", lomp, "-")] + ([("plain", plain, "--")] if plain else [])
    for label, result, style in runs:
        epochs = [row["epoch"] + 1 for row in result.history]
        loss_ax.plot(epochs, [row["loss"] for row in result.history], style, label=label)
        accuracy_ax.plot(epochs, [row["test_accuracy"] for row in result.history], style)
    loss_ax.set(xlabel="epoch", ylabel="training loss (no penalty)", yscale="log")
    accuracy_ax.set(xlabel="epoch", ylabel="test accuracy")
    loss_ax.legend()
    figure.tight_layout()
    return figure


@book_figure
def spectrum_plot(report: LimitReport) -> Figure:
    """SLQ density of |eigenvalues| (log axis, Gaussian smoothing in log space, for display) with
    the zero-row share, and the eigenvalue 2 eps / R^2 where f_R is 1/2 at the predicted limit."""
    spectral = _spectral(report)
    spectrum, eps, distance = spectral.spectrum, report.eps, spectral.prediction.R
    magnitudes = [np.abs(n) for n in spectrum.nodes]
    floor = max(min(m[m > 0].min() for m in magnitudes if np.any(m > 0)), 1e-12)
    logs = SLQResult(
        [np.log10(np.maximum(m, floor)) for m in magnitudes],
        spectrum.weights,
        spectrum.dimension,
        spectrum.seed,
    )
    grid = np.linspace(np.log10(floor) - 0.5, max(np.max(m) for m in logs.nodes) + 0.5, 600)
    figure, ax = plt.subplots(figsize=(6.5, 3.4))
    ax.plot(10**grid, logs.density(grid, sigma=0.15), color="k")
    ax.axvline(
        2 * eps / distance**2, color=PREDICTED, ls="--", label=r"$2\epsilon / R^2$ at the limit"
    )
    zero = spectral.zero_rows
    ax.set(
        xscale="log",
        xlabel=r"$|\lambda|$",
        ylabel="density per decade",
        title=(
            f"SLQ, {spectrum.num_probes} probes x {len(spectrum.nodes[0])} nodes; zero rows "
            f"{zero.share:.1%} [{zero.low:.1%}, {zero.high:.1%}] of {zero.num_rows}"
        ),
    )
    ax.title.set_fontsize(10)
    ax.legend()
    return figure


def _limit_lines(
    ax: Axes, spectral: SpectralPrediction, one_shot: float, retrained: float | None
) -> None:
    """Predicted limit with its spread over Lanczos steps and probes (light band) and its
    kinematic bounds (band between dashed edges; ``_bounds_zoom`` shows it when it is narrower
    than a line), and the actual limits."""
    prediction, spread = spectral.prediction, spectral.spread
    ax.axvspan(spread.low, spread.high, color=PREDICTED, alpha=0.1, label="spread over m, probes")
    low, high = prediction.lower, prediction.upper
    ax.axvspan(low, high, color=PREDICTED, alpha=0.3)
    for bound in (low, high):
        ax.axvline(bound, color=PREDICTED, lw=0.8, ls=(0, (2, 2)))
    ax.axvline(
        prediction.rho,
        color=PREDICTED,
        lw=2,
        label=f"predicted {spread.describe(compact=True)}",
    )
    actual_limit_lines(ax, one_shot, retrained)


def _bounds_zoom(ax: Axes, spectral: SpectralPrediction) -> None:
    """The predicted limit's bounds, zoomed (at the full scale they are often narrower than a
    line)."""
    low, high = spectral.prediction.lower, spectral.prediction.upper
    width = max(high - low, 1e-4)
    ax.axvspan(low, high, color=PREDICTED, alpha=0.25)
    ax.axvline(spectral.prediction.rho, color=PREDICTED, lw=2)
    ax.set_xlim(low - width, high + width)
    ax.set_xticks([low, high], [f"{low:.4f}", f"{high:.4f}"], rotation=90)
    ax.set_yticks([])
    ax.set(title="kinematic\nbounds, zoomed", xlabel="ratio")


@book_figure
def pruning_plot(report: LimitReport, plain_one_shot: OneShotRecord | None = None) -> Figure:
    """The paper's Figure 3 on the quantity the limit is defined on: the training loss of the
    one-shot pruned network on the fixed view (every evaluated ratio, grid and bisection) with
    the dense loss + eps drawn, and test accuracy on the grid, against the ratio kept; with the
    predicted limit (light band: its spread over Lanczos steps and probes; dark band: its
    kinematic bounds) and the actual limits."""
    one_shot, spectral = report.one_shot, _spectral(report)
    retrained = report.retrained.limit if report.retrained else None
    figure, (loss_ax, accuracy_ax, zoom_ax) = plt.subplots(
        1, 3, figsize=(10, 4.4), width_ratios=(3, 3, 1)
    )
    loss_ax.plot(one_shot.ratios, one_shot.losses, "o-", ms=3, color="k", label="LOMP")
    accuracy_ax.plot(one_shot.test_ratios, one_shot.test_accuracies, "o-", ms=3, color="k")
    if plain_one_shot is not None:
        loss_ax.plot(
            plain_one_shot.ratios, plain_one_shot.losses, "s--", ms=3, color="0.5",
            label="plain",
        )  # fmt: skip
        accuracy_ax.plot(
            plain_one_shot.test_ratios, plain_one_shot.test_accuracies, "s--", ms=3,
            color="0.5",
        )  # fmt: skip
    loss_ax.axhline(
        one_shot.dense_loss + one_shot.tolerance,
        color="tab:purple",
        lw=1.5,
        label=r"dense loss + $\epsilon$",
    )
    for ax in (loss_ax, accuracy_ax):
        _limit_lines(ax, spectral, one_shot.limit, retrained)
        ax.set(xscale="log", xlabel="pruning ratio (fraction kept)")
    _bounds_zoom(zoom_ax, spectral)
    loss_ax.set(ylabel="training loss (fixed view)", yscale="log")
    accuracy_ax.set(ylabel="test accuracy", ylim=(0, 1))
    handles, labels = loss_ax.get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=2, frameon=False)
    figure.tight_layout(rect=(0, 0.22, 1, 1))
    return figure


@book_figure
def distance_plot(report: LimitReport) -> Figure:
    """The paper's Figure 5: the measured R(k) = ||w* - w^k|| against the theory's largest
    allowed distance at each ratio (rho*(R) = k / D); they cross at the predicted limit."""
    dense, spectral = report.dense, _spectral(report)
    ratios = np.array(dense.distance_k[1:]) / dense.dimension
    figure, ax = plt.subplots(figsize=(6.5, 3.8))
    ax.plot(ratios, dense.distance_R[1:], color="k", label=r"measured $R(k)$")
    ax.plot(
        ratios,
        spectral.allowed_distances(ratios),
        color=PREDICTED,
        label=r"theory: $R$ with $\rho^*(R) = k/D$",
    )
    ax.axvline(report.one_shot.limit, color=ONE_SHOT, ls="--", label="actual one-shot")
    ax.axvline(spectral.prediction.rho, color=PREDICTED, ls=":", label="predicted limit")
    ax.set(xscale="log", yscale="log", xlabel="pruning ratio $k/D$", ylabel="distance")
    ax.legend()
    return figure


@book_figure
def steps_plot(report: LimitReport) -> Figure:
    """The predicted limit from the first m Lanczos steps against m: from each probe alone
    (thin) and from the mean over probes (thick), with the spread (the box: the truncations it
    is taken over, and its lowest to highest prediction)."""
    spectral = _spectral(report)
    spread = spectral.spread
    figure, ax = plt.subplots(figsize=(6.5, 4.2))
    ax.fill_between(
        [spread.from_steps, spread.num_steps],
        spread.low,
        spread.high,
        color=PREDICTED,
        alpha=0.12,
        label="spread",
    )
    for i, curve in enumerate(spectral.per_probe_by_steps):
        ax.plot(spectral.steps, curve, color="0.45", lw=0.9, label="each probe" if i == 0 else None)
    ax.plot(spectral.steps, spectral.rho_by_steps, color=PREDICTED, lw=2, label="mean over probes")
    ax.set(
        xlabel="Lanczos steps m",
        ylabel=r"predicted $\rho$ from m steps",
        title=f"|H| rule: {spread.describe(compact=True)}",
    )
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.17), ncol=3, frameon=False)
    figure.tight_layout()
    return figure


# ----------------------------------------------------------------------------- summary
def _difference(spread: LanczosSpread, actual: float) -> str:
    """Predicted minus actual, with the same over the spread: "+0.03 (-0.06 to +0.07)"."""

    def signed(value: float) -> str:
        return f"{round(value, 2) or 0.0:+.2f}"  # no "-0.00"

    low, high = signed(spread.low - actual), signed(spread.high - actual)
    return f"{signed(spread.rho - actual)} ({low} to {high})"


def summary_rows(
    reports: dict[str, LimitReport], configs: dict[str, ExperimentConfig]
) -> list[dict]:
    """One row per task: what it ran on, D, N, the predicted rho with its spread over Lanczos
    truncations and probes (and the steps it was computed with), its kinematic bounds, the
    actual limits, and predicted minus one-shot (over the spread too); plus the one-shot limit
    by test accuracy, within 1 point of the dense network's."""
    rows = []
    for task, report in reports.items():
        spectral, one_shot = _spectral(report), report.one_shot
        prediction, spread = spectral.prediction, spectral.spread
        retrained = report.retrained.limit if report.retrained else float("nan")
        rows.append(
            {
                "task (paper)": task,
                "ran on": describe_run(configs[task]).label,
                "D": f"{report.dimension:,}",
                "N (Hessian)": f"{report.num_examples:,}",
                "predicted rho (spread over steps x probes)": spread.describe(compact=True),
                "kinematic bounds": f"{prediction.lower:.4f}-{prediction.upper:.4f}",
                "actual one-shot": f"{one_shot.limit:.4f}",
                "actual retrained": f"{retrained:.4f}",
                "predicted - one-shot (over the spread)": _difference(spread, one_shot.limit),
                "one-shot by test acc.": (
                    f"{one_shot.accuracy_limit(report.dense.test_accuracy):.3f}"
                ),
            }
        )
    return rows


def summary_table(reports: dict[str, LimitReport], configs: dict[str, ExperimentConfig]) -> Table:
    """``summary_rows`` as a table."""
    return records_table(summary_rows(reports, configs))


def agreement_table(reports: dict[str, LimitReport]) -> Table:
    """``prunelimit.report.agreement`` as a two-column table (per-task ratios in task order)."""

    def shown(value: object) -> str:
        return ", ".join(f"{x:.2f}" for x in value) if isinstance(value, list) else str(value)

    return records_table(
        [
            {"over the tasks": key, "value": shown(value)}
            for key, value in agreement(list(reports.values())).items()
        ]
    )


def comparison_table(
    lomp: dict[str, LimitReport], plain: dict[str, PlainRun], configs: dict[str, ExperimentConfig]
) -> Table:
    """LOMP against plain one-shot magnitude pruning: dense accuracy and actual one-shot limit,
    with a caption counting the tasks where LOMP prunes further."""
    further = sum(lomp[t].one_shot.limit < plain[t].one_shot.limit for t in lomp)
    caption = f"LOMP prunes further than plain pruning in {further} of {len(lomp)} tasks"
    rows = []
    for task in lomp:
        ours, theirs = lomp[task], plain[task]
        rows.append(
            {
                "task (paper)": task,
                "ran on": describe_run(configs[task]).label,
                "test accuracy LOMP": f"{ours.dense.test_accuracy:.3f}",
                "test accuracy plain": f"{theirs.dense.test_accuracy:.3f}",
                "one-shot limit LOMP": f"{ours.one_shot.limit:.4f}",
                "one-shot limit plain": f"{theirs.one_shot.limit:.4f}",
                "plain / LOMP": f"{theirs.one_shot.limit / ours.one_shot.limit:.1f}x",
            }
        )
    return records_table(rows, caption)


@book_figure
def summary_plot(reports: dict[str, LimitReport], configs: dict[str, ExperimentConfig]) -> Figure:
    """Predicted limit with its spread over Lanczos truncations and probes (the prediction's
    uncertainty) against the actual one-shot and retrained limits, one row per task."""
    figure, ax = plt.subplots(figsize=(9, 0.75 * len(reports) + 1.8))
    for i, report in enumerate(reports.values()):
        spread = _spectral(report).spread
        ax.errorbar(
            spread.rho,
            i - 0.2,
            xerr=[[spread.rho - spread.low], [spread.high - spread.rho]],
            fmt="o",
            color=PREDICTED,
            capsize=4,
        )
        ax.plot(report.one_shot.limit, i, "s", color=ONE_SHOT)
        if report.retrained is not None:
            ax.plot(report.retrained.limit, i + 0.2, "^", color=RETRAINED)
    ax.errorbar(
        [], [], xerr=[], fmt="o", color=PREDICTED, capsize=4, label="predicted (bars: spread)"
    )
    ax.plot([], [], "s", color=ONE_SHOT, label="actual one-shot")
    ax.plot([], [], "^", color=RETRAINED, label="actual retrained")
    labels = [f"{task}\n{describe_run(configs[task]).label}" for task in reports]
    ax.set_yticks(np.arange(len(reports)), labels)
    ax.invert_yaxis()
    ax.set(xscale="log", xlabel="pruning ratio (fraction kept)")
    ax.grid(axis="x", alpha=0.3)
    handles, names = ax.get_legend_handles_labels()  # the prediction (a container) comes last
    handles, names = handles[-1:] + handles[:-1], names[-1:] + names[:-1]
    figure.legend(handles, names, loc="lower center", ncol=3, frameon=False)
    figure.tight_layout(rect=(0, 0.06, 1, 1))
    return figure
