"""Where the curvature is taken: the predicted limit of one Part III network against the number N
of training examples its curvature is taken over.

For the Gauss-Newton matrix G the prediction is certified (``certified_limit``, float64); for the
authors' |lambda| rule on the Hessian it is SLQ with its spread over Lanczos truncations and
probes. G over N examples with C classes has rank at most N (C - 1), so its prediction is at most
N (C - 1) / D. Each (rule, N) point is stored on its own: an interrupted run resumes. The
power-law trend through G's points (``trend``) and the page's findings (``findings``) are
computed here too; ``data_size_figures`` only draws.
"""

import dataclasses
import time
from typing import Any, ClassVar

import numpy as np
import torch

from companion.profiles import ProfiledConfig, ResultsStore
from companion.tasks import task_config, task_study
from prunelimit.certified import certified_limit
from prunelimit.curvature import GGNOperator, HessianOperator
from prunelimit.lanczos import slq
from prunelimit.limit import flat_weights, prediction_spread
from prunelimit.report import BudgetRecord
from prunelimit.store import EXECUTION_KNOB, Recompute


@dataclasses.dataclass(frozen=True)
class DataSizeConfig(ProfiledConfig):
    """Sizes N for G (certified to ``tolerance``) and for |H| (SLQ, steps x probes)."""

    PROFILE_OVERRIDES: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {
            "ggn_sizes": (100, 200),
            "tolerance": 0.2,
            "max_products": 10,
            "hessian_sizes": (100,),
            "hessian_steps": 4,
            "hessian_probes": 1,
        },
        "full": {
            "ggn_sizes": (1_000, 5_000, 20_000, 60_000),
            "hessian_sizes": (1_000, 60_000),
            "hessian_steps": 128,
        },
    }

    task: str = "fc5-cifar10"
    ggn_sizes: tuple[int, ...] = (1_000, 2_000, 5_000)
    tolerance: float = 0.005
    max_products: int = 600
    hessian_sizes: tuple[int, ...] = (1_000, 5_000)
    hessian_steps: int = 64
    hessian_probes: int = 2
    chunk_size: int = dataclasses.field(default=10_000, metadata=EXECUTION_KNOB)
    seed: int = 0


class DataSizeStudy:
    """The points of one ``DataSizeConfig`` under one profile, each computed or loaded."""

    def __init__(self, config: DataSizeConfig, profile: str, recompute: Recompute = False):
        self.config, self.profile, self.recompute = config, profile, recompute
        self.task = task_config(config.task, profile)
        self.study = task_study(self.task, recompute, progress=False)
        self.store = ResultsStore("data_size", profile)

    def retraining_budget(self) -> BudgetRecord:
        """The task's retrained limit as its Part III page has it (the same budget doublings)."""
        budget = self.study.retraining_budget(self.task.budget_doublings)
        assert budget is not None  # every task retrains
        return budget

    @property
    def eps(self) -> float:
        """The task's loss tolerance (its Part III page uses the same)."""
        return self.study.dense().eps

    def _data(self, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        assert self.study.data.train is not None
        inputs, targets = self.study.data.train
        if size > len(inputs):
            raise ValueError(f"N = {size} exceeds the {len(inputs)} training examples")
        return inputs[:size], targets[:size]

    def _point(self, rule: str, size: int, settings: dict, compute) -> dict:
        """One stored point, keyed by what it depends on (the task's trained network included,
        not the other sizes)."""
        key = {
            "task": self.config.task,
            "study": self.study.key,
            "rule": rule,
            "N": size,
            "seed": self.config.seed,
        }
        return self.store.load_or_compute(key | settings, compute, self.recompute)

    def ggn_point(self, size: int) -> dict:
        """G over the first ``size`` training examples: certified bounds on the prediction."""

        def compute() -> dict:
            model, weights = self.study.model.eval(), self.study.weights
            operator = GGNOperator(
                model,
                self.study.loss_fn,
                self._data(size),
                weights,
                dtype=torch.float64,
                chunk_size=self.config.chunk_size,
            )
            result = certified_limit(
                operator,
                weights,
                self.eps,
                self.config.tolerance,
                max_products=self.config.max_products,
                seed=self.config.seed,
            )
            return {
                "N": size,
                "curvature": "G",
                "rank_bound": operator.rank_bound / operator.shape[0],
                **result.to_dict(),
            }

        settings = {"tolerance": self.config.tolerance, "max_products": self.config.max_products}
        return self._point("G", size, settings, compute)

    def hessian_point(self, size: int) -> dict:
        """H over the first ``size`` training examples: SLQ, |lambda| rule, with its spread."""

        def compute() -> dict:
            model, weights = self.study.model.eval(), self.study.weights
            operator = HessianOperator(
                model,
                self.study.loss_fn,
                self._data(size),
                weights,
                chunk_size=self.config.chunk_size,
            )
            start = time.perf_counter()
            spectrum = slq(
                operator,
                self.config.hessian_steps,
                self.config.hessian_probes,
                seed=self.config.seed,
                basis_dtype=torch.float32,
            )
            seconds = time.perf_counter() - start
            spread = prediction_spread(spectrum, flat_weights(weights), self.eps)
            return {"N": size, "curvature": "|H|", "seconds": seconds, **spread.to_dict()}

        settings = {"steps": self.config.hessian_steps, "probes": self.config.hessian_probes}
        return self._point("|H|", size, settings, compute)

    def run(self) -> dict[str, list[dict]]:
        """Every point: {"G": [...], "|H|": [...]} in increasing N."""
        return {
            "G": [self.ggn_point(n) for n in self.config.ggn_sizes],
            "|H|": [self.hessian_point(n) for n in self.config.hessian_sizes],
        }


# ----------------------------------------------------------------------------- analysis
def trend(points: list[dict]) -> tuple[float, float]:
    """(slope, intercept) of log10(rho) against log10(N) over the certified midpoints."""
    sizes = np.log10([p["N"] for p in points])
    middles = np.log10([p["rho"] for p in points])
    slope, intercept = np.polyfit(sizes, middles, 1)
    return float(slope), float(intercept)


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
