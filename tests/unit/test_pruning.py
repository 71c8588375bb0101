"""Pruning masks against torch.nn.utils.prune, sweeps to a single weight, retraining on a mask."""

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from prunelimit.limit import projection_distances
from prunelimit.models import prunable_parameters
from prunelimit.pruning import (
    frozen_mask,
    global_magnitude_masks,
    layerwise_magnitude_masks,
    masked,
    one_shot_sweep,
    random_masks,
    smart_ratio_counts,
    smart_ratio_masks,
)
from prunelimit.training import Recipe, evaluate, train


def small_model(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 6 * 6, 10),
        nn.ReLU(),
        nn.Linear(10, 3),
    )


@pytest.mark.parametrize("ratio", [0.0, 0.03, 0.25, 0.5, 0.9, 1.0])
def test_global_masks_equal_torch_global_unstructured(ratio: float) -> None:
    ours_model, theirs_model = small_model(), small_model()
    ours = global_magnitude_masks(prunable_parameters(ours_model), ratio)
    size = sum(m.numel() for m in ours)
    kept = round(ratio * size)
    modules = [m for m in theirs_model.modules() if isinstance(m, nn.Linear | nn.Conv2d)]
    prune.global_unstructured(
        [(m, "weight") for m in modules], prune.L1Unstructured, amount=size - kept
    )
    for mask, module in zip(ours, modules, strict=True):
        assert torch.equal(mask, module.weight_mask.bool())
    assert sum(int(m.sum()) for m in ours) == kept  # the ratio is the fraction KEPT


def test_the_magnitude_mask_realises_the_projection_distance() -> None:
    params = prunable_parameters(small_model())
    distances = projection_distances(params)
    size = len(distances) - 1
    for k in (0, 17, size // 2, size):
        masks = global_magnitude_masks(params, k / size)
        removed = torch.cat(
            [(p.detach() * ~m).reshape(-1) for p, m in zip(params, masks, strict=True)]
        )
        assert float(removed.norm()) == pytest.approx(distances[k], rel=1e-6, abs=1e-7)


def test_layerwise_and_random_baselines() -> None:
    params = prunable_parameters(small_model())
    for mask, p in zip(layerwise_magnitude_masks(params, 0.3), params, strict=True):
        assert int(mask.sum()) == round(0.3 * p.numel())
        assert p.detach().abs()[mask].min() >= p.detach().abs()[~mask].max()
    first, again, other = (random_masks(params, 0.3, seed=s) for s in (1, 1, 2))
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(first, other, strict=True))
    assert sum(int(m.sum()) for m in first) == round(0.3 * sum(p.numel() for p in params))
    with pytest.raises(ValueError, match="fraction of weights kept"):
        global_magnitude_masks(params, 1.5)


@pytest.mark.parametrize("depth_decay", [False, True])
@pytest.mark.parametrize("ratio", [0.005, 0.05, 0.3, 0.8, 1.0])
def test_smart_ratio_follows_its_formula_and_keeps_the_global_count(
    ratio: float, depth_decay: bool
) -> None:
    """Su et al. 2020: layer l of L keeps a share proportional to (L-l+1)^2 + (L-l+1) (over l^2
    with the decay), capped at 1; the classifier keeps 30%; the counts add up to round(ratio D)."""
    sizes = [432, 9216, 36864, 147456, 2000, 640]
    counts = smart_ratio_counts(sizes, ratio, depth_decay=depth_decay)
    assert sum(counts) == round(ratio * sum(sizes))
    assert all(0 <= c <= n for c, n in zip(counts, sizes, strict=True))
    depth = len(sizes)
    if sum(counts[:-1]) < sum(sizes[:-1]):
        assert counts[-1] == min(round(0.3 * sizes[-1]), sum(counts))
    free = [layer for layer in range(1, depth) if counts[layer - 1] < sizes[layer - 1]]
    q = {
        layer: ((depth - layer + 1) ** 2 + depth - layer + 1) / (layer**2 if depth_decay else 1)
        for layer in range(1, depth)
    }
    scale = counts[free[0] - 1] / sizes[free[0] - 1] / q[free[0]] if free else 0.0
    for layer in range(1, depth):
        share, n = counts[layer - 1] / sizes[layer - 1], sizes[layer - 1]
        if layer in free:  # the formula, to the rounding of one weight
            assert share == pytest.approx(scale * q[layer], abs=2 / min(n, sizes[free[0] - 1]))
        else:  # kept whole: its formula share reached 1 (or every layer is whole)
            assert scale * q[layer] >= 1 - 2 / n or not free
    params = [torch.zeros(n) for n in sizes]
    masks = smart_ratio_masks(params, ratio, seed=3)
    assert [int(m.sum()) for m in masks] == smart_ratio_counts(sizes, ratio)
    again = smart_ratio_masks(params, ratio, seed=3)
    assert all(torch.equal(a, b) for a, b in zip(masks, again, strict=True))


