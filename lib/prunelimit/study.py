"""``LimitStudy``: a model, a loss and data in; the predicted and the actual pruning limits out.

A study runs five stages, each stored as soon as it is done (atomically, with its provenance) in
one folder of a ``Store``, so a killed run resumes where it stopped and a rerun loads them:

- ``train``: trains the model with a ``Recipe`` (checkpointing every epoch), or takes it as it is;
- ``dense``: eps (given, or the mini-batch rule), the dense loss and accuracy, D, R(k);
- ``limit`` (rules "abs" and "flat": SLQ on the Hessian, with the spread over Lanczos
  truncations and probes) or ``certified`` (rule "ggn": certified bounds for the Gauss-Newton
  matrix): the predicted limit over the N examples of the curvature data;
- ``one_shot``: the actual one-shot magnitude-pruning limit;
- ``retrained``: the actual limit after retraining on the mask (skipped with no retraining).

The folder is ``<store>/<key>``, ``key`` a hash of the settings, the model (architecture and
starting weights) and the data, so a changed input never reuses a stale result.
"""

import copy
import dataclasses
import functools
import hashlib
import math
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Literal, TypeVar

import numpy as np
import torch
from torch import distributed as dist
from torch import nn

from prunelimit.certified import CertifiedLimit, certified_limit
from prunelimit.costs import CostEstimate, Unit, timed
from prunelimit.curvature import (
    ChunkSize,
    GGNOperator,
    HessianOperator,
    LossFunction,
    is_tensor_pair,
)
from prunelimit.errors import NonFiniteLossError
from prunelimit.iterative import imp_schedule, iterative_magnitude_pruning, rounds_to
from prunelimit.lanczos import SLQResult, slq
from prunelimit.limit import (
    flat_weights,
    lanczos_steps,
    loss_tolerance,
    predict_limit,
    prediction_spread,
    predictions_by_steps,
    projection_distances,
    threshold_curve,
    zero_row_share,
)
from prunelimit.models import count_parameters, prunable_parameters
from prunelimit.pruning import (
    MASK_RULES,
    frozen_mask,
    kept_count,
    magnitude_prefix_masks,
    masked,
    one_shot_sweep,
)
from prunelimit.report import (
    BudgetRecord,
    DenseRecord,
    LimitReport,
    OneShotRecord,
    Prediction,
    RetrainedRecord,
    SpectralPrediction,
    TrainingRecord,
)
from prunelimit.sharding import agreed, computed_on_first, from_first, shard, share_module
from prunelimit.store import (
    ADDED_SETTING,
    EXECUTION_KNOB,
    JSONValue,
    Recompute,
    Store,
    config_hash,
    device_description,
    hashed_fields,
    is_fresh,
)
from prunelimit.training import Augment, Recipe, evaluate, learning_rate, train
from prunelimit.views import Views

Batch = tuple[torch.Tensor, torch.Tensor]
CurvatureRule = Literal["ggn", "abs", "flat"]
CURVATURE_RULES: tuple[str, ...] = ("ggn", "abs", "flat")
# The stages of a study as ``estimate`` names them ("prediction": "limit" or "certified")
STAGES: tuple[str, ...] = ("train", "prediction", "one_shot", "retrained")
Value = TypeVar("Value")
# the stored stages whose curvature products a process group shares (every other stage runs on
# the group's process 0 alone)
SHARDED_STAGES = ("limit", "certified")


def as_tensor_pair(data: Batch | Iterable[Batch], name: str) -> Batch:
    """One (inputs [N, ...], targets [N, ...]) pair: a tensor pair as it is, an iterable of
    (inputs, targets) batches (a list, a ``DataLoader``) concatenated on the CPU in its order."""
    if is_tensor_pair(data):
        inputs, targets = data
    else:
        batches = list(data)
        if not batches or not all(is_tensor_pair(batch) for batch in batches):
            raise TypeError(
                f"{name} must be a tensor pair (inputs, targets) or an iterable of such "
                "batches (e.g. a DataLoader over a TensorDataset), with at least one batch"
            )
        inputs = torch.cat([batch[0].detach().cpu() for batch in batches])
        targets = torch.cat([batch[1].detach().cpu() for batch in batches])
    if len(inputs) != len(targets):
        raise ValueError(
            f"{name}: inputs and targets differ in length ({len(inputs)} and {len(targets)})"
        )
    return inputs, targets


