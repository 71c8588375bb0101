"""Pruning masks, one-shot sweeps and retraining on a mask.

Ratios are fractions KEPT: ``ratio = 0.1`` keeps round(0.1 D) of the D prunable weights. Masks are
boolean tensors shaped like their parameters (True = kept).
"""

import contextlib
import dataclasses
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from tqdm import tqdm

Masks = list[torch.Tensor]


def magnitude_order(weights: np.ndarray) -> np.ndarray:
    """Indices by decreasing |w|, ties broken by increasing index (deterministic)."""
    return np.argsort(-np.abs(weights), kind="stable")


def check_ratio(ratio: float) -> float:
    """``ratio`` as a float if it is a fraction kept in [0, 1]; a ValueError otherwise."""
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"ratio (the fraction of weights kept) must be in [0, 1], got {ratio!r}")
    return float(ratio)


def kept_count(size: int, ratio: float) -> int:
    """round(ratio * size): how many of ``size`` weights a ratio keeps."""
    return round(check_ratio(ratio) * size)


def masks_from_flat(params: Sequence[torch.Tensor], keep: np.ndarray) -> Masks:
    """Boolean masks shaped like ``params`` (on their devices) from one flat array [D]."""
    flat = torch.from_numpy(keep)
    pieces = torch.split(flat, [p.numel() for p in params])
    return [piece.reshape(p.shape).to(p.device) for piece, p in zip(pieces, params, strict=True)]


def flat_magnitudes(params: Sequence[torch.Tensor]) -> np.ndarray:
    """|w| of all ``params`` as one float64 array [D], in parameter order."""
    if not params:
        raise ValueError("there are no parameters to prune")
    return torch.cat([p.detach().abs().reshape(-1).double().cpu() for p in params]).numpy()


def global_magnitude_masks(params: Sequence[torch.Tensor], ratio: float) -> Masks:
    """Keep the round(ratio D) largest |w| over all parameters together (ties: lower index first).

    The same masks as ``torch.nn.utils.prune.global_unstructured`` with ``L1Unstructured`` and
    ``amount=D - k`` (ties aside), and the Euclidean projection of w* onto k-sparse vectors.
    """
    magnitudes = flat_magnitudes(params)
    keep = np.zeros(magnitudes.size, dtype=bool)
    keep[magnitude_order(magnitudes)[: kept_count(magnitudes.size, ratio)]] = True
    return masks_from_flat(params, keep)


def layerwise_magnitude_masks(params: Sequence[torch.Tensor], ratio: float) -> Masks:
    """Keep the round(ratio n) largest |w| of each parameter separately (the layerwise baseline)."""
    return [global_magnitude_masks([p], ratio)[0] for p in params]


def random_masks(params: Sequence[torch.Tensor], ratio: float, seed: int = 0) -> Masks:
    """Keep round(ratio D) weights chosen uniformly at random (the random baseline)."""
    size = flat_magnitudes(params).size
    keep = np.zeros(size, dtype=bool)
    keep[np.random.default_rng(seed).choice(size, kept_count(size, ratio), replace=False)] = True
    return masks_from_flat(params, keep)


