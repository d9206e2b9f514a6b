"""fastact.losses against torch autograd and float64 NumPy references (registry-driven).

One table (``SPECS``) lists every loss with a case generator, its option variants, the
positions of its differentiable arguments and a float64 NumPy reference of the unreduced
loss; the parametrized tests below run every loss x option x reduction x dtype.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numba
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fastact import losses as L
from fastact.host import losses as host_losses

torch.set_num_threads(1)


# ----------------------------------------------------------------------------------------
# float64 NumPy references of the unreduced losses
# ----------------------------------------------------------------------------------------


def _softplus(z):
    return np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z)))


def _log_softmax(x, axis):
    m = np.max(x, axis=axis, keepdims=True)
    return x - m - np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True))


def ref_mse(x, t, weight=None, **_):
    return (x - t) ** 2 * (1 if weight is None else weight)


def ref_l1(x, t, weight=None, **_):
    return np.abs(x - t) * (1 if weight is None else weight)


def ref_smooth_l1(x, t, beta=1.0, **_):
    d = np.abs(x - t)
    if beta == 0:
        return d
    return np.where(d < beta, 0.5 * d * d / beta, d - 0.5 * beta)


def ref_huber(x, t, delta=1.0, weight=None, **_):
    d = np.abs(x - t)
    v = np.where(d < delta, 0.5 * d * d, delta * (d - 0.5 * delta))
    return v * (1 if weight is None else weight)


def ref_bce(p, t, weight=None, **_):
    with np.errstate(divide="ignore"):
        v = -(t * np.maximum(np.log(p), -100) + (1 - t) * np.maximum(np.log1p(-p), -100))
    return v * (1 if weight is None else weight)


def ref_bce_logits(x, t, weight=None, pos_weight=None, **_):
    pw = 1 if pos_weight is None else pos_weight
    v = pw * t * _softplus(-x) + (1 - t) * _softplus(x)
    return v * (1 if weight is None else weight)


def ref_kl(x, t, log_target=False, **_):
    if log_target:
        return np.exp(t) * (t - x)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(t == 0, 0.0, t * np.log(t)) - t * x


def ref_poisson(x, t, log_input=True, full=False, eps=1e-8, **_):
    v = np.exp(x) - t * x if log_input else x - t * np.log(x + eps)
    if full:
        with np.errstate(divide="ignore", invalid="ignore"):
            st = t * np.log(t) - t + 0.5 * np.log(2 * np.pi * t)
        v = v + np.where(t > 1, st, 0.0)
    return v


def ref_gaussian(x, t, var, full=False, eps=1e-6, **_):
    var = np.asarray(var, np.float64)
    if var.shape != x.shape and var.shape == x.shape[:-1]:
        var = var[..., None]
    v = np.maximum(var, eps)
    return 0.5 * (np.log(v) + (x - t) ** 2 / v) + (0.5 * np.log(2 * np.pi) if full else 0.0)


def ref_soft_margin(x, y, **_):
    return _softplus(-y * x)


def ref_margin_ranking(x1, x2, y, margin=0.0, **_):
    return np.maximum(0, -y * (x1 - x2) + margin)


def ref_hinge(x, y, margin=1.0, **_):
    return np.where(y != 1, np.maximum(0, margin - x), 0) + np.where(y != -1, x, 0)


def ref_cosine(x1, x2, y, margin=0.0, **_):
    cos = np.sum(x1 * x2, -1) / np.sqrt(
        (np.sum(x1 * x1, -1) + 1e-12) * (np.sum(x2 * x2, -1) + 1e-12)
    )
    return np.where(y == 1, 1 - cos, 0) + np.where(y == -1, np.maximum(0, cos - margin), 0)


def ref_multilabel(x, t, weight=None, **_):
    v = ref_bce_logits(x, t, weight)
    return v.mean(-1)


def ref_triplet(a, p_, n, margin=1.0, p=2, eps=1e-6, swap=False, **_):
    def dist(u, v):
        return np.sum(np.abs(u - v + eps) ** p, -1) ** (1 / p)

    dn = dist(a, n)
    if swap:
        dn = np.minimum(dn, dist(p_, n))
    return np.maximum(0, margin + dist(a, p_) - dn)


def _ce_prepare(x, target, weight, label_smoothing):
    axis = 0 if x.ndim == 1 else 1
    C = x.shape[axis]
    logp = _log_softmax(x, axis)
    w = np.ones(C) if weight is None else weight
    wshape = [1] * x.ndim
    wshape[axis] = C
    return axis, C, logp, w.reshape(wshape), label_smoothing


def ref_cross_entropy(x, target, weight=None, ignore_index=-100, label_smoothing=0.0, **_):
    axis, C, logp, w, eps = _ce_prepare(x, target, weight, label_smoothing)
    if target.shape == x.shape:
        q = target * (1 - eps) + eps / C
        return -np.sum(w * q * logp, axis)
    keep = target != ignore_index
    y = np.where(keep, target, 0)
    picked = np.take_along_axis(logp * w, np.expand_dims(y, axis), axis).squeeze(axis)
    smooth = -np.sum(w * logp, axis)
    return np.where(keep, -(1 - eps) * picked + eps / C * smooth, 0.0)


def ref_nll(x, target, weight=None, ignore_index=-100, **_):
    axis = 0 if x.ndim == 1 else 1
    w = np.ones(x.shape[axis]) if weight is None else weight
    keep = target != ignore_index
    y = np.where(keep, target, 0)
    picked = np.take_along_axis(x, np.expand_dims(y, axis), axis).squeeze(axis)
    return np.where(keep, -w[y] * picked, 0.0)


# ----------------------------------------------------------------------------------------
# the registry
# ----------------------------------------------------------------------------------------


@dataclass
class Spec:
    """One loss: ``make(rng, dtype, **opt) -> (args, kwargs)``; ``grads``: positions of the
    differentiable arguments (in the order fastact returns their gradients)."""

    name: str
    make: Callable[..., tuple[tuple, dict]]
    ref: Callable[..., np.ndarray]
    opts: list[dict] = field(default_factory=lambda: [{}])
    grads: tuple[int, ...] = (0,)
    reductions: tuple[str, ...] = ("mean", "sum", "none")


def _halves(rng, shape, lo=-3, hi=3):
    """Values on a 0.5 grid, so kinks (d = 0, |d| = beta, hinge = 0) are hit exactly."""
    return rng.integers(2 * lo, 2 * hi + 1, size=shape) / 2.0


def make_regression(rng, dt, weight=False, **kw):
    x = _halves(rng, (4, 5)).astype(dt)
    t = _halves(rng, (4, 5)).astype(dt)
    x[0, :2] += np.asarray(0.37, dt)  # a few off-grid values too
    if weight:
        kw["weight"] = rng.uniform(0.1, 2.0, (4, 5)).astype(dt)
    return (x, t), kw


def make_bce(rng, dt, weight=False, **kw):
    p = rng.uniform(0.01, 0.99, (4, 5)).astype(dt)
    p[0, :3] = [0.0, 1.0, 0.5]
    t = rng.uniform(0, 1, (4, 5)).astype(dt)
    t[0, :3] = [1.0, 0.0, 0.5]
    t[1, :2] = [0.0, 1.0]
    if weight:
        kw["weight"] = rng.uniform(0.1, 2.0, (5,)).astype(dt)
    return (p, t), kw


def make_bce_logits(rng, dt, weight=False, pos_weight=False, **kw):
    x = (3 * rng.standard_normal((4, 5))).astype(dt)
    x[0, :2] = [30.0, -30.0]
    t = rng.uniform(0, 1, (4, 5)).astype(dt)
    t[1] = (t[1] > 0.5).astype(dt)
    if weight:
        kw["weight"] = rng.uniform(0.1, 2.0, (4, 1)).astype(dt)
    if pos_weight:
        kw["pos_weight"] = rng.uniform(0.5, 3.0, (5,)).astype(dt)
    return (x, t), kw


def make_ce(rng, dt, shape=(6, 5), prob=False, weight=False, ignore=False, **kw):
    x = (2 * rng.standard_normal(shape)).astype(dt)
    axis = 0 if len(shape) == 1 else 1
    C = shape[axis]
    if prob:
        t = rng.uniform(0, 1, shape)
        t = (t / t.sum(axis, keepdims=True)).astype(dt)
    else:
        sshape = shape[:axis] + shape[axis + 1 :]
        t = rng.integers(0, C, size=sshape).astype(np.int64)
        if ignore:
            t.reshape(-1)[::3] = kw.get("ignore_index", -100)
    if weight:
        kw["weight"] = rng.uniform(0.2, 2.0, (C,)).astype(dt)
    return (x, t), kw


def make_nll(rng, dt, **opt):
    (x, t), kw = make_ce(rng, dt, **opt)
    axis = 0 if x.ndim == 1 else 1
    return (_log_softmax(x.astype(np.float64), axis).astype(dt), t), kw


def make_kl(rng, dt, log_target=False, **kw):
    x = np.log(rng.uniform(0.05, 1, (4, 5))).astype(dt)
    t = rng.uniform(0, 1, (4, 5))
    t[0, :2] = 0.0
    t = (np.log(t + 0.01) if log_target else t).astype(dt)
    return (x, t), {"log_target": log_target, **kw}


def make_poisson(rng, dt, log_input=True, **kw):
    x = (rng.standard_normal((4, 5)) if log_input else rng.uniform(0.1, 4, (4, 5))).astype(dt)
    t = rng.poisson(2.0, (4, 5)).astype(dt)
    return (x, t), {"log_input": log_input, **kw}


def make_gaussian(rng, dt, var_shape="full", **kw):
    x = rng.standard_normal((4, 5)).astype(dt)
    t = rng.standard_normal((4, 5)).astype(dt)
    vs = {"full": (4, 5), "short": (4,), "one": (4, 1)}[var_shape]
    var = rng.uniform(0.1, 2.0, vs).astype(dt)
    var.reshape(-1)[0] = 1e-8  # below eps: clamped
    return (x, t, var), kw


def make_pm1(rng, dt, **kw):
    x = _halves(rng, (4, 5)).astype(dt)
    y = rng.choice([-1.0, 1.0], (4, 5)).astype(dt)
    return (x, y), kw


def make_ranking(rng, dt, **kw):
    x1 = _halves(rng, (4, 5)).astype(dt)
    x2 = _halves(rng, (4, 5)).astype(dt)
    y = rng.choice([-1.0, 1.0], (4, 5)).astype(dt)
    return (x1, x2, y), kw


def make_cosine(rng, dt, unbatched=False, **kw):
    shape = (7,) if unbatched else (6, 7)
    x1 = rng.standard_normal(shape).astype(dt)
    x2 = rng.standard_normal(shape).astype(dt)
    y = np.asarray(-1.0 if unbatched else rng.choice([-1.0, 1.0, 0.0], 6), dt)
    return (x1, x2, y), kw


def make_multilabel(rng, dt, weight=False, unbatched=False, **kw):
    shape = (5,) if unbatched else (4, 5)
    x = (2 * rng.standard_normal(shape)).astype(dt)
    t = (rng.uniform(0, 1, shape) > 0.5).astype(dt)
    if weight:
        kw["weight"] = rng.uniform(0.1, 2.0, (5,)).astype(dt)
    return (x, t), kw


def make_triplet(rng, dt, unbatched=False, **kw):
    shape = (6,) if unbatched else (5, 6)
    a, p, n = (rng.standard_normal(shape).astype(dt) for _ in range(3))
    return (a, p, n), kw


SPECS = [
    Spec("mse_loss", make_regression, ref_mse, [{}, {"weight": True}]),
    Spec("l1_loss", make_regression, ref_l1, [{}, {"weight": True}]),
    Spec(
        "smooth_l1_loss",
        make_regression,
        ref_smooth_l1,
        [{}, {"beta": 0.5}, {"beta": 0.0}, {"beta": 2.0}],
    ),
    Spec("huber_loss", make_regression, ref_huber, [{}, {"delta": 0.5}, {"weight": True}]),
    Spec("binary_cross_entropy", make_bce, ref_bce, [{}, {"weight": True}]),
    Spec(
        "binary_cross_entropy_with_logits",
        make_bce_logits,
        ref_bce_logits,
        [{}, {"weight": True}, {"pos_weight": True}, {"weight": True, "pos_weight": True}],
    ),
    Spec(
        "cross_entropy",
        make_ce,
        ref_cross_entropy,
        [
            {},
            {"weight": True},
            {"ignore": True},
            {"ignore": True, "ignore_index": 2, "weight": True, "label_smoothing": 0.2},
            {"label_smoothing": 0.3},
            {"shape": (5,)},
            {"shape": (5,), "prob": True, "label_smoothing": 0.1},
            {"prob": True},
            {"prob": True, "weight": True, "label_smoothing": 0.25},
            {"shape": (2, 5, 3, 4), "weight": True, "ignore": True, "label_smoothing": 0.1},
            {"shape": (2, 4, 70)},
            {"shape": (2, 5, 3, 4), "prob": True, "weight": True},
        ],
    ),
    Spec(
        "nll_loss",
        make_nll,
        ref_nll,
        [
            {},
            {"weight": True, "ignore": True},
            {"shape": (5,)},
            {"shape": (3, 5, 4), "weight": True, "ignore": True, "ignore_index": 1},
        ],
    ),
    Spec(
        "kl_div",
        make_kl,
        ref_kl,
        [{}, {"log_target": True}],
        reductions=("mean", "sum", "none", "batchmean"),
    ),
    Spec(
        "poisson_nll_loss",
        make_poisson,
        ref_poisson,
        [
            {},
            {"full": True},
            {"log_input": False},
            {"log_input": False, "full": True, "eps": 1e-3},
        ],
    ),
    Spec(
        "gaussian_nll_loss",
        make_gaussian,
        ref_gaussian,
        [{}, {"full": True}, {"var_shape": "short"}, {"var_shape": "one", "eps": 0.2}],
        grads=(0, 2),
    ),
    Spec("soft_margin_loss", make_pm1, ref_soft_margin),
    Spec("margin_ranking_loss", make_ranking, ref_margin_ranking, [{}, {"margin": 0.5}], (0, 1)),
    Spec("hinge_embedding_loss", make_pm1, ref_hinge, [{}, {"margin": 0.5}]),
    Spec(
        "cosine_embedding_loss",
        make_cosine,
        ref_cosine,
        [{}, {"margin": 0.3}, {"unbatched": True, "margin": -0.5}],
        grads=(0, 1),
    ),
    Spec(
        "multilabel_soft_margin_loss",
        make_multilabel,
        ref_multilabel,
        [{}, {"weight": True}, {"unbatched": True}],
    ),
    Spec(
        "triplet_margin_loss",
        make_triplet,
        ref_triplet,
        [{}, {"p": 1}, {"p": 3, "swap": True, "margin": 0.5}, {"unbatched": True, "eps": 0.0}],
        grads=(0, 1, 2),
    ),
]

CASES = [
    pytest.param(spec, opt, red, id=f"{spec.name}-{i}-{red}")
    for spec in SPECS
    for i, opt in enumerate(spec.opts)
    for red in spec.reductions
]


def build(spec: Spec, opt: dict, dt, seed: int = 0):
    """(args, kwargs) of one case: the generator turns its own options (weight=True, shape,
    ...) into arrays and passes the loss's keyword options through."""
    return spec.make(np.random.default_rng(seed), dt, **opt)


