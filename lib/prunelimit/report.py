"""Typed results of a ``LimitStudy`` and the comparisons drawn from them.

Every record is read from the JSON a study stores (``from_dict``); ratios are fractions of the D
prunable weights KEPT, losses are mean losses over the study's fixed training examples.
"""

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from prunelimit.certified import CertifiedLimit
from prunelimit.lanczos import SLQResult
from prunelimit.limit import LanczosSpread, LimitPrediction, ZeroRowShare, critical_distances
from prunelimit.pruning import Sweep

RULE_NAMES = {
    "ggn": "Gauss-Newton G, certified",
    "abs": "Hessian, |lambda| (the paper's rule)",
    "flat": "Hessian, negative curvature as flat",
}


@dataclasses.dataclass(frozen=True)
class TrainingRecord:
    """history: one dict per epoch (epoch, lr, loss, test_loss, test_accuracy; empty for a model
    trained elsewhere); seconds of wall time; parameter counts (total, prunable)."""

    history: list[dict[str, float | None]]
    seconds: float
    parameters: dict[str, int]

    @classmethod
    def from_dict(cls, stored: dict[str, Any]) -> "TrainingRecord":
        return cls(**stored)


@dataclasses.dataclass(frozen=True)
class DenseRecord:
    """The trained (dense) model: eps, D, loss and accuracy on the fixed and the test examples
    (accuracy None unless the targets are class indices; test None without test data),
    R(k) at ``distance_k`` (the distance from w* to its k largest weights), |w| quantiles at
    1, 10, 50, 90 and 99 %."""

    eps: float
    dimension: int
    fixed_loss: float
    fixed_accuracy: float | None
    test_loss: float | None
    test_accuracy: float | None
    distance_k: list[int]
    distance_R: list[float]
    weight_quantiles: list[float]

    @classmethod
    def from_dict(cls, stored: dict[str, Any]) -> "DenseRecord":
        curve = stored["distance_curve"]
        rest = {k: v for k, v in stored.items() if k != "distance_curve"}
        return cls(distance_k=curve["k"], distance_R=curve["R"], **rest)


@dataclasses.dataclass(frozen=True)
class SpectralPrediction:
    """The prediction from SLQ on the Hessian: the spectrum, its zero-row share, the prediction
    (with its kinematic bounds) and its spread over Lanczos truncations and probes under the
    |lambda| and the flat rule, the prediction from the first m steps (mean over probes and per
    probe), and rho*(R(k)) against k / D (``threshold_*``)."""

    spectrum: SLQResult
    seconds: float
    zero_rows: ZeroRowShare
    prediction: LimitPrediction
    prediction_flat: LimitPrediction
    spread: LanczosSpread
    spread_flat: LanczosSpread
    steps: list[int]
    rho_by_steps: list[float]
    per_probe_by_steps: list[list[float]]
    threshold_ratio: list[float]
    threshold_rho_star: list[float]

    @classmethod
    def from_dict(cls, stored: dict[str, Any]) -> "SpectralPrediction":
        return cls(
            spectrum=SLQResult.from_dict(stored["spectrum"]),
            seconds=stored["seconds"],
            zero_rows=ZeroRowShare(**stored["zero_rows"]),
            prediction=LimitPrediction(**stored["prediction"]),
            prediction_flat=LimitPrediction(**stored["prediction_flat"]),
            spread=LanczosSpread.from_dict(stored["spread"]),
            spread_flat=LanczosSpread.from_dict(stored["spread_flat"]),
            steps=stored["by_steps"]["steps"],
            rho_by_steps=stored["by_steps"]["rho"],
            per_probe_by_steps=stored["by_steps"]["per_probe"],
            threshold_ratio=stored["threshold"]["ratio"],
            threshold_rho_star=stored["threshold"]["rho_star"],
        )

    def rule(self, negative: str = "abs") -> tuple[LimitPrediction, LanczosSpread]:
        """The prediction and its spread under the |lambda| ("abs") or the flat rule."""
        if negative == "abs":
            return self.prediction, self.spread
        return self.prediction_flat, self.spread_flat

    def allowed_distances(self, ratios: np.ndarray) -> np.ndarray:
        """The theory's largest allowed distance R at each ratio (rho*(R) = ratio, |lambda|
        rule) [len(ratios)]: pruning to that ratio is predicted to work while R(k) is below."""
        prediction = self.prediction
        return critical_distances(
            self.spectrum,
            prediction.dimension,
            prediction.eps,
            ratios,
            zero_row_share=self.zero_rows.share,
        )


