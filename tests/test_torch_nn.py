"""fastact.torch.autograd and fastact.torch.nn: fastact's kernels inside torch's autograd.

* ``torch.autograd.gradcheck`` (float64) for every autograd Function: every element-wise
  activation (default and other parameters, in place on a non-leaf), the softmax family,
  GLU, Maxout, PReLU (input and weight), RReLU (training, seeded), and every loss case of
  tests/test_losses.py with every reduction (the unreduced ones check the scaling by the
  upstream gradient, broadcast arguments included).
* Values and gradients against torch.nn.functional in float32 and float64.
* The modules: subclasses of torch's with torch's constructors; outputs and gradients as
  torch's modules'; in place; nn.Sequential; ``convert``.
* A small CNN trained with fastact.torch.nn activations and loss (and with fastact's
  optimizer) matches the all-torch run step for step.
* What fastact does not take (float16, bfloat16, other devices) is torch's; in place on a
  leaf that requires grad is refused before anything is written; no graph without grad;
  the saved tensors are torch's (output or input); no double backward.
"""

from __future__ import annotations

import copy
import inspect
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_losses import SPECS as LOSS_SPECS
from test_losses import build
from torch.autograd import gradcheck

import fastact
import fastact.torch.autograd as AF
import fastact.torch.nn as fnn
import fastact.torch.optim as FO
from fastact import losses as L
from fastact.kernels.activations import ACTIVATIONS

torch.set_num_threads(1)

#: non-default parameters per element-wise activation (defaults are tested too)
OTHER = {
    "leaky_relu": (0.2,),
    "hardtanh": (-0.5, 2.0),
    "elu": (0.7,),
    "celu": (1.3,),
    "softplus": (2.0, 5.0),
    "softshrink": (0.4,),
    "hardshrink": (0.4,),
    "threshold": (0.3, -1.5),
}
NAMES = [n for n in ACTIVATIONS if n not in ("gelu", "gelu_tanh")]


def _x(shape=(4, 6), dtype=torch.float64, seed=0):
    """Off the kinks: a random normal sample scaled by 3 (no value within 1e-3 of one)."""
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=g, dtype=torch.float64) * 3 + 0.0123).to(dtype)


def _fns(name: str):
    """(fastact.torch function, torch function, parameter sets) of an element-wise name."""
    vals = [()] if name != "threshold" else []
    if name in OTHER:
        vals.append(OTHER[name])
    return getattr(AF, name), getattr(F, name), vals


# ----------------------------------------------------------------------------- gradcheck
@pytest.mark.parametrize("name", NAMES)
def test_gradcheck_elementwise(name):
    f, _, sets = _fns(name)
    x = _x().requires_grad_(True)
    for vals in sets:
        assert gradcheck(lambda t, v=vals: f(t, *v), (x,))
        if ACTIVATIONS[name].inplace:  # in place on a non-leaf (the graph goes through it)
            assert gradcheck(lambda t, v=vals: f(t * 1.0, *v, inplace=True), (x,))


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gradcheck_gelu(approximate):
    assert gradcheck(lambda t: AF.gelu(t, approximate), (_x().requires_grad_(True),))


def test_gradcheck_along_an_axis():
    x = _x((3, 4, 6)).requires_grad_(True)
    for f in (AF.softmax, AF.log_softmax, AF.softmin):
        for dim in (0, 1, -1):
            assert gradcheck(lambda t, f=f, d=dim: f(t, d), (x,))
    assert gradcheck(lambda t: AF.softmax(t, -1, dtype=torch.float64), (x,))
    for dim in (1, -1):
        assert gradcheck(lambda t, d=dim: AF.glu(t, d), (x,))
    assert gradcheck(lambda t: AF.maxout(t, 2, -1), (x,))
    assert gradcheck(lambda t: AF.maxout(t, 2, 1), (x,))
    for w in (torch.linspace(0.1, 0.5, 4), torch.tensor([0.25])):
        w = w.double().requires_grad_(True)
        assert gradcheck(AF.prelu, (x, w))

    def rrelu(t):
        torch.manual_seed(0)  # the same slopes at every evaluation
        return AF.rrelu(t, 0.1, 0.4, training=True)

    assert gradcheck(rrelu, (x,))
    assert gradcheck(lambda t: AF.rrelu(t * 1.0, 0.1, 0.4, False, True), (x,))


def _smooth(spec, args):
    """A loss case moved off its kinks (test_losses puts values on them) for gradcheck."""
    rng = np.random.default_rng(1)
    args = [np.array(a) for a in args]
    for i in spec.grads:
        args[i] = args[i] + rng.uniform(0.05, 0.2, args[i].shape)
    if spec.name == "binary_cross_entropy":
        args[0] = np.clip(args[0], 0.02, 0.98)
    if spec.name == "gaussian_nll_loss":
        args[2] = np.abs(args[2]) + 0.1
    return args


LOSS_CASES = [
    pytest.param(spec, opt, id=f"{spec.name}-{i}")
    for spec in LOSS_SPECS
    for i, opt in enumerate(spec.opts)
]


def _torch_kw(kw):
    return {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in kw.items()}


@pytest.mark.parametrize("spec,opt", LOSS_CASES)
def test_gradcheck_every_loss(spec, opt):
    args, kw = build(spec, opt, np.float64)
    args = [torch.from_numpy(a) for a in _smooth(spec, args)]
    kw = _torch_kw(kw)
    fn = getattr(AF, spec.name)
    for red in spec.reductions:
        diff = [args[i].clone().requires_grad_(True) for i in spec.grads]

        def call(*xs, red=red):
            full = list(args)
            for i, x in zip(spec.grads, xs, strict=True):
                full[i] = x
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return fn(*full, reduction=red, **kw)

        assert gradcheck(call, tuple(diff)), f"{spec.name} {red}"
        out = call(*diff)
        assert out.grad_fn is not None and "LossBackward" in type(out.grad_fn).__name__