def torch_loss(spec: Spec, args, kw, reduction):
    targs = [torch.from_numpy(np.array(a)) for a in args]
    for i in spec.grads:
        targs[i].requires_grad_(True)
    tkw = {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in kw.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = getattr(F, spec.name)(*targs, reduction=reduction, **tkw)
    (out.sum() if reduction == "none" else out).backward()
    grads = [targs[i].grad for i in spec.grads]
    return out.detach().numpy(), [
        np.zeros(args[i].shape) if g is None else g.numpy()
        for g, i in zip(grads, spec.grads, strict=False)
    ]


def fa_loss(spec: Spec, args, kw, reduction, return_grad=True):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return getattr(L, spec.name)(*args, reduction=reduction, return_grad=return_grad, **kw)


def as_tuple(g):
    return g if isinstance(g, tuple) else (g,)


def close(a, b, dt, rtol=None, atol=None):
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    scale = max(1.0, float(np.max(np.abs(b[np.isfinite(b)]), initial=0.0)))
    if rtol is None:
        rtol = 1e-12 if dt == np.float64 else 2e-5
    if atol is None:
        atol = (1e-12 if dt == np.float64 else 2e-6) * scale
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, equal_nan=True)


# ----------------------------------------------------------------------------------------
# registry-driven tests
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("dt", [np.float64, np.float32])
@pytest.mark.parametrize("spec,opt,red", CASES)
def test_against_torch(spec, opt, red, dt):
    """Value and gradients match torch autograd; the value-only path gives the same value."""
    args, kw = build(spec, opt, dt)
    loss, grads = fa_loss(spec, args, kw, red)
    grads = as_tuple(grads)
    tl, tg = torch_loss(spec, args, kw, red)
    assert len(grads) == len(spec.grads)
    if red == "none":
        assert isinstance(loss, np.ndarray) and loss.shape == tl.shape
    else:
        assert np.ndim(loss) == 0
    assert np.asarray(loss).dtype == dt
    close(loss, tl, dt)
    for g, t, i in zip(grads, tg, spec.grads, strict=False):
        assert g.shape == args[i].shape and g.dtype == dt
        close(g, t, dt)
    if opt is spec.opts[0]:  # the value-only kernel (compiled separately) on the first option
        value_only = fa_loss(spec, args, kw, red, return_grad=False)
        eps = 16 * np.finfo(dt).eps  # other FMA contractions than the gradient kernel
        close(value_only, loss, dt, rtol=eps, atol=eps * max(1.0, float(np.max(np.abs(loss)))))


