"""Exhaustive ULP sweep of fastact's float32 activations (not a unit test).

For each activation built on a transcendental core, every float32 bit pattern (or every
``step``-th one) goes through fastact's float32 scalar forward (the function every kernel of
that activation inlines) and is compared with an independent float64 reference written here
with the C library (``math.exp``, ``math.erfc`` ...), at torch's default parameters. Errors are
float32 ULPs of the reference (see ``ulp_sweep.py``).

Usage::

    python scripts/ulp_sweep_activations.py                  # all of them, all 2**32 inputs
    python scripts/ulp_sweep_activations.py --step 101       # a quick sampled run
    python scripts/ulp_sweep_activations.py --func gelu,mish --threads 2

A full sweep costs about 2 to 6 CPU minutes per activation. Outputs that are tiny results of
cancellation (tanhshrink near 0) are measured against series references, so the reference is
accurate to well below a float32 ULP everywhere.
"""

from __future__ import annotations

import argparse
import math
import os
import sys

import numba
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ulp_sweep import sweep  # noqa: E402

from fastact.activations import ACTIVATIONS  # noqa: E402

_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946
_SQRT_2_PI = math.sqrt(2.0 / math.pi)


def _references() -> dict:
    """float64 references (C library), torch's default parameters."""
    nj = numba.njit(error_model="numpy")

    @nj
    def sigmoid(x):
        return 1.0 / (1.0 + math.exp(-x))

    @nj
    def tanh(x):
        return math.tanh(x)

    @nj
    def softplus(x):  # beta=1, threshold=20
        return x if x > 20.0 else math.log1p(math.exp(x))

    @nj
    def logsigmoid(x):
        return min(x, 0.0) - math.log1p(math.exp(-abs(x)))

    @nj
    def elu(x):
        return x if x > 0.0 else math.expm1(x)

    @nj
    def selu(x):
        return _SELU_SCALE * (x if x > 0.0 else _SELU_ALPHA * math.expm1(x))

    @nj
    def celu(x):  # alpha=1: max(0, x) + min(0, expm1(x))
        return x if x > 0.0 else math.expm1(x)

    @nj
    def gelu(x):
        return 0.5 * x * math.erfc(-x / math.sqrt(2.0))

    @nj
    def gelu_tanh(x):  # 0.5 x (1 + tanh(z)) = x / (1 + exp(-2z)): no cancellation for x < 0
        return x / (1.0 + math.exp(-2.0 * _SQRT_2_PI * (x + 0.044715 * x * x * x)))

    @nj
    def silu(x):
        return x / (1.0 + math.exp(-x))

    @nj
    def mish(x):
        sp = x if x > 20.0 else math.log1p(math.exp(x))
        return x * math.tanh(sp)

    @nj
    def tanhshrink(x):
        if abs(x) < 1e-2:  # x - tanh(x) = x^3/3 - 2x^5/15 + 17x^7/315 - ...
            x2 = x * x
            return x * x2 * (1.0 / 3.0 - x2 * (2.0 / 15.0 - x2 * (17.0 / 315.0)))
        return x - math.tanh(x)

    return {
        "sigmoid": sigmoid,
        "tanh": tanh,
        "softplus": softplus,
        "logsigmoid": logsigmoid,
        "elu": elu,
        "selu": selu,
        "celu": celu,
        "gelu": gelu,
        "gelu_tanh": gelu_tanh,
        "silu": silu,
        "mish": mish,
        "tanhshrink": tanhshrink,
    }


def float32_forward(name: str):
    """fastact's float32 scalar forward of ``name`` at its default parameters, as x -> y."""
    op = ACTIVATIONS[name]
    fwd = op.scalars["forward"]
    p = op.kernel_params(tuple(v for _, v in op.params), np.dtype(np.float32))
    nj = numba.njit(error_model="numpy")
    if len(p) == 0:
        return nj(lambda x: fwd(x))
    if len(p) == 1:
        a = p[0]
        return nj(lambda x: fwd(x, a))
    if len(p) == 2:
        a, b = p
        return nj(lambda x: fwd(x, a, b))
    raise ValueError(f"{name}: unexpected parameter count {len(p)}")


def main(argv=None) -> int:
    refs = _references()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--func", default=",".join(refs), help="comma-separated activations")
    ap.add_argument("--step", type=int, default=1, help="test every STEP-th bit pattern")
    ap.add_argument("--threads", type=int, default=0, help="numba threads (default: all)")
    args = ap.parse_args(argv)
    if args.threads:
        numba.set_num_threads(args.threads)
    names = [n.strip() for n in args.func.split(",") if n.strip()]
    unknown = [n for n in names if n not in refs]
    if unknown:
        ap.error(f"no reference for {unknown}; choose from {sorted(refs)}")
    print("| activation | max ULP | at x | >0.5 ULP | >1 ULP | >2 ULP | inputs | seconds |")
    print("|---|---|---|---|---|---|---|---|")
    worst = 0.0
    for n in names:
        r = sweep(float32_forward(n), refs[n], step=args.step)
        worst = max(worst, r.max_ulp)
        print(
            f"| {n} | {r.max_ulp:.3f} | {r.x:.9g} | {r.over_half} | {r.over_one} | "
            f"{r.over_two} | {r.count} | {r.seconds:.0f} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
