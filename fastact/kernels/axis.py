"""Loop templates of the activations that are not purely element-wise (compiled by the host
executor, :mod:`fastact.host.axis`).

Arrays are viewed as ``(outer, C, inner)``: ``C`` is the axis the function works along
(softmax's ``dim``, PReLU's channel dim 1, GLU's halved dim, Maxout's grouped dim). Loops run
in parallel over ``outer`` x blocks of ``inner`` and vectorize along ``inner`` (or along ``C``
when ``inner == 1``). Reductions accumulate in float64 in a fixed order, so results do not
depend on the number of threads.

Accuracy of the softmax family and GLU (tests/test_accuracy_axis.py, against exact values of
torch's definitions): forwards and GLU within 4 ULP (x - max is split exactly, so exp does
not inherit its rounding; log-softmax takes log1p of the terms below the maximum); softmax
backwards within 4 ULP plus the bound of their sum (float32: float64 accumulation; float64:
a compensated double-word, so g - sum(g y) does not cancel); log-softmax's backward the same,
with exp(y) in float64 (float32) or as a double-word accurate to about 2**-58 (float64).
GLU also where sigmoid(b) is a subnormal: those gates are recomputed after the vector loop
(:func:`_glu_far`).
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange, types
from numba.extending import overload, register_jitable

from fastact._core import math as fm
from fastact._core.jit import FASTMATH, jit
from fastact._core.math import lit
from fastact.kernels.elementwise import like_dtype

BLOCK = 2048  # elements of ``inner`` handled by one parallel task
#: log-softmax along a last axis: rows per task (at most), so that the rows' log-sum-exps
#: take one vector loop (fastact's log1p) instead of a scalar call per row, and elements per
#: task below which rows are grouped (long rows keep one row per task)
LSE_ROWS = 64
LSE_ELEMENTS = 4096


# ----------------------------------------------------------------------------- counter RNG
@jit(inline="always")
def _mix64(z):
    """splitmix64's finalizer: a bijective avalanche of a 64-bit counter."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def uniform01(key, i, like):
    """U[0, 1) in the float type of the scalar ``like`` for element ``i`` of stream ``key``
    (counter-based: the value depends only on (key, i), never on the thread computing it)."""


@overload(uniform01, inline="always")
def _uniform01(key, i, like):
    if like == types.float32:

        def impl32(key, i, like):
            z = _mix64(np.uint64(key) + np.uint64(i) * np.uint64(0x9E3779B97F4A7C15))
            return np.float32(z >> np.uint64(40)) * np.float32(2.0**-24)

        return impl32
    if like == types.float64:

        def impl64(key, i, like):
            z = _mix64(np.uint64(key) + np.uint64(i) * np.uint64(0x9E3779B97F4A7C15))
            return np.float64(z >> np.uint64(11)) * np.float64(2.0**-53)

        return impl64


def rrelu_train(x, out, noise, lower_f, span_f, key_i, write_noise):
    """``lower_f``, ``span_f``: Python floats exact in x's dtype; ``key_i``: the 64-bit key as
    a signed int (two's complement). NumPy scalar arguments cost ~1 us each per call."""
    lower, span = like_dtype(x, (lower_f, span_f))
    key = np.uint64(key_i)
    for i in prange(x.shape[0]):
        xi = x[i]
        a = lower + span * uniform01(key, i, xi)
        if xi <= 0:
            out[i] = xi * a
        else:
            out[i] = xi
            a = lit(xi, 1.0)
        if write_noise:
            noise[i] = a


def rrelu_train_grad(g, v, out, lower_f, span_f, key_i):
    """``g * slope`` where the slope is recomputed from (key, i); ``v`` is input or output
    (arguments as in :func:`rrelu_train`)."""
    lower, span = like_dtype(g, (lower_f, span_f))
    key = np.uint64(key_i)
    for i in prange(g.shape[0]):
        a = lower + span * uniform01(key, i, g[i])
        out[i] = g[i] * a if v[i] <= 0 else g[i]


# ----------------------------------------------------------------------------- PReLU
# Loops read 1-D C-contiguous rows (``x2[r]``, ``x2[r, lo:hi]``) with the loop index starting
# at 0: numba then emits plain contiguous SIMD loops (3-D indexing with computed bounds ran
# 3-4x slower), and long rows are split into blocks of BLOCK elements for the threads.


def prelu_forward(x, w, out):
    outer, c_n, inner = x.shape
    if inner == 1:
        x2 = x.reshape(outer, c_n)
        o2 = out.reshape(outer, c_n)
        for o in prange(outer):
            xr = x2[o]
            orow = o2[o]
            for c in range(c_n):
                v = xr[c]
                orow[c] = v if v > 0 else w[c] * v
        return
    rows = outer * c_n
    x2 = x.reshape(rows, inner)
    o2 = out.reshape(rows, inner)
    nb = (inner + BLOCK - 1) // BLOCK
    if nb == 1:
        for r in prange(rows):
            wc = w[r % c_n]
            xr = x2[r]
            orow = o2[r]
            for s in range(inner):
                v = xr[s]
                orow[s] = v if v > 0 else wc * v
        return
    for t in prange(rows * nb):
        r = t // nb
        lo = (t - r * nb) * BLOCK
        wc = w[r % c_n]
        xr = x2[r, lo : lo + BLOCK]
        orow = o2[r, lo : lo + BLOCK]
        for s in range(xr.shape[0]):
            v = xr[s]
            orow[s] = v if v > 0 else wc * v


