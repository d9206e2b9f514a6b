"""Autograd sees fastact's writes into torch tensors.

fastact writes a CPU tensor through its NumPy view or its address, which torch does not see.
Every call that writes a caller's tensor (in place, ``out=``, ``grad_out=``, an optimizer
step: its parameters, state tensors and step counts) advances the tensor's version counter
afterwards, as torch's own in-place ops do, so that:

* the version of every written tensor increases (by one for one call, as torch's ops);
* a tensor saved for backward and then overwritten by fastact makes the backward raise
  torch's RuntimeError ("... modified by an inplace operation") instead of silently
  computing the gradient from the new values;
* an optimizer step advances what torch.optim's step advances (parameters, each state
  tensor, ``state['step']``);
* inference tensors (no version counter) are written without an error inside
  ``torch.inference_mode``;
* fastact.torch.autograd's in-place functions bump once (ctx.mark_dirty, or the no-grad
  path's own bump), as torch's.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import fastact
import fastact.losses as L
import fastact.torch.autograd as AF
import fastact.torch.optim as FTO
from fastact import optim as FO
from fastact.optim import functional as OF
from fastact.scalar import gelu

torch.set_num_threads(1)

SHAPE = (4, 6)
_GEN = torch.Generator().manual_seed(0)


def _r(*shape: int) -> torch.Tensor:
    """A new float32 tensor, of SHAPE unless given."""
    return torch.randn(shape or SHAPE, generator=_GEN)


@fastact.elementwise
def _prep(x):
    return gelu(2 * x + 1)


@fastact.elementwise
def _mix(a, b):
    return a * b + 1


def _labels() -> torch.Tensor:
    return torch.randint(0, SHAPE[1], (SHAPE[0],), generator=_GEN)


def _sign() -> torch.Tensor:
    return torch.where(_r() > 0, 1.0, -1.0)


def _adamw(p, m, v) -> None:
    OF.adamw([p], [_r()], [m], [v], step=[1])


# Every kind of write into a caller's tensor: ``write(t)`` writes into ``t`` (float32,
# C-contiguous, of SHAPE) or into a view of it (``t.T``: the general paths, which views
# share the version counter with ``t``, as torch's views do).
WRITES = {
    # element-wise activations: the tensor fast paths and the general paths
    "relu_": lambda t: fastact.relu_(t),
    "relu inplace=True": lambda t: fastact.relu(t, inplace=True),
    "relu_ strided": lambda t: fastact.relu_(t.T),
    "leaky_relu_ array slope": lambda t: fastact.leaky_relu_(t, np.full(6, 0.1, np.float32)),
    "gelu out=": lambda t: fastact.gelu(_r(), out=t),
    "gelu out= strided": lambda t: fastact.gelu(_r(6, 4), out=t.T),
    "gelu out= NumPy input": lambda t: fastact.gelu(_r().numpy(), out=t),
    "gelu_backward out=": lambda t: fastact.gelu_backward(_r(), _r(), out=t),
    "gelu_backward out= strided": lambda t: fastact.gelu_backward(_r(6, 4), _r(6, 4), out=t.T),
    "sigmoid_backward output= out=": lambda t: fastact.sigmoid_backward(_r(), output=_r(), out=t),
    # along an axis
    "rrelu_ eval": lambda t: fastact.rrelu_(t),
    "rrelu_ training": lambda t: fastact.rrelu_(t, training=True, generator=1),
    "rrelu_ training strided": lambda t: fastact.rrelu_(t.T, training=True, generator=1),
    "rrelu training out=": lambda t: fastact.rrelu(_r(), training=True, generator=1, out=t),
    "rrelu_backward training out=": lambda t: fastact.rrelu_backward(
        _r(), _r(), training=True, generator=1, out=t
    ),
    "rrelu_backward noise= out=": lambda t: fastact.rrelu_backward(
        _r(), _r(), training=True, noise=_r(), out=t
    ),
    "prelu out=": lambda t: fastact.prelu(_r(), _r(6), out=t),
    "prelu_backward out=": lambda t: fastact.prelu_backward(_r(), _r(), _r(6), out=t),
    "glu out=": lambda t: fastact.glu(_r(4, 12), out=t),
    "glu_backward out=": lambda t: fastact.glu_backward(_r(4, 3), _r(), out=t),
    "maxout out=": lambda t: fastact.maxout(_r(4, 12), 2, dim=1, out=t),
    "maxout_backward out=": lambda t: fastact.maxout_backward(_r(4, 3), _r(), 2, dim=1, out=t),
    "softmax out=": lambda t: fastact.softmax(_r(), dim=1, out=t),
    "softmax out= strided": lambda t: fastact.softmax(_r(6, 4), dim=0, out=t.T),
    "softmax dtype= out=": lambda t: fastact.softmax(_r().double(), 1, torch.float32, out=t),
    "log_softmax out=": lambda t: fastact.log_softmax(_r(), dim=1, out=t),
    "softmin out=": lambda t: fastact.softmin(_r(), dim=1, out=t),
    "softmax_backward out=": lambda t: fastact.softmax_backward(_r(), dim=1, output=_r(), out=t),
    "log_softmax_backward out=": lambda t: fastact.log_softmax_backward(_r(), _r(), 1, out=t),
    "softmin_backward out=": lambda t: fastact.softmin_backward(_r(), _r(), 1, out=t),
    # a user's fused function
    "fused .inplace": lambda t: _prep.inplace(t),
    "fused .inplace strided": lambda t: _prep.inplace(t.T),
    "fused out=": lambda t: _prep(_r(), out=t),
    "fused two arguments out=": lambda t: _mix(_r(), 2.0, out=t),
    "fused two arguments .inplace": lambda t: _mix.inplace(t, _r()),
    "fused .inplace broadcast": lambda t: _mix.inplace(t, _r(6)),
    # losses' gradient buffers
    "mse_loss grad_out=": lambda t: L.mse_loss(_r(), _r(), return_grad=True, grad_out=t),
    "mse_loss grad_out= NumPy inputs": lambda t: L.mse_loss(
        _r().numpy(), _r().numpy(), return_grad=True, grad_out=t
    ),
    "mse_loss grad_out= bfloat16 target": lambda t: L.mse_loss(
        _r(), _r().bfloat16(), return_grad=True, grad_out=t
    ),
    "cross_entropy grad_out=": lambda t: L.cross_entropy(
        _r(), _labels(), return_grad=True, grad_out=t
    ),
    "margin_ranking_loss grad_out=(t, None)": lambda t: L.margin_ranking_loss(
        _r(), _r(), _sign(), return_grad=True, grad_out=(t, None)
    ),
    "margin_ranking_loss grad_out=(None, t)": lambda t: L.margin_ranking_loss(
        _r(), _r(), _sign(), return_grad=True, grad_out=(None, t)
    ),
    "gaussian_nll_loss grad_out= var": lambda t: L.gaussian_nll_loss(
        _r(), _r(), _r().abs() + 0.5, return_grad=True, grad_out=(None, t)
    ),
    # optimizers: the functional API (parameters and state tensors)
    "functional adamw param": lambda t: _adamw(t, torch.zeros(SHAPE), torch.zeros(SHAPE)),
    "functional adamw exp_avg": lambda t: _adamw(_r(), t, torch.zeros(SHAPE)),
    "functional adamw exp_avg_sq": lambda t: _adamw(_r(), torch.zeros(SHAPE), t),
    "functional sgd momentum buffer": lambda t: OF.sgd([_r()], [_r()], [t], momentum=0.9),
}


@pytest.mark.parametrize("name", list(WRITES))
def test_write_advances_the_version(name):
    t = _r()
    v0 = t._version
    before = t.clone()
    WRITES[name](t)
    assert not torch.equal(t, before)  # the call did write the tensor
    assert t._version == v0 + 1  # once, as torch's own in-place ops


@pytest.mark.parametrize("name", list(WRITES))
def test_backward_through_an_overwritten_saved_tensor_raises(name):
    # exp saves its result for backward; fastact then overwrites it (through .detach(), which
    # shares the memory and the version counter): torch's in-place ops make the backward raise
    x = _r().requires_grad_()
    y = x.exp()
    WRITES[name](y.detach())
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()


def test_torch_raises_there_too():
    """The reference: torch's own in-place op on the saved tensor."""
    x = _r().requires_grad_()
    y = x.exp()
    y.detach().relu_()
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()