# ----------------------------------------------------------------------------- against torch
@pytest.mark.parametrize("dt", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", NAMES)
def test_elementwise_values_and_gradients_match_torch(name, dt):
    f, tf, sets = _fns(name)
    if name == "threshold":
        sets = [OTHER[name]]
    tol = dict(rtol=1e-5, atol=1e-6) if dt == torch.float32 else dict(rtol=1e-10, atol=1e-12)
    gtol = tol
    if dt == torch.float64 and name in ("celu", "hardsigmoid"):
        # torch's float64 backward rounds a constant to float32 (1/6; celu's 1/alpha): its
        # gradients are off by ~1e-7 relative where fastact's are exact to an ulp
        gtol = dict(rtol=3e-7, atol=1e-12)
    for vals in sets:
        x = _x(dtype=dt).requires_grad_(True)
        tx = x.detach().clone().requires_grad_(True)
        g = _x(seed=1, dtype=dt)
        y, ty = f(x, *vals), tf(tx, *vals)
        torch.testing.assert_close(y, ty, **tol)
        np.testing.assert_array_equal(
            y.detach().numpy(), getattr(fastact, name)(x.detach().numpy(), *vals)
        )
        y.backward(g)
        ty.backward(g)
        torch.testing.assert_close(x.grad, tx.grad, **gtol)
        assert "ElementwiseBackward" in type(y.grad_fn).__name__


def test_axis_values_and_gradients_match_torch():
    x = _x((3, 4, 6)).float().requires_grad_(True)
    tx = x.detach().clone().requires_grad_(True)
    w = torch.linspace(0.1, 0.5, 4).requires_grad_(True)
    tw = w.detach().clone().requires_grad_(True)
    pairs = [
        (AF.softmax(x, 1), F.softmax(tx, 1)),
        (AF.log_softmax(x, -1), F.log_softmax(tx, -1)),
        (AF.softmin(x, 0), F.softmin(tx, 0)),
        (AF.glu(x, -1), F.glu(tx, -1)),
        (AF.prelu(x, w), F.prelu(tx, tw)),
        (AF.rrelu(x), F.rrelu(tx)),
    ]
    for y, ty in pairs:
        torch.testing.assert_close(y, ty, rtol=1e-5, atol=1e-6)
    g = [torch.randn(y.shape, generator=torch.Generator().manual_seed(k)) for k, (y, _) in
         enumerate(pairs)]  # fmt: skip
    torch.autograd.backward([y for y, _ in pairs], g)
    torch.autograd.backward([ty for _, ty in pairs], g)
    torch.testing.assert_close(x.grad, tx.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(w.grad, tw.grad, rtol=1e-5, atol=1e-5)


def test_rrelu_training_slopes_follow_torchs_seed():
    x = _x((5, 8)).float()
    torch.manual_seed(3)
    a = AF.rrelu(x, training=True)
    torch.manual_seed(3)
    b = AF.rrelu(x, training=True)
    c = AF.rrelu(x, training=True)
    assert torch.equal(a, b) and not torch.equal(b, c)
    neg = x < 0
    slopes = a[neg] / x[neg]
    assert torch.all((slopes >= 1 / 8) & (slopes <= 1 / 3)) and torch.equal(a[~neg], x[~neg])


@pytest.mark.parametrize("spec,opt", LOSS_CASES)
def test_every_loss_matches_torch(spec, opt):
    args, kw = build(spec, opt, np.float32)
    kw = _torch_kw(kw)
    for red in spec.reductions:
        xs = [torch.from_numpy(a.copy()) for a in args]
        txs = [torch.from_numpy(a.copy()) for a in args]
        for i in spec.grads:
            xs[i].requires_grad_(True)
            txs[i].requires_grad_(True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            y = getattr(AF, spec.name)(*xs, reduction=red, **kw)
            ty = getattr(F, spec.name)(*txs, reduction=red, **kw)
        torch.testing.assert_close(y, ty, rtol=2e-5, atol=2e-6, equal_nan=True)
        if y.isnan().any():
            continue
        g = torch.rand(y.shape, generator=torch.Generator().manual_seed(0)) + 0.5
        y.backward(g)
        ty.backward(g)
        for i in spec.grads:
            torch.testing.assert_close(xs[i].grad, txs[i].grad, rtol=1e-4, atol=1e-5)


def test_loss_with_a_target_that_requires_grad_is_torchs():
    x = _x().requires_grad_(True)
    t = _x(seed=2).requires_grad_(True)
    loss = AF.mse_loss(x, t)
    assert type(loss.grad_fn).__name__ == "MseLossBackward0"
    loss.backward()
    torch.testing.assert_close(t.grad, -x.grad)


# ----------------------------------------------------------------------------- semantics
def test_fallback_to_torch_for_what_fastact_does_not_take():
    x = _x()
    for t in (x.half(), x.bfloat16(), torch.empty(4, 6, device="meta")):
        y = AF.gelu(t)
        assert y.dtype == t.dtype and y.device == t.device
        if t.device.type == "cpu":
            assert torch.equal(y, F.gelu(t))
            assert torch.equal(AF.cross_entropy(t, torch.zeros(4, dtype=torch.long)),
                               F.cross_entropy(t, torch.zeros(4, dtype=torch.long)))  # fmt: skip
    # a strided (not dense) tensor is copied; in place on it is torch's (a copy would be
    # wrong); a transposed one keeps its layout (test_elementwise_keeps_a_dense_layout)
    s = x[:, ::2]
    torch.testing.assert_close(AF.silu(s), F.silu(s))
    u = x.clone()[:, ::2]
    ref = F.silu(u.clone())
    assert AF.silu(u, inplace=True) is u
    torch.testing.assert_close(u, ref)


INDEX_DTYPES = [torch.int64, torch.uint8, torch.int32, torch.int16, torch.int8, torch.uint16,
                 torch.uint32, torch.uint64, torch.bool]  # fmt: skip


@pytest.mark.parametrize("dtype", INDEX_DTYPES, ids=str)
def test_class_index_target_dtypes_like_torch(dtype):
    """cross_entropy / nll_loss (functional and modules) take the class-index dtypes torch
    takes: int64, uint8 without spatial dimensions; the others (int32, ...) raise torch's
    RuntimeError ("expected target dtype to be Long or Byte"), where the twin took int32
    targets. fastact.losses keeps taking any integer NumPy dtype."""
    rng = np.random.default_rng(0)
    x = torch.tensor(rng.standard_normal((4, 5)), requires_grad=True)
    xs = torch.tensor(rng.standard_normal((4, 5, 3)), requires_grad=True)
    cases = [(x, torch.tensor([0, 1, 4, 1])), (xs, torch.tensor(rng.integers(0, 2, (4, 3))))]
    calls = [("cross_entropy", AF.cross_entropy, F.cross_entropy),
             ("nll_loss", AF.nll_loss, F.nll_loss),
             ("CrossEntropyLoss", fnn.CrossEntropyLoss(), torch.nn.CrossEntropyLoss()),
             ("NLLLoss", fnn.NLLLoss(), torch.nn.NLLLoss())]  # fmt: skip
    for inp, y in cases:
        y = y.to(dtype)
        for name, ours, theirs in calls:
            label = f"{name} {tuple(inp.shape)} {dtype}"
            try:
                want = theirs(inp, y)
            except RuntimeError as e:
                with pytest.raises(RuntimeError, match=str(e).split(",")[0]):
                    ours(inp, y)
                continue
            got = ours(inp, y)
            torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12, msg=label)
            got_g, want_g = (torch.autograd.grad(v, inp)[0] for v in (got, want))
            torch.testing.assert_close(got_g, want_g, rtol=1e-12, atol=1e-12, msg=label)
        # the NumPy API: any integer dtype holds class indices (documented "integer")
        if dtype not in (torch.bool,):
            yn = y.numpy()
            want_n = L.cross_entropy(inp.detach().numpy(), yn.astype(np.int64))
            assert L.cross_entropy(inp.detach().numpy(), yn) == want_n
            want_n = L.nll_loss(inp.detach().numpy(), yn.astype(np.int64))
            assert L.nll_loss(inp.detach().numpy(), yn) == want_n


@pytest.mark.parametrize("dt", [torch.float32, torch.float64])
def test_large_tensors_in_parallel_against_torch(dt, monkeypatch):
    """Past the parallel threshold and the huge-page size: the parallel loops over the
    tensors' memory, out of place and in place (from the output, and from a copy of the
    input), forward and backward, with an expanded upstream gradient."""
    monkeypatch.setattr(AF, "num_threads", lambda: 2)  # the parallel loops on any machine
    monkeypatch.setattr(AF, "HUGE_PAGES_FROM", 1 << 22)  # outputs advised (4 MB, not 32)
    n = (1 << 20) + 3
    assert n >= max(ACTIVATIONS[k].threshold for k in ("relu", "sigmoid", "silu", "leaky_relu"))
    tol = dict(rtol=1e-5, atol=1e-6) if dt == torch.float32 else dict(rtol=1e-10, atol=1e-12)
    base = _x((n,), dtype=dt)
    g = _x((n,), dtype=dt, seed=1)
    for name, vals, inplace in (
        ("relu", (), False),
        ("sigmoid", (), False),
        ("silu", (), False),
        ("leaky_relu", (0.2,), True),
        ("silu", (), True),
    ):
        f, tf = getattr(AF, name), getattr(F, name)
        x = base.clone().requires_grad_(True)
        tx = base.clone().requires_grad_(True)
        kw = {"inplace": True} if inplace else {}
        y = f(x * 1.0, *vals, **kw)
        ty = tf(tx * 1.0, *vals, **kw)
        torch.testing.assert_close(y, ty, **tol)
        (y * g).sum().backward()
        (ty * g).sum().backward()
        torch.testing.assert_close(x.grad, tx.grad, **tol)
        x.grad = tx.grad = None
        y = f(x, *vals) if not inplace else f(x * 1.0, *vals, **kw)
        y.sum().backward()  # an expanded (stride 0) upstream gradient
        ty = tf(tx, *vals) if not inplace else tf(tx * 1.0, *vals, **kw)
        ty.sum().backward()
        torch.testing.assert_close(x.grad, tx.grad, **tol)
    with torch.no_grad():
        # against torch's float64 gelu: torch's own float32 gelu differs from it by up to 0.13%
        # in the tail with its AVX-512 kernels (11 of these elements above the tolerance on an
        # Intel Xeon), fastact's by a few ULP
        torch.testing.assert_close(AF.gelu(base), F.gelu(base.double()).to(dt), **tol)


def test_large_outputs_are_advised_into_huge_pages(monkeypatch):
    calls = []
    monkeypatch.setattr(AF, "_MADVISE", lambda *a: calls.append(a) or 0)
    monkeypatch.setattr(AF, "HUGE_PAGES_FROM", 1 << 22)  # 4 MB instead of 32 (test memory)
    x = _x((1 << 20,), dtype=torch.float32)
    y = AF.relu(x)
    ((start, length, advice),) = calls
    assert advice == 14 and start % (1 << 21) == 0 and length % (1 << 21) == 0 and length
    assert y.data_ptr() <= start and start + length <= y.data_ptr() + 4 * y.numel()
    assert torch.equal(y, F.relu(x))
    calls.clear()
    AF.relu(_x((1000,)))  # small: no advice
    assert not calls


def test_elementwise_function_takes_only_what_its_loops_can():
    """The Function runs its loops on raw memory: it refuses (before anything is written)
    what the wrappers send to torch or copy."""
    op = ACTIVATIONS["relu"]
    x = _x()
    for t in (x[:, ::2], x.expand(2, 4, 6), x.half(), torch._neg_view(x)):
        with pytest.raises(TypeError, match="dense CPU tensor"):
            AF.Elementwise.apply(t, op, (), False)


def test_lazily_negated_tensors_are_computed_from_their_values():
    """A negative-bit view (``torch._neg_view``) keeps the un-negated values in memory: the
    wrappers give it to torch, and a negated upstream gradient is resolved first."""
    x = _x()
    v = torch._neg_view(x)
    assert torch.equal(AF.relu(v), F.relu(-x))
    xr = x.clone().requires_grad_(True)
    y = AF.silu(torch._neg_view(xr))
    torch.testing.assert_close(y, F.silu(-x))
    a = x.clone().requires_grad_(True)
    g = _x(seed=1)
    AF.sigmoid(a).backward(torch._neg_view(g))
    torch.testing.assert_close(a.grad, -g * torch.sigmoid(x) * torch.sigmoid(-x))
    b = x.clone().requires_grad_(True)
    AF.softmax(b, dim=1).backward(torch._neg_view(g))
    tb = x.clone().requires_grad_(True)
    F.softmax(tb, dim=1).backward(-g)
    torch.testing.assert_close(b.grad, tb.grad)


def test_in_place_on_a_leaf_that_requires_grad_is_refused_before_writing():
    x = _x().requires_grad_(True)
    before = x.detach().clone()
    for call in (
        lambda: AF.relu_(x),
        lambda: AF.elu(x, 1.0, True),
        lambda: AF.rrelu_(x, training=True),
    ):
        with pytest.raises(RuntimeError, match="leaf Variable"):
            call()
    assert torch.equal(x.detach(), before)


def test_no_graph_without_grad_and_in_place_bumps_the_version():
    x = _x().requires_grad_(True)
    with torch.no_grad():
        y = AF.gelu(x)
        assert y.grad_fn is None and not y.requires_grad
        z = x * 1.0
        v = z._version
        assert AF.relu_(z) is z and z._version > v
    torch.testing.assert_close(y, F.gelu(x.detach()))
    a = torch.randn(5)
    v = a._version
    AF.hardtanh(a, inplace=True)
    assert a._version > v and a.abs().max() <= 1


def test_saved_tensors_are_torchs_output_or_input():
    # sigmoid saves its output: changing the input afterwards is fine, as in torch
    a = _x().requires_grad_(True)
    b = a * 2
    y = AF.sigmoid(b)
    b.add_(1)
    y.sum().backward()
    torch.testing.assert_close(
        a.grad, 2 * torch.sigmoid(2 * a.detach()) * torch.sigmoid(-2 * a.detach())
    )
    # gelu saves its input: torch refuses a backward through a modified input
    c = a * 2
    y = AF.gelu(c)
    c.add_(1)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()


def test_double_backward_is_torchs():
    """create_graph=True: the backward is torch's differentiable one (from the same saved
    tensors), so second derivatives are right (not silently zero), and where torch has none
    (hardsigmoid) it says so, as torch does."""
    x = _x((3, 4)).requires_grad_(True)
    w = torch.linspace(0.1, 0.4, 4, dtype=torch.float64).requires_grad_(True)
    y = torch.randint(0, 4, (3,))
    pairs = [
        *(
            (lambda t, n=n: getattr(AF, n)(t, *OTHER.get(n, ())),
             lambda t, n=n: getattr(F, n)(t, *OTHER.get(n, ())))
            for n in NAMES if n != "threshold"
        ),
        (lambda t: AF.threshold(t * 1.0, 0.3, -1.5, True), lambda t: F.threshold(t, 0.3, -1.5)),
        (lambda t: AF.elu(t * 1.0, 0.7, True), lambda t: F.elu(t, 0.7)),
        (lambda t: AF.gelu(t, "tanh"), lambda t: F.gelu(t, approximate="tanh")),
        (lambda t: AF.softmin(t, 1), lambda t: F.softmin(t, 1)),
        (lambda t: AF.log_softmax(t, 0), lambda t: F.log_softmax(t, 0)),
        (lambda t: AF.glu(t, 1), lambda t: F.glu(t, 1)),
        (lambda t: AF.maxout(t, 2, 1), None),
        (lambda t: AF.prelu(t, w), lambda t: F.prelu(t, w)),
        (lambda t: AF.cross_entropy(t, y, label_smoothing=0.1),
         lambda t: F.cross_entropy(t, y, label_smoothing=0.1)),
        (lambda t: AF.mse_loss(t, torch.ones(3, 4, dtype=torch.float64), reduction="none"),
         None),
    ]  # fmt: skip
    for f, tf in pairs:
        try:
            torch_has_it = tf is None or torch.autograd.gradgradcheck(tf, (x,))
        except RuntimeError as exc:
            assert "not implemented" in str(exc)
            torch_has_it = False
        if torch_has_it:
            assert torch.autograd.gradgradcheck(f, (x,))
        else:
            with pytest.raises(RuntimeError, match="not implemented"):
                torch.autograd.gradgradcheck(f, (x,))
    (g,) = torch.autograd.grad(AF.gelu(x).sum(), x, create_graph=True)
    (h,) = torch.autograd.grad(g.sum(), x)
    (tg,) = torch.autograd.grad(F.gelu(x).sum(), x, create_graph=True)
    torch.testing.assert_close(h, torch.autograd.grad(tg.sum(), x)[0])
    # in place: through the copy of the input recorded in the graph, as torch's clone
    # (test_in_place_forms_save_what_torchs_save); Elementwise.apply given no copy refuses
    with pytest.raises(RuntimeError, match="double backward through an in-place"):
        (g,) = torch.autograd.grad(
            AF.Elementwise.apply(x * 1.0, ACTIVATIONS["silu"], (), True).sum(),
            x,
            create_graph=True,
        )
        torch.autograd.grad(g.sum(), x)


# ----------------------------------------------------------------------------- modules
MODULE_ARGS = {
    "LeakyReLU": (0.2,),
    "Hardtanh": (-0.5, 2.0),
    "ELU": (0.7,),
    "CELU": (1.3,),
    "Softplus": (2.0, 5.0),
    "Softshrink": (0.4,),
    "Hardshrink": (0.4,),
    "Threshold": (0.3, -1.5),
    "GELU": ("tanh",),
    "GLU": (1,),
    "PReLU": (4,),
    "Softmax": (1,),
    "LogSoftmax": (0,),
    "Softmin": (-1,),
}


@pytest.mark.parametrize("name", [n for n in fnn.ACTIVATION_MODULES if n != "Maxout"])
def test_activation_modules_are_torchs_with_fastacts_forward(name):
    cls, tcls = fnn.ACTIVATION_MODULES[name], getattr(torch.nn, name)
    assert issubclass(cls, tcls) and inspect.signature(cls) == inspect.signature(tcls)
    args = MODULE_ARGS.get(name, ())
    m, tm = cls(*args), tcls(*args)
    m.load_state_dict(tm.state_dict())
    assert repr(m) == repr(tm)
    x = _x((3, 4, 6)).float().requires_grad_(True)
    tx = x.detach().clone().requires_grad_(True)
    m.eval(), tm.eval()
    y, ty = m(x), tm(tx)
    torch.testing.assert_close(y, ty, rtol=1e-5, atol=1e-6)
    assert y.grad_fn is not None and type(y.grad_fn) is not type(ty.grad_fn)
    y.backward(torch.ones_like(y))
    ty.backward(torch.ones_like(ty))
    torch.testing.assert_close(x.grad, tx.grad, rtol=1e-5, atol=1e-5)
    for p, q in zip(m.parameters(), tm.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-5)
    if "inplace" in inspect.signature(tcls).parameters:
        mi = cls(*args, inplace=True).eval()
        z = x.detach().clone()
        assert mi(z) is z
        torch.testing.assert_close(z, ty.detach(), rtol=1e-5, atol=1e-6)


def test_maxout_softmax2d_and_convert():
    x = _x((2, 6, 3, 3)).float()
    torch.testing.assert_close(fnn.Maxout(3)(x), x.reshape(2, 2, 3, 3, 3).amax(2))
    torch.testing.assert_close(fnn.Softmax2d()(x), torch.nn.Softmax2d()(x))
    with pytest.raises(ValueError, match="3D or 4D"):
        fnn.Softmax2d()(x[0, 0])
    nn = torch.nn
    model = nn.Sequential(nn.Linear(3, 4), nn.GELU(), nn.ReLU(True), nn.Sequential(nn.Tanh()),
                          nn.CrossEntropyLoss())  # fmt: skip
    twin = copy.deepcopy(model)
    assert fnn.convert(model) is model
    assert [type(m) for m in model.modules()][2:] == [fnn.GELU, fnn.ReLU, torch.nn.Sequential,
                                                       fnn.Tanh, fnn.CrossEntropyLoss]  # fmt: skip
    assert model[2].inplace and isinstance(model[1], torch.nn.GELU)
    xi = torch.randn(5, 3)
    torch.testing.assert_close(model[:4](xi), twin[:4](xi))


LOSS_MODULE_ARGS = {
    "CrossEntropyLoss": dict(weight=torch.linspace(0.5, 1.5, 5), label_smoothing=0.1),
    "NLLLoss": dict(weight=torch.linspace(0.5, 1.5, 5), ignore_index=1),
    "BCEWithLogitsLoss": dict(pos_weight=torch.full((5,), 2.0)),
    "HuberLoss": dict(delta=0.5),
    "SmoothL1Loss": dict(beta=0.5),
    "TripletMarginLoss": dict(margin=0.5, p=1.0, swap=True),
    "MarginRankingLoss": dict(margin=0.2),
    "KLDivLoss": dict(reduction="batchmean", log_target=True),
    "PoissonNLLLoss": dict(full=True),
    "GaussianNLLLoss": dict(full=True),
}


@pytest.mark.parametrize("spec,opt", [pytest.param(s, s.opts[0], id=s.name) for s in LOSS_SPECS])
def test_loss_modules_are_torchs_with_fastacts_forward(spec, opt):
    name = next(
        n for n, c in fnn.LOSS_MODULES.items() if c.__doc__ and f".{spec.name}`" in c.__doc__
    )
    cls, tcls = fnn.LOSS_MODULES[name], getattr(torch.nn, name)
    assert issubclass(cls, tcls) and inspect.signature(cls) == inspect.signature(tcls)
    kw = LOSS_MODULE_ARGS.get(name, {})
    args, _ = build(spec, opt, np.float32)
    for red in ("mean", "none"):
        m, tm = (
            cls(**kw) if "reduction" in kw else cls(**kw, reduction=red),
            tcls(**kw) if "reduction" in kw else tcls(**kw, reduction=red),
        )
        xs = [torch.from_numpy(a.copy()) for a in args]
        txs = [torch.from_numpy(a.copy()) for a in args]
        for i in spec.grads:
            xs[i].requires_grad_(True)
            txs[i].requires_grad_(True)
        y, ty = m(*xs), tm(*txs)
        torch.testing.assert_close(y, ty, rtol=2e-5, atol=2e-6)
        assert "LossBackward" in type(y.grad_fn).__name__
        y.sum().backward()
        ty.sum().backward()
        for i in spec.grads:
            torch.testing.assert_close(xs[i].grad, txs[i].grad, rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------- training
def _cnn(seed: int, nn) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 6, 3),
        nn.ReLU(inplace=True),
        torch.nn.Conv2d(6, 8, 3, stride=2),
        nn.GELU(),
        torch.nn.Flatten(),
        torch.nn.Linear(8 * 3 * 3, 16),
        nn.SiLU(),
        torch.nn.Linear(16, 4),
    )


@pytest.mark.parametrize("optimizer", ["torch.optim.SGD", "fastact.torch.optim.SGD"])
def test_cnn_trained_with_fastact_modules_matches_all_torch(optimizer):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 1, 9, 9, generator=g)
    y = (x.flatten(1) @ torch.randn(81, 4, generator=g)).argmax(1)  # a learnable labelling
    model, ref = _cnn(0, fnn), _cnn(0, torch.nn)
    assert any(isinstance(m, fnn.GELU) for m in model.modules())
    opt_cls = FO.SGD if optimizer.startswith("fastact") else torch.optim.SGD
    opt = opt_cls(model.parameters(), lr=0.1, momentum=0.9)
    t_opt = torch.optim.SGD(ref.parameters(), lr=0.1, momentum=0.9)
    crit, t_crit = (
        fnn.CrossEntropyLoss(label_smoothing=0.05),
        torch.nn.CrossEntropyLoss(label_smoothing=0.05),
    )
    losses = []
    for step in range(40):
        idx = torch.randperm(64, generator=g)[:32]
        for m, o, c in ((model, opt, crit), (ref, t_opt, t_crit)):
            o.zero_grad()
            loss = c(m(x[idx]), y[idx])
            loss.backward()
            o.step()
            losses.append(loss.item())
        assert abs(losses[-2] - losses[-1]) <= 1e-4 * abs(losses[-1]), f"step {step}: {losses[-2:]}"
        for p, q in zip(model.parameters(), ref.parameters(), strict=True):
            torch.testing.assert_close(p, q, rtol=1e-4, atol=2e-5)
    assert sum(losses[-10:]) / 10 < 0.6 * losses[0]  # it learned (the last 5 steps, twice)


