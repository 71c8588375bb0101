"""Tables and figures of the chapter "Exact spectra of small real networks", drawn from the
stored results of ``companion.exact_spectra`` and the summaries that module computes from them
(``curvature_scale``, ``slq_summary``, ``certified_summary``, ``zero_share``; the chapter's
findings are written there too): nothing here recomputes a spectrum or a limit.

Ratios are fractions of weights KEPT; errors are estimate - exact, in ratio points (x 100).
"""

import numpy as np
from matplotlib import pyplot as plt
from matplotlib.figure import Figure

from companion.exact_spectra import (
    _points,
    _setting,
    certified_summary,
    curvature_scale,
    retraining_budgets,
    slq_summary,
    zero_share,
)
from prunelimit.plotting import book_figure
from prunelimit.tables import Table, table

HESSIAN, GGN, ONE_SHOT, RETRAINED = "crimson", "tab:blue", "tab:orange", "tab:green"
SLQ_MARKERS = ("o", "s", "D", "v")


def _two_lines(label: str) -> str:
    return label.replace(", ", "\n")


# ----------------------------------------------------------------------------- tables
def networks_table(results: list[dict]) -> Table:
    """One row per network: D, N, the rank bound of G over D, the shares of negative
    eigenvalues of H and of (numerically) zero eigenvalues of G, the dense network's training
    loss and accuracy, its test accuracy and eps."""
    rows = [
        [
            r["label"],
            f"{r['dimension']:,}",
            f"{r['num_examples']:,}",
            f"{r['rank_bound'] / r['dimension']:.1f}",
            f"{np.mean(np.asarray(r['hessian_eigenvalues']) < 0):.0%}",
            f"{zero_share(r['ggn_eigenvalues']):.1%}",
            f"{r['dense']['loss']:.4f}",
            f"{r['dense']['accuracy']:.3f}",
            f"{r['dense']['test_accuracy']:.3f}",
            f"{r['eps']:.2g}",
        ]
        for r in results
    ]
    return table(
        [
            "network",
            "D",
            "N",
            "N(C-1)/D",
            "H: negative eigenvalues",
            "G: zero eigenvalues",
            "training loss",
            "training accuracy",
            "test accuracy",
            "eps",
        ],
        rows,
        caption="The networks: D prunable weights, N training examples (the curvature's data), "
        "C = 10 classes; G's zero eigenvalues are those within 1e-12 of its largest",
    )


def limits_table(results: list[dict]) -> Table:
    """One row per network: the exact predictions, the exact quadratic-model limits and the
    actual limits."""
    budgets = retraining_budgets(results[0])
    rows = []
    for r in results:
        p, q = r["prediction"], r["quadratic"]
        rows.append(
            [
                r["label"],
                f"{p['abs']['rho']:.3f}",
                f"{p['flat']['rho']:.3f}",
                f"{p['ggn']['rho']:.3f}",
                f"{q['abs']:.3f}",
                f"{q['ggn']:.3f}",
                f"{r['one_shot']['limit']:.3f}",
                *[f"{entry['limit']:.3f}" for entry in r["retrained"]],
            ]
        )
    return table(
        [
            "network",
            "predicted, |H|",
            "predicted, flat",
            "predicted, G",
            "quadratic model, |H|",
            "quadratic model, G",
            "one-shot",
            *[f"retrained {e} epochs" for e in budgets],
        ],
        rows,
        caption="Exact predictions, exact limits of the quadratic model and actual limits, "
        "as fractions of weights kept, all on the training loss over the N examples",
    )


def estimates_table(results: list[dict]) -> Table:
    """One row per network: the exact predictions and the errors of SLQ (|H| rule) and of
    ``certified_limit`` (G) against them, in ratio points."""
    first = results[0]
    settings = [f"{s['steps']}x{s['probes']}" for s in first["slq"]]
    rows = []
    for r in results:
        cells = [r["label"], f"{r['prediction']['abs']['rho']:.3f}"]
        for s in slq_summary(r):
            cells += [_points(s["mean_error"]), f"{100 * s['max_abs_error']:.1f}"]
        c = certified_summary(r)
        cells += [
            f"{r['prediction']['ggn']['rho']:.3f}",
            f"[{c['low']:.3f}, {c['high']:.3f}]",
            f"{100 * c['max_abs_midpoint_error']:.2f}",
            f"{c['inside']} of {c['runs']}",
            f"{c['mean_products']:.0f}",
        ]
        rows.append(cells)
    columns = ["network", "exact |H|"]
    for setting in settings:
        columns += [f"SLQ {setting}: mean error", f"{setting}: max |error|"]
    columns += [
        "exact G",
        "certified (seed 0)",
        "certified: max |midpoint error|",
        "exact G inside",
        "products (mean)",
    ]
    seeds = len(first["slq"][0]["runs"])
    return table(
        columns,
        rows,
        caption=f"Errors against exact, in ratio points: SLQ (steps x probes) on H, |H| rule, "
        f"over {seeds} seeds; certified_limit on G over {len(first['certified'])} seeds",
    )