def test_unwritten_tensors_keep_their_version():
    x, g = _r(), _r()
    fastact.relu(x)
    fastact.gelu_backward(g, x)
    fastact.softmax(x, dim=1)
    _prep(x)
    L.mse_loss(x, g, return_grad=True)
    assert (x._version, g._version) == (0, 0)


def test_inference_tensors():
    """Inference tensors have no version counter: written inside inference mode, no error."""
    with torch.inference_mode():
        t = _r()
        for name, write in WRITES.items():
            if "functional" not in name:
                write(t)
        fastact.relu_(t)
        fastact.gelu(_r(), out=t)
        assert t.is_inference()


def test_inference_tensor_outside_inference_mode_is_refused():
    with torch.inference_mode():
        t = _r()
    with pytest.raises(RuntimeError, match="inference tensor"):
        fastact.relu_(t)
    with pytest.raises(RuntimeError, match="inference tensor"):
        _prep.inplace(t)


def test_refused_write_keeps_the_version():
    t = _r()
    with pytest.raises(ValueError):
        fastact.gelu(_r(3, 6), out=t)  # a wrong shape: nothing written
    with pytest.raises(TypeError):
        L.mse_loss(_r(), _r(), return_grad=True, grad_out=t.double())
    assert t._version == 0


def test_fused_function_that_raises_part_way():
    """A user's function that raises stops at the element that raised: ``out`` holds a part
    of the result, and its version is advanced too."""

    @fastact.elementwise
    def checked(x):
        if x > 0:
            raise ValueError("positive")
        return x * 2

    t = -torch.arange(1.0, 9.0)
    t[5] = 1.0
    before, v0 = t.clone(), t._version
    with pytest.raises(ValueError, match="positive"):
        checked.inplace(t)
    assert not torch.equal(t, before) and t._version == v0 + 1
    o = torch.zeros(8)
    with pytest.raises(ValueError, match="positive"):
        checked(before, out=o)
    assert o._version == 1