@pytest.mark.parametrize(
    "spec,opt",
    [pytest.param(s, o, id=f"{s.name}-{i}") for s in SPECS for i, o in enumerate(s.opts)],
)
def test_against_numpy_reference(spec, opt):
    """Unreduced float64 values against the float64 NumPy reference in this file."""
    args, kw = build(spec, opt, np.float64, seed=1)
    loss, _ = fa_loss(spec, args, kw, "none")
    ref = spec.ref(*args, **kw)
    close(loss, ref, np.float64, rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------------------
# edge cases
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("dt", [np.float64, np.float32])
def test_cross_entropy_all_ignored_is_nan(dt):
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(dt)
    y = np.full(3, -100)
    for ls in (0.0, 0.1):
        loss, g = L.cross_entropy(x, y, label_smoothing=ls, return_grad=True)
        assert np.isnan(loss)
        assert np.all(g == 0)
    assert L.cross_entropy(x, y, reduction="sum") == 0
    assert np.isnan(L.nll_loss(x, y))


@pytest.mark.parametrize("dt", [np.float64, np.float32])
def test_bce_probabilities_at_zero_and_one(dt):
    p = np.array([0.0, 1.0, 0.0, 1.0], dt)
    t = np.array([1.0, 0.0, 0.0, 1.0], dt)
    loss, g = L.binary_cross_entropy(p, t, reduction="none", return_grad=True)
    np.testing.assert_array_equal(loss, np.array([100, 100, 0, 0], dt))
    tp = torch.from_numpy(p).requires_grad_()
    F.binary_cross_entropy(tp, torch.from_numpy(t), reduction="sum").backward()
    close(g, tp.grad.numpy(), dt)
    assert g[0] == pytest.approx(-1e12, rel=1e-6) and g[1] == pytest.approx(1e12, rel=1e-6)


@pytest.mark.parametrize("dt", [np.float64, np.float32])
def test_huge_logits(dt):
    x = np.array([1e4, -1e4, 1e4, -1e4, 1e3], dt)
    t = np.array([1.0, 0.0, 0.0, 1.0, 0.5], dt)
    loss, g = L.binary_cross_entropy_with_logits(x, t, reduction="none", return_grad=True)
    np.testing.assert_array_equal(loss, np.array([0, 0, 1e4, 1e4, 500], dt))
    np.testing.assert_array_equal(g, np.array([0, 0, 1, -1, 0.5], dt))
    y = np.array([1.0, -1.0, 1.0, -1.0, 1.0], dt)
    sl, sg = L.soft_margin_loss(x, y, reduction="none", return_grad=True)  # torch: inf
    np.testing.assert_array_equal(sl, np.array([0, 0, 0, 0, 0], dt))
    sl2 = L.soft_margin_loss(-x, y, reduction="none")
    close(sl2, ref_soft_margin(-x.astype(np.float64), y.astype(np.float64)), dt)
    logits = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, 1e4]], dt)
    lab = np.array([1, 2])
    loss, g = L.cross_entropy(logits, lab, reduction="none", return_grad=True)
    tl = torch.from_numpy(logits).requires_grad_()
    ref = F.cross_entropy(tl, torch.from_numpy(lab), reduction="none")
    ref.sum().backward()
    close(loss, ref.detach().numpy(), dt)
    close(g, tl.grad.numpy(), dt)


def test_soft_margin_moderate_matches_torch_and_huge_is_finite():
    x = np.array([-100.0, 50.0, 30.0, -1e30], np.float32)
    y = np.ones(4, np.float32)
    loss = L.soft_margin_loss(x, y, reduction="none")
    expect = [100.0, math.exp(-50.0), math.log1p(math.exp(-30.0)), 1e30]
    np.testing.assert_allclose(loss, expect, rtol=1e-6)
    tl = F.soft_margin_loss(torch.from_numpy(x), torch.from_numpy(y), reduction="none")
    assert np.isinf(tl[0]) and np.isinf(tl[3])  # torch overflows in float32; fastact does not
    np.testing.assert_allclose(loss[1:3], tl[1:3].numpy(), rtol=1e-6)


def test_gaussian_scalar_var_and_clamp():
    rng = np.random.default_rng(3)
    x, t = rng.standard_normal((2, 3, 4))
    loss, (gx, gv) = L.gaussian_nll_loss(x, t, 0.5, return_grad=True)
    ref = L.gaussian_nll_loss(x, t, np.full((3, 4), 0.5), return_grad=True)
    assert loss == ref[0]
    close(gx, ref[1][0], np.float64)
    assert np.ndim(gv) == 0 and gv == pytest.approx(ref[1][1].sum())


