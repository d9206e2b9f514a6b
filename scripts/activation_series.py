"""Coefficients of the polynomials in fastact/kernels/_series.py (not a test).

silu' and mish' have a zero on the negative axis (silu' at r = -1.27846..., mish' at
r = -1.19243...) where their closed forms cancel: near it the kernels evaluate the derivative
as ``t * P(t)`` with ``t = (x - r_hi) - r_lo`` (r split into two float64 words, so t is exact
up to one rounding and the zero falls exactly at r). P(t) = f'(r + t) / t is a near-minimax
polynomial: mpmath's ``chebyfit`` (interpolation at Chebyshev nodes) on the band, at 400 bits
(P is a quotient that cancels near t = 0). The script prints the root split and P's
coefficients (lowest degree first) with the relative error of the float64-rounded polynomial
on a dense grid, ready to paste: float64 fits (``_P``) and lower-degree float32 ones
(``_P32``, evaluated in float32 by the float32 kernels).

Usage::

    python scripts/activation_series.py            # all tables
    python scripts/activation_series.py silu
    python scripts/activation_series.py tanhshrink   # float64 tanhshrink's P(x^2)
    python scripts/activation_series.py silu_root    # silu's zero in two words, e^r
    python scripts/activation_series.py mish_root    # mish''s zero in two words, band fit
"""

from __future__ import annotations

import sys

import mpmath

#: name -> (derivative, root guess, band (a, b) in t = x - r, degree)
BANDS = {
    "silu": (
        lambda x: (1 + x * (1 - 1 / (1 + mpmath.exp(-x)))) / (1 + mpmath.exp(-x)),
        -1.2785,
        (-0.3125, 0.3125),
        14,
    ),
    "mish": (
        lambda x: (
            mpmath.tanh(mpmath.log1p(mpmath.exp(x)))
            + x * (1 - mpmath.tanh(mpmath.log1p(mpmath.exp(x))) ** 2) / (1 + mpmath.exp(-x))
        ),
        -1.1924,
        (-0.25, 0.25),
        14,
    ),
}


#: degree of the float32 kernels' polynomials (evaluated in float32) on the same bands
DEGREE_F32 = 6


def band(name: str, deg: int | None = None) -> tuple[float, float, list[float], float]:
    """(r_hi, r_lo, coefficients lowest first, max relative error on the band)."""
    f, guess, (a, b), deg64 = BANDS[name]
    deg = deg64 if deg is None else deg
    with mpmath.workprec(400):
        r = mpmath.findroot(f, mpmath.mpf(guess))
        r_hi = float(r)
        r_lo = float(r - r_hi)

        def p(t):  # t = 0 (a node of an odd degree + 1): the limit f''(r)
            return f(r + t) / t if t != 0 else mpmath.diff(f, r)

        poly, _ = mpmath.chebyfit(p, [a, b], deg + 1, error=True)
        coeffs = [float(c) for c in reversed(poly)]  # lowest degree first
        worst = mpmath.mpf(0)
        for i in range(2001):
            t = mpmath.mpf(a) + (b - a) * mpmath.mpf(i) / 2000
            if t == 0:
                continue
            approx = mpmath.mpf(0)
            for c in reversed(coeffs):
                approx = approx * t + c
            worst = max(worst, abs(approx / p(t) - 1))
    return r_hi, r_lo, coeffs, float(worst)


def tanhshrink(deg: int = 16, top: float = 1.0) -> tuple[list[float], float]:
    """float64 tanhshrink for |x| < 1: x - tanh x = x^3 P(x^2), P a Chebyshev fit of
    (x - tanh x) / x^3 on u = x^2 in [0, top] (coefficients lowest first, max rel. error)."""
    with mpmath.workprec(400):

        def p(u):
            if u == 0:
                return mpmath.mpf(1) / 3
            x = mpmath.sqrt(u)
            return (x - mpmath.tanh(x)) / (x * u)

        poly, _ = mpmath.chebyfit(p, [0, top], deg + 1, error=True)
        coeffs = [float(c) for c in reversed(poly)]
        worst = mpmath.mpf(0)
        for i in range(1, 2001):
            u = mpmath.mpf(top) * i / 2000
            approx = mpmath.mpf(0)
            for c in reversed(coeffs):
                approx = approx * u + c
            worst = max(worst, abs(approx / p(u) - 1))
    return coeffs, float(worst)


