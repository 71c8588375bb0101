"""Part III: the paper's eight tasks, each a thin builder of a ``prunelimit.LimitStudy``.

``task_config(name, profile)`` says what a task runs under a profile; ``task_study(config)``
builds the study (model, data and recipe from the registry; the |lambda| rule of the paper) with
its stages stored under ``results/<profile>/experiments/<task>/<study key>/`` (training also
checkpoints every epoch to ``model.pt`` there, which git ignores), so a killed run resumes.
"""

import dataclasses
import fractions
import os
from pathlib import Path
from typing import Any

import torch
from torch import distributed as dist

from companion.profiles import check_profile, results_root
from prunelimit.costs import CostEstimate, Unit
from prunelimit.data import NUM_CLASSES
from prunelimit.models import FULLY_CONNECTED, build_model, count_parameters
from prunelimit.report import DenseRecord, LimitReport, OneShotRecord, TrainingRecord
from prunelimit.store import Recompute
from prunelimit.study import CertifiedSpec, HessianSpec, LimitStudy, PruningSpec, StudyData
from prunelimit.training import Recipe
from prunelimit.views import DataSpec, load_views, random_crop_flip


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """One task under one profile: everything that changes its results (hashed)."""

    task: str
    profile: str
    model: str
    width: float
    data: DataSpec
    recipe: Recipe
    hessian: HessianSpec
    pruning: PruningSpec
    seed: int = 0
    budget_doublings: int = 2  # the retraining budget is doubled up to this often
    # the certified G bounds beside the |H| prediction (the cpu profile affords a small product
    # budget: 3-6 s per float64 product on its conv nets)
    certified: CertifiedSpec | None = dataclasses.field(default_factory=CertifiedSpec)


# ----------------------------------------------------------------------------- the eight tasks
def _recipe(model: str, coefficient: float) -> Recipe:
    if model.startswith("resnet"):
        return Recipe(200, 0.1, coefficient=coefficient, warmup_epochs=5, schedule="cosine")
    return Recipe(200, 0.01, coefficient=coefficient)


@dataclasses.dataclass(frozen=True)
class Task:
    """A task of the paper, with its full-profile recipe and its cpu stand-in."""

    model: str
    dataset: str
    coefficient: float
    cpu: dict[str, Any]
    about: str  # the task page's introduction: the model and the paper's recipe (MyST)
    steps: int = 128


# every Fashion-MNIST stand-in trains on 10,000 images, takes eps and the one-shot limit over a
# fixed set of 2,000 and tests on 2,000 (the run of 2026-12-05 took 95 min with FC5 and FC12 on
# all 60,000, fixed sets of 5,000-10,000 and FC tested on 10,000; these cuts are part of what
# brings the cold cpu run near 60 min)
_FASHION = {"name": "fashion-mnist", "test_limit": 2000, "fixed_size": 2000, "train_limit": 10000}
TASKS = {
    "fc5-cifar10": Task(
        "fc5",
        "cifar10",
        5e-5,
        {"data": _FASHION | {"image_size": 28, "hessian_size": 1000}, "epochs": 8},
        (
            "FC5 is the paper's five-layer fully connected network (input, 1000, 600, 300, 100, "
            "classes). The paper trains it on CIFAR-10 with an l1 penalty of 5e-5."
        ),
    ),
    "fc12-cifar10": Task(
        "fc12",
        "cifar10",
        5e-5,
        {"data": _FASHION | {"image_size": 28, "hessian_size": 500}, "epochs": 5},
        (
            "FC12 is a twelve-layer tapering fully connected network (1000 down to 100 units). It "
            "trains only with Kaiming initialisation {cite:p}`he2015delving`; the paper trains it "
            "on CIFAR-10 with an l1 penalty of 5e-5."
        ),
    ),
    "alexnet-cifar10": Task(
        "alexnet",
        "cifar10",
        3e-5,
        {"data": _FASHION, "width": 0.125, "epochs": 5},
        (
            "AlexNet {cite:p}`krizhevsky2012imagenet` here is the usual small-image variant (five "
            "3x3 convolutions, two hidden layers of 4096 units; see `prunelimit.models.alexnet` "
            "for why not the authors' 11x11 stem). The paper uses an l1 penalty of 3e-5 and 96 "
            "Lanczos steps."
        ),
        steps=96,
    ),
    "vgg16-cifar10": Task(
        "vgg16_bn",
        "cifar10",
        1e-4,
        {"data": _FASHION, "width": 0.125, "epochs": 5},
        (
            "VGG16 {cite:p}`simonyan2015very` with BatchNorm {cite:p}`ioffe2015batch` after every "
            "convolution, global average pooling and one linear layer; l1 penalty 1e-4 in the "
            "paper. The Hessian is taken in eval mode (BatchNorm uses its running statistics), "
            "which is also how the pruned network is evaluated."
        ),
    ),
    "resnet18-cifar100": Task(
        "resnet18",
        "cifar100",
        5e-5,
        {"data": _FASHION, "width": 0.0625, "epochs": 5},
        (
            "ResNet18 {cite:p}`he2016deep` in its CIFAR variant (3x3 stem, no max pooling), "
            "trained by the paper with learning rate 0.1, five warm-up epochs and cosine decay, "
            "and an l1 penalty of 5e-5."
        ),
    ),
    "resnet50-cifar100": Task(
        "resnet50",
        "cifar100",
        2e-5,
        {"data": _FASHION, "width": 0.0625, "epochs": 5},
        (
            "ResNet50 {cite:p}`he2016deep` with bottleneck blocks in its CIFAR variant; same "
            "schedule as ResNet18, with an l1 penalty of 2e-5."
        ),
    ),
    "resnet18-tinyimagenet": Task(
        "resnet18",
        "tinyimagenet",
        5e-5,
        {"data": {"name": "mnist-5k", "fixed_size": 2000}, "width": 0.0625, "epochs": 12},
        (
            "ResNet18 {cite:p}`he2016deep` on TinyImageNet {cite:p}`le2015tiny` (200 classes, 64 x"
            " 64 images), with the ResNet recipe and an l1 penalty of 5e-5."
        ),
    ),
    "resnet50-tinyimagenet": Task(
        "resnet50",
        "tinyimagenet",
        2e-5,
        {"data": {"name": "mnist-5k", "fixed_size": 2000}, "width": 0.0625, "epochs": 12},
        (
            "ResNet50 {cite:p}`he2016deep` on TinyImageNet {cite:p}`le2015tiny`, with the ResNet "
            "recipe and an l1 penalty of 2e-5."
        ),
    ),
}


