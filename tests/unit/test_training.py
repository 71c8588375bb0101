"""Training: schedules against torch's schedulers, penalties against closed forms and weight
decay, bit-exact resume from a checkpoint, and refusal of bad recipes and NaN losses."""

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from prunelimit.curvature import NonFiniteLossError
from prunelimit.models import mlp, prunable_parameters
from prunelimit.training import Recipe, evaluate, learning_rate, penalty, train
from prunelimit.views import random_crop_flip


def torch_rates(scheduler_factory, epochs: int, lr: float = 0.1) -> list[float]:
    """Learning rates of a torch scheduler stepped once per epoch."""
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=lr)
    scheduler = scheduler_factory(optimizer)
    rates = []
    for _ in range(epochs):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


def test_cosine_and_multistep_match_torch_stepped_per_epoch() -> None:
    cosine = Recipe(20, 0.1, schedule="cosine")
    expected = torch_rates(lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, 20), 20)
    assert [learning_rate(cosine, e) for e in range(20)] == pytest.approx(expected, abs=1e-12)
    steps = Recipe(12, 0.1, schedule="multistep", milestones=(4, 9), gamma=0.2)
    expected = torch_rates(lambda o: torch.optim.lr_scheduler.MultiStepLR(o, [4, 9], gamma=0.2), 12)
    assert [learning_rate(steps, e) for e in range(12)] == pytest.approx(expected, abs=1e-12)


def test_warmup_then_cosine_over_the_remaining_epochs() -> None:
    recipe = Recipe(15, 0.1, warmup_epochs=5, schedule="cosine")
    rates = [learning_rate(recipe, e) for e in range(15)]
    assert rates[:5] == pytest.approx([0.02, 0.04, 0.06, 0.08, 0.1])
    expected = torch_rates(lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, 10), 10)
    assert rates[5:] == pytest.approx(expected)


def test_penalties_are_their_closed_forms_on_prunable_weights_only() -> None:
    model = mlp(3, (4,), 2)
    weights = prunable_parameters(model)
    l1 = sum(float(w.detach().abs().sum()) for w in weights)
    l2 = sum(float((w.detach() ** 2).sum()) for w in weights)
    l1_recipe = Recipe(1, 0.1, coefficient=0.5)
    assert float(penalty(weights, l1_recipe).detach()) == pytest.approx(0.5 * l1)
    l2_recipe = Recipe(1, 0.1, penalty="l2", coefficient=0.5)
    assert float(penalty(weights, l2_recipe).detach()) == pytest.approx(0.25 * l2)
    assert penalty(weights, Recipe(1, 0.1)) == 0.0
    both = Recipe(1, 0.1, coefficient=0.5, l2=0.2)
    assert float(penalty(weights, both).detach()) == pytest.approx(0.5 * l1 + 0.1 * l2)
    assert float(penalty(weights, Recipe(1, 0.1, l2=0.2)).detach()) == pytest.approx(0.1 * l2)
    with pytest.raises(ValueError, match="coefficients >= 0"):
        Recipe(1, 0.1, l2=-1.0)


def data(n: int = 256, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randn(n, 1, 4, 4, generator=generator)
    return inputs, (inputs.sum(dim=(1, 2, 3)) > 0).long()


def bias_free_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 8, bias=False), nn.ReLU(), nn.Linear(8, 2))


