"""Hessian-vector products against torch.func.hessian in float64, and every guard."""

import pytest
import torch
from torch import nn
from torch.func import functional_call, hessian
from torch.utils.data import DataLoader, TensorDataset

from prunelimit.curvature import (
    DataChangedError,
    HessianOperator,
    NonFiniteLossError,
    dense_hessian,
)
from prunelimit.models import prunable_parameters

LOSS = nn.CrossEntropyLoss()
BACKENDS = ["double_backward", "forward_over_reverse"]


def reference_hessian(
    model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, names: list[str]
) -> torch.Tensor:
    """torch.func.hessian of the mean loss over all the data at once, flattened to [D, D]."""
    state = {**dict(model.named_buffers()), **{n: p.detach() for n, p in model.named_parameters()}}
    chosen = {n: state[n] for n in names}
    blocks = hessian(lambda c: LOSS(functional_call(model, {**state, **c}, (inputs,)), targets))(
        chosen
    )
    rows = [
        torch.cat([blocks[a][b].reshape(chosen[a].numel(), chosen[b].numel()) for b in names], 1)
        for a in names
    ]
    return torch.cat(rows, 0)


def tiny_mlp() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3)).double()
    return model, torch.randn(50, 5, dtype=torch.float64), torch.randint(0, 3, (50,))


