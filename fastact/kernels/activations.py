"""What the activations compute: one scalar definition per element-wise activation.

Each element-wise activation is written once as jitted scalar functions (value, gradient from
the input, and where possible gradient from the output) and registered as an
:class:`~fastact.kernels.elementwise.Elementwise` spec in :data:`ACTIVATIONS`, the registry
that drives the public functions (:mod:`fastact.activations`), both executors (host loops,
CUDA kernels), the tests, the benchmarks and the docs.

Conventions at kinks, NaN propagation and saturation follow torch 2.13 (see
``docs/torch_semantics.md``); where torch loses accuracy (softplus overflow, tails of silu,
mish, gelu), fastact uses stable forms instead and documents it.
"""

from __future__ import annotations

import math

import numpy as np

from fastact._core import math as fm
from fastact._core.jit import EXACT_FASTMATH, jit
from fastact._core.math import lit
from fastact.kernels._series import (
    _GELU_A0,
    _GELU_A0_32,
    _GELU_DP32,
    _GELU_DP64,
    _MISH_P32,
    _MISH_P64,
    _MISH_ROOT,
    _MISH_ROOT32,
    _SILU_RHO,
    _SILU_ROOT,
    _TANHSHRINK_P64,
    _THIRD_LO,
)
from fastact.kernels.elementwise import REQUIRED, Elementwise

__all__ = ["ACTIVATIONS", "GELU", "REQUIRED", "sigmoid_core", "sigmoid_pair"]

#: name -> spec of every element-wise activation (gelu's tanh form as ``gelu_tanh``)
ACTIVATIONS: dict[str, Elementwise] = {}

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
_SQRT_2_PI = 0.7978845608028654  # sqrt(2/pi)
_GELU_C = 0.044715
_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946
# scale * alpha: the exact product of torch's decimal constants, correctly rounded (the product
# of the two rounded constants was 1.5 float64 ULP off: selu 2.47 ULP), and in two words of
# float64 and of float32 for y + scale * alpha, which cancels (gradient from the output)
_SELU_AS_HI, _SELU_AS_LO = 1.7580993408473768, 1.41535193800845e-17
_SELU_AS_HI32 = float(np.float32(_SELU_AS_HI))
_SELU_AS_LO32 = float(np.float32(_SELU_AS_HI - _SELU_AS_HI32 + _SELU_AS_LO))
_EXP_M32 = math.exp(-32.0)
_EXP_M128 = math.exp(-128.0)


def _register(name: str, forward, grad, grad_output=None, params=(), inplace=False, **kw):
    """Define the element-wise activation ``name`` (its spec) in :data:`ACTIVATIONS`."""
    op = Elementwise(name, forward, grad, grad_output, params, inplace, **kw)
    ACTIVATIONS[name] = op
    return op


# ----------------------------------------------------------------------------- shared cores
@jit
def _is_f32(x):
    """Whether x is a float32 (a constant: LLVM folds the test and the branch not taken)."""
    return lit(x, 1.0) + lit(x, 1e-10) == lit(x, 1.0)


@jit
def _normal_exp_bound(x):
    """87 (float32) / 708 (float64): exp(-t) is a normal number for t up to it. Kernels take
    exponentials no smaller where a smaller one could not change their result: an operation
    with a subnormal operand or result costs Intel CPUs a microcode assist (gelu(tanh) at x =
    20 took 7.7x, tanh' at x = 60 10x, sigmoid at 100 12x the time of x = 2; AMD CPUs are
    not affected)."""
    return lit(x, 87.0) if _is_f32(x) else lit(x, 708.0)


@jit(fastmath=EXACT_FASTMATH)
def _plus_zero(v):
    """v + 0 in IEEE arithmetic: -0 becomes +0, any other value (NaN included) stays. torch's
    zero where its formula ends in a sum or a difference (x - tanh x at x = -0) is +0, where
    fastact's product forms gave -0. Under the nsz flag LLVM would fold v + 0 to v (one
    addition: where a product ends the formula, :func:`_times_plus_zero` costs nothing)."""
    return v + lit(v, 0.0)


@jit(fastmath=EXACT_FASTMATH)
def _times_plus_zero(a, b):
    """a b + 0 with one rounding (an fma in place of the product: no cost): +0 where a b is
    an exact zero (-0 where a product of a zero and a negative number gave -0), the product
    anywhere else (a tiny product that rounds to zero keeps its sign). IEEE arithmetic: under
    the nsz flag LLVM turns fma(a, b, +0) into a b."""
    return fm._fma(a, b, lit(a, 0.0))


@jit
def sigmoid_core(x):
    """1/(1+exp(-x)) without cancellation or overflow in either tail: (1 or e) / (1 + e),
    e = exp(-|x|), one division (e * (1 / (1 + e)) rounded once more: 2.8 ULP float32, 2.1
    float64; now within 2). From x = 87 (float32) / 708 (float64) the result is 1 and e
    is taken at that bound, where it is still a normal number: see :func:`_normal_exp_bound`."""
    b = _normal_exp_bound(x)
    e = fm.exp(-b if x > b else -abs(x))
    return (lit(x, 1.0) if x >= 0 else e) / (lit(x, 1.0) + e)


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


@jit(fastmath=EXACT_FASTMATH)
def _sigmoid_deriv(x):
    """sigmoid(x) sigmoid(-x) = e / (1 + e (2 + e)), e = exp(-|x|): one fma and one division
    (torch: ``y (1 - y)``, which cancels for large |x|). exp's error is weighted by
    (1 - e) / (1 + e) <= 1 (none at x = 0). IEEE arithmetic."""
    e = fm.exp(-abs(x))
    return e / fm._fma(e, lit(x, 2.0) + e, lit(x, 1.0))


@jit
def _sigmoid_grad(g, x):
    return g * _sigmoid_deriv(x)


@jit(fastmath=EXACT_FASTMATH)
def _sigmoid_grad_out(g, y):
    # y (1 - y) = y - y^2 with one rounding (fma), then g: at most 1 ULP of the exact
    # y (1 - y) of the given y
    return g * fm._fma(-y, y, y)


_register(
    "sigmoid",
    _sigmoid,
    _sigmoid_grad,
    _sigmoid_grad_out,
    doc="""
Logistic sigmoid ``1 / (1 + exp(-x))``, range (0, 1). torch: ``torch.sigmoid``.
Computed as ``exp(-|x|)`` based so neither tail overflows or cancels. Gradient
``sigmoid(x) sigmoid(-x)`` within 2.38 ULP from the input (float32, all 2^32 inputs; float64
2.8, 10^8 samples), ``y (1 - y)`` within 0.5 ULP of the given output (against mpmath).""",
)


@jit
def _tanh(x):
    return fm.tanh(x)


@jit(fastmath=EXACT_FASTMATH)
def _tanh_grad(g, x):
    # sech^2 x = 4 sigmoid'(2x) = 4 e / (1 + e (2 + e)), e = exp(-2|x|) (2|x| exact): no
    # cancellation for large |x|, and one fma instead of (1 + e)^2 rounded twice (4.22 ULP
    # in float32 over all inputs; this: the sigmoid' formula's 2.4)
    # from |x| = 52 / 373 the result is 0 (float32 / float64): computed at x = 0 there, so
    # that no subnormal intermediate costs an assist (_normal_exp_bound)
    zero = abs(x) > (lit(x, 52.0) if _is_f32(x) else lit(x, 373.0))
    e = fm.exp(lit(x, -2.0) * abs(lit(x, 0.0) if zero else x))
    d = lit(x, 4.0) * e / fm._fma(e, lit(x, 2.0) + e, lit(x, 1.0))
    return g * (lit(x, 0.0) if zero else d)


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
    # x < 0, not x <= 0: -0.0 stays -0.0, like torch's clamp_min (its vector loop and its
    # scalar tail, float32 and float64); NaN propagates
    return lit(x, 0.0) if x < 0 else x


@jit
def _relu_grad(g, x):
    return lit(x, 0.0) if x <= 0 else g