@dataclasses.dataclass(frozen=True)
class OneShotRecord(Sweep):
    """One-shot magnitude pruning: the sweep on the fixed examples (see ``Sweep``: every ratio
    evaluated, grid and bisection, and the limit), and the test loss and accuracy on the grid."""

    test_ratios: list[float]
    test_losses: list[float | None]
    test_accuracies: list[float | None]

    @classmethod
    def from_dict(cls, stored: dict[str, Any]) -> "OneShotRecord":
        return cls(**stored)

    def accuracy_limit(self, dense_accuracy: float, drop: float = 0.01) -> float:
        """The smallest grid ratio whose test accuracy is within ``drop`` of
        ``dense_accuracy`` (the resolution is the grid's)."""
        within = [
            ratio
            for ratio, accuracy in zip(self.test_ratios, self.test_accuracies, strict=True)
            if accuracy is not None and accuracy >= dense_accuracy - drop
        ]
        return min(within)


@dataclasses.dataclass(frozen=True)
class RetrainedRecord:
    """The retrained limit (the smallest ratio tried whose retrained loss stays within eps),
    the loss threshold, and every trial (k, ratio, loss, accuracy, test metrics, passed).
    ``censored``: no trial failed down to the search's floor, so the limit is at most this."""

    limit: float
    threshold: float
    trials: list[dict[str, Any]]

    @property
    def censored(self) -> bool:
        return all(trial["passed"] for trial in self.trials)

    @classmethod
    def from_dict(cls, stored: dict[str, Any]) -> "RetrainedRecord":
        return cls(**stored)


@dataclasses.dataclass(frozen=True)
class Prediction:
    """The predicted limit under one curvature rule with its bounds: ``low``-``high`` is a
    certified interval (rule "ggn", at ``confidence``) or the spread over Lanczos truncations
    and probes ("abs", "flat"; not a confidence interval). N: the curvature's examples."""

    rule: str
    rho: float
    low: float
    high: float
    num_examples: int
    num_steps: int
    num_probes: int
    confidence: float | None
    note: str = ""  # e.g. why certified bounds stopped before their tolerance

    @classmethod
    def from_spectral(
        cls, spectral: SpectralPrediction, rule: str, num_examples: int
    ) -> "Prediction":
        _, spread = spectral.rule(rule)
        return cls(
            rule,
            spread.rho,
            spread.low,
            spread.high,
            num_examples,
            spread.num_steps,
            spread.num_probes,
            None,
        )

    @classmethod
    def from_certified(cls, certified: CertifiedLimit, num_examples: int) -> "Prediction":
        return cls(
            "ggn",
            certified.rho,
            certified.low,
            certified.high,
            num_examples,
            certified.num_steps,
            certified.num_probes,
            certified.confidence,
            ""
            if certified.converged
            else f"not closed to {certified.tolerance}: {certified.stop_reason}",
        )

    def relation_to(self, actual: float) -> str:
        """Where the bounds lie against an actual limit: "above" (the prediction keeps more
        weights than needed), "below" (it promises a sparsity not reached) or "around"."""
        if self.low > actual:
            return "above"
        return "below" if self.high < actual else "around"

    @property
    def bounds_kind(self) -> str:
        if self.confidence is not None:
            return f"certified, {self.confidence:.0%} confidence"
        return "spread over Lanczos truncations and probes"

    def __str__(self) -> str:
        return (
            f"{self.rho:.4f} ({self.low:.4f}-{self.high:.4f}, {self.bounds_kind}; "
            f"{RULE_NAMES[self.rule]}; N = {self.num_examples:,}; "
            f"{self.num_steps} Lanczos steps x {self.num_probes} probes"
            + (f"; {self.note})" if self.note else ")")
        )


