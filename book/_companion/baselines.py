"""Part IV: LOMP against the baselines the paper compares it with. Each method's limit is the
retrained limit its masks reach: the fewest weights kept whose network, retrained on the mask,
keeps its fixed training loss within eps of the dense LOMP network's (Part III's criterion).

- LOMP: l1 training, global magnitude masks (one-shot, and retrained on the mask);
- IMP with rewinding: ``LimitStudy.imp`` (Frankle and Carbin; rewound to an early epoch);
- Smart-Ratio: layer keep-ratios by depth, random within a layer (Su et al. 2020);
- random masks, and magnitude masks taken layer by layer.

Every method runs on the same trained network per task and seed (the seed sets the initial
weights, the training order, the random masks and the retraining order); the certified G
interval of that network is the prediction beside them. The studies are stored under
``results/<profile>/heuristics/<task>/<study key>/``.
"""

import dataclasses
import math
from typing import Any, ClassVar

import numpy as np
from IPython.display import Markdown
from torch import nn

from companion.profiles import ProfiledConfig, results_root
from companion.tasks import (
    ExperimentConfig,
    describe_run,
    describe_task,
    task_config,
    task_study,
)
from prunelimit.store import Recompute
from prunelimit.study import CertifiedSpec, LimitStudy
from prunelimit.tables import Table, table

METHODS = (
    "LOMP (one-shot)",
    "LOMP (retrained)",
    "IMP with rewinding",
    "Smart-Ratio",
    "random",
    "layerwise magnitude",
)
RULES = {"Smart-Ratio": "smart-ratio", "random": "random", "layerwise magnitude": "layerwise"}


@dataclasses.dataclass(frozen=True)
class BaselinesConfig(ProfiledConfig):
    """The Part III tasks whose networks are pruned, on at most ``train_limit`` training images,
    over ``seeds``; IMP prunes ``imp_fraction`` of what is left per round, rewinding to the
    weights after ``imp_rewind_epoch`` epochs. The other Part IV pages study the first task's
    network (``task``)."""

    PROFILE_OVERRIDES: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {"tasks": ("fc5-cifar10",), "seeds": (0, 1)},
        "full": {"train_limit": None, "imp_fraction": 0.2},  # Frankle and Carbin's 20% a round
    }

    tasks: tuple[str, ...] = ("fc5-cifar10", "alexnet-cifar10")
    train_limit: int | None = 10_000
    seeds: tuple[int, ...] = (0, 1, 2)
    # on a CPU, half of what is left a round: 20% took 14 rounds (229 s a seed) to AlexNet's
    # limit, a third of Part IV's time; the limit is then known to within a factor 2
    imp_fraction: float = 0.5
    imp_rewind_epoch: int = 1

    @property
    def task(self) -> str:
        """The task of the other Part IV pages: the first one."""
        return self.tasks[0]


def seed_config(
    config: BaselinesConfig, profile: str, seed: int, task_name: str | None = None
) -> ExperimentConfig:
    """The config of ``task_name`` (default: ``config.task``) under ``profile`` with this seed
    and the training set limited."""
    task = task_config(task_name or config.task, profile)
    limits = [n for n in (task.data.train_limit, config.train_limit) if n is not None]
    data = dataclasses.replace(task.data, train_limit=min(limits, default=None))
    return dataclasses.replace(task, seed=seed, data=data)


def network_sentence(config: BaselinesConfig, profile: str, extra: str = "") -> str:
    """Markdown for the top of a Part IV page: the paper's task and this profile's stand-in,
    the seed-0 network of the baselines page, and ``extra``."""
    return (
        describe_task(seed_config(config, profile, 0))
        + " The network of seed 0 of {doc}`baselines`."
        + (f" {extra}" if extra else "")
    )


def page_introduction(config: BaselinesConfig, profile: str) -> str:
    """Markdown for the top of the baselines page: each network's task and stand-in, the seeds
    and IMP's fraction a round."""
    tasks = [describe_task(seed_config(config, profile, 0, task)) for task in config.tasks]
    seeds = ", ".join(map(str, config.seeds))
    return "\n\n".join(
        [
            *tasks,
            f"Seeds {seeds}: each seed trains its own network.",
            f"IMP prunes {config.imp_fraction:.0%} of the weights left a round.",
        ]
    )