_register(
    "relu",
    _relu,
    _relu_grad,
    _relu_grad,
    inplace=True,
    stream=False,
    doc="""
``max(0, x)``; NaN propagates, -0.0 stays -0.0 (as in torch); gradient 0 for x <= 0
(torch's convention at 0).
torch: ``F.relu(input, inplace=False)``.""",
)


@jit
def _leaky_relu(x, negative_slope):
    return x if x > 0 else x * negative_slope


@jit
def _leaky_relu_grad(g, x, negative_slope):
    return g if x > 0 else g * negative_slope


def _check_nonneg_slope(negative_slope):
    if np.any(np.asarray(negative_slope) < 0):
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
    stream=False,
    check_output=_check_nonneg_slope,
    doc="""
``x if x > 0 else negative_slope * x``; gradient at 0 is negative_slope.
torch: ``F.leaky_relu(input, negative_slope=0.01, inplace=False)``.""",
)


@jit
def _hardtanh(x, min_val, max_val):
    if min_val != min_val or max_val != max_val:  # a NaN bound: torch's clamp gives NaN
        return min_val + max_val
    return min_val if x < min_val else (max_val if x > max_val else x)


@jit
def _hardtanh_grad(g, x, min_val, max_val):
    # NaN input: torch 2.13 gives 0 or g by the element's position, so NaN, except that
    # g = 0 gives 0 in both of torch's loops
    d = lit(x, 0.0) if (x <= min_val or x >= max_val) else g
    return d if x == x else (g if g == 0 else x)


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
    stream=("grad", "grad_output"),  # the forward loops lost 3-10% with the hint
    doc="""
``min(max(0, x), 6)`` = hardtanh(x, 0, 6); gradient 0 at 0 and 6.
torch: ``F.relu6(input, inplace=False)``.""",
)


@jit
def _elu(x, alpha):
    # x < 0 selects the exponential side (torch's split): +-0 stay themselves for any alpha
    return alpha * fm.expm1(x) if x < 0 else x


@jit
def _elu_grad(g, x, alpha):
    return g if x > 0 else g * alpha * fm.exp(x)


@jit
def _elu_grad_out(g, y, alpha):
    return g if y > 0 else g * (y + alpha)


def _check_nonneg_alpha(alpha):
    if np.any(np.asarray(alpha) < 0):
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


# torch scales by the reciprocal 1/alpha (input_scale); LLVM hoists the division out of
# loops. IEEE arithmetic (EXACT_FASTMATH): with the arcp flag LLVM turned x * (1/alpha) into
# x / alpha where the function stood alone (fastact.scalar's forms called from Python) and
# back into a product with the hoisted reciprocal in the loops, so the paths differed in the
# last bit (celu's gradient by up to 17 ULP through exp at x = -12.6, alpha = 0.7)
@jit(fastmath=EXACT_FASTMATH)
def _celu(x, alpha):
    return alpha * fm.expm1(x * (lit(x, 1.0) / alpha)) if x < 0 else x


@jit(fastmath=EXACT_FASTMATH)
def _celu_grad(g, x, alpha):
    return g if x > 0 else g * fm.exp(x * (lit(x, 1.0) / alpha))


@jit(fastmath=EXACT_FASTMATH)
def _celu_grad_out(g, y, alpha):
    # exp(x / alpha) = (y + alpha) / alpha, as torch's in-place backward: g (1/alpha) (y +
    # alpha). y + alpha is exact near saturation (Sterbenz), so a saturated y = -alpha gives
    # 0 and never a negative value; y (1/alpha) + 1 (fused into one fma) cancelled there:
    # -6.8e-9 g in float32 with alpha = 0.7
    return g if y > 0 else g * (lit(y, 1.0) / alpha) * (y + alpha)


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


@jit(fastmath=EXACT_FASTMATH)
def _plus_selu_as(y):
    """y + scale * alpha, exact up to one rounding also where y is near -scale * alpha (the
    saturated output, where the sum cancels): (y + c_hi) + c_lo, c_hi + c_lo the constant in
    two words of y's type (y + c_hi is exact there)."""
    if _is_f32(y):
        return (y + lit(y, _SELU_AS_HI32)) + lit(y, _SELU_AS_LO32)
    return (y + lit(y, _SELU_AS_HI)) + lit(y, _SELU_AS_LO)


@jit
def _selu(x):
    s = lit(x, _SELU_SCALE)
    return s * x if x > 0 else lit(x, _SELU_AS_HI) * fm.expm1(x)


@jit
def _selu_grad(g, x):
    return g * lit(x, _SELU_SCALE) if x > 0 else g * (lit(x, _SELU_AS_HI) * fm.exp(x))


@jit
def _selu_grad_out(g, y):
    return g * lit(y, _SELU_SCALE) if y > 0 else g * _plus_selu_as(y)


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
@jit(fastmath=EXACT_FASTMATH)
def _softplus(x, beta, threshold):
    # IEEE arithmetic: a true division by beta, as torch's, on every path (with the arcp flag
    # the loops multiplied by a hoisted 1/beta, the scalar form alone divided: 1 ULP apart);
    # softplus(NaN) is also torch's +NaN on every path (fast-math's vector loop and scalar
    # form gave -NaN, the loop's tail +NaN: tests/test_activations.py)
    bx = x * beta
    if bx > threshold:
        return x
    # log1p(exp(bx)) = max(bx, 0) + log1p(exp(-|bx|)): never overflows (torch's does); from
    # bx = 87 / 708 the exponential is taken there (bx + its log1p is bx: _normal_exp_bound)
    b = _normal_exp_bound(x)
    return (max(bx, lit(x, 0.0)) + fm.log1p(fm.exp(-b if bx > b else -abs(bx)))) / beta


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
    # below -87 / -708 x - log1p(e^x) is x: e^x taken at that bound (_normal_exp_bound)
    b = _normal_exp_bound(x)
    return min(x, lit(x, 0.0)) - fm.log1p(fm.exp(-b if x < -b else -abs(x)))


@jit
def _logsigmoid_grad(g, x):
    return g * sigmoid_core(-x)


@jit(fastmath=EXACT_FASTMATH)
def _logsigmoid_grad_out(g, y):
    # sigmoid(-x) = 1 - exp(y) = -expm1(y) for y = logsigmoid(x) <= 0: no cancellation; as
    # 0 - expm1(y) in IEEE arithmetic, +0 at y = 0 (torch's g sigmoid(-x) = g * +0 there)
    return g * (lit(y, 0.0) - fm.expm1(y))


_register(
    "logsigmoid",
    _logsigmoid,
    _logsigmoid_grad,
    _logsigmoid_grad_out,
    doc="""
``log(1 / (1 + exp(-x))) = min(x, 0) - log1p(exp(-|x|))`` (stable for any x).
torch: ``F.logsigmoid(input)``. From the output ``y`` the gradient is ``g * -expm1(y)``
(``= sigmoid(-x)``, no cancellation, no exponential of the input): what ``fastact.nn``'s
LogSigmoid uses.""",
)


@jit
def _exp_neg_abs_scaled(x):
    """(e, tiny): e = exp(-|x|), or exp(x + 32) when x < -64 (tiny; the true value is
    e * exp(-32), which would lose precision as a subnormal). One exp for both cases."""
    tiny = x < lit(x, -64.0)
    return fm.exp(-abs(x) + (lit(x, 32.0) if tiny else lit(x, 0.0))), tiny


@jit
def _silu(x):
    """x / (1 + exp(-x)): one exponential, one addition, one division (x * sigmoid(x) rounded
    four times was 3.5 ULP in float32, 3.0 in float64); below -64, x e^(x + 32) e^-32."""
    tiny = x < lit(x, -64.0)
    e = fm.exp((x + lit(x, 32.0)) if tiny else -x)
    if tiny:  # x e^x / (1 + e^x) = x e^x to float precision
        return (x * e) * lit(x, _EXP_M32)
    return x / (lit(x, 1.0) + e)


