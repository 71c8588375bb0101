"""Predicted-limit benchmark: what a trustworthy number costs, measured side by side in this run.

    .venv/bin/python benchmarks/limit.py            (or: make benchmark)

On FC5 of the cpu profile (Part III's FC5 page: its trained model, its eps and its N Hessian
examples; trained here first if no stored model exists):
1. ``certified_limit`` on the Gauss-Newton matrix G until the interval is 0.01 wide (and
   ``--tolerances`` more): products, seconds, the interval (over N = 1,000 examples G's
   prediction is below its rank bound 0.0056, so 0.01 is reached at once: 0.002 is the real test);
2. the authors' setting, SLQ with 128 steps and 1 probe on H under the |lambda| rule (float32
   products, re-orthogonalised, as PyHessian): its prediction, products and seconds;
3. a long run of the same (``--long-steps`` steps, ``--long-probes`` probes, plain Lanczos in
   float64): the spread of the |lambda| prediction over its later truncations and probes, and
   how far the authors' number lies from it.
"""

import argparse
import time

import torch
from torch import nn

from companion.tasks import task_config, task_study
from prunelimit.certified import certified_limit
from prunelimit.curvature import GGNOperator, HessianOperator
from prunelimit.lanczos import SLQResult, rademacher_probes, slq
from prunelimit.limit import flat_weights, prediction_spread
from prunelimit.quadrature import LanczosRecurrence

LOSS = nn.CrossEntropyLoss()


def plain_slq(operator: HessianOperator, steps: int, probes: int, seed: int) -> SLQResult:
    """SLQ by the O(D) recurrence (no basis, no re-orthogonalisation): long runs fit in memory."""
    size = operator.shape[0]
    recurrence = LanczosRecurrence(operator, rademacher_probes(size, probes, seed))
    for _ in range(steps):
        recurrence.step()
    return SLQResult.from_tridiagonals(recurrence.tridiagonals(), size, seed)


def timed(work):
    start = time.perf_counter()
    result = work()
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--long-steps", type=int, default=256)
    parser.add_argument("--long-probes", type=int, default=2)
    parser.add_argument("--tolerances", type=float, nargs="+", default=[0.01, 0.002])
    args = parser.parse_args()
    study = task_study(task_config("fc5-cifar10", "cpu"), progress=False)
    model, weights = study.model.eval(), study.weights
    eps, data = study.dense().eps, study.data.curvature_set
    w_star = flat_weights(weights)
    print(
        f"FC5 (cpu profile): D = {len(w_star):,}, eps = {eps:.4g}, curvature over "
        f"N = {len(data[0]):,} training images; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )

    ggn = GGNOperator(model, LOSS, data, weights, dtype=torch.float64)
    runs = []
    for tolerance in args.tolerances:
        certified, certified_time = timed(
            lambda tolerance=tolerance: certified_limit(
                ggn, w_star, eps, tolerance, max_products=2_000, progress=False
            )
        )
        runs.append((tolerance, certified, certified_time))
        print(
            f"certified, G, width <= {tolerance:g}: [{certified.low:.4f}, {certified.high:.4f}]  "
            f"{certified.num_products:5d} products {certified_time:8.1f} s  "
            f"({certified.stop_reason})"
        )

    hessian = HessianOperator(model, LOSS, data, weights)
    authors, authors_time = timed(
        lambda: slq(hessian, 128, 1, seed=0, progress=False, basis_dtype=torch.float32)
    )
    theirs = prediction_spread(authors, w_star, eps)
    print(
        f"authors' setting, |H|: {theirs.rho:.4f}  (their own spread {theirs.low:.4f}-"
        f"{theirs.high:.4f})  128 products {authors_time:8.1f} s"
    )

    hessian64 = HessianOperator(model, LOSS, data, weights, dtype=torch.float64)
    long, long_time = timed(lambda: plain_slq(hessian64, args.long_steps, args.long_probes, seed=1))
    spread = prediction_spread(long, w_star, eps)
    outside = max(spread.low - theirs.rho, theirs.rho - spread.high, 0.0)
    print(
        f"long run, |H|:       {spread}  {args.long_steps * args.long_probes} products "
        f"{long_time:8.1f} s"
    )
    print(
        f"the authors' number lies {outside:.4f} outside the long run's spread (width "
        f"{spread.high - spread.low:.4f})"
    )
    for tolerance, certified, certified_time in runs:
        print(
            f"ratios, certified to {tolerance:g} / authors' setting: time "
            f"{certified_time / authors_time:.2f}x, products {certified.num_products / 128:.2f}x"
        )
    print(f"ratio, long |H| run / authors' setting: time {long_time / authors_time:.2f}x")


if __name__ == "__main__":
    main()
