"""Part III: exact spectra of small real networks, the ground truth for the predicted limit.

For a network small enough for dense float64 curvature matrices, everything the theory needs is
computed without estimation: the Hessian H and the Gauss-Newton matrix G of the training loss
with respect to the D prunable weights (biases held fixed) and their eigenvalues; the predicted
limit from them (|H| rule, flat rule, G); the exact limit of the quadratic model under |H| and
under G (Part II's Schur-complement solver); and the actual one-shot and retrained limits.
Against these exact values, the errors of SLQ (the authors' 128 steps x 1 probe and the cpu
profile's 80 steps x 3 probes, over several seeds) and of ``certified_limit`` on G.

The training set of each network is N fixed examples, and H, G, eps and both actual limits are
all taken on exactly that set: H is the Hessian of the training loss itself, not of a subset.
Each network's results are stored in three stages (``exact_spectra``): the spectra and everything
computed from them under ``results/<profile>/exact_spectra/``, the retrained limits under
``exact_spectra_retrained/`` and the first-order terms under ``exact_spectra_first_order/``.
The summaries of the stored results (``curvature_scale``, ``slq_summary``,
``certified_summary``, ``zero_share``) and the chapter's findings (``findings``) are computed here
too; ``exact_spectra_figures`` only draws them.
"""

import contextlib
import copy
import dataclasses
import functools
import math
import time
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from companion.profiles import ProfiledConfig, ResultsStore
from prunelimit.certified import certified_limit
from prunelimit.curvature import GGNOperator, HessianOperator
from prunelimit.data import NUM_CLASSES, Data, load_dataset
from prunelimit.lanczos import MatrixOperator, slq
from prunelimit.limit import (
    flat_weights,
    loss_tolerance,
    predict_limit,
    prediction_spread,
    quadratic_limit,
)
from prunelimit.models import kaiming_init, mlp, prunable_parameters
from prunelimit.pruning import frozen_mask, global_magnitude_masks, masked, one_shot_sweep
from prunelimit.store import JSONValue, Recompute
from prunelimit.training import Recipe, evaluate, train

LOSS = nn.CrossEntropyLoss()
EXPERIMENT = "exact_spectra"
CERTIFIED_CONFIDENCE = 0.99  # of certified_limit's interval
# name shown, native image side, training examples (train split; see prunelimit.data)
DATA_NAMES = {
    "fashion-mnist": ("Fashion-MNIST", 28, 60_000),
    "mnist-5k": ("MNIST-5k", 28, 4_000),
    "digits": ("digits", 8, 1_500),
}


# ----------------------------------------------------------------------------- configs
@dataclasses.dataclass(frozen=True)
class NetworkSpec:
    """An MLP on an offline data set, trained with the paper's LOMP recipe (SGD, momentum 0.9,
    batch 128, l1 penalty on the prunable weights).

    num_train: class-balanced training examples (None: the whole split); they are the N examples
    the curvature, eps and the actual limits are taken over. pool: images are average-pooled by
    this factor (2: 28 x 28 -> 14 x 14).
    """

    dataset: str
    widths: tuple[int, ...]
    pool: int = 1
    num_train: int | None = 5000
    num_test: int | None = 2000
    epochs: int = 200
    lr: float = 0.01
    coefficient: float = 5e-5
    batch_size: int = 128
    seed: int = 0

    def __post_init__(self) -> None:
        if self.dataset not in DATA_NAMES:
            raise ValueError(f"unknown data set {self.dataset!r}: choose one of {list(DATA_NAMES)}")
        if DATA_NAMES[self.dataset][1] % self.pool:
            raise ValueError(f"pool {self.pool} does not divide the image side")

    @property
    def side(self) -> int:
        return DATA_NAMES[self.dataset][1] // self.pool

    @property
    def num_examples(self) -> int:
        """N: the training examples (all of them are the curvature's data)."""
        available = DATA_NAMES[self.dataset][2]
        return min(available, self.num_train or available)

    @property
    def layers(self) -> tuple[int, ...]:
        """Units per layer, input to classes."""
        return (self.side**2, *self.widths, NUM_CLASSES[self.dataset])

    @property
    def dimension(self) -> int:
        """D: the number of prunable weights (the biases are not counted)."""
        return sum(a * b for a, b in zip(self.layers, self.layers[1:], strict=False))

    @property
    def label(self) -> str:
        """E.g. 'MLP 196-24-24-10, MNIST-5k 14x14'."""
        return f"MLP {'-'.join(map(str, self.layers))}, {DATA_NAMES[self.dataset][0]} " + (
            f"{self.side}x{self.side}"
        )


@dataclasses.dataclass(frozen=True)
class AnalysisSpec:
    """What is measured on each network's curvature.

    slq_settings: (Lanczos steps, probes) pairs, each run with seeds 0..slq_seeds-1 on H (|H|
    rule); certified_*: ``certified_limit`` on G with this width tolerance, seeds
    0..certified_seeds-1.
    """

    slq_settings: tuple[tuple[int, int], ...] = ((128, 1), (80, 3))
    slq_seeds: int = 5
    certified_tolerance: float = 0.01
    certified_seeds: int = 3


