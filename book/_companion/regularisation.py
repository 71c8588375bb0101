"""Part IV: l2 regularisation through the limit. The paper's reading: an l2 penalty shrinks the
weights, so R (the distance from w* to its sparse projection) and with it the predicted limit
fall. Four networks of the Part IV task are trained from the same seed: with the task's l1
penalty or none, each with and without an l2 penalty; each one's R at fixed ratios, its
certified prediction and its actual one-shot and retrained limits are compared.
"""

import dataclasses
import math
from typing import Any, ClassVar

import numpy as np

from companion.baselines import BaselinesConfig, certified_spec, seed_config
from companion.profiles import ProfiledConfig
from companion.tasks import DATA_FACTS, ExperimentConfig, task_study
from prunelimit.certified import CertifiedLimit
from prunelimit.report import DenseRecord, OneShotRecord, RetrainedRecord
from prunelimit.store import Recompute
from prunelimit.tables import Table, table

RATIOS = (0.2, 0.1, 0.05)  # fractions kept at which R is compared


@dataclasses.dataclass(frozen=True)
class RegularisationConfig(ProfiledConfig):
    """The l2 coefficient added (l2 / 2 sum w^2 over the prunable weights). SGD with momentum m
    shrinks a weight by about exp(-lr l2 steps / (1 - m)) from l2 alone: the common 5e-4 gives
    0.02 over 200 epochs of CIFAR-10 at lr 0.01 and m = 0.9; the cpu profile's few hundred
    steps need about 0.05 for as much."""

    PROFILE_OVERRIDES: ClassVar[dict[str, dict[str, Any]]] = {"full": {"l2": 5e-4}}

    l2: float = 0.05

    def shrinkage(self, learning_rate: float, steps: int, momentum: float = 0.0) -> float:
        """exp(-lr l2 steps / (1 - momentum)): what l2 alone does to a weight over ``steps``
        SGD steps (the momentum's geometric sum multiplies the step)."""
        return float(np.exp(-learning_rate * self.l2 * steps / (1 - momentum)))

    def sentence(self, task: ExperimentConfig) -> str:
        """The coefficient and the shrinkage it gives over the task's SGD steps."""
        recipe, images = task.recipe, task.data.train_limit or DATA_FACTS[task.data.name][3]
        steps = recipe.epochs * math.ceil(images / recipe.batch_size)
        shrinkage = self.shrinkage(recipe.lr, steps, recipe.momentum)
        return (
            f"The l2 coefficient is {self.l2:g}: alone, over the {steps:,} SGD steps of this "
            f"training at learning rate {recipe.lr:g} and momentum {recipe.momentum:g}, it would "
            f"shrink a weight by the factor {shrinkage:.2g}."
        )


@dataclasses.dataclass(frozen=True)
class Measured:
    """What the page reads of one network's study: its dense record (R(k) included), the
    certified G bounds of its predicted limit, and its actual one-shot and retrained limits."""

    dense: DenseRecord
    certified: CertifiedLimit
    one_shot: OneShotRecord
    retrained: RetrainedRecord | None


@dataclasses.dataclass(frozen=True)
class Trained:
    """One of the four networks: its penalties and what was measured on it."""

    name: str
    l1: float
    l2: float
    report: Measured


def run(
    config: RegularisationConfig, baselines: BaselinesConfig, profile: str, recompute: Recompute
) -> list[Trained]:
    """The four networks (l1, l1 + l2, none, l2), trained or loaded, and what they measure."""
    task = seed_config(baselines, profile, 0)
    l1 = task.recipe.coefficient
    networks = []
    for name, first, second in (
        ("l1", l1, 0.0),
        ("l1 + l2", l1, config.l2),
        ("none", 0.0, 0.0),
        ("l2", 0.0, config.l2),
    ):
        recipe = dataclasses.replace(task.recipe, coefficient=first, l2=second)
        changed = dataclasses.replace(task, recipe=recipe)
        # the stages the page shows, no SLQ on H (1.5 min a network on the cpu profile); the
        # "l1" network is the baselines page's seed 0, whose stages are loaded
        study = task_study(changed, recompute, progress=False, part="heuristics")
        measured = Measured(
            study.dense(),
            study.certified_prediction(certified_spec(baselines, profile)),
            study.one_shot(),
            study.retrained(),
        )
        networks.append(Trained(name, first, second, measured))
    return networks


