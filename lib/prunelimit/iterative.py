"""Iterative magnitude pruning with weight rewinding (Frankle and Carbin 2019; Frankle et al.
2020): prune by global magnitude to the next kept count of a schedule, among the weights still
kept; set the kept weights back to their values at an early point of training (the rewind
point); retrain on the mask; repeat. Masks are nested by construction.
"""

import itertools
from collections.abc import Callable, Sequence

import numpy as np
import torch

from prunelimit.pruning import Masks, check_ratio, flat_magnitudes, frozen_mask, masks_from_flat


def imp_schedule(size: int, fraction: float, rounds: int) -> list[int]:
    """Kept counts after rounds 1..``rounds`` when each prunes ``fraction`` of the weights left:
    round(size (1 - fraction)^t) (Frankle and Carbin prune 20% per round)."""
    if not 0 < fraction < 1:
        raise ValueError(f"fraction (pruned per round) must be in (0, 1), got {fraction!r}")
    if rounds < 1:
        raise ValueError(f"need at least one round, got {rounds}")
    return [round(size * (1 - fraction) ** t) for t in range(1, rounds + 1)]


def rounds_to(ratio: float, fraction: float) -> int:
    """The fewest rounds of ``imp_schedule`` that reach ``ratio`` (fraction kept) or below."""
    ratio = check_ratio(ratio)
    if ratio == 0:
        raise ValueError("IMP never reaches ratio 0: give a positive ratio")
    return max(1, int(np.ceil(np.log(ratio) / np.log(1 - fraction) - 1e-12)))


def nested_magnitude_masks(params: Sequence[torch.Tensor], masks: Masks, k: int) -> Masks:
    """The k largest |w| among the weights ``masks`` keeps (ties: lower index first), so the
    result is nested in ``masks``. k must not exceed the weights kept."""
    kept = torch.cat([m.reshape(-1).cpu() for m in masks]).numpy()
    if not 0 <= k <= int(kept.sum()):
        raise ValueError(f"k = {k} weights cannot be kept from the {int(kept.sum())} kept now")
    magnitudes = np.where(kept, flat_magnitudes(params), -1.0)
    keep = np.zeros(kept.size, dtype=bool)
    keep[np.argsort(-magnitudes, kind="stable")[:k]] = True
    return masks_from_flat(params, keep)


def iterative_magnitude_pruning(
    params: Sequence[torch.Tensor],
    counts: Sequence[int],
    rewind: Callable[[], None],
    retrain: Callable[[Masks], None],
    after_round: Callable[[int, Masks], bool] | None = None,
) -> list[Masks]:
    """Run IMP on ``params`` (trained already) through the kept ``counts`` (decreasing, e.g.
    from ``imp_schedule``): each round prunes to its count by magnitude among the weights kept,
    calls ``rewind()`` (which sets the network, ``params`` and whatever else it holds, back to
    the rewind point), then ``retrain(masks)`` with the pruned weights held at zero.
    ``after_round(k, masks)`` sees the retrained network; returning False stops early. The
    masks of every round run."""
    if any(b > a for a, b in itertools.pairwise(counts)):
        raise ValueError(f"IMP's kept counts must not increase from round to round, got {counts}")
    masks: Masks = [torch.ones_like(p, dtype=torch.bool) for p in params]
    history = []
    for k in counts:
        masks = nested_magnitude_masks(params, masks, k)
        rewind()
        with frozen_mask(params, masks):
            retrain(masks)
        history.append(masks)
        if after_round is not None and not after_round(k, masks):
            break
    return history
