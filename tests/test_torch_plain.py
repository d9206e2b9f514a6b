"""The plain API on CPU torch tensors (no autograd): tensors in, tensors out.

* Every element-wise activation, its in-place form and its backward take CPU tensors and
  return tensors of the same dtype holding exactly what the NumPy call returns; ``out=``
  takes a tensor (contiguous or not) and in place keeps the tensor's storage.
* The axis activations (softmax family, GLU, PReLU, Maxout, RReLU) likewise.
* Every loss case of tests/test_losses.py, with every array argument a tensor: the loss is a
  tensor (0-d when reduced) and the gradients are tensors, equal to the NumPy results;
  ``grad_out=`` takes tensors.
* The functional optimizers update tensors in place, like the NumPy call.
* A tensor that requires grad is refused with a TypeError naming it and pointing to
  fastact.torch / .detach(); float16 and bfloat16 tensors are computed in float32.
* ``import fastact`` (and its submodules below fastact.torch) does not import torch.
"""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from test_losses import SPECS as LOSS_SPECS
from test_losses import build

import fastact
import fastact.losses as L
from fastact.kernels.activations import ACTIVATIONS
from fastact.kernels.elementwise import REQUIRED
from fastact.optim import functional as OF

RNG = np.random.default_rng(0)
X64 = RNG.standard_normal((6, 7)) * 3
PARAMS = {"threshold": (0.1, -2.0)}


def _public(op) -> str:
    return "gelu" if op.name == "gelu_tanh" else op.name


def _values(op) -> tuple:
    if op.name in PARAMS:
        return PARAMS[op.name]
    return tuple(d for _, d in op.params if d is not REQUIRED)


def _extra(op) -> dict:
    return {"approximate": "tanh"} if op.name == "gelu_tanh" else {}


def _same(t: torch.Tensor, a: np.ndarray) -> None:
    assert isinstance(t, torch.Tensor)
    assert t.dtype == torch.from_numpy(np.asarray(a)).dtype and tuple(t.shape) == a.shape
    np.testing.assert_array_equal(t.numpy(), a)


# ----------------------------------------------------------------------------- element-wise
@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_elementwise_activation_on_tensors(name, dt):
    op = ACTIVATIONS[name]
    fwd = getattr(fastact, _public(op))
    bwd = getattr(fastact, _public(op) + "_backward")
    vals, kw = _values(op), _extra(op)
    x = X64.astype(dt)
    t = torch.from_numpy(x.copy())
    ref = fwd(x, *vals, **kw)
    _same(fwd(t, *vals, **kw), ref)
    # a non-contiguous tensor and a non-contiguous out= tensor
    _same(fwd(t.t(), *vals, **kw), fwd(np.ascontiguousarray(x.T), *vals, **kw))
    out = torch.empty(7, 6, dtype=t.dtype).t()
    assert fwd(t, *vals, **kw, out=out) is out
    _same(out.contiguous(), ref)
    g = torch.from_numpy(RNG.standard_normal(x.shape).astype(dt))
    _same(bwd(g, t, *vals, **kw), bwd(g.numpy(), x, *vals, **kw))
    if op.scalars["grad_output"] is not None:
        y = torch.from_numpy(ref)
        _same(bwd(g, None, *vals, output=y), bwd(g.numpy(), None, *vals, output=ref))
    if op.inplace:
        u = torch.from_numpy(x.copy())
        ptr = u.data_ptr()
        assert getattr(fastact, op.name + "_")(u, *vals) is u and u.data_ptr() == ptr
        _same(u, ref)
        v = torch.from_numpy(x.copy())
        assert fwd(v, *vals, True) is v
        _same(v, ref)


def test_spec_example_calls_from_the_issue():
    t = torch.tensor([-1.0, 0.0, 2.0])
    assert torch.equal(fastact.relu(t), torch.tensor([0.0, 0.0, 2.0]))
    u = t.clone()
    assert fastact.relu_(u) is u and torch.equal(u, torch.tensor([0.0, 0.0, 2.0]))
    w = t.clone()
    assert fastact.leaky_relu(w, 0.1, inplace=True) is w
    assert torch.allclose(w, torch.tensor([-0.1, 0.0, 2.0]))


