"""Exact definitions of every activation, its gradient and its gradient written with the
output, in mpmath (evaluate them under ``mpmath.workprec``), at torch's default parameters
(``threshold``: 1.0, 0.5): the independent side of the reference tests of both ULP sweeps
(``tests/test_ulp_reference.py`` for float32, ``tests/test_ulp_reference_f64.py`` for float64).
Closed forms, checked against ``mpmath.diff`` by the float32 test. Beyond |x| = 60, gelu and
gelu(tanh) (and their gradients) return their limits: the true values differ from them by less
than 1e-780, and mpmath's erfc overflows on float64-sized arguments.
"""

from __future__ import annotations

import mpmath

PREC = 256

with mpmath.workprec(PREC):  # the decimal constants, not their float64 roundings
    ALPHA = mpmath.mpf("1.6732632423543772848170429916717")
    SCALE = mpmath.mpf("1.0507009873554804934193349852946")
    GC = mpmath.mpf("0.044715")
    LEAKY = mpmath.mpf(0.01)  # the float64 value torch (and fastact) receive as the slope


# ----------------------------------------------------------------------------- exact values
def _sig(x):
    return 1 / (1 + mpmath.exp(-x))


def _tanhshrink(x):
    # x - tanh x loses about 2 log2(1/|x|) bits: raise the precision by that much
    extra = max(0, -2 * int(mpmath.floor(mpmath.log(abs(x), 2)))) if x != 0 else 0
    with mpmath.extraprec(extra + 16):
        return +(x - mpmath.tanh(x))


def _gelu_tanh_z(x):
    return mpmath.sqrt(2 / mpmath.pi) * (x + GC * x**3)


FWD = {
    "sigmoid": _sig,
    "tanh": mpmath.tanh,
    "relu": lambda x: x if x > 0 else mpmath.mpf(0),
    "leaky_relu": lambda x: x if x > 0 else x * LEAKY,
    "hardtanh": lambda x: min(max(x, -1), 1),
    "relu6": lambda x: min(max(x, 0), 6),
    "elu": lambda x: x if x > 0 else mpmath.expm1(x),
    "celu": lambda x: x if x > 0 else mpmath.expm1(x),
    "selu": lambda x: SCALE * (x if x > 0 else ALPHA * mpmath.expm1(x)),
    "softplus": lambda x: x if x > 20 else mpmath.log1p(mpmath.exp(x)),
    "logsigmoid": lambda x: -mpmath.log1p(mpmath.exp(-x)),
    "silu": lambda x: x * _sig(x),
    "mish": lambda x: x * mpmath.tanh(mpmath.log1p(mpmath.exp(x))),
    "gelu": lambda x: x * mpmath.erfc(-x / mpmath.sqrt(2)) / 2,
    "gelu_tanh": lambda x: x * _sig(2 * _gelu_tanh_z(x)),  # 0.5 (1 + tanh z) = sigmoid(2z)
    "hardsigmoid": lambda x: min(max(x + 3, 0), 6) / 6,
    "hardswish": lambda x: x * min(max(x + 3, 0), 6) / 6,
    "softsign": lambda x: x / (1 + abs(x)),
    "tanhshrink": _tanhshrink,
    "softshrink": lambda x: x - mpmath.mpf(0.5) if x > 0.5 else (x + 0.5 if x < -0.5 else 0 * x),
    "hardshrink": lambda x: x if abs(x) > 0.5 else 0 * x,
    "threshold": lambda x: x if x > 1 else mpmath.mpf(0.5),
}


def _mish_d(x):  # closed form: e^x w / d^2
    e = mpmath.exp(x)
    w = 4 * (x + 1) + 4 * e**2 + e**3 + e * (4 * x + 6)
    d = 2 * e + e**2 + 2
    return e * w / d**2


def _gelu_tanh_d(x):
    z = _gelu_tanh_z(x)
    dz = mpmath.sqrt(2 / mpmath.pi) * (1 + 3 * GC * x**2)
    return _sig(2 * z) + x / 2 * mpmath.sech(z) ** 2 * dz


def _step(cond, a, b):
    return mpmath.mpf(a) if cond else mpmath.mpf(b)


GRAD = {
    "sigmoid": lambda x: _sig(x) * _sig(-x),
    "tanh": lambda x: mpmath.sech(x) ** 2,
    "relu": lambda x: _step(x > 0, 1, 0),
    "leaky_relu": lambda x: 1 if x > 0 else LEAKY,
    "hardtanh": lambda x: _step(-1 < x < 1, 1, 0),
    "relu6": lambda x: _step(0 < x < 6, 1, 0),
    "elu": lambda x: 1 if x > 0 else mpmath.exp(x),
    "celu": lambda x: 1 if x > 0 else mpmath.exp(x),
    "selu": lambda x: SCALE if x > 0 else SCALE * ALPHA * mpmath.exp(x),
    "softplus": lambda x: 1 if x > 20 else _sig(x),
    "logsigmoid": lambda x: _sig(-x),
    "silu": lambda x: (1 + mpmath.exp(-x) * (1 + x)) / (1 + mpmath.exp(-x)) ** 2,
    "mish": _mish_d,
    "gelu": lambda x: mpmath.erfc(-x / mpmath.sqrt(2)) / 2 + x * mpmath.npdf(x),
    "gelu_tanh": _gelu_tanh_d,
    "hardsigmoid": lambda x: _step(-3 < x < 3, 1, 0) / 6,
    "hardswish": lambda x: 0 if x <= -3 else (x / 3 + mpmath.mpf(0.5) if x < 3 else 1),
    "softsign": lambda x: 1 / (1 + abs(x)) ** 2,
    "tanhshrink": lambda x: mpmath.tanh(x) ** 2,
    "softshrink": lambda x: _step(abs(x) > 0.5, 1, 0),
    "hardshrink": lambda x: _step(abs(x) > 0.5, 1, 0),
    "threshold": lambda x: _step(x > 1, 1, 0),
}

# the exact gradient as a function of the output y
GRAD_OUTPUT = {
    "sigmoid": lambda y: y * (1 - y),
    "tanh": lambda y: 1 - y * y,
    "relu": GRAD["relu"],
    "leaky_relu": GRAD["leaky_relu"],
    "hardtanh": GRAD["hardtanh"],
    "relu6": GRAD["relu6"],
    "elu": lambda y: 1 if y > 0 else y + 1,
    "celu": lambda y: 1 if y > 0 else y + 1,
    "selu": lambda y: SCALE if y > 0 else y + SCALE * ALPHA,
    "logsigmoid": lambda y: -mpmath.expm1(y),
    "threshold": GRAD["threshold"],
}


def _limit_beyond_60(fn, derivative: bool):
    """``fn`` with its limit for |x| > 60 (x or 0; 1 or 0 for a derivative)."""

    def g(x):
        if abs(x) > 60:
            return mpmath.mpf(1 if x > 0 else 0) if derivative else (x if x > 0 else mpmath.mpf(0))
        return fn(x)

    return g


for _name in ("gelu", "gelu_tanh"):
    FWD[_name] = _limit_beyond_60(FWD[_name], False)
    GRAD[_name] = _limit_beyond_60(GRAD[_name], True)
