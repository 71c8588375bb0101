"""Curvature products sharded over processes: one process against several, side by side.

    .venv/bin/python benchmarks/distributed.py              (or: make benchmark)
    torchrun --nproc_per_node=4 benchmarks/distributed.py   (a multi-GPU box: NCCL, one GPU each)

Run plainly, it times one Hessian-vector product of FC5 (1.6 M weights, float32) over the whole
Fashion-MNIST training set (60,000 images), first in one process, then sharded over two gloo
processes, each on one thread, and prints the ratio. Under torchrun it times the product over
the processes torchrun started (on their GPUs when CUDA is there); run it again with
--nproc_per_node=1 for the one-process time on the same box.
"""

import argparse
import os
import time

import torch
import torch.multiprocessing as mp
from torch import distributed as dist
from torch import nn

from prunelimit.curvature import HessianOperator
from prunelimit.data import load_fashion_mnist
from prunelimit.models import fc5
from prunelimit.sharding import shard


def product_seconds(group: dist.ProcessGroup | None, device: torch.device, repeats: int) -> float:
    """The best of ``repeats`` timed products (after one untimed), the slowest process's."""
    rank = 0 if group is None else dist.get_rank(group)
    size = 1 if group is None else dist.get_world_size(group)
    images, labels = shard(load_fashion_mnist("train"), rank, size)
    torch.manual_seed(0)
    model = fc5().to(device).eval()
    data = (images.to(device), labels.to(device))
    operator = HessianOperator(model, nn.CrossEntropyLoss(), data, chunk_size=2000, group=group)
    vector = torch.ones(operator.shape[0], device=device)
    operator.matvec(vector)
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        operator.matvec(vector)  # ends with the all-reduce: every process waits for the last
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best


def _spawned(rank: int, size: int, repeats: int, address: str, results) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=address, rank=rank, world_size=size)
    try:
        seconds = product_seconds(dist.group.WORLD, torch.device("cpu"), repeats)
        if rank == 0:
            results.put(seconds)
        dist.barrier()  # leave together: one leaving early can abort the other's gloo threads
    finally:
        dist.destroy_process_group()


def on_cpu(processes: int, repeats: int) -> float:
    """The product's seconds with ``processes`` gloo processes of one thread each."""
    queue = mp.get_context("spawn").SimpleQueue()
    address = f"tcp://127.0.0.1:{29500 + processes}"
    mp.spawn(_spawned, args=(processes, repeats, address, queue), nprocs=processes, join=True)
    return queue.get()


def under_torchrun(repeats: int) -> None:
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    dist.init_process_group("nccl" if cuda else "gloo")
    device = torch.device("cuda", torch.cuda.current_device()) if cuda else torch.device("cpu")
    seconds = product_seconds(dist.group.WORLD, device, repeats)
    if dist.get_rank() == 0:
        where = torch.cuda.get_device_name(device) if cuda else "CPU"
        print(
            f"FC5 Hessian product over 60,000 images, {dist.get_world_size()} process(es) on "
            f"{where}: {seconds:.3f} s"
        )
    dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if "WORLD_SIZE" in os.environ:
        under_torchrun(args.repeats)
        return
    one, two = on_cpu(1, args.repeats), on_cpu(2, args.repeats)
    print(
        f"FC5 Hessian product over the 60,000 Fashion-MNIST training images, one thread per "
        f"process (best of {args.repeats}): 1 process {one:.2f} s, 2 processes {two:.2f} s: "
        f"{one / two:.2f}x faster with 2 on this machine ({os.cpu_count()} cores)"
    )


if __name__ == "__main__":
    main()