def test_half_precision_tensors_compute_in_float32():
    x = torch.linspace(-3, 3, 11)
    h = fastact.gelu(x.half())
    assert h.dtype == torch.float16  # NumPy's rule: float16 in, float16 out
    torch.testing.assert_close(h.float(), fastact.gelu(x), rtol=1e-3, atol=1e-3)
    b = fastact.gelu(x.bfloat16())  # NumPy has no bfloat16: computed in float32, rounded back
    assert b.dtype == torch.bfloat16  # as torch's (it was float32)
    torch.testing.assert_close(b, fastact.gelu(x.bfloat16().float()).bfloat16(), rtol=0, atol=0)
    g = fastact.gelu_backward(x.bfloat16(), x.bfloat16())
    assert g.dtype == torch.bfloat16
    assert fastact.gelu_backward(x, x.bfloat16()).dtype == torch.float32  # promoted, as torch
    with pytest.raises(TypeError, match="bfloat16 tensor and cannot be written in place"):
        fastact.relu_(x.bfloat16())


# ----------------------------------------------------------------------------- along an axis
def test_axis_activations_on_tensors():
    x = RNG.standard_normal((4, 6, 5)).astype(np.float32)
    t = torch.from_numpy(x)
    g = RNG.standard_normal((4, 6, 5)).astype(np.float32)
    for f in (fastact.softmax, fastact.log_softmax, fastact.softmin):
        for dim in (-1, 1):
            y = f(x, dim)
            _same(f(t, dim), y)
            bw = getattr(fastact, f.__name__ + "_backward")
            _same(bw(torch.from_numpy(g), dim=dim, output=torch.from_numpy(y)),
                  bw(g, dim=dim, output=y))  # fmt: skip
    _same(fastact.softmax(t, 1, dtype=torch.float64), fastact.softmax(x, 1, dtype=np.float64))
    _same(fastact.glu(t, 1), fastact.glu(x, 1))
    g3 = g[:, :3]
    _same(fastact.glu_backward(torch.from_numpy(g3), t, 1), fastact.glu_backward(g3, x, 1))
    _same(fastact.maxout(t, 3, 1), fastact.maxout(x, 3, 1))
    w = np.linspace(0.1, 0.6, 6).astype(np.float32)
    _same(fastact.prelu(t, torch.from_numpy(w)), fastact.prelu(x, w))
    gi, gw = fastact.prelu_backward(torch.from_numpy(g), t, torch.from_numpy(w))
    ri, rw = fastact.prelu_backward(g, x, w)
    _same(gi, ri)
    _same(gw, rw)
    y, noise = fastact.rrelu(t, training=True, generator=7, return_noise=True)
    ry, rnoise = fastact.rrelu(x, training=True, generator=7, return_noise=True)
    _same(y, ry)
    _same(noise, rnoise)
    _same(fastact.rrelu(t), fastact.rrelu(x))  # eval: the slope rounded to float32
    u = t.clone()
    assert fastact.rrelu_(u, training=True, generator=7) is u
    _same(u, ry)


# ----------------------------------------------------------------------------- losses
LOSS_CASES = [
    pytest.param(spec, opt, id=f"{spec.name}-{i}")
    for spec in LOSS_SPECS
    for i, opt in enumerate(spec.opts)
]


def _tensors(v):
    return torch.from_numpy(v) if isinstance(v, np.ndarray) else v


