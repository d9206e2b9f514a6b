"""Benchmark: the softmax family and GLU, forward and backward, fastact or torch (2 threads).

Each library runs in its own process (so that neither's worker threads disturb the other);
compare two checkouts of fastact by running the script once with each on PYTHONPATH:

    python scripts/bench_softmax_family.py --lib fastact --json new.json
    PYTHONPATH=../old python scripts/bench_softmax_family.py --lib fastact --json old.json
    python scripts/bench_softmax_family.py --lib torch --json torch.json
    python scripts/bench_softmax_family.py --report old.json new.json torch.json

Medians of 15 calls after 3 warm-up calls, in microseconds; shapes (rows x classes, and a
strided (1024, 2, 512) along dim 1), float32 and float64, random N(0, 3^2) logits and N(0, 1)
gradients (``--onehot``: a classifier's gradient, -1/N at one class per row).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

SHAPES = [(256, 1000), (4096, 1024), (64, 32768), (1024, 2, 512)]


def _cases(lib: str, x, g, xg, dim: int) -> dict:
    if lib == "torch":
        import torch
        import torch.nn.functional as F

        torch.set_num_threads(2)
        tx, tg = torch.from_numpy(x), torch.from_numpy(g)
        ty, tly = torch.softmax(tx, dim), torch.log_softmax(tx, dim)
        cases = {
            "softmax": lambda: torch.softmax(tx, dim),
            "log_softmax": lambda: torch.log_softmax(tx, dim),
            "softmax_backward": lambda: torch._softmax_backward_data(tg, ty, dim, tx.dtype),
            "log_softmax_backward": lambda: torch._log_softmax_backward_data(
                tg, tly, dim, tx.dtype
            ),
        }
        if xg is not None:
            txg = torch.from_numpy(xg)
            cases["glu"] = lambda: F.glu(txg, -1)
            cases["glu_backward"] = lambda: torch.ops.aten.glu_backward(tg, txg, -1)
        return cases
    import fastact as fa

    y, ly = fa.softmax(x, dim), fa.log_softmax(x, dim)
    cases = {
        "softmax": lambda: fa.softmax(x, dim),
        "log_softmax": lambda: fa.log_softmax(x, dim),
        "softmax_backward": lambda: fa.softmax_backward(g, dim=dim, output=y),
        "log_softmax_backward": lambda: fa.log_softmax_backward(g, dim=dim, output=ly),
    }
    if xg is not None:
        cases["glu"] = lambda: fa.glu(xg, -1)
        cases["glu_backward"] = lambda: fa.glu_backward(g, xg, -1)
    return cases


def run(lib: str, onehot: bool) -> dict:
    rng = np.random.default_rng(0)
    res = {}
    for dt in (np.float32, np.float64):
        for shp in SHAPES:
            dim = 1 if len(shp) == 3 else -1
            x = (rng.standard_normal(shp) * 3).astype(dt)
            g = rng.standard_normal(shp).astype(dt)
            if onehot and len(shp) == 2:
                g = np.zeros(shp, dt)
                rows = np.arange(shp[0])
                g[rows, rng.integers(0, shp[1], shp[0])] = -1.0 / shp[0]
                g[rows[::2], np.argmax(x, 1)[::2]] = -1.0 / shp[0]
            xg = rng.standard_normal((*shp[:-1], 2 * shp[-1])).astype(dt) if len(shp) == 2 else None
            for name, f in _cases(lib, x, g, xg, dim).items():
                for _ in range(3):
                    f()
                ts = []
                for _ in range(15):
                    t0 = time.perf_counter()
                    f()
                    ts.append(time.perf_counter() - t0)
                key = f"{name} {np.dtype(dt).name} {'x'.join(map(str, shp))}"
                res[key] = float(np.median(ts) * 1e6)
    return res


def report(paths: list[str]) -> None:
    runs = [json.load(open(p)) for p in paths]
    print("| case | " + " | ".join(paths) + " |")
    print("|---|" + "---:|" * len(paths))
    for k in runs[0]:
        print(f"| {k} | " + " | ".join(f"{r.get(k, float('nan')):.0f}" for r in runs) + " |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lib", choices=("fastact", "torch"), default="fastact")
    ap.add_argument("--onehot", action="store_true", help="classifier-like gradients")
    ap.add_argument("--json", help="write the medians here (us)")
    ap.add_argument("--report", nargs="+", help="print a table of these JSON files")
    a = ap.parse_args()
    if a.report:
        report(a.report)
        return
    res = run(a.lib, a.onehot)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)
    json.dump(res, sys.stdout, indent=1)


if __name__ == "__main__":
    main()
