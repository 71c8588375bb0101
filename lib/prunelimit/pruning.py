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


def _check_ratio(ratio: float) -> float:
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"ratio (the fraction of weights kept) must be in [0, 1], got {ratio!r}")
    return float(ratio)


def kept_count(size: int, ratio: float) -> int:
    """round(ratio * size): how many of ``size`` weights a ratio keeps."""
    return round(_check_ratio(ratio) * size)


def _masks_from_flat(params: Sequence[torch.Tensor], keep: np.ndarray) -> Masks:
    flat = torch.from_numpy(keep)
    pieces = torch.split(flat, [p.numel() for p in params])
    return [piece.reshape(p.shape).to(p.device) for piece, p in zip(pieces, params, strict=True)]


def _flat_magnitudes(params: Sequence[torch.Tensor]) -> np.ndarray:
    if not params:
        raise ValueError("there are no parameters to prune")
    return torch.cat([p.detach().abs().reshape(-1).double().cpu() for p in params]).numpy()


def global_magnitude_masks(params: Sequence[torch.Tensor], ratio: float) -> Masks:
    """Keep the round(ratio D) largest |w| over all parameters together (ties: lower index first).

    The same masks as ``torch.nn.utils.prune.global_unstructured`` with ``L1Unstructured`` and
    ``amount=D - k`` (ties aside), and the Euclidean projection of w* onto k-sparse vectors.
    """
    magnitudes = _flat_magnitudes(params)
    keep = np.zeros(magnitudes.size, dtype=bool)
    keep[magnitude_order(magnitudes)[: kept_count(magnitudes.size, ratio)]] = True
    return _masks_from_flat(params, keep)


def layerwise_magnitude_masks(params: Sequence[torch.Tensor], ratio: float) -> Masks:
    """Keep the round(ratio n) largest |w| of each parameter separately (the layerwise baseline)."""
    return [global_magnitude_masks([p], ratio)[0] for p in params]


def random_masks(params: Sequence[torch.Tensor], ratio: float, seed: int = 0) -> Masks:
    """Keep round(ratio D) weights chosen uniformly at random (the random baseline)."""
    size = _flat_magnitudes(params).size
    keep = np.zeros(size, dtype=bool)
    keep[np.random.default_rng(seed).choice(size, kept_count(size, ratio), replace=False)] = True
    return _masks_from_flat(params, keep)


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
    order = magnitude_order(_flat_magnitudes(params))

    def masks(k: int) -> Masks:
        keep = np.zeros(order.size, dtype=bool)
        keep[order[:k]] = True
        return _masks_from_flat(params, keep)

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
    size = _flat_magnitudes(params).size
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
