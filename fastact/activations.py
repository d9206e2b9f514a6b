"""Activations with ``torch.nn.functional``'s names, parameters and gradients.

Each element-wise activation is written once as jitted scalar functions (value, gradient from
the input, and where possible gradient from the output); :class:`fastact._kernels.Elementwise`
turns them into serial/parallel/in-place/backward kernels and :func:`make_public` into the
functions ``name``, ``name_`` and ``name_backward`` of this module. ``ACTIVATIONS`` is the
registry that drives the tests, the benchmarks and the docs.

Conventions at kinks, NaN propagation and saturation follow torch 2.13 (see
``TORCH_SEMANTICS.md``); where torch loses accuracy (softplus overflow, tails of silu, mish,
gelu), fastact uses stable forms instead and documents it.
"""

from __future__ import annotations

import math
import os
import warnings

import numpy as np

from fastact._axis import BLOCK as AXIS_BLOCK
from fastact._axis import (
    GLU_BACKWARD,
    GLU_FORWARD,
    MAXOUT_BACKWARD,
    MAXOUT_FORWARD,
    MAXOUT_ROW_PIECES,
    PRELU_BACKWARD,
    PRELU_FORWARD,
    RRELU_TRAIN,
    RRELU_TRAIN_GRAD,
    SOFTMAX,
    SOFTMAX_BACKWARD,
    maxout_rows_kernels,
)
from fastact._core import math as fm
from fastact._core.arrays import (
    as_float_array,
    check_inplace,
    check_out,
    normalize_dim,
    scalar_param,
)
from fastact._core.jit import jit
from fastact._core.math import lit
from fastact._kernels import FLOAT_DTYPES, REQUIRED, Elementwise, make_public, pick

ACTIVATIONS: dict[str, Elementwise] = {}
__all__: list[str] = ["ACTIVATIONS", "AXIS_ACTIVATIONS"]

_SQRT1_2 = 0.7071067811865476  # 1/sqrt(2)
_SQRT1_2_LO = -4.833646656726457e-17  # 1/sqrt(2) - _SQRT1_2
#: (x - tanh x) / x^3 ~ P(x^2) on |x| < 1.25 (relative error 1.3e-8): Chebyshev-node fit
_TANHSHRINK_P = (
    0.3333333289239953,
    -0.1333328871272291,
    0.05396065207727255,
    -0.021818487435183255,
    0.008687066798305462,
    -0.0032366165600103466,
    0.0010062676703859346,
    -0.00021612142428767964,
    2.2642827786566873e-05,
)
_INV_SQRT_2PI = 0.3989422804014327  # 1/sqrt(2*pi)
_SQRT_2_PI = 0.7978845608028654  # sqrt(2/pi)
_GELU_C = 0.044715
_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946
_EXP_M32 = math.exp(-32.0)


def _register(name: str, forward, grad, grad_output=None, params=(), inplace=False, **kw):
    op = Elementwise(name, forward, grad, grad_output, params, inplace, **kw)
    ACTIVATIONS[name] = op
    __all__.extend(make_public(op, globals()))
    return op


# ----------------------------------------------------------------------------- shared cores
@jit
def sigmoid_core(x):
    """1/(1+exp(-x)) without cancellation or overflow in either tail."""
    e = fm.exp(-abs(x))
    r = lit(x, 1.0) / (lit(x, 1.0) + e)
    return r if x >= 0 else e * r


@jit
def sigmoid_pair(x):
    """(sigmoid(x), sigmoid(-x)), both accurate in both tails."""
    e = fm.exp(-abs(x))
    r = lit(x, 1.0) / (lit(x, 1.0) + e)
    return (r, e * r) if x >= 0 else (e * r, r)


# ----------------------------------------------------------------------------- sigmoid, tanh
@jit
def _sigmoid(x):
    return sigmoid_core(x)


@jit
def _sigmoid_grad(g, x):
    e = fm.exp(-abs(x))
    r = lit(x, 1.0) / (lit(x, 1.0) + e)
    return g * (e * r) * r  # sigmoid(x) * sigmoid(-x), no cancellation


@jit
def _sigmoid_grad_out(g, y):
    return g * (lit(y, 1.0) - y) * y


_register(
    "sigmoid",
    _sigmoid,
    _sigmoid_grad,
    _sigmoid_grad_out,
    doc="""
Logistic sigmoid ``1 / (1 + exp(-x))``, range (0, 1). torch: ``torch.sigmoid``.
Computed as ``exp(-|x|)`` based so neither tail overflows or cancels.""",
)


@jit
def _tanh(x):
    return fm.tanh(x)


@jit
def _tanh_grad(g, x):
    e = fm.exp(lit(x, -2.0) * abs(x))
    d = lit(x, 1.0) + e
    return g * (lit(x, 4.0) * e / (d * d))  # sech^2 x, no cancellation for large |x|


@jit
def _tanh_grad_out(g, y):
    return g * (lit(y, 1.0) - y * y)


_register(
    "tanh",
    _tanh,
    _tanh_grad,
    _tanh_grad_out,
    doc="""
Hyperbolic tangent, range (-1, 1), derivative ``1 - tanh(x)^2``. torch: ``torch.tanh``.""",
)


# ----------------------------------------------------------------------------- ReLU family
@jit
def _relu(x):
    return lit(x, 0.0) if x <= 0 else x


@jit
def _relu_grad(g, x):
    return lit(x, 0.0) if x <= 0 else g


_register(
    "relu",
    _relu,
    _relu_grad,
    _relu_grad,
    inplace=True,
    doc="""
``max(0, x)``; NaN propagates; gradient 0 for x <= 0 (torch's convention at 0).
torch: ``F.relu(input, inplace=False)``.""",
)


@jit
def _leaky_relu(x, negative_slope):
    return x if x > 0 else x * negative_slope


@jit
def _leaky_relu_grad(g, x, negative_slope):
    return g if x > 0 else g * negative_slope


def _check_nonneg_slope(negative_slope):
    if negative_slope < 0:
        raise ValueError(
            "leaky_relu_backward from output= needs negative_slope >= 0 (a "
            "negative slope makes the input unrecoverable from the output)"
        )


_register(
    "leaky_relu",
    _leaky_relu,
    _leaky_relu_grad,
    _leaky_relu_grad,
    params=(("negative_slope", 0.01),),
    inplace=True,
    check_output=_check_nonneg_slope,
    doc="""
``x if x > 0 else negative_slope * x``; gradient at 0 is negative_slope.
torch: ``F.leaky_relu(input, negative_slope=0.01, inplace=False)``.""",
)


@jit
def _hardtanh(x, min_val, max_val):
    return min_val if x < min_val else (max_val if x > max_val else x)


@jit
def _hardtanh_grad(g, x, min_val, max_val):
    return lit(x, 0.0) if (x <= min_val or x >= max_val) else g


