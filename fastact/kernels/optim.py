"""What the optimizers compute: fused update loops, their tables, and the OPTIMIZERS specs.

Every update is one pass over memory. The tensors of one step (an optimizer param group and
dtype, or one functional call) are described by two small int64 tables:

* a **pointer table** ``ptrs[row, j]``: the data address of array ``row`` of tensor ``j``
  (row 0 the parameter, row 1 the gradient, rows 2.. the state arrays in kernel order);
* a **chunk table** ``chunks[c] = (j, start, length)`` (:func:`chunk_table`) that cuts the
  concatenation of all tensors into pieces (a piece never spans two tensors).

A loop template is a ``prange`` over chunks; each chunk turns addresses into arrays
(``inttoptr`` + ``numba.carray``, :func:`_view`) and runs one vectorised loop that reads and
writes every array once, so a model of hundreds of small tensors is one kernel launch.
Scalar coefficients that depend on the step (bias corrections, decayed lr) are computed once
per step in float64 Python (in its dtype where lr or the betas are a torch tensor), exactly
as torch computes them (:func:`adam_coefs` ...), and
passed in per tensor (``coefs[j, :]``); the arithmetic runs in the parameter's dtype, with
the constants rounded to it, in the same operation order as torch's single-tensor path.

:data:`OPTIMIZERS` declares each optimizer once: its state rows (the classes' state keys and
the functional API's argument names, in kernel order), when a row is used and its initial
value, the kernel's scalar arguments and the per-step coefficients, all from one flat dict of
options named like the functional API's keywords. The classes, the functional API, both
executors, the tests and the benchmarks read it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np
from numba import prange, types
from numba.extending import overload
from numba.np.numpy_support import as_dtype

from fastact._core.jit import EXACT_FASTMATH, FASTMATH, jit
from fastact._core.jit import pointer_to as _pointer
from fastact._core.math import _f32_from_bits, _fma
from fastact._core.stream import prefetch as _prefetch
from fastact.kernels.lowp import (
    abs_bits,
    bf16_load,
    bf16_store,
    bf16_store_sr,
    block_scales,
    decode8,
    encode8,
    hash32,
    max_bits,
)

# ---------------------------------------------------------------------------------------------
# jit helpers: address -> array view, constant in the array's dtype, NaN-propagating maximum
# ---------------------------------------------------------------------------------------------


def _as(proto, value):
    """``value`` converted to ``proto``'s element type (jit code only)."""
    return value


@overload(_as, inline="always")
def _as_impl(proto, value):
    if isinstance(proto, types.Array):
        cast = as_dtype(proto.dtype).type

        def impl(proto, value):
            return cast(value)

        return impl


@jit
def _view(ptrs, row, j, start, n, proto):
    """Elements ``[start, start + n)`` of array ``row`` of tensor ``j`` as a 1-d array."""
    return numba.carray(_pointer(ptrs[row, j] + start * proto.itemsize, proto), n)


@jit
def _maximum(a, b):
    """torch.maximum for scalars: NaN if either is NaN."""
    return a if (a > b or a != a) else b


# ---------------------------------------------------------------------------------------------
# kernel templates: (proto, ptrs, chunks, coefs, *group scalars); compiled serial and parallel.
# Each has a branch-free fast loop for its common configuration (no L2 weight decay, no
# maximize, ...) chosen per chunk, and a general loop; both use the same operation order.
# Loop-invariant flags inside one loop cost ~10% of memory speed (LLVM does not unswitch them
# all), hence the explicit fast loops.
# ---------------------------------------------------------------------------------------------


def sgd_loop(
    proto,
    ptrs,
    chunks,
    coefs,
    lr,
    weight_decay,
    momentum,
    dampening,
    nesterov,
    maximize,
    has_buffer,
):
    """SGD. Rows p, g, buf. ``coefs[j, 0] != 0``: first step of tensor j (buf = g)."""
    nlr = _as(proto, -lr)
    wd = _as(proto, weight_decay)
    mu = _as(proto, momentum)
    d1 = _as(proto, 1.0 - dampening)
    gs = _as(proto, -1.0 if maximize else 1.0)
    l2 = weight_decay != 0.0
    plain = not l2 and not maximize
    for c in prange(chunks.shape[0]):
        j = chunks[c, 0]
        start = chunks[c, 1]
        n = chunks[c, 2]
        pa = _view(ptrs, 0, j, start, n, proto)
        ga = _view(ptrs, 1, j, start, n, proto)
        ba = _view(ptrs, 2, j, start, n, proto)
        first = coefs[j, 0] != 0.0
        if plain and has_buffer and not first and not nesterov:
            for i in range(n):
                b = ba[i] * mu + d1 * ga[i]
                ba[i] = b
                pa[i] = pa[i] + nlr * b
        elif plain and has_buffer and not first:
            for i in range(n):
                g = ga[i]
                b = ba[i] * mu + d1 * g
                ba[i] = b
                pa[i] = pa[i] + nlr * (g + mu * b)
        elif plain and not has_buffer:
            for i in range(n):
                pa[i] = pa[i] + nlr * ga[i]
        else:
            for i in range(n):
                g = ga[i] * gs
                p = pa[i]
                if l2:
                    g = g + wd * p
                if has_buffer:
                    if first:
                        b = g
                    else:
                        b = ba[i] * mu + d1 * g
                    ba[i] = b
                    if nesterov:
                        g = g + mu * b
                    else:
                        g = b
                pa[i] = p + nlr * g


def adam_loop(
    proto, ptrs, chunks, coefs, beta1, beta2, eps, weight_decay, decay, amsgrad, maximize
):
    """Adam/AdamW. Rows p, g, m, v, vmax. coefs[j] = (lr / bc1, sqrt(bc2)).

    ``decay`` multiplies p first (decoupled weight decay 1 - lr*wd; 1.0 is exact for every p);
    ``weight_decay`` is L2. ``maximize`` multiplies g by -1 (exact).
    """
    w = _as(proto, 1.0 - beta1)
    small = abs(w) < _as(proto, 0.5)
    wm1 = w - _as(proto, 1.0)
    b2 = _as(proto, beta2)
    c2 = _as(proto, 1.0 - beta2)
    e = _as(proto, eps)
    wd = _as(proto, weight_decay)
    dec = _as(proto, decay)
    gs = _as(proto, -1.0 if maximize else 1.0)
    l2 = weight_decay != 0.0
    plain = not l2 and not maximize and not amsgrad and small
    for c in prange(chunks.shape[0]):
        j = chunks[c, 0]
        start = chunks[c, 1]
        n = chunks[c, 2]
        pa = _view(ptrs, 0, j, start, n, proto)
        ga = _view(ptrs, 1, j, start, n, proto)
        ma = _view(ptrs, 2, j, start, n, proto)
        va = _view(ptrs, 3, j, start, n, proto)
        xa = _view(ptrs, 4, j, start, n, proto)
        nss = _as(proto, -coefs[j, 0])
        bc2s = _as(proto, coefs[j, 1])
        if plain:
            for i in range(n):
                g = ga[i]
                m = ma[i]
                m = m + w * (g - m)
                ma[i] = m
                v = va[i] * b2 + c2 * g * g
                va[i] = v
                pa[i] = pa[i] * dec + nss * m / (np.sqrt(v) / bc2s + e)
        else:
            for i in range(n):
                g = ga[i] * gs
                p = pa[i] * dec
                if l2:
                    g = g + wd * p
                m = ma[i]
                if small:
                    m = m + w * (g - m)
                else:
                    m = g + wm1 * (g - m)
                ma[i] = m
                v = va[i] * b2 + c2 * g * g
                va[i] = v
                if amsgrad:
                    v = _maximum(xa[i], v)
                    xa[i] = v
                pa[i] = p + nss * m / (np.sqrt(v) / bc2s + e)