def prelu_backward(g, x, w, gx, partial):
    """gx = g if x > 0 else w*g; partial = float64 sums of x*g where x <= 0: for inner == 1
    partial[task, c] (tasks over rows), else partial[r * nb + block, 0] (nb = blocks of
    BLOCK per row of ``inner``)."""
    outer, c_n, inner = x.shape
    if inner == 1:
        x2 = x.reshape(outer, c_n)
        g2 = g.reshape(outer, c_n)
        gx2 = gx.reshape(outer, c_n)
        per = (outer + partial.shape[0] - 1) // partial.shape[0]
        for t in prange(partial.shape[0]):
            pr = partial[t]
            for o in range(t * per, min(outer, (t + 1) * per)):
                xr = x2[o]
                gr = g2[o]
                gxr = gx2[o]
                for c in range(c_n):
                    v = xr[c]
                    gi = gr[c]
                    pos = v > 0
                    gxr[c] = gi if pos else w[c] * gi
                    pr[c] += 0.0 if pos else np.float64(v) * np.float64(gi)
        return
    rows = outer * c_n
    x2 = x.reshape(rows, inner)
    g2 = g.reshape(rows, inner)
    gx2 = gx.reshape(rows, inner)
    nb = (inner + BLOCK - 1) // BLOCK
    for t in prange(rows * nb):
        r = t // nb
        lo = (t - r * nb) * BLOCK
        wc = w[r % c_n]
        xr = x2[r, lo : lo + BLOCK]
        gr = g2[r, lo : lo + BLOCK]
        gxr = gx2[r, lo : lo + BLOCK]
        acc = 0.0
        for s in range(xr.shape[0]):
            v = xr[s]
            gi = gr[s]
            pos = v > 0
            gxr[s] = gi if pos else wc * gi
            acc += 0.0 if pos else np.float64(v) * np.float64(gi)
        partial[t, 0] = acc


# ----------------------------------------------------------------------------- GLU
@register_jitable(fastmath=False, error_model="numpy", forceinline=True)
def _glu_q_f64(e):
    """sigmoid(b) sigmoid(-b) = e / (1 + e)**2 for e = exp(-|b|) (float64): 1 + e as the
    exact double-word d + dl, so (1 + e)**2 rounds once (no fast-math: dl would fold to 0)."""
    d = 1.0 + e
    dl = e - (d - 1.0)
    return e / fm._fma(d, d, 2.0 * d * dl)


def _glu_gb(g, a, e, r):
    """GLU's gradient for the gate, g a sigmoid(b) sigmoid(-b), from e = exp(-|b|) and
    r = 1 / (1 + e) (jit). float32: in float64, 1 / (1 + e) from r by one Newton step (no
    float64 division; 2**-46), one rounding at the end; float64: :func:`_glu_q_f64`."""


@overload(_glu_gb, inline="always")
def _glu_gb_impl(g, a, e, r):
    if g == types.float32:

        def impl32(g, a, e, r):
            e64 = np.float64(e)
            r64 = np.float64(r)
            r64 = fm._fma(r64, fm._fma(-(1.0 + e64), r64, 1.0), r64)
            return np.float32(np.float64(g) * (np.float64(a) * (e64 * r64 * r64)))

        return impl32
    return lambda g, a, e, r: g * (a * _glu_q_f64(e))


# GLU far in the gate's negative tail: below b = -87.3 (float32) / -708.4 (float64)
# exp(-|b|), and so sigmoid(b), is a subnormal (0 below -104 / -745), rounded to a few bits
# before the products with a and g: off by up to 131 ULP where those are normal numbers or
# larger subnormals, and 0 where a sigmoid(b) could still be a normal number. Such rare
# elements are computed again after the block's vector loop, which only counts them (its
# speed unchanged): float32 in float64, float64 with the exponential scaled (u v exp(b) as
# m_u m_v m_e 2**(e_u + e_v + k), rounded once by the final ldexp). Non-finite a or g keep the
# vector loop's result (torch's: inf * sigmoid(b) is NaN where sigmoid(b) underflows to 0).
_GLU_FAR = {types.float32: -87.0, types.float64: -708.0}


def _glu_far(b):
    """Whether the vector loop's results for gate b are recomputed (jit)."""


@overload(_glu_far, inline="always")
def _glu_far_impl(b):
    far = _GLU_FAR[b]
    return lambda b: b < lit(b, far)


def _glu_times_sigmoid_far(u, v, b):
    """u v sigmoid(b) rounded once, for finite u, v and a far gate b (:func:`_glu_far`);
    sigmoid(b) sigmoid(-b) is sigmoid(b) to float64 precision there (jit)."""