def _check_hardtanh(dtype, min_val, max_val):
    if np.any(max_val < min_val):
        raise ValueError("max_val cannot be less than min_val")
    return min_val, max_val


_register(
    "hardtanh",
    _hardtanh,
    _hardtanh_grad,
    _hardtanh_grad,
    params=(("min_val", -1.0), ("max_val", 1.0)),
    inplace=True,
    prepare=_check_hardtanh,
    doc="""
``clamp(x, min_val, max_val)``; gradient g on the open interval, 0 at and beyond the bounds.
torch: ``F.hardtanh(input, min_val=-1.0, max_val=1.0, inplace=False)``.""",
)


@jit
def _relu6(x):
    return _hardtanh(x, lit(x, 0.0), lit(x, 6.0))


@jit
def _relu6_grad(g, x):
    return _hardtanh_grad(g, x, lit(x, 0.0), lit(x, 6.0))


_register(
    "relu6",
    _relu6,
    _relu6_grad,
    _relu6_grad,
    inplace=True,
    doc="""
``min(max(0, x), 6)`` = hardtanh(x, 0, 6); gradient 0 at 0 and 6.
torch: ``F.relu6(input, inplace=False)``.""",
)


@jit
def _elu(x, alpha):
    return x if x > 0 else alpha * fm.expm1(x)


@jit
def _elu_grad(g, x, alpha):
    return g if x > 0 else g * alpha * fm.exp(x)


@jit
def _elu_grad_out(g, y, alpha):
    return g if y > 0 else g * (y + alpha)


def _check_nonneg_alpha(alpha):
    if alpha < 0:
        raise ValueError("backward from output= needs alpha >= 0")


_register(
    "elu",
    _elu,
    _elu_grad,
    _elu_grad_out,
    params=(("alpha", 1.0),),
    inplace=True,
    check_output=_check_nonneg_alpha,
    doc="""
``x if x > 0 else alpha * (exp(x) - 1)``; gradient at 0 is alpha.
torch: ``F.elu(input, alpha=1.0, inplace=False)``.""",
)


# torch scales by the reciprocal 1/alpha (input_scale); LLVM hoists the division out of loops
@jit
def _celu(x, alpha):
    return x if x > 0 else alpha * fm.expm1(x * (lit(x, 1.0) / alpha))


@jit
def _celu_grad(g, x, alpha):
    return g if x > 0 else g * fm.exp(x * (lit(x, 1.0) / alpha))


@jit
def _celu_grad_out(g, y, alpha):
    return g if y > 0 else g * (y * (lit(y, 1.0) / alpha) + lit(y, 1.0))


def _celu_params(dtype, alpha):
    if np.any(alpha == 0):
        raise ValueError("alpha must be nonzero for celu")
    return (alpha,)


_register(
    "celu",
    _celu,
    _celu_grad,
    _celu_grad_out,
    params=(("alpha", 1.0),),
    inplace=True,
    prepare=_celu_params,
    check_output=_check_nonneg_alpha,
    doc="""
``max(0, x) + min(0, alpha * (exp(x / alpha) - 1))``; gradient at 0 is 1.
torch: ``F.celu(input, alpha=1.0, inplace=False)``.""",
)


@jit
def _selu(x):
    s = lit(x, _SELU_SCALE)
    return s * x if x > 0 else lit(x, _SELU_SCALE * _SELU_ALPHA) * fm.expm1(x)


@jit
def _selu_grad(g, x):
    return g * lit(x, _SELU_SCALE) if x > 0 else g * lit(x, _SELU_SCALE * _SELU_ALPHA) * fm.exp(x)


@jit
def _selu_grad_out(g, y):
    return g * lit(y, _SELU_SCALE) if y > 0 else g * (y + lit(y, _SELU_SCALE * _SELU_ALPHA))


_register(
    "selu",
    _selu,
    _selu_grad,
    _selu_grad_out,
    inplace=True,
    doc="""
``scale * elu(x, alpha)`` with alpha = 1.6732632423543772, scale = 1.0507009873554805.
torch: ``F.selu(input, inplace=False)``.""",
)


# ----------------------------------------------------------------------------- smooth ones
@jit
def _softplus(x, beta, threshold):
    bx = x * beta
    if bx > threshold:
        return x
    # log1p(exp(bx)) = max(bx, 0) + log1p(exp(-|bx|)): never overflows (torch's does)
    return (max(bx, lit(x, 0.0)) + fm.log1p(fm.exp(-abs(bx)))) / beta


@jit
def _softplus_grad(g, x, beta, threshold):
    bx = x * beta
    return g if bx > threshold else g * sigmoid_core(bx)


_register(
    "softplus",
    _softplus,
    _softplus_grad,
    params=(("beta", 1.0), ("threshold", 20.0)),
    doc="""
``log(1 + exp(beta * x)) / beta``, linear (``x``) where ``beta * x > threshold``.
torch: ``F.softplus(input, beta=1.0, threshold=20.0)``. Unlike torch, the log-sum is computed
stably, so a large beta or threshold never overflows to inf/NaN.""",
)


@jit
def _logsigmoid(x):
    return min(x, lit(x, 0.0)) - fm.log1p(fm.exp(-abs(x)))


@jit
def _logsigmoid_grad(g, x):
    return g * sigmoid_core(-x)


_register(
    "logsigmoid",
    _logsigmoid,
    _logsigmoid_grad,
    doc="""
``log(1 / (1 + exp(-x))) = min(x, 0) - log1p(exp(-|x|))`` (stable for any x).
torch: ``F.logsigmoid(input)``.""",
)


@jit
def _exp_neg_abs_scaled(x):
    """(e, tiny): e = exp(-|x|), or exp(x + 32) when x < -64 (tiny; the true value is
    e * exp(-32), which would lose precision as a subnormal). One exp for both cases."""
    tiny = x < lit(x, -64.0)
    return fm.exp(-abs(x) + (lit(x, 32.0) if tiny else lit(x, 0.0))), tiny


@jit
def _silu(x):
    e, tiny = _exp_neg_abs_scaled(x)
    if tiny:  # x e^x / (1 + e^x) = x e^x to float precision
        return (x * e) * lit(x, _EXP_M32)
    r = lit(x, 1.0) / (lit(x, 1.0) + e)
    return x * (r if x >= 0 else e * r)


@jit
def _silu_grad(g, x):
    e, tiny = _exp_neg_abs_scaled(x)
    if tiny:  # s (1 + x (1 - s)) = (1 + x) e^x to float precision
        return g * (((lit(x, 1.0) + x) * e) * lit(x, _EXP_M32))
    r = lit(x, 1.0) / (lit(x, 1.0) + e)
    s, sn = (r, e * r) if x >= 0 else (e * r, r)
    return g * s * (lit(x, 1.0) + x * sn)


_register(
    "silu",
    _silu,
    _silu_grad,
    inplace=True,
    doc="""
``x * sigmoid(x)`` (swish). torch: ``F.silu(input, inplace=False)``. Accurate also for very
negative x, where torch's sigmoid factor underflows.""",
)


