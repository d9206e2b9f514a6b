"""The activations that are not element-wise (``fastact.AXIS_ACTIVATIONS``).

softmax / log_softmax / softmin (every dim, dim=None, dtype=, edge rows), glu (every dim,
odd sizes), prelu (weight (1,) and (C,), 1-D/2-D/3-D/4-D inputs, grad_weight accuracy and
thread-count invariance), maxout (NumPy reshape-max reference, torch autograd, ties, NaN) and
rrelu (eval == leaky_relu, training: slope range, seeds, Generators, noise, backward,
thread-count invariance, statistics) -- float32 and float64, against torch 2.13 autograd and
float64 NumPy references.
"""

from __future__ import annotations

import inspect
import warnings
import zlib

import numba
import numpy as np
import pytest
import scipy.stats
import torch
import torch.nn.functional as F
from activation_cases import DTYPES, assert_same, assert_ulp

import fastact
import fastact.torch.nn as fastact_torch_nn

torch.set_num_threads(1)
DT_IDS = ["f32", "f64"]
TOL = {np.float32: 8.0, np.float64: 256.0}
TORCH_DT = {np.float32: torch.float32, np.float64: torch.float64}


def _rng(*key) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def _threads(n: int):
    """Context manager: run with n numba threads, then restore."""

    class _T:
        def __enter__(self):
            self.old = numba.get_num_threads()
            numba.set_num_threads(n)

        def __exit__(self, *exc):
            numba.set_num_threads(self.old)

    return _T()


def _torch_grad(fn, x, g, *extra):
    """torch's value and input gradients of fn(x, *extra) (extra tensors require grad)."""
    xt = torch.tensor(x, requires_grad=True)
    ts = [torch.tensor(e, requires_grad=True) for e in extra]
    y = fn(xt, *ts)
    y.backward(torch.tensor(g))
    return (y.detach().numpy(), xt.grad.numpy(), *[t.grad.numpy() for t in ts])


# ============================================================================ softmax family
SOFTMAX = {
    "softmax": (fastact.softmax, fastact.softmax_backward, F.softmax),
    "log_softmax": (fastact.log_softmax, fastact.log_softmax_backward, F.log_softmax),
    "softmin": (fastact.softmin, fastact.softmin_backward, F.softmin),
}
SHAPES = [(7,), (4, 6), (3, 4, 5), (2, 3, 4, 5)]


def _softmax_scales(name, x, y, g, dim):
    """Error scales: the size of the terms each result is computed from."""
    if name == "log_softmax":
        lse = np.abs(x - y)
        fwd = np.abs(x) + lse
        bwd = np.abs(g) + np.exp(y) * np.sum(np.abs(g), axis=dim, keepdims=True)
    else:
        fwd = np.zeros_like(y)
        bwd = np.abs(y) * (np.abs(g) + np.sum(np.abs(g * y), axis=dim, keepdims=True))
    return fwd, bwd


@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("name", list(SOFTMAX))
def test_softmax_family_every_dim(name, dtype):
    fwd, bwd, tfn = SOFTMAX[name]
    for shape in SHAPES:
        rng = _rng(name, shape, np.dtype(dtype).name)
        x = (rng.standard_normal(shape) * 4).astype(dtype)
        g = rng.standard_normal(shape).astype(dtype)
        for dim in range(-len(shape), len(shape)):
            what = f"{name} {shape} dim={dim} {np.dtype(dtype).name}"
            y = fwd(x, dim)
            assert y.dtype == dtype and y.shape == shape
            assert_same(fwd(x, dim=dim), y, what)
            # float32 against torch's float64 evaluation: torch's float32 kernels round
            # x - max (|x - max| / 2 ULP off in exp), fastact's do not
            wide = np.float64 if dtype == np.float32 else dtype
            ty, tg = _torch_grad(lambda t, d=dim: tfn(t, dim=d), x.astype(wide), g.astype(wide))
            sf, sb = _softmax_scales(name, x.astype(float), ty.astype(float), g, dim)
            assert_ulp(y, ty, dtype, TOL[dtype], scale=sf, what=f"{what} forward")
            gx = bwd(g, x, dim)
            assert_ulp(gx, tg, dtype, TOL[dtype], scale=sb, what=f"{what} backward")
            gy = bwd(g, output=y, dim=dim)
            assert_ulp(gy, tg, dtype, TOL[dtype], scale=sb, what=f"{what} backward output=")
            assert_same(bwd(g, input=x, dim=dim), gx, f"{what} input= keyword")
            if name == "softmax":
                assert_ulp(
                    np.sum(y.astype(float), axis=dim),
                    1.0,
                    dtype,
                    2 * shape[dim],
                    what=f"{what} rows sum to 1",
                )


@pytest.mark.parametrize("name", list(SOFTMAX))
def test_softmax_float64_reference(name):
    fwd, bwd, _ = SOFTMAX[name]
    x = _rng("sm-ref", name).standard_normal((5, 9)) * 30
    sign = -1.0 if name == "softmin" else 1.0
    z = sign * x
    m = z.max(axis=1, keepdims=True)
    lse = m + np.log(np.sum(np.exp(z - m), axis=1, keepdims=True))
    ref = z - lse if name == "log_softmax" else np.exp(z - lse)
    # exp(z - max) amplifies the rounding of z - max by |z - max| (cond)
    assert_ulp(
        fwd(x, 1),
        ref,
        np.float64,
        64,
        scale=np.abs(z) + np.abs(lse) if name == "log_softmax" else None,
        cond=np.abs(z - m),
        what=f"{name} vs float64 reference",
    )


