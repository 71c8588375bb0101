"""Curvature over data sharded across two gloo processes on CPU (torch.distributed): the same
products, gradient and certified bounds as one process over all the data, and a failure on one
process stops both with a message instead of leaving the other waiting; a LimitStudy run by
both processes trains and stores on the first only and predicts what one process predicts."""

import copy
import datetime
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.multiprocessing as mp
from torch import distributed as dist
from torch import nn

from prunelimit import store as store_module
from prunelimit.certified import certified_limit
from prunelimit.curvature import DataChangedError, GGNOperator, HessianOperator
from prunelimit.errors import NonFiniteLossError
from prunelimit.sharding import ShardFailedError, agreed, shard, summed, summed_count
from prunelimit.study import HessianSpec, LimitStudy, StudyData
from prunelimit.training import Recipe

pytestmark = pytest.mark.skipif(not dist.is_available(), reason="torch.distributed missing")
LOSS = nn.CrossEntropyLoss()
SHARDS = (slice(0, 7), slice(7, 20))  # unequal: 7 and 13 of the 20 examples
EPS = 0.05


def _model_and_data() -> tuple[nn.Module, tuple[torch.Tensor, torch.Tensor]]:
    """A small float64 MLP (D = 63) and 20 examples of 3 classes, the same in every process."""
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    inputs = torch.randn(20, 5, dtype=torch.float64, generator=generator)
    return model, (inputs, torch.randint(0, 3, (20,), generator=generator))


def _vectors(size: int) -> torch.Tensor:
    return torch.randn(size, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))


def _measure(data, group: dist.ProcessGroup | None) -> dict[str, Any]:
    """H V, G V, the gradient and certified bounds on G over ``data`` (this process's shard)."""
    model, _ = _model_and_data()
    params = list(model.parameters())
    hessian = HessianOperator(model, LOSS, data, params, group=group)
    ggn = GGNOperator(model, LOSS, data, params, group=group)
    bounds = certified_limit(ggn, params, EPS, tolerance=0.02, seed=3, progress=False)
    vectors = _vectors(hessian.shape[0])
    return {
        "H": hessian.matmat(vectors),
        "G": ggn.matmat(vectors),
        "gradient": hessian.gradient(),
        "N": ggn.num_examples,
        "rank_bound": ggn.rank_bound,
        "bounds": (bounds.low, bounds.high, bounds.num_products),
    }


def _sharded_products(rank: int, group: dist.ProcessGroup, folder: Path) -> dict[str, Any]:
    _, (inputs, targets) = _model_and_data()
    return _measure((inputs[SHARDS[rank]], targets[SHARDS[rank]]), group)


def _fails_when_built(rank: int, group: dist.ProcessGroup, folder: Path) -> dict[str, Any]:
    """Process 1's shard has a NaN input: its loss check fails while the operator is built."""
    model, (inputs, targets) = _model_and_data()
    inputs, targets = inputs[SHARDS[rank]].clone(), targets[SHARDS[rank]]
    if rank == 1:
        inputs[0, 0] = float("nan")
    HessianOperator(model, LOSS, (inputs, targets), group=group)
    return {}


def _fails_in_a_product(rank: int, group: dist.ProcessGroup, folder: Path) -> dict[str, Any]:
    """Process 1's data change after the operator is built: its next product fails."""
    model, (inputs, targets) = _model_and_data()
    batches = [(inputs[SHARDS[rank]], targets[SHARDS[rank]])]
    ggn = GGNOperator(model, LOSS, batches, group=group)
    if rank == 1:
        batches[0] = (batches[0][0] + 1, batches[0][1])
    ggn.matvec(torch.ones(ggn.shape[0], dtype=torch.float64))
    return {}


def _study(model: nn.Module, folder: Path | None, group, **options) -> LimitStudy:
    """A small |H| study (certified G beside it) over the 20 examples, trained, retrained."""
    _, data = _model_and_data()
    return LimitStudy(
        model,
        StudyData(train=data, fixed=data, curvature=data),
        curvature="abs",
        hessian=HessianSpec(num_steps=6, num_probes=2, zero_rows=3),
        store=folder,
        progress=False,
        group=group,
        **options,
    )


