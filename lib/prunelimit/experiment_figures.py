"""Figures and tables of Part III, drawn from the stored stage results of ``experiments.lomp``."""

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from prunelimit.lanczos import SLQResult
from prunelimit.limit import critical_distances

PREDICTED, ONE_SHOT, RETRAINED = "crimson", "tab:blue", "tab:green"


def training_plot(lomp: dict, plain: dict | None = None) -> Figure:
    """Training loss and test accuracy per epoch (LOMP, and plain training if given)."""
    figure, (loss_ax, accuracy_ax) = plt.subplots(1, 2, figsize=(9, 3.4))
    runs = [("l1-trained (LOMP)", lomp, "-")] + ([("plain", plain, "--")] if plain else [])
    for label, result, style in runs:
        epochs = [row["epoch"] + 1 for row in result["history"]]
        loss_ax.plot(epochs, [row["loss"] for row in result["history"]], style, label=label)
        accuracy_ax.plot(epochs, [row["test_accuracy"] for row in result["history"]], style)
    loss_ax.set(xlabel="epoch", ylabel="training loss (no penalty)", yscale="log")
    accuracy_ax.set(xlabel="epoch", ylabel="test accuracy")
    loss_ax.legend(fontsize=8)
    figure.tight_layout()
    return figure


def spectrum_plot(limit: dict, eps: float, distance: float) -> Figure:
    """SLQ density of |eigenvalues| (log axis, Gaussian smoothing in log space, for display) with
    the zero-row share, and the eigenvalue 2 eps / R^2 where f_R is 1/2 at the predicted limit."""
    spectrum = SLQResult.from_dict(limit["spectrum"])
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
    zero = limit["zero_rows"]
    ax.set(
        xscale="log",
        xlabel=r"$|\lambda|$",
        ylabel="density per decade",
        title=(
            f"SLQ, {spectrum.num_probes} probes x {len(spectrum.nodes[0])} nodes; zero rows "
            f"{zero['share']:.1%} [{zero['low']:.1%}, {zero['high']:.1%}] of {zero['num_rows']}"
        ),
    )
    ax.title.set_fontsize(9)
    ax.legend(fontsize=8)
    return figure


def _limit_lines(ax: Axes, prediction: dict, one_shot: float, retrained: float | None) -> None:
    ax.axvspan(prediction["lower"], prediction["upper"], color=PREDICTED, alpha=0.12)
    ax.axvline(prediction["rho"], color=PREDICTED, label=f"predicted {prediction['rho']:.4f}")
    ax.axvline(one_shot, color=ONE_SHOT, ls="--", label=f"actual one-shot {one_shot:.4f}")
    if retrained is not None:
        ax.axvline(retrained, color=RETRAINED, ls=":", label=f"actual retrained {retrained:.4f}")


def pruning_plot(result: dict, plain_one_shot: dict | None = None) -> Figure:
    """The paper's Figure 3: test loss and accuracy of the one-shot pruned network against the
    ratio kept, with the predicted limit (band: lower to upper bound) and the actual limits."""
    one_shot, prediction = result["one_shot"], result["limit"]["prediction"]
    retrained = result.get("retrained", {}).get("limit")
    figure, (loss_ax, accuracy_ax) = plt.subplots(1, 2, figsize=(10, 3.6))
    ratios = one_shot["test_ratios"]
    loss_ax.plot(ratios, one_shot["test_losses"], "o-", ms=3, color="k", label="LOMP")
    accuracy_ax.plot(ratios, one_shot["test_accuracies"], "o-", ms=3, color="k", label="LOMP")
    if plain_one_shot is not None:
        loss_ax.plot(ratios, plain_one_shot["test_losses"], "s--", ms=3, color="0.5", label="plain")
        accuracy_ax.plot(
            ratios, plain_one_shot["test_accuracies"], "s--", ms=3, color="0.5", label="plain"
        )
    for ax in (loss_ax, accuracy_ax):
        _limit_lines(ax, prediction, one_shot["limit"], retrained)
        ax.set(xscale="log", xlabel="pruning ratio (fraction of weights kept)")
    loss_ax.set(ylabel="test loss", yscale="log")
    accuracy_ax.set(ylabel="test accuracy", ylim=(0, 1))
    accuracy_ax.legend(fontsize=7, loc="lower right")
    figure.tight_layout()
    return figure