@pytest.mark.parametrize("name", list(SOFTMAX))
def test_softmax_implicit_dim_warns_like_torch(name):
    fwd, bwd, tfn = SOFTMAX[name]
    for shape in [(), (5,), (3, 4), (2, 3, 4), (2, 3, 4, 2)]:
        x = _rng("implicit", shape).standard_normal(shape)
        with warnings.catch_warnings(record=True) as tw:
            warnings.simplefilter("always")
            ty = tfn(torch.tensor(x)).numpy()
        with warnings.catch_warnings(record=True) as fw:
            warnings.simplefilter("always")
            y = fwd(x)
        assert len(fw) == 1 and len(tw) == 1
        assert fw[0].category is tw[0].category
        assert str(fw[0].message) == str(tw[0].message)
        assert fw[0].filename == __file__, (
            f"the warning points at {fw[0].filename}, not at the caller (torch's points at "
            f"{tw[0].filename})"
        )
        assert_ulp(y, ty, np.float64, 256, what=f"{name} dim=None on {shape}")
    with pytest.warns(UserWarning, match="Implicit dimension"):
        bwd(np.ones((3, 4)), np.ones((3, 4)))


@pytest.mark.parametrize("name", list(SOFTMAX))
def test_softmax_dtype_argument(name):
    fwd, _, tfn = SOFTMAX[name]
    x32 = _rng("dtype", name).standard_normal((3, 5)).astype(np.float32)
    y = fwd(x32, 1, np.float64)
    assert y.dtype == np.float64
    ty = tfn(torch.tensor(x32), dim=1, dtype=torch.float64).numpy()
    assert_ulp(y, ty, np.float64, 256, what=f"{name} dtype=float64")
    y32 = fwd(x32.astype(np.float64), 1, dtype=np.float32)
    assert y32.dtype == np.float32
    ty32 = tfn(torch.tensor(x32.astype(np.float64)), dim=1, dtype=torch.float32).numpy()
    assert_ulp(y32, ty32, np.float32, 8, what=f"{name} dtype=float32")
    with pytest.raises(TypeError):
        fwd(x32, 1, np.int32)


@pytest.mark.parametrize("name", list(SOFTMAX))
def test_softmax_dtype_float16_casts_the_input_first(name):
    """torch's ``dtype=torch.float16`` casts the input to float16 before the softmax (its
    result equals ``f(x.half())``); fastact then computes in float32 and rounds once: within
    half a float16 ULP of the exact value on the rounded input (torch's half loop loses up
    to several ULP), and equal to its own ``f(x.astype(float16))``."""
    fwd, _, tfn = SOFTMAX[name]
    rng = _rng("dtype16", name)
    x = np.concatenate([rng.standard_normal((60, 20)) * 3, [[1000.3, 1000.0] + [0.0] * 18]])
    for dt in (np.float32, np.float64):
        xd = x.astype(dt)
        y = fwd(xd, -1, dtype=np.float16)
        assert y.dtype == np.float16
        want = fwd(xd.astype(np.float16), -1).astype(np.float16)  # computed in float32
        assert_same(y, want, f"{name} dtype=float16 from {dt}")
        h = xd.astype(np.float16).astype(np.float64)
        s = -h if name == "softmin" else h
        z = s - s.max(-1, keepdims=True)
        ref = z - np.log(np.exp(z).sum(-1, keepdims=True))
        ref = ref if name == "log_softmax" else np.exp(ref)
        err = np.abs(y - ref) / np.spacing(np.abs(ref).astype(np.float16)).astype(np.float64)
        assert err.max() <= 0.5001, (name, dt, err.max())
    t = tfn(torch.tensor(x[-1:]), dim=-1, dtype=torch.float16).numpy()
    assert np.abs(fwd(x[-1:], -1, dtype=np.float16).astype(float) - t).max() < 1e-3  # was 0.08


@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("name", list(SOFTMAX))
def test_softmax_edge_rows(name, dtype):
    """Huge logits, -inf/inf/NaN entries, constant rows: NaN/inf exactly where torch."""
    fwd, bwd, tfn = SOFTMAX[name]
    inf, nan = np.inf, np.nan
    x = np.array(
        [
            [1e4, 1e4 - 1, -1e4, 0.0],
            [-inf, 0.0, 1.0, -inf],
            [-inf, -inf, -inf, -inf],
            [inf, 0.0, 1.0, 2.0],
            [nan, 0.0, 1.0, 2.0],
            [3.0, 3.0, 3.0, 3.0],
            [-1e30, 1e30, 0.0, 5.0],
        ],
        dtype,
    )
    g = np.linspace(-1, 1, x.size).reshape(x.shape).astype(dtype)
    ty, tg = _torch_grad(lambda t: tfn(t, dim=1), x, g)
    y = fwd(x, 1)
    assert_ulp(y, ty, dtype, TOL[dtype], scale=np.ones_like(y), what=f"{name} edge rows")
    gx = bwd(g, x, 1)
    assert_ulp(gx, tg, dtype, TOL[dtype], scale=np.ones_like(y), what=f"{name} edge grads")


