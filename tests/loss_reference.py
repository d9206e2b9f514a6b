"""Exact references for the losses: torch's definitions evaluated with mpmath at 128 bits.

Each element-wise reference ``ref(x, t, ...)`` takes the exact values of one element's inputs
(mpf) and returns the element's loss and the derivatives fastact reports for it, all exact
(to 128 bits). The row-wise losses (cross_entropy, cosine_embedding_loss, triplet_margin_loss)
take one row. Errors are measured in ULP of the result's dtype at the exact value (the
subnormal spacing below the smallest normal); :func:`reduced_bound` is the error a float64
(or compensated) sum of correctly rounded terms may have.
"""

from __future__ import annotations

import mpmath
import numpy as np

mp = mpmath.mp
mp.prec = 128
mpf = mpmath.mpf


def ulp(exact, dtype) -> mpmath.mpf:
    """The ULP of ``dtype`` at the exact value (subnormal spacing below the smallest normal)."""
    fi = np.finfo(dtype)
    tiny = mpf(float(fi.smallest_normal))
    a = abs(exact)
    if a < tiny:
        return mpf(float(fi.smallest_subnormal))
    e = int(mpmath.floor(mpmath.log(a, 2)))
    # log2 may round across a power of two: fix the exponent exactly
    if mpmath.ldexp(1, e) > a:
        e -= 1
    elif mpmath.ldexp(1, e + 1) <= a:
        e += 1
    return mpmath.ldexp(1, e - fi.nmant)


def ulp_err(got, exact, dtype) -> float:
    """|got - exact| in ULP of ``dtype`` at ``exact`` (0 for equal infinities/NaNs)."""
    g = float(got)
    if np.isnan(g) or (mpmath.isnan(exact)):
        return 0.0 if (np.isnan(g) and mpmath.isnan(exact)) else float("inf")
    if np.isinf(g) or mpmath.isinf(exact):
        return 0.0 if g == exact else float("inf")
    return float(abs(mpf(g) - exact) / ulp(exact, dtype))


def reduced_bound(terms, exact_sum, dtype, div=1) -> float:
    """The error (in ULP of ``dtype`` at ``exact_sum / div``) of a float64 or compensated sum
    of the correctly rounded terms, divided by ``div``: half an ULP per term, the float64
    accumulation's rounding, and the final rounding."""
    r = exact_sum / div
    u = ulp(r, dtype)
    s = sum((ulp(t, dtype) / 2 for t in terms), mpf(0))
    acc = len(terms) * abs(mpf(2) ** -53) * sum((abs(t) for t in terms), mpf(0))
    return float((s + acc) / abs(mpf(div)) / u) + 0.5


# ----------------------------------------------------------------------------------------
# element-wise losses: (value, d1, d2)
# ----------------------------------------------------------------------------------------
def _sign(d):
    return mpf(1) if d > 0 else (mpf(-1) if d < 0 else mpf(0))


def sigmoid(z):
    return 1 / (1 + mpmath.exp(-z))


def softplus(z):
    return mpmath.log1p(mpmath.exp(z)) if z < 0 else z + mpmath.log1p(mpmath.exp(-z))


def mse(x, t, w=1):
    d = x - t
    return w * d * d, 2 * w * d, mpf(0)


def l1(x, t, w=1):
    d = x - t
    return w * abs(d), w * _sign(d), mpf(0)


def smooth_l1(x, t, beta):
    d = x - t
    if abs(d) < beta:
        return d * d / (2 * beta), d / beta, mpf(0)
    return abs(d) - beta / 2, _sign(d), mpf(0)


def huber(x, t, delta, w=1):
    d = x - t
    if abs(d) < delta:
        return w * d * d / 2, w * d, mpf(0)
    return w * delta * (abs(d) - delta / 2), w * delta * _sign(d), mpf(0)


def bce(p, t, w=1):
    lp = max(mpmath.log(p), mpf(-100)) if p > 0 else mpf(-100)
    l1p = max(mpmath.log1p(-p), mpf(-100)) if p < 1 else mpf(-100)
    eps = mpf(float(np.float32(1e-12)))
    return -w * (t * lp + (1 - t) * l1p), w * (p - t) / max((1 - p) * p, eps), mpf(0)


def bce_logits(x, t, w=1, pw=1):
    """-w [pw t log sigmoid(x) + (1 - t) log sigmoid(-x)]."""
    v = w * (pw * t * softplus(-x) + (1 - t) * softplus(x))
    g = w * ((1 - t) * sigmoid(x) - pw * t * sigmoid(-x))
    return v, g, mpf(0)


def kl(x, t):
    xl = t * mpmath.log(t) if t != 0 else mpf(0)
    return xl - t * x, -t, mpf(0)


def kl_log(x, t):
    et = mpmath.exp(t)
    return et * (t - x), -et, mpf(0)