# ----------------------------------------------------------------------------- figures
@book_figure
def spectrum_plot(results: list[dict]) -> Figure:
    """Per network: the fraction of eigenvalues at most x in magnitude (|H|) and at most x (G),
    on a log axis, with the shift c = 2 eps / R^2 at each exact prediction."""
    figure, axes = plt.subplots(
        1, len(results), figsize=(3 * len(results), 3.6), squeeze=False, sharey=True
    )
    for ax, result in zip(axes[0], results, strict=True):
        curvatures = {
            "abs": np.sort(np.abs(result["hessian_eigenvalues"])),
            "ggn": np.sort(result["ggn_eigenvalues"]),
        }
        top = max(values[-1] for values in curvatures.values())
        grid = np.geomspace(top * 1e-12, top * 1.5, 400)
        for rule, colour, name in (("abs", HESSIAN, "|H|"), ("ggn", GGN, "G")):
            values = curvatures[rule]
            below = np.searchsorted(values, grid, side="right") / len(values)
            ax.plot(grid, below, color=colour, label=name)
            scale = curvature_scale(result, rule)
            ax.axvline(
                scale["shift"],
                color=colour,
                ls="--",
                lw=1,
                label=f"c ({name}): {scale['share_within']:.0%}",
            )
        ax.set(
            xscale="log", xlabel="eigenvalue x", ylim=(0, 1.02), title=_two_lines(result["label"])
        )
        ax.set_xticks([1e-10, 1e-6, 1e-2])
        ax.legend(loc="lower right")
    axes[0][0].set_ylabel("share of eigenvalues <= x")
    figure.tight_layout()
    return figure


@book_figure
def error_plot(results: list[dict]) -> Figure:
    """Each estimate minus exact, per network: SLQ runs (|H| rule; one point per seed, bars:
    the jackknife standard error over probes where there are several) and the certified
    intervals on G (midpoint, bars: the interval)."""
    figure, ax = plt.subplots(figsize=(7, 3.6))
    settings = [(s["steps"], s["probes"]) for s in results[0]["slq"]]
    offsets = np.linspace(-0.3, 0.3, len(settings) + 1)
    for index, result in enumerate(results):
        for (steps, probes), offset, marker, setting in zip(
            settings, offsets, SLQ_MARKERS, result["slq"], strict=False
        ):
            runs = setting["runs"]
            spread = np.linspace(-0.04, 0.04, len(runs))
            errors = np.array([100 * run["error"] for run in runs])
            bars = [100 * (run["stderr"] or 0.0) for run in runs]
            ax.errorbar(
                index + offset + spread,
                errors,
                yerr=bars,
                fmt=marker,
                ms=5,
                color=HESSIAN,
                mfc="white" if probes > 1 else HESSIAN,
                capsize=2,
                label=f"SLQ {_setting(steps, probes)} (H)" if not index else None,
            )
        runs = result["certified"]
        spread = np.linspace(-0.04, 0.04, len(runs))
        exact = result["prediction"]["ggn"]["rho"]
        middles = np.array([100 * run["midpoint_error"] for run in runs])
        below = middles - np.array([100 * (run["low"] - exact) for run in runs])
        above = np.array([100 * (run["high"] - exact) for run in runs]) - middles
        ax.errorbar(
            index + offsets[-1] + spread,
            middles,
            yerr=[below, above],
            fmt="^",
            color=GGN,
            capsize=2,
            label="certified interval (G)" if not index else None,
        )
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xticks(range(len(results)), [_two_lines(r["label"]) for r in results])
    ax.set_ylabel("estimate - exact (ratio points)")
    ax.legend(fontsize=9)
    figure.tight_layout()
    return figure