def distance_at(report: Measured, ratio: float) -> float:
    """R(k) at the stored k nearest to ``ratio`` D."""
    dense = report.dense
    target = ratio * dense.dimension
    index = int(np.argmin([abs(k - target) for k in dense.distance_k]))
    return dense.distance_R[index]


def networks_table(networks: list[Trained]) -> Table:
    """Per network: test accuracy, ||w*||, R at ``RATIOS``, the certified prediction, the
    one-shot and the retrained limit."""
    rows = []
    for network in networks:
        report = network.report
        bounds = report.certified
        rows.append(
            [
                network.name,
                f"{report.dense.test_accuracy:.3f}" if report.dense.test_accuracy else "-",
                f"{report.dense.distance_R[0]:.1f}",
                *(f"{distance_at(report, r):.2f}" for r in RATIOS),
                f"{bounds.low:.4f}-{bounds.high:.4f}",
                f"{report.one_shot.limit:.3f}",
                f"{report.retrained.limit:.3f}" if report.retrained else "-",
            ]
        )
    columns = [
        "penalty",
        "test acc.",
        "||w*||",
        *(f"R({r:.0%})" for r in RATIOS),
        "predicted (G)",
        "one-shot",
        "retrained",
    ]
    caption = (
        "Four networks from the same seed, trained with the task's l1 penalty or none, each with "
        "and without the l2 penalty: test accuracy, the weights' norm, R with 20%, 10% and 5% of "
        "the weights kept, the certified 99% interval of the predicted limit, and the actual "
        "one-shot and retrained limits (fractions kept)."
    )
    return table(columns, rows, caption)


def findings(networks: list[Trained]) -> str:
    """For each pair (without and with l2): did R, the prediction and the limits fall?"""
    by_name = {n.name: n.report for n in networks}
    sentences = []
    for without, with_l2 in (("l1", "l1 + l2"), ("none", "l2")):
        a, b = by_name[without], by_name[with_l2]
        r_a, r_b = distance_at(a, 0.1), distance_at(b, 0.1)
        bounds_a, bounds_b = a.certified, b.certified
        overlap = " (the two intervals overlap)" if bounds_b.low <= bounds_a.high else ""
        changes = {  # the prediction falls when its interval lies wholly below the other
            "R": r_b < r_a,
            "the certified prediction": bounds_b.high < bounds_a.low,
            "the one-shot limit": b.one_shot.limit < a.one_shot.limit,
        }
        fell = [name for name, down in changes.items() if down]
        held = [
            name + (overlap if name == "the certified prediction" else "")
            for name, down in changes.items()
            if not down
        ]
        verdict = (
            "all fall, as the paper says"
            if not held
            else f"{' and '.join(fell) or 'none of them'} fell; {' and '.join(held)} did not, so "
            + ("the paper's reading holds only in part here" if fell else "it does not hold here")
        )
        sentences.append(
            f"Adding l2 to '{without}': R at 10% kept goes from {r_a:.2f} to {r_b:.2f}, the "
            f"certified prediction from {bounds_a.low:.4f}-{bounds_a.high:.4f} to "
            f"{bounds_b.low:.4f}-{bounds_b.high:.4f}, the one-shot limit from "
            f"{a.one_shot.limit:.3f} to {b.one_shot.limit:.3f}"
            + (
                f" and the retrained limit from {a.retrained.limit:.3f} to {b.retrained.limit:.3f}"
                if a.retrained and b.retrained
                else ""
            )
            + f": {verdict}."
        )
    return " ".join(sentences)
