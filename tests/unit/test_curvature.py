"""Hessian and Gauss-Newton products against torch.func in float64, and every guard."""

import numpy as np
import pytest
import torch
from scipy.sparse.linalg import eigsh
from torch import nn
from torch.func import functional_call, hessian, jacrev
from torch.utils.data import DataLoader, TensorDataset

from prunelimit.curvature import (
    CPU_CHUNK,
    CurvatureOperator,
    DataChangedError,
    GGNOperator,
    HessianOperator,
    NonFiniteLossError,
    chunk_for_memory,
    dense_ggn,
    dense_hessian,
)
from prunelimit.errors import DeviceMemoryError
from prunelimit.models import prunable_parameters

LOSS = nn.CrossEntropyLoss()
BACKENDS = ["double_backward", "forward_over_reverse"]
OPERATORS = pytest.mark.parametrize("kind", [HessianOperator, GGNOperator], ids=["H", "GGN"])


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


def reference_ggn(
    model: nn.Module,
    loss_fn: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    names: list[str],
) -> torch.Tensor:
    """J^T H_z J over all the data at once, [D, D]: J = d outputs / dw [N, C, D] by jacrev,
    H_z = d^2 mean loss / d outputs^2 [N C, N C] by torch.func.hessian."""
    state = {**dict(model.named_buffers()), **{n: p.detach() for n, p in model.named_parameters()}}
    chosen = {n: state[n] for n in names}
    outputs = functional_call(model, state, (inputs,))
    blocks = jacrev(lambda c: functional_call(model, {**state, **c}, (inputs,)))(chosen)
    jacobian = torch.cat([blocks[n].reshape(*outputs.shape, -1) for n in names], -1)
    jacobian = jacobian.reshape(outputs.numel(), -1)
    output_hessian = hessian(lambda z: loss_fn(z, targets))(outputs)
    return jacobian.T @ output_hessian.reshape(outputs.numel(), outputs.numel()) @ jacobian


def tiny_linear() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(2)
    model = nn.Linear(5, 3).double()
    return model, torch.randn(30, 5, dtype=torch.float64), torch.randint(0, 3, (30,))


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


def tiny_convnet() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(3)
    model = nn.Sequential(
        nn.Conv2d(1, 2, 3),
        nn.ReLU(),
        nn.Conv2d(2, 2, 3, stride=2),
        nn.Tanh(),
        nn.Flatten(),
        nn.Linear(8, 3),
    ).double()
    return model, torch.randn(24, 1, 8, 8, dtype=torch.float64), torch.randint(0, 3, (24,))


def with_loss(make, loss: str) -> tuple[nn.Module, nn.Module, torch.Tensor, torch.Tensor]:
    """(model, loss_fn, inputs, targets): class labels for "ce", or regression targets shaped
    like the outputs for "mse"."""
    model, inputs, labels = make()
    if loss == "ce":
        return model, nn.CrossEntropyLoss(), inputs, labels
    with torch.no_grad():
        outputs = model(inputs)
    return model, nn.MSELoss(), inputs, outputs + torch.randn_like(outputs)


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


@OPERATORS
def test_prunable_subset_is_the_matching_block(kind: type[CurvatureOperator]) -> None:
    model, inputs, targets = tiny_cnn()
    weights = [n for n, _ in model.named_parameters() if n in ("0.weight", "5.weight")]
    expected = (
        reference_hessian(model, inputs, targets, weights)
        if kind is HessianOperator
        else reference_ggn(model, LOSS, inputs, targets, weights)
    )
    operator = kind(model, LOSS, (inputs, targets), prunable_parameters(model))
    assert operator.names == weights
    vector = torch.randn(operator.shape[0], dtype=torch.float64)
    assert relative_error(operator.matvec(vector), expected @ vector) <= 1e-10


