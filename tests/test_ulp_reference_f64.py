"""The float64 sample's references (scripts/ulp_reference_f64.py) against mpmath at 200 bits.

Every forward, gradient and gradient-from-output reference is evaluated at points in the
regions that matter (random, log-uniform magnitudes 1e-300..1e300, the bands around the
derivatives' roots down to 1e-15 from the root, gelu's tails, tanhshrink's small inputs, the
kinks, specials) and must be within 0.05 float64 ULP of the exact value (subnormal spacing
below the smallest normal), 0.3 in gelu(tanh)'s far negative tail; exact zeros exactly 0.
"""

from __future__ import annotations

import math
import sys
import zlib
from pathlib import Path

import mpmath
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import ulp_reference as R32  # noqa: E402
import ulp_reference_f64 as R  # noqa: E402

mp = mpmath.mpf
with mpmath.workprec(200):  # constants at 200 bits, not at mpmath's default 53
    ALPHA, SCALE = mp(R32._SELU_ALPHA_S), mp(R32._SELU_SCALE_S)
    K, C = mpmath.sqrt(2 / mpmath.pi), mp("0.044715")
SLOPE = mp(0.01)  # the float64 value torch receives (exact)


def _sig(x):
    return 1 / (1 + mpmath.exp(-x))


def _gelu_tanh(x):
    # x/2 (1 + tanh z) = x sigmoid(2z): 1 + tanh z would cancel below z ~ -100 even at 200 bits
    if abs(x) > 60:
        return x if x > 0 else mp(0)  # 0: the true value is below 1e-780 (0 in float64)
    return x * _sig(2 * K * (x + C * x**3))


def _gelu_tanh_d(x):
    if abs(x) > 60:
        return mp(1) if x > 0 else mp(0)
    z2 = 2 * K * (x + C * x**3)
    return _sig(z2) + x * _sig(z2) * _sig(-z2) * 2 * K * (1 + 3 * C * x**2)


def _gelu(x):
    if abs(x) > 60:
        return x if x > 0 else mp(0)
    return x * mpmath.ncdf(x)


def _gelu_d(x):
    if abs(x) > 60:
        return mp(1) if x > 0 else mp(0)
    return mpmath.ncdf(x) + x * mpmath.npdf(x)


def _tanhshrink(x):
    # x - tanh x loses ~2 log2(1/|x|) bits: work with that many more
    extra = int(-2 * mpmath.log(abs(x), 2)) if 0 < abs(x) < 1 else 0
    with mpmath.workprec(200 + extra):
        return +(x - mpmath.tanh(x))


def _clamp(x, lo, hi):
    return min(max(x, mp(lo)), mp(hi))


FWD = {
    "sigmoid": _sig,
    "tanh": mpmath.tanh,
    "relu": lambda x: max(x, mp(0)),
    "leaky_relu": lambda x: x if x > 0 else x * SLOPE,
    "hardtanh": lambda x: _clamp(x, -1, 1),
    "relu6": lambda x: _clamp(x, 0, 6),
    "elu": lambda x: x if x > 0 else mpmath.expm1(x),
    "celu": lambda x: x if x > 0 else mpmath.expm1(x),
    "selu": lambda x: SCALE * (x if x > 0 else ALPHA * mpmath.expm1(x)),
    "softplus": lambda x: x if x > 20 else mpmath.log1p(mpmath.exp(x)),
    "logsigmoid": lambda x: -mpmath.log1p(mpmath.exp(-x)),
    "silu": lambda x: x * _sig(x),
    "mish": lambda x: x * mpmath.tanh(mpmath.log1p(mpmath.exp(x))),
    "gelu": _gelu,
    "gelu_tanh": _gelu_tanh,
    "hardsigmoid": lambda x: _clamp(x + 3, 0, 6) / 6,
    "hardswish": lambda x: x * _clamp(x + 3, 0, 6) / 6,
    "softsign": lambda x: x / (1 + abs(x)),
    "tanhshrink": _tanhshrink,
    "softshrink": lambda x: mp(0) if abs(x) <= 0.5 else (x - 0.5 if x > 0 else x + 0.5),
    "hardshrink": lambda x: mp(0) if abs(x) <= 0.5 else x,
    "threshold": lambda x: mp(0.5) if x <= 1 else x,
}
GRAD = {
    "sigmoid": lambda x: _sig(x) * _sig(-x),
    "tanh": lambda x: mpmath.sech(x) ** 2,
    "relu": lambda x: mp(1) if x > 0 else mp(0),
    "leaky_relu": lambda x: mp(1) if x > 0 else SLOPE,
    "hardtanh": lambda x: mp(1) if -1 < x < 1 else mp(0),
    "relu6": lambda x: mp(1) if 0 < x < 6 else mp(0),
    "elu": lambda x: mp(1) if x > 0 else mpmath.exp(x),
    "celu": lambda x: mp(1) if x > 0 else mpmath.exp(x),
    "selu": lambda x: SCALE if x > 0 else SCALE * ALPHA * mpmath.exp(x),
    "softplus": lambda x: mp(1) if x > 20 else _sig(x),
    "logsigmoid": lambda x: _sig(-x),
    "silu": R32._mp_silu_d,
    "mish": R32._mp_mish_d,
    "gelu": _gelu_d,
    "gelu_tanh": _gelu_tanh_d,
    "hardsigmoid": lambda x: mp(1) / 6 if -3 < x < 3 else mp(0),
    "hardswish": lambda x: mp(0) if x <= -3 else ((x + mp(1.5)) / 3 if x < 3 else mp(1)),
    "softsign": lambda x: 1 / (1 + abs(x)) ** 2,
    "tanhshrink": lambda x: mpmath.tanh(x) ** 2,
    "softshrink": lambda x: mp(0) if abs(x) <= 0.5 else mp(1),
    "hardshrink": lambda x: mp(0) if abs(x) <= 0.5 else mp(1),
    "threshold": lambda x: mp(0) if x <= 1 else mp(1),
}
FROM_OUTPUT = {
    "sigmoid": lambda y: y * (1 - y),
    "tanh": lambda y: 1 - y * y,
    "elu": lambda y: mp(1) if y > 0 else y + 1,
    "celu": lambda y: mp(1) if y > 0 else y + 1,
    "selu": lambda y: SCALE if y > 0 else y + ALPHA * SCALE,
    "logsigmoid": lambda y: -mpmath.expm1(y),
}
for _n in ("relu", "leaky_relu", "hardtanh", "relu6", "threshold"):
    FROM_OUTPUT[_n] = GRAD[_n]