@jit
def _mish_exp(x):
    """(e, tiny): e = exp(min(x, 20)), or exp(x + 32) when x < -64 (tiny: see silu).
    tanh(softplus(x)) = n / (n + 2) with n = e^x (e^x + 2); x clamped where tanh(.) == 1."""
    tiny = x < lit(x, -64.0)
    return fm.exp(min(x, lit(x, 20.0)) + (lit(x, 32.0) if tiny else lit(x, 0.0))), tiny


@jit
def _mish(x):
    e, tiny = _mish_exp(x)
    if tiny:  # x tanh(log1p(e^x)) = x e^x to float precision
        return (x * e) * lit(x, _EXP_M32)
    if x > 20:  # tanh(softplus(x)) == 1 (also keeps reassociation from forming x * n)
        return x
    n = e * (e + lit(x, 2.0))
    return x * (n / (n + lit(x, 2.0)))


@jit
def _mish_grad(g, x):
    e, tiny = _mish_exp(x)
    if tiny:  # (1 + x) e^x to float precision
        return g * (((lit(x, 1.0) + x) * e) * lit(x, _EXP_M32))
    if x > 20:  # torch: NaN at +inf (inf/inf in its formula)
        return g if x < math.inf else g * lit(x, math.nan)
    n = e * (e + lit(x, 2.0))
    d = n + lit(x, 2.0)
    t = n / d
    sech2 = lit(x, 4.0) * ((n + lit(x, 1.0)) / d) / d
    return g * (t + x * sech2 * (e / (lit(x, 1.0) + e)))  # sigmoid(x) = e / (1 + e)


_register(
    "mish",
    _mish,
    _mish_grad,
    inplace=True,
    doc="""
``x * tanh(softplus(x))``. torch: ``F.mish(input, inplace=False)``. Written as
``x * n / (n + 2)``, ``n = e^x (e^x + 2)``: no overflow, accurate in both tails.""",
)


@jit
def _erfc_neg_scaled(x):
    """``erfc(-x / sqrt(2))`` with the rounding of the argument compensated.

    erfc's relative slope is about 2t at t = -x/sqrt(2) > 0, so the argument's own rounding
    (half an ULP) costs ~t^2 ULPs of the result (about 20 ULP at x = -5, 180 at x = -13). The
    argument is split exactly (t + d, via fma and a two-part 1/sqrt(2)) and the result
    corrected to first order: erfc(t + d) = erfc(t) (1 - d r(t)), r = 2 e^(-t^2)/(sqrt(pi)
    erfc(t)) ~ 2t + 1/(t + 0.886) (exact at 0 and for large t, within 5% between)."""
    c = lit(x, -_SQRT1_2)
    c_lo = lit(x, (np.float64(c) + _SQRT1_2) + _SQRT1_2_LO)  # -1/sqrt(2) - c, tiny
    # explicit fmas throughout: left to the contract flag, the serial and the parallel loop
    # could fuse differently and differ in the last bit
    t = x * c
    d = fm._fma(-x, c_lo, fm._fma(x, c, -t))
    e = fm.erfc(t)
    if t > 0 and t < lit(x, 27.0):  # beyond, erfc(t) underflows to 0 in both types
        r = fm._fma(lit(x, 2.0), t, lit(x, 1.0) / (t + lit(x, 0.886226925452758)))
        e = fm._fma(-e, d * r, e)
    return e


@jit
def _gelu_erfc(x):
    return x * lit(x, 0.5) * _erfc_neg_scaled(x)


@jit
def _gelu_deriv_erfc(x):
    cdf = lit(x, 0.5) * _erfc_neg_scaled(x)
    # exp(-x^2/2) with x^2 split exactly (h + l): its rounding would cost ~x^2/2 ULPs
    h = x * x
    lo = fm._fma(x, x, -h)
    ex = fm.exp(h * lit(x, -0.5))
    if h < lit(x, 1500.0):  # beyond, exp(-h/2) is 0 and lo may be infinite
        ex = fm._fma(-ex, lo * lit(x, 0.5), ex)
    pdf = lit(x, _INV_SQRT_2PI) * ex
    return fm._fma(x, pdf, cdf)


# x Phi(x) and its derivative: float32 through fastact._core.math's own normal-CDF core (about
# half the instructions of composing erfc), float64 (and CUDA) through erfc
_gelu_value = fm.float32_variant("_gelu_value", fm._gelu_f32, _gelu_erfc)
_gelu_deriv = fm.float32_variant("_gelu_deriv", fm._gelu_deriv_f32, _gelu_deriv_erfc)


@jit
def _gelu(x):
    return _gelu_value(x)


@jit
def _gelu_grad(g, x):
    return g * _gelu_deriv(x)


@jit
def _gelu_tanh(x):
    # 0.5 x (1 + tanh(z)) = x * sigmoid(2z), without the cancellation for negative x
    z2 = lit(x, 2.0 * _SQRT_2_PI) * (x + lit(x, _GELU_C) * x * x * x)
    return x * sigmoid_core(z2)


@jit
def _gelu_tanh_grad(g, x):
    if abs(x) > 30:  # saturated; torch gives NaN at +-inf
        if math.isinf(x):
            return g * lit(x, math.nan)
        return g if x > 0 else lit(x, 0.0) * g
    x2 = x * x
    z2 = lit(x, 2.0 * _SQRT_2_PI) * (x + lit(x, _GELU_C) * x2 * x)
    s, sn = sigmoid_pair(z2)
    dz2 = lit(x, 2.0 * _SQRT_2_PI) * (lit(x, 1.0) + lit(x, 3.0 * _GELU_C) * x2)
    return g * (s + x * s * sn * dz2)


_GELU = {
    "none": Elementwise("gelu", _gelu, _gelu_grad, doc="gelu, approximate='none'"),
    "tanh": Elementwise("gelu_tanh", _gelu_tanh, _gelu_tanh_grad, doc="gelu, approximate='tanh'"),
}


def _gelu_op(approximate):
    op = _GELU.get(approximate) if isinstance(approximate, str) else None
    if op is None:
        raise ValueError(f"approximate must be 'none' or 'tanh', got {approximate!r}")
    return op


def gelu(input, approximate: str = "none", *, out=None):
    """Gaussian error linear unit ``x * Phi(x)``; ``approximate='tanh'`` uses
    ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``.
    torch: ``F.gelu(input, approximate='none')``. The normal CDF's tail is computed as
    ``exp(-x^2/2) erfcx(|x|/sqrt 2) / 2`` with ``x^2`` split exactly (float32: max 3.8 ULP over
    all inputs; float64 through erfc), the tanh form as ``x sigmoid(2z)``, so the negative tail
    does not cancel (torch's does)."""
    return _gelu_op(approximate).forward(input, (), out)