def _stirling(t):
    if t > 1:
        return t * mpmath.log(t) - t + mpmath.log(2 * mpmath.pi * t) / 2
    return mpf(0)


def poisson_log(x, t, full=False):
    ex = mpmath.exp(x)
    return ex - t * x + (_stirling(t) if full else 0), ex - t, mpf(0)


def poisson(x, t, eps, full=False):
    xe = x + eps
    return x - t * mpmath.log(xe) + (_stirling(t) if full else 0), 1 - t / xe, mpf(0)


def gaussian_nll(x, t, var, eps, full=False):
    v = max(var, eps)
    d = x - t
    k = mpmath.log(2 * mpmath.pi) / 2 if full else 0
    return (mpmath.log(v) + d * d / v) / 2 + k, d / v, (1 / v - d * d / (v * v)) / 2


def soft_margin(x, y):
    return softplus(-y * x), -y * sigmoid(-y * x), mpf(0)


def margin_ranking(x1, x2, y, margin):
    z = -y * (x1 - x2) + margin
    if z < 0:
        return mpf(0), mpf(0), mpf(0)
    return z, -y, y


def hinge_embedding(x, y, margin):
    v = mpf(0)
    g = mpf(0)
    if y != 1:
        mc = margin - x
        v = max(mc, mpf(0))
        g = mpf(-1) if mc >= 0 else mpf(0)
    if y != -1:
        v += x
        g += 1
    return v, g, mpf(0)


# ----------------------------------------------------------------------------------------
# row losses
# ----------------------------------------------------------------------------------------
def cross_entropy_row(x, y, w=None, eps=0):
    """Loss and gradient (list) of one row of logits with class index ``y`` (weights ``w``,
    label smoothing ``eps``), before the reduction's division."""
    C = len(x)
    w = w or [mpf(1)] * C
    m = max(x)
    s = sum(mpmath.exp(v - m) for v in x)
    lse = m + mpmath.log(s)
    p = [mpmath.exp(v - lse) for v in x]
    keep = 1 - mpf(eps)
    loss = keep * w[y] * (lse - x[y]) + mpf(eps) / C * sum(w[c] * (lse - x[c]) for c in range(C))
    W = sum(w)
    coef = keep * w[y] + mpf(eps) * W / C
    g = [p[j] * coef - mpf(eps) / C * w[j] - (keep * w[y] if j == y else 0) for j in range(C)]
    return loss, g


def cross_entropy_prob_row(x, q, w=None, eps=0):
    C = len(x)
    w = w or [mpf(1)] * C
    m = max(x)
    lse = m + mpmath.log(sum(mpmath.exp(v - m) for v in x))
    p = [mpmath.exp(v - lse) for v in x]
    qq = [(1 - mpf(eps)) * qc + mpf(eps) / C for qc in q]
    loss = sum(w[c] * qq[c] * (lse - x[c]) for c in range(C))
    sq = sum(w[c] * qq[c] for c in range(C))
    return loss, [p[j] * sq - w[j] * qq[j] for j in range(C)]


def cosine_row(a, b, y, margin):
    """cosine_embedding_loss of one row and its gradients (torch's EPSILON = 1e-12)."""
    e = mpf(1e-12)
    dot = sum(u * v for u, v in zip(a, b, strict=True))
    A = sum(u * u for u in a) + e
    B = sum(v * v for v in b) + e
    den = mpmath.sqrt(A * B)
    cs = dot / den
    if y == 1:
        loss, dl = 1 - cs, mpf(-1)
    elif y == -1:
        z = cs - margin
        loss, dl = (max(z, mpf(0)), mpf(1) if z >= 0 else mpf(0))
    else:
        loss, dl = mpf(0), mpf(0)
    g1 = [dl * (v / den - cs * u / A) for u, v in zip(a, b, strict=True)]
    g2 = [dl * (u / den - cs * v / B) for u, v in zip(a, b, strict=True)]
    return loss, g1, g2


def triplet_row(a, p, n, margin, eps, pnorm=2):
    """triplet_margin_loss of one row with d(x, y) = ||x - y + eps||_p (exact arithmetic)."""

    def dist(x, y):
        d = [u - v + eps for u, v in zip(x, y, strict=True)]
        nrm = sum(abs(v) ** pnorm for v in d) ** (mpf(1) / pnorm)
        if nrm == 0:
            return nrm, [mpf(0)] * len(d)
        return nrm, [_sign(v) * (abs(v) / nrm) ** (pnorm - 1) for v in d]

    dap, uap = dist(a, p)
    dan, uan = dist(a, n)
    z = margin + dap - dan
    if z < 0:
        zero = [mpf(0)] * len(a)
        return mpf(0), zero, zero, zero
    ga = [u - v for u, v in zip(uap, uan, strict=True)]
    return z, ga, [-u for u in uap], list(uan)
