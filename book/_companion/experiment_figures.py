"""Figures and tables of Part III, drawn from the typed reports of the tasks' studies
(``prunelimit.LimitReport``); they compute nothing.

The predicted limit under the |lambda| rule is shown with its spread over Lanczos truncations
and probes and the number of steps it was computed with (``limit.LanczosSpread``): the SLQ
estimate does not converge in the steps run, so the standard error over probes is not its error.
"""

import math

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from companion.tasks import ExperimentConfig, PlainRun, describe_run
from prunelimit.lanczos import SLQResult
from prunelimit.plots import ONE_SHOT, PREDICTED, RETRAINED, actual_limit_lines
from prunelimit.plotting import book_figure
from prunelimit.report import (
    JUDGEMENTS,
    LimitReport,
    OneShotRecord,
    SpectralPrediction,
    TrainingRecord,
    actual_retrained,
    agreement,
    judgement,
    verdict,
)
from prunelimit.tables import Table, records_table

PAPER_CLAIM = "the predicted limit coincides very well with the actual one (its Fig. 3)"


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


def certified_text(report: LimitReport) -> str:
    """Markdown: the certified G interval with how it was reached, and the rank cap."""
    certified = report.certified
    if certified is None:
        return "No certified prediction: run the study with certified=True."
    return (
        f"Certified prediction from $G$ over N = {report.num_examples:,} training examples: "
        f"{certified.low:.4f}-{certified.high:.4f} at {certified.confidence:.0%} confidence "
        f"({certified.num_products:,} products, {certified.num_steps} Lanczos steps x "
        f"{certified.num_probes} probe{'s' if certified.num_probes > 1 else ''}; "
        f"{certified.stop_reason})."
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
def summary_rows(
    reports: dict[str, LimitReport], configs: dict[str, ExperimentConfig]
) -> list[dict]:
    """One row per task: what it ran on, D, N, the certified G interval, the |H| prediction
    with its spread (and the steps and probes it was computed with), the actual one-shot limit,
    and the retrained limit at the largest budget tried (with the budgets and whether it
    stopped moving)."""
    rows = []
    for task, report in reports.items():
        spread, certified = _spectral(report).spread, report.certified
        actual = actual_retrained(report)
        rows.append(
            {
                "task (paper)": task,
                "ran on": describe_run(configs[task]).label,
                "D": f"{report.dimension:,}",
                "N": f"{report.num_examples:,}",
                "G certified (99%)": (
                    f"{certified.low:.4f}-{certified.high:.4f}" if certified else "not run"
                ),
                "|H| rho (spread over steps x probes)": spread.describe(compact=True),
                "actual one-shot": f"{report.one_shot.limit:.4f}",
                "actual retrained (budgets)": (
                    f"{actual[0]:.4f} ({actual[1]})" if actual else "not run"
                ),
            }
        )
    return rows


def verdict_table(reports: dict[str, LimitReport], configs: dict[str, ExperimentConfig]) -> Table:
    """Per task, the paper's claim beside what this run found (``prunelimit.report.verdict``)."""
    rows = [
        {
            "task (paper)": task,
            "ran on": describe_run(configs[task]).label,
            "the paper": PAPER_CLAIM,
            "we found": verdict(report),
        }
        for task, report in reports.items()
    ]
    return records_table(rows)


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


CERTIFIED = "darkorange"
LOG_FLOOR = 1e-4  # a certified interval from 0 is drawn from here on the log axis


@book_figure
def summary_plot(reports: dict[str, LimitReport], configs: dict[str, ExperimentConfig]) -> Figure:
    """Every prediction with its full uncertainty against the actual limits, one row per task:
    the |H| prediction with its spread over Lanczos truncations and probes (dot and bars), the
    certified G interval (thick bar; from 1e-4 when it starts at 0), the one-shot limit
    (square) and the retrained limit at the largest budget tried (triangle; filled when it
    stopped moving) with the bracket to the largest ratio that failed below it."""
    figure, ax = plt.subplots(figsize=(9, 0.95 * len(reports) + 2.0))
    for i, report in enumerate(reports.values()):
        spread = _spectral(report).spread
        ax.errorbar(
            spread.rho,
            i - 0.27,
            xerr=[[spread.rho - spread.low], [spread.high - spread.rho]],
            fmt="o",
            color=PREDICTED,
            capsize=4,
        )
        if report.certified is not None:
            low = max(report.certified.low, LOG_FLOOR)
            ax.plot([low, report.certified.high], [i - 0.09] * 2, color=CERTIFIED, lw=5)
        ax.plot(report.one_shot.limit, i + 0.09, "s", color=ONE_SHOT)
        actual = actual_retrained(report)
        if actual is not None:
            settled = report.budget is not None and report.budget.converged
            failed = report.budget.failed_below[-1] if report.budget else None
            if failed is not None:
                ax.plot([failed, actual[0]], [i + 0.27] * 2, color=RETRAINED, lw=1.5)
            face = RETRAINED if settled else "white"
            ax.plot(actual[0], i + 0.27, "^", color=RETRAINED, mfc=face, ms=8)
    ax.errorbar([], [], xerr=[], fmt="o", color=PREDICTED, capsize=4, label="|H| (bars: spread)")
    ax.plot([], [], color=CERTIFIED, lw=5, label="G certified (99%)")
    ax.plot([], [], "s", color=ONE_SHOT, label="actual one-shot")
    ax.plot([], [], "^-", color=RETRAINED, label="actual retrained (line: to the last failure)")
    labels = [f"{task}\n{describe_run(configs[task]).label}" for task in reports]
    ax.set_yticks(np.arange(len(reports)), labels)
    ax.invert_yaxis()
    ax.set(xscale="log", xlabel="pruning ratio (fraction kept)", xlim=(LOG_FLOOR / 2, 1.2))
    ax.grid(axis="x", alpha=0.3)
    handles, names = ax.get_legend_handles_labels()  # the |H| errorbar (a container) comes last
    handles, names = handles[-1:] + handles[:-1], names[-1:] + names[:-1]
    figure.legend(handles, names, loc="lower center", ncol=2, frameon=False)
    figure.tight_layout(rect=(0, 0.1, 1, 1))
    return figure


def budget_table(report: LimitReport) -> Table:
    """The retrained limit at each budget tried: epochs per trial, the limit, the largest ratio
    that failed below it, and the trials run with that budget."""
    budget = report.budget
    if budget is None:
        retrained = report.retrained
        if retrained is None:
            return records_table([{"retraining": "not run"}])
        failed = [t["ratio"] for t in retrained.trials if not t["passed"]]
        row = {
            "epochs per trial": "the study's",
            "retrained limit": f"{retrained.limit:.4f}",
            "largest failing ratio below": f"{max(failed):.4f}" if failed else "none",
            "trials": len(retrained.trials),
        }
        return records_table([row], "Not checked: the budget was not doubled in this run")
    rows = [
        {
            "epochs per trial": epochs,
            "retrained limit": f"{limit:.4f}",
            "largest failing ratio below": "none" if failed is None else f"{failed:.4f}",
            "trials": len(trials),
        }
        for epochs, limit, failed, trials in zip(
            budget.epochs, budget.limits, budget.failed_below, budget.trials, strict=True
        )
    ]
    return records_table(rows, f"The retrained limit as the budget doubled ({budget.progress})")


def glance(reports: dict[str, LimitReport], profile: str) -> str:
    """Markdown for the intro page: how many tasks' predictions hold, do not hold or are
    undecided, and how far the certified G prediction lies from the retrained limits."""
    words = [judgement(report) for report in reports.values()]
    counts = {word: words.count(word) for word in JUDGEMENTS}
    factors = [
        actual[0] / report.certified.high
        for report in reports.values()
        if report.certified is not None
        and report.certified.high > 0
        and (actual := actual_retrained(report)) is not None
    ]
    spreads = [_spectral(report).spread for report in reports.values()]
    inside = sum(
        spread.low <= actual[0] <= spread.high
        for spread, report in zip(spreads, reports.values(), strict=True)
        if (actual := actual_retrained(report)) is not None
    )
    widths = [spread.high - spread.low for spread in spreads]
    middle = float(np.median(factors)) if factors else math.nan
    median = f"{middle:,.0f}" if middle >= 10 else f"{middle:.2g}"
    return (
        f":::{{admonition}} Results at a glance (profile `{profile}`)\n"
        f"Of the {len(reports)} tasks of Part III, the certified prediction (Gauss-Newton "
        f"matrix over the profile's curvature examples) holds on {counts['Holds']}, does not "
        f"hold on {counts['Does not hold']} and is undecided on {counts['Undecided']} (the "
        "retrained limit still moved when its budget doubled); "
        f"{counts['Not judged']} were not rerun with it. The retrained limit is a median "
        f"{median} times the upper end of the certified interval. The spread of the paper's "
        f"$|\\lambda|$ rule contains the retrained limit on {inside} of {len(reports)} tasks, "
        f"and is {min(widths):.2f} to {max(widths):.2f} wide. See {{doc}}`experiments/summary`."
        "\n:::"
    )