def gelu_backward(grad_output, input, approximate: str = "none", *, out=None):
    """Gradient of gelu w.r.t. its input: ``grad_output * (Phi(x) + x phi(x))`` (or the
    derivative of the tanh form)."""
    return _gelu_op(approximate).backward(grad_output, input, None, (), out)


ACTIVATIONS["gelu"] = _GELU["none"]
ACTIVATIONS["gelu_tanh"] = _GELU["tanh"]
__all__ += ["gelu", "gelu_backward"]


# ----------------------------------------------------------------------------- hard ones
@jit
def _hardsigmoid(x):
    t = x + lit(x, 3.0)
    t = lit(x, 0.0) if t < 0 else (lit(x, 6.0) if t > 6 else t)
    return t / lit(x, 6.0)


@jit
def _hardsigmoid_grad(g, x):
    return g / lit(x, 6.0) if (x > -3 and x < 3) else lit(x, 0.0)


_register(
    "hardsigmoid",
    _hardsigmoid,
    _hardsigmoid_grad,
    inplace=True,
    doc="""
``relu6(x + 3) / 6``; gradient 1/6 on the open interval (-3, 3). torch:
``F.hardsigmoid(input, inplace=False)`` (whose float64 gradient uses float32's 1/6; fastact's
is exact).""",
)


@jit
def _hardswish(x):
    t = x + lit(x, 3.0)
    t = lit(x, 0.0) if t < 0 else (lit(x, 6.0) if t > 6 else t)
    return x * t / lit(x, 6.0)


@jit
def _hardswish_grad(g, x):
    if x <= -3:
        return lit(x, 0.0)
    if x < 3:
        return g * (x / lit(x, 3.0) + lit(x, 0.5))
    return g


_register(
    "hardswish",
    _hardswish,
    _hardswish_grad,
    inplace=True,
    doc="""
``x * relu6(x + 3) / 6``; gradient 0 for x <= -3, x/3 + 1/2 inside, 1 for x >= 3 (torch 2.13).
torch: ``F.hardswish(input, inplace=False)``.""",
)


@jit
def _softsign(x):
    return x / (lit(x, 1.0) + abs(x))


@jit
def _softsign_grad(g, x):
    d = lit(x, 1.0) + abs(x)
    return g / d / d if not math.isinf(x) else g * lit(x, math.nan)  # torch: NaN at +-inf


_register(
    "softsign",
    _softsign,
    _softsign_grad,
    doc="""
``x / (1 + |x|)``. torch: ``F.softsign(input)``.""",
)


@jit
def _tanhshrink(x):
    # x - tanh(x) cancels for small |x| (float32: all of |x| < 2.4e-4 would give 0, and
    # |x| < 1 loses up to ~2^24 ULPs): there, x^3 P(x^2) instead. float32: a degree-8 fit of
    # (x - tanh x)/x^3 on |x| < 1.25 (relative error 1.3e-8) evaluated in float64;
    # float64: its Taylor series for |x| < 1e-3 (error below 1e-25 relative).
    a = abs(x)
    if lit(x, 1.0) + lit(x, 1e-10) == lit(x, 1.0):  # float32 (folded at compile time)
        if a < lit(x, 1.25):
            xd = np.float64(x)
            u = xd * xd
            p = _TANHSHRINK_P[8]
            for k in range(7, -1, -1):
                p = p * u + _TANHSHRINK_P[k]
            return lit(x, xd * u * p)
    elif a < lit(x, 1e-3):
        u = x * x
        return (
            x
            * u
            * (
                lit(x, 1 / 3)
                - u * (lit(x, 2 / 15) - u * (lit(x, 17 / 315) - u * lit(x, 62 / 2835)))
            )
        )
    return x - fm.tanh(x)


@jit
def _tanhshrink_grad(g, x):
    y = fm.tanh(x)
    return g * y * y


_register(
    "tanhshrink",
    _tanhshrink,
    _tanhshrink_grad,
    doc="""
``x - tanh(x)``. torch: ``F.tanhshrink(input)``.""",
)


def _check_lambd(dtype, lambd):
    if np.any(lambd < 0):
        raise ValueError(f"lambd must be non-negative, got {lambd}")
    return (lambd,)


@jit
def _softshrink(x, lambd):
    if abs(x) <= lambd:
        return lit(x, 0.0)
    return x - lambd if x > 0 else x + lambd


@jit
def _shrink_grad(g, x, lambd):
    return lit(x, 0.0) if abs(x) <= lambd else g


_register(
    "softshrink",
    _softshrink,
    _shrink_grad,
    params=(("lambd", 0.5),),
    prepare=_check_lambd,
    doc="""
``x - lambd`` above lambd, ``x + lambd`` below -lambd, 0 on [-lambd, lambd].
torch: ``F.softshrink(input, lambd=0.5)``.""",
)


@jit
def _hardshrink(x, lambd):
    return lit(x, 0.0) if abs(x) <= lambd else x


_register(
    "hardshrink",
    _hardshrink,
    _shrink_grad,
    params=(("lambd", 0.5),),
    prepare=_check_lambd,
    doc="""
``x`` outside [-lambd, lambd], 0 inside. torch: ``F.hardshrink(input, lambd=0.5)``.""",
)


@jit
def _threshold(x, threshold, value):
    return value if x <= threshold else x


@jit
def _threshold_grad(g, x, threshold, value):
    return lit(x, 0.0) if x <= threshold else g


def _check_threshold_output(threshold, value):
    if np.any(np.asarray(value) > np.asarray(threshold)):
        raise ValueError(
            "threshold_backward from output= needs value <= threshold: with a "
            "larger value the output does not tell which inputs were replaced"
        )


_register(
    "threshold",
    _threshold,
    _threshold_grad,
    _threshold_grad,
    check_output=_check_threshold_output,
    params=(("threshold", REQUIRED), ("value", REQUIRED)),
    inplace=True,
    doc="""
``value if x <= threshold else x``; gradient 0 where x <= threshold.
torch: ``F.threshold(input, threshold, value, inplace=False)``.""",
)


# ============================================================================= along an axis
def _view3(a: np.ndarray, dim: int) -> np.ndarray:
    """A C-contiguous ``a`` as (outer, a.shape[dim], inner) (a view when possible)."""
    shape = a.shape if a.ndim else (1,)
    outer = math.prod(shape[:dim])
    inner = math.prod(shape[dim + 1 :])
    return np.ascontiguousarray(a).reshape(outer, shape[dim], inner)


def _result(out, shape, dtype, inputs, name="out"):
    """A fresh C-contiguous result, or the validated caller buffer (written through a temp
    when it is not C-contiguous)."""
    if out is None:
        return np.empty(shape, dtype), None
    check_out(out, shape, dtype, inputs, name)
    if out.flags.c_contiguous and not any(
        a is not None and np.may_share_memory(a, out) for a in inputs
    ):
        return out, None
    return np.empty(shape, dtype), out


def _finish(res, target):
    if target is None:
        return res
    target[...] = res
    return target