def tiny_cnn() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A CNN with BatchNorm in eval mode, with non-trivial running statistics."""
    torch.manual_seed(1)
    model = nn.Sequential(
        nn.Conv2d(1, 3, 3),
        nn.BatchNorm2d(3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(27, 4),
    ).double()
    model[1].running_mean.uniform_(-0.5, 0.5)
    model[1].running_var.uniform_(0.5, 2.0)
    model.eval()
    return model, torch.randn(40, 1, 8, 8, dtype=torch.float64), torch.randint(0, 4, (40,))


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("make", [tiny_mlp, tiny_cnn], ids=["mlp", "cnn-batchnorm"])
def test_products_match_torch_func_hessian(make, backend: str) -> None:
    model, inputs, targets = make()
    names = [n for n, _ in model.named_parameters()]
    expected = reference_hessian(model, inputs, targets, names)
    operator = HessianOperator(model, LOSS, (inputs, targets), chunk_size=13, backend=backend)
    vectors = torch.randn(operator.shape[0], 3, dtype=torch.float64)
    assert relative_error(operator.matmat(vectors), expected @ vectors) <= 1e-10
    assert relative_error(operator.matvec(vectors[:, 0]), expected @ vectors[:, 0]) <= 1e-10
    assert (
        relative_error(dense_hessian(model, LOSS, (inputs, targets), backend=backend), expected)
        <= 1e-10
    )


def test_backends_agree_and_chunking_does_not_matter() -> None:
    model, inputs, targets = tiny_cnn()
    vectors = torch.randn(148, 4, dtype=torch.float64)
    products = [
        HessianOperator(model, LOSS, (inputs, targets), chunk_size=size, backend=backend).matmat(
            vectors
        )
        for backend in BACKENDS
        for size in (7, 40)
    ]
    for product in products[1:]:
        assert relative_error(product, products[0]) <= 1e-12


def test_prunable_subset_is_the_matching_block() -> None:
    model, inputs, targets = tiny_cnn()
    weights = [n for n, _ in model.named_parameters() if n in ("0.weight", "5.weight")]
    expected = reference_hessian(model, inputs, targets, weights)
    operator = HessianOperator(model, LOSS, (inputs, targets), prunable_parameters(model))
    assert operator.names == weights
    vector = torch.randn(operator.shape[0], dtype=torch.float64)
    assert relative_error(operator.matvec(vector), expected @ vector) <= 1e-10


def test_float32_products_on_a_float64_copy_and_in_float32() -> None:
    model, inputs, targets = tiny_mlp()
    model = model.float()
    data = (inputs.float(), targets)
    single = HessianOperator(model, LOSS, data)
    double = HessianOperator(model, LOSS, data, dtype=torch.float64)
    assert single.dtype == torch.float32 and double.dtype == torch.float64
    assert next(model.parameters()).dtype == torch.float32, (
        "the caller's model must not be converted"
    )
    vector = torch.randn(single.shape[0], dtype=torch.float64)
    assert relative_error(single.matvec(vector).double(), double.matvec(vector)) <= 1e-5


def test_batches_from_a_dataloader_are_weighted_by_size() -> None:
    model, inputs, targets = tiny_mlp()
    loader = DataLoader(TensorDataset(inputs, targets), batch_size=16, shuffle=False)  # 16+16+16+2
    vector = torch.randn(66, dtype=torch.float64)
    expected = HessianOperator(model, LOSS, (inputs, targets)).matvec(vector)
    assert relative_error(HessianOperator(model, LOSS, loader).matvec(vector), expected) <= 1e-12


def test_scipy_export() -> None:
    model, inputs, targets = tiny_mlp()
    operator = HessianOperator(model, LOSS, (inputs, targets))
    exported = operator.to_scipy()
    vector = torch.randn(66, dtype=torch.float64)
    assert exported.shape == (66, 66)
    assert (
        relative_error(torch.as_tensor(exported @ vector.numpy()), operator.matvec(vector)) <= 1e-14
    )


# --------------------------------------------------------------------------------- guards
@pytest.mark.parametrize(
    "layer", [nn.BatchNorm1d(7), nn.Dropout(0.1)], ids=["batchnorm", "dropout"]
)
def test_train_mode_with_batch_dependent_layers_is_refused(layer: nn.Module) -> None:
    model = nn.Sequential(nn.Linear(5, 7), layer, nn.Linear(7, 3)).double().train()
    _, inputs, targets = tiny_mlp()
    with pytest.raises(ValueError, match=r"train mode .* Call model.eval\(\)"):
        HessianOperator(model, LOSS, (inputs, targets))
    HessianOperator(model.eval(), LOSS, (inputs, targets))  # fine once in eval mode


def test_shuffled_data_is_detected() -> None:
    model, inputs, targets = tiny_mlp()
    loader = DataLoader(TensorDataset(inputs, targets), batch_size=16, shuffle=True)
    with pytest.raises(DataChangedError, match="shuffle=False"):  # the gradient check is a 2nd pass
        HessianOperator(model, LOSS, loader).matvec(torch.ones(66, dtype=torch.float64))


class Augmented:
    """A re-iterable of batches that adds fresh noise on every pass."""

    def __init__(self, inputs: torch.Tensor, targets: torch.Tensor) -> None:
        self.inputs, self.targets = inputs, targets

    def __iter__(self):
        yield self.inputs + 0.01 * torch.randn_like(self.inputs), self.targets


def test_augmented_data_is_detected_and_the_check_can_be_disabled() -> None:
    model, inputs, targets = tiny_mlp()
    with pytest.raises(DataChangedError, match="augmented"):
        HessianOperator(model, LOSS, Augmented(inputs, targets)).matvec(
            torch.ones(66, dtype=torch.float64)
        )
    unchecked = HessianOperator(model, LOSS, Augmented(inputs, targets), check_determinism=False)
    assert unchecked.matvec(torch.ones(66, dtype=torch.float64)).shape == (66,)


def test_one_shot_iterators_are_refused() -> None:
    model, inputs, targets = tiny_mlp()
    with pytest.raises(TypeError, match="one-shot iterator"):
        HessianOperator(model, LOSS, iter([(inputs, targets)]))


class WithUnusedLayer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.used, self.unused = nn.Linear(5, 3), nn.Linear(2, 2)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.used(inputs)


def test_parameters_without_gradient_are_refused() -> None:
    _, inputs, targets = tiny_mlp()
    model = WithUnusedLayer().double()
    with pytest.raises(ValueError, match=r"no gradient.*unused\.weight"):
        HessianOperator(model, LOSS, (inputs, targets))
    HessianOperator(model, LOSS, (inputs, targets), params=list(model.used.parameters()))
    with pytest.raises(ValueError, match="not trainable parameters"):
        HessianOperator(model, LOSS, (inputs, targets), params=[torch.zeros(3, requires_grad=True)])


def test_non_finite_loss_is_refused() -> None:
    model, inputs, targets = tiny_mlp()
    inputs = inputs.clone()
    inputs[3, 0] = float("nan")
    with pytest.raises(NonFiniteLossError, match="loss is nan"):
        HessianOperator(model, LOSS, (inputs, targets))


def test_reusing_the_graph_gives_the_same_products_every_time() -> None:
    model, inputs, targets = tiny_cnn()
    reused = HessianOperator(model, LOSS, (inputs, targets))
    rebuilt = HessianOperator(model, LOSS, (inputs, targets), reuse_graph=False)
    assert reused.reuse_graph and not rebuilt.reuse_graph
    chunked = HessianOperator(model, LOSS, (inputs, targets), chunk_size=7)
    assert not chunked.reuse_graph, "several chunks: graphs are rebuilt, memory stays bounded"
    vectors = torch.randn(148, 3, dtype=torch.float64)
    for _ in range(3):  # products of both kinds, repeatedly, on the kept graph
        assert relative_error(reused.matmat(vectors), rebuilt.matmat(vectors)) <= 1e-12
        assert relative_error(reused.matvec(vectors[:, 1]), rebuilt.matvec(vectors[:, 1])) <= 1e-12