def smart_ratio_counts(
    sizes: Sequence[int], ratio: float, last_keep: float = 0.3, depth_decay: bool = False
) -> list[int]:
    """Weights kept per layer by Smart-Ratio (Su et al. 2020), for layers of ``sizes`` weights in
    network order. The last layer (the classifier) keeps round(``last_keep`` n_L) (more only
    when the others cannot hold the rest); layer l of the L - 1 others keeps min(n_l,
    c q_l n_l) with q_l = (L - l + 1)^2 + (L - l + 1) (divided by l^2 with ``depth_decay``,
    their rule for VGG), the scale c solved so that all counts add up to round(ratio D)
    exactly (shares above 1 are capped at 1 and the rest shared out again; counts rounded
    by largest remainder)."""
    sizes = [int(n) for n in sizes]
    if len(sizes) < 2 or min(sizes) < 1:
        raise ValueError(f"need two or more layers of at least one weight, got sizes {sizes}")
    total, depth = kept_count(sum(sizes), ratio), len(sizes)
    body, classifier = sizes[:-1], sizes[-1]
    last = min(classifier, total, max(round(last_keep * classifier), total - sum(body)))
    target = total - last
    q = np.array(
        [
            ((depth - layer + 1) ** 2 + depth - layer + 1) / (layer**2 if depth_decay else 1)
            for layer in range(1, depth)
        ]
    )
    n = np.array(body, dtype=np.float64)
    full = np.zeros(len(body), dtype=bool)  # layers kept whole
    while True:
        scale = (target - n[full].sum()) / (q[~full] * n[~full]).sum() if (~full).any() else 0.0
        grown = full | (scale * q >= 1)
        if np.array_equal(grown, full):
            break
        full = grown
    shares = np.where(full, n, scale * q * n)
    counts = np.floor(shares).astype(np.int64)
    remainders = np.where(counts < n, shares - counts, -1.0)
    for index in np.argsort(-remainders, kind="stable")[: target - int(counts.sum())]:
        counts[index] += 1
    return [*counts.tolist(), last]


def smart_ratio_masks(
    params: Sequence[torch.Tensor],
    ratio: float,
    seed: int = 0,
    last_keep: float = 0.3,
    depth_decay: bool = False,
) -> Masks:
    """Smart-Ratio masks: each layer keeps ``smart_ratio_counts`` weights chosen uniformly at
    random (seeded) within it."""
    counts = smart_ratio_counts([p.numel() for p in params], ratio, last_keep, depth_decay)
    rng = np.random.default_rng(seed)
    layers = []
    for p, count in zip(params, counts, strict=True):
        keep = np.zeros(p.numel(), dtype=bool)
        keep[rng.choice(p.numel(), count, replace=False)] = True
        layers.append(keep)
    return masks_from_flat(params, np.concatenate(layers))


MaskRule = Callable[[Sequence[torch.Tensor], float, int], Masks]


def _global_magnitude(params: Sequence[torch.Tensor], ratio: float, seed: int) -> Masks:
    return global_magnitude_masks(params, ratio)


def _layerwise_magnitude(params: Sequence[torch.Tensor], ratio: float, seed: int) -> Masks:
    return layerwise_magnitude_masks(params, ratio)


# How a mask keeping a given ratio is chosen: rule(params, ratio, seed) (seed: for the random ones)
MASK_RULES: dict[str, MaskRule] = {
    "magnitude": _global_magnitude,
    "layerwise": _layerwise_magnitude,
    "random": random_masks,
    "smart-ratio": smart_ratio_masks,
}


@contextlib.contextmanager
def masked(params: Sequence[torch.Tensor], masks: Masks) -> Iterator[None]:
    """Zero the pruned weights for the duration of the block, then restore them exactly."""
    saved = [p.detach().clone() for p in params]
    try:
        with torch.no_grad():
            for p, mask in zip(params, masks, strict=True):
                p.mul_(mask)
        yield
    finally:
        with torch.no_grad():
            for p, original in zip(params, saved, strict=True):
                p.copy_(original)


# ----------------------------------------------------------------------------- one-shot sweeps
@dataclasses.dataclass(frozen=True)
class Sweep:
    """Loss and accuracy of the one-shot pruned network at each ratio evaluated (ascending), and
    the limit: the smallest evaluated ratio at and above which every evaluated ratio keeps its
    loss within ``tolerance`` of the dense loss. It is well defined on any loss curve, also one
    that is not monotone in the ratio (a ratio that passes below a failing one does not count)."""

    ratios: list[float]
    losses: list[float]
    accuracies: list[float | None]
    dense_loss: float
    dense_accuracy: float | None
    tolerance: float
    limit: float


