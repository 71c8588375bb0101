"""Methods experiments: Hessian-vector products and spectral quadrature on real networks.

The exact references come from a network small enough for a dense Hessian: an MLP 49 -> 24 -> 10
on MNIST digits average-pooled to 7 x 7 (D = 1,450 parameters).
"""

import dataclasses
import time
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, hessian

from companion.profiles import ProfiledConfig
from prunelimit.curvature import HessianOperator, dense_hessian
from prunelimit.data import load_fashion_mnist, load_mnist_5k, shuffled_split
from prunelimit.lanczos import MatrixOperator, Tridiagonal, lanczos, slq
from prunelimit.models import fc5, kaiming_init, mlp
from prunelimit.pruning_function import curvature_magnitudes, pruning_function
from prunelimit.training import Recipe, evaluate, train

LOSS = nn.CrossEntropyLoss()


# ----------------------------------------------------------------------------- the digits network
@dataclasses.dataclass(frozen=True)
class DigitsNetworkConfig(ProfiledConfig):
    """A small MLP on real digits, trained to convergence on CPU in seconds."""

    PROFILE_OVERRIDES: ClassVar[dict[str, dict[str, Any]]] = {"smoke": {"hidden": 6, "epochs": 3}}

    hidden: int = 24
    pool: int = 4
    epochs: int = 30
    lr: float = 0.05
    test_size: int = 1000
    seed: int = 0


@dataclasses.dataclass
class DigitsNetwork:
    model: nn.Module
    train: tuple[torch.Tensor, torch.Tensor]
    test: tuple[torch.Tensor, torch.Tensor]


def digits_network(config: DigitsNetworkConfig) -> DigitsNetwork:
    """Train the MLP (float64, so that the exact references are exact) on MNIST-5k digits."""
    images, labels = load_mnist_5k()
    pooled = nn.functional.avg_pool2d(images, config.pool).double()
    train_data, test_data = shuffled_split(pooled, labels, config.test_size, seed=config.seed)
    torch.manual_seed(config.seed)
    side = 28 // config.pool
    model = kaiming_init(mlp(side * side, (config.hidden,), 10)).double()
    recipe = Recipe(config.epochs, config.lr, seed=config.seed)
    train(model, *train_data, recipe, progress=False)
    return DigitsNetwork(model, train_data, test_data)


def _reference_hessian(
    model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor
) -> torch.Tensor:
    """torch.func.hessian of the mean loss over all the data at once, as [D, D]."""
    state = {name: p.detach() for name, p in model.named_parameters()}
    blocks = hessian(lambda s: LOSS(functional_call(model, s, (inputs,)), targets))(state)
    names = list(state)
    return torch.cat(
        [
            torch.cat([blocks[a][b].reshape(state[a].numel(), state[b].numel()) for b in names], 1)
            for a in names
        ]
    )


def exactness_check(config: DigitsNetworkConfig) -> dict:
    """Accuracy of the network, our products against torch.func.hessian, and the exact spectrum."""
    network = digits_network(config)
    ours = dense_hessian(network.model, LOSS, network.train, chunk_size=1000)
    reference = _reference_hessian(network.model, *network.train)
    forward = dense_hessian(
        network.model, LOSS, network.train, chunk_size=1000, backend="forward_over_reverse"
    )
    eigenvalues = np.linalg.eigvalsh(((reference + reference.T) / 2).numpy())
    return {
        "parameters": ours.shape[0],
        "train": evaluate(network.model, *network.train),
        "test": evaluate(network.model, *network.test),
        "error_vs_torch_func": float((ours - reference).norm() / reference.norm()),
        "error_between_backends": float((ours - forward).norm() / ours.norm()),
        "asymmetry": float((ours - ours.T).norm() / ours.norm()),
        "eigenvalues": eigenvalues.tolist(),
    }


# ----------------------------------------------------------------------------- cost of products
@dataclasses.dataclass(frozen=True)
class ProductCostConfig(ProfiledConfig):
    """Time of an HVP and of matmat blocks against a gradient, for FC5 on Fashion-MNIST."""

    PROFILE_OVERRIDES: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {"examples": 512, "epochs": 1, "repeats": 1},
        "full": {"examples": 60_000},
    }

    examples: int = 10_000
    epochs: int = 1
    repeats: int = 3
    seed: int = 0


