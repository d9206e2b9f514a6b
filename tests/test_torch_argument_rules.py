"""torch's argument rules, both ways: every activation and loss gets the edge values torch
documents or validates (negative, zero, infinite and NaN alphas, betas, lambdas, margins,
eps, p, label_smoothing; torch dtype objects; dims out of range; bad reductions...). fastact
must accept what torch 2.13 accepts (with torch's values) and reject what it rejects (with a
TypeError or ValueError naming the argument, torch's message where it has one).

The few deliberate differences are listed in ``DIFFERENCES`` and checked as such."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import fastact
from fastact import losses as L

torch = pytest.importorskip("torch")
F = torch.nn.functional

INF, NAN = math.inf, math.nan
_rng = np.random.default_rng(20261203)
X = (_rng.standard_normal((4, 6)) * 2).astype(np.float32)
X[0, :3] = [0.0, -0.0, 0.3]
X3 = _rng.standard_normal((2, 4, 5)).astype(np.float32)
X45 = _rng.standard_normal((4, 5)).astype(np.float32)
P = _rng.standard_normal((4, 6)).astype(np.float32)
T = _rng.standard_normal((4, 6)).astype(np.float32)
U = _rng.uniform(0.05, 0.95, (4, 6)).astype(np.float32)
V = _rng.uniform(0.1, 2, (4, 6)).astype(np.float32)
PM = np.where(_rng.random(4) < 0.5, -1.0, 1.0).astype(np.float32)
PM46 = np.where(_rng.random((4, 6)) < 0.5, -1.0, 1.0).astype(np.float32)
CLS = _rng.integers(0, 6, 4)
Q = np.exp(P) / np.exp(P).sum(1, keepdims=True)


def _t(a: Any) -> Any:
    return torch.from_numpy(np.array(a)) if isinstance(a, np.ndarray | np.generic) else a


# (label, torch call, fastact call, what fastact's error must say when both reject: phrases
# separated by "; ", each with alternatives separated by "|"; by default one of the names of
# the arguments passed)
Case = tuple[str, Callable[[], Any], Callable[[], Any], str]
CASES: list[Case] = []


def act(name: str, kw: dict, x: np.ndarray = X, words: str | None = None) -> None:
    CASES.append(
        (
            f"{name}({kw})",
            lambda: getattr(F, name)(_t(x), **kw),
            lambda: getattr(fastact, name)(x, **kw),
            words if words is not None else "|".join(kw),
        )
    )


def loss(name: str, args: tuple, kw: dict, words: str | None = None) -> None:
    tkw = {k: _t(v) for k, v in kw.items()}
    CASES.append(
        (
            f"{name}({kw})",
            lambda: getattr(F, name)(*[_t(a) for a in args], **tkw),
            lambda: getattr(L, name)(*args, **kw),
            words if words is not None else "|".join(kw),
        )
    )


for v in (-0.5, 0.0, 2.0, INF, NAN, "a", None):
    act("leaky_relu", {"negative_slope": v})
for lo, hi in ((1.0, -1.0), (0.5, 0.5), (-INF, INF), (NAN, 1.0), (-1.0, NAN), (0, 2)):
    act("hardtanh", {"min_val": lo, "max_val": hi}, words="min_val")
for v in (0.0, -1.0, 2.0, INF, NAN, "a"):
    act("elu", {"alpha": v})
for v in (0.0, -0.0, -1.0, 2.0, INF, NAN):
    act("celu", {"alpha": v})
for v in (0.0, -1.0, 2.0, 1e-30, INF, NAN):
    act("softplus", {"beta": v})
for v in (0.0, -5.0, INF, NAN):
    act("softplus", {"threshold": v})
for v in ("none", "tanh", "TANH", "foo", None, 1):
    act("gelu", {"approximate": v})
for v in (-0.5, 0.0, 0.5, INF, NAN, -INF, 1e39):
    act("softshrink", {"lambd": v}, words="lambd: lambda must be in range [0, 3.40282e+38]")
for v in (-0.5, 0.0, INF, NAN, -INF):
    act("hardshrink", {"lambd": v})
for th, val in ((NAN, 1.0), (INF, 0.0), (0.1, NAN), (-INF, 2.0), (0, "a")):
    act("threshold", {"threshold": th, "value": val}, words="value")
for lo, hi in ((0.3, 0.1), (-0.1, 0.2), (0.2, 0.2), (0.0, 0.0), (-1, -0.5), (0.1, INF), (NAN, 0.2)):
    act("rrelu", {"lower": lo, "upper": hi}, words="lower|upper")
for name in ("relu", "relu6", "selu", "silu", "mish", "hardswish", "hardsigmoid"):
    act(name, {"inplace": False})
for name, kw in (
    ("leaky_relu", {"negative_slope": -0.5}),
    ("elu", {"alpha": 0.0}),
    ("celu", {"alpha": 0.0}),
    ("hardtanh", {"min_val": 1.0, "max_val": -1.0}),
    ("threshold", {"threshold": NAN, "value": 1.0}),
    ("rrelu", {"lower": 0.3, "upper": 0.1}),
):
    CASES.append(
        (
            f"{name}(inplace=True, {kw})",
            lambda name=name, kw=kw: getattr(F, name)(_t(X.copy()), inplace=True, **kw),
            lambda name=name, kw=kw: getattr(fastact, name)(X.copy(), inplace=True, **kw),
            "",
        )
    )
for name in ("softmax", "log_softmax", "softmin"):
    for dim in (0, 1, -1, 2, -3, 3, -4, 1.0, "a"):
        act(name, {"dim": dim}, x=X3)
    for dt in (torch.float64, torch.float32, torch.float16, torch.int32, 5):
        act(name, {"dim": 1, "dtype": dt}, x=X3)
    for dim in (0, -1, 1):
        act(name, {"dim": dim}, x=np.float32(1.5))
for dim in (0, 1, -1, -2, 2, -3, 1.0):
    act("glu", {"dim": dim})
    act("glu", {"dim": dim}, x=X45, words="dim|Halving dimension must be even")
CASES.append(("glu(0-d)", lambda: F.glu(torch.tensor(1.0)), lambda: fastact.glu(np.float32(1)), ""))
for w in (
    np.float32([0.25]),
    np.full(4, 0.1, np.float32),
    np.full(6, -0.1, np.float32),
    np.full((6, 1), 0.1, np.float32),
    np.full(3, 0.1, np.float32),
):
    CASES.append(
        (
            f"prelu(weight {w.shape})",
            lambda w=w: F.prelu(_t(X), _t(w)),
            lambda w=w: fastact.prelu(X, w),
            "",
        )
    )

for red in ("mean", "sum", "none", "foo", "batchmean", None, "MEAN"):
    loss("mse_loss", (P, T), {"reduction": red})
    loss("l1_loss", (P, T), {"reduction": red})
for v in (-1.0, 0.0, 0.5, INF, NAN):
    loss("smooth_l1_loss", (P, T), {"beta": v}, words="beta")
    loss("huber_loss", (P, T), {"delta": v}, words="delta")
for v in (-1.0, 0.0, 2.0, NAN, INF):
    loss("margin_ranking_loss", (P[:, 0], T[:, 0], PM), {"margin": v})
    loss("hinge_embedding_loss", (P, PM46), {"margin": v})
for v in (-2.0, -1.0, 0.5, 1.0, 2.0, NAN):
    loss("cosine_embedding_loss", (P, T, PM), {"margin": v})
for v in (-1.0, 0.0, 1.0, NAN, INF):
    loss("triplet_margin_loss", (P, T, U), {"margin": v}, words="margin must be greater than 0")
for v in (0, -1.0, 0.5, 1, 2, 3, INF, -INF, NAN):
    loss("triplet_margin_loss", (P, T, U), {"p": v})
    loss("triplet_margin_loss", (P, T, U), {"p": v, "swap": True})
for v in (0.0, -1.0, 1e-3, NAN):
    loss("triplet_margin_loss", (P, T, U), {"eps": v})
    loss("gaussian_nll_loss", (P, T, V), {"eps": v})
    loss("poisson_nll_loss", (P, V), {"eps": v})
    loss("poisson_nll_loss", (U, V), {"log_input": False, "eps": v})
loss("gaussian_nll_loss", (P, T, -V), {}, words="var")
loss("gaussian_nll_loss", (P, T, -V), {"eps": NAN}, words="var")
loss("gaussian_nll_loss", (P, T, V[:, :2]), {}, words="var")
for v in (-0.1, 0.0, 0.5, 1.0, 1.5, NAN, -INF, INF, 1.0000001):
    for target in (CLS, Q):
        loss("cross_entropy", (P, target), {"label_smoothing": v}, words="label_smoothing")
for v in (-100, 0, 7, -1):
    loss("cross_entropy", (P, CLS), {"ignore_index": v})
loss("cross_entropy", (P, np.array([0, 1, 6, 2])), {}, words="target")
loss("cross_entropy", (P, CLS), {"weight": np.ones(5, np.float32)}, words="weight")
loss("cross_entropy", (P, CLS), {"weight": -np.ones(6, np.float32)})
loss("nll_loss", (P, np.array([0, 1, 6, 2])), {}, words="target")
loss("nll_loss", (P, CLS.astype(np.float32)), {}, words="target")
for lt in (False, True):
    loss("kl_div", (np.log(U), U), {"log_target": lt, "reduction": "batchmean"})
loss("binary_cross_entropy", (P, U), {}, words="input")
loss("binary_cross_entropy", (U, PM46), {}, words="target")
loss("binary_cross_entropy", (U, U), {"weight": np.ones(6, np.float32)})
loss("binary_cross_entropy_with_logits", (P, U), {"pos_weight": -np.ones(6, np.float32)})
loss("binary_cross_entropy_with_logits", (P, U), {"pos_weight": np.ones(5, np.float32)})
loss("multilabel_soft_margin_loss", (P, (U > 0.5).astype(np.float32)), {"weight": np.ones(5)})

#: Deliberate differences: label -> (what fastact does, why).
DIFFERENCES: dict[str, tuple[str, str]] = {
    "leaky_relu(negative_slope=True)": (
        "TypeError",
        "a bool where a number is expected is the classic leaky_relu(x, True) meant as "
        "inplace=True; torch takes it as slope 1.0, fastact names the argument",
    ),
    "softmax(dtype=numpy.float64)": ("accepts", "NumPy dtypes in a NumPy library"),
    "softmax(dtype=torch.bfloat16)": ("TypeError", "NumPy has no bfloat16"),
    "nll_loss(int32 target)": ("accepts", "any integer NumPy dtype holds class indices"),
}


def _outcome(fn: Callable[[], Any]) -> tuple[str, Any]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return "ok", fn()
    except Exception as e:  # the comparison is the point
        return "error", e


def _values(v: Any) -> np.ndarray:
    if isinstance(v, tuple):
        v = v[0]
    if isinstance(v, torch.Tensor):
        return v.detach().numpy()
    return np.asarray(v)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_accepts_and_rejects_like_torch(case: Case) -> None:
    label, torch_call, fastact_call, words = case
    tk, tv = _outcome(torch_call)
    fk, fv = _outcome(fastact_call)
    assert tk == fk, f"{label}: torch {tk} ({tv if tk == 'error' else 'ok'}), fastact {fk} ({fv})"
    if tk == "error":
        assert isinstance(fv, TypeError | ValueError), f"{label}: {type(fv).__name__}: {fv}"
        for phrase in filter(None, words.split("; ")):
            assert any(alt in str(fv) for alt in phrase.split("|")), f"{label}: {phrase!r}: {fv}"
        return
    a, b = _values(tv), _values(fv)
    assert a.shape == b.shape, label
    assert a.dtype == b.dtype or label.startswith("l1_loss"), (label, a.dtype, b.dtype)
    tol = 2e-3 if a.dtype == np.float16 else 2e-5
    np.testing.assert_allclose(b, a, rtol=tol, atol=tol, equal_nan=True, err_msg=label)
    if a.dtype.kind == "f":  # NaN where torch has NaN, nowhere else
        np.testing.assert_array_equal(np.isnan(b), np.isnan(a), err_msg=label)


def test_the_deliberate_differences() -> None:
    """The behaviours listed in ``DIFFERENCES``, on both sides."""
    with pytest.raises(TypeError, match="negative_slope"):
        fastact.leaky_relu(X, True)
    assert float(F.leaky_relu(_t(X), True)[1, 0]) == float(X[1, 0])  # torch: slope 1
    y = fastact.softmax(X3, dim=1, dtype=np.float64)
    assert y.dtype == np.float64
    with pytest.raises(TypeError):
        F.softmax(_t(X3), dim=1, dtype=np.float64)
    with pytest.raises(TypeError, match="dtype"):
        fastact.softmax(X3, dim=1, dtype=torch.bfloat16)
    assert float(L.nll_loss(P, CLS.astype(np.int32))) == float(L.nll_loss(P, CLS))
    with pytest.raises(RuntimeError, match="Long"):
        F.nll_loss(_t(P), _t(CLS.astype(np.int32)))


@pytest.mark.parametrize("swap", [False, True])
@pytest.mark.parametrize("p", [0, -1.0, 0.5, 3.0, INF, -INF, NAN])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_triplet_margin_loss_every_norm_matches_torch_gradients(p, swap, dtype) -> None:
    """The norms without a kernel (p = 0, negative, +-inf, NaN) give torch's loss and
    autograd gradients (no gradient: zeros)."""
    rng = np.random.default_rng(5)
    a, po, ne = (rng.standard_normal((7, 5)).astype(dtype) for _ in range(3))
    po[0, 2] = a[0, 2]  # a zero difference (up to eps)
    ta, tp, tn = (torch.from_numpy(v.copy()).requires_grad_() for v in (a, po, ne))
    tl = F.triplet_margin_loss(ta, tp, tn, margin=1.0, p=p, swap=swap)
    tl.backward()
    fl, grads = L.triplet_margin_loss(a, po, ne, margin=1.0, p=p, swap=swap, return_grad=True)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(fl, tl.item(), rtol=tol, equal_nan=True)
    for g, t in zip(grads, (ta, tp, tn), strict=True):
        want = np.zeros_like(g) if t.grad is None else t.grad.numpy()
        assert g.dtype == dtype
        np.testing.assert_allclose(g, want, rtol=tol, atol=tol, equal_nan=True)
    reds = [L.triplet_margin_loss(a, po, ne, p=p, swap=swap, reduction=r) for r in ("none", "sum")]
    np.testing.assert_allclose(np.sum(reds[0], dtype=np.float64), reds[1], rtol=tol, equal_nan=True)
