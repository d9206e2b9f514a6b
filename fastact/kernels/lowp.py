"""Low-precision number formats of optimizer states and parameters: an 8-bit dynamic code with
per-block scales, bfloat16 with round-to-nearest-even or stochastic rounding, and the
counter-based random numbers of stochastic rounding. jit code only (plus the float64 tables
that document the code, for tests and docs).

**The 8-bit code** (after Dettmers et al., "8-bit Optimizers via Block-wise Quantization",
2021: block-wise absmax scaling and a *dynamic* non-linear code). A state tensor is cut into
blocks of ``block_size`` elements; each block stores one float32 scale ``s`` (its largest
magnitude) and one byte per element. The code is float8-like: a byte's magnitude bits ``a``
are an exponent field ``e = a >> 3`` and three fraction bits ``f = a & 7``,

    F(a) = 2**e * (1 + f / 8),        value(a) = (F(a) - 1) / D,        D = F(top) - 1,

* signed code (first moments, momentum buffers): bit 7 the sign, ``a`` = the 7 other bits
  (4 exponent bits);
  ``D = 1.875 * 2**15 - 1``; the smallest non-zero magnitude is ``1/8 / D`` (2**-18.9);
* unsigned code (second moments, square averages, sums: never negative): ``a`` = the byte
  (5 exponent bits), ``D = 1.875 * 2**31 - 1``; smallest non-zero value ``1/8 / D``
  (2**-34.9: a second moment is flushed to 0 only far below where the first moment is).

Code 0 is exactly 0, the top code exactly 1 (times ``s``); subtracting 1 = F(0) turns the
bottom binade into evenly spaced "subnormal" steps of 1/8, so no value needs special cases.
Above it, each binade has 8 codes: the nearest code is within half a step of 2**e / 8 of a
value of at least 2**e - 1 (relative 1/8 in the binade e = 1, at most 1/15 from e = 4 on,
tending to 1/16); like the paper's code, the spacing grows with the magnitude, and the code
spans 6 (signed) or 10 (unsigned) orders of magnitude.

In a block of scale ``s`` an element's value is ``value(a) * s``, computed as ``F q - q``
with ``q = fl(s / fl(D))`` in one fused multiply-add (so exactly the float32 rounding of
``(F(a) - 1) q``; the block's largest element comes back within one ULP). Encoding takes
``z = |x| inv + 1`` (``inv = fl(fl(D) / s)``, one rounding) and rounds it to the nearest
``F(a)`` on its bit pattern (``a = (bits(z) - bits(1) + 2**19) >> 20``): the nearest code,
up to ties within float32 rounding of a midpoint. Both directions are a few vector integer
operations and one fused multiply-add per value, without table lookups (decode: 4 operations
per 8 unsigned codes, 7 signed; encode 4 and 7 plus the packing).

**bfloat16**: the top 16 bits of a float32 (stored as uint16 bit patterns); written with
round-to-nearest-even (NaN stays NaN), or stochastically: add 16 random bits below the kept
ones, then truncate (exact for values already representable; the expected value is the input).
The random bits come from a counter-based hash of (key, element index), so a seed gives the
same bits whatever the thread count or chunking.
"""

from __future__ import annotations

import numpy as np

from fastact._core.jit import EXACT_FASTMATH, jit
from fastact._core.math import _bits, _f32_from_bits, _fma, _i32

__all__ = [
    "SIGNED_EXP_BITS",
    "UNSIGNED_EXP_BITS",
    "FRAC_BITS",
    "SIGNED_RANGE",
    "UNSIGNED_RANGE",
    "code_values",
    "block_scales",
    "decode8",
    "encode8",
    "bf16_load",
    "bf16_store",
    "bf16_store_sr",
    "hash32",
    "abs_bits",
    "max_bits",
    "quantize_blocks",
    "dequantize_blocks",
]

#: exponent and fraction bits of the signed code's magnitude (7 bits) and of the unsigned
#: code (8 bits); the fraction bits of both
SIGNED_EXP_BITS = 4
UNSIGNED_EXP_BITS = 5
FRAC_BITS = 3
#: D = F(top) - 1 of the signed and unsigned code (float64, exact), see the module docstring
SIGNED_RANGE = 2.0**15 * 1.875 - 1.0
UNSIGNED_RANGE = 2.0**31 * 1.875 - 1.0

