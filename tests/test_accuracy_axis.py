"""Accuracy of the softmax family and GLU against exact values of torch's definitions.

References: mpmath (>= 160 bits) for everything with an exp or a log, exact rationals
(``fractions.Fraction``) for the sums of the backwards, so the reference itself never cancels.
Errors are in ULP of the exact value in the result's dtype (from its exponent; subnormal spacing
below the smallest normal).

Bounds asserted (issue #18, item 2):

* softmax / softmin / log_softmax forward, GLU forward and backward: at most 4 ULP.
* softmax / softmin backward ``y * (g - s)``, ``s = sum(g * y)``: at most 4 ULP plus what the
  reduction may cost, ``|y| * R`` with R the error bound of the sum fastact promises:
  float32 rows are summed in float64 (R = n 2**-53 sum|g y|, the "float64-accumulated" bound),
  float64 rows compensated and kept as a double-word (R = 8 (n 2**-53)**2 sum|g y|
  + 2**-104 |s|, the bound of a compensated (Sum2/Dot2) sum). Where g ~ s cancel, g - s is
  taken with s's low word, so the result stays within 4 ULP of the exact one (torch: 10^4 ULP).
* log_softmax backward ``g - exp(y) * S``, ``S = sum(g)``: at most 4 ULP plus the sum's bound
  as above, times exp(y), plus the error of exp(y) itself relative to exp(y) S: float32
  evaluates exp(y) in float64 where g cancels exp(y) S (2**-46 |exp(y) S|: its polynomial's
  measured 2**-46.7; plus 2**-150 |S| where a float32 exp(y) is subnormal), float64 a
  double-word exp accurate to about 2**-58 (2**-56 |exp(y) S| asserted). Where g cancels
  exp(y) S by a factor C the float64 result can thus be off by about C / 20 ULP (torch: about
  C ULP).
* The allowances are in ULP of the exact result (as the errors are).
* never further from exact than torch's own result by more than 4 ULP (plus the same
  allowance).

The reproductions of issue #18 are included.
"""

from __future__ import annotations

from fractions import Fraction

import mpmath as mp
import numpy as np
import pytest
import torch

import fastact

mp.mp.prec = 160
DTYPES = [np.float32, np.float64]
IDS = ["f32", "f64"]
TORCH = {np.float32: torch.float32, np.float64: torch.float64}
U = 2.0**-53


def _ulp(v, dt) -> float:
    """The ULP of ``dt`` at the exact value ``v`` (a float or an mpf): 2**(e - p) for |v| in
    [2**(e - 1), 2**e) (p the precision), the subnormal spacing below the smallest normal.
    From v's own exponent: the spacing of v rounded to ``dt`` is twice that just below a power
    of two (where v rounds up to it), which halved the errors reported there."""
    fi = np.finfo(dt)
    v = mp.mpf(v)
    if v == 0:
        return float(fi.smallest_subnormal)
    if not mp.isfinite(v) or abs(v) > fi.max:
        v = mp.mpf(float(fi.max))
    _, e = mp.frexp(v)  # |v| = m 2**e, m in [0.5, 1)
    return 2.0 ** (max(int(e), fi.minexp + 1) - fi.nmant - 1)


def test_ulp_is_that_of_the_exact_value():
    """Just below a power of two the ULP is half the spacing above it (the exact value rounds
    up to the power: np.spacing of it reported half the error); subnormal spacing below the
    smallest normal, the largest finite spacing beyond the largest finite value."""
    below = mp.mpf(1) - mp.mpf(2) ** -60
    assert _ulp(below, np.float32) == 2.0**-24
    assert _ulp(below, np.float64) == 2.0**-53
    assert _ulp(mp.mpf(1), np.float32) == 2.0**-23
    assert _ulp(-mp.mpf(3) * 2**-140, np.float32) == 2.0**-149
    assert _ulp(0.0, np.float64) == 2.0**-1074
    assert _ulp(mp.mpf(2) ** 2000, np.float64) == 2.0**971


