"""Iterative magnitude pruning with rewinding: nested masks, the schedule's counts, the rewind."""

import itertools

import pytest
import torch
from torch import nn

from prunelimit.iterative import (
    imp_schedule,
    iterative_magnitude_pruning,
    nested_magnitude_masks,
    rounds_to,
)
from prunelimit.models import mlp, prunable_parameters
from prunelimit.pruning import global_magnitude_masks


def _rewinder(params: list[nn.Parameter], values: list[torch.Tensor]):
    def rewind() -> None:
        with torch.no_grad():
            for p, value in zip(params, values, strict=True):
                p.copy_(value)

    return rewind


def _model() -> nn.Module:
    torch.manual_seed(0)
    return mlp(12, (16, 8), 3).double()


def _sgd_steps(model: nn.Module, steps: int = 5, seed: int = 1) -> None:
    """A few SGD steps with momentum on fixed random data (the retraining stand-in)."""
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randn(64, 12, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, 3, (64,), generator=generator)
    optimiser = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for _ in range(steps):
        optimiser.zero_grad()
        nn.functional.cross_entropy(model(inputs), labels).backward()
        optimiser.step()


def test_schedule_prunes_a_fixed_fraction_of_what_is_left() -> None:
    assert imp_schedule(1000, 0.2, 4) == [800, 640, 512, 410]
    assert rounds_to(0.1, 0.2) == 11 and 0.8**11 <= 0.1 < 0.8**10
    assert rounds_to(0.8, 0.2) == 1
    with pytest.raises(ValueError, match="fraction"):
        imp_schedule(1000, 1.0, 3)
    with pytest.raises(ValueError, match="positive ratio"):
        rounds_to(0.0, 0.2)


def test_imp_masks_are_nested_follow_the_schedule_and_rewind() -> None:
    model = _model()
    params = prunable_parameters(model)
    rewind_to = [p.detach().clone() for p in params]
    _sgd_steps(model, seed=2)  # "trained": the weights have moved from the rewind point
    counts = imp_schedule(sum(p.numel() for p in params), 0.3, 4)
    first_round = global_magnitude_masks(params, counts[0] / sum(p.numel() for p in params))
    seen = []

    def after_round(k: int, masks: list[torch.Tensor]) -> bool:
        assert sum(int(m.sum()) for m in masks) == k
        for p, m in zip(params, masks, strict=True):
            assert float(p.detach()[~m].abs().max()) == 0.0, "pruned weights stay at zero"
        seen.append([p.detach().clone() for p in params])
        return True

    def retrain(masks: list[torch.Tensor]) -> None:
        _sgd_steps(model, seed=3)

    history = iterative_magnitude_pruning(
        params, counts, _rewinder(params, rewind_to), retrain, after_round
    )
    assert [sum(int(m.sum()) for m in masks) for masks in history] == counts
    assert all(torch.equal(a, b) for a, b in zip(history[0], first_round, strict=True))
    for before, after in itertools.pairwise(history):
        assert all(bool((b & ~a).sum() == 0) for a, b in zip(before, after, strict=True))
    # each later round prunes by the magnitudes the round before ended with
    for index in range(1, len(history)):
        expected = nested_magnitude_masks(seen[index - 1], history[index - 1], counts[index])
        assert all(torch.equal(a, b) for a, b in zip(history[index], expected, strict=True))


def test_without_retraining_the_kept_weights_are_the_rewind_point() -> None:
    model = _model()
    params = prunable_parameters(model)
    rewind_to = [torch.randn_like(p) for p in params]
    rewind = _rewinder(params, rewind_to)
    history = iterative_magnitude_pruning(params, [200, 100], rewind, lambda masks: None)
    for p, start, mask in zip(params, rewind_to, history[-1], strict=True):
        assert torch.equal(p.detach(), start * mask)


def test_imp_stops_when_a_round_fails_and_refuses_bad_schedules() -> None:
    model = _model()
    params = prunable_parameters(model)
    rewind = _rewinder(params, [p.detach().clone() for p in params])
    history = iterative_magnitude_pruning(
        params, [300, 200, 100], rewind, lambda masks: None, lambda k, masks: k > 200
    )
    assert len(history) == 2
    with pytest.raises(ValueError, match="must not increase"):
        iterative_magnitude_pruning(params, [100, 200], rewind, lambda masks: None)
    with pytest.raises(ValueError, match="cannot be kept"):
        nested_magnitude_masks(params, history[-1], 10_000)