@overload(_glu_times_sigmoid_far, inline="always")
def _glu_times_sigmoid_far_impl(u, v, b):
    if b == types.float32:

        def impl32(u, v, b):
            # exp(b) is a normal float64 down to -708, and every nonzero float32 u v exp(b)
            # (|u v| < 2**256) needs b > -281; u v exact in float64
            e = fm.exp(np.float64(b))
            return np.float32((np.float64(u) * np.float64(v)) * (e / (1.0 + e)))

        return impl32

    def impl64(u, v, b):
        # below -2200 every finite u v exp(b) (|u v| < 2**2048) rounds to 0; the exponent
        # clamped to _ldexp's range, where the result is 0 as well
        mu, eu = math.frexp(u)
        mv, ev = math.frexp(v)
        m, _, k = fm._exp_mk_f64(max(b, -2200.0))
        return fm._ldexp((mu * mv) * m, max(eu + ev + k, -2044))

    return impl64


def glu_forward(x, out):
    """x: (outer, 2, m) -> out: (outer, m) = a * sigmoid(b)."""
    outer, _, m = x.shape
    nb = (m + BLOCK - 1) // BLOCK
    for t in prange(outer * nb):
        o = t // nb
        lo = (t - o * nb) * BLOCK
        ar = x[o, 0, lo : lo + BLOCK]
        br = x[o, 1, lo : lo + BLOCK]
        orow = out[o, lo : lo + BLOCK]
        far = lit(ar[0], 0.0)  # how many gates are far (_glu_far), in the loop's type
        for s in range(ar.shape[0]):
            bv = br[s]
            e = fm.exp(-abs(bv))
            r = lit(bv, 1.0) / (lit(bv, 1.0) + e)
            orow[s] = ar[s] * (r if bv >= 0 else e * r)
            far += lit(bv, 1.0) if _glu_far(bv) else lit(bv, 0.0)
        if far:
            for s in range(ar.shape[0]):
                if _glu_far(br[s]) and math.isfinite(ar[s]):
                    orow[s] = _glu_times_sigmoid_far(ar[s], lit(ar[s], 1.0), br[s])


def glu_backward(g, x, gx):
    outer, _, m = x.shape
    nb = (m + BLOCK - 1) // BLOCK
    for t in prange(outer * nb):
        o = t // nb
        lo = (t - o * nb) * BLOCK
        ar = x[o, 0, lo : lo + BLOCK]
        br = x[o, 1, lo : lo + BLOCK]
        gr = g[o, lo : lo + BLOCK]
        ga = gx[o, 0, lo : lo + BLOCK]
        gb = gx[o, 1, lo : lo + BLOCK]
        far = lit(ar[0], 0.0)  # how many gates are far (_glu_far), in the loop's type
        for s in range(ar.shape[0]):
            bv = br[s]
            e = fm.exp(-abs(bv))
            r = lit(bv, 1.0) / (lit(bv, 1.0) + e)
            ga[s] = gr[s] * (r if bv >= 0 else e * r)  # g sigmoid(b)
            gb[s] = _glu_gb(gr[s], ar[s], e, r)
            far += lit(bv, 1.0) if _glu_far(bv) else lit(bv, 0.0)
        if far:
            for s in range(ar.shape[0]):
                if _glu_far(br[s]) and math.isfinite(ar[s]) and math.isfinite(gr[s]):
                    ga[s] = _glu_times_sigmoid_far(gr[s], lit(gr[s], 1.0), br[s])
                    gb[s] = _glu_times_sigmoid_far(gr[s], ar[s], br[s])


# ----------------------------------------------------------------------------- Maxout
# The first maximum of a group wins; a NaN counts as the maximum (torch's amax propagates it).
def maxout_forward(x, out):
    """x: (outer, cout, pieces, inner) -> out (outer, cout, inner): max over pieces."""
    outer, cout, pieces, inner = x.shape
    for r in prange(outer * cout):
        o = r // cout
        c = r % cout
        for s in range(inner):
            best = x[o, c, 0, s]
            for k in range(1, pieces):
                v = x[o, c, k, s]
                if (v > best or v != v) and best == best:
                    best = v
            out[o, c, s] = best


def maxout_backward(g, x, gx):
    outer, cout, pieces, inner = x.shape
    for r in prange(outer * cout):
        o = r // cout
        c = r % cout
        for s in range(inner):
            best = x[o, c, 0, s]
            k_best = 0
            for k in range(1, pieces):
                v = x[o, c, k, s]
                if (v > best or v != v) and best == best:
                    best = v
                    k_best = k
            for k in range(pieces):
                gx[o, c, k, s] = g[o, c, s] if k == k_best else lit(best, 0.0) * g[o, c, s]


def maxout_rows_forward(x2, o2):
    """Groups along the last axis: x2 (outer, cout * P) -> o2 (outer, cout), P a compile-time
    constant (bound by specialize), so LLVM vectorizes the stride-P loads over the groups
    (with a runtime group size they are scalar: 20x slower)."""
    cout = o2.shape[1]
    for o in prange(x2.shape[0]):
        xr = x2[o]
        orow = o2[o]
        for c in range(cout):
            b = xr[c * P]  # noqa: F821  (P is bound by specialize)
            for k in range(1, P):  # noqa: F821
                v = xr[c * P + k]  # noqa: F821
                b = v if (v > b or v != v) and b == b else b
            orow[c] = b


