"""Figures of Part I: pictures of cones and plots of the geometry experiments' results."""

import math

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from prunelimit import geometry as G
from prunelimit.plotting import book_figure

CONE_COLOR, POLAR_COLOR, SET_COLOR = "tab:blue", "tab:orange", "tab:green"


def _wedge(
    ax: plt.Axes, start: float, stop: float, color: str, label: str, radius: float = 3.0
) -> None:
    angles = np.linspace(start, stop, 100)
    xs = np.concatenate([[0], radius * np.cos(angles), [0]])
    ys = np.concatenate([[0], radius * np.sin(angles), [0]])
    ax.fill(xs, ys, color=color, alpha=0.25, label=label)


def _square_axes(ax: plt.Axes, limit: float) -> None:
    ax.set_xlim(-limit, limit)
    ax.set_ylim(-limit, limit)
    ax.set_aspect("equal")
    ax.axhline(0, color="0.8", lw=0.8)
    ax.axvline(0, color="0.8", lw=0.8)


@book_figure
def cone_and_polar_2d(
    start: float = 0.3, stop: float = 1.2, point: tuple[float, float] = (2.2, -1.0)
) -> Figure:
    """A 2-D cone, its polar, and Moreau's decomposition x = Pi_C(x) + Pi_polar(x) of a point."""
    figure, ax = plt.subplots(figsize=(4.5, 4.5))
    _wedge(ax, start, stop, CONE_COLOR, "cone $C$")
    _wedge(ax, stop + math.pi / 2, start + 3 * math.pi / 2, POLAR_COLOR, "polar cone $C^\\circ$")
    x = np.array(point)
    # The wedge is Circ_2 of half-angle (stop - start) / 2 about its bisector: rotate, project.
    middle = (start + stop) / 2
    rotation = np.array(
        [[math.cos(middle), -math.sin(middle)], [math.sin(middle), math.cos(middle)]]
    )
    on_cone = rotation @ G.project_circular((rotation.T @ x)[None], (stop - start) / 2)[0]
    arrows = {
        "$x$": (x, "k"),
        "$\\Pi_C(x)$": (on_cone, CONE_COLOR),
        "$\\Pi_{C^\\circ}(x)$": (x - on_cone, POLAR_COLOR),
    }
    for text, (vector, color) in arrows.items():
        ax.annotate("", vector, (0, 0), arrowprops={"arrowstyle": "->", "color": color, "lw": 2})
        ax.text(*(vector * 1.08), text, color=color)
    ax.plot(*zip(on_cone, x, strict=True), ls=":", color="0.4")
    _square_axes(ax, 3)
    ax.legend(loc="lower left")
    ax.set_title("A cone, its polar, and Moreau's decomposition")
    return figure


def _ellipse(center: np.ndarray, semi_axes: np.ndarray, angle: float, num: int = 400) -> np.ndarray:
    t = np.linspace(0, 2 * math.pi, num)
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    return center[:, None] + rotation @ (semi_axes[:, None] * np.stack([np.cos(t), np.sin(t)]))


@book_figure
def conic_hull_2d(
    center: tuple[float, float] = (2.5, 1.2),
    semi_axes: tuple[float, float] = (1.0, 0.45),
    angle: float = 0.6,
) -> Figure:
    """A set (ellipse) seen from an outside point (the origin): its conic hull and the arc it casts
    on the unit circle (the paper's Figure 1b). The extreme rays are found from boundary points."""
    figure, ax = plt.subplots(figsize=(5, 4.2))
    boundary = _ellipse(np.array(center), np.array(semi_axes), angle)
    angles = np.arctan2(boundary[1], boundary[0])
    low, high = angles.min(), angles.max()
    _wedge(ax, low, high, CONE_COLOR, "conic hull cone$(S - w)$", radius=4.5)
    ax.fill(*boundary, color=SET_COLOR, alpha=0.6, label="set $S$")
    arc = np.linspace(low, high, 100)
    ax.plot(np.cos(arc), np.sin(arc), color="crimson", lw=4, label="projection on the unit sphere")
    circle = np.linspace(0, 2 * math.pi, 200)
    ax.plot(np.cos(circle), np.sin(circle), color="0.6", lw=0.8)
    ax.plot(0, 0, "ko")
    ax.text(0.1, -0.35, "$w$ (apex)")
    ax.set_xlim(-1.5, 4.5)
    ax.set_ylim(-1.5, 3.5)
    ax.set_aspect("equal")
    ax.legend(loc="upper left")
    ax.set_title("The cone a set generates seen from a point")
    return figure


