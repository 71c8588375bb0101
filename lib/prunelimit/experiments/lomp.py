"""Part III: the paper's eight tasks, theory against actual pruning.

``run(config)`` trains a network with an l1 penalty (LOMP), estimates its Hessian spectrum by SLQ
on a fixed subset, predicts the pruning limit, and measures the actual one-shot and retrained
limits. Each stage is stored as soon as it is done, atomically, under
``results/<profile>/experiments/<task>-<config hash>/<stage>.json`` (training also checkpoints
every epoch to ``model.pt`` there, which git ignores), so a killed run resumes where it stopped.
"""

import copy
import dataclasses
import fractions
import functools
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from prunelimit.curvature import HessianOperator
from prunelimit.data import NUM_CLASSES
from prunelimit.experiments.profiles import check_profile
from prunelimit.experiments.store import (
    JSONValue,
    Recompute,
    config_hash,
    is_fresh,
    load_or_compute_payload,
)
from prunelimit.lanczos import SLQResult, slq
from prunelimit.limit import (
    flat_weights,
    loss_tolerance,
    predict_limit,
    prediction_spread,
    predictions_by_steps,
    projection_distances,
    threshold_curve,
    zero_row_share,
)
from prunelimit.models import FULLY_CONNECTED, build_model, count_parameters, prunable_parameters
from prunelimit.paths import results_root
from prunelimit.pruning import (
    frozen_mask,
    global_magnitude_masks,
    kept_count,
    masked,
    one_shot_sweep,
)
from prunelimit.training import Recipe, evaluate, learning_rate, train
from prunelimit.views import DataSpec, Views, load_views, random_crop_flip

LOSS = nn.CrossEntropyLoss()
STAGES = ("train", "dense", "limit", "one_shot", "retrained")
PLAIN_STAGES = ("train", "dense", "one_shot")


@dataclasses.dataclass(frozen=True)
class HessianSpec:
    """SLQ on the fixed Hessian subset, and the eps rule (eps = eps_scale x mini-batch std)."""

    num_steps: int = 128
    num_probes: int = 4
    seed: int = 0
    chunk_size: int = 1000
    zero_rows: int = 256
    eps_scale: float = 1.0


@dataclasses.dataclass(frozen=True)
class PruningSpec:
    """One-shot sweep resolution and the retraining bisection."""

    grid: tuple[float, ...] = (
        *np.round(np.geomspace(0.001, 0.05, 9), 5).tolist(),
        *np.round(np.linspace(0.1, 1.0, 10), 2).tolist(),
    )
    resolution: float = 1e-4  # bisection stops when the ratio is known to this
    retrain_epochs: int = 1
    retrain_halvings: int = 5  # the retrained limit is searched down to one-shot / 2^halvings


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

    @property
    def hash(self) -> str:
        return config_hash(self)

    def folder(self, root: Path | None = None) -> Path:
        return (root or results_root()) / self.profile / "experiments" / f"{self.task}-{self.hash}"


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
    steps: int = 128