def _predictions(study: LimitStudy) -> dict[str, Any]:
    spectral, bounds = study.spectral_prediction(), study.certified_prediction()
    return {"abs": spectral.prediction.rho, "G": (bounds.low, bounds.high)}


def _sharded_study(rank: int, group: dist.ProcessGroup, folder: Path) -> dict[str, Any]:
    """The study on both processes (stores apart, to see who writes), run twice (the second
    run loads); on process 0 also one process's predictions on the same trained weights."""
    model, _ = _model_and_data()
    options = {"recipe": Recipe(3, 0.1, batch_size=5), "retrain_epochs": 1, "eps": EPS}
    store = folder / f"store-{rank}"
    study = _study(copy.deepcopy(model), store, group, **options)
    report = study.run(certified=True)
    loaded = _study(copy.deepcopy(model), store, group, **options)
    again = loaded.run(certified=True)  # every stage loaded: the weights come from process 0
    result = {
        "predictions": _predictions(study),
        "limits": (report.one_shot.limit, report.retrained.limit),
        "again": (again.prediction.rho, again.certified.high, again.retrained.limit),
        "report": (report.prediction.rho, report.certified.high, report.retrained.limit),
        "weights": [p.detach().clone() for p in study.model.parameters()],
        "loaded weights": [p.detach().clone() for p in loaded.model.parameters()],
    }
    if rank == 0:
        alone = _study(copy.deepcopy(study.model), None, None, eps=study.dense().eps)
        result["alone"] = _predictions(alone)
    return result


def _fails_on_the_first(rank: int, group: dist.ProcessGroup, folder: Path) -> dict[str, Any]:
    """eps by the authors' rule needs two batches of 128: the first process's eps fails."""
    model, _ = _model_and_data()
    _study(model, None, group, retrain_epochs=0).run()
    return {}


def _store_fails_on_the_first(rank: int, group: dist.ProcessGroup, folder: Path) -> dict[str, Any]:
    """Both processes compute the |H| stage; process 0 cannot store it (its disk is full)."""
    model, _ = _model_and_data()
    study = _study(model, folder / "store", group, eps=EPS)
    if rank == 0:
        write = store_module.write_json_atomic

        def refuse(path: Path, payload: Any) -> None:
            if path.name.startswith("limit"):
                raise OSError("disk full")
            write(path, payload)

        store_module.write_json_atomic = refuse  # type: ignore[assignment]
    study.spectral_prediction()
    return {}


def _estimates(rank: int, group: dist.ProcessGroup, folder: Path) -> dict[str, Any]:
    model, _ = _model_and_data()
    _study(model, None, group, eps=EPS).estimate()
    return {}


# each job: (rank, group, the test's folder) -> what the test compares
JOBS: dict[str, Callable[[int, dist.ProcessGroup, Path], dict[str, Any]]] = {
    "study": _sharded_study,
    "products": _sharded_products,
    "built": _fails_when_built,
    "first": _fails_on_the_first,
    "product": _fails_in_a_product,
    "stored": _store_fails_on_the_first,
    "estimate": _estimates,
}


def _process(rank: int, job: str, folder: Path) -> None:
    """One of two gloo processes: run ``job``, save its result or its error for the test."""
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo",
        init_method=f"file://{folder / 'rendezvous'}",
        rank=rank,
        world_size=len(SHARDS),
        timeout=datetime.timedelta(minutes=5),  # a safety net against a hang, not a measurement
    )
    try:
        torch.save(JOBS[job](rank, dist.group.WORLD, folder), folder / f"{rank}.pt")
    except Exception as error:
        (folder / f"{rank}.error").write_text(f"{type(error).__name__}: {error}")
    finally:  # both tear down together: one leaving early can abort the other's gloo threads
        dist.barrier()
        dist.destroy_process_group()