def silu_root() -> tuple[float, float, float]:
    """(r_hi, r_lo, rho): silu's zero r = -1 - W(1/e) (1 + r + e^r = 0) in two float64 words
    and rho = e^r = -(1 + r), for fastact/kernels/_series.py's _SILU_ROOT and _SILU_RHO."""
    with mpmath.workprec(400):
        r = mpmath.findroot(lambda x: 1 + x + mpmath.exp(x), mpmath.mpf(-1.28))
        r_hi = float(r)
        return r_hi, float(r - r_hi), float(mpmath.exp(r))


def mish_root(deg32: int = 5, deg64: int = 13, band=(-0.1875, 0.25)):
    """mish'(x) = e K / Q (e = e^x, K = 4 (1 + x) + e (6 + 4x) + 4 e^2 + e^3, Q = (e^2 + 2e +
    2)^2) vanishes where K does, at r = -1.19243: r in two float32 and two float64 words, and
    for each type the near-minimax P (chebyfit at 300 bits, lowest coefficient first) with
    mish'(r_hi + s) = (s - r_lo) P(s) on s in ``band`` (s = x - r_hi is exact there), with its
    relative error: fastact/kernels/_series.py's _MISH_ROOT, _MISH_ROOT32, _MISH_P32,
    _MISH_P64."""
    import numpy as np

    out = {}
    with mpmath.workprec(300):
        ex = mpmath.exp

        def k(x):
            return 4 * (1 + x) + ex(x) * (6 + 4 * x) + 4 * ex(2 * x) + ex(3 * x)

        def d(x):
            e = ex(x)
            return e * k(x) / (e * e + 2 * e + 2) ** 2

        r = mpmath.findroot(k, mpmath.mpf(-1.19))
        for tag, conv, deg in (("32", lambda v: float(np.float32(v)), deg32), ("64", float, deg64)):
            r_hi = mpmath.mpf(conv(r))
            r_lo = mpmath.mpf(conv(r - r_hi))

            def p(s, r_hi=r_hi, r_lo=r_lo):
                t = s - r_lo
                if abs(t) < mpmath.mpf(2) ** -250:
                    return mpmath.diff(d, r)
                return d(r_hi + s) / t

            coeffs, err = mpmath.chebyfit(p, list(band), deg + 1, error=True)
            rel = float(mpmath.log(err / p(mpmath.mpf(0)), 2))
            out[tag] = (float(r_hi), float(r_lo), [float(c) for c in coeffs[::-1]], rel)
    return out


def main(argv: list[str]) -> None:
    if "mish_root" in argv:
        for tag, (r_hi, r_lo, coeffs, rel) in mish_root().items():
            suffix = "32" if tag == "32" else ""
            print(f"# mish': degree {len(coeffs) - 1}, relative error 2^{rel:.1f}")
            print(f"_MISH_ROOT{suffix} = ({r_hi!r}, {r_lo!r})")
            print(f"_MISH_P{tag} = (")
            for c in coeffs:
                print(f"    {c!r},")
            print(")")
        argv = [a for a in argv if a != "mish_root"]
        if not argv:
            return
    if "silu_root" in argv:
        r_hi, r_lo, rho = silu_root()
        print(f"_SILU_ROOT = ({r_hi!r}, {r_lo!r})")
        print(f"_SILU_RHO = {rho!r}")
        argv = [a for a in argv if a != "silu_root"]
        if not argv:
            return
    if not argv or "tanhshrink" in argv:
        coeffs, worst = tanhshrink()
        print(
            f"# tanhshrink: (x - tanh x) / x^3 = P(x^2) on |x| <= 1, degree {len(coeffs) - 1}"
            f" in x^2, max relative error {worst:.2e}"
        )
        print("_TANHSHRINK_P64 = (")
        for c in coeffs:
            print(f"    {c!r},")
        print(")")
        argv = [a for a in argv if a != "tanhshrink"]
        if not argv and "tanhshrink" in sys.argv[1:]:
            return
    for name in argv or list(BANDS):
        for deg, suffix in ((None, ""), (DEGREE_F32, "32")):
            r_hi, r_lo, coeffs, worst = band(name, deg)
            a, b = BANDS[name][2]
            print(
                f"# {name}': root {r_hi!r} + {r_lo!r}; band t in [{a}, {b}], degree "
                f"{len(coeffs) - 1}, max relative error {worst:.2e}"
            )
            if not suffix:
                print(f"_{name.upper()}_ROOT = ({r_hi!r}, {r_lo!r})")
            print(f"_{name.upper()}_BAND_P{suffix} = (")
            for c in coeffs:
                print(f"    {c!r},")
            print(")")


if __name__ == "__main__":
    main(sys.argv[1:])
