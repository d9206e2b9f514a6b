"""Loop templates of the activations that are not purely element-wise (compiled by the host
executor, :mod:`fastact.host.axis`).

Arrays are viewed as ``(outer, C, inner)``: ``C`` is the axis the function works along
(softmax's ``dim``, PReLU's channel dim 1, GLU's halved dim, Maxout's grouped dim). Loops run
in parallel over ``outer`` x blocks of ``inner`` and vectorize along ``inner`` (or along ``C``
when ``inner == 1``). Reductions accumulate in float64 in a fixed order, so results do not
depend on the number of threads.
"""

from __future__ import annotations

import numpy as np
from numba import prange, types
from numba.extending import overload

from fastact._core import math as fm
from fastact._core.jit import jit
from fastact._core.math import lit
from fastact.kernels.elementwise import like_dtype

BLOCK = 2048  # elements of ``inner`` handled by one parallel task


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
        for s in range(ar.shape[0]):
            bv = br[s]
            e = fm.exp(-abs(bv))
            r = lit(bv, 1.0) / (lit(bv, 1.0) + e)
            orow[s] = ar[s] * (r if bv >= 0 else e * r)


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
        for s in range(ar.shape[0]):
            bv = br[s]
            e = fm.exp(-abs(bv))
            r = lit(bv, 1.0) / (lit(bv, 1.0) + e)
            sp = r if bv >= 0 else e * r  # sigmoid(b)
            sn = e * r if bv >= 0 else r  # sigmoid(-b)
            gs = gr[s] * sp
            ga[s] = gs
            gb[s] = gs * ar[s] * sn


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


def softmax_rows(x, out, log, sign_f):
    """Softmax (``log``: log-softmax) of ``sign * x`` along axis 1 of (outer, C, inner);
    ``sign_f`` is +-1.0 as a Python float (a NumPy scalar argument costs ~1 us per call)."""
    sign = like_dtype(x, (sign_f,))[0]
    outer, c_n, inner = x.shape
    if inner == 1:
        x2 = x.reshape(outer, c_n)
        o2 = out.reshape(outer, c_n)
        for o in prange(outer):
            xr = x2[o]
            orow = o2[o]
            m = _row_max(xr, sign)
            acc = 0.0
            # exp in a loop of its own (float32 SIMD), then the float64 sum in another: fused,
            # the float64 accumulator halved the exp loop's speed. Summed in float64, the
            # order (which differs between the serial and the parallel kernel's SIMD code)
            # does not change the result: thread-count independent.
            if log:
                # (x - m) is stored before log(sum) is subtracted: in one expression the
                # reassociation flag would fold it into x - (m + log(sum)), less precise
                for c in range(c_n):
                    orow[c] = sign * xr[c] - m
                if c_n >= 64:  # exp into scratch, then the sum (as below)
                    tmp = np.empty(c_n, orow.dtype)
                    for c in range(c_n):
                        tmp[c] = fm.exp(orow[c])
                    for c in range(c_n):
                        acc += np.float64(tmp[c])
                else:
                    for c in range(c_n):
                        acc += np.float64(fm.exp(orow[c]))
            else:
                for c in range(c_n):
                    orow[c] = fm.exp(sign * xr[c] - m)
                for c in range(c_n):
                    acc += np.float64(orow[c])
            if log:
                lse = lit(m, np.log(acc))
                for c in range(c_n):
                    orow[c] -= lse
            else:
                inv = lit(m, 1.0 / acc)
                for c in range(c_n):
                    orow[c] *= inv
    else:
        nb = (inner + BLOCK - 1) // BLOCK
        for t in prange(outer * nb):
            o = t // nb
            b = t - o * nb
            lo = b * BLOCK
            hi = min(inner, lo + BLOCK)
            m = np.empty(hi - lo, x.dtype)
            acc = np.zeros(hi - lo, np.float64)
            for s in range(lo, hi):
                m[s - lo] = sign * x[o, 0, s]
            for c in range(1, c_n):
                for s in range(lo, hi):
                    v = sign * x[o, c, s]
                    m[s - lo] = v if v > m[s - lo] else m[s - lo]
            for c in range(c_n):
                for s in range(lo, hi):
                    t = sign * x[o, c, s] - m[s - lo]
                    e = fm.exp(t)
                    out[o, c, s] = t if log else e
                    acc[s - lo] += np.float64(e)
            scale = np.empty(hi - lo, x.dtype)
            for s in range(lo, hi):
                if log:
                    scale[s - lo] = lit(m[0], np.log(acc[s - lo]))
                else:
                    scale[s - lo] = lit(m[0], 1.0 / acc[s - lo])
            for c in range(c_n):
                for s in range(lo, hi):
                    if log:
                        out[o, c, s] -= scale[s - lo]
                    else:
                        out[o, c, s] *= scale[s - lo]


def softmax_rows_backward(g, y, gx, log, sign_f):
    """From the output y: softmax: sign*y*(g - sum(g*y)); log-softmax: g - exp(y)*sum(g)."""
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
            acc = 0.0
            if log:
                for c in range(c_n):
                    acc += np.float64(gr[c])
            else:
                for c in range(c_n):
                    acc += np.float64(gr[c]) * np.float64(yr[c])
            a = lit(yr[0], acc)
            if log:
                for c in range(c_n):
                    gxr[c] = gr[c] - fm.exp(yr[c]) * a
            else:
                for c in range(c_n):
                    gxr[c] = sign * yr[c] * (gr[c] - a)
    else:
        nb = (inner + BLOCK - 1) // BLOCK
        for t in prange(outer * nb):
            o = t // nb
            b = t - o * nb
            lo = b * BLOCK
            hi = min(inner, lo + BLOCK)
            acc = np.zeros(hi - lo, np.float64)
            for c in range(c_n):
                for s in range(lo, hi):
                    if log:
                        acc[s - lo] += np.float64(g[o, c, s])
                    else:
                        acc[s - lo] += np.float64(g[o, c, s]) * np.float64(y[o, c, s])
            for c in range(c_n):
                for s in range(lo, hi):
                    a = lit(y[o, c, s], acc[s - lo])
                    if log:
                        gx[o, c, s] = g[o, c, s] - fm.exp(y[o, c, s]) * a
                    else:
                        gx[o, c, s] = sign * y[o, c, s] * (g[o, c, s] - a)