def maxout_rows_backward(g2, x2, gx2):
    cout = g2.shape[1]
    for o in prange(x2.shape[0]):
        xr = x2[o]
        gr = g2[o]
        gxr = gx2[o]
        for c in range(cout):
            b = xr[c * P]  # noqa: F821
            kb = 0
            for k in range(1, P):  # noqa: F821
                v = xr[c * P + k]  # noqa: F821
                take = (v > b or v != v) and b == b
                b = v if take else b
                kb = k if take else kb
            gc = gr[c]
            for k in range(P):  # noqa: F821
                gxr[c * P + k] = gc if k == kb else lit(b, 0.0) * gc  # noqa: F821


#: group sizes with their own compiled row kernels (others take the generic loops)
MAXOUT_ROW_PIECES = range(2, 9)


# ----------------------------------------------------------------------------- softmax
# Error-free transformations for the softmax family. They are compiled as functions of their
# own with IEEE arithmetic (no fast-math flag: ``reassoc`` would fold (a + b) - a - b to 0)
# and forced inline: LLVM keeps each instruction's flags when it inlines, so the kernels'
# FASTMATH (needed to vectorize their reductions) does not reach them.
_EXACT_OPTS = {"fastmath": False, "error_model": "numpy", "forceinline": True}


@register_jitable(**_EXACT_OPTS)
def _two_sum(a, b):
    """(s, e) with s = fl(a + b) and s + e = a + b exactly (Knuth's TwoSum, 6 operations)."""
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


@register_jitable(**_EXACT_OPTS)
def _shift(v, m):
    """(t, e): t = fl(v - m), t + e = v - m exactly; e = 0 where t is not finite (-inf
    inputs, NaN), so that it never turns a finite result into NaN."""
    t, e = _two_sum(v, -m)
    return t, (e if e == e else lit(e, 0.0))


@register_jitable(**_EXACT_OPTS)
def _sub(a, b):
    """a - b without fast-math flags (LLVM folds (a - m) - lse into a - (m + lse), which
    cancels, when either subtraction carries ``reassoc``)."""
    return a - b


@register_jitable(**_EXACT_OPTS)
def _sub2(a, b, c):
    """(a - b) - c, each subtraction rounded, no fast-math flags (see :func:`_sub`)."""
    return (a - b) - c


@register_jitable(**_EXACT_OPTS)
def _lse_arg(d, cnt):
    """d + (cnt - 1): log(cnt + d) = log1p(d + (cnt - 1)) for d = the sum of exp(x - max)
    below the maximum and cnt the number of maxima (exact; no fast-math flags: a caller's
    ``reassoc`` would turn it into (d + cnt) - 1, which cancels)."""
    return d + (cnt - 1.0)


@register_jitable(**_EXACT_OPTS)
def _extractor(a):
    """sigma = 2**(e+2) for 2**e <= a < 2**(e+1) (a >= 0 float64): a power of two > 2a."""
    b = (fm._bits(a) & 0x7FF0000000000000) + (2 << 52)
    return fm._f64_from_bits(min(b, 0x7FE0000000000000))


@register_jitable(**_EXACT_OPTS)
def _split(p, sigma):
    """p = ph + pl exactly, ph a multiple of ulp(sigma) / 2 (Rump's ExtractScalar; needs
    |p| <= sigma / 2): sums of such ph below sigma are exact in any order."""
    ph = (sigma + p) - sigma
    return ph, p - ph


@register_jitable(**_EXACT_OPTS)
def _two_sum_hi_lo(a, b):
    return _two_sum(a, b)


@register_jitable(fastmath=set(FASTMATH), error_model="numpy", forceinline=True)
def _csum_f64(v, n):
    """sum(v[:n]) (float64) as a double-word (hi, lo) in any summation order (vectorized):
    with sigma a power of two above 2 sum|v|, each v = vh + vl (:func:`_split`); the vh sum
    exactly (multiples of ulp(sigma)/2, partial sums below sigma), the vl (each below
    ulp(sigma) ~ 8 eps sum|v|) with error below 8 (n eps)**2 sum|v|: as accurate as a
    compensated (Sum2) summation, independent of the order, hence of the thread count."""
    a = 0.0
    for j in range(n):
        a += abs(v[j])
    return _csum_below_f64(v, n, a)


@register_jitable(fastmath=set(FASTMATH), error_model="numpy", forceinline=True)
def _csum_below_f64(v, n, a):
    """:func:`_csum_f64` given a >= sum|v[:n]| (the softmax terms: a = n; the error bound
    then scales with a instead of the sum)."""
    sigma = _extractor(a)
    sh = 0.0
    sl = 0.0
    for j in range(n):
        ph, pl = _split(v[j], sigma)
        sh += ph
        sl += pl
    # an infinite term makes its low part inf - inf: the sum is then sh (inf or NaN)
    return _two_sum_hi_lo(sh, sl if sl == sl else 0.0)


@register_jitable(fastmath=set(FASTMATH), error_model="numpy", forceinline=True)
def _cdot_f64(g, y, n):
    """sum(g[:n] * y[:n]) (float64) as a double-word (hi, lo): each product split exactly
    by FMA (TwoProduct) and its rounded part by :func:`_split` (as :func:`_csum_f64`)."""
    a = 0.0
    for j in range(n):
        a += abs(g[j] * y[j])
    sigma = _extractor(a)
    sh = 0.0
    sl = 0.0
    for j in range(n):
        p = g[j] * y[j]
        ph, pl = _split(p, sigma)
        sh += ph
        sl += pl + fm._fma(g[j], y[j], -p)
    return _two_sum_hi_lo(sh, sl if sl == sl else 0.0)  # (see _csum_below_f64)