# --------------------------------------------------------------------------- optimizers
#: every torch.optim class fastact has, with options that use every state tensor
OPTIMIZERS = [
    ("SGD", {"lr": 0.1, "momentum": 0.9}),
    ("Adam", {}),
    ("Adam", {"amsgrad": True}),
    ("AdamW", {}),
    ("Adamax", {}),
    ("RMSprop", {"momentum": 0.9, "centered": True}),
    ("Rprop", {}),
    ("Adagrad", {}),
    ("Adadelta", {}),
]


def _versions(opt, p) -> dict:
    st = {k: v._version for k, v in opt.state[p].items() if isinstance(v, torch.Tensor)}
    return {"param": p._version, **st}


def _advanced(cls, kw, steps: int = 3) -> list[set]:
    """Per step after the first: the tensors (parameter, state keys) whose version grew."""
    p = torch.randn(7, requires_grad=True, generator=_GEN)
    opt = cls([p], **kw)
    p.grad = torch.randn(7, generator=_GEN)
    opt.step()
    out = []
    for _ in range(steps):
        p.grad = torch.randn(7, generator=_GEN)
        v0 = _versions(opt, p)
        opt.step()
        v1 = _versions(opt, p)
        assert set(v0) == set(v1)
        out.append({k for k in v1 if v1[k] > v0[k]})
    return out


@pytest.mark.parametrize("name, kw", OPTIMIZERS, ids=[f"{n}{kw}" for n, kw in OPTIMIZERS])
def test_torch_optim_step_advances_what_torch_advances(name, kw):
    ours = _advanced(getattr(FTO, name), kw)
    theirs = _advanced(getattr(torch.optim, name), kw)
    assert ours == theirs
    assert "param" in theirs[0] and ("step" in theirs[0] or name == "SGD")


@pytest.mark.parametrize("name, kw", OPTIMIZERS, ids=[f"{n}{kw}" for n, kw in OPTIMIZERS])
def test_fastact_optim_step_advances_tensor_state(name, kw):
    """fastact.optim's classes on torch parameters: the parameter and every state tensor
    (their step counts are Python numbers)."""
    ours = _advanced(getattr(FO, name), kw)
    theirs = _advanced(getattr(torch.optim, name), kw)
    assert ours == [s - {"step"} for s in theirs]


@pytest.mark.parametrize("cls", [FTO.AdamW8bit, FTO.SGD8bit, FTO.Adagrad8bit])
def test_8bit_state_tensors(cls):
    kw = {"momentum": 0.9} if cls is FTO.SGD8bit else {}
    p = torch.randn(512, 8, requires_grad=True, generator=_GEN)
    opt = cls([p], min_8bit_size=0, **kw)
    p.grad = torch.randn(512, 8, generator=_GEN)
    opt.step()
    v0 = _versions(opt, p)
    p.grad = torch.randn(512, 8, generator=_GEN)
    opt.step()
    v1 = _versions(opt, p)
    assert len(v1) > 2 and all(v1[k] > v0[k] for k in v1), (v0, v1)


@pytest.mark.parametrize(
    "module, key",
    [(FTO, k) for k in ("param", "exp_avg", "exp_avg_sq", "step")]
    + [(FO, k) for k in ("param", "exp_avg", "exp_avg_sq")],  # (its steps: Python numbers)
    ids=lambda v: v if isinstance(v, str) else v.__name__,
)
def test_optimizer_step_then_backward_through_a_saved_tensor_raises(module, key):
    p = torch.randn(5, requires_grad=True, generator=_GEN)
    opt = module.AdamW([p])
    p.grad = torch.randn(5, generator=_GEN)
    opt.step()
    saved = p if key == "param" else opt.state[p][key]
    x = torch.randn(5, requires_grad=True, generator=_GEN)
    y = (x * saved).sum()  # mul saves saved (x requires grad)
    p.grad = torch.randn(5, generator=_GEN)
    opt.step()
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.backward()


