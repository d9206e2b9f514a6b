"""fastact.nn modules against torch.nn's modules (autograd) and NumPy references.

* constructor signatures and defaults against torch.nn's, for every module with a torch twin;
* every activation module: forward value and backward (input gradient) against the torch
  module with the same (non-default) constructor arguments, float32 and float64;
* in-place modules: ``x`` is overwritten and returned, the backward matches torch's in-place
  module; RReLU in train()/eval(); PReLU's weight gradient (num_parameters 1 and C, 2-D and
  4-D inputs, accumulation over two backward calls);
* every loss module: value and gradient(s) against torch, reduced and unreduced;
* Linear and Sequential against torch.nn.Linear / nn.Sequential with the same weights
  (copied with load_state_dict), parameters updated in place by a fastact optimizer.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch

import fastact.nn as nn
from fastact import optim

torch.set_num_threads(1)

#: module-wiring tolerances: fastact vs torch, both rounded (the kernels' own accuracy is
#: tested ULP-exactly in test_activations.py / test_losses.py)
TOL = {np.float32: dict(rtol=2e-5, atol=2e-6), np.float64: dict(rtol=1e-10, atol=1e-12)}
TORCH_DT = {np.float32: torch.float32, np.float64: torch.float64}
DTYPES = [np.float32, np.float64]


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _torch_fb(mod: torch.nn.Module, x: np.ndarray, g: np.ndarray, inplace: bool = False):
    """(output, input gradient) of a torch module by autograd (in place on a non-leaf)."""
    leaf = torch.tensor(x, requires_grad=True)
    inp = leaf.clone() if inplace else leaf
    y = mod(inp)
    y.backward(torch.from_numpy(g))
    return y.detach().numpy(), leaf.grad.numpy()


# ----------------------------------------------------------------------------- signatures
_TORCH_EXTRA = ("self", "args", "kwargs")


def _torch_params(cls: type) -> list[inspect.Parameter]:
    return [
        p for n, p in inspect.signature(cls.__init__).parameters.items() if n not in _TORCH_EXTRA
    ]


SIG_NAMES = sorted(n for n in {**nn.ACTIVATION_MODULES, **nn.LOSS_MODULES} if n != "Maxout")


@pytest.mark.parametrize("name", SIG_NAMES)
def test_constructor_signature_matches_torch(name):
    """torch's parameters, in torch's positions, with torch's defaults (fastact may add
    trailing extras, e.g. a ``generator``)."""
    ours = list(inspect.signature(getattr(nn, name)).parameters.values())
    by_name = {p.name: p for p in ours}
    for i, tp in enumerate(_torch_params(getattr(torch.nn, name))):
        assert tp.name in by_name, f"{name} lacks torch's argument {tp.name}"
        p = by_name[tp.name]
        if tp.kind is tp.POSITIONAL_OR_KEYWORD:
            assert ours[i].name == tp.name, f"{name}: argument {i} is {ours[i].name}"
        if tp.default is inspect.Parameter.empty:
            assert p.default is inspect.Parameter.empty, f"{name}.{tp.name} must be required"
        else:
            assert p.default == tp.default, f"{name}.{tp.name} default {p.default}"


def test_constructor_errors_name_the_class():
    with pytest.raises(TypeError, match="LeakyReLU"):
        nn.LeakyReLU(0.1, False, 3)
    with pytest.raises(TypeError, match="Threshold"):
        nn.Threshold(0.5)  # threshold and value are required, as in torch
    with pytest.raises(TypeError, match="CrossEntropyLoss"):
        nn.CrossEntropyLoss(bogus=1)
    with pytest.raises(ValueError, match="num_parameters"):
        nn.PReLU(0)
    with pytest.raises(ValueError, match="approximate"):
        nn.GELU("fast")
    with pytest.raises(ValueError, match="device"):
        nn.Linear(2, 3, device="cuda")
    with pytest.raises(TypeError, match="dtype"):
        nn.PReLU(3, dtype=np.int32)
    with pytest.raises(ValueError, match="max_val"):
        nn.Hardtanh(1.0, -1.0)
    with pytest.raises(TypeError, match="Sequential argument 1"):
        nn.Sequential(nn.ReLU(), lambda x: x)
    with pytest.raises(RuntimeError, match="before forward"):
        nn.Tanh().backward(np.ones(3))


def test_positional_arguments_bind_like_torch():
    m = nn.LeakyReLU(0.2, True)
    assert m._args == {"negative_slope": 0.2, "inplace": True} and m.inplace
    assert nn.Softplus(2.0, 5.0)._args == {"beta": 2.0, "threshold": 5.0}
    assert nn.Threshold(0.1, 20.0)._args == {"threshold": 0.1, "value": 20.0, "inplace": False}
    ce = nn.CrossEntropyLoss(None, None, 3, None, "sum", 0.1)
    assert ce._args["ignore_index"] == 3 and ce.reduction == "sum"
    assert ce._args["label_smoothing"] == 0.1
    with pytest.warns(FutureWarning, match="min_value"):
        assert nn.Hardtanh(min_value=-2.0)._args["min_val"] == -2.0
    assert repr(nn.ELU(alpha=0.5)) == "ELU(alpha=0.5)"
    # constructor arguments are attributes, as in torch, and setting one takes effect
    m.negative_slope, m.inplace = 0.5, False
    x = np.array([-2.0, 3.0])
    np.testing.assert_array_equal(m(x), [-1.0, 3.0])
    np.testing.assert_array_equal(x, [-2.0, 3.0])
    assert nn.PReLU(3).num_parameters == 3 and nn.Linear(2, 5).out_features == 5
    with pytest.raises(AttributeError, match="nope"):
        nn.ReLU().nope  # noqa: B018


# ----------------------------------------------------------------------------- activations
# (name, fastact/torch constructor args, kwargs, input shape)
ACT_CASES = [
    ("Sigmoid", (), {}, (4, 6, 5)),
    ("Tanh", (), {}, (4, 6, 5)),
    ("ReLU", (), {}, (4, 6, 5)),
    ("ReLU6", (), {}, (4, 6, 5)),
    ("LeakyReLU", (0.1,), {}, (4, 6, 5)),
    ("LeakyReLU", (), {"negative_slope": -0.2}, (4, 6, 5)),
    ("Hardtanh", (-2.0, 1.5), {}, (4, 6, 5)),
    ("ELU", (), {"alpha": 0.7}, (4, 6, 5)),
    ("CELU", (1.3,), {}, (4, 6, 5)),
    ("SELU", (), {}, (4, 6, 5)),
    ("SiLU", (), {}, (4, 6, 5)),
    ("Mish", (), {}, (4, 6, 5)),
    ("Hardsigmoid", (), {}, (4, 6, 5)),
    ("Hardswish", (), {}, (4, 6, 5)),
    ("Softsign", (), {}, (4, 6, 5)),
    ("Tanhshrink", (), {}, (4, 6, 5)),
    ("Softshrink", (0.3,), {}, (4, 6, 5)),
    ("Hardshrink", (), {"lambd": 0.7}, (4, 6, 5)),
    ("Threshold", (0.1, -2.0), {}, (4, 6, 5)),
    ("Softplus", (), {"beta": 2.0, "threshold": 5.0}, (4, 6, 5)),
    ("LogSigmoid", (), {}, (4, 6, 5)),
    ("GELU", (), {}, (4, 6, 5)),
    ("GELU", ("tanh",), {}, (4, 6, 5)),
    ("GLU", (), {"dim": 1}, (4, 6, 5)),
    ("GLU", (), {}, (4, 6, 4)),
    ("Softmax", (), {"dim": 1}, (4, 6, 5)),
    ("LogSoftmax", (-1,), {}, (4, 6, 5)),
    ("Softmin", (0,), {}, (4, 6, 5)),
    ("Softmax2d", (), {}, (2, 3, 4, 5)),
    ("PReLU", (), {}, (4, 6, 5)),
    ("PReLU", (6, 0.1), {}, (4, 6, 5)),
    ("RReLU", (0.1, 0.3), {}, (4, 6, 5)),  # eval mode: deterministic
]
ACT_IDS = [f"{c[0]}-{i}" for i, c in enumerate(ACT_CASES)]
#: torch's float64 backward rounds a constant to float32 (CELU's 1/alpha, Hardsigmoid's 1/6);
#: fastact keeps float64 (see README "Where fastact is more accurate than torch")
TORCH_F32_GRAD_CONSTANTS = ("CELU", "Hardsigmoid")


def test_every_torch_activation_is_covered():
    tested = {c[0] for c in ACT_CASES}
    assert set(nn.ACTIVATION_MODULES) - {"Maxout"} == tested
    for name in tested:
        assert issubclass(getattr(torch.nn, name), torch.nn.Module)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("name,args,kwargs,shape", ACT_CASES, ids=ACT_IDS)
def test_activation_module_matches_torch(name, args, kwargs, shape, dtype):
    rng = _rng(len(name))
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    x.flat[:4] = [0.0, -1.0, 1.0, 0.1]  # kinks of several activations
    g = rng.standard_normal(np.shape(getattr(nn, name)(*args, **kwargs)(x))).astype(dtype)
    extra = {"dtype": TORCH_DT[dtype]} if name == "PReLU" else {}
    tm = getattr(torch.nn, name)(*args, **kwargs, **extra).eval()
    m = getattr(nn, name)(*args, **kwargs, **({"dtype": dtype} if name == "PReLU" else {}))
    m.eval()
    x_before = x.copy()
    y = m(x)
    gx = m.backward(g)
    y_t, gx_t = _torch_fb(tm, x, g)
    assert y.dtype == dtype and gx.dtype == dtype
    np.testing.assert_allclose(y, y_t, **TOL[dtype])
    gtol = TOL[dtype]
    if dtype == np.float64 and name in TORCH_F32_GRAD_CONSTANTS:
        gtol = dict(rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(gx, gx_t, **gtol)
    np.testing.assert_array_equal(x, x_before)  # out of place: the input is untouched
    if name == "PReLU":
        np.testing.assert_allclose(m.weight.grad, tm.weight.grad.numpy(), **TOL[dtype])


INPLACE_CASES = [
    ("ReLU", (), (4, 6, 5)),
    ("ReLU6", (), (4, 6, 5)),
    ("LeakyReLU", (0.2,), (4, 6, 5)),
    ("Hardtanh", (-0.5, 2.0), (4, 6, 5)),
    ("ELU", (0.5,), (4, 6, 5)),
    ("CELU", (1.5,), (4, 6, 5)),
    ("SELU", (), (4, 6, 5)),
    ("Threshold", (0.1, -2.0), (4, 6, 5)),
    ("SiLU", (), (4, 6, 5)),
    ("Mish", (), (4, 6, 5)),
    ("Hardsigmoid", (), (4, 6, 5)),
    ("Hardswish", (), (4, 6, 5)),
    ("RReLU", (0.1, 0.3), (4, 6, 5)),
]


def test_inplace_cases_cover_every_inplace_module():
    with_inplace = {
        n for n, c in nn.ACTIVATION_MODULES.items() if "inplace" in inspect.signature(c).parameters
    }
    assert with_inplace == {c[0] for c in INPLACE_CASES}


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("name,args,shape", INPLACE_CASES, ids=[c[0] for c in INPLACE_CASES])
def test_inplace_module_matches_torch(name, args, shape, dtype):
    rng = _rng(7)
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    tm = getattr(torch.nn, name)(*args, inplace=True).eval()
    y_t, gx_t = _torch_fb(tm, x, g, inplace=True)
    m = getattr(nn, name)(*args, inplace=True).eval()
    buf = x.copy()
    y = m(buf)
    assert y is buf  # overwritten and returned, like torch's inplace=True
    np.testing.assert_allclose(buf, y_t, **TOL[dtype])
    gtol = TOL[dtype]
    if dtype == np.float64 and name in TORCH_F32_GRAD_CONSTANTS:
        gtol = dict(rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(m.backward(g), gx_t, **gtol)


@pytest.mark.parametrize("name,args", [("LeakyReLU", (-0.1,)), ("ELU", (-1.0,))])
def test_inplace_backward_with_negative_slope_keeps_the_input(name, args):
    """torch refuses this backward (the output cannot give the input back); fastact.nn, like
    fastact.torch.autograd (docs/torch_semantics.md, section 1), keeps a copy of the input
    and returns the out-of-place gradient (it raised after the forward had overwritten x)."""
    x = np.array([-1.0, 2.0, -3.0])
    tm = getattr(torch.nn, name)(*args, inplace=True)
    with pytest.raises(RuntimeError, match="negative"):
        _torch_fb(tm, x, np.ones(3), inplace=True)
    m = getattr(nn, name)(*args, inplace=True)
    m(x.copy())
    _, want = _torch_fb(getattr(torch.nn, name)(*args), x, np.ones(3))
    np.testing.assert_allclose(m.backward(np.ones(3)), want, rtol=1e-12)


def test_inplace_rejects_non_arrays_before_writing():
    with pytest.raises(TypeError, match="input"):
        nn.ReLU(inplace=True)([1.0, -1.0])
    x = np.array([1, -1])  # integers cannot hold the result
    with pytest.raises(TypeError):
        nn.ReLU(inplace=True)(x)
    np.testing.assert_array_equal(x, [1, -1])


# ----------------------------------------------------------------------------- RReLU
def test_rrelu_train_eval_modes():
    rng = _rng(3)
    x = rng.standard_normal((64, 8)).astype(np.float32)
    x[0, :3] = [0.0, -0.0, 1e-30]
    g = rng.standard_normal(x.shape).astype(np.float32)
    lower, upper = 0.1, 0.3
    m = nn.RReLU(lower, upper, generator=1)
    assert m.training
    y = m(x)
    neg = x <= 0
    slope = np.divide(y, x, out=np.ones_like(x), where=neg & (x != 0))
    nz = neg & (x != 0)
    assert np.all((slope[nz] >= lower) & (slope[nz] <= upper))
    np.testing.assert_array_equal(y[~neg], x[~neg])
    assert np.unique(np.round(slope[nz], 6)).size > 50  # a slope per element
    # backward: the drawn slope (torch: grad = noise), checked with torch autograd on the
    # same per-element slopes
    gx = m.backward(g)
    drawn = torch.tensor(slope, dtype=torch.float32)
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.where(xt > 0, xt, xt * drawn)
    yt.backward(torch.from_numpy(g))
    np.testing.assert_allclose(gx[nz | ~neg], xt.grad.numpy()[nz | ~neg], rtol=1e-6)
    assert np.all((gx[neg] / g[neg] >= lower - 1e-6) & (gx[neg] / g[neg] <= upper + 1e-6))
    # a second forward draws new slopes; the same seed reproduces them
    assert not np.array_equal(m(x), y)
    np.testing.assert_array_equal(nn.RReLU(lower, upper, generator=1)(x), y)
    # eval: the mean slope, exactly torch's eval RReLU
    m.eval()
    assert not m.training
    ye = m(x)
    tm = torch.nn.RReLU(lower, upper).eval()
    y_t, gx_t = _torch_fb(tm, x, g)
    np.testing.assert_allclose(ye, y_t, rtol=1e-6)
    np.testing.assert_allclose(m.backward(g), gx_t, rtol=1e-6)
    # in place, training: x overwritten, the slope recovered for the backward
    buf = x.copy()
    mi = nn.RReLU(lower, upper, inplace=True, generator=2)
    out = mi(buf)
    assert out is buf
    gi = mi.backward(g)
    si = np.divide(out, x, out=np.ones_like(x), where=x < 0)
    np.testing.assert_allclose(gi[x != 0], (g * si)[x != 0], rtol=1e-5)


def test_train_eval_propagate_through_sequential():
    r = nn.RReLU(0.1, 0.3, generator=0)
    model = nn.Sequential(nn.Linear(3, 4, generator=0), r, nn.Sequential(nn.ReLU(), r))
    model.eval()
    assert all(not m.training for m in model.modules())
    x = np.ones((2, 3), np.float32)
    np.testing.assert_array_equal(model(x), model(x))  # deterministic in eval
    model.train()
    assert all(m.training for m in model.modules())


# ----------------------------------------------------------------------------- PReLU
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize(
    "num,shape",
    [(1, (8, 5)), (5, (8, 5)), (1, (2, 3, 4, 5)), (3, (2, 3, 4, 5)), (1, (7,))],
    ids=["1-2d", "C-2d", "1-4d", "C-4d", "1-1d"],
)
def test_prelu_weight_gradient_matches_torch(num, shape, dtype):
    rng = _rng(num)
    x = rng.standard_normal(shape).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    init = rng.uniform(0.05, 0.5, num)
    m = nn.PReLU(num, 0.25, dtype=dtype)
    assert m.weight.shape == (num,) and m.weight.dtype == dtype
    np.testing.assert_array_equal(m.weight, np.full(num, 0.25, dtype))
    tm = torch.nn.PReLU(num, dtype=TORCH_DT[dtype])
    with torch.no_grad():
        tm.weight.copy_(torch.from_numpy(init))
    m.load_state_dict(tm.state_dict())
    np.testing.assert_array_equal(m.weight, init.astype(dtype))
    assert [n for n, _ in m.named_parameters()] == ["weight"]
    for _ in range(2):  # gradients accumulate over backward calls, as in torch
        y = m(x)
        gx = m.backward(g)
        y_t, gx_t = _torch_fb(tm, x, g)
        np.testing.assert_allclose(y, y_t, **TOL[dtype])
        np.testing.assert_allclose(gx, gx_t, **TOL[dtype])
    np.testing.assert_allclose(m.weight.grad, tm.weight.grad.numpy(), **TOL[dtype])
    # float64 reference: sum over every dim but 1 of (x < 0) * x * g, twice
    axes = tuple(i for i in range(len(shape)) if i != 1 or num == 1)
    ref = 2 * np.sum(np.where(x < 0, x.astype(np.float64) * g, 0.0), axis=axes).reshape(num)
    np.testing.assert_allclose(m.weight.grad, ref, rtol=1e-5 if dtype == np.float32 else 1e-12)
    m.zero_grad()
    assert m.weight.grad is None


def test_prelu_channel_mismatch_raises():
    with pytest.raises(ValueError, match="channel"):
        nn.PReLU(3)(np.ones(5, np.float32))


def test_prelu_weight_is_updated_by_the_optimizer():
    """The answer to "who updates a": backward fills weight.grad, the optimizer steps it."""
    m = nn.PReLU(4)
    x = -np.ones((3, 4), np.float32)
    opt = optim.SGD(m.parameters(), lr=0.5)
    w = m.weight
    m(x)
    m.backward(np.ones_like(x))  # d(sum y)/da = sum of x where x < 0 = -3 per channel
    np.testing.assert_array_equal(m.weight.grad, np.full(4, -3.0, np.float32))
    opt.step([p.grad for p in m.parameters()])
    assert m.weight is w  # updated in place
    np.testing.assert_allclose(m.weight, 0.25 + 0.5 * 3.0)


# ----------------------------------------------------------------------------- Maxout
def test_maxout_module_matches_reference():
    rng = _rng(5)
    x = rng.standard_normal((4, 6, 3))
    g = rng.standard_normal((4, 3, 3))
    m = nn.Maxout(2)
    y = m(x)
    groups = x.reshape(4, 3, 2, 3)
    np.testing.assert_array_equal(y, groups.max(axis=2))
    gx = m.backward(g)
    xt = torch.tensor(x, requires_grad=True)
    xt.reshape(4, 3, 2, 3).amax(dim=2).backward(torch.from_numpy(g))
    np.testing.assert_allclose(gx, xt.grad.numpy(), rtol=1e-12)
    with pytest.raises(ValueError, match="pieces"):
        nn.Maxout(0)


# ----------------------------------------------------------------------------- losses
def _loss_inputs(name: str, rng: np.random.Generator, dtype):
    """(inputs with gradients, other inputs, fastact kwargs) for each loss."""
    N, C = 6, 5

    def r(*s):
        return rng.standard_normal(s).astype(dtype)

    def sign(*s):
        return np.where(rng.random(s) < 0.5, -1.0, 1.0).astype(dtype)

    if name in ("MSELoss", "L1Loss"):
        return [r(N, C)], [r(N, C)], {}
    if name == "SmoothL1Loss":
        return [r(N, C)], [r(N, C)], {"beta": 0.5}
    if name == "HuberLoss":
        return [r(N, C)], [r(N, C)], {"delta": 0.7}
    if name == "BCELoss":
        p = 1 / (1 + np.exp(-r(N, C)))
        return [p.astype(dtype)], [rng.random((N, C)).astype(dtype)], {"weight": rng.random(C)}
    if name == "BCEWithLogitsLoss":
        return [r(N, C)], [rng.random((N, C)).astype(dtype)], {"pos_weight": rng.random(C) + 0.5}
    if name == "CrossEntropyLoss":
        t = rng.integers(0, C, N)
        t[0] = 2
        kw = {"weight": rng.random(C) + 0.1, "label_smoothing": 0.1, "ignore_index": 2}
        return [r(N, C)], [t], kw
    if name == "NLLLoss":
        z = r(N, C)
        return [z - np.log(np.exp(z).sum(1, keepdims=True))], [rng.integers(0, C, N)], {}
    if name == "KLDivLoss":
        z = r(N, C)
        q = rng.random((N, C)).astype(dtype)
        lp = z - np.log(np.exp(z).sum(1, keepdims=True))
        return [lp.astype(dtype)], [q / q.sum(1, keepdims=True)], {"reduction": "batchmean"}
    if name == "PoissonNLLLoss":
        return [r(N, C)], [rng.poisson(2.0, (N, C)).astype(dtype)], {"full": True}
    if name == "GaussianNLLLoss":
        return [r(N, C)], [r(N, C), rng.random((N, C)).astype(dtype) + 0.1], {}
    if name == "SoftMarginLoss":
        return [r(N, C)], [sign(N, C)], {}
    if name == "MarginRankingLoss":
        return [r(N), r(N)], [sign(N)], {"margin": 0.2}
    if name == "HingeEmbeddingLoss":
        return [r(N, C)], [sign(N, C)], {"margin": 0.8}
    if name == "CosineEmbeddingLoss":
        return [r(N, C), r(N, C)], [sign(N)], {"margin": 0.1}
    if name == "MultiLabelSoftMarginLoss":
        return [r(N, C)], [(rng.random((N, C)) < 0.5).astype(dtype)], {}
    if name == "TripletMarginLoss":
        return [r(N, C), r(N, C), r(N, C)], [], {"margin": 0.5, "swap": True}
    raise AssertionError(name)


def _call_order(name, diff, other):
    """Arguments in the loss's signature order (GaussianNLL: input, target, var -> only
    input and var get gradients in fastact)."""
    if name == "GaussianNLLLoss":
        return [diff[0], other[0], other[1]], [0, 2]
    if name in ("MarginRankingLoss", "CosineEmbeddingLoss"):
        return [*diff, *other], [0, 1]
    return [*diff, *other], list(range(len(diff)))


LOSS_NAMES = sorted(nn.LOSS_MODULES)


@pytest.mark.parametrize("reduction", ["default", "sum", "none"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("name", LOSS_NAMES)
def test_loss_module_matches_torch(name, dtype, reduction):
    rng = _rng(len(name))
    diff, other, kw = _loss_inputs(name, rng, dtype)
    if reduction != "default":
        kw = dict(kw, reduction=reduction)
    args, grad_pos = _call_order(name, diff, other)
    if name == "GaussianNLLLoss":
        grad_pos = [0, 2]
        # torch differentiates input and var; fastact returns (grad_input, grad_var)
    m = getattr(nn, name)(**kw)
    loss = m(*args)
    t_kw = {
        k: torch.tensor(v.astype(dtype)) if isinstance(v, np.ndarray) else v for k, v in kw.items()
    }
    t_args = [torch.tensor(a, requires_grad=i in grad_pos) for i, a in enumerate(args)]
    t_loss = getattr(torch.nn, name)(**t_kw)(*t_args)
    tol = dict(rtol=5e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(loss, t_loss.detach().numpy(), **tol)
    if reduction == "none":
        go = rng.standard_normal(np.shape(loss)).astype(dtype)
        t_loss.backward(torch.from_numpy(go))
        grads = m.backward(go)
    else:
        t_loss.backward(torch.tensor(2.5, dtype=TORCH_DT[dtype]))
        grads = m.backward(2.5)
    grads = grads if isinstance(grads, tuple) else (grads,)
    assert len(grads) == len(grad_pos)
    for gv, i in zip(grads, grad_pos, strict=True):
        assert gv.shape == args[i].shape and gv.dtype == dtype
        np.testing.assert_allclose(gv, t_args[i].grad.numpy(), **tol)


def test_cross_entropy_spatial_unreduced_backward():
    """(N, C, d) input, reduction='none': the upstream gradient is spread over dim 1."""
    rng = _rng(11)
    x = rng.standard_normal((3, 4, 5))
    t = rng.integers(0, 4, (3, 5))
    go = rng.standard_normal((3, 5))
    m = nn.CrossEntropyLoss(reduction="none", label_smoothing=0.2)
    m(x, t)
    xt = torch.tensor(x, requires_grad=True)
    torch.nn.CrossEntropyLoss(reduction="none", label_smoothing=0.2)(xt, torch.tensor(t)).backward(
        torch.tensor(go)
    )
    np.testing.assert_allclose(m.backward(go), xt.grad.numpy(), rtol=1e-10)
    with pytest.raises(ValueError, match="grad_output"):
        m.backward(np.ones(4))


def test_loss_forward_checks_argument_count():
    with pytest.raises(TypeError, match="MSELoss.forward takes 2"):
        nn.MSELoss()(np.ones(3))
    with pytest.raises(RuntimeError, match="before forward"):
        nn.MSELoss().backward()


# ----------------------------------------------------------------------------- Linear
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(5, 4), (2, 3, 4)], ids=["2d", "3d"])
def test_linear_matches_torch(shape, bias):
    rng = _rng(2)
    tm = torch.nn.Linear(4, 3, bias=bias)
    m = nn.Linear(4, 3, bias=bias, generator=0)
    assert [n for n, _ in m.named_parameters()] == [n for n, _ in tm.named_parameters()]
    m.load_state_dict(tm.state_dict())
    x = rng.standard_normal(shape).astype(np.float32)
    g = rng.standard_normal(shape[:-1] + (3,)).astype(np.float32)
    y_t, gx_t = _torch_fb(tm, x, g)
    y = m(x)
    gx = m.backward(g)
    tol = dict(rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(y, y_t, **tol)
    np.testing.assert_allclose(gx, gx_t, **tol)
    np.testing.assert_allclose(m.weight.grad, tm.weight.grad.numpy(), **tol)
    if bias:
        np.testing.assert_allclose(m.bias.grad, tm.bias.grad.numpy(), **tol)
    else:
        assert m.bias is None and len(m.parameters()) == 1


def test_linear_init_dtype_and_errors():
    m = nn.Linear(16, 8, generator=np.random.default_rng(0))
    assert m.weight.dtype == np.float32 and m.weight.shape == (8, 16) and m.bias.shape == (8,)
    assert np.abs(m.weight).max() <= 0.25 and np.abs(m.bias).max() <= 0.25
    assert np.abs(m.weight).max() > 0.2  # uniform over the whole torch range
    m2 = nn.Linear(16, 8, generator=0)
    np.testing.assert_array_equal(nn.Linear(16, 8, generator=0).weight, m2.weight)
    assert nn.Linear(2, 2, dtype=torch.float64).weight.dtype == np.float64
    with pytest.raises(ValueError, match="expected"):
        m(np.ones((2, 3)))
    m(np.ones((2, 16)))
    with pytest.raises(ValueError, match="grad_output"):
        m.backward(np.ones((2, 7)))


# ----------------------------------------------------------------------------- Sequential
def _twin_models():
    tm = torch.nn.Sequential(
        torch.nn.Linear(6, 8),
        torch.nn.PReLU(8),
        torch.nn.Linear(8, 8),
        torch.nn.ELU(0.8),
        torch.nn.Linear(8, 3),
        torch.nn.LogSoftmax(dim=1),
    )
    m = nn.Sequential(
        nn.Linear(6, 8),
        nn.PReLU(8),
        nn.Linear(8, 8),
        nn.ELU(0.8),
        nn.Linear(8, 3),
        nn.LogSoftmax(dim=1),
    )
    return tm, m


def test_sequential_matches_torch_and_optimizer_updates_in_place():
    rng = _rng(4)
    tm, m = _twin_models()
    with torch.no_grad():
        tm[1].weight.uniform_(0.05, 0.5)
    names = [n for n, _ in m.named_parameters()]
    assert names == [n for n, _ in tm.named_parameters()]
    assert names == ["0.weight", "0.bias", "1.weight", "2.weight", "2.bias", "4.weight", "4.bias"]
    m.load_state_dict(tm.state_dict())
    x = rng.standard_normal((10, 6)).astype(np.float32)
    t = rng.integers(0, 3, 10)
    crit, t_crit = nn.NLLLoss(), torch.nn.NLLLoss()
    loss = crit(m(x), t)
    m.backward(crit.backward())
    t_loss = t_crit(tm(torch.from_numpy(x)), torch.from_numpy(t))
    t_loss.backward()
    np.testing.assert_allclose(loss, t_loss.item(), rtol=1e-5)
    for (n, p), tp in zip(m.named_parameters(), tm.parameters(), strict=True):
        assert p.grad is not None, n
        np.testing.assert_allclose(p.grad, tp.grad.numpy(), rtol=1e-4, atol=1e-6, err_msg=n)
    params = m.parameters()
    before = [p.copy() for p in params]
    opt = optim.SGD(params, lr=0.1, momentum=0.9)
    t_opt = torch.optim.SGD(tm.parameters(), lr=0.1, momentum=0.9)
    opt.step([p.grad for p in params])
    t_opt.step()
    for p, q, b, tp in zip(m.parameters(), params, before, tm.parameters(), strict=True):
        assert p is q  # the optimizer wrote into the module's own arrays
        assert not np.array_equal(p, b)
        np.testing.assert_allclose(p, tp.detach().numpy(), rtol=1e-4, atol=1e-6)
    m.zero_grad(set_to_none=False)
    assert all(np.all(p.grad == 0) for p in params)
    m.zero_grad()
    assert all(p.grad is None for p in params)


def test_sequential_container_api():
    tm, m = _twin_models()
    assert len(m) == 6 and isinstance(m[1], nn.PReLU) and list(m)[4] is m[4]
    assert [k for k, _ in m.named_modules()] == ["", "0", "1", "2", "3", "4", "5"]
    assert "(1): PReLU(num_parameters=8)" in repr(m)
    sd = m.state_dict()
    assert list(sd) == list(tm.state_dict())
    assert np.shares_memory(sd["1.weight"], m[1].weight)
    # shared parameters are listed once
    lin = nn.Linear(3, 3)
    assert len(nn.Sequential(lin, nn.ReLU(), lin).parameters()) == 2


def test_load_state_dict_validates_before_writing():
    tm, m = _twin_models()
    before = {k: v.copy() for k, v in m.state_dict().items()}
    bad = dict(tm.state_dict())
    bad["4.weight"] = torch.zeros(2, 8)
    with pytest.raises(ValueError, match="4.weight"):
        m.load_state_dict(bad)
    missing = dict(tm.state_dict())
    del missing["0.bias"]
    with pytest.raises(RuntimeError, match="0.bias"):
        m.load_state_dict(missing)
    for k, v in m.state_dict().items():
        np.testing.assert_array_equal(v, before[k])  # nothing written
    res = m.load_state_dict(dict(missing, extra=np.ones(1)), strict=False)
    assert res.missing_keys == ["0.bias"] and res.unexpected_keys == ["extra"]
    np.testing.assert_array_equal(m[0].weight, tm[0].weight.detach().numpy())


def test_parameter_behaves_like_an_array():
    p = nn.Parameter([1, 2, 3])
    assert p.dtype == np.float32 and p.grad is None and p.flags.c_contiguous
    p.accumulate_grad(np.ones(3))
    p.accumulate_grad(np.full(3, 2.0))
    np.testing.assert_array_equal(p.grad, [3.0, 3.0, 3.0])
    assert p.grad.dtype == np.float32
    q = p * 2
    assert q.grad is None  # derived arrays carry no gradient
    with pytest.raises(ValueError, match="gradient"):
        p.accumulate_grad(np.ones(4))
    import pickle

    r = pickle.loads(pickle.dumps(p))
    assert isinstance(r, nn.Parameter) and np.array_equal(r, p) and r.grad is None
    # a 0-d parameter stays 0-d (torch.nn.Parameter too; it became shape (1,)), and a Fortran
    # array becomes C-contiguous
    s = nn.Parameter(np.array(1.5))
    assert s.shape == () and s.dtype == np.float64 and s == 1.5
    assert nn.Parameter(np.asfortranarray(np.ones((3, 4)))).flags.c_contiguous


# ----------------------------------------------------------------------------------------
# found by a differential fuzz against torch (2026-12-05)
# ----------------------------------------------------------------------------------------
def test_threshold_in_place_with_a_value_above_the_threshold_like_torch():
    """Threshold(t, v, inplace=True) with v > t: the output cannot tell the input (v passes
    for an input above t), so the module keeps a copy of the input, as torch gets it right;
    the backward raised after the forward had overwritten the input."""
    x = np.array([-1.0, 0.5, 2.0, 0.3, 1.0])
    g = np.ones(5)
    m = nn.Threshold(0.0, 2.0, inplace=True)
    m(x.copy())
    tx = torch.tensor(x, requires_grad=True)
    torch.nn.Threshold(0.0, 2.0, inplace=True)(tx.clone()).backward(torch.tensor(g))
    np.testing.assert_array_equal(m.backward(g), tx.grad.numpy())


def test_state_dict_lists_a_tied_or_reused_parameter_under_each_name_like_torch():
    """torch's state_dict has one key per module path and attribute: tied weights and a
    module used twice appear under each name (fastact listed each parameter once, so the
    README's load_state_dict(torch_model.state_dict()) raised for unexpected keys)."""
    ta, tb = torch.nn.Linear(4, 4), torch.nn.Linear(4, 4)
    tb.weight = ta.weight
    tm = torch.nn.Sequential(ta, torch.nn.ReLU(), tb)
    fa, fb = nn.Linear(4, 4), nn.Linear(4, 4)
    fb.weight = fa.weight
    fm = nn.Sequential(fa, nn.ReLU(), fb)
    assert list(fm.state_dict()) == list(tm.state_dict())
    fm.load_state_dict(tm.state_dict())
    np.testing.assert_array_equal(np.asarray(fb.weight), ta.weight.detach().numpy())
    lin = nn.Linear(3, 3)
    twice = nn.Sequential(lin, nn.ReLU(), lin)
    tl = torch.nn.Linear(3, 3)
    assert list(twice.state_dict()) == list(
        torch.nn.Sequential(tl, torch.nn.ReLU(), tl).state_dict()
    )
    assert len(twice.parameters()) == 2  # the optimizer's view: each parameter once


# ----------------------------------------------------------------------------------------
# found by a state-dict / module fuzz against torch
# ----------------------------------------------------------------------------------------
def test_module_used_twice_in_a_sequential_differentiates_each_use_like_torch():
    """A module at several places of a Sequential (a shared Linear, PReLU, GELU, a nested
    Sequential) kept only its last forward's arrays, so the backward of its earlier use
    multiplied by the wrong input: wrong weight and input gradients, silently."""
    torch.manual_seed(0)
    t_lin, t_prelu, t_gelu = torch.nn.Linear(4, 4), torch.nn.PReLU(4, 0.1), torch.nn.GELU()
    t_inner = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Tanh())
    tm = torch.nn.Sequential(t_lin, t_prelu, t_inner, t_gelu, t_lin, t_prelu, t_inner, t_gelu)
    lin, prelu, gelu = nn.Linear(4, 4), nn.PReLU(4), nn.GELU()
    inner = nn.Sequential(nn.Linear(4, 4), nn.Tanh())
    m = nn.Sequential(lin, prelu, inner, gelu, lin, prelu, inner, gelu)
    m.load_state_dict(tm.state_dict())
    x = _rng(3).standard_normal((5, 4)).astype(np.float32)
    g = _rng(4).standard_normal((5, 4)).astype(np.float32)
    y_t, gx_t = _torch_fb(tm, x, g)
    y = m(x)
    lin(x[::-1].copy())  # a call on its own between forward and backward changes nothing
    gx = m.backward(g)
    np.testing.assert_allclose(y, y_t, **TOL[np.float32])
    np.testing.assert_allclose(gx, gx_t, **TOL[np.float32])
    for (name, p), tp in zip(m.named_parameters(), tm.parameters(), strict=True):
        np.testing.assert_allclose(p.grad, tp.grad.numpy(), **TOL[np.float32], err_msg=name)
    # the module keeps its last use's arrays: its own backward is that use's
    y2 = lin(x)
    np.testing.assert_allclose(lin.backward(np.ones_like(y2)), np.ones_like(y2) @ lin.weight)
    with pytest.raises(RuntimeError, match="Sequential.backward"):
        nn.Sequential(nn.Tanh()).backward(np.ones(3))