@dataclasses.dataclass(frozen=True)
class StudyData:
    """The data of a study, as (inputs [N, ...], targets [N, ...]) tensor pairs
    (``from_batches`` takes iterables of batches, such as ``DataLoader`` s, instead).

    train: what training and retraining see (None: the model is trained already and is not
    retrained). fixed: unaugmented training examples on which eps, the dense loss and the actual
    limits are measured. curvature: where the curvature is taken (default: ``fixed``); its size
    is the N of the prediction. test: for test accuracy (optional). augment(inputs, generator):
    applied to training batches (e.g. random crops), never to the other sets.
    """

    train: Batch | None
    fixed: Batch
    curvature: Batch | None = None
    test: Batch | None = None
    augment: Augment | None = None

    def __post_init__(self) -> None:
        for name in ("train", "fixed", "curvature", "test"):
            value = getattr(self, name)
            if (value is not None or name == "fixed") and not is_tensor_pair(value):
                raise TypeError(
                    f"StudyData.{name} must be a tensor pair (inputs, targets); for a "
                    "DataLoader or another iterable of batches use StudyData.from_batches"
                )
            if value is not None:
                object.__setattr__(self, name, as_tensor_pair(value, f"StudyData.{name}"))

    @classmethod
    def from_batches(
        cls,
        train: Batch | Iterable[Batch] | None,
        fixed: Batch | Iterable[Batch],
        curvature: Batch | Iterable[Batch] | None = None,
        test: Batch | Iterable[Batch] | None = None,
        augment: Augment | None = None,
    ) -> "StudyData":
        """The sets from tensor pairs or iterables of (inputs, targets) batches (lists,
        ``DataLoader`` s), each read once, in its order, into tensors on the CPU: every set must
        fit in memory, and a loader's random transforms would be frozen at that one pass, so
        give them as ``augment`` instead."""

        def read(data: Batch | Iterable[Batch] | None, name: str) -> Batch | None:
            return None if data is None else as_tensor_pair(data, name)

        return cls(
            read(train, "train"),
            as_tensor_pair(fixed, "fixed"),
            read(curvature, "curvature"),
            read(test, "test"),
            augment,
        )

    @classmethod
    def from_views(cls, views: Views, augment: Augment | None = None) -> "StudyData":
        """The data of ``load_views``: train, fixed, curvature (its ``hessian`` view), test."""
        return cls(views.train, views.fixed, views.hessian, views.test, augment)

    @property
    def curvature_set(self) -> Batch:
        return self.fixed if self.curvature is None else self.curvature


@dataclasses.dataclass(frozen=True)
class HessianSpec:
    """SLQ on the Hessian for the "abs" and "flat" rules: steps, probes, seed, the sampled rows
    for the zero-row share; the eps rule (eps = eps_scale x mini-batch std); the chunk size of
    the products (an execution knob; "auto" fits it to a GPU's free memory).
    reorthogonalize: against a stored float32 basis (probes x steps x D values: 55 GB for
    AlexNet at 96 steps x 4 probes); False runs the plain three-term recurrence in float64 with
    memory independent of the steps (its quadrature is that of a nearby measure, Greenbaum)."""

    num_steps: int = 128
    num_probes: int = 4
    seed: int = 0
    chunk_size: ChunkSize = dataclasses.field(default=1000, metadata=EXECUTION_KNOB)
    zero_rows: int = 256
    eps_scale: float = 1.0
    reorthogonalize: bool = dataclasses.field(default=True, metadata=ADDED_SETTING)


@dataclasses.dataclass(frozen=True)
class CertifiedSpec:
    """Certified bounds for the "ggn" rule (see ``certified_limit``): the width to reach, the
    confidence, the product budget, the seed; the chunk size of the float64 products (as in
    ``HessianSpec``)."""

    tolerance: float = 0.01
    confidence: float = 0.99
    max_products: int = 2_000
    seed: int = 0
    chunk_size: ChunkSize = dataclasses.field(default=1000, metadata=EXECUTION_KNOB)


@dataclasses.dataclass(frozen=True)
class PruningSpec:
    """One-shot sweep resolution and the retraining bisection (``retrain_epochs`` = 0: none)."""

    grid: tuple[float, ...] = (
        *np.round(np.geomspace(0.001, 0.05, 9), 5).tolist(),
        *np.round(np.linspace(0.1, 1.0, 10), 2).tolist(),
    )
    resolution: float = 1e-4  # bisection stops when the ratio is known to this
    retrain_epochs: int = 1
    retrain_halvings: int = 5  # the retrained limit is searched down to one-shot / 2^halvings


@dataclasses.dataclass(frozen=True)
class StudySettings:
    """Everything besides the model and the data that changes a study's results (hashed)."""

    curvature: str = "ggn"
    eps: float | None = None
    recipe: Recipe | None = None
    hessian: HessianSpec = HessianSpec()
    certified: CertifiedSpec = CertifiedSpec()
    pruning: PruningSpec = PruningSpec()
    seed: int = 0

    def __post_init__(self) -> None:
        if self.curvature not in CURVATURE_RULES:
            raise ValueError(
                f"unknown curvature rule {self.curvature!r}: choose 'ggn' (the Gauss-Newton "
                "matrix, certified bounds), 'abs' (the Hessian with |lambda|, the paper's rule) "
                "or 'flat' (the Hessian, negative curvature counted as flat)"
            )
        if self.eps is not None and not self.eps > 0:
            raise ValueError(f"eps must be positive (a loss increase), got {self.eps!r}")


def _digest(tensors: list[torch.Tensor], update: "hashlib._Hash") -> None:
    for tensor in tensors:
        update.update(str((tuple(tensor.shape), tensor.dtype)).encode())
        update.update(tensor.detach().cpu().reshape(-1).view(torch.uint8).numpy().tobytes())


def study_key(settings: StudySettings, model: nn.Module, data: StudyData) -> str:
    """16 hex digits identifying a study: its settings, the model's architecture and starting
    state, and the bytes of its data (so the key does not depend on threads or the machine)."""
    digest = hashlib.sha256(repr(hashed_fields(settings)).encode())
    digest.update(repr(model).encode())
    _digest(list(model.state_dict().values()), digest)
    for batch in (data.train, data.fixed, data.curvature, data.test):
        _digest(list(batch) if batch is not None else [], digest)
    return digest.hexdigest()[:16]


def learning_rate_after(recipe: Recipe) -> float:
    """The rate retraining uses: the recipe's last learning rate, or its base rate if that
    decayed to (near) zero."""
    last = learning_rate(recipe, max(recipe.epochs - 1, 0))
    return last if last > recipe.lr / 100 else recipe.lr / 10


