"""Part IV: weight scaling, and a rescaling that does not change the network.

The paper explains with the threshold why larger weights prune worse: R grows with the weights.
Two experiments on the seed-0 LOMP network of the baselines page, each variant its own
``LimitStudy`` of the given weights (no training: its own eps and dense loss, the certified G
prediction over the task's examples, the one-shot limit and the limit retrained on the mask):

- every prunable weight multiplied by c (the network changes: its logits scale by about c^depth);
- layer pairs of the ReLU network rescaled by (a, 1/a) (``prunelimit.rescaling``): the same
  function, so its loss, eps and accuracy are the same, but R and the magnitude masks move.
"""

import copy
import dataclasses
from typing import Any, ClassVar

import torch
from torch import nn

from companion.baselines import (
    BaselinesConfig,
    as_is_study,
    certified_spec,
    seed_config,
    seed_study,
)
from companion.profiles import ProfiledConfig
from prunelimit.certified import CertifiedLimit, NotPositiveSemidefiniteError
from prunelimit.models import prunable_parameters
from prunelimit.report import DenseRecord, OneShotRecord, RetrainedRecord
from prunelimit.rescaling import relu_pairs, rescaled
from prunelimit.store import Recompute
from prunelimit.study import LimitStudy
from prunelimit.tables import Table, table


@dataclasses.dataclass(frozen=True)
class ScalingConfig(ProfiledConfig):
    """Scale factors c for all weights, and factors a for the first layer pair (a, 1/a)."""

    PROFILE_OVERRIDES: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {"scales": (1.0, 3.0), "rescalings": (0.25, 4.0)}
    }

    scales: tuple[float, ...] = (1.0, 2.0, 3.0, 4.0, 5.0)
    rescalings: tuple[float, ...] = (0.25, 0.5, 2.0, 4.0)


def scaled_copy(model: nn.Module, factor: float) -> nn.Module:
    """A copy of ``model`` with every prunable weight multiplied by ``factor``."""
    copied = copy.deepcopy(model)
    with torch.no_grad():
        for weight in prunable_parameters(copied):
            weight.mul_(factor)
    return copied


def first_pair_rescaled(model: nn.Module, factor: float) -> nn.Module:
    """A copy computing the same function: the first layer (weight and bias) times ``factor``,
    the second layer's weight divided by it."""
    assert isinstance(model, nn.Sequential), "the Part IV networks are sequential MLPs"
    pairs = relu_pairs(model)
    return rescaled(model, [factor, *[1.0] * (len(pairs) - 1)])


@dataclasses.dataclass(frozen=True)
class VariantReport:
    """What a variant's study measured: its dense record, one-shot and retrained limits, and
    its certified prediction, or why the bounds were refused (a scaled network's saturated
    softmax leaves G so small that rounding shows as a negative eigenvalue)."""

    dense: DenseRecord
    one_shot: OneShotRecord
    retrained: RetrainedRecord | None
    certified: CertifiedLimit | None
    refusal: str = ""

    @property
    def predicted(self) -> str:
        if self.certified is None:
            return "refused: G not PSD to rounding"
        return f"{self.certified.low:.4f}-{self.certified.high:.4f}"


@dataclasses.dataclass(frozen=True)
class Variant:
    """One changed network: what was done to it and what its study measured."""

    change: str
    factor: float
    report: VariantReport


def measure(study: LimitStudy) -> VariantReport:
    """The variant study's stages, the certified bounds kept apart: a refusal is reported."""
    dense, one_shot, retrained = study.dense(), study.one_shot(), study.retrained()
    try:
        return VariantReport(dense, one_shot, retrained, study.certified_prediction())
    except NotPositiveSemidefiniteError as error:
        return VariantReport(dense, one_shot, retrained, None, str(error))


def run(
    config: ScalingConfig, baselines: BaselinesConfig, profile: str, recompute: Recompute = False
) -> list[Variant]:
    """Every variant of the seed-0 network (c = 1 is the network itself), computed or loaded."""
    base = seed_study(baselines, profile, 0, recompute)
    task = seed_config(baselines, profile, 0)
    spec = certified_spec(baselines, profile)
    changes = [("scaled", c, scaled_copy(base.model, c)) for c in config.scales]
    changes += [("rescaled", a, first_pair_rescaled(base.model, a)) for a in config.rescalings]
    variants = []
    for change, factor, model in changes:
        study = as_is_study(base, model, spec, profile, task.task, recompute)
        variants.append(Variant(change, factor, measure(study)))
    return variants