@pytest.mark.parametrize("kind", ["torch", "ml_dtypes"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_load_state_dict_casts_a_bfloat16_state_like_torch(kind, dtype):
    """A bfloat16 state (a torch twin in bfloat16, or ml_dtypes arrays as fastact.optim.load
    returns without torch) loads into float32/float64 parameters, cast as torch's copy_
    casts; fastact raised TypeError (torch's "unsupported ScalarType BFloat16")."""
    tm = torch.nn.Linear(3, 2).to(torch.bfloat16)
    state = tm.state_dict()
    if kind == "ml_dtypes":
        ml_dtypes = pytest.importorskip("ml_dtypes")
        state = {k: v.float().numpy().astype(ml_dtypes.bfloat16) for k, v in state.items()}
    t_ref = torch.nn.Linear(3, 2).to(TORCH_DT[dtype])
    t_ref.load_state_dict(tm.state_dict())
    m = nn.Linear(3, 2, dtype=dtype)
    m.load_state_dict(state)
    assert m.weight.dtype == dtype
    np.testing.assert_array_equal(m.weight, t_ref.weight.detach().numpy())
    np.testing.assert_array_equal(m.bias, t_ref.bias.detach().numpy())
    # a lazily negated tensor loads its values too
    m.load_state_dict({"weight": torch.ones(2, 3)._neg_view(), "bias": torch.zeros(2)})
    np.testing.assert_array_equal(m.weight, -np.ones((2, 3)))
    with pytest.raises(TypeError, match="weight"):
        m.load_state_dict({"weight": np.full((2, 3), "a"), "bias": np.zeros(2)})


def test_loss_backward_returns_a_new_array_each_call():
    """backward() with grad_output 1 returned the loss module's saved gradient itself: a
    caller scaling it in place (gradient accumulation) changed the next backward()."""
    mse = nn.MSELoss()
    mse(np.array([1.0, 2.0, 3.0], np.float32), np.zeros(3, np.float32))
    g = mse.backward()
    expected = g.copy()
    g *= 0.5
    again = mse.backward()
    assert again is not g
    np.testing.assert_array_equal(again, expected)
    rank = nn.MarginRankingLoss()  # two inputs: a tuple of gradients
    rank(np.array([1.0, -2.0]), np.array([0.5, 1.0]), np.array([1.0, 1.0]))
    g1, g2 = rank.backward()
    e1, e2 = g1.copy(), g2.copy()
    g1 *= 0
    g2 *= 0
    h1, h2 = rank.backward()
    np.testing.assert_array_equal(h1, e1)
    np.testing.assert_array_equal(h2, e2)


def _repr_cases():
    """(name, args, kwargs) of every module with a torch twin: defaults (with the required
    arguments of ACT_CASES) and ACT_CASES' arguments, in place where the module has it."""
    cases = [(n, (), {}) for n in nn.LOSS_MODULES]
    for name, args, kwargs, _ in ACT_CASES:
        cls = getattr(nn, name)
        required = [
            p.name
            for p in inspect.signature(cls).parameters.values()
            if p.default is inspect.Parameter.empty
        ]
        if not required:
            cases.append((name, (), {}))
        cases.append((name, args, kwargs))
        if "inplace" in inspect.signature(cls).parameters:
            cases.append((name, args, {**kwargs, "inplace": True}))
    cases += [("Linear", (2, 3), {}), ("Linear", (2, 3), {"bias": False})]
    return cases


REPR_CASES = _repr_cases()


@pytest.mark.parametrize(
    "name,args,kwargs", REPR_CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(REPR_CASES)]
)
def test_repr_matches_torch(name, args, kwargs):
    """torch's extra_repr for every module: defaults torch omits were shown
    (``ReLU(inplace=False)``, ``PReLU(num_parameters=3, init=0.25)``, ``MSELoss(size_average=
    None, ...)``)."""
    assert repr(getattr(nn, name)(*args, **kwargs)) == repr(
        getattr(torch.nn, name)(*args, **kwargs)
    )


def test_nested_sequential_repr_is_indented_like_torch():
    m = nn.Sequential(nn.Linear(2, 3), nn.Sequential(nn.ReLU(), nn.PReLU(3)), nn.Sequential())
    tm = torch.nn.Sequential(
        torch.nn.Linear(2, 3),
        torch.nn.Sequential(torch.nn.ReLU(), torch.nn.PReLU(3)),
        torch.nn.Sequential(),
    )
    assert repr(m) == repr(tm)
    relu = nn.ReLU()
    relu.inplace = True  # an argument set later shows, as in torch
    assert repr(relu) == "ReLU(inplace=True)"
    assert repr(nn.Maxout(3)) == "Maxout(pieces=3, dim=1)"


def test_load_state_dict_missing_or_unexpected_keys_raise_torchs_runtime_error():
    """strict load_state_dict raised KeyError; torch raises RuntimeError (code written for
    torch catches that) with this message."""
    for ours, theirs, state in [
        (nn.Linear(2, 2), torch.nn.Linear(2, 2), {"weight": np.zeros((2, 2), np.float32)}),
        (
            nn.Sequential(nn.Linear(2, 2)),
            torch.nn.Sequential(torch.nn.Linear(2, 2)),
            {"weight": np.zeros((2, 2), np.float32), "x": np.zeros(1, np.float32)},
        ),
    ]:
        before = {k: v.copy() for k, v in ours.state_dict().items()}
        with pytest.raises(RuntimeError) as ours_err:
            ours.load_state_dict(state)
        with pytest.raises(RuntimeError) as theirs_err:
            theirs.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
        assert str(ours_err.value) == str(theirs_err.value)
        for k, v in ours.state_dict().items():
            np.testing.assert_array_equal(v, before[k])  # nothing written


def test_linear_computes_in_its_parameters_dtype_and_refuses_complex_input():
    """README's rule: a float64 input to a float32 Linear is cast (torch raises for mixed
    dtypes); complex input was cast too, dropping the imaginary part with a warning."""
    m = nn.Linear(3, 2)
    x = _rng(1).standard_normal((4, 3))
    y = m(x)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, m(x.astype(np.float32)))
    with pytest.raises(TypeError, match="input"):
        m(x + 1j)
    with pytest.raises(TypeError, match="grad_output"):
        m.backward(np.ones((4, 2), np.complex64))
    assert m.weight.grad is None  # nothing accumulated