def _errs(got, exact, dt) -> np.ndarray:
    """|got - exact| / ulp(exact) per element (exact: mpf list)."""
    out = np.empty(len(exact))
    for i, (g, e) in enumerate(zip(np.asarray(got).ravel(), exact, strict=True)):
        g = float(g)
        if not np.isfinite(g):
            out[i] = 0.0 if (np.isnan(g) and mp.isnan(e)) or g == e else np.inf
        else:
            out[i] = float(abs(mp.mpf(g) - e)) / _ulp(e, dt)
    return out


def _q(q: Fraction):
    return mp.mpf(q.numerator) / q.denominator


# ----------------------------------------------------------------------------- references
def _lse(zs):
    """(max, log1p(sum of exp(z - max) below the max + ties - 1)): no 1 + tiny rounding."""
    m = max(zs)
    ties = sum(1 for z in zs if z == m)
    return m, mp.log1p(mp.fsum(mp.exp(z - m) for z in zs if z != m) + (ties - 1))


def ref_forward(x, log: bool, sign: int):
    zs = [sign * mp.mpf(float(v)) for v in x]
    m, lse = _lse(zs)
    return [(z - m) - lse if log else mp.exp((z - m) - lse) for z in zs]


def ref_softmax_backward(g, y, sign: int):
    """Exact sign * y * (g - sum(g y)) (rationals), sum|g y|, |sum(g y)|."""
    gs = [Fraction(float(v)) for v in g]
    ys = [Fraction(float(v)) for v in y]
    s = sum(a * b for a, b in zip(gs, ys, strict=True))
    exact = [_q(sign * b * (a - s)) for a, b in zip(gs, ys, strict=True)]
    return exact, float(sum(abs(a * b) for a, b in zip(gs, ys, strict=True))), abs(float(s))


def ref_log_softmax_backward(g, y):
    """g - exp(y) * sum(g) (sum exact, exp at 320 bits), sum|g|, |sum(g)|."""
    S = sum(Fraction(float(v)) for v in g)
    out = []
    with mp.workprec(320):
        Sm = _q(S)
        for a, b in zip(g, y, strict=True):
            out.append(+(mp.mpf(float(a)) - mp.exp(mp.mpf(float(b))) * Sm))
    return out, float(sum(abs(Fraction(float(v))) for v in g)), abs(float(S))


def _sig(b):
    return 1 / (1 + mp.exp(-b))


# ----------------------------------------------------------------------------- cases
ISSUE_ROW = [
    -5.462610544573957,
    -2.162002455421761,
    4.094330512933896,
    -7.7581383157545325,
    -4.959005925438627,
]


def _rows(dt):
    rng = np.random.default_rng(1818 + np.dtype(dt).itemsize)
    rows = [("issue", np.array(ISSUE_ROW, dt))]
    for n in rng.integers(1, 101, 10):
        rows.append(("random", (rng.standard_normal(n) * 3).astype(dt)))
    rows.append(("long", (rng.standard_normal(10_000) * 3).astype(dt)))
    rows.append(("long wide", rng.uniform(-60, 60, 10_000).astype(dt)))
    span = 300.0 if dt == np.float64 else 80.0
    for n in (2, 5, 40):
        x = rng.standard_normal(n)
        x[0] += 14.0
        rows.append(("one dominant logit", x.astype(dt)))
        rows.append(("near-equal logits", (1.0 + rng.standard_normal(n) * 1e-6).astype(dt)))
        rows.append(("huge range", rng.uniform(-span, 0.0, n).astype(dt)))
    rows.append(("ties", np.array([3.0, 3.0, -1.0, 2.5], dt)))
    return rows


SOFTMAX = {
    "softmax": (False, 1, fastact.softmax, fastact.softmax_backward),
    "softmin": (False, -1, fastact.softmin, fastact.softmin_backward),
    "log_softmax": (True, 1, fastact.log_softmax, fastact.log_softmax_backward),
}


def _torch_forward(name, x):
    t = torch.from_numpy(x)
    if name == "softmin":
        return torch.nn.functional.softmin(t, 0).numpy()
    return getattr(torch, name)(t, 0).numpy()