def _exp2(t, e):
    """exp(t + e) for |e| <= ulp(t)/2 (the low word of x - max): exp(t) (1 + e) with one
    FMA (the next term, e**2/2, is below 2**-50 of the result); jit code."""


@overload(_exp2, inline="always")
def _exp2_impl(t, e):
    def impl(t, e):
        v = fm.exp(t)
        return fm._fma(v, e, v)

    return impl


@register_jitable(fastmath=set(FASTMATH), error_model="numpy", forceinline=True)
def _sum_f32(v, n):
    """sum(v[:n]) of float32 values in float64 (vectorized; order-independent to ~n 2**-53)."""
    acc = 0.0
    for j in range(n):
        acc += np.float64(v[j])
    return acc, 0.0


@register_jitable(fastmath=set(FASTMATH), error_model="numpy", forceinline=True)
def _dot_f32(g, y, n):
    """sum(g[:n] * y[:n]) of float32 values in float64 (each product exact)."""
    acc = 0.0
    for j in range(n):
        acc += np.float64(g[j]) * np.float64(y[j])
    return acc, 0.0


def _row_sum(v, n):
    """sum(v[:n]) as (hi, lo) float64: float64 accumulation of float32 rows, compensated
    (:func:`_csum_f64`) for float64 rows."""


@overload(_row_sum, inline="always")
def _row_sum_impl(v, n):
    if v.dtype == types.float32:
        return lambda v, n: _sum_f32(v, n)
    return lambda v, n: _csum_f64(v, n)


def _row_sum_unit(v, n):
    """:func:`_row_sum` of terms in [0, 1 + 2**-50] whose sum is at least 1 (softmax)."""


@overload(_row_sum_unit, inline="always")
def _row_sum_unit_impl(v, n):
    if v.dtype == types.float32:
        return lambda v, n: _sum_f32(v, n)
    # with a = 2n the low parts' error is below n**3 2**-103 <= 2**-58 of the sum (>= 1)
    # up to n = 2**15; longer rows measure sum|v| first
    return lambda v, n: _csum_below_f64(v, n, 2.0 * n) if n <= 32768 else _csum_f64(v, n)


def _row_dot(g, y, n):
    """sum(g[:n] * y[:n]) as (hi, lo) float64 (as :func:`_row_sum`)."""


@overload(_row_dot, inline="always")
def _row_dot_impl(g, y, n):
    if g.dtype == types.float32:
        return lambda g, y, n: _dot_f32(g, y, n)
    return lambda g, y, n: _cdot_f64(g, y, n)


@register_jitable(**_EXACT_OPTS)
def _sm_grad_f64(g, y, hi, lo, sign):
    # g - s with s = hi + lo: g - hi is exact where they cancel (Sterbenz), and otherwise
    # |g - hi| >= |hi| / 2 >> |lo|; lo is NaN only beside an infinite hi (inf - inf in the
    # error term): dropped, so an infinite sum gives torch's -+inf, not NaN
    lo = lo if lo == lo else 0.0
    return sign * y * ((g - hi) - lo)


@register_jitable(**_EXACT_OPTS)
def _lsm_grad_f64(g, y, hi, lo):
    # exp(y) as a double-word eh + el (fm's double-word exp, scaled by 2**k in two exact
    # factors), times s = hi + lo with the product's low part from FMA: g - exp(y) s loses
    # nothing where g ~ exp(y) s
    ph, pl, k = fm._exp_f64_dw(y, 0.0)
    k1 = k >> 1
    f = fm._f64_from_bits((k1 + 1023) << 52) * fm._f64_from_bits((k - k1 + 1023) << 52)
    eh = ph * f
    el = pl * f
    p = eh * hi
    pe = fm._fma(eh, hi, -p) + (eh * lo + el * hi)
    pe = pe if pe == pe else 0.0  # NaN only beside an infinite p (see _sm_grad_f64)
    return (g - p) - pe


def _sm_grad(g, y, hi, lo, sign):
    """sign * y * (g - s), s = hi + lo (float64) = sum(g * y): float32 with s in two float32
    words, float64 with s's low word (no cancellation error where g ~ s)."""


@register_jitable(**_EXACT_OPTS)
def _split_sum_f32(hi):
    """A float64 sum as two float32 words sh + sl (to 2**-48; sl = 0 where sh is not finite)."""
    sh = np.float32(hi)
    sl = np.float32(hi - np.float64(sh))
    return sh, (sl if sl - sl == sl - sl else np.float32(0.0))


@register_jitable(**_EXACT_OPTS)
def _sm_grad_f32(g, y, hi, sign):
    # g - s in float32 with s in two words: g - sh is exact where they cancel (Sterbenz)
    sh, sl = _split_sum_f32(hi)
    return np.float32(sign) * y * ((g - sh) - sl)