@pytest.mark.parametrize("name", list(SOFTMAX))
def test_softmax_layouts_out_and_errors(name):
    fwd, bwd, _ = SOFTMAX[name]
    rng = _rng("sm-layout", name)
    base = rng.standard_normal((6, 5, 4))
    g = rng.standard_normal((6, 5, 4))
    for v, gv in (
        (base.transpose(2, 0, 1), g.transpose(2, 0, 1)),
        (base[::-2, :, 1::2], g[::-2, :, 1::2]),
        (np.asfortranarray(base), np.asfortranarray(g)),
    ):
        for dim in range(v.ndim):
            assert_same(fwd(v, dim), fwd(v.copy(), dim), f"{name} layout dim={dim}")
            assert_same(bwd(gv, v, dim), bwd(gv.copy(), v.copy(), dim), f"{name} bwd layout")
    out = np.empty_like(base)
    assert fwd(base, 1, out=out) is out
    assert_same(out, fwd(base, 1), f"{name} out=")
    gout = np.empty_like(base)
    assert bwd(g, base, 1, out=gout) is gout
    assert_same(gout, bwd(g, base, 1), f"{name}_backward out=")
    assert fwd(np.array(2.5), 0) == 1.0 or name == "log_softmax"
    assert fwd(np.empty((0, 3)), 1).shape == (0, 3)
    with pytest.raises(ValueError):
        fwd(base, 3)
    with pytest.raises(TypeError):
        fwd(base, 1.0)
    with pytest.raises(ValueError):
        fwd(base, 1, out=np.empty((6, 5)))
    with pytest.raises(TypeError):
        bwd(g, base, 1, output=base)
    with pytest.raises(ValueError):
        bwd(g[:3], base, 1)


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_large_thread_invariant(name):
    fwd, bwd, _ = SOFTMAX[name]
    rng = _rng("sm-big", name)
    x = rng.standard_normal((48, 1000)).astype(np.float32) * 5
    g = rng.standard_normal((48, 1000)).astype(np.float32)
    for dim in (0, 1):
        with _threads(1):
            y1, g1 = fwd(x, dim), bwd(g, x, dim)
        with _threads(2):
            y2, g2 = fwd(x, dim), bwd(g, x, dim)
        assert_same(y1, y2, f"{name} dim={dim} 1 vs 2 threads")
        assert_same(g1, g2, f"{name} backward dim={dim} 1 vs 2 threads")
        ref = (
            F.softmax(torch.tensor(x), dim)
            if name == "softmax"
            else F.log_softmax(torch.tensor(x), dim)
        )
        if name == "softmax":
            # exp(x - max) is only as accurate as the float32 subtraction: about |x - max|
            # ULP (up to ~35 here, for torch and fastact alike), so compare with float64
            x64 = x.astype(np.float64)
            e = np.exp(x64 - x64.max(dim, keepdims=True))
            assert_ulp(
                y2, e / e.sum(dim, keepdims=True), np.float32, 48, what=f"{name} large vs float64"
            )
            continue
        assert_ulp(
            y2,
            ref.numpy(),
            np.float32,
            8,
            scale=np.abs(x) + 10 if name == "log_softmax" else None,
            what=f"{name} large vs torch",
        )


def test_log_softmax_counts_ties_past_float32_precision():
    """log_softmax's row helper counts a float32 row's tied maxima in float64: a float32 count
    stopped at 2**24 per SIMD lane (rows of more than 2**28 ties at FASTACT_VECTOR_WIDTH=128
    came out as -log(2**28)). Reaching that through log_softmax needs a 1 GiB output, so the
    helper itself runs on a zero-stride row of 2**25 + 3 zeros (no memory; its loops there
    are not the library's vector loops, but the count's type is the same): lse - max =
    log1p(sum below the max + ties - 1) with its argument exactly ties - 1."""
    from numpy.lib.stride_tricks import as_strided

    from fastact.kernels.axis import _lse_row

    @numba.njit
    def lse_row(xr, orow, sign):
        return _lse_row(xr, orow, sign)

    n = 2**25 + 3
    x = as_strided(np.zeros(1, np.float32), shape=(n,), strides=(0,), writeable=False)
    terms = as_strided(np.zeros(1, np.float32), shape=(n,), strides=(0,), writeable=True)
    m, a = lse_row(x, terms, np.float32(1.0))
    assert m == 0.0
    assert a == n - 1, f"ties - 1 = {a}, expected {n - 1}"


# ============================================================================ GLU
@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
def test_glu_every_dim(dtype):
    rng = _rng("glu", np.dtype(dtype).name)
    x = (rng.standard_normal((4, 6, 8)) * 3).astype(dtype)
    x[0, 0, 0] = 0.0
    for dim in range(-3, 3):
        oshape = list(x.shape)
        oshape[dim] //= 2
        g = rng.standard_normal(oshape).astype(dtype)
        ty, tg = _torch_grad(lambda t, d=dim: F.glu(t, d), x, g)
        y = fastact.glu(x, dim)
        assert y.shape == tuple(oshape) and y.dtype == dtype
        assert_same(fastact.glu(x, dim=dim), y, "glu keyword")
        assert_ulp(y, ty, dtype, TOL[dtype], what=f"glu dim={dim}")
        gx = fastact.glu_backward(g, x, dim)
        assert gx.shape == x.shape and gx.dtype == dtype
        assert_ulp(gx, tg, dtype, TOL[dtype], scale=np.abs(g).max(), what=f"glu grad dim={dim}")
        # float64 reference
        a, b = np.split(x.astype(np.float64), 2, axis=dim)
        assert_ulp(y, a / (1 + np.exp(-b)), dtype, 4, what=f"glu dim={dim} vs reference")
    assert_same(
        fastact.glu(x.transpose(1, 2, 0), 0),
        fastact.glu(x.transpose(1, 2, 0).copy(), 0),
        "glu transposed",
    )
    out = np.empty((4, 6, 4), dtype)
    assert fastact.glu(x, out=out) is out


def test_glu_errors_like_torch():
    with pytest.raises(ValueError, match="Halving dimension must be even"):
        fastact.glu(np.ones((3, 5)), -1)
    with pytest.raises(ValueError, match="Halving dimension must be even"):
        fastact.glu(np.ones((3, 4)), 0)
    with pytest.raises(ValueError):
        fastact.glu(np.array(1.0))
    with pytest.raises(ValueError):
        fastact.glu(np.ones((3, 4)), 2)
    with pytest.raises(ValueError, match="shape"):
        fastact.glu_backward(np.ones((3, 4)), np.ones((3, 4)))