def distance_plot(result: dict) -> Figure:
    """The paper's Figure 5: the measured R(k) = ||w* - w^k|| against the theory's largest
    allowed distance at each ratio (rho*(R) = k / D); they cross at the predicted limit."""
    dense, limit = result["dense"], result["limit"]
    size, eps = dense["dimension"], dense["eps"]
    k = np.array(dense["distance_curve"]["k"][1:])
    ratios = k / size
    allowed = critical_distances(
        SLQResult.from_dict(limit["spectrum"]),
        size,
        eps,
        ratios,
        zero_row_share=limit["zero_rows"]["share"],
    )
    figure, ax = plt.subplots(figsize=(6.5, 3.8))
    ax.plot(ratios, dense["distance_curve"]["R"][1:], color="k", label=r"measured $R(k)$")
    ax.plot(ratios, allowed, color=PREDICTED, label=r"theory: $R$ with $\rho^*(R) = k/D$")
    ax.axvline(result["one_shot"]["limit"], color=ONE_SHOT, ls="--", label="actual one-shot")
    ax.axvline(limit["prediction"]["rho"], color=PREDICTED, ls=":", label="predicted limit")
    ax.set(xscale="log", yscale="log", xlabel="pruning ratio $k/D$", ylabel="distance")
    ax.legend(fontsize=8)
    return figure


def steps_plot(limit: dict) -> Figure:
    """The predicted limit (+- 1 s.e. over probes) from the first m Lanczos steps, against m."""
    by_steps = limit["by_steps"]
    rho, stderr = np.array(by_steps["rho"]), np.array(by_steps["stderr"])
    figure, ax = plt.subplots(figsize=(6, 3.2))
    ax.errorbar(by_steps["steps"], rho, yerr=stderr, fmt="o-", ms=3, color=PREDICTED, capsize=2)
    ax.set(xlabel="Lanczos steps m", ylabel=r"predicted $\rho$ from m steps")
    return figure


# ----------------------------------------------------------------------------- summary
def accuracy_limit(one_shot: dict, dense_accuracy: float, drop: float = 0.01) -> float:
    """The smallest grid ratio whose one-shot test accuracy is within ``drop`` of the dense
    network's (reported beside the loss-based limit; resolution: the sweep's grid)."""
    within = [
        ratio
        for ratio, accuracy in zip(
            one_shot["test_ratios"], one_shot["test_accuracies"], strict=True
        )
        if accuracy >= dense_accuracy - drop
    ]
    return min(within)


def late_steps_range(limit: dict) -> tuple[float, float]:
    """(min, max) of the predicted rho over the Lanczos truncations m >= half the steps run: how
    far the prediction still moves with m, which the s.e. over probes does not measure."""
    steps, rho = np.array(limit["by_steps"]["steps"]), np.array(limit["by_steps"]["rho"])
    late = rho[steps >= steps.max() / 2]
    return float(late.min()), float(late.max())


def summary_rows(results: dict[str, dict]) -> list[dict]:
    """One row per task: D, predicted rho +- se, its range over the later Lanczos truncations,
    bounds, actual limits, and their difference (plus the one-shot limit by test accuracy,
    within 1 point of the dense network's)."""
    rows = []
    for task, result in results.items():
        prediction = result["limit"]["prediction"]
        one_shot, retrained = result["one_shot"]["limit"], result["retrained"]["limit"]
        dense = result["dense"]["test_accuracy"]
        low, high = late_steps_range(result["limit"])
        rows.append(
            {
                "task": task,
                "D": result["dense"]["dimension"],
                "predicted rho": f"{prediction['rho']:.4f} ± {prediction['rho_stderr'] or 0:.4f}",
                "rho, later m": f"{low:.3f}-{high:.3f}",
                "lower": f"{prediction['lower']:.4f}",
                "upper": f"{prediction['upper']:.4f}",
                "actual one-shot": f"{one_shot:.4f}",
                "actual retrained": f"{retrained:.4f}",
                "difference": f"{prediction['rho'] - one_shot:+.4f}",
                "one-shot by test acc.": f"{accuracy_limit(result['one_shot'], dense):.3f}",
            }
        )
    return rows


