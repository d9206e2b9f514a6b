"""The plain API's edge with CPU torch tensors, found by fuzzing it against torch:

* A gradient with torch's lazy negative bit (``torch._neg_view(g)``, the ``.imag`` of a
  conjugated complex tensor) holds ``-g`` in memory: every optimizer front end (functional,
  fastact.optim's classes, fastact.torch.optim) steps with its values, as torch.optim does,
  whatever its layout or dtype; a parameter or state with the bit (written in place) is
  refused with a TypeError naming it.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import fastact.optim as fastact_optim
import fastact.torch.optim as FTO
from fastact.optim import functional as OF

RNG = np.random.default_rng(7)


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
