"""Benchmark: fastact's fused optimizers vs torch.optim (for-loop, foreach, fused) and roofline.

For each case, either one big parameter or a model-like list of mixed-shape tensors, this
times one ``step`` of every fastact optimizer (median of ``repeat`` steps after warm-up) next
to torch's default CPU implementation (the per-parameter for-loop), ``foreach=True`` and
``fused=True`` where torch has a CPU fused kernel (Adam, AdamW, SGD, Adagrad).

The roofline of an optimizer is the time its unavoidable memory traffic takes: every step
reads the parameter, the gradient and each state array once and writes the parameter and
the state back. It is measured, not assumed: a streaming read-modify-write kernel with the
same streams (``a_k[i] = a_k[i] * s + g[i]`` for the parameter and each state array, ``g``
read-only), over flat arrays with the same total number of elements, is timed in the same run.
``pct_roofline`` = roofline time / fastact time. The plain two-array ``a[i] = a[i] * s + b[i]``
bandwidth is reported too.

A last section steps fastact alone on (a) one 2**24 tensor, (b) the model and (c) one tensor
as large as the model, round-robin, and prints ns per element: (b)/(c) isolates the cost of
many tensors, (b)/(a) also includes cache and memory-size effects.

Run ``python -m fastact.bench_optim`` (torch uses 2 threads, numba its default).
"""

from __future__ import annotations

import argparse
import gc
import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from numba import prange

from fastact._core.jit import jit
from fastact.optim import OPTIMIZERS

__all__ = ["run", "scaling", "model_shapes", "format_table", "main"]

#: Optimizer -> (fastact/torch kwargs, streams read-modify-written besides the grad).
CONFIGS: dict[str, tuple[dict[str, Any], int]] = {
    "SGD": ({"lr": 1e-3, "momentum": 0.9}, 2),
    "Adam": ({}, 3),
    "AdamW": ({}, 3),
    "Adamax": ({}, 3),
    "RMSprop": ({}, 2),
    "Rprop": ({}, 3),
    "Adagrad": ({}, 2),
    "Adadelta": ({}, 3),
}
TORCH_FUSED = ("SGD", "Adam", "AdamW", "Adagrad")
#: Pause before every timed step: torch's OpenMP workers (and numba's TBB workers) keep
#: spinning for a few ms after a parallel region and would slow whatever runs next.
_QUIET = 0.03


