"""Which numba threading layer should fastact use by default? Measure TBB against OpenMP.

Each layer runs in fresh processes (``NUMBA_THREADING_LAYER=tbb`` / ``omp``, with
``LD_LIBRARY_PATH`` and ``LD_PRELOAD`` removed), in rounds that alternate the layers so that a
slow phase of the machine hits both alike; every figure is the median over rounds of per-call
medians. Three situations:

* ``alone``: a process without torch; fastact calls back to back.
* ``torch``: torch imported in the same process (after fastact, as the README advises), its
  own call timed alone, then a training-loop pattern: a torch op (``torch.tanh`` on a tensor
  of the same size) and the fastact call alternate, each timed inside the loop.
* ``threads``: 1, 2 and 4 Python threads call ``fastact.sigmoid`` on their own arrays at
  once; time per call = wall time / calls (all threads), results checked.

    python scripts/threading_layers.py [--sizes 1K,64K,256K,16M] [--rounds 3] [-o FILE.md]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time

import numpy as np

SIZES = {"1K": 1 << 10, "64K": 1 << 16, "256K": 1 << 18, "16M": 1 << 24}
LAYERS = ("tbb", "omp")


# ------------------------------------------------------------------------------ worker side
def _median_time(fn, budget: float = 0.25, min_samples: int = 5) -> float:
    """Median seconds per call: warm once, then samples of back-to-back calls."""
    fn()
    t0 = time.perf_counter()
    fn()
    one = max(time.perf_counter() - t0, 1e-7)
    per_sample = max(1, int(1e-4 / one))  # ~0.1 ms samples for tiny calls
    samples = max(min_samples, int(budget / (one * per_sample)))
    out = []
    for _ in range(min(samples, 2000)):
        t0 = time.perf_counter()
        for _ in range(per_sample):
            fn()
        out.append((time.perf_counter() - t0) / per_sample)
    return statistics.median(out)


def _cases(n: int):
    import fastact
    import fastact.losses as L
    from fastact.optim import functional as F

    rng = np.random.default_rng(0)
    x = rng.standard_normal(n).astype(np.float32)
    g = rng.standard_normal(n).astype(np.float32)
    y = fastact.sigmoid(x)
    p = x.copy()
    m, v = np.zeros_like(x), np.zeros_like(x)
    step = [0]

    def adamw():
        step[0] += 1
        F.adamw([p], [g], [m], [v], step=step[0], lr=1e-4)

    return {
        "relu": (lambda: fastact.relu(x)),
        "sigmoid": (lambda: fastact.sigmoid(x)),
        "sigmoid_backward": (lambda: fastact.sigmoid_backward(g, output=y)),
        "gelu": (lambda: fastact.gelu(x)),
        "mse_loss+grad": (lambda: L.mse_loss(x, g, return_grad=True)),
        "adamw_step": adamw,
    }


def _torch_twin(name: str, n: int):
    import torch

    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.standard_normal(n).astype(np.float32))
    g = torch.from_numpy(rng.standard_normal(n).astype(np.float32))
    y = torch.sigmoid(x)
    fused = torch.optim.AdamW([torch.nn.Parameter(x.clone())], lr=1e-4, fused=True)
    fused.param_groups[0]["params"][0].grad = g

    def mse():
        d = x - g
        return (d * d).mean(), d * (2.0 / n)

    return {
        "relu": lambda: torch.relu(x),
        "sigmoid": lambda: torch.sigmoid(x),
        "sigmoid_backward": lambda: torch.ops.aten.sigmoid_backward(g, y),
        "gelu": lambda: torch.nn.functional.gelu(x),
        "mse_loss+grad": mse,
        "adamw_step": fused.step,
    }[name]


def worker(mode: str, sizes: list[str], threads: int) -> dict:
    import numba

    import fastact  # noqa: F401 (first: loads TBB, shortens torch's OpenMP spin)

    numba.set_num_threads(threads)
    res: dict = {"layer": None, "cases": {}}
    if mode == "torch":
        import torch

        torch.set_num_threads(threads)
        for s in sizes:
            n = SIZES[s]
            tx = torch.from_numpy(np.random.default_rng(1).standard_normal(n).astype(np.float32))
            ty = torch.empty_like(tx)

            def torch_op(tx=tx, ty=ty):
                torch.tanh(tx, out=ty)

            res["cases"][f"torch tanh alone|{s}"] = {"torch_peer": _median_time(torch_op)}

            for name, fn in _cases(n).items():
                alone = _median_time(fn)
                peer = _median_time(_torch_twin(name, n))
                t_fa, t_to = [], []
                end = time.perf_counter() + 0.3
                k = 0
                while k < 7 or (time.perf_counter() < end and k < 3000):
                    t0 = time.perf_counter()
                    torch_op()
                    t1 = time.perf_counter()
                    fn()
                    t2 = time.perf_counter()
                    t_to.append(t1 - t0)
                    t_fa.append(t2 - t1)
                    k += 1
                res["cases"][f"{name}|{s}"] = {
                    "fastact_alone": alone,
                    "torch_peer": peer,
                    "fastact_interleaved": statistics.median(t_fa[2:]),
                    "torch_tanh_interleaved": statistics.median(t_to[2:]),
                }
    else:
        for s in sizes:
            for name, fn in _cases(SIZES[s]).items():
                res["cases"][f"{name}|{s}"] = {"fastact_alone": _median_time(fn)}
        for s in [s for s in sizes if s in ("256K", "16M")]:
            n = SIZES[s]
            for k in (1, 2, 4):
                calls = 6 if n > 1 << 20 else 200  # the last result is checked after timing
                xs = [np.linspace(-4, 4, n, dtype=np.float32) + np.float32(i) for i in range(k)]
                want = [fastact.sigmoid(a) for a in xs]
                ok = [True] * k

                def run(i, xs=xs, want=want, ok=ok, calls=calls):
                    y = want[i]
                    for _ in range(calls):
                        y = fastact.sigmoid(xs[i])  # the previous result is freed
                    ok[i] = bool(np.array_equal(y, want[i]))

                ts = [threading.Thread(target=run, args=(i,)) for i in range(k)]
                t0 = time.perf_counter()
                for t in ts:
                    t.start()
                for t in ts:
                    t.join()
                wall = time.perf_counter() - t0
                res["cases"][f"sigmoid x{k} threads|{s}"] = {
                    "per_call": wall / (calls * k),
                    "correct": all(ok),
                }
    res["layer"] = numba.threading_layer()
    return res


# ------------------------------------------------------------------------------ parent side
def _run_worker(layer: str, mode: str, sizes: list[str], threads: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("LD_LIBRARY_PATH", "LD_PRELOAD")}
    env["NUMBA_THREADING_LAYER"] = layer
    cmd = [sys.executable, __file__, "--worker", mode, "--sizes", ",".join(sizes)]
    cmd += ["--threads", str(threads)]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
    if r.returncode:
        raise RuntimeError(f"{layer}/{mode} worker failed:\n{r.stderr[-3000:]}")
    res = json.loads(r.stdout.strip().splitlines()[-1])
    if res["layer"] != layer:
        raise RuntimeError(f"asked for the {layer} layer, numba started {res['layer']}")
    return res


def _fmt(t: float | None) -> str:
    if t is None:
        return ""
    return f"{t * 1e6:.1f}" if t < 1e-2 else f"{t * 1e6:.0f}"


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1K,64K,256K,16M")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("-o", "--output", help="also write the Markdown report here")
    ap.add_argument("--worker", choices=("alone", "torch"), help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    sizes = [s.strip() for s in a.sizes.split(",") if s.strip()]
    if a.worker:
        print(json.dumps(worker(a.worker, sizes, a.threads)))
        return ""
    runs: dict = {(lay, mode): [] for lay in LAYERS for mode in ("alone", "torch")}
    for r in range(a.rounds):
        order = LAYERS if r % 2 == 0 else LAYERS[::-1]
        for mode in ("alone", "torch"):
            for lay in order:
                print(f"round {r + 1}/{a.rounds}: {lay} {mode}", file=sys.stderr, flush=True)
                runs[(lay, mode)].append(_run_worker(lay, mode, sizes, a.threads))

    def med(lay: str, mode: str, case: str, key: str) -> float | None:
        vals = [rr["cases"][case][key] for rr in runs[(lay, mode)] if case in rr["cases"]]
        return statistics.median(vals) if vals else None

    import platform

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    lines = [
        f"Machine: {cpu}, {a.threads} threads for numba and torch; float32; medians over "
        f"{a.rounds} rounds (layers alternating), times in microseconds.",
        "",
        "| case | size | TBB alone | OpenMP alone | TBB, torch in process | OpenMP, torch in "
        "process | torch | TBB interleaved | OpenMP interleaved | torch tanh between (TBB / "
        "OpenMP) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    cases = [c for c in runs[("tbb", "torch")][0]["cases"] if not c.startswith("torch tanh")]
    for c in cases:
        name, size = c.split("|")
        lines.append(
            f"| {name} | {size} | {_fmt(med('tbb', 'alone', c, 'fastact_alone'))} | "
            f"{_fmt(med('omp', 'alone', c, 'fastact_alone'))} | "
            f"{_fmt(med('tbb', 'torch', c, 'fastact_alone'))} | "
            f"{_fmt(med('omp', 'torch', c, 'fastact_alone'))} | "
            f"{_fmt(med('tbb', 'torch', c, 'torch_peer'))} | "
            f"{_fmt(med('tbb', 'torch', c, 'fastact_interleaved'))} | "
            f"{_fmt(med('omp', 'torch', c, 'fastact_interleaved'))} | "
            f"{_fmt(med('tbb', 'torch', c, 'torch_tanh_interleaved'))} / "
            f"{_fmt(med('omp', 'torch', c, 'torch_tanh_interleaved'))} |"
        )
    tanh = [
        f"{c.split('|')[1]}: {_fmt(med('tbb', 'torch', c, 'torch_peer'))} / "
        f"{_fmt(med('omp', 'torch', c, 'torch_peer'))}"
        for c in runs[("tbb", "torch")][0]["cases"]
        if c.startswith("torch tanh")
    ]
    lines += ["", "torch tanh alone (TBB / OpenMP process), us: " + "; ".join(tanh) + "."]
    lines += [
        "",
        "| Python threads calling sigmoid | size | TBB per call | OpenMP per call | "
        "results correct (TBB / OpenMP) |",
        "|---|---|---:|---:|---|",
    ]
    for c in runs[("tbb", "alone")][0]["cases"]:
        if "threads" not in c:
            continue
        name, size = c.split("|")
        ok = [all(rr["cases"][c]["correct"] for rr in runs[(lay, "alone")]) for lay in LAYERS]
        lines.append(
            f"| {name.replace('sigmoid ', '')} | {size} | "
            f"{_fmt(med('tbb', 'alone', c, 'per_call'))} | "
            f"{_fmt(med('omp', 'alone', c, 'per_call'))} | {ok[0]} / {ok[1]} |"
        )
    report = "\n".join(lines) + "\n"
    print(report)
    if a.output:
        with open(a.output, "w") as f:
            f.write(
                "# TBB or OpenMP: measurements behind fastact's default threading layer\n\n"
                "Produced by `python scripts/threading_layers.py"
                + (f" --sizes {a.sizes}" if a.sizes != "1K,64K,256K,16M" else "")
                + (f" --rounds {a.rounds}" if a.rounds != 3 else "")
                + f" -o {a.output}`.\n\n"
                + report
            )
    return report


if __name__ == "__main__":
    main()