@dataclasses.dataclass(frozen=True)
class RetrainSpec:
    """How the retrained limit is found: SGD (momentum 0.9, the network's batch size, no
    penalty) on the frozen magnitude mask for ``epochs`` = E epochs, the learning rate decaying
    from ``lr`` to 0 on a cosine, and again with the budget doubled ``doublings`` times (2E,
    4E, ...), to show whether it has stopped moving; the bisection on the kept count stops at
    ``resolution`` x D. Stored apart from the spectra, so that other budgets do not recompute
    them."""

    epochs: int = 40
    doublings: int = 2
    lr: float = 0.05
    resolution: float = 0.002

    @property
    def budgets(self) -> tuple[int, ...]:
        return tuple(self.epochs * 2**i for i in range(self.doublings + 1))


CPU_NETWORKS = (
    NetworkSpec("digits", (32, 32), num_train=None, num_test=None),
    NetworkSpec("mnist-5k", (24, 24), pool=2, num_train=None, num_test=None),
    NetworkSpec("fashion-mnist", (8,)),
)
SMOKE_NETWORKS = (
    NetworkSpec("digits", (8,), pool=2, num_train=300, num_test=100, epochs=30, lr=0.02),
    NetworkSpec("mnist-5k", (6, 6), pool=4, num_train=300, num_test=100, epochs=30, lr=0.02),
    NetworkSpec("fashion-mnist", (5,), pool=4, num_train=300, num_test=100, epochs=30, lr=0.02),
)
# What a GPU box adds (THEORY.md section 8 measured these two): D = 12,960 and 19,632, the most
# a dense float64 Hessian allows (prunelimit.curvature.dense_hessian stops at 20,000).
FULL_NETWORKS = (
    *CPU_NETWORKS,
    NetworkSpec("fashion-mnist", (16, 16)),
    NetworkSpec("fashion-mnist", (24, 24)),
)


@dataclasses.dataclass(frozen=True)
class ExactSpectraConfig(ProfiledConfig):
    """The networks of the chapter and what is measured on each."""

    PROFILE_OVERRIDES: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {
            "networks": SMOKE_NETWORKS,
            "analysis": AnalysisSpec(
                slq_settings=((32, 1), (20, 3)),
                slq_seeds=2,
                certified_tolerance=0.1,
                certified_seeds=1,
            ),
            "retraining": RetrainSpec(epochs=2, doublings=1, resolution=0.05),
        },
        "full": {"networks": FULL_NETWORKS, "analysis": AnalysisSpec()},
    }

    networks: tuple[NetworkSpec, ...] = CPU_NETWORKS
    # one certified seed on a CPU: each takes about a minute per network, and three seeds gave
    # widths within 1e-4 of each other on all three networks (run of 2026-12-05)
    analysis: AnalysisSpec = AnalysisSpec(certified_seeds=1)
    retraining: RetrainSpec = RetrainSpec()


# ----------------------------------------------------------------------------- data and training
def network_data(spec: NetworkSpec, device: torch.device | str = "cpu") -> tuple[Data, Data]:
    """(train, test) as float64 images [N, 1, side, side], average-pooled by ``spec.pool`` and
    normalised with the training set's pixel mean and standard deviation, and labels [N]."""

    def pooled(data: Data) -> Data:
        images, labels = data
        images = nn.functional.avg_pool2d(images.double(), spec.pool) if spec.pool > 1 else images
        return images.double(), labels

    train_x, train_y = pooled(load_dataset(spec.dataset, "train", limit=spec.num_train))
    test_x, test_y = pooled(load_dataset(spec.dataset, "test", limit=spec.num_test))
    mean, std = train_x.mean(), train_x.std()
    return (
        ((train_x - mean) / std).to(device),
        train_y.to(device),
    ), (((test_x - mean) / std).to(device), test_y.to(device))


def train_network(spec: NetworkSpec, train_data: Data, progress: bool = False) -> nn.Module:
    """The float64 MLP of ``spec`` trained with the l1 penalty (LOMP); left in eval mode."""
    torch.manual_seed(spec.seed)
    model = kaiming_init(mlp(spec.side**2, spec.widths, NUM_CLASSES[spec.dataset]))
    model = model.double().to(train_data[0].device)
    recipe = Recipe(
        spec.epochs,
        spec.lr,
        batch_size=spec.batch_size,
        penalty="l1",
        coefficient=spec.coefficient,
        seed=spec.seed,
    )
    train(model, *train_data, recipe, progress=progress)
    return model


@dataclasses.dataclass(frozen=True)
class TrainedNetwork:
    """A trained network with its data, eps and dense loss on the N training examples."""

    model: nn.Module
    train: Data
    test: Data
    eps: float
    loss: float
    accuracy: float

    @property
    def weights(self) -> list[torch.Tensor]:
        return prunable_parameters(self.model)


@functools.lru_cache(maxsize=2)
def trained_network(spec: NetworkSpec, device: str = "cpu", progress: bool = False):
    """``spec`` trained (``train_network``) on its data, with eps (``loss_tolerance``) and the
    dense training loss; cached, so the stored stages of one run train it once. Callers must
    leave the model's weights as they found them."""
    train_data, test_data = network_data(spec, device)
    model = train_network(spec, train_data, progress)
    loss, accuracy = evaluate(model, *train_data)
    eps = loss_tolerance(model, LOSS, train_data)
    return TrainedNetwork(model, train_data, test_data, eps, loss, accuracy)


