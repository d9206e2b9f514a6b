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
import ulp_reference_f64 as R  # noqa: E402
from activation_mp import FWD, GRAD  # noqa: E402  (the exact definitions, shared)
from activation_mp import GRAD_OUTPUT as FROM_OUTPUT  # noqa: E402

mp = mpmath.mpf
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
