"""Part IV: magnitude against random pruning, through R(k).

The predicted limit depends on the weights only through R(k), the distance from w* to the
network that keeps k of them. A magnitude support keeps the k largest |w|, so its R(k) is the
smallest any support of k weights can have; a random support of k weights leaves, in
expectation, R(k)^2 = (D - k)/D ||w*||^2, the R(k) of a network whose D weights all have the
magnitude ||w*|| / sqrt(D). The random support's prediction is the certified limit computed with
that R(k) on the same curvature (G over the same examples); the actual limits are the retrained
limits of magnitude and random masks (``LimitStudy.retrained`` and ``baseline("random")``).
"""

import dataclasses

import numpy as np
import torch
from matplotlib import pyplot as plt
from matplotlib.figure import Figure

from companion.baselines import BaselinesConfig, certified_spec, seed_study
from companion.profiles import ResultsStore
from prunelimit.certified import CertifiedLimit, certified_limit
from prunelimit.curvature import GGNOperator
from prunelimit.limit import flat_weights, projection_distances
from prunelimit.plotting import book_figure
from prunelimit.store import Recompute
from prunelimit.study import CertifiedSpec, LimitStudy


def random_support_distances(weights: np.ndarray, seed: int = 0) -> np.ndarray:
    """R(k) for k = 0..D [D + 1] when the k weights kept are the first k of a seeded random
    order: the norm of the weights outside them."""
    squares = np.asarray(weights, dtype=np.float64) ** 2
    order = np.random.default_rng(seed).permutation(squares.size)
    outside = np.concatenate([[0.0], np.cumsum(squares[order][::-1])])[::-1]
    return np.sqrt(outside)


def expected_random_weights(weights: np.ndarray) -> np.ndarray:
    """D equal magnitudes ||w|| / sqrt(D): their magnitude R(k)^2 = (D - k)/D ||w||^2 is the
    expected R(k)^2 of a random support of k weights."""
    weights = np.asarray(weights, dtype=np.float64)
    return np.full(weights.size, np.linalg.norm(weights) / np.sqrt(weights.size))


def random_support_prediction(
    study: LimitStudy, spec: CertifiedSpec, profile: str, recompute: Recompute
) -> dict:
    """The certified limit of the study's G (over its examples, with ``spec``) with the random
    support's expected R(k), stored under ``magnitude_random``."""
    store = ResultsStore("magnitude_random", profile)

    def compute() -> dict:
        model = study.model.eval()
        operator = GGNOperator(
            model,
            study.loss_fn,
            study.data.curvature_set,
            study.weights,
            dtype=torch.float64,
            chunk_size=spec.chunk_size,
        )
        bounds = certified_limit(
            operator,
            expected_random_weights(flat_weights(study.weights)),
            study.dense().eps,
            spec.tolerance,
            confidence=spec.confidence,
            max_products=spec.max_products,
            seed=spec.seed,
            progress=False,
        )
        return bounds.to_dict()

    config = {"study": study.key, "support": "random (expected R)"} | dataclasses.asdict(spec)
    return store.load_or_compute(config, compute, recompute)


@dataclasses.dataclass(frozen=True)
class SupportComparison:
    """R(k) of both supports on a grid of k, and the predicted and retrained limits of each."""

    ratios: np.ndarray
    magnitude_distance: np.ndarray
    random_distance: np.ndarray
    expected_random_distance: np.ndarray
    norm: float
    predicted: dict[str, CertifiedLimit]
    retrained: dict[str, float]
    num_examples: int