def _pair_inputs(a, b, name_a, name_b):
    a = as_float_array(a, name_a)
    b = as_float_array(b, name_b)
    if a.shape != b.shape:
        raise ValueError(f"{name_a} has shape {a.shape} but {name_b} has shape {b.shape}")
    dt = np.promote_types(a.dtype, b.dtype)
    return a.astype(dt, copy=False), b.astype(dt, copy=False)


# ----------------------------------------------------------------------------- RReLU
_LEAKY_RELU = ACTIVATIONS["leaky_relu"]


def _rrelu_key(generator) -> int:
    if generator is None:  # fresh OS entropy (np.random.default_rng() costs ~25 us)
        return int.from_bytes(os.urandom(8), "little") >> 1
    if isinstance(generator, np.random.Generator):
        return int(generator.integers(0, 2**63))
    if isinstance(generator, (int, np.integer)) and not isinstance(generator, bool):
        return int(generator) & (2**64 - 1)
    raise TypeError(
        "generator must be None, an int seed or a numpy.random.Generator, got "
        f"{type(generator).__name__}"
    )


def _i64(key: int) -> int:
    """A 64-bit key as the signed int with the same bits (typed int64 by numba, one
    signature for every key; the kernels cast it back to uint64)."""
    return key - (1 << 64) if key >= 1 << 63 else key


def _rrelu_bounds(lower, upper, dtype):
    lo = scalar_param(lower, "lower", dtype)
    hi = scalar_param(upper, "upper", dtype)
    if isinstance(lo, np.ndarray) or isinstance(hi, np.ndarray):
        raise TypeError("lower and upper must be real numbers")
    if not lo <= hi:
        raise ValueError(f"lower must be <= upper, got lower={lower} upper={upper}")
    return lo, hi


#: (lower, upper, dtype, consts) of the last call with finite Python-float bounds, one slot
#: for float32, one for float64
_RRELU_MEMO: list[tuple] = [(None, None, None, None)] * 2


def _rrelu_consts(lower, upper, dtype: np.dtype) -> tuple[float, float, float]:
    """``(lower, upper - lower, (lower + upper) / 2)`` of the bounds as ``dtype`` scalars
    (the kernels' arguments and the eval-mode slope), as Python floats, validated.

    Remembered for the last call's bound objects (~50 ns; the same slope object each call,
    so leaky_relu's parameter memo hits too). Bounds that overflow the dtype are not
    remembered: they warn on every call."""
    slot = dtype is FLOAT_DTYPES[0]
    memo = _RRELU_MEMO[slot]
    if lower is memo[0] and upper is memo[1] and dtype is memo[2]:
        return memo[3]
    lo, hi = _rrelu_bounds(lower, upper, dtype)
    c = (float(lo), float(hi - lo), (float(lo) + float(hi)) / 2)
    if (
        type(lower) is float
        and type(upper) is float
        and math.isfinite(c[0])
        and math.isfinite(c[1])
    ):
        _RRELU_MEMO[slot] = (lower, upper, dtype, c)  # immutable objects, held alive here
    return c


def rrelu(
    input,
    lower: float = 1.0 / 8,
    upper: float = 1.0 / 3,
    training: bool = False,
    inplace: bool = False,
    *,
    generator=None,
    return_noise: bool = False,
    out=None,
):
    """Randomized leaky ReLU. ``training=False``: leaky_relu with slope (lower+upper)/2.
    ``training=True``: each element x <= 0 gets its own slope a ~ U(lower, upper).

    The slopes come from a counter-based generator indexed by element position (C order), so
    results are identical whatever the thread count. ``generator`` is an int seed (the same
    seed reproduces the same slopes, and ``rrelu_backward`` recomputes them from it) or a
    ``numpy.random.Generator`` (one key drawn from it per call). ``return_noise=True`` also
    returns the per-element slope array (1 where x > 0), like torch's internal noise buffer.
    torch: ``F.rrelu(input, lower=1/8, upper=1/3, training=False, inplace=False)``.
    """
    if not training:
        dt = (
            input.dtype
            if isinstance(input, np.ndarray) and input.dtype in FLOAT_DTYPES
            else FLOAT_DTYPES[1]
        )
        y = _LEAKY_RELU.forward(input, (_rrelu_consts(lower, upper, dt)[2],), out, inplace)
        return (y, None) if return_noise else y
    if inplace:
        if out is not None:
            raise ValueError("out= cannot be combined with inplace=True")
        x = check_inplace(input, "input")
    else:
        x = as_float_array(input, "input")
    lo, span, _ = _rrelu_consts(lower, upper, x.dtype)
    key = _rrelu_key(generator)
    if inplace:
        res, target = (x, None) if x.flags.c_contiguous else (np.empty(x.shape, x.dtype), x)
    else:
        res, target = _result(out, x.shape, x.dtype, (x,))
    xf = x.ravel()  # a C-order copy when x is not C-contiguous
    noise = np.empty(x.shape, x.dtype) if return_noise else np.empty(0, x.dtype)
    k = pick(RRELU_TRAIN, xf.size)
    k(xf, res.ravel(), noise.ravel(), lo, span, _i64(key), return_noise)
    res = _finish(res, target)
    return (res, noise) if return_noise else res


def rrelu_(
    input, lower: float = 1.0 / 8, upper: float = 1.0 / 3, training: bool = False, *, generator=None
):
    """In-place rrelu: overwrites ``input`` and returns it."""
    return rrelu(input, lower, upper, training, True, generator=generator)


def rrelu_backward(
    grad_output,
    input=None,
    lower: float = 1.0 / 8,
    upper: float = 1.0 / 3,
    training: bool = False,
    *,
    generator=None,
    noise=None,
    output=None,
    out=None,
):
    """Gradient of rrelu: ``grad_output * slope`` where x <= 0, ``grad_output`` elsewhere.

    In training mode the slopes are the forward's: pass ``noise=`` (from
    ``return_noise=True``) or the same integer seed as ``generator=``. ``output=`` may replace
    ``input`` (slopes are positive, so the sign of the output is the sign of the input)."""
    if (
        training is False
        and type(lower) is float
        and type(upper) is float
        and generator is None
        and noise is None
        and out is None
        and type(grad_output) is np.ndarray
        and type(input if output is None else output) is np.ndarray
        and (input is None or output is None)
    ):
        # fast path: eval mode on host arrays (leaky_relu's backward checks the rest)
        slope = _rrelu_consts(lower, upper, FLOAT_DTYPES[1])[2]
        return _LEAKY_RELU.backward(grad_output, input, output, (slope,), None)
    return _rrelu_backward_any(
        grad_output,
        input,
        lower,
        upper,
        training,
        generator=generator,
        noise=noise,
        output=output,
        out=out,
    )


