"""The plain API's edge with CPU torch tensors, found by fuzzing it against torch:

* A gradient with torch's lazy negative bit (``torch._neg_view(g)``, the ``.imag`` of a
  conjugated complex tensor) holds ``-g`` in memory: every optimizer front end (functional,
  fastact.optim's classes, fastact.torch.optim) steps with its values, as torch.optim does,
  whatever its layout or dtype; a parameter or state with the bit (written in place) is
  refused with a TypeError naming it.
* bfloat16 tensors: the activations along an axis and their gradients return bfloat16 (as
  torch and as the element-wise ones), computed in float32; softmax, log_softmax and softmin
  take torch's ``dtype=torch.bfloat16``.
* One result rule: a new result is a tensor when any array argument is a tensor, whichever
  argument it is (the axis backwards and prelu followed their input/output only).
* Errors: a tensor-valued parameter (leaky_relu's slope, elu's alpha) is checked as the
  tensor arguments are (torch's RuntimeError leaked); the ``.detach()`` hint for a loss's
  gradient buffer names ``grad_out``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import fastact
import fastact.losses as L
import fastact.optim as fastact_optim
import fastact.torch.optim as FTO
from fastact.optim import functional as OF

RNG = np.random.default_rng(7)
F = torch.nn.functional


# ----------------------------------------------------------------------------- negative bit
def _neg_grads():
    """(name, a tensor with the negative bit, its values as a plain tensor): contiguous,
    strided, bfloat16, and the public way to make one (a conjugated complex tensor's
    imaginary part)."""
    base = torch.from_numpy(RNG.standard_normal(6).astype(np.float32))
    cplx = torch.complex(base, base.flip(0) * 0.5)
    strided = torch._neg_view(torch.from_numpy(RNG.standard_normal(12).astype(np.float32)))[::2]
    cases = [
        ("neg_view", torch._neg_view(base)),
        ("strided", strided),
        ("conj_imag_strided", cplx.conj().imag),  # stride 2 over the complex storage
        ("conj_imag_1", torch.complex(base[:1], base[1:2]).conj().imag),  # contiguous
    ]
    for name, g in cases:
        assert g.is_neg(), name
    return [(name, g, g.resolve_neg().clone()) for name, g in cases]


NEG_GRADS = _neg_grads()
OPTIMS = {
    "SGD": (dict(lr=0.5, momentum=0.9), OF.sgd),
    "Adam": (dict(lr=0.1), OF.adam),
}


def _torch_step(name, p0, g, steps=2):
    p = torch.nn.Parameter(p0.clone())
    opt = getattr(torch.optim, name)([p], **OPTIMS[name][0])
    for _ in range(steps):
        p.grad = g.clone()
        opt.step()
    return p.detach()


@pytest.mark.parametrize("gname,g,values", NEG_GRADS, ids=[c[0] for c in NEG_GRADS])
@pytest.mark.parametrize("name", list(OPTIMS))
def test_negated_gradients_step_like_torch_optim(name, gname, g, values):
    p0 = torch.from_numpy(RNG.standard_normal(tuple(g.shape)).astype(np.float32))
    want = _torch_step(name, p0, values)
    kw, fn = OPTIMS[name]

    # functional
    p = p0.clone()
    if name == "SGD":
        bufs = [None]
        for _ in range(2):
            fn([p], [g], bufs, **kw)
    else:
        m, v = torch.zeros_like(p), torch.zeros_like(p)
        for step in (1, 2):
            fn([p], [g], [m], [v], step=step, **kw)
    torch.testing.assert_close(p, want, rtol=1e-6, atol=1e-7)

    # fastact.optim's class on a tensor with .grad, and on step(grads=...)
    for attached in (True, False):
        p = p0.clone()
        opt = getattr(fastact_optim, name)([p], **kw)
        for _ in range(2):
            if attached:
                p.grad = g
                opt.step()
            else:
                opt.step(grads=[g])
        torch.testing.assert_close(p, want, rtol=1e-6, atol=1e-7)

    # fastact.torch.optim
    p = torch.nn.Parameter(p0.clone())
    opt = getattr(FTO, name)([p], **kw)
    for _ in range(2):
        p.grad = g
        opt.step()
    torch.testing.assert_close(p.detach(), want, rtol=1e-6, atol=1e-7)
    assert g.is_neg()  # the caller's gradient is read, not changed


def test_negated_bfloat16_gradient_steps_like_torch_optim():
    p0 = torch.from_numpy(RNG.standard_normal(8).astype(np.float32)).bfloat16()
    g = torch._neg_view(torch.from_numpy(RNG.standard_normal(8).astype(np.float32)).bfloat16())
    want = _torch_step("SGD", p0, g.resolve_neg(), steps=1)
    p = p0.clone()
    OF.sgd([p], [g], [None], **OPTIMS["SGD"][0])
    torch.testing.assert_close(p, want, rtol=0, atol=0)


def test_negated_parameters_and_states_are_refused_before_any_write():
    """Written in place: their memory would be updated with the wrong sign. Refused with a
    TypeError naming them (a bfloat16 one raised torch's RuntimeError), nothing written."""
    for dt in (torch.float32, torch.bfloat16):
        p = torch.ones(4, dtype=dt)
        g = torch.ones(4, dtype=dt)
        with pytest.raises(TypeError, match=r"^params\[0\] has torch's lazy negative bit"):
            OF.sgd([torch._neg_view(p)], [g], lr=0.1)
        m = torch.zeros(4, dtype=dt)
        before = p.clone()
        with pytest.raises(TypeError, match=r"^exp_avgs\[0\] has torch's lazy negative bit"):
            OF.adam([p], [g], [torch._neg_view(m)], [torch.zeros(4, dtype=dt)], step=1)
        assert torch.equal(p, before) and not m.any()


def test_negated_state_tensors_load_as_their_values():
    """A state dict is only read by ``load_state_dict``: its negated tensors are loaded as
    their values (they were refused as 'cannot be viewed as a NumPy array')."""
    p = torch.from_numpy(RNG.standard_normal(5).astype(np.float32))
    opt = fastact_optim.Adam([p], lr=0.1)
    opt.step(grads=[torch.ones(5)])
    sd = opt.state_dict()
    want = {k: v.clone() for k, v in sd["state"][0].items() if torch.is_tensor(v) and v.ndim}
    assert set(want) == {"exp_avg", "exp_avg_sq"}
    for k, v in want.items():
        sd["state"][0][k] = torch._neg_view(-v)
    opt.load_state_dict(sd)
    got = opt.state_dict()["state"][0]
    for k, v in want.items():
        torch.testing.assert_close(torch.as_tensor(got[k]), v, rtol=0, atol=0)


# ----------------------------------------------------------------------------- bfloat16
def _bf16_cases():
    """(name, fastact call, its float32 twin, torch's call or None) on bfloat16 tensors."""
    x = torch.from_numpy(RNG.standard_normal((3, 8)).astype(np.float32) * 3).bfloat16()
    g4 = torch.from_numpy(RNG.standard_normal((3, 4)).astype(np.float32)).bfloat16()
    g8 = torch.from_numpy(RNG.standard_normal((3, 8)).astype(np.float32)).bfloat16()
    w = torch.tensor([0.25, 0.5, 0.1, 0.3, 0.2, 0.6, 0.7, 0.05]).bfloat16()
    xf, g4f, g8f, wf = x.float(), g4.float(), g8.float(), w.float()
    y = fastact.softmax(x, -1)
    # torch's bfloat16 log_softmax rounds x - max to bfloat16 before subtracting the log of
    # the sum (up to 12 bfloat16 ULPs off near 0): compared with the float64 result instead
    cases = [
        ("softmax", lambda: fastact.softmax(x, 0), lambda: fastact.softmax(xf, 0),
         lambda: F.softmax(x, 0)),
        ("log_softmax", lambda: fastact.log_softmax(x, 0), lambda: fastact.log_softmax(xf, 0),
         lambda: F.log_softmax(x.double(), 0).bfloat16()),
        ("softmin", lambda: fastact.softmin(x, 0), lambda: fastact.softmin(xf, 0),
         lambda: F.softmin(x, 0)),
    ]  # fmt: skip
    cases += [
        ("glu", lambda: fastact.glu(x), lambda: fastact.glu(xf), lambda: F.glu(x)),
        ("prelu", lambda: fastact.prelu(x, w), lambda: fastact.prelu(xf, wf),
         lambda: F.prelu(x, w)),
        ("maxout", lambda: fastact.maxout(x, 2), lambda: fastact.maxout(xf, 2),
         lambda: x.view(3, 4, 2).amax(2)),
        ("rrelu", lambda: fastact.rrelu(x, training=True, generator=3),
         lambda: fastact.rrelu(xf, training=True, generator=3), None),
        ("softmax_backward", lambda: fastact.softmax_backward(g8, dim=-1, output=y),
         lambda: fastact.softmax_backward(g8f, dim=-1, output=y.float()), None),
        ("glu_backward", lambda: fastact.glu_backward(g4, x), lambda: fastact.glu_backward(g4f, xf),
         None),
        ("maxout_backward", lambda: fastact.maxout_backward(g4, x, 2),
         lambda: fastact.maxout_backward(g4f, xf, 2), None),
        ("rrelu_backward", lambda: fastact.rrelu_backward(g8, x, training=True, generator=3),
         lambda: fastact.rrelu_backward(g8f, xf, training=True, generator=3), None),
        ("prelu_backward[0]", lambda: fastact.prelu_backward(g8, x, w)[0],
         lambda: fastact.prelu_backward(g8f, xf, wf)[0], None),
        ("prelu_backward[1]", lambda: fastact.prelu_backward(g8, x, w)[1],
         lambda: fastact.prelu_backward(g8f, xf, wf)[1], None),
    ]  # fmt: skip
    return cases


BF16_CASES = _bf16_cases()


@pytest.mark.parametrize("name,call,twin,torch_call", BF16_CASES, ids=[c[0] for c in BF16_CASES])
def test_axis_activations_return_bfloat16_for_bfloat16_tensors(name, call, twin, torch_call):
    got = call()
    assert got.dtype == torch.bfloat16, name
    torch.testing.assert_close(got, twin().bfloat16(), rtol=0, atol=0)  # float32, rounded once
    if torch_call is not None:
        want = torch_call()
        assert want.dtype == torch.bfloat16
        torch.testing.assert_close(got, want)  # torch's bfloat16 tolerance


def test_rrelu_noise_and_mixed_dtypes_follow_the_rule():
    x = torch.randn(4, 6).bfloat16()
    y, noise = fastact.rrelu(x, training=True, generator=5, return_noise=True)
    assert y.dtype == noise.dtype == torch.bfloat16
    # a float32 tensor among the arguments: float32, as torch promotes
    g = torch.randn(4, 3)
    assert fastact.glu_backward(g, x).dtype == torch.float32


@pytest.mark.parametrize("f", [fastact.softmax, fastact.log_softmax, fastact.softmin])
def test_softmax_family_takes_dtype_bfloat16_like_torch(f):
    tf = getattr(F, f.__name__)
    x = torch.from_numpy(RNG.standard_normal((5, 33)).astype(np.float32) * 4)
    for inp in (x, x.double(), x.bfloat16()):
        got, want = f(inp, -1, dtype=torch.bfloat16), tf(inp, -1, dtype=torch.bfloat16)
        assert got.dtype == torch.bfloat16
        exact = tf(inp.bfloat16().double(), -1)  # of the input rounded to bfloat16, as torch
        if f is fastact.log_softmax:  # torch's is up to 12 ULPs off near 0 (see above)
            assert (got.double() - exact).abs().max() <= (want.double() - exact).abs().max()
            want = exact.bfloat16()
        torch.testing.assert_close(got, want)
    # a float dtype given for a bfloat16 tensor: the result has that dtype, as torch's
    got = f(x.bfloat16(), 0, dtype=torch.float32)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, tf(x.bfloat16(), 0, dtype=torch.float32))
    assert f(x.bfloat16(), 0, dtype=torch.float16).dtype == torch.float16
    with pytest.raises(TypeError, match="dtype=torch.bfloat16 needs a CPU torch tensor"):
        f(x.numpy(), -1, dtype=torch.bfloat16)
    with pytest.raises(TypeError, match="dtype=torch.bfloat16 cannot be combined with out="):
        f(x, -1, dtype=torch.bfloat16, out=torch.empty(5, 33))