# ============================================================================ PReLU
PRELU_CASES = [
    ((7,), 1),
    ((4, 3), 1),
    ((4, 3), 3),
    ((2, 3, 7), 3),
    ((2, 3, 4, 5), 3),
    ((2, 3, 4, 5), 1),
    ((5, 1), 1),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("shape,nw", PRELU_CASES, ids=[f"{s}-w{n}" for s, n in PRELU_CASES])
def test_prelu_against_torch(shape, nw, dtype):
    rng = _rng("prelu", shape, nw, np.dtype(dtype).name)
    x = (rng.standard_normal(shape) * 2).astype(dtype)
    x.reshape(-1)[:3] = [0.0, -0.0, 1e-30]
    w = rng.uniform(-0.5, 0.5, nw).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    ty, tg, tgw = _torch_grad(F.prelu, x, g, w)
    y = fastact.prelu(x, w)
    assert y.shape == shape and y.dtype == dtype
    assert_same(y, ty, f"prelu {shape} forward")
    gx, gw = fastact.prelu_backward(g, x, w)
    assert gx.shape == shape and gw.shape == w.shape and gw.dtype == dtype
    assert_same(gx, tg, f"prelu {shape} grad_input")
    # grad_weight: float64 reference sum over all dims but 1
    x64, g64 = x.astype(np.float64), g.astype(np.float64)
    contrib = np.where(x64 > 0, 0.0, x64 * g64)
    axes = tuple(i for i in range(x.ndim) if i != 1) if x.ndim >= 2 else (0,)
    ref = contrib.sum(axis=axes) if nw > 1 else np.array([contrib.sum()])
    scale = np.abs(contrib).sum(axis=axes) if nw > 1 else np.array([np.abs(contrib).sum()])
    # fastact reduces in float64: within 1 ULP (of the float32 rounding) of the exact sum
    assert_ulp(
        gw,
        ref,
        dtype,
        1 if dtype == np.float32 else 16,
        scale=scale,
        what=f"prelu {shape} grad_weight vs float64 reference",
    )
    assert_ulp(
        gw,
        tgw,
        dtype,
        64 if dtype == np.float32 else 256,
        scale=scale,
        what=f"prelu {shape} grad_weight vs torch",
    )
    out = np.empty_like(x)
    assert fastact.prelu(x, w, out=out) is out
    gout = np.empty_like(x)
    assert fastact.prelu_backward(g, x, w, out=gout)[0] is gout
    assert_same(fastact.prelu(np.asfortranarray(x), w), y, "prelu Fortran input")
    if x.ndim >= 2:
        xt = np.ascontiguousarray(x.swapaxes(0, -1)).swapaxes(0, -1)
        assert_same(fastact.prelu(xt, w), y, "prelu strided input")


def test_prelu_errors_like_torch():
    with pytest.raises(ValueError, match="Mismatch of parameter numbers and input channel size"):
        fastact.prelu(np.ones(5), np.ones(3))
    with pytest.raises(ValueError, match="Mismatch of parameter numbers and input channel size"):
        fastact.prelu(np.ones((2, 3)), np.ones(4))
    with pytest.raises(ValueError, match="Mismatch of parameter numbers"):
        fastact.prelu_backward(np.ones((2, 3)), np.ones((2, 3)), np.ones(2))
    with pytest.raises(ValueError, match="shape"):
        fastact.prelu_backward(np.ones((2, 4)), np.ones((2, 3)), np.ones(3))


def test_prelu_zero_d_like_torch():
    """torch 2.13 accepts a 0-d input with a (1,) weight (TORCH_SEMANTICS.md says it raises;
    the installed torch wins)."""
    x, w = np.array(-1.0), np.array([0.25])
    ty, tg, tgw = _torch_grad(F.prelu, x, np.array(1.0), w)
    y = fastact.prelu(x, w)
    assert_same(y, ty, "prelu 0-d")
    gx, gw = fastact.prelu_backward(np.array(1.0), x, w)
    assert_same(gx, tg, "prelu 0-d grad_input")
    assert_same(gw, tgw, "prelu 0-d grad_weight")


@pytest.mark.parametrize("shape", [(0, 3), (0,), (2, 3, 0), (0, 16)])
@pytest.mark.parametrize("nw", [1, "channels"])
def test_prelu_empty_input_like_torch(shape, nw):
    """Empty inputs (an empty batch) with one slope for all or one per channel: empty results
    and a zero weight gradient (one slope for all raised a reshape error)."""
    n = shape[1] if nw == "channels" and len(shape) >= 2 else 1
    x, w = np.zeros(shape), np.full(n, 0.25)
    ty, tg, tgw = _torch_grad(F.prelu, x, np.zeros(shape), w)
    assert fastact.prelu(x, w).shape == shape == ty.shape
    gx, gw = fastact.prelu_backward(np.zeros(shape), x, w)
    assert gx.shape == shape and gw.shape == w.shape
    assert_same(gw, tgw, f"prelu {shape} grad_weight")
    m = fastact_torch_nn.PReLU(n)
    assert tuple(m(torch.zeros(shape)).shape) == shape


@pytest.mark.parametrize("shape,nw", [((20000, 3), 3), ((60, 4, 170), 4), ((60, 4, 170), 1)])
def test_prelu_thread_count_invariant(shape, nw):
    rng = _rng("prelu-threads", shape, nw)
    x = rng.standard_normal(shape).astype(np.float32)
    g = rng.standard_normal(shape).astype(np.float32)
    w = rng.uniform(0, 0.5, nw).astype(np.float32)
    assert x.size > 2**15
    with _threads(1):
        gx1, gw1 = fastact.prelu_backward(g, x, w)
        y1 = fastact.prelu(x, w)
    with _threads(2):
        gx2, gw2 = fastact.prelu_backward(g, x, w)
        y2 = fastact.prelu(x, w)
    assert_same(gw1, gw2, f"prelu grad_weight 1 vs 2 threads {shape}")
    assert gw1.tobytes() == gw2.tobytes()
    assert_same(gx1, gx2, "prelu grad_input 1 vs 2 threads")
    assert_same(y1, y2, "prelu forward 1 vs 2 threads")
    x64 = x.astype(np.float64)
    contrib = np.where(x64 > 0, 0.0, x64 * g)
    axes = (0,) + tuple(range(2, x.ndim))
    ref = contrib.sum(axis=axes) if nw > 1 else np.array([contrib.sum()])
    scale = np.abs(contrib).sum(axis=axes) if nw > 1 else np.array([np.abs(contrib).sum()])
    assert_ulp(gw2, ref, np.float32, 1, scale=scale, what="large prelu grad_weight")


@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
def test_glu_maxout_large_thread_invariant(dtype):
    """> 2**15 elements: the prange kernels (2 threads) give the serial kernels' bits."""
    rng = _rng("glu-big", np.dtype(dtype).name)
    x = rng.standard_normal((64, 600)).astype(dtype)
    for dim in (0, 1):
        with _threads(1):
            y1 = fastact.glu(x, dim)
            g = np.ones_like(y1)
            gx1 = fastact.glu_backward(g, x, dim)
            m1 = fastact.maxout(x, 4, dim)
            mg1 = fastact.maxout_backward(np.ones_like(m1), x, 4, dim)
        with _threads(2):
            y2 = fastact.glu(x, dim)
            gx2 = fastact.glu_backward(g, x, dim)
            m2 = fastact.maxout(x, 4, dim)
            mg2 = fastact.maxout_backward(np.ones_like(m1), x, 4, dim)
        assert_same(y1, y2, f"glu dim={dim} 1 vs 2 threads")
        assert_same(gx1, gx2, f"glu_backward dim={dim} 1 vs 2 threads")
        assert_same(m1, m2, f"maxout dim={dim} 1 vs 2 threads")
        assert_same(mg1, mg2, f"maxout_backward dim={dim} 1 vs 2 threads")
        assert_same(m2, _maxout_ref(x, 4, dim), f"large maxout dim={dim} vs reference")


# ============================================================================ Maxout
def _maxout_ref(x, pieces, dim):
    d = dim % x.ndim
    shp = x.shape[:d] + (x.shape[d] // pieces, pieces) + x.shape[d + 1 :]
    return x.reshape(shp).max(axis=d + 1)


@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
def test_maxout_against_reference_and_torch(dtype):
    rng = _rng("maxout", np.dtype(dtype).name)
    for shape, pieces, dim in [
        ((3, 12, 5), 3, 1),
        ((3, 12, 5), 4, -2),
        ((4, 6), 2, -1),
        ((6, 5), 3, 0),
        ((2, 3, 4, 6), 2, 3),
        ((8,), 4, 0),
        ((3, 6, 2), 1, 1),
        ((3, 6, 2), 6, 1),
    ]:
        x = rng.standard_normal(shape).astype(dtype)  # continuous: no ties
        y = fastact.maxout(x, pieces, dim)
        ref = _maxout_ref(x, pieces, dim)
        assert y.shape == ref.shape and y.dtype == dtype
        assert_same(y, ref, f"maxout {shape} pieces={pieces} dim={dim}")
        assert_same(fastact.maxout(x, pieces=pieces, dim=dim), y, "maxout keywords")
        g = rng.standard_normal(ref.shape).astype(dtype)
        d = dim % x.ndim
        shp = x.shape[:d] + (x.shape[d] // pieces, pieces) + x.shape[d + 1 :]
        ty, tg = _torch_grad(lambda t, s=shp, a=d: t.reshape(s).max(dim=a + 1).values, x, g)
        assert_same(y, ty, "maxout vs torch")
        gx = fastact.maxout_backward(g, x, pieces, dim)
        assert gx.shape == x.shape and gx.dtype == dtype
        assert_same(gx, tg, f"maxout grad {shape} pieces={pieces} dim={dim}")
        if x.ndim > 1:
            xt = np.asfortranarray(x)
            assert_same(fastact.maxout(xt, pieces, dim), y, "maxout Fortran")
            assert_same(fastact.maxout_backward(g, xt, pieces, dim), gx, "maxout bwd Fortran")


@pytest.mark.parametrize("pieces", [2, 3, 4, 5, 6, 7, 8, 9])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_maxout_last_axis_every_group_size(pieces, dtype):
    """Groups along the last axis (compiled per group size 2-8, generic beyond): long rows,
    >= 32K elements so the parallel loop runs on 2 threads, ties and NaNs (the first maximum
    or first NaN wins)."""
    rng = np.random.default_rng(pieces)
    x = rng.integers(-3, 4, size=(512, pieces * 37)).astype(dtype)  # many ties
    x[rng.random(x.shape) < 0.03] = np.nan
    g = rng.standard_normal((512, 37)).astype(dtype)
    groups = x.reshape(512, 37, pieces)
    first = np.argmax(groups, axis=-1)  # NumPy: the first NaN, else the first maximum
    want_y = np.take_along_axis(groups, first[..., None], -1)[..., 0]
    want_g = np.zeros_like(groups)
    np.put_along_axis(want_g, first[..., None], g[..., None], -1)
    for threads in (1, 2):
        with _threads(threads):
            assert_same(fastact.maxout(x, pieces, -1), want_y, f"maxout pieces={pieces}")
            gx = fastact.maxout_backward(g, x, pieces, -1)
            assert_same(gx, want_g.reshape(x.shape), f"maxout grad pieces={pieces}")


def test_maxout_ties_and_nan():
    x = np.array([[1.0, 3.0, 3.0, -2.0, -2.0, -2.0, 5.0, np.nan, np.nan, 0.0, 7.0, 7.0]])
    g = np.array([[10.0, 20.0, 30.0, 40.0]])
    y = fastact.maxout(x, 3, 1)
    assert_same(y, np.array([[3.0, -2.0, np.nan, 7.0]]), "maxout ties/nan")
    gx = fastact.maxout_backward(g, x, 3, 1)
    want = np.array([[0, 10.0, 0, 20.0, 0, 0, 0, 30.0, 0, 0, 40.0, 0]])
    assert_same(gx, want, "maxout gradient to the first argmax / first NaN")


def test_maxout_errors():
    with pytest.raises(ValueError):
        fastact.maxout(np.ones((2, 5)), 2, 1)
    with pytest.raises(ValueError):
        fastact.maxout(np.ones((2, 4)), 0, 1)
    with pytest.raises(TypeError):
        fastact.maxout(np.ones((2, 4)), 2.0, 1)
    with pytest.raises(ValueError):
        fastact.maxout(np.ones((2, 4)), 2, 2)
    with pytest.raises(ValueError, match="shape"):
        fastact.maxout_backward(np.ones((2, 4)), np.ones((2, 4)), 2, 1)


# ============================================================================ RReLU
@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
def test_rrelu_eval_is_leaky_relu(dtype):
    rng = _rng("rrelu-eval", np.dtype(dtype).name)
    x = (rng.standard_normal(300) * 3).astype(dtype)
    x[:3] = [0.0, np.nan, -np.inf]
    g = rng.standard_normal(300).astype(dtype)
    # the last pair: float32 bounds averaged after rounding gave a slope 1 ULP off torch's
    pairs = ((1 / 8, 1 / 3), (0.1, 0.3), (0.25, 0.25), (0.002738500170148095, 0.8158535541215322))
    for lo, hi in pairs:
        slope = (lo + hi) / 2  # torch's: in double, rounded once to the tensor's dtype
        y = fastact.rrelu(x, lo, hi)
        assert_same(y, fastact.leaky_relu(x, slope), f"rrelu eval {lo} {hi}")
        assert_same(fastact.rrelu(x, lower=lo, upper=hi, training=False), y, "keywords")
        ty, tg = _torch_grad(lambda t, a=lo, b=hi: F.rrelu(t, a, b, training=False), x, g)
        assert_same(y, ty, "rrelu eval vs torch")
        gx = fastact.rrelu_backward(g, x, lo, hi)
        assert_ulp(gx, tg, dtype, 0.5, x=x, what="rrelu eval backward vs torch")
        assert_same(fastact.rrelu_backward(g, output=y, lower=lo, upper=hi), gx, "output=")
    a = x.copy()
    assert fastact.rrelu_(a) is a
    assert_same(a, fastact.rrelu(x), "rrelu_ eval")
    b = x.copy()
    assert fastact.rrelu(b, inplace=True) is b
    assert_same(b, fastact.rrelu(x), "rrelu inplace eval")


@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
def test_rrelu_training(dtype):
    rng = _rng("rrelu-train", np.dtype(dtype).name)
    x = (rng.standard_normal(5000) * 3).astype(dtype)
    x[:4] = [0.0, -0.0, 1e-30, np.nan]
    g = rng.standard_normal(5000).astype(dtype)
    lo, hi = 0.1, 0.3
    y, noise = fastact.rrelu(x, lo, hi, training=True, generator=123, return_noise=True)
    assert y.dtype == dtype and noise.dtype == dtype and noise.shape == x.shape
    neg = x <= 0
    # slopes in [lower, upper) where x <= 0 (x == 0 included, like torch), 1 elsewhere
    assert np.all(noise[neg] >= dtype(lo)) and np.all(noise[neg] < dtype(hi))
    assert np.all(noise[~neg & ~np.isnan(x)] == 1)
    assert_same(y[neg], x[neg] * noise[neg], "rrelu training negative part")
    assert_same(y[~neg], x[~neg], "rrelu training positive part")
    # same seed -> same result; another seed -> other slopes
    assert_same(fastact.rrelu(x, lo, hi, True, generator=123), y, "same seed")
    assert not np.array_equal(fastact.rrelu(x, lo, hi, True, generator=124)[neg], y[neg])
    # positional/keyword, inplace variants
    a = x.copy()
    assert fastact.rrelu_(a, lo, hi, True, generator=123) is a
    assert_same(a, y, "rrelu_ training")
    b = x.copy()
    assert fastact.rrelu(b, lo, hi, True, True, generator=123) is b
    assert_same(b, y, "rrelu inplace training")
    # backward: via noise=, via the same seed, from input or output -- all equal g * slope
    want = g * noise
    gx = fastact.rrelu_backward(g, x, lo, hi, True, noise=noise)
    assert_same(gx, want, "rrelu_backward noise=")
    assert_same(
        fastact.rrelu_backward(g, x, lo, hi, True, generator=123), want, "rrelu_backward seed"
    )
    assert_same(
        fastact.rrelu_backward(g, output=y, lower=lo, upper=hi, training=True, generator=123),
        want,
        "rrelu_backward output= seed",
    )
    # torch's autograd with the same slopes: d(x * noise) / dx
    _, tg = _torch_grad(lambda t: torch.where(t <= 0, t * torch.tensor(noise), t), x, g)
    assert_same(gx[~np.isnan(x)], tg[~np.isnan(x)], "rrelu training grad vs torch")
    # numpy Generators: reproducible with equal states, different draws afterwards
    r1 = fastact.rrelu(x, lo, hi, True, generator=np.random.default_rng(7))
    r2 = fastact.rrelu(x, lo, hi, True, generator=np.random.default_rng(7))
    assert_same(r1, r2, "Generator seed 7")
    gen = np.random.default_rng(7)
    fastact.rrelu(x, lo, hi, True, generator=gen)
    assert not np.array_equal(fastact.rrelu(x, lo, hi, True, generator=gen)[neg], r1[neg])
    # layouts: a strided input gives the C-order slopes of its contiguous copy
    x2 = (rng.standard_normal((40, 30)) * 3).astype(dtype)
    assert_same(
        fastact.rrelu(x2.T, lo, hi, True, generator=5),
        fastact.rrelu(x2.T.copy(), lo, hi, True, generator=5),
        "rrelu transposed",
    )
    with pytest.raises(TypeError):
        fastact.rrelu_backward(g, x, lo, hi, True)  # no noise, no seed
    with pytest.raises(TypeError):
        fastact.rrelu(x, lo, hi, True, generator="seed")
    with pytest.raises(ValueError):
        fastact.rrelu(x, 0.3, 0.1, True, generator=1)


def test_rrelu_backward_from_the_output_refuses_negative_slopes():
    """lower < 0: an output's sign no longer tells the input's (the gradient from output=
    was g everywhere); input= and noise= still give the slopes, as leaky_relu's backward."""
    x, g = np.array([-2.0, -1.0, 1.0]), np.ones(3)
    y, nz = fastact.rrelu(x, -0.5, 0.2, True, generator=1, return_noise=True)
    with pytest.raises(ValueError, match="from output= needs lower >= 0"):
        fastact.rrelu_backward(g, None, -0.5, 0.2, True, generator=1, output=y)
    assert_same(fastact.rrelu_backward(g, x, -0.5, 0.2, True, generator=1), nz, "from input")
    assert_same(fastact.rrelu_backward(g, x, -0.5, 0.2, True, noise=nz), nz, "from noise")


def test_rrelu_thread_count_invariant_and_statistics():
    n = 200_000
    x = -np.abs(_rng("rrelu-big").standard_normal(n)).astype(np.float32) - 0.5
    lo, hi = 1 / 8, 1 / 3
    with _threads(1):
        y1, n1 = fastact.rrelu(x, lo, hi, True, generator=2024, return_noise=True)
        g1 = fastact.rrelu_backward(np.ones_like(x), x, lo, hi, True, generator=2024)
    with _threads(2):
        y2, n2 = fastact.rrelu(x, lo, hi, True, generator=2024, return_noise=True)
        g2 = fastact.rrelu_backward(np.ones_like(x), x, lo, hi, True, generator=2024)
    assert y1.tobytes() == y2.tobytes() and n1.tobytes() == n2.tobytes()
    assert g1.tobytes() == g2.tobytes()
    assert_same(g2, n2, "rrelu grad of ones == slopes")
    for dtype in DTYPES:
        s = fastact.rrelu(x.astype(dtype), lo, hi, True, generator=99, return_noise=True)[1]
        s = s.astype(np.float64)
        sd = (hi - lo) / np.sqrt(12 * n)
        assert abs(s.mean() - (lo + hi) / 2) < 6 * sd, s.mean()
        assert abs(s.std() - (hi - lo) / np.sqrt(12)) < 0.01 * (hi - lo)
        assert s.min() >= dtype(lo) and s.max() < dtype(hi)
        assert scipy.stats.kstest((s - lo) / (hi - lo), "uniform").pvalue > 1e-4
        # neighbouring elements are not correlated
        assert abs(np.corrcoef(s[:-1], s[1:])[0, 1]) < 0.02


# ============================================================================ fast paths
# prelu, glu, maxout (and their backwards) and rrelu_backward check a fast path for the common
# call first (C-contiguous float arrays, default arguments) and otherwise run their general
# part ``_<name>_any``: both must give bitwise-identical results and identical errors.
from fastact import activations as _act  # noqa: E402


def _same_call(name, *args, **kw):
    """``fastact.<name>`` and its general part give the same bits (dtype, shape) or error
    (the general part is called, as the public function does, with every argument)."""
    fast, general = getattr(fastact, name), getattr(_act, f"_{name}_any")
    bound = inspect.signature(fast).bind(*args, **kw)
    bound.apply_defaults()
    try:
        want = general(*bound.args, **bound.kwargs)
    except Exception as e:  # noqa: BLE001 - any error: the fast path must raise it too
        with pytest.raises(type(e)) as info:
            fast(*args, **kw)
        assert str(info.value) == str(e), name
        return
    got = fast(*args, **kw)
    got = got if isinstance(got, tuple) else (got,)
    want = want if isinstance(want, tuple) else (want,)
    for a, b in zip(got, want, strict=True):
        assert type(a) is type(b) and a.dtype == b.dtype and a.shape == b.shape, name
        assert a.tobytes() == b.tobytes(), name


def _fast_inputs(shape, dtype, key):
    x = (_rng("fast", shape, key).standard_normal(shape) * 3).astype(dtype)
    if x.size > 3 and x.dtype.kind == "f":
        x.reshape(-1)[:4] = [np.nan, -0.0, 0.0, -np.inf]
    variants = [x, np.ascontiguousarray(x.T).T if x.ndim > 1 else x[::-1], x.tolist()]
    if x.ndim > 1:
        variants.append(x[:, ::-1])  # strided view
    return variants


FAST_SHAPES = [(12,), (3, 12), (2, 3, 24), (2, 3, 4, 6), (3, 7), (0, 12), (12, 0)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16, np.int32])
def test_glu_maxout_fast_path_matches_general(dtype):
    for shape in FAST_SHAPES:
        for x in _fast_inputs(shape, dtype, "glu"):
            ndim = np.ndim(x)
            for dim in (-1, ndim - 1, 0, np.int64(-1), True, 5):
                _same_call("glu", x, dim)
                _same_call("glu", x, dim=dim)
                if ndim and np.shape(x)[-1] % 2 == 0:
                    gshape = np.shape(x)[:-1] + (np.shape(x)[-1] // 2,)
                    for gdt in (dtype, np.float64):
                        g = _rng("g", gshape).standard_normal(gshape).astype(gdt)
                        _same_call("glu_backward", g, x, dim)
                        _same_call("glu_backward", np.asfortranarray(g), x, dim)
                        _same_call("glu_backward", g[..., :-1], x, dim)  # wrong shape
                for pieces in (1, 2, 3, 4, 8, 9, 0, True, 2.0, np.int64(2)):
                    _same_call("maxout", x, pieces, dim)
                    p = pieces if isinstance(pieces, int) and pieces > 0 else 1
                    if ndim and np.shape(x)[-1] % p == 0:
                        gshape = np.shape(x)[:-1] + (np.shape(x)[-1] // p,)
                        g = _rng("g", gshape).standard_normal(gshape).astype(np.float32)
                        _same_call("maxout_backward", g, x, pieces, dim)
                        _same_call("maxout_backward", g.astype(np.float64), x, pieces, dim=dim)
                        _same_call("maxout_backward", g[..., :-1], x, pieces, dim)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
def test_prelu_fast_path_matches_general(dtype):
    for shape in [(2, 3), (2, 3, 4), (1, 3, 2, 2), (4,), (5, 1), (0, 3), (2, 3, 0)]:
        for x in _fast_inputs(shape, dtype, "prelu"):
            c = shape[1] if len(shape) > 1 else 1
            for w in (
                np.linspace(0.1, 0.3, c).astype(dtype),
                np.linspace(0.1, 0.3, c),
                np.array([0.25], dtype),
                np.array([-0.0], dtype),
                np.linspace(0.1, 0.3, 2 * c).astype(dtype)[::2],  # strided weight
                np.linspace(0.1, 0.3, c + 1).astype(dtype),  # wrong size
                np.ones((1, c), dtype),  # 2-d weight
                np.array(0.2, dtype),
                [0.1] * c,
            ):
                _same_call("prelu", x, w)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rrelu_backward_fast_path_matches_general(dtype):
    for shape in [(12,), (3, 12), (2, 3, 4), (0, 3)]:
        for x in _fast_inputs(shape, dtype, "rrelu"):
            g = _rng("g", shape).standard_normal(shape).astype(dtype)
            for lo, hi in (
                (1 / 8, 1 / 3),
                (0.0, 0.2),
                (-0.0, 0.0),
                (0.3, 0.1),
                (1, 2),
                (0.1, True),
            ):
                _same_call("rrelu_backward", g, x, lo, hi)
                _same_call("rrelu_backward", g, None, lo, hi, output=x)
                _same_call("rrelu_backward", g, x, lo, hi, False, generator=3)
                _same_call("rrelu_backward", g.astype(np.float64), x, lo, hi)
                _same_call("rrelu_backward", g, x, lo, hi, output=x)  # both: error
                _same_call("rrelu_backward", g, None, lo, hi)  # neither: error
                _same_call("rrelu_backward", g, x, lo, hi, True, generator=3)
                out = np.empty(np.shape(x), np.result_type(g, np.asarray(x)))
                _same_call("rrelu_backward", g, x, lo, hi, out=out)


def test_rrelu_slopes_of_any_key():
    """The counter RNG's slopes for keys on both sides of 2**63 (the kernels take the key
    as a signed 64-bit int), against a NumPy reference of splitmix64."""
    x = -np.ones(257, np.float64)
    g = np.ones_like(x)
    lo, hi = 0.1, 0.3
    m = np.uint64(0xFFFFFFFFFFFFFFFF)
    for key in (0, 5, 2**63 - 1, 2**63, 2**64 - 5):
        with np.errstate(over="ignore"):
            z = np.uint64(key) + np.arange(x.size, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
            z = ((z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & m
            z = ((z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & m
        z = z ^ (z >> np.uint64(31))
        for dtype, bits in ((np.float64, 11), (np.float32, 40)):
            u = (z >> np.uint64(bits)).astype(dtype) * dtype(2.0 ** -(64 - bits))
            want = dtype(lo) + (dtype(hi) - dtype(lo)) * u
            _, noise = fastact.rrelu(
                x.astype(dtype), lo, hi, True, generator=key, return_noise=True
            )
            np.testing.assert_array_max_ulp(noise, want, maxulp=1)  # the kernel may fuse
            gx = fastact.rrelu_backward(
                g.astype(dtype), x.astype(dtype), lo, hi, True, generator=key
            )
            assert_same(gx, noise, f"rrelu_backward slopes key={key}")


def test_rrelu_eval_slope_cache_keeps_zero_signs_and_dtypes():
    x = np.array([-2.0, -0.5, 0.5, 2.0], np.float32)
    g = np.ones_like(x)
    for _ in range(2):  # second round: cached constants
        for lo, hi in ((0.0, 0.0), (-0.0, -0.0), (1 / 8, 1 / 3)):
            slope = (float(np.float32(lo)) + float(np.float32(hi))) / 2
            y = fastact.rrelu(x, lo, hi)
            assert y.tobytes() == fastact.leaky_relu(x, slope).tobytes(), (lo, hi)
            slope64 = (lo + hi) / 2
            gx = fastact.rrelu_backward(g, x, lo, hi)
            assert gx.tobytes() == fastact.leaky_relu_backward(g, x, slope64).tobytes()
            y64 = fastact.rrelu(x.astype(np.float64), lo, hi)
            assert y64.tobytes() == fastact.leaky_relu(x.astype(np.float64), slope64).tobytes()
    with pytest.raises(ValueError):
        fastact.rrelu(x, 0.3, 0.1)
    with pytest.raises(ValueError):
        fastact.rrelu_backward(g, x, 0.3, 0.1)
    with pytest.raises(ValueError):
        fastact.rrelu(x, float("nan"), 0.1)


def test_elementwise_parameter_memo():
    """Parameters are reused by identity of the last call's objects: equal-but-different
    values (0.0 and -0.0, 1 and True) still take their own conversion."""
    x = np.array([-2.0, -0.5, 0.5, 2.0], np.float32)
    pos, neg = 0.0, -0.0
    for _ in range(2):
        assert not np.signbit(fastact.leaky_relu(x, neg)[0])  # -2 * -0.0 = +0.0
        assert np.signbit(fastact.leaky_relu(x, pos)[0])  # -2 * 0.0 = -0.0
        assert np.signbit(fastact.leaky_relu(x, pos)[0])
    fastact.hardshrink(x, 1)
    with pytest.raises(TypeError):
        fastact.hardshrink(x, True)
    fastact.softshrink(x, 0.5)
    with pytest.raises(ValueError, match="lambd"):
        fastact.softshrink(x, -0.5)
    lam = 0.75
    assert_same(fastact.hardshrink(x, lam), np.where(np.abs(x) > 0.75, x, 0), "f32")
    x64 = x.astype(np.float64)
    assert_same(fastact.hardshrink(x64, lam), np.where(np.abs(x64) > 0.75, x64, 0), "f64")
    assert fastact.hardshrink(x64, lam).dtype == np.float64
    t = (0.1, 20.0)
    for dtype in (np.float32, np.float64, np.float32):
        xd = x.astype(dtype)
        assert (
            fastact.threshold(xd, *t).tobytes()
            == np.where(xd > dtype(0.1), xd, 20.0).astype(dtype).tobytes()
        )