def test_loss_warnings_once_from_the_callers_line():
    """torch's warnings of a functional loss (broadcast target, kl_div's 'mean', deprecated
    size_average) come once, attributed to the line that called the functional (as torch's
    own: its stacklevel=2), not repeated by fastact's plain call underneath."""
    import fastact.torch.autograd as AF

    x = torch.randn(4, 3, requires_grad=True)
    calls = [
        (lambda: AF.mse_loss(x, torch.randn(3)), "target size"),
        (lambda: AF.kl_div(x, torch.rand(4, 3)), "batchmean"),
        (lambda: AF.l1_loss(x, torch.randn(4, 3), size_average=True), "size_average"),
    ]
    for call, text in calls:
        with warnings.catch_warnings(record=True) as rec:
            warnings.simplefilter("always")
            call()
        assert len(rec) == 1 and text in str(rec[0].message), [str(r.message) for r in rec]
        assert rec[0].filename == __file__


@pytest.mark.parametrize(
    "name", ["MSELoss", "L1Loss", "SmoothL1Loss", "KLDivLoss", "BCEWithLogitsLoss",
             "PoissonNLLLoss", "GaussianNLLLoss", "CrossEntropyLoss", "HuberLoss",
             "SoftMarginLoss", "HingeEmbeddingLoss"],
)  # fmt: skip
def test_loss_modules_promote_a_wider_target_like_torch(name):
    """float32 input, float64 target: torch's loss is float64 (the input promoted; huber,
    soft margin and hinge embedding keep float32); fastact's computed in float32 with the
    target rounded to it. The input's gradient stays float32."""
    rng = np.random.default_rng(3)
    x = torch.tensor(rng.standard_normal((4, 3)), dtype=torch.float32, requires_grad=True)
    t = torch.tensor(rng.uniform(0.05, 1.0, (4, 3)))
    if name == "CrossEntropyLoss":
        t = t / t.sum(1, keepdim=True)
    keeps = name in ("HuberLoss", "SoftMarginLoss", "HingeEmbeddingLoss")
    if name in ("SoftMarginLoss", "HingeEmbeddingLoss"):
        t = torch.where(t > 0.5, 1.0, -1.0).double()
    args = (x, t, torch.ones(4, 3)) if name == "GaussianNLLLoss" else (x, t)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # KLDivLoss's 'mean' warning
        ours = getattr(fnn, name)()(*args)
        theirs = getattr(torch.nn, name)()(*args)
    assert ours.dtype == theirs.dtype == (torch.float32 if keeps else torch.float64)
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-7)
    (g,) = torch.autograd.grad(ours, x)
    assert g.dtype == torch.float32