@book_figure
def circular_cones_3d(alpha: float = math.pi / 6) -> Figure:
    """Circ_3(alpha) around +e_3 and its polar Circ_3(pi/2 - alpha) around -e_3, as surfaces."""
    figure = plt.figure(figsize=(5, 5))
    ax = figure.add_subplot(projection="3d")
    height, turn = np.meshgrid(np.linspace(0, 1.5, 20), np.linspace(0, 2 * math.pi, 60))
    for half_angle, sign, color, label in [
        (alpha, 1, CONE_COLOR, "$C$"),
        (math.pi / 2 - alpha, -1, POLAR_COLOR, "$C^\\circ$"),
    ]:
        radius = height * math.tan(half_angle)
        ax.plot_surface(
            radius * np.cos(turn), radius * np.sin(turn), sign * height, color=color, alpha=0.35
        )
        ax.text(0, 0, sign * 1.8, label, color=color, fontsize=14)
    ax.set_box_aspect((1, 1, 1))
    ax.set_title(f"Circular cone (angle {math.degrees(alpha):.0f}°) and its polar")
    return figure


@book_figure
def ellipse_projection_vs_distance(distances: tuple[float, ...] = (1.5, 3.0, 6.0)) -> Figure:
    """The same ellipse moved away from the origin casts a shorter arc on the unit circle
    (the paper's Figure 1c): the further the set, the smaller its Gaussian width."""
    figure, ax = plt.subplots(figsize=(7, 3.6))
    circle = np.linspace(0, 2 * math.pi, 300)
    ax.plot(np.cos(circle), np.sin(circle), color="0.6", lw=0.8)
    for distance, color in zip(
        distances, plt.cm.viridis(np.linspace(0.1, 0.8, len(distances))), strict=True
    ):
        boundary = _ellipse(np.array([distance, 0.4]), np.array([0.9, 0.5]), 0.4)
        angles = np.arctan2(boundary[1], boundary[0])
        arc = np.linspace(angles.min(), angles.max(), 100)
        ax.fill(*boundary, color=color, alpha=0.5)
        ax.plot(
            np.cos(arc),
            np.sin(arc),
            color=color,
            lw=5,
            label=f"R = {distance}: arc {np.ptp(angles):.2f} rad",
        )
    ax.plot(0, 0, "ko")
    ax.set_aspect("equal")
    ax.set_xlim(-1.3, 7.2)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=len(distances))
    ax.set_title("Moving a set away shrinks its projection on the sphere")
    return figure


@book_figure
def statdim_comparison(rows: list[dict]) -> Figure:
    """delta / d by Monte Carlo (error bars) against the closed forms, and the z-scores."""
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for name in dict.fromkeys(row["cone"] for row in rows):
        mine = [row for row in rows if row["cone"] == name]
        d = np.array([row["d"] for row in mine])
        exact = np.array([row["exact"] for row in mine])
        mean = np.array([row["delta"]["mean"] for row in mine])
        stderr = np.array([row["delta"]["stderr"] for row in mine])
        (line,) = left.plot(d, exact / d, lw=1)
        left.errorbar(
            d, mean / d, 2 * stderr / d, fmt="o", ms=3, color=line.get_color(), label=name
        )
        right.plot(d, [row["z"] for row in mine], "o-", ms=3, color=line.get_color(), label=name)
    left.set(
        xscale="log",
        xlabel="ambient dimension $d$",
        ylabel="$\\delta(C) / d$",
        title="Monte Carlo (dots, ±2 s.e.) vs closed form (lines)",
    )
    right.axhspan(-2, 2, color="0.9")
    right.set(
        xscale="log",
        xlabel="ambient dimension $d$",
        ylabel="(MC - exact) / s.e.",
        title="Deviation in standard errors",
    )
    left.legend(loc="center right")
    figure.tight_layout()
    return figure