def adamax_loop(proto, ptrs, chunks, coefs, beta1, beta2, eps, weight_decay, maximize):
    """Adamax. Rows p, g, m, u. coefs[j] = (lr / bc1,)."""
    w = _as(proto, 1.0 - beta1)
    small = abs(w) < _as(proto, 0.5)
    wm1 = w - _as(proto, 1.0)
    b2 = _as(proto, beta2)
    e = _as(proto, eps)
    wd = _as(proto, weight_decay)
    gs = _as(proto, -1.0 if maximize else 1.0)
    l2 = weight_decay != 0.0
    plain = not l2 and not maximize and small
    for c in prange(chunks.shape[0]):
        j = chunks[c, 0]
        start = chunks[c, 1]
        n = chunks[c, 2]
        pa = _view(ptrs, 0, j, start, n, proto)
        ga = _view(ptrs, 1, j, start, n, proto)
        ma = _view(ptrs, 2, j, start, n, proto)
        ua = _view(ptrs, 3, j, start, n, proto)
        nclr = _as(proto, -coefs[j, 0])
        if plain:
            for i in range(n):
                g = ga[i]
                m = ma[i]
                m = m + w * (g - m)
                ma[i] = m
                u = _maximum(ua[i] * b2, abs(g) + e)
                ua[i] = u
                pa[i] = pa[i] + nclr * m / u
        else:
            for i in range(n):
                g = ga[i] * gs
                p = pa[i]
                if l2:
                    g = g + wd * p
                m = ma[i]
                if small:
                    m = m + w * (g - m)
                else:
                    m = g + wm1 * (g - m)
                ma[i] = m
                u = _maximum(ua[i] * b2, abs(g) + e)
                ua[i] = u
                pa[i] = p + nclr * m / u


def rmsprop_loop(
    proto, ptrs, chunks, coefs, lr, alpha, eps, weight_decay, momentum, centered, maximize
):
    """RMSprop. Rows p, g, v, buf, grad_avg (the last two only read when used)."""
    nlr = _as(proto, -lr)
    al = _as(proto, alpha)
    w = _as(proto, 1.0 - alpha)
    small = abs(w) < _as(proto, 0.5)
    wm1 = w - _as(proto, 1.0)
    e = _as(proto, eps)
    wd = _as(proto, weight_decay)
    mu = _as(proto, momentum)
    gs = _as(proto, -1.0 if maximize else 1.0)
    use_buf = momentum > 0.0
    l2 = weight_decay != 0.0
    plain = not l2 and not maximize and not centered
    for c in prange(chunks.shape[0]):
        j = chunks[c, 0]
        start = chunks[c, 1]
        n = chunks[c, 2]
        pa = _view(ptrs, 0, j, start, n, proto)
        ga = _view(ptrs, 1, j, start, n, proto)
        va = _view(ptrs, 2, j, start, n, proto)
        ba = _view(ptrs, 3, j, start, n, proto)
        aa = _view(ptrs, 4, j, start, n, proto)
        if plain and not use_buf:
            for i in range(n):
                g = ga[i]
                v = va[i] * al + w * g * g
                va[i] = v
                pa[i] = pa[i] + nlr * g / (np.sqrt(v) + e)
        elif plain:
            for i in range(n):
                g = ga[i]
                v = va[i] * al + w * g * g
                va[i] = v
                b = ba[i] * mu + g / (np.sqrt(v) + e)
                ba[i] = b
                pa[i] = pa[i] + nlr * b
        else:
            for i in range(n):
                g = ga[i] * gs
                p = pa[i]
                if l2:
                    g = g + wd * p
                v = va[i] * al + w * g * g
                va[i] = v
                if centered:
                    a = aa[i]
                    if small:
                        a = a + w * (g - a)
                    else:
                        a = g + wm1 * (g - a)
                    aa[i] = a
                    avg = np.sqrt(v + (-a) * a) + e
                else:
                    avg = np.sqrt(v) + e
                if use_buf:
                    b = ba[i] * mu + g / avg
                    ba[i] = b
                    pa[i] = p + nlr * b
                else:
                    pa[i] = p + nlr * g / avg


def rprop_loop(
    proto, ptrs, chunks, coefs, etaminus, etaplus, step_size_min, step_size_max, maximize
):
    """Rprop. Rows p, g, prev, step_size. sign() is torch's: 0 for NaN."""
    em = _as(proto, etaminus)
    ep = _as(proto, etaplus)
    lo = _as(proto, step_size_min)
    hi = _as(proto, step_size_max)
    zero = _as(proto, 0.0)
    one = _as(proto, 1.0)
    gs = _as(proto, -1.0 if maximize else 1.0)
    for c in prange(chunks.shape[0]):
        j = chunks[c, 0]
        start = chunks[c, 1]
        n = chunks[c, 2]
        pa = _view(ptrs, 0, j, start, n, proto)
        ga = _view(ptrs, 1, j, start, n, proto)
        qa = _view(ptrs, 2, j, start, n, proto)
        sa = _view(ptrs, 3, j, start, n, proto)
        if not maximize:
            for i in range(n):
                g = ga[i]
                s = g * qa[i]
                ss = sa[i]
                if s > zero:
                    ss = ss * ep
                elif s < zero:
                    ss = ss * em
                    g = zero
                ss = lo if ss < lo else ss
                ss = hi if ss > hi else ss
                sa[i] = ss
                sg = one if g > zero else (-one if g < zero else zero)
                pa[i] = pa[i] + (-sg) * ss
                qa[i] = g
        else:
            for i in range(n):
                g = ga[i] * gs
                s = g * qa[i]
                ss = sa[i]
                if s > zero:
                    ss = ss * ep
                elif s < zero:
                    ss = ss * em
                    g = zero
                ss = lo if ss < lo else ss
                ss = hi if ss > hi else ss
                sa[i] = ss
                sg = one if g > zero else (-one if g < zero else zero)
                pa[i] = pa[i] + (-sg) * ss
                qa[i] = g


def adagrad_loop(proto, ptrs, chunks, coefs, eps, weight_decay, maximize):
    """Adagrad. Rows p, g, sum. coefs[j] = (lr / (1 + (t - 1) * lr_decay),)."""
    e = _as(proto, eps)
    wd = _as(proto, weight_decay)
    gs = _as(proto, -1.0 if maximize else 1.0)
    l2 = weight_decay != 0.0
    plain = not l2 and not maximize
    for c in prange(chunks.shape[0]):
        j = chunks[c, 0]
        start = chunks[c, 1]
        n = chunks[c, 2]
        pa = _view(ptrs, 0, j, start, n, proto)
        ga = _view(ptrs, 1, j, start, n, proto)
        sa = _view(ptrs, 2, j, start, n, proto)
        nclr = _as(proto, -coefs[j, 0])
        if plain:
            for i in range(n):
                g = ga[i]
                s = sa[i] + g * g
                sa[i] = s
                pa[i] = pa[i] + nclr * g / (np.sqrt(s) + e)
        else:
            for i in range(n):
                g = ga[i] * gs
                p = pa[i]
                if l2:
                    g = g + wd * p
                s = sa[i] + g * g
                sa[i] = s
                pa[i] = p + nclr * g / (np.sqrt(s) + e)