# ----------------------------------------------------------------------------------------
# found by fuzzing fastact inside torch programs (2026-12-05, sixth session)
# ----------------------------------------------------------------------------------------
def test_torch_compile_runs_torchs_functions():
    """Under torch.compile the functions defer to torch's (Dynamo cannot see into numba's
    kernels): it guarded a kernel lookup by type only, and after a training call a no_grad
    call of a compiled model ran SiLU's kernel for ReLU (outputs -0.17 after a ReLU); a first
    compiled call of leaky_relu raised an internal Dynamo error."""
    torch.manual_seed(1)
    m = torch.nn.Sequential(torch.nn.Linear(4, 4), fnn.SiLU(), torch.nn.Linear(4, 4), fnn.ReLU())
    ref = torch.nn.Sequential(
        torch.nn.Linear(4, 4), torch.nn.SiLU(), torch.nn.Linear(4, 4), torch.nn.ReLU()
    )
    ref.load_state_dict(m.state_dict())
    x = torch.randn(3, 4)
    cm = torch.compile(m, backend="eager")
    cm(x).sum().backward()
    with torch.no_grad():
        y = cm(x)
    torch.testing.assert_close(y, ref(x))
    lr = torch.compile(AF.leaky_relu, backend="eager")
    v = torch.randn(6)
    torch.testing.assert_close(lr(v, 0.1), torch.nn.functional.leaky_relu(v, 0.1))