@overload(_sm_grad, inline="always")
def _sm_grad_impl(g, y, hi, lo, sign):
    if g == types.float32:
        return lambda g, y, hi, lo, sign: _sm_grad_f32(g, y, hi, sign)
    return lambda g, y, hi, lo, sign: _sm_grad_f64(g, y, hi, lo, sign)


#: 1/k! for k = 11..2 (Taylor coefficients of exp, highest first)
_EXP_TAYLOR = tuple(1.0 / float(np.prod(np.arange(1, k + 1))) for k in range(11, 1, -1))


@register_jitable(fastmath={"contract"}, error_model="numpy", forceinline=True)
def _exp_of_f32(y):
    """exp(y) in float64 for a float32 y, to 2**-46.7 relative (measured; Taylor to degree
    11 on |r| <= ln2/2, 2**n from bits, normal for the clamped range): enough for
    log-softmax's g - exp(y) sum(g) in float32, and lighter than the full float64 core. Above
    float32's exp overflow (88.72) it returns inf, as float32 arithmetic would; below -700
    it returns exp(-700) (invisible next to any float32 term)."""
    x = np.float64(y)
    xc = -700.0 if x < -700.0 else x
    xc = 700.0 if xc > 700.0 else xc
    t = xc * fm._D_INVLN2 + fm._D_MAGIC
    n = t - fm._D_MAGIC
    r = (xc - n * fm._D_LN2HI) - n * fm._D_LN2LO
    c = _EXP_TAYLOR
    q = c[0]
    q = q * r + c[1]
    q = q * r + c[2]
    q = q * r + c[3]
    q = q * r + c[4]
    q = q * r + c[5]
    q = q * r + c[6]
    q = q * r + c[7]
    q = q * r + c[8]
    q = q * r + c[9]
    p = 1.0 + (r + r * r * q)
    e = p * fm._f64_from_bits((fm._bits(t) - fm._D_MAGIC_BITS + 1023) << 52)
    return np.inf if x > 88.72283935546875 else e


def _lsm_grad(g, y, hi, lo):
    """g - exp(y) * s, s = hi + lo (float64) = sum(g), accurate also where g cancels
    exp(y) s: float32 in float64 arithmetic (float64 exp), float64 with a double-word exp(y)
    and s's low word. The loops use it only for blocks that need it (:func:`_lsm_block`)."""


@overload(_lsm_grad, inline="always")
def _lsm_grad_impl(g, y, hi, lo):
    if g == types.float32:
        return lambda g, y, hi, lo: np.float32(np.float64(g) - _exp_of_f32(y) * hi)
    return lambda g, y, hi, lo: _lsm_grad_f64(g, y, hi, lo)


def _at(h, i):
    """h[i] for an array, h for a scalar (jit code only)."""


@overload(_at, inline="always")
def _at_impl(h, i):
    if isinstance(h, types.Array):
        return lambda h, i: h[i]
    return lambda h, i: h


#: elements per block of the log-softmax backward's accurate pass (:func:`_lsm_block`)
LSM_BLOCK = 64


@register_jitable(fastmath=set(FASTMATH) - {"reassoc"}, error_model="numpy", forceinline=True)
def _lsm_block(gb, yb, ob, hi, lo):
    """ob = g - exp(y) s over 1-d views (hi, lo: the sum's words, scalars or per element).

    Per block of LSM_BLOCK elements a vector pass stores the plain form fma(-exp(y), s, g)
    (s = hi + lo rounded to the dtype) and notes whether any element cancels (|r| < |g - r|:
    exp(y) s at least |r|); only such blocks are recomputed with :func:`_lsm_grad`. Where it
    does not cancel the plain form is within 1.5 ULP of exp(y) s plus the final rounding:
    within 4 ULP of the result. A row of a trained classifier has one such element (the confident
    class)."""
    n = ob.shape[0]
    for b0 in range(0, n, LSM_BLOCK):
        b1 = min(b0 + LSM_BLOCK, n)
        g1 = gb[b0:b1]
        y1 = yb[b0:b1]
        o1 = ob[b0:b1]
        hits = False
        for c in range(o1.shape[0]):
            v = g1[c]
            sh = _at(hi, b0 + c)
            sv = sh + _at(lo, b0 + c)
            sv = sv if sv == sv else sh  # lo is NaN only beside an infinite hi
            r = fm._fma(-fm.exp(y1[c]), lit(v, sv), v)
            o1[c] = r
            hits |= abs(r) < abs(v - r)
        if hits:
            for c in range(o1.shape[0]):
                o1[c] = _lsm_grad(g1[c], y1[c], _at(hi, b0 + c), _at(lo, b0 + c))


@register_jitable(**_EXACT_OPTS)
def _acc_f64(ah, al, i, v):
    h, e = _two_sum(ah[i], v)
    ah[i] = h
    al[i] += e


@register_jitable(**_EXACT_OPTS)
def _acc_dot_f64(ah, al, i, g, y):
    p = g * y
    h, e = _two_sum(ah[i], p)
    ah[i] = h
    al[i] += e + fm._fma(g, y, -p)


def _acc(ah, al, i, v):
    """(ah[i], al[i]) += v: float64 accumulation of a float32 v, compensated for float64."""


