"""Correct references for the float32 activation sweep (``scripts/ulp_sweep_activations.py``).

For every activation in :data:`fastact.kernels.activations.ACTIVATIONS` this module gives three
numba-jitted float64 scalar functions of one float32 value (widened to float64), at torch's
default parameters (``threshold``, which has none, at ``threshold=1.0, value=0.5``):

* ``FORWARD[name](x)``        the exact ``f(x)``,
* ``GRAD[name](x)``           the exact ``f'(x)`` (the gradient from the input, grad_output = 1),
* ``GRAD_OUTPUT[name](y)``    the exact gradient written with the output, ``d(y)`` such that
  ``f'(x) = d(f(x))`` (sigmoid: ``y (1 - y)``, tanh: ``1 - y^2``, elu: ``y + alpha`` ...),
  for the activations whose gradient can be taken from the output.

"Exact" means: accurate to far below a float32 ULP of the exact result (the unit tests in
``tests/test_ulp_reference.py`` hold every one of them, in every region that matters, to
1e-4 float32 ULPs of mpmath at 256 bits; the measured worst is 3.6e-7). Conventions at
kinks follow torch 2.13 (relu'(0) = 0, hardtanh' = 0 on the bounds, hardswish'(3) = 1 ...);
at NaN inputs every reference is NaN; at +-inf the references are the limits (silu(-inf) = 0,
softsign'(+-inf) = 0, ...).

How accuracy is obtained:

* Cancellation-free float64 formulas with the C library (``math.exp``, ``math.erfc``,
  ``math.tanh``, ``math.log1p``, ``math.expm1``: errors of about one float64 ULP, 2^-29
  float32 ULPs). The input is a float32, so ``x*x`` and ``x + 1.5`` are exact in float64.
* Near the zeros of the derivatives, where ``f'(x)`` is a small difference of O(1) terms and
  float64 would lose up to 2^24 float32-relative precision (gelu' at x = -0.7518, gelu-tanh'
  at -0.7522, silu' at -1.2785, mish' at -1.1924): the Taylor series of ``f'`` about its root
  ``r`` (coefficients from mpmath at 200 bits, ``mpmath.taylor``), evaluated in
  ``d = (x - r_hi) - r_lo``, with ``r = r_hi + r_lo`` split in two float64 words; ``x - r_hi``
  is exact (Sterbenz), so ``d`` has a relative error of 2^-53 and so has ``f'(x) ~ c1 d``.
  The band is ``|x - r| < 1/16``; just outside it float64 cancellation costs at most about
  5 bits (still ~1e-6 float32 ULP).
* hardswish' is ``(x + 1.5) / 3`` (exact zero at -1.5, one rounding elsewhere); selu's
  gradient from the output is ``y + alpha * scale`` with that constant in two words.
* tanhshrink ``x - tanh x``: for ``|x| < 1/8`` its Taylor series ``x^3 (1/3 - 2 x^2/15 + ...)``
  (coefficients from Bernoulli numbers, 14 terms), above it cancellation costs < 8 bits.
"""

from __future__ import annotations

import math

import mpmath
import numba

__all__ = [
    "FORWARD",
    "GRAD",
    "GRAD_OUTPUT",
    "PARAMS",
    "ROOTS",
    "TANHSHRINK_SERIES_BOUND",
    "naive_grad",
]

#: parameters of the sweep (torch's defaults; threshold has none: 1.0 and 0.5 chosen)
PARAMS: dict[str, dict] = {
    "leaky_relu": {"negative_slope": 0.01},
    "hardtanh": {"min_val": -1.0, "max_val": 1.0},
    "elu": {"alpha": 1.0},
    "celu": {"alpha": 1.0},
    "softplus": {"beta": 1.0, "threshold": 20.0},
    "softshrink": {"lambd": 0.5},
    "hardshrink": {"lambd": 0.5},
    "threshold": {"threshold": 1.0, "value": 0.5},
}

