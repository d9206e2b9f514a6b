"""Exhaustive ULP sweep of float32 scalar functions (not a unit test).

Every float32 bit pattern (or every ``step``-th one) is fed to a float32 function compiled with
numba, and the result is compared with a float64 reference evaluated at the same point. The
error is measured in float32 ULPs of the reference: ``|y - ref| / ulp32(ref)`` with
``ulp32(r) = 2**(max(floor(log2|r|), -126) - 23)``. A nan where the reference is not nan (or
the reverse), or an infinity that the reference rounded to float32 does not give, counts as an
infinite error.

Usage::

    python scripts/ulp_sweep.py                     # all fastact._core.math cores, all 2**32 inputs
    python scripts/ulp_sweep.py --func exp,erfc     # a subset of the cores
    python scripts/ulp_sweep.py --step 257          # every 257th bit pattern (quick run)
    python scripts/ulp_sweep.py --start 0x3f800000 --stop 0x40000000   # a range of patterns
    python scripts/ulp_sweep.py --ref f64 --threads 2   # fastact's float64 cores as reference

A full sweep with ``--ref f64`` costs about 1 to 5 CPU minutes per core (erfc is the slowest);
with the C library as reference (the default) about 3 to 6 times more.

Reusable from other scripts (e.g. for activations)::

    from ulp_sweep import sweep
    res = sweep(my_f32_njit_scalar, my_f64_njit_reference, step=1)
    print(res)

Both functions must be numba-jitted scalar functions (``@numba.njit`` or fastact's ``jit``):
the first takes and returns float32, the second takes and returns float64. By default the
reference for the ``fastact._core.math`` cores is the C library in float64 (``math.exp`` & co.), an
implementation independent of fastact.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from dataclasses import dataclass

import numba
import numpy as np

_CHUNK = 1 << 16  # bit patterns per parallel task


@dataclass
class SweepResult:
    """Summary of a sweep: worst error and where it happens, plus error counts."""

    max_ulp: float
    x: float  # float32 input of the worst error
    y: float  # float32 result there
    ref: float  # float64 reference there
    count: int  # inputs tested
    over_half: int  # inputs with error > 0.5 ULP (not correctly rounded)
    over_one: int  # inputs with error > 1 ULP
    over_two: int  # inputs with error > 2 ULP
    seconds: float

    def __str__(self) -> str:
        bits = int(np.float32(self.x).view(np.uint32))
        return (
            f"max {self.max_ulp:.4g} ULP at x={self.x!r} ({bits:#010x})"
            f" y={self.y!r} ref={self.ref!r}; {self.count} inputs, >0.5: {self.over_half},"
            f" >1: {self.over_one}, >2: {self.over_two} ({self.seconds:.1f} s)"
        )


@numba.njit(inline="always")
def _f32_from_bits(b):
    return np.uint32(b).view(np.float32)


@numba.njit(inline="always")
def ulp_error(y, ref):
    """Error of float32 ``y`` against float64 ``ref`` in float32 ULPs (inf on a mismatch)."""
    yd = np.float64(y)
    if ref != ref:
        return 0.0 if y != y else np.inf
    if y != y:
        return np.inf
    r32 = np.float32(ref)
    if np.isinf(r32) or np.isinf(y):
        return 0.0 if np.float32(y) == r32 else np.inf
    ex = ((np.int64(np.float64(ref).view(np.int64)) >> 52) & 0x7FF) - 1023
    ex = max(ex, -126)
    ulp = math.ldexp(1.0, ex - 23)
    return abs(yd - ref) / ulp


_KERNELS: dict = {}


def _kernel(f32_func, ref_func):
    key = (f32_func, ref_func)
    k = _KERNELS.get(key)
    if k is not None:
        return k

    @numba.njit(parallel=True, error_model="numpy")
    def k(start, count, step, nchunk, out_max, out_idx, out_counts):
        for c in numba.prange(nchunk):
            lo = c * _CHUNK
            n = min(lo + _CHUNK, count) - lo
            y = np.empty(n, np.float32)
            r = np.empty(n)
            # evaluation first, in a loop of its own (SIMD when both functions inline)
            for i in range(n):
                x = _f32_from_bits(start + (lo + i) * step)
                y[i] = f32_func(x)
                r[i] = ref_func(np.float64(x))
            best = -1.0
            besti = np.int64(0)
            n05 = 0
            n1 = 0
            n2 = 0
            for i in range(n):
                e = ulp_error(y[i], r[i])
                if e > best:
                    best = e
                    besti = start + (lo + i) * step
                if e > 0.5:
                    n05 += 1
                    if e > 1.0:
                        n1 += 1
                        if e > 2.0:
                            n2 += 1
            out_max[c] = best
            out_idx[c] = besti
            out_counts[c, 0] = n05
            out_counts[c, 1] = n1
            out_counts[c, 2] = n2

    _KERNELS[key] = k
    return k


def sweep(f32_func, f64_reference_func, step: int = 1, start: int = 0, stop: int = 1 << 32):
    """Max ULP error of ``f32_func`` over float32 bit patterns ``start, start+step, ... < stop``.

    ``f32_func``: numba-jitted float32 -> float32 scalar function; ``f64_reference_func``:
    numba-jitted float64 -> float64 reference. Runs in parallel (numba threads).
    """
    if step < 1 or not 0 <= start < stop <= 1 << 32:
        raise ValueError("need step >= 1 and 0 <= start < stop <= 2**32")
    count = (stop - start + step - 1) // step
    nchunk = (count + _CHUNK - 1) // _CHUNK
    out_max = np.empty(nchunk)
    out_idx = np.empty(nchunk, np.int64)
    out_counts = np.empty((nchunk, 3), np.int64)
    k = _kernel(f32_func, f64_reference_func)
    k(start, 0, step, 0, out_max[:0], out_idx[:0], out_counts[:0])  # compile before timing
    t0 = time.perf_counter()
    k(start, count, step, nchunk, out_max, out_idx, out_counts)
    dt = time.perf_counter() - t0
    j = int(np.argmax(out_max))
    x = np.uint32(out_idx[j]).view(np.float32)
    y = f32_func(x)
    ref = f64_reference_func(np.float64(x))
    tot = out_counts.sum(axis=0)
    return SweepResult(float(out_max[j]), float(x), float(y), float(ref), count, *map(int, tot), dt)


def _references():
    """float64 C-library references for fastact's cores."""

    @numba.njit
    def r_exp(x):
        return math.exp(x)

    @numba.njit
    def r_expm1(x):
        return math.expm1(x)

    @numba.njit
    def r_log(x):
        if x < 0.0:
            return np.nan
        if x == 0.0:
            return -np.inf
        return math.log(x)

    @numba.njit
    def r_log1p(x):
        if x < -1.0:
            return np.nan
        if x == -1.0:
            return -np.inf
        return math.log1p(x)

    @numba.njit
    def r_tanh(x):
        return math.tanh(x)

    @numba.njit
    def r_erf(x):
        return math.erf(x)

    @numba.njit
    def r_erfc(x):
        return math.erfc(x)

    return {
        "exp": r_exp,
        "expm1": r_expm1,
        "log": r_log,
        "log1p": r_log1p,
        "tanh": r_tanh,
        "erf": r_erf,
        "erfc": r_erfc,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--func",
        default="exp,expm1,log,log1p,tanh,erf,erfc",
        help="comma-separated fastact._core.math cores (default: all)",
    )
    p.add_argument("--step", type=int, default=1, help="test every STEP-th bit pattern")
    p.add_argument("--start", type=lambda s: int(s, 0), default=0, help="first bit pattern")
    p.add_argument(
        "--stop",
        type=lambda s: int(s, 0),
        default=1 << 32,
        help="end of the bit-pattern range (exclusive)",
    )
    p.add_argument("--threads", type=int, default=0, help="numba threads (default: all)")
    p.add_argument(
        "--ref",
        choices=("libm", "f64"),
        default="libm",
        help="float64 reference: the C library (default, independent) or fastact's own "
        "float64 cores (a few times faster: they vectorize; accurate to ~1 float64 ULP)",
    )
    args = p.parse_args(argv)
    if args.threads:
        numba.set_num_threads(args.threads)
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    import fastact._core.math as fm

    refs = _references()
    for name in args.func.split(","):
        name = name.strip()
        if name not in refs:
            p.error(f"--func: unknown core {name!r} (choose from {', '.join(refs)})")
        ref = refs[name] if args.ref == "libm" else getattr(fm, name + "_f64")
        res = sweep(getattr(fm, name + "_f32"), ref, args.step, args.start, args.stop)
        print(f"{name:6s} {res}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