def _torch_backward(name, g, y, dt):
    gt, yt = torch.from_numpy(g), torch.from_numpy(y)
    if name == "log_softmax":
        return torch.ops.aten._log_softmax_backward_data(gt, yt, 0, TORCH[dt]).numpy()
    r = torch.ops.aten._softmax_backward_data(gt, yt, 0, TORCH[dt]).numpy()
    return -r if name == "softmin" else r


def _check(what, got, tgot, exact, dt, allow=None):
    err = _errs(got, exact, dt)
    terr = _errs(tgot, exact, dt)
    allow = np.zeros_like(err) if allow is None else allow
    i = int(np.argmax(err - allow))
    assert err[i] <= 4.0 + allow[i], (
        f"{what}: {err[i]:.3g} ULP (allowed 4 + {allow[i]:.3g}) at {i}: got {got.ravel()[i]!r}, "
        f"exact {mp.nstr(exact[i], 20)}"
    )
    j = int(np.argmax(err - terr - allow))
    assert err[j] <= terr[j] + 4.0 + allow[j], (
        f"{what}: {err[j]:.3g} ULP at {j}, torch {terr[j]:.3g} ULP"
    )
    return float(err.max())


@pytest.mark.parametrize("dt", DTYPES, ids=IDS)
@pytest.mark.parametrize("name", list(SOFTMAX))
def test_softmax_family_forward_within_4_ulp(name, dt):
    log, sign, fwd, _ = SOFTMAX[name]
    for kind, x in _rows(dt):
        exact = ref_forward(x, log, sign)
        _check(f"{name} {kind} n={x.size}", fwd(x, 0), _torch_forward(name, x), exact, dt)


@pytest.mark.parametrize("dt", DTYPES, ids=IDS)
@pytest.mark.parametrize("name", list(SOFTMAX))
def test_softmax_family_forward_along_a_middle_axis_within_4_ulp(name, dt):
    """The strided kernel (the softmax axis not the last: per position of the trailing axis,
    vectorized along it) within 4 ULP of the exact values too, column by column."""
    log, sign, fwd, _ = SOFTMAX[name]
    for kind, x in _rows(dt):
        if x.size > 100:
            continue
        cols = (x, x[::-1].copy(), np.roll(x, 1))
        x3 = np.stack(cols, axis=1)[None]  # (1, n, 3) along dim 1
        got = fwd(x3, 1)
        for j, col in enumerate(cols):
            exact = ref_forward(col, log, sign)
            want = _torch_forward(name, col)
            _check(f"{name} {kind} n={x.size} column {j}", got[0, :, j], want, exact, dt)