def test_parameter_refuses_masked_data():
    """Parameter(masked array) copied the data and dropped the mask: a TypeError naming data."""
    with pytest.raises(TypeError, match=r"^data is a numpy\.ma\.MaskedArray"):
        nn.Parameter(np.ma.array([1.0, 2.0], mask=[0, 1]))


def test_parameter_takes_real_data_and_a_float_dtype():
    """Parameter(data) silently converted complex data (imaginary part dropped), object data
    (None -> NaN), datetime64/timedelta64 (day or second counts) to float32; strings and
    dicts raised errors that did not name the argument; dtype=np.int32 truncated 1.5 to 1.0
    (then float32). Now: TypeError naming data / dtype; real data as before."""
    for data in (
        np.array([1 + 2j]),
        np.array([1, None], object),
        np.array(["2020-01-01"], "datetime64[D]"),
        np.array([5], "timedelta64[s]"),
        "ab",
        b"ab",
        {"a": 1},
        None,
        [[1.0], [1.0, 2.0]],
    ):
        with pytest.raises(TypeError, match=r"^data must be an array of real numbers"):
            nn.Parameter(data)
    for dtype in (np.int32, np.float16, "complex64", "junk"):
        with pytest.raises(TypeError, match=r"^dtype must be float32 or float64"):
            nn.Parameter([1.5], dtype=dtype)
    # real data: float32 and float64 kept, other reals as float32, or the dtype given
    for data, dtype, want in (
        ([1.5], None, np.float64),
        (np.float32(1.5), None, np.float32),
        ([True, False], None, np.float32),
        (np.arange(3, dtype=np.uint8), None, np.float32),
        (np.float16([1.5]), None, np.float32),
        ([1.5], np.float32, np.float32),
        (np.arange(3, dtype=np.int64), "float64", np.float64),
        ([1.5], torch.float64, np.float64),
        (torch.ones(2), None, np.float32),
    ):
        p = nn.Parameter(data, dtype)
        assert p.dtype == want, (data, dtype)
        np.testing.assert_array_equal(p, np.asarray(data, dtype=want))