@book_figure
def l1_descent_plot(curve: dict) -> Figure:
    """delta / d of the l1 descent cone: Monte Carlo against psi and ALMT's lower bound."""
    figure, ax = plt.subplots(figsize=(5.5, 4))
    rho_grid = np.linspace(0.005, 0.995, 200)
    ax.plot(rho_grid, [G.psi_l1(r) for r in rho_grid], label="$\\psi(\\rho)$ (upper bound)")
    ax.plot(curve["rho"], curve["lower"], "--", label="$\\psi(\\rho) - 2/\\sqrt{sd}$ (lower bound)")
    ax.errorbar(
        curve["rho"],
        curve["mean"],
        2 * np.asarray(curve["stderr"]),
        fmt="o",
        ms=3,
        color="k",
        label="Monte Carlo, exact inf over $\\tau$",
    )
    ax.set(
        xlabel="sparsity fraction $\\rho = s/d$",
        ylabel="$\\delta(\\mathcal{D}) / d$",
        title="The $\\ell_1$ descent cone",
    )
    ax.legend()
    return figure


@book_figure
def meeting_plot(result: dict) -> Figure:
    """P(random k-dim subspace meets the cone) over k: empirical, exact, kinematic window."""
    figure, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    k = np.asarray(result["k"])
    d = int(k[-1])
    half = result["window_half_width"]
    for ax, name in zip(axes, ("circular", "orthant"), strict=True):
        cone = result[name]
        threshold = d - cone["statdim"]
        ax.axvspan(
            max(threshold - half, 0),
            min(threshold + half, d),
            color="0.9",
            label="$a_\\eta\\sqrt{d}$ window",
        )
        ax.axvline(threshold, color="crimson", label="$k = d - \\delta(C)$")
        ax.plot(k, cone["exact"], color="k", lw=1, label="exact")
        ax.plot(k, cone["empirical"], "o", ms=3, label="random subspaces")
        ax.set(
            xlabel="subspace dimension $k$", title=f"{name} cone, $\\delta = {cone['statdim']:.1f}$"
        )
    axes[0].set_ylabel("P(subspace meets cone)")
    axes[0].legend()
    figure.tight_layout()
    return figure


@book_figure
def phase_transition_plot(curves: list[dict], d: int) -> Figure:
    """Basis-pursuit success rate over m, one curve per sparsity, delta = d psi(s/d) marked."""
    figure, ax = plt.subplots(figsize=(6, 3.8))
    for curve in curves:
        (line,) = ax.plot(curve["m"], curve["success"], "o-", ms=3, label=f"s = {curve['s']}")
        ax.axvline(curve["statdim"], color=line.get_color(), ls="--")
    ax.axhline(0.5, color="0.7", lw=0.8)
    ax.set(
        xlabel="measurements $m$",
        ylabel="success rate",
        title=f"Basis pursuit in $d = {d}$: dashed lines at $\\delta = d\\,\\psi(s/d)$",
    )
    ax.legend()
    return figure


@book_figure
def ellipsoid_plots(result: dict, d: int) -> Figure:
    """Left: delta of cone(E) by Monte Carlo and by the width formula, over R. Right: P(meet)."""
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    mean = np.array([e["mean"] for e in result["delta"]])
    stderr = np.array([e["stderr"] for e in result["delta"]])
    left.errorbar(
        result["R"], mean, 2 * stderr, fmt="o", ms=4, color="k", label="Monte Carlo $\\delta$"
    )
    left.plot(result["R"], result["formula"], "-", label="$\\sum_i r_i^2 / (R^2 + r_i^2)$")
    left.set(
        xscale="log",
        xlabel="distance $R$",
        ylabel="statistical dimension",
        title="Cone of an ellipsoid seen from distance $R$",
    )
    left.set_xticks(result["R"], [f"{r:g}" for r in result["R"]])
    left.minorticks_off()
    left.legend()
    for curve in result["meeting"]:
        (line,) = right.plot(result["k"], curve["rate"], "o-", ms=2, label=f"R = {curve['R']}")
        right.axvline(d - curve["formula_statdim"], color=line.get_color(), ls="--")
        right.axvline(d - curve["mc_statdim"], color=line.get_color(), ls=":")
    right.set(
        xlabel="subspace dimension $k$",
        ylabel="P(subspace meets the sublevel set)",
        title="$k = d - \\delta$: formula (dashed), Monte Carlo (dotted)",
    )
    right.legend()
    figure.tight_layout()
    return figure