# torch's constants (aten/src/ATen/native/Activation.h), as decimal strings
_SELU_ALPHA_S = "1.6732632423543772848170429916717"
_SELU_SCALE_S = "1.0507009873554804934193349852946"
SELU_ALPHA = float(_SELU_ALPHA_S)
SELU_SCALE = float(_SELU_SCALE_S)

_BAND = 0.0625  # half-width of the series bands around the derivatives' roots
_NTERMS = 18  # Taylor terms c_1 .. c_18 (|d| < 1/16, radius > 2: truncation < 1e-20)
TANHSHRINK_SERIES_BOUND = 0.125

nj = numba.njit(error_model="numpy")

_NAN = math.nan
_INF = math.inf


def _two_words(v) -> tuple[float, float]:
    hi = float(v)
    return hi, float(v - mpmath.mpf(hi))


with mpmath.workprec(200):
    _AS_HI, _AS_LO = _two_words(mpmath.mpf(_SELU_ALPHA_S) * mpmath.mpf(_SELU_SCALE_S))


# ----------------------------------------------------------------------------- helpers
@nj
def _sig_pair(x):
    """(sigmoid(x), sigmoid(-x)) in float64, neither tail cancelling."""
    e = math.exp(-abs(x))
    r = 1.0 / (1.0 + e)
    if x >= 0:
        return r, e * r
    return e * r, r


@nj
def _softplus0(x):
    """log(1 + e^x) without overflow (no threshold)."""
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


@nj
def _nan_or(x, v):
    return _NAN if x != x else v


# ----------------------------------------------------------------------------- forwards
@nj
def f_sigmoid(x):
    return _sig_pair(x)[0]


@nj
def f_tanh(x):
    return math.tanh(x)


@nj
def f_relu(x):
    return 0.0 if x <= 0.0 else x


@nj
def f_leaky_relu(x):
    return x if x > 0.0 else x * 0.01


@nj
def f_hardtanh(x):
    return -1.0 if x < -1.0 else (1.0 if x > 1.0 else x)


@nj
def f_relu6(x):
    return 0.0 if x < 0.0 else (6.0 if x > 6.0 else x)


@nj
def f_elu(x):  # alpha = 1
    return x if x > 0.0 else math.expm1(x)


@nj
def f_celu(x):  # alpha = 1: max(0, x) + min(0, expm1(x))
    return x if x > 0.0 else math.expm1(x)


@nj
def f_selu(x):
    return SELU_SCALE * x if x > 0.0 else (SELU_SCALE * SELU_ALPHA) * math.expm1(x)


@nj
def f_softplus(x):  # beta = 1, threshold = 20
    return x if x > 20.0 else _softplus0(x)


@nj
def f_logsigmoid(x):
    return min(x, 0.0) - math.log1p(math.exp(-abs(x)))


@nj
def f_silu(x):
    if x == -_INF:
        return 0.0
    return x * _sig_pair(x)[0]


@nj
def f_mish(x):
    if x == -_INF:
        return 0.0
    return x * math.tanh(_softplus0(x))


@nj
def f_gelu(x):
    if x == -_INF:
        return 0.0
    return 0.5 * x * math.erfc(-x * 0.7071067811865476)


_SQRT_2_PI = 0.7978845608028654  # sqrt(2/pi)
_GELU_C = 0.044715


@nj
def f_gelu_tanh(x):
    # 0.5 x (1 + tanh z) = x sigmoid(2z): no cancellation for x < 0
    if x == -_INF:
        return 0.0
    z2 = 2.0 * _SQRT_2_PI * (x + _GELU_C * x * x * x)
    return x * _sig_pair(z2)[0]


@nj
def f_hardsigmoid(x):
    t = x + 3.0
    t = 0.0 if t < 0.0 else (6.0 if t > 6.0 else t)
    return t / 6.0