def test_gaussian_var_gradient_large_var_float32():
    """float32 var >= 2**64: d/dvar = 0.5 (v - d^2) / v^2 is an ordinary float32 number
    (5e-31 for v = 1e30); with 1/v squared first (reassociation) it was 0, and NaN where
    x - t is infinite (torch and the float64 path: -inf). Also the parallel path."""
    x = np.array([1.0, 1.0, np.inf, 1e30], np.float32)
    t = np.array([0.0, 0.0, 1e30, -1e30], np.float32)
    v = np.array([1e30, 1e20, 1e30, 1e30], np.float32)
    tv = torch.tensor(v, requires_grad=True)
    F.gaussian_nll_loss(torch.tensor(x), torch.tensor(t), tv, reduction="sum").backward()
    want = tv.grad.numpy()
    assert want[0] > 0 and np.isneginf(want[2:]).all()
    for n in (1, 20000):
        _, (_, gv) = L.gaussian_nll_loss(
            np.tile(x, n), np.tile(t, n), np.tile(v, n), reduction="sum", return_grad=True
        )
        np.testing.assert_allclose(gv[:4], want, rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bce_with_logits_infinite_logits_like_torch(dtype):
    """x = -inf: torch's BCE-with-logits is NaN for every target ((1 - t) x + ... softplus(-x)),
    fastact's two-term form gave inf (and the CUDA path NaN); multilabel_soft_margin_loss keeps
    torch's log-sigmoid values there (inf for t > 0). Gradients as torch's."""
    x = np.array([-np.inf, -np.inf, -np.inf, np.inf, np.inf, np.inf, 1.0, -2.0], dtype)
    t = np.array([0.0, 0.5, 1.0, 0.0, 0.5, 1.0, 0.5, 0.25], dtype)
    for pw in (None, np.array([2.0], dtype)):
        loss, g = L.binary_cross_entropy_with_logits(
            x, t, reduction="none", pos_weight=pw, return_grad=True
        )
        tx = torch.tensor(x, requires_grad=True)
        tpw = None if pw is None else torch.tensor(pw)
        tl = F.binary_cross_entropy_with_logits(
            tx, torch.tensor(t), reduction="none", pos_weight=tpw
        )
        tl.sum().backward()
        np.testing.assert_array_equal(np.isnan(loss), np.isnan(tl.detach().numpy()))
        close(loss, tl.detach().numpy(), dtype)
        close(g, tx.grad.numpy(), dtype)
    xm, tm = x.reshape(2, 4), t.reshape(2, 4)
    want = F.multilabel_soft_margin_loss(torch.tensor(xm), torch.tensor(tm), reduction="none")
    np.testing.assert_array_equal(L.multilabel_soft_margin_loss(xm, tm, reduction="none"), want)
    xm, tm = np.array([[-np.inf, 0.0, 1.0]], dtype), np.array([[1.0, 1.0, 0.5]], dtype)
    assert L.multilabel_soft_margin_loss(xm, tm, reduction="none")[0] == np.inf


def test_broadcast_target_warns_and_sums_gradient():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((4, 1))
    t = rng.standard_normal((3,))
    with pytest.warns(UserWarning, match="target size"):
        loss, g = L.mse_loss(x, t, return_grad=True)
    tx = torch.from_numpy(x).requires_grad_()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tl = F.mse_loss(tx, torch.from_numpy(t))
    tl.backward()
    close(loss, tl.detach().numpy(), np.float64)
    assert g.shape == (4, 1)
    close(g, tx.grad.numpy(), np.float64)


def test_empty_inputs():
    assert np.isnan(L.mse_loss(np.zeros(0), np.zeros(0)))
    loss, g = L.l1_loss(np.zeros((0, 3)), np.zeros((0, 3)), reduction="sum", return_grad=True)
    assert loss == 0 and g.shape == (0, 3)
    assert L.mse_loss(np.zeros(0), np.zeros(0), reduction="none").shape == (0,)


def test_dtypes_follow_prediction():
    x = np.array([0.5, -1.0], np.float32)
    y = np.array([1, -1])  # int target: cast to the prediction's type
    assert L.hinge_embedding_loss(x, y).dtype == np.float32
    assert L.mse_loss(x, np.array([0.0, 1.0])).dtype == np.float32
    assert L.mse_loss(x.astype(np.float16), x).dtype == np.float32
    loss, g = L.mse_loss(np.array([1, 2, 3]), np.array([0, 0, 0]), return_grad=True)
    assert loss.dtype == np.float64 and loss == pytest.approx(14 / 3)
    np.testing.assert_allclose(g, [2 / 3, 4 / 3, 2.0])
    assert L.mse_loss([1.0, 2.0], [1.0, 1.0]) == 0.5  # lists accepted


def test_legacy_size_average_and_reduce():
    x = np.arange(4.0)
    t = np.zeros(4)
    with pytest.warns(UserWarning, match="reduction='sum'"):
        assert L.mse_loss(x, t, size_average=False) == 14.0
    with pytest.warns(UserWarning, match="reduction='none'"):
        assert L.l1_loss(x, t, None, False).shape == (4,)


# ----------------------------------------------------------------------------------------
# validation
# ----------------------------------------------------------------------------------------

_x = np.zeros((3, 4))
_p = np.full((3, 4), 0.5)


@pytest.mark.parametrize(
    "call,exc,match",
    [
        (lambda: L.cross_entropy(_x, np.array([0, 4, 1])), ValueError, "target 4 is out"),
        (lambda: L.cross_entropy(_x, np.array([0, -1, 1])), ValueError, "target -1 is out"),
        (lambda: L.nll_loss(_x, np.array([0, 9, 1])), ValueError, "out of bounds"),
        (lambda: L.cross_entropy(_x, np.array([0.0, 1.0, 2.0])), TypeError, "integer"),
        (lambda: L.cross_entropy(_x, np.zeros((3, 4), int)), TypeError, "probabilities"),
        (lambda: L.cross_entropy(_x, np.array([0, 1])), ValueError, "target has shape"),
        (lambda: L.cross_entropy(_x, np.array([0, 1, 2]), weight=np.ones(3)), ValueError, "weight"),
        (
            lambda: L.cross_entropy(_x, np.array([0, 1, 2]), label_smoothing=1.5),
            ValueError,
            "label_smoothing",
        ),
        (lambda: L.cross_entropy(np.float64(1.0), np.array(0)), ValueError, "input"),
        (lambda: L.binary_cross_entropy(_p + 1, _p), ValueError, "input should be between"),
        (lambda: L.binary_cross_entropy(_p, _p - 1), ValueError, "target should be between"),
        (lambda: L.binary_cross_entropy(_p * np.nan, _p), ValueError, "input"),
        (lambda: L.binary_cross_entropy(_p, _p[0]), ValueError, "same shape"),
        (lambda: L.binary_cross_entropy_with_logits(_x, _x[:, :1]), ValueError, "same shape"),
        (
            lambda: L.binary_cross_entropy_with_logits(_x, _x, pos_weight=np.ones(5)),
            ValueError,
            "pos_weight",
        ),
        (lambda: L.mse_loss(_x, _x, weight=np.ones(4)), ValueError, "weight"),
        (lambda: L.mse_loss(_x, np.zeros(5)), ValueError, "broadcast"),
        (lambda: L.mse_loss(_x, _x, reduction="avg"), ValueError, "reduction"),
        (lambda: L.mse_loss(_x, _x, reduction="batchmean"), ValueError, "reduction"),
        (lambda: L.mse_loss(None, _x), TypeError, "input"),
        (lambda: L.mse_loss(_x, "abc"), TypeError, "target"),
        (lambda: L.mse_loss(_x.astype(complex), _x), TypeError, "input"),
        (lambda: L.smooth_l1_loss(_x, _x, beta=-1.0), ValueError, "beta"),
        (lambda: L.huber_loss(_x, _x, delta=0.0), ValueError, "delta"),
        (lambda: L.gaussian_nll_loss(_x, _x, -_p), ValueError, "var has negative"),
        (lambda: L.gaussian_nll_loss(_x, _x, np.ones((2, 4))), ValueError, "var is of incorrect"),
        (lambda: L.gaussian_nll_loss(_x, _x, -1.0), ValueError, "var has negative"),
        (lambda: L.margin_ranking_loss(_x, _x, np.ones(4)), ValueError, "dimensions"),
        (lambda: L.cosine_embedding_loss(_x, _x, np.ones((3, 1))), ValueError, "target"),
        (lambda: L.cosine_embedding_loss(_x, _x[:, :2], np.ones(3)), ValueError, "input2"),
        (lambda: L.cosine_embedding_loss(_x, _x, np.ones(2)), ValueError, "target"),
        (lambda: L.triplet_margin_loss(_x, _x, _x[0]), ValueError, "dimensions"),
        (lambda: L.triplet_margin_loss(_x, _x, _x[:2]), ValueError, "cannot be broadcast together"),
        (lambda: L.triplet_margin_loss(_x, _x, _x, margin=0.0), ValueError, "margin must be"),
        (lambda: L.triplet_margin_loss(_x, _x, _x, margin="1"), TypeError, "margin"),
        (lambda: L.kl_div(_x, _x, reduction="bogus"), ValueError, "reduction"),
    ],
)
def test_validation(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


# ----------------------------------------------------------------------------------------
# reductions: accuracy and thread-count invariance of the parallel kernels
# ----------------------------------------------------------------------------------------


def test_float32_mean_is_accurate():
    rng = np.random.default_rng(5)
    n = 1 << 22
    x = (1.0 + 1e-3 * rng.standard_normal(n)).astype(np.float32)
    t = np.zeros(n, np.float32)
    exact = np.mean(x.astype(np.float64) ** 2)
    got = L.mse_loss(x, t)
    assert got.dtype == np.float32
    assert abs(float(got) - exact) <= 1.0 * np.spacing(np.float32(exact))
    naive = np.cumsum(x * x, dtype=np.float32)[-1] / n  # sequential float32: visibly off
    assert abs(float(naive) - exact) > abs(float(got) - exact)


PARALLEL_CASES = [
    ("mse_loss", lambda r: tuple(r.standard_normal(70001).astype(np.float32) for _ in "xt"), {}),
    (
        "binary_cross_entropy_with_logits",
        lambda r: (r.standard_normal(70001), r.uniform(0, 1, 70001)),
        {},
    ),
    (
        "cross_entropy",
        lambda r: (r.standard_normal((700, 50)).astype(np.float32), r.integers(0, 50, 700)),
        {"label_smoothing": 0.1},
    ),
    (
        "cross_entropy",
        lambda r: (r.standard_normal((4, 10, 1000)), r.integers(0, 10, (4, 1000))),
        {},
    ),
    (
        "cosine_embedding_loss",
        lambda r: (
            r.standard_normal((600, 64)),
            r.standard_normal((600, 64)),
            r.choice([-1.0, 1.0], 600),
        ),
        {},
    ),
    ("triplet_margin_loss", lambda r: tuple(r.standard_normal((600, 64)) for _ in range(3)), {}),
    ("nll_loss", lambda r: (r.standard_normal((700, 50)), r.integers(0, 50, 700)), {}),
    (  # rows of 200 classes: tasks of 327 rows that zero their own gradient rows
        "nll_loss",
        lambda r: (r.standard_normal((3000, 200)).astype(np.float32), r.integers(0, 200, 3000)),
        {"ignore_index": 7},
    ),
]


@pytest.mark.parametrize("name,make,kw", PARALLEL_CASES, ids=[c[0] for c in PARALLEL_CASES])
def test_thread_count_invariance(name, make, kw, monkeypatch):
    """The parallel kernel gives bit-identical results with 1 or 2 threads and serially."""
    args = make(np.random.default_rng(6))
    fn = getattr(L, name)
    old = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        l1, g1 = fn(*args, return_grad=True, **kw)
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        l2, g2 = fn(*args, return_grad=True, **kw)
    finally:
        numba.set_num_threads(old)
    monkeypatch.setattr(host_losses, "PARALLEL_THRESHOLD", 1 << 60)
    l3, g3 = fn(*args, return_grad=True, **kw)
    assert l1 == l2  # same chunks, same code: bit-identical for any thread count
    dt = np.asarray(l1).dtype
    eps = np.finfo(dt).eps
    close(l3, l1, dt, rtol=8 * eps, atol=64 * eps)  # serial kernel: other FMA contractions
    for a, b, c in zip(as_tuple(g1), as_tuple(g2), as_tuple(g3), strict=True):
        np.testing.assert_array_equal(a, b)
        close(c, a, dt, rtol=8 * eps, atol=8 * eps * float(np.max(np.abs(a))))
    # and the parallel result is right
    spec = next(s for s in SPECS if s.name == name)
    tl, tg = torch_loss(spec, args, kw, "mean")
    close(l1, tl, dt)
    for g, t in zip(as_tuple(g1), tg, strict=False):
        close(g, t, dt)


# ----------------------------------------------------------------------------------------
# grad_out: caller-provided gradient buffers
# ----------------------------------------------------------------------------------------

GRAD_OUT_CASES = [
    ("mse_loss", "0", "mean"),
    ("binary_cross_entropy_with_logits", "3", "sum"),
    ("margin_ranking_loss", "1", "none"),
    ("gaussian_nll_loss", "2", "mean"),
    ("cross_entropy", "3", "mean"),
    ("cross_entropy", "9", "sum"),
    ("nll_loss", "1", "mean"),
    ("cosine_embedding_loss", "0", "mean"),
    ("triplet_margin_loss", "2", "none"),
    ("multilabel_soft_margin_loss", "1", "none"),
]


@pytest.mark.parametrize("name,opt,red", GRAD_OUT_CASES)
def test_grad_out_buffers(name, opt, red):
    """Gradients written into caller buffers equal the allocated ones; buffers are returned."""
    spec = next(s for s in SPECS if s.name == name)
    args, kw = build(spec, spec.opts[int(opt)], np.float64)
    loss, grads = fa_loss(spec, args, kw, red)
    bufs = tuple(np.full(args[i].shape, np.nan) for i in spec.grads)
    gout = bufs[0] if len(bufs) == 1 else bufs
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loss2, grads2 = getattr(L, name)(
            *args, reduction=red, return_grad=True, grad_out=gout, **kw
        )
    np.testing.assert_array_equal(loss2, loss)
    for g, g2, b in zip(as_tuple(grads), as_tuple(grads2), bufs, strict=True):
        assert g2 is b
        np.testing.assert_array_equal(g2, g)


def test_nll_grad_out_dirty_buffer_many_tasks():
    """nll_loss zeroes a caller's (dirty) buffer inside its parallel tasks: every entry off the
    target class is 0, the target entries match torch, with 1 and 2 threads."""
    rng = np.random.default_rng(11)
    x = rng.standard_normal((3000, 200)).astype(np.float32)
    y = rng.integers(0, 200, 3000)
    y[::17] = -100
    xt = torch.from_numpy(x).requires_grad_()
    F.nll_loss(xt, torch.from_numpy(y)).backward()
    old = numba.get_num_threads()
    try:
        for threads in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
            numba.set_num_threads(threads)
            buf = np.full_like(x, np.nan)
            _, g = L.nll_loss(x, y, return_grad=True, grad_out=buf)
            assert g is buf
            np.testing.assert_allclose(g, xt.grad.numpy(), rtol=1e-6, atol=0)
    finally:
        numba.set_num_threads(old)


def test_grad_out_after_broadcast_and_partial_tuple():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3, 1))
    t = rng.standard_normal((3, 4))
    buf = np.empty((3, 1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, g = L.mse_loss(x, t, return_grad=True)
        _, g2 = L.mse_loss(x, t, return_grad=True, grad_out=buf)
    assert g2 is buf
    np.testing.assert_array_equal(g2, g)
    y = np.sign(rng.standard_normal((3, 4)))
    _, (a, b) = L.margin_ranking_loss(t, t[::-1].copy(), y, return_grad=True)
    _, (a2, b2) = L.margin_ranking_loss(
        t, t[::-1].copy(), y, return_grad=True, grad_out=(None, np.empty((3, 4)))
    )
    np.testing.assert_array_equal(a2, a)
    np.testing.assert_array_equal(b2, b)


_g = np.zeros((3, 4))


@pytest.mark.parametrize(
    "call,exc,match",
    [
        (lambda: L.mse_loss(_x, _x, grad_out=_g.copy()), ValueError, "requires return_grad"),
        (lambda: L.mse_loss(_x, _x, return_grad=True, grad_out=np.zeros(4)), ValueError, "shape"),
        (
            lambda: L.mse_loss(_x, _x, return_grad=True, grad_out=np.zeros((3, 4), np.float32)),
            TypeError,
            "dtype",
        ),
        (
            lambda: L.mse_loss(_x, _x, return_grad=True, grad_out=np.zeros((4, 3)).T),
            ValueError,
            "contiguous",
        ),
        (lambda: L.mse_loss(_g, _x, return_grad=True, grad_out=_g), ValueError, "shares memory"),
        (lambda: L.mse_loss(_x, _x, return_grad=True, grad_out=[0.0]), TypeError, "ndarray"),
        (
            lambda: L.margin_ranking_loss(_x, _x, _p, return_grad=True, grad_out=_g.copy()),
            TypeError,
            "tuple of 2",
        ),
        (
            lambda: L.cross_entropy(
                _x, np.array([0, 1, 2]), return_grad=True, grad_out=np.zeros((3, 5))
            ),
            ValueError,
            "grad_out for input",
        ),
        (
            lambda: L.gaussian_nll_loss(
                _x, _x, 1.0, return_grad=True, grad_out=(None, np.zeros((3, 4)))
            ),
            ValueError,
            "float",
        ),
    ],
)
def test_grad_out_validation(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


@pytest.mark.parametrize("dt", [np.float64, np.float32])
def test_triplet_zero_distance_and_swap_tie_like_torch(dt):
    """anchor == positive: d(a, p) = ||eps|| exactly (no reassociation of a - p + eps), and
    d(a, n) == d(p, n) is a tie that torch.min splits between both distances."""
    rng = np.random.default_rng(8)
    a = rng.standard_normal((4, 3)).astype(dt)
    p = a.copy()
    n = rng.standard_normal((4, 3)).astype(dt)
    loss, grads = L.triplet_margin_loss(a, p, n, margin=5.0, swap=True, return_grad=True)
    spec = next(s for s in SPECS if s.name == "triplet_margin_loss")
    tl, tg = torch_loss(spec, (a, p, n), {"margin": 5.0, "swap": True}, "mean")
    close(loss, tl, dt)
    for g, t in zip(grads, tg, strict=True):
        close(g, t, dt)


def test_benchmark_family_runs_small():
    """The benchmark's loss family (fastact.bench.losses) covers every loss, with torch and
    NumPy columns and consistent ratios (no timing assertions)."""
    from fastact import bench

    rep = bench.run(
        families=["loss"],
        sizes=[4096],
        threads=1,
        quick=True,
        isolate=False,
        progress=False,
        budget_scale=0.2,
    )
    rows = [r for r in rep["results"] if r["variant"] == "value+grad"]
    assert {r["function"] for r in rows} == {s.name for s in SPECS}
    for r in rows:
        assert not r.get("errors"), r
        assert set(r["times"]) == {"fastact", "torch", "numpy"}
        assert all(t > 0 for t in r["times"].values())
        assert r["ratios"]["torch"] == pytest.approx(r["times"]["torch"] / r["times"]["fastact"])
        assert r["roofline_fraction"] == pytest.approx(r["roofline_s"] / r["times"]["fastact"])
    assert "cross_entropy" in bench.format_report(rep, "text")


# ----------------------------------------------------------------------------------------
# edge cases found by a differential fuzz against torch (2026-12-05)
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_margin_ranking_infinite_differences_like_torch(dt):
    """x1 - x2 infinite (infinite inputs, or finite float32 ones 6e38 apart): torch gives inf
    (or 0 where the hinge is inactive) and gradients +-1; the exact-difference split gave NaN
    and zero gradients (its low word was inf - inf)."""
    a = np.array([3e38, np.inf, np.inf, -np.inf, np.nan, 1.0], dt)
    b = np.array([-3e38, 1.0, 1.0, np.inf, 0.0, 2.0], dt)
    y = np.array([-1.0, -1.0, 1.0, 1.0, 1.0, -1.0], dt)
    loss, (g1, g2) = L.margin_ranking_loss(a, b, y, reduction="none", return_grad=True)
    ta, tb = (torch.tensor(v, requires_grad=True) for v in (a, b))
    tl = F.margin_ranking_loss(ta, tb, torch.tensor(y), reduction="none")
    tl.sum().backward()
    np.testing.assert_array_equal(loss, tl.detach().numpy())
    np.testing.assert_array_equal(g1, ta.grad.numpy())
    np.testing.assert_array_equal(g2, tb.grad.numpy())


def test_domain_errors_leave_grad_out_untouched():
    """binary_cross_entropy (input outside [0, 1]) and gaussian_nll_loss (negative var) find
    the bad elements in their kernel: a caller's grad_out is written only after the check
    (it held the partial gradients when the ValueError came)."""
    g = np.full(2, 7.0)
    with pytest.raises(ValueError, match="between 0 and 1"):
        L.binary_cross_entropy(np.array([0.5, 1.5]), np.array([1.0, 0.0]), return_grad=True,
                               grad_out=g)  # fmt: skip
    assert (g == 7.0).all()
    g, gv = np.full(2, 7.0), np.full(2, 7.0)
    with pytest.raises(ValueError, match="var has negative"):
        L.gaussian_nll_loss(np.ones(2), np.zeros(2), np.array([1.0, -1.0]), return_grad=True,
                            grad_out=(g, gv))  # fmt: skip
    assert (g == 7.0).all() and (gv == 7.0).all()
    g = np.full(2, 7.0)  # a valid call still fills the caller's buffer and returns it
    _, got = L.binary_cross_entropy(np.array([0.5, 0.25]), np.array([1.0, 0.0]),
                                    return_grad=True, grad_out=g)  # fmt: skip
    assert got is g
    np.testing.assert_allclose(g, [-1.0, 2.0 / 3.0])


def test_bce_domain_error_names_the_array_without_whole_array_masks():
    """binary_cross_entropy's ValueError names input or target (as torch) from a scan in
    blocks that stops at the first bad one: the masks of whole arrays took 2 bytes per element
    (4 GiB at 2**31 elements) on the error path. Any layout, the bad element in a later
    block, NaN; then the peak of the traced allocations (NumPy reports its own) of a failing
    call at 4M elements: the scan's blocks only (main: 8 MiB)."""
    import tracemalloc

    n = 2**18 + 3
    for bad in ("input", "target"):
        for value in (1.5, -0.25, np.nan):
            for layout in ("C", "strided", "F"):
                p = np.full(2 * n, 0.5)
                t = np.zeros(2 * n)
                (p if bad == "input" else t)[2 * n - 2] = value
                if layout == "strided":
                    p, t = p[::2], t[::2]
                elif layout == "F":
                    p, t = p.reshape(2, n, order="F"), t.reshape(2, n, order="F")
                with pytest.raises(ValueError, match=f"elements of {bad} should be between"):
                    L.binary_cross_entropy(p, t, reduction="sum")
    n = 2**22
    p = np.full(n, 0.5, np.float32)
    t = np.zeros(n, np.float32)
    L.binary_cross_entropy(p, t, reduction="sum")  # the kernels loaded: nothing compiles below
    t[-1] = 2.0
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match="elements of target should be between"):
            L.binary_cross_entropy(p, t, reduction="sum")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2**20, f"a failing call at {n} elements allocated {peak / 2**20:.1f} MiB"


def test_cross_entropy_smoothing_without_weighted_targets_is_nan_like_torch():
    """Index targets whose class weights are all 0, 'mean' with label smoothing: torch's mean
    is NaN (its nll part is 0 / 0); the folded sum gave inf."""
    x, y, w = np.array([[1.0, 2, 3], [0, 1, 0]]), np.array([0, 1]), np.array([0.0, 0, 1])
    want = F.cross_entropy(torch.tensor(x), torch.tensor(y), weight=torch.tensor(w),
                           label_smoothing=0.3)  # fmt: skip
    assert math.isnan(float(want))
    assert math.isnan(float(L.cross_entropy(x, y, weight=w, label_smoothing=0.3)))
    ok = L.cross_entropy(x, y, weight=np.array([1.0, 0, 1]), label_smoothing=0.3)
    assert math.isfinite(float(ok))


@pytest.mark.parametrize("dt", [np.float64, np.float32])
@pytest.mark.parametrize("spatial", [False, True])
def test_cross_entropy_one_class_gradient_is_zero_like_torch(dt, spatial):
    """One class: softmax is 1, so the gradient is exactly 0 (torch's; NaN at a non-finite
    logit as torch's) whatever the weights, smoothing or probability targets; with weight and
    label_smoothing it was -9.9e-19 (float64) / -6.4e-10 (float32), the rounded
    coefficients (1 - eps) w_y + eps W / C and eps w_y / C not cancelling."""
    x = np.array([0.3, -2.0, 1e30, 7.5, np.inf, -np.inf, np.nan], dt)[:, None]
    x = np.repeat(x[:, :, None], 3, axis=2) if spatial else x
    y = np.zeros((x.shape[0], 3) if spatial else x.shape[0], np.int64)
    q = np.full(x.shape, 0.35, dt)
    weighted = {"weight": np.array([0.7], dt), "label_smoothing": 0.1}
    cases = [(y, {}), (y, {"label_smoothing": 0.1}), (y, weighted), (q, weighted)]
    for target, kw in cases:
        for red in ("mean", "sum"):
            _, g = L.cross_entropy(x, target, reduction=red, return_grad=True, **kw)
            tx = torch.tensor(x, requires_grad=True)
            tkw = {k: torch.tensor(v) if isinstance(v, np.ndarray) else v for k, v in kw.items()}
            F.cross_entropy(tx, torch.tensor(target), reduction=red, **tkw).backward()
            want = tx.grad.numpy()
            np.testing.assert_array_equal(g, want, err_msg=f"{kw} {red}")
            assert not np.signbit(g[~np.isnan(g)]).any()  # +0 as torch's g - 1 * g


@pytest.mark.parametrize("shape", [(3, 0), (0, 4, 0), (2, 0)])
@pytest.mark.parametrize("red", ["none", "mean", "sum"])
def test_no_classes_like_torch(shape, red):
    """An empty class axis: multilabel_soft_margin_loss's per-sample mean is 0 / 0 (NaN; a
    sum over no samples 0), cross_entropy with probabilities sums nothing (-0; 'mean' NaN);
    they raised a reshape error or gave NaN."""
    x = np.zeros(shape)
    cases = [(L.multilabel_soft_margin_loss, F.multilabel_soft_margin_loss)]
    if len(shape) == 2:
        cases.append((L.cross_entropy, F.cross_entropy))
    for f, tf in cases:
        got = f(x, np.zeros(shape), reduction=red)
        want = tf(torch.tensor(x), torch.tensor(np.zeros(shape)), reduction=red).numpy()
        np.testing.assert_array_equal(got, want)
        zeros = ~np.isnan(want)  # -0 as torch's (a NaN's sign bit says nothing)
        assert np.signbit(np.asarray(got)[zeros]).tolist() == np.signbit(want[zeros]).tolist()


@pytest.mark.parametrize(
    "shapes",
    [((2, 3), (1, 3), (2, 3)), ((1, 3), (1, 3), (2, 3)), ((2, 3), (2, 1), (2, 3)),
     ((2, 1, 3), (1, 4, 3), (2, 4, 3))],
)  # fmt: skip
@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_triplet_and_cosine_inputs_broadcast_like_torch(shapes, dt):
    """torch broadcasts triplet_margin_loss's three inputs and cosine_embedding_loss's two
    (fastact required equal shapes): values, and gradients summed back to each input's shape
    (also into caller buffers of those shapes)."""
    rng = np.random.default_rng(len(shapes[0]))
    arrs = [rng.standard_normal(s).astype(dt) for s in shapes]
    rtol = 1e-5 if dt == np.float32 else 1e-12
    ts = [torch.tensor(a, requires_grad=True) for a in arrs]
    F.triplet_margin_loss(*ts, reduction="sum").backward()
    bufs = tuple(np.full(s, 7.0, dt) for s in shapes)
    loss, gs = L.triplet_margin_loss(*arrs, reduction="sum", return_grad=True, grad_out=bufs)
    want = F.triplet_margin_loss(*(torch.tensor(a) for a in arrs), reduction="sum")
    np.testing.assert_allclose(loss, want.numpy(), rtol=rtol)
    for g, b, t in zip(gs, bufs, ts, strict=True):
        assert g is b
        np.testing.assert_allclose(g, t.grad.numpy(), rtol=rtol, atol=rtol)
    if len(shapes[0]) == 2 and shapes[1][-1] != shapes[0][-1]:
        with pytest.raises(ValueError, match="same last dimension"):  # torch's is no cosine
            L.cosine_embedding_loss(*arrs[:2], np.array([1.0, -1.0], dt))
    elif len(shapes[0]) == 2:
        y = np.array([1.0, -1.0], dt)
        ts = [torch.tensor(a, requires_grad=True) for a in arrs[:2]]
        tl = F.cosine_embedding_loss(*ts, torch.tensor(y), reduction="none")
        tl.sum().backward()
        loss, gs = L.cosine_embedding_loss(*arrs[:2], y, reduction="none", return_grad=True)
        np.testing.assert_allclose(loss, tl.detach().numpy(), rtol=rtol, atol=rtol)
        for g, t in zip(gs, ts, strict=True):
            assert g.shape == tuple(t.shape)
            np.testing.assert_allclose(g, t.grad.numpy(), rtol=rtol, atol=rtol)
    with pytest.raises(ValueError, match="cannot be broadcast together: anchor"):
        L.triplet_margin_loss(np.ones((2, 3)), np.ones((3, 3)), np.ones((2, 3)))


@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_gradients_at_non_finite_inputs_like_torch(dt):
    """Where torch's gradient at an infinite or NaN input is one value wherever the element
    sits: l1_loss (and smooth_l1 with beta = 0, torch's l1) 0 at NaN; poisson_nll_loss
    (log_input=False) 1 at x = inf; gaussian_nll_loss's var gradient -inf where |x - t| =
    inf. The exact-difference forms gave NaN there (inf - inf, inf * 0)."""

    def both(f, tf, arrs, grad_of, **kw):
        got = f(*arrs, reduction="sum", return_grad=True, **kw)[1]
        got = got if isinstance(got, tuple) else (got,)
        ts = [torch.tensor(a, requires_grad=i in grad_of) for i, a in enumerate(arrs)]
        tf(*ts, reduction="sum", **kw).backward()
        for g, i in zip(got, grad_of, strict=True):
            np.testing.assert_array_equal(g, ts[i].grad.numpy())

    x, t = np.array([np.nan, 0.0, 1.0], dt), np.ones(3, dt)
    both(L.l1_loss, F.l1_loss, (x, t), (0,))
    both(L.smooth_l1_loss, F.smooth_l1_loss, (x, t), (0,), beta=0.0)
    x, t = np.array([np.inf, 2.0, 3.0], dt), np.array([1.0, 1.0, np.inf], dt)
    for full in (False, True):
        both(L.poisson_nll_loss, F.poisson_nll_loss, (x, t), (0,), log_input=False, full=full)
    both(L.gaussian_nll_loss, F.gaussian_nll_loss, (x, t, np.ones(3, dt)), (0, 2))


def test_large_class_counts_and_one_class_rows_on_torchs_pool():
    """cross_entropy over more than 16384 classes (a chunk of one row) without the gradient,
    and multilabel_soft_margin_loss with one class per row and reduction='none': their empty
    placeholders were split along with the rows on torch's pool (ValueError "the split
    arrays must have one leading length"). Values against torch."""
    from fastact._core.torch_pool import pool_threads

    torch.set_num_threads(2)  # this module runs torch on one thread: no pool
    try:
        assert pool_threads(1 << 20, 0, True) == min(2, numba.get_num_threads())
        _large_class_counts()
    finally:
        torch.set_num_threads(1)


def _large_class_counts():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(8, 20000, generator=g)
    target = torch.randint(0, 20000, (8,), generator=g)
    ref = F.cross_entropy(logits.double(), target).item()
    assert abs(L.cross_entropy(logits, target).item() - ref) < 1e-5 * abs(ref)
    assert abs(float(L.cross_entropy(logits.numpy(), target.numpy())) - ref) < 1e-5 * abs(ref)
    probs = torch.softmax(torch.randn(4, 20000, generator=g), 1)
    refp = F.cross_entropy(logits[:4].double(), probs.double()).item()
    assert abs(L.cross_entropy(logits[:4], probs).item() - refp) < 1e-5 * abs(refp)
    x = torch.randn(70000, 1, generator=g)
    t = (torch.rand(70000, 1, generator=g) > 0.5).float()
    got = L.multilabel_soft_margin_loss(x, t, reduction="none")
    exp = F.multilabel_soft_margin_loss(x.double(), t.double(), reduction="none")
    torch.testing.assert_close(got.double(), exp, rtol=1e-6, atol=1e-7)


def test_uint64_targets_beyond_int64_are_out_of_bounds():
    """A uint64 class index of 2**63 or more wrapped in the int64 conversion (2**64 - 100 to
    -100, the default ignore_index: that sample was silently dropped)."""
    x = np.array([[1.0, 2.0, 3.0], [0.5, 0.1, 0.2]])
    for y in (np.array([0, 2**64 - 100], np.uint64), np.array([0, 2**63], np.uint64)):
        for f in (L.cross_entropy, L.nll_loss):
            with pytest.raises(ValueError, match="out of bounds"):
                f(x, y)
    np.testing.assert_allclose(
        L.cross_entropy(x, np.array([0, 2], np.uint64)), L.cross_entropy(x, np.array([0, 2]))
    )


def test_grad_out_kinds_with_tensor_inputs():
    """With tensor inputs, an inference-mode grad_out is refused as torch refuses the write
    (the fast path wrote it), and a NumPy grad_out is returned as itself (as on the general
    path)."""
    x, t = torch.randn(4, 3), torch.randn(4, 3)
    with torch.inference_mode():
        go = torch.zeros(4, 3)
    with pytest.raises(RuntimeError, match="inference tensor"):
        L.mse_loss(x, t, return_grad=True, grad_out=go)
    assert (go == 0).all()
    buf = np.zeros((4, 3), np.float32)
    loss, g = L.mse_loss(x, t, return_grad=True, grad_out=buf)
    assert g is buf
    np.testing.assert_allclose(buf, 2 * (x - t).numpy() / 12, rtol=1e-6)
    with torch.inference_mode():  # inside inference mode the write is allowed
        loss, g = L.mse_loss(x, t, return_grad=True, grad_out=go)
    assert g is go and (go != 0).any()


def test_ignore_index_with_probability_targets_is_refused():
    x = np.zeros((3, 4), np.float32)
    q = np.full((3, 4), 0.25, np.float32)
    with pytest.raises(ValueError, match="ignore_index is not supported for floating point"):
        L.cross_entropy(x, q, ignore_index=0)
    assert np.isclose(L.cross_entropy(x, q), np.log(4))


@pytest.mark.parametrize(
    "name, call",
    [
        ("input", lambda m: L.mse_loss(m, np.zeros(3))),
        ("target", lambda m: L.mse_loss(np.ones(3), m)),
        ("weight", lambda m: L.mse_loss(np.ones(3), np.ones(3), weight=m)),
        (
            "pos_weight",
            lambda m: L.binary_cross_entropy_with_logits(np.ones(3), np.ones(3), pos_weight=m),
        ),
        ("target", lambda m: L.cross_entropy(np.ones((3, 4)), m.astype(np.int64))),
        ("target", lambda m: L.nll_loss(np.ones((3, 4)), m.astype(np.int64))),
        ("grad_out", lambda m: L.mse_loss(np.ones(3), np.ones(3), return_grad=True, grad_out=m)),
    ],
)
def test_masked_arrays_refused(name, call):
    """A numpy.ma.MaskedArray argument is refused with a TypeError naming it (its mask was
    dropped: the masked elements entered the sum and the mean's count), and a masked
    grad_out buffer is not written."""
    m = np.ma.array([1.0, 2.0, 0.0], mask=[0, 1, 0])
    with pytest.raises(TypeError, match=rf"^{name}( for input)? is a numpy\.ma\.MaskedArray"):
        call(m)
    np.testing.assert_array_equal(m.data, [1.0, 2.0, 0.0])
    np.testing.assert_array_equal(m.mask, [False, True, False])
