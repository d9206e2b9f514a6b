"""Low-precision optimizer states and parameters: the 8-bit code, bfloat16 rounding, the 8-bit
and bfloat16-state optimizers against float64 NumPy references, bfloat16 parameters, state
dicts and checkpoints (exact resume), validation."""

from __future__ import annotations

import ml_dtypes  # the test extra installs it
import numpy as np
import pytest
import torch

import fastact.optim as fo
from fastact._core.jit import jit
from fastact._core.math import _bits, _i32
from fastact.kernels.lowp import (
    FRAC_BITS,
    SIGNED_RANGE,
    UNSIGNED_RANGE,
    bf16_store,
    bf16_store_sr,
    block_scales,
    code_values,
    decode8,
    dequantize_blocks,
    encode8,
    hash32,
    max_bits,
    quantize_blocks,
)


@pytest.fixture(autouse=True)
def _keep_torch_rng():
    """These tests seed torch's global generator: give the next test module its state back."""
    state = torch.get_rng_state()
    yield
    torch.set_rng_state(state)


@jit
def _enc(y, scale, signed, out):
    """Codes of ``y`` in a block of scale ``scale`` (float32)."""
    q, inv = block_scales(np.int32(np.float32(scale).view(np.int32)), signed)
    for i in range(y.size):
        out[i] = encode8(y[i], inv, signed)


@jit
def _dec(c, scale, signed, out):
    q, inv = block_scales(np.int32(np.float32(scale).view(np.int32)), signed)
    for i in range(c.size):
        out[i] = decode8(c[i], q, signed)


def _range(signed: bool) -> float:
    return SIGNED_RANGE if signed else UNSIGNED_RANGE


def _f_of(codes: np.ndarray, signed: bool) -> np.ndarray:
    """F(a) of each byte (float64): 2**e (1 + f/8), a = the low 7 bits (signed) or the byte."""
    c = codes.astype(np.int64)
    a = c & 127 if signed else c
    return 2.0 ** (a >> FRAC_BITS) * (1 + (a & 7) / 8)


@jit
def _rne(x, out):
    for i in range(x.size):
        out[i] = bf16_store(x[i])


@jit
def _sr(x, key, out):
    for i in range(x.size):
        out[i] = bf16_store_sr(x[i], key, i)