@pytest.mark.parametrize("spec,opt", LOSS_CASES)
def test_every_loss_on_tensors(spec, opt):
    args, kw = build(spec, opt, np.float32)
    targs = [_tensors(a) for a in args]
    tkw = {k: _tensors(v) for k, v in kw.items()}
    fn = getattr(L, spec.name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for red in spec.reductions:
            loss, grad = fn(*targs, reduction=red, return_grad=True, **tkw)
            rloss, rgrad = fn(*args, reduction=red, return_grad=True, **kw)
            if red == "none":
                _same(loss, rloss)
            else:
                assert loss.shape == () and loss.dtype == torch.float32
                assert float(loss) == float(rloss) or (np.isnan(rloss) and loss.isnan())
            grads = grad if isinstance(grad, tuple) else (grad,)
            rgrads = rgrad if isinstance(rgrad, tuple) else (rgrad,)
            for a, b in zip(grads, rgrads, strict=True):
                if isinstance(b, np.ndarray):
                    _same(a, b)
                else:  # gaussian_nll with a float var: its gradient is a number
                    assert float(a) == float(b)
        # grad_out= tensors (one per differentiable argument)
        bufs = tuple(torch.empty(tuple(np.shape(args[i]))) for i in spec.grads)
        loss, grad = fn(*targs, return_grad=True, grad_out=bufs if len(bufs) > 1 else bufs[0],
                        **tkw)  # fmt: skip
        grads = grad if isinstance(grad, tuple) else (grad,)
        assert all(a is b for a, b in zip(grads, bufs, strict=True))


def test_loss_results_follow_the_one_result_rule():
    """A tensor among the array arguments, the prediction or the target (README's rule; the
    target did not count)."""
    x, y = RNG.standard_normal((5, 3)).astype(np.float32), np.array([0, 2, 1, 1, 0])
    assert isinstance(L.cross_entropy(x, y), np.float32)
    assert isinstance(L.cross_entropy(x, torch.from_numpy(y)), torch.Tensor)
    assert isinstance(L.cross_entropy(torch.from_numpy(x), y), torch.Tensor)
    torch.testing.assert_close(
        L.cross_entropy(torch.from_numpy(x), torch.from_numpy(y)),
        torch.nn.functional.cross_entropy(torch.from_numpy(x), torch.from_numpy(y)),
    )


# ----------------------------------------------------------------------------- optimizers
def test_functional_optimizers_update_tensors_in_place():
    shapes = [(4, 3), (5,)]
    ps = [RNG.standard_normal(s).astype(np.float32) for s in shapes]
    gs = [RNG.standard_normal(s).astype(np.float32) for s in shapes]
    tp = [torch.nn.Parameter(torch.from_numpy(p.copy())) for p in ps]
    tg = [torch.from_numpy(g) for g in gs]
    m, v = [np.zeros_like(p) for p in ps], [np.zeros_like(p) for p in ps]
    tm, tv = [torch.zeros_like(p) for p in tp], [torch.zeros_like(p) for p in tp]
    ptrs = [p.data_ptr() for p in tp]
    for step in (1, 2, 3):
        OF.adamw(ps, gs, m, v, step=step, lr=0.1)
        OF.adamw(tp, tg, tm, tv, step=step, lr=0.1)
    for a, b in zip(tp + tm + tv, ps + m + v, strict=True):
        np.testing.assert_array_equal(a.detach().numpy(), b)
    assert [p.data_ptr() for p in tp] == ptrs
    bufs = [None, None]
    OF.sgd(tp, tg, bufs, lr=0.1, momentum=0.9)
    for b, g in zip(bufs, tg, strict=True):
        assert isinstance(b, torch.Tensor) and torch.equal(b, g)


# ----------------------------------------------------------------------------- errors
def test_tensors_that_require_grad_are_refused_with_a_pointer_to_fastact_torch():
    t = torch.randn(4, requires_grad=True)
    plain = torch.randn(4)
    calls = [
        ("input", lambda: fastact.gelu(t)),
        ("input", lambda: fastact.relu_(t)),
        ("out", lambda: fastact.relu(plain, out=torch.empty(4, requires_grad=True))),
        ("grad_output", lambda: fastact.tanh_backward(t, plain)),
        ("input", lambda: fastact.softmax(t, 0)),
        ("input", lambda: L.mse_loss(t, plain)),
        ("target", lambda: L.mse_loss(plain, t)),
        ("weight", lambda: L.binary_cross_entropy(plain.sigmoid(), plain.sigmoid(), weight=t)),
    ]
    for name, call in calls:
        with pytest.raises(TypeError, match=rf"^{name} is a torch tensor that requires grad.*"
                           r"fastact\.torch.*\.detach\(\)"):  # fmt: skip
            call()
    assert not t.grad  # nothing was computed


def test_non_cpu_or_sparse_tensors_are_refused():
    with pytest.raises(TypeError, match="sparse"):
        fastact.relu(torch.eye(3).to_sparse())
    meta = torch.empty(3, device="meta")
    with pytest.raises(TypeError, match="meta"):
        L.mse_loss(meta, meta)


def test_import_fastact_does_not_import_torch():
    code = (
        "import sys, fastact, fastact.losses, fastact.optim, fastact.optim.functional, "
        "fastact.nn, fastact.scalar\n"
        "import numpy as np\n"
        "fastact.relu(np.ones(3)); fastact.losses.mse_loss(np.ones(3), np.zeros(3))\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "import fastact.torch\n"
        "assert 'torch' in sys.modules\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]


def test_contiguous_float_tensors_take_the_array_fast_path(monkeypatch):
    """A C-contiguous float32/float64 CPU tensor outside autograd runs the NumPy fast path
    on its view (the general tensor path cost ~14 us per call at 1K elements): the general
    path is never entered, results are new tensors (or the input itself, in place), also
    for 0-d and empty tensors; other tensors still take the general path."""
    import importlib

    host_ew = importlib.import_module("fastact.host.elementwise")

    def refuse(*args, **kwargs):
        raise AssertionError("general tensor path taken")

    for dt in (torch.float32, torch.float64):
        for t in (
            torch.randn(5, 7, dtype=dt),
            torch.tensor(-2.0, dtype=dt),
            torch.empty(0, dtype=dt),
        ):
            ref = fastact.silu(t.numpy())
            with monkeypatch.context() as m:
                m.setattr(host_ew, "_on_tensors", refuse)
                got = fastact.silu(t)
                u = t.clone()
                assert fastact.relu_(u) is u
                gb = fastact.silu_backward(t, t)
                gy = fastact.sigmoid_backward(t, output=t)
                # tensor out= (the general path cost ~30 us per call at 1K elements)
                o1, o2, o3 = (torch.full_like(t, 7.0) for _ in range(3))
                assert fastact.silu(t, out=o1) is o1
                assert fastact.silu_backward(t, t, out=o2) is o2
                assert fastact.sigmoid_backward(t, output=t, out=o3) is o3
                # out= the gradient's own tensor: written through the arrays' general path
                gg = t.clone()
                assert fastact.silu_backward(gg, t, out=gg) is gg
            _same(got, ref)
            _same(o1, ref)
            _same(o2, fastact.silu_backward(t.numpy(), t.numpy()))
            _same(o3, fastact.sigmoid_backward(t.numpy(), output=t.numpy()))
            _same(gg, fastact.silu_backward(t.numpy(), t.numpy()))
            assert got.data_ptr() != t.data_ptr() or t.numel() == 0
            _same(gb, fastact.silu_backward(t.numpy(), t.numpy()))
            _same(gy, fastact.sigmoid_backward(t.numpy(), output=t.numpy()))
            _same(u, fastact.relu(t.numpy()))
    # a subclass (Parameter), a non-contiguous, a float16 tensor: the general path
    calls = []
    original = host_ew._on_tensors

    def spy(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(host_ew, "_on_tensors", spy)
    with torch.no_grad():
        fastact.relu(torch.nn.Parameter(torch.randn(3), requires_grad=False))
    fastact.relu(torch.randn(4, 3).t())
    fastact.relu(torch.randn(3, dtype=torch.float16))
    fastact.relu_backward(torch.randn(4, 3).t(), torch.randn(3, 4))
    # out= tensors the arrays' path cannot take: float16, non-contiguous
    with pytest.raises(TypeError, match="out has dtype"):
        fastact.relu(torch.randn(3), out=torch.empty(3, dtype=torch.float16))
    ga, xa, o4 = torch.randn(3), torch.randn(3), torch.empty(3, 2)[:, 0]
    assert fastact.relu_backward(ga, xa, out=o4) is o4
    _same(o4.contiguous(), fastact.relu_backward(ga.numpy(), xa.numpy()))
    assert len(calls) == 6
    with pytest.raises(TypeError, match="requires grad"):
        fastact.relu(torch.randn(3), out=torch.empty(3, requires_grad=True))
    with pytest.raises(ValueError, match="out"):
        fastact.silu_backward(torch.randn(3), torch.randn(3), out=torch.empty(4))


def test_lazily_negated_tensors_are_read_as_their_values():
    """A tensor with torch's lazy negative bit (``torch._neg_view``) holds -value in memory:
    as an input it is resolved first (its view would be the wrong sign); as an output it
    is refused. A CPU tensor is never taken for a device array (no CUDA lookup)."""
    from fastact._core.backend import is_device_array

    t = torch.randn(6, dtype=torch.float64)
    nv = torch._neg_view(t)
    assert nv.is_neg()
    _same(fastact.relu(nv), fastact.relu(-t.numpy()))
    _same(fastact.silu_backward(nv, t), fastact.silu_backward(-t.numpy(), t.numpy()))
    loss = fastact.losses.mse_loss(nv, t)
    assert float(loss) == pytest.approx(float(np.mean((2 * t.numpy()) ** 2)))
    with pytest.raises(TypeError, match="lazy"):
        fastact.relu(t, out=torch._neg_view(torch.empty(6, dtype=torch.float64)))
    assert not is_device_array(t) and not is_device_array(torch.nn.Parameter(t))


def test_softmax_family_on_contiguous_tensors_takes_the_rows_fast_path(monkeypatch):
    """softmax / log_softmax / softmin of a C-contiguous float CPU tensor along its last
    axis (and their backwards from the output) run the arrays' row kernels on the views,
    without the executor's general path (~14 us a call more), with the same bits."""
    import importlib

    front = importlib.import_module("fastact.activations")
    rng = np.random.default_rng(3)
    for dt in (torch.float32, torch.float64):
        x = torch.from_numpy(rng.standard_normal((5, 9))).to(dt)
        g = torch.from_numpy(rng.standard_normal((5, 9))).to(dt)
        for name in ("softmax", "log_softmax", "softmin"):
            f, fb = getattr(fastact, name), getattr(fastact, name + "_backward")
            want = f(x.numpy(), -1)
            wantb = fb(g.numpy(), output=want, dim=1)
            with monkeypatch.context() as m:
                m.setattr(front, "_executor", lambda *a: (_ for _ in ()).throw(AssertionError))
                got = f(x, -1)
                gotb = fb(g, output=torch.from_numpy(want), dim=1)
            _same(got, want)
            _same(gotb, wantb)
            # another axis: the general path, the same values as the arrays'
            _same(f(x, 0), f(x.numpy(), 0))


def test_losses_on_viewable_tensors_take_their_numpy_views(monkeypatch):
    """A loss whose prediction is a float32/float64 CPU tensor and whose tensors NumPy can
    view as they are runs on the views (the executor's tensor edge is never entered), with
    the arrays' results as tensors and grad_out tensors returned themselves; other tensors
    still take the edge (its conversions and errors)."""
    import importlib

    host_losses = importlib.import_module("fastact.host.losses")
    rng = np.random.default_rng(4)
    x = torch.from_numpy(rng.standard_normal((6, 5)))
    y = torch.from_numpy(rng.standard_normal((6, 5)))
    t = torch.from_numpy(rng.integers(0, 5, 6))
    w = torch.from_numpy(rng.random(5))

    def refuse(*args, **kwargs):
        raise AssertionError("tensor edge taken")

    with monkeypatch.context() as m:
        m.setattr(host_losses, "tensor_input", refuse)
        loss, g = L.mse_loss(x, y, return_grad=True)
        buf = torch.empty(6, 5, dtype=torch.float64)
        ce, gce = L.cross_entropy(x, t, weight=w, return_grad=True, grad_out=buf)
        unreduced = L.cross_entropy(x, t, reduction="none")
    assert gce is buf
    want_loss, want_g = L.mse_loss(x.numpy(), y.numpy(), return_grad=True)
    _same(loss, want_loss)
    _same(g, want_g)
    want_ce, want_gce = L.cross_entropy(x.numpy(), t.numpy(), weight=w.numpy(), return_grad=True)
    _same(ce, want_ce)
    _same(gce, want_gce)
    _same(unreduced, L.cross_entropy(x.numpy(), t.numpy(), reduction="none"))
    # a bfloat16 target and a target that requires grad: the edge (a float32 copy; the error)
    _same(
        L.mse_loss(x, y.to(torch.bfloat16)),
        L.mse_loss(x.numpy(), y.to(torch.bfloat16).double().numpy()),
    )
    with pytest.raises(TypeError, match="requires grad"):
        L.mse_loss(x, y.clone().requires_grad_(True))


def test_loss_warnings_point_at_the_calling_line():
    """The deprecation, broadcast-target and kl_div 'mean' warnings of the plain losses are
    attributed to the caller's line, for arrays and for tensors alike."""
    import warnings

    x = np.ones((4, 3))
    for a, b in ((x, np.ones(3)), (torch.from_numpy(x), torch.ones(3, dtype=torch.float64))):
        with warnings.catch_warnings(record=True) as rec:
            warnings.simplefilter("always")
            L.mse_loss(a, b)
            L.kl_div(a, a)
            L.l1_loss(a, a, size_average=True)
        assert [r.filename for r in rec] == [__file__] * 3, [
            (r.filename, str(r.message)) for r in rec
        ]


def test_tensors_whose_elements_share_memory_are_not_written():
    """An expanded tensor (stride 0) as out= or in place: torch refuses ("more than one
    element of the written-to tensor refers to a single memory location"); fastact wrote
    every row into the same memory (only the last survived). The same for a writable NumPy
    view with a zero stride."""
    x = torch.arange(9.0).reshape(3, 3)
    out = torch.zeros(3).expand(3, 3)
    with pytest.raises(RuntimeError, match="single memory location"):
        torch.nn.functional.silu(out, inplace=True)
    with pytest.raises(ValueError, match="share memory"):
        fastact.relu(x, out=out)
    assert (out == 0).all()
    with pytest.raises(ValueError, match="share memory"):
        fastact.silu_(torch.ones(3).expand(3, 3))
    a = np.lib.stride_tricks.as_strided(np.zeros(3), (3, 3), (0, 8), writeable=True)
    with pytest.raises(ValueError, match="share memory"):
        fastact.relu(np.ones((3, 3)), out=a)


def test_inference_tensors_are_not_updated_in_place_outside_inference_mode():
    """torch's rule: an inference tensor may be updated in place only inside
    inference_mode; fastact modified it (plain API and fastact.torch)."""
    import fastact.torch.autograd as AF

    with torch.inference_mode():
        xi = torch.randn(5)
    before = xi.clone()
    with pytest.raises(RuntimeError, match="nference"):
        fastact.relu_(xi)
    assert torch.equal(xi, before)  # checked before anything is written
    with pytest.raises(RuntimeError, match="nference"):
        AF.relu_(xi)  # torch's own relu_ (which writes, then raises)
    with torch.inference_mode():
        assert fastact.relu_(xi) is xi
    assert (xi >= 0).all()
    assert torch.equal(fastact.relu(before), before.clamp_min(0))  # reading it is fine