def adadelta_loop(proto, ptrs, chunks, coefs, lr, rho, eps, weight_decay, maximize):
    """Adadelta. Rows p, g, square_avg, acc_delta (eps inside both roots)."""
    nlr = _as(proto, -lr)
    r = _as(proto, rho)
    c1 = _as(proto, 1.0 - rho)
    e = _as(proto, eps)
    wd = _as(proto, weight_decay)
    gs = _as(proto, -1.0 if maximize else 1.0)
    l2 = weight_decay != 0.0
    plain = not l2 and not maximize
    for c in prange(chunks.shape[0]):
        j = chunks[c, 0]
        start = chunks[c, 1]
        n = chunks[c, 2]
        pa = _view(ptrs, 0, j, start, n, proto)
        ga = _view(ptrs, 1, j, start, n, proto)
        va = _view(ptrs, 2, j, start, n, proto)
        ua = _view(ptrs, 3, j, start, n, proto)
        if plain:
            for i in range(n):
                g = ga[i]
                v = va[i] * r + c1 * g * g
                va[i] = v
                u = ua[i]
                d = np.sqrt(u + e) / np.sqrt(v + e) * g
                ua[i] = u * r + c1 * d * d
                pa[i] = pa[i] + nlr * d
        else:
            for i in range(n):
                g = ga[i] * gs
                p = pa[i]
                if l2:
                    g = g + wd * p
                v = va[i] * r + c1 * g * g
                va[i] = v
                u = ua[i]
                d = np.sqrt(u + e) / np.sqrt(v + e) * g
                ua[i] = u * r + c1 * d * d
                pa[i] = p + nlr * d


def nonfinite_loop(proto, ptrs, row, chunks, out):
    """out[c] = chunk c of array ``row`` holds a NaN or an infinity (x * 0 is NaN then)."""
    for c in prange(chunks.shape[0]):
        j = chunks[c, 0]
        start = chunks[c, 1]
        n = chunks[c, 2]
        xa = _view(ptrs, row, j, start, n, proto)
        acc = _calc(proto, 0.0)
        zero = _calc(proto, 0.0)
        for i in range(n):
            acc += _val(xa[i]) * zero
        out[c] = acc != acc


# ---------------------------------------------------------------------------------------------
# low-precision states and parameters: bfloat16 (uint16 bit patterns) and 8-bit codes with
# per-block float32 scales (fastact.kernels.lowp). One loop template per storage kind; the
# update of each optimizer is a scalar function (the rule of its fp32 template in float32
# arithmetic) inlined into it. These loops compile without fast-math and write multiply-adds
# as explicit ``_fma``: an element's result is the same bits on every path (plain or general
# loop, serial or parallel build, any chunking or sharding), since one ULP can move a code.
#
# Pointer table of a low-precision launch: row 0 the parameter, 1 the gradient (float32 or
# bfloat16 bits), 2..4 the state arrays (float32, bfloat16 bits or 8-bit codes), 5..7 the
# 8-bit rows' block scales (float32, one per ``block`` elements of the tensor: a chunk starts
# on a block boundary). Which state rows are used, whether each row's code is signed, and
# stochastic rounding of the parameter are compile-time constants of each specialization
# (U0..U2, S0..S2, SR; the update function is _update), bound by the host executor.
# ---------------------------------------------------------------------------------------------


def _val(x):
    """A stored element as a number to compute with (bfloat16 bits -> float32)."""
    return x


@overload(_val, inline="always")
def _val_impl(x):
    if isinstance(x, types.Float):
        return lambda x: x
    if x == types.uint16:
        return lambda x: bf16_load(x)


def _calc(proto, value):
    """``value`` in the compute type of ``proto``'s storage (float32 for bfloat16 and codes)."""
    return value


@overload(_calc, inline="always")
def _calc_impl(proto, value):
    if isinstance(proto, types.Array):
        if isinstance(proto.dtype, types.Float):
            cast = as_dtype(proto.dtype).type
        else:
            cast = np.float32

        def impl(proto, value):
            return cast(value)

        return impl


def _put(proto, x):
    """Number -> stored element of ``proto``'s dtype (bfloat16: round to nearest even)."""
    return x


@overload(_put, inline="always")
def _put_impl(proto, x):
    if isinstance(proto, types.Array):
        if isinstance(proto.dtype, types.Float):
            cast = as_dtype(proto.dtype).type
            return lambda proto, x: cast(x)
        if proto.dtype == types.uint16:
            return lambda proto, x: bf16_store(x)


def _put_param(proto, x, key, i, sr):
    """The parameter's write-back; bfloat16 with ``sr`` (a constant): stochastic rounding
    with the random bits of (``key``, element ``i``)."""
    return x


@overload(_put_param, inline="always")
def _put_param_impl(proto, x, key, i, sr):
    if isinstance(proto, types.Array):
        if isinstance(proto.dtype, types.Float):
            cast = as_dtype(proto.dtype).type
            return lambda proto, x, key, i, sr: cast(x)
        if proto.dtype == types.uint16:

            def impl(proto, x, key, i, sr):
                if sr:
                    return bf16_store_sr(x, key, i)
                return bf16_store(x)

            return impl


#: the low-precision loops and everything inlined into them: no fast-math flags (the same
#: bits on every path, see fastact._core.jit.EXACT_FASTMATH); multiply-adds are explicit
#: (``_fma``: one rounding, wherever the update is inlined)
_exact = jit(fastmath=EXACT_FASTMATH)


@_exact
def _max_nan(a, b):
    """torch.maximum for scalars: NaN if either is NaN (:func:`_maximum` without fast-math)."""
    return a if (a > b or a != a) else b


_F32_PROTO = np.empty(0, np.float32)
_Z = np.float32(0.0)


# Each update takes ``plain`` (a constant of the loop that calls it): True when the group's
# options are the common ones its ``_plain_*`` predicate checks (no L2 weight decay, no
# maximize, ...), so that the inlined update has no loop-invariant branch left (LLVM does not
# unswitch them all; each one costs registers and instructions in the vector loop). The plain
# path is the general one with those options, in the same operations: the loops are compiled
# without fast-math and every multiply-add is an explicit ``_fma`` (the float32 templates
# above let LLVM contract, and it fuses ``a * b + c`` only where the product has no other
# use, which differs between loop variants), so both paths give the same bits.


@_exact
def _plain_sgd(sc):
    lr, weight_decay, momentum, dampening, nesterov, maximize, has_buffer = sc
    return weight_decay == 0.0 and not maximize


@_exact
def _sgd_update(p, g, b, s1, s2, c0, c1, sc, plain):
    """b = momentum * b + (1 - dampening) * g (b = g on the first step); p -= lr * (g +
    momentum * b if nesterov else b); L2 decay g += weight_decay * p; maximize: g = -g.
    Every product and sum rounded on its own, as torch's SGD on float32 tensors (no fused
    multiply-add: the bfloat16-parameter tests compare with that rule exactly)."""
    lr, weight_decay, momentum, dampening, nesterov, maximize, has_buffer = sc
    if not plain:
        if maximize:
            g = -g
        if weight_decay != 0.0:
            g = g + np.float32(weight_decay) * p
    if has_buffer:
        if c0 != 0.0:
            b = g
        else:
            b = b * np.float32(momentum) + np.float32(1.0 - dampening) * g
        if nesterov:
            g = g + np.float32(momentum) * b
        else:
            g = b
    return p + np.float32(-lr) * g, b, s1, s2


