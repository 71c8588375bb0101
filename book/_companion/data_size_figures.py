"""Figures and tables of the data-size study: they draw stored points and compute nothing new."""

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from prunelimit.plotting import book_figure
from prunelimit.tables import Table, table


def trend(points: list[dict]) -> tuple[float, float]:
    """(slope, intercept) of log10(rho) against log10(N) over the certified midpoints."""
    sizes = np.log10([p["N"] for p in points])
    middles = np.log10([p["rho"] for p in points])
    slope, intercept = np.polyfit(sizes, middles, 1)
    return float(slope), float(intercept)


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


def findings(points: dict[str, list[dict]], limits: dict[str, float], train_size: int) -> str:
    """What the figure shows, in sentences whose numbers come from the stored points."""
    ggn, hessian = points["G"], points["|H|"]
    slope, intercept = trend(ggn)
    first, last = ggn[0], ggn[-1]
    top = max(p["high"] for p in ggn)
    one_shot, retrained = limits["one-shot limit"], limits["retrained limit"]
    below_rank = all(p["high"] <= p["rank_bound"] + 1e-12 for p in ggn)
    sentences = [
        f"G's certified prediction grows with N: from [{first['low']:.4f}, "
        f"{first['high']:.4f}] at N = {first['N']:,} to [{last['low']:.4f}, "
        f"{last['high']:.4f}] at N = {last['N']:,}, roughly as N^{slope:.2f}. Carried to "
        f"all {train_size:,} training examples, the trend gives "
        f"{10 ** (intercept + slope * np.log10(train_size)):.3f}; the rank bound there is "
        f"{train_size * last['rank_bound'] / last['N']:.3f}.",
        ("Every interval stays at or below" if below_rank else "Some intervals exceed")
        + f" the rank bound, and the largest certified value, {top:.4f}, is "
        f"{one_shot / top:.0f} times below the one-shot limit ({one_shot:.3f}) and "
        f"{retrained / top:.0f} times below the retrained limit ({retrained:.3f}).",
    ]
    if hessian:
        spreads = "; ".join(
            f"{p['rho']:.3f} ({p['low']:.3f}-{p['high']:.3f}) at N = {p['N']:,}" for p in hessian
        )
        ratio = min(p["high"] - p["low"] for p in hessian) / max(p["high"] - p["low"] for p in ggn)
        sentences.append(
            f"The |H| rule gives {spreads}: far above G's prediction, and its spread over "
            f"Lanczos truncations and probes is at least {ratio:.0f} times wider than the "
            "widest certified interval."
        )
    return " ".join(sentences)


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
