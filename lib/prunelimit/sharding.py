"""Sums over data sharded across processes, with torch.distributed.

Each process of a group holds a shard of the examples and computes its share of a sum (a
curvature product, a gradient, a count); ``summed`` adds the shares with one all-reduce, so every
process gets the same total. A process whose share raises must not leave the others waiting in
that all-reduce forever: each step first agrees, with a one-element all-reduce, on whether any
process failed, and then every process raises (the failing one its own error, the others a
``ShardFailedError`` that says so). A process that dies outright is caught by the group's
timeout (``init_process_group(timeout=...)``).

    dist.init_process_group("gloo")  # torchrun sets rank and world size; "nccl" on GPUs
    inputs, targets = shard((x, y), dist.get_rank(), dist.get_world_size())
    H = HessianOperator(model, loss_fn, (inputs, targets), group=dist.group.WORLD)
"""

from collections.abc import Callable
from typing import Any, TypeVar

import torch
from torch import distributed as dist

Value = TypeVar("Value")
Batch = tuple[torch.Tensor, torch.Tensor]


class ShardFailedError(RuntimeError):
    """Another process of the group failed while computing its share; its own error says why."""


def agreed(compute: Callable[[], Value], group: dist.ProcessGroup | None) -> Value:
    """``compute()`` on this process, once every process of ``group`` has finished its own: if
    any of them raised, every one raises. Without a group, just ``compute()``."""
    if group is None:
        return compute()
    error: Exception | None = None
    try:
        value = compute()
    except Exception as caught:  # re-raised below, after the others know
        error = caught
    failed = 0 if error is None else 1
    failures = torch.tensor([failed], dtype=torch.int64, device=_device_of(group))
    dist.all_reduce(failures, group=group)
    if error is not None:
        raise error
    if failures.item():
        rank, size = dist.get_rank(group), dist.get_world_size(group)
        raise ShardFailedError(
            f"{failures.item()} of the {size} processes failed (this is process {rank}, which "
            "stops too): see their own error messages"
        )
    return value


def summed(compute: Callable[[], torch.Tensor], group: dist.ProcessGroup | None) -> torch.Tensor:
    """``compute()``, this process's share, summed over ``group`` (every process gets the same
    tensor); without a group, the share itself."""
    share = agreed(compute, group)
    if group is not None:
        dist.all_reduce(share, group=group)
    return share


def summed_count(count: Callable[[], int], group: dist.ProcessGroup | None) -> int:
    """An integer share (e.g. this shard's number of examples) summed over ``group``."""
    if group is None:
        return count()
    device = _device_of(group)
    total = summed(lambda: torch.tensor([count()], dtype=torch.int64, device=device), group)
    return int(total.item())


def _device_of(group: dist.ProcessGroup) -> torch.device:
    """Where the group's collectives run: this process's GPU for NCCL, else the CPU."""
    if dist.get_backend(group) == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def shard(data: Batch, rank: int, size: int) -> Batch:
    """Process ``rank``'s contiguous share of (x [N, ...], y [N, ...]) among ``size`` processes:
    N // size examples each, the first N % size one more (``torch.tensor_split``)."""
    if not 0 <= rank < size:
        raise ValueError(f"rank {rank} is not one of the {size} processes")
    inputs, targets = data
    if len(inputs) < size:
        raise ValueError(f"{len(inputs)} examples cannot give each of {size} processes a shard")
    return inputs.tensor_split(size)[rank], targets.tensor_split(size)[rank]


def first_rank(group: dist.ProcessGroup) -> int:
    """The global rank of the group's process 0 (the one that writes and shows progress)."""
    return dist.get_global_rank(group, 0)


def from_first(value: Value | None, group: dist.ProcessGroup) -> Value:
    """Process 0's ``value`` on every process of ``group`` (any picklable value; the others
    pass None)."""
    box = [value]
    dist.broadcast_object_list(box, src=first_rank(group), group=group)
    return box[0]  # type: ignore[return-value]


def share_module(module: torch.nn.Module, group: dist.ProcessGroup) -> None:
    """Overwrite ``module``'s parameters and buffers, in place, with process 0's."""
    for tensor in module.state_dict().values():
        dist.broadcast(tensor, src=first_rank(group), group=group)


def computed_on_first(compute: Callable[[], Value], group: dist.ProcessGroup) -> Value:
    """``compute()`` on the group's process 0 alone, its value on every process; if it raises
    there, every process raises (the others a ``ShardFailedError`` with its message)."""
    error: Exception | None = None
    outcome: tuple[str, Any] | None = None
    if dist.get_rank(group) == 0:
        try:
            outcome = ("value", compute())
        except Exception as caught:  # re-raised below, after the others know
            error, outcome = caught, ("error", f"{type(caught).__name__}: {caught}")
    kind, payload = from_first(outcome, group)
    if error is not None:
        raise error
    if kind == "error":
        raise ShardFailedError(f"process 0 failed ({payload}); this process stops too")
    return payload