@_exact
def _plain_adam(sc):
    beta1, beta2, eps, weight_decay, decay, amsgrad, maximize = sc
    return (
        weight_decay == 0.0
        and not amsgrad
        and not maximize
        and abs(np.float32(1.0 - beta1)) < np.float32(0.5)
    )


@_exact
def _adam_update(p, g, m, v, x, c0, c1, sc, plain):
    """torch's Adam/AdamW: m += (1 - beta1) (g - m); v = beta2 v + (1 - beta2) g**2 (amsgrad:
    x = max(x, v) is used); p = decay * p - c0 * m / (sqrt(v) * (1 / c1) + eps), c0 = lr / bc1,
    c1 = sqrt(bc2), decay = 1 - lr * wd (AdamW) or L2 g += wd * p (Adam)."""
    beta1, beta2, eps, weight_decay, decay, amsgrad, maximize = sc
    w = np.float32(1.0 - beta1)
    dec = np.float32(decay)
    if not plain and maximize:
        g = -g
    if not plain and weight_decay != 0.0:
        g = _fma(np.float32(weight_decay), p * dec, g)
    d = g - m
    if plain or abs(w) < np.float32(0.5):
        m = _fma(w, d, m)
    else:
        m = _fma(w - np.float32(1.0), d, g)
    v = _fma(v, np.float32(beta2), np.float32(1.0 - beta2) * g * g)
    vv = v
    if not plain and amsgrad:
        x = _max_nan(x, v)
        vv = x
    # / c1 as * (1 / c1) (c1 is per tensor: one division per element less)
    den = np.sqrt(vv) * (np.float32(1.0) / np.float32(c1)) + np.float32(eps)
    return _fma(p, dec, np.float32(-c0) * m / den), m, v, x


@_exact
def _adam_fold8(sc):
    """The factors the 8-bit loop folds into the decode scales of Adam's rows (m, v, vmax):
    the states come decoded as beta1 m and beta2 v (one fused multiply-add each, as any
    decode), which :func:`_adam_update8` takes."""
    beta1, beta2, eps, weight_decay, decay, amsgrad, maximize = sc
    return np.float32(beta1), np.float32(beta2), np.float32(1.0)


@_exact
def _adam_update8(p, g, bm, bv, x, c0, c1, sc, plain):
    """:func:`_adam_update` for 8-bit states, from the decoded ``bm = beta1 m`` and ``bv =
    beta2 v`` (:func:`_adam_fold8`): m = fma(g, 1 - beta1, bm), v = fma(g (1 - beta2), g,
    bv), den = fma(sqrt(v), 1 / c1, eps): three vector operations per value fewer than the
    float32 rule's own roundings (which the 8-bit code's steps dwarf: up to 1/15 of a value)."""
    beta1, beta2, eps, weight_decay, decay, amsgrad, maximize = sc
    dec = np.float32(decay)
    if not plain and maximize:
        g = -g
    if not plain and weight_decay != 0.0:
        g = _fma(np.float32(weight_decay), p * dec, g)
    m = _fma(g, np.float32(1.0 - beta1), bm)
    v = _fma(g * np.float32(1.0 - beta2), g, bv)
    vv = v
    if not plain and amsgrad:
        x = _max_nan(x, v)
        vv = x
    den = _fma(np.sqrt(vv), np.float32(1.0) / np.float32(c1), np.float32(eps))
    return _fma(p, dec, np.float32(-c0) * m / den), m, v, x


@_exact
def no_fold8(sc):
    """The decode-scale factors of an update that takes its 8-bit states as they are."""
    return np.float32(1.0), np.float32(1.0), np.float32(1.0)


@_exact
def _plain_adamax(sc):
    beta1, beta2, eps, weight_decay, maximize = sc
    return weight_decay == 0.0 and not maximize and abs(np.float32(1.0 - beta1)) < np.float32(0.5)


@_exact
def _adamax_update(p, g, m, u, s2, c0, c1, sc, plain):
    """m += (1 - beta1) (g - m); u = max(beta2 u, |g| + eps); p -= c0 * m / u (c0 = lr / bc1)."""
    beta1, beta2, eps, weight_decay, maximize = sc
    w = np.float32(1.0 - beta1)
    if not plain:
        if maximize:
            g = -g
        if weight_decay != 0.0:
            g = _fma(np.float32(weight_decay), p, g)
    d = g - m
    if plain or abs(w) < np.float32(0.5):
        m = _fma(w, d, m)
    else:
        m = _fma(w - np.float32(1.0), d, g)
    u = _max_nan(u * np.float32(beta2), abs(g) + np.float32(eps))
    return p + np.float32(-c0) * m / u, m, u, s2


@_exact
def _plain_rmsprop(sc):
    lr, alpha, eps, weight_decay, momentum, centered, maximize = sc
    return weight_decay == 0.0 and not maximize and not centered


@_exact
def _rmsprop_update(p, g, v, b, a, c0, c1, sc, plain):
    """v = alpha v + (1 - alpha) g**2; centered: a += (1 - alpha) (g - a), v - a**2 under the
    root; b = momentum b + g / (sqrt(.) + eps), p -= lr * b (or lr * g / (sqrt(.) + eps))."""
    lr, alpha, eps, weight_decay, momentum, centered, maximize = sc
    w = np.float32(1.0 - alpha)
    if not plain:
        if maximize:
            g = -g
        if weight_decay != 0.0:
            g = _fma(np.float32(weight_decay), p, g)
    v = _fma(v, np.float32(alpha), w * g * g)
    if not plain and centered:
        d = g - a
        if abs(w) < np.float32(0.5):
            a = _fma(w, d, a)
        else:
            a = _fma(w - np.float32(1.0), d, g)
        avg = np.sqrt(_fma(-a, a, v)) + np.float32(eps)
    else:
        avg = np.sqrt(v) + np.float32(eps)
    if momentum > 0.0:
        b = _fma(b, np.float32(momentum), g / avg)
        return _fma(np.float32(-lr), b, p), v, b, a
    return p + np.float32(-lr) * g / avg, v, b, a


@_exact
def _plain_rprop(sc):
    etaminus, etaplus, step_size_min, step_size_max, maximize = sc
    return not maximize


@_exact
def _rprop_update(p, g, q, ss, s2, c0, c1, sc, plain):
    """Step sizes grow by etaplus where g keeps its sign, shrink by etaminus (and g = 0)
    where it flips, clamped; p -= sign(g) * step size."""
    etaminus, etaplus, step_size_min, step_size_max, maximize = sc
    if not plain and maximize:
        g = -g
    s = g * q
    if s > _Z:
        ss = ss * np.float32(etaplus)
    elif s < _Z:
        ss = ss * np.float32(etaminus)
        g = _Z
    lo = np.float32(step_size_min)
    hi = np.float32(step_size_max)
    ss = lo if ss < lo else ss
    ss = hi if ss > hi else ss
    one = np.float32(1.0)
    sg = one if g > _Z else (-one if g < _Z else _Z)
    return p + (-sg) * ss, g, ss, s2