_FASHION = {"name": "fashion-mnist", "test_limit": 2000, "fixed_size": 5000}
TASKS = {
    "fc5-cifar10": Task(
        "fc5",
        "cifar10",
        5e-5,
        {"data": {"name": "fashion-mnist", "image_size": 28, "hessian_size": 1000}, "epochs": 8},
    ),
    "fc12-cifar10": Task(
        "fc12",
        "cifar10",
        5e-5,
        {"data": {"name": "fashion-mnist", "image_size": 28, "hessian_size": 500}, "epochs": 5},
    ),
    "alexnet-cifar10": Task(
        "alexnet",
        "cifar10",
        3e-5,
        {"data": _FASHION | {"train_limit": 20000}, "width": 0.125, "epochs": 5},
        steps=96,
    ),
    "vgg16-cifar10": Task(
        "vgg16_bn",
        "cifar10",
        1e-4,
        {"data": _FASHION | {"train_limit": 20000}, "width": 0.125, "epochs": 5},
    ),
    "resnet18-cifar100": Task(
        "resnet18",
        "cifar100",
        5e-5,
        {"data": _FASHION | {"train_limit": 20000}, "width": 0.0625, "epochs": 5},
    ),
    "resnet50-cifar100": Task(
        "resnet50",
        "cifar100",
        2e-5,
        {"data": _FASHION | {"train_limit": 10000}, "width": 0.0625, "epochs": 5},
    ),
    "resnet18-tinyimagenet": Task(
        "resnet18",
        "tinyimagenet",
        5e-5,
        {"data": {"name": "mnist-5k", "fixed_size": 3000}, "width": 0.0625, "epochs": 12},
    ),
    "resnet50-tinyimagenet": Task(
        "resnet50",
        "tinyimagenet",
        2e-5,
        {"data": {"name": "mnist-5k", "fixed_size": 3000}, "width": 0.0625, "epochs": 12},
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
        hessian=HessianSpec(num_steps=task.steps),
        pruning=PruningSpec(retrain_epochs=10),
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
    hessian = HessianSpec(num_steps=80, num_probes=3, zero_rows=32)
    config = dataclasses.replace(
        full,
        profile=profile,
        width=cpu.get("width", 1.0),
        data=data,
        recipe=recipe,
        hessian=hessian,
        pruning=PruningSpec(),
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


# ----------------------------------------------------------------------------- stages
class StageStore:
    """One JSON file per stage in the run's folder, written atomically with the config beside it.

    A stage is reused unless ``recompute`` is True, or a Unix time later than the file's mtime
    (``make execute`` passes its start time, so a restarted run keeps what it already redid).
    """

    def __init__(self, config: ExperimentConfig, recompute: Recompute, root: Path | None) -> None:
        self.config, self.recompute = config, recompute
        self.folder = config.folder(root)

    def fresh(self, path: Path) -> bool:
        return is_fresh(path, self.recompute)

    def get(self, name: str, compute: Callable[[], JSONValue]) -> JSONValue:
        return load_or_compute_payload(
            self.folder / f"{name}.json",
            compute,
            self.recompute,
            dataclasses.asdict(self.config),
            self.config.profile,
            where=name,
        )


class Experiment:
    """The stages of one config; the data and the trained model are loaded only when needed."""

    def __init__(
        self,
        config: ExperimentConfig,
        recompute: Recompute = False,
        root: Path | None = None,
        progress: bool = True,
    ) -> None:
        self.config, self.progress = config, progress
        self.store = StageStore(config, recompute, root)
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

    @functools.cached_property
    def views(self) -> Views:
        views = load_views(self.config.data)
        on_device = {
            field: tuple(t.to(self.device) for t in getattr(views, field))
            for field in ("train", "fixed", "hessian", "test")
        }
        return dataclasses.replace(views, **on_device)

    def _fit(self) -> tuple[nn.Module, list[dict[str, float]], float]:
        views, config = self.views, self.config
        torch.manual_seed(config.seed)
        model = build_model(
            config.model, views.channels, config.data.image_size, views.num_classes, config.width
        ).to(self.device)
        checkpoint = self.store.folder / "model.pt"
        if checkpoint.is_file() and not self.store.fresh(checkpoint):
            checkpoint.unlink()
        start = time.perf_counter()
        history = train(
            model,
            *views.train,
            config.recipe,
            augment=random_crop_flip if config.data.augment else None,
            checkpoint=checkpoint,
            on_epoch=lambda: dict(
                zip(("test_loss", "test_accuracy"), evaluate(model, *views.test), strict=True)
            ),
            progress=self.progress,
        )
        return model, history, time.perf_counter() - start

    @functools.cached_property
    def trained(self) -> tuple[nn.Module, list[dict[str, float]], float]:
        return self._fit()

    @property
    def model(self) -> nn.Module:
        return self.trained[0]

    @property
    def weights(self) -> list[torch.Tensor]:
        return prunable_parameters(self.model)

    # each stage: a JSON-able dict
    def train_stage(self) -> dict:
        _, history, seconds = self.trained
        return {"history": history, "seconds": seconds, "parameters": count_parameters(self.model)}

    def dense_stage(self) -> dict:
        views, model = self.views, self.model
        eps = self.config.hessian.eps_scale * loss_tolerance(model, LOSS, views.fixed)
        fixed_loss, fixed_accuracy = evaluate(model, *views.fixed)
        test_loss, test_accuracy = evaluate(model, *views.test)
        distances = projection_distances(self.weights)
        ks = np.unique(np.round(np.geomspace(1, len(distances) - 1, 200)).astype(int))
        return {
            "eps": eps,
            "dimension": len(distances) - 1,
            "fixed_loss": fixed_loss,
            "fixed_accuracy": fixed_accuracy,
            "test_loss": test_loss,
            "test_accuracy": test_accuracy,
            "distance_curve": {"k": [0, *ks.tolist()], "R": [distances[0], *distances[ks]]},
            "weight_quantiles": np.quantile(
                np.abs(flat_weights(self.weights)), [0.01, 0.1, 0.5, 0.9, 0.99]
            ).tolist(),
        }

    def limit_stage(self) -> dict:
        spec, eps = self.config.hessian, self.stage("dense")["eps"]
        operator = HessianOperator(
            self.model, LOSS, self.views.hessian, self.weights, chunk_size=spec.chunk_size
        )
        start = time.perf_counter()
        spectrum = slq(
            operator,
            spec.num_steps,
            spec.num_probes,
            seed=spec.seed,
            progress=self.progress,
            basis_dtype=torch.float32,
        )
        seconds = time.perf_counter() - start
        zero = zero_row_share(operator, self.weights, spec.zero_rows, seed=spec.seed)
        w_star = flat_weights(self.weights)

        def predict(result: SLQResult, negative: str = "abs") -> dict:
            return predict_limit(
                result, w_star, eps, negative=negative, zero_row_share=zero.share
            ).to_dict()

        def spread(negative: str) -> dict:
            return prediction_spread(
                spectrum, w_star, eps, negative=negative, zero_row_share=zero.share
            ).to_dict()

        steps = list(range(1, max(len(t.diagonal) for t in spectrum.tridiagonals) + 1))
        mean, per_probe = predictions_by_steps(
            spectrum, w_star, eps, steps, zero_row_share=zero.share
        )
        ratio, curve = threshold_curve(spectrum, w_star, eps, points=300)
        return {
            "spectrum": spectrum.to_dict(),
            "seconds": seconds,
            "zero_rows": dataclasses.asdict(zero),
            "prediction": predict(spectrum),
            "prediction_flat": predict(spectrum, "flat"),
            # the uncertainty of each prediction: its spread over Lanczos truncations (from half
            # the steps to all) and probes; the probe standard error alone is not its error
            "spread": spread("abs"),
            "spread_flat": spread("flat"),
            "by_steps": {"steps": steps, "rho": mean.tolist(), "per_probe": per_probe.tolist()},
            "threshold": {"ratio": ratio.tolist(), "rho_star": curve.tolist()},
        }

    def one_shot_stage(self) -> dict:
        dense, spec = self.stage("dense"), self.config.pruning
        views, weights = self.views, self.weights
        size = dense["dimension"]
        sweep = one_shot_sweep(
            weights,
            lambda: evaluate(self.model, *views.fixed),
            dense["eps"],
            grid=spec.grid,
            resolution=max(1, math.ceil(spec.resolution * size)),
            progress=self.progress,
        )
        test = []
        for ratio in spec.grid:
            masks = global_magnitude_masks(weights, ratio)
            with masked(weights, masks):
                test.append(evaluate(self.model, *views.test))
        return dataclasses.asdict(sweep) | {
            "test_ratios": list(spec.grid),
            "test_losses": [loss for loss, _ in test],
            "test_accuracies": [accuracy for _, accuracy in test],
        }

    def _retrain_at(self, k: int) -> dict:
        """Retrain a copy of the model on the magnitude mask keeping k weights; its fixed loss."""
        views, config = self.views, self.config
        model = copy.deepcopy(self.model)
        weights = prunable_parameters(model)
        masks = global_magnitude_masks(weights, k / sum(w.numel() for w in weights))
        recipe = Recipe(
            config.pruning.retrain_epochs,
            learning_rate_after(config.recipe),
            momentum=config.recipe.momentum,
            batch_size=config.recipe.batch_size,
            seed=config.seed + 1,
        )
        augment = random_crop_flip if config.data.augment else None
        with frozen_mask(weights, masks):
            train(model, *views.train, recipe, augment=augment, progress=False)
        loss, accuracy = evaluate(model, *views.fixed)
        test_loss, test_accuracy = evaluate(model, *views.test)
        kept = int(sum(int((w != 0).sum()) for w in weights))
        return {"k": k, "loss": loss, "accuracy": accuracy, "test_loss": test_loss} | {
            "test_accuracy": test_accuracy,
            "nonzero": kept,
        }

    def retrained_stage(self) -> dict:
        """Halve the one-shot limit until retraining fails (or ``retrain_halvings`` times), then
        bisect twice (geometrically) between the last passing and the first failing ratio."""
        dense, one_shot = self.stage("dense"), self.stage("one_shot")
        size, threshold = dense["dimension"], dense["fixed_loss"] + dense["eps"]
        trials: dict[int, dict] = {}

        def passes(k: int) -> bool:
            if k not in trials:
                trials[k] = self.store.get(f"retrain-{k}", lambda: self._retrain_at(k))
            return trials[k]["loss"] <= threshold

        high = kept_count(size, one_shot["limit"])
        low = None
        for _ in range(self.config.pruning.retrain_halvings):
            candidate = max(1, high // 2)
            if candidate == high or not passes(candidate):
                low = candidate if candidate < high else None
                break
            high = candidate
        for _ in range(2 if low is not None else 0):
            middle = round(math.sqrt(low * high))
            if middle in (low, high):
                break
            low, high = (low, middle) if passes(middle) else (middle, high)
        ordered = [trials[k] | {"ratio": k / size, "passed": passes(k)} for k in sorted(trials)]
        return {"limit": high / size, "threshold": threshold, "trials": ordered}

    def stage(self, name: str) -> JSONValue:
        compute = getattr(self, f"{name}_stage")
        return self.store.get(name, compute)


def learning_rate_after(recipe: Recipe) -> float:
    """The rate retraining uses: the recipe's last learning rate, or its base rate if that
    decayed to (near) zero."""
    last = learning_rate(recipe, max(recipe.epochs - 1, 0))
    return last if last > recipe.lr / 100 else recipe.lr / 10


def run(
    config: ExperimentConfig,
    stages: tuple[str, ...] = STAGES,
    recompute: Recompute = False,
    root: Path | None = None,
    progress: bool = True,
) -> dict[str, JSONValue]:
    """Run (or load) the named stages of ``config``; {stage: result}."""
    unknown = set(stages) - set(STAGES)
    if unknown:
        raise ValueError(f"unknown stages {sorted(unknown)}: choose from {STAGES}")
    experiment = Experiment(config, recompute, root, progress)
    return {name: experiment.stage(name) for name in stages}


__all__ = [
    "PLAIN_STAGES",
    "STAGES",
    "TASKS",
    "ExperimentConfig",
    "HessianSpec",
    "PruningSpec",
    "plain_variant",
    "profile_differences",
    "run",
    "task_config",
]


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        flat: dict[str, Any] = {}
        for key, item in value.items():
            flat |= _flatten(item, f"{prefix}{key}.")
        return flat
    return {prefix.rstrip("."): value}


def profile_differences(config: ExperimentConfig, reference: ExperimentConfig) -> list[list]:
    """Rows [setting, this config, reference] for every setting on which the two differ."""
    ours, theirs = (_flatten(dataclasses.asdict(c)) for c in (config, reference))
    return [
        [key, ours[key], theirs[key]]
        for key in ours
        if ours[key] != theirs[key] and key not in ("profile", "pruning.grid")
    ]