def test_l2_penalty_equals_sgd_weight_decay_on_the_pruned_weights() -> None:
    """SGD's weight_decay c adds c w to the gradient: the gradient of c/2 |w|^2."""
    inputs, labels = data()
    ours = bias_free_model()
    train(ours, inputs, labels, Recipe(3, 0.05, penalty="l2", coefficient=0.01), progress=False)
    reference = bias_free_model()
    decayed = [reference[1].weight, reference[3].weight]
    optimizer = torch.optim.SGD(
        [{"params": decayed, "weight_decay": 0.01}, {"params": [reference[3].bias]}],
        lr=0.05,
        momentum=0.9,
    )
    generator = torch.Generator().manual_seed(0)
    for _ in range(3):
        for batch in torch.split(torch.randperm(len(inputs), generator=generator), 128):
            optimizer.zero_grad()
            nn.functional.cross_entropy(reference(inputs[batch]), labels[batch]).backward()
            optimizer.step()
    for ours_p, reference_p in zip(ours.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(ours_p, reference_p, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_resume_from_a_checkpoint_is_bit_exact(tmp_path: Path, optimizer: str) -> None:
    inputs, labels = data()
    recipe = Recipe(4, 0.01, optimizer=optimizer, coefficient=1e-3, schedule="cosine")
    straight = bias_free_model()
    history = train(straight, inputs, labels, recipe, augment=None, progress=False)
    checkpoint, epochs_done = tmp_path / "model.pt", []

    def killed_in_the_third_epoch() -> dict:
        epochs_done.append(1)
        if len(epochs_done) == 3:
            raise KeyboardInterrupt
        return {}

    with pytest.raises(KeyboardInterrupt):
        train(bias_free_model(), inputs, labels, recipe, checkpoint=checkpoint,
              on_epoch=killed_in_the_third_epoch, progress=False)  # fmt: skip
    assert len(torch.load(checkpoint, weights_only=False)["history"]) == 2
    resumed = bias_free_model()  # a fresh process: new model, state from the checkpoint
    resumed_history = train(resumed, inputs, labels, recipe, checkpoint=checkpoint, progress=False)
    assert [row["loss"] for row in resumed_history] == [row["loss"] for row in history]
    for a, b in zip(straight.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(a, b)
    # a finished checkpoint trains no further
    again = train(bias_free_model(), inputs, labels, recipe, checkpoint=checkpoint, progress=False)
    assert again == resumed_history


def test_until_epoch_stops_where_the_full_schedule_would_be(tmp_path: Path) -> None:
    """A rewind point: 2 of 4 cosine epochs give the weights a full run has after epoch 2 (its
    checkpoint resumed to the end gives the full run), not those of a 2-epoch recipe."""
    inputs, labels = data()
    recipe = Recipe(4, 0.05, coefficient=1e-3, schedule="cosine")
    full, half, short = bias_free_model(), bias_free_model(), bias_free_model()
    history = train(full, inputs, labels, recipe, progress=False)
    checkpoint = tmp_path / "model.pt"
    first = train(
        half, inputs, labels, recipe, checkpoint=checkpoint, until_epoch=2, progress=False
    )
    assert [row["loss"] for row in first] == [row["loss"] for row in history[:2]]
    train(
        short, inputs, labels, Recipe(2, 0.05, coefficient=1e-3, schedule="cosine"), progress=False
    )
    assert not all(
        torch.equal(a, b) for a, b in zip(half.parameters(), short.parameters(), strict=True)
    )
    train(half, inputs, labels, recipe, checkpoint=checkpoint, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(full.parameters(), half.parameters(), strict=True))
    with pytest.raises(ValueError, match=r"until_epoch \(5\)"):
        train(half, inputs, labels, recipe, until_epoch=5, progress=False)


def test_from_epoch_continues_the_schedule_from_rewound_weights() -> None:
    inputs, labels = data()
    recipe = Recipe(4, 0.05, schedule="cosine")
    model = bias_free_model()
    history = train(model, inputs, labels, recipe, from_epoch=3, progress=False)
    assert [row["epoch"] for row in history] == [3]
    assert history[0]["lr"] == learning_rate(recipe, 3)
    with pytest.raises(ValueError, match="from_epoch"):
        train(model, inputs, labels, recipe, from_epoch=3, until_epoch=2, progress=False)


def test_training_with_augmentation_learns_and_records_epoch_metrics() -> None:
    generator = torch.Generator().manual_seed(1)
    labels = torch.randint(0, 2, (300,), generator=generator)
    # a brightness label: crops and flips keep it
    images = torch.randn(300, 1, 8, 8, generator=generator) * 0.5 + (2.0 * labels - 1).view(
        -1, 1, 1, 1
    )
    model = mlp(64, (32,), 2)
    history = train(
        model,
        images,
        labels,
        Recipe(8, 0.05),
        augment=random_crop_flip,
        on_epoch=lambda: {"accuracy": evaluate(model, images, labels)[1]},
        progress=False,
    )
    assert [row["epoch"] for row in history] == list(range(8))
    assert history[-1]["loss"] < history[0]["loss"] and history[-1]["accuracy"] > 0.7
    assert not model.training


def test_bad_recipes_and_diverging_losses_are_refused() -> None:
    with pytest.raises(ValueError, match="schedule"):
        Recipe(1, 0.1, schedule="step")
    with pytest.raises(ValueError, match="optimizer"):
        Recipe(1, 0.1, optimizer="lbfgs")
    inputs, labels = data()
    with pytest.raises(NonFiniteLossError, match="lower the learning rate"):
        train(bias_free_model(), inputs * 1e30, labels, Recipe(1, 1e10), progress=False)


def test_training_reads_the_loss_from_the_device_once_per_epoch(monkeypatch) -> None:
    """No host synchronisation per batch: over 3 epochs of 10 batches, values leave the device
    (item, bool, float, int) only at the end of each epoch."""
    inputs, labels = data()
    reads: list[str] = []
    for name in ("item", "__bool__", "__float__", "__int__"):
        original = getattr(torch.Tensor, name)

        def counted(tensor: torch.Tensor, *args: object, _original=original, _name=name) -> object:
            reads.append(_name)
            return _original(tensor, *args)

        monkeypatch.setattr(torch.Tensor, name, counted)
    batch_size = len(inputs) // 10
    train(bias_free_model(), inputs, labels, Recipe(3, 0.01, batch_size=batch_size), progress=False)
    monkeypatch.undo()
    assert 0 < len(reads) <= 3, reads


def test_bfloat16_training_runs_under_autocast_and_keeps_float32_weights() -> None:
    inputs, labels = data()
    histories = {}
    for precision in ("float32", "bfloat16"):
        model = bias_free_model()
        recipe = Recipe(3, 0.05, coefficient=1e-3, precision=precision)
        histories[precision] = [row["loss"] for row in train(model, inputs, labels, recipe,
                                                             progress=False)]  # fmt: skip
        assert all(p.dtype == torch.float32 for p in model.parameters())
    ours, reference = np.array(histories["bfloat16"]), np.array(histories["float32"])
    assert np.all(np.isfinite(ours)) and not np.array_equal(ours, reference), "autocast was on"
    np.testing.assert_allclose(ours, reference, rtol=0.05)
    with pytest.raises(ValueError, match="precision"):
        Recipe(1, 0.1, precision="float16")  # type: ignore[arg-type]