@_exact
def _plain_adagrad(sc):
    eps, weight_decay, maximize = sc
    return weight_decay == 0.0 and not maximize


@_exact
def _adagrad_update(p, g, s, s1, s2, c0, c1, sc, plain):
    """s += g**2; p -= c0 * g / (sqrt(s) + eps) (c0 = lr / (1 + (t - 1) lr_decay))."""
    eps, weight_decay, maximize = sc
    if not plain:
        if maximize:
            g = -g
        if weight_decay != 0.0:
            g = _fma(np.float32(weight_decay), p, g)
    s = _fma(g, g, s)
    return p + np.float32(-c0) * g / (np.sqrt(s) + np.float32(eps)), s, s1, s2


@_exact
def _plain_adadelta(sc):
    lr, rho, eps, weight_decay, maximize = sc
    return weight_decay == 0.0 and not maximize


@_exact
def _adadelta_update(p, g, v, u, s2, c0, c1, sc, plain):
    """v = rho v + (1 - rho) g**2; d = sqrt(u + eps) / sqrt(v + eps) * g; u = rho u +
    (1 - rho) d**2; p -= lr * d."""
    lr, rho, eps, weight_decay, maximize = sc
    r = np.float32(rho)
    c = np.float32(1.0 - rho)
    e = np.float32(eps)
    if not plain:
        if maximize:
            g = -g
        if weight_decay != 0.0:
            g = _fma(np.float32(weight_decay), p, g)
    v = _fma(v, r, c * g * g)
    d = np.sqrt(u + e) / np.sqrt(v + e) * g
    u = _fma(u, r, c * d * d)
    return _fma(np.float32(-lr), d, p), v, u, s2


@_exact
def general_only(sc):
    """A ``plain`` predicate that is always False: the loops run their general update only
    (the host's ``LOWP_GENERAL_ONLY``; tests check that both loops give the same bits)."""
    return False


#: kernel name -> (the scalar update of its low-precision loops, its ``plain`` predicate)
UPDATES = {
    "sgd": (_sgd_update, _plain_sgd),
    "adam": (_adam_update, _plain_adam),
    "adamax": (_adamax_update, _plain_adamax),
    "rmsprop": (_rmsprop_update, _plain_rmsprop),
    "rprop": (_rprop_update, _plain_rprop),
    "adagrad": (_adagrad_update, _plain_adagrad),
    "adadelta": (_adadelta_update, _plain_adadelta),
}


#: kernel name -> (its update on 8-bit states, the factors folded into their decode scales)
#: where it differs from :data:`UPDATES`' (with :func:`no_fold8`)
UPDATES8 = {"adam": (_adam_update8, _adam_fold8)}


#: The low-precision loops (the 8-bit update pass, the bfloat16 loop) run over pieces of
#: PREFETCH_PIECE elements and, before each, prefetch the lines of the piece PREFETCH_AHEAD
#: elements further on (parameter, gradient and the used state rows). Measured on a 2-core
#: Intel Xeon VM (AVX-512, 2 threads, 2**24 float32 parameters, ns per parameter): AdamW8bit
#: 0.54-0.58 without, 0.35-0.44 with; bfloat16 states 0.42 -> 0.34-0.37. Pieces of 64 or 256
#: and distances of 768-6144 gained less; bulk prefetches of the next block between the passes
#: lost 10%; the hardware alone kept the 8-bit step at 0.42 of its memory floor. The pieces'
#: loops run in functions compiled ``noalias`` (:func:`lowp_update_span`,
#: :func:`q8_update_block`): with LLVM's runtime overlap checks before each piece (~100 scalar
#: instructions per 128 elements) the pieces cost the 8-bit loop 25% in cache (serial, 2**15:
#: 0.83-0.87 ns per parameter against 0.61-0.62 now; notes/perf_experiments.md, "8-bit step
#: against its floor" and "Overlap checks in the low-precision loops").
PREFETCH_PIECE = 128
PREFETCH_AHEAD = 448


@jit
def _prefetch_piece(p, g, s0, s1, s2, ahead, w, u0, u1, u2):
    """Hint the lines of elements ``[ahead, ahead + w)`` of the parameter and gradient arrays
    ``p``, ``g`` and of the used state rows ``s0..s2`` (``u0..u2``) into the cache."""
    for q in range(0, w * p.itemsize, 64):
        _prefetch(p.ctypes.data + ahead * p.itemsize + q)
        _prefetch(g.ctypes.data + ahead * p.itemsize + q)
    for q in range(0, w * s0.itemsize, 64):
        if u0:
            _prefetch(s0.ctypes.data + ahead * s0.itemsize + q)
        if u1:
            _prefetch(s1.ctypes.data + ahead * s0.itemsize + q)
        if u2:
            _prefetch(s2.ctypes.data + ahead * s0.itemsize + q)


def lowp_update_span(pp, sp, p_at, g_at, s0_at, s1_at, s2_at, n, c0, c1, sc, kj, at0):
    """The update of ``n`` consecutive elements of one tensor for :func:`lowp_loop`, from
    the pointers ``*_at`` (parameter, gradient, state rows 0..2), over pieces of
    PREFETCH_PIECE elements, each after prefetching the piece PREFETCH_AHEAD elements on
    (parameter, gradient, used state rows; none past the span). Compiled ``noalias`` like
    :func:`q8_update_block` (no runtime overlap checks before each piece's vector loop),
    once with ``PLAIN`` true (the update without its option branches) and once false."""
    ps = numba.carray(p_at, n)
    gs = numba.carray(g_at, n)
    ss0 = numba.carray(s0_at, n)
    ss1 = numba.carray(s1_at, n)
    ss2 = numba.carray(s2_at, n)
    for h in range(0, n, PREFETCH_PIECE):
        w = min(PREFETCH_PIECE, n - h)
        ahead = h + PREFETCH_AHEAD
        if ahead + w <= n:
            _prefetch_piece(ps, gs, ss0, ss1, ss2, ahead, w, U0, U1, U2)  # noqa: F821
        at = at0 + h  # the piece's first element in the tensor
        pa = ps[h : h + w]
        ga = gs[h : h + w]
        a0 = ss0[h : h + w]
        a1 = ss1[h : h + w]
        a2 = ss2[h : h + w]
        for i in range(w):
            s0 = _val(a0[i]) if U0 else _Z  # noqa: F821
            s1 = _val(a1[i]) if U1 else _Z  # noqa: F821
            s2 = _val(a2[i]) if U2 else _Z  # noqa: F821
            p, s0, s1, s2 = _update(  # noqa: F821
                _val(pa[i]),
                _val(ga[i]),
                s0,
                s1,
                s2,
                c0,
                c1,
                sc,
                PLAIN,  # noqa: F821
            )
            pa[i] = _put_param(pp, p, kj, at + i, SR)  # noqa: F821
            if U0:  # noqa: F821
                a0[i] = _put(sp, s0)
            if U1:  # noqa: F821
                a1[i] = _put(sp, s1)
            if U2:  # noqa: F821
                a2[i] = _put(sp, s2)