def _bfloat16_ulps(a: torch.Tensor, b: torch.Tensor) -> int:
    """The largest distance in bfloat16 steps between same-signed bfloat16 tensors."""
    return int((a.view(torch.int16).int() - b.view(torch.int16).int()).abs().max())


@pytest.mark.parametrize("dim", [-1, 0])
@pytest.mark.parametrize("f", [fastact.softmax, fastact.log_softmax, fastact.softmin])
def test_softmax_family_bfloat16_is_the_rounded_float64_result(f, dim):
    """docs/torch_semantics.md: with bfloat16 (a bfloat16 input or dtype=torch.bfloat16),
    fastact's result is the float64 softmax of the bfloat16 input correctly rounded to
    bfloat16, but where its float32 value lands on a bfloat16 midpoint (1 ULP off). The doc
    said fastact's log_softmax was within 1 ULP of torch's and the others equal: it is torch
    that is off, and where depends on the dim (log_softmax along the last dim by up to 1.8e4
    ULPs near 0)."""
    tf = getattr(F, f.__name__)
    x = torch.from_numpy(RNG.standard_normal((64, 33)).astype(np.float32) * 4)
    xb = x.bfloat16()
    sign = -1.0 if f is fastact.softmin else 1.0
    exact_f = torch.log_softmax if f is fastact.log_softmax else torch.softmax
    exact = exact_f(sign * xb.double(), dim).bfloat16()
    for got, want in [
        (f(xb, dim), tf(xb, dim)),
        (f(x, dim, dtype=torch.bfloat16), tf(x, dim, dtype=torch.bfloat16)),
    ]:
        assert got.dtype == want.dtype == torch.bfloat16
        assert _bfloat16_ulps(got, exact) <= 1
        assert (got != exact).sum() <= 2  # the midpoints: 3 in 5 x 10^5 elements measured
        if f is not fastact.log_softmax or dim != -1:
            assert _bfloat16_ulps(got, want) <= 2  # each within 1 ULP of the exact result


