"""References for the float64 activation sample (``scripts/ulp_sample_float64.py``).

The float64 twin of :mod:`ulp_reference` (which serves the float32 sweep): for every activation,
NumPy-vectorized functions of a float64 array evaluated in x87 extended precision
(``np.longdouble``: 64-bit significand, 11 bits more than float64, and glibc's long double
``expl``, ``tanhl``, ``log1pl``, ``expm1l``, ``coshl``), returning long double arrays:

* ``FORWARD64[name](x)``      ``f(x)``,
* ``GRAD64[name](x)``         ``f'(x)`` (grad_output = 1),
* ``GRAD_OUTPUT64[name](y)``  the gradient written with the output (``d(y)``, ``f'(x) = d(f(x))``),

at the parameters of :data:`ulp_reference.PARAMS` (torch's defaults). The functions are the
mathematical ones: exact constants (SELU's from their decimal strings, ``sqrt(2/pi)`` and
0.044715 for gelu(tanh)), the leaky slope as the float64 value torch receives.

Accuracy (``tests/test_ulp_reference_f64.py`` checks every function against mpmath at 200
bits, in the regions below): within 0.05 float64 ULP (subnormal spacing below the smallest
normal) except gelu(tanh)'s far negative tail (|x| > 8), where the rounding of its argument
``2 sqrt(2/pi) (x + c x^3)`` in long double costs up to ~0.25 ULP. How:

* the same cancellation-free formulas as the float32 references (sigmoid pairs, ``4 e /
  (1 + e)^2`` for tanh', ``x sigmoid(2z)`` for gelu(tanh), ...);
* around the derivatives' roots (silu', mish', gelu', gelu-tanh'): the Taylor series about
  the root (mpmath coefficients at 200 bits, ``r`` in two long double words), ``|x - r| < 1/8``;
* x - tanh x for |x| < 1/4: its series (Bernoulli coefficients in long double);
* erfc (gelu, gelu'): ``1 - erf`` from erf's series of positive terms below 1, a continued
  fraction above; ``exp(-x^2 / 2)`` as ``exp(-xh^2/2) exp(-(xh xl + xl^2/2))`` with ``x = xh +
  xl`` split so that ``xh^2`` is exact (the exponent's rounding would otherwise cost up to
  ~0.5 ULP at |x| ~ 38).
"""

from __future__ import annotations

import mpmath
import numpy as np
import ulp_reference as R32

__all__ = ["FORWARD64", "GRAD64", "GRAD_OUTPUT64", "ROOTS64", "ld", "to_mpf"]

LD = np.longdouble
_NTERMS = 30  # Taylor terms about the roots: |d| < 1/8, radius > 2: truncation < 2^-110
_BAND = LD(0.125)


def ld(v) -> np.longdouble:
    """mpmath number (or decimal string) -> long double, within one long double ULP: the sum of
    its two leading float64 words, rounded once."""
    with mpmath.workprec(200):
        v = mpmath.mpf(v)
        h1 = float(v)
        return LD(h1) + LD(float(v - mpmath.mpf(h1)))


def to_mpf(v) -> mpmath.mpf:
    """long double -> mpmath number, exactly: its significand (in [0.5, 1)) as two float64
    words, times 2^exponent (so values outside float64's range convert too)."""
    m, e = np.frexp(LD(v))
    h1 = np.float64(m)
    h2 = np.float64(m - LD(h1))
    with mpmath.workprec(200):
        return mpmath.ldexp(mpmath.mpf(float(h1)) + mpmath.mpf(float(h2)), int(e))


def _two_ld(v) -> tuple:
    with mpmath.workprec(200):
        hi = ld(v)
        return hi, ld(mpmath.mpf(v) - to_mpf(hi))


with mpmath.workprec(200):
    _SELU_ALPHA = ld(R32._SELU_ALPHA_S)
    _SELU_SCALE = ld(R32._SELU_SCALE_S)
    _AS = ld(mpmath.mpf(R32._SELU_ALPHA_S) * mpmath.mpf(R32._SELU_SCALE_S))
    _AS_HI, _AS_LO = _two_ld(mpmath.mpf(R32._SELU_ALPHA_S) * mpmath.mpf(R32._SELU_SCALE_S))
    _K = ld(mpmath.sqrt(2 / mpmath.pi))  # sqrt(2/pi)
    _C = ld("0.044715")
    _RSQRT2 = ld(1 / mpmath.sqrt(2))
    _RSQRT2PI = ld(1 / mpmath.sqrt(2 * mpmath.pi))
    _RSQRTPI2 = ld(2 / mpmath.sqrt(mpmath.pi))
    _RSQRTPI = ld(1 / mpmath.sqrt(mpmath.pi))
    _TSH = tuple(
        ld(-(4**m) * (4**m - 1) * mpmath.bernoulli(2 * m) / mpmath.factorial(2 * m))
        for m in range(2, 24)
    )

