"""Curvature engine benchmark: every number is a ratio measured side by side in this run.

    .venv/bin/python benchmarks/curvature.py            (or: make benchmark)

On FC5 and LeNet-5 trained briefly on Fashion-MNIST:
1. one full-data Hessian-vector product against one full-data gradient (time, peak memory);
2. matmat with 4 and 8 vectors per graph build against as many single products;
3. the top eigenvalue by our Lanczos (stopped by its residual bound) and by PyHessian 0.1's power
   iteration, and the trace by our Hutch++ and PyHessian's Hutchinson with the same number of
   products, on the same model and data (PyHessian from PyPI, unmodified);
4. the share of a 100-step Lanczos run spent outside the Hessian products (the bookkeeping).
"""

import argparse
import threading
import time
from collections.abc import Callable

import numpy as np
import psutil
import torch
from torch import nn

from prunelimit.curvature import HessianOperator
from prunelimit.data import load_fashion_mnist
from prunelimit.lanczos import hutchpp_trace, lanczos
from prunelimit.models import fc5, lenet5
from prunelimit.training import Recipe, evaluate, train

LOSS = nn.CrossEntropyLoss()


def measure(work: Callable[[], object]) -> tuple[object, float, float]:
    """(result, seconds, peak extra memory in MiB): CUDA's allocator peak, or sampled RSS on CPU."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        start = time.perf_counter()
        result = work()
        torch.cuda.synchronize()
        return (
            result,
            time.perf_counter() - start,
            (torch.cuda.max_memory_allocated() - base) / 2**20,
        )
    process, peak, running = psutil.Process(), [0], [True]
    base = process.memory_info().rss

    def sample() -> None:
        while running[0]:
            peak[0] = max(peak[0], process.memory_info().rss)
            time.sleep(0.002)

    sampler = threading.Thread(target=sample)
    sampler.start()
    start = time.perf_counter()
    result = work()
    seconds = time.perf_counter() - start
    running[0] = False
    sampler.join()
    return result, seconds, max(peak[0] - base, 0) / 2**20


class CountingOperator:
    """Wraps an operator and adds up the time spent in its products."""

    def __init__(self, operator: HessianOperator) -> None:
        self.operator, self.seconds = operator, 0.0
        self.shape, self.dtype, self.device = operator.shape, operator.dtype, operator.device

    def matmat(self, vectors: torch.Tensor) -> torch.Tensor:
        start = time.perf_counter()
        result = self.operator.matmat(vectors)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.seconds += time.perf_counter() - start
        return result


def trained(name: str, images: torch.Tensor, labels: torch.Tensor, epochs: int) -> nn.Module:
    torch.manual_seed(0)
    model = (fc5() if name == "FC5" else lenet5()).to(images.device)
    start = time.perf_counter()
    train(model, images, labels, Recipe(epochs, 0.01), progress=False)
    loss, accuracy = evaluate(model, images, labels)
    print(
        f"\n== {name}: {sum(p.numel() for p in model.parameters()):,} parameters, trained "
        f"{epochs} epochs in {time.perf_counter() - start:.0f} s, "
        f"train loss {loss:.3f}, accuracy {accuracy:.1%}"
    )
    return model


def products(model: nn.Module, data: tuple[torch.Tensor, torch.Tensor], chunk: int) -> float:
    """Print product costs; return the seconds of one fresh full-data HVP."""
    operator = HessianOperator(model, LOSS, data, chunk_size=chunk, reuse_graph=False)
    size = operator.shape[0]
    vectors = torch.randn(size, 8, device=operator.device)
    operator.gradient()  # warm-up
    _, grad_time, grad_mem = measure(operator.gradient)
    _, hvp_time, hvp_mem = measure(lambda: operator.matvec(vectors[:, 0]))
    print(f"full-data gradient  {grad_time:7.2f} s  {grad_mem:8.0f} MiB")
    print(
        f"full-data HVP       {hvp_time:7.2f} s  {hvp_mem:8.0f} MiB   "
        f"HVP / gradient: time {hvp_time / grad_time:.2f}x, "
        f"memory {hvp_mem / max(grad_mem, 1):.2f}x"
    )
    if len(data[0]) <= chunk:  # one chunk: later products can reuse the gradient graph
        kept = HessianOperator(model, LOSS, data, chunk_size=chunk)
        kept.matvec(vectors[:, 0])
        _, kept_time, _ = measure(lambda: kept.matvec(vectors[:, 1]))
        print(
            f"HVP on a kept graph {kept_time:7.2f} s = "
            f"{kept_time / grad_time:.2f}x a gradient (what Lanczos and SLQ pay per step)"
        )
        del kept
    for k in (4, 8):
        _, block_time, _ = measure(lambda k=k: operator.matmat(vectors[:, :k]))
        print(
            f"matmat with {k} vectors {block_time:6.2f} s = "
            f"{block_time / k / grad_time:.2f}x a gradient per vector; {k} single products "
            f"would take {k * hvp_time:.2f} s ({k * hvp_time / block_time:.2f}x longer)"
        )
    return hvp_time


def spectrum_against_pyhessian(
    model: nn.Module, data: tuple[torch.Tensor, torch.Tensor], full_hvp_time: float
) -> None:
    from pyhessian import (
        hessian as PyHessian,
    )  # benchmark-only dependency (requirements-nodeps.txt)

    operator = HessianOperator(model, LOSS, data, chunk_size=len(data[0]))
    reference = lanczos(operator, 80, seed=1).top(1)[0]
    print(
        f"top eigenvalue on {len(data[0]):,} images (reference: 80 Lanczos steps) {reference:.6g}"
    )
    counted = CountingOperator(operator)
    ours, our_time, _ = measure(lambda: lanczos(counted, 100, seed=0, stop_tol=1e-3))
    ours_error = abs(ours.top(1)[0] - reference) / abs(reference)
    print(
        f"  ours: Lanczos, stop at residual 1e-3 ({ours.num_steps} steps) {our_time:6.2f} s  "
        f"relative error {ours_error:.1e}"
    )

    def theirs() -> PyHessian:  # its constructor builds the gradient graph, so it is timed too
        return PyHessian(model, LOSS, data=data, cuda=torch.cuda.is_available())

    for tol in (1e-3, 1e-4):
        (values, _), their_time, _ = measure(
            lambda tol=tol: theirs().eigenvalues(maxIter=100, tol=tol, top_n=1)
        )
        error = abs(values[0] - reference) / abs(reference)
        print(
            f"  PyHessian power iteration, tol {tol:g}     {their_time:6.2f} s  relative error "
            f"{error:.1e}   ours is {their_time / our_time:.1f}x faster"
        )
    their_trace, their_trace_time, _ = measure(lambda: theirs().trace(maxIter=100, tol=1e-3))
    budget = len(their_trace)
    our_trace, our_trace_time, _ = measure(lambda: hutchpp_trace(operator, max(budget, 6), seed=0))
    print(f"trace with {budget} products each (PyHessian stopped after {budget}):")
    print(
        f"  ours: Hutch++   {our_trace.mean:10.4g} ± {our_trace.stderr:.2g}   "
        f"{our_trace_time:6.2f} s"
    )
    their_stderr = np.std(their_trace, ddof=1) / np.sqrt(budget)
    print(
        f"  PyHessian       {np.mean(their_trace):10.4g} ± {their_stderr:.2g}   "
        f"{their_trace_time:6.2f} s"
    )
    counted.seconds = 0.0
    _, run_time, _ = measure(lambda: lanczos(counted, 100, seed=2))
    bookkeeping = run_time - counted.seconds
    print(
        f"Lanczos bookkeeping: {bookkeeping / run_time:.1%} of a 100-step run here "
        f"({run_time:.1f} s, of which products {counted.seconds:.1f} s); with full-data "
        f"products it is {bookkeeping / (bookkeeping + 100 * full_hvp_time):.1%}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--examples", type=int, default=60_000, help="data for products (default: all)"
    )
    parser.add_argument(
        "--spectral-examples", type=int, default=5_000, help="data for the PyHessian runs"
    )
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    images, labels = load_fashion_mnist("train")
    images, labels = images.to(device), labels.to(device)
    print(f"device: {device}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    for name, chunk in (("FC5", 60_000), ("LeNet-5", 10_000)):
        model = trained(name, images, labels, args.epochs)
        full_hvp = products(model, (images[: args.examples], labels[: args.examples]), chunk)
        subset = (images[: args.spectral_examples], labels[: args.spectral_examples])
        spectrum_against_pyhessian(model, subset, full_hvp)


if __name__ == "__main__":
    main()