def one_shot(network: TrainedNetwork) -> dict:
    """The one-shot sweep of the training loss with tolerance eps, bisected to one weight."""
    sweep = one_shot_sweep(
        network.weights,
        lambda: evaluate(network.model, *network.train),
        network.eps,
        resolution=1,
        progress=False,
    )
    return dataclasses.asdict(sweep)


# ----------------------------------------------------------------------------- exact pieces
def symmetric_numpy(matrix: torch.Tensor) -> np.ndarray:
    """(M + M^T) / 2 as a float64 numpy array (the products are symmetric only to rounding)."""
    matrix = matrix.detach().double().cpu()
    return ((matrix + matrix.T) / 2).numpy()


def dense_matrix(
    kind: type[HessianOperator] | type[GGNOperator],
    model: nn.Module,
    data: Data,
    params: list[torch.Tensor],
    block_size: int = 256,
    progress: bool = False,
) -> np.ndarray:
    """The dense float64 matrix of a curvature operator (H or G of the mean loss over all of
    ``data`` in one chunk), from its products with blocks of unit vectors, symmetrised; the
    same products as ``prunelimit.curvature.dense_hessian`` / ``dense_ggn``, with a progress
    bar."""
    operator = kind(model, LOSS, data, params, dtype=torch.float64, chunk_size=len(data[1]))
    size = operator.shape[0]
    identity = torch.eye(size, dtype=torch.float64, device=operator.device)
    starts = range(0, size, block_size)
    blocks = [
        operator.matmat(identity[:, i : i + block_size])
        for i in tqdm(starts, desc=f"dense {operator.name}", leave=False, disable=not progress)
    ]
    return symmetric_numpy(torch.cat(blocks, dim=1))


def absolute_matrix(eigenvalues: np.ndarray, eigenvectors: np.ndarray) -> np.ndarray:
    """|H| = V |Lambda| V^T from an eigendecomposition, symmetrised."""
    matrix = (eigenvectors * np.abs(eigenvalues)) @ eigenvectors.T
    return (matrix + matrix.T) / 2


def exact_predictions(
    hessian_eigenvalues: np.ndarray, ggn_eigenvalues: np.ndarray, weights: np.ndarray, eps: float
) -> dict[str, dict]:
    """The predicted limit from exact eigenvalues: of H under the |H| ('abs') and flat rules,
    and of G ('ggn', flat rule: G is PSD, its tiny negative rounding eigenvalues count as 0)."""
    return {
        "abs": predict_limit(hessian_eigenvalues, weights, eps, "abs").to_dict(),
        "flat": predict_limit(hessian_eigenvalues, weights, eps, "flat").to_dict(),
        "ggn": predict_limit(ggn_eigenvalues, weights, eps, "flat").to_dict(),
    }


def slq_errors(
    matrix: np.ndarray,
    weights: np.ndarray,
    eps: float,
    exact_rho: float,
    num_steps: int,
    num_probes: int,
    seeds: int,
) -> list[dict]:
    """SLQ on ``matrix`` (|H| rule), one run per seed: its predicted rho, rho - exact_rho, the
    jackknife standard error over probes, and the spread over truncations and probes."""
    operator = MatrixOperator(matrix)
    rows = []
    for seed in range(seeds):
        result = slq(operator, num_steps, num_probes, seed=seed, progress=False)
        prediction = predict_limit(result, weights, eps, "abs")
        row = {
            "seed": seed,
            "steps": num_steps,
            "probes": num_probes,
            "rho": prediction.rho,
            "error": prediction.rho - exact_rho,
            "stderr": prediction.rho_stderr,
        }
        interval = prediction_spread(result, weights, eps, negative="abs")
        row |= {"spread_low": float(interval.low), "spread_high": float(interval.high)}
        rows.append(row)
    return rows


def certified_errors(
    matrix: np.ndarray,
    weights: np.ndarray,
    eps: float,
    exact_rho: float,
    tolerance: float,
    seeds: int,
) -> list[dict]:
    """``certified_limit`` on ``matrix`` (PSD), one run per seed: its interval, the error of the
    interval's midpoint against ``exact_rho``, and whether ``exact_rho`` lies inside."""
    operator = MatrixOperator(matrix)
    rows = []
    for seed in range(seeds):
        result = certified_limit(
            operator,
            weights,
            eps,
            tolerance=tolerance,
            confidence=CERTIFIED_CONFIDENCE,
            seed=seed,
            progress=False,
        )
        middle = (result.low + result.high) / 2
        rows.append(
            {
                "seed": seed,
                "low": result.low,
                "high": result.high,
                "rho": result.rho,
                "width": result.high - result.low,
                "midpoint_error": middle - exact_rho,
                "inside": bool(result.low <= exact_rho <= result.high),
                "num_steps": result.num_steps,
                "num_probes": result.num_probes,
                "num_products": result.num_products,
                "converged": bool(result.converged),
                "stop_reason": str(result.stop_reason),
                "seconds": result.seconds,
            }
        )
    return rows


def _retrained_loss(model: nn.Module, train_data: Data, k: int, recipe: Recipe) -> float:
    """Training loss after retraining a copy of ``model`` on the magnitude mask keeping k."""
    copied = copy.deepcopy(model)
    weights = prunable_parameters(copied)
    size = sum(w.numel() for w in weights)
    with frozen_mask(weights, global_magnitude_masks(weights, k / size)):
        train(copied, *train_data, recipe, progress=False)
    return evaluate(copied, *train_data)[0]