@dataclasses.dataclass(frozen=True)
class BudgetRecord:
    """The retrained limit as the retraining budget doubles: per budget (``epochs`` per trial)
    the limit (smallest passing ratio found), the largest failing ratio below it (None: none
    failed down to the search's floor) and its trials; ``converged``: the last doubling left
    both where they were, so the limit stopped moving at the search's resolution."""

    epochs: list[int]
    limits: list[float]
    failed_below: list[float | None]
    trials: list[list[dict[str, Any]]]
    converged: bool

    @classmethod
    def from_dict(cls, stored: dict[str, Any]) -> "BudgetRecord":
        return cls(**stored)

    @property
    def limit(self) -> float:
        """The retrained limit at the largest budget tried."""
        return self.limits[-1]

    @property
    def progress(self) -> str:
        """The budgets tried and where the limit ended, e.g. "1 -> 2 epochs: stopped moving"."""
        budgets = " -> ".join(str(e) for e in self.epochs)
        return f"{budgets} epochs: {'stopped moving' if self.converged else 'still moving'}"


@dataclasses.dataclass(frozen=True)
class LimitReport:
    """What a ``LimitStudy`` found: the prediction with its bounds (and the record it came from,
    ``spectral`` or ``certified``; both when the study was run with ``certified=True``), the
    dense model, the actual one-shot and retrained limits (None without retraining), the
    retrained limit as the budget doubles (``budget``, when asked), training, the folder it is
    stored in and each stage's provenance."""

    curvature: str
    num_examples: int
    prediction: Prediction
    training: TrainingRecord
    dense: DenseRecord
    spectral: SpectralPrediction | None
    certified: CertifiedLimit | None
    one_shot: OneShotRecord
    retrained: RetrainedRecord | None
    folder: Path | None
    provenance: dict[str, Any]
    budget: BudgetRecord | None = None  # the retrained limit as the budget doubles, if asked

    @property
    def eps(self) -> float:
        return self.dense.eps

    @property
    def dimension(self) -> int:
        return self.dense.dimension

    def rows(self) -> list[tuple[str, str]]:
        """(quantity, value) pairs: the report as a two-column table."""
        retrained = self.retrained
        return [
            ("D (prunable weights)", f"{self.dimension:,}"),
            ("eps (loss tolerance)", f"{self.eps:.4g}"),
            ("test accuracy (dense)", _shown(self.dense.test_accuracy, ".3f")),
            ("curvature", f"{RULE_NAMES[self.curvature]}, N = {self.num_examples:,}"),
            ("predicted limit", f"{self.prediction.rho:.4f}"),
            (
                f"its bounds ({self.prediction.bounds_kind})",
                f"{self.prediction.low:.4f}-{self.prediction.high:.4f}"
                + (f" ({self.prediction.note})" if self.prediction.note else ""),
            ),
            ("actual one-shot limit", f"{self.one_shot.limit:.4f}"),
            ("actual retrained limit", f"{retrained.limit:.4f}" if retrained else "not run"),
        ]

    def __str__(self) -> str:
        width = max(len(name) for name, _ in self.rows())
        return "\n".join(f"{name:<{width}}  {value}" for name, value in self.rows())


def _shown(value: float | None, spec: str) -> str:
    return "not measured" if value is None else format(value, spec)


def _count_inside(values: np.ndarray, ranges: list[tuple[float, float]]) -> int:
    """How many ``values[i]`` lie in their closed interval ``ranges[i]``."""
    return sum(low <= x <= high for x, (low, high) in zip(values, ranges, strict=True))