def _full_config(name: str, task: Task) -> ExperimentConfig:
    size = 64 if task.dataset == "tinyimagenet" else 32
    return ExperimentConfig(
        task=name,
        profile="full",
        model=task.model,
        width=1.0,
        data=DataSpec(task.dataset, size, hessian_size=5000, augment=True, download=True),
        recipe=_recipe(task.model, task.coefficient),
        hessian=HessianSpec(num_steps=task.steps, chunk_size="auto", reorthogonalize=False),
        pruning=PruningSpec(retrain_epochs=10),
        budget_doublings=1,
        certified=CertifiedSpec(max_products=2000, chunk_size="auto"),
    )


def task_config(name: str, profile: str) -> ExperimentConfig:
    """The config of task ``name`` (see ``TASKS``) under ``profile``.

    full: the paper's data, model and recipe (GPU). cpu: Fashion-MNIST (MNIST-5k for the
    TinyImageNet tasks), padded to 32 x 32 for the conv nets, which are narrowed by ``width``
    and trained for a few epochs with the same optimiser, penalty and schedule shape. smoke: the
    cpu setting shrunk to seconds.
    """
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}: choose one of {', '.join(TASKS)}")
    task, full = TASKS[name], _full_config(name, TASKS[name])
    if check_profile(profile) == "full":
        return full
    cpu = task.cpu
    data = DataSpec(**({"image_size": 32, "hessian_size": 256} | cpu["data"]))
    recipe = dataclasses.replace(full.recipe, epochs=cpu["epochs"])
    if recipe.schedule == "cosine":
        recipe = dataclasses.replace(recipe, warmup_epochs=1, lr=0.05)
    # 48 steps, 16 zero rows and 40 certified products (were 64, 32 and 60): a quarter of the
    # curvature time of the cpu run; the spread and the certified interval show what it costs
    hessian = HessianSpec(num_steps=48, num_probes=2, zero_rows=16)
    config = dataclasses.replace(
        full,
        profile=profile,
        width=cpu.get("width", 1.0),
        data=data,
        recipe=recipe,
        hessian=hessian,
        pruning=PruningSpec(),
        # one doubling (1 -> 2 epochs): a second (-> 4 epochs) took a quarter of the cpu run and
        # decided no further task in the run of 2026-12-05
        budget_doublings=1,
        certified=CertifiedSpec(max_products=40),
    )
    if profile == "cpu":
        return config
    return dataclasses.replace(
        config,
        width=config.width if config.model in FULLY_CONNECTED else min(config.width, 0.0625),
        data=dataclasses.replace(
            data, train_limit=600, test_limit=200, fixed_size=300, hessian_size=100
        ),
        recipe=dataclasses.replace(recipe, epochs=2, warmup_epochs=min(recipe.warmup_epochs, 1)),
        hessian=HessianSpec(num_steps=8, num_probes=2, zero_rows=4, chunk_size=100),
        pruning=PruningSpec(resolution=1e-3, retrain_halvings=2),
        budget_doublings=1,
        certified=CertifiedSpec(max_products=20, chunk_size=100),
    )