@OPERATORS
def test_float32_products_on_a_float64_copy_and_in_float32(kind: type[CurvatureOperator]) -> None:
    model, inputs, targets = tiny_mlp()
    model = model.float()
    data = (inputs.float(), targets)
    single = kind(model, LOSS, data)
    double = kind(model, LOSS, data, dtype=torch.float64)
    assert single.dtype == torch.float32 and double.dtype == torch.float64
    assert next(model.parameters()).dtype == torch.float32, (
        "the caller's model must not be converted"
    )
    vector = torch.randn(single.shape[0], dtype=torch.float64)
    assert relative_error(single.matvec(vector).double(), double.matvec(vector)) <= 1e-5


@OPERATORS
def test_batches_from_a_dataloader_are_weighted_by_size(kind: type[CurvatureOperator]) -> None:
    model, inputs, targets = tiny_mlp()
    loader = DataLoader(TensorDataset(inputs, targets), batch_size=16, shuffle=False)  # 16+16+16+2
    vector = torch.randn(66, dtype=torch.float64)
    expected = kind(model, LOSS, (inputs, targets)).matvec(vector)
    assert relative_error(kind(model, LOSS, loader).matvec(vector), expected) <= 1e-12


@OPERATORS
def test_scipy_export(kind: type[CurvatureOperator]) -> None:
    model, inputs, targets = tiny_mlp()
    operator = kind(model, LOSS, (inputs, targets))
    exported = operator.to_scipy()
    vector = torch.randn(66, dtype=torch.float64)
    assert exported.shape == (66, 66)
    assert (
        relative_error(torch.as_tensor(exported @ vector.numpy()), operator.matvec(vector)) <= 1e-14
    )


# --------------------------------------------------------------------------------- guards
@OPERATORS
@pytest.mark.parametrize(
    "layer", [nn.BatchNorm1d(7), nn.Dropout(0.1)], ids=["batchnorm", "dropout"]
)
def test_train_mode_with_batch_dependent_layers_is_refused(
    layer: nn.Module, kind: type[CurvatureOperator]
) -> None:
    model = nn.Sequential(nn.Linear(5, 7), layer, nn.Linear(7, 3)).double().train()
    _, inputs, targets = tiny_mlp()
    with pytest.raises(ValueError, match=r"train mode .* Call model.eval\(\)"):
        kind(model, LOSS, (inputs, targets))
    kind(model.eval(), LOSS, (inputs, targets))  # fine once in eval mode


@OPERATORS
def test_shuffled_data_is_detected(kind: type[CurvatureOperator]) -> None:
    model, inputs, targets = tiny_mlp()
    loader = DataLoader(TensorDataset(inputs, targets), batch_size=16, shuffle=True)
    with pytest.raises(DataChangedError, match="shuffle=False"):  # the gradient check is a 2nd pass
        kind(model, LOSS, loader).matvec(torch.ones(66, dtype=torch.float64))


class Augmented:
    """A re-iterable of batches that adds fresh noise on every pass."""

    def __init__(self, inputs: torch.Tensor, targets: torch.Tensor) -> None:
        self.inputs, self.targets = inputs, targets

    def __iter__(self):
        yield self.inputs + 0.01 * torch.randn_like(self.inputs), self.targets


@OPERATORS
def test_augmented_data_is_detected_and_the_check_can_be_disabled(
    kind: type[CurvatureOperator],
) -> None:
    model, inputs, targets = tiny_mlp()
    with pytest.raises(DataChangedError, match="augmented"):
        kind(model, LOSS, Augmented(inputs, targets)).matvec(torch.ones(66, dtype=torch.float64))
    unchecked = kind(model, LOSS, Augmented(inputs, targets), check_determinism=False)
    assert unchecked.matvec(torch.ones(66, dtype=torch.float64)).shape == (66,)


@OPERATORS
def test_one_shot_iterators_are_refused(kind: type[CurvatureOperator]) -> None:
    model, inputs, targets = tiny_mlp()
    with pytest.raises(TypeError, match="one-shot iterator"):
        kind(model, LOSS, iter([(inputs, targets)]))