def _count_inside(values: np.ndarray, ranges: list[tuple[float, float]]) -> int:
    """How many ``values[i]`` lie in their closed interval ``ranges[i]``."""
    return sum(low <= x <= high for x, (low, high) in zip(values, ranges, strict=True))


def agreement(results: dict[str, dict]) -> dict:
    """How the predictions compare with the actual limits over all tasks: per-task ratios
    predicted / actual (one-shot and retrained, in task order) and counts of the tasks whose
    one-shot limit lies inside the bounds or inside ``late_steps_range``, whose prediction is
    above the one-shot limit (conservative) or below the retrained one (too optimistic)."""
    predicted = np.array([r["limit"]["prediction"]["rho"] for r in results.values()])
    one_shot = np.array([r["one_shot"]["limit"] for r in results.values()])
    retrained = np.array([r["retrained"]["limit"] for r in results.values()])
    bounds = [
        (r["limit"]["prediction"]["lower"], r["limit"]["prediction"]["upper"])
        for r in results.values()
    ]
    late = [late_steps_range(r["limit"]) for r in results.values()]
    return {
        "tasks": len(results),
        "predicted / actual one-shot": (predicted / one_shot).tolist(),
        "predicted / actual retrained": (predicted / retrained).tolist(),
        "one-shot limit inside the predicted bounds": _count_inside(one_shot, bounds),
        "one-shot limit inside the range over later m": _count_inside(one_shot, late),
        "prediction above the one-shot limit (conservative)": int(np.sum(predicted > one_shot)),
        "prediction below the retrained limit (too optimistic)": int(np.sum(predicted < retrained)),
    }


def comparison_rows(lomp: dict[str, dict], plain: dict[str, dict]) -> list[dict]:
    """LOMP against plain one-shot magnitude pruning: dense accuracy and actual one-shot limit."""
    rows = []
    for task in lomp:
        ours, theirs = lomp[task], plain[task]
        rows.append(
            {
                "task": task,
                "test accuracy LOMP": f"{ours['dense']['test_accuracy']:.3f}",
                "test accuracy plain": f"{theirs['dense']['test_accuracy']:.3f}",
                "one-shot limit LOMP": f"{ours['one_shot']['limit']:.4f}",
                "one-shot limit plain": f"{theirs['one_shot']['limit']:.4f}",
                "plain / LOMP": f"{theirs['one_shot']['limit'] / ours['one_shot']['limit']:.1f}x",
            }
        )
    return rows


def summary_plot(results: dict[str, dict]) -> Figure:
    """Predicted limit (with bounds and s.e.) against the actual one-shot and retrained limits."""
    figure, ax = plt.subplots(figsize=(7, 4))
    positions = np.arange(len(results))
    for i, result in enumerate(results.values()):
        prediction = result["limit"]["prediction"]
        ax.plot(
            [i, i], [prediction["lower"], prediction["upper"]], color=PREDICTED, alpha=0.4, lw=6
        )
        ax.errorbar(
            i, prediction["rho"], yerr=prediction["rho_stderr"] or 0, fmt="o", color=PREDICTED
        )
        ax.plot(i + 0.15, result["one_shot"]["limit"], "s", color=ONE_SHOT)
        ax.plot(i + 0.3, result["retrained"]["limit"], "^", color=RETRAINED)
    ax.plot([], [], "o", color=PREDICTED, label="predicted (band: bounds)")
    ax.plot([], [], "s", color=ONE_SHOT, label="actual one-shot")
    ax.plot([], [], "^", color=RETRAINED, label="actual retrained")
    ax.set_xticks(positions, list(results), rotation=30, ha="right", fontsize=8)
    ax.set(yscale="log", ylabel="pruning ratio (fraction kept)")
    ax.legend(fontsize=8)
    figure.tight_layout()
    return figure