# ----------------------------------------------------------------------------- result rule
def test_a_tensor_among_the_array_arguments_gives_tensor_results():
    """Whichever argument is the tensor (the element-wise backwards already did this)."""
    x = RNG.standard_normal((3, 4)).astype(np.float32)
    g = RNG.standard_normal((3, 4)).astype(np.float32)
    g2 = RNG.standard_normal((3, 2)).astype(np.float32)
    w = np.full(4, 0.25, np.float32)
    y = fastact.softmax(x, -1)
    T = torch.from_numpy
    calls = {
        "gelu_backward": (lambda: fastact.gelu_backward(T(g), x), fastact.gelu_backward(g, x)),
        "softmax_backward": (
            lambda: fastact.softmax_backward(T(g), None, -1, output=y),
            fastact.softmax_backward(g, None, -1, output=y),
        ),
        "log_softmax_backward(input)": (
            lambda: fastact.log_softmax_backward(g, T(x), 0),
            fastact.log_softmax_backward(g, x, 0),
        ),
        "glu_backward": (lambda: fastact.glu_backward(T(g2), x), fastact.glu_backward(g2, x)),
        "maxout_backward": (
            lambda: fastact.maxout_backward(T(g2), x, 2, 1),
            fastact.maxout_backward(g2, x, 2, 1),
        ),
        "prelu": (lambda: fastact.prelu(x, T(w)), fastact.prelu(x, w)),
        "prelu_backward[0]": (
            lambda: fastact.prelu_backward(g, x, T(w))[0],
            fastact.prelu_backward(g, x, w)[0],
        ),
        "prelu_backward[1]": (
            lambda: fastact.prelu_backward(T(g), x, w)[1],
            fastact.prelu_backward(g, x, w)[1],
        ),
        "rrelu_backward": (
            lambda: fastact.rrelu_backward(T(g), x, training=True, generator=2),
            fastact.rrelu_backward(g, x, training=True, generator=2),
        ),
    }
    for name, (call, want) in calls.items():
        got = call()
        assert isinstance(got, torch.Tensor), name
        np.testing.assert_array_equal(got.numpy(), want, err_msg=name)
    # NumPy arguments only: NumPy results
    assert type(fastact.glu_backward(g2, x)) is np.ndarray