def _nearest(y: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Distance from each y to the nearest value of ``table`` (float64)."""
    vals = np.unique(table)
    i = np.clip(np.searchsorted(vals, y), 1, len(vals) - 1)
    return np.minimum(np.abs(y - vals[i - 1]), np.abs(y - vals[i]))


def _gap(y: np.ndarray, table: np.ndarray) -> np.ndarray:
    vals = np.unique(table)
    i = np.clip(np.searchsorted(vals, y), 1, len(vals) - 1)
    return vals[i] - vals[i - 1]


# ------------------------------------------------------------------------------- the code
#: bytes the encoder writes (the signed code writes 0 for -0)
def _valid(signed: bool) -> np.ndarray:
    c = np.arange(256)
    return c[c != 128] if signed else c


@pytest.mark.parametrize("signed", [True, False], ids=["signed", "unsigned"])
def test_code_table_shape(signed):
    v = code_values(signed)
    mags = v[:128] if signed else v
    assert np.all(np.diff(mags) > 0)  # monotone, no duplicate
    assert mags[0] == 0.0 and mags[-1] == 1.0
    d = _range(signed)
    assert mags[1] == 0.125 / d  # the bottom binade: steps of 1/8 (before the scaling)
    np.testing.assert_allclose(mags[:8] * d, np.arange(8) / 8, rtol=1e-15)
    if signed:
        np.testing.assert_array_equal(v[128:], -v[:128])  # bit 7 the sign (byte 128: -0)
        assert mags[1] < 2.0**-18.5
    else:
        assert mags[1] < 2.0**-34.5
    # the relative gap between neighbours: at most 1/8 of the lower one once F >= 16, and
    # every binade from F = 2 on holds 8 codes
    f = _f_of(np.arange(128 if signed else 256), signed)
    gap = np.diff(mags)
    big = f[:-1] >= 16
    assert np.all(gap[big] <= mags[:-1][big] / 8 * (1 + 1 / 15) + 1e-18)


@pytest.mark.parametrize("scale", [1.0, 3.25e-5, 7.5e3])
@pytest.mark.parametrize("signed", [True, False], ids=["signed", "unsigned"])
def test_decode_is_the_rounded_definition_and_encode_is_nearest(signed, scale):
    table = code_values(signed)
    d = _range(signed)
    s = np.float32(scale)
    codes = np.arange(256, dtype=np.uint8)
    got = np.empty(256, np.float32)
    _dec(codes, s, signed, got)
    # decode = fl((F(a) - 1) q), q = fl(s / fl(D)), with the sign of the code: exactly
    q = np.float64(np.float32(np.float64(s) / np.float64(np.float32(d))))
    sign = np.where(signed & (codes >= 128), -1.0, 1.0)
    want = (sign * (_f_of(codes, signed) - 1) * q).astype(np.float32)
    np.testing.assert_array_equal(got, want)
    # ... which is the code's value times the scale within one float32 ULP (q's rounding)
    exact = table * np.float64(s)
    assert np.all(np.abs(got - exact) <= np.abs(exact) * 2.0**-23 + 1e-45)
    # every code the encoder writes encodes back to itself
    ok = _valid(signed)
    back = np.empty(ok.size, np.uint8)
    _enc(got[ok], s, signed, back)
    np.testing.assert_array_equal(back, codes[ok])
    rng = np.random.default_rng(1)
    y = np.concatenate(
        [rng.uniform(-1, 1, 200_000), 10 ** rng.uniform(-12, 0, 200_000), [0.0, 1.0, 1e-30]]
    )
    y = np.abs(y) if not signed else np.where(np.arange(y.size) % 3 == 0, -y, y)
    x = (y * np.float64(s)).astype(np.float32)
    c = np.empty(x.size, np.uint8)
    _enc(x, s, signed, c)
    assert signed or c.max() <= 255
    yv = x.astype(np.float64) / np.float64(s)
    err = np.abs(table[c] - yv)
    best = _nearest(yv, table[_valid(signed)])
    # the nearest code, up to float32 rounding at exact midpoints
    assert np.all(err <= best + 1e-4 * _gap(yv, table[_valid(signed)]))
    assert np.mean(err == best) > 0.9999


@pytest.mark.parametrize("signed", [True, False], ids=["signed", "unsigned"])
def test_encode_is_nearest_around_every_midpoint(signed):
    """Float32 values within 64 ULP of each midpoint between two neighbouring codes (both
    sides, both signs; block scale 1) encode to the nearer code in float64, except near-ties:
    where ``y D + 1`` is within 2 ULP (float32, at that magnitude) of the midpoint of two
    neighbouring ``F(a)`` (the encoder rounds ``z = y fl(D) + 1`` to float32 once, then
    rounds z to the code; such near-ties may go either way)."""
    table = code_values(signed)
    vals = np.unique(np.abs(table[_valid(signed)]))
    mids = ((vals[:-1] + vals[1:]) / 2).astype(np.float32)
    off = np.arange(-64, 65, dtype=np.int32)
    bits = mids.view(np.int32)[:, None] + off[None, :]
    y = bits.reshape(-1).view(np.float32)
    keep = (y >= 0) & (y <= 1)
    y = y[keep]
    if signed:
        y = np.concatenate([y, -y])
    c = np.empty(y.size, np.uint8)
    _enc(y, 1.0, signed, c)
    y64 = y.astype(np.float64)
    err = np.abs(table[c] - y64)
    best = _nearest(y64, vals if not signed else np.concatenate([-vals, vals]))
    d = _range(signed)
    z = np.abs(y64) * d + 1
    fs = np.unique(_f_of(np.arange(128 if signed else 256), signed))
    fmid = (fs[:-1] + fs[1:]) / 2
    i = np.clip(np.searchsorted(fmid, z), 1, len(fmid) - 1)
    dist = np.minimum(np.abs(z - fmid[i - 1]), np.abs(z - fmid[i]))
    ulp = np.spacing(np.float32(z)).astype(np.float64)
    far = dist > 2 * ulp
    assert far.mean() > 0.8
    np.testing.assert_array_equal(err[far], best[far])
    # near-ties: one step off at most
    assert np.all(err <= best + _gap(y64, table[_valid(signed)]) * 1e-4)


@pytest.mark.parametrize("block", [16, 64, 2048])
@pytest.mark.parametrize("signed", [True, False], ids=["signed", "unsigned"])
def test_block_round_trip_error_is_bounded(block, signed):
    rng = np.random.default_rng(block)
    n = 5 * block + 7
    x = (rng.standard_normal(n) * np.exp(rng.uniform(-8, 3, n))).astype(np.float32)
    if not signed:
        x = x * x
    codes = np.empty(n, np.uint8)
    absmax = np.empty(-(-n // block), np.float32)
    quantize_blocks(x, block, signed, codes, absmax)
    out = np.empty(n, np.float32)
    dequantize_blocks(codes, absmax, block, signed, out)
    table = code_values(signed)
    d = _range(signed)
    for b in range(absmax.size):
        xb = x[b * block : (b + 1) * block].astype(np.float64)
        ob = out[b * block : (b + 1) * block].astype(np.float64)
        s = np.abs(xb).max()
        assert absmax[b] == np.float32(s)
        y = xb / s
        # per element: at most half the gap between the neighbouring codes (times the
        # scale), plus the float32 roundings of the decode (one ULP)
        bound = 0.5 * _gap(y, table[_valid(signed)]) * s * (1 + 1e-4) + np.abs(xb) * 2.0**-22
        assert np.all(np.abs(ob - xb) <= bound)
        # the block's largest element comes back within one ULP
        k = np.argmax(np.abs(xb))
        assert abs(ob[k] - xb[k]) <= np.spacing(np.float32(abs(xb[k])))
        # relative error where F >= 16 (|y| >= 15 / D): half a gap of 2**e / 8 over a value
        # of at least 2**e - 1, e >= 4: at most 1/15
        top = np.abs(y) >= 15 / d
        rel = np.abs(ob[top] - xb[top]) / np.abs(xb[top])
        assert rel.max() <= 1 / 15 + 1e-6
        # exact zeros stay exact zeros
        assert np.all(ob[xb == 0] == 0)


def test_unsigned_blocks_take_negative_values_as_zero():
    """The unsigned code holds values >= 0 (second moments); a negative value reaching the
    block quantizer (a loaded state, say) becomes code 0, as +0 does, and its magnitude still
    counts in the block's scale."""
    x = np.float32([0.5, -0.25, -1.0, 0.0, 0.125, -1e-30])
    codes = np.empty(x.size, np.uint8)
    absmax = np.empty(1, np.float32)
    quantize_blocks(x, 8, False, codes, absmax)
    assert absmax[0] == 1.0
    assert np.all(codes[x <= 0] == 0)
    assert np.all(codes[x > 0] > 0)


@jit
def _running_max(x, signed):
    acc = np.int32(0)
    for i in range(x.size):
        acc = max_bits(acc, x[i], signed)
    return acc


@pytest.mark.parametrize("signed", [True, False], ids=["signed", "unsigned"])
def test_block_maximum_is_the_largest_magnitude_and_nan_wins(signed):
    """The running block maximum of the 8-bit loops (float32 bit patterns compared as
    integers): the largest magnitude for ordinary values, NaN of either sign above inf."""
    rng = np.random.default_rng(3)
    x = (rng.standard_normal(1000) * np.exp(rng.uniform(-20, 20, 1000))).astype(np.float32)
    if not signed:
        x = np.abs(x)
    got = np.int32(_running_max(x, signed)).view(np.float32)
    assert got == np.abs(x).max()
    big = x.copy()
    big[17] = np.inf
    assert np.int32(_running_max(big, signed)).view(np.float32) == np.inf
    for bits in (0x7FC00000, -0x400000):  # +NaN and x86's default NaN (sign bit set)
        y = big.copy()
        y[500] = np.int32(bits).view(np.float32)
        assert np.isnan(np.int32(_running_max(y, signed)).view(np.float32))


# ------------------------------------------------------------------------------- bfloat16
def test_bf16_round_to_nearest_even_matches_torch():
    rng = np.random.default_rng(2)
    x = np.concatenate(
        [
            rng.standard_normal(100_000) * 10 ** rng.uniform(-40, 38, 100_000),
            [0.0, -0.0, np.inf, -np.inf, np.nan, 3.4e38, 1e-45, -1e-40],
        ]
    ).astype(np.float32)
    # exact ties: the bit 15 set, the rest of the low half zero
    ties = (rng.integers(0, 2**31, 1000, dtype=np.int64) & ~0xFFFF | 0x8000).astype(np.uint32)
    x = np.concatenate([x, ties.view(np.float32)])
    got = np.empty(x.size, np.uint16)
    _rne(x, got)
    want = torch.from_numpy(x).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    nan = np.isnan(x)
    np.testing.assert_array_equal(got[~nan], want[~nan])
    assert np.all((got[nan] & 0x7FC0) == 0x7FC0)


def test_bf16_stochastic_rounding_is_unbiased_and_reproducible():
    rng = np.random.default_rng(3)
    vals = rng.standard_normal(8).astype(np.float32)
    x = np.repeat(vals, 20_000)
    a = np.empty(x.size, np.uint16)
    b = np.empty(x.size, np.uint16)
    _sr(x, 1234, a)
    _sr(x, 1234, b)
    np.testing.assert_array_equal(a, b)  # same key, same bits
    _sr(x, 999, b)
    assert not np.array_equal(a, b)
    f = (a.astype(np.uint32) << 16).view(np.float32).astype(np.float64).reshape(8, -1)
    lo = np.floor  # the two neighbours of each value
    down = ((x.view(np.uint32) >> 16) << 16).view(np.float32).reshape(8, -1)[:, 0]
    ulp = np.abs(((down.view(np.uint32) + 0x10000).view(np.float32)) - down)
    assert lo is np.floor
    # only the two neighbours occur, with the mean within 4 standard errors of the value
    for r in range(8):
        assert set(np.unique(f[r])) <= {float(down[r]), float(down[r]) + np.sign(vals[r]) * ulp[r]}
        se = ulp[r] * 0.5 / np.sqrt(f.shape[1])
        assert abs(f[r].mean() - float(vals[r])) <= 4 * se + 1e-12
    # representable values are kept exactly
    exact = (rng.standard_normal(1000).astype(np.float32).view(np.uint32) & 0xFFFF0000).view(
        np.float32
    )
    out = np.empty(exact.size, np.uint16)
    _sr(exact, 7, out)
    np.testing.assert_array_equal(out, (exact.view(np.uint32) >> 16).astype(np.uint16))


@jit
def _sr_at(x, key, i0, out):
    """bf16_store_sr of x[j] as element i0 + j (int64 indices, past 2**32 too)."""
    for j in range(x.size):
        out[j] = bf16_store_sr(x[j], key, i0 + j)


@jit
def _sr_low_word_only(x, key, i0, out):
    """The formula before the index's high word was hashed (a copy): the bits every index
    below 2**32 must keep (trajectories and checkpoints stay bit-exact)."""
    for j in range(x.size):
        b = _bits(x[j])
        i = i0 + j
        rnd = _i32((hash32(_i32(key) ^ _i32(i * _i32(0x9E3779B9))) >> 16) & 0xFFFF)
        r = _i32(_i32(b + rnd) >> 16)
        r = _i32(b >> 16) if (b & 0x7F800000) == 0x7F800000 else r
        r = r if x[j] == x[j] else _i32(0x7FC0 | _i32((b >> 16) & 0x8000))
        out[j] = np.uint16(r & 0xFFFF)


def test_bf16_stochastic_rounding_hashes_the_whole_element_index():
    """Elements i and i + 2**32 (or + k 2**32) of one tensor round independently: the hash
    took the index's low 32 bits only, so the rounding noise repeated every 2**32 elements.
    Indices below 2**32 give the bits of the old formula. No big arrays: the index is an
    offset."""
    n = 100_000
    half = np.full(n, 1.0 + 2.0**-8, np.float32)  # half an ULP above 1: up with p = 1/2
    base = np.empty(n, np.uint16)
    _sr_at(half, 12345, 0, base)
    assert 0.48 < np.mean(base != base.min()) < 0.52
    other = np.empty(n, np.uint16)
    for i0 in (2**32, 2**33, 5 * 2**32 + 2**31, 2**40 - n):
        _sr_at(half, 12345, i0, other)
        agree = float(np.mean(other == base))
        assert 0.48 < agree < 0.52, f"elements [{i0}, +{n}) agree with [0, {n}) at {agree}"
    _sr_at(half, 12345, 2**32 + 17, other)
    shifted = np.empty(n, np.uint16)
    _sr_at(half, 12345, 2**33 + 17, shifted)
    assert 0.48 < float(np.mean(other == shifted)) < 0.52
    # below 2**32: the same bits as before, for any value (NaN, infinities, subnormals too)
    rng = np.random.default_rng(11)
    x = rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32).view(np.float32)
    got = np.empty(n, np.uint16)
    want = np.empty(n, np.uint16)
    for key in (0, 7, 2**31 + 5, -3):
        for i0 in (0, 2**31 - n // 2, 2**32 - n):
            _sr_at(x, key, i0, got)
            _sr_low_word_only(x, key, i0, want)
            np.testing.assert_array_equal(got, want, err_msg=f"key {key} from element {i0}")


# ------------------------------------------------------------------------------- references
def _q(x: np.ndarray, block: int, signed: bool) -> tuple[np.ndarray, np.ndarray]:
    """float64 reference quantization: per block the absmax (float32) and the nearest code."""
    table = code_values(signed).astype(np.float32).astype(np.float64)
    order = np.argsort(table, kind="stable")
    sv = table[order]
    codes = np.empty(x.size, np.int64)
    scales = np.empty(-(-x.size // block), np.float32)
    for b in range(scales.size):
        xb = x[b * block : (b + 1) * block]
        s = np.float32(np.abs(xb).max())
        scales[b] = s
        y = xb / np.float64(s) if s > 0 else np.zeros_like(xb)
        i = np.clip(np.searchsorted(sv, y), 1, len(sv) - 1)
        pick = np.where(np.abs(y - sv[i - 1]) <= np.abs(y - sv[i]), i - 1, i)
        codes[b * block : (b + 1) * block] = order[pick]
    return codes, scales


def _dq(codes: np.ndarray, scales: np.ndarray, block: int, signed: bool) -> np.ndarray:
    table = code_values(signed).astype(np.float32).astype(np.float64)
    return table[codes] * np.repeat(scales.astype(np.float64), block)[: codes.size]


@pytest.mark.parametrize("n, block", [(1000, 64), (1500, 512)])
def test_adamw8bit_matches_a_float64_reference_of_the_8bit_rule(n, block):
    """AdamW8bit = AdamW's update in float arithmetic on dequantized states, states then
    re-quantized block-wise with the new absmax; a float64 NumPy reference of that rule.
    Blocks of 512 are updated in several prefetch pieces (PREFETCH_PIECE), the last one
    partial: their maxima must still be the whole block's."""
    from fastact.kernels.optim import PREFETCH_PIECE

    assert block <= PREFETCH_PIECE or block % PREFETCH_PIECE == 0 and n % block % PREFETCH_PIECE
    rng = np.random.default_rng(4)
    p = rng.standard_normal(n).astype(np.float32)
    ps = [p.copy()]
    opt = fo.AdamW8bit(ps, lr=1e-2, weight_decay=0.1, block_size=block, min_8bit_size=0)
    lr, b1, b2, eps, wd = 1e-2, 0.9, 0.999, 1e-8, 0.1
    pr = p.astype(np.float64)
    mc, ms = _q(np.zeros(n), block, True)
    vc, vs = _q(np.zeros(n), block, False)
    for t in range(1, 31):
        g = (rng.standard_normal(n) * np.exp(rng.uniform(-3, 1, n))).astype(np.float32)
        opt.step([g])
        m = _dq(mc, ms, block, True)
        v = _dq(vc, vs, block, False)
        g64 = g.astype(np.float64)
        pr = pr * (1 - lr * wd)
        m = m + (1 - b1) * (g64 - m)
        v = b2 * v + (1 - b2) * g64 * g64
        pr = pr - lr / (1 - b1**t) * m / (np.sqrt(v) / np.sqrt(1 - b2**t) + eps)
        mc, ms = _q(m, block, True)
        vc, vs = _q(v, block, False)
        st = opt.state[ps[0]]
        np.testing.assert_allclose(st["exp_avg_f8absmax"], ms, rtol=1e-5)
        np.testing.assert_allclose(st["exp_avg_sq_f8absmax"], vs, rtol=1e-5)
        # codes agree except at float32 midpoint ties (then they differ by one step)
        same = (st["exp_avg"] == mc).mean(), (st["exp_avg_sq"] == vc).mean()
        assert min(same) > 0.99
        np.testing.assert_allclose(ps[0], pr, rtol=2e-4, atol=2e-5)
        mc = st["exp_avg"].astype(np.int64)  # follow fastact's codes (ties)
        vc = st["exp_avg_sq"].astype(np.int64)
        ms, vs = st["exp_avg_f8absmax"].copy(), st["exp_avg_sq_f8absmax"].copy()
        pr = ps[0].astype(np.float64)


def test_prefetch_never_faults():
    """The low-precision loops prefetch ahead of the element they update; the hint must be
    harmless at any address (null, unmapped, past the end of an array)."""
    from fastact._core.jit import jit
    from fastact._core.stream import prefetch as _prefetch

    @jit
    def touch(a, extra):
        _prefetch(0)
        _prefetch(extra)
        _prefetch(a.ctypes.data + a.size * 4 + 4096)
        return a.sum()

    a = np.ones(10, np.float32)
    assert touch(a, 1 << 47) == 10.0


# ------------------------------------------------------------------- the same bits on every path
PATH_CASES = [
    ("AdamW8bit", {"lr": 1e-2}),  # the plain loop
    ("Adam8bit", {"lr": 1e-2}),
    ("Adam8bit", {"lr": 1e-2, "amsgrad": True, "weight_decay": 0.01, "maximize": True}),
    ("SGD8bit", {"lr": 0.05, "momentum": 0.9, "nesterov": True}),
    ("SGD8bit", {"lr": 0.05, "momentum": 0.9, "dampening": 0.1}),
    ("RMSprop8bit", {"lr": 1e-3, "momentum": 0.5}),
    ("Adagrad8bit", {"lr": 0.05, "initial_accumulator_value": 0.1}),
    ("Adam", {"lr": 1e-2, "state_dtype": "bfloat16"}),
    ("SGD", {"lr": 0.05, "momentum": 0.9, "nesterov": True, "state_dtype": "bfloat16"}),
]
_BLOCK = 64


def _pieces_run(name: str, kw: dict, p0: np.ndarray, grads: list, cuts: list) -> tuple:
    """Step ``p0`` cut at ``cuts`` into separate tensors, each with its own optimizer (like
    the shards of a ZeRO rank); the parameters and every state array, concatenated as bytes."""
    ps = [p0[a:b].copy() for a, b in zip(cuts[:-1], cuts[1:], strict=True)]
    extra = {"block_size": _BLOCK, "min_8bit_size": 0} if name.endswith("8bit") else {}
    opts = [getattr(fo, name)([p], **extra, **kw) for p in ps]
    for g in grads:
        for o, a, b in zip(opts, cuts[:-1], cuts[1:], strict=True):
            o.step([g[a:b]])
    states: dict = {}
    for o, p in zip(opts, ps, strict=True):
        for key, val in o.state[p].items():
            if key != "step":
                states.setdefault(key, []).append(np.ascontiguousarray(val).view(np.uint8))
    return np.concatenate(ps).view(np.uint32), {k: np.concatenate(v) for k, v in states.items()}


@pytest.mark.parametrize("cfg", PATH_CASES, ids=lambda c: c[0] + str(sorted(c[1])))
def test_low_precision_steps_give_the_same_bits_on_every_path(cfg, monkeypatch):
    """An element's 8-bit (or bfloat16-state) update depends on its inputs and its block only,
    never on the code path: one tensor in one serial launch; the parallel build; chunks of
    two blocks; the tensor cut at block boundaries into pieces stepped by separate optimizers
    (a ZeRO rank's shard); the general loop for the plain options; all of these at once. The
    parameters, codes and block scales agree bit for bit. (With implicit fast-math
    contraction, the plain and the general loop fused different multiply-adds: parameters
    one ULP and codes one step apart.)"""
    import fastact.host
    import fastact.host.optim as hopt

    name, kw = cfg
    rng = np.random.default_rng(11)
    n = 9 * _BLOCK + 23
    p0 = rng.standard_normal(n).astype(np.float32)
    grads = [
        (rng.standard_normal(n) * np.exp(rng.uniform(-6, 2, n))).astype(np.float32)
        for _ in range(12)
    ]
    cuts = [0, 2 * _BLOCK, 3 * _BLOCK, 7 * _BLOCK, n]
    want_p, want_s = _pieces_run(name, kw, p0, grads, [0, n])
    assert np.all(np.isfinite(want_p.view(np.float32)))

    def check(what: str, got: tuple) -> None:
        np.testing.assert_array_equal(got[0], want_p, err_msg=f"{what}: parameters")
        assert got[1].keys() == want_s.keys()
        for key, val in want_s.items():
            np.testing.assert_array_equal(got[1][key], val, err_msg=f"{what}: {key}")

    check("pieces", _pieces_run(name, kw, p0, grads, cuts))
    monkeypatch.setattr(hopt, "LOWP_GENERAL_ONLY", True)
    check("general loop", _pieces_run(name, kw, p0, grads, [0, n]))
    monkeypatch.setattr(hopt, "LOWP_GENERAL_ONLY", False)
    monkeypatch.setattr(hopt, "SERIAL_BELOW", 0)
    check("parallel", _pieces_run(name, kw, p0, grads, [0, n]))
    monkeypatch.setattr(fastact.host, "OPTIM_CHUNK", 2 * _BLOCK)
    check("parallel, chunks of 2 blocks", _pieces_run(name, kw, p0, grads, [0, n]))
    monkeypatch.setattr(hopt, "LOWP_GENERAL_ONLY", True)
    check("all", _pieces_run(name, kw, p0, grads, cuts))


CASES_8BIT = [
    ("SGD8bit", "SGD", {"lr": 0.05, "momentum": 0.9, "nesterov": True}),
    ("Adam8bit", "Adam", {"lr": 1e-2, "amsgrad": True, "weight_decay": 0.01}),
    ("AdamW8bit", "AdamW", {"lr": 1e-2}),
    ("RMSprop8bit", "RMSprop", {"lr": 1e-3, "momentum": 0.5}),
    ("Adagrad8bit", "Adagrad", {"lr": 0.05, "initial_accumulator_value": 0.1}),
]


def test_centered_rmsprop_with_8bit_states_is_refused():
    """sqrt(v - mean^2) of quantized v and mean goes NaN (near-constant gradients: after ~400
    steps on main before the check), so RMSprop8bit refuses centered=True, in the
    constructor, add_param_group and load_state_dict, before changing anything."""
    import torch

    import fastact.torch.optim as fto

    p = np.zeros(8, np.float32)
    with pytest.raises(ValueError, match="centered=True is not supported with 8-bit states"):
        fo.RMSprop8bit([p], centered=True)
    with pytest.raises(ValueError, match="centered=True is not supported with 8-bit states"):
        fto.RMSprop8bit([torch.zeros(8, requires_grad=True)], centered=True)
    opt = fo.RMSprop8bit([p], min_8bit_size=0)
    with pytest.raises(ValueError, match="centered=True"):
        opt.add_param_group({"params": [np.zeros(3, np.float32)], "centered": True})
    sd = opt.state_dict()
    sd["param_groups"][0]["centered"] = True
    with pytest.raises(ValueError, match="centered=True"):
        opt.load_state_dict(sd)
    assert len(opt.param_groups) == 1 and opt.param_groups[0]["centered"] is False
    fo.RMSprop([p], centered=True, state_dtype="bfloat16")  # bfloat16 states keep it


@pytest.mark.parametrize("cfg", CASES_8BIT, ids=lambda c: c[0])
def test_8bit_optimizers_track_their_float32_twins(cfg):
    """Same trajectory as the float32 class within the code's precision (short run)."""
    name8, name, kw = cfg
    rng = np.random.default_rng(5)
    shapes = [(64, 80), (5000,), (30,)]  # the last one keeps float32 state (min_8bit_size)
    ps = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    qs = [p.copy() for p in ps]
    o8 = getattr(fo, name8)(ps, block_size=256, min_8bit_size=1000, **kw)
    o32 = getattr(fo, name)(qs, **kw)
    for _ in range(20):
        gs = [rng.standard_normal(s).astype(np.float32) for s in shapes]
        o8.step(gs)
        o32.step(gs)
    for p, q, q0 in zip(ps, qs, [rng.standard_normal(1)] * 3, strict=True):
        moved = np.abs(q).max()
        assert np.abs(p - q).max() <= 0.05 * moved, (name8, np.abs(p - q).max())
        del q0
    np.testing.assert_array_equal(ps[2], qs[2])  # float32 state: the float32 kernel, exactly
    st = o8.state[ps[0]]
    keys = [k for k in st if k != "step"]
    assert all(st[k].dtype in (np.uint8, np.float32) for k in keys)
    assert any(st[k].dtype == np.uint8 for k in keys)
    assert all(o8.state[ps[2]][k].dtype == np.float32 for k in o8.state[ps[2]] if k != "step")


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW", "Adamax", "RMSprop", "Rprop", "Adagrad",
                                  "Adadelta"])  # fmt: skip
def test_bfloat16_states_are_the_float32_rule_with_rounded_states(name):
    """state_dtype='bfloat16': each step = the float32 update on the bfloat16 states, the new
    states rounded to nearest even: compared with the float32 class stepping from the same
    (rounded) states, one step at a time."""
    kw = {"SGD": {"lr": 0.05, "momentum": 0.9}, "RMSprop": {"momentum": 0.3, "centered": True},
          "Adagrad": {"initial_accumulator_value": 0.1}}.get(name, {})  # fmt: skip
    rng = np.random.default_rng(6)
    shapes = [(40, 50), (77,)]
    ps = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    qs = [p.copy() for p in ps]
    ob = fo.OPTIMIZERS[name](ps, state_dtype="bfloat16", **kw)
    of = fo.OPTIMIZERS[name](qs, **kw)
    ob.step([rng.standard_normal(s).astype(np.float32) for s in shapes])  # bf16 states exist
    for _ in range(5):
        gs = [rng.standard_normal(s).astype(np.float32) for s in shapes]
        # give the float32 optimizer the bfloat16 optimizer's states (exactly representable)
        for p, q in zip(ps, qs, strict=True):
            for key, val in ob.state.get(p, {}).items():
                if key != "step":
                    of.state[q][key] = val.astype(np.float32)
                else:
                    of.state[q][key] = val
            q[...] = p
        ob.step(gs)
        of.step(gs)
        for p, q in zip(ps, qs, strict=True):
            # the same float32 rule (the loops may contract or order a multiply differently)
            np.testing.assert_allclose(p, q, rtol=3e-6, atol=1e-7)
            for key, val in ob.state[p].items():
                if key == "step":
                    continue
                assert val.dtype == np.dtype(ml_dtypes.bfloat16)
                want = of.state[q][key].astype(ml_dtypes.bfloat16)  # RNE
                d = val.view(np.uint16).astype(np.int64) - want.view(np.uint16).astype(np.int64)
                assert np.abs(d).max() <= 1 and np.mean(d == 0) > 0.99  # ties may flip


def test_bfloat16_torch_params_match_torch_fused_adamw():
    """bfloat16 parameters and gradients, bfloat16 states (torch's layout): torch's fused
    AdamW also computes in float32; both round the results to bfloat16."""
    torch.manual_seed(0)
    a = [torch.randn(s, dtype=torch.bfloat16, requires_grad=True) for s in [(64, 33), (100,)]]
    b = [x.detach().clone().requires_grad_() for x in a]
    fopt = fo.AdamW(a, lr=1e-2)
    topt = torch.optim.AdamW(b, lr=1e-2, fused=True)
    for _ in range(10):
        gs = [torch.randn(x.shape).to(torch.bfloat16) for x in a]
        for x, y, g in zip(a, b, gs, strict=True):
            x.grad, y.grad = g.clone(), g.clone()
        fopt.step()
        topt.step()
    for x, y in zip(a, b, strict=True):
        assert x.dtype == torch.bfloat16
        d = (x.float() - y.float()).abs().max().item()
        assert d <= 2 * 2.0**-8 * y.float().abs().max().item()
        st = fopt.state[x]
        assert st["exp_avg"].dtype == torch.bfloat16 and st["exp_avg_sq"].dtype == torch.bfloat16


def test_bfloat16_params_with_8bit_states_and_stochastic_rounding():
    rng = np.random.default_rng(7)
    base = rng.standard_normal(6000).astype(np.float32)
    runs = []
    for threads in (1, 2):
        import numba

        numba.set_num_threads(threads)
        p = torch.from_numpy(base.copy()).to(torch.bfloat16).requires_grad_()
        opt = fo.AdamW8bit([p], lr=1e-3, stochastic_rounding=True, seed=5, block_size=512)
        g_rng = np.random.default_rng(8)
        for _ in range(5):
            p.grad = torch.from_numpy(g_rng.standard_normal(6000).astype(np.float32)).bfloat16()
            opt.step()
        runs.append(p.detach().clone())
        assert opt.param_groups[0]["rounding_step"] == 5
    assert torch.equal(runs[0], runs[1])  # the same bits whatever the thread count
    # a float32 master copy with the same 8-bit states stays within a few bfloat16 ULPs
    q = torch.from_numpy(base.copy()).to(torch.bfloat16).float().numpy()
    opt = fo.AdamW8bit([q], lr=1e-3, block_size=512)
    g_rng = np.random.default_rng(8)
    for _ in range(5):
        opt.step([torch.from_numpy(g_rng.standard_normal(6000).astype(np.float32)).bfloat16()
                  .float().numpy()])  # fmt: skip
    err = np.abs(runs[0].float().numpy() - q)
    assert err.max() <= 8 * 2.0**-8 * np.abs(q).max()


def test_ml_dtypes_bfloat16_numpy_params():
    rng = np.random.default_rng(9)
    p = rng.standard_normal((30, 40)).astype(ml_dtypes.bfloat16)
    ref = p.astype(np.float32)
    opt = fo.Adam([p], lr=0.1, state_dtype="float32")
    g = rng.standard_normal((30, 40)).astype(np.float32)
    opt.step([g.astype(ml_dtypes.bfloat16)])
    r = [ref]
    fo.Adam(r, lr=0.1).step([g.astype(ml_dtypes.bfloat16).astype(np.float32)])
    np.testing.assert_array_equal(
        p.view(np.uint16), r[0].astype(ml_dtypes.bfloat16).view(np.uint16)
    )
    assert opt.state[p]["exp_avg"].dtype == np.float32
    with pytest.raises(
        TypeError, match=r"grads\[0\] has dtype float32 but params\[0\] has dtype bfloat16"
    ):
        opt.step([g])


# ------------------------------------------------------------------------------- state dicts
@pytest.mark.parametrize("cfg", CASES_8BIT, ids=lambda c: c[0])
@pytest.mark.parametrize("torch_params", [False, True], ids=["numpy", "torch"])
def test_8bit_state_dict_and_checkpoint_resume_exactly(cfg, torch_params, tmp_path):
    name8, _name, kw = cfg
    rng = np.random.default_rng(10)
    shapes = [(50, 70), (20,)]
    init = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    grads = [[rng.standard_normal(s).astype(np.float32) for s in shapes] for _ in range(8)]

    def make():
        ps = [torch.from_numpy(x.copy()) if torch_params else x.copy() for x in init]
        return ps, getattr(fo, name8)(ps, block_size=128, min_8bit_size=100, **kw)

    def run(ps, opt, gs):
        for g in gs:
            opt.step([torch.from_numpy(x) if torch_params else x for x in g])

    a, oa = make()
    run(a, oa, grads)
    b, ob = make()
    run(b, ob, grads[:4])
    path = tmp_path / "opt.fa"
    fo.save(ob.state_dict(), path)
    c, oc = make()
    sd = fo.load(path)
    oc.load_state_dict(sd)
    for x, y in zip(b, c, strict=True):
        y[...] = x
    run(c, oc, grads[4:])
    for x, y in zip(a, c, strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    for x, y in zip(a, c, strict=True):
        for key, val in oa.state[x].items():
            other = oc.state[y][key]
            if key == "step":
                assert val == other
            else:
                np.testing.assert_array_equal(np.asarray(val), np.asarray(other))


def test_float32_state_loads_into_8bit_and_back():
    """A float32 AdamW state dict loads into AdamW8bit (quantized on load) and an 8-bit one
    into AdamW (decoded), within the code's precision."""
    rng = np.random.default_rng(11)
    p = [rng.standard_normal(5000).astype(np.float32)]
    o32 = fo.AdamW(p)
    for _ in range(3):
        o32.step([rng.standard_normal(5000).astype(np.float32)])
    q = [p[0].copy()]
    o8 = fo.AdamW8bit(q, block_size=256)
    o8.load_state_dict(o32.state_dict())
    st = o8.state[q[0]]
    assert st["exp_avg"].dtype == np.uint8 and st["exp_avg_f8absmax"].shape == (20,)
    back = fo.AdamW([q[0].copy()])
    back.load_state_dict(o8.state_dict())
    m32 = o32.state[p[0]]["exp_avg"]
    mb = next(iter(back.state._d.values()))[1]["exp_avg"]
    assert mb.dtype == np.float32
    # half the largest gap of the signed code (the top binade: 2**15 / 8 of D) per block
    assert np.abs(mb - m32).max() <= np.abs(m32).max() * 2.0**15 / 16 / SIGNED_RANGE * 1.0001


def test_8bit_state_dict_loads_into_the_float32_classes_directly():
    """An 8-bit state dict loads straight into the float32 class (decoded) and into a
    bfloat16-state one, which keep their own storage options (as fastact.torch.optim): the
    loader took the saved group's state_dtype and refused "'8bit' for AdamW"; a bfloat16
    state dict turned a float32 AdamW into a bfloat16 one."""
    rng = np.random.default_rng(12)
    p = [rng.standard_normal(5000).astype(np.float32)]
    o8 = fo.AdamW8bit(p, block_size=256)
    for _ in range(3):
        o8.step([rng.standard_normal(5000).astype(np.float32)])
    for kw, dt in (({}, np.float32), ({"state_dtype": "bfloat16"}, ml_dtypes.bfloat16)):
        o = fo.AdamW([p[0].copy()], **kw)
        o.load_state_dict(o8.state_dict())
        assert o.param_groups[0].get("state_dtype") == kw.get("state_dtype")
        st = next(iter(o.state._d.values()))[1]
        assert st["exp_avg"].dtype == dt and "exp_avg_f8absmax" not in st
        m8 = np.empty(5000, np.float32)
        dequantize_blocks(
            o8.state[p[0]]["exp_avg"], o8.state[p[0]]["exp_avg_f8absmax"], 256, True, m8
        )
        np.testing.assert_allclose(st["exp_avg"].astype(np.float32), m8, rtol=1 / 128, atol=0)
    sgd8 = fo.SGD8bit([p[0].copy()], lr=0.1, momentum=0.9, min_8bit_size=0)
    sgd8.step([np.ones(5000, np.float32)])
    sgd = fo.SGD([p[0].copy()], lr=0.1, momentum=0.9)
    sgd.load_state_dict(sgd8.state_dict())
    st = next(iter(sgd.state._d.values()))[1]
    np.testing.assert_allclose(st["momentum_buffer"], 1.0, rtol=1 / 15)


@pytest.mark.parametrize("cls", ["SGD8bit", "Adam8bit"])
def test_8bit_switch_under_float32_state_is_refused(cls):
    """min_8bit_size lowered under float32 state: the state is not in the group's storage
    any more (codes' key holding the float32 array, no scales). SGD8bit dropped its momentum
    silently (the buffer made afresh as the gradient); Adam8bit's error named a key it has."""
    p = np.zeros(64, np.float32)
    kw = {"momentum": 0.9} if cls == "SGD8bit" else {}
    opt = getattr(fo, cls)([p], lr=0.1, min_8bit_size=10**6, block_size=16, **kw)
    for _ in range(3):
        opt.step([np.ones(64, np.float32)])
    before = p.copy()
    opt.param_groups[0]["min_8bit_size"] = 0
    with pytest.raises(ValueError, match="stored otherwise than the group"):
        opt.step([np.ones(64, np.float32)])
    np.testing.assert_array_equal(p, before)
    opt.param_groups[0]["min_8bit_size"] = 10**6  # set back: steps on
    opt.step([np.ones(64, np.float32)])
    assert not np.array_equal(p, before)


# ------------------------------------------------------------------------------- validation
def test_bad_storage_options_are_rejected():
    p = [np.zeros(10, np.float32)]
    for bad, err in [(0, ValueError), (24, ValueError), (-16, ValueError), (16.0, TypeError)]:
        with pytest.raises(err, match="block_size"):
            fo.AdamW8bit(p, block_size=bad)
    with pytest.raises(ValueError, match="state_dtype"):
        fo.Adam(p, state_dtype="float16")
    with pytest.raises(ValueError, match="8-bit classes"):
        fo.Adam(p, state_dtype="8bit")
    with pytest.raises(TypeError, match="stochastic_rounding"):
        fo.Adam(p, stochastic_rounding=1)
    with pytest.raises(TypeError, match="float64"):
        fo.AdamW8bit([np.zeros(5000)])
    with pytest.raises(TypeError, match="float64"):
        fo.SGD([np.zeros(3)], state_dtype="bfloat16", momentum=0.9)


def test_bad_8bit_state_is_rejected_before_writing():
    rng = np.random.default_rng(12)
    p = [rng.standard_normal(5000).astype(np.float32), rng.standard_normal(6000).astype(np.float32)]
    opt = fo.AdamW8bit(p, block_size=256)
    g = [np.ones(5000, np.float32), np.ones(6000, np.float32)]
    opt.step(g)
    before = [x.copy() for x in p]
    st_before = {k: v.copy() for k, v in opt.state[p[0]].items() if k != "step"}
    opt.state[p[1]]["exp_avg_sq_f8absmax"] = np.zeros(3, np.float32)  # wrong block count
    with pytest.raises(ValueError, match=r"exp_avg_sq_f8absmax.*shape"):
        opt.step(g)
    opt.state[p[1]]["exp_avg_sq_f8absmax"] = np.zeros(24, np.float64)
    with pytest.raises(TypeError, match="exp_avg_sq_f8absmax"):
        opt.step(g)
    opt.state[p[1]]["exp_avg_sq_f8absmax"] = np.zeros(24, np.float32)
    opt.state[p[1]]["exp_avg"] = np.zeros(6000, np.float32)  # not codes
    with pytest.raises(TypeError, match="exp_avg"):
        opt.step(g)
    for x, y in zip(p, before, strict=True):
        np.testing.assert_array_equal(x, y)
    for k, v in st_before.items():
        np.testing.assert_array_equal(opt.state[p[0]][k], v)


def test_skip_nonfinite_and_schedulers_with_8bit_states():
    rng = np.random.default_rng(13)
    p = [rng.standard_normal(5000).astype(np.float32)]
    opt = fo.AdamW8bit(p, lr=0.1)
    sched = fo.lr_scheduler.StepLR(opt, step_size=1, gamma=0.0)
    g = rng.standard_normal(5000).astype(np.float32)
    bad = g.copy()
    bad[17] = np.nan
    before = p[0].copy()
    opt.step([bad], skip_nonfinite=True)
    assert opt.found_inf
    np.testing.assert_array_equal(p[0], before)
    assert not opt.state[p[0]] or "exp_avg" not in opt.state[p[0]]
    opt.step([g])
    moved = p[0].copy()
    assert not np.array_equal(moved, before)
    sched.step()  # lr 0: only the states move
    opt.step([g])
    np.testing.assert_array_equal(p[0], moved)


def test_state_bytes_per_parameter():
    n = 1 << 16
    for cls, kw, most in [
        (fo.AdamW8bit, {}, 2.1),
        (fo.AdamW, {"state_dtype": "bfloat16"}, 4.0),
    ]:
        p = [np.zeros(n, np.float32)]
        opt = cls(p, **kw)
        opt.step([np.ones(n, np.float32)])
        nbytes = sum(v.nbytes for k, v in opt.state[p[0]].items() if k != "step")
        assert nbytes / n <= most


def test_state_of_the_earlier_8bit_code_is_refused():
    """Codes saved with fastact's earlier (base-8 dynamic) 8-bit code had their scales under
    '<key>_absmax'; their bytes mean other values in the float8-like code, so loading them
    is a clear ValueError (into an 8-bit or a float32 class), before anything changes."""
    rng = np.random.default_rng(14)
    p = [rng.standard_normal(5000).astype(np.float32)]
    opt = fo.AdamW8bit(p, block_size=256)
    opt.step([rng.standard_normal(5000).astype(np.float32)])
    sd = opt.state_dict()
    st = sd["state"][0]
    for key in ("exp_avg", "exp_avg_sq"):
        st[key + "_absmax"] = st.pop(key + "_f8absmax")
    before = {k: np.copy(v) for k, v in opt.state[p[0]].items() if k != "step"}
    with pytest.raises(ValueError, match=r"earlier 8-bit code.*_absmax"):
        opt.load_state_dict(sd)
    for g in sd["param_groups"]:  # the float32 class takes the groups without 8-bit options
        for k in ("state_dtype", "block_size", "min_8bit_size"):
            g.pop(k, None)
    with pytest.raises(ValueError, match=r"earlier 8-bit code.*_absmax"):
        fo.AdamW([p[0].copy()]).load_state_dict(sd)
    for k, v in before.items():
        np.testing.assert_array_equal(opt.state[p[0]][k], v)


def test_low_precision_inner_loops_run_without_overlap_checks(monkeypatch):
    """The pieces' vector loops of the low-precision kernels start without LLVM's runtime
    overlap checks: their functions are compiled ``noalias`` (checked on the compiled IR of
    each inner function the steps below call, against the same function compiled without
    the promise, which has them)."""
    import fastact.host.optim as H
    from fastact._core.jit import EXACT_FASTMATH, specialize
    from fastact.kernels.optim import LOWP_INNER

    calls = []
    original = H._lowp_kernel

    def spy(*key, **kw):
        kernel = original(*key, **kw)

        def run(*args):
            # the kernel compiled here, while its arrays live (a kernel loaded from the disk
            # cache would not compile its inner function); then the real one
            fresh = specialize(
                kernel.py_func, f"probe_outer_{len(calls)}", fastmath=EXACT_FASTMATH,
                cache=False,
            )  # fmt: skip
            fresh(*args)
            calls.append(kernel)
            return kernel(*args)

        return run

    monkeypatch.setattr(H, "_lowp_kernel", spy)
    rng = np.random.default_rng(11)
    p = rng.standard_normal(5000).astype(np.float32)
    q = p.copy()
    fo.AdamW8bit([p], min_8bit_size=0).step([p * 0.1])
    fo.AdamW([q], state_dtype="bfloat16").step([q * 0.1])
    assert len(calls) == 2
    for k, kernel in enumerate(calls):
        (name,) = {name for name, _ in LOWP_INNER.values()} & set(kernel.py_func.__globals__)
        for variant in (name, name + "_plain"):
            inner = kernel.py_func.__globals__[variant]
            assert inner._compiler.pipeline_class.__name__ == "_NoAliasCompiler"
            sig = inner.signatures[0]
            for noalias in (True, False):
                twin = specialize(
                    inner.py_func, f"probe_{k}{variant}_{int(noalias)}", noalias=noalias,
                    inline=False, cache=False,
                )  # fmt: skip
                twin.compile(sig)
                ir = twin.inspect_llvm(sig)
                assert "vector.body" in ir  # vectorized either way
                assert ("vector.memcheck" in ir) is not noalias, (k, variant, noalias)


@pytest.mark.parametrize("make", [
    lambda ps: fo.AdamW8bit(ps, lr=1e-2, min_8bit_size=0),
    lambda ps: fo.AdamW(ps, lr=1e-2, state_dtype="bfloat16"),
], ids=["8bit", "bfloat16"])  # fmt: skip
def test_gradient_in_its_parameters_memory_gives_the_same_bits(make):
    """The low-precision loops are compiled ``noalias``; a gradient is only read, so one that
    is its parameter's own memory still gives the element-wise result, bit for bit."""
    rng = np.random.default_rng(12)
    p1 = (rng.standard_normal(10007) * 1e-3).astype(np.float32)
    p2 = p1.copy()
    o1, o2 = make([p1]), make([p2])
    for _ in range(3):
        o1.step([p1])
        o2.step([p2.copy()])
        np.testing.assert_array_equal(p1, p2)


def test_stochastic_rounding_streams_differ_between_groups_and_launches():
    """The random bits hash (seed, step, tensor, element) with the tensor's group and launch
    in it: two groups (or an 8-bit and a float32-state launch of one group) with identical
    tensors round differently (the tensor index restarted per launch, so tensor j of every
    group shared a stream), while one seed still reproduces the same bits."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal(4096).astype(np.float32)
    g = rng.standard_normal(4096).astype(ml_dtypes.bfloat16)

    def run(groups):
        ps = [x.astype(ml_dtypes.bfloat16) for _ in range(2)]
        opt = fo.SGD([{"params": [p]} for p in ps] if groups else [ps[0], ps[1]], lr=1e-3,
                     stochastic_rounding=True, seed=0)  # fmt: skip
        opt.step([g, g])
        return [p.view(np.uint16).copy() for p in ps]

    for groups in (True, False):
        a, b = run(groups)
        assert (a != b).sum() > 500, groups
        a2, b2 = run(groups)
        np.testing.assert_array_equal(a, a2)
        np.testing.assert_array_equal(b, b2)


@pytest.mark.parametrize("bad", [-5.0, float("nan"), float("inf")])
def test_a_loaded_or_edited_step_count_must_be_finite_and_non_negative(bad):
    """A negative step made the bias correction complex (a TypeError from inside the step),
    a NaN one the parameters NaN: ValueError naming the state, nothing written (a loaded
    state dict, and torch step tensors edited in place)."""
    p = np.ones(3, np.float32)
    opt = fo.Adam([p])
    opt.step([np.ones(3, np.float32)])
    sd = opt.state_dict()
    sd["state"][0]["step"] = bad
    opt.load_state_dict(sd)
    before = p.copy()
    with pytest.raises(ValueError, match=r"state\[params\[0\]\]\['step'\] must be a finite"):
        opt.step([np.ones(3, np.float32)])
    np.testing.assert_array_equal(p, before)
    import fastact.torch.optim as FO

    t = torch.nn.Parameter(torch.ones(3))
    topt = FO.Adam([t])
    t.grad = torch.ones(3)
    topt.step()
    topt.state[t]["step"].fill_(bad)
    before = t.detach().clone()
    with pytest.raises(ValueError, match="must be a finite number >= 0"):
        topt.step()
    assert torch.equal(t.detach(), before)


def test_8bit_codes_cast_to_float_are_refused_on_load():
    """A state dict whose 8-bit codes were cast to float (a "cast the state to float64"
    helper) loaded the codes 0..255 as moment values and dropped the scales: ValueError."""
    p = np.linspace(-1, 1, 8192).astype(np.float32)
    opt = fo.AdamW8bit([p])
    opt.step([np.full(8192, 1e-3, np.float32)])
    sd = opt.state_dict()
    sd["state"][0]["exp_avg"] = sd["state"][0]["exp_avg"].astype(np.float64)
    fresh = fo.AdamW8bit([p.copy()])
    with pytest.raises(ValueError, match="8-bit codes must stay uint8"):
        fresh.load_state_dict(sd)


def test_8bit_codes_decode_in_the_groups_block_size():
    """Codes decode in blocks of the loaded group's block_size, not a guess from the number of
    scales (a power of two first): block 3072 over 6000 elements was read in blocks of 4096,
    the third quarter scaled by the first block's maximum. Also for fastact.torch.optim."""
    import fastact.torch.optim as fto

    n, b = 6000, 3072
    g = np.where(np.arange(n) < b, 100.0, 0.01).astype(np.float32)
    p = np.zeros(n, np.float32)
    o8 = fo.AdamW8bit([p], lr=1e-3, block_size=b, min_8bit_size=0)
    o8.step([g])
    sd = o8.state_dict()
    o = fo.AdamW([p.copy()], lr=1e-3)  # float32 storage: the codes are decoded on load
    o.load_state_dict(sd)
    m = o.state[o.param_groups[0]["params"][0]]["exp_avg"]
    np.testing.assert_allclose(m[[0, b - 1]], 10.0, rtol=1 / 15)
    np.testing.assert_allclose(m[[b, 4095, 4096, n - 1]], 1e-3, rtol=1 / 15)
    # into another block size (fastact.torch.optim keeps its own): decoded in the saved one
    tp = torch.nn.Parameter(torch.zeros(n))
    to = fto.AdamW8bit([tp], lr=1e-3, block_size=2048, min_8bit_size=0)
    to.load_state_dict(o8.state_dict())
    st = to.state[tp]
    vals = np.empty(n, np.float32)
    dequantize_blocks(st["exp_avg"].numpy(), st["exp_avg_f8absmax"].numpy(), 2048, True, vals)
    np.testing.assert_allclose(vals[[b, 4095, 4096]], 1e-3, rtol=1 / 7)
    # scales that do not fit the group's block size are refused
    bad = o8.state_dict()
    bad["param_groups"][0]["block_size"] = 2048
    with pytest.raises(ValueError, match="do not fit 6000 elements in blocks of 2048"):
        fo.AdamW8bit([p.copy()], min_8bit_size=0).load_state_dict(bad)


def test_8bit_block_size_change_under_state_is_refused():
    """block_size edited in a group whose parameters hold 8-bit state: the codes would be read
    in other blocks (with the same number of blocks silently, 48 -> 32 over 64 elements)."""
    g = np.concatenate([np.full(48, 100.0), np.full(16, 0.01)]).astype(np.float32)
    p = np.zeros(64, np.float32)
    opt = fo.Adam8bit([p], lr=0.01, block_size=48, min_8bit_size=0)
    opt.step([g])
    before = p.copy()
    opt.param_groups[0]["block_size"] = 32
    with pytest.raises(ValueError, match="block_size changed from 48 to 32"):
        opt.step([g])
    np.testing.assert_array_equal(p, before)
    opt.param_groups[0]["block_size"] = 48
    opt.step([g])
    opt.state.clear()  # afresh: any block size
    opt.param_groups[0]["block_size"] = 32
    opt.step([g])


@pytest.mark.parametrize("api", ["numpy", "torch"])
@pytest.mark.parametrize("how", ["moved", "params changed", "deepcopy", "pickle", "loaded"])
def test_8bit_block_size_change_refused_on_every_path(api, how):
    """The block size a parameter's 8-bit codes were written with is kept with the state
    map: a parameter moved into a group of another block_size, a block_size changed together
    with the params list (both clear the group's cached layouts) or after a deepcopy or a
    pickle round trip is refused like an edit in place (the codes were read in the new
    blocks: 100 elements in blocks of 64 or 96 are 2 blocks either way, and an element took
    its neighbouring block's scale, a 7.7x smaller update)."""
    import copy
    import pickle

    import fastact.torch.optim as fto

    n = 100
    scale = np.ones(n, np.float32)
    scale[:64] = 100.0

    def make():
        if api == "numpy":
            ps = [np.zeros(n, np.float32), np.zeros(16, np.float32)]
            cls = fo.AdamW8bit
        else:
            ps = [torch.zeros(n, requires_grad=True), torch.zeros(16, requires_grad=True)]
            cls = fto.AdamW8bit
        groups = [{"params": [ps[0]], "block_size": 64}, {"params": [ps[1]], "block_size": 96}]
        return cls(groups, lr=0.01, weight_decay=0, min_8bit_size=0), ps

    def step(opt):
        params = [p for g in opt.param_groups for p in g["params"]]
        grads = [scale if len(p) == n else np.ones(len(p), np.float32) for p in params]
        if api == "numpy":
            opt.step(grads)
        else:
            for p, g in zip(params, grads, strict=True):
                p.grad = torch.from_numpy(g.copy())
            opt.step()

    opt, ps = make()
    for _ in range(3):
        step(opt)
    if how == "moved":
        opt.param_groups[0]["params"].remove(ps[0])
        opt.param_groups[1]["params"].append(ps[0])
    elif how == "loaded":  # a new optimizer loads the state dict, then its block_size changes
        sd = opt.state_dict()
        opt, ps = make()
        opt.load_state_dict(sd)
        opt.param_groups[0]["block_size"] = 96
    else:
        if how == "deepcopy":
            opt = copy.deepcopy(opt)
        elif how == "pickle":
            opt = pickle.loads(pickle.dumps(opt))
        else:
            extra = np.zeros(3, np.float32) if api == "numpy" else torch.zeros(3).requires_grad_()
            opt.param_groups[1]["params"].append(extra)
        opt.param_groups[0]["block_size"] = 96
    params = [p for g in opt.param_groups for p in g["params"]]
    before = [(p.detach().numpy() if api == "torch" else p).copy() for p in params]
    with pytest.raises(ValueError, match="block_size changed from 64 to 96"):
        step(opt)
    for p, b in zip(params, before, strict=True):  # nothing written
        np.testing.assert_array_equal(p.detach().numpy() if api == "torch" else p, b)
    opt.state.clear()  # afresh: any block size
    step(opt)


def test_8bit_block_record_does_not_keep_removed_parameters():
    """The block-size record holds its parameters weakly and pickles only those with state:
    a parameter dropped from the optimizer before it had state is freed and not saved."""
    import gc
    import pickle
    import weakref

    big = np.zeros(1 << 20, np.float32)
    small = np.zeros(64, np.float32)
    opt = fo.Adam8bit([big, small], lr=0.01, min_8bit_size=0)
    opt.step([None, np.ones(64, np.float32)])  # big: an 8-bit layout, no state
    ref = weakref.ref(big)
    opt.param_groups[0]["params"] = [small]
    opt.step([np.ones(64, np.float32)])
    del big
    gc.collect()
    assert ref() is None
    assert len(pickle.dumps(opt)) < 1 << 16


def test_8bit_state_of_an_empty_parameter_round_trips():
    p = np.zeros(0, np.float32)
    opt = fo.Adam8bit([p], min_8bit_size=0)
    opt.step([p])
    opt.load_state_dict(opt.state_dict())  # its empty scales were "not a block scale array"
    opt.step([p])
    assert opt.state[p]["step"] == 2