_F1 = np.float32(1.0)
_F0 = np.float32(0.0)
_I0 = np.int32(0)
_ONE_BITS = np.int32(0x3F800000)  # bits of 1.0f
_SHIFT = 23 - FRAC_BITS
_ROUND = np.int32((1 << (_SHIFT - 1)) - 0x3F800000)  # half a code step, minus bits(1.0)
_SIGN = np.int32(-0x80000000)
_SIGN_MAG = np.int32(-0x78100000)  # 0x87F00000: the sign bit and a << 20
_D_S = np.float32(SIGNED_RANGE)  # exact
_D_U = np.float32(UNSIGNED_RANGE)  # 1.875 * 2**31 (the float32 nearest D)
_BIG = np.float32(3.4028234663852886e38)


def code_values(signed: bool) -> np.ndarray:
    """The 256 values of the signed or unsigned code in [-1, 1] (float64, index = byte; the
    signed code's bit 7 is the sign, so byte 128 is -0), for tests and docs."""
    d = SIGNED_RANGE if signed else UNSIGNED_RANGE
    out = np.zeros(256)
    for c in range(256):
        a = c & 127 if signed else c
        f = 2.0 ** (a >> FRAC_BITS) * (1.0 + (a & 7) / 8.0)  # F(a)
        out[c] = (f - 1.0) / d
        if signed and c & 128:
            out[c] = -out[c]
    return out


@jit(fastmath=EXACT_FASTMATH)
def block_scales(top, signed):
    """(``q``, ``inv``) of a block whose largest magnitude has the float32 bit pattern ``top``
    (``s``): the decode scale ``q = s / D`` and the encode factor ``inv = D / s`` (0 for
    ``s = 0``; at most the largest float32, so that zeros stay code 0 for subnormal ``s``)."""
    s = _f32_from_bits(top)
    d = _D_S if signed else _D_U
    inv = d / s if s > _F0 else _F0
    inv = inv if inv < _BIG else _BIG
    return s / d, inv


@jit(fastmath=EXACT_FASTMATH)
def decode8(code, q, signed):
    """The value of ``code`` in a block of decode scale ``q`` (:func:`block_scales`):
    ``(F(a) - 1) q`` with the code's sign, as one fused multiply-add ``F q - q`` (so exactly
    the float32 rounding of ``(F(a) - 1) q``); ``F(a)`` is the float32 with bit pattern
    ``(a << 20) + bits(1.0)``. ``signed`` is a compile-time constant. Unsigned: 4 vector
    operations per 8 codes (widen, shift, add, fma); signed 7: the byte sign-extended and
    shifted puts the sign on bit 31 and ``a`` on bits 20..26, so ``±F(a)`` is one mask and
    one add, and ``fma(±F, q, ∓q)`` takes ``∓q`` from the same sign bit (and, xor)."""
    if signed:
        t = _i32(_i32(np.int8(code)) << _SHIFT)  # the byte on bits 20..27, its sign above
        fs = _f32_from_bits(_i32(_i32(t & _SIGN_MAG) + _ONE_BITS))  # ±F(a)
        nq = _f32_from_bits(_i32(_bits(-q) ^ _i32(t & _SIGN)))  # ∓q
        return _fma(fs, q, nq)
    f = _f32_from_bits(_i32(_i32(_i32(code) << _SHIFT) + _ONE_BITS))
    return _fma(f, q, -q)


@jit(fastmath=EXACT_FASTMATH)
def encode8(x, inv, signed):
    """The code nearest ``x`` in a block of encode factor ``inv`` (:func:`block_scales`):
    ``z = |x| inv + 1`` (one rounding), rounded to the nearest ``F(a)`` on its bit pattern
    (``a = (bits(z) - bits(1) + 2**19) >> 20``, a logical shift: ties in ``z`` go up), clamped
    to the top code by the unsigned saturating pack, the sign bit of ``x`` put on bit 7
    (signed code). The unsigned code takes ``x >= 0`` (a negative ``x`` gives an arbitrary
    code), and NaN gives an arbitrary code (its block's scale is NaN then). Unsigned: 4
    vector operations per 16 values (fma, add, shift, pack), signed 6 (+ and, shift and or
    in one ternary logic operation)."""
    b = _bits(x)
    if signed:
        ax = _f32_from_bits(_i32(b & np.int32(0x7FFFFFFF)))
        z = _fma(ax, inv, _F1)
    else:
        z = _fma(x, inv, _F1)
    # z >= 1 (or NaN): a logical shift keeps a in [0, 4095], so one unsigned clamp (the
    # saturating pack) is all the range check needed
    a = np.uint32(_i32(_bits(z) + _ROUND)) >> np.uint32(_SHIFT)
    if signed:
        a = a | np.uint32(_i32(b >> 24) & 128)  # finite x: a <= 127
    return np.uint8(min(a, np.uint32(255)))


@jit(fastmath=EXACT_FASTMATH)
def abs_bits(x):
    """|x|'s float32 bit pattern as int32: ordered like |x| (NaN above inf), for max-reductions
    that vectorize without fast-math's no-NaN flag."""
    return _i32(_bits(x) & 0x7FFFFFFF)