def magnitude_prefix_masks(params: Sequence[torch.Tensor]) -> Callable[[int], Masks]:
    """Global magnitude masks by kept count, from one sort (equal to ``global_magnitude_masks``)."""
    order = magnitude_order(flat_magnitudes(params))

    def masks(k: int) -> Masks:
        keep = np.zeros(order.size, dtype=bool)
        keep[order[:k]] = True
        return masks_from_flat(params, keep)

    return masks


def one_shot_sweep(
    params: Sequence[torch.Tensor],
    evaluate: Callable[[], tuple[float, float | None]],
    tolerance: float,
    grid: Sequence[float] = tuple(np.linspace(0.0, 1.0, 21)),
    masks_for: Callable[[Sequence[torch.Tensor], float], Masks] | None = None,
    resolution: int = 1,
    progress: bool = True,
) -> Sweep:
    """Evaluate the pruned network on a grid of ratios, then bisect on the kept count k between the
    largest failing grid point and the grid point above it, until they are ``resolution`` weights
    apart. The limit is the smallest evaluated ratio at and above which every evaluated ratio
    passes (see ``Sweep``); on a curve that is not monotone, passing ratios below a failing one
    are kept in the sweep but do not set the limit.

    ``evaluate()`` returns (loss, accuracy) of the model in its current state; the weights are
    pruned in place only while it runs (no checkpoint per ratio). A ratio passes when its loss is
    at most the dense loss + ``tolerance`` (>= 0, so the dense network passes).
    ``masks_for(params, ratio)`` defaults to global magnitude pruning (computed from a single sort
    of the magnitudes).
    """
    if not tolerance >= 0:
        raise ValueError(f"tolerance must be >= 0 (the loss allowance eps), got {tolerance}")
    size = flat_magnitudes(params).size
    by_count = (
        magnitude_prefix_masks(params)
        if masks_for is None
        else lambda k: masks_for(params, k / size)
    )
    dense_loss, dense_accuracy = evaluate()
    results: dict[int, tuple[float, float | None]] = {}

    def at(k: int) -> tuple[float, float | None]:
        if k not in results:
            with masked(params, by_count(k)):
                results[k] = evaluate()
        return results[k]

    counts = sorted({kept_count(size, r) for r in grid} | {size})
    for k in tqdm(counts, desc="one-shot sweep", disable=not progress):
        at(k)
    failing = [k for k in counts if results[k][0] > dense_loss + tolerance]
    below = max(failing, default=None)
    first = counts[0] if below is None else min(k for k in counts if k > below)
    if below is not None:  # bisection between a failing and a passing count
        low, high = below, first
        while high - low > max(resolution, 1):
            middle = (low + high) // 2
            low, high = (low, middle) if at(middle)[0] <= dense_loss + tolerance else (middle, high)
        first = high
    ordered = sorted(results)
    return Sweep(
        ratios=[k / size for k in ordered],
        losses=[results[k][0] for k in ordered],
        accuracies=[results[k][1] for k in ordered],
        dense_loss=dense_loss,
        dense_accuracy=dense_accuracy,
        tolerance=tolerance,
        limit=first / size,
    )


# ----------------------------------------------------------------------------- retraining
@contextlib.contextmanager
def frozen_mask(params: Sequence[torch.Tensor], masks: Masks) -> Iterator[None]:
    """Apply ``masks`` and keep pruned weights at zero while training inside the block: their
    gradients are masked, so plain SGD (with or without momentum, no weight decay) never moves
    them. The pruned weights stay zero after the block."""
    with torch.no_grad():
        for p, mask in zip(params, masks, strict=True):
            p.mul_(mask)
    hooks = [
        p.register_hook(lambda grad, m=mask: grad * m)
        for p, mask in zip(params, masks, strict=True)
    ]
    try:
        yield
    finally:
        for hook in hooks:
            hook.remove()
