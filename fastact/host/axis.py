"""Launches of the activations that work along an axis (PReLU, GLU, Maxout, softmax, RReLU's
training mode) on host arrays: the templates of :mod:`fastact.kernels.axis`, compiled serial
and parallel, picked by size. The front end passes C-contiguous views shaped as the kernels
expect; the CUDA executor has the same functions."""

from __future__ import annotations

import numpy as np

from fastact.host.launch import launch, pair, pick
from fastact.kernels import axis as K

__all__ = [
    "glu_backward",
    "glu_forward",
    "maxout_backward",
    "maxout_forward",
    "multiply",
    "prelu_backward",
    "prelu_forward",
    "rrelu_train",
    "rrelu_train_grad",
    "softmax",
    "softmax_backward",
]

RRELU_TRAIN = pair(K.rrelu_train)
RRELU_TRAIN_GRAD = pair(K.rrelu_train_grad)
PRELU_FORWARD = pair(K.prelu_forward)
PRELU_BACKWARD = pair(K.prelu_backward)
GLU_FORWARD = pair(K.glu_forward)
GLU_BACKWARD = pair(K.glu_backward)
MAXOUT_FORWARD = pair(K.maxout_forward)
MAXOUT_BACKWARD = pair(K.maxout_backward)
SOFTMAX = pair(K.softmax_rows)
SOFTMAX_BACKWARD = pair(K.softmax_rows_backward)
_MAXOUT_ROWS: dict[int, tuple] = {}


def maxout_rows_kernels(pieces: int) -> tuple:
    """((serial, parallel) forward, (serial, parallel) backward) for groups of ``pieces``
    along the last axis (``pieces`` bound at compile time), compiled on first use."""
    ks = _MAXOUT_ROWS.get(pieces)
    if ks is None:
        ks = tuple(
            pair(loop, f"{loop.__name__}_p{pieces}", P=pieces)
            for loop in (K.maxout_rows_forward, K.maxout_rows_backward)
        )
        _MAXOUT_ROWS[pieces] = ks
    return ks


def _i64(key: int) -> int:
    """A 64-bit key as the signed int with the same bits (typed int64 by numba, one signature
    for every key; the kernels cast it back to uint64)."""
    return key - (1 << 64) if key >= 1 << 63 else key


def rrelu_train(x, out, noise, lower: float, span: float, key: int) -> None:
    """Flat arrays: out = x where x > 0, else x * U(lower, lower + span) from the counter
    generator of ``key``; ``noise`` (or None) receives the slopes (1 where x > 0)."""
    write = noise is not None
    nz = noise if write else np.empty(0, x.dtype)
    pick(RRELU_TRAIN, x.size)(x, out, nz, lower, span, _i64(key), write)


def rrelu_train_grad(g, v, out, lower: float, span: float, key: int) -> None:
    pick(RRELU_TRAIN_GRAD, v.size)(g, v, out, lower, span, _i64(key))


def multiply(a, b, out) -> None:
    np.multiply(a, b, out=out, casting="unsafe")


def prelu_forward(x3, w, out3) -> None:
    """x3 (outer, C, inner), one slope per C in ``w`` (C entries)."""
    pick(PRELU_FORWARD, x3.size)(x3, w, out3)


def prelu_backward(g3, x3, w, out3, gw) -> None:
    """out3 = g or w g; ``gw`` (C entries, the weight's dtype) = per-channel sums of x g where
    x <= 0, reduced in float64 per task in a fixed order (thread-count independent)."""
    outer, c_n, inner = x3.shape
    if inner == 1:
        partial = np.zeros((max(1, min(outer, 64)), c_n), np.float64)
    else:
        nb = -(-inner // K.BLOCK)
        partial = np.zeros((outer * c_n * nb, 1), np.float64)
    if x3.size:
        pick(PRELU_BACKWARD, x3.size)(g3, x3, w, out3, partial)
    sums = partial.sum(axis=0) if inner == 1 else partial.reshape(outer, c_n, nb).sum(axis=(0, 2))
    gw[...] = sums.astype(gw.dtype)


def glu_forward(x3, out2) -> None:
    """x3 (outer, 2, half) -> out2 (outer, half)."""
    pick(GLU_FORWARD, x3.size)(x3, out2)


def glu_backward(g2, x3, out3) -> None:
    pick(GLU_BACKWARD, x3.size)(g2, x3, out3)


def maxout_forward(x4, out3) -> None:
    """x4 (outer, cout, pieces, inner) -> out3 (outer, cout, inner)."""
    outer, cout, pieces, inner = x4.shape
    if inner == 1 and pieces in K.MAXOUT_ROW_PIECES:
        fwd, _ = maxout_rows_kernels(pieces)
        pick(fwd, x4.size)(x4.reshape(outer, cout * pieces), out3.reshape(outer, cout))
    else:
        pick(MAXOUT_FORWARD, x4.size)(x4, out3)


def maxout_backward(g3, x4, out4) -> None:
    outer, cout, pieces, inner = x4.shape
    if inner == 1 and pieces in K.MAXOUT_ROW_PIECES:
        _, bwd = maxout_rows_kernels(pieces)
        pick(bwd, x4.size)(
            g3.reshape(outer, cout),
            x4.reshape(outer, cout * pieces),
            out4.reshape(outer, cout * pieces),
        )
    else:
        pick(MAXOUT_BACKWARD, x4.size)(g3, x4, out4)


def softmax(x3, out3, log: bool, sign: float) -> None:
    """Along axis 1 of (outer, C, inner) views; ``sign`` -1 for softmin. Split by rows (the
    leading axis) on torch's pool where :func:`~fastact.host.launch.launch` says so."""
    launch(SOFTMAX, x3.size, (x3, out3, bool(log), float(sign)), (0, 1))


def softmax_backward(g3, y3, out3, log: bool, sign: float) -> None:
    launch(SOFTMAX_BACKWARD, y3.size, (g3, y3, out3, bool(log), float(sign)), (0, 1, 2))