def test_forward_mode_ad_and_torch_func():
    """Inside a forward-AD level the tangent was dropped (None); vmap/jvp raised "Cannot access
    data pointer": torch's functions run there."""
    import torch.autograd.forward_ad as fwAD

    x, v = torch.randn(5), torch.ones(5)
    for name in ("silu", "relu", "tanh", "gelu"):
        with fwAD.dual_level():
            t = fwAD.unpack_dual(getattr(AF, name)(fwAD.make_dual(x, v))).tangent
        with fwAD.dual_level():
            want = fwAD.unpack_dual(getattr(torch.nn.functional, name)(fwAD.make_dual(x, v)))
        torch.testing.assert_close(t, want.tangent)
    xs = torch.randn(3, 4)
    torch.testing.assert_close(torch.func.vmap(AF.relu)(xs), torch.relu(xs))
    _, jt = torch.func.jvp(AF.silu, (x,), (v,))
    _, want_t = torch.func.jvp(torch.nn.functional.silu, (x,), (v,))
    torch.testing.assert_close(jt, want_t)


def test_loss_gradient_is_not_the_saved_tensor():
    """A loss's backward handed out its saved gradient itself (grad_output 1): changing the
    returned gradient (.data, or an in-place hook) changed, or broke, the next backward of
    the same graph (retain_graph=True); torch's are independent."""
    torch.manual_seed(0)
    x = torch.randn(4, 3, requires_grad=True)
    t = torch.randn(4, 3)
    for f in (AF.mse_loss, AF.l1_loss):
        loss = f(x, t)
        (g,) = torch.autograd.grad(loss, x, retain_graph=True)
        want = g.clone()
        g.data.zero_()
        (g2,) = torch.autograd.grad(loss, x, retain_graph=True)
        torch.testing.assert_close(g2, want)
        g2.clamp_(-0.01, 0.01)
        (g3,) = torch.autograd.grad(loss, x)
        torch.testing.assert_close(g3, want)