def agreement(reports: Sequence[LimitReport]) -> dict[str, Any]:
    """How the predictions compare with the actual limits over several studies: per-study ratios
    predicted / actual (one-shot and retrained, in order); counts of the studies whose one-shot
    limit lies inside the kinematic bounds (SLQ rules only), whose one-shot or retrained limit
    lies inside the prediction's bounds, and whose whole bounds lie above the one-shot limit
    (conservative) or below the retrained one (too optimistic). The retrained limit is
    ``actual_retrained``'s: at the largest budget tried when the budget was doubled."""
    predicted = np.array([r.prediction.rho for r in reports])
    one_shot = np.array([r.one_shot.limit for r in reports])
    retrained = np.array([a[0] if (a := actual_retrained(r)) else np.nan for r in reports])
    ranges = [(r.prediction.low, r.prediction.high) for r in reports]
    low, high = np.array(ranges).T
    counts: dict[str, Any] = {
        "tasks": len(reports),
        "predicted / actual one-shot": (predicted / one_shot).tolist(),
        "predicted / actual retrained": (predicted / retrained).tolist(),
    }
    spectral = [r.spectral for r in reports]
    if all(s is not None for s in spectral):
        bounds = [(s.prediction.lower, s.prediction.upper) for s in spectral if s is not None]
        counts["one-shot limit inside the kinematic bounds"] = _count_inside(one_shot, bounds)
    return counts | {
        "one-shot limit inside the spread": _count_inside(one_shot, ranges),
        "retrained limit inside the spread": _count_inside(retrained, ranges),
        "whole spread above the one-shot limit (conservative)": int(np.sum(low > one_shot)),
        "whole spread below the retrained limit (too optimistic)": int(np.sum(high < retrained)),
    }


def placement(low: float, high: float, actual: float) -> str:
    """Where an interval lies against an actual limit: "contains" it, lies "below" it (the
    prediction promises a sparsity that pruning did not reach) or "above" it (it keeps more
    weights than pruning needed), with the factor when it misses: "33x below"."""
    if low <= actual <= high:
        return "contains"
    if high < actual:
        return f"{_factor(actual / high)} below" if high > 0 else "below"
    return f"{_factor(low / actual)} above"


def _factor(ratio: float) -> str:
    """'31x' from 10 on, '2.5x' below."""
    return f"{ratio:.0f}x" if ratio >= 10 else f"{ratio:.1f}x"


def actual_retrained(report: LimitReport) -> tuple[float, str] | None:
    """The retrained limit the theory's limit is compared with (the largest budget tried, when
    the budget was doubled) and how it was found, e.g. "1 -> 2 epochs: stopped moving"."""
    if report.budget is not None:
        return report.budget.limit, report.budget.progress
    if report.retrained is not None:
        return report.retrained.limit, "one budget, not checked"
    return None


JUDGEMENTS = ("Holds", "Does not hold", "Undecided", "Not judged")


def judgement(report: LimitReport) -> str:
    """Whether the certified G prediction holds against the retrained limit (the actual limit
    the theory is about), one of ``JUDGEMENTS``. "Holds": the G interval contains a retrained
    limit that stopped moving as the budget doubled; "Does not hold": it lies above that limit,
    or below one that stopped moving; "Undecided": otherwise (a limit still moving may come
    down further) or no retrained limit; "Not judged": no certified prediction."""
    actual = actual_retrained(report)
    if report.certified is None:
        return "Not judged"
    if actual is None:
        return "Undecided"
    where = placement(report.certified.low, report.certified.high, actual[0])
    settled = report.budget is not None and report.budget.converged
    if where.endswith("above") or (settled and where.endswith("below")):
        return "Does not hold"
    return "Holds" if settled else "Undecided"


def verdict(report: LimitReport) -> str:
    """One sentence on a study: its ``judgement``, the retrained limit and how it was found,
    and where the certified G interval and the |H| spread lie against it."""
    actual = actual_retrained(report)
    word = judgement(report)
    if actual is None:
        return f"{word}: no retrained limit to compare the prediction with."
    limit, how = actual
    parts = []
    if report.certified is not None:
        g = report.certified
        where = placement(g.low, g.high, limit)
        parts.append(f"G over N = {report.num_examples:,} ({g.low:.4f}-{g.high:.4f}) {where} it")
    if report.spectral is not None:
        spread = report.spectral.spread
        where = placement(spread.low, spread.high, limit)
        span = f"{spread.low:.2f}-{spread.high:.2f}, {spread.high - spread.low:.2f} wide"
        parts.append(f"the |H| spread ({span}) {where} it")
    return f"{word}: retrained limit {limit:.3f} ({how}); " + "; ".join(parts) + "."
