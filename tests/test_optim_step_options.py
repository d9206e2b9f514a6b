"""A step's group options: checked by the constructors' rules before anything is written, and
the step coefficients computed before any launch (fastact.optim, fastact.torch.optim and the
functional API)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

import fastact.optim as fo
import fastact.torch.optim as FO
from fastact.optim import functional as F

torch.set_num_threads(1)

#: (class name, option, value set in group 1 after construction, what the error names)
OUT_OF_RANGE = [
    ("Adam", "betas", (1.0, 0.999), r"param_groups\[1\]: Invalid beta parameter at index 0"),
    ("AdamW", "betas", (0.9, 1.5), r"param_groups\[1\]: Invalid beta parameter at index 1"),
    ("AdamW", "betas", (0.9, 1.0), r"param_groups\[1\]: Invalid beta parameter at index 1"),
    ("Adamax", "betas", (1.0, 0.999), r"param_groups\[1\]: Invalid beta parameter at index 0"),
    ("Adagrad", "lr_decay", -1.0, r"param_groups\[1\]: Invalid lr_decay value"),
    ("Adam", "eps", -1e-8, r"param_groups\[1\]: Invalid epsilon value"),
    ("RMSprop", "alpha", -0.5, r"param_groups\[1\]: Invalid alpha value"),
    ("Adadelta", "rho", 1.5, r"param_groups\[1\]: Invalid rho value"),
    ("Rprop", "etas", (1.5, 1.2), r"param_groups\[1\]: Invalid eta values"),
    ("SGD", "weight_decay", -0.1, r"param_groups\[1\]: Invalid weight_decay value"),
]


def _snapshot(opt, params):
    """Copies of the parameters and of every state value (step counts included)."""

    def copy(v):
        if isinstance(v, torch.Tensor):
            return v.detach().clone()
        return np.array(v, copy=True)

    return [copy(p) for p in params], [
        {k: copy(v) for k, v in opt.state[p].items()} for p in params
    ]


def _same(a, b):
    (pa, sa), (pb, sb) = a, b
    for x, y in zip(pa, pb, strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    for x, y in zip(sa, sb, strict=True):
        assert x.keys() == y.keys()
        for k in x:
            np.testing.assert_array_equal(np.asarray(x[k]), np.asarray(y[k]))


@pytest.mark.parametrize(("name", "key", "value", "match"), OUT_OF_RANGE)
def test_numpy_class_refuses_an_out_of_range_group_option_before_writing(name, key, value, match):
    """fastact.optim: an option set out of range in group 1 after construction (betas[0] = 1
    divided by zero, betas[1] > 1 made the bias correction complex, lr_decay < 0 divided by
    zero at step 2) is a ValueError naming the group and the option, raised before group 0
    (earlier in the step) is written."""
    a, b = np.ones(3), np.ones(2)
    kw = {"momentum": 0.9} if name == "SGD" else {}
    opt = getattr(fo, name)([{"params": [a]}, {"params": [b]}], lr=0.1, **kw)
    grads = [np.full(3, 0.5), np.full(2, 0.25)]
    opt.step(grads)
    before = _snapshot(opt, [a, b])
    opt.param_groups[1][key] = value
    with pytest.raises(ValueError, match=match):
        opt.step(grads)
    _same(_snapshot(opt, [a, b]), before)


@pytest.mark.parametrize(("name", "key", "value", "match"), OUT_OF_RANGE)
def test_torch_class_refuses_an_out_of_range_group_option_before_writing(name, key, value, match):
    """fastact.torch.optim: the same, with the step counts and version counters of group 0
    unchanged."""
    a = torch.ones(3, dtype=torch.float64, requires_grad=True)
    b = torch.ones(2, dtype=torch.float64, requires_grad=True)
    kw = {"momentum": 0.9} if name == "SGD" else {}
    opt = getattr(FO, name)([{"params": [a]}, {"params": [b]}], lr=0.1, **kw)
    a.grad, b.grad = torch.full_like(a, 0.5), torch.full_like(b, 0.25)
    opt.step()
    before = _snapshot(opt, [a, b])
    versions = [a._version] + [v._version for v in opt.state[a].values()]
    opt.param_groups[1][key] = value
    with pytest.raises(ValueError, match=match):
        opt.step()
    _same(_snapshot(opt, [a, b]), before)
    assert [a._version] + [v._version for v in opt.state[a].values()] == versions


def test_a_type_error_in_a_later_group_names_it_and_writes_nothing():
    """A pair option of the wrong kind (etas a number) is a TypeError naming the group and
    option (it was float()'s unpacking error), nothing written."""
    a, b = torch.ones(3, requires_grad=True), torch.ones(2, requires_grad=True)
    opt = FO.Rprop([{"params": [a]}, {"params": [b]}], lr=0.1)
    a.grad, b.grad = torch.ones(3), torch.ones(2)
    opt.param_groups[1]["etas"] = 1.2
    with pytest.raises(TypeError, match=r"param_groups\[1\]\['etas'\] must be a pair"):
        opt.step()
    assert torch.equal(a.detach(), torch.ones(3)) and not opt.state[a]


def test_a_schedule_may_still_take_lr_slightly_below_zero():
    """A step takes any real lr, as a load does (a cosine schedule can end at -1e-17)."""
    a = torch.ones(3, requires_grad=True)
    opt = FO.Adam([a], lr=0.1)
    opt.param_groups[0]["lr"] = -1e-17
    a.grad = torch.ones(3)
    opt.step()
    assert opt.state[a]["step"].item() == 1.0


@pytest.mark.parametrize("module", [fo, FO])
def test_the_coefficients_are_computed_before_any_launch(module):
    """A coefficient that cannot be computed for group 1 (here a spec whose coefs raise for
    its lr) stops the step before group 0 is written: the coefficient tables are made while
    validating, not between the launches."""
    a = torch.ones(3, requires_grad=True)
    b = torch.ones(2, requires_grad=True)
    opt = module.Adam([{"params": [a]}, {"params": [b], "lr": 0.2}], lr=0.1)
    spec = opt._spec

    def coefs(o, step):
        if o["lr"] == 0.2:
            raise ArithmeticError("group 1's coefficients")
        return spec.coefs(o, step)

    opt._spec = dataclasses.replace(spec, coefs=coefs)
    a.grad, b.grad = torch.ones(3), torch.ones(2)
    with pytest.raises(ArithmeticError):
        opt.step()
    assert torch.equal(a.detach(), torch.ones(3))
    assert all("step" not in opt.state.get(p, {}) or float(opt.state[p]["step"]) == 0.0
               for p in (a, b))  # fmt: skip


@pytest.mark.parametrize(
    ("fn", "kw", "match"),
    [
        ("adam", {"beta1": 1.0}, "beta1"),
        ("adam", {"beta2": 1.5}, "beta2"),
        ("adam", {"beta2": float("nan")}, "beta2"),
        ("adamw", {"beta1": -0.1}, "beta1"),
        ("adamax", {"beta1": 1.0}, "beta1"),
        ("adagrad", {"lr_decay": -1.0}, "lr_decay"),
    ],
)
def test_functional_refuses_options_the_coefficients_cannot_take(fn, kw, match):
    """functional: beta1/beta2 outside [0, 1) and lr_decay < 0 are ValueErrors naming the
    option (ZeroDivisionError, or TypeError about a complex number, before), nothing
    written."""
    p = [np.ones(3)]
    g = [np.full(3, 0.5)]
    states = [[np.zeros(3)]] if fn == "adagrad" else [[np.zeros(3)], [np.zeros(3)]]
    with pytest.raises(ValueError, match=match):
        getattr(F, fn)(p, g, *states, step=2, **kw)
    np.testing.assert_array_equal(p[0], 1.0)
    for s in states:
        np.testing.assert_array_equal(s[0], 0.0)


# --------------------------------------------------------------------------------------------
# tensor lr / betas: the coefficients in the tensor's dtype, as torch computes them
# --------------------------------------------------------------------------------------------

TENSOR_OPTIONS = [
    ("Adam", {"lr": torch.tensor(0.01)}),
    ("Adam", {"lr": 0.01, "betas": (torch.tensor(0.9), torch.tensor(0.999))}),
    ("AdamW", {"lr": torch.tensor(0.01), "weight_decay": 0.1}),
    ("AdamW", {"lr": torch.tensor(0.01), "betas": (torch.tensor(0.8), torch.tensor(0.99))}),
    ("Adamax", {"lr": torch.tensor(0.01)}),
    ("Adagrad", {"lr": torch.tensor(0.01), "lr_decay": 0.01}),
]


def _trajectory(cls, dtype, kw, steps=12):
    torch.manual_seed(0)
    p = torch.randn(16, dtype=dtype, requires_grad=True)
    opt = cls([p], **kw)
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        p.grad = torch.randn(16, generator=gen, dtype=dtype)
        opt.step()
    return p.detach()


@pytest.mark.parametrize(("name", "kw"), TENSOR_OPTIONS)
@pytest.mark.parametrize("module", [FO, fo])
def test_tensor_lr_and_betas_coefficients_match_torch_in_float64(module, name, kw):
    """A float32 tensor lr (or betas) on float64 parameters: torch computes lr /
    bias_correction1, 1 - beta**t and 1 - lr * weight_decay in float32 tensor arithmetic;
    fastact computed them in float64 from float(lr) (1e-9 to 7e-5 relative off after a few
    steps). Now the same to the last bits (float lr: 0-1 ulp, the fused decay's rounding).
    (fastact.optim's constructors make tensor betas floats: their groups hold numbers.)"""
    if module is fo and "betas" in kw:
        kw = {**kw, "betas": tuple(float(b) for b in kw["betas"])}
    ref = _trajectory(getattr(torch.optim, name), torch.float64, {**kw, "foreach": False})
    got = _trajectory(getattr(module, name), torch.float64, kw)
    torch.testing.assert_close(got, ref, rtol=4e-15, atol=0)


@pytest.mark.parametrize(("name", "kw"), TENSOR_OPTIONS)
def test_tensor_lr_and_betas_coefficients_match_torch_in_float32(name, kw):
    """The same on float32 parameters (the kernel's float32 arithmetic: a few ulp)."""
    ref = _trajectory(getattr(torch.optim, name), torch.float32, {**kw, "foreach": False})
    got = _trajectory(getattr(FO, name), torch.float32, kw)
    torch.testing.assert_close(got, ref, rtol=4e-6, atol=1e-7)


@pytest.mark.parametrize("fn", ["adam", "adamw", "adamax", "adagrad"])
def test_functional_tensor_lr_matches_torch_in_float64(fn):
    """The functional forms keep a tensor lr / betas for the coefficients too."""
    name = {"adam": "Adam", "adamw": "AdamW", "adamax": "Adamax", "adagrad": "Adagrad"}[fn]
    lr = torch.tensor(0.01)
    torch.manual_seed(0)
    p = torch.randn(16, dtype=torch.float64)
    t = p.clone().requires_grad_(True)
    kw = {"lr_decay": 0.01} if fn == "adagrad" else {}
    opt = getattr(torch.optim, name)([t], lr=lr, foreach=False, **kw)
    states = [torch.zeros_like(p) for _ in range(1 if fn == "adagrad" else 2)]
    gen = torch.Generator().manual_seed(1)
    for step in range(1, 13):
        g = torch.randn(16, generator=gen, dtype=torch.float64)
        t.grad = g.clone()
        opt.step()
        getattr(F, fn)([p], [g], *[[s] for s in states], step=step, lr=lr, **kw)
    torch.testing.assert_close(p, t.detach(), rtol=4e-15, atol=0)