def compare_supports(
    config: BaselinesConfig, profile: str, seed: int = 0, recompute: Recompute = False
) -> SupportComparison:
    """Both supports on the seed's LOMP network of the baselines page (computed or loaded)."""
    study = seed_study(config, profile, seed, recompute)
    weights = flat_weights(study.weights)
    size = weights.size
    ks = np.unique(np.geomspace(1, size, 200).astype(int))
    magnitude = projection_distances(weights)[ks]
    drawn = random_support_distances(weights, seed)[ks]
    norm = float(np.linalg.norm(weights))
    retrained = study.retrained()
    assert retrained is not None, "the task's studies retrain"
    spec = certified_spec(config, profile)
    random_bounds = random_support_prediction(study, spec, profile, recompute)
    return SupportComparison(
        ratios=ks / size,
        magnitude_distance=magnitude,
        random_distance=drawn,
        expected_random_distance=norm * np.sqrt((size - ks) / size),
        norm=norm,
        predicted={
            "magnitude": study.certified_prediction(spec),
            "random": CertifiedLimit.from_dict(random_bounds),
        },
        retrained={"magnitude": retrained.limit, "random": study.baseline("random", seed).limit},
        num_examples=study.num_examples,
    )


MAGNITUDE, RANDOM = "tab:blue", "tab:orange"


@book_figure
def distances_plot(comparison: SupportComparison) -> Figure:
    """R(k)/||w*|| against k/D for the magnitude support, one random support and the random
    expectation; the predicted intervals (bands) and retrained limits (lines) of each."""
    figure, ax = plt.subplots(figsize=(7, 4))
    c = comparison
    ax.plot(c.ratios, c.magnitude_distance / c.norm, color=MAGNITUDE, label="magnitude support")
    ax.plot(c.ratios, c.random_distance / c.norm, color=RANDOM, label="a random support")
    ax.plot(
        c.ratios,
        c.expected_random_distance / c.norm,
        color=RANDOM,
        ls="--",
        label="random, expected",
    )
    for support, colour in (("magnitude", MAGNITUDE), ("random", RANDOM)):
        bounds = c.predicted[support]
        ax.axvspan(max(bounds.low, c.ratios[0]), bounds.high, color=colour, alpha=0.25)
        ax.axvline(c.retrained[support], color=colour, ls=":", lw=2)
    ax.set(
        xscale="log",
        xlabel="pruning ratio k/D (fraction kept)",
        ylabel=r"$R(k)\, /\, \|w^*\|$",
        ylim=(0, 1.02),
    )
    ax.legend(loc="lower left", frameon=False)
    figure.tight_layout()
    return figure


def findings(comparison: SupportComparison) -> str:
    """The distances at the retrained magnitude limit, both predictions and both actual limits."""
    c = comparison
    at = int(np.searchsorted(c.ratios, c.retrained["magnitude"]))
    at = min(at, len(c.ratios) - 1)
    mag, ran = c.predicted["magnitude"], c.predicted["random"]
    return (
        f"At the retrained magnitude limit ({c.retrained['magnitude']:.3f} kept), the magnitude "
        f"support leaves R/||w*|| = {c.magnitude_distance[at] / c.norm:.3f}, a random one "
        f"{c.random_distance[at] / c.norm:.3f}. With G over N = {c.num_examples:,} examples the "
        f"certified prediction is [{mag.low:.4f}, {mag.high:.4f}] for magnitude supports and "
        f"[{ran.low:.4f}, {ran.high:.4f}] for random ones; retrained on their masks, magnitude "
        f"pruning reaches {c.retrained['magnitude']:.3f} and random pruning "
        f"{c.retrained['random']:.3f}. "
        + (
            "The certified predictions are ordered as the paper argues: the random support, "
            "with its larger R, is predicted to need more weights. "
            if mag.high < ran.low
            else "The certified predictions are ordered against the paper's argument: the "
            "random support is predicted to need fewer weights. "
            if ran.high < mag.low
            else "The two certified intervals overlap, so at this N the prediction does not "
            "separate the supports. "
        )
        + (
            "Retrained, magnitude pruning goes further than random pruning, as the paper says."
            if c.retrained["magnitude"] < c.retrained["random"]
            else "Retrained, random pruning goes as far as magnitude pruning or further, "
            "unlike what the paper says."
        )
    )
