"""Measure, per element-wise activation, the size from which the parallel kernel beats the
serial one (not a unit test; run on an idle machine).

    python scripts/tune_threshold.py            # prints one line per activation and a table
    python scripts/tune_threshold.py --threads 4
    python scripts/tune_threshold.py --pool     # the serial loop on torch's OpenMP pool instead

For sizes 2^12 .. 2^21 (and 1.5 times each) it times the forward kernel's serial and parallel
loops (warm calls, minimum of several repeats) and reports the smallest size from which the
parallel loop is faster at every larger size. ``fastact/_core/thresholds.py`` holds the table
the library uses (paste the printed dict there); sizes above the largest one tried keep the
default.
``--pool`` times the launch fastact makes once torch is imported (the serial loop run by
every thread of torch's pool on its share, :mod:`fastact._core.torch_pool`) against the
serial loop: its crossovers are ``POOL_THRESHOLDS``.
"""

from __future__ import annotations

import argparse
import timeit

import numba
import numpy as np

from fastact._core.thresholds import PARALLEL_THRESHOLD
from fastact.activations import ACTIVATIONS, scalar_params
from fastact.host.elementwise import kernels
from fastact.kernels.elementwise import REQUIRED


def _time(k, args) -> float:
    k(*args)
    number = max(1, int(2e6 // args[0].size))
    return min(timeit.repeat(lambda: k(*args), number=number, repeat=7)) / number


def crossover(
    name: str, sizes: list[int], pool: int = 0
) -> tuple[int, list[tuple[int, float, float]]]:
    op = ACTIVATIONS[name]
    vals = tuple(0.5 if v is REQUIRED else v for _, v in op.params)
    kp = scalar_params(op, vals, np.dtype("f4"))
    serial, parallel = kernels(op, "forward")
    if pool:
        from fastact._core.torch_pool import run_split

        def parallel(x, o, *kp, _k=serial):  # noqa: F811 (the launch on torch's pool)
            run_split(_k, (x, o, *kp), (0, 1), pool, 256)

    rows = []
    for n in sizes:
        x = (np.random.default_rng(0).standard_normal(n) * 3).astype(np.float32)
        o = np.empty_like(x)
        rows.append((n, _time(serial, (x, o, *kp)), _time(parallel, (x, o, *kp))))
    best = sizes[-1] * 2  # parallel never wins in range: keep it off below the next size
    for i in range(len(rows) - 1, -1, -1):
        if rows[i][2] < rows[i][1]:
            best = rows[i][0]
        else:
            break
    return best, rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--pool", action="store_true", help="time launches on torch's pool")
    a = ap.parse_args(argv)
    if a.threads:
        numba.set_num_threads(a.threads)
    pool = 0
    if a.pool:
        import torch

        from fastact._core.torch_pool import pool_threads

        if a.threads:
            torch.set_num_threads(a.threads)
        pool = pool_threads(1 << 30, 0, True)
        if not pool:
            raise SystemExit("torch's pool is not available here (or one thread)")
    # powers of two and the sizes halfway between (x 1.5): 4K .. 2M
    sizes = sorted({1 << k for k in range(12, 22)} | {3 << k for k in range(11, 20)})
    table = {}
    for name in sorted(ACTIVATIONS):
        try:
            best, rows = crossover(name, sizes, pool)
        except Exception as e:  # an activation whose defaults cannot run alone
            print(f"{name}: skipped ({type(e).__name__})")
            continue
        table[name] = best
        ratio = " ".join(f"{n >> 10}K:{s / p:.2f}" for n, s, p in rows)
        print(f"{name:12s} crossover {best:>8d}   serial/parallel {ratio}", flush=True)
    print(f"\n# {numba.get_num_threads()} threads; default {PARALLEL_THRESHOLD}")
    print("POOL_THRESHOLDS = {" if pool else "THRESHOLDS = {")
    for k, v in table.items():
        print(f'    "{k}": {v},')
    print("}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