def retrained_limit(
    model: nn.Module,
    train_data: Data,
    threshold: float,
    start: int,
    recipe: Recipe,
    resolution: int = 1,
) -> dict:
    """The smallest k (magnitude support) whose retraining with ``recipe`` brings the training
    loss to at most ``threshold``: from ``start`` (doubled while it fails), halved until it
    fails, then bisected until the failing and passing counts are ``resolution`` apart. Assumes
    passing is monotone in k, as a bisection must; every trial is returned."""
    size = sum(w.numel() for w in prunable_parameters(model))
    trials: dict[int, float] = {}

    def passes(k: int) -> bool:
        if k not in trials:
            trials[k] = _retrained_loss(model, train_data, k, recipe)
        return trials[k] <= threshold

    high = max(1, min(start, size))
    while high < size and not passes(high):
        high = min(size, 2 * high)
    low = 0
    while high > 1:
        candidate = high // 2
        if not passes(candidate):
            low = candidate
            break
        high = candidate
    while high - low > max(resolution, 1):
        middle = (low + high) // 2
        low, high = (low, middle) if passes(middle) else (middle, high)
    return {
        "limit": high / size,
        "k": high,
        "epochs": recipe.epochs,
        "trials": [
            {"k": k, "ratio": k / size, "loss": loss, "passed": loss <= threshold}
            for k, loss in sorted(trials.items())
        ],
    }


# ----------------------------------------------------------------------------- one network
@contextlib.contextmanager
def torch_threads(count: int | None):
    """torch's CPU threads set to ``count`` for the block (None: unchanged), then restored."""
    before = torch.get_num_threads()
    if count is not None:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def analyse_network(
    spec: NetworkSpec, analysis: AnalysisSpec, progress: bool = False, threads: int | None = 1
) -> dict[str, JSONValue]:
    """The spectra of one network and everything computed from them, and its one-shot limit
    (JSON-able; see the module docstring).

    ``threads``: torch's CPU threads meanwhile. One by default: batches of 128 through a small
    MLP gain nothing from a second thread, and on a shared 2-core machine a second thread that
    waits for a core made training and the dense Hessian 8 times slower (measured). The numpy
    eigensolvers keep their own threads.
    """
    with torch_threads(threads if _device() == "cpu" else None):
        return _analyse(spec, analysis, progress)


class _Laps:
    """Wall seconds of named stages, one after the other."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.clock = time.perf_counter()

    def __call__(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name] = now - self.clock
        self.clock = now


def _analyse(spec: NetworkSpec, analysis: AnalysisSpec, progress: bool) -> dict[str, JSONValue]:
    lap = _Laps()
    network = trained_network(spec, _device(), progress)
    model, train_data, weights, eps = network.model, network.train, network.weights, network.eps
    w_star = flat_weights(weights)
    size, count = len(w_star), len(train_data[1])
    test_loss, test_accuracy = evaluate(model, *network.test)
    lap("train")
    sweep = one_shot(network)
    lap("one_shot")

    hessian = dense_matrix(HessianOperator, model, train_data, weights, progress=progress)
    lap("hessian")
    hessian_eigenvalues, eigenvectors = np.linalg.eigh(hessian)
    lap("hessian_eigh")
    ggn = dense_matrix(GGNOperator, model, train_data, weights, progress=progress)
    lap("ggn")
    ggn_eigenvalues = np.linalg.eigvalsh(ggn)
    lap("ggn_eigvalsh")
    predictions = exact_predictions(hessian_eigenvalues, ggn_eigenvalues, w_star, eps)
    absolute = absolute_matrix(hessian_eigenvalues, eigenvectors)
    del eigenvectors
    quadratic = {"abs": quadratic_limit(absolute, w_star, eps) / size}
    del absolute
    quadratic["ggn"] = quadratic_limit(ggn, w_star, eps) / size
    lap("quadratic")

    slq_runs = [
        {
            "steps": steps,
            "probes": probes,
            "runs": slq_errors(
                hessian,
                w_star,
                eps,
                predictions["abs"]["rho"],
                steps,
                probes,
                analysis.slq_seeds,
            ),
        }
        for steps, probes in analysis.slq_settings
    ]
    lap("slq")
    certified = certified_errors(
        ggn,
        w_star,
        eps,
        predictions["ggn"]["rho"],
        analysis.certified_tolerance,
        analysis.certified_seeds,
    )
    lap("certified")
    num_classes = NUM_CLASSES[spec.dataset]
    return {
        "label": spec.label,
        "dimension": size,
        "num_examples": count,
        "num_classes": num_classes,
        "rank_bound": count * (num_classes - 1),
        "eps": eps,
        "dense": {
            "loss": network.loss,
            "accuracy": network.accuracy,
            "test_loss": test_loss,
            "test_accuracy": test_accuracy,
        },
        "weights": w_star.tolist(),
        "hessian_eigenvalues": hessian_eigenvalues.tolist(),
        "ggn_eigenvalues": ggn_eigenvalues.tolist(),
        "prediction": predictions,
        "quadratic": quadratic,
        "one_shot": sweep,
        "slq": slq_runs,
        "certified": certified,
        "seconds": lap.seconds,
    }


def retrain_network(
    spec: NetworkSpec, retraining: RetrainSpec, progress: bool = False, threads: int | None = 1
) -> dict[str, JSONValue]:
    """The retrained limit of one network for each budget of ``retraining`` (see
    ``RetrainSpec``), searched by ``retrained_limit`` from the one-shot limit, and each larger
    budget from the limit of the one before; ``threads`` as in ``analyse_network``."""
    with torch_threads(threads if _device() == "cpu" else None):
        lap = _Laps()
        network = trained_network(spec, _device(), progress)
        size = sum(w.numel() for w in network.weights)
        start = round(one_shot(network)["limit"] * size)
        threshold = network.loss + network.eps
        resolution = max(1, math.ceil(retraining.resolution * size))
        budgets = []
        for epochs in retraining.budgets:
            recipe = Recipe(
                epochs,
                retraining.lr,
                batch_size=spec.batch_size,
                schedule="cosine",
                seed=spec.seed + 1,
            )
            budgets.append(
                retrained_limit(network.model, network.train, threshold, start, recipe, resolution)
            )
            start = budgets[-1]["k"]
            lap(f"{epochs} epochs")
        return {"threshold": threshold, "retrained": budgets, "seconds": lap.seconds}


def first_order(
    spec: NetworkSpec, ratios: dict[str, float], threads: int | None = 1
) -> dict[str, JSONValue]:
    """The term the quadratic model leaves out. At w* the gradient g of the training loss is
    not zero after l1 training (at a stationary point of the penalised loss it is
    -coefficient x sign(w*) on the nonzero weights), so pruning to w^k changes the loss to first
    order by g . (w^k - w*). For each named ratio (fraction kept): k, that first-order term, and
    the actual increase L(w^k) - L(w*) of the one-shot pruned network; and |g|."""
    with torch_threads(threads if _device() == "cpu" else None):
        network = trained_network(spec, _device())
        weights = network.weights
        loss = LOSS(network.model(network.train[0]), network.train[1])
        gradient = torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, weights)])
        gradient = gradient.detach().double().cpu().numpy()
        w_star = flat_weights(weights)
        size = len(w_star)
        order = np.argsort(-np.abs(w_star), kind="stable")
        terms = {}
        for name, ratio in ratios.items():
            k = round(ratio * size)
            dropped = order[k:]
            with masked(weights, global_magnitude_masks(weights, k / size)):
                pruned = evaluate(network.model, *network.train)[0]
            terms[name] = {
                "k": k,
                "first_order": float(gradient[dropped] @ (-w_star[dropped])),
                "increase": pruned - network.loss,
            }
        return {"gradient_norm": float(np.linalg.norm(gradient)), "terms": terms}


def network_config(spec: NetworkSpec, settings: AnalysisSpec | RetrainSpec) -> dict:
    """What one network's stored result depends on (hashed into its file name)."""
    key = "analysis" if isinstance(settings, AnalysisSpec) else "retraining"
    return {"network": dataclasses.asdict(spec), key: dataclasses.asdict(settings)}