# ----------------------------------------------------------------------------------------
# found by fuzzing fastact inside torch programs (2026-12-06, seventh session)
# ----------------------------------------------------------------------------------------
INPLACE_NAMES = [n for n in NAMES if ACTIVATIONS[n].inplace]


def _inplace_call(lib, name, t):
    vals = OTHER.get(name, (0.3, -1.5) if name == "threshold" else ())
    return getattr(lib, name)(t, *vals, inplace=True)


@pytest.mark.parametrize("name", INPLACE_NAMES)
def test_in_place_forms_save_what_torchs_save(name):
    """In-place Hardtanh / ReLU6 / Threshold saved their output, so a later in-place op on
    it (``y.mul_(3)``, ``y += r``) made the backward raise "modified by an inplace
    operation"; torch's save a copy of the input (its clone, in the graph). Now each in-place
    form works exactly where torch's does (relu_, leaky_relu_, elu_, celu_, selu_ save the
    output: both raise), with torch's gradient, and double backward through the copy is
    torch's."""
    base = _x((3, 5))
    res = {}
    for lib in (F, AF):
        x = base.clone().requires_grad_(True)
        y = _inplace_call(lib, name, x * 1.0)
        y.mul_(3)
        try:
            (g,) = torch.autograd.grad(y.sum(), x)
            res[lib] = g
        except RuntimeError as exc:
            assert "modified by an inplace operation" in str(exc)
            res[lib] = None
    if res[F] is None:
        assert res[AF] is None
    else:
        torch.testing.assert_close(res[AF], res[F])
    # double backward of the in-place form, against torch's (hardsigmoid: none in torch)
    x = base.clone().requires_grad_(True)
    got, want = [], []
    for lib, out in ((F, want), (AF, got)):
        (g,) = torch.autograd.grad((_inplace_call(lib, name, x * 2.0) ** 2).sum(), x,
                                   create_graph=True)  # fmt: skip
        try:
            out += [g, torch.autograd.grad(g.sum(), x)[0]]
        except RuntimeError as exc:
            assert "not implemented" in str(exc)
            out.append(None)
    if want[-1] is None:
        assert got[-1] is None
    else:
        torch.testing.assert_close(got, want)
        assert torch.autograd.gradgradcheck(lambda t: _inplace_call(AF, name, t * 1.0), (x,))