def _best_time(work, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return min(times)


def product_costs(config: ProductCostConfig) -> dict[str, float]:
    """Best-of-``repeats`` seconds of a gradient, one HVP (graph rebuilt, and on a kept graph),
    and matmat with 4 and 8 vectors (graph rebuilt)."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    images, labels = load_fashion_mnist("train", limit=config.examples)
    images, labels = images.to(device), labels.to(device)
    torch.manual_seed(config.seed)
    model = fc5().to(device)
    train(model, images, labels, Recipe(config.epochs, 0.01, seed=config.seed), progress=False)
    data = (images, labels)
    fresh = HessianOperator(model, LOSS, data, chunk_size=config.examples, reuse_graph=False)
    kept = HessianOperator(model, LOSS, data, chunk_size=config.examples)
    vectors = torch.randn(fresh.shape[0], 8, device=device)
    fresh.gradient()  # warm-up
    kept.matvec(vectors[:, 0])  # builds the graph that later products reuse
    return {
        "device": device,
        "parameters": fresh.shape[0],
        "gradient": _best_time(fresh.gradient, config.repeats),
        "hvp": _best_time(lambda: fresh.matvec(vectors[:, 0]), config.repeats),
        "hvp_kept_graph": _best_time(lambda: kept.matvec(vectors[:, 1]), config.repeats),
        "matmat4": _best_time(lambda: fresh.matmat(vectors[:, :4]), config.repeats),
        "matmat8": _best_time(lambda: fresh.matmat(vectors[:, :8]), config.repeats),
    }


# ----------------------------------------------------------------------------- Lanczos and SLQ
@dataclasses.dataclass(frozen=True)
class SpectrumConfig(ProfiledConfig):
    """Lanczos and SLQ on the digits network's Hessian, against its exact spectrum."""

    PROFILE_OVERRIDES: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {
            "network": DigitsNetworkConfig(hidden=6, epochs=3),
            "ghost_steps": 30,
            "step_counts": (5, 10, 20),
            "num_probes": 4,
        },
    }

    network: DigitsNetworkConfig = DigitsNetworkConfig()
    ghost_steps: int = 120
    step_counts: tuple[int, ...] = (5, 10, 20, 40, 80, 160, 320)
    num_probes: int = 20
    peak_width: float = 1e-3  # 2 eps / R^2 of the pruning functional f_R(x) = x / (x + width)
    sigmas: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 3e-2, 1e-1)
    seed: int = 0


def pruning_functional(eigenvalues: np.ndarray, peak_width: float) -> np.ndarray:
    """f_R(lambda) with 2 eps / R^2 = ``peak_width``, negative curvature taken by |lambda|."""
    return pruning_function(curvature_magnitudes(eigenvalues, "abs"), 1.0 / peak_width)


def _ritz_history(tridiagonal: Tridiagonal, steps: int, keep: int = 12) -> list[list[float]]:
    """The ``keep`` largest Ritz values after each step m = 1..steps: where converged values,
    and their ghost copies, appear."""
    count = min(steps, len(tridiagonal.diagonal))
    return [tridiagonal.leading(m).eigen()[0][-keep:].tolist() for m in range(1, count + 1)]


def spectrum_experiment(config: SpectrumConfig) -> dict:
    """Ghost eigenvalues, SLQ convergence of (1/D) tr f_R(H) and the bias of a gridded density."""
    network = digits_network(config.network)
    matrix = dense_hessian(network.model, LOSS, network.train, chunk_size=1000)
    exact = np.linalg.eigvalsh(((matrix + matrix.T) / 2).numpy())
    operator = HessianOperator(network.model, LOSS, network.train, chunk_size=1000)
    with_reorth = lanczos(operator, config.ghost_steps, seed=config.seed)
    without = lanczos(
        MatrixOperator(matrix), config.ghost_steps, seed=config.seed, reorthogonalize=False
    )
    target = float(np.mean(pruning_functional(exact, config.peak_width)))
    finest = slq(operator, max(config.step_counts), config.num_probes, seed=config.seed)
    convergence = []
    for steps in config.step_counts:
        estimate = finest.truncated(steps).spectral_sum(
            lambda x: pruning_functional(x, config.peak_width)
        )
        convergence.append({"steps": steps, "mean": estimate.mean, "stderr": estimate.stderr})
    gridded = []
    for sigma in config.sigmas:
        grid = np.linspace(exact.min() - 5 * sigma, exact.max() + 5 * sigma, 20_001)
        density = finest.density(grid, sigma)
        integral = float(np.trapezoid(density * pruning_functional(grid, config.peak_width), grid))
        gridded.append({"sigma": sigma, "estimate": integral})
    return {
        "exact_eigenvalues": exact.tolist(),
        "ritz_with": _ritz_history(with_reorth.tridiagonal, config.ghost_steps),
        "ritz_without": _ritz_history(without.tridiagonal, config.ghost_steps),
        "top_exact": float(exact[-1]),
        "exact_sum": target,
        "convergence": convergence,
        "quadrature": finest.spectral_sum(
            lambda x: pruning_functional(x, config.peak_width)
        ).to_dict(),
        "gridded": gridded,
        "slq": finest.to_dict(),
    }


def ghost_counts(result: dict, tolerance: float = 1e-6) -> dict[str, int]:
    """How many final Ritz values sit on the top eigenvalue, per variant (1 = no ghost)."""
    top = result["top_exact"]
    return {
        key: int(np.sum(np.abs(np.asarray(result[key][-1]) - top) <= tolerance * abs(top)))
        for key in ("ritz_without", "ritz_with")
    }