def test_losses_and_tensor_parameters_follow_the_result_rule():
    """README's one rule for the losses (they looked at the input only: mse_loss(array,
    tensor) returned NumPy) and for a tensor-valued parameter, which counts as an array
    argument (leaky_relu(array, tensor slope) returned an ndarray, prelu(array, tensor
    weight) a tensor): a new result (loss, gradients) is a tensor when any array argument
    is; a grad_out / out= buffer, in place, is returned as itself."""
    T = torch.from_numpy
    x = RNG.standard_normal(1024).astype(np.float32)  # the fast paths' size
    t = RNG.standard_normal(1024).astype(np.float32)
    v = RNG.uniform(0.5, 2, 1024).astype(np.float32)
    y = RNG.choice([-1.0, 1.0], 1024).astype(np.float32)
    lg = RNG.standard_normal((8, 5)).astype(np.float32)
    cls = np.arange(8) % 5
    calls = {
        "mse_loss(array, tensor)": (lambda: L.mse_loss(x, T(t)), L.mse_loss(x, t)),
        "mse_loss weight": (lambda: L.mse_loss(x, t, weight=T(v)), L.mse_loss(x, t, weight=v)),
        "mse_loss grad": (
            lambda: L.mse_loss(x, T(t), return_grad=True)[1],
            L.mse_loss(x, t, return_grad=True)[1],
        ),
        "l1_loss 'none'": (
            lambda: L.l1_loss(x, T(t), reduction="none"),
            L.l1_loss(x, t, reduction="none"),
        ),
        "cross_entropy target": (
            lambda: L.cross_entropy(lg, T(cls)),
            L.cross_entropy(lg, cls),
        ),
        "bce_with_logits pos_weight": (
            lambda: L.binary_cross_entropy_with_logits(x, v / 2, pos_weight=T(v)),
            L.binary_cross_entropy_with_logits(x, v / 2, pos_weight=v),
        ),
        "gaussian_nll_loss var": (
            lambda: L.gaussian_nll_loss(x, t, T(v)),
            L.gaussian_nll_loss(x, t, v),
        ),
        "margin_ranking_loss grads": (
            lambda: L.margin_ranking_loss(x, t, T(y), return_grad=True)[1][1],
            L.margin_ranking_loss(x, t, y, return_grad=True)[1][1],
        ),
        "leaky_relu slope": (
            lambda: fastact.leaky_relu(x, torch.tensor(0.25)),
            fastact.leaky_relu(x, 0.25),
        ),
        "leaky_relu_backward slope": (
            lambda: fastact.leaky_relu_backward(t, x, torch.tensor(0.25)),
            fastact.leaky_relu_backward(t, x, 0.25),
        ),
        "elu alpha": (lambda: fastact.elu(x, torch.tensor(0.5)), fastact.elu(x, 0.5)),
        "leaky_relu array slope": (
            lambda: fastact.leaky_relu(x, T(v)),
            fastact.leaky_relu(x, v),
        ),
        "rrelu bounds": (
            lambda: fastact.rrelu(x, torch.tensor(0.125), 0.25),
            fastact.rrelu(x, 0.125, 0.25),
        ),
        "rrelu_backward bounds": (
            lambda: fastact.rrelu_backward(t, x, 0.125, torch.tensor(0.25)),
            fastact.rrelu_backward(t, x, 0.125, 0.25),
        ),
    }
    for name, (call, want) in calls.items():
        got = call()
        assert isinstance(got, torch.Tensor), name
        np.testing.assert_array_equal(got.numpy(), want, err_msg=name)
    # a float32 tensor input with a bfloat16 slope: float32, as the input (not every tensor
    # among the arguments is bfloat16); both bfloat16: bfloat16, as torch's loss
    got = fastact.leaky_relu(T(x), torch.tensor(0.25).bfloat16())
    assert got.dtype == torch.float32
    np.testing.assert_array_equal(got.numpy(), fastact.leaky_relu(x, 0.25))
    xb, tb = T(x).bfloat16(), T(t).bfloat16()
    assert L.mse_loss(xb, tb).dtype == F.mse_loss(xb, tb).dtype == torch.bfloat16
    # buffers the caller gave are returned as themselves
    buf = np.empty_like(x)
    loss, g = L.mse_loss(x, T(t), return_grad=True, grad_out=buf)
    assert isinstance(loss, torch.Tensor) and g is buf
    a = x.copy()
    assert fastact.leaky_relu_(a, torch.tensor(0.25)) is a
    assert fastact.leaky_relu(x, torch.tensor(0.25), out=buf) is buf
    np.testing.assert_array_equal(a, buf)
    # NumPy arguments only: NumPy results
    assert type(L.mse_loss(x, t)) is np.float32
    assert type(fastact.leaky_relu(x, np.float32(0.25))) is np.ndarray