class LimitStudy:
    """The pruning limit of one model: predicted from its curvature, and measured.

    model: an ``nn.Module`` (trained already, or trained here with ``recipe``). loss_fn: the mean
    loss over a batch (default cross-entropy). data: a ``StudyData``. curvature: "ggn" (default;
    the Gauss-Newton matrix with certified bounds), "abs" (the Hessian with |lambda|, the paper's
    rule, reported with its spread over Lanczos truncations and probes) or "flat". eps: the loss
    tolerance (default: ``eps_scale`` x the std of the mini-batch loss, the authors' rule).
    curvature_examples: take the curvature over the first N examples of ``data.curvature``.
    retrain_epochs: the retraining budget per tried mask (0: no retraining; needs ``data.train``).
    store: the folder the stages are kept in (default: not kept). ``extra_provenance`` is added
    to every stored stage (e.g. a profile). ``recompute``: True, or a Unix time before which
    stored stages are recomputed. group: a torch.distributed process group whose processes all
    build this study with the same arguments (e.g. under ``torchrun``): each takes its shard of
    the curvature data and the curvature products are summed over the group; every other stage
    (training, pruning, retraining) runs on its process 0, which alone stores results and shows
    progress, and the others receive its results and weights. ``estimate`` runs in one process.

    >>> report = LimitStudy(model, data, recipe=Recipe(5, 0.01, coefficient=5e-5),
    ...                     store=Path("results/mine")).run()
    >>> print(report)
    """

    def __init__(
        self,
        model: nn.Module,
        data: StudyData,
        *,
        loss_fn: LossFunction | None = None,
        recipe: Recipe | None = None,
        curvature: CurvatureRule = "ggn",
        eps: float | None = None,
        eps_scale: float = 1.0,
        curvature_examples: int | None = None,
        retrain_epochs: int = 1,
        hessian: HessianSpec | None = None,
        certified: CertifiedSpec | None = None,
        pruning: PruningSpec | None = None,
        store: Path | None = None,
        seed: int = 0,
        device: torch.device | str | None = None,
        progress: bool = True,
        recompute: Recompute = False,
        group: dist.ProcessGroup | None = None,
        **extra_provenance: JSONValue,
    ) -> None:
        if curvature_examples is not None:
            inputs, targets = data.curvature_set
            if not 0 < curvature_examples <= len(inputs):
                raise ValueError(
                    f"curvature_examples must be in 1..{len(inputs)} (the curvature data's size)"
                )
            curvature_set = (inputs[:curvature_examples], targets[:curvature_examples])
            data = dataclasses.replace(data, curvature=curvature_set)
        needs_training = recipe is not None or retrain_epochs > 0
        if data.train is None and needs_training:
            raise ValueError(
                "data.train is None, but training or retraining needs it: pass training data, "
                "or recipe=None and retrain_epochs=0 for a model that is trained already"
            )
        pruning = pruning or PruningSpec()
        hessian = hessian or HessianSpec()
        self.settings = StudySettings(
            curvature=curvature,
            eps=eps,
            recipe=recipe,
            hessian=dataclasses.replace(hessian, eps_scale=eps_scale)
            if eps_scale != 1.0
            else hessian,
            certified=certified or CertifiedSpec(),
            pruning=dataclasses.replace(pruning, retrain_epochs=retrain_epochs)
            if pruning.retrain_epochs != retrain_epochs
            else pruning,
            seed=seed,
        )
        self.loss_fn: LossFunction = loss_fn or nn.CrossEntropyLoss()
        self._group, self._shared = group, group is not None
        self._first = group is None or dist.get_rank(group) == 0
        self.progress, self.recompute = progress and self._first, recompute
        self.key = study_key(self.settings, model, data)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.store = Store(Path(store) / self.key, **extra_provenance) if store else None
        self._model, self._data = model.to(self.device), self._on_device(data)
        # the starting weights (before training here), for rewinding in ``imp``
        self._initial_state = copy.deepcopy(self._model.state_dict()) if recipe else None
        self._stages: dict[str, JSONValue] = {}
        self._model_shared = False  # in a group: whether every process has process 0's weights

    def _on_device(self, data: StudyData) -> StudyData:
        def moved(batch: Batch) -> Batch:
            return batch[0].to(self.device), batch[1].to(self.device)

        def maybe(batch: Batch | None) -> Batch | None:
            return None if batch is None else moved(batch)

        return dataclasses.replace(
            data,
            train=maybe(data.train),
            fixed=moved(data.fixed),
            curvature=maybe(data.curvature),
            test=maybe(data.test),
        )

    @property
    def data(self) -> StudyData:
        """The study's data, on its device."""
        return self._data

    @property
    def folder(self) -> Path | None:
        """Where the stages are stored (None: nowhere)."""
        return self.store.folder if self.store else None

    # ------------------------------------------------------------------------- stage plumbing
    def _stage(self, name: str, compute: Callable[[], JSONValue]) -> JSONValue:
        if name not in self._stages:
            shared = self._shared_stage if self._shared else self._stored_or_computed
            self._stages[name] = shared(name, compute)
        return self._stages[name]

    def _stored_or_computed(self, name: str, compute: Callable[[], JSONValue]) -> JSONValue:
        if self.store is None:
            return compute()
        config = hashed_fields(self.settings)
        return self.store.load_or_compute(name, compute, self.recompute, config=config)

    def _shared_stage(self, name: str, compute: Callable[[], JSONValue]) -> JSONValue:
        """A stage in a process group: a curvature stage not yet stored is computed by every
        process (process 0 stores it), any other stage by process 0 alone; every process gets
        process 0's result. Every process must reach the same collectives in the same order:
        process 0's extra work (its store, its progress) raises only outside the products."""
        assert self._group is not None
        if name.startswith(SHARDED_STAGES):
            store = self.store if self._first else None
            stored = store is not None and store.is_fresh(name, self.recompute)
            if not from_first(stored, self._group):
                _ = self.model  # process 0's weights on every process
                result = agreed(  # process 0 stores: if that fails, the others stop too
                    lambda: self._stored_or_computed(name, compute) if self._first else compute(),
                    self._group,
                )
                return from_first(result if self._first else None, self._group)
        alone = functools.partial(self._stored_or_computed, name, compute)
        return computed_on_first(lambda: self._alone(alone), self._group)

    def _alone(self, compute: Callable[[], Value]) -> Value:
        """``compute()`` on this process without the group: the stages it needs are computed
        (or loaded) here too."""
        self._shared = False
        try:
            return compute()
        finally:
            self._shared = True

    def _share_model(self) -> None:
        """Every process gets process 0's trained weights (trained or loaded there)."""
        assert self._group is not None
        agreed(lambda: self._first and self._alone(lambda: self.model), self._group)
        share_module(self._model, self._group)
        if not self._first:
            self.__dict__["_trained"] = ([], 0.0)  # trained on process 0: not here
            self._model.eval()
        self._model_shared = True

    def _evaluate(self, batch: Batch, model: nn.Module | None = None) -> tuple[float, float | None]:
        """(loss, accuracy) of the model as it is now (accuracy None unless the targets are
        class indices)."""
        loss, accuracy = evaluate(model or self._model, *batch, loss_fn=self._custom_loss)
        return loss, None if math.isnan(accuracy) else accuracy

    def _evaluate_test(self, model: nn.Module | None = None) -> dict[str, float | None]:
        """{"test_loss", "test_accuracy"}, None without test data."""
        test = self._data.test
        loss, accuracy = (None, None) if test is None else self._evaluate(test, model)
        return {"test_loss": loss, "test_accuracy": accuracy}

    @property
    def _custom_loss(self) -> LossFunction | None:
        """None for cross-entropy (``train`` and ``evaluate`` use their own, summed exactly)."""
        return None if isinstance(self.loss_fn, nn.CrossEntropyLoss) else self.loss_fn

    @functools.cached_property
    def _trained(self) -> tuple[list[dict[str, float]], float]:
        recipe, data = self.settings.recipe, self._data
        if recipe is None:
            self._model.eval()
            return [], 0.0
        assert data.train is not None  # checked in __init__
        checkpoint = None
        if self.store is not None:
            checkpoint = self.store.folder / "model.pt"
            if checkpoint.is_file() and not is_fresh(checkpoint, self.recompute):
                checkpoint.unlink()
        start = time.perf_counter()
        history = train(
            self._model,
            *data.train,
            recipe,
            augment=data.augment,
            checkpoint=checkpoint,
            on_epoch=None if data.test is None else lambda: self._evaluate_test(),
            progress=self.progress,
            loss_fn=self._custom_loss,
        )
        return history, time.perf_counter() - start

    @property
    def model(self) -> nn.Module:
        """The trained model (trained, or loaded from its checkpoint, on first use; in a group,
        on process 0, whose weights every process then gets)."""
        if self._shared and not self._model_shared:
            self._share_model()
        _ = self._trained
        return self._model

    @property
    def weights(self) -> list[nn.Parameter]:
        return prunable_parameters(self.model)

    def _curvature_operator(
        self, model: nn.Module, ggn: bool, chunk_size: ChunkSize | None = None
    ) -> HessianOperator | GGNOperator:
        """The operator a stage runs on: G in float64 (``ggn``, the certified rule) or H in
        float32 (the "abs" and "flat" rules), over the curvature data, on ``model``'s prunable
        weights; chunks of ``chunk_size`` (default: the study's spec of that rule)."""
        data, weights = self._data.curvature_set, prunable_parameters(model)
        group = self._group if self._shared else None
        if group is not None:
            data = shard(data, dist.get_rank(group), dist.get_world_size(group))
        if ggn:
            chunk = chunk_size or self.settings.certified.chunk_size
            return GGNOperator(
                model,
                self.loss_fn,
                data,
                weights,
                dtype=torch.float64,
                chunk_size=chunk,
                group=group,
            )
        chunk = chunk_size or self.settings.hessian.chunk_size
        return HessianOperator(model, self.loss_fn, data, weights, chunk_size=chunk, group=group)

    # ------------------------------------------------------------------------- the stages
    def training(self) -> TrainingRecord:
        def compute() -> JSONValue:
            history, seconds = self._trained
            return {
                "history": history,
                "seconds": seconds,
                "parameters": count_parameters(self.model),
            }

        return TrainingRecord.from_dict(self._stage("train", compute))

    def dense(self) -> DenseRecord:
        def compute() -> JSONValue:
            data, settings = self._data, self.settings
            eps = settings.eps or settings.hessian.eps_scale * loss_tolerance(
                self.model, self.loss_fn, data.fixed
            )
            fixed_loss, fixed_accuracy = self._evaluate(data.fixed)
            distances = projection_distances(self.weights)
            ks = np.unique(np.round(np.geomspace(1, len(distances) - 1, 200)).astype(int))
            magnitudes = np.abs(flat_weights(self.weights))
            return {
                "eps": eps,
                "dimension": len(distances) - 1,
                "fixed_loss": fixed_loss,
                "fixed_accuracy": fixed_accuracy,
                **self._evaluate_test(),
                "distance_curve": {"k": [0, *ks.tolist()], "R": [distances[0], *distances[ks]]},
                "weight_quantiles": np.quantile(magnitudes, [0.01, 0.1, 0.5, 0.9, 0.99]).tolist(),
            }

        return DenseRecord.from_dict(self._stage("dense", compute))

    def spectral_prediction(self) -> SpectralPrediction:
        """SLQ on the Hessian over the curvature data: the prediction under the |lambda| and the
        flat rule, each with its spread over Lanczos truncations and probes."""

        def compute() -> JSONValue:
            spec, eps = self.settings.hessian, self.dense().eps
            operator = self._curvature_operator(self.model, ggn=False)
            start = time.perf_counter()
            spectrum = slq(
                operator,
                spec.num_steps,
                spec.num_probes,
                seed=spec.seed,
                reorthogonalize=spec.reorthogonalize,
                progress=self.progress,
                basis_dtype=torch.float32,
            )
            seconds = time.perf_counter() - start
            zero = zero_row_share(operator, self.weights, spec.zero_rows, seed=spec.seed)
            w_star = flat_weights(self.weights)

            def predict(result: SLQResult, negative: Literal["abs", "flat"] = "abs") -> dict:
                return predict_limit(
                    result, w_star, eps, negative=negative, zero_row_share=zero.share
                ).to_dict()

            def spread(negative: Literal["abs", "flat"]) -> dict:
                return prediction_spread(
                    spectrum, w_star, eps, negative=negative, zero_row_share=zero.share
                ).to_dict()

            steps = list(range(1, lanczos_steps(spectrum) + 1))
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
                # the uncertainty of each prediction: its spread over Lanczos truncations (from
                # half the steps to all) and probes; the probe standard error is not its error
                "spread": spread("abs"),
                "spread_flat": spread("flat"),
                "by_steps": {"steps": steps, "rho": mean.tolist(), "per_probe": per_probe.tolist()},
                "threshold": {"ratio": ratio.tolist(), "rho_star": curve.tolist()},
            }

        return SpectralPrediction.from_dict(self._stage("limit", compute))

    def _certified_stage(self, spec: CertifiedSpec) -> str:
        own = hashed_fields(spec) == hashed_fields(self.settings.certified)
        return "certified" if own else f"certified-{config_hash(spec)}"

    def certified_prediction(self, spec: CertifiedSpec | None = None) -> CertifiedLimit:
        """Certified bounds on the predicted limit for the Gauss-Newton matrix over the
        curvature data (float64), with the study's ``CertifiedSpec`` or ``spec`` (stored apart,
        as ``certified-<hash of spec>``, when it differs)."""
        spec = spec or self.settings.certified
        name = self._certified_stage(spec)

        def compute() -> JSONValue:
            eps = self.dense().eps
            operator = self._curvature_operator(self.model, ggn=True, chunk_size=spec.chunk_size)
            bounds = certified_limit(
                operator,
                flat_weights(self.weights),
                eps,
                spec.tolerance,
                confidence=spec.confidence,
                max_products=spec.max_products,
                seed=spec.seed,
                progress=self.progress,
            )
            return bounds.to_dict()

        return CertifiedLimit.from_dict(self._stage(name, compute))

    def prediction(self) -> Prediction:
        """The predicted limit under the study's curvature rule, with its bounds."""
        rule, examples = self.settings.curvature, self.num_examples
        if rule == "ggn":
            return Prediction.from_certified(self.certified_prediction(), examples)
        return Prediction.from_spectral(self.spectral_prediction(), rule, examples)

    @property
    def num_examples(self) -> int:
        """N: the examples the curvature is taken over."""
        return len(self._data.curvature_set[0])

    def one_shot(self) -> OneShotRecord:
        def compute() -> JSONValue:
            dense, spec, data = self.dense(), self.settings.pruning, self._data
            sweep = one_shot_sweep(
                self.weights,
                lambda: self._evaluate(data.fixed),
                dense.eps,
                grid=spec.grid,
                resolution=max(1, math.ceil(spec.resolution * dense.dimension)),
                progress=self.progress,
            )
            test, masks_keeping = [], magnitude_prefix_masks(self.weights)  # one sort
            for ratio in spec.grid if data.test is not None else ():
                with masked(self.weights, masks_keeping(kept_count(dense.dimension, ratio))):
                    test.append(self._evaluate_test())
            return dataclasses.asdict(sweep) | {
                "test_ratios": list(spec.grid) if test else [],
                "test_losses": [row["test_loss"] for row in test],
                "test_accuracies": [row["test_accuracy"] for row in test],
            }

        return OneShotRecord.from_dict(self._stage("one_shot", compute))

    def _retrain_at(self, k: int, epochs: int, rule: str = "magnitude", seed: int = 0) -> dict:
        """Retrain a copy of the model for ``epochs`` on the mask of ``rule`` (``MASK_RULES``,
        drawn with ``seed``) keeping k weights; its fixed loss. A retraining whose loss turns
        non-finite is recorded as diverged (loss None): the trial fails."""
        model = copy.deepcopy(self.model)
        weights = prunable_parameters(model)
        masks = MASK_RULES[rule](weights, k / sum(w.numel() for w in weights), seed)
        recipe = self.retraining_recipe(epochs, seed)
        with frozen_mask(weights, masks):
            try:
                self._train_copy(model, recipe)
            except NonFiniteLossError as error:
                return {"k": k, "loss": None, "accuracy": None, "diverged": str(error)}
        return self._pruned_record(k, model)

    def retraining_recipe(self, epochs: int, seed: int = 0) -> Recipe:
        """How a pruned copy is retrained: ``epochs`` of SGD at the recipe's last learning rate
        (``learning_rate_after``), its momentum and batch size, no penalty, seeded by the
        study's seed + 1 + ``seed``."""
        base = self.settings.recipe or Recipe(1, 0.01)
        return Recipe(
            epochs,
            learning_rate_after(base),
            momentum=base.momentum,
            batch_size=base.batch_size,
            seed=self.settings.seed + 1 + seed,
            precision=base.precision,
        )

    def _train_copy(
        self,
        model: nn.Module,
        recipe: Recipe,
        from_epoch: int = 0,
        until_epoch: int | None = None,
    ) -> None:
        """Train ``model`` (a copy of the study's) on the training data, quietly, over the
        recipe's epochs ``from_epoch``..``until_epoch`` (default: all)."""
        data = self._data
        assert data.train is not None  # checked in __init__
        train(
            model,
            *data.train,
            recipe,
            augment=data.augment,
            progress=False,
            loss_fn=self._custom_loss,
            from_epoch=from_epoch,
            until_epoch=until_epoch,
        )

    def _pruned_record(self, k: int, model: nn.Module) -> dict:
        """A retrained copy's fixed loss and accuracy, test metrics and nonzero weights."""
        loss, accuracy = self._evaluate(self._data.fixed, model)
        kept = int(sum(int((w != 0).sum()) for w in prunable_parameters(model)))
        return {"k": k, "loss": loss, "accuracy": accuracy, **self._evaluate_test(model)} | {
            "nonzero": kept,
        }

    def _trial(self, k: int, epochs: int, rule: str = "magnitude", seed: int = 0) -> dict:
        """The retraining trial at k with this budget and mask rule, stored as ``retrain-<k>``
        (magnitude masks, seed 0, the study's own budget), with ``-e<epochs>`` for another budget
        and ``retrain-<rule>-s<seed>-<k>`` for another rule or seed; with its ratio and whether
        it passed."""
        own = rule == "magnitude" and seed == 0
        name = "retrain-" + ("" if own else f"{rule}-s{seed}-") + str(k)
        if epochs != self.settings.pruning.retrain_epochs:
            name += f"-e{epochs}"
        trial = self._stage(name, lambda: self._retrain_at(k, epochs, rule, seed))
        return self._judged(trial)

    def _judged(self, trial: JSONValue) -> dict:
        """A trial with its ratio and whether its fixed loss stays within the dense loss + eps."""
        assert isinstance(trial, dict)
        dense = self.dense()
        threshold = dense.fixed_loss + dense.eps
        passed = trial["loss"] is not None and trial["loss"] <= threshold
        return trial | {"ratio": trial["k"] / dense.dimension, "passed": passed}

    def _search(
        self,
        trial: Callable[[int], dict],
        top: int,
        start: int | None = None,
        tried: dict[int, dict] | None = None,
    ) -> tuple[int | None, int, list[dict]]:
        """Halve from ``start`` (a k known to pass; default ``top``, e.g. the one-shot limit's
        k) until ``trial(k)`` fails, but not below the floor (the one-shot limit /
        2^``retrain_halvings``, the same for every rule), then bisect twice (geometrically)
        between the last passing and the first failing k: (the largest failing k, or None when
        none failed down to the floor, the smallest passing k, the trials by k, those in
        ``tried`` included)."""
        tried = dict(tried or {})

        def passes(k: int) -> bool:
            tried[k] = trial(k)
            return tried[k]["passed"]

        floor = self._search_floor()
        high, low = top if start is None else start, None
        while (candidate := max(1, high // 2)) >= floor and candidate < high:
            if not passes(candidate):
                low = candidate
                break
            high = candidate
        for _ in range(2):
            if low is None:
                break
            middle = round(math.sqrt(low * high))
            if middle in (low, high):
                break
            low, high = (low, middle) if passes(middle) else (middle, high)
        return low, high, [tried[k] for k in sorted(tried)]

    def _one_shot_count(self) -> int:
        return kept_count(self.dense().dimension, self.one_shot().limit)

    def _search_floor(self) -> int:
        """The fewest weights any retraining search tries: one-shot limit / 2^halvings."""
        return max(1, self._one_shot_count() >> self.settings.pruning.retrain_halvings)

    def retrained(self) -> RetrainedRecord | None:
        """The retrained limit with the study's budget (``retrain_epochs`` per trial), found by
        ``_search``. None when the study has no retraining budget."""
        if self.settings.pruning.retrain_epochs == 0:
            return None

        def compute() -> JSONValue:
            dense, epochs = self.dense(), self.settings.pruning.retrain_epochs
            trial = functools.partial(self._trial, epochs=epochs)
            _, high, trials = self._search(trial, self._one_shot_count())
            threshold = dense.fixed_loss + dense.eps
            return {"limit": high / dense.dimension, "threshold": threshold, "trials": trials}

        return RetrainedRecord.from_dict(self._stage("retrained", compute))

    def retraining_budget(self, doublings: int = 2) -> BudgetRecord | None:
        """Is the retraining budget enough? Double it (up to ``doublings`` times) until the
        retrained limit stops moving: at twice the budget, the largest failing and the smallest
        passing ratio found with the budget before are retrained again; when the first still
        fails and the second passes, the limit did not move at the search's resolution
        (converged). Otherwise the search goes on with the doubled budget from the smallest of
        the two that passes. None without retraining."""
        base = self.settings.pruning.retrain_epochs
        if base == 0:
            return None

        def compute() -> JSONValue:
            size, epochs, top = self.dense().dimension, base, self._one_shot_count()
            low, high, trials = self._search(functools.partial(self._trial, epochs=epochs), top)
            rows, converged = [(epochs, low, high, trials)], False
            for _ in range(doublings):
                epochs *= 2
                checks = {k: self._trial(k, epochs) for k in (low, high) if k is not None}
                passing = [k for k, trial in checks.items() if trial["passed"]]
                if low is not None and passing == [high]:
                    rows.append((epochs, low, high, list(checks.values())))
                    converged = True
                    break
                # moved: search on from the smallest k that now passes (from the one-shot
                # limit if the bracket's upper end fails, which more budget should not cause)
                start = min(passing) if high in passing else None
                trial = functools.partial(self._trial, epochs=epochs)
                low, high, trials = self._search(trial, top, start, checks)
                rows.append((epochs, low, high, trials))
            return {
                "epochs": [row[0] for row in rows],
                "limits": [row[2] / size for row in rows],
                "failed_below": [None if row[1] is None else row[1] / size for row in rows],
                "trials": [row[3] for row in rows],
                "converged": converged,
            }

        return BudgetRecord.from_dict(self._stage(f"budget-{doublings}", compute))

    def baseline(self, rule: str, seed: int = 0) -> RetrainedRecord:
        """The retrained limit when the masks come from ``rule`` (one of ``MASK_RULES``:
        "magnitude", "layerwise", "random", "smart-ratio"; the random ones drawn with ``seed``,
        which also seeds the retraining), with the study's retraining budget per trial: halving
        from the dense network as ``retrained`` halves from the one-shot limit, down to the same
        floor, then bisecting. Stored as ``baseline-<rule>-s<seed>``."""
        if rule not in MASK_RULES:
            raise ValueError(f"unknown mask rule {rule!r}: choose one of {', '.join(MASK_RULES)}")
        epochs = self.settings.pruning.retrain_epochs
        if epochs == 0:
            raise ValueError("a baseline's limit is found by retraining: give retrain_epochs > 0")

        def compute() -> JSONValue:
            dense = self.dense()
            trial = functools.partial(self._trial, epochs=epochs, rule=rule, seed=seed)
            _, high, trials = self._search(trial, dense.dimension)
            threshold = dense.fixed_loss + dense.eps
            return {"limit": high / dense.dimension, "threshold": threshold, "trials": trials}

        return RetrainedRecord.from_dict(self._stage(f"baseline-{rule}-s{seed}", compute))

    def imp(self, fraction: float = 0.2, rewind_epoch: int = 0) -> RetrainedRecord:
        """Iterative magnitude pruning with weight rewinding (``prunelimit.iterative``): from
        the trained model, each round prunes ``fraction`` of the weights left by magnitude, sets
        the kept weights back to their values after ``rewind_epoch`` epochs of this study's
        training (0: the starting weights, as Frankle and Carbin 2019) and trains them on the
        mask for the rest of the recipe. Rounds go on while the retrained fixed loss stays within
        the dense loss + eps, down to the one-shot limit / 2^``retrain_halvings``; the limit is
        the last count that passed (the dense network if none did). Stored as
        ``imp-<fraction>-r<rewind_epoch>``; needs a study that trains its model."""
        recipe, start = self.settings.recipe, self._initial_state
        if recipe is None or start is None:
            raise ValueError("IMP rewinds to weights of the training: give the study a recipe")
        if not 0 <= rewind_epoch < recipe.epochs:
            raise ValueError(f"rewind_epoch must be in 0..{recipe.epochs - 1}, got {rewind_epoch}")

        def compute() -> JSONValue:
            dense, model = self.dense(), copy.deepcopy(self.model)
            rewound = copy.deepcopy(model)
            rewound.load_state_dict(start)
            if rewind_epoch:
                self._train_copy(rewound, recipe, until_epoch=rewind_epoch)
            point = copy.deepcopy(rewound.state_dict())
            floor = self._search_floor()
            schedule = imp_schedule(dense.dimension, fraction, rounds_to(1e-9, fraction))
            trials: list[dict] = []

            def after_round(k: int, masks: list[torch.Tensor]) -> bool:
                trials.append(self._judged(self._pruned_record(k, model)))
                return trials[-1]["passed"]

            def rewind() -> None:
                model.load_state_dict(point)  # in place: the parameters stay the same tensors

            iterative_magnitude_pruning(
                prunable_parameters(model),
                [k for k in schedule if k >= floor],
                rewind,
                lambda masks: self._train_copy(model, recipe, from_epoch=rewind_epoch),
                after_round,
            )
            passed = [trial["k"] for trial in trials if trial["passed"]]
            return {
                "limit": min(passed, default=dense.dimension) / dense.dimension,
                "threshold": dense.fixed_loss + dense.eps,
                "trials": trials,
            }

        return RetrainedRecord.from_dict(self._stage(f"imp-{fraction}-r{rewind_epoch}", compute))

    def estimate(
        self,
        batches: int = 3,
        stages: Sequence[str] = STAGES,
        certified: bool | CertifiedSpec = False,
        budget_doublings: int = 0,
    ) -> CostEstimate:
        """Before ``run`` (with the same ``certified`` and ``budget_doublings``): the wall time
        of the ``stages`` (of ``STAGES``) not yet stored, from units timed on this device on a
        copy of the model (a training epoch scaled from ``batches`` batches after one warm-up
        batch, one product of each curvature matrix used, one evaluation of the fixed examples)
        times their counts. Upper bounds: every retraining trial and the whole certified budget
        are counted. Nothing is timed when nothing is left to compute. One process only: a study
        with a ``group`` refuses (its timed products would wait for the other processes)."""
        if self._group is not None:
            raise ValueError(
                "estimate times units on one process: call it on a study built without group= "
                "(a sharded product would wait for the other processes)"
            )
        unknown = set(stages) - set(STAGES)
        if unknown:
            raise ValueError(f"unknown stages {sorted(unknown)}: choose from {STAGES}")
        settings, data = self.settings, self._data
        pruning, hessian, recipe = settings.pruning, settings.hessian, settings.recipe
        ggn = settings.curvature == "ggn"
        retraining = pruning.retrain_epochs > 0
        wanted = [*stages, *(["certified"] if certified and not ggn else [])]
        wanted += ["budget"] if budget_doublings and retraining else []
        spec = certified if isinstance(certified, CertifiedSpec) else settings.certified
        stored_as = {
            "prediction": "certified" if ggn else "limit",
            "certified": self._certified_stage(spec),
            "budget": f"budget-{budget_doublings}",
        }

        def stored(stage: str) -> bool:
            name = stored_as.get(stage, stage)
            return self.store is not None and self.store.is_fresh(name, self.recompute)

        left = {
            stage
            for stage in wanted
            if not stored(stage)
            and not (stage == "train" and recipe is None)
            and not (stage == "retrained" and not retraining)
        }
        if not left:
            return CostEstimate(device_description(), ())
        model = copy.deepcopy(self._model)
        epoch = 0.0
        if {"train", "retrained", "budget"} & left:
            assert data.train is not None  # checked in __init__
            inputs, targets = data.train
            sample = dataclasses.replace(recipe or Recipe(1, 0.01), epochs=1)
            size = sample.batch_size
            # one warm-up batch, untimed: first calls pay for allocation and kernel choice
            train(
                model, inputs[:size], targets[:size], sample, augment=data.augment, progress=False
            )
            some = (inputs[: size * batches], targets[: size * batches])
            run = functools.partial(train, model, *some, sample, augment=data.augment)
            epoch = timed(lambda: run(progress=False), self.device) * len(inputs) / len(some[0])
        model.eval()

        def product_seconds(on_ggn: bool) -> float:
            operator = self._curvature_operator(model, on_ggn)
            vector = torch.ones(operator.shape[0], dtype=operator.dtype, device=operator.device)
            return timed(lambda: operator.matvec(vector), self.device)

        units = []
        if "train" in left:
            assert recipe is not None
            units.append(Unit("training epoch", epoch, recipe.epochs))
        if "prediction" in left and not ggn:
            count = hessian.num_steps * hessian.num_probes + hessian.zero_rows
            units.append(Unit("Hessian product", product_seconds(False), count))
        if ("prediction" in left and ggn) or "certified" in left:
            count = (settings.certified if ggn else spec).max_products
            units.append(Unit("Gauss-Newton product", product_seconds(True), count))
        evaluations = 0.0
        if "one_shot" in left:
            test_size = 0 if data.test is None else len(data.test[0])
            evaluations += len(pruning.grid) * (1 + test_size / len(data.fixed[0]))
            evaluations += math.ceil(math.log2(1 / pruning.resolution))  # the bisection
        trials = pruning.retrain_halvings + 2
        if "retrained" in left:
            units.append(Unit("retraining epoch", epoch, trials * pruning.retrain_epochs))
            evaluations += trials
        if "budget" in left:
            doubled = sum(pruning.retrain_epochs * 2**i for i in range(1, budget_doublings + 1))
            units.append(Unit("doubled-budget epoch", epoch, trials * doubled))
            evaluations += trials * budget_doublings
        if evaluations:
            evaluation = timed(lambda: self._evaluate(data.fixed, model), self.device)
            units.append(Unit("evaluation", evaluation, evaluations))
        return CostEstimate(device_description(), tuple(units))

    def run(
        self, certified: bool | CertifiedSpec = False, budget_doublings: int = 0
    ) -> LimitReport:
        """Every stage, computed or loaded: the typed report. ``certified``: also the certified
        G bounds when the rule is "abs" or "flat" (with the study's spec, or this one);
        ``budget_doublings`` > 0: also whether the retraining budget is enough
        (``retraining_budget``)."""
        training, dense = self.training(), self.dense()
        ggn = self.settings.curvature == "ggn"
        spectral = None if ggn else self.spectral_prediction()
        spec = certified if isinstance(certified, CertifiedSpec) else None
        bounds = self.certified_prediction(spec) if ggn or certified else None
        one_shot, retrained = self.one_shot(), self.retrained()
        budget = self.retraining_budget(budget_doublings) if budget_doublings else None
        return LimitReport(
            curvature=self.settings.curvature,
            num_examples=self.num_examples,
            prediction=self.prediction(),
            training=training,
            dense=dense,
            spectral=spectral,
            certified=bounds,
            one_shot=one_shot,
            retrained=retrained,
            folder=self.folder,
            provenance=self.provenance(),
            budget=budget,
        )

    def provenance(self) -> dict[str, JSONValue]:
        """Stage -> where and when it was computed (empty when nothing is stored)."""
        if self.store is None:
            return {}
        records = {}
        for name in self._stages:
            payload = self.store.load_payload(name)
            if payload is not None:
                records[name] = payload.get("provenance")
        return records