def exact_spectra(
    config: ExactSpectraConfig,
    profile: str,
    recompute: Recompute = False,
    progress: bool = True,
    threads: int | None = 1,
) -> list[dict]:
    """One result per network of ``config``, in its order: the stored spectra stage
    (``analyse_network``, under ``results/<profile>/exact_spectra/``) with the keys
    "retrained" from the stored retraining stage (``retrain_network``, under
    ``exact_spectra_retrained/``) and "first_order" from the stored first-order terms at the
    predicted (|H|, G) and one-shot limits (``first_order``, under
    ``exact_spectra_first_order/``); each computed when not stored."""
    spectra = ResultsStore(EXPERIMENT, profile)
    retrained = ResultsStore(f"{EXPERIMENT}_retrained", profile)
    gradients = ResultsStore(f"{EXPERIMENT}_first_order", profile)
    results = []
    for spec in tqdm(config.networks, desc="networks", disable=not progress):
        result = spectra.load_or_compute(
            network_config(spec, config.analysis),
            lambda spec=spec: analyse_network(spec, config.analysis, progress, threads),
            recompute=recompute,
        )
        retraining = retrained.load_or_compute(
            network_config(spec, config.retraining),
            lambda spec=spec: retrain_network(spec, config.retraining, progress, threads),
            recompute=recompute,
        )
        ratios = {
            "abs": result["prediction"]["abs"]["rho"],
            "ggn": result["prediction"]["ggn"]["rho"],
            "one_shot": result["one_shot"]["limit"],
        }
        terms = gradients.load_or_compute(
            {"network": dataclasses.asdict(spec), "ratios": ratios},
            lambda spec=spec, ratios=ratios: first_order(spec, ratios, threads),
            recompute=recompute,
        )
        results.append(result | {"retrained": retraining["retrained"], "first_order": terms})
    trained_network.cache_clear()
    return results


# ----------------------------------------------------------------------------- summaries
def curvature_scale(result: dict, rule: str = "abs") -> dict[str, float]:
    """At the exact predicted limit of ``rule`` ('abs': |H|, 'ggn': G): the shift
    c = 2 eps / R^2, the share of eigenvalues within c of zero (|lambda| <= c for |H|,
    lambda <= c for G) and the largest eigenvalue over c."""
    prediction = result["prediction"][rule]
    shift = 2 * result["eps"] / prediction["R"] ** 2
    key = "ggn_eigenvalues" if rule == "ggn" else "hessian_eigenvalues"
    values = np.asarray(result[key])
    curvature = np.abs(values) if rule == "abs" else values
    return {
        "shift": shift,
        "share_within": float(np.mean(curvature <= shift)),
        "top_over_shift": float(curvature.max() / shift),
    }