# ----------------------------------------------------------------------------- errors
def test_tensor_parameters_are_checked_like_tensor_arguments():
    x = torch.from_numpy(RNG.standard_normal(9).astype(np.float32))
    for f, name in ((fastact.leaky_relu, "negative_slope"), (fastact.elu, "alpha")):
        with pytest.raises(
            TypeError,
            match=rf"^{name} is a torch tensor that requires grad.*pass {name}\.detach\(\)",
        ):
            f(x, torch.tensor(0.5, requires_grad=True))
        with pytest.raises(TypeError, match=rf"^{name} is a torch tensor on meta"):
            f(x, torch.tensor(0.5, device="meta"))
        with pytest.raises(TypeError, match=rf"^{name} is a sparse torch tensor"):
            f(x, torch.tensor([0.5]).to_sparse())
        tf = getattr(F, f.__name__)
        want = tf(x, 0.5)
        # bfloat16 (0.5 exactly) read as float32, a negated view read as its value
        torch.testing.assert_close(f(x, torch.tensor(0.5).bfloat16()), want, rtol=0, atol=0)
        torch.testing.assert_close(f(x, torch._neg_view(torch.tensor(-0.5))), want, rtol=0, atol=0)


def test_grad_out_hint_names_the_argument():
    x = torch.randn(3)
    with pytest.raises(TypeError, match=r"^grad_out for input is a torch tensor that requires "
                       r"grad.* or pass grad_out\.detach\(\)$"):  # fmt: skip
        L.mse_loss(x, x.clone(), return_grad=True, grad_out=torch.empty(3, requires_grad=True))