_ONE, _ZERO, _HALF = LD(1), LD(0), LD(0.5)


def _x(a) -> np.ndarray:
    return np.asarray(a, dtype=np.float64).astype(LD)


def _nan_or(x, v):
    return np.where(np.isnan(x), LD(np.nan), v)


def _sig_pair(x):
    """(sigmoid(x), sigmoid(-x)) in long double, neither tail cancelling."""
    e = np.exp(-np.abs(x))
    r = _ONE / (_ONE + e)
    return np.where(x >= 0, r, e * r), np.where(x >= 0, e * r, r)


def _softplus0(x):
    return np.maximum(x, _ZERO) + np.log1p(np.exp(-np.abs(x)))


def _split(x):
    """x = xh + xl (float64 x as long double): xh with 26 significant bits, so xh * xh is
    exact in long double (the 2^27 + 1 Veltkamp split, done in float64)."""
    xd = x.astype(np.float64)
    t = xd * 134217729.0
    with np.errstate(invalid="ignore", over="ignore"):
        hi = np.where(np.isfinite(t), t - (t - xd), xd)
    return hi.astype(LD), x - hi.astype(LD)


def _exp_half_square(x):
    """exp(-x^2 / 2) with the exponent's rounding error removed (see the module docstring)."""
    xh, xl = _split(x)
    return np.exp(-(xh * xh) * _HALF) * np.exp(-(xh * xl + xl * xl * _HALF))


def _erfc_nonneg(a, ehs):
    """erfc(a) for finite a >= 0 (long double), given ``ehs`` = exp(-a^2) computed accurately:
    below 1, ``1 - erf(a)`` with erf(a) = 2/sqrt(pi) exp(-a^2) sum_n (2a^2)^n a / (1 3 ...
    (2n+1)) (positive terms); above, exp(-a^2)/sqrt(pi) / (a + (1/2)/(a + 1/(a + (3/2)/(a +
    ...)))) evaluated from a fixed depth (deeper where it converges slowly, near 1)."""
    out = np.empty_like(a)
    lo = a < 1
    if lo.any():
        b, e = a[lo], ehs[lo]
        b2 = b * b
        term = b.copy()
        total = b.copy()
        for n in range(1, 40):
            term = term * (b2 + b2) / LD(2 * n + 1)
            total = total + term
        out[lo] = _ONE - _RSQRTPI2 * e * total
    for sel, depth in (((a >= 1) & (a < 3), 1500), ((a >= 3) & (a < 8), 300), (a >= 8, 60)):
        if sel.any():
            b = a[sel]
            f = b.copy()
            for k in range(depth, 0, -1):
                f = b + LD(k * 0.5) / f
            out[sel] = _RSQRTPI * ehs[sel] / f
    return out


def _phi_cdf(x):
    """Phi(x) = erfc(-x / sqrt 2) / 2 and phi(x) = exp(-x^2/2) / sqrt(2 pi), both long double."""
    x = np.clip(x, LD(-200), LD(200))  # beyond: cdf 0 or 1, pdf 0 (underflow) all the same
    with np.errstate(all="ignore"):
        e = _exp_half_square(x)
        a = np.abs(x) * _RSQRT2
        ec = _erfc_nonneg(np.where(np.isfinite(a), a, LD(0)), e)
        ec = np.where(np.isfinite(a), ec, _ZERO)
        cdf = np.where(x <= 0, _HALF * ec, _ONE - _HALF * ec)
        return cdf, _RSQRT2PI * e


# ----------------------------------------------------------------------------- forwards
def f_sigmoid(x):
    return _sig_pair(_x(x))[0]


def f_tanh(x):
    return np.tanh(_x(x))


def f_relu(x):
    x = _x(x)
    return _nan_or(x, np.where(x <= 0, _ZERO, x))


def f_leaky_relu(x):
    x = _x(x)
    return np.where(x > 0, x, x * LD(0.01))


def f_hardtanh(x):
    x = _x(x)
    return np.clip(x, LD(-1), LD(1))


def f_relu6(x):
    x = _x(x)
    return np.clip(x, LD(0), LD(6))