def _rrelu_backward_any(gy, input, lower, upper, training, *, generator, noise, output, out):
    """rrelu_backward without the fast path (any input; device arrays dispatched); called with
    every argument of :func:`rrelu_backward`."""
    if not training:
        slope = _rrelu_consts(lower, upper, FLOAT_DTYPES[1])[2]
        return _LEAKY_RELU.backward(gy, input, output, (slope,), out)
    if (input is None) == (output is None):
        raise TypeError("rrelu_backward needs exactly one of input= and output=")
    name = "input" if output is None else "output"
    g, v = _pair_inputs(gy, input if output is None else output, "grad_output", name)
    res, target = _result(out, v.shape, v.dtype, (g, v))
    if noise is not None:
        nz = as_float_array(noise, "noise")
        if nz.shape != v.shape:
            raise ValueError(f"noise has shape {nz.shape}, expected {v.shape}")
        np.multiply(g, nz, out=res, casting="unsafe")
        return _finish(res, target)
    if not isinstance(generator, (int, np.integer)) or isinstance(generator, bool):
        raise TypeError(
            "rrelu_backward in training mode needs noise= or the forward's integer "
            "seed as generator="
        )
    lo, span, _ = _rrelu_consts(lower, upper, v.dtype)
    gf, vf = g.ravel(), v.ravel()
    pick(RRELU_TRAIN_GRAD, vf.size)(gf, vf, res.ravel(), lo, span, _i64(_rrelu_key(generator)))
    return _finish(res, target)


# ----------------------------------------------------------------------------- PReLU
def _prelu_args(input, weight, out_dtype=None):
    x = as_float_array(input, "input")
    w = as_float_array(weight, "weight")
    if w.ndim > 1:
        raise ValueError(f"prelu: weight must be 1-D (num_parameters,), got shape {w.shape}")
    channels = x.shape[1] if x.ndim >= 2 else 1
    if w.size not in (1, channels):
        raise ValueError(
            f"Mismatch of parameter numbers and input channel size: weight has "
            f"{w.size} elements, input has {channels} channels (dim 1)"
        )
    dt = np.promote_types(x.dtype, w.dtype) if out_dtype is None else out_dtype
    x = x.astype(dt, copy=False)
    wf = w.astype(dt, copy=False).reshape(-1)
    wc = np.ascontiguousarray(wf) if wf.size == channels else np.full(channels, wf[0], dt)
    return x, w, wc, (1 if x.ndim < 2 else 1)


def prelu(input, weight, *, out=None):
    """``max(0, x) + weight * min(0, x)`` with a learnable slope per channel (dim 1) or one
    for all (weight of shape (1,)). torch: ``F.prelu(input, weight)``."""
    if (
        out is None
        and type(input) is np.ndarray
        and type(weight) is np.ndarray
        and input.dtype in FLOAT_DTYPES
        and weight.dtype == input.dtype
        and input.ndim >= 2
        and weight.ndim == 1
        and input.size > 0
        and input.flags.c_contiguous
        and weight.flags.c_contiguous
    ):
        # fast path (the common call: one slope per channel, or one for all)
        s = input.shape
        if weight.shape[0] == s[1] or weight.shape[0] == 1:
            wc = weight if weight.shape[0] == s[1] else np.full(s[1], weight[0], input.dtype)
            res = np.empty_like(input)
            x3 = input.reshape(s[0], s[1], -1)
            pick(PRELU_FORWARD, input.size)(x3, wc, res.reshape(x3.shape))
            return res
    return _prelu_any(input, weight, out=out)


def _prelu_any(input, weight, *, out=None):
    """prelu without the fast path (any input; device arrays dispatched)."""
    x, w, wc, _ = _prelu_args(input, weight)
    res, target = _result(out, x.shape, x.dtype, (x,))
    if x.size:
        x3 = _view3(x, 1) if x.ndim >= 2 else np.ascontiguousarray(x).reshape(1, 1, -1)
        pick(PRELU_FORWARD, x.size)(x3, wc, res.reshape(x3.shape))
    return _finish(res, target)