@jit(fastmath=EXACT_FASTMATH)
def max_bits(acc, x, signed):
    """The running absolute maximum ``acc`` (float32 bit patterns as int32, see
    :func:`abs_bits`) updated with ``x``. Values of the unsigned code are never negative
    (``+0`` or more, or NaN), so their raw bit patterns are compared as unsigned integers:
    the same order, NaN of either sign above inf, one vector instruction less per value."""
    if signed:
        return max(acc, abs_bits(x))
    return _i32(max(np.uint32(acc), np.uint32(_bits(x))))


@jit(fastmath=EXACT_FASTMATH)
def bf16_load(h):
    """bfloat16 bit pattern (uint16) -> float32 (exact)."""
    return _f32_from_bits(_i32(_i32(h) << 16))


@jit(fastmath=EXACT_FASTMATH)
def bf16_store(x):
    """float32 -> bfloat16 bit pattern, round to nearest even; NaN stays a quiet NaN."""
    b = _bits(x)
    r = _i32(_i32(b + _i32(0x7FFF + _i32((b >> 16) & 1))) >> 16)
    r = r if x == x else _i32(0x7FC0 | _i32((b >> 16) & 0x8000))
    return np.uint16(r & 0xFFFF)


@jit(fastmath=EXACT_FASTMATH)
def hash32(x):
    """A 32-bit integer hash (xorshift-multiply finalizer with full avalanche) on the low 32
    bits of ``x``, in int32 lanes (logical shifts by masking)."""
    x = _i32(x)
    x = _i32(x ^ ((x >> 16) & 0xFFFF))
    x = _i32(x * 0x7FEB352D)
    x = _i32(x ^ ((x >> 15) & 0x1FFFF))
    x = _i32(x * _i32(0x846CA68B))
    return _i32(x ^ ((x >> 16) & 0xFFFF))


@jit(fastmath=EXACT_FASTMATH)
def bf16_store_sr(x, key, i):
    """float32 -> bfloat16 bit pattern, rounded stochastically with the random bits of
    (``key``, element ``i``): the magnitude rounds up with probability (distance to the value
    below) / ULP, so the expected result is ``x``. Infinities and NaN are kept (NaN quiet);
    magnitudes above the largest bfloat16 may round to infinity (as round-to-nearest does).

    The hash's input mixes both 32-bit words of ``i``: with the low word alone, elements i
    and i + 2**32 of a tensor always rounded the same way. The high word's term is 0 below
    2**32, so those elements keep the bits they always had (trajectories, checkpoints)."""
    b = _bits(x)
    high = _i32(_i32(np.int64(i) >> np.int64(32)) * _i32(0x85EBCA6B))
    rnd = _i32((hash32(_i32(key) ^ _i32(i * _i32(0x9E3779B9)) ^ high) >> 16) & 0xFFFF)
    r = _i32(_i32(b + rnd) >> 16)
    r = _i32(b >> 16) if (b & 0x7F800000) == 0x7F800000 else r
    r = r if x == x else _i32(0x7FC0 | _i32((b >> 16) & 0x8000))
    return np.uint16(r & 0xFFFF)


@jit(fastmath=EXACT_FASTMATH)
def quantize_blocks(x, block, signed, codes, absmax):
    """Block-wise 8-bit quantization of the float32 1-d array ``x``: ``absmax[b]`` = the
    largest magnitude of block ``b`` (``block`` elements), ``codes[i]`` = the nearest code of
    ``x[i]`` in its block. (The optimizer loops fuse this with the update.)"""
    n = x.shape[0]
    for b in range((n + block - 1) // block):
        o = b * block
        m = min(block, n - o)
        mx = np.int32(0)
        for i in range(m):
            mx = max(mx, abs_bits(x[o + i]))
        q, inv = block_scales(mx, signed)
        for i in range(m):
            v = x[o + i]
            if not signed and v < _F0:  # outside the unsigned code: code 0, as for +0
                v = _F0
            codes[o + i] = encode8(v, inv, signed)
        absmax[b] = _f32_from_bits(mx)


@jit(fastmath=EXACT_FASTMATH)
def dequantize_blocks(codes, absmax, block, signed, out):
    """``out[i]`` = the value of ``codes[i]`` in its block (scale ``absmax[i // block]``)."""
    n = codes.shape[0]
    for b in range((n + block - 1) // block):
        o = b * block
        q, inv = block_scales(abs_bits(absmax[b]), signed)
        for i in range(min(block, n - o)):
            out[o + i] = decode8(codes[o + i], q, signed)