def certified_spec(config: BaselinesConfig, profile: str) -> CertifiedSpec:
    """The profile's product budget for the certified G bounds, used on every Part IV page."""
    spec = seed_config(config, profile, 0).certified
    assert spec is not None, "Part IV's task has certified bounds in every profile"
    return spec


def seed_study(
    config: BaselinesConfig,
    profile: str,
    seed: int,
    recompute: Recompute = False,
    task_name: str | None = None,
) -> LimitStudy:
    """The LOMP study of one seed (of ``task_name``, default ``config.task``), stored under
    ``heuristics``."""
    return task_study(
        seed_config(config, profile, seed, task_name), recompute, progress=False, part="heuristics"
    )


def as_is_study(
    base: LimitStudy,
    model: nn.Module,
    spec: CertifiedSpec,
    profile: str,
    task: str,
    recompute: Recompute = False,
    retrain: bool = True,
) -> LimitStudy:
    """A study of ``model`` as it is (no training; a changed copy of ``base``'s network), with
    ``base``'s data and settings and the profile's certified budget ``spec``, stored beside the
    seeds' studies. With ``retrain``, its retraining trials use the study default for a model
    without a recipe (1 epoch at learning rate 0.01, the FC tasks' own rate)."""
    settings = base.settings
    return LimitStudy(
        model,
        base.data,
        recipe=None,
        curvature="ggn",
        retrain_epochs=settings.pruning.retrain_epochs if retrain else 0,
        hessian=settings.hessian,
        certified=spec,
        pruning=settings.pruning,
        store=results_root() / profile / "heuristics" / task,
        seed=settings.seed,
        progress=False,
        recompute=recompute,
        profile=profile,
    )


def seed_limits(
    config: BaselinesConfig,
    profile: str,
    seed: int,
    recompute: Recompute = False,
    task_name: str | None = None,
) -> dict[str, float]:
    """Method -> the limit (fraction kept) it reaches on this seed's network of ``task_name``
    (default ``config.task``); "<method> censored" -> 1.0 when no trial of its search failed
    down to the search's floor (the limit is then at most the value shown); "G low" and "G
    high": the certified interval of the predicted limit (the profile's product budget);
    "seed"."""
    study = seed_study(config, profile, seed, recompute, task_name)
    bounds = study.certified_prediction(certified_spec(config, profile))
    retrained = study.retrained()
    assert retrained is not None, "the task's studies retrain"
    records = {
        "LOMP (retrained)": retrained,
        "IMP with rewinding": study.imp(config.imp_fraction, config.imp_rewind_epoch),
    }
    records |= {method: study.baseline(rule, seed) for method, rule in RULES.items()}
    limits = {"LOMP (one-shot)": study.one_shot().limit}
    limits |= {method: record.limit for method, record in records.items()}
    limits |= {  # no failing trial: the search stopped at its floor
        f"{method} censored": float(record.censored) for method, record in records.items()
    }
    return limits | {"G low": bounds.low, "G high": bounds.high, "seed": seed}


def run(
    config: BaselinesConfig, profile: str, recompute: Recompute = False
) -> dict[str, list[dict[str, float]]]:
    """Task -> ``seed_limits`` for every seed of ``config``, computed or loaded."""
    return {
        task: [seed_limits(config, profile, seed, recompute, task) for seed in config.seeds]
        for task in config.tasks
    }


def mean_and_error(values: list[float]) -> tuple[float, float]:
    """The mean and its standard error (sample standard deviation / sqrt(n); 0 for one)."""
    array = np.asarray(values, dtype=np.float64)
    error = float(array.std(ddof=1) / math.sqrt(array.size)) if array.size > 1 else 0.0
    return float(array.mean()), error


def limits_table(per_seed: list[dict[str, float]], network: str = "") -> Table:
    """One row per method: its limit per seed and their mean with its standard error
    (``network``: the network's name, for the caption)."""
    rows = []
    for method in METHODS:
        values = [limits[method] for limits in per_seed]
        mean, error = mean_and_error(values)
        cells = [
            ("≤ " if limits.get(f"{method} censored") else "") + f"{limits[method]:.4f}"
            for limits in per_seed
        ]
        rows.append([method, *cells, f"{mean:.4f} ± {error:.4f}"])
    ggn = [f"{s['G low']:.4f}-{s['G high']:.4f}" for s in per_seed]
    rows.append(["predicted (certified G)", *ggn, ""])
    seeds = [f"seed {int(limits['seed'])}" for limits in per_seed]
    caption = (
        (f"{network}: f" if network else "F")
        + "raction of weights kept at each method's limit (smaller: sparser), per seed, and the "
        "mean ± its standard error over seeds (≤: no trial failed down to the search's floor, "
        "so the limit is at most that); last row: the certified 99% interval of the predicted "
        "limit of the same LOMP network."
    )
    return table(["method", *seeds, "mean ± s.e."], rows, caption)