def prelu_backward(grad_output, input, weight, *, out=None):
    """Returns ``(grad_input, grad_weight)``: ``grad_input = g if x > 0 else weight * g`` and
    ``grad_weight[c] = sum over all dims but 1 of (x * g where x <= 0)``, reduced in float64
    per task in a fixed order (thread-count independent), shaped like ``weight``. The
    optimizer updates the weight from this gradient like any other parameter."""
    x, w, wc, _ = _prelu_args(input, weight)
    g = as_float_array(grad_output, "grad_output").astype(x.dtype, copy=False)
    if g.shape != x.shape:
        raise ValueError(f"grad_output has shape {g.shape} but input has shape {x.shape}")
    res, target = _result(out, x.shape, x.dtype, (x, g))
    x3 = _view3(x, 1) if x.ndim >= 2 else np.ascontiguousarray(x).reshape(1, 1, -1)
    g3 = np.ascontiguousarray(g).reshape(x3.shape)
    outer, c_n, inner = x3.shape
    if inner == 1:
        partial = np.zeros((max(1, min(outer, 64)), c_n), np.float64)
    else:
        nb = -(-inner // AXIS_BLOCK)
        partial = np.zeros((outer * c_n * nb, 1), np.float64)
    if x.size:
        pick(PRELU_BACKWARD, x.size)(g3, x3, wc, res.reshape(x3.shape), partial)
    if inner == 1:
        gw = partial.sum(axis=0)
    else:
        gw = partial.reshape(outer, c_n, nb).sum(axis=(0, 2))
    if w.size == 1:
        gw = np.array([gw.sum()])
    return _finish(res, target), gw.astype(w.dtype).reshape(np.shape(weight))


# ----------------------------------------------------------------------------- GLU
def _glu_view(x, dim):
    if x.ndim == 0:
        raise ValueError("glu does not support 0-d input")
    d = normalize_dim(dim, x.ndim)
    if x.shape[d] % 2:
        raise ValueError(f"Halving dimension must be even, but dimension {d} is size {x.shape[d]}")
    outer = math.prod(x.shape[:d])
    out_shape = x.shape[:d] + (x.shape[d] // 2,) + x.shape[d + 1 :]
    half = math.prod(out_shape[d:])
    return d, np.ascontiguousarray(x).reshape(outer, 2, half), out_shape


def glu(input, dim: int = -1, *, out=None):
    """Gated linear unit ``a * sigmoid(b)`` where a, b are the two halves of ``input`` along
    ``dim``. torch: ``F.glu(input, dim=-1)``."""
    if out is None and _last_axis_fast(input, dim) and input.shape[-1] % 2 == 0:
        half = input.shape[-1] // 2
        res = np.empty(input.shape[:-1] + (half,), input.dtype)
        r2 = res if res.ndim == 2 else res.reshape(-1, half)
        pick(GLU_FORWARD, input.size)(input.reshape(-1, 2, half), r2)
        return res
    return _glu_any(input, dim, out=out)


def _glu_any(input, dim: int = -1, *, out=None):
    """glu without the fast path (any input; device arrays dispatched)."""
    x = as_float_array(input, "input")
    _, x3, out_shape = _glu_view(x, dim)
    res, target = _result(out, out_shape, x.dtype, (x,))
    if x.size:
        pick(GLU_FORWARD, x.size)(x3, res.reshape(x3.shape[0], x3.shape[2]))
    return _finish(res, target)


def glu_backward(grad_output, input, dim: int = -1, *, out=None):
    """Gradient of glu w.r.t. its input: ``[g sigmoid(b), g a sigmoid(b) sigmoid(-b)]``."""
    if (
        out is None
        and _last_axis_fast(input, dim)
        and type(grad_output) is np.ndarray
        and grad_output.dtype == input.dtype
        and grad_output.flags.c_contiguous
        and input.shape[-1] % 2 == 0
        and grad_output.shape == input.shape[:-1] + (input.shape[-1] // 2,)
    ):
        half = input.shape[-1] // 2
        res = np.empty_like(input)
        x3 = input.reshape(-1, 2, half)
        g2 = grad_output if grad_output.ndim == 2 else grad_output.reshape(-1, half)
        pick(GLU_BACKWARD, input.size)(g2, x3, res.reshape(x3.shape))
        return res
    return _glu_backward_any(grad_output, input, dim, out=out)


def _glu_backward_any(grad_output, input, dim: int = -1, *, out=None):
    """glu_backward without the fast path (any input; device arrays dispatched)."""
    x = as_float_array(input, "input")
    _, x3, out_shape = _glu_view(x, dim)
    g = as_float_array(grad_output, "grad_output")
    if g.shape != out_shape:
        raise ValueError(f"grad_output has shape {g.shape}, expected {out_shape}")
    dt = np.promote_types(x.dtype, g.dtype)
    x3, g = x3.astype(dt, copy=False), g.astype(dt, copy=False)
    res, target = _result(out, x.shape, dt, (x, g))
    if x.size:
        g2 = np.ascontiguousarray(g).reshape(x3.shape[0], x3.shape[2])
        pick(GLU_BACKWARD, x.size)(g2, x3, res.reshape(x3.shape))
    return _finish(res, target)


# ----------------------------------------------------------------------------- Maxout
def _maxout_view(x, pieces, dim):
    if isinstance(pieces, (bool, np.bool_)) or not isinstance(pieces, (int, np.integer)):
        raise TypeError(f"pieces must be an int, got {type(pieces).__name__}")
    if pieces < 1:
        raise ValueError(f"pieces must be >= 1, got {pieces}")
    if x.ndim == 0:
        raise ValueError("maxout does not support 0-d input")
    d = normalize_dim(dim, x.ndim)
    c = x.shape[d]
    if c % pieces:
        raise ValueError(f"input size {c} along dim {d} is not divisible by pieces={pieces}")
    x3 = _view3(x, d)
    x4 = x3.reshape(x3.shape[0], c // pieces, pieces, x3.shape[2])
    out_shape = x.shape[:d] + (c // pieces,) + x.shape[d + 1 :]
    return x4, out_shape


def maxout(input, pieces: int, dim: int = 1, *, out=None):
    """Maxout: the maximum over each group of ``pieces`` consecutive entries along ``dim``
    (channel ``j`` of the result is ``max(x[j*pieces : (j+1)*pieces])``), i.e. the max over
    ``pieces`` affine feature maps computed by the preceding layer. A NaN wins the max."""
    if (
        out is None
        and type(pieces) is int
        and pieces in MAXOUT_ROW_PIECES
        and _last_axis_fast(input, dim)
        and input.shape[-1] % pieces == 0
    ):
        # fast path: groups along the last axis of a C-contiguous float array
        c = input.shape[-1]
        cout = c // pieces
        res = np.empty(input.shape[:-1] + (cout,), input.dtype)
        x2 = input if input.ndim == 2 else input.reshape(-1, c)
        r2 = res if res.ndim == 2 else res.reshape(-1, cout)
        pick(maxout_rows_kernels(pieces)[0], input.size)(x2, r2)
        return res
    return _maxout_any(input, pieces, dim, out=out)


def _maxout_any(input, pieces: int, dim: int = 1, *, out=None):
    """maxout without the fast path (any input; device arrays dispatched)."""
    x = as_float_array(input, "input")
    x4, out_shape = _maxout_view(x, pieces, dim)
    res, target = _result(out, out_shape, x.dtype, (x,))
    if x.size:
        outer, cout, _, inner = x4.shape
        if inner == 1 and pieces in MAXOUT_ROW_PIECES:
            fwd, _ = maxout_rows_kernels(pieces)
            pick(fwd, x.size)(x4.reshape(outer, cout * pieces), res.reshape(outer, cout))
        else:
            pick(MAXOUT_FORWARD, x.size)(x4, res.reshape(outer, cout, inner))
    return _finish(res, target)


def maxout_backward(grad_output, input, pieces: int, dim: int = 1, *, out=None):
    """Gradient of maxout: ``grad_output`` routed to the (first) argmax of each group."""
    if (
        out is None
        and type(pieces) is int
        and pieces in MAXOUT_ROW_PIECES
        and _last_axis_fast(input, dim)
        and type(grad_output) is np.ndarray
        and grad_output.dtype == input.dtype
        and grad_output.flags.c_contiguous
        and input.shape[-1] % pieces == 0
        and grad_output.shape == input.shape[:-1] + (input.shape[-1] // pieces,)
    ):
        c = input.shape[-1]
        res = np.empty_like(input)
        two_d = input.ndim == 2
        pick(maxout_rows_kernels(pieces)[1], input.size)(
            grad_output if two_d else grad_output.reshape(-1, c // pieces),
            input if two_d else input.reshape(-1, c),
            res if two_d else res.reshape(-1, c),
        )
        return res
    return _maxout_backward_any(grad_output, input, pieces, dim, out=out)


def _maxout_backward_any(grad_output, input, pieces: int, dim: int = 1, *, out=None):
    """maxout_backward without the fast path (any input; device arrays dispatched)."""
    x = as_float_array(input, "input")
    x4, out_shape = _maxout_view(x, pieces, dim)
    g = as_float_array(grad_output, "grad_output")
    if g.shape != out_shape:
        raise ValueError(f"grad_output has shape {g.shape}, expected {out_shape}")
    dt = np.promote_types(x.dtype, g.dtype)
    x4, g = x4.astype(dt, copy=False), g.astype(dt, copy=False)
    res, target = _result(out, x.shape, dt, (x, g))
    if x.size:
        outer, cout, _, inner = x4.shape
        g3 = np.ascontiguousarray(g).reshape(outer, cout, inner)
        if inner == 1 and pieces in MAXOUT_ROW_PIECES:
            _, bwd = maxout_rows_kernels(pieces)
            pick(bwd, x.size)(
                g3.reshape(outer, cout),
                x4.reshape(outer, cout * pieces),
                res.reshape(outer, cout * pieces),
            )
        else:
            pick(MAXOUT_BACKWARD, x.size)(g3, x4, res.reshape(x4.shape))
    return _finish(res, target)


# ----------------------------------------------------------------------------- softmax
def _user_stacklevel() -> int:
    """The warnings stacklevel of the first frame outside fastact's package."""
    import os
    import sys

    pkg = os.path.dirname(os.path.abspath(__file__))
    f, level = sys._getframe(1), 1
    while f is not None and os.path.abspath(f.f_code.co_filename).startswith(pkg):
        f, level = f.f_back, level + 1
    return level


def _softmax_dim(dim, ndim, fname):
    if dim is None:
        warnings.warn(
            f"Implicit dimension choice for {fname} has been deprecated. Change the "
            "call to include dim=X as an argument.",
            UserWarning,
            stacklevel=_user_stacklevel(),
        )
        return 0 if ndim in (0, 1, 3) else 1
    return normalize_dim(dim, ndim)


def _last_axis_fast(a, dim) -> bool:
    """A C-contiguous float32/64 ndarray worked on along its last axis: no conversion,
    no copy, rows of the last axis (the common call, kept to a few microseconds)."""
    return (
        type(a) is np.ndarray
        and a.dtype in FLOAT_DTYPES
        and a.ndim >= 1
        and a.size > 0
        and type(dim) is int
        and (dim == -1 or dim == a.ndim - 1)
        and a.flags.c_contiguous
    )


def _softmax_forward(input, dim, dtype, out, log, sign, fname):
    if dtype is None and out is None and _last_axis_fast(input, dim):
        res = np.empty_like(input)
        x3 = input.reshape(-1, input.shape[-1], 1)
        pick(SOFTMAX, input.size)(x3, res.reshape(x3.shape), log, float(sign))
        return res
    x = as_float_array(input, "input")
    if dtype is not None:
        try:
            dt = np.dtype(dtype)
        except TypeError:
            raise TypeError(f"dtype must be float32 or float64, got {dtype!r}") from None
        if dt not in (np.float32, np.float64):
            raise TypeError(f"dtype must be float32 or float64, got {dt}")
        x = x.astype(dt, copy=False)
    d = _softmax_dim(dim, x.ndim, fname)
    res, target = _result(out, x.shape, x.dtype, (x,))
    if x.size:
        x3 = _view3(x, d)
        pick(SOFTMAX, x.size)(x3, res.reshape(x3.shape), log, float(sign))
    return _finish(res, target)


def _softmax_backward(grad_output, input, output, dim, out, log, sign, fname):
    if (
        input is None
        and out is None
        and _last_axis_fast(output, dim)
        and type(grad_output) is np.ndarray
        and grad_output.dtype == output.dtype
        and grad_output.shape == output.shape
        and grad_output.flags.c_contiguous
    ):
        res = np.empty_like(output)
        y3 = output.reshape(-1, output.shape[-1], 1)
        pick(SOFTMAX_BACKWARD, output.size)(
            grad_output.reshape(y3.shape),
            y3,
            res.reshape(y3.shape),
            log,
            float(sign),
        )
        return res
    if (input is None) == (output is None):
        raise TypeError(f"{fname}_backward needs exactly one of input= and output=")
    name = "input" if output is None else "output"
    g, v = _pair_inputs(grad_output, input if output is None else output, "grad_output", name)
    d = _softmax_dim(dim, v.ndim, fname)
    y = _softmax_forward(v, d, None, None, log, sign, fname) if output is None else v
    res, target = _result(out, v.shape, v.dtype, (g, v))
    if v.size:
        y3 = _view3(y, d)
        g3 = _view3(g, d)
        pick(SOFTMAX_BACKWARD, v.size)(g3, y3, res.reshape(y3.shape), log, float(sign))
    return _finish(res, target)


def softmax(input, dim: int | None = None, dtype=None, *, out=None):
    """``exp(x) / sum(exp(x))`` along ``dim`` (max-shifted, float64 sums).
    torch: ``F.softmax(input, dim=None, dtype=None)``; dim=None picks torch's legacy implicit
    dim with a warning."""
    return _softmax_forward(input, dim, dtype, out, False, 1, "softmax")


def log_softmax(input, dim: int | None = None, dtype=None, *, out=None):
    """``x - max - log(sum(exp(x - max)))`` along ``dim``. torch: ``F.log_softmax``."""
    return _softmax_forward(input, dim, dtype, out, True, 1, "log_softmax")


def softmin(input, dim: int | None = None, dtype=None, *, out=None):
    """``softmax(-x)`` along ``dim``. torch: ``F.softmin(input, dim=None, dtype=None)``."""
    return _softmax_forward(input, dim, dtype, out, False, -1, "softmin")


def softmax_backward(grad_output, input=None, dim: int | None = None, *, output=None, out=None):
    """``y * (g - sum(g * y))`` along ``dim``, with y the softmax output (pass ``output=`` to
    reuse the forward's result, or ``input`` to recompute it)."""
    return _softmax_backward(grad_output, input, output, dim, out, False, 1, "softmax")


def log_softmax_backward(grad_output, input=None, dim: int | None = None, *, output=None, out=None):
    """``g - exp(y) * sum(g)`` along ``dim``, with y the log-softmax output."""
    return _softmax_backward(grad_output, input, output, dim, out, True, 1, "log_softmax")


def softmin_backward(grad_output, input=None, dim: int | None = None, *, output=None, out=None):
    """``-y * (g - sum(g * y))`` along ``dim``, with y the softmin output."""
    return _softmax_backward(grad_output, input, output, dim, out, False, -1, "softmin")


#: Activations that are not element-wise, with their parameters (for docs, tests, benches).
AXIS_ACTIVATIONS = {
    "rrelu": ("lower", "upper", "training"),
    "prelu": ("weight",),
    "glu": ("dim",),
    "maxout": ("pieces", "dim"),
    "softmax": ("dim",),
    "log_softmax": ("dim",),
    "softmin": ("dim",),
}

__all__ += [
    f"{name}{suffix}"
    for name in AXIS_ACTIVATIONS
    for suffix in ("", "_backward") + (("_",) if name == "rrelu" else ())
]

# Device arrays (__cuda_array_interface__) go to fastact.cuda's kernels. Functions with a fast
# path (whose conditions admit only host arguments) check it first, then call their general
# part, which is the device-aware one.
from fastact.cuda import device_aware as _device_aware  # noqa: E402

for _n in ("prelu", "glu", "glu_backward", "maxout", "maxout_backward", "rrelu_backward"):
    globals()[f"_{_n}_any"] = _device_aware(globals()[f"_{_n}_any"], name=_n)
for _n in (
    "prelu_backward",
    "rrelu",
    "rrelu_",
    "softmax",
    "log_softmax",
    "softmin",
    "softmax_backward",
    "log_softmax_backward",
    "softmin_backward",
):
    globals()[_n] = _device_aware(globals()[_n])
del _n