@nj
def f_hardswish(x):
    if x <= -3.0:  # also -inf, where x * 0 would be NaN
        return 0.0
    t = x + 3.0
    t = 0.0 if t < 0.0 else (6.0 if t > 6.0 else t)
    return x * t / 6.0


@nj
def f_softsign(x):
    if math.isinf(x):
        return math.copysign(1.0, x)
    return x / (1.0 + abs(x))


def _tanhshrink_coefficients(n):
    """a_k with x - tanh x = x^3 sum_k a_k x^(2k) (tanh's series via Bernoulli numbers)."""
    out = []
    with mpmath.workprec(200):
        for m in range(2, n + 2):  # tanh x = sum_m 2^2m (2^2m - 1) B_2m x^(2m-1) / (2m)!
            t = 4**m * (4**m - 1) * mpmath.bernoulli(2 * m) / mpmath.factorial(2 * m)
            out.append(float(-t))
    return tuple(out)


_TSH = _tanhshrink_coefficients(14)


@nj
def f_tanhshrink(x):
    if abs(x) < TANHSHRINK_SERIES_BOUND:
        u = x * x
        p = 0.0
        for k in range(len(_TSH) - 1, -1, -1):
            p = p * u + _TSH[k]
        return x * u * p
    return x - math.tanh(x)


@nj
def f_softshrink(x):
    if abs(x) <= 0.5:
        return 0.0
    return x - 0.5 if x > 0.0 else x + 0.5


@nj
def f_hardshrink(x):
    return 0.0 if abs(x) <= 0.5 else x


@nj
def f_threshold(x):  # threshold = 1.0, value = 0.5
    return 0.5 if x <= 1.0 else x


# ----------------------------------------------------------------------------- gradients
@nj
def g_sigmoid(x):
    s, sn = _sig_pair(x)
    return s * sn


@nj
def g_tanh(x):
    e = math.exp(-2.0 * abs(x))
    d = 1.0 + e
    return 4.0 * e / (d * d)


@nj
def g_relu(x):
    return _nan_or(x, 1.0 if x > 0.0 else 0.0)


@nj
def g_leaky_relu(x):
    return _nan_or(x, 1.0 if x > 0.0 else 0.01)


@nj
def g_hardtanh(x):
    return _nan_or(x, 0.0 if (x <= -1.0 or x >= 1.0) else 1.0)


@nj
def g_relu6(x):
    return _nan_or(x, 0.0 if (x <= 0.0 or x >= 6.0) else 1.0)


@nj
def g_elu(x):  # alpha = 1; gradient at 0 is alpha
    return _nan_or(x, 1.0 if x > 0.0 else math.exp(x))


@nj
def g_celu(x):
    return _nan_or(x, 1.0 if x > 0.0 else math.exp(x))


@nj
def g_selu(x):
    return _nan_or(x, SELU_SCALE if x > 0.0 else (SELU_SCALE * SELU_ALPHA) * math.exp(x))


@nj
def g_softplus(x):
    return _nan_or(x, 1.0 if x > 20.0 else _sig_pair(x)[0])


@nj
def g_logsigmoid(x):
    return _sig_pair(x)[1]


@nj
def _silu_d64(x):
    """silu' = s (1 + x s(-x)) in float64 (cancels near its root)."""
    if math.isinf(x):
        return 1.0 if x > 0 else 0.0
    s, sn = _sig_pair(x)
    return s * (1.0 + x * sn)


@nj
def _mish_d64(x):
    """mish' = tanh(sp) + x sech^2(sp) sigmoid(x), sp = softplus(x) (cancels near its root)."""
    if math.isinf(x):
        return 1.0 if x > 0 else 0.0
    sp = _softplus0(x)
    c = math.cosh(sp)
    return math.tanh(sp) + x * _sig_pair(x)[0] / (c * c)


@nj
def _gelu_d64(x):
    """gelu' = Phi(x) + x phi(x) (cancels near its root)."""
    if math.isinf(x):
        return 1.0 if x > 0 else 0.0
    cdf = 0.5 * math.erfc(-x * 0.7071067811865476)
    pdf = 0.3989422804014327 * math.exp(-0.5 * (x * x))
    return cdf + x * pdf