def _gradients(rng, y, log, dt):
    """A random g and one that cancels: g_i ~ sum(g y) (softmax) or exp(y_i) sum(g)."""
    g = rng.standard_normal(y.size).astype(dt)
    c = g.copy()
    out = [("random g", g), ("g ~ sum", c)]
    if log:
        k = int(np.argmax(y))
        c[k] = dt(np.exp(float(y[k])) * float(np.sum(c.astype(np.float64))))
        # g_k = exp(y_k) S with S = sum(g) including g_k itself: g_k (1 - e_k) = e_k S_rest
        # (the cancellation of a confident class's gradient, C up to 1e8)
        for k in (int(np.argmin(y)), y.size // 2):
            d = g.copy()
            ek = float(np.exp(np.float64(y[k])))
            if ek < 0.999:
                d[k] = dt(ek * (float(np.sum(d.astype(np.float64))) - float(d[k])) / (1 - ek))
                out.append((f"g_{k} = exp(y_{k}) S", d))
    else:
        c[: max(1, y.size // 3)] = dt(np.dot(c.astype(np.float64), y.astype(np.float64)))
    return out


@pytest.mark.parametrize("dt", DTYPES, ids=IDS)
@pytest.mark.parametrize("name", list(SOFTMAX))
def test_softmax_family_backward_within_4_ulp(name, dt):
    log, sign, fwd, bwd = SOFTMAX[name]
    rng = np.random.default_rng(7 + len(name) + np.dtype(dt).itemsize)
    for kind, x in _rows(dt):
        y = fwd(x, 0)
        n = x.size
        for gk, g in _gradients(rng, y, log, dt):
            what = f"{name} backward {kind} n={n} {gk}"
            got = bwd(g, dim=0, output=y)
            tgot = _torch_backward(name, g, y, dt)
            if log:
                exact, sabs, s = ref_log_softmax_backward(g, y)
                ulps = np.array([_ulp(v, dt) for v in exact], np.float64)
                e = np.exp(y.astype(np.float64))
                red = n * U * sabs if dt == np.float32 else 8 * (n * U) ** 2 * sabs + 2**-104 * s
                rel_exp = 2.0**-46 if dt == np.float32 else 2.0**-56
                # float32: exp(y) below the normal range is a subnormal (2**-150 absolute)
                sub = 2.0**-150 * s if dt == np.float32 else 0.0
                allow = (e * (red + rel_exp * s) + sub) / ulps
            else:
                exact, sabs, s = ref_softmax_backward(g, y, sign)
                ulps = np.array([_ulp(v, dt) for v in exact], np.float64)
                red = n * U * sabs if dt == np.float32 else 8 * (n * U) ** 2 * sabs + 2**-104 * s
                allow = np.abs(y.astype(np.float64)) * red / ulps
            _check(what, got, tgot, exact, dt, allow)
            # the same rows as columns of a (n, 3) array: the strided kernel's own sums
            cols = bwd(np.repeat(g[:, None], 3, 1), dim=0, output=np.repeat(y[:, None], 3, 1))
            _check(what + " (columns)", cols[:, 1], tgot, exact, dt, allow)


def test_issue_reproductions():
    # log_softmax near 0 (float64): 469 ULP before (torch 42)
    x = np.array(ISSUE_ROW)
    exact = ref_forward(x, True, 1)
    assert _errs(fastact.log_softmax(x, 0), exact, np.float64).max() <= 4.0
    # softmax_backward (float64) where g ~ sum(g y): 7,930 ULP before (torch 244)
    rng = np.random.default_rng(18)
    for n in (3, 17, 300):
        y = fastact.softmax(rng.standard_normal(n) * 4, 0)
        g = rng.standard_normal(n)
        g[: n // 3 + 1] = float(np.dot(g, y))
        exact, sabs, s = ref_softmax_backward(g, y, 1)
        got = fastact.softmax_backward(g, dim=0, output=y)
        ulps = np.array([_ulp(v, np.float64) for v in exact])
        allow = np.abs(y) * (8 * (n * U) ** 2 * sabs + 2**-104 * s) / ulps
        assert np.all(_errs(got, exact, np.float64) <= 4.0 + allow)


@pytest.mark.parametrize("dt", DTYPES, ids=IDS)
def test_glu_within_4_ulp(dt):
    rng = np.random.default_rng(31 + np.dtype(dt).itemsize)
    n = 3000
    a = (rng.standard_normal(n) * 2).astype(dt)
    b = np.concatenate([rng.standard_normal(n // 2) * 3, rng.uniform(-100, 100, n - n // 2)])
    b = b.astype(dt)
    g = rng.standard_normal(n).astype(dt)
    x = np.concatenate([a, b])
    xt = torch.from_numpy(x).requires_grad_()
    ty = torch.nn.functional.glu(xt, 0)
    ty.backward(torch.from_numpy(g))
    tg = xt.grad.numpy()
    am = [mp.mpf(float(v)) for v in a]
    bm = [mp.mpf(float(v)) for v in b]
    gm = [mp.mpf(float(v)) for v in g]
    sp = [_sig(v) for v in bm]
    sn = [_sig(-v) for v in bm]  # 1 - sigmoid(b) without cancellation
    _check(
        f"glu {dt.__name__}",
        fastact.glu(x, 0),
        ty.detach().numpy(),
        [p * s for p, s in zip(am, sp, strict=True)],
        dt,
    )
    gx = fastact.glu_backward(g, x, 0)
    _check("glu backward (a)", gx[:n], tg[:n], [q * s for q, s in zip(gm, sp, strict=True)], dt)
    exact_b = [q * p * s * t for q, p, s, t in zip(gm, am, sp, sn, strict=True)]
    _check("glu backward (b)", gx[n:], tg[n:], exact_b, dt)


#: gates below which sigmoid(b) is a subnormal (float32 -87.3, float64 -708.4), down to a bit
#: beyond where every product with a and g of the magnitudes below is 0
FAR_GATES = {np.float32: (-200.0, -87.0), np.float64: (-1100.0, -700.0)}


@pytest.mark.parametrize("dt", DTYPES, ids=IDS)
def test_glu_far_negative_gate_within_4_ulp(dt):
    """Where sigmoid(b) is a subnormal, a sigmoid(b), g sigmoid(b) and g a sigmoid(b)
    sigmoid(-b) still within 4 ULP, normal numbers or subnormals (audit: exp(-|b|) rounded
    to a float32 subnormal first, 74.8 ULP forward and 131 ULP for the gate's gradient at the
    reproduction below, 10^7 ULP and 0 for normal results further out; float64 alike below
    -708), gates far and near mixed in a row (the far ones are computed again)."""
    rng = np.random.default_rng(87 + np.dtype(dt).itemsize)
    n = 400
    big = 15 if dt == np.float32 else 150  # |g a| finite
    lo, hi = FAR_GATES[dt]
    a = rng.choice([-1.0, 1.0], n) * 10.0 ** rng.uniform(-5, big, n)
    g = rng.choice([-1.0, 1.0], n) * 10.0 ** rng.uniform(-5, big, n)
    b = np.where(rng.random(n) < 0.75, rng.uniform(lo, hi, n), rng.standard_normal(n) * 3)
    a[0], b[0], g[0] = -157.70287, -92.559402, -1.75  # the audit's reproduction (float32)
    a, b, g = a.astype(dt), b.astype(dt), g.astype(dt)
    x = np.stack([a, b], 1)
    xt = torch.from_numpy(x).requires_grad_()
    ty = torch.nn.functional.glu(xt, 1)
    ty.backward(torch.from_numpy(g[:, None]))
    tg = xt.grad.numpy()
    am, bm, gm = ([mp.mpf(float(v)) for v in u] for u in (a, b, g))
    sp = [_sig(v) for v in bm]
    sn = [_sig(-v) for v in bm]
    _check(
        f"glu {dt.__name__} far gates",
        fastact.glu(x, 1)[:, 0],
        ty.detach().numpy()[:, 0],
        [p * s for p, s in zip(am, sp, strict=True)],
        dt,
    )
    gx = fastact.glu_backward(g[:, None], x, 1)
    _check(
        "glu backward (a) far gates",
        gx[:, 0],
        tg[:, 0],
        [q * s for q, s in zip(gm, sp, strict=True)],
        dt,
    )
    exact_b = [q * p * s * t for q, p, s, t in zip(gm, am, sp, sn, strict=True)]
    _check("glu backward (b) far gates", gx[:, 1], tg[:, 1], exact_b, dt)


@pytest.mark.parametrize("dt", DTYPES, ids=IDS)
def test_backward_infinite_gradient_like_torch(dt):
    """An infinite g makes the (compensated) sum infinite: -+inf where torch has them, NaN
    only where torch has NaN (the error terms' inf - inf must not leak)."""
    for shape, dim in (((2, 5), 1), ((5, 3), 0)):
        x = np.linspace(-1, 1, int(np.prod(shape))).reshape(shape).astype(dt)
        for name in ("softmax", "log_softmax"):
            _, _, fwd, bwd = SOFTMAX[name]
            y = fwd(x, dim)
            for gv in (np.inf, -np.inf, np.nan):
                g = np.ones(shape, dt)
                g.flat[1] = gv
                got = bwd(g, dim=dim, output=y)
                gt, yt = torch.from_numpy(g), torch.from_numpy(y)
                if name == "softmax":
                    want = torch.ops.aten._softmax_backward_data(gt, yt, dim, TORCH[dt])
                else:
                    want = torch.ops.aten._log_softmax_backward_data(gt, yt, dim, TORCH[dt])
                want = want.numpy()
                assert np.array_equal(np.isnan(got), np.isnan(want)), (name, shape, gv)
                assert np.array_equal(np.isposinf(got), np.isposinf(want)), (name, shape, gv)
                assert np.array_equal(np.isneginf(got), np.isneginf(want)), (name, shape, gv)
