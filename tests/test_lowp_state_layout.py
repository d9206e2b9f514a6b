"""8-bit optimizer states and their layout: the block size the codes were written in (kept
through a refused step, saved by ``state_dict``)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import fastact.optim as fo
import fastact.torch.optim as fto
from fastact.kernels.lowp import dequantize_blocks


@pytest.fixture(autouse=True)
def _keep_torch_rng():
    state = torch.get_rng_state()
    yield
    torch.set_rng_state(state)


def _np(x):
    return x.detach().numpy() if isinstance(x, torch.Tensor) else x


def _param(x: np.ndarray, order: str, api: str):
    a = np.array(x, order=order)
    return a if api == "numpy" else torch.from_numpy(a).requires_grad_()


def _step(opt, params: list, grads: list, api: str) -> None:
    if api == "numpy":
        opt.step([np.array(g, order="F" if p.flags.f_contiguous else "C")
                  for p, g in zip(params, grads, strict=True)])  # fmt: skip
        return
    for p, g in zip(params, grads, strict=True):
        p.grad = torch.from_numpy(np.array(g, order="C" if p.is_contiguous() else "F"))
    opt.step()


def _cls(api: str, name: str) -> type:
    return getattr(fo if api == "numpy" else fto, name)


# ------------------------------------------------------------- the block size of the codes
def _two_scales(n: int = 100) -> np.ndarray:
    g = np.ones(n, np.float32)
    g[64:] = 1e-3  # the second block of 64 holds small moments
    return g


@pytest.mark.parametrize("api", ["numpy", "torch"])
@pytest.mark.parametrize("edit", [("min_8bit_size", 1000), ("state_dtype", "bfloat16")])
def test_refused_step_keeps_the_codes_block_size(api, edit):
    """A step refused because the storage options changed under 8-bit state (TypeError: the
    codes are uint8) dropped the record of the codes' block size; a block_size change made
    after the options were set back was then stepped silently, the codes read in the new
    blocks (an element took its neighbouring block's scale). Now it is refused as when made
    directly, and with block_size set back the run goes on bit for bit."""
    n = 100
    p = _param(np.zeros(n, np.float32), "C", api)
    opt = _cls(api, "AdamW8bit")([p], lr=1.0, betas=(0.0, 0.999), block_size=64,
                                 min_8bit_size=0)  # fmt: skip
    g = _two_scales(n)
    _step(opt, [p], [g], api)
    ref_p = _param(_np(p), "C", api)
    ref = _cls(api, "AdamW8bit")([ref_p], lr=1.0, betas=(0.0, 0.999), block_size=64,
                                 min_8bit_size=0)  # fmt: skip
    ref.load_state_dict(opt.state_dict())
    group = opt.param_groups[0]
    key, value = edit
    old = group[key]
    group[key] = value
    before = _np(p).copy()
    with pytest.raises(TypeError, match="has dtype uint8"):
        _step(opt, [p], [g], api)
    group[key] = old
    group["block_size"] = 96
    with pytest.raises(ValueError, match="block_size changed from 64 to 96"):
        _step(opt, [p], [g], api)
    np.testing.assert_array_equal(_np(p), before)  # nothing written
    group["block_size"] = 64
    for _ in range(2):
        _step(opt, [p], [g], api)
        _step(ref, [ref_p], [g], api)
    np.testing.assert_array_equal(_np(p), _np(ref_p))


@pytest.mark.parametrize("api", ["numpy", "torch"])
def test_state_dict_saves_the_block_size_the_codes_were_written_in(api):
    """block_size edited in place under 8-bit state (no step yet, which would refuse it):
    state_dict saved the new block_size beside codes quantized in the old blocks, and a
    load decoded them in the wrong blocks, silently (100 elements are 2 blocks of 64 or of
    96). It saves the codes' block size; the group itself keeps the edit."""
    n = 100
    p = _param(np.zeros(n, np.float32), "C", api)
    opt = _cls(api, "AdamW8bit")([p], lr=1.0, betas=(0.0, 0.999), block_size=64,
                                 min_8bit_size=0)  # fmt: skip
    _step(opt, [p], [_two_scales(n)], api)
    good = copy.deepcopy(opt.state_dict())
    opt.param_groups[0]["block_size"] = 96
    sd = opt.state_dict()
    assert sd["param_groups"][0]["block_size"] == 64
    assert opt.param_groups[0]["block_size"] == 96

    def decoded(s):
        q = _param(np.zeros(n, np.float32), "C", api)
        f = _cls(api, "AdamW")([q])
        f.load_state_dict(copy.deepcopy(s))
        return _np(f.state[q]["exp_avg_sq"])

    want = decoded(good)
    assert want[64] < 1e-8
    np.testing.assert_array_equal(decoded(sd), want)
    # loaded into an 8-bit optimizer of the edited block size: requantized in blocks of 96
    q = _param(np.zeros(n, np.float32), "C", api)
    o8 = _cls(api, "AdamW8bit")([q], block_size=96, min_8bit_size=0)
    o8.load_state_dict(sd)
    st = o8.state[q]
    vals = np.empty(n, np.float32)
    dequantize_blocks(_np(st["exp_avg_sq"]), _np(st["exp_avg_sq_f8absmax"]), 96, False, vals)
    np.testing.assert_allclose(vals[64:], want[64:], rtol=1 / 7)


@pytest.mark.parametrize("api", ["numpy", "torch"])
def test_state_dict_refuses_one_group_with_codes_of_two_block_sizes(api):
    """A parameter moved into a group of another block_size: the group's one block_size
    cannot describe both parameters' codes (a step refuses it too)."""
    ps = [_param(np.zeros(100, np.float32), "C", api) for _ in range(2)]
    groups = [{"params": [ps[0]], "block_size": 64}, {"params": [ps[1]], "block_size": 96}]
    opt = _cls(api, "AdamW8bit")(groups, min_8bit_size=0)
    _step(opt, ps, [_two_scales(), _two_scales()], api)
    opt.param_groups[1]["params"].remove(ps[1])
    opt.param_groups[0]["params"].append(ps[1])
    with pytest.raises(ValueError, match=r"params\[0\] .* blocks of 64 and params\[1\] in "
                                         r"blocks of 96"):  # fmt: skip
        opt.state_dict()
    opt.param_groups[1]["params"].append(opt.param_groups[0]["params"].pop())
    assert [g["block_size"] for g in opt.state_dict()["param_groups"]] == [64, 96]
