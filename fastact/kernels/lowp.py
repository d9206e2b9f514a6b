"""Low-precision number formats of optimizer states and parameters: an 8-bit dynamic code with
per-block scales, bfloat16 with round-to-nearest-even or stochastic rounding, and the
counter-based random numbers of stochastic rounding. jit code only (plus the float64 tables
that document the code, for tests and docs).

**The 8-bit code** (after Dettmers et al., "8-bit Optimizers via Block-wise Quantization",
2021: block-wise absmax scaling and a *dynamic* non-linear code). A state tensor is cut into
blocks of ``block_size`` elements; each block stores one float32 scale (its absolute maximum
``s``) and one byte per element that codes ``x / s`` in [-1, 1]. Like the paper's dynamic
tree code, a byte holds an exponent written as a run of leading zeros, an indicator bit 1,
and a linear fraction in the remaining bits, so large values get more fraction bits than
small ones and the code spans six to seven orders of magnitude:

* signed code (first moments, momentum buffers): bit 7 the sign, 7 magnitude bits ``m``;
* unsigned code (second moments, square averages, sums: never negative): 8 magnitude bits.

With ``G`` = magnitude bits - 1 (6 signed, 7 unsigned), a magnitude ``m >= 1`` has ``F =
floor(log2 m)`` fraction bits after its indicator bit and exponent ``E = G - F``; its value is

    8**-E * (1/8 + 7/8 * (m - 2**F + 1) / 2**F)           (m = 0 codes 0)

i.e. ``2**F`` evenly spaced values on (8**-(E+1), 8**-E] (the paper uses base 10; base 8
keeps the same shape, 11% instead of 14% relative spacing at the bottom of a decade, and makes
both directions exponent-bit arithmetic that vectorizes, with no table lookup). The largest
code is exactly 1 (a block's largest element is stored exactly), the smallest non-zero one
8**-6 (signed) or 8**-7 (unsigned). Encoding rounds to the nearest code (ties within a few
float32 ULP of a midpoint may go either way). Because the value is linear in ``m`` inside a
decade and the bottom of decade E is the top of decade E+1, ``m = round(t * A_F + B_F)`` with
``t = y * 8**E`` lands on the right code across decade boundaries too.

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
    "SIGNED_MAX_EXP",
    "UNSIGNED_MAX_EXP",
    "code_values",
    "decode8",
    "encode8",
    "bf16_load",
    "bf16_store",
    "bf16_store_sr",
    "hash32",
    "abs_bits",
    "quantize_blocks",
    "dequantize_blocks",
]

#: Largest exponent E (leading zeros) of the signed and the unsigned code.
SIGNED_MAX_EXP = 6
UNSIGNED_MAX_EXP = 7

_F1 = np.float32(1.0)
_F0 = np.float32(0.0)
_THREE4 = np.float32(0.75)
_A = np.float32(8.0 / 7.0)  # t * 2**F * 8/7 ...
_B = np.float32(6.0 / 7.0)  # ... + 2**F * 6/7 - 1/2, then floor: the nearest m
_HALF = np.float32(0.5)


def code_values(signed: bool) -> np.ndarray:
    """The 256 values of the signed or unsigned code (float64, index = byte), for tests/docs."""
    g = SIGNED_MAX_EXP if signed else UNSIGNED_MAX_EXP
    out = np.zeros(256)
    for c in range(256):
        m = c & 127 if signed else c
        if m:
            f = m.bit_length() - 1
            e = g - f
            out[c] = 8.0**-e * (0.125 + 0.875 * (m - 2**f + 1) / 2**f)
        if signed and c & 128:
            out[c] = -out[c]
    return out


_I0 = np.int32(0)


@jit(fastmath=EXACT_FASTMATH)
def decode8(code, signed):
    """The code's value in [-1, 1] (float32); ``signed`` is a compile-time constant.

    With ``fb`` = the exponent field of float32(m) (``(127 + F) << 23``), ``7/8 * 2**-F`` and
    ``8**-E = 2**(3F - 3G)`` are single integer operations on ``fb``; every step is exact, so
    the result is the float32 rounding of the float64 definition (:func:`code_values`).
    Integer steps are truncated to int32 (``_i32``) so that they stay in 32-bit vector lanes
    (AVX2 has no vector int64 <-> float conversion); ~13 vector operations per 8 codes."""
    c = _i32(code)
    m = _i32(c & 127) if signed else c
    mf = np.float32(m)
    fb = _i32(_bits(mf) & 0x7F800000)  # (127 + F) << 23; 0 for m = 0
    # 7/8 * 2**-F = 1.75 * 2**(-1 - F): exponent field 253 - (127 + F), fraction 0.75
    a = _f32_from_bits(_i32(0x7EE00000 - fb))
    # 8**-E = 2**(3F - 3G): exponent field 3 * (127 + F) - (254 + 3G) (mod 2**32)
    p8e = _f32_from_bits(_i32(fb * 3 - ((254 + 3 * (6 if signed else 7)) << 23)))
    v = _fma(mf + _F1, a, -_THREE4) * p8e  # the product is exact: the fma is one operation less
    v = v if m != _I0 else _F0
    if signed:
        return _f32_from_bits(_i32(_bits(v) | _i32((c & 128) << 24)))
    return v


@jit(fastmath=EXACT_FASTMATH)
def encode8(y, signed):
    """The nearest code of ``y`` (|y| <= 1 after scaling; larger magnitudes clamp to the top
    code). NaN gives an arbitrary code (its block's scale is NaN then).

    ``k = -1 - floor(log2 |y|)`` (clamped to [0, 3G]) gives the decade ``E = floor(k / 3)``;
    ``t = |y| * 8**E`` in [1/8, 1] is an exponent-field addition (exact for normal |y|;
    zero and subnormals land in the bottom decade and round to code 0 either way), and
    ``m = floor(t * 2**F * 8/7 + 2**F * 6/7 - 1/2)`` (bottom decade: ``floor(2t)``, the
    midpoint between 0 and 8**-G). ~22 vector operations per 8 values."""
    b = _bits(y)
    ay = _f32_from_bits(_i32(b & 0x7FFFFFFF))
    ay = ay if ay < _F1 else _F1
    ab = _bits(ay)
    g = np.int32(6) if signed else np.int32(7)
    k = _i32(126 - (ab >> 23))
    k = k if k > _I0 else _I0
    k = k if k < 3 * g else _i32(3 * g)
    e = _i32((k * 11) >> 5)  # floor(k / 3) for 0 <= k <= 24
    t = _f32_from_bits(_i32(ab + e * (3 << 23)))  # |y| * 8**E
    two_f = _f32_from_bits(_i32(((127 + g) << 23) - (e << 23)))  # 2**F, F = G - E
    top = e < g
    a = two_f * _A if top else np.float32(2.0)
    c = _fma(two_f, _B, -_HALF) if top else _F0  # two_f * _B is exact (two_f a power of 2)
    m = np.int32(np.floor(_fma(t, a, c)))  # one rounding (explicit: no fast-math here)
    if signed:
        return np.uint8(_i32(m | _i32((b >> 24) & 128)))
    return np.uint8(m)


@jit(fastmath=EXACT_FASTMATH)
def abs_bits(x):
    """|x|'s float32 bit pattern as int32: ordered like |x| (NaN above inf), for max-reductions
    that vectorize without fast-math's no-NaN flag."""
    return _i32(_bits(x) & 0x7FFFFFFF)


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
    magnitudes above the largest bfloat16 may round to infinity (as round-to-nearest does)."""
    b = _bits(x)
    rnd = _i32((hash32(_i32(key) ^ _i32(i * _i32(0x9E3779B9))) >> 16) & 0xFFFF)
    r = _i32(_i32(b + rnd) >> 16)
    r = _i32(b >> 16) if (b & 0x7F800000) == 0x7F800000 else r
    r = r if x == x else _i32(0x7FC0 | _i32((b >> 16) & 0x8000))
    return np.uint16(r & 0xFFFF)


@jit(fastmath=EXACT_FASTMATH)
def quantize_blocks(x, block, signed, codes, absmax):
    """Block-wise 8-bit quantization of the float32 1-d array ``x``: ``absmax[b]`` = the
    largest magnitude of block ``b`` (``block`` elements), ``codes[i]`` = the nearest code of
    ``x[i] / absmax``. (The optimizer loops fuse this with the update.)"""
    n = x.shape[0]
    for b in range((n + block - 1) // block):
        o = b * block
        m = min(block, n - o)
        mx = np.int32(0)
        for i in range(m):
            mx = max(mx, abs_bits(x[o + i]))
        s = _f32_from_bits(mx)
        inv = np.float32(1.0) / s if s > _F0 else _F0
        for i in range(m):
            codes[o + i] = encode8(x[o + i] * inv, signed)
        absmax[b] = s


@jit(fastmath=EXACT_FASTMATH)
def dequantize_blocks(codes, absmax, block, signed, out):
    """``out[i]`` = value of ``codes[i]`` times its block's ``absmax`` (float32)."""
    for i in range(codes.shape[0]):
        out[i] = decode8(codes[i], signed) * absmax[i // block]
