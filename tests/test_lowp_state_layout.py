"""8-bit optimizer states and their layout: the block size the codes were written in (kept
through a refused step, saved by ``state_dict``) and the memory order their blocks run over
(a Fortran-ordered parameter's codes loaded into a C-ordered parameter and back, directly,
through ``fastact.optim.save``/``load``, pickle and ``torch.save``)."""

from __future__ import annotations

import copy
import io
import pickle

import numpy as np
import pytest
import torch

import fastact.optim as fo
import fastact.torch.optim as fto
from fastact.kernels.lowp import dequantize_blocks, quantize_blocks

ROWS = {"exp_avg": True, "exp_avg_sq": False}  # AdamW's 8-bit rows: signed or not
BLOCK = 64


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


# ----------------------------------------------------------- the memory order of the codes
SHAPE = (24, 40)


def _grad(seed: int, shape: tuple = SHAPE) -> np.ndarray:
    # columns of different magnitudes: blocks over rows and over columns differ
    g = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    return g * np.linspace(0.01, 10, shape[-1], dtype=np.float32)


def _order(a: np.ndarray) -> str:
    assert a.flags.c_contiguous or a.flags.f_contiguous
    return "C" if a.flags.c_contiguous else "F"


def _decode(codes: np.ndarray, scales: np.ndarray, signed: bool) -> np.ndarray:
    """The values of ``codes``, blockwise over their own memory order."""
    order = _order(codes)
    vals = np.empty(codes.size, np.float32)
    dequantize_blocks(codes.ravel(order), scales, BLOCK, signed, vals)
    return vals.reshape(codes.shape, order=order)


