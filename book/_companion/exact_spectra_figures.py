"""Tables, figures and sentences of the chapter "Exact spectra of small real networks", drawn from
the stored results of ``companion.exact_spectra`` (summaries only: nothing here
recomputes a spectrum or a limit).

Ratios are fractions of weights KEPT; errors are estimate - exact, in ratio points (x 100).
"""

import math

import numpy as np
from matplotlib import pyplot as plt
from matplotlib.figure import Figure

from prunelimit.plotting import book_figure
from prunelimit.tables import Table, table

HESSIAN, GGN, ONE_SHOT, RETRAINED = "crimson", "tab:blue", "tab:orange", "tab:green"
SLQ_MARKERS = ("o", "s", "D", "v")


# ----------------------------------------------------------------------------- summaries
def curvature_scale(result: dict, rule: str = "abs") -> dict[str, float]:
    """At the exact predicted limit of ``rule`` ('abs': |H|, 'ggn': G): the shift
    c = 2 eps / R^2, the share of eigenvalues within c of zero (|lambda| <= c for |H|,
    lambda <= c for G) and the largest eigenvalue over c."""
    prediction = result["prediction"][rule]
    shift = 2 * result["eps"] / prediction["R"] ** 2
    key = "ggn_eigenvalues" if rule == "ggn" else "hessian_eigenvalues"
    values = np.asarray(result[key])
    curvature = np.abs(values) if rule == "abs" else values
    return {
        "shift": shift,
        "share_within": float(np.mean(curvature <= shift)),
        "top_over_shift": float(curvature.max() / shift),
    }


def slq_summary(result: dict) -> list[dict[str, float]]:
    """Per SLQ setting: the mean error and the largest |error| over seeds, the mean jackknife
    standard error (NaN for one probe), and how many spreads (if stored) hold the exact value."""
    exact = result["prediction"]["abs"]["rho"]
    summary = []
    for setting in result["slq"]:
        runs = setting["runs"]
        errors = np.array([run["error"] for run in runs])
        stderrs = [run["stderr"] for run in runs if run["stderr"] is not None]
        spreads = [run for run in runs if "spread_low" in run]
        widths = [run["spread_high"] - run["spread_low"] for run in spreads]
        summary.append(
            {
                "steps": setting["steps"],
                "probes": setting["probes"],
                "seeds": len(runs),
                "mean_error": float(errors.mean()),
                "max_abs_error": float(np.abs(errors).max()),
                "mean_stderr": float(np.mean(stderrs)) if stderrs else float("nan"),
                "spreads": len(spreads),
                "inside_spread": sum(r["spread_low"] <= exact <= r["spread_high"] for r in spreads),
                "mean_spread_width": float(np.mean(widths)) if widths else float("nan"),
            }
        )
    return summary


def certified_summary(result: dict) -> dict[str, float]:
    """Over the ``certified_limit`` runs on G: how many intervals hold the exact G prediction,
    their mean width, the largest |midpoint error|, the mean number of products, and how many
    reached the width tolerance."""
    runs = result["certified"]
    return {
        "runs": len(runs),
        "inside": sum(run["inside"] for run in runs),
        "mean_width": float(np.mean([run["width"] for run in runs])),
        "max_abs_midpoint_error": float(max(abs(run["midpoint_error"]) for run in runs)),
        "mean_products": float(np.mean([run["num_products"] for run in runs])),
        "converged": sum(run["converged"] for run in runs),
        "low": runs[0]["low"],
        "high": runs[0]["high"],
    }


def retraining_budgets(result: dict) -> tuple[int, ...]:
    """The retraining budgets (epochs) the retrained limits were found with."""
    return tuple(entry["epochs"] for entry in result["retrained"])


def _setting(steps: int, probes: int) -> str:
    return f"{steps} steps x {probes} probe{'s' if probes > 1 else ''}"


def _short(label: str) -> str:
    """'MLP 64-32-32-10' from 'MLP 64-32-32-10, digits 8x8'."""
    return label.split(",")[0]


def _two_lines(label: str) -> str:
    return label.replace(", ", "\n")


def _points(value: float) -> str:
    return f"{100 * value:+.1f}"


# ----------------------------------------------------------------------------- tables
def zero_share(eigenvalues: list[float], relative: float = 1e-12) -> float:
    """The share of eigenvalues within ``relative`` x the largest magnitude of zero."""
    values = np.abs(np.asarray(eigenvalues))
    return float(np.mean(values <= relative * values.max()))


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


# ----------------------------------------------------------------------------- the text
def _span(values: list[float], form: str = ".3f") -> str:
    """'a' when all values print alike, else 'a to b' (smallest to largest)."""
    low, high = format(min(values), form), format(max(values), form)
    return low if low == high else f"{low} to {high}"