def slq_summary(result: dict) -> list[dict[str, float]]:
    """Per SLQ setting: the mean error and the largest |error| over seeds, the mean jackknife
    standard error (NaN for one probe), and how many spreads (if stored) hold the exact value."""
    exact = result["prediction"]["abs"]["rho"]
    summary = []
    for setting in result["slq"]:
        runs = setting["runs"]
        errors = np.array([run["error"] for run in runs])
        stderrs = [run["stderr"] for run in runs if run["stderr"] is not None]
        spreads = [run for run in runs if "spread_low" in run]
        widths = [run["spread_high"] - run["spread_low"] for run in spreads]
        summary.append(
            {
                "steps": setting["steps"],
                "probes": setting["probes"],
                "seeds": len(runs),
                "mean_error": float(errors.mean()),
                "max_abs_error": float(np.abs(errors).max()),
                "mean_stderr": float(np.mean(stderrs)) if stderrs else float("nan"),
                "spreads": len(spreads),
                "inside_spread": sum(r["spread_low"] <= exact <= r["spread_high"] for r in spreads),
                "mean_spread_width": float(np.mean(widths)) if widths else float("nan"),
            }
        )
    return summary


def certified_summary(result: dict) -> dict[str, float]:
    """Over the ``certified_limit`` runs on G: how many intervals hold the exact G prediction,
    their mean width, the largest |midpoint error|, the mean number of products, and how many
    reached the width tolerance."""
    runs = result["certified"]
    return {
        "runs": len(runs),
        "inside": sum(run["inside"] for run in runs),
        "mean_width": float(np.mean([run["width"] for run in runs])),
        "max_abs_midpoint_error": float(max(abs(run["midpoint_error"]) for run in runs)),
        "mean_products": float(np.mean([run["num_products"] for run in runs])),
        "converged": sum(run["converged"] for run in runs),
        "low": runs[0]["low"],
        "high": runs[0]["high"],
    }


def retraining_budgets(result: dict) -> tuple[int, ...]:
    """The retraining budgets (epochs) the retrained limits were found with."""
    return tuple(entry["epochs"] for entry in result["retrained"])


def zero_share(eigenvalues: list[float], relative: float = 1e-12) -> float:
    """The share of eigenvalues within ``relative`` x the largest magnitude of zero."""
    values = np.abs(np.asarray(eigenvalues))
    return float(np.mean(values <= relative * values.max()))


# ----------------------------------------------------------------------------- the text
def describe_networks(config: ExactSpectraConfig, profile: str) -> str:
    """Markdown: what the paper ran (nothing of this size) and what this profile runs."""
    lines = [
        "**The paper** has no experiment of this kind: its networks (FC5 to ResNet50 on "
        "CIFAR and TinyImageNet) are far too large for a dense Hessian, and it estimates "
        "their spectra by Lanczos (128 steps, one probe).",
        "",
        f"**This page, profile `{profile}`:** {len(config.networks)} MLPs trained with the "
        "paper's LOMP recipe on offline data sets, small enough for dense float64 curvature "
        "matrices:",
        "",
    ]
    for spec in config.networks:
        name, side, _ = DATA_NAMES[spec.dataset]
        pooled = f", average-pooled to {spec.side} x {spec.side}" if spec.pool > 1 else ""
        lines.append(
            f"- {spec.label}: D = {spec.dimension:,} prunable weights, trained for "
            f"{spec.epochs} epochs on N = {spec.num_examples:,} {name} training images "
            f"({side} x {side}{pooled})"
        )
    if profile == "smoke":
        lines += ["", "(Tiny networks, barely trained, for the tests: the numbers mean nothing.)"]
    return "\n".join(lines)


def describe_settings(config: ExactSpectraConfig) -> str:
    """Markdown: the numbers of the recipe and of the measurements under this config."""
    recipes = sorted({(s.lr, s.coefficient, s.batch_size, s.epochs) for s in config.networks})
    momentum = Recipe(1, 1.0).momentum
    trained = "; ".join(
        f"learning rate {lr:g}, l1 penalty {coefficient:g}, batch {batch}, {epochs} epochs"
        for lr, coefficient, batch, epochs in recipes
    )
    analysis, retraining = config.analysis, config.retraining
    settings = " and ".join(
        f"{steps} steps x {probes} probe{'s' if probes > 1 else ''}"
        for steps, probes in analysis.slq_settings
    )

    def seeds(count: int) -> str:
        return "seed 0" if count == 1 else f"seeds 0 to {count - 1}"

    budgets = ", ".join(str(b) for b in retraining.budgets)
    return (
        f"Settings of this profile: training by SGD with momentum {momentum:g} ({trained}); "
        f"retraining budgets of {budgets} epochs from a learning rate of "
        f"{retraining.lr:g}, bisection to {retraining.resolution:.1%} of D; SLQ with {settings}, "
        f"{seeds(analysis.slq_seeds)}; `certified_limit` with a width tolerance of "
        f"{analysis.certified_tolerance:g} (confidence {CERTIFIED_CONFIDENCE:g}), "
        f"{seeds(analysis.certified_seeds)}."
    )


def _setting(steps: int, probes: int) -> str:
    return f"{steps} steps x {probes} probe{'s' if probes > 1 else ''}"