class WithUnusedLayer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.used, self.unused = nn.Linear(5, 3), nn.Linear(2, 2)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.used(inputs)


@OPERATORS
def test_parameters_without_gradient_are_refused(kind: type[CurvatureOperator]) -> None:
    _, inputs, targets = tiny_mlp()
    model = WithUnusedLayer().double()
    with pytest.raises(ValueError, match=r"no gradient.*unused\.weight"):
        kind(model, LOSS, (inputs, targets))
    kind(model, LOSS, (inputs, targets), params=list(model.used.parameters()))
    with pytest.raises(ValueError, match="not trainable parameters"):
        kind(model, LOSS, (inputs, targets), params=[torch.zeros(3, requires_grad=True)])


@OPERATORS
def test_non_finite_loss_is_refused(kind: type[CurvatureOperator]) -> None:
    model, inputs, targets = tiny_mlp()
    inputs = inputs.clone()
    inputs[3, 0] = float("nan")
    with pytest.raises(NonFiniteLossError, match="loss is nan"):
        kind(model, LOSS, (inputs, targets))


@OPERATORS
def test_reusing_the_graph_gives_the_same_products_every_time(
    kind: type[CurvatureOperator],
) -> None:
    model, inputs, targets = tiny_cnn()
    reused = kind(model, LOSS, (inputs, targets))
    rebuilt = kind(model, LOSS, (inputs, targets), reuse_graph=False)
    assert reused.reuse_graph and not rebuilt.reuse_graph
    chunked = kind(model, LOSS, (inputs, targets), chunk_size=7)
    assert not chunked.reuse_graph, "several chunks: graphs are rebuilt, memory stays bounded"
    vectors = torch.randn(148, 3, dtype=torch.float64)
    for _ in range(3):  # products of both kinds, repeatedly, on the kept graph
        assert relative_error(reused.matmat(vectors), rebuilt.matmat(vectors)) <= 1e-12
        assert relative_error(reused.matvec(vectors[:, 1]), rebuilt.matvec(vectors[:, 1])) <= 1e-12


# --------------------------------------------------------------------------------- Gauss-Newton
@pytest.mark.parametrize("loss", ["ce", "mse"])
@pytest.mark.parametrize(
    "make",
    [tiny_linear, tiny_mlp, tiny_convnet, tiny_cnn],
    ids=["linear", "mlp", "cnn", "cnn-batchnorm"],
)
def test_ggn_products_match_jacobians_from_torch_func(make, loss: str) -> None:
    model, loss_fn, inputs, targets = with_loss(make, loss)
    names = [n for n, _ in model.named_parameters()]
    expected = reference_ggn(model, loss_fn, inputs, targets, names)
    batches = [(inputs[a:b], targets[a:b]) for a, b in ((0, 13), (13, 17), (17, None))]
    operator = GGNOperator(model, loss_fn, batches)
    vectors = torch.randn(operator.shape[0], 3, dtype=torch.float64)
    assert relative_error(operator.matmat(vectors), expected @ vectors) <= 1e-10
    assert relative_error(operator.matvec(vectors[:, 0]), expected @ vectors[:, 0]) <= 1e-10
    dense = dense_ggn(model, loss_fn, (inputs, targets))
    assert relative_error(dense, expected) <= 1e-10
    eigenvalues = torch.linalg.eigvalsh(dense)
    assert eigenvalues[0] >= -1e-10 * eigenvalues[-1], "G is positive semi-definite"


def test_ggn_of_a_linear_model_with_squared_error_is_the_hessian() -> None:
    """L = (1/(N C)) sum_n |W x_n - y_n|^2: H = G = (2 / (N C)) I_C (x) X^T X for W [C, d]."""
    torch.manual_seed(4)
    inputs, targets = torch.randn(30, 5, dtype=torch.float64), torch.randn(30, 3).double()
    model = nn.Linear(5, 3, bias=False).double()
    data = (inputs, targets)
    expected = 2 / (30 * 3) * torch.kron(torch.eye(3, dtype=torch.float64), inputs.T @ inputs)
    assert relative_error(dense_ggn(model, nn.MSELoss(), data), expected) <= 1e-12
    assert relative_error(dense_hessian(model, nn.MSELoss(), data), expected) <= 1e-12