def _each(results: list[dict], values: list[str]) -> str:
    """'v1 (network 1), v2 (network 2) and v3 (network 3)'."""
    parts = [f"{value} ({_short(r['label'])})" for value, r in zip(values, results, strict=True)]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _names(results: list[dict]) -> str:
    """'A', 'A and B', 'A, B and C' of the networks' short names."""
    names = [_short(r["label"]) for r in results]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _direction(differences: list[float]) -> str:
    if all(d < 0 for d in differences):
        return "below"
    if all(d > 0 for d in differences):
        return "above"
    return "on both sides of"


def findings(results: list[dict], tolerance: float, close: float = 0.02) -> str:
    """Markdown bullets: what the two tables and the figures show, every number taken from
    ``results``. ``tolerance``: the width asked of ``certified_limit``; ``close``: the distance
    (a ratio) within which two limits count as agreeing."""
    budgets = retraining_budgets(results[0])
    predicted = [r["prediction"]["abs"]["rho"] for r in results]
    scales = [curvature_scale(r) for r in results]
    lines = []

    above = [
        float(np.mean(np.abs(r["hessian_eigenvalues"]) > s["shift"]))
        for r, s in zip(results, scales, strict=True)
    ]
    lines.append(
        "- **The spectrum near zero decides.** At the predicted limit (|H| rule), "
        f"{_span([s['share_within'] for s in scales], '.0%')} of the eigenvalues of |H| lie "
        "within c = 2 eps / R^2 of zero, and the largest eigenvalue is "
        f"{_span([s['top_over_shift'] for s in scales], ',.0f')} times c. The share of "
        "eigenvalues above c against the prediction is "
        + _each(
            results, [f"{a:.3f} against {p:.3f}" for a, p in zip(above, predicted, strict=True)]
        )
        + ": the prediction is set by the eigenvalues of the order of c, which an estimate "
        "of the spectrum must resolve."
    )

    rules = [
        f"{r['prediction']['abs']['rho']:.3f} / {r['prediction']['flat']['rho']:.3f} / "
        f"{r['prediction']['ggn']['rho']:.3f}"
        for r in results
    ]
    negative = [float(np.mean(np.asarray(r["hessian_eigenvalues"]) < 0)) for r in results]
    ranks = [r["rank_bound"] / r["dimension"] for r in results]
    rank_text = (
        f"D < N(C - 1) on every network (N(C - 1)/D = {_span(ranks, '.1f')}), so the rank "
        "bound does not cap G; "
        if min(ranks) > 1
        else f"N(C - 1)/D = {_span(ranks, '.1f')}: where it is below 1, G's rank caps its "
        "prediction; "
    )
    lines.append(
        f"- **The three rules** (|H| / flat / G) give {_each(results, rules)}. "
        f"{_span(negative, '.0%')} of the eigenvalues of H are negative, and the |H| rule "
        "counts each of them, when above c in magnitude, as curvature. "
        + rank_text
        + f"{_span([zero_share(r['ggn_eigenvalues']) for r in results], '.1%')} of G's "
        "eigenvalues are zero to rounding (dead units, and the directions that shift all "
        "logits of the last layer alike)."
    )

    for rule, name in (("abs", "|H|"), ("ggn", "G")):
        quadratic = [r["quadratic"][rule] for r in results]
        exact = [r["prediction"][rule]["rho"] for r in results]
        differences = [q - p for q, p in zip(quadratic, exact, strict=True)]
        lines.append(
            f"- **The quadratic model under {name}:** its exact limit (magnitude support) is "
            f"{_each(results, [f'{q:.3f}' for q in quadratic])}, "
            f"{_direction(differences)} the kinematic prediction from the same matrix by "
            f"{_span([abs(100 * d) for d in differences], '.1f')} ratio points."
        )

    one_shot = [r["one_shot"]["limit"] for r in results]
    retrained = [[entry["limit"] for entry in r["retrained"]] for r in results]
    last = [values[-1] for values in retrained]
    moved = [abs(values[-1] - values[-2]) for values in retrained] if len(budgets) > 1 else []
    paths = [" -> ".join(f"{v:.3f}" for v in values) for values in retrained]
    budget_text = " -> ".join(str(b) for b in budgets)
    text = (
        f"- **Actual limits.** One-shot magnitude pruning keeps "
        f"{_each(results, [f'{v:.3f}' for v in one_shot])}: "
        f"{_span([o / p for o, p in zip(one_shot, predicted, strict=True)], '.1f')} times "
        f"the |H| prediction. Retrained on the magnitude mask for {budget_text} epochs, the "
        f"networks keep {_each(results, paths)}."
    )
    if moved:
        still = [r for r, m in zip(results, moved, strict=True) if m > close]
        stopped = [r for r, m in zip(results, moved, strict=True) if m <= close]
        text += (
            f" The last doubling of the budget moved the retrained limit by "
            f"{_each(results, [f'{100 * m:.1f}' for m in moved])} ratio points"
        )
        if stopped:
            text += f": it has stopped moving, at this resolution, on {_names(stopped)}"
        if still:
            text += (
                f"{'; it' if stopped else ': it'} has not on "
                f"{_names(still)} (training accuracy "
                f"{_span([r['dense']['accuracy'] for r in still])}), whose retrained limit is "
                "only an upper bound on what the support allows: a longer retraining lowers it"
            )
        text += "."
    lines.append(text)

    if all("first_order" in r for r in results):
        terms = [r["first_order"]["terms"] for r in results]
        eps = [r["eps"] for r in results]
        first = [t["abs"]["first_order"] / e for t, e in zip(terms, eps, strict=True)]
        increase = [t["abs"]["increase"] / e for t, e in zip(terms, eps, strict=True)]
        at_one_shot = [t["one_shot"]["first_order"] / e for t, e in zip(terms, eps, strict=True)]
        lines.append(
            "- **The term the quadratic model leaves out.** The theory expands the loss to "
            "second order around w*, as if its gradient g vanished there; after l1 training "
            "it does not. At the |H| prediction the first-order change g . (w^k - w*) alone is "
            f"{_each(results, [f'{x:.1f}' for x in first])} times eps, and the loss of the "
            f"one-shot pruned network rises by {_span(increase, '.0f')} times eps. At the "
            f"one-shot limit the first-order term is {_span(at_one_shot, '.2f')} times eps."
        )

    far_one_shot = [100 * (o - p) for o, p in zip(one_shot, predicted, strict=True)]
    far_retrained = [100 * (t - p) for t, p in zip(last, predicted, strict=True)]
    agreeing = [
        sum(abs(values[i] - p) <= close for values, p in zip(retrained, predicted, strict=True))
        for i in range(len(budgets))
    ]
    verdict = (
        f"with {budgets[-1]} epochs of retraining it agrees with the retrained limit within "
        f"{100 * close:.0f} points on {agreeing[-1]} of {len(results)} networks"
    )
    if len(set(agreeing)) > 1:
        earlier = [f"{b} epochs on {a}" for b, a in zip(budgets, agreeing, strict=True)][:-1]
        verdict += ", with " + (
            earlier[0] if len(earlier) == 1 else ", ".join(earlier[:-1]) + " and " + earlier[-1]
        )
        verdict += (
            ": whether the prediction coincides with the retrained limit depends on the "
            "retraining budget"
        )
    lines.append(
        '- **Against the paper\'s claim** that the prediction "coincides very well" with '
        "actual pruning: with no estimation error at all, the one-shot limit lies "
        f"{_span([abs(d) for d in far_one_shot], '.1f')} ratio points "
        f"{_direction(far_one_shot)} the |H| prediction, and the retrained limit after "
        f"{budgets[-1]} epochs {_span([abs(d) for d in far_retrained], '.1f')} points "
        f"{_direction(far_retrained)} it; {verdict}."
    )

    for summary_index, setting in enumerate(results[0]["slq"]):
        summaries = [slq_summary(r)[summary_index] for r in results]
        errors = [100 * run["error"] for r in results for run in r["slq"][summary_index]["runs"]]
        text = (
            f"- **SLQ, {_setting(setting['steps'], setting['probes'])}** "
            f"({summaries[0]['seeds']} seeds per network): errors from {min(errors):+.1f} to "
            f"{max(errors):+.1f} ratio points, mean "
            f"{_each(results, [_points(s['mean_error']) for s in summaries])}."
        )
        stderrs = [s["mean_stderr"] for s in summaries]
        if not any(math.isnan(x) for x in stderrs):
            ratios = [s["max_abs_error"] / s["mean_stderr"] for s in summaries]
            text += (
                " The standard error it reports (jackknife over probes) averages "
                f"{_span([100 * x for x in stderrs], '.1f')} points, while its largest error "
                f"is {_span(ratios, '.1f')} times that."
            )
        spreads = sum(s["spreads"] for s in summaries)
        if spreads:
            inside = sum(s["inside_spread"] for s in summaries)
            text += (
                " Its spread over the truncations from half the steps to all of them and over "
                f"the probes (`prediction_spread`) holds the exact value in {inside} of "
                f"{spreads} runs, at a mean width of "
                f"{_span([100 * s['mean_spread_width'] for s in summaries], '.1f')} points."
            )
        lines.append(text)

    certified = [certified_summary(r) for r in results]
    runs = sum(c["runs"] for c in certified)
    converged = sum(c["converged"] for c in certified)
    reasons = sorted(
        {run["stop_reason"] for r in results for run in r["certified"] if not run["converged"]}
    )
    lines.append(
        f"- **certified_limit on G** (asked for a width of {tolerance:g}): the interval holds "
        f"the exact G prediction in {sum(c['inside'] for c in certified)} of {runs} runs, "
        f"and its midpoint is within "
        f"{_span([100 * c['max_abs_midpoint_error'] for c in certified], '.2f')} points of "
        f"the exact value. The intervals are "
        f"{_span([c['mean_width'] for c in certified], '.4f')} wide after "
        f"{_span([c['mean_products'] for c in certified], ',.0f')} products on average; "
        f"{converged} of {runs} runs reached the width asked for"
        + (
            f" ({'they' if not converged else 'the others'} stopped because {'; '.join(reasons)})"
            if reasons
            else ""
        )
        + "."
    )
    return "\n".join(lines)