def _run_two(job: str, folder: Path) -> list[Any]:
    """Each process's saved result, or its error message."""
    mp.spawn(_process, args=(job, folder), nprocs=len(SHARDS), join=True)
    results = []
    for rank in range(len(SHARDS)):
        error = folder / f"{rank}.error"
        results.append(error.read_text() if error.exists() else torch.load(folder / f"{rank}.pt"))
    return results


def test_two_shards_give_the_products_of_all_the_data(tmp_path) -> None:
    _, data = _model_and_data()
    whole = _measure(data, None)
    for result in _run_two("products", tmp_path):
        assert isinstance(result, dict), result
        for name in ("H", "G", "gradient"):
            torch.testing.assert_close(result[name], whole[name], rtol=0, atol=1e-12)
        assert (result["N"], result["rank_bound"]) == (20, 40)
        low, high, products = result["bounds"]
        expected_low, expected_high, expected_products = whole["bounds"]
        assert products == expected_products
        assert low == pytest.approx(expected_low, abs=1e-9)
        assert high == pytest.approx(expected_high, abs=1e-9)


def test_a_study_in_two_processes_trains_and_stores_on_the_first(tmp_path) -> None:
    first, second = _run_two("study", tmp_path)
    assert isinstance(first, dict) and isinstance(second, dict), (first, second)
    assert (tmp_path / "store-0").is_dir() and not (tmp_path / "store-1").exists()
    for name in ("predictions", "limits", "report", "again"):
        assert first[name] == second[name], name
    for weights in (first["weights"], second["loaded weights"], first["loaded weights"]):
        for mine, theirs in zip(weights, second["weights"], strict=True):
            assert torch.equal(mine, theirs)
    assert first["again"] == first["report"]  # the second run loads what the first stored
    alone, shared = first["alone"], first["predictions"]
    assert shared["abs"] == pytest.approx(alone["abs"], abs=1e-6)  # float32 products
    assert shared["G"] == pytest.approx(alone["G"], abs=1e-9)


@pytest.mark.parametrize(
    ("job", "error"), [("built", NonFiniteLossError), ("product", DataChangedError)]
)
def test_a_failing_process_stops_the_other_with_a_message(tmp_path, job, error) -> None:
    first, second = _run_two(job, tmp_path)
    assert second.startswith(error.__name__)
    assert first.startswith(ShardFailedError.__name__)
    assert "1 of the 2 processes failed" in first and "this is process 0" in first


def test_shards_are_contiguous_and_cover_the_data() -> None:
    inputs, targets = torch.arange(10.0).reshape(10, 1), torch.arange(10)
    parts = [shard((inputs, targets), rank, 3) for rank in range(3)]
    assert [len(x) for x, _ in parts] == [4, 3, 3]
    assert torch.equal(torch.cat([y for _, y in parts]), targets)
    with pytest.raises(ValueError, match="rank 3 is not one of the 3 processes"):
        shard((inputs, targets), 3, 3)
    with pytest.raises(ValueError, match="cannot give each of 11 processes a shard"):
        shard((inputs, targets), 0, 11)


def test_without_a_group_the_share_is_the_whole() -> None:
    share = torch.tensor([1.0, 2.0])
    assert summed(lambda: share, None) is share
    assert summed_count(lambda: 7, None) == 7 and agreed(lambda: "x", None) == "x"


def test_a_stage_failing_on_the_first_process_stops_the_others(tmp_path) -> None:
    first, second = _run_two("first", tmp_path)
    assert first.startswith("ValueError: need at least two batches of 128")
    assert second.startswith(f"{ShardFailedError.__name__}: process 0 failed (ValueError: need")


def test_a_sharded_stage_process_0_cannot_store_stops_the_others(tmp_path) -> None:
    first, second = _run_two("stored", tmp_path)
    assert first == "OSError: disk full"
    assert second.startswith(ShardFailedError.__name__)
    assert "1 of the 2 processes failed" in second and "this is process 1" in second


def test_a_sharded_study_refuses_to_estimate_instead_of_waiting(tmp_path) -> None:
    for message in _run_two("estimate", tmp_path):
        assert message.startswith("ValueError: estimate times units on one process"), message
