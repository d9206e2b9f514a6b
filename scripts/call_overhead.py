"""Call overhead of the fast paths (1K elements, float32): relu, sigmoid, softmax along the last
axis, and one Adam step over a model-like set of 160 small tensors. Compares source trees
(e.g. two git worktrees) side by side: each tree runs in fresh processes, alternating, and
every figure is the median over rounds of per-call medians.

    python scripts/call_overhead.py --trees /path/to/old /path/to/new [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

WORKER = r"""
import json, statistics, time
import numpy as np
import fastact
import fastact.optim as O

rng = np.random.default_rng(0)
x = rng.standard_normal(1024).astype(np.float32)
x2 = x.reshape(8, 128)
ps = [rng.standard_normal(int(n)).astype(np.float32) for n in rng.integers(16, 400, 160)]
gs = [np.ones_like(p) for p in ps]
opt = O.Adam(ps, lr=1e-4)

def med(fn, number=200, repeat=31):
    fn()
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        out.append((time.perf_counter() - t0) / number)
    return statistics.median(out)

print(json.dumps({
    "relu 1K": med(lambda: fastact.relu(x)),
    "sigmoid 1K": med(lambda: fastact.sigmoid(x)),
    "softmax 8x128": med(lambda: fastact.softmax(x2, -1)),
    "Adam step, 160 tensors": med(lambda: opt.step(gs), number=20),
    "fastact": fastact.__file__,
}))
"""


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trees", nargs="+", required=True)
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args(argv)
    runs: dict[str, list[dict]] = {t: [] for t in a.trees}
    for r in range(a.rounds):
        order = a.trees if r % 2 == 0 else a.trees[::-1]
        for tree in order:
            env = {**os.environ, "PYTHONPATH": os.path.abspath(tree)}
            out = subprocess.run(
                [sys.executable, "-c", WORKER],
                env=env,
                cwd=os.path.abspath(tree),  # python -c puts the working folder first on sys.path
                capture_output=True,
                text=True,
                check=True,
            )
            res = json.loads(out.stdout.strip().splitlines()[-1])
            assert res.pop("fastact").startswith(os.path.abspath(tree)), tree
            runs[tree].append(res)
            time.sleep(0.5)
    cases = list(runs[a.trees[0]][0])
    head = "| case | " + " | ".join(a.trees) + " |"
    print(head)
    print("|---|" + "---:|" * len(a.trees))
    for c in cases:
        cells = [f"{statistics.median(r[c] for r in runs[t]) * 1e6:.2f} us" for t in a.trees]
        print(f"| {c} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