def test_masked_arrays_refused_by_layers_losses_and_state_dicts():
    """README: a numpy.ma.MaskedArray is refused everywhere. Linear's forward and backward,
    a loss module's backward(grad_output) and Module.load_state_dict took one through
    np.asarray and dropped its mask; each now raises a TypeError naming the argument."""
    masked = np.ma.array(np.ones((2, 3), np.float32), mask=[[0, 1, 0], [0, 0, 0]])
    layer = nn.Linear(3, 4)
    with pytest.raises(TypeError, match=r"^input is a numpy\.ma\.MaskedArray"):
        layer(masked)
    layer(np.ones((2, 3), np.float32))
    with pytest.raises(TypeError, match=r"numpy\.ma\.MaskedArray"):
        layer.backward(np.ma.array(np.ones((2, 4), np.float32), mask=[[1, 0, 0, 0], [0] * 4]))
    loss = nn.MSELoss()
    loss(np.ones(3, np.float32), np.zeros(3, np.float32))
    with pytest.raises(TypeError, match=r"^grad_output is a numpy\.ma\.MaskedArray"):
        loss.backward(np.ma.array(1.0, mask=True))
    state = layer.state_dict()
    before = {k: np.array(v) for k, v in state.items()}
    bad = dict(state, weight=np.ma.array(np.zeros((4, 3), np.float32), mask=True))
    with pytest.raises(TypeError, match=r"^state_dict\['weight'\] is a numpy\.ma\.MaskedArray"):
        layer.load_state_dict(bad)
    for k, v in layer.state_dict().items():
        np.testing.assert_array_equal(v, before[k])
