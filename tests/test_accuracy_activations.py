"""ULP accuracy of activation gradients and forwards against mpmath (issue 18).

Each case compares fastact with a 160-bit mpmath evaluation of the mathematical definition
on dense samples of the regions where a formula cancels: bands of consecutive floats and
wider bands around each zero of a derivative, around 0, the tails, and random log-uniform
magnitudes of both signs, in float32 and float64, with grad_output = 1. Errors are in ULP of
the exact result in the result's dtype (the subnormal spacing below the smallest normal), so
an exact zero of the derivative must come out exactly 0.

Bounds: 4 ULP for gradients, 2 ULP for forwards (issue 18's targets). The references are
computed once per module (a few seconds) and shared by the tests.
"""

from __future__ import annotations

import functools

import mpmath
import numpy as np
import pytest

import fastact

MP = mpmath.mp.clone() if hasattr(mpmath.mp, "clone") else mpmath.mp
PREC = 160
DTYPES = (np.float32, np.float64)
IDS = ("f32", "f64")

#: roots of the derivatives (to float64 precision; the bands only need their location)
SILU_ROOT = -1.2784645427610738
MISH_ROOT = -1.1924312145154952


# ------------------------------------------------------------------------------ reference
def _mp(fn, xs) -> tuple[np.ndarray, np.ndarray]:
    """fn at each x (float) with mpmath at PREC bits, as a float64 double-word (hi, lo)."""
    hi = np.empty(len(xs))
    lo = np.empty(len(xs))
    with mpmath.workprec(PREC):
        for i, x in enumerate(xs):
            v = fn(mpmath.mpf(float(x)))
            h = float(v)
            hi[i] = h
            lo[i] = float(v - h) if np.isfinite(h) else 0.0
    return hi, lo


def ulp_err(got, ref, dtype) -> np.ndarray:
    """|got - exact| in ULP of the exact value in ``dtype`` (subnormal spacing below the
    smallest normal); ``ref`` is the (hi, lo) pair from :func:`_mp`."""
    hi, lo = ref
    got = np.asarray(got, np.float64)
    fi = np.finfo(dtype)
    _, e = np.frexp(hi)  # |hi| = m 2^e, m in [0.5, 1)
    e = np.maximum(e, fi.minexp + 1)  # below the smallest normal: the subnormal spacing
    ulp = np.ldexp(1.0, e - fi.nmant - 1)
    ulp = np.where(hi == 0, np.ldexp(1.0, fi.minexp - fi.nmant), ulp)
    return np.abs((got - hi) - lo) / ulp


def _bits_band(center, n, dtype) -> np.ndarray:
    """2n + 1 consecutive floats of ``dtype`` around ``center``."""
    c = np.array([center], dtype)
    it = np.int32 if dtype == np.float32 else np.int64
    b = c.view(it)[0]
    return (b + np.arange(-n, n + 1, dtype=it)).view(dtype)


def _loguniform(rng, lo_exp, hi_exp, n, dtype) -> np.ndarray:
    m = 10.0 ** rng.uniform(lo_exp, hi_exp, n)
    return (m * rng.choice([-1.0, 1.0], n)).astype(dtype)


def samples(dtype, roots=(), lin=(), n_band=1000, seed=0) -> np.ndarray:
    """The hard regions: consecutive floats and a wider linear band around each root and 0,
    linear ranges ``lin`` ((a, b, n) triples), log-uniform magnitudes of both signs."""
    rng = np.random.default_rng(seed)
    big = 30 if dtype == np.float32 else 300
    parts = [_loguniform(rng, -big, big, 2000, dtype), _loguniform(rng, -3, 1.5, 2000, dtype)]
    for r in (*roots, 0.0):
        parts.append(_bits_band(r, n_band, dtype))
        if r != 0.0:
            parts.append(np.linspace(r - 0.5, r + 0.5, 2001).astype(dtype))
            off = np.ldexp(1.0, -np.arange(8, 60 if dtype == np.float64 else 30))
            parts.append((r + np.concatenate([off, -off])).astype(dtype))
    for a, b, n in lin:
        parts.append(np.linspace(a, b, n).astype(dtype))
    x = np.unique(np.concatenate(parts))
    return x[np.isfinite(x)]


# ------------------------------------------------------------------------------ definitions
def _sig(x):
    return 1 / (1 + mpmath.exp(-x))


def _d_sigmoid(x):
    s = _sig(x)
    return s * _sig(-x)


def _d_silu(x):
    return _sig(x) * (1 + x * _sig(-x))


def _d_mish(x):
    sp = mpmath.log1p(mpmath.exp(x))
    t = mpmath.tanh(sp)
    return t + x * (1 - t * t) * _sig(x)


def _tanhshrink(x):
    return x - mpmath.tanh(x)


def _d_tanhshrink(x):
    return mpmath.tanh(x) ** 2


def _d_hardswish(x):
    if x <= -3:
        return mpmath.mpf(0)
    if x >= 3:
        return mpmath.mpf(1)
    return x / 3 + mpmath.mpf(1) / 2


#: name -> (fastact call on x, reference, sample options, bound in ULP)
GRADS = {
    "sigmoid": (_d_sigmoid, dict(lin=((-30, 30, 3001),))),
    "silu": (_d_silu, dict(roots=(SILU_ROOT,), lin=((-110, 110, 4001), (-4, 2, 4001)))),
    "mish": (_d_mish, dict(roots=(MISH_ROOT,), lin=((-110, 30, 4001), (-4, 2, 4001)))),
    "tanhshrink": (_d_tanhshrink, dict(lin=((-20, 20, 4001),))),
    "hardswish": (_d_hardswish, dict(roots=(-1.5,), lin=((-3.5, 3.5, 7001),))),
}


@functools.cache
def _grad_case(name, dtype):
    fn, opts = GRADS[name]
    x = samples(dtype, **opts)
    return x, _mp(fn, x)


def _report(err, x, what):
    i = int(np.argmax(err))
    return f"{what}: worst {err[i]:.3g} ULP at x = {float(x[i])!r}"


@pytest.mark.parametrize("dtype", DTYPES, ids=IDS)
@pytest.mark.parametrize("name", sorted(GRADS))
def test_gradient_from_input_within_4_ulp(name, dtype):
    x, ref = _grad_case(name, dtype)
    got = getattr(fastact, name + "_backward")(np.ones_like(x), x)
    err = ulp_err(got, ref, dtype)
    assert err.max() <= 4.0, _report(err, x, f"{name}_backward {np.dtype(dtype).name}")
