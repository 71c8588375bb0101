"""Part III's tasks computed outside the notebooks, in one process or in several:

    python -m companion.compute fc5-cifar10 --profile cpu
    torchrun --nproc_per_node=4 -m companion.compute fc5-cifar10 vgg16-cifar10 --profile full

Under ``torchrun`` the processes form one group (NCCL with one GPU each when CUDA is there, gloo
on CPUs): every task's curvature products are summed over them, while training, pruning and
retraining run on process 0, which alone stores results (in ``results/<profile>/experiments/``,
the same stages the task pages compute) and shows progress. ``make book PROFILE=...`` then
builds the book from them.
"""

import argparse
import datetime
import functools
import os
import sys
from collections.abc import Sequence

import torch
from torch import distributed as dist

from companion.tasks import TASKS, plain_run, task_config, task_report
from prunelimit.sharding import computed_on_first
from prunelimit.views import DataSpec, load_views


def join_group(timeout: datetime.timedelta) -> dist.ProcessGroup | None:
    """The group of the processes ``torchrun`` started (None when there is one process): NCCL
    with this process's GPU (``LOCAL_RANK``) when CUDA is available, gloo otherwise.
    ``timeout``: how long a process waits for the others, e.g. while process 0 trains."""
    if int(os.environ.get("WORLD_SIZE", "1")) < 2:
        return None
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    dist.init_process_group(backend, timeout=timeout)
    return dist.group.WORLD


def _fetched(data: DataSpec) -> bool:
    """Load (and download, when the profile may) the data of a task; True."""
    load_views(data)
    return True


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m companion.compute", description=__doc__)
    parser.add_argument("tasks", nargs="+", choices=list(TASKS), metavar="TASK")
    parser.add_argument("--profile", default="full", help="smoke, cpu or full (default: full)")
    parser.add_argument(
        "--wait-hours",
        type=float,
        default=24.0,
        help="how long the other processes wait for process 0 (training, retraining)",
    )
    args = parser.parse_args(argv)
    group = join_group(datetime.timedelta(hours=args.wait_hours))
    first = group is None or dist.get_rank(group) == 0
    try:
        for task in args.tasks:
            config = task_config(task, args.profile)
            if group is not None:  # process 0 first, so that no two processes download the data
                computed_on_first(functools.partial(_fetched, config.data), group)
            report = task_report(config, progress=first, group=group)
            plain_run(config, progress=first, group=group)
            if first:
                print(f"{task} ({args.profile}):\n{report}", flush=True)
        if group is not None:  # leave together: one leaving early can abort the others
            dist.barrier()
    finally:
        if group is not None:
            dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