#: silu' near its zero r (1 + r + e^r = 0): 1 + x + e^x = t (1 + rho) + rho (e^t - 1 - t),
#: t = x - r, rho = e^r; the Taylor coefficients of that sum in t, lowest first (the CUDA
#: executor's band |x - r| < 1/256, see _silu_deriv_device; the host's is 2^-9, _SILU_NEAR)
_SILU_A = (1.0 + _SILU_RHO, *(_SILU_RHO / math.factorial(j) for j in range(2, 9)))
_SILU_BAND = 1.0 / 256.0
_SILU_NEAR = 2.0**-9  # the host's band: beyond it the exponential's parts are within 3.5 ULP
_SILU_ROOT32 = (np.float32(_SILU_ROOT[0]), np.float32(1.2979282537628478e-08))  # r to 1e-16


@jit(fastmath=EXACT_FASTMATH)
def _silu_band(x):
    """1 + x + e^x for x near silu's root r: t (1 + rho) + t^2 P(t), t = (x - r_hi) - r_lo
    (x - r_hi is exact: Sterbenz), the leading coefficient 1 + rho = -r in two words; float32
    in float32 with r in float32 words (t within 0.6 ULP at the nearest float32 to r, 1.3e-8
    from it), degree 3 (float64: 7) for |x - r| < 1/256 (the next term is below 2^-30)."""
    if _is_f32(x):
        t = (x - lit(x, _SILU_ROOT32[0])) - lit(x, _SILU_ROOT32[1])
        p = fm._fma(t, lit(x, _SILU_A[2]), lit(x, _SILU_A[1]))
        return fm._fma(t, lit(x, -_SILU_ROOT32[0]), t * fm._fma(p, t, lit(x, -_SILU_ROOT32[1])))
    t = (x - _SILU_ROOT[0]) - _SILU_ROOT[1]
    p = _SILU_A[6]
    for j in range(5, 0, -1):
        p = fm._fma(p, t, _SILU_A[j])
    return lit(x, fm._fma(t, -_SILU_ROOT[0], t * fm._fma(p, t, -_SILU_ROOT[1])))


@jit(fastmath=EXACT_FASTMATH)
def _silu_parts(x):
    """(e, a, tiny): e = exp(-|x|), or exp(x + s) when x < -64 (tiny; s = 32 for float32, 128
    for float64: e stays a normal number), and a = 1 + x + e^x for x < 0 from the
    exponential's parts e = sc (1 + vh + vl) (:func:`fastact._core.math._exp_parts`):
    (1 + x) + sc is exact, and near silu's root so is the sum with sc vh (Sterbenz), so a's
    error is that of sc vl and of the polynomial, about 2^-30 (float32) / 2^-58 (float64) of
    e: below 1 ULP of a unless |x - r| < 2^-8 (float32) / 2^-10 (float64), where a -> 0.
    Where x < -64, a = 1 + x."""
    one = lit(x, 1.0)
    tiny = x < lit(x, -64.0)
    shift = lit(x, 32.0) if _is_f32(x) else lit(x, 128.0)
    vh, vl, k, sc = fm._exp_parts(-abs(x) + (shift if tiny else lit(x, 0.0)))
    sa = lit(x, 0.0) if tiny else sc
    a = fm._fma(sa, vl, fm._fma(sa, vh, (one + x) + sa))
    return (one + vh) * sc, a, tiny


@jit(fastmath=EXACT_FASTMATH)
def _silu_finish(x, e, a, tiny):
    """silu' = s (1 + x (1 - s)) = N / (1 + e)^2 with N = 1 + e (1 + x) (x >= 0) or e a
    (x < 0); (1 + e)^2 from 1 + e = d + dl exactly. IEEE arithmetic."""
    one = lit(x, 1.0)
    d = one + e
    dl = (one - d) + e  # e <= 1: Fast2Sum
    pos = x >= 0
    num = fm._fma(e, (one + x) if pos else a, one if pos else lit(x, -0.0))
    dd = fm._fma(d, d, lit(x, 2.0) * d * dl)
    # x < -64: silu' = (1 + x) e^x to the type's precision (e = e^(x + s))
    return num * (lit(x, _EXP_M32) if _is_f32(x) else lit(x, _EXP_M128)) if tiny else num / dd


@jit(fastmath=EXACT_FASTMATH)
def _silu_deriv_wide(x):
    """silu'(x) without the root band: within 3.8 ULP (float32) / 3.5 ULP (float64) of the
    exact value for |x - r| >= 2^-9 around its zero r = -1.27846; inside, the error grows as
    1/|x - r| (1.3e5 / 2.2e6 ULP at the floats nearest r)."""
    e, a, tiny = _silu_parts(x)
    return _silu_finish(x, e, a, tiny)


@jit(fastmath=EXACT_FASTMATH)
def _silu_near(x):
    """Whether x is in silu''s host root band |x - r| < 2^-9 (where :func:`_silu_band`
    replaces the exponential's parts)."""
    return (x > lit(x, _SILU_ROOT[0] - _SILU_NEAR)) & (x < lit(x, _SILU_ROOT[0] + _SILU_NEAR))


@jit(fastmath=EXACT_FASTMATH)
def _silu_deriv_host(x):
    """silu'(x) within 3.72 ULP (float32: all 2^32 inputs) / 3.5 ULP (float64, dense samples)
    of the exact value everywhere: :func:`_silu_deriv_wide`, and in the band |x - r| < 2^-9
    around the zero r = -1.27846 1 + x + e^x from the series :func:`_silu_band` (main's
    formula lost 3.2e6 / 9.8e8 ULP at the floats nearest r, and 5 to 13 ULP on all of x < 0).
    The host loops evaluate the band only for blocks that hold an element of it
    (:func:`_silu_grad_wide`, ``fastact.kernels.elementwise.map2_split_loop``)."""
    e, a, tiny = _silu_parts(x)
    a = _silu_band(x) if _silu_near(x) else a
    return _silu_finish(x, e, a, tiny)


@jit(fastmath=EXACT_FASTMATH)
def _silu_deriv_device(x):
    """The CUDA executor's silu': a = (1 + x) + exp(x) (no exponential in parts on the
    device), and near the root :func:`_silu_band` (a select costs little on a GPU)."""
    one = lit(x, 1.0)
    tiny = x < lit(x, -64.0)
    shift = lit(x, 32.0) if _is_f32(x) else lit(x, 128.0)
    e = fm.exp(-abs(x) + (shift if tiny else lit(x, 0.0)))
    near = abs(x - lit(x, _SILU_ROOT[0])) < lit(x, _SILU_BAND)
    a = _silu_band(x) if near else (one + x) + (lit(x, 0.0) if tiny else e)
    return _silu_finish(x, e, a, tiny)


#: silu': :func:`_silu_deriv_host` on the CPU, :func:`_silu_deriv_device` on the CUDA executor
_silu_deriv = fm.float32_variant(
    "_silu_deriv", _silu_deriv_host, _silu_deriv_host, device_impl=_silu_deriv_device
)


@jit(fastmath=EXACT_FASTMATH)
def _silu_grad(g, x):
    return g * _silu_deriv(x)


@jit(fastmath=EXACT_FASTMATH)
def _silu_grad_wide(g, x):
    """The host loops' silu gradient outside the root band (see :func:`_silu_deriv_host`)."""
    return g * _silu_deriv_wide(x)


@jit(fastmath=EXACT_FASTMATH)
def _silu_grad_near(g, x):
    return _silu_near(x)