def lowp_loop(pp, sp, ptrs, chunks, coefs, block, key, sc):
    """Element-wise update with float32 arithmetic: parameter and gradient float32 or
    bfloat16 (``pp``), states float32 or bfloat16 (``sp``, round to nearest even); ``block``
    unused. coefs[j] = the optimizer's per-tensor coefficients (c0, c1). Each chunk is one
    call of :func:`lowp_update_span`, compiled ``noalias`` with the same bindings:
    ``_update_span_plain`` for the plain options (``_plain(sc)``: the update without its
    option branches), else ``_update_span``."""
    last = coefs.shape[1] - 1
    plain = _plain(sc)  # noqa: F821 (bound per specialization, like U0..U2, S0..S2, SR)
    for c in prange(chunks.shape[0]):
        j = chunks[c, 0]
        start = chunks[c, 1]
        n = chunks[c, 2]
        kj = hash32(key + j * 0x632BE5AB)
        args = (
            pp, sp,
            _pointer(ptrs[0, j] + start * pp.itemsize, pp),
            _pointer(ptrs[1, j] + start * pp.itemsize, pp),
            _pointer(ptrs[2, j] + start * sp.itemsize, sp),
            _pointer(ptrs[3, j] + start * sp.itemsize, sp),
            _pointer(ptrs[4, j] + start * sp.itemsize, sp),
            n, coefs[j, 0], coefs[j, last], sc, kj, start,
        )  # fmt: skip
        if plain:
            _update_span_plain(*args)  # noqa: F821
        else:
            _update_span(*args)  # noqa: F821


def q8_update_block(
    pp, p_at, g_at, c0_at, c1_at, c2_at, t0_at, t1_at, t2_at, m, left, q0, q1, q2, c0, c1, sc, kj,
    at0,
):  # fmt: skip
    """The update pass of one block of :func:`q8_loop`: ``m`` elements from the pointers
    ``*_at`` (parameter, gradient, the rows' codes, the rows' float32 scratch); returns the
    new states' running maxima (:func:`~fastact.kernels.lowp.max_bits`). It runs over pieces
    of PREFETCH_PIECE elements, and before each prefetches the piece PREFETCH_AHEAD
    elements on (parameter, gradient, used code rows; none past ``left`` elements from the
    block's start, the chunk's end). Compiled ``noalias``: the parameters and states never
    overlap (the front end refuses it), the scratch is the loop's own, and a gradient is only
    read (one that is its parameter's own memory gives the same bits; a partial overlap is
    outside the contract, as for the parallel float32 loops). So the pieces' vector loops
    start without runtime overlap checks: with them, ~100 scalar instructions per piece of
    128 elements cost the 8-bit AdamW step 10-20%. Compiled once with ``PLAIN`` true (the
    update without its option branches) and once false."""
    x0 = np.int32(0)
    x1 = np.int32(0)
    x2 = np.int32(0)
    pa = numba.carray(p_at, m)
    ga = numba.carray(g_at, m)
    ca0 = numba.carray(c0_at, m)
    ca1 = numba.carray(c1_at, m)
    ca2 = numba.carray(c2_at, m)
    ta0 = numba.carray(t0_at, m)
    ta1 = numba.carray(t1_at, m)
    ta2 = numba.carray(t2_at, m)
    for h in range(0, m, PREFETCH_PIECE):
        w = min(PREFETCH_PIECE, m - h)
        ahead = h + PREFETCH_AHEAD
        if ahead + w <= left:
            _prefetch_piece(pa, ga, ca0, ca1, ca2, ahead, w, U0, U1, U2)  # noqa: F821
        at = at0 + h  # the piece's first element in the tensor
        pb = pa[h : h + w]
        gb = ga[h : h + w]
        cb0 = ca0[h : h + w]
        cb1 = ca1[h : h + w]
        cb2 = ca2[h : h + w]
        tb0 = ta0[h : h + w]
        tb1 = ta1[h : h + w]
        tb2 = ta2[h : h + w]
        for i in range(w):
            p, s0, s1, s2 = _update(  # noqa: F821
                _val(pb[i]), _val(gb[i]),
                decode8(cb0[i], q0, S0) if U0 else _Z,  # noqa: F821
                decode8(cb1[i], q1, S1) if U1 else _Z,  # noqa: F821
                decode8(cb2[i], q2, S2) if U2 else _Z,  # noqa: F821
                c0, c1, sc, PLAIN,  # noqa: F821
            )  # fmt: skip
            pb[i] = _put_param(pp, p, kj, at + i, SR)  # noqa: F821
            if U0:  # noqa: F821
                tb0[i] = s0
                x0 = max_bits(x0, s0, S0)  # noqa: F821
            if U1:  # noqa: F821
                tb1[i] = s1
                x1 = max_bits(x1, s1, S1)  # noqa: F821
            if U2:  # noqa: F821
                tb2[i] = s2
                x2 = max_bits(x2, s2, S2)  # noqa: F821
    return x0, x1, x2


def q8_loop(pp, sp, ptrs, chunks, coefs, block, key, sc):
    """Blockwise update of 8-bit states (``sp`` uint8 codes, rows 5..7 the block scales),
    in two vector passes per block of ``block`` elements: decode the codes (one fused
    multiply-add per value with the block's decode scale) and update in float32 registers,
    write the parameter, keep the new states in a block-sized float32 scratch per state row
    (in L1/L2) and take their absolute maximum (float32 bit patterns compared as integers:
    vectorizes, and NaN wins); then encode the scratch rows in one loop with the new maxima
    as the blocks' scales. The update pass is :func:`q8_update_block` (``_update_block``,
    compiled ``noalias`` with the same bindings), over pieces with prefetches. S0..S2
    choose the signed or unsigned code per row; ``_update_block_plain`` runs for the plain
    options (``_plain(sc)``). ``_fold(sc)``: per row a factor folded into the decode scale
    (the update takes, e.g., beta1 m: :data:`UPDATES8`)."""
    last = coefs.shape[1] - 1
    plain = _plain(sc)  # noqa: F821
    f0, f1, f2 = _fold(sc)  # noqa: F821
    for c in prange(chunks.shape[0]):
        j = chunks[c, 0]
        start = chunks[c, 1]
        n = chunks[c, 2]
        a0 = _view(ptrs, 2, j, start, n, sp)
        a1 = _view(ptrs, 3, j, start, n, sp)
        a2 = _view(ptrs, 4, j, start, n, sp)
        nb = (n + block - 1) // block
        b0 = start // block
        k0 = _view(ptrs, 5, j, b0, nb, _F32_PROTO)
        k1 = _view(ptrs, 6, j, b0, nb, _F32_PROTO)
        k2 = _view(ptrs, 7, j, b0, nb, _F32_PROTO)
        c0 = coefs[j, 0]
        c1 = coefs[j, last]
        kj = hash32(key + j * 0x632BE5AB)
        buf = np.empty((3, block), dtype=np.float32)
        t0 = buf[0]
        t1 = buf[1]
        t2 = buf[2]
        for b in range(nb):
            o = b * block
            m = min(block, n - o)
            q0 = block_scales(abs_bits(k0[b]), S0)[0] * f0 if U0 else _Z  # noqa: F821
            q1 = block_scales(abs_bits(k1[b]), S1)[0] * f1 if U1 else _Z  # noqa: F821
            q2 = block_scales(abs_bits(k2[b]), S2)[0] * f2 if U2 else _Z  # noqa: F821
            at = start + o  # the block's first element in the tensor
            args = (
                pp,
                _pointer(ptrs[0, j] + at * pp.itemsize, pp),
                _pointer(ptrs[1, j] + at * pp.itemsize, pp),
                _pointer(ptrs[2, j] + at * sp.itemsize, sp),
                _pointer(ptrs[3, j] + at * sp.itemsize, sp),
                _pointer(ptrs[4, j] + at * sp.itemsize, sp),
                _pointer(t0.ctypes.data, t0),
                _pointer(t1.ctypes.data, t1),
                _pointer(t2.ctypes.data, t2),
                m, n - o, q0, q1, q2, c0, c1, sc, kj, at,
            )  # fmt: skip
            if plain:
                x0, x1, x2 = _update_block_plain(*args)  # noqa: F821
            else:
                x0, x1, x2 = _update_block(*args)  # noqa: F821
            # the encode pass: every row in one loop
            i0 = block_scales(x0, S0)[1] if U0 else _Z  # noqa: F821
            i1 = block_scales(x1, S1)[1] if U1 else _Z  # noqa: F821
            i2 = block_scales(x2, S2)[1] if U2 else _Z  # noqa: F821
            eb0 = a0[o : o + m]
            eb1 = a1[o : o + m]
            eb2 = a2[o : o + m]
            for i in range(m):
                if U0:  # noqa: F821
                    eb0[i] = encode8(t0[i], i0, S0)  # noqa: F821
                if U1:  # noqa: F821
                    eb1[i] = encode8(t1[i], i1, S1)  # noqa: F821
                if U2:  # noqa: F821
                    eb2[i] = encode8(t2[i], i2, S2)  # noqa: F821
            if U0:  # noqa: F821
                k0[b] = _f32_from_bits(x0)
            if U1:  # noqa: F821
                k1[b] = _f32_from_bits(x1)
            if U2:  # noqa: F821
                k2[b] = _f32_from_bits(x2)