# ----------------------------------------------------------------------------- what a run ran
MODEL_TITLES = {
    "fc5": "FC5",
    "fc12": "FC12",
    "alexnet": "AlexNet",
    "vgg16_bn": "VGG16-BN",
    "resnet18": "ResNet18",
    "resnet50": "ResNet50",
}
# name shown, colour channels, native image side, training images
DATA_FACTS = {
    "fashion-mnist": ("Fashion-MNIST", 1, 28, 60_000),
    "mnist-5k": ("MNIST-5k", 1, 28, 4_000),
    "digits": ("digits", 1, 8, 1_500),
    "cifar10": ("CIFAR-10", 3, 32, 50_000),
    "cifar100": ("CIFAR-100", 3, 32, 50_000),
    "tinyimagenet": ("TinyImageNet", 3, 64, 100_000),
}


@dataclasses.dataclass(frozen=True)
class RunDescription:
    """What a config runs, in words: model and width ('' at full width, else e.g. '1/16'), data
    set, image shape, classes, training images, D and epochs."""

    model: str
    width: str
    data: str
    image: str
    classes: int
    training_images: int
    dimension: int
    epochs: int

    @property
    def label(self) -> str:
        """Short form for table rows and plot labels, e.g. 'ResNet18 (1/16) on MNIST-5k'."""
        width = f" ({self.width})" if self.width else ""
        return f"{self.model}{width} on {self.data}"

    def sentence(self) -> str:
        width = f" at {self.width} width" if self.width else ""
        return (
            f"{self.model}{width} on {self.data} ({self.training_images:,} training images of "
            f"{self.image}, {self.classes} classes): D = {self.dimension:,} prunable weights, "
            f"{self.epochs} epochs"
        )


def describe_run(config: ExperimentConfig) -> RunDescription:
    """The model, data and size that ``config`` trains (D from the model built without memory)."""
    data = config.data
    name, channels, side, available = DATA_FACTS[data.name]
    classes = NUM_CLASSES[data.name]
    with torch.device("meta"):
        model = build_model(config.model, channels, data.image_size, classes, config.width)
    image = f"{channels} x {side} x {side}"
    if data.image_size != side:
        image += f" padded to {data.image_size} x {data.image_size}"
    width = fractions.Fraction(config.width).limit_denominator(64)
    return RunDescription(
        model=MODEL_TITLES[config.model],
        width="" if width == 1 else str(width),
        data=name,
        image=image,
        classes=classes,
        training_images=min(available, data.train_limit or available),
        dimension=count_parameters(model)["prunable"],
        epochs=config.recipe.epochs,
    )


def describe_task(config: ExperimentConfig) -> str:
    """Markdown: what the paper ran for this task and what this profile runs instead."""
    paper, ours = describe_run(task_config(config.task, "full")), describe_run(config)
    stand_in = "" if config.profile == "full" else " (a stand-in: see the settings below)"
    return (
        f"**The paper:** {paper.sentence()}.\n\n"
        f"**This page, profile `{config.profile}`:** {ours.sentence()}{stand_in}."
    )


def plain_variant(config: ExperimentConfig) -> ExperimentConfig:
    """The same task trained without the l1 penalty (plain one-shot magnitude pruning)."""
    return dataclasses.replace(config, recipe=dataclasses.replace(config.recipe, coefficient=0.0))


# ----------------------------------------------------------------------------- studies
def task_study(
    config: ExperimentConfig,
    recompute: Recompute = False,
    root: Path | None = None,
    progress: bool = True,
    part: str = "experiments",
    group: dist.ProcessGroup | None = None,
) -> LimitStudy:
    """The ``LimitStudy`` of ``config``: its model (seeded), data views and recipe, the paper's
    |lambda| rule, stored under ``<root>/<profile>/<part>/<task>/`` (root: the results folder;
    part: "experiments" for Part III, "heuristics" for Part IV); ``group``: the processes that
    share its curvature products (see ``LimitStudy``)."""
    views = load_views(config.data)
    torch.manual_seed(config.seed)
    model = build_model(
        config.model, views.channels, config.data.image_size, views.num_classes, config.width
    )
    data = StudyData(
        train=views.train,
        fixed=views.fixed,
        curvature=views.hessian,
        test=views.test,
        augment=random_crop_flip if config.data.augment else None,
    )
    return LimitStudy(
        model,
        data,
        recipe=config.recipe,
        curvature="abs",
        eps_scale=config.hessian.eps_scale,
        retrain_epochs=config.pruning.retrain_epochs,
        hessian=config.hessian,
        pruning=config.pruning,
        store=(root or results_root()) / config.profile / part / config.task,
        seed=config.seed,
        progress=progress,
        recompute=recompute,
        group=group,
        profile=config.profile,
    )