def _short(label: str) -> str:
    """'MLP 64-32-32-10' from 'MLP 64-32-32-10, digits 8x8'."""
    return label.split(",")[0]


def _points(value: float) -> str:
    return f"{100 * value:+.1f}"


def _span(values: list[float], form: str = ".3f") -> str:
    """'a' when all values print alike, else 'a to b' (smallest to largest)."""
    low, high = format(min(values), form), format(max(values), form)
    return low if low == high else f"{low} to {high}"


def _each(results: list[dict], values: list[str]) -> str:
    """'v1 (network 1), v2 (network 2) and v3 (network 3)'."""
    parts = [f"{value} ({_short(r['label'])})" for value, r in zip(values, results, strict=True)]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _names(results: list[dict]) -> str:
    """'A', 'A and B', 'A, B and C' of the networks' short names."""
    names = [_short(r["label"]) for r in results]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _direction(differences: list[float]) -> str:
    if all(d < 0 for d in differences):
        return "below"
    if all(d > 0 for d in differences):
        return "above"
    return "on both sides of"


def findings(results: list[dict], tolerance: float, close: float = 0.02) -> str:
    """Markdown bullets: what the two tables and the figures show, every number taken from
    ``results``. ``tolerance``: the width asked of ``certified_limit``; ``close``: the distance
    (a ratio) within which two limits count as agreeing."""
    budgets = retraining_budgets(results[0])
    predicted = [r["prediction"]["abs"]["rho"] for r in results]
    scales = [curvature_scale(r) for r in results]
    lines = []

    above = [
        float(np.mean(np.abs(r["hessian_eigenvalues"]) > s["shift"]))
        for r, s in zip(results, scales, strict=True)
    ]
    lines.append(
        "- **The spectrum near zero decides.** At the predicted limit (|H| rule), "
        f"{_span([s['share_within'] for s in scales], '.0%')} of the eigenvalues of |H| lie "
        "within c = 2 eps / R^2 of zero, and the largest eigenvalue is "
        f"{_span([s['top_over_shift'] for s in scales], ',.0f')} times c. The share of "
        "eigenvalues above c against the prediction is "
        + _each(
            results, [f"{a:.3f} against {p:.3f}" for a, p in zip(above, predicted, strict=True)]
        )
        + ": the prediction is set by the eigenvalues of the order of c, which an estimate "
        "of the spectrum must resolve."
    )

    rules = [
        f"{r['prediction']['abs']['rho']:.3f} / {r['prediction']['flat']['rho']:.3f} / "
        f"{r['prediction']['ggn']['rho']:.3f}"
        for r in results
    ]
    negative = [float(np.mean(np.asarray(r["hessian_eigenvalues"]) < 0)) for r in results]
    ranks = [r["rank_bound"] / r["dimension"] for r in results]
    rank_text = (
        f"D < N(C - 1) on every network (N(C - 1)/D = {_span(ranks, '.1f')}), so the rank "
        "bound does not cap G; "
        if min(ranks) > 1
        else f"N(C - 1)/D = {_span(ranks, '.1f')}: where it is below 1, G's rank caps its "
        "prediction; "
    )
    lines.append(
        f"- **The three rules** (|H| / flat / G) give {_each(results, rules)}. "
        f"{_span(negative, '.0%')} of the eigenvalues of H are negative, and the |H| rule "
        "counts each of them, when above c in magnitude, as curvature. "
        + rank_text
        + f"{_span([zero_share(r['ggn_eigenvalues']) for r in results], '.1%')} of G's "
        "eigenvalues are zero to rounding (dead units, and the directions that shift all "
        "logits of the last layer alike)."
    )

    for rule, name in (("abs", "|H|"), ("ggn", "G")):
        quadratic = [r["quadratic"][rule] for r in results]
        exact = [r["prediction"][rule]["rho"] for r in results]
        differences = [q - p for q, p in zip(quadratic, exact, strict=True)]
        lines.append(
            f"- **The quadratic model under {name}:** its exact limit (magnitude support) is "
            f"{_each(results, [f'{q:.3f}' for q in quadratic])}, "
            f"{_direction(differences)} the kinematic prediction from the same matrix by "
            f"{_span([abs(100 * d) for d in differences], '.1f')} ratio points."
        )

    one_shot = [r["one_shot"]["limit"] for r in results]
    retrained = [[entry["limit"] for entry in r["retrained"]] for r in results]
    last = [values[-1] for values in retrained]
    moved = [abs(values[-1] - values[-2]) for values in retrained] if len(budgets) > 1 else []
    paths = [" -> ".join(f"{v:.3f}" for v in values) for values in retrained]
    budget_text = " -> ".join(str(b) for b in budgets)
    text = (
        f"- **Actual limits.** One-shot magnitude pruning keeps "
        f"{_each(results, [f'{v:.3f}' for v in one_shot])}: "
        f"{_span([o / p for o, p in zip(one_shot, predicted, strict=True)], '.1f')} times "
        f"the |H| prediction. Retrained on the magnitude mask for {budget_text} epochs, the "
        f"networks keep {_each(results, paths)}."
    )
    if moved:
        still = [r for r, m in zip(results, moved, strict=True) if m > close]
        stopped = [r for r, m in zip(results, moved, strict=True) if m <= close]
        text += (
            f" The last doubling of the budget moved the retrained limit by "
            f"{_each(results, [f'{100 * m:.1f}' for m in moved])} ratio points"
        )
        if stopped:
            text += f": it has stopped moving, at this resolution, on {_names(stopped)}"
        if still:
            text += (
                f"{'; it' if stopped else ': it'} has not on "
                f"{_names(still)} (training accuracy "
                f"{_span([r['dense']['accuracy'] for r in still])}), whose retrained limit is "
                "only an upper bound on what the support allows: a longer retraining lowers it"
            )
        text += "."
    lines.append(text)

    if all("first_order" in r for r in results):
        terms = [r["first_order"]["terms"] for r in results]
        eps = [r["eps"] for r in results]
        first = [t["abs"]["first_order"] / e for t, e in zip(terms, eps, strict=True)]
        increase = [t["abs"]["increase"] / e for t, e in zip(terms, eps, strict=True)]
        at_one_shot = [t["one_shot"]["first_order"] / e for t, e in zip(terms, eps, strict=True)]
        lines.append(
            "- **The term the quadratic model leaves out.** The theory expands the loss to "
            "second order around w*, as if its gradient g vanished there; after l1 training "
            "it does not. At the |H| prediction the first-order change g . (w^k - w*) alone is "
            f"{_each(results, [f'{x:.1f}' for x in first])} times eps, and the loss of the "
            f"one-shot pruned network rises by {_span(increase, '.0f')} times eps. At the "
            f"one-shot limit the first-order term is {_span(at_one_shot, '.2f')} times eps."
        )

    far_one_shot = [100 * (o - p) for o, p in zip(one_shot, predicted, strict=True)]
    far_retrained = [100 * (t - p) for t, p in zip(last, predicted, strict=True)]
    agreeing = [
        sum(abs(values[i] - p) <= close for values, p in zip(retrained, predicted, strict=True))
        for i in range(len(budgets))
    ]
    verdict = (
        f"with {budgets[-1]} epochs of retraining it agrees with the retrained limit within "
        f"{100 * close:.0f} points on {agreeing[-1]} of {len(results)} networks"
    )
    if len(set(agreeing)) > 1:
        earlier = [f"{b} epochs on {a}" for b, a in zip(budgets, agreeing, strict=True)][:-1]
        verdict += ", with " + (
            earlier[0] if len(earlier) == 1 else ", ".join(earlier[:-1]) + " and " + earlier[-1]
        )
        verdict += (
            ": whether the prediction coincides with the retrained limit depends on the "
            "retraining budget"
        )
    lines.append(
        '- **Against the paper\'s claim** that the prediction "coincides very well" with '
        "actual pruning: with no estimation error at all, the one-shot limit lies "
        f"{_span([abs(d) for d in far_one_shot], '.1f')} ratio points "
        f"{_direction(far_one_shot)} the |H| prediction, and the retrained limit after "
        f"{budgets[-1]} epochs {_span([abs(d) for d in far_retrained], '.1f')} points "
        f"{_direction(far_retrained)} it; {verdict}."
    )

    for summary_index, setting in enumerate(results[0]["slq"]):
        summaries = [slq_summary(r)[summary_index] for r in results]
        errors = [100 * run["error"] for r in results for run in r["slq"][summary_index]["runs"]]
        text = (
            f"- **SLQ, {_setting(setting['steps'], setting['probes'])}** "
            f"({summaries[0]['seeds']} seeds per network): errors from {min(errors):+.1f} to "
            f"{max(errors):+.1f} ratio points, mean "
            f"{_each(results, [_points(s['mean_error']) for s in summaries])}."
        )
        stderrs = [s["mean_stderr"] for s in summaries]
        if not any(math.isnan(x) for x in stderrs):
            ratios = [s["max_abs_error"] / s["mean_stderr"] for s in summaries]
            text += (
                " The standard error it reports (jackknife over probes) averages "
                f"{_span([100 * x for x in stderrs], '.1f')} points, while its largest error "
                f"is {_span(ratios, '.1f')} times that."
            )
        spreads = sum(s["spreads"] for s in summaries)
        if spreads:
            inside = sum(s["inside_spread"] for s in summaries)
            text += (
                " Its spread over the truncations from half the steps to all of them and over "
                f"the probes (`prediction_spread`) holds the exact value in {inside} of "
                f"{spreads} runs, at a mean width of "
                f"{_span([100 * s['mean_spread_width'] for s in summaries], '.1f')} points."
            )
        lines.append(text)

    certified = [certified_summary(r) for r in results]
    runs = sum(c["runs"] for c in certified)
    converged = sum(c["converged"] for c in certified)
    reasons = sorted(
        {run["stop_reason"] for r in results for run in r["certified"] if not run["converged"]}
    )
    lines.append(
        f"- **certified_limit on G** (asked for a width of {tolerance:g}): the interval holds "
        f"the exact G prediction in {sum(c['inside'] for c in certified)} of {runs} runs, "
        f"and its midpoint is within "
        f"{_span([100 * c['max_abs_midpoint_error'] for c in certified], '.2f')} points of "
        f"the exact value. The intervals are "
        f"{_span([c['mean_width'] for c in certified], '.4f')} wide after "
        f"{_span([c['mean_products'] for c in certified], ',.0f')} products on average; "
        f"{converged} of {runs} runs reached the width asked for"
        + (
            f" ({'they' if not converged else 'the others'} stopped because {'; '.join(reasons)})"
            if reasons
            else ""
        )
        + "."
    )
    return "\n".join(lines)