#: low-precision loop templates: state storage kind -> template (specialized per kernel,
#: used rows, code signs and rounding by the host executor)
LOWP_TEMPLATES = {"elementwise": lowp_loop, "8bit": q8_loop}
#: the inner functions of the low-precision loops, compiled ``noalias`` with the same bindings
#: (bound as ``_update_span`` and ``_update_block``, with ``_plain`` appended for PLAIN true)
LOWP_INNER = {
    "elementwise": ("_update_span", lowp_update_span),
    "8bit": ("_update_block", q8_update_block),
}


#: kernel name -> loop template (compiled serial and parallel by the host executor, for the
#: device by the CUDA executor)
TEMPLATES = {
    "sgd": sgd_loop,
    "adam": adam_loop,
    "adamax": adamax_loop,
    "rmsprop": rmsprop_loop,
    "rprop": rprop_loop,
    "adagrad": adagrad_loop,
    "adadelta": adadelta_loop,
    "nonfinite": nonfinite_loop,
}


#: kernel name -> its fast-math flags where the default set (FASTMATH) changes a result:
#: Adadelta's ``sqrt(u + eps) / sqrt(v + eps) * g`` under ``arcp`` turned an overflowed
#: square average (g^2 = inf in float32: torch's step is then 0) into NaN.
TEMPLATE_FASTMATH = {"adadelta": FASTMATH - {"arcp"}}

#: Number of pointer-table rows (param, grad, state...) each kernel reads.
ROWS = {"sgd": 3, "adam": 5, "adamax": 4, "rmsprop": 5, "rprop": 4, "adagrad": 3, "adadelta": 4}

# ---------------------------------------------------------------------------------------------
# tables and step-dependent coefficients (float64, exactly like torch's Python code)
# ---------------------------------------------------------------------------------------------


def chunk_table(sizes: Sequence[int] | np.ndarray, chunk: int) -> np.ndarray:
    """(n_chunks, 3) int64 table of (tensor, start, length) covering every tensor in order."""
    chunk = int(chunk)
    sizes = np.asarray(sizes, dtype=np.int64).reshape(-1)
    counts = (sizes + (chunk - 1)) // chunk
    total = int(counts.sum())
    tensor = np.repeat(np.arange(sizes.size, dtype=np.int64), counts)
    first = np.cumsum(counts) - counts
    start = (np.arange(total, dtype=np.int64) - np.repeat(first, counts)) * chunk
    length = np.minimum(chunk, sizes[tensor] - start)
    return np.ascontiguousarray(np.stack([tensor, start, length], axis=1))


def adam_coefs(step: float, lr: Any, beta1: Any, beta2: Any) -> tuple[float, float]:
    """(lr / (1 - beta1**t), sqrt(1 - beta2**t)) as torch's single-tensor Adam computes them:
    in float64 Python of numbers, in a tensor's dtype where lr or the betas are tensors (the
    same expressions on them: a float32 lr makes the first float32 arithmetic, as in torch)."""
    bias_correction1 = 1 - beta1**step
    bias_correction2 = 1 - beta2**step
    return float(lr / bias_correction1), float(bias_correction2**0.5)


def adamax_coefs(step: float, lr: Any, beta1: Any) -> tuple[float]:
    """(lr / (1 - beta1**t),) (tensors: as :func:`adam_coefs`)."""
    return (float(lr / (1 - beta1**step)),)


def adagrad_coefs(step: float, lr: Any, lr_decay: float) -> tuple[float]:
    """(lr / (1 + (t - 1) * lr_decay),) (a tensor lr: as :func:`adam_coefs`)."""
    return (float(lr / (1 + (step - 1) * lr_decay)),)


_F32_LIMIT = float(2**24)


def next_step(s: float) -> float:
    """s + 1 as torch's float32 step tensor computes it (exact below 2**24)."""
    if s < _F32_LIMIT:
        return s + 1.0
    return float(np.float32(s) + np.float32(1.0))


# ---------------------------------------------------------------------------------------------
# state storage: how a parameter and its state arrays are stored
# ---------------------------------------------------------------------------------------------

F32 = np.dtype(np.float32)
#: bfloat16 values are stored and passed to the kernels as their uint16 bit patterns
BF16 = np.dtype(np.uint16)
CODES = np.dtype(np.uint8)
#: state_dtype option values (None: the parameter's dtype)
STATE_DTYPES = (None, "float32", "bfloat16", "8bit")
#: pointer-table rows of a low-precision launch: param, grad, 3 state rows, 3 scale rows
LOWP_ROWS = 8
#: state-dict key suffix of the block scales of 8-bit states (``<key>`` holds the codes). It
#: names the code (the float8-like one of fastact.kernels.lowp): states saved with the
#: earlier dynamic code, whose scales were ``<key>_absmax`` (LEGACY_SCALE_SUFFIX), are
#: refused on load instead of being misread.
SCALE_SUFFIX = "_f8absmax"
LEGACY_SCALE_SUFFIX = "_absmax"


