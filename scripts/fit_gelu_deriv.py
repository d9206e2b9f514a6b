"""Coefficients of the gelu derivative's polynomial (``_GELU_DP32``/``_GELU_DP64`` in
fastact/kernels/_series.py); not a unit test.

gelu'(x) = Phi(x) + x phi(x) vanishes at x = -a0, a0 = 0.75179..., where its two terms cancel.
With a = |x| and R(a) = Q(a) / phi(a) (Mills' ratio, Q(a) = Phi(-a)) it is, for x < 0,

    gelu'(x) = phi(a) (R(a) - a) = exp(-a^2/2) (a0 - a) P(t),   t = 1 / (1 + a/2),
    P(t) = (R(a) - a) / (sqrt(2 pi) (a0 - a)),

and 1 - exp(-a^2/2) (a0 - a) P(t) for x >= 0. R(a) - a has a simple zero at a0, so P is
smooth and positive (0.665 at a = 0, 1/sqrt(2 pi) as a -> inf): every factor is computed to
a relative precision, a0 - a with a0 in three words (a0_hi - a is exact near a0), and
nothing cancels at the zero. P is fitted in powers of z = t - 1/2, relative least squares at
4n + 40 Chebyshev nodes of t in [t_min, 1] with mpmath (300 bits), the coefficients rounded
to the target type one at a time (the constant term as two words) and the rest refitted.
float32: a in [0, 14.7] (t >= 0.1198; beyond, the result underflows), degree 11; float64: a in
[0, 39] (t >= 0.0488), degree 27. The printed error is the relative one over 2000 points.

Usage::

    python scripts/fit_gelu_deriv.py            # a few seconds
"""

from __future__ import annotations

import mpmath as mp
import numpy as np

mp.mp.prec = 300
_SQ2PI = mp.sqrt(2 * mp.pi)


def gelu_d(x):
    return mp.erfc(-x / mp.sqrt(2)) / 2 + x * mp.exp(-x * x / 2) / _SQ2PI


A0 = -mp.findroot(gelu_d, mp.mpf(-0.75))


def p_of_t(t):
    a = 2 * (1 - t) / t
    q = mp.erfc(a / mp.sqrt(2)) / 2 * mp.exp(a * a / 2)  # R(a) / sqrt(2 pi)
    return (q - a / _SQ2PI) / (A0 - a)


def _round(v, dtype):
    return mp.mpf(float(dtype(float(v))))


def words(v, dtype, n):
    """v as n words of dtype (each the rounded remainder)."""
    out = []
    for _ in range(n):
        w = float(dtype(float(v)))
        out.append(w)
        v -= mp.mpf(w)
    return out


def fit(lo, n, dtype):
    """(coefficients with the constant in two words, max relative error) of P on [lo, 1]."""
    m = 4 * n + 40
    c = mp.mpf(0.5)  # P in powers of t - 1/2
    nodes = [
        (lo + 1) / 2 + (1 - lo) / 2 * mp.cos(mp.pi * (k + mp.mpf(1) / 2) / m) for k in range(m)
    ]
    vals = [p_of_t(t) for t in nodes]
    fixed: list = []
    low = mp.mpf(0)
    for j in range(n + 1):
        rows, rhs = [], []
        for t, v in zip(nodes, vals, strict=True):
            z = t - c
            res = v - sum(cf * z**i for i, cf in enumerate(fixed)) - low
            rows.append([z**i / v for i in range(j, n + 1)])
            rhs.append(res / v)
        mat = mp.matrix(rows)
        sol = mp.lu_solve(mat.T * mat, mat.T * mp.matrix(rhs))
        cf = _round(sol[0], dtype)
        fixed.append(cf)
        if j == 0:
            low = _round(sol[0] - cf, dtype)
    ts = [lo + (1 - lo) * i / 1999 for i in range(2000)]
    err = max(
        abs((sum(cf * (t - c) ** i for i, cf in enumerate(fixed)) + low) / p_of_t(t) - 1)
        for t in ts
    )
    return [fixed[0], low, *fixed[1:]], err


def main() -> None:
    print("a0 float64 words", tuple(words(A0, np.float64, 3)))
    print("a0 float32 words", tuple(words(A0, np.float32, 3)))
    for dtype, amax, n in ((np.float32, 14.7, 11), (np.float64, 39.0, 27)):
        lo = 1 / (1 + mp.mpf(amax) / 2)
        cs, err = fit(lo, n, dtype)
        print(f"{np.dtype(dtype).name}: a <= {amax}, degree {n}, relative error {mp.nstr(err, 3)}")
        print("(\n" + "".join(f"    {float(v)!r},\n" for v in cs) + ")")


if __name__ == "__main__":
    main()