def test_skipped_step_writes_nothing():
    p = torch.randn(5, requires_grad=True, generator=_GEN)
    opt = FTO.AdamW([p])
    p.grad = torch.randn(5, generator=_GEN)
    opt.step()
    v0 = _versions(opt, p)
    p.grad = torch.full((5,), float("nan"))
    opt.step(skip_nonfinite=True)
    assert opt.found_inf and _versions(opt, p) == v0


def test_functional_skipped_parameter_keeps_its_versions():
    ps, ms, vs = [_r(), _r()], [torch.zeros(SHAPE), torch.zeros(SHAPE)], [_r().abs(), _r().abs()]
    OF.adamw(ps, [_r(), None], ms, vs, step=[1, 1])
    assert [t._version for t in (*ps, *ms, *vs)] == [1, 0, 1, 0, 1, 0]


# ------------------------------------------------------------------ fastact.torch.autograd
AUTOGRAD_INPLACE = {
    "relu_": (AF.relu_, torch.relu_),
    "leaky_relu inplace": (
        lambda t: AF.leaky_relu(t, 0.2, True),
        lambda t: torch.nn.functional.leaky_relu(t, 0.2, True),
    ),
    "rrelu_ training": (
        lambda t: AF.rrelu_(t, training=True),
        lambda t: torch.nn.functional.rrelu_(t, training=True),
    ),
}


@pytest.mark.parametrize("name", list(AUTOGRAD_INPLACE))
@pytest.mark.parametrize("grad", [False, True], ids=["no grad", "in a graph"])
def test_autograd_inplace_bumps_as_torch(name, grad):
    ours, theirs = AUTOGRAD_INPLACE[name]
    deltas = []
    for f in (ours, theirs):
        x = _r().requires_grad_(grad)
        t = x * 1.0
        v0 = t._version
        f(t)
        deltas.append(t._version - v0)
    assert deltas[0] == deltas[1] == 1


# ----------------------------------------------------------------------------------------
# a regression hunt's findings: no bump for a call refused before writing; inference tensors


@pytest.mark.parametrize(
    "call",
    [
        lambda o: _mix(_r(), _r(3), out=o),  # does not broadcast
        lambda o: _mix(_r(), _r(), out=o[:2]),  # wrong out shape
        lambda o: _mix.inplace(o, _r(3)),  # does not broadcast
        lambda o: _mix.inplace(o[:1], _r()),  # broadcasts beyond the in-place argument
    ],
)
def test_fused_call_refused_before_writing_leaves_the_version(call):
    w = torch.randn(SHAPE, requires_grad=True)
    o = _r()
    loss = (w * o).sum()  # saves o
    before, v0 = o.clone(), o._version
    with pytest.raises(ValueError):
        call(o)
    assert torch.equal(o, before) and o._version == v0
    loss.backward()  # not refused: o was never written


def test_rrelu_in_place_on_an_inference_tensor_raises_before_writing():
    with torch.inference_mode():
        t = -torch.ones(6)
    for fn in (
        lambda: AF.rrelu_(t, training=True),
        lambda: AF.rrelu(t, training=True, inplace=True),
    ):
        with pytest.raises(RuntimeError, match="inference tensor"):
            fn()
        assert torch.equal(t, -torch.ones(6))  # torch's rrelu_ writes before it raises
    with torch.inference_mode():
        AF.rrelu_(t, training=True)  # inside inference mode: allowed, as torch's
    assert (t > -1).all() and (t < 0).all()


def test_optimizers_refuse_inference_parameters_before_writing():
    """torch's steps raise for an inference-mode parameter (after writing it); fastact's
    raise before writing anything."""
    with torch.inference_mode():
        p = torch.ones(4)
    p.grad = torch.ones(4)
    with pytest.raises(RuntimeError, match="inference tensor"):
        FTO.SGD([p], lr=0.5).step()
    with pytest.raises(RuntimeError, match="inference tensor"):
        OF.sgd([p], [torch.ones(4)], lr=0.5)
    assert torch.equal(p, torch.ones(4))
    with torch.inference_mode():
        OF.sgd([p], [torch.ones(4)], lr=0.5)  # inside inference mode: written
    assert torch.equal(p, torch.full((4,), 0.5))