def _quantize(vals: np.ndarray, order: str, signed: bool) -> tuple[np.ndarray, np.ndarray]:
    """Codes (in ``order``) and scales of ``vals``, blockwise over that memory order."""
    flat = np.ascontiguousarray(vals.ravel(order))
    codes = np.empty(flat.size, np.uint8)
    scales = np.empty(-(-flat.size // BLOCK), np.float32)
    quantize_blocks(flat, BLOCK, signed, codes, scales)
    return codes.reshape(vals.shape, order=order), scales


def _through(sd: dict, via: str, tmp_path) -> dict:
    if via == "state_dict":
        return copy.deepcopy(sd)
    if via == "checkpoint":
        fo.save(sd, tmp_path / "opt.fa")
        return fo.load(tmp_path / "opt.fa")
    if via == "pickle":
        return pickle.loads(pickle.dumps(sd))
    buf = io.BytesIO()
    torch.save(sd, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


CASES = [
    ("numpy", "state_dict", SHAPE),
    ("numpy", "state_dict", (3, 8, 40)),
    ("numpy", "checkpoint", SHAPE),
    ("numpy", "pickle", SHAPE),
    ("torch", "state_dict", SHAPE),
    ("torch", "state_dict", (3, 8, 40)),
    ("torch", "checkpoint", SHAPE),
    ("torch", "torch.save", SHAPE),
]


@pytest.mark.parametrize("api,via,shape", CASES, ids=lambda c: "x".join(map(str, c))
                         if isinstance(c, tuple) else c)  # fmt: skip
@pytest.mark.parametrize("src,dst", [("F", "C"), ("C", "F"), ("F", "F"), ("C", "C")])
def test_8bit_codes_load_across_memory_orders(api, via, shape, src, dst, tmp_path):
    """8-bit codes are blockwise in the memory order of the parameter they were written for,
    and state_dict keeps that order (a Fortran-ordered parameter's codes are Fortran-ordered,
    as torch keeps its state tensors' strides). Loaded into a parameter of the same shape and
    the other order they were walked in the loading parameter's order under the saved
    blocks' scales (values off by up to 80% of the largest, the resumed run diverging).
    Now: the same order resumes bit for bit; the other order decodes exactly (float32
    class) and requantizes exactly what the decoded values quantize to in its blocks. The
    fastact checkpoint keeps a Fortran-ordered tensor's order for it."""
    x0 = _grad(99, shape)
    a = _param(x0, src, api)
    oa = _cls(api, "AdamW8bit")([a], lr=0.01, block_size=BLOCK, min_8bit_size=0)
    for i in range(3):
        _step(oa, [a], [_grad(i, shape)], api)
    sd = _through(oa.state_dict(), via, tmp_path)
    st_a = oa.state[a]
    for key in ROWS:
        assert _order(_np(sd["state"][0][key])) == src or len(shape) == 1
    b = _param(_np(a), dst, api)
    ob = _cls(api, "AdamW8bit")([b], lr=0.01, block_size=BLOCK, min_8bit_size=0)
    ob.load_state_dict(sd)
    st_b = ob.state[b]
    f = _param(_np(a), dst, api)
    of = _cls(api, "AdamW")([f], lr=0.01)
    of.load_state_dict(_through(oa.state_dict(), via, tmp_path))
    for key, signed in ROWS.items():
        codes, scales = _np(st_a[key]), _np(st_a[key + "_f8absmax"])
        assert _order(codes) == src
        vals = _decode(codes, scales, signed)
        np.testing.assert_array_equal(_np(of.state[f][key]), vals)  # decoded exactly
        got, got_s = _np(st_b[key]), _np(st_b[key + "_f8absmax"])
        assert _order(got) == dst
        if src == dst:
            np.testing.assert_array_equal(got, codes)
            np.testing.assert_array_equal(got_s, scales)
        else:  # requantized in the loading parameter's blocks
            want, want_s = _quantize(vals, dst, signed)
            np.testing.assert_array_equal(got, want)
            np.testing.assert_array_equal(got_s, want_s)
            # within the 8-bit code's precision of the decoded values (per block maximum)
            back = _decode(got, got_s, signed)
            err = np.abs(back - vals).reshape(-1, order=dst)
            top = np.abs(vals).reshape(-1, order=dst)
            for o in range(0, err.size, BLOCK):
                assert err[o : o + BLOCK].max() <= top[o : o + BLOCK].max() / 8
    for i in range(3, 6):
        _step(oa, [a], [_grad(i, shape)], api)
        _step(ob, [b], [_grad(i, shape)], api)
    if src == dst:
        np.testing.assert_array_equal(_np(b), _np(a))


def test_checkpoint_keeps_a_fortran_ordered_tensors_order(tmp_path):
    """fastact.optim.save/load kept NumPy arrays' Fortran order but made tensors
    C-contiguous: an 8-bit state's codes (blockwise in their memory order) then decoded
    wrongly. Fortran-ordered tensors come back Fortran-ordered (not views, flags kept);
    other strides still come back C-contiguous."""
    base = torch.arange(24.0).reshape(2, 3, 4)
    obj = {
        "t2": torch.arange(12, dtype=torch.uint8).reshape(3, 4).t(),
        "t3": base.permute(2, 1, 0),
        "param": torch.nn.Parameter(
            base.permute(2, 1, 0).clone(memory_format=torch.preserve_format)
        ),
        "perm": base.permute(1, 0, 2),
        "c": base,
        "col": base.reshape(-1, 1),
    }
    fo.save(obj, tmp_path / "t.fa")
    out = fo.load(tmp_path / "t.fa")
    for k, t in obj.items():
        u = out[k]
        assert torch.equal(u, t.detach()) and u.shape == t.shape, k
        assert not u._is_view(), k
    for k in ("t2", "t3", "param"):
        assert out[k].stride() == obj[k].stride() and not out[k].is_contiguous(), k
    assert type(out["param"]) is torch.nn.Parameter and out["param"].requires_grad
    assert out["perm"].is_contiguous() and out["c"].is_contiguous()
    assert out["col"].is_contiguous()