@overload(_acc, inline="always")
def _acc_impl(ah, al, i, v):
    if v == types.float32:

        def impl32(ah, al, i, v):
            ah[i] += np.float64(v)

        return impl32
    return lambda ah, al, i, v: _acc_f64(ah, al, i, v)


def _acc_dot(ah, al, i, g, y):
    """(ah[i], al[i]) += g * y (float32: exact product in float64; float64: TwoProduct)."""


@overload(_acc_dot, inline="always")
def _acc_dot_impl(ah, al, i, g, y):
    if g == types.float32:

        def impl32(ah, al, i, g, y):
            ah[i] += np.float64(g) * np.float64(y)

        return impl32
    return lambda ah, al, i, g, y: _acc_dot_f64(ah, al, i, g, y)


def _row_max(xr, sign):
    """max(sign * xr) for jitted code (a NaN with the sign bit clear is the maximum)."""


@overload(_row_max, inline="always")
def _row_max_impl(xr, sign):
    # LLVM does not vectorize a floating-point max reduction without the function-level
    # "no NaNs" attribute (1.7 ns per element here), but it does vectorize an integer one:
    # the bit pattern k = i ^ ((i >> (w-1)) & 0x7F..F) of a float orders like the float
    # (negative values flipped), so max over k, mapped back, is the float max (0.06 ns).
    if xr.dtype == types.float32:

        def impl32(xr, sign):
            mask = np.int32(0x7FFFFFFF)
            sh = np.int32(31)
            best = np.int32(-(2**31))
            for c in range(xr.shape[0]):
                i = fm._bits(sign * xr[c])
                k = fm._i32(i ^ fm._i32((i >> sh) & mask))
                best = k if k > best else best
            return fm._f32_from_bits(fm._i32(best ^ fm._i32((best >> sh) & mask)))

        return impl32
    if xr.dtype == types.float64:

        def impl64(xr, sign):
            mask = np.int64(0x7FFFFFFFFFFFFFFF)
            sh = np.int64(63)
            best = np.int64(-(2**63))
            for c in range(xr.shape[0]):
                i = fm._bits(sign * xr[c])
                k = i ^ ((i >> sh) & mask)
                best = k if k > best else best
            return fm._f64_from_bits(best ^ ((best >> sh) & mask))

        return impl64


@register_jitable(fastmath=set(FASTMATH), error_model="numpy", forceinline=True)
def _lse_row(xr, orow, sign):
    """(m, a) of one row of ``sign * xr``: its maximum m and the argument a of
    lse - m = log1p(a), a = the sum of exp(x - m) below the maximum + (ties - 1) (the
    maximum's exp(0) = 1 counted apart: no 1 + sum rounding); the terms are left in
    ``orow``. The ties are counted in float64 for float32 rows too, as the inner > 1 path
    does: a float32 count stops at 2**24 per SIMD lane (wrong for rows of more than 2**28
    tied maxima at FASTACT_VECTOR_WIDTH=128) and the lanes' total rounds past 2**24."""
    c_n = xr.shape[0]
    m = _row_max(xr, sign)
    cnt = np.float64(0.0)
    for c in range(c_n):
        cnt += 1.0 if sign * xr[c] == m else 0.0
    for c in range(c_n):
        th, tl = _shift(sign * xr[c], m)
        v = _exp2(th, tl)
        orow[c] = lit(m, 0.0) if th == 0 else v
    hi, lo = _row_sum(orow, c_n)
    return m, _lse_arg(hi, cnt)


