"""Prototype (not merged): float32 gelu(tanh)' as e A / (1 + e)^2 with A = t W + E m, no
cancellation (notes/perf_experiments.md, "float32 gelu(tanh)' from t W + E m"). Run from
the repository root: python notes/unmerged/gelu_tanh_grad_tw_proto.py"""

import sys

import numpy as np

sys.path.insert(0, "scripts")
from numba import njit, prange

from fastact._core import math as fm
from fastact._core.jit import EXACT_FASTMATH, jit
from fastact.kernels.activations import _gelu_tanh_arg_wide, _gelu_tanh_grad

R32 = (-0.7524614334106445, 1.1339627903339533e-08)
U32 = (-1.2311549186706543, 4.6338755055330694e-08)
E32 = (0.29195520281791687, 9.0968503840827e-09)
K1 = 1.5957691216057308
K3 = 0.07135481627260025
f = np.float32


@jit(fastmath=EXACT_FASTMATH)
def gt_deriv(x):
    one = f(1.0)
    neg = x < f(0.0)
    xc = f(9.5) if x > f(9.5) else x
    xc = f(-4.5) if xc < f(-4.5) else xc
    uh, ul = _gelu_tanh_arg_wide(xc)
    # y = u - U in two words (TwoSum)
    a_ = uh
    b_ = f(-U32[0])
    yh = a_ + b_
    bb = yh - a_
    ye = (a_ - (yh - bb)) + (b_ - bb)
    yl = ye + (ul - f(U32[1]))
    arg = yh if neg else -uh
    lo = yl if neg else -ul
    r, rl, tt = fm._ln2_reduce_f32(arg)
    q = fm._horner5(fm._EXP_PARTS_F32, r)
    L = rl + lo
    ww = fm._fma(r * r, q, fm._fma(L, r, L))
    vh = r + ww
    vl = (r - vh) + ww
    k = fm._i32(fm._bits(tt) - fm._F_MAGIC_BITS)
    s = fm._f32_from_bits(fm._i32((k + 127) << 23))
    base = s * f(E32[0]) if neg else s
    lo_e = fm._fma(s, f(E32[1]), base * vl) if neg else s * vl
    e = fm._fma(base, vh, base) + lo_e
    m = fm._fma(s, vh, s - one) + s * vl
    th = xc - f(R32[0])
    qq = fm._fma(xc, xc + f(R32[0]), f(R32[0] * R32[0]))
    W = fm._fma(f(3 * K3), qq, f(K1))
    c3 = fm._fma(f(E32[0]), m, f(E32[1]) * m) if neg else f(-E32[0])
    A = fm._fma(th, W, fm._fma(f(-R32[1]), W, c3))
    N = fm._fma(e, A, f(0.0) if neg else one)
    d = one + e
    dl = (one - d) + e
    res = N / fm._fma(d, d, f(2.0) * d * dl)
    return res


@njit(parallel=True, error_model="numpy")
def run_new(g, x, out):
    for i in prange(x.size):
        out[i] = g[i] * gt_deriv(x[i])


@njit(parallel=True, error_model="numpy")
def run_main(g, x, out):
    for i in prange(x.size):
        out[i] = _gelu_tanh_grad(g[i], x[i])


def exact_grads(x):
    """The exact gelu(tanh)' of float32 ``x`` (float64, scripts/ulp_reference.py)."""
    import ulp_reference as R

    ref = R.GRAD["gelu_tanh"]

    @njit
    def refs(x):
        o = np.empty(x.size)
        for i in range(x.size):
            o[i] = ref(np.float64(x[i]))  # float64: a float32 argument compiles float32 code
        return o

    return refs(x)


def ulps(got, exact):
    sp = np.spacing(np.abs(exact).astype(np.float32)).astype(np.float64)
    sp = np.maximum(sp, 2.0**-149)
    return np.abs(got.astype(np.float64) - exact) / sp


def interval_report():
    rng = np.random.default_rng(5)
    for lo_, hi_ in [
        (-4.5, -4),
        (-4, -3.5),
        (-3.5, -3),
        (-3, -2.5),
        (-2.5, -2),
        (-2, -1.5),
        (-1.5, -1),
        (-1, -0.5),
        (-0.5, 0),
    ]:
        x = rng.uniform(lo_, hi_, 1_000_000).astype(np.float32)
        o = np.empty_like(x)
        run_new(np.ones_like(x), x, o)
        ex = exact_grads(x)
        e1 = ulps(o, ex)
        print(f"[{lo_},{hi_}] max {e1.max():.2f} >4 {(e1 > 4).sum()} >3.5 {(e1 > 3.5).sum()}")


if __name__ == "__main__":
    rng = np.random.default_rng(0)
    r0 = np.float32(R32[0])
    near = (r0.view(np.int32) + np.arange(-200000, 200000, dtype=np.int32)).view(np.float32)
    sets = {
        "near r": near,
        "[-4.5,0]": rng.uniform(-4.5, 0, 2_000_000).astype(np.float32),
        "[0,10]": rng.uniform(0, 10, 1_000_000).astype(np.float32),
        "N01": rng.standard_normal(2_000_000).astype(np.float32),
        "small": (rng.standard_normal(500_000) * 10.0 ** rng.uniform(-40, 0, 500_000)).astype(
            np.float32
        ),
    }
    for name, x in sets.items():
        g = np.ones_like(x)
        o = np.empty_like(x)
        o2 = np.empty_like(x)
        run_new(g, x, o)
        run_main(g, x, o2)
        ex = exact_grads(x)
        e1 = ulps(o, ex)
        e2 = ulps(o2, ex)
        i1 = np.argmax(e1)
        print(
            f"{name:10s} new max {e1.max():.3g} at {x[i1]!r} (>4: {(e1 > 4).sum()}), "
            f">3: {(e1 > 3).sum()}   main max {e2.max():.3g} (>4: {(e2 > 4).sum()})"
        )
