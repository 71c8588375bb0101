"""Figures and tables of the data-size study: they draw stored points and compute nothing new
(the trend and the findings are in ``companion.data_size``)."""

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from companion.data_size import trend
from prunelimit.plotting import book_figure
from prunelimit.tables import Table, table


def _intervals(ax: plt.Axes, points: list[dict], marker: str, color: str, label: str) -> None:
    """Each point's rho at its N, with a bar from its low to its high."""
    sizes = [p["N"] for p in points]
    rho = np.array([p["rho"] for p in points])
    spans = [rho - [p["low"] for p in points], [p["high"] for p in points] - rho]
    ax.errorbar(sizes, rho, yerr=spans, fmt=marker, color=color, capsize=4, label=label)


@book_figure
def prediction_vs_size(
    points: dict[str, list[dict]], limits: dict[str, float], extrapolate_to: int | None = None
) -> Figure:
    """Predicted ratio against N: G's certified intervals, |H|'s spread over truncations and
    probes, the rank bound N (C - 1) / D, and the actual limits as horizontal lines."""
    figure, ax = plt.subplots(figsize=(7.0, 4.2), layout="constrained")
    ggn, hessian = points["G"], points["|H|"]
    sizes = np.array([p["N"] for p in ggn])
    reach = np.array([sizes[0], max(sizes[-1], extrapolate_to or 0)])
    per_example = ggn[-1]["rank_bound"] / ggn[-1]["N"]
    ax.plot(reach, reach * per_example, "k--", lw=1, label="rank bound N(C-1)/D of G")
    _intervals(ax, ggn, "o", "C0", "G, certified (99%)")
    if extrapolate_to and len(ggn) > 1:
        slope, intercept = trend(ggn)
        line = np.geomspace(sizes[0], extrapolate_to, 50)
        ax.plot(
            line,
            10 ** (intercept + slope * np.log10(line)),
            ":",
            color="C0",
            label=f"G trend, N^{slope:.2f}",
        )
    if hessian:
        _intervals(ax, hessian, "s", "C3", "|H| rule, spread over Lanczos steps and probes")
    for (name, value), style in zip(limits.items(), ("-", "-."), strict=False):
        ax.axhline(value, color="0.4", ls=style, lw=1)
        ax.annotate(
            name,
            (reach[-1], value),
            xytext=(0, 3),
            ha="right",
            textcoords="offset points",
            fontsize=10,
            color="0.3",
        )
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="training examples N the curvature is taken over",
        ylabel="predicted ratio (fraction kept)",
    )
    ax.legend(loc="lower right")
    return figure


def points_table(points: dict[str, list[dict]]) -> Table:
    """One row per (curvature, N): the prediction, its uncertainty and what it cost."""
    rows = [
        [
            "G (certified)",
            f"{p['N']:,}",
            f"{p['rank_bound']:.4f}",
            f"[{p['low']:.4f}, {p['high']:.4f}]",
            f"{p['num_steps']} x {p['num_probes']}",
            f"{p['num_products']}",
            f"{p['seconds']:.0f}",
        ]
        for p in points["G"]
    ] + [
        [
            "|H| rule (SLQ)",
            f"{p['N']:,}",
            "",
            f"{p['rho']:.4f} ({p['low']:.4f}-{p['high']:.4f})",
            f"{p['num_steps']} x {p['num_probes']}",
            f"{p['num_steps'] * p['num_probes']}",
            f"{p['seconds']:.0f}",
        ]
        for p in points["|H|"]
    ]
    return table(
        ["curvature", "N", "rank bound", "prediction", "steps x probes", "products", "seconds"],
        rows,
    )