def softmax_rows(x, out, log, sign_f):
    """Softmax (``log``: log-softmax) of ``sign * x`` along axis 1 of (outer, C, inner);
    ``sign_f`` is +-1.0 as a Python float (a NumPy scalar argument costs ~1 us per call).

    softmax: exp(t) / sum(exp(t)) with t = x - max split exactly into t_hi + t_lo (rounding
    t would cost |t|/2 ULP) and exp(t_hi + t_lo) rounded once; log-softmax: t - lse with
    lse = log1p(sum of the terms below the maximum + (ties - 1)), so a result near 0 (one
    dominant logit) keeps its relative precision. Sums: float64 for float32 rows, compensated
    (double-word) for float64 rows."""
    sign = like_dtype(x, (sign_f,))[0]
    outer, c_n, inner = x.shape
    if inner == 1 and log:
        # log-softmax in blocks of rows: per row the maximum, the terms below it (the
        # maximum's exp(0) = 1 counted apart) and their sum, then lse = log1p(sum + ties - 1)
        # (no 1 + sum rounding) for the whole block in one vector loop, then x - m - lse
        x2 = x.reshape(outer, c_n)
        o2 = out.reshape(outer, c_n)
        rb = min(LSE_ROWS, max(1, LSE_ELEMENTS // max(c_n, 1)))
        for bi in prange((outer + rb - 1) // rb):
            r0 = bi * rb
            nr = min(rb, outer - r0)
            ms = np.empty(rb, x.dtype)
            ls = np.empty(rb, np.float64)
            for k in range(nr):
                ms[k], ls[k] = _lse_row(x2[r0 + k], o2[r0 + k], sign)
            for k in range(nr):
                ls[k] = fm.log1p(ls[k])
            for k in range(nr):
                xr = x2[r0 + k]
                orow = o2[r0 + k]
                m = ms[k]
                lse = lit(m, ls[k])
                # t recomputed; without fast-math flags (_sub2): reassociated, x - m - lse
                # would become x - (m + lse), which cancels
                for c in range(c_n):
                    orow[c] = _sub2(sign * xr[c], m, lse)
    elif inner == 1:
        x2 = x.reshape(outer, c_n)
        o2 = out.reshape(outer, c_n)
        for o in prange(outer):
            xr = x2[o]
            orow = o2[o]
            m = _row_max(xr, sign)
            # exp in a loop of its own (float32 SIMD), the float64 sum in another: fused, the
            # float64 accumulator halved the exp loop's speed. Each kernel sums in a fixed
            # way (float64 for float32 rows, compensated for float64 rows): the result does
            # not depend on the thread count.
            for c in range(c_n):
                th, tl = _shift(sign * xr[c], m)
                orow[c] = _exp2(th, tl)
            hi, lo = _row_sum_unit(orow, c_n)
            inv = lit(m, 1.0 / hi)
            for c in range(c_n):
                orow[c] *= inv
    else:
        nb = (inner + BLOCK - 1) // BLOCK
        for t in prange(outer * nb):
            o = t // nb
            b = t - o * nb
            lo = b * BLOCK
            w = min(inner, lo + BLOCK) - lo
            # 1-d views indexed from 0 (with range(lo, hi) numba cannot prove the index >= 0
            # and its wraparound select turns the vector loads and stores into gathers)
            m = np.empty(w, x.dtype)
            ah = np.zeros(w, np.float64)
            al = np.zeros(w, np.float64)
            cnt = np.zeros(w, np.float64)
            xv = x[o, 0, lo : lo + w]
            for s in range(w):
                m[s] = sign * xv[s]
            for c in range(1, c_n):
                xv = x[o, c, lo : lo + w]
                for s in range(w):
                    v = sign * xv[s]
                    m[s] = v if v > m[s] else m[s]
            for c in range(c_n):
                xv = x[o, c, lo : lo + w]
                ov = out[o, c, lo : lo + w]
                for s in range(w):
                    th, tl = _shift(sign * xv[s], m[s])
                    e = _exp2(th, tl)
                    if log:
                        z = th == 0
                        ov[s] = th
                        cnt[s] += 1.0 if z else 0.0
                        _acc(ah, al, s, lit(e, 0.0) if z else e)
                    else:
                        ov[s] = e
                        _acc(ah, al, s, e)
            scale = np.empty(w, x.dtype)
            for s in range(w):
                d = ah[s] + al[s]  # the compensated sum rounded (al = 0 for float32 data)
                if log:  # fastact's log1p: a vector loop (libm's is a call per element)
                    scale[s] = lit(m[0], fm.log1p(_lse_arg(d, cnt[s])))
                else:
                    scale[s] = lit(m[0], 1.0 / d)
            for c in range(c_n):
                ov = out[o, c, lo : lo + w]
                for s in range(w):
                    if log:
                        ov[s] = _sub(ov[s], scale[s])
                    else:
                        ov[s] *= scale[s]


def softmax_rows_backward(g, y, gx, log, sign_f):
    """From the output y: softmax: sign*y*(g - sum(g*y)); log-softmax: g - exp(y)*sum(g).

    float32: the sum and the element's formula in float64 (one rounding at the end);
    float64: the sum compensated (Dot2 / Sum2) and kept as a double-word, so g - s does not
    cancel where g ~ s, and log-softmax's exp(y) * s as a double-word product."""
    sign = like_dtype(y, (sign_f,))[0]
    outer, c_n, inner = y.shape
    if inner == 1:
        g2 = g.reshape(outer, c_n)
        y2 = y.reshape(outer, c_n)
        gx2 = gx.reshape(outer, c_n)
        for o in prange(outer):
            gr = g2[o]
            yr = y2[o]
            gxr = gx2[o]
            if log:
                shi, slo = _row_sum(gr, c_n)
                _lsm_block(gr, yr, gxr, shi, slo)
            else:
                shi, slo = _row_dot(gr, yr, c_n)
                for c in range(c_n):
                    gxr[c] = _sm_grad(gr[c], yr[c], shi, slo, sign)
    else:
        nb = (inner + BLOCK - 1) // BLOCK
        for t in prange(outer * nb):
            o = t // nb
            b = t - o * nb
            lo = b * BLOCK
            w = min(inner, lo + BLOCK) - lo
            ah = np.zeros(w, np.float64)
            al = np.zeros(w, np.float64)
            for c in range(c_n):  # views indexed from 0, as in softmax_rows
                gv = g[o, c, lo : lo + w]
                yv = y[o, c, lo : lo + w]
                for s in range(w):
                    if log:
                        _acc(ah, al, s, gv[s])
                    else:
                        _acc_dot(ah, al, s, gv[s], yv[s])
            for c in range(c_n):
                gv = g[o, c, lo : lo + w]
                yv = y[o, c, lo : lo + w]
                ov = gx[o, c, lo : lo + w]
                if log:
                    _lsm_block(gv, yv, ov, ah, al)
                else:
                    for s in range(w):
                        ov[s] = _sm_grad(gv[s], yv[s], ah[s], al[s], sign)