def _nested(layout):
    parts = [torch.tensor([1.0, -2.0]), torch.tensor([3.0])]
    return torch.nested.nested_tensor(parts, layout=layout)


@pytest.mark.filterwarnings("ignore:The PyTorch API of nested tensors")
@pytest.mark.parametrize("layout", [torch.strided, torch.jagged], ids=["strided", "jagged"])
def test_nested_tensors_refused_with_a_type_error_naming_them(layout):
    """A nested tensor (torch.nested.nested_tensor) is refused with a TypeError naming the
    argument, nothing written: one of strided layout passed the fast paths' checks and
    crashed with torch's "Internal error: NestedTensorImpl doesn't support sizes"
    (activations, backwards, softmax, losses, an optimizer's gradient); a jagged one was
    called "sparse"."""
    p = torch.tensor([1.0, 2.0])
    o = torch.zeros(2)
    calls = {
        "relu": ("input", lambda n: fastact.relu(n)),
        "relu_": ("input", lambda n: fastact.relu_(n)),
        "relu out=": ("out", lambda n: fastact.relu(o, out=n)),
        "leaky_relu slope": ("negative_slope", lambda n: fastact.leaky_relu(o, n)),
        "softmax": ("input", lambda n: fastact.softmax(n, -1)),
        "relu_backward": ("grad_output", lambda n: fastact.relu_backward(n, n)),
        "prelu weight": ("weight", lambda n: fastact.prelu(torch.ones(1, 2), n)),
        "mse_loss": ("input", lambda n: L.mse_loss(n, n)),
        "mse_loss target": ("target", lambda n: L.mse_loss(o, n)),
        "grad_out": (
            "grad_out for input",
            lambda n: L.mse_loss(o, o, return_grad=True, grad_out=n),
        ),
        "sgd grads": (r"grads\[0\]", lambda n: OF.sgd([p], [n], lr=0.1)),
        "sgd params": (r"params\[0\]", lambda n: OF.sgd([n], [p], lr=0.1)),
        "SGD.step": (r"grads\[0\]", lambda n: fastact_optim.SGD([p], lr=0.1).step([n])),
    }
    for what, (name, call) in calls.items():
        with pytest.raises(TypeError, match=rf"^{name} is a nested tensor; only dense tensors"):
            call(_nested(layout))
        assert p.tolist() == [1.0, 2.0] and not o.any(), what
