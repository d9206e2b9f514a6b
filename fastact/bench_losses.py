"""Benchmark: fastact's fused loss + gradient against torch (forward + autograd backward) and
NumPy, with the memory roofline of each loss measured in the same run.

``python -m fastact.bench_losses`` prints, for float32 inputs of 16M elements (cross_entropy
on (65536, 1000) logits, the row-wise losses on 16M-element matrices), the median time of:

* ``fastact``: ``loss(..., return_grad=True)`` (allocates the gradient, like torch);
* ``fastact+buf``: the same writing into a reused ``grad_out`` buffer (no page faults);
* ``torch``: forward + ``backward()`` with ``torch.set_num_threads(threads)``;
* ``numpy``: a plain NumPy expression of the loss and its gradient;
* ``roofline``: bytes read + written (inputs once, gradients once; nll_loss reads one input
  element per row) divided by the streaming bandwidth of a parallel ``z = x + y`` kernel,
  timed in turns with fa+buf so both see the same machine load (``x roof`` = fa+buf /
  roofline).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from numba import prange

from fastact import losses as L
from fastact._core.jit import jit

# ----------------------------------------------------------------------------------------
# NumPy loss + gradient (mean reduction), the baseline a NumPy user would write
# ----------------------------------------------------------------------------------------


def _np_sigmoid(x):
    return np.exp(-np.logaddexp(0, -x))


def _np_mse(x, t):
    d = x - t
    return np.mean(d * d), d * np.float32(2.0 / d.size)


def _np_l1(x, t):
    d = x - t
    return np.mean(np.abs(d)), np.sign(d) * np.float32(1.0 / d.size)


def _np_smooth_l1(x, t):
    d = x - t
    ad = np.abs(d)
    small = ad < 1
    loss = np.mean(np.where(small, 0.5 * d * d, ad - 0.5))
    return loss, np.where(small, d, np.sign(d)) * np.float32(1.0 / d.size)


def _np_huber(x, t):
    return _np_smooth_l1(x, t)


def _np_bce(p, t):
    lp = np.maximum(np.log(p), -100)
    l1p = np.maximum(np.log1p(-p), -100)
    loss = np.mean((t - 1) * l1p - t * lp)
    g = (p - t) / np.maximum((1 - p) * p, np.float32(1e-12)) * np.float32(1.0 / p.size)
    return loss, g


def _np_bce_logits(x, t):
    loss = np.mean((1 - t) * x + np.logaddexp(0, -x))
    return loss, (_np_sigmoid(x) - t) * np.float32(1.0 / x.size)


def _np_kl(x, t):
    loss = np.sum(t * (np.log(t) - x)) / x.shape[0]
    return loss, -t / np.float32(x.shape[0])


def _np_poisson(x, t):
    ex = np.exp(x)
    return np.mean(ex - t * x), (ex - t) * np.float32(1.0 / x.size)


def _np_gaussian(x, t, v):
    v = np.maximum(v, np.float32(1e-6))
    d = x - t
    q = d / v
    loss = np.mean(0.5 * (np.log(v) + d * q))
    s = np.float32(1.0 / x.size)
    return loss, (q * s, 0.5 * (1 / v - q * q) * s)


def _np_soft_margin(x, y):
    z = -y * x
    return np.mean(np.logaddexp(0, z)), -y * _np_sigmoid(z) * np.float32(1.0 / x.size)


def _np_margin_ranking(x1, x2, y):
    z = -y * (x1 - x2)
    act = z >= 0
    s = np.float32(1.0 / x1.size)
    return np.mean(np.maximum(z, 0)), (np.where(act, -y, 0) * s, np.where(act, y, 0) * s)


def _np_hinge(x, y):
    mc = 1 - x
    loss = np.mean(np.where(y == 1, x, np.maximum(mc, 0)))
    g = np.where(y == 1, 1, np.where(mc >= 0, -1, 0)).astype(np.float32)
    return loss, g * np.float32(1.0 / x.size)


def _np_cross_entropy(x, y):
    m = x.max(1, keepdims=True)
    e = np.exp(x - m)
    s = e.sum(1, keepdims=True)
    rows = np.arange(x.shape[0])
    loss = np.mean(np.log(s[:, 0]) + m[:, 0] - x[rows, y])
    g = e / s
    g[rows, y] -= 1
    return loss, g * np.float32(1.0 / x.shape[0])


def _np_nll(x, y):
    rows = np.arange(x.shape[0])
    g = np.zeros_like(x)
    g[rows, y] = -1.0 / x.shape[0]
    return -np.mean(x[rows, y]), g


def _np_multilabel(x, t):
    loss = np.mean((1 - t) * x + np.logaddexp(0, -x))
    return loss, (_np_sigmoid(x) - t) * np.float32(1.0 / x.size)


def _np_cosine(x1, x2, y):
    dot = np.sum(x1 * x2, 1)
    a = np.sum(x1 * x1, 1) + 1e-12
    b = np.sum(x2 * x2, 1) + 1e-12
    den = np.sqrt(a * b)
    cos = dot / den
    pos = y == 1
    loss = np.mean(np.where(pos, 1 - cos, np.maximum(cos, 0)))
    dl = np.where(pos, -1.0, (cos >= 0).astype(np.float64)) / x1.shape[0]
    g1 = (dl / den)[:, None] * x2 - (dl * cos / a)[:, None] * x1
    g2 = (dl / den)[:, None] * x1 - (dl * cos / b)[:, None] * x2
    return loss, (g1.astype(np.float32), g2.astype(np.float32))


def _np_triplet(a, p, n):
    up = a - p + np.float32(1e-6)
    un = a - n + np.float32(1e-6)
    dp = np.sqrt(np.sum(up * up, 1))
    dn = np.sqrt(np.sum(un * un, 1))
    z = 1.0 + dp - dn
    act = (z >= 0) / np.float32(a.shape[0])
    gp = up * (act / dp)[:, None]
    gn = un * (act / dn)[:, None]
    return np.mean(np.maximum(z, 0)), (gp - gn, -gp, gn)


# ----------------------------------------------------------------------------------------
# cases
# ----------------------------------------------------------------------------------------


def _cases(n: int, ce_shape: tuple[int, int], rng: np.random.Generator) -> list[dict]:
    f32 = np.float32

    def normal(*shape):
        return rng.standard_normal(shape, dtype=f32)

    def uniform(lo, hi, *shape):
        return rng.uniform(lo, hi, shape).astype(f32)

    def pm1(*shape):
        return np.where(rng.random(shape, dtype=f32) < 0.5, f32(-1), f32(1))

    rows, cols = n // 1024, 1024
    emb = (n // 128, 128)
    x = normal(n)
    t = normal(n)
    return [
        dict(name="mse_loss", args=(x, t), np=_np_mse, grads=(0,)),
        dict(name="l1_loss", args=(x, t), np=_np_l1, grads=(0,)),
        dict(name="smooth_l1_loss", args=(x, t), np=_np_smooth_l1, grads=(0,)),
        dict(name="huber_loss", args=(x, t), np=_np_huber, grads=(0,)),
        dict(
            name="binary_cross_entropy",
            args=(uniform(0.001, 0.999, n), uniform(0, 1, n)),
            np=_np_bce,
            grads=(0,),
        ),
        dict(
            name="binary_cross_entropy_with_logits",
            args=(x, uniform(0, 1, n)),
            np=_np_bce_logits,
            grads=(0,),
        ),
        dict(
            name="kl_div",
            args=(np.log(uniform(0.01, 1, n)), uniform(0.01, 1, n)),
            kw={"reduction": "batchmean"},
            np=_np_kl,
            grads=(0,),
        ),
        dict(
            name="poisson_nll_loss",
            args=(x, rng.poisson(2.0, n).astype(f32)),
            np=_np_poisson,
            grads=(0,),
        ),
        dict(
            name="gaussian_nll_loss",
            args=(x, t, uniform(0.1, 2, n)),
            np=_np_gaussian,
            grads=(0, 2),
        ),
        dict(name="soft_margin_loss", args=(x, pm1(n)), np=_np_soft_margin, grads=(0,)),
        dict(
            name="margin_ranking_loss",
            args=(x, t, pm1(n)),
            np=_np_margin_ranking,
            grads=(0, 1),
        ),
        dict(name="hinge_embedding_loss", args=(x, pm1(n)), np=_np_hinge, grads=(0,)),
        dict(
            name="cross_entropy",
            args=(normal(*ce_shape), rng.integers(0, ce_shape[1], ce_shape[0])),
            np=_np_cross_entropy,
            grads=(0,),
        ),
        dict(
            name="nll_loss",
            args=(normal(rows, cols), rng.integers(0, cols, rows)),
            np=_np_nll,
            grads=(0,),
            # reads one element per row (and the targets), writes the whole gradient
            bytes=rows * cols * 4 + rows * (8 + 4),
        ),
        dict(
            name="multilabel_soft_margin_loss",
            args=(normal(rows, cols), (rng.random((rows, cols)) < 0.5).astype(f32)),
            np=_np_multilabel,
            grads=(0,),
        ),
        dict(
            name="cosine_embedding_loss",
            args=(normal(*emb), normal(*emb), pm1(emb[0])),
            np=_np_cosine,
            grads=(0, 1),
        ),
        dict(
            name="triplet_margin_loss",
            args=(normal(*emb), normal(*emb), normal(*emb)),
            np=_np_triplet,
            grads=(0, 1, 2),
        ),
    ]


def _median_time(fn: Callable[[], Any], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def _median_times_interleaved(fns: list[Callable[[], Any]], repeats: int) -> list[float]:
    """Median time of each function, run in turns so that all see the same machine load."""
    for fn in fns:
        fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, ts in zip(fns, times, strict=True):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
    return [float(np.median(ts)) for ts in times]


@jit(parallel=True)
def _stream_triad(x, y, z):
    """z = x + y: reads two arrays and writes one (the pattern of a fused loss + gradient)."""
    for i in prange(x.size):
        z[i] = x[i] + y[i]


class _Stream:
    """The parallel ``z = x + y`` kernel on float32 arrays of n elements (12 bytes each)."""

    def __init__(self, n: int) -> None:
        self.x = np.ones(n, np.float32)
        self.y = np.ones(n, np.float32)
        self.z = np.empty(n, np.float32)
        self.bytes = 12 * n

    def __call__(self) -> None:
        _stream_triad(self.x, self.y, self.z)


def stream_bandwidth(n: int, repeats: int = 7) -> float:
    """Bytes/s of the parallel ``z = x + y`` kernel on float32 arrays of n elements."""
    s = _Stream(n)
    return s.bytes / _median_time(s, repeats)


def run(
    n: int = 1 << 24,
    ce_shape: tuple[int, int] = (65536, 1000),
    repeats: int = 7,
    threads: int = 2,
    names: list[str] | None = None,
    with_numpy: bool = True,
    with_torch: bool = True,
    seed: int = 0,
) -> list[dict]:
    """Time every loss; one dict per loss with times in seconds and ratios.

    Keys: loss, shape, bytes, fastact_s, fastact_buf_s, torch_s, numpy_s, roofline_s,
    speedup_vs_torch (torch_s / fastact_s), x_roofline (fastact_buf_s / roofline_s).
    """
    import numba

    rng = np.random.default_rng(seed)
    cases = _cases(n, ce_shape, rng)
    if names is not None:
        cases = [c for c in cases if c["name"] in names]
    torch = None
    if with_torch:
        import torch
    old_threads = numba.get_num_threads()
    old_torch = torch.get_num_threads() if torch is not None else None
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    if torch is not None:
        torch.set_num_threads(threads)
    try:
        stream = _Stream(n)
        return [_bench_case(c, repeats, stream, torch, with_numpy) for c in cases]
    finally:
        numba.set_num_threads(old_threads)
        if torch is not None:
            torch.set_num_threads(old_torch)


def _bench_case(case: dict, repeats: int, stream: _Stream, torch: Any, with_numpy: bool) -> dict:
    name, args, kw = case["name"], case["args"], case.get("kw", {})
    fa = getattr(L, name)
    grads = case["grads"]
    nbytes = case.get("bytes") or sum(a.nbytes for a in args) + sum(args[i].nbytes for i in grads)
    fastact_s = _median_time(lambda: fa(*args, return_grad=True, **kw), repeats)
    bufs = tuple(np.empty_like(args[i]) for i in grads)
    gout = bufs[0] if len(bufs) == 1 else bufs
    # the buffered call and the bandwidth probe alternate, so the roofline ratio compares
    # runs made under the same machine load
    buf_s, stream_s = _median_times_interleaved(
        [lambda: fa(*args, return_grad=True, grad_out=gout, **kw), stream], repeats
    )
    bw = stream.bytes / stream_s
    row = {
        "loss": name,
        "shape": "x".join(map(str, args[0].shape)),
        "bytes": nbytes,
        "fastact_s": fastact_s,
        "fastact_buf_s": buf_s,
        "roofline_s": nbytes / bw,
        "bandwidth_GBs": bw / 1e9,
    }
    if torch is not None:
        import torch.nn.functional as F

        targs = [torch.from_numpy(a) for a in args]
        for i in grads:
            targs[i].requires_grad_(True)
        tfn = getattr(F, name)

        def torch_step():
            out = tfn(*targs, **kw)
            out.backward()
            for i in grads:
                targs[i].grad = None

        row["torch_s"] = _median_time(torch_step, repeats)
        row["speedup_vs_torch"] = row["torch_s"] / fastact_s
    if with_numpy:
        row["numpy_s"] = _median_time(lambda: case["np"](*args), max(1, repeats // 2))
    row["x_roofline"] = buf_s / row["roofline_s"]
    return row


def format_table(results: list[dict]) -> str:
    head = (
        f"{'loss':34s} {'shape':>12s} {'fastact':>9s} {'fa+buf':>9s} {'torch':>9s} "
        f"{'numpy':>9s} {'roofline':>9s} {'vs torch':>9s} {'x roof':>7s}"
    )
    lines = [head, "-" * len(head)]

    def ms(v):
        return f"{v * 1e3:8.1f}ms" if v is not None else f"{'-':>10s}"

    for r in results:
        vt = r.get("speedup_vs_torch")
        lines.append(
            f"{r['loss']:34s} {r['shape']:>12s} {ms(r['fastact_s'])} {ms(r['fastact_buf_s'])} "
            f"{ms(r.get('torch_s'))} {ms(r.get('numpy_s'))} {ms(r['roofline_s'])} "
            f"{(f'{vt:8.2f}x' if vt else '-'):>9s} {r['x_roofline']:6.2f}x"
        )
    if results:
        bws = [r["bandwidth_GBs"] for r in results]
        lines.append(
            f"streaming bandwidth (z = x + y, measured with each loss): "
            f"{min(bws):.1f} to {max(bws):.1f} GB/s"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1 << 24, help="elements per input (default 16M)")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--loss", action="append", help="only this loss (repeatable)")
    ap.add_argument("--no-numpy", action="store_true")
    args = ap.parse_args(argv)
    ce_shape = (65536, 1000) if args.n == 1 << 24 else (max(1, args.n // 1000), 1000)
    res = run(args.n, ce_shape, args.repeats, args.threads, args.loss, with_numpy=not args.no_numpy)
    print(format_table(res))


if __name__ == "__main__":
    main()