def model_shapes(target: int = 30_000_000, layers: int = 13, d: int = 432) -> list[tuple]:
    """A transformer-like list of tensors (~12 per layer + embeddings/head): ~160 tensors.

    Each layer: qkv (d, 3d) + bias, proj (d, d) + bias, fc1 (d, 4d) + bias, fc2 (4d, d) +
    bias, two LayerNorms (weight, bias). The embedding's vocabulary fills up to ``target``.
    """
    shapes: list[tuple] = []
    for _ in range(layers):
        shapes += [(d, 3 * d), (3 * d,), (d, d), (d,), (d, 4 * d), (4 * d,), (4 * d, d), (d,)]
        shapes += [(d,), (d,), (d,), (d,)]
    shapes += [(1024, d), (d,), (d,)]  # positions, final LayerNorm
    used = sum(math.prod(s) for s in shapes)
    vocab = max(1, (target - used) // d)
    shapes.insert(0, (vocab, d))
    return shapes


@jit(parallel=True)
def _stream1(g, a0, s):
    for i in prange(g.shape[0]):
        a0[i] = a0[i] * s + g[i]


@jit(parallel=True)
def _stream2(g, a0, a1, s):
    for i in prange(g.shape[0]):
        a0[i] = a0[i] * s + g[i]
        a1[i] = a1[i] * s + g[i]


@jit(parallel=True)
def _stream3(g, a0, a1, a2, s):
    for i in prange(g.shape[0]):
        a0[i] = a0[i] * s + g[i]
        a1[i] = a1[i] * s + g[i]
        a2[i] = a2[i] * s + g[i]


@jit(parallel=True)
def _stream4(g, a0, a1, a2, a3, s):
    for i in prange(g.shape[0]):
        a0[i] = a0[i] * s + g[i]
        a1[i] = a1[i] * s + g[i]
        a2[i] = a2[i] * s + g[i]
        a3[i] = a3[i] * s + g[i]


_STREAMS = {1: _stream1, 2: _stream2, 3: _stream3, 4: _stream4}


def _median_time(fn, repeat: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        time.sleep(_QUIET)
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def _torch_stepper(
    name: str, kwargs: dict, params: list[np.ndarray], grads: list[np.ndarray], **variant: Any
):
    import torch

    tp = [torch.from_numpy(p.copy()).requires_grad_() for p in params]
    for t, g in zip(tp, grads, strict=True):
        t.grad = torch.from_numpy(g)
    opt = getattr(torch.optim, name)(tp, **kwargs, **variant)

    def step() -> None:
        with torch.no_grad():
            opt.step()

    return step


def _run_case(
    shapes: list[tuple],
    dt: np.dtype,
    names: list[str],
    repeat: int,
    torch_variants: bool,
    rng: np.random.Generator,
) -> list[dict]:
    """Time one case. All contenders of an optimizer run round-robin (one step each per
    round, each after a short pause that lets the previous one's worker threads go idle), so
    a load change on the machine hits them alike; medians over the rounds."""
    n = sum(math.prod(s) for s in shapes)
    label = f"1 x {n / 1e6:.1f}M" if len(shapes) == 1 else f"{len(shapes)} tensors, {n / 1e6:.1f}M"
    params = [rng.standard_normal(s).astype(dt) for s in shapes]
    grads = [(rng.standard_normal(s) * 1e-3).astype(dt) for s in shapes]
    flat = [np.full(n, 0.5, dtype=dt) for _ in range(5)]
    s = dt.type(0.999)
    rmw = _median_time(lambda: _stream1(flat[0], flat[1], s), repeat)
    rows = []
    for name in names:
        kwargs, w = CONFIGS[name]
        stream = _STREAMS[w]
        ps = [p.copy() for p in params]
        opt = OPTIMIZERS[name](ps, **kwargs)
        fns = {
            "fastact": lambda opt=opt: opt.step(grads),
            "roofline": lambda stream=stream, w=w: stream(*flat[: w + 1], s),
        }
        if torch_variants:
            fns["torch"] = _torch_stepper(name, kwargs, params, grads)
            fns["foreach"] = _torch_stepper(name, kwargs, params, grads, foreach=True)
            if name in TORCH_FUSED:
                fns["fused"] = _torch_stepper(name, kwargs, params, grads, fused=True)
        for f in fns.values():
            f()
            f()
        times: dict[str, list[float]] = {k: [] for k in fns}
        for _ in range(repeat):
            for k, f in fns.items():
                time.sleep(_QUIET)
                t0 = time.perf_counter()
                f()
                times[k].append(time.perf_counter() - t0)
        med = {k: float(np.median(v)) for k, v in times.items()}
        del fns, opt, ps
        gc.collect()
        nbytes = (2 * w + 1) * n * dt.itemsize
        fast = med["fastact"]
        row = {
            "case": label,
            "n_tensors": len(shapes),
            "n_elements": n,
            "dtype": dt.name,
            "optimizer": name,
            "bytes": nbytes,
            "fastact_s": fast,
            "roofline_s": med["roofline"],
            "pct_roofline": 100.0 * med["roofline"] / fast,
            "rmw_GBps": 3 * n * dt.itemsize / rmw / 1e9,
            "fastact_GBps": nbytes / fast / 1e9,
            "torch_s": med.get("torch", math.nan),
            "foreach_s": med.get("foreach", math.nan),
            "fused_s": med.get("fused", math.nan),
        }
        row["speedup_vs_torch"] = row["torch_s"] / fast
        row["speedup_vs_fused"] = row["fused_s"] / fast
        rows.append(row)
    return rows


def run(
    sizes: Sequence[int | Sequence[tuple]] | None = None,
    dtype: str = "float32",
    repeat: int = 5,
    optimizers: Sequence[str] | None = None,
    torch_variants: bool = True,
) -> list[dict]:
    """Time every optimizer for every case; one dict per (case, optimizer).

    ``sizes``: cases, each an int (one parameter of that many elements) or a list of shapes;
    default ``[2**24, model_shapes()]``. Times are medians in seconds.
    """
    dt = np.dtype(dtype)
    if sizes is None:
        sizes = [1 << 24, model_shapes()]
    names = list(optimizers) if optimizers is not None else list(CONFIGS)
    rng = np.random.default_rng(0)
    rows: list[dict] = []
    for case in sizes:
        shapes = [(int(case),)] if isinstance(case, (int, np.integer)) else [tuple(s) for s in case]
        rows += _run_case(shapes, dt, names, repeat, torch_variants, rng)
        gc.collect()
    # per-element cost of each case relative to the first case (same optimizer)
    first = {r["optimizer"]: r for r in rows if r["case"] == rows[0]["case"]}
    for r in rows:
        f = first[r["optimizer"]]
        r["per_element_vs_first"] = (r["fastact_s"] / r["n_elements"]) / (
            f["fastact_s"] / f["n_elements"]
        )
    return rows


def scaling(
    sizes: Sequence[int | Sequence[tuple]] | None = None,
    dtype: str = "float32",
    repeat: int = 5,
    optimizers: Sequence[str] | None = None,
) -> list[dict]:
    """Per-element step cost of fastact across cases, measured round-robin in one loop.

    Default cases: one 2**24 tensor, the model-like tensor list and one tensor as large as
    the model. Interleaving makes the cross-case ratios robust to load changes on the machine;
    the single tensor of the model's size separates the cost of many tensors from cache and
    memory-size effects. One dict per optimizer: ns per element per case and the ratios.
    """
    dt = np.dtype(dtype)
    if sizes is None:
        model = model_shapes()
        sizes = [1 << 24, model, sum(math.prod(s) for s in model)]
    cases = [
        [(int(c),)] if isinstance(c, (int, np.integer)) else [tuple(s) for s in c] for c in sizes
    ]
    rng = np.random.default_rng(1)
    data = [
        (
            [rng.standard_normal(s).astype(dt) for s in shapes],
            [(rng.standard_normal(s) * 1e-3).astype(dt) for s in shapes],
        )
        for shapes in cases
    ]
    counts = [sum(p.size for p in ps) for ps, _ in data]
    out = []
    for name in optimizers if optimizers is not None else list(CONFIGS):
        kwargs, _w = CONFIGS[name]
        opts = [OPTIMIZERS[name](ps, **kwargs) for ps, _ in data]
        for opt, (_, gs) in zip(opts, data, strict=True):
            opt.step(gs)
            opt.step(gs)
        times: list[list[float]] = [[] for _ in data]
        for _ in range(repeat):
            for k, (opt, (_, gs)) in enumerate(zip(opts, data, strict=True)):
                time.sleep(_QUIET)
                t0 = time.perf_counter()
                opt.step(gs)
                times[k].append(time.perf_counter() - t0)
        ns = [1e9 * float(np.median(t)) / c for t, c in zip(times, counts, strict=True)]
        out.append(
            {
                "optimizer": name,
                "n_elements": counts,
                "ns_per_element": ns,
                "ratios_to_first": [x / ns[0] for x in ns],
            }
        )
        del opts
        gc.collect()
    return out


def format_table(rows: list[dict]) -> str:
    """Rows of :func:`run` as a fixed-width text table (times in ms)."""

    def ms(x: float) -> str:
        return f"{'-':>8s}" if math.isnan(x) else f"{1e3 * x:8.1f}"

    head = (
        f"{'case':22s} {'optimizer':9s} {'MB':>6s} {'fastact':>8s} {'torch':>8s} "
        f"{'foreach':>8s} {'fused':>8s} {'roofln':>8s} {'%roof':>6s} {'xtorch':>6s} "
        f"{'xfused':>6s} {'GB/s':>5s} {'/elem':>5s}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        xf = "-" if math.isnan(r["speedup_vs_fused"]) else f"{r['speedup_vs_fused']:6.2f}"
        lines.append(
            f"{r['case']:22s} {r['optimizer']:9s} {r['bytes'] / 1e6:6.0f} {ms(r['fastact_s'])} "
            f"{ms(r['torch_s'])} {ms(r['foreach_s'])} {ms(r['fused_s'])} "
            f"{ms(r['roofline_s'])} {r['pct_roofline']:6.1f} {r['speedup_vs_torch']:6.1f} "
            f"{xf:>6s} {r['fastact_GBps']:5.1f} {r['per_element_vs_first']:5.2f}"
        )
    cases = dict.fromkeys(r["case"] for r in rows)
    for c in cases:
        bw = next(r["rmw_GBps"] for r in rows if r["case"] == c)
        lines.append(f"streaming a[i] = a[i]*s + b[i] over {c}: {bw:.1f} GB/s")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: ``python -m fastact.bench_optim [--repeat N] [--dtype D] [--small]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--small", action="store_true", help="1/16 sizes (smoke test)")
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--optimizers", default=None, help="comma-separated subset")
    parser.add_argument(
        "--no-control",
        action="store_true",
        help="skip the control case: one tensor as large as the model (fastact only)",
    )
    args = parser.parse_args(argv)
    import numba

    if not args.no_torch:
        import torch

        torch.set_num_threads(args.threads)
    sizes = [1 << 20, model_shapes(30_000_000 // 16, layers=13, d=108)] if args.small else None
    opts = args.optimizers.split(",") if args.optimizers else None
    rows = run(sizes, args.dtype, args.repeat, opts, torch_variants=not args.no_torch)
    print(
        f"numba threads: {numba.get_num_threads()} ({numba.threading_layer()}), dtype "
        f"{args.dtype}, median of {args.repeat} round-robin steps; times in ms"
    )
    print(format_table(rows))
    if not args.no_control and not args.small:
        sc = scaling(None, args.dtype, args.repeat, opts)
        n = sc[0]["n_elements"]
        print(
            f"\nscaling (fastact only, the three cases stepped round-robin): ns per element for "
            f"(a) 1 x {n[0] / 1e6:.1f}M, (b) model {n[1] / 1e6:.1f}M, (c) 1 x {n[2] / 1e6:.1f}M"
        )
        print(
            f"{'optimizer':9s} {'(a)':>7s} {'(b)':>7s} {'(c)':>7s} {'(b)/(a)':>8s} {'(b)/(c)':>8s}"
        )
        for r in sc:
            a, b, c = r["ns_per_element"]
            print(f"{r['optimizer']:9s} {a:7.3f} {b:7.3f} {c:7.3f} {b / a:8.2f} {b / c:8.2f}")


if __name__ == "__main__":
    main()