def f_elu(x):  # alpha = 1 (celu's too)
    x = _x(x)
    return np.where(x > 0, x, np.expm1(np.minimum(x, _ZERO)))


def f_selu(x):
    x = _x(x)
    return np.where(x > 0, _SELU_SCALE * x, _AS * np.expm1(np.minimum(x, _ZERO)))


def f_softplus(x):
    x = _x(x)
    return np.where(x > 20, x, _softplus0(x))


def f_logsigmoid(x):
    x = _x(x)
    return np.minimum(x, _ZERO) - np.log1p(np.exp(-np.abs(x)))


def f_silu(x):
    x = _x(x)
    with np.errstate(invalid="ignore"):
        return np.where(x == -np.inf, _ZERO, x * _sig_pair(x)[0])


def f_mish(x):
    x = _x(x)
    with np.errstate(invalid="ignore"):
        return np.where(x == -np.inf, _ZERO, x * np.tanh(_softplus0(x)))


def f_gelu(x):
    x = _x(x)
    cdf, _ = _phi_cdf(x)
    with np.errstate(invalid="ignore"):
        return np.where(x == -np.inf, _ZERO, x * cdf)


def _z2(x):
    with np.errstate(over="ignore", invalid="ignore"):
        return LD(2) * _K * (x + _C * x * x * x)


def f_gelu_tanh(x):
    x = _x(x)
    with np.errstate(invalid="ignore", over="ignore"):
        return np.where(x == -np.inf, _ZERO, x * _sig_pair(_z2(x))[0])


def f_hardsigmoid(x):
    x = _x(x)
    return np.clip(x + 3, LD(0), LD(6)) / LD(6)


def f_hardswish(x):
    x = _x(x)
    with np.errstate(invalid="ignore"):
        return np.where(x <= -3, _ZERO, x * np.clip(x + 3, LD(0), LD(6)) / LD(6))


def f_softsign(x):
    x = _x(x)
    with np.errstate(invalid="ignore"):
        return np.where(np.isinf(x), np.sign(x), x / (_ONE + np.abs(x)))


def f_tanhshrink(x):
    x = _x(x)
    u = x * x
    p = np.zeros_like(x)
    for c in reversed(_TSH):  # (overflows harmlessly where |x| is large: not selected)
        p = p * u + c
    return np.where(np.abs(x) < LD(0.25), x * u * p, x - np.tanh(x))


def f_softshrink(x):
    x = _x(x)
    return _nan_or(x, np.where(np.abs(x) <= _HALF, _ZERO, np.where(x > 0, x - _HALF, x + _HALF)))


def f_hardshrink(x):
    x = _x(x)
    return _nan_or(x, np.where(np.abs(x) <= _HALF, _ZERO, x))


def f_threshold(x):  # threshold = 1.0, value = 0.5
    x = _x(x)
    return _nan_or(x, np.where(x <= 1, _HALF, x))


# ----------------------------------------------------------------------------- gradients
def g_sigmoid(x):
    s, sn = _sig_pair(_x(x))
    return s * sn


def g_tanh(x):
    x = _x(x)
    e = np.exp(LD(-2) * np.abs(x))
    d = _ONE + e
    return LD(4) * e / (d * d)


def g_relu(x):
    x = _x(x)
    return _nan_or(x, np.where(x > 0, _ONE, _ZERO))


def g_leaky_relu(x):
    x = _x(x)
    return _nan_or(x, np.where(x > 0, _ONE, LD(0.01)))


def g_hardtanh(x):
    x = _x(x)
    return _nan_or(x, np.where((x <= -1) | (x >= 1), _ZERO, _ONE))


def g_relu6(x):
    x = _x(x)
    return _nan_or(x, np.where((x <= 0) | (x >= 6), _ZERO, _ONE))


def g_elu(x):
    x = _x(x)
    return _nan_or(x, np.where(x > 0, _ONE, np.exp(np.minimum(x, _ZERO))))


def g_selu(x):
    x = _x(x)
    return _nan_or(x, np.where(x > 0, _SELU_SCALE, _AS * np.exp(np.minimum(x, _ZERO))))


def g_softplus(x):
    x = _x(x)
    return _nan_or(x, np.where(x > 20, _ONE, _sig_pair(x)[0]))


def g_logsigmoid(x):
    return _sig_pair(_x(x))[1]


def _silu_d(x):
    s, sn = _sig_pair(x)
    with np.errstate(invalid="ignore"):
        return s * (_ONE + x * sn)


def _mish_d(x):
    sp = _softplus0(x)
    with np.errstate(over="ignore", invalid="ignore"):
        c = np.cosh(sp)
        return np.tanh(sp) + x * _sig_pair(x)[0] / (c * c)


