"""Part IV: gradual pruning through the limit. The paper's reading: pruning in steps, with
retraining between them, lets each step's network be pruned further than the one before, because
every retrained network has its own, lower, predicted limit.

From the seed-0 LOMP network of the baselines page, each step prunes ``fraction`` of the weights
left by magnitude (``prunelimit.iterative`` with no rewinding: the weights carry on from the step
before) and retrains on the mask; steps go on while the retrained network keeps the original
criterion (fixed loss within eps of the dense network's). At every step the current network is
studied as it is (``LimitStudy`` with no training: its own eps, its certified G prediction, its
one-shot limit), all as fractions of the original D.
"""

import copy
import dataclasses
import itertools
from typing import Any, ClassVar

import torch

from companion.baselines import (
    BaselinesConfig,
    as_is_study,
    certified_spec,
    seed_config,
    seed_study,
)
from companion.profiles import ProfiledConfig, ResultsStore
from prunelimit.certified import CertifiedLimit
from prunelimit.iterative import imp_schedule, iterative_magnitude_pruning
from prunelimit.models import prunable_parameters
from prunelimit.store import Recompute
from prunelimit.study import CertifiedSpec, LimitStudy
from prunelimit.tables import Table, table
from prunelimit.training import evaluate, train


@dataclasses.dataclass(frozen=True)
class GradualConfig(ProfiledConfig):
    """Each step prunes ``fraction`` of the weights left and retrains ``epochs``; at most
    ``steps`` steps."""

    PROFILE_OVERRIDES: ClassVar[dict[str, dict[str, Any]]] = {"smoke": {"steps": 3, "epochs": 1}}

    fraction: float = 0.5
    steps: int = 7
    epochs: int = 2

    def sentence(self) -> str:
        return (
            f"Each step prunes {self.fraction:.0%} of the weights left and retrains "
            f"{self.epochs} epoch{'s' if self.epochs != 1 else ''} on the mask."
        )


def _current_prediction(
    study: LimitStudy,
    model: torch.nn.Module,
    spec: CertifiedSpec,
    profile: str,
    task: str,
    recompute: Recompute,
) -> tuple[CertifiedLimit, float, float]:
    """The study of ``model`` as it is: (its certified prediction with ``spec``, its one-shot
    limit, its eps)."""
    current = as_is_study(
        study, copy.deepcopy(model), spec, profile, task, recompute, retrain=False
    )
    return current.certified_prediction(), current.one_shot().limit, current.dense().eps


def run(
    config: GradualConfig, baselines: BaselinesConfig, profile: str, recompute: Recompute = False
) -> list[dict]:
    """The steps (step 0: the trained network), each with its kept ratio, fixed loss, whether it
    keeps the original criterion, and its own prediction, one-shot limit and eps; stored under
    ``gradual``."""
    study = seed_study(baselines, profile, 0, recompute)
    task = seed_config(baselines, profile, 0)
    store = ResultsStore("gradual", profile)
    spec = certified_spec(baselines, profile)

    def compute() -> list[dict]:
        dense = study.dense()
        threshold = dense.fixed_loss + dense.eps
        model = copy.deepcopy(study.model)
        recipe = study.retraining_recipe(config.epochs)
        data = study.data
        assert data.train is not None, "the task trains"

        def record(k: int) -> dict:
            loss, _ = evaluate(model, *data.fixed)
            bounds, one_shot, eps = _current_prediction(
                study, model, spec, profile, task.task, recompute
            )
            return {
                "ratio": k / dense.dimension,
                "loss": loss,
                "passed": loss <= threshold,
                "low": bounds.low,
                "high": bounds.high,
                "one_shot": one_shot,
                "eps": eps,
            }

        steps = [record(dense.dimension)]

        def retrain(masks: list[torch.Tensor]) -> None:
            train(model, *data.train, recipe, augment=data.augment, progress=False)

        def after_step(k: int, masks: list[torch.Tensor]) -> bool:
            steps.append(record(k))
            return steps[-1]["passed"]

        counts = imp_schedule(dense.dimension, config.fraction, config.steps)
        iterative_magnitude_pruning(
            prunable_parameters(model), counts, lambda: None, retrain, after_step
        )
        return steps

    key = {"study": study.key, "certified": dataclasses.asdict(spec)} | dataclasses.asdict(config)
    result = store.load_or_compute(key, compute, recompute)
    assert isinstance(result, list)
    return result


def steps_table(steps: list[dict]) -> Table:
    """One row per step: ratio reached, its loss against the criterion, its own prediction,
    eps and one-shot limit."""
    rows = [
        [
            str(index),
            f"{step['ratio']:.4f}",
            f"{step['loss']:.4f}",
            "yes" if step["passed"] else "no",
            f"{step['low']:.4f}-{step['high']:.4f}",
            f"{step['one_shot']:.4f}",
        ]
        for index, step in enumerate(steps)
    ]
    columns = ["step", "kept", "loss", "within eps", "predicted (G)", "one-shot"]
    caption = (
        "Gradual magnitude pruning with retraining between steps: the fraction of the original "
        "weights kept, the retrained network's training loss and whether it stays within eps of "
        "the dense network's, and that network's own certified 99% predicted limit and one-shot "
        "limit (fractions of the original weights)."
    )
    return table(columns, rows, caption)


def findings(steps: list[dict]) -> str:
    """Does the prediction fall step by step, and does it stay below the ratio reached?"""
    passed = [s for s in steps if s["passed"]]
    if len(passed) < 2:
        return (
            "The first step already broke the original criterion (loss within eps of the dense "
            "network's), so gradual pruning gained nothing here."
        )
    highs = [s["high"] for s in steps]
    falling = all(b <= a for a, b in itertools.pairwise(highs))
    flat = max(highs) - min(highs) < 1e-4
    below = all(s["high"] < s["ratio"] for s in passed)
    last = passed[-1]
    return (
        f"Gradual pruning kept the original criterion down to {last['ratio']:.4f} of the weights "
        f"in {len(passed) - 1} step{'s' if len(passed) != 2 else ''}"
        + (
            f" (the next step, to {steps[len(passed)]['ratio']:.4f}, failed). "
            if len(steps) > len(passed)
            else " (every step run passed). "
        )
        + "The upper end of the certified prediction "
        + (
            "stays level"
            if flat
            else "falls step by step"
            if falling
            else "does not fall at every step"
        )
        + f", from {highs[0]:.4f} to {highs[-1]:.4f}, and "
        + (
            "at every step it lies below the ratio reached: each network is predicted to "
            "prune further. "
            if below
            else "it is not below the ratio reached at every step. "
        )
        + (
            "So the prediction falls step by step as the paper says."
            if falling and not flat
            else "So the step-by-step fall of the prediction the paper describes is not seen here."
        )
    )