@nj
def _gelu_tanh_d64(x):
    """d/dx x sigmoid(2z) = s + x s s(-2z) 2z', z = sqrt(2/pi)(x + c x^3) (cancels near
    its root)."""
    if math.isinf(x):
        return 1.0 if x > 0 else 0.0
    x2 = x * x
    z2 = 2.0 * _SQRT_2_PI * (x + _GELU_C * x2 * x)
    s, sn = _sig_pair(z2)
    dz2 = 2.0 * _SQRT_2_PI * (1.0 + 3.0 * _GELU_C * x2)
    return s + x * s * sn * dz2


# exact derivatives in mpmath, used only to find the roots and their Taylor coefficients
def _mp_sig(x):
    return 1 / (1 + mpmath.exp(-x))


def _mp_silu_d(x):
    return _mp_sig(x) * (1 + x * _mp_sig(-x))


def _mp_mish_d(x):
    sp = mpmath.log1p(mpmath.exp(x))
    return mpmath.tanh(sp) + x * mpmath.sech(sp) ** 2 * _mp_sig(x)


def _mp_gelu_d(x):
    return mpmath.ncdf(x) + x * mpmath.npdf(x)


def _mp_gelu_tanh_d(x):
    c = mpmath.mpf("0.044715")
    k = mpmath.sqrt(2 / mpmath.pi)
    z = k * (x + c * x**3)
    return (1 + mpmath.tanh(z)) / 2 + x / 2 * mpmath.sech(z) ** 2 * k * (1 + 3 * c * x**2)


def root_taylor(mp_d, guess, nterms):
    """(r, (c_1, ..., c_nterms)): the root of mp_d near guess and mp_d's Taylor coefficients
    about it, mpmath numbers at 200 bits (also for the float64 references)."""
    with mpmath.workprec(200):
        r = mpmath.findroot(mp_d, mpmath.mpf(guess))
        return r, tuple(mpmath.taylor(mp_d, r, nterms)[1:])


def _root_series(mp_d, guess):
    """(r_hi, r_lo, (c_1, ..., c_N)): root of mp_d near guess and mp_d's Taylor coefficients."""
    r, coeffs = root_taylor(mp_d, guess, _NTERMS)
    with mpmath.workprec(200):
        r_hi, r_lo = _two_words(r)
    return r_hi, r_lo, tuple(float(c) for c in coeffs)


def _banded(d64, r_hi, r_lo, coeffs):
    """``d64`` outside ``|x - r| < _BAND``; inside, the Taylor series about the root r."""
    n = len(coeffs)

    @nj
    def g(x):
        t = x - r_hi  # exact (Sterbenz) inside the band
        if abs(t) < _BAND:
            d = t - r_lo
            p = coeffs[n - 1]
            for k in range(n - 2, -1, -1):
                p = p * d + coeffs[k]
            return p * d
        return d64(x)

    return g


#: name -> (root as float64, its low word, Taylor coefficients c_1..c_N of f' about it)
ROOTS = {
    "silu": _root_series(_mp_silu_d, -1.2785),
    "mish": _root_series(_mp_mish_d, -1.1924),
    "gelu": _root_series(_mp_gelu_d, -0.7518),
    "gelu_tanh": _root_series(_mp_gelu_tanh_d, -0.7522),
}

g_silu = _banded(_silu_d64, *ROOTS["silu"])
g_mish = _banded(_mish_d64, *ROOTS["mish"])
g_gelu = _banded(_gelu_d64, *ROOTS["gelu"])
g_gelu_tanh = _banded(_gelu_tanh_d64, *ROOTS["gelu_tanh"])


def naive_grad(name):
    """The plain float64 formula of a banded gradient (for tests that show the band matters)."""
    return {"silu": _silu_d64, "mish": _mish_d64, "gelu": _gelu_d64, "gelu_tanh": _gelu_tanh_d64}[
        name
    ]