@dataclass(frozen=True)
class Storage:
    """One state array of a parameter: the state key's ``suffix`` ('' for the row's main
    array, SCALE_SUFFIX for 8-bit block scales), the stored dtype (``BF16``: bfloat16 bits) and,
    for block scales, the block size (shape ``(ceil(size / block),)``; else the parameter's
    shape and memory order)."""

    suffix: str
    dtype: np.dtype
    block: int = 0

    @property
    def bf16(self) -> bool:
        return self.dtype == BF16

    def shape(self, shape: tuple, size: int) -> tuple:
        return (-(-size // self.block),) if self.block else tuple(shape)

    def fill(self, init: float, signed: bool) -> float:
        """The value new arrays of a row with initial value ``init`` are filled with (8-bit
        codes: the top code when init != 0, with the block scale = init)."""
        if self.dtype == CODES:
            return 0.0 if init == 0 else (127.0 if signed else 255.0)
        return init


@dataclass(frozen=True)
class Layout:
    """How one bucket of parameters is stored: ``param`` the dtype of the parameter and its
    gradient (float32, float64 or ``BF16``), ``state`` the dtype of the state rows
    (``param`` itself: the fp32/fp64 kernels above; float32, ``BF16`` or ``CODES``: the
    low-precision loops), ``block`` the elements per scale of 8-bit states."""

    param: np.dtype
    state: np.dtype
    block: int = 0

    @property
    def native(self) -> bool:
        return self.state == self.param and self.param.kind == "f"

    @property
    def q8(self) -> bool:
        return self.state == CODES

    def arrays(self) -> tuple[Storage, ...]:
        """The arrays of one state row."""
        if self.q8:
            return (Storage("", CODES), Storage(SCALE_SUFFIX, F32, self.block))
        return (Storage("", self.state),)

    def chunk(self, chunk: int) -> int:
        """Elements per chunk: a multiple of the block size near ``chunk``."""
        if not self.block:
            return chunk
        return self.block * max(1, round(chunk / self.block))

    def describe(self) -> str:
        names = {F32: "float32", BF16: "bfloat16", CODES: "8-bit"}
        return names.get(self.state, str(self.state))


def layout_of(options: dict, param: np.dtype, size: int) -> Layout:
    """The storage of a parameter of dtype ``param`` (``BF16`` for bfloat16) and ``size``
    elements under the options ``state_dtype`` (None: the parameter's dtype; 'float32',
    'bfloat16', '8bit'), ``block_size`` and ``min_8bit_size`` (smaller tensors keep float32
    state)."""
    fmt = options.get("state_dtype")
    if fmt is None:
        return Layout(param, param)
    if fmt == "8bit":
        if size < options.get("min_8bit_size", 0):
            return Layout(param, F32 if param == BF16 else param)
        return Layout(param, CODES, int(options["block_size"]))
    state = BF16 if fmt == "bfloat16" else F32
    return Layout(param, param if state == param else state)


# ---------------------------------------------------------------------------------------------
# the spec table
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Optim:
    """An optimizer's spec. ``state``: per kernel state row, (the class's state key, the
    functional API's argument); ``rows(o)``: per row its initial value (a number) or None
    when the options ``o`` leave it unused; ``scalars(o)``: the kernel's group arguments;
    ``coefs(o, step)``: the per-tensor coefficients of a step (None: the first-step flag of
    SGD's momentum buffer, or nothing); ``has_step``: the state counts steps; ``signed``:
    per state row, whether its values can be negative (8-bit states use the signed or the
    unsigned code)."""

    name: str
    functional: str
    kernel: str
    state: tuple[tuple[str, str], ...]
    rows: Callable[[dict], tuple]
    scalars: Callable[[dict], tuple]
    coefs: Callable[[dict, float], tuple] | None
    has_step: bool = True
    #: per state row: its values can be negative (the signed 8-bit code) or not (unsigned)
    signed: tuple[bool, ...] = ()


def _adam_scalars(o: dict) -> tuple:
    lr, wd = o["lr"], o["weight_decay"]
    decoupled = bool(o.get("decoupled_weight_decay", False))
    # torch's p.mul_(1 - lr * weight_decay): a tensor lr's dtype (float32) when it is one
    decay = float(1 - lr * wd) if (decoupled and wd != 0) else 1.0
    return (float(o["beta1"]), float(o["beta2"]), o["eps"], 0.0 if decoupled else wd, decay,
            bool(o["amsgrad"]), bool(o["maximize"]))  # fmt: skip


_ADAM_STATE = (("exp_avg", "exp_avgs"), ("exp_avg_sq", "exp_avg_sqs"),
               ("max_exp_avg_sq", "max_exp_avg_sqs"))  # fmt: skip


def _adam_rows(o: dict) -> tuple:
    return (0.0, 0.0, 0.0 if o["amsgrad"] else None)


def _adam_coefs(o: dict, step: float) -> tuple:
    return adam_coefs(step, o["lr"], o["beta1"], o["beta2"])


OPTIMIZERS: dict[str, Optim] = {
    spec.name: spec
    for spec in (
        Optim(
            "SGD",
            "sgd",
            "sgd",
            (("momentum_buffer", "momentum_buffers"),),
            lambda o: (0.0 if o["momentum"] != 0 else None,),
            lambda o: (
                o["lr"],
                o["weight_decay"],
                o["momentum"],
                o["dampening"],
                bool(o["nesterov"]),
                bool(o["maximize"]),
                o["momentum"] != 0.0,
            ),
            None,
            has_step=False,
            signed=(True,),
        ),
        Optim(
            "Adam",
            "adam",
            "adam",
            _ADAM_STATE,
            _adam_rows,
            _adam_scalars,
            _adam_coefs,
            signed=(True, False, False),
        ),
        Optim(
            "AdamW",
            "adamw",
            "adam",
            _ADAM_STATE,
            _adam_rows,
            _adam_scalars,
            _adam_coefs,
            signed=(True, False, False),
        ),
        Optim(
            "Adamax",
            "adamax",
            "adamax",
            (("exp_avg", "exp_avgs"), ("exp_inf", "exp_infs")),
            lambda o: (0.0, 0.0),
            lambda o: (
                float(o["beta1"]),
                float(o["beta2"]),
                o["eps"],
                o["weight_decay"],
                bool(o["maximize"]),
            ),
            lambda o, step: adamax_coefs(step, o["lr"], o["beta1"]),
            signed=(True, False),
        ),
        Optim(
            "RMSprop",
            "rmsprop",
            "rmsprop",
            (
                ("square_avg", "square_avgs"),
                ("momentum_buffer", "momentum_buffers"),
                ("grad_avg", "grad_avgs"),
            ),
            lambda o: (0.0, 0.0 if o["momentum"] > 0 else None, 0.0 if o["centered"] else None),
            lambda o: (
                o["lr"],
                o["alpha"],
                o["eps"],
                o["weight_decay"],
                o["momentum"],
                bool(o["centered"]),
                bool(o["maximize"]),
            ),
            None,
            signed=(False, True, True),
        ),
        Optim(
            "Rprop",
            "rprop",
            "rprop",
            (("prev", "prevs"), ("step_size", "step_sizes")),
            lambda o: (0.0, o["lr"]),
            lambda o: (
                o["etaminus"],
                o["etaplus"],
                o["step_size_min"],
                o["step_size_max"],
                bool(o["maximize"]),
            ),
            None,
            signed=(True, False),
        ),
        Optim(
            "Adagrad",
            "adagrad",
            "adagrad",
            (("sum", "state_sums"),),
            lambda o: (o["initial_accumulator_value"],),
            lambda o: (o["eps"], o["weight_decay"], bool(o["maximize"])),
            lambda o, step: adagrad_coefs(step, o["lr"], o["lr_decay"]),
            signed=(False,),
        ),
        Optim(
            "Adadelta",
            "adadelta",
            "adadelta",
            (("square_avg", "square_avgs"), ("acc_delta", "acc_deltas")),
            lambda o: (0.0, 0.0),
            lambda o: (o["lr"], o["rho"], o["eps"], o["weight_decay"], bool(o["maximize"])),
            None,
            signed=(False, False),
        ),
    )
}
