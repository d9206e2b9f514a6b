"""What the losses compute: scalar definitions, loop templates and the LOSSES spec table.

Every element-wise loss is one scalar function

    f(a, b, c, w1, w2, prm) -> (value, d_first, d_second, bad)

of its per-element inputs (``a`` the prediction, ``b`` the target or second input, ``c`` a
third per-element input, ``w1``/``w2`` per-element weights, ``prm`` a tuple of parameters in
the data's float type). ``d_first``/``d_second`` are the derivatives the loss reports (see
each function), ``bad`` is 1 (in the data's float type, so that the loop keeps one lane
width) where the element is outside the loss's domain (checked afterwards by the caller).
:func:`ew_loop` is the single loop template that the host executor
(:mod:`fastact.host.losses`) turns into a serial and a parallel kernel per loss; the CUDA
executor compiles the same scalars into its grid-stride kernels. Passing ``None`` for the
gradients or a weight selects, at compile time, the variant without it (numba prunes ``x is
None`` branches of arguments that are None), so the value-only kernel and the value+gradient
kernel come from the same source. Keeping the per-element values (reduction='none') is a
runtime flag: else they go to a per-chunk scratch that stays in cache, and the same compiled
loop serves every reduction (half the compiled variants, no measurable cost).

Reductions are done per fixed-size chunk of ``ch`` elements into a float64 array, so the
result does not depend on the number of threads, and float32 data is summed in float64.
Inner loops index with unsigned integers so that numba emits no negative-index wraparound
(which would turn contiguous loads and stores into gathers and scatters).

Row-wise losses (cross_entropy, nll_loss, cosine_embedding_loss, triplet_margin_loss) have
their own loops below; they reduce per fixed block of rows in the same way, the sum of a block
compensated for float64 data (:func:`add_to_sum`: a row loop does not vectorize its sum, and
a plain one was tens of ULP off; the host adds the block sums exactly). :data:`LOSSES` at the
end is the spec table of every loss.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from llvmlite import ir
from numba import prange, types, uint64
from numba.extending import intrinsic, overload

from fastact._core.jit import jit
from fastact._core.math import (
    _bce_logs_f32,
    _div_dw_unit,
    _exp_f64_dw,
    _exp_parts_f32,
    _f32_from_bits,
    _fma,
    _ldexp,
    _log1p_unit_f32,
    _log_split_f32,
    exp,
    float32_variant,
    lit,
    log,
    log1p,
)

# ----------------------------------------------------------------------------------------
# exact arithmetic: error-free transformations and double-word pieces (float64), compiled
# without fast-math flags (LLVM keeps per-instruction flags when it inlines them)
# ----------------------------------------------------------------------------------------


@jit(fastmath=False)
def _two_sum(a, b):
    """(s, e) with s = fl(a + b) and s + e = a + b exactly."""
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


@jit(fastmath=False)
def _diff_dw(a, b):
    """a - b = s + e exactly (:func:`_two_sum`), e = 0 where s is infinite or NaN (TwoSum's
    low word would be inf - inf = NaN: an infinite difference has none)."""
    s, e = _two_sum(a, -b)
    return s, e if abs(s) < lit(s, math.inf) else lit(s, 0.0)


@jit(fastmath=False)
def _two_prod(a, b):
    """(p, e) with p = fl(a b) and p + e = a b exactly (no overflow/underflow)."""
    p = a * b
    return p, _fma(a, b, -p)


@jit(fastmath=False)
def _exp_dw(x):
    """exp(x) as a double-word (h, l) (float64; relative error about 2**-55: 20000 samples on
    [-30, 30] against mpmath, 2**-55.2, the rounding of r^2 q in :func:`_exp_f64_dw`)."""
    ph, pl, k = _exp_f64_dw(x, 0.0)
    return _ldexp(ph, k), _ldexp(pl, k)


def _by_dtype(name: str, f32_impl, f64_impl, device_impl):
    """A 4-argument function for jit code: ``f32_impl`` on float32 (typically the float64
    formula on widened arguments), ``f64_impl`` (double-word) on float64; CUDA compiles
    ``device_impl`` (``device_impl`` attribute, see :mod:`fastact.cuda._retarget`)."""

    def stub(a, b, c, d):
        raise NotImplementedError(f"{name} is only callable from jitted code")

    stub.__name__ = stub.__qualname__ = name
    stub.device_impl = device_impl  # type: ignore[attr-defined]

    @overload(stub, inline="always")
    def _ol(a, b, c, d):
        if a == types.float32:
            return lambda a, b, c, d: f32_impl(a, b, c, d)
        return lambda a, b, c, d: f64_impl(a, b, c, d)

    return stub


@jit(fastmath=False)
def _add_compensated(s, c, v):
    """One step of a compensated sum (TwoSum, order-free Neumaier): s + c + v = s' + c' up
    to the rounding of c', which collects every rounding error of the running sum s'."""
    t, e = _two_sum(s, v)
    return t, c + e


def add_to_sum(like, s, c, v):
    """``s, c = add_to_sum(like, s, c, v)``: add the float64 ``v`` to the running float64
    sum ``s`` (+ ``c``) of a chunk of row losses; :func:`sum_total` is the chunk's sum.

    For float64 data (``like``: the data array or a zero of its type) the sum is compensated,
    so a chunk's sum is about the exact sum of its terms rounded once (a plain float64 sum of
    16384 rows was 10-44 ULP off, torch's within 1-3); for float32 data the float64 sum's
    error is already far below a float32 ULP and it stays plain (c stays 0, no extra work).
    """
    raise NotImplementedError("add_to_sum is only callable from jitted code")


@overload(add_to_sum, inline="always")
def _add_to_sum_ol(like, s, c, v):
    if getattr(like, "dtype", like) == types.float32:
        return lambda like, s, c, v: (s + v, c)
    return lambda like, s, c, v: _add_compensated(s, c, v)


@jit(fastmath=False)
def sum_total(s, c):
    """The value of a running sum from :data:`add_to_sum`: s + c, or s where s is infinite
    or NaN (TwoSum's error term is NaN after an infinite term; the sum is s then)."""
    return s + c if abs(s) < math.inf else s


# ----------------------------------------------------------------------------------------
# scalar definitions: f(a, b, c, w1, w2, prm) -> (value, d1, d2, bad)
# ----------------------------------------------------------------------------------------


@jit
def _sign(d):
    """sign(d) with sign(0) = 0 and sign(NaN) = NaN (torch.sign)."""
    one = lit(d, 1.0)
    return one if d > 0 else (-one if d < 0 else d)


@jit
def _sign_l1(d):
    """l1_loss's sign: 0 also at NaN (torch's l1_loss backward, wherever the element sits;
    smooth_l1_loss with beta = 0 is torch's l1_loss)."""
    one = lit(d, 1.0)
    return one if d > 0 else (-one if d < 0 else lit(d, 0.0))


@jit
def _log1p_generic(e):
    return log1p(e)


#: log1p(e) for e in [0, 1]: a polynomial in float32, log1p otherwise (and on CUDA)
_log1p_unit = float32_variant("_log1p_unit", _log1p_unit_f32, _log1p_generic)


@jit
def _bce_logs_generic(p):
    lo = lit(p, -100.0)
    return max(log(p), lo), max(log1p(-p), lo)


#: (max(log p, -100), max(log1p(-p), -100)) for p in [0, 1]: float32 without the special-value
#: checks (binary_cross_entropy rejects p outside [0, 1]), the full cores otherwise
_bce_logs = float32_variant("_bce_logs", _bce_logs_f32, _bce_logs_generic)


@jit
def _softplus_parts(z):
    """(softplus(z), sigmoid(z)) computed stably from one exp(-|z|)."""
    e = exp(-abs(z))
    one = lit(z, 1.0)
    r = one / (one + e)
    sp = max(z, lit(z, 0.0)) + _log1p_unit(e)
    sig = r if z >= 0 else e * r
    return sp, sig


@jit
def mse_f(a, b, c, w1, w2, prm):
    """(a - b)^2 * w; d/da = 2 (a - b) w."""
    d = a - b
    return w1 * d * d, w1 * (lit(a, 2.0) * d), lit(a, 0.0), lit(a, 0.0)


@jit
def l1_f(a, b, c, w1, w2, prm):
    """|a - b| * w; d/da = sign(a - b) w (0 at a == b, and at NaN as torch's)."""
    d = a - b
    return w1 * abs(d), w1 * _sign_l1(d), lit(a, 0.0), lit(a, 0.0)


@jit
def smooth_l1_f(a, b, c, w1, w2, prm):
    """0.5 d^2 / beta if |d| < beta else |d| - 0.5 beta; prm = (beta, 1/beta)."""
    beta = prm[0]
    inv_beta = prm[1]
    d = a - b
    ad = abs(d)
    half = lit(a, 0.5)
    if ad < beta:
        v = half * d * d * inv_beta
        g = d * inv_beta
    else:
        v = ad - half * beta
        g = _sign_l1(d) if beta == 0 else _sign(d)
    return v, g, lit(a, 0.0), lit(a, 0.0)


@jit
def huber_f(a, b, c, w1, w2, prm):
    """0.5 d^2 if |d| < delta else delta (|d| - 0.5 delta), times w; prm = (delta,)."""
    delta = prm[0]
    d = a - b
    ad = abs(d)
    half = lit(a, 0.5)
    if ad < delta:
        v = half * d * d
        g = d
    else:
        v = delta * (ad - half * delta)
        g = delta * _sign(d)
    return w1 * v, w1 * g, lit(a, 0.0), lit(a, 0.0)


_BCE_EPS = float(np.float32(1e-12))  # torch's EPSILON (a float32 constant, also for float64)


@jit
def bce_f(a, b, c, w1, w2, prm):
    """-w [t max(log p, -100) + (1 - t) max(log(1 - p), -100)] (torch's clamp).

    d/dp = w (p - t) / max(p (1 - p), 1e-12) (torch's backward). bad: p or t outside [0, 1].
    """
    p = a
    t = b
    one = lit(p, 1.0)
    lp, l1p = _bce_logs(p)
    v = w1 * ((t - one) * l1p - t * lp)
    g = w1 * (p - t) / max((one - p) * p, lit(p, _BCE_EPS))
    ok = (p >= 0) & (p <= one) & (t >= 0) & (t <= one)
    return v, g, lit(p, 0.0), lit(p, 0.0) if ok else one


@jit
def _bce_logits_plain(x, t, w, pw):
    """(value, gradient) of BCE with logits in the data's type (CUDA): see bce_logits_f."""
    one = lit(x, 1.0)
    sp, sig = _softplus_parts(-x)
    lw = pw * t + one - t
    return w * ((one - t) * x + lw * sp), w * ((one - t) - lw * sig)


@jit(fastmath=False)
def _bce_logits_f32(x, t, w, pw):
    """float32 in float32: the value's two terms >= 0 (within 2.1 ULP). The gradient's
    numerator a e - b, (a, b) = (1 - t, pw t) for x <= 0 and (pw t, 1 - t) negated for x > 0,
    with e = exp(-|x|) = s (1 + vh + vl) in parts (s = 2**k, 1 + vh + vl within 2**-26, see
    :func:`_exp_parts_f32`), a and b exact double-words: a_h s - b_h is exact near the root
    (Sterbenz) and one FMA adds a_h s vh, so there the error is about 2**-26 of a e instead
    of 2**-24 (sampled: 8 ULP where the numerator is 2**-6..2**-4 of b, 39 at 2**-8..2**-6;
    scripts in notes/unmerged/loss_split.patch). w num / (1 + e) is rounded once (w num and
    1 + e as exact double-words, one division and one correction step), so away from the
    root the gradient is within 3.7 ULP (8M random inputs, rel > 2**-4; rounding the
    numerator, 1 + e, the quotient and the product by w separately reached 4.8)."""
    one = lit(x, 1.0)
    vh, vl, k, sc = _exp_parts_f32(-abs(x))
    e = _ldexp(one + vh, k)
    lg = _log1p_unit(e)
    omt = one - t
    pt = pw * t
    neg = x <= 0
    # (1 - t) max(x, 0) + pw t max(-x, 0) + (1 - t + pw t) log1p(e): terms >= 0
    v = w * _fma(omt + pt, lg, (-pt if neg else omt) * x)
    oml = (one - omt) - t  # 1 - t = omt + oml exactly (Sterbenz in both steps)
    ptl = _fma(pw, t, -pt)
    ah = omt if neg else pt
    al = oml if neg else ptl
    bh = pt if neg else omt
    bl = ptl if neg else oml
    ash = ah * sc
    num = _fma(ash, vh, ash - bh) + ((ash * vl + al * e) - bl)
    num = num if k > -126 else _fma(ah, e, -bh)  # e subnormal: s = 0
    num = num if neg else -num
    # w num / (1 + e) rounded once: P + Pl = w num and dh + dl = 1 + e exactly, one division
    # q = P / dh and one correction (P + Pl - q (dh + dl)) / dh with 1/dh from its chord on
    # [1, 2] (within 9%: the correction is below 2**-23 q)
    pp = w * num
    dh = one + e
    return v, _div_dw_unit(pp, _fma(w, num, -pp), dh, (one - dh) + e)


@jit(fastmath=False)
def _bce_logits_dw(x, t, w, pw):
    """float64: the gradient's numerator (1 - t) e - pw t (x <= 0) or (1 - t) - pw t e
    (x > 0), e = exp(-|x|), in double-word arithmetic (it vanishes at the gradient's root);
    w num / (1 + e) rounded once as in :func:`_bce_logits_f32` (away from the root within
    2.6 ULP on 8M random inputs with rel > 1/2, was 3.75)."""
    eh, el = _exp_dw(-abs(x))
    lg = log1p(eh)
    omh, oml = _two_sum(1.0, -t)
    pth, ptl = _two_prod(pw, t)
    v = w * (omh * (max(x, 0.0) + lg) + pth * (max(-x, 0.0) + lg))
    neg = x <= 0
    p1 = omh if neg else pth
    p2 = oml if neg else ptl
    q1 = pth if neg else omh
    q2 = ptl if neg else oml
    m = p1 * eh
    me = _fma(p1, eh, -m)
    num = (m - q1) + ((me - q2) + (p1 * el + p2 * eh))
    num = num if neg else -num
    # w num / (1 + e) rounded once, as in _bce_logits_f32 (e's low word included)
    pp = w * num
    dh = 1.0 + eh
    return v, _div_dw_unit(pp, _fma(w, num, -pp), dh, ((1.0 - dh) + eh) + el)


_bce_logits_vg = _by_dtype("_bce_logits_vg", _bce_logits_f32, _bce_logits_dw, _bce_logits_plain)


@jit
def bce_logits_f(a, b, c, w1, w2, prm):
    """-w [pw t log sigmoid(x) + (1 - t) log sigmoid(-x)], stable for any |x|.

    = w [(1 - t) softplus(x) + pw t softplus(-x)] (two terms >= 0: no cancellation);
    d/dx = w [(1 - t) sigmoid(x) - pw t sigmoid(-x)] = w [(1 - t) e^x - pw t] / (1 + e^x),
    whose numerator cancels near the gradient's root: float32 from the exp's parts (2**-26)
    and exact double-word products, float64 in double-word arithmetic on a double-word exp
    (2**-55); near the root the error still grows as that bound over the relative distance
    (tests: RESIDUAL; a float64 evaluation for float32 cost +30% at 16M elements).
    """
    v, g = _bce_logits_vg(a, b, w1, w2)
    # prm[0] = 1 (binary_cross_entropy_with_logits): NaN at x = -inf for every target, as
    # torch's (1 - t) x + (1 + (pw - 1) t) softplus(-x); multilabel_soft_margin_loss (0) keeps
    # torch's log-sigmoid form there, NaN only where t = 0
    v = v if (prm[0] == 0) | (a > lit(a, -math.inf)) else lit(a, math.nan)
    return v, g, lit(a, 0.0), lit(a, 0.0)


@jit
def _kl_plain(x, t, c, d):
    xl = t * log(t) if t != 0 else lit(t, 0.0)
    return xl - t * x


@jit
def _kl_fast(x, t, c, d):
    """t (log t - x) in the data's type (a float64 log for float32 costs +50% at 16M)."""
    v = t * (log(t) - x)
    return v if t != 0 else -(t * x)


_kl_value = _by_dtype("_kl_value", _kl_fast, _kl_fast, _kl_plain)


@jit
def kl_f(a, b, c, w1, w2, prm):
    """xlogy(t, t) - t x = t (log t - x) (0 x where t == 0); d/dx = -t.

    log t - x cancels where x ~ log t: computed with a once-rounded log, so near the root
    the error grows as |log t| / |log t - x| (tests: RESIDUAL; a float64 log for float32
    reached 4 ULP on the tests' sample but cost +51% at 16M elements)."""
    return _kl_value(a, b, a, a), -b, lit(a, 0.0), lit(a, 0.0)


@jit
def kl_log_f(a, b, c, w1, w2, prm):
    """exp(t) (t - x) for a log-space target t; d/dx = -exp(t)."""
    et = exp(b)
    return et * (b - a), -et, lit(a, 0.0), lit(a, 0.0)


@jit
def _stirling(t):
    """t log t - t + 0.5 log(2 pi t) where t > 1, else 0."""
    if t > 1:
        return t * log(t) - t + lit(t, 0.5) * log(lit(t, 2.0 * math.pi) * t)
    return lit(t, 0.0)


@jit
def _poisson_log_plain(x, t, c, full):
    ex = exp(x)
    st = _stirling(t) if full else lit(t, 0.0)
    return ex - t * x + st, ex - t


@jit(fastmath=False)
def _poisson_log_f32(x, t, c, full):
    """float32 in float32: exp(x) = 2 h (1 + vh + vl) in parts (h = 2**(k-1), 1 + vh + vl
    within 2**-26), t x = ph + pl exact; value 2 [((h - ph/2) + h vh) + (h vl - pl/2)],
    gradient 2 [((h - t/2) + h vh) + h vl]: h - ph/2 and h - t/2 are exact near the zeros
    (Sterbenz), so there the error is about 2**-26 of exp(x) instead of 2**-24. Below
    exp(x) = 2**-125 the rounded exp. ``full`` adds the Stirling term (rounded: it cancels)."""
    one = lit(x, 1.0)
    half = lit(x, 0.5)
    vh, vl, k, sc = _exp_parts_f32(x)
    h = _f32_from_bits((k + 126) << 23) if k > -126 else lit(x, 0.0)
    ph, pl = _two_prod(t, x)
    hvh = h * vh
    hvl = h * vl
    v = lit(x, 2.0) * (((h - half * ph) + hvh) + (hvl - half * pl))
    g = lit(x, 2.0) * (((h - half * t) + hvh) + hvl)
    e = _ldexp(one + vh, k)
    tiny = k <= -126
    v = ((e - ph) - pl) if tiny else v
    g = (e - t) if tiny else g
    v = v if abs(ph) < lit(x, np.inf) else e - ph  # t x infinite or nan: no low part
    if full:  # a branch, not a select: the Stirling logs cost 2x where not wanted
        return v + _stirling(t), g
    return v, g


@jit(fastmath=False)
def _poisson_log_f64(x, t, c, full):
    """float64: exp(x) = eh + el (double-word, 2**-55), t x = ph + pl exact: value
    (eh - ph) + (el - pl), gradient (eh - t) + el (the exp's bound limits both at their
    zeros). ``full`` adds the Stirling term (rounded: it cancels)."""
    eh, el = _exp_dw(x)
    g = (eh - t) + el
    ph, pl = _two_prod(t, x)
    v = (eh - ph) + (el - pl)
    v = v if abs(ph) < np.inf else eh - ph  # t x infinite or nan: no low part
    if full:  # a branch, not a select: the Stirling logs cost 2x where not wanted
        return v + _stirling(t), g
    return v, g


_poisson_log_vg = _by_dtype(
    "_poisson_log_vg", _poisson_log_f32, _poisson_log_f64, _poisson_log_plain
)


@jit
def poisson_log_f(a, b, c, w1, w2, prm):
    """exp(x) - t x; d/dx = exp(x) - t. Both cancel (near the root x = log t, and where
    exp(x) ~ t x): from the exp's parts (float32, 2**-26) or a double-word exp (float64,
    2**-55) and an exact product; near the zeros the error grows as that bound over the
    result's relative size (tests: RESIDUAL)."""
    v, g = _poisson_log_vg(a, b, a, False)
    return v, g, lit(a, 0.0), lit(a, 0.0)


@jit
def poisson_log_full_f(a, b, c, w1, w2, prm):
    """exp(x) - t x + Stirling(t); d/dx = exp(x) - t (as poisson_log_f)."""
    v, g = _poisson_log_vg(a, b, a, True)
    return v, g, lit(a, 0.0), lit(a, 0.0)


@jit
def _poisson_plain(x, t, eps, full):
    xe = x + eps
    st = _stirling(t) if full else lit(t, 0.0)
    return x - t * log(xe) + st, lit(x, 1.0) - t / xe


@jit
def _poisson_fast(x, t, eps, full):
    """In the data's type (a double-word log costs 2x at 16M): x - t log(x + eps); the
    gradient ((x - t) + eps) / (x + eps) from the exact difference x - t = dh + dl."""
    dh, dl = _diff_dw(x, t)
    xe = x + eps
    g = (dh + (dl + eps)) / xe
    g = g if abs(dh) < lit(x, math.inf) else lit(x, 1.0) - t / xe  # x = inf: torch's 1
    if full:  # a branch, not a select: the Stirling logs cost 2x where not wanted
        return x - t * log(xe) + _stirling(t), g
    return x - t * log(xe), g


@jit(fastmath=False)
def _poisson_f32(x, t, eps, full):
    """float32: x - t (a + b) with log(x + eps) = a + b split (:func:`_log_split_f32`),
    t a = p1 + e1 and t b = p2 + e2 exact: ((x - p1) - p2) - (e1 + e2), whose first
    difference is exact near the zero, so only b's rounding remains (about 1/3 of the
    log's). The gradient as :func:`_poisson_fast`."""
    dh, dl = _diff_dw(x, t)
    xe = x + eps
    g = (dh + (dl + eps)) / xe
    g = g if abs(dh) < lit(x, math.inf) else lit(x, 1.0) - t / xe  # x = inf: torch's 1
    a, b = _log_split_f32(xe)
    p1, e1 = _two_prod(t, a)
    p2, e2 = _two_prod(t, b)
    v = ((x - p1) - p2) - (e1 + e2)
    inf = np.float32(np.inf)
    ok = (abs(a) < inf) & (abs(p1) < inf) & (abs(p2) < inf)
    v = v if ok else x - t * (a + b)  # x + eps = 0, < 0, inf or nan; t inf; overflow
    if full:  # a branch, not a select: the Stirling logs cost 2x where not wanted
        return v + _stirling(t), g
    return v, g


_poisson_vg = _by_dtype("_poisson_vg", _poisson_f32, _poisson_fast, _poisson_plain)


@jit
def poisson_f(a, b, c, w1, w2, prm):
    """x - t log(x + eps); d/dx = 1 - t / (x + eps); prm = (eps,). Both cancel where
    x ~ t: the gradient from the exact x - t (within 4 ULP); the value (float32) from the
    split log (:func:`_poisson_f32`), (float64) with a once-rounded log."""
    v, g = _poisson_vg(a, b, prm[0], False)
    return v, g, lit(a, 0.0), lit(a, 0.0)


@jit
def poisson_full_f(a, b, c, w1, w2, prm):
    """x - t log(x + eps) + Stirling(t); d/dx = 1 - t / (x + eps)."""
    v, g = _poisson_vg(a, b, prm[0], True)
    return v, g, lit(a, 0.0), lit(a, 0.0)


@jit
def _gaussian_plain(x, t, v, k):
    d = x - t
    half = lit(x, 0.5)
    iv = lit(x, 1.0) / v
    q = d * iv
    return half * (log(v) + d * q) + k, q, half * (iv - q * q)


@jit
def _gaussian_fast(x, t, v, k):
    """In the data's type: the value with a once-rounded log; d/dvar = 0.5 (v - (x - t)^2) /
    v^2 with x - t = dh + dl exact and v - (x - t)^2 = fma(-dh, dh, v) - 2 dh dl (its
    cancellation in one rounding)."""
    half = lit(x, 0.5)
    iv = lit(x, 1.0) / v
    dh, dl = _diff_dw(x, t)
    q = dh * iv
    fin = abs(dh) < lit(x, math.inf)  # else dh dl = inf 0 (torch: -inf where |x - t| = inf)
    num = _fma(-dh, dh, v) - (lit(x, 2.0) * dh * dl if fin else lit(x, 0.0))
    return half * (log(v) + dh * q) + k, q, _times_twice(half * num, iv)


@jit(fastmath=False)
def _times_twice(a, b):
    """(a b) b in this order: with reassociation (the default flags) LLVM formed b b first,
    which underflows in float32 for var >= 2**64 (a gradient 0 instead of 5e-31, and NaN
    = -inf 0 where x - t is infinite)."""
    return (a * b) * b


@jit(fastmath=False)
def _gaussian_value_f32(x, t, v, k):
    """float32 0.5 ((a + qh) + (b + ql)) + k: log v = a + b split (:func:`_log_split_f32`),
    (x - t)^2 / v = qh + ql (the quotient's residual by FMA)."""
    half = lit(x, 0.5)
    iv = lit(x, 1.0) / v
    dh, dl = _diff_dw(x, t)
    a, b = _log_split_f32(v)
    ph = dh * dh
    pl = _fma(dh, dh, -ph) + (dh + dh) * dl
    qh = ph * iv
    ql = (_fma(-qh, v, ph) + pl) * iv
    val = half * ((a + qh) + (b + ql)) + k
    ok = (abs(a) < np.float32(np.inf)) & (abs(ph) < np.float32(np.inf))
    return val if ok else half * ((a + b) + qh) + k  # v = 0, inf or nan; d^2 overflows


@jit
def _gaussian_f32(x, t, v, k):
    """float32: the gradients as :func:`_gaussian_fast`, the value from
    :func:`_gaussian_value_f32`: a + qh is exact where log v + d^2 / v cancels, so only b's
    rounding remains (about 1/3 of the log's)."""
    _, q, g2 = _gaussian_fast(x, t, v, k)
    return _gaussian_value_f32(x, t, v, k), q, g2


_gaussian_vg = _by_dtype("_gaussian_vg", _gaussian_f32, _gaussian_fast, _gaussian_plain)


@jit
def gaussian_nll_f(a, b, c, w1, w2, prm):
    """0.5 (log v + (x - t)^2 / v) + k, v = max(var, eps); prm = (eps, k).

    d1 = d/dx = (x - t) / v, d2 = d/dvar = 0.5 (v - (x - t)^2) / v^2 (the clamp is ignored
    by torch's autograd). bad: var < 0. The value (log v < 0) and d2 (var ~ (x - t)^2)
    cancel: d2 with an FMA on the exact difference (within 4 ULP); the value (float32) from
    the split log (:func:`_gaussian_f32`), (float64) with a once-rounded log."""
    v = max(c, prm[0])
    loss, g1, g2 = _gaussian_vg(a, b, v, prm[1])
    return loss, g1, g2, lit(a, 1.0) if c < 0 else lit(a, 0.0)


@jit
def soft_margin_f(a, b, c, w1, w2, prm):
    """log(1 + exp(-y x)) (stable); d/dx = -y sigmoid(-y x)."""
    sp, sig = _softplus_parts(-b * a)
    return sp, -b * sig, lit(a, 0.0), lit(a, 0.0)


@jit
def _margin_plain(x1, x2, y, margin):
    return -y * (x1 - x2) + margin


@jit(fastmath=False)
def _margin_dw(x1, x2, y, margin):
    """-y (x1 - x2) + margin with x1 - x2 = dh + dl exact and one FMA (any float type); an
    infinite difference (infinite inputs, or finite ones whose difference overflows) has no
    low word (TwoSum's would be inf - inf = NaN)."""
    dh, dl = _diff_dw(x1, x2)
    return _fma(-y, dh, margin) - y * dl


_margin_z = _by_dtype("_margin_z", _margin_dw, _margin_dw, _margin_plain)


@jit
def margin_ranking_f(a, b, c, w1, w2, prm):
    """max(0, -y (x1 - x2) + margin); d/dx1 = -y, d/dx2 = y where the hinge is active (>= 0).

    x1 - x2 + margin cancels: the argument is computed from the exact difference
    x1 - x2 = dh + dl as fma(-y, dh, margin) - y dl (in the data's type)."""
    y = c
    z = _margin_z(a, b, y, prm[0])
    zero = lit(a, 0.0)
    v = zero if z < 0 else z
    act = z >= 0
    return v, -y if act else zero, y if act else zero, zero


@jit
def hinge_embedding_f(a, b, c, w1, w2, prm):
    """[y != 1] max(0, margin - x) + [y != -1] x (torch's formula, also for other y)."""
    one = lit(a, 1.0)
    zero = lit(a, 0.0)
    mc = prm[0] - a
    neg = b != one
    pos = b != -one
    v = (zero if mc < 0 else mc) if neg else zero
    g = -one if (neg and mc >= 0) else zero
    if pos:
        v += a
        g += one
    return v, g, zero, zero


# ----------------------------------------------------------------------------------------
# the element-wise loop template
# ----------------------------------------------------------------------------------------


def ew_loop(a, b, c, w1, w2, prm, gscale, ga, gb, out, per_element, partials, bad, ch):
    """Fused loss (+ gradient) over 1-D arrays, reduced per chunk of ``ch`` elements.

    partials[k] = float64 sum of the values of chunk k; ga/gb/bad (or None) receive
    gscale * d1, gscale * d2 and per-chunk counts of bad elements (``bad`` is 0 or 1 in the
    data's float type). ``FUSED_SUM`` (a constant bound by ``specialize``) picks where the sum
    happens: inside the element loop (losses without transcendental functions, where LLVM
    vectorizes the mixed-width loop: 1.3-2.5x faster at 16M) or, for the others, in a loop of
    its own over a per-chunk scratch that stays in cache (there a float64 accumulator in the
    element loop halves the float32 math's speed). The per-element values go to ``out`` if
    ``per_element`` (reduction='none'). One compiled loop serves every reduction.
    """
    n = a.size
    for k in prange(partials.size):
        start = k * ch
        stop = min(start + ch, n)
        if per_element:
            vals = out[start:stop]
        elif FUSED_SUM:  # noqa: F821 (bound by specialize)
            vals = out[:0]  # not used
        else:
            vals = np.empty(stop - start, dtype=out.dtype)
        nbad = lit(gscale, 0.0)  # counted in the data's type: the loop stays one width
        acc = 0.0
        # unsigned indices: numba then emits no negative-index wraparound, so the loop
        # vectorizes with contiguous loads/stores instead of gathers/scatters
        us = uint64(start)
        for i in range(us, uint64(stop)):
            ai = a[i]
            if w1 is None:
                w1i = lit(ai, 1.0)
            else:
                w1i = w1[i]
            if w2 is None:
                w2i = lit(ai, 1.0)
            else:
                w2i = w2[i]
            v, d1, d2, isbad = f(ai, b[i], c[i], w1i, w2i, prm)  # noqa: F821 (specialized)
            nbad += isbad
            if FUSED_SUM:  # noqa: F821
                acc += np.float64(v)
                if per_element:
                    vals[i - us] = v
            else:
                vals[i - us] = v
            if ga is not None:
                ga[i] = d1 * gscale
            if gb is not None:
                gb[i] = d2 * gscale
        if not FUSED_SUM:  # noqa: F821
            for j in range(stop - start):
                acc += vals[j]
        partials[k] = acc
        if bad is not None:
            bad[k] = nbad


#: Losses whose kernel sums inside the element loop (measured faster; see above).
FUSED_SUM = frozenset({"mse", "l1", "smooth_l1", "huber", "margin_ranking", "hinge_embedding"})

ELEMENTWISE_SCALARS = {
    "mse": mse_f,
    "l1": l1_f,
    "smooth_l1": smooth_l1_f,
    "huber": huber_f,
    "bce": bce_f,
    "bce_logits": bce_logits_f,
    "kl": kl_f,
    "kl_log": kl_log_f,
    "poisson_log": poisson_log_f,
    "poisson_log_full": poisson_log_full_f,
    "poisson": poisson_f,
    "poisson_full": poisson_full_f,
    "gaussian_nll": gaussian_nll_f,
    "soft_margin": soft_margin_f,
    "margin_ranking": margin_ranking_f,
    "hinge_embedding": hinge_embedding_f,
}

# ----------------------------------------------------------------------------------------
# cross_entropy / nll_loss
# ----------------------------------------------------------------------------------------


@intrinsic
def _maxnum(typingctx, a, b):
    """llvm.maxnum(a, b): max ignoring a NaN operand; unlike a compare-and-select, LLVM
    vectorizes a reduction over it without the no-NaN fast-math flag."""
    sig = a(a, b)

    def codegen(context, builder, signature, args):
        t = args[0].type
        fn = builder.module.declare_intrinsic("llvm.maxnum", [t], ir.FunctionType(t, [t, t]))
        return builder.call(fn, args)

    return sig, codegen


@jit
def class_target_stats(y, C, ignore_index, w):
    """Validate class indices; return (first bad position or -1, sum of w[y] over kept)."""
    total = 0.0
    for i in range(y.size):
        yi = y[i]
        if yi == ignore_index:
            continue
        if yi < 0 or yi >= C:
            return i, total
        total += w[yi]
    return -1, total


@jit
def _exp_diff(xj, m):
    """exp(xj - m) with the difference's rounding error restored: xj - m = r + rl exactly,
    exp(r + rl) ~ exp(r) (1 + rl) (else a logit 8 below the maximum loses 3 bits)."""
    r, rl = _diff_dw(xj, m)
    e = exp(r)
    return _fma(e, rl, e)


@jit
def _ce_row(x, buf, want_grad, y, q, w, wsum, eps, gscale):
    """Cross-entropy of one row of logits ``x`` (float64 result).

    Index target ``y`` (q is None): (1 - eps) w_y (lse - x_y) + eps/C sum_c w_c (lse - x_c),
    gradient p_j ((1 - eps) w_y + eps W / C) - (1 - eps) w_y [j == y] - eps/C w_j with
    W = ``wsum``. Probability target ``q`` (a row of C): with q' = (1 - eps) q + eps / C,
    sum_c w_c q'_c (lse - x_c), gradient p_j sum_c w_c q'_c - w_j q'_j.

    Without cancellation: with m the maximum, e_j = exp(x_j - m) (exact differences),
    s = sum e_j and S = sum_{j != y} e_j (summed directly where e_y dominates),
    lse - x_c = (m - x_c) + log s (two terms >= 0), lse - x_y = log1p(S / e_y) where e_y
    dominates, and p_y - 1 = -S / s. ``buf`` (C values, may be ``x`` itself) receives the
    e_j, then the gradient if ``want_grad``. Every loop is a pure map or a lone reduction,
    so each vectorizes.
    """
    C = x.size
    xy = x[y]  # read before buf (possibly x itself) is overwritten
    m = x[0]
    for j in range(1, C):
        m = _maxnum(m, x[j])  # a NaN logit is skipped here but makes s, hence the loss, NaN
    keep = lit(m, 1.0 - eps)
    spread = lit(m, eps / C)
    sx = 0.0  # sum of weights * (m - x_c), terms >= 0
    sq = 0.0
    if q is None:
        if eps != 0:
            for j in range(C):
                sx += w[j] * (m - x[j])
    else:
        for j in range(C):
            wq = w[j] * (q[j] * keep + spread)
            sx += wq * (m - x[j])
            sq += wq
    for j in range(C):
        buf[j] = _exp_diff(x[j], m)
    s = 0.0
    for j in range(C):
        s += buf[j]
    ls = log(s)
    wy = float(w[y])
    ey = float(buf[y])
    so = s - ey
    if q is None and ey > 0.5 * s:  # y dominates: s - e_y cancels, sum the others directly
        so = 0.0
        for j in range(C):
            so += buf[j] if j != y else lit(m, 0.0)
    if q is None:
        ly = math.log1p(so / ey) if ey > 0.5 * s else float(m - xy) + ls
        loss = (1.0 - eps) * wy * ly + (eps / C) * (sx + ls * wsum)
        coef = gscale * ((1.0 - eps) * wy + eps * wsum / C)
    else:
        loss = sq * ls + sx
        coef = gscale * sq
    if want_grad and C == 1:
        # one class: p = 1, so the gradient is exactly 0 (torch's, NaN for a non-finite
        # logit as there); the general form's rounded coefficients (coef = (1 - eps) w_y +
        # eps W / C against eps w_y / C) left up to 1e-18 (float64) / 6e-10 (float32)
        buf[0] = buf[0] - buf[0]  # e - e: 0, or NaN where e is
    elif want_grad:
        a = lit(m, coef / s)
        if q is None:
            b = lit(m, gscale * eps / C)
            for j in range(C):
                buf[j] = buf[j] * a - b * w[j]
            # coef p_y - (1 - eps) w_y gscale with p_y - 1 = -S / s
            gy = -(gscale * (1.0 - eps) * wy) * (so / s) + (gscale * eps * wsum / C) * (ey / s)
            buf[y] = lit(m, gy) - b * w[y]
        else:
            gs = lit(m, gscale)
            for j in range(C):
                buf[j] = buf[j] * a - gs * w[j] * (q[j] * keep + spread)
    return loss


def ce_rows_loop(x, y, q, w, wsum, eps, ignore_index, gscale, want_grad, g, out, partials, rpc):
    """cross_entropy over the rows of a C-contiguous (R, C) array, ``rpc`` rows per chunk.

    Exactly one of ``y`` (class indices) and ``q`` (probabilities) is an array. ``g`` is the
    (R, C) gradient if ``want_grad``, else ignored (the rows then use a scratch row).
    """
    R, C = x.shape
    for k in prange(partials.size):
        r0 = k * rpc
        r1 = min(r0 + rpc, R)
        scratch = np.empty(C, dtype=x.dtype)
        acc = 0.0
        err = 0.0
        for r in range(r0, r1):
            buf = g[r] if want_grad else scratch
            loss = 0.0
            if q is not None:
                loss = _ce_row(x[r], buf, want_grad, 0, q[r], w, wsum, eps, gscale)
            if y is not None:
                yr = y[r]
                if yr != ignore_index:
                    loss = _ce_row(x[r], buf, want_grad, yr, None, w, wsum, eps, gscale)
                elif want_grad:
                    buf[:] = 0
            out[r] = loss
            acc, err = add_to_sum(x, acc, err, loss)
        partials[k] = sum_total(acc, err)


def ce_spatial_loop(x, y, q, w, wsum, eps, ignore_index, gscale, want_grad, g, out, partials, tile):
    """cross_entropy over an (N, C, D) array (class axis strided), in tiles of ``tile`` columns.

    Each tile is transposed into a (tile, C) buffer that stays in cache, processed row by row
    with the same row routine as the 2-D kernel (in place), and its gradient transposed back.
    """
    N, C, D = x.shape
    tiles = (D + tile - 1) // tile
    for k in prange(partials.size):
        n = k // tiles
        d0 = (k - n * tiles) * tile
        nb = min(d0 + tile, D) - d0
        xt = np.empty((nb, C), dtype=x.dtype)
        for c in range(C):
            for b in range(nb):
                xt[b, c] = x[n, c, d0 + b]
        acc = 0.0
        err = 0.0
        if q is not None:
            qt = np.empty((nb, C), dtype=x.dtype)
            for c in range(C):
                for b in range(nb):
                    qt[b, c] = q[n, c, d0 + b]
            for b in range(nb):
                loss = _ce_row(xt[b], xt[b], want_grad, 0, qt[b], w, wsum, eps, gscale)
                out[n, d0 + b] = loss
                acc, err = add_to_sum(xt, acc, err, loss)
        if y is not None:
            for b in range(nb):
                yb = y[n, d0 + b]
                loss = 0.0
                if yb != ignore_index:
                    loss = _ce_row(xt[b], xt[b], want_grad, yb, None, w, wsum, eps, gscale)
                else:
                    xt[b, :] = 0
                out[n, d0 + b] = loss
                acc, err = add_to_sum(xt, acc, err, loss)
        if want_grad:
            for c in range(C):
                for b in range(nb):
                    g[n, c, d0 + b] = xt[b, c]
        partials[k] = sum_total(acc, err)


def nll_loop(x, y, w, ignore_index, gscale, want_grad, g, zero, out, partials, ch):
    """nll_loss over (N, C, D): loss[n, d] = -w[y] x[n, y, d]; g gets -w[y] gscale there.

    ``zero`` (D == 1 only): each task first zeroes its rows of g (in parallel, and each row
    is in cache when its one entry is written); else the caller zeroed g."""
    N, C, D = x.shape
    M = N * D
    for k in prange(partials.size):
        i0 = k * ch
        i1 = min(i0 + ch, M)
        if want_grad and zero:
            for n in range(i0, i1):
                gr = g[n, :, 0]
                for j in range(C):
                    gr[j] = 0
        acc = 0.0
        err = 0.0
        for i in range(i0, i1):
            n = i // D
            d = i - n * D
            yi = y[n, d]
            loss = 0.0
            if yi != ignore_index:
                wy = float(w[yi])
                loss = -wy * x[n, yi, d]
                if want_grad:
                    g[n, yi, d] = -wy * gscale
            out[n, d] = loss
            acc, err = add_to_sum(x, acc, err, loss)
        partials[k] = sum_total(acc, err)


# ----------------------------------------------------------------------------------------
# cosine_embedding_loss / triplet_margin_loss (rows of D features)
# ----------------------------------------------------------------------------------------


def cosine_loop(x1, x2, y, margin, z0, gscale, g1, g2, out, partials, rpc):
    """cosine_embedding_loss per row; cos = x1.x2 / sqrt((|x1|^2 + 1e-12)(|x2|^2 + 1e-12))."""
    R, D = x1.shape
    for k in prange(partials.size):
        r0 = k * rpc
        r1 = min(r0 + rpc, R)
        acc = 0.0
        err = 0.0
        for r in range(r0, r1):
            dot = 0.0
            n1 = 0.0
            n2 = 0.0
            for j in range(D):
                u = x1[r, j]
                v = x2[r, j]
                dot += u * v
                n1 += u * u
                n2 += v * v
            A = n1 + 1e-12
            B = n2 + 1e-12
            den = math.sqrt(A * B)
            cs = dot / den
            yr = y[r]
            if yr == 1:
                loss = 1.0 - cs
                dl = -1.0
            elif yr == -1:
                z = cs - margin
                loss = 0.0 if z < 0 else z
                dl = 1.0 if z >= 0 else 0.0
            else:
                loss = 0.0
                dl = 0.0
            out[r] = loss
            acc, err = add_to_sum(z0, acc, err, loss)
            if g1 is not None:
                c = gscale * dl
                p = lit(z0, c / den)
                s1 = lit(z0, c * cs / A)
                s2 = lit(z0, c * cs / B)
                for j in range(D):
                    u = x1[r, j]
                    v = x2[r, j]
                    g1[r, j] = p * v - s1 * u
                    g2[r, j] = p * u - s2 * v
        partials[k] = sum_total(acc, err)


# p-norm pieces, one set per kind of p so the row loops carry no per-element branch on p:
# powabs(u, p) = |u|^p, root(s, p) = s^(1/p), dnorm(u, p, inv, lognrm) = d||u||_p / du
# with inv = 1/||u|| and lognrm = log ||u|| (both 0 where the norm is 0: gradient 0).


@jit
def _pow_p2(u, p):
    return u * u


@jit
def _root_p2(s, p):
    return math.sqrt(s)


@jit
def _dnorm_p2(u, p, inv, lognrm):
    return u * lit(u, inv)


@jit
def _pow_p1(u, p):
    return abs(u)


@jit
def _root_p1(s, p):
    return s


@jit
def _dnorm_p1(u, p, inv, lognrm):
    return _sign(u) if inv != 0 else lit(u, 0.0)


@jit
def _pow_pgen(u, p):
    a = abs(u)
    return exp(lit(a, p) * log(a)) if a > 0 else lit(a, 0.0)


@jit
def _root_pgen(s, p):
    return s ** (1.0 / p) if s > 0 else 0.0


@jit
def _dnorm_pgen(u, p, inv, lognrm):
    a = abs(u)
    if a == 0 or inv == 0:
        return lit(u, 0.0)
    return _sign(u) * exp(lit(a, p - 1.0) * (log(a) - lit(a, lognrm)))


@jit(fastmath=False)
def diff_eps(a, b, e):
    """(a - b) + e rounded as written. Compiled without fast-math flags on purpose: with
    ``reassoc`` LLVM may compute a + (e - b), which for a == b in float32 turns eps = 1e-6
    into 1e-6 +- 6e-8 and the gradient of a zero distance into noise (LLVM keeps the
    per-instruction flags when it inlines this into the fast-math kernels)."""
    return (a - b) + e


@jit
def norm_terms(nrm):
    """(1/nrm, log nrm), or (0, 0) for a zero norm."""
    if nrm > 0:
        return 1.0 / nrm, math.log(nrm)
    return 0.0, 0.0


def triplet_loop(an, po, ne, margin, p, eps, swap, z0, gscale, ga, gp, gn, out, partials, rpc):
    """triplet_margin_loss per row with d(x, y) = ||x - y + eps||_p (torch.pairwise_distance).

    ``swap`` uses min(d(a, n), d(p, n)) (ties split the gradient like torch's minimum).
    """
    R, D = an.shape
    e = lit(z0, eps)
    for k in prange(partials.size):
        r0 = k * rpc
        r1 = min(r0 + rpc, R)
        acc = 0.0
        err = 0.0
        for r in range(r0, r1):
            sap = 0.0
            san = 0.0
            spn = 0.0
            for j in range(D):
                a = an[r, j]
                b = po[r, j]
                c = ne[r, j]
                sap += powabs(diff_eps(a, b, e), p)  # noqa: F821 (specialized)
                san += powabs(diff_eps(a, c, e), p)  # noqa: F821
                spn += powabs(diff_eps(b, c, e), p)  # noqa: F821
            dap = root(sap, p)  # noqa: F821
            dan = root(san, p)  # noqa: F821
            dpn = root(spn, p)  # noqa: F821
            alpha = 1.0
            beta = 0.0
            dneg = dan
            if swap:
                if dpn < dan:
                    dneg = dpn
                    alpha = 0.0
                    beta = 1.0
                elif dpn == dan:
                    alpha = 0.5
                    beta = 0.5
            z = margin + dap - dneg
            loss = 0.0 if z < 0 else z
            out[r] = loss
            acc, err = add_to_sum(z0, acc, err, loss)
            if ga is not None:
                cf = gscale if z >= 0 else 0.0
                ca = lit(e, cf)
                cal = lit(e, cf * alpha)
                cbe = lit(e, cf * beta)
                iap, lap = norm_terms(dap)
                ian, lan = norm_terms(dan)
                ipn, lpn = norm_terms(dpn)
                for j in range(D):
                    a = an[r, j]
                    b = po[r, j]
                    c = ne[r, j]
                    uap = dnorm(diff_eps(a, b, e), p, iap, lap)  # noqa: F821
                    uan = dnorm(diff_eps(a, c, e), p, ian, lan)  # noqa: F821
                    upn = dnorm(diff_eps(b, c, e), p, ipn, lpn)  # noqa: F821
                    ga[r, j] = ca * uap - cal * uan
                    gp[r, j] = -ca * uap - cbe * upn
                    gn[r, j] = cal * uan + cbe * upn
        partials[k] = sum_total(acc, err)


#: the p-norm pieces bound into the triplet template per kind of p ("p2", "p1", "pgen")
PNORM_PIECES = {
    "p2": dict(powabs=_pow_p2, root=_root_p2, dnorm=_dnorm_p2),
    "p1": dict(powabs=_pow_p1, root=_root_p1, dnorm=_dnorm_p1),
    "pgen": dict(powabs=_pow_pgen, root=_root_pgen, dnorm=_dnorm_pgen),
}


# ----------------------------------------------------------------------------------------
# the spec table: one entry per loss drives the public API, fastact.nn, tests, benchmarks, docs
# ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Loss:
    """A loss's spec: its torch names, its array arguments and what it computes.

    ``inputs``: the differentiable arrays, in the order of the gradients returned with
    ``return_grad=True``; ``arrays``: the other array arguments; ``kernels``: the scalar
    definitions of :data:`ELEMENTWISE_SCALARS` it runs (empty for the row-wise losses, which
    have loops of their own); ``kind``: ``"elementwise"``, ``"rows"`` (rows of the last axis)
    or ``"classes"`` (class axis 1); ``formula``: one line for the docs; ``promotes``: torch
    promotes the input with a wider float target (float32 input, float64 target: a float64
    loss; not huber_loss, soft_margin_loss and hinge_embedding_loss, which keep the input's
    dtype)."""

    name: str
    module: str
    inputs: tuple[str, ...]
    arrays: tuple[str, ...]
    kernels: tuple[str, ...]
    kind: str
    formula: str
    promotes: bool = True


LOSSES: dict[str, Loss] = {
    spec.name: spec
    for spec in (
        Loss(
            "mse_loss",
            "MSELoss",
            ("input",),
            ("target", "weight"),
            ("mse",),
            "elementwise",
            "w (x - t)^2",
        ),
        Loss(
            "l1_loss",
            "L1Loss",
            ("input",),
            ("target", "weight"),
            ("l1",),
            "elementwise",
            "w |x - t|",
        ),
        Loss(
            "smooth_l1_loss",
            "SmoothL1Loss",
            ("input",),
            ("target",),
            ("smooth_l1",),
            "elementwise",
            "0.5 d^2 / beta if |d| < beta else |d| - 0.5 beta",
        ),
        Loss(
            "huber_loss",
            "HuberLoss",
            ("input",),
            ("target", "weight"),
            ("huber",),
            "elementwise",
            "0.5 d^2 if |d| < delta else delta (|d| - 0.5 delta)",
            promotes=False,
        ),
        Loss(
            "binary_cross_entropy",
            "BCELoss",
            ("input",),
            ("target", "weight"),
            ("bce",),
            "elementwise",
            "-w [t log p + (1 - t) log(1 - p)] (logs clamped at -100)",
        ),
        Loss(
            "binary_cross_entropy_with_logits",
            "BCEWithLogitsLoss",
            ("input",),
            ("target", "weight", "pos_weight"),
            ("bce_logits",),
            "elementwise",
            "-w [pw t log sigmoid(x) + (1 - t) log sigmoid(-x)]",
        ),
        Loss(
            "cross_entropy",
            "CrossEntropyLoss",
            ("input",),
            ("target", "weight"),
            (),
            "classes",
            "-sum_c w_c q_c log_softmax(x)_c (q: one-hot or probabilities)",
        ),
        Loss("nll_loss", "NLLLoss", ("input",), ("target", "weight"), (), "classes", "-w_y x_y"),
        Loss(
            "kl_div",
            "KLDivLoss",
            ("input",),
            ("target",),
            ("kl", "kl_log"),
            "elementwise",
            "t (log t - x), or exp(t) (t - x) with log_target",
        ),
        Loss(
            "poisson_nll_loss",
            "PoissonNLLLoss",
            ("input",),
            ("target",),
            ("poisson_log", "poisson_log_full", "poisson", "poisson_full"),
            "elementwise",
            "exp(x) - t x (log_input), else x - t log(x + eps)",
        ),
        Loss(
            "gaussian_nll_loss",
            "GaussianNLLLoss",
            ("input", "var"),
            ("target",),
            ("gaussian_nll",),
            "elementwise",
            "0.5 (log v + (x - t)^2 / v), v = max(var, eps)",
        ),
        Loss(
            "soft_margin_loss",
            "SoftMarginLoss",
            ("input",),
            ("target",),
            ("soft_margin",),
            "elementwise",
            "log(1 + exp(-y x))",
            promotes=False,
        ),
        Loss(
            "margin_ranking_loss",
            "MarginRankingLoss",
            ("input1", "input2"),
            ("target",),
            ("margin_ranking",),
            "elementwise",
            "max(0, -y (x1 - x2) + margin)",
        ),
        Loss(
            "hinge_embedding_loss",
            "HingeEmbeddingLoss",
            ("input",),
            ("target",),
            ("hinge_embedding",),
            "elementwise",
            "x if y = 1, max(0, margin - x) if y = -1",
            promotes=False,
        ),
        Loss(
            "cosine_embedding_loss",
            "CosineEmbeddingLoss",
            ("input1", "input2"),
            ("target",),
            (),
            "rows",
            "1 - cos(x1, x2) if y = 1, max(0, cos(x1, x2) - margin) if y = -1",
        ),
        Loss(
            "multilabel_soft_margin_loss",
            "MultiLabelSoftMarginLoss",
            ("input",),
            ("target", "weight"),
            ("bce_logits",),
            "rows",
            "mean over classes of the BCE-with-logits terms",
        ),
        Loss(
            "triplet_margin_loss",
            "TripletMarginLoss",
            ("anchor", "positive", "negative"),
            (),
            (),
            "rows",
            "max(0, margin + d(a, p) - d(a, n)), d(x, y) = ||x - y + eps||_p",
        ),
    )
}