_register(
    "silu",
    _silu,
    _silu_grad,
    inplace=True,
    split={"grad": (_silu_grad_near, _silu_grad_wide)},
    doc="""
``x * sigmoid(x)`` (swish). torch: ``F.silu(input, inplace=False)``. Accurate also for very
negative x, where torch's sigmoid factor underflows. Gradient ``s (1 + x (1 - s))`` as
``N / (1 + e)^2`` with the cancelling ``1 + x + e^x`` taken from the exponential's parts,
and within 2^-9 of its zero x = -1.27846 from a series in x - r: within 3.72 ULP (float32,
all 2^32 inputs) / 3.72 ULP (float64, 10^8 samples) everywhere (torch's float32 gradient
loses up to 1.7e7 ULP near the zero; fastact's former formula 5-13 ULP on all of x < 0).""",
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
    n = fm._fma(e, e, e + e)  # e (e + 2) rounded once
    return (x * n) / (n + lit(x, 2.0))


#: the band of x - r where mish' is a polynomial (:func:`_mish_band`): beyond it, K from e^x
#: cancels by less than 1/|x - r|, about 5x at the left edge and 4x at the right
_MISH_BAND = (-0.1875, 0.25)
#: the scale of mish''s Q, K and Z (:func:`_mish_deriv_f32`)
_MISH_C = 1.25
_MISH_MID = _MISH_ROOT[0] + (_MISH_BAND[0] + _MISH_BAND[1]) / 2
_MISH_HALF = (_MISH_BAND[1] - _MISH_BAND[0]) / 2


@jit(fastmath=EXACT_FASTMATH)
def _mish_band(x):
    """mish'(x) near its zero r = -1.19243 as (s - r_lo) P(s), s = x - r_hi exact (Sterbenz),
    P the near-minimax fit of _MISH_P32 (degree 5) / _MISH_P64 (degree 13): s P - r_lo P with
    one rounding."""
    if _is_f32(x):
        s = x - lit(x, _MISH_ROOT32[0])
        p = lit(x, _MISH_P32[5])
        for j in range(4, -1, -1):
            p = fm._fma(p, s, lit(x, _MISH_P32[j]))
        return fm._fma(s, p, p * lit(x, -_MISH_ROOT32[1]))
    s = x - lit(x, _MISH_ROOT[0])
    p = lit(x, _MISH_P64[13])
    for j in range(12, -1, -1):
        p = fm._fma(p, s, lit(x, _MISH_P64[j]))
    return fm._fma(s, p, p * lit(x, -_MISH_ROOT[1]))


@jit(fastmath=EXACT_FASTMATH)
def _mish_deriv_f32(x):
    """mish'(x) = tanh(sp) + x sech^2(sp) sigmoid(x) (sp = softplus(x)) = e K / Q, e = e^x,
    K = 4 (1 + x) + e (6 + 4x) + 4 e^2 + e^3, Q = (e^2 + 2e + 2)^2 = e^4 + 4e^3 + 8e^2 + 8e + 4,
    by Horner's rule in e: one division (the former formula had four), and no cancellation but
    K's near the zero r = -1.19243, where mish' is a polynomial in x - r (:func:`_mish_band`).
    x < 0: 2^k (K (1 + v)) / Q with e = (1 + v) 2^k (:func:`fastact._core.math._exp_mk`): e's
    own factor unrounded, and the result rounded once also where it is subnormal (down to +0,
    torch's sign, below about -104 / -745; NaN at -inf, as torch). x > 0: 1 + Z / Q with Z =
    e K - Q = e^2 (4x - 2) + e (4x - 4) - 4 (the correction to 1 is small: its rounding
    errors shrink with it). x is clamped to 20 (float32) / 40 (float64), where the result
    rounds to 1 (also at +inf, where torch's formula gives NaN). float32, all 2^32 inputs:
    within 3.81 ULP (at -1.4732; 2.02 on x > 0, about 2.3 in the band); was 5.2e8 at the zero
    and 6-24 on all of x < 0."""
    f32 = _is_f32(x)
    hi = lit(x, 20.0) if f32 else lit(x, 40.0)
    lo = lit(x, -170.0) if f32 else lit(x, -1400.0)
    xh = hi if x > hi else x
    xc = lo if xh < lo else xh
    m, v, k = fm._exp_mk(xc)
    e = fm._ldexp(m, k)
    # c Q, c K and c Z with c = 5/4 (exact coefficients, the same quotients): where the
    # result is just below 0.5 (x near -0.22) Q and K sat just above 16 and 8, where their
    # roundings are relatively largest (4.18 ULP there over all inputs, now 3.81 at most)
    c, c4, c8 = lit(x, _MISH_C), lit(x, 4.0 * _MISH_C), lit(x, 8.0 * _MISH_C)
    ce4 = fm._fma(c, e, c4)  # c (e + 4)
    q = fm._fma(e, fm._fma(e, fm._fma(e, ce4, c8), c8), c4)
    kk = fm._fma(e, fm._fma(e, ce4, fm._fma(c4, xc, lit(x, 6.0 * _MISH_C))), fm._fma(c4, xc, c4))
    z = fm._fma(e, fm._fma(e, fm._fma(c4, xc, lit(x, -2.0 * _MISH_C)), fm._fma(c4, xc, -c4)), -c4)
    up = x > lit(x, 0.0)
    y = fm._ldexp((z if up else fm._fma(kk, v, kk)) / q, k - k if up else k)
    y = lit(x, 1.0) + y if up else y
    if abs(x - lit(x, _MISH_MID)) < lit(x, _MISH_HALF):
        y = _mish_band(x)
    # + (xh - xh): +0 where y underflows to -0 (below about -104: torch's sum gives +0), NaN
    # at -inf (torch: -inf * sigmoid(-inf); the clamp to lo gave -0), +inf keeps the limit 1
    return y + (xh - xh)


@jit
def _mish_grad_f64(g, x):
    """float64 mish' as tanh(sp) + x sech^2(sp) sigmoid(x) from n = e (e + 2), d = n + 2: four
    divisions, cancelling near the zero -1.19243 (1.05e16 ULP there) and on much of x < 0.
    :func:`_mish_deriv_f32`'s form in float64 was within 3.17 ULP (2M log-uniform samples and
    dense bands) but cost 1.31x at 16M elements on 2 threads (float64 arithmetic is
    compute-bound there: its exponential's degree-10 polynomial and a degree-13 band), over
    issue 18's 10%. +inf gives 1 (torch: NaN)."""
    e, tiny = _mish_exp(x)
    if tiny:  # (1 + x) e^x to float precision; g * +0 where it underflows (torch's sign)
        return _kept(g, ((lit(x, 1.0) + x) * e) * lit(x, _EXP_M32), lit(x, 1.0), x)
    if x > 20:
        return g
    n = e * (e + lit(x, 2.0))
    d = n + lit(x, 2.0)
    t = n / d
    sech2 = lit(x, 4.0) * ((n + lit(x, 1.0)) / d) / d
    return g * (t + x * sech2 * (e / (lit(x, 1.0) + e)))  # sigmoid(x) = e / (1 + e)


@jit(fastmath=EXACT_FASTMATH)
def _mish_grad(g, x):
    """float32: g mish'(x) by :func:`_mish_deriv_f32`; float64: :func:`_mish_grad_f64`."""
    if _is_f32(x):
        return g * _mish_deriv_f32(x)
    return _mish_grad_f64(g, x)


_register(
    "mish",
    _mish,
    _mish_grad,
    inplace=True,
    doc="""
``x * tanh(softplus(x))``. torch: ``F.mish(input, inplace=False)``. Written as
``x * n / (n + 2)``, ``n = e^x (e^x + 2)``: no overflow, accurate in both tails. Gradient
``e K / Q`` with one division (``1 + Z / Q`` for x > 0) and a polynomial in ``x - r`` near
its zero r = -1.19243: within 3.81 ULP (float32, all 2^32 inputs; the former formula and
torch lose 5.2e8 / 1.7e8 ULP at the zero). float64 keeps ``tanh(sp) + x sech^2(sp)
sigmoid(x)`` (1.05e16 ULP at the zero; the float32 form cost 1.31x there).
``mish_backward(g, inf) = g`` in both types (torch: NaN).""",
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


# x Phi(x): float32 through fastact._core.math's own normal-CDF core (about half the
# instructions of composing erfc), float64 (and CUDA) through erfc
_gelu_value = fm.float32_variant("_gelu_value", fm._gelu_f32, _gelu_erfc)


# gelu'(x) = Phi(x) + x phi(x) vanishes at x = -a0 (a0 = 0.75179), where its two terms
# (+-0.226) cancel: computed as their sum it lost ~0.5/|x + a0| ULPs (3.8e7 at the nearest
# float32, over 4 on all of [-1.45, -0.4]). With a = |x|, t = 1/(1 + a/2) and Mills' ratio
# R(a) = Q(a)/phi(a), gelu'(-a) = phi(a) (R(a) - a) = exp(-a^2/2) (a0 - a) P(t) where P(t) =
# (R(a) - a)/(sqrt(2 pi) (a0 - a)) is smooth and positive (0.40 to 0.67): a polynomial
# (_GELU_DP32/_GELU_DP64, scripts/fit_gelu_deriv.py). Every factor then has a small relative
# error, a0 - a included (a0 in three words: a0_hi - a is exact near a0), so nothing cancels
# and no band needs another formula; for x >= 0, gelu'(x) = 1 - exp(-a^2/2) (a0 - a) P(t).
@jit(fastmath=EXACT_FASTMATH)
def _gelu_dp(x, a):
    """(mh, ml): (a0 - a) P(t) = mh + ml, t = 1/(1 + a/2), for a = |x| (clamped to the fit's
    range), in x's type (float32: P of degree 11, float64: 27). P's constant term is added in
    two words (the rounding of P alone cost up to 1.7 ULP) and a0 - a is ((a0_hi - a) +
    a0_mid) + a0_lo (a0_hi - a exact near a0: Sterbenz); t's rounding (t P'(t)/P(t) < 0.6)
    is left (correcting it to first order gained 0.2 ULP for 10% more time)."""
    one = lit(x, 1.0)
    t = one / fm._fma(a, lit(x, 0.5), one)  # a/2 exact
    z = t - lit(x, 0.5)  # exact for t >= 1/4
    if _is_f32(x):
        c = _GELU_DP32
        u = lit(x, c[12])
        for j in range(11, 1, -1):
            u = fm._fma(u, z, lit(x, c[j]))
        c0, c1 = lit(x, c[0]), lit(x, c[1])
        w0, w1, w2 = lit(x, _GELU_A0_32[0]), lit(x, _GELU_A0_32[1]), lit(x, _GELU_A0_32[2])
    else:
        e = _GELU_DP64
        u = lit(x, e[28])
        for j in range(27, 1, -1):
            u = fm._fma(u, z, lit(x, e[j]))
        c0, c1 = lit(x, e[0]), lit(x, e[1])
        w0, w1, w2 = lit(x, _GELU_A0[0]), lit(x, _GELU_A0[1]), lit(x, _GELU_A0[2])
    w = fm._fma(u, z, c1)
    ph = c0 + w
    pl = (c0 - ph) + w
    da = ((w0 - a) + w1) + w2
    mh = da * ph
    ml = fm._fma(da, ph, -mh) + da * pl
    return mh, ml


@jit(fastmath=EXACT_FASTMATH)
def _gelu_deriv_finish(x, v, k):
    """gelu'(x) from exp(-h/2) = (1 + v) 2^k, h = fl(x^2) (x^2 = h + hl exactly; the
    exponential corrected to first order in hl): G = (1 + dv) (a0 - a) P(t) 2^k, scaled once
    (subnormal results are rounded once), gelu' = G (x < 0) or 1 - G, for x in [-14.7, 13]
    (float32) / [-38.7, 37] (float64) or NaN: the callers take the saturated values outside
    (:func:`_saturated`)."""
    a = abs(x)
    h = x * x
    hh = fm._fma(x, x, -h) * lit(x, 0.5)
    dv = fm._fma(-hh, v, v - hh)  # exp(-(h + hl)/2) = (1 + dv) 2^k
    mh, ml = _gelu_dp(x, a)
    g = fm._ldexp(mh + fm._fma(mh, dv, ml), k)
    return g if x < lit(x, 0.0) else lit(x, 1.0) - g


@jit(fastmath=EXACT_FASTMATH)
def _gelu_deriv_f32(x):
    """float32 gelu' within 4 ULP everywhere, also at its zero (see above). Above 13 (where
    it rounds to 1) and below -14.7 (-0) it is computed at x = 0, so that no subnormal
    intermediate costs an assist (:func:`_normal_exp_bound`)."""
    xc = _inside(x, lit(x, -14.7), lit(x, 13.0))
    v, k = fm._exp_f32_kernel(-(xc * xc * lit(x, 0.5)))
    return _saturated(x, _gelu_deriv_finish(xc, v, k), lit(x, -14.7), lit(x, 13.0))


@jit(fastmath=EXACT_FASTMATH)
def _gelu_deriv_f64(x):
    """float64 gelu' within 4 ULP everywhere, also at its zero (see above); computed at 0
    above 37 and below -38.7 as in float32."""
    xc = _inside(x, -38.7, 37.0)
    vh, vl, k, _ = fm._exp_parts_f64(-(xc * xc * 0.5))
    return _saturated(x, _gelu_deriv_finish(xc, vh + vl, k), -38.7, 37.0)


@jit(fastmath=EXACT_FASTMATH)
def _inside(x, lo, hi):
    """x on [lo, hi] (and NaN), else 0: the argument of a formula whose result outside is
    the saturated one of :func:`_saturated`, given a value that keeps its intermediates
    normal."""
    return lit(x, 0.0) if ((x < lo) | (x > hi)) else x


@jit(fastmath=EXACT_FASTMATH)
def _saturated(x, y, lo, hi):
    """y on [lo, hi] (and NaN); above hi 1 (NaN at +inf, as torch), below lo x - x (+0, as
    torch's Phi(x) + x phi(x) = 0 + -0; NaN at -inf)."""
    return (lit(x, 1.0) + (x - x) if x > hi else x - x) if ((x < lo) | (x > hi)) else y


@jit(fastmath=EXACT_FASTMATH)
def _gelu_deriv_device(x):
    """The CUDA executor's gelu': as :func:`_gelu_deriv_finish` with the device's exponential
    exp(-h/2) (1 - hl/2); where it would be subnormal (h/2 > 64), exp(-h/2 + s) e^-s (s = 32
    in float32, 128 in float64; -h/2 + s is exact there, as in silu)."""
    a = abs(x)
    f32 = _is_f32(x)
    amax = lit(x, 14.7) if f32 else lit(x, 38.7)
    ac = amax if a > amax else a
    h = x * x
    hh = fm._fma(x, x, -h) * lit(x, 0.5)
    hh = hh if h < lit(x, 3000.0) else lit(x, 0.0)
    tiny = h > lit(x, 128.0)
    s = lit(x, 32.0) if f32 else lit(x, 128.0)
    e = fm.exp(-(h * lit(x, 0.5)) + (s if tiny else lit(x, 0.0)))
    mh, ml = _gelu_dp(x, ac)
    g = fm._fma(-e, hh, e) * (mh + ml)
    if tiny:
        g = g * (lit(x, _EXP_M32) if f32 else lit(x, _EXP_M128))
    y = g if x < lit(x, 0.0) else lit(x, 1.0) - g
    return x - x if (x < -amax or x == math.inf) else y  # +0 (torch's sign), NaN at +-inf


#: gelu': the exponential's parts on the CPU, the device's exponential on the CUDA executor
_gelu_deriv = fm.float32_variant(
    "_gelu_deriv", _gelu_deriv_f32, _gelu_deriv_f64, device_impl=_gelu_deriv_device
)


@jit
def _gelu_tail_f64(x):
    """gelu for float64 x < -37 (results below 2^-1022): x erfc(t) / 2 with erfc(t) = m 2^k
    and t = -x/sqrt(2) compensated as in :func:`_erfc_neg_scaled`, scaled by 2^k once (the
    erfc rounded into the subnormals first, then multiplied by x, was 13 subnormal spacings
    off at x = -37.73)."""
    c = -_SQRT1_2
    c_lo = (c + _SQRT1_2) + _SQRT1_2_LO
    t = x * c
    if not t < 27.5:  # below 2^-1074 / |x| (and -inf: NaN, as 0.5 x erfc(t))
        return x * 0.0
    d = fm._fma(-x, c_lo, fm._fma(x, c, -t))
    m, k = fm._erfc_big_f64_mk(t)
    r = fm._fma(2.0, t, 1.0 / (t + 0.886226925452758))
    m = fm._fma(-m, d * r, m)
    return fm._ldexp((x * 0.5) * m, k)


@jit
def _gelu_host(x):
    """gelu on the host: float64 below -37 through :func:`_gelu_tail_f64` (the host loops
    evaluate it only for the blocks of 256 that hold such an element: ``_gelu_near``)."""
    if _is_f32(x):
        return _gelu_value(x)
    return _gelu_tail_f64(x) if x < -37.0 else _gelu_value(x)


@jit
def _gelu_near(x):
    return x < lit(x, -37.0)


#: gelu: :func:`_gelu_host` on the CPU; the CUDA executor compiles :func:`_gelu_erfc`
_gelu_fw = fm.float32_variant("_gelu_fw", fm._gelu_f32, _gelu_host, device_impl=_gelu_erfc)


@jit
def _gelu(x):
    return _gelu_fw(x)


@jit
def _gelu_wide(x):
    """The host loops' gelu for blocks without an element below -37 (float64)."""
    return _gelu_value(x)


@jit
def _gelu_grad(g, x):
    return g * _gelu_deriv(x)


#: 2 sqrt(2/pi) and 2 sqrt(2/pi) 0.044715 (the decimal constant) in two words of float64
#: and of float32: gelu_tanh's argument 2z = x (K1 + K3 x^2) in double-word arithmetic
_GELU_K1 = (1.5957691216057308, -9.96930880911092e-17)
_GELU_K3 = (0.07135481627260025, -6.175149918155315e-19)
_GELU_K1_32 = (1.5957691669464111, -4.534068054340423e-08)
_GELU_K3_32 = (0.07135481387376785, 2.3988324659995897e-09)


@jit(fastmath=EXACT_FASTMATH)
def _gelu_tanh_consts(x):
    """(K1 hi, K1 lo, K3 hi, K3 lo) in x's dtype."""
    if _is_f32(x):
        return (
            lit(x, _GELU_K1_32[0]), lit(x, _GELU_K1_32[1]),
            lit(x, _GELU_K3_32[0]), lit(x, _GELU_K3_32[1]),
        )  # fmt: skip
    return lit(x, _GELU_K1[0]), lit(x, _GELU_K1[1]), lit(x, _GELU_K3[0]), lit(x, _GELU_K3[1])


@jit(fastmath=EXACT_FASTMATH)
def _gelu_tanh_arg(x):
    """(z, zl): 2 sqrt(2/pi) (x + 0.044715 x^3) = z + zl, exact but for products of two
    low parts (second order): the constants in two words, x^2 and the products split by fma,
    the sum K1 + K3 x^2 by TwoSum. The rounding of z alone (and of the once-rounded constants)
    costs |z| ULPs of sigmoid(z) where z << 0 (206 ULP in the float32 tail, 1390 in float64).
    IEEE arithmetic."""
    k1h, k1l, k3h, k3l = _gelu_tanh_consts(x)
    x2 = x * x
    x2l = fm._fma(x, x, -x2)
    m = k3h * x2
    ml = fm._fma(k3h, x2, -m) + fm._fma(k3h, x2l, k3l * x2)
    w = k1h + m  # TwoSum: both positive, either may be the larger
    bb = w - k1h
    wl = ((k1h - (w - bb)) + (m - bb)) + (ml + k1l)
    z = x * w
    zl = fm._fma(x, w, -z) + x * wl
    return z, zl


@jit(fastmath=EXACT_FASTMATH)
def _gelu_tanh_arg_wide(x):
    """:func:`_gelu_tanh_arg` for |x| <= 4.7, where K3 x^2 <= K1 (K1 - w is then exact, and
    fma(K3, x^2, K1 - w) the rounding error of w = fma(K3, x^2, K1)): 7 operations fewer.
    Larger |x|: zl is not accurate (harmless for x > 0, where it is weighed by sigmoid(-z))."""
    k1h, k1l, k3h, k3l = _gelu_tanh_consts(x)
    x2 = x * x
    x2l = fm._fma(x, x, -x2)
    w = fm._fma(k3h, x2, k1h)
    wl = fm._fma(k3h, x2, k1h - w) + fm._fma(k3h, x2l, fm._fma(k3l, x2, k1l))
    z = x * w
    return z, fm._fma(x, wl, fm._fma(x, w, -z))


@jit(fastmath=EXACT_FASTMATH)
def _gelu_tanh_finish(x, z2, zl):
    """x sigmoid(z2 + zl) = x s (1 + zl sigmoid(-z2)) to first order, s = sigmoid(z2)."""
    s = sigmoid_core(z2)
    xs = x * s
    # sigmoid(-z2) = 1 - s: only its first digits matter in the correction; none where |x|
    # is so large that the sigmoid saturates (infinite x: the correction would be NaN)
    r = fm._fma(xs, zl * (lit(x, 1.0) - s), xs)
    return r if abs(x) < lit(x, 1e10) else xs


@jit(fastmath=EXACT_FASTMATH)
def _exp_parts_wide_f32(y):
    """(vh, vl, k): exp(y) = 2^k (1 + vh + vl) (``fastact._core.math._exp_parts_f32``) for
    float32 y <= 0 down to -112 (k = -162, below the normal range: for results scaled by 2^k
    once; _exp_parts clamps at -104)."""
    y = lit(y, -112.0) if y < lit(y, -112.0) else y
    r, rl, t = fm._ln2_reduce_f32(y)
    q = fm._horner5(fm._EXP_PARTS_F32, r)
    w = r * r * q + rl
    vh = r + w
    return vh, (r - vh) + w, fm._i32(fm._bits(t) - fm._F_MAGIC_BITS)


@jit(fastmath=EXACT_FASTMATH)
def _gelu_tanh_finish_scaled(x, z2, zl):
    """:func:`_gelu_tanh_finish` with e^-|z2| = 2^k (1 + vh + vl) (:func:`_exp_parts_wide_f32`)
    and, for z2 < 0, x s = 2^k x (1 + vh + vl) / (1 + e) scaled by 2^k once: where x s is
    subnormal (x < -9.9 in float32) the exponential rounded into the subnormals, multiplied
    by x, was 6.6 subnormal spacings off."""
    one = lit(x, 1.0)
    vh, vl, k = _exp_parts_wide_f32(-abs(z2))
    e = fm._ldexp(one + vh, k)  # only in 1 + e
    neg = z2 < lit(x, 0.0)
    q = ((one + vh) + vl if neg else one) / (one + e)
    kk = k if neg else 0
    # 1 - sigmoid(z2) to a few digits for the first-order correction
    p = x * q
    r = fm._fma(p, zl * (one - fm._ldexp(q, kk)), p)
    r = fm._ldexp(r if abs(x) < lit(x, 1e10) else p, kk)
    # below, x s underflows (the exponential's parts clamp its argument; -inf: NaN, as x s)
    return r if z2 > lit(x, -110.0) else x * lit(x, 0.0)


@jit
def _gelu_tanh_plain(x):
    """x sigmoid(2z) with the argument in one word (main's formula; fast-math flags)."""
    z2 = lit(x, 2.0 * _SQRT_2_PI) * (x + lit(x, _GELU_C) * x * x * x)
    return x * sigmoid_core(z2)


@jit(fastmath=EXACT_FASTMATH)
def _gelu_tanh_wide_f32(x):
    """float32 gelu_tanh for x >= -4.5: the cheaper argument (:func:`_gelu_tanh_arg_wide`),
    no scaling into the subnormals (none there)."""
    x = lit(x, -4.5) if x < lit(x, -4.5) else x  # outside its domain (the split loop's
    # wide pass over a block with a tail element): no subnormal intermediates there
    z2, zl = _gelu_tanh_arg_wide(x)
    return _gelu_tanh_finish(x, z2, zl)


@jit(fastmath=EXACT_FASTMATH)
def _gelu_tanh_f32(x):
    """float32 0.5 x (1 + tanh(z)) = x sigmoid(2z) (no cancellation for negative x) on the
    host, with 2z = z2 + zl from :func:`_gelu_tanh_arg` and sigmoid(z2 + zl) = s (1 + zl
    sigmoid(-z2)) to first order, scaled once into the subnormals
    (:func:`_gelu_tanh_finish_scaled`): the sigmoid's own error passes through; the
    single-word argument lost up to 206 ULP in the negative tail. At x >= -4.5 it is
    :func:`_gelu_tanh_wide` (the cheaper argument, no scaling), so the host loops, which use
    that alone for blocks of 256 without an element below -4.5, give the same bits as this
    scalar (in fused chains, and for the other blocks)."""
    if x < lit(x, -4.5):
        z2, zl = _gelu_tanh_arg(x)
        return _gelu_tanh_finish_scaled(x, z2, zl)
    return _gelu_tanh_wide_f32(x)


@jit(fastmath=EXACT_FASTMATH)
def _gelu_tanh_device(x):
    """The CUDA executor's gelu_tanh: float32 with the double-word argument (without the
    scaling into the subnormals), float64 main's single-word formula (the host's tail form
    uses cores the CUDA simulator does not model)."""
    if not _is_f32(x):
        return _gelu_tanh_plain(x)
    z2, zl = _gelu_tanh_arg(x)
    return _gelu_tanh_finish(x, z2, zl)


#: e^-64 in two float64 words (the shifted exponential of :func:`_gelu_tanh_tail_f64`)
_EXP_M64_DW = (1.603810890548638e-28, -7.361325221284214e-45)


@jit(fastmath=EXACT_FASTMATH)
def _gelu_tanh_tail_f64(x):
    """float64 gelu_tanh for x < -4.5: x e / (1 + e) with e = exp(z + zl) as a double-word
    (``_exp_f64_dw``) of the two-word argument z + zl (:func:`_gelu_tanh_arg`), 1 + e by
    Fast2Sum, x times e's words as an exact product, the quotient rounded once
    (``_div_dw_unit``), scaled by 2^k once (results are subnormal from x = -21.3, zero below
    about -25.1). Where z < -700, exp(z + 64) e^-64 with e^-64 in two words (the
    exponential's range). The single-word argument lost |z| ULPs of the result to its
    rounding: 1628 ULP near -19.6, 9 at -4.5. IEEE arithmetic."""
    z, zl = _gelu_tanh_arg(x)
    shift = z < -700.0
    ph, pl, k = fm._exp_f64_dw(z + 64.0 if shift else z, zl)
    if shift:
        sh = ph * _EXP_M64_DW[0]
        pl = fm._fma(ph, _EXP_M64_DW[0], -sh) + (ph * _EXP_M64_DW[1] + pl * _EXP_M64_DW[0])
        ph = sh
    s = fm._f64_from_bits((max(k, -1022) + 1023) << 52)  # e's scale in 1 + e (2^-1022: 1 + e = 1)
    eh = ph * s
    d = 1.0 + eh
    p = x * ph
    y = fm._div_dw_unit(p, fm._fma(x, ph, -p) + x * pl, d, ((1.0 - d) + eh) + pl * s)
    # below, x e^z underflows (and -inf: NaN, as x sigmoid(z))
    return fm._ldexp(y, k) if z > -800.0 else x * 0.0


@jit(fastmath=EXACT_FASTMATH)
def _gelu_tanh_wide_f64(x):
    """float64 gelu_tanh for x >= -4.5 with the argument in one word: (x or x e) / (1 + e),
    e = exp(-|2z|), one division. IEEE arithmetic, so that it gives the same bits inlined
    beside :func:`_gelu_tanh_tail_f64` (a fused chain) as alone (the split loop's blocks):
    with fast-math flags LLVM shared and contracted the products differently in the two, 1
    ULP apart. Up to 33.4 ULP near -4.43 on [-4.5, -1] (the maximum over the README's dense
    sample; the argument's rounding, weighed by |2z|; the two-word argument cost +38% at 16M),
    within 2 on x >= 0."""
    xw = lit(x, -4.5) if x < lit(x, -4.5) else x  # outside its domain: no subnormals
    z2 = lit(x, 2.0 * _SQRT_2_PI) * fm._fma(lit(x, _GELU_C) * xw * xw, xw, xw)
    b = _normal_exp_bound(x)  # from z2 = b the result is x: e taken there
    e = fm.exp(-b if z2 > b else -abs(z2))
    return (x if z2 >= lit(x, 0.0) else x * e) / (lit(x, 1.0) + e)


@jit(fastmath=EXACT_FASTMATH)
def _gelu_tanh_f64(x):
    """float64 gelu_tanh: :func:`_gelu_tanh_tail_f64` below -4.5 (the host loops evaluate it
    only for the blocks of 256 that hold such an element), :func:`_gelu_tanh_wide_f64`
    above."""
    return _gelu_tanh_tail_f64(x) if x < lit(x, -4.5) else _gelu_tanh_wide_f64(x)


#: gelu_tanh: float32 :func:`_gelu_tanh_f32`, float64 :func:`_gelu_tanh_f64`,
#: :func:`_gelu_tanh_device` on the CUDA executor
_gelu_tanh_fw = fm.float32_variant(
    "_gelu_tanh_fw", _gelu_tanh_f32, _gelu_tanh_f64, device_impl=_gelu_tanh_device
)


@jit
def _gelu_tanh(x):
    return _gelu_tanh_fw(x)


@jit(fastmath=EXACT_FASTMATH)
def _gelu_tanh_wide(x):
    """The host loops' float32 gelu_tanh for x >= -4.5: :func:`_gelu_tanh` with the cheaper
    argument (:func:`_gelu_tanh_arg_wide`); float64 :func:`_gelu_tanh_wide_f64` (blocks of
    256 cost nothing measurable at 16M; of 64 they cost 27%)."""
    return _gelu_tanh_wide_f32(x) if _is_f32(x) else _gelu_tanh_wide_f64(x)


@jit(fastmath=EXACT_FASTMATH)
def _gelu_tanh_near(x):
    return x < lit(x, -4.5)


@jit
def _gelu_tanh_grad(g, x):
    # saturated: 1 above 9.5 / 20 and 0 below -11.5 / -22 (float32 / float64). The formula
    # runs on x clamped to 9.5 / 20 above (its value there is 1) and on -9 below -11.5 / -22
    # (normal intermediates: see _normal_exp_bound), and the result is kept or zeroed by
    # arithmetic: a branch on x let LLVM use the unclamped x in the kept lanes' formula for
    # every lane. NaN at +-inf (torch).
    f32 = _is_f32(x)
    lo = lit(x, -11.5) if f32 else lit(x, -22.0)
    hi = lit(x, 9.5) if f32 else lit(x, 20.0)
    xc = hi if x > hi else (lit(x, -9.0) if x < lo else x)
    x2 = xc * xc
    z2 = lit(x, 2.0 * _SQRT_2_PI) * (xc + lit(x, _GELU_C) * x2 * xc)
    s, sn = sigmoid_pair(z2)
    dz2 = lit(x, 2.0 * _SQRT_2_PI) * (lit(x, 1.0) + lit(x, 3.0 * _GELU_C) * x2)
    d = s + xc * s * sn * dz2
    return _kept(g, d, lit(x, 0.0) if x < lo else lit(x, 1.0), x)


@jit(fastmath=EXACT_FASTMATH)
def _kept(g, d, keep, x):
    """g (d keep + (x - x)) in IEEE arithmetic: d where keep = 1, a zero of g's sign where
    keep = 0, NaN at +-inf (the fast-math flags of the caller folded x - x to 0)."""
    return g * (d * keep + (x - x))


#: gelu's two forms by ``approximate``
GELU = {
    "none": Elementwise(
        "gelu",
        _gelu,
        _gelu_grad,
        doc="gelu, approximate='none'",
        split={"forward": (_gelu_near, _gelu_wide, "float64")},
    ),
    "tanh": Elementwise(
        "gelu_tanh",
        _gelu_tanh,
        _gelu_tanh_grad,
        doc="gelu, approximate='tanh'",
        split={"forward": (_gelu_tanh_near, _gelu_tanh_wide)},
    ),
}


ACTIVATIONS["gelu"] = GELU["none"]
ACTIVATIONS["gelu_tanh"] = GELU["tanh"]


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
    stream=False,
    doc="""
``relu6(x + 3) / 6``; gradient 1/6 on the open interval (-3, 3). torch:
``F.hardsigmoid(input, inplace=False)`` (whose float64 gradient uses float32's 1/6; fastact's
is exact).""",
)


@jit(fastmath=EXACT_FASTMATH)
def _hardswish(x):
    """x relu6(x + 3) / 6 with a true division (fast-math's x t fl(1/6) was 2.3 ULP); x itself
    from 3 up (x 6 / 6 would overflow)."""
    t = x + lit(x, 3.0)
    t = lit(x, 0.0) if t < 0 else t
    return x if x >= 3 else x * t / lit(x, 6.0)


@jit(fastmath=EXACT_FASTMATH)
def _third_plus_half(x):
    """x/3 + 1/2 as (x + 3/2) * fl(1/3): within 1.5 ULP, exactly 0 at x = -1.5 (x + 3/2 is
    exact near there). IEEE arithmetic: under fast-math, ``x / 3 + 0.5`` becomes
    ``fma(x, fl(1/3), 0.5)``, -1.49e-8 in float32 at x = -1.5."""
    return (x + lit(x, 1.5)) * lit(x, 1.0 / 3.0)


@jit
def _hardswish_grad(g, x):
    # x <= -3: 0; inside: g (x/3 + 1/2); x >= 3: g; NaN: NaN (torch 2.13 gives NaN or g by
    # the element's position, see docs/torch_semantics.md)
    d = g * _third_plus_half(x) if x < 3 else g
    d = lit(x, 0.0) if x <= -3 else d
    return d if x == x else x


_register(
    "hardswish",
    _hardswish,
    _hardswish_grad,
    inplace=True,
    stream=("grad", "grad_output"),  # the forward loops lost 3-10% with the hint
    doc="""
``x * relu6(x + 3) / 6``; gradient 0 for x <= -3, x/3 + 1/2 inside, 1 for x >= 3 (torch 2.13).
torch: ``F.hardswish(input, inplace=False)``. The gradient inside is within 1.5 ULP, exactly
0 at x = -1.5; NaN at a NaN input.""",
)


@jit
def _softsign(x):
    return x / (lit(x, 1.0) + abs(x))


@jit(fastmath=EXACT_FASTMATH)
def _softsign_grad(g, x):
    """g / (1 + |x|)^2 as (g r) r, r = 1 / (1 + |x|): no fast-math, which turned g / d / d
    into g / (d d), and d d overflows (gradient 0) for |x| >= 1.8e19 (float32). +0 where it
    underflows (torch's difference of two quotients cancels to +0 there)."""
    r = lit(x, 1.0) / (lit(x, 1.0) + abs(x))
    # torch: NaN at +-inf
    return (g * r) * r + lit(x, 0.0) if not math.isinf(x) else g * lit(x, math.nan)


_register(
    "softsign",
    _softsign,
    _softsign_grad,
    stream=False,
    doc="""
``x / (1 + |x|)``. torch: ``F.softsign(input)``.""",
)


@jit(fastmath=EXACT_FASTMATH)
def _tanhshrink_f64_dw(x):
    """float64 x - tanh x within 1.5 ULP: x^3 P(x^2) for |x| < 1, where x - tanh x cancels
    (x^3 as a double-word, P's leading 1/3 in two words); beyond, (|x| - 1) + 2 / (e^(2|x|)
    + 1) with the exponential and the quotient as double-words (the tanh core's method),
    sign of x."""
    u = x * x
    ul = fm._fma(x, x, -u)
    c = x * u
    cl = fm._fma(x, u, -c) + x * ul  # x^3 = c + cl
    p = _TANHSHRINK_P64[16]
    for k in range(15, 0, -1):
        p = fm._fma(p, u, _TANHSHRINK_P64[k])
    p = fm._fma(p, u, _THIRD_LO)  # P(u) - fl(1/3)
    small = fm._fma(c, _TANHSHRINK_P64[0], fm._fma(c, p, cl * _TANHSHRINK_P64[0]))
    a = abs(x)
    a2 = min(a + a, 40.0)
    ph, pl, k = fm._exp_f64_dw(a2, -0.0)
    sc = fm._f64_from_bits((k + 1023) << 52)
    eh = ph * sc
    dh = eh + 1.0
    dl = ((eh - dh) + 1.0) + pl * sc
    y = 2.0 / dh  # 1 - tanh|x| = y + yl
    yl = (fm._fma(-y, dh, 2.0) - y * dl) * (y * 0.5)
    big = fm._copysign(((a - 1.0) + y) + yl, x)
    return small if a < 1.0 else big


@jit
def _tanhshrink_f64_device(x):
    """The CUDA executor's float64 x - tanh x (no double-word exponential on the device):
    x^3 P(x^2) for |x| < 1 in plain arithmetic, x - tanh x beyond (a few ULP)."""
    u = x * x
    p = _TANHSHRINK_P64[16]
    for k in range(15, -1, -1):
        p = fm._fma(p, u, _TANHSHRINK_P64[k])
    return x * u * p if abs(x) < 1.0 else x - fm.tanh(x)


#: float64 x - tanh x: the double-word version on the CPU, the plain one on the CUDA executor
_tanhshrink_f64 = fm.float32_variant(
    "_tanhshrink_f64", _tanhshrink_f64_dw, _tanhshrink_f64_dw, device_impl=_tanhshrink_f64_device
)


@jit
def _tanhshrink(x):
    # x - tanh(x) cancels for small |x| (float32: all of |x| < 2.4e-4 would give 0, and
    # |x| < 1 loses up to ~2^24 ULPs): there, x^3 P(x^2) instead. float32: a degree-8 fit of
    # (x - tanh x)/x^3 on |x| < 1.25 (relative error 1.3e-8) evaluated in float64;
    # float64: see _tanhshrink_f64_dw (the device: _tanhshrink_f64_device).
    if _is_f32(x):
        if abs(x) < lit(x, 1.25):
            xd = np.float64(x)
            u = xd * xd
            p = _TANHSHRINK_P[8]
            for k in range(7, -1, -1):
                p = p * u + _TANHSHRINK_P[k]
            return _plus_zero(lit(x, xd * u * p))  # +0 at -0 (and -1e-45), as x - tanh x
        return x - fm.tanh(x)
    return lit(x, _tanhshrink_f64(np.float64(x)))


@jit
def _tanhshrink_grad(g, x):
    # +0 where y^2 underflows to 0 (torch: g - g (1 - y^2), +0 for any g; g * y * y gave -0
    # for g < 0)
    y = fm.tanh(x)
    return _times_plus_zero(g, y * y)


_register(
    "tanhshrink",
    _tanhshrink,
    _tanhshrink_grad,
    doc="""
``x - tanh(x)``. torch: ``F.tanhshrink(input)``. Within 1.5 ULP in both dtypes, also where
``x - tanh(x)`` cancels (a polynomial x^3 P(x^2) for small |x|); gradient ``tanh(x)^2``.""",
)


def _check_lambd(dtype, lambd):
    """softshrink's lambd: torch's check, 0 <= lambd <= the input dtype's largest value (NaN
    and inf rejected), with torch's message."""
    top = np.finfo(dtype).max
    ok = (lambd >= 0) & (lambd <= top)
    if not np.all(ok):
        bad = float(lambd if np.ndim(lambd) == 0 else np.asarray(lambd)[~ok].flat[0])
        name = {"float32": "Float", "float64": "Double"}.get(np.dtype(dtype).name, str(dtype))
        raise ValueError(
            f"lambd: lambda must be in range [0, {top:g}] for input dtype {name}, but found {bad:g}"
        )
    return (lambd,)


@jit
def _softshrink(x, lambd):
    if abs(x) <= lambd:
        return lit(x, 0.0)
    return x - lambd if x > 0 else x + lambd


@jit
def _shrink_grad(g, x, lambd):
    # NaN input: torch 2.13 gives 0 or g by the element's position, so NaN, except that
    # g = 0 gives 0 in both of torch's loops
    d = lit(x, 0.0) if abs(x) <= lambd else g
    return d if x == x else (g if g == 0 else x)


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
    doc="""
``x`` outside [-lambd, lambd], 0 inside (any lambd, like torch: a negative one keeps every
x). torch: ``F.hardshrink(input, lambd=0.5)``.""",
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