def test_rrelu_in_place_without_grad_returns_its_input():
    """RReLU(inplace=True) in training mode under no_grad on a tensor that requires grad
    returned another tensor object (same storage, requires_grad False); torch's returns the
    input itself, its version bumped."""
    for leaf in (True, False):
        a = torch.full((4,), -1.0, requires_grad=True)
        t = a if leaf else a * 1
        v = t._version
        with torch.no_grad():
            y = fnn.RReLU(inplace=True)(t)
        assert y is t and y.requires_grad and t._version > v
        assert torch.all((t > -0.34) & (t < -0.12))
    # the same slopes with and without a graph node (one draw from torch's generator each)
    x = _x((4, 6))
    torch.manual_seed(5)
    with torch.no_grad():
        a = AF.rrelu(x.clone().requires_grad_(True), training=True)
    torch.manual_seed(5)
    b = AF.rrelu(x.clone().requires_grad_(True), training=True)
    assert torch.equal(a, b.detach())


def test_rrelu_double_backward_is_connected_as_torchs():
    """RReLU's training-mode backward (grad * noise) was not connected to the input with
    create_graph=True: a second derivative w.r.t. the input raised; torch's is zero."""
    for inplace in (False, True):
        out = {}
        for M in (torch.nn.RReLU, fnn.RReLU):
            x = torch.tensor([-1.0, 2.0, -0.5], requires_grad=True)
            torch.manual_seed(0)
            y = M(inplace=inplace)(x * 1.0)
            (gx,) = torch.autograd.grad(y.sum(), x, create_graph=True)
            assert gx.requires_grad
            (gg,) = torch.autograd.grad((gx * gx).sum(), x)
            out[M] = gg
        assert torch.equal(out[fnn.RReLU], out[torch.nn.RReLU])
    # first-order values unchanged: grad * noise
    x = _x((3, 4)).requires_grad_(True)
    y = AF.rrelu(x, training=True)
    (g,) = torch.autograd.grad(y.sum(), x, create_graph=True)
    torch.testing.assert_close(g.detach(), (y / x).detach())


def test_maxout_ties_go_to_the_first_maximum_on_every_path():
    """Tied maxima: the kernel routes the gradient to the first one; create_graph=True and
    the torch fallback (bfloat16, ...) used amax, which splits it among the tied entries."""
    x = torch.tensor([[1.0, 1.0, 3.0, 2.0, float("nan"), 0.0, float("nan"), 5.0]])
    want = torch.tensor([[1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0]])  # NaN: the first NaN
    m = fnn.Maxout(2, dim=1)
    for dt, create in ((torch.float64, False), (torch.float64, True), (torch.bfloat16, False)):
        a = x.to(dt).requires_grad_(True)
        (g,) = torch.autograd.grad(m(a).sum(), a, create_graph=create)
        assert torch.equal(g.float(), want), (dt, create)
    t = torch.randn(3, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda u: AF.maxout(u, 2, 1), (t,))


def test_jit_trace_runs_torchs_functions():
    """torch.jit.trace of a model with fastact modules crashed (numba's TypingError: numel()
    is a tensor under tracing; MSELoss: unordered_map::at); traced, torch's functions run."""
    torch.manual_seed(0)
    x, t = torch.randn(4, 8), torch.randn(4, 8)
    for model, args in (
        (torch.nn.Sequential(torch.nn.Linear(8, 8), fnn.ReLU(), fnn.GELU()), (x,)),
        (torch.nn.Sequential(torch.nn.Linear(8, 8), fnn.SiLU(inplace=True)), (x,)),
        (fnn.MSELoss(), (x, t)),
        (fnn.Softmax(dim=1), (x,)),
    ):
        traced = torch.jit.trace(model, args)
        x2 = torch.randn(4, 8)
        args2 = (x2,) + args[1:]
        torch.testing.assert_close(traced(*args2), model(*args2))


def test_bce_with_logits_loss_has_the_targets_dtype():
    """torch's binary_cross_entropy_with_logits returns the loss in the target's dtype (a
    float64 input, a float32 target: float32); fastact's promoted."""
    torch.manual_seed(0)
    for xdt, tdt in ((torch.float64, torch.float32), (torch.float32, torch.float16),
                     (torch.float32, torch.float64), (torch.float64, torch.float64)):  # fmt: skip
        for red in ("mean", "none"):
            x = torch.randn(3, 4, dtype=xdt, requires_grad=True)
            t = torch.rand(3, 4).to(tdt)
            want = F.binary_cross_entropy_with_logits(x, t, reduction=red)
            got = fnn.BCEWithLogitsLoss(reduction=red)(x, t)
            assert got.dtype == want.dtype == tdt
            tol = dict(rtol=2e-3, atol=1e-3) if tdt == torch.float16 else None
            torch.testing.assert_close(got, want, **(tol or {}))
            (g,) = torch.autograd.grad(got.sum(), x)
            (tg,) = torch.autograd.grad(want.sum(), x)
            assert g.dtype == xdt
            torch.testing.assert_close(g, tg, **(tol or {}))


