"""CUDA kernels of the activations that are not purely element-wise.

Same views as the CPU kernels (:mod:`fastact.kernels.axis`): arrays as ``(outer, C, inner)`` with C
the axis the function works along. Same formulas too: the templates call the CPU scalar
cores (``sigmoid_core``, ``sigmoid_pair``, ``fastact._core.math``, the counter RNG ``uniform01``),
which :func:`fastact.cuda._retarget.kernel` compiles for the device.

* PReLU's weight gradient: per-channel sums of ``x * g`` (x <= 0) in float64, reduced in each
  block (shared-memory tree) into ``partial[block, c]``, then summed per channel by a second
  launch; with ``inner == 1`` ((N, C) inputs) each thread owns one channel of a block of
  rows, so reads stay coalesced and the block reduction is not needed.
* Softmax family: one block per row when the softmax axis is contiguous (``inner == 1``:
  block max, block float64 sum, write), else one thread per (outer, inner) column, or, when
  the columns are too few to fill the device, one thread per (chunk of C, column) with the
  chunks' maxima and sums combined per column by a second launch and the result written by a
  third, element-parallel one.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda, float64

from fastact._core import math as fm
from fastact._core.math import lit
from fastact.cuda._reduce import block_max, block_sum
from fastact.cuda._retarget import DEVICE_OPTIONS, kernel
from fastact.cuda._runtime import SIMULATOR, THREADS
from fastact.kernels.activations import sigmoid_core, sigmoid_pair
from fastact.kernels.axis import uniform01

_NEG_INF = -math.inf


# ----------------------------------------------------------------------------- PReLU
def prelu_forward(x, w, out, inner):
    """Flat x/out; channel of element i is (i // inner) % w.size."""
    c_n = w.size
    i = cuda.grid(1)
    stride = cuda.gridsize(1)
    while i < x.size:
        v = x[i]
        out[i] = v if v > 0 else w[(i // inner) % c_n] * v
        i += stride


def prelu_backward_channels(g, x, w, gx, partial, outer, inner):
    """inner > 1: blockIdx.y walks channels; the block's threads stride over (outer, inner)."""
    sh = cuda.shared.array(THREADS, float64)
    c_n = w.size
    per = outer * inner
    tid = cuda.threadIdx.x
    step = cuda.gridDim.x * THREADS
    for c in range(cuda.blockIdx.y, c_n, cuda.gridDim.y):
        wc = w[c]
        acc = 0.0
        j = cuda.blockIdx.x * THREADS + tid
        while j < per:
            o = j // inner
            idx = (o * c_n + c) * inner + (j - o * inner)
            v = x[idx]
            gi = g[idx]
            if v > 0:
                gx[idx] = gi
            else:
                gx[idx] = wc * gi
                acc += float64(v) * float64(gi)
            j += step
        total = block_sum(acc, sh)
        if tid == 0:
            partial[cuda.blockIdx.x, c] = total


def prelu_backward_rows(g, x, w, gx, partial, outer):
    """inner == 1: thread = channel, blockIdx.x strides over rows (coalesced along C)."""
    c_n = w.size
    c = cuda.blockIdx.y * THREADS + cuda.threadIdx.x
    while c < c_n:
        wc = w[c]
        acc = 0.0
        o = cuda.blockIdx.x
        while o < outer:
            idx = o * c_n + c
            v = x[idx]
            gi = g[idx]
            if v > 0:
                gx[idx] = gi
            else:
                gx[idx] = wc * gi
                acc += float64(v) * float64(gi)
            o += cuda.gridDim.x
        partial[cuda.blockIdx.x, c] = acc
        c += cuda.gridDim.y * THREADS


# ----------------------------------------------------------------------------- GLU
def glu_forward(x, out):
    """x: (outer, 2, m) -> out (outer, m) = a * sigmoid(b)."""
    outer, _, m = x.shape
    j = cuda.grid(1)
    stride = cuda.gridsize(1)
    while j < outer * m:
        o = j // m
        s = j - o * m
        out[o, s] = x[o, 0, s] * sigmoid_core(x[o, 1, s])
        j += stride


def glu_backward(g, x, gx):
    outer, _, m = x.shape
    j = cuda.grid(1)
    stride = cuda.gridsize(1)
    while j < outer * m:
        o = j // m
        s = j - o * m
        sp, sn = sigmoid_pair(x[o, 1, s])
        gs = g[o, s] * sp
        gx[o, 0, s] = gs
        gx[o, 1, s] = gs * x[o, 0, s] * sn
        j += stride


# ----------------------------------------------------------------------------- Maxout
def maxout_forward(x, out):
    """x: (outer, cout, pieces, inner) -> out (outer, cout, inner); first max wins, NaN wins."""
    outer, cout, pieces, inner = x.shape
    j = cuda.grid(1)
    stride = cuda.gridsize(1)
    while j < outer * cout * inner:
        s = j % inner
        r = j // inner
        c = r % cout
        o = r // cout
        best = x[o, c, 0, s]
        for k in range(1, pieces):
            v = x[o, c, k, s]
            if (v > best or v != v) and best == best:
                best = v
        out[o, c, s] = best
        j += stride


def maxout_backward(g, x, gx):
    outer, cout, pieces, inner = x.shape
    j = cuda.grid(1)
    stride = cuda.gridsize(1)
    while j < outer * cout * inner:
        s = j % inner
        r = j // inner
        c = r % cout
        o = r // cout
        best = x[o, c, 0, s]
        k_best = 0
        for k in range(1, pieces):
            v = x[o, c, k, s]
            if (v > best or v != v) and best == best:
                best = v
                k_best = k
        gi = g[o, c, s]
        for k in range(pieces):
            gx[o, c, k, s] = gi if k == k_best else lit(best, 0.0) * gi
        j += stride


# ----------------------------------------------------------------------------- RReLU
def rrelu_train(x, out, noise, lower, span, key, write_noise):
    """Slopes from the CPU's counter RNG: identical to fastact.rrelu for the same seed."""
    i = cuda.grid(1)
    stride = cuda.gridsize(1)
    while i < x.size:
        xi = x[i]
        a = lower + span * uniform01(key, i, xi)
        if xi <= 0:
            out[i] = xi * a
        else:
            out[i] = xi
            a = lit(xi, 1.0)
        if write_noise:
            noise[i] = a
        i += stride


def rrelu_train_grad(g, v, out, lower, span, key):
    i = cuda.grid(1)
    stride = cuda.gridsize(1)
    while i < g.size:
        a = lower + span * uniform01(key, i, g[i])
        out[i] = g[i] * a if v[i] <= 0 else g[i]
        i += stride


# ----------------------------------------------------------------------------- softmax
@cuda.jit(device=True, inline="always", **DEVICE_OPTIONS)
def _exp_shifted(v, m):
    """(t, exp(v - m)): t = fl(v - m), and the exponential of v - m taken exactly as t + tl
    (TwoSum; tl = 0 where t is not finite): exp(t) (1 + tl), one rounding of t less."""
    t = v - m
    bb = t - v
    tl = (v - (t - bb)) + (-m - bb)
    tl = tl if tl == tl else lit(v, 0.0)
    e = fm.exp(t)
    return t, e + e * tl


@cuda.jit(device=True, inline="always", **DEVICE_OPTIONS)
def _sum_terms(t, e, log):
    """(sum term, tie count) of one element: log-softmax sums the terms below the maximum
    and counts the maximum's ties apart (lse = log1p(sum + ties - 1))."""
    if log:
        return (0.0 if t == 0 else float64(e)), (1.0 if t == 0 else 0.0)
    return float64(e), 0.0


def softmax_rows(x, out, log, sign):
    """(R, C) rows, one block per row: block max, float64 block sums, write. As on the CPU:
    t = x - max is split exactly (TwoSum: t + tl) and exp(t + tl) = exp(t) (1 + tl);
    log-softmax subtracts log1p(sum of the terms below the max + ties - 1) from t."""
    sh = cuda.shared.array(THREADS, float64)
    rows, c_n = x.shape
    tid = cuda.threadIdx.x
    r = cuda.blockIdx.x
    while r < rows:
        m = _NEG_INF
        for c in range(tid, c_n, THREADS):
            v = float64(sign * x[r, c])
            if v > m or v != v:
                m = v
        mt = lit(sign, block_max(m, sh))
        acc = 0.0
        cnt = 0.0
        for c in range(tid, c_n, THREADS):
            v = sign * x[r, c]
            t, e = _exp_shifted(v, mt)
            a, k = _sum_terms(t, e, log)
            acc += a
            cnt += k
        total = block_sum(acc, sh)
        if log:
            ties = block_sum(cnt, sh)
            lse = lit(sign, math.log1p(total + (ties - 1.0)))
            for c in range(tid, c_n, THREADS):
                out[r, c] = (sign * x[r, c] - mt) - lse
        else:
            inv = lit(sign, 1.0 / total)
            for c in range(tid, c_n, THREADS):
                v = sign * x[r, c]
                out[r, c] = _exp_shifted(v, mt)[1] * inv
        r += cuda.gridDim.x


def softmax_columns(x, out, log, sign):
    """(outer, C, inner), inner > 1: one thread per (outer, inner) column (as softmax_rows)."""
    outer, c_n, inner = x.shape
    j = cuda.grid(1)
    stride = cuda.gridsize(1)
    while j < outer * inner:
        o = j // inner
        s = j - o * inner
        m = sign * x[o, 0, s]
        for c in range(1, c_n):
            v = sign * x[o, c, s]
            m = v if v > m else m
        acc = 0.0
        cnt = 0.0
        for c in range(c_n):
            v = sign * x[o, c, s]
            t, e = _exp_shifted(v, m)
            a, k = _sum_terms(t, e, log)
            acc += a
            cnt += k
        if log:
            lse = lit(m, math.log1p(acc + (cnt - 1.0)))
            for c in range(c_n):
                out[o, c, s] = (sign * x[o, c, s] - m) - lse
        else:
            inv = lit(m, 1.0 / acc)
            for c in range(c_n):
                v = sign * x[o, c, s]
                out[o, c, s] = _exp_shifted(v, m)[1] * inv
        j += stride


# Columns split across threads: when there are too few (outer, inner) columns to fill the
# device (softmax over dim 0 of a (65536, 1024) array has 1024), each column's C values are
# cut into chunks, one thread per (chunk, column); the chunks' float64 maxima and sums are
# combined per column by a second launch, and a last, fully parallel launch writes the result.
@cuda.jit(device=True, inline="always", **DEVICE_OPTIONS)
def _chunk_column(w, ncol, inner):
    """Work item ``w`` of a chunked launch: (chunk k, column j = o * inner + s, o, s)."""
    k = w // ncol
    j = w - k * ncol
    o = j // inner
    return k, j, o, j - o * inner


@cuda.jit(device=True, inline="always", **DEVICE_OPTIONS)
def _position(i, c_n, inner):
    """(o, c, s) of flat element ``i`` of an (outer, C, inner) array."""
    q = i // inner
    o = q // c_n
    return o, q - o * c_n, i - q * inner


def softmax_columns_chunk_stats(x, colmax, part, ties, sign, chunk, want_max, log):
    """part[k, j] = over the rows c of chunk k of column j: the maximum of sign * x
    (``want_max``; float64, a NaN wins as in the row kernels), else the float64 sum of the
    terms exp(sign * x - colmax[j]) of softmax_columns (the maximum in the data's type; for
    log-softmax the terms below the maximum, the maximum's ties counted in ties[k, j])."""
    outer, c_n, inner = x.shape
    ncol = outer * inner
    w = cuda.grid(1)
    while w < part.shape[0] * ncol:
        k, j, o, s = _chunk_column(w, ncol, inner)
        mt = lit(sign, colmax[j])
        acc = _NEG_INF if want_max else 0.0
        cnt = 0.0
        for c in range(k * chunk, min(k * chunk + chunk, c_n)):
            if want_max:
                v = float64(sign * x[o, c, s])
                if v > acc or v != v:
                    acc = v
            else:
                t, e = _exp_shifted(sign * x[o, c, s], mt)
                a, n = _sum_terms(t, e, log)
                acc += a
                cnt += n
        part[k, j] = acc
        if log and not want_max:
            ties[k, j] = cnt
        w += cuda.gridsize(1)


def column_max(part, out):
    """out[j] = max over k of part[k, j] (a NaN wins)."""
    j = cuda.grid(1)
    while j < part.shape[1]:
        m = _NEG_INF
        for k in range(part.shape[0]):
            v = part[k, j]
            if v > m or v != v:
                m = v
        out[j] = m
        j += cuda.gridsize(1)


def softmax_columns_write(x, out, colmax, colsum, colties, log, sign):
    """The formulas of softmax_columns over every element in parallel: exp(sign x - max) /
    sum, or (sign x - max) - log1p(sum below the max + ties - 1)."""
    outer, c_n, inner = x.shape
    i = cuda.grid(1)
    while i < x.size:
        o, c, s = _position(i, c_n, inner)
        j = o * inner + s
        mt = lit(sign, colmax[j])
        v = sign * x[o, c, s]
        if log:
            out[o, c, s] = (v - mt) - lit(mt, math.log1p(colsum[j] + (colties[j] - 1.0)))
        else:
            out[o, c, s] = _exp_shifted(v, mt)[1] * lit(mt, 1.0 / colsum[j])
        i += cuda.gridsize(1)


def softmax_columns_backward_chunk_sum(g, y, part, log, chunk):
    """part[k, j] = float64 sum over chunk k of g (log-softmax) or g * y (softmax)."""
    outer, c_n, inner = y.shape
    ncol = outer * inner
    w = cuda.grid(1)
    while w < part.shape[0] * ncol:
        k, j, o, s = _chunk_column(w, ncol, inner)
        acc = 0.0
        for c in range(k * chunk, min(k * chunk + chunk, c_n)):
            gi = float64(g[o, c, s])
            acc += gi if log else gi * float64(y[o, c, s])
        part[k, j] = acc
        w += cuda.gridsize(1)


def softmax_columns_backward_write(g, y, gx, colsum, log, sign):
    """The formulas of softmax_columns_backward, over every element in parallel."""
    outer, c_n, inner = y.shape
    i = cuda.grid(1)
    while i < y.size:
        o, c, s = _position(i, c_n, inner)
        a = colsum[o * inner + s]  # float64, unrounded (as softmax_columns_backward)
        if log:
            gx[o, c, s] = float64(g[o, c, s]) - fm.exp(float64(y[o, c, s])) * a
        else:
            gx[o, c, s] = float64(sign) * float64(y[o, c, s]) * (float64(g[o, c, s]) - a)
        i += cuda.gridsize(1)


def softmax_rows_backward(g, y, gx, log, sign):
    """From the output y: softmax: sign*y*(g - sum(g*y)); log-softmax: g - exp(y)*sum(g);
    the float64 sum is used unrounded and the element's formula evaluated in float64 (for
    float32 one rounding at the end, as on the CPU; float64 sums are not compensated here)."""
    sh = cuda.shared.array(THREADS, float64)
    rows, c_n = y.shape
    tid = cuda.threadIdx.x
    r = cuda.blockIdx.x
    while r < rows:
        acc = 0.0
        for c in range(tid, c_n, THREADS):
            if log:
                acc += float64(g[r, c])
            else:
                acc += float64(g[r, c]) * float64(y[r, c])
        a = block_sum(acc, sh)
        for c in range(tid, c_n, THREADS):
            if log:
                gx[r, c] = float64(g[r, c]) - fm.exp(float64(y[r, c])) * a
            else:
                gx[r, c] = float64(sign) * float64(y[r, c]) * (float64(g[r, c]) - a)
        r += cuda.gridDim.x


def softmax_columns_backward(g, y, gx, log, sign):
    outer, c_n, inner = y.shape
    j = cuda.grid(1)
    stride = cuda.gridsize(1)
    while j < outer * inner:
        o = j // inner
        s = j - o * inner
        acc = 0.0
        for c in range(c_n):
            if log:
                acc += float64(g[o, c, s])
            else:
                acc += float64(g[o, c, s]) * float64(y[o, c, s])
        for c in range(c_n):
            if log:
                gx[o, c, s] = float64(g[o, c, s]) - fm.exp(float64(y[o, c, s])) * acc
            else:
                gx[o, c, s] = float64(sign) * float64(y[o, c, s]) * (float64(g[o, c, s]) - acc)
        j += stride


def mul(a, b, out):
    i = cuda.grid(1)
    stride = cuda.gridsize(1)
    while i < a.size:
        out[i] = a[i] * b[i]
        i += stride


def cast(x, out):
    i = cuda.grid(1)
    stride = cuda.gridsize(1)
    while i < x.size:
        out[i] = x[i]
        i += stride


_TEMPLATES = {
    f.__name__: f
    for f in (
        prelu_forward,
        prelu_backward_channels,
        prelu_backward_rows,
        glu_forward,
        glu_backward,
        maxout_forward,
        maxout_backward,
        rrelu_train,
        rrelu_train_grad,
        softmax_rows,
        softmax_columns,
        softmax_rows_backward,
        softmax_columns_backward,
        softmax_columns_chunk_stats,
        column_max,
        softmax_columns_write,
        softmax_columns_backward_chunk_sum,
        softmax_columns_backward_write,
        mul,
        cast,
    )
}
_COMPILED: dict[tuple, object] = {}


def _rng_globals(dtype) -> dict:
    """``uniform01`` for the rrelu kernels of ``dtype``.

    On the device: the overload's implementation for that dtype, compiled as a device
    function (numba-cuda mis-types the ``inline="always"`` overload itself). In the
    simulator, which runs templates as Python, through a CPU-jitted wrapper (the stub has no
    Python body); both give the CPU's bits."""
    if SIMULATOR:
        from fastact._core.jit import jit

        return {"uniform01": jit(lambda key, i, like: uniform01(key, i, like))}
    from numba import types

    from fastact.cuda._retarget import device_function
    from fastact.kernels.axis import _uniform01

    impl = _uniform01(None, None, types.float32 if dtype == np.float32 else types.float64)
    return {"uniform01": device_function(impl)}


def get(name: str, dtype=None):
    """The compiled kernel ``name`` (compiled on first use, then per dtype signature; the
    rrelu kernels are compiled per ``dtype``)."""
    key = (name, np.dtype(dtype) if name.startswith("rrelu") else None)
    k = _COMPILED.get(key)
    if k is None:
        extra = _rng_globals(key[1]) if key[1] is not None else {}
        k = _COMPILED[key] = kernel(_TEMPLATES[name], f"{name}_cuda", **extra)
    return k
