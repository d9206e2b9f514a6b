"""Kernels of the activations that are not purely element-wise.

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

from fastact import _math as fm
from fastact._jit import jit
from fastact._kernels import pair
from fastact._math import lit

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


def rrelu_train(x, out, noise, lower, span, key, write_noise):
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


def rrelu_train_grad(g, v, out, lower, span, key):
    """``g * slope`` where the slope is recomputed from (key, i); ``v`` is input or output."""
    for i in prange(g.shape[0]):
        a = lower + span * uniform01(key, i, g[i])
        out[i] = g[i] * a if v[i] <= 0 else g[i]


# ----------------------------------------------------------------------------- PReLU
def prelu_forward(x, w, out):
    outer, c_n, inner = x.shape
    if inner == 1:
        for o in prange(outer):
            for c in range(c_n):
                v = x[o, c, 0]
                out[o, c, 0] = v if v > 0 else w[c] * v
    else:
        nb = (inner + BLOCK - 1) // BLOCK
        for t in prange(outer * c_n * nb):
            r = t // nb
            b = t - r * nb
            c = r % c_n
            o = r // c_n
            wc = w[c]
            for s in range(b * BLOCK, min(inner, (b + 1) * BLOCK)):
                v = x[o, c, s]
                out[o, c, s] = v if v > 0 else wc * v


def prelu_backward(g, x, w, gx, partial):
    """gx = g if x > 0 else w*g; partial[task, c] = float64 sum of x*g where x <= 0."""
    outer, c_n, inner = x.shape
    if inner == 1:
        rows = (outer + partial.shape[0] - 1) // partial.shape[0]
        for t in prange(partial.shape[0]):
            for o in range(t * rows, min(outer, (t + 1) * rows)):
                for c in range(c_n):
                    v = x[o, c, 0]
                    gi = g[o, c, 0]
                    pos = v > 0
                    gx[o, c, 0] = gi if pos else w[c] * gi
                    partial[t, c] += 0.0 if pos else np.float64(v) * np.float64(gi)
    else:
        for r in prange(outer * c_n):
            c = r % c_n
            o = r // c_n
            wc = w[c]
            acc = 0.0
            for s in range(inner):
                v = x[o, c, s]
                gi = g[o, c, s]
                pos = v > 0
                gx[o, c, s] = gi if pos else wc * gi
                acc += 0.0 if pos else np.float64(v) * np.float64(gi)
            partial[r, 0] = acc


# ----------------------------------------------------------------------------- GLU
def glu_forward(x, out):
    """x: (outer, 2, m) -> out: (outer, m) = a * sigmoid(b)."""
    outer, _, m = x.shape
    nb = (m + BLOCK - 1) // BLOCK
    for t in prange(outer * nb):
        o = t // nb
        b = t - o * nb
        for s in range(b * BLOCK, min(m, (b + 1) * BLOCK)):
            bv = x[o, 1, s]
            e = fm.exp(-abs(bv))
            r = lit(bv, 1.0) / (lit(bv, 1.0) + e)
            out[o, s] = x[o, 0, s] * (r if bv >= 0 else e * r)


def glu_backward(g, x, gx):
    outer, _, m = x.shape
    nb = (m + BLOCK - 1) // BLOCK
    for t in prange(outer * nb):
        o = t // nb
        b = t - o * nb
        for s in range(b * BLOCK, min(m, (b + 1) * BLOCK)):
            bv = x[o, 1, s]
            e = fm.exp(-abs(bv))
            r = lit(bv, 1.0) / (lit(bv, 1.0) + e)
            sp = r if bv >= 0 else e * r  # sigmoid(b)
            sn = e * r if bv >= 0 else r  # sigmoid(-b)
            gs = g[o, s] * sp
            gx[o, 0, s] = gs
            gx[o, 1, s] = gs * x[o, 0, s] * sn


# ----------------------------------------------------------------------------- Maxout
def maxout_forward(x, out, idx, write_idx):
    """x: (outer, cout, pieces, inner) -> out (outer, cout, inner): max over pieces; the
    first maximum (a NaN counts as the maximum) wins."""
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
            out[o, c, s] = best
            if write_idx:
                idx[o, c, s] = k_best


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


# ----------------------------------------------------------------------------- softmax
def softmax_rows(x, out, log, sign):
    """Softmax (``log``: log-softmax) of ``sign * x`` along axis 1 of (outer, C, inner)."""
    outer, c_n, inner = x.shape
    if inner == 1:
        for o in prange(outer):
            m = sign * x[o, 0, 0]
            for c in range(1, c_n):
                v = sign * x[o, c, 0]
                m = v if v > m else m
            acc = 0.0
            if log:
                # (x - m) is stored before log(sum) is subtracted: in one expression the
                # reassociation flag would fold it into x - (m + log(sum)) and lose precision
                for c in range(c_n):
                    t = sign * x[o, c, 0] - m
                    out[o, c, 0] = t
                    acc += np.float64(fm.exp(t))
                lse = lit(m, np.log(acc))
                for c in range(c_n):
                    out[o, c, 0] -= lse
            else:
                for c in range(c_n):
                    e = fm.exp(sign * x[o, c, 0] - m)
                    out[o, c, 0] = e
                    acc += np.float64(e)
                inv = lit(m, 1.0 / acc)
                for c in range(c_n):
                    out[o, c, 0] *= inv
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


def softmax_rows_backward(g, y, gx, log, sign):
    """From the output y: softmax: sign*y*(g - sum(g*y)); log-softmax: g - exp(y)*sum(g)."""
    outer, c_n, inner = y.shape
    if inner == 1:
        for o in prange(outer):
            acc = 0.0
            if log:
                for c in range(c_n):
                    acc += np.float64(g[o, c, 0])
                a = lit(y[o, 0, 0], acc)
                for c in range(c_n):
                    gx[o, c, 0] = g[o, c, 0] - fm.exp(y[o, c, 0]) * a
            else:
                for c in range(c_n):
                    acc += np.float64(g[o, c, 0]) * np.float64(y[o, c, 0])
                a = lit(y[o, 0, 0], acc)
                for c in range(c_n):
                    gx[o, c, 0] = sign * y[o, c, 0] * (g[o, c, 0] - a)
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


# (serial, parallel) compiled pairs of every loop above
RRELU_TRAIN = pair(rrelu_train)
RRELU_TRAIN_GRAD = pair(rrelu_train_grad)
PRELU_FORWARD = pair(prelu_forward)
PRELU_BACKWARD = pair(prelu_backward)
GLU_FORWARD = pair(glu_forward)
GLU_BACKWARD = pair(glu_backward)
MAXOUT_FORWARD = pair(maxout_forward)
MAXOUT_BACKWARD = pair(maxout_backward)
SOFTMAX = pair(softmax_rows)
SOFTMAX_BACKWARD = pair(softmax_rows_backward)