@pytest.mark.parametrize("loss", ["ce", "mse"])
def test_ggn_rank_is_at_most_the_bound_and_generically_equal(loss: str) -> None:
    """4 examples, 3 outputs, D = 66 > N C: rank N (C - 1) = 8 for cross-entropy (the softmax
    Hessian has rank C - 1), N C = 12 for squared error."""
    model, loss_fn, inputs, targets = with_loss(tiny_mlp, loss)
    operator = GGNOperator(model, loss_fn, (inputs[:4], targets[:4]))
    assert operator.rank_bound == {"ce": 8, "mse": 12}[loss]
    rank = np.linalg.matrix_rank(dense_ggn(model, loss_fn, (inputs[:4], targets[:4])).numpy())
    assert rank <= operator.rank_bound
    assert rank == operator.rank_bound, "a generic MLP attains the bound"


def test_ggn_eigenvalues_through_scipy() -> None:
    model, inputs, targets = tiny_mlp()
    operator = GGNOperator(model, LOSS, (inputs, targets))
    exact = np.linalg.eigvalsh(reference_ggn(model, LOSS, inputs, targets, operator.names).numpy())
    top = eigsh(operator.to_scipy(), k=3, which="LA", return_eigenvectors=False)
    np.testing.assert_allclose(np.sort(top), exact[-3:], rtol=1e-8)


def test_an_automatic_chunk_is_the_largest_that_fits_or_a_clear_refusal() -> None:
    mib = 2**20
    # 80% of 1,000 MiB free, 100 MiB fixed: 700 MiB left for examples of 2 MiB each
    assert chunk_for_memory(2 * mib, 100 * mib, 1000 * mib, 10_000) == 350
    assert chunk_for_memory(2 * mib, 100 * mib, 1000 * mib, 200) == 200, "at most N"
    with pytest.raises(DeviceMemoryError, match=r"0\.10 GiB plus 800\.0 MiB per example"):
        chunk_for_memory(800 * mib, 100 * mib, 1000 * mib, 10)


@OPERATORS
def test_an_automatic_chunk_on_a_cpu_is_the_cpu_default(kind: type[CurvatureOperator]) -> None:
    model, inputs, targets = tiny_cnn()
    inputs, targets = inputs.repeat(50, 1, 1, 1), targets.repeat(50)
    assert len(inputs) > CPU_CHUNK
    automatic = kind(model, LOSS, (inputs, targets), chunk_size="auto")
    assert automatic.chunk_size == CPU_CHUNK
    vectors = torch.randn(automatic.shape[0], 2, dtype=torch.float64)
    fixed = kind(model, LOSS, (inputs, targets), chunk_size=CPU_CHUNK).matmat(vectors)
    assert torch.equal(automatic.matmat(vectors), fixed)
    with pytest.raises(ValueError, match="needs the data as one pair of tensors"):
        kind(model, LOSS, [(inputs, targets)], chunk_size="auto")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="measures a GPU's memory")
@OPERATORS
def test_an_automatic_chunk_on_a_gpu_fits_and_gives_the_same_products(
    kind: type[CurvatureOperator],
) -> None:
    model, inputs, targets = tiny_cnn()
    model, inputs, targets = model.cuda(), inputs.repeat(20, 1, 1, 1).cuda(), targets.repeat(20)
    automatic = kind(model, LOSS, (inputs, targets.cuda()), chunk_size="auto")
    assert 16 <= automatic.chunk_size <= len(inputs)
    vectors = torch.randn(automatic.shape[0], 2, dtype=torch.float64, device="cuda")
    whole = kind(model, LOSS, (inputs, targets.cuda()), chunk_size=len(inputs))
    assert relative_error(automatic.matmat(vectors), whole.matmat(vectors)) <= 1e-12