def variants_table(variants: list[Variant]) -> Table:
    """Per variant: the dense loss and eps, ||w*||, R at 10% kept, the certified prediction and
    the one-shot and retrained limits."""
    rows = []
    for variant in variants:
        report, dense = variant.report, variant.report.dense
        at = dense.distance_k.index(
            min(dense.distance_k, key=lambda k: abs(k - dense.dimension // 10))
        )
        label = (
            f"all weights x {variant.factor:g}"
            if variant.change == "scaled"
            else f"layers 1, 2 x ({variant.factor:g}, 1/{variant.factor:g})"
        )
        rows.append(
            [
                label,
                f"{dense.fixed_loss:.4f}",
                f"{dense.eps:.4f}",
                f"{dense.distance_R[0]:.1f}",
                f"{dense.distance_R[at]:.2f}",
                report.predicted,
                f"{report.one_shot.limit:.3f}",
                f"{report.retrained.limit:.3f}" if report.retrained else "-",
            ]
        )
    columns = [
        "network",
        "loss",
        "eps",
        "||w*||",
        "R(10%)",
        "predicted (G)",
        "one-shot",
        "retrained",
    ]
    caption = (
        "The seed-0 LOMP network scaled, or rescaled without changing its function: training "
        "loss on the fixed examples, eps, the weights' norm, R with 10% of the weights kept, the "
        "certified 99% interval of the predicted limit, and the actual one-shot and retrained "
        "limits (fractions kept)."
    )
    return table(columns, rows, caption)


def findings(variants: list[Variant]) -> str:
    """What scaling and rescaling did to R, the prediction and the actual limits."""
    scaled = [v for v in variants if v.change == "scaled"]
    same = [v for v in variants if v.change == "rescaled"]
    base = next(v for v in scaled if v.factor == 1.0).report
    top = max(scaled, key=lambda v: v.factor)
    big = top.report

    def limits(report: VariantReport) -> str:
        retrained = f", retrained {report.retrained.limit:.3f}" if report.retrained else ""
        return f"predicted {report.predicted}, one-shot {report.one_shot.limit:.3f}{retrained}"

    sentences = [
        f"Scaling every weight by {top.factor:g} multiplies ||w*|| and R by {top.factor:g}, but "
        f"it also changes the network: its training loss goes from {base.dense.fixed_loss:.3f} "
        f"to {big.dense.fixed_loss:.3f} and eps (the spread of the mini-batch loss) from "
        f"{base.dense.eps:.4f} to {big.dense.eps:.4f}. The limits move from ({limits(base)}) to "
        f"({limits(big)}).",
        "The paper says scaling up makes a network harder to prune; here the one-shot limit "
        + (
            "rose, as it says."
            if big.one_shot.limit > base.one_shot.limit
            else "did not rise: with eps and the dense loss measured on the scaled network, as "
            "the theory defines them, the scaled network prunes as far or further."
        ),
    ]
    if same:
        norms = [v.report.dense.distance_R[0] for v in same]
        one_shots = [v.report.one_shot.limit for v in same]
        sentences.append(
            f"Rescaling the first two layers by (a, 1/a) keeps the function, the loss and eps, "
            f"yet ||w*|| ranges over {min(norms):.1f}-{max(norms):.1f} (against "
            f"{base.dense.distance_R[0]:.1f}) and the one-shot magnitude limit over "
            f"{min(one_shots):.3f}-{max(one_shots):.3f} (against {base.one_shot.limit:.3f}): "
            "the magnitudes that R and the masks are built from are not a property of the "
            "function the network computes, "
            + (
                "and the actual limit of magnitude pruning moves with them."
                if max(one_shots) - min(one_shots) > 0.01
                else "though here the actual one-shot limit hardly moves with them."
            )
        )
    return " ".join(sentences)