LAYOUTS = {
    "channels_last": lambda: _x((2, 6, 3, 4)).contiguous(memory_format=torch.channels_last),
    "channels_last_3d": lambda: _x((2, 3, 2, 3, 4)).contiguous(
        memory_format=torch.channels_last_3d
    ),
    "transpose": lambda: _x((5, 7)).t(),
    "permutation": lambda: _x((3, 4, 5)).permute(2, 0, 1),
    "size-1 dims": lambda: _x((2, 5, 1, 3)).contiguous(memory_format=torch.channels_last),
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_elementwise_keeps_a_dense_layout(layout):
    """A channels_last (or any dense permuted) input got a C-contiguous output; torch's
    unary ops keep the input's layout (a channels_last CNN lost it at every activation).
    The output and the input gradient now have the input's strides, values unchanged, out
    of place, in place, with and without a graph node."""
    base = LAYOUTS[layout]()
    g = torch.randn_like(base)
    cases = [("relu", ()), ("silu", ()), ("sigmoid", ()), ("hardtanh", (-0.5, 2.0)),
             ("leaky_relu", (0.2,)), ("softplus", (2.0, 5.0))]  # fmt: skip
    for name, vals in cases:
        f, tf = getattr(AF, name), getattr(F, name)
        c = base.contiguous().requires_grad_(True)
        want = f(c, *vals)  # fastact's values in C order: the same bits in any layout
        (want_g,) = torch.autograd.grad(want, c, g.contiguous())
        with torch.no_grad():
            y, ty = f(base, *vals), tf(base, *vals)
        assert y.stride() == ty.stride() == base.stride(), name
        torch.testing.assert_close(y, want, rtol=0, atol=0)
        torch.testing.assert_close(y, ty)
        x = base.clone().requires_grad_(True)
        tx = base.clone().requires_grad_(True)
        y, ty = f(x, *vals), tf(tx, *vals)
        assert y.stride() == ty.stride(), name
        torch.testing.assert_close(y, want, rtol=0, atol=0)
        (gx,) = torch.autograd.grad(y, x, g)
        (tgx,) = torch.autograd.grad(ty, tx, g)
        assert gx.stride() == tgx.stride() == base.stride(), name
        torch.testing.assert_close(gx, want_g, rtol=0, atol=0)
        torch.testing.assert_close(gx, tgx)
        if ACTIVATIONS[name].inplace:
            u = base.clone()
            assert f(u, *vals, inplace=True) is u and u.stride() == base.stride()
            torch.testing.assert_close(u, want, rtol=0, atol=0)
            x = base.clone().requires_grad_(True)
            h = x * 1.0
            assert f(h, *vals, inplace=True) is h
            (gx,) = torch.autograd.grad(h, x, g)
            assert h.stride() == base.stride()
            torch.testing.assert_close(gx, want_g, rtol=0, atol=0)
    for approximate in ("none", "tanh"):
        x = base.clone().requires_grad_(True)
        y = AF.gelu(x, approximate)
        ty = F.gelu(base, approximate=approximate)
        assert y.stride() == ty.stride()
        torch.testing.assert_close(y, ty)
        (gx,) = torch.autograd.grad(y, x, g)
        assert gx.stride() == base.stride()


def test_elementwise_keeps_a_dense_layout_in_parallel(monkeypatch):
    """The parallel loops (NumPy views of the permuted tensors) on a channels_last input."""
    monkeypatch.setattr(AF, "num_threads", lambda: 2)
    base = _x((2, 16, 128, 256)).contiguous(memory_format=torch.channels_last)
    assert base.numel() >= max(ACTIVATIONS[k].threshold for k in ("relu", "silu"))
    g = torch.randn_like(base)
    for name in ("relu", "silu"):
        f, tf = getattr(AF, name), getattr(F, name)
        x = base.clone().requires_grad_(True)
        tx = base.clone().requires_grad_(True)
        y, ty = f(x), tf(tx)
        assert y.stride() == ty.stride()
        torch.testing.assert_close(y, ty, rtol=1e-12, atol=1e-14)
        (gx,) = torch.autograd.grad(y, x, g)
        (tgx,) = torch.autograd.grad(ty, tx, g)
        assert gx.stride() == tgx.stride()
        torch.testing.assert_close(gx, tgx, rtol=1e-12, atol=1e-14)
        u = base.clone()
        f(u, inplace=True)
        torch.testing.assert_close(u, y.detach(), rtol=0, atol=0)


def test_nested_tensors_go_to_torch():
    """A nested tensor of strided layout passed supported() (torch's layout, no sizes): the
    softmax and the graph-recording element-wise nodes crashed with torch's "Internal error:
    NestedTensorImpl doesn't support sizes" where torch's own functions work. They run torch's
    functions now (the results are torch's)."""
    rows = [torch.randn(3), torch.randn(5)]
    ns = torch.nested.nested_tensor(rows)
    assert not AF.supported(ns)
    for got, want in (
        (AF.softmax(ns, -1), torch.softmax(ns, -1)),
        (AF.relu(ns), torch.relu(ns)),
        (AF.gelu(ns), F.gelu(ns)),
    ):
        assert got.is_nested
        for g, w in zip(got.unbind(), want.unbind(), strict=True):
            torch.testing.assert_close(g, w, rtol=0, atol=0)
    leaf = torch.nested.nested_tensor(rows, requires_grad=True)
    for fn, tfn in ((AF.relu, torch.relu), (AF.gelu, F.gelu)):
        out = fn(leaf)
        assert out.requires_grad
        want = tfn(leaf)
        for g, w in zip(out.unbind(), want.unbind(), strict=True):
            torch.testing.assert_close(g, w, rtol=0, atol=0)