def findings(per_seed: list[dict[str, float]], imp_fraction: float) -> str:
    """The ranking, LOMP's retrained limit against each baseline (apart by more than twice
    their combined standard error and, for IMP, than its step: its limit is known only to within
    a factor 1 / (1 - ``imp_fraction``)), and the prediction against them."""
    summary = {m: mean_and_error([s[m] for s in per_seed]) for m in METHODS}
    ranked = sorted(summary, key=lambda m: summary[m][0])
    lomp, lomp_error = summary["LOMP (retrained)"]
    imp_step = 1 / (1 - imp_fraction)
    comparisons = []
    for method in ("IMP with rewinding", "Smart-Ratio", "random", "layerwise magnitude"):
        other, error = summary[method]
        step = imp_step if method == "IMP with rewinding" else 1.0
        beyond_errors = abs(other - lomp) > 2 * math.hypot(error, lomp_error)
        apart = beyond_errors and max(other, lomp) > step * min(other, lomp)
        word = ("sparser than" if lomp < other else "denser than") if apart else "level with"
        comparisons.append(f"{word} {method} ({other:.3f})")
    top = max(s["G high"] for s in per_seed)
    sparsest = summary[ranked[0]][0]
    prediction = (
        f" Every method stops above the certified prediction (at most {top:.4f}): the sparsest "
        f"method, {ranked[0]}, keeps {sparsest / top:.1f} times as many weights."
        if sparsest > top
        else f" The sparsest method, {ranked[0]} ({sparsest:.4f}), reaches the certified "
        f"prediction's upper end ({top:.4f}) or goes below it."
    )
    return (
        f"From sparsest to densest over {len(per_seed)} seeds: {'; '.join(ranked)}. "
        f"LOMP retrained on its mask ({lomp:.3f} ± {lomp_error:.3f}) is "
        + "; ".join(comparisons)
        + " (apart: more than twice their combined standard error, and for IMP a ratio beyond"
        + f" its step, {imp_step:.2g}x)."
        + prediction
    )


def summary_table(per_task: dict[str, list[dict[str, float]]], profile: str) -> Table:
    """One row per method, one column per task's network: the mean limit ± its standard error
    over seeds (≤ when a seed's search was censored), and the certified prediction's range."""
    columns = {task: describe_run(task_config(task, profile)).label for task in per_task}
    rows = []
    for method in METHODS:
        cells = []
        for per_seed in per_task.values():
            mean, error = mean_and_error([limits[method] for limits in per_seed])
            censored = any(limits.get(f"{method} censored") for limits in per_seed)
            cells.append(("≤ " if censored else "") + f"{mean:.3f} ± {error:.3f}")
        rows.append([method, *cells])
    rows.append(
        [
            "predicted (certified G)",
            *(
                f"{min(s['G low'] for s in ps):.4f}-{max(s['G high'] for s in ps):.4f}"
                for ps in per_task.values()
            ),
        ]
    )
    seeds = len(next(iter(per_task.values())))
    caption = (
        f"Fraction of weights kept at each method's limit, mean ± standard error over {seeds} "
        "seeds (each seed trains its own network; ≤: some seed's search found no failing "
        "trial down to its floor); last row: the certified 99% intervals of the predicted limit "
        "over the seeds' LOMP networks."
    )
    return table(["method", *columns.values()], rows, caption)


def task_sections(
    per_task: dict[str, list[dict[str, float]]], profile: str, imp_fraction: float
) -> list[Any]:
    """Per task: a heading line with its network, the per-seed table and ``findings``."""
    parts: list[Any] = []
    for task, per_seed in per_task.items():
        label = describe_run(task_config(task, profile)).label
        parts += [
            Markdown(f"**{label}** ({task} in the paper's registry)"),
            limits_table(per_seed, label),
            Markdown(findings(per_seed, imp_fraction)),
        ]
    return parts