assert set(FROM_OUTPUT) == set(R.GRAD_OUTPUT64)


def _points(name: str, direction: str) -> np.ndarray:
    rng = np.random.default_rng(zlib.crc32(f"{name}-{direction}".encode()))
    pts = [
        rng.standard_normal(40) * 4,
        np.exp(rng.uniform(math.log(1e-300), math.log(1e300), 30)) * rng.choice([-1, 1], 30),
        [0.0, -0.0, 5e-324, -5e-324, 2.2e-308, -1.0, 1.0, -3.0, 3.0, 6.0, 0.5, -0.5, 20.0],
        [np.nextafter(20.0, 30), np.nextafter(-3.0, 0), np.nextafter(-1.5, 0), -1.5],
    ]
    if direction == "output":  # outputs in the function's range
        y = np.asarray(R.FORWARD64[name](np.concatenate([np.ravel(p) for p in pts])))
        return np.unique(y.astype(np.float64)[np.isfinite(y.astype(np.float64))])
    if name in R.ROOTS64:
        r = float(R.ROOTS64[name][0])
        pts.append([r + s * 10.0**-k for k in range(1, 16) for s in (-1, 1)])
        pts.append([np.nextafter(r, -1), r, np.nextafter(r, 1), r + 0.1249, r - 0.1251])
    if name.startswith("gelu"):
        pts.append(-np.geomspace(5, 40, 15))
    if name == "tanhshrink":
        pts.append(np.geomspace(1e-300, 0.4, 25) * rng.choice([-1, 1], 25))
    return np.unique(np.concatenate([np.ravel(np.asarray(p, dtype=np.float64)) for p in pts]))


def _ulp64(v) -> mpmath.mpf:
    e = mpmath.floor(mpmath.log(abs(v), 2)) if v != 0 else -1074
    return mpmath.ldexp(1, int(max(e, -1022)) - 52)


CASES = (
    [(n, "forward") for n in R.FORWARD64]
    + [(n, "grad") for n in R.GRAD64]
    + [(n, "output") for n in R.GRAD_OUTPUT64]
)


@pytest.mark.parametrize(("name", "direction"), CASES, ids=[f"{n}-{d}" for n, d in CASES])
def test_reference_within_a_small_fraction_of_a_float64_ulp(name, direction):
    table = {"forward": R.FORWARD64, "grad": R.GRAD64, "output": R.GRAD_OUTPUT64}[direction]
    exact_fn = {"forward": FWD, "grad": GRAD, "output": FROM_OUTPUT}[direction][name]
    x = _points(name, direction)
    got = np.asarray(table[name](x))
    assert got.dtype == np.longdouble
    worst = 0.0
    with mpmath.workprec(200):
        for xi, gi in zip(x, got, strict=True):
            exact = exact_fn(mp(float(xi)))
            if exact == 0:  # exact zeros, and true values far below float64's range
                assert abs(gi) < np.ldexp(np.longdouble(1), -1076), (name, direction, xi, gi)
                continue
            err = float(abs(R.to_mpf(gi) - exact) / _ulp64(exact))
            tail = name == "gelu_tanh" and xi < -8
            assert err <= (0.3 if tail else 0.05), (name, direction, float(xi), err)
            worst = max(worst, err)
    assert np.isnan(np.asarray(table[name](np.array([np.nan])))).all()


def test_bands_matter_in_long_double_too():
    """Without the series band, long double cancels near silu's root: the plain formula is
    off by far more than the tolerance there (so the band is not decoration)."""
    r = float(R.ROOTS64["silu"][0])
    x = np.array([r + 1e-12])
    plain = R._silu_d(x.astype(np.longdouble))[0]
    with mpmath.workprec(200):
        exact = GRAD["silu"](mp(float(x[0])))
        assert float(abs(R.to_mpf(plain) - exact) / _ulp64(exact)) > 0.5
        banded = R.GRAD64["silu"](x)[0]
        assert float(abs(R.to_mpf(banded) - exact) / _ulp64(exact)) <= 0.05