def _gelu_d(x):
    cdf, pdf = _phi_cdf(x)
    with np.errstate(invalid="ignore"):
        return cdf + x * pdf


def _gelu_tanh_d(x):
    z2 = _z2(x)
    s, sn = _sig_pair(z2)
    with np.errstate(over="ignore", invalid="ignore"):
        dz2 = LD(2) * _K * (_ONE + LD(3) * _C * x * x)
        return s + x * s * sn * dz2


def _root_series(mp_d, guess):
    """(r_hi, r_lo, (c_1..c_N)) in long double: root of mp_d near guess, Taylor coefficients."""
    r, coeffs = R32.root_taylor(mp_d, guess, _NTERMS)
    hi, lo = _two_ld(r)
    return hi, lo, tuple(ld(c) for c in coeffs)


def _banded(plain, r_hi, r_lo, coeffs):
    def g(x):
        x = _x(x)
        t = x - r_hi  # exact in long double inside the band (60 bits at most)
        d = t - r_lo
        p = np.zeros_like(x)
        for c in reversed(coeffs):
            p = p * d + c
        with np.errstate(invalid="ignore"):
            out = np.where(np.abs(t) < _BAND, p * d, plain(x))
        return np.where(np.isinf(x), np.where(x > 0, _ONE, _ZERO), out)

    return g


#: name -> (root hi, root lo, Taylor coefficients of f' about the root), long double
ROOTS64 = {
    "silu": _root_series(R32._mp_silu_d, -1.2785),
    "mish": _root_series(R32._mp_mish_d, -1.1924),
    "gelu": _root_series(R32._mp_gelu_d, -0.7518),
    "gelu_tanh": _root_series(R32._mp_gelu_tanh_d, -0.7522),
}
g_silu = _banded(_silu_d, *ROOTS64["silu"])
g_mish = _banded(_mish_d, *ROOTS64["mish"])
g_gelu = _banded(_gelu_d, *ROOTS64["gelu"])
g_gelu_tanh = _banded(_gelu_tanh_d, *ROOTS64["gelu_tanh"])


def g_hardsigmoid(x):
    x = _x(x)
    return _nan_or(x, np.where((x > -3) & (x < 3), _ONE / LD(6), _ZERO))


def g_hardswish(x):
    x = _x(x)
    return _nan_or(x, np.where(x <= -3, _ZERO, np.where(x < 3, (x + LD(1.5)) / LD(3), _ONE)))


def g_softsign(x):
    x = _x(x)
    d = _ONE + np.abs(x)
    return _ONE / (d * d)


def g_tanhshrink(x):
    t = np.tanh(_x(x))
    return t * t


def g_softshrink(x):
    x = _x(x)
    return _nan_or(x, np.where(np.abs(x) <= _HALF, _ZERO, _ONE))


def g_threshold(x):
    x = _x(x)
    return _nan_or(x, np.where(x <= 1, _ZERO, _ONE))


# ----------------------------------------------------------------------------- from the output
def o_sigmoid(y):
    y = _x(y)
    return y * (_ONE - y)


def o_tanh(y):
    y = _x(y)
    return (_ONE - y) * (_ONE + y)


def o_elu(y):  # alpha = 1
    y = _x(y)
    return _nan_or(y, np.where(y > 0, _ONE, y + _ONE))


def o_selu(y):
    y = _x(y)
    return _nan_or(y, np.where(y > 0, _SELU_SCALE, (y + _AS_HI) + _AS_LO))  # y + as cancels


def o_logsigmoid(y):
    return -np.expm1(_x(y))


_ALIASES = {"f_celu": f_elu, "g_celu": g_elu, "g_hardshrink": g_softshrink, "o_celu": o_elu}


def _table(prefix: str, names, fallback: str | None = None) -> dict:
    """{name: the function ``{prefix}_{name}`` of this module} for the float32 references'
    names (one list of activations for both sweeps); ``fallback`` for the piecewise ones whose
    gradient reads the same on the output (relu' of y is relu' of x)."""
    ns = globals()

    def find(n):
        key = f"{prefix}_{n}"
        return _ALIASES.get(key) or ns.get(key) or ns[f"{fallback}_{n}"]

    return {n: find(n) for n in names}


FORWARD64 = _table("f", R32.FORWARD)
GRAD64 = _table("g", R32.GRAD)
GRAD_OUTPUT64 = _table("o", R32.GRAD_OUTPUT, fallback="g")
