"""Shared tables for the activation tests: one entry per registry name.

``CASES[name]`` describes the element-wise activation ``fastact.ACTIVATIONS[name]`` for the
tests: how to call fastact and torch, parameter sets (defaults and non-default values), the
kinks, independent float64 NumPy references of the value and the derivative, the "error
scale" of each (where a formula cancels, errors are measured in ULP of that scale rather than
of the result), and the regions where torch itself is known to be inaccurate (there the tests
compare against the float64 reference instead of torch).

Helpers: :func:`ulp_error` / :func:`assert_ulp` (ULP distance with NaN/inf patterns checked
exactly) and :func:`edge_values` / :func:`sample_inputs`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import scipy.special as sp
import torch
import torch.nn.functional as F

import fastact
from fastact.activations import REQUIRED

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946
SQRT_2_PI = math.sqrt(2.0 / math.pi)
GELU_C = 0.044715
DTYPES = (np.float32, np.float64)


# ----------------------------------------------------------------------------------------
# float64 NumPy references: value f(x) and derivative f'(x), written independently of
# fastact's formulas (scipy's expit/erfc/logaddexp, series where a formula cancels).
# ----------------------------------------------------------------------------------------
def _where(cond, a, b):
    with np.errstate(all="ignore"):
        return np.where(cond, a, b)


def expit(x):
    """Logistic sigmoid without flushing subnormal results (scipy's expit returns 0 there)."""
    with np.errstate(all="ignore"):
        e = np.exp(-np.abs(x))
        return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def r_sigmoid(x):
    return expit(x)


def d_sigmoid(x):
    return expit(x) * expit(-x)


def r_tanh(x):
    return np.tanh(x)


def d_tanh(x):
    with np.errstate(all="ignore"):
        return 1.0 / np.cosh(x) ** 2


def r_relu(x):
    return _where(x <= 0, 0.0, x)


def d_relu(x):
    return _where(x > 0, 1.0, 0.0)


def r_leaky_relu(x, negative_slope=0.01):
    return _where(x > 0, x, x * negative_slope)


def d_leaky_relu(x, negative_slope=0.01):
    return _where(x > 0, 1.0, negative_slope)


def r_hardtanh(x, min_val=-1.0, max_val=1.0):
    return _where(x < min_val, min_val, _where(x > max_val, max_val, x))


def d_hardtanh(x, min_val=-1.0, max_val=1.0):
    return _where((x > min_val) & (x < max_val), 1.0, 0.0)


def r_relu6(x):
    return r_hardtanh(x, 0.0, 6.0)


def d_relu6(x):
    return d_hardtanh(x, 0.0, 6.0)


def r_elu(x, alpha=1.0):
    return _where(x > 0, x, alpha * np.expm1(np.minimum(x, 0)))


def d_elu(x, alpha=1.0):
    return _where(x > 0, 1.0, alpha * np.exp(np.minimum(x, 0)))


def r_celu(x, alpha=1.0):
    return _where(x > 0, x, alpha * np.expm1(np.minimum(x, 0) / alpha))


def d_celu(x, alpha=1.0):
    return _where(x > 0, 1.0, np.exp(np.minimum(x, 0) / alpha))


def r_selu(x):
    return SELU_SCALE * r_elu(x, SELU_ALPHA)


def d_selu(x):
    return SELU_SCALE * d_elu(x, SELU_ALPHA)


def r_softplus(x, beta=1.0, threshold=20.0):
    with np.errstate(all="ignore"):
        bx = x * beta
    return _where(bx > threshold, x, np.logaddexp(0.0, bx) / beta)


def d_softplus(x, beta=1.0, threshold=20.0):
    with np.errstate(all="ignore"):
        bx = x * beta
    return _where(bx > threshold, 1.0, expit(bx))


def r_logsigmoid(x):
    return -np.logaddexp(0.0, -x)


def d_logsigmoid(x):
    return expit(-x)


def _x_exp_x(x):
    # x * e^x for very negative x, without e^x underflowing first
    with np.errstate(all="ignore"):
        return (x * np.exp(x + 600.0)) * math.exp(-600.0)


def r_silu(x):
    return _where(x < -700, _x_exp_x(x), x * expit(x))


def d_silu(x):
    s, sn = expit(x), expit(-x)
    return _where(x < -700, _x_exp_x(x) * (1 + 1 / x), s * (1 + x * sn))


def r_mish(x):
    return _where(x < -700, _x_exp_x(x), x * np.tanh(np.logaddexp(0.0, x)))


def d_mish(x):
    spx = np.logaddexp(0.0, x)
    t = np.tanh(spx)
    # sech^2(softplus(x)) = 4 / (e^sp + e^-sp)^2 -> 4 e^(-2x) for large x (no 0 * inf)
    sech2 = _where(x > 30, 4.0 * np.exp(-2.0 * np.minimum(x, 400.0)), d_tanh(spx))
    return _where(x < -700, _x_exp_x(x) * (1 + 1 / x), t + x * sech2 * expit(x))


def _exp_neg_half_square(x):
    """exp(-x^2 / 2) with x^2 split exactly into hi + lo (Veltkamp), subnormal results kept."""
    with np.errstate(all="ignore"):
        c = x * 134217729.0  # 2^27 + 1
        xh = c - (c - x)
        xl = x - xh
        hi = x * x
        lo = ((xh * xh - hi) + 2 * xh * xl) + xl * xl
        direct = np.exp(-0.5 * hi) * (1 - 0.5 * lo)
        split = np.exp(600.0 - 0.5 * hi) * math.exp(-600.0) * (1 - 0.5 * lo)
    return _where(hi < 1400, direct, split)


def _phi(x):
    return _exp_neg_half_square(x) / math.sqrt(2 * math.pi)


def _gelu_cdf(x):
    # Phi(x) = erfc(-x / sqrt 2) / 2; in the far negative tail erfcx(z) exp(-z^2) with the
    # exponent split so that subnormal results keep their precision
    z = -x / math.sqrt(2)
    with np.errstate(all="ignore"):
        tail = 0.5 * sp.erfcx(z) * _exp_neg_half_square(x)
    return _where(x < -26, tail, 0.5 * sp.erfc(z))


def r_gelu(x):
    return _where(x < -60, -0.0, x * _gelu_cdf(x))


def d_gelu(x):
    return _where(x < -60, -0.0, _where(x > 60, 1.0, _gelu_cdf(x) + x * _phi(x)))


def _gelu_z2(x):
    with np.errstate(all="ignore"):
        return 2 * SQRT_2_PI * (x + GELU_C * x**3)


def r_gelu_tanh(x):
    # 0.5 x (1 + tanh z) == x * expit(2 z)
    return _where(np.isinf(x), _where(x > 0, x, 0.0), x * expit(_gelu_z2(x)))


def d_gelu_tanh(x):
    z2 = _gelu_z2(x)
    s, sn = expit(z2), expit(-z2)
    dz2 = 2 * SQRT_2_PI * (1 + 3 * GELU_C * x * x)
    return _where(np.abs(x) > 1e10, (x > 0) * 1.0, s + x * s * sn * dz2)


def r_hardsigmoid(x):
    return np.clip(x + 3.0, 0.0, 6.0) / 6.0


def d_hardsigmoid(x):
    return _where((x > -3) & (x < 3), 1.0 / 6.0, 0.0)


def r_hardswish(x):
    return _where(np.isinf(x), _where(x > 0, x, 0.0), x * (np.clip(x + 3.0, 0.0, 6.0) / 6.0))


def d_hardswish(x):
    return _where(x <= -3, 0.0, _where(x < 3, x / 3 + 0.5, 1.0))


def r_softsign(x):
    return _where(np.isinf(x), np.sign(x), x / (1 + np.abs(x)))


def d_softsign(x):
    return 1.0 / (1 + np.abs(x)) ** 2


def r_tanhshrink(x):
    x2 = x * x
    series = x * x2 * (1 / 3 - x2 * (2 / 15 - x2 * (17 / 315 - x2 * 62 / 2835)))
    return _where(np.abs(x) < 0.05, series, x - np.tanh(x))


def d_tanhshrink(x):
    return np.tanh(x) ** 2


def r_softshrink(x, lambd=0.5):
    return _where(x > lambd, x - lambd, _where(x < -lambd, x + lambd, 0.0))


def d_softshrink(x, lambd=0.5):
    return _where(np.abs(x) > lambd, 1.0, 0.0)


def r_hardshrink(x, lambd=0.5):
    return _where(np.abs(x) > lambd, x, 0.0)


d_hardshrink = d_softshrink


def r_threshold(x, threshold, value):
    return _where(x <= threshold, value, x)


def d_threshold(x, threshold, value):
    return _where(x > threshold, 1.0, 0.0)


# ----------------------------------------------------------------------------------------
# Error scales: where a correct float formula must cancel, the error is measured in ULP of
# the size of the terms, not of the (possibly tiny) result.
# ----------------------------------------------------------------------------------------
def _zero(x, **p):
    return np.zeros_like(x)


def _abs_x(x, **p):
    return np.abs(x)


def _scale_d_silu(x, **p):
    return expit(x) * (1 + np.abs(x) * expit(-x))


def _scale_d_mish(x, **p):
    spx = np.logaddexp(0.0, x)
    sech2 = _where(x > 30, 0.0, d_tanh(spx))
    return np.tanh(spx) + np.abs(x) * sech2 * expit(x)


def _scale_d_gelu(x, **p):
    return _gelu_cdf(x) + np.abs(x) * _phi(x)


def _scale_d_gelu_tanh(x, **p):
    z2 = _gelu_z2(x)
    s, sn = expit(z2), expit(-z2)
    return s + np.abs(x) * s * sn * 2 * SQRT_2_PI * (1 + 3 * GELU_C * x * x)


def _scale_d_hardswish(x, **p):
    return np.abs(x) / 3 + 0.5


# Condition numbers: the float argument of exp/erfc is rounded before the call (x * (1/alpha),
# x / sqrt 2, the cubic of gelu_tanh); that rounding error is amplified by |argument| (or by
# its square for erfc), in torch exactly as in fastact. The tests divide ULP errors against the
# float64 reference by max(1, cond).
def _cond_celu_grad(x, alpha=1.0, **p):
    return np.abs(x / alpha)


def _cond_gelu(x, **p):
    return 0.5 * x * x


def _cond_gelu_tanh(x, **p):
    return np.abs(_gelu_z2(x)) * 2


# ----------------------------------------------------------------------------------------
# Regions where torch 2.13 is inaccurate (the tests compare there against the float64
# reference instead). Each returns a boolean mask over x (float64 view of the input).
# ----------------------------------------------------------------------------------------
def _never(x, dtype, **p):
    return np.zeros(x.shape, bool)


def _tiny_log(dtype):
    # below this, exp(x) is subnormal in dtype and torch's products lose precision
    return math.log(np.finfo(dtype).tiny)


def _bad_fwd_exp_tail(x, dtype, **p):
    # torch: silu = x * sigmoid(x), mish = x * tanh(softplus(x)): the factor is subnormal
    return x < _tiny_log(dtype) + 8


def _bad_fwd_sigmoid(x, dtype, **p):
    # torch: 1 / (1 + exp(-x)) gives 0 where the result is subnormal (exp(-x) overflows)
    return x < _tiny_log(dtype)


def _bad_fwd_gelu(x, dtype, **p):
    # torch: 0.5 x (1 + erf(x / sqrt 2)) cancels for negative x, and x * (1 + erf) overflows
    # for x near the largest float
    return (x < -1.0) | (x > float(np.finfo(dtype).max) / 4)


def _bad_fwd_hardswish(x, dtype, **p):
    # torch: x * relu6(x + 3) / 6 overflows for x > max / 6
    return np.abs(x) > float(np.finfo(dtype).max) / 8


def _bad_grad_tanhshrink(x, dtype, **p):
    # torch's autograd of x - tanh(x): g - g (1 - y^2) cancels for small |x|
    return np.abs(x) < 1.0


def _bad_fwd_gelu_tanh(x, dtype, **p):
    # torch: 0.5 x (1 + tanh(z)) cancels for negative x
    return x < -1.0


def _bad_grad_sigmoid(x, dtype, **p):
    # torch: g * (1 - y) * y from the rounded output y: 1 - y cancels for positive x (and y
    # is 0 where it should be subnormal)
    return (x > 1.0) | (x < _tiny_log(dtype))


def _bad_grad_tanh(x, dtype, **p):
    # torch: g * (1 - y^2) from the rounded output y: cancels for large |x|
    return np.abs(x) > 1.0


def _bad_grad_silu(x, dtype, **p):
    # torch: s * (1 + x (1 - s)) cancels in 1 - s for positive x; subnormal s for negative
    return (x > 1.0) | (x < _tiny_log(dtype) + 8)


def _bad_grad_mish(x, dtype, **p):
    # torch: tanh(sp) + x * sigmoid(x) * (1 - tanh(sp)^2) cancels in 1 - tanh^2 for x > 1
    return (x > 1.0) | (x < _tiny_log(dtype) + 8)


def _bad_grad_gelu(x, dtype, **p):
    # torch: 0.5 (1 + erf(x / sqrt 2)) + x phi(x) cancels for negative x
    return x < -1.0


def _bad_grad_gelu_tanh(x, dtype, **p):
    # torch: 0.5 (1 + tanh z) + ... cancels for negative x, and 1 - tanh(z)^2 for positive x
    return np.abs(x) > 1.0


def _bad_softplus(x, dtype, beta=1.0, threshold=20.0):
    # torch: log1p(exp(beta x)) / beta below the threshold: exp overflows to inf (and the
    # gradient z / (z + 1) to NaN) once beta x exceeds log(max float) (fastact is stable)
    with np.errstate(all="ignore"):
        bx = x * beta
    return (bx > math.log(np.finfo(dtype).max) - 1) & ~(bx > threshold)


def _bad_grad_softsign(x, dtype, **p):
    # torch differentiates x / (1 + |x|) as a composite: 1/(1+|x|) - |x|/(1+|x|)^2 cancels
    return np.abs(x) > 1.0


def _bad_grad_celu(x, dtype, alpha=1.0, **p):
    # torch: g * (1/alpha) * alpha * exp(x / alpha) rounds twice: for an alpha that is not a
    # power of two even the gradient at 0 is 1 ULP away from g (fastact's is g exactly)
    if math.frexp(alpha)[0] == 0.5:
        return np.zeros(x.shape, bool)
    return x <= 0


def _bad_grad_hardsigmoid(x, dtype, **p):
    # torch's float64 gradient is g * float32(1/6) = g * 0.1666666716337204 (not 1/6)
    if dtype == np.float32:
        return np.zeros(x.shape, bool)
    return (x > -3) & (x < 3)


@dataclass
class Case:
    """How the tests drive one registry entry."""

    name: str
    ref: Callable
    dref: Callable
    param_sets: list[dict] = field(default_factory=lambda: [{}])
    kinks: Callable = lambda **p: []
    scale: Callable = _zero
    dscale: Callable = _zero
    torch_bad: Callable = _never
    torch_bad_grad: Callable = _never
    cond: Callable | None = None
    dcond: Callable | None = None
    fwd_ulp32: float = 4  # max ULP of fastact float32 vs float64 reference
    grad_ulp32: float = 4
    torch_fn: Callable | None = None
    exact_kinks: bool = True  # False: the "kink" only switches formulas (softplus threshold)
    # > 0: at the kinks within this many ULP of torch instead of bitwise (selu: torch's float64
    # alpha * scale is the product of the rounded constants, fastact's the rounded product;
    # the other side of the kink would be off by a factor 1.67)
    kink_ulp: float = 0.0
    api_params: tuple = ()  # ((name, default), ...) as the public function takes them

    @property
    def op(self):
        return fastact.ACTIVATIONS[self.name]

    @property
    def public_name(self) -> str:
        return "gelu" if self.name.startswith("gelu") else self.name

    def forward(self, x, *args, **kw):
        return getattr(fastact, self.public_name)(x, *args, **kw)

    def backward(self, g, *args, **kw):
        return getattr(fastact, self.public_name + "_backward")(g, *args, **kw)

    def full_params(self, p: dict) -> dict:
        """Every API parameter with its value (defaults filled in)."""
        return {n: p.get(n, d) for n, d in self.api_params}

    def ref_params(self, p: dict, dtype) -> dict:
        """The numeric parameters as the kernel sees them (cast to dtype), for references."""
        return {
            n: float(np.dtype(dtype).type(v))
            for n, v in self.full_params(p).items()
            if n != "approximate"
        }

    def call_styles(self, p: dict):
        """(positional args, keyword args) pairs that all mean the parameter set p."""
        full = self.full_params(p)
        pos = tuple(full.values())
        styles = [(pos, {}), ((), full)]
        explicit = {k: v for k, v in p.items()}
        styles.append(((), explicit))
        if len(pos) == 2:
            first = next(iter(full))
            styles.append((pos[:1], {k: v for k, v in full.items() if k != first}))
        return styles

    def torch_call(self, xt, p: dict):
        full = self.full_params(p)
        fn = self.torch_fn or getattr(F, self.public_name)
        return fn(xt, **full)


def _kink_list(*vals):
    return lambda **p: list(vals)


CASES: dict[str, Case] = {}


def _add(case: Case) -> None:
    op = fastact.ACTIVATIONS[case.name]
    if not case.api_params:
        case.api_params = tuple(op.params)
    CASES[case.name] = case


_add(
    Case(
        "sigmoid",
        r_sigmoid,
        d_sigmoid,
        torch_fn=lambda x: torch.sigmoid(x),
        torch_bad=_bad_fwd_sigmoid,
        torch_bad_grad=_bad_grad_sigmoid,
    )
)
_add(Case("tanh", r_tanh, d_tanh, torch_fn=lambda x: torch.tanh(x), torch_bad_grad=_bad_grad_tanh))
_add(Case("relu", r_relu, d_relu, kinks=_kink_list(0.0)))
_add(
    Case(
        "leaky_relu",
        r_leaky_relu,
        d_leaky_relu,
        param_sets=[
            {},
            {"negative_slope": 0.2},
            {"negative_slope": -0.5},
            {"negative_slope": 0.0},
            {"negative_slope": 1.5},
        ],
        kinks=_kink_list(0.0),
    )
)
_add(
    Case(
        "hardtanh",
        r_hardtanh,
        d_hardtanh,
        param_sets=[
            {},
            {"min_val": -2.0, "max_val": 3.0},
            {"min_val": 0.5, "max_val": 0.5},
            {"max_val": 0.1},
            {"min_val": -0.3},
        ],
        kinks=lambda min_val=-1.0, max_val=1.0: [min_val, max_val],
    )
)
_add(Case("relu6", r_relu6, d_relu6, kinks=_kink_list(0.0, 6.0)))
_add(
    Case(
        "elu",
        r_elu,
        d_elu,
        param_sets=[{}, {"alpha": 0.5}, {"alpha": 2.5}, {"alpha": 0.1}],
        kinks=_kink_list(0.0),
    )
)
_add(
    Case(
        "celu",
        r_celu,
        d_celu,
        param_sets=[{}, {"alpha": 0.5}, {"alpha": 3.0}],
        kinks=_kink_list(0.0),
        dcond=_cond_celu_grad,
        torch_bad_grad=_bad_grad_celu,
    )
)
_add(Case("selu", r_selu, d_selu, kinks=_kink_list(0.0), kink_ulp=1.0))
_add(
    Case(
        "softplus",
        r_softplus,
        d_softplus,
        param_sets=[
            {},
            {"beta": 2.0},
            {"beta": 0.5, "threshold": 5.0},
            {"beta": 64.0, "threshold": 10.0},
            {"threshold": 1000.0},
            {"beta": 0.25, "threshold": -1.0},
        ],
        kinks=lambda beta=1.0, threshold=20.0: [threshold / beta],
        exact_kinks=False,
        torch_bad=_bad_softplus,
        torch_bad_grad=_bad_softplus,
    )
)
_add(Case("logsigmoid", r_logsigmoid, d_logsigmoid))
_add(
    Case(
        "silu",
        r_silu,
        d_silu,
        dscale=_scale_d_silu,
        torch_bad=_bad_fwd_exp_tail,
        torch_bad_grad=_bad_grad_silu,
    )
)
_add(
    Case(
        "mish",
        r_mish,
        d_mish,
        dscale=_scale_d_mish,
        torch_bad=_bad_fwd_exp_tail,
        torch_bad_grad=_bad_grad_mish,
    )
)
_add(
    Case(
        "gelu",
        r_gelu,
        d_gelu,
        param_sets=[{}, {"approximate": "none"}],
        api_params=(("approximate", "none"),),
        dscale=_scale_d_gelu,
        fwd_ulp32=4.5,  # measured 4.23 ULP at x=-1.43 (erfc core), see ULP_BOUNDS
        cond=_cond_gelu,
        dcond=_cond_gelu,
        torch_bad=_bad_fwd_gelu,
        torch_bad_grad=_bad_grad_gelu,
    )
)
_add(
    Case(
        "gelu_tanh",
        r_gelu_tanh,
        d_gelu_tanh,
        param_sets=[{"approximate": "tanh"}],
        api_params=(("approximate", "tanh"),),
        dscale=_scale_d_gelu_tanh,
        cond=_cond_gelu_tanh,
        dcond=_cond_gelu_tanh,
        torch_bad=_bad_fwd_gelu_tanh,
        torch_bad_grad=_bad_grad_gelu_tanh,
    )
)
_add(
    Case(
        "hardsigmoid",
        r_hardsigmoid,
        d_hardsigmoid,
        kinks=_kink_list(-3.0, 3.0),
        torch_bad_grad=_bad_grad_hardsigmoid,
    )
)
_add(
    Case(
        "hardswish",
        r_hardswish,
        d_hardswish,
        kinks=_kink_list(-3.0, 3.0),
        dscale=_scale_d_hardswish,
        torch_bad=_bad_fwd_hardswish,
    )
)
_add(Case("softsign", r_softsign, d_softsign, torch_bad_grad=_bad_grad_softsign))
_add(
    Case(
        "tanhshrink", r_tanhshrink, d_tanhshrink, scale=_abs_x, torch_bad_grad=_bad_grad_tanhshrink
    )
)
_add(
    Case(
        "softshrink",
        r_softshrink,
        d_softshrink,
        param_sets=[{}, {"lambd": 0.0}, {"lambd": 1.5}, {"lambd": 0.3}],
        kinks=lambda lambd=0.5: [lambd, -lambd],
    )
)
_add(
    Case(
        "hardshrink",
        r_hardshrink,
        d_hardshrink,
        param_sets=[{}, {"lambd": 0.0}, {"lambd": 1.5}, {"lambd": 0.3}],
        kinks=lambda lambd=0.5: [lambd, -lambd],
    )
)
_add(
    Case(
        "threshold",
        r_threshold,
        d_threshold,
        param_sets=[
            {"threshold": 0.5, "value": -2.0},
            {"threshold": -1.0, "value": 7.0},
            {"threshold": 0.0, "value": 0.0},
            {"threshold": 0.1, "value": 20.0},
        ],
        kinks=lambda threshold, value: [threshold],
    )
)


def default_params(case: Case) -> dict:
    """The first parameter set (complete for ops with required parameters)."""
    return dict(case.param_sets[0])


# ----------------------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------------------
def edge_values(dtype, kinks=()) -> np.ndarray:
    """±0, ±inf, nan, ±1e4, subnormals, large values, the kinks and their float neighbours."""
    dt = np.dtype(dtype)
    fi = np.finfo(dt)
    vals = [
        0.0,
        -0.0,
        np.inf,
        -np.inf,
        np.nan,
        1e4,
        -1e4,
        1.0,
        -1.0,
        0.5,
        -0.5,
        2.0,
        -2.0,
        3.0,
        -3.0,
        6.0,
        -6.0,
        10.0,
        -10.0,
        20.0,
        -20.0,
        30.0,
        -30.0,
        50.0,
        -50.0,
        80.0,
        -80.0,
        88.0,
        -88.0,
        100.0,
        -100.0,
        700.0,
        -700.0,
        745.0,
        -745.0,
        1e30,
        -1e30,
        float(fi.max),
        -float(fi.max),
        float(fi.tiny),
        -float(fi.tiny),
        float(fi.smallest_subnormal),
        -float(fi.smallest_subnormal),
        float(fi.tiny) / 3,
        -float(fi.tiny) / 3,
        1e-7,
        -1e-7,
        1e-20,
        -1e-20,
    ]
    arr = np.array(vals, dtype=np.float64).astype(dt)
    k = np.array(list(kinks) + [0.0], dtype=np.float64).astype(dt)
    near = np.concatenate([k, np.nextafter(k, dt.type(np.inf)), np.nextafter(k, dt.type(-np.inf))])
    return np.concatenate([arr, near]).astype(dt)


def sample_inputs(dtype, rng, n: int = 400, kinks=()) -> np.ndarray:
    """Random normals, a wide uniform range, log-spaced magnitudes and the edge values."""
    dt = np.dtype(dtype)
    parts = [
        rng.standard_normal(n) * 2,
        rng.uniform(-40, 40, n // 2),
        np.concatenate([s * np.logspace(-12, 4, n // 4) for s in (1, -1)]),
    ]
    return np.concatenate([np.concatenate(parts).astype(dt), edge_values(dt, kinks)])


# ----------------------------------------------------------------------------------------
# Comparisons
# ----------------------------------------------------------------------------------------
def ulp_error(got, want, dtype, scale=None, cond=None) -> np.ndarray:
    """|got - want| in ULP of ``dtype`` at max(|want|, scale), divided by max(1, cond);
    ``want`` is first rounded to ``dtype``'s range (beyond the largest float -> inf). NaN/inf
    patterns must match exactly (a mismatch counts as an infinite error)."""
    got = np.asarray(got, np.float64)
    want = np.asarray(want, np.float64)
    dt = np.dtype(dtype)
    with np.errstate(all="ignore"):
        want_d = want.astype(dt).astype(np.float64)
    want = np.where(np.isinf(want_d) & np.isfinite(want), want_d, want)
    mag = np.abs(want)
    if scale is not None:
        sc = np.abs(np.asarray(scale, np.float64))
        mag = np.maximum(mag, np.where(np.isfinite(sc), sc, 0.0))
    with np.errstate(all="ignore"):
        mag_d = np.minimum(mag, float(np.finfo(dt).max)).astype(dt)
        ulp = np.spacing(mag_d).astype(np.float64)
        err = np.abs(got - want) / ulp
    special = ~np.isfinite(got) | ~np.isfinite(want)
    same_special = (np.isnan(got) & np.isnan(want)) | (got == want)
    if cond is not None:
        c = np.asarray(cond, np.float64)
        err = err / np.maximum(1.0, np.where(np.isfinite(c), c, 1.0))
    err = np.where(special, np.where(same_special, 0.0, np.inf), err)
    return err


def assert_ulp(got, want, dtype, max_ulp, x=None, scale=None, cond=None, what="") -> float:
    """Assert ``ulp_error <= max_ulp`` everywhere; returns the maximum error."""
    err = ulp_error(got, want, dtype, scale, cond)
    if err.size == 0:
        return 0.0
    i = int(np.argmax(err))
    worst = float(err.reshape(-1)[i])
    if not worst <= max_ulp:
        xs = "" if x is None else f" at x={np.asarray(x).reshape(-1)[i]!r}"
        bad = int(np.sum(err > max_ulp))
        raise AssertionError(
            f"{what}: {bad} element(s) off by more than {max_ulp} ULP; worst {worst:.4g} ULP"
            f"{xs}: got {np.asarray(got).reshape(-1)[i]!r}, expected "
            f"{np.asarray(want).reshape(-1)[i]!r}"
        )
    return worst


class Collect:
    """Run several assertions and report every failure at once (``with Collect() as c:``
    then ``c.check(fn, *args, **kw)``)."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def check(self, fn, *args, **kw) -> None:
        try:
            fn(*args, **kw)
        except AssertionError as e:
            self.errors.append(str(e))

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is None and self.errors:
            raise AssertionError("\n".join(self.errors))


def assert_same(got, want, what="", x=None) -> None:
    """Bitwise-equal values (NaN == NaN, -0 == +0 allowed)."""
    got, want = np.asarray(got), np.asarray(want)
    ok = (got == want) | (np.isnan(got) & np.isnan(want))
    if not np.all(ok):
        i = int(np.argmin(ok.reshape(-1)))
        xs = "" if x is None else f" at x={np.asarray(x).reshape(-1)[i]!r}"
        raise AssertionError(
            f"{what}: {int(np.sum(~ok))} mismatch(es){xs}: got "
            f"{got.reshape(-1)[i]!r}, expected {want.reshape(-1)[i]!r}"
        )


def torch_forward_backward(case: Case, x: np.ndarray, g: np.ndarray, p: dict):
    """torch's value and autograd input gradient for x (any float dtype)."""
    xt = torch.tensor(x, requires_grad=True)
    y = case.torch_call(xt, p)
    y.backward(torch.tensor(g))
    return y.detach().numpy(), xt.grad.numpy()


def param_value(case: Case, p: dict, name: str):
    return case.full_params(p)[name]


__all__ = [
    "CASES",
    "Case",
    "Collect",
    "DTYPES",
    "REQUIRED",
    "assert_same",
    "assert_ulp",
    "default_params",
    "edge_values",
    "param_value",
    "sample_inputs",
    "torch_forward_backward",
    "ulp_error",
]