@nj
def g_hardsigmoid(x):
    return _nan_or(x, 1.0 / 6.0 if (x > -3.0 and x < 3.0) else 0.0)


@nj
def g_hardswish(x):
    # torch 2.13: 0 for x <= -3 (-3 included), x/3 + 1/2 = (x + 1.5)/3 inside, 1 for x >= 3
    if x != x:
        return _NAN
    if x <= -3.0:
        return 0.0
    return (x + 1.5) / 3.0 if x < 3.0 else 1.0


@nj
def g_softsign(x):
    d = 1.0 + abs(x)
    return 1.0 / (d * d)


@nj
def g_tanhshrink(x):
    t = math.tanh(x)
    return t * t


@nj
def g_softshrink(x):
    return _nan_or(x, 0.0 if abs(x) <= 0.5 else 1.0)


g_hardshrink = g_softshrink


@nj
def g_threshold(x):
    return _nan_or(x, 0.0 if x <= 1.0 else 1.0)


# ----------------------------------------------------------------------------- from the output
@nj
def o_sigmoid(y):
    return y * (1.0 - y)


@nj
def o_tanh(y):
    return 1.0 - y * y


@nj
def o_elu(y):  # alpha = 1
    return _nan_or(y, 1.0 if y > 0.0 else y + 1.0)


@nj
def o_selu(y):
    if y != y:
        return _NAN
    return SELU_SCALE if y > 0.0 else (y + _AS_HI) + _AS_LO


@nj
def o_logsigmoid(y):  # d/dx logsigmoid = sigmoid(-x) = 1 - e^y
    return -math.expm1(y)


FORWARD = {
    "sigmoid": f_sigmoid,
    "tanh": f_tanh,
    "relu": f_relu,
    "leaky_relu": f_leaky_relu,
    "hardtanh": f_hardtanh,
    "relu6": f_relu6,
    "elu": f_elu,
    "celu": f_celu,
    "selu": f_selu,
    "softplus": f_softplus,
    "logsigmoid": f_logsigmoid,
    "silu": f_silu,
    "mish": f_mish,
    "gelu": f_gelu,
    "gelu_tanh": f_gelu_tanh,
    "hardsigmoid": f_hardsigmoid,
    "hardswish": f_hardswish,
    "softsign": f_softsign,
    "tanhshrink": f_tanhshrink,
    "softshrink": f_softshrink,
    "hardshrink": f_hardshrink,
    "threshold": f_threshold,
}

GRAD = {
    "sigmoid": g_sigmoid,
    "tanh": g_tanh,
    "relu": g_relu,
    "leaky_relu": g_leaky_relu,
    "hardtanh": g_hardtanh,
    "relu6": g_relu6,
    "elu": g_elu,
    "celu": g_celu,
    "selu": g_selu,
    "softplus": g_softplus,
    "logsigmoid": g_logsigmoid,
    "silu": g_silu,
    "mish": g_mish,
    "gelu": g_gelu,
    "gelu_tanh": g_gelu_tanh,
    "hardsigmoid": g_hardsigmoid,
    "hardswish": g_hardswish,
    "softsign": g_softsign,
    "tanhshrink": g_tanhshrink,
    "softshrink": g_softshrink,
    "hardshrink": g_hardshrink,
    "threshold": g_threshold,
}

# from the output: the piecewise ones read the same on y as on x (relu: y > 0 iff x > 0 ...)
GRAD_OUTPUT = {
    "sigmoid": o_sigmoid,
    "tanh": o_tanh,
    "relu": g_relu,
    "leaky_relu": g_leaky_relu,
    "hardtanh": g_hardtanh,
    "relu6": g_relu6,
    "elu": o_elu,
    "celu": o_elu,
    "selu": o_selu,
    "logsigmoid": o_logsigmoid,
    "threshold": g_threshold,
}