def test_smart_ratio_refuses_a_single_layer() -> None:
    with pytest.raises(ValueError, match="two or more layers"):
        smart_ratio_counts([100], 0.5)


def test_masked_block_restores_the_weights_exactly() -> None:
    params = prunable_parameters(small_model())
    before = [p.detach().clone() for p in params]
    masks = global_magnitude_masks(params, 0.2)
    with masked(params, masks):
        assert all(torch.all(p[~m] == 0) for p, m in zip(params, masks, strict=True))
    assert all(torch.equal(p, b) for p, b in zip(params, before, strict=True))


@pytest.fixture(scope="module")
def trained() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    inputs = torch.randn(400, 1, 8, 8)
    targets = (inputs.mean(dim=(1, 2, 3)) > 0).long() + (inputs[:, 0, 0, 0] > 0).long()
    model = small_model()
    train(model, inputs, targets, Recipe(15, 0.05), progress=False)
    return model, inputs, targets


def test_sweep_finds_the_limit_to_a_single_weight(trained) -> None:
    model, inputs, targets = trained
    params = prunable_parameters(model)
    size = sum(p.numel() for p in params)
    sweep = one_shot_sweep(
        params, lambda: evaluate(model, inputs, targets), tolerance=0.05, progress=False
    )
    k = round(sweep.limit * size)
    for count, passes in ((k, True), (k - 1, False)):
        with masked(params, global_magnitude_masks(params, count / size)):
            loss = evaluate(model, inputs, targets)[0]
        assert (loss <= sweep.dense_loss + 0.05) == passes
    assert (
        sweep.ratios == sorted(sweep.ratios) and len(sweep.ratios) > 21
    )  # grid + bisection points
    assert evaluate(model, inputs, targets)[0] == pytest.approx(
        sweep.dense_loss
    )  # nothing stays pruned


def test_on_a_curve_that_is_not_monotone_the_limit_is_above_every_failing_ratio() -> None:
    """Loss by kept count k of 1,000: within the tolerance when almost empty (k < 70) and from
    k = 613 on, above it in between (as for a model worse than chance when dense-ish)."""
    weights = nn.Parameter(torch.linspace(1.0, 2.0, 1000))

    def evaluate_by_count() -> tuple[float, float]:
        k = int((weights != 0).sum())
        return (0.0 if k < 70 or k >= 613 else 1.0), 0.0

    sweep = one_shot_sweep([weights], evaluate_by_count, tolerance=0.1, progress=False)
    assert sweep.limit == 0.613
    passes = [loss <= 0.1 for loss in sweep.losses]
    assert passes[sweep.ratios.index(0.0)] and passes[sweep.ratios.index(0.05)]  # the pocket
    at_limit = sweep.ratios.index(sweep.limit)
    assert all(passes[at_limit:]) and not passes[at_limit - 1]
    with pytest.raises(ValueError, match="tolerance"):
        one_shot_sweep([weights], evaluate_by_count, tolerance=-0.1, progress=False)


def test_sorting_once_gives_the_same_sweep_and_resolution_stops_early(trained) -> None:
    model, inputs, targets = trained
    params = prunable_parameters(model)
    size = sum(p.numel() for p in params)

    def sweep(**options):
        return one_shot_sweep(
            params, lambda: evaluate(model, inputs, targets), 0.05, progress=False, **options
        )

    fast, reference = sweep(), sweep(masks_for=global_magnitude_masks)
    assert fast == reference
    coarse = sweep(resolution=16)
    k, k_exact = round(coarse.limit * size), round(fast.limit * size)
    assert k_exact <= k <= k_exact + 16 and len(coarse.ratios) < len(fast.ratios)


def test_retraining_on_a_mask_keeps_pruned_weights_at_zero(trained) -> None:
    model, inputs, targets = trained
    model = small_model()
    model.load_state_dict(trained[0].state_dict())
    params = prunable_parameters(model)
    masks = global_magnitude_masks(params, 0.2)
    with frozen_mask(params, masks):
        pruned_loss = evaluate(model, inputs, targets)[0]
        train(model, inputs, targets, Recipe(5, 0.05), progress=False)
    assert all(torch.all(p[~m] == 0) for p, m in zip(params, masks, strict=True))
    assert evaluate(model, inputs, targets)[0] < pruned_loss
    assert np.isfinite(pruned_loss)