@dataclasses.dataclass(frozen=True)
class PlainRun:
    """The task trained without the l1 penalty: training, the dense model, one-shot pruning."""

    training: TrainingRecord
    dense: DenseRecord
    one_shot: OneShotRecord


def plain_run(
    config: ExperimentConfig,
    recompute: Recompute = False,
    progress: bool = True,
    group: dist.ProcessGroup | None = None,
) -> PlainRun:
    """``plain_variant(config)``'s training, dense record and one-shot sweep."""
    study = task_study(plain_variant(config), recompute, progress=progress, group=group)
    return PlainRun(study.training(), study.dense(), study.one_shot())


def task_report(
    config: ExperimentConfig,
    recompute: Recompute = False,
    progress: bool = True,
    group: dist.ProcessGroup | None = None,
) -> LimitReport:
    """Every stage of the task's study, computed or loaded: the |H| prediction with its spread
    and the certified G bounds over the same N examples, the actual one-shot limit and the
    retrained limit as the retraining budget doubles (``config.budget_doublings`` times)."""
    study = task_study(config, recompute, progress=progress, group=group)
    return study.run(certified=config.certified or False, budget_doublings=config.budget_doublings)


def task_estimate(task: str, profile: str, recompute: Recompute = False) -> str:
    """What the task's page will cost on this machine (its study and the plain run), from a few
    timed units (``LimitStudy.estimate``); "" when everything is stored."""
    config = task_config(task, profile)
    study = task_study(config, recompute, progress=False)
    checks = {"certified": config.certified or False, "budget_doublings": config.budget_doublings}
    lomp = study.estimate(**checks)
    plain_study = task_study(plain_variant(config), recompute, progress=False)
    plain = plain_study.estimate(stages=("train", "one_shot"))
    units = lomp.units + tuple(Unit(f"plain {u.name}", u.seconds, u.count) for u in plain.units)
    return str(CostEstimate(lomp.device, units)) if units else ""


TASKS_ENV = "PRUNELIMIT_TASKS"


def selected_tasks() -> list[str]:
    """The tasks this build runs: those named in ``$PRUNELIMIT_TASKS`` (separated by spaces, as
    in ``make execute TASKS="fc5-cifar10 vgg16-cifar10"``), else all of ``TASKS``."""
    named = os.environ.get(TASKS_ENV, "").split()
    unknown = [name for name in named if name not in TASKS]
    if unknown:
        raise ValueError(f"unknown tasks {unknown} in ${TASKS_ENV}: choose from {list(TASKS)}")
    return [name for name in TASKS if name in named] if named else list(TASKS)


__all__ = [
    "TASKS",
    "ExperimentConfig",
    "PlainRun",
    "plain_run",
    "plain_variant",
    "profile_differences",
    "selected_tasks",
    "task_config",
    "task_estimate",
    "task_report",
    "task_study",
]


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        flat: dict[str, Any] = {}
        for key, item in value.items():
            flat |= _flatten(item, f"{prefix}{key}.")
        return flat
    return {prefix.rstrip("."): value}


def profile_differences(config: ExperimentConfig, reference: ExperimentConfig) -> list[list]:
    """Rows [setting, this config, reference] for every setting on which the two differ ("-"
    where one of them has no such setting, e.g. no certified bounds)."""
    ours, theirs = (_flatten(dataclasses.asdict(c)) for c in (config, reference))
    keys = [*ours, *(key for key in theirs if key not in ours)]
    return [
        [key, ours.get(key, "-"), theirs.get(key, "-")]
        for key in keys
        if ours.get(key, "-") != theirs.get(key, "-") and key not in ("profile", "pruning.grid")
    ]


def task_page(task: str) -> dict[str, str]:
    """The fields of the task page template (book/experiments/task.md) for ``task``: its
    title, the introduction from the registry, the model's name and the task id."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}: choose one of {', '.join(TASKS)}")
    entry, cpu = TASKS[task], task_config(task, "cpu")
    model = MODEL_TITLES[entry.model]
    paper_data, cpu_data = DATA_FACTS[entry.dataset][0], DATA_FACTS[cpu.data.name][0]
    return {
        "title": f"{model}: {paper_data} in the paper, {cpu_data} in the cpu profile",
        "introduction": entry.about,
        "model": model,
        "task": task,
    }
