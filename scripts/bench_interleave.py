"""Interleaving torch CPU ops and fastact kernels in one process: does either stall?

Measures per-iteration latency of (a) a torch op alone, (b) a fastact op alone and (c) the two
interleaved in one loop, and reports p50/p99 and the ratio
``p99(interleaved) / (p99(torch alone) + p99(fastact alone))`` (target: <= 1.5).

    python scripts/bench_interleave.py [--n 262144] [--iters 2000] [--threads N] [--op gelu]

``--threads`` sets both torch's and numba's thread counts (default: leave both as they are).
``--op``: the fastact op, ``gelu`` (forward, ``out=``), ``mse_loss`` or ``cross_entropy``
(mean loss and its gradient; cross_entropy over rows of 1000 classes). Run it once with
``FASTACT_TORCH_POOL=never`` to compare fastact on torch's pool with numba's layer.
"""

from __future__ import annotations

import argparse
import time

import numba
import numpy as np
import torch

import fastact


def _lat(fn, iters: int) -> np.ndarray:
    for _ in range(max(20, iters // 20)):
        fn()
    t = np.empty(iters)
    for i in range(iters):
        t0 = time.perf_counter()
        fn()
        t[i] = time.perf_counter() - t0
    return t * 1e6  # microseconds


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1 << 18, help="elements per array")
    ap.add_argument("--iters", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--op", choices=["gelu", "mse_loss", "cross_entropy"], default="gelu")
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
        numba.set_num_threads(a.threads)
    rng = np.random.default_rng(0)
    x = rng.standard_normal(a.n).astype(np.float32)
    y = np.empty_like(x)
    tx = torch.from_numpy(rng.standard_normal(a.n).astype(np.float32))
    ty = torch.empty_like(tx)

    def torch_op() -> None:
        torch.tanh(tx, out=ty)

    target = rng.standard_normal(a.n).astype(np.float32)
    classes = rng.integers(0, 1000, a.n // 1000)

    def fastact_op() -> None:
        if a.op == "gelu":
            fastact.gelu(x, out=y)
        elif a.op == "mse_loss":
            fastact.losses.mse_loss(x, target, return_grad=True)
        else:
            fastact.losses.cross_entropy(x[: classes.size * 1000].reshape(-1, 1000), classes,
                                         return_grad=True)  # fmt: skip

    def both() -> None:
        torch_op()
        fastact_op()

    res = {}
    for name, fn in (("torch", torch_op), ("fastact", fastact_op), ("interleaved", both)):
        t = _lat(fn, a.iters)
        res[name] = (float(np.percentile(t, 50)), float(np.percentile(t, 99)))
    ratio = res["interleaved"][1] / (res["torch"][1] + res["fastact"][1])
    print(
        f"op={a.op} n={a.n} iters={a.iters} torch threads={torch.get_num_threads()} "
        f"numba threads={numba.get_num_threads()} layer={numba.threading_layer()}"
    )
    for name, (p50, p99) in res.items():
        print(f"  {name:12s} p50 {p50:9.1f} us   p99 {p99:9.1f} us")
    print(f"  p99 interleaved / (p99 torch + p99 fastact) = {ratio:.2f}  (target <= 1.5)")
    res["ratio"] = ratio
    return res


if __name__ == "__main__":
    main()
