"""fastact.cuda against the CPU kernels, under numba's CUDA simulator (tiny sizes).

``NUMBA_ENABLE_CUDASIM=1`` is set here unless the environment sets it (``=0`` runs the same
tests on a real GPU). Skipped only when numba-cuda is not installed. The simulator runs the
kernels' Python source (4 threads per block, at most 2 blocks, so the grid-stride loops, the
unrolled element-wise path and the block reductions all run with several threads); the PTX
test compiles the same kernels for the real CUDA target (no GPU needed, NVVM required).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("numba_cuda")
if "NUMBA_ENABLE_CUDASIM" not in os.environ and "numba.cuda" not in sys.modules:
    import numba

    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"
    numba.core.config.reload_config()  # numba read its environment when first imported

from numba import cuda  # noqa: E402

import fastact  # noqa: E402
import fastact.cuda as fc  # noqa: E402
from fastact import losses as L  # noqa: E402
from fastact.activations import ACTIVATIONS, REQUIRED  # noqa: E402
from fastact.optim import functional as OF  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# The simulator runs the kernels' Python source on NumPy scalars, which warn where the device
# silently gives inf/NaN (inf * 0 ...); the results are compared, the warnings are noise.
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")
DTYPES = (np.float32, np.float64)
N = 44  # > 2 blocks x 4 threads x 4 unrolled: both the unrolled and the tail loop run


def D(a):
    return cuda.to_device(np.ascontiguousarray(a))


def H(d):
    return d.copy_to_host()


def assert_close(got, want, dtype, rtol=None, atol=None):
    """Same NaN/inf pattern; elsewhere |got - want| <= atol + rtol |want|."""
    got = np.asarray(got, np.float64)
    want = np.asarray(want, np.float64)
    assert got.shape == want.shape
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    inf = np.isinf(want)
    np.testing.assert_array_equal(got[inf], want[inf])
    eps = np.finfo(dtype).eps
    rtol = 64 * eps if rtol is None else rtol
    atol = 16 * eps if atol is None else atol
    fin = np.isfinite(want)
    np.testing.assert_allclose(got[fin], want[fin], rtol=rtol, atol=atol)


def sample(dtype, n=N, seed=0):
    rng = np.random.default_rng(seed)
    edge = [
        0.0,
        -0.0,
        1e-3,
        -1e-3,
        0.5,
        -2.5,
        3.0,
        -3.0,
        6.0,
        20.0,
        -20.0,
        50.0,
        -70.0,
        100.0,
        np.inf,
        -np.inf,
        np.nan,
    ]
    x = np.concatenate([edge, rng.standard_normal(n - len(edge)) * 4])
    return x.astype(dtype)


def param_values(op):
    if op.name == "threshold":
        return (0.5, -1.0)
    return tuple(0.25 if d is REQUIRED else d for _, d in op.params)


# ----------------------------------------------------------------------------- availability
def test_available_under_the_simulator():
    assert fc.is_available()
    assert fc.is_device_array(D(np.zeros(3)))
    assert not fc.is_device_array(np.zeros(3))


def test_without_numba_cuda_import_works_and_device_arrays_are_refused():
    code = r"""
import sys
sys.modules["numba_cuda"] = None  # as if numba-cuda were not installed
import numpy as np
import fastact, fastact.cuda as fc
assert not fc.is_available()
class Dev:  # any object exposing the CUDA array interface
    __cuda_array_interface__ = {"shape": (3,), "typestr": "<f4", "data": (0, False),
                                "version": 3}
assert fastact.cuda.sigmoid is fastact.sigmoid  # one front end for both executors
for call in (lambda: fastact.sigmoid(Dev()), lambda: fastact.relu_backward(Dev(), Dev()),
             lambda: fastact.cuda.sigmoid(Dev()), lambda: fastact.softmax(Dev(), 0)):
    try:
        call()
    except RuntimeError as exc:
        assert "CUDA" in str(exc) and "numba-cuda is not installed" in str(exc), exc
    else:
        raise AssertionError("no error")
assert fastact.sigmoid(np.zeros(2, np.float32)).tolist() == [0.5, 0.5]
print("ok")
"""
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.strip() == "ok"


# ----------------------------------------------------------------------------- element-wise
@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_elementwise_matches_cpu(name):
    op = ACTIVATIONS[name]
    vals = param_values(op)
    for dt in DTYPES:
        x = sample(dt)
        g = np.random.default_rng(1).standard_normal(x.size).astype(dt)
        if name.startswith("gelu"):
            a = "tanh" if name == "gelu_tanh" else "none"
            assert_close(H(fc.gelu(D(x), a)), fastact.gelu(x, a), dt)
            assert_close(H(fc.gelu_backward(D(g), D(x), a)), fastact.gelu_backward(g, x, a), dt)
            continue
        f, fb = getattr(fc, name), getattr(fc, name + "_backward")
        y = getattr(fastact, name)(x, *vals)
        assert_close(H(f(D(x), *vals)), y, dt)
        assert_close(
            H(fb(D(g), D(x), *vals)), getattr(fastact, name + "_backward")(g, x, *vals), dt
        )
        if op.scalars["grad_output"] is not None:
            kw = dict(zip(op.param_names, vals, strict=True))
            want = getattr(fastact, name + "_backward")(g, input=None, output=y, **kw)
            assert_close(H(fb(D(g), input=None, output=D(y), **kw)), want, dt)
        if op.inplace:
            d = D(x)
            assert getattr(fc, name + "_")(d, *vals) is d
            assert_close(H(d), y, dt)


def test_cpu_functions_dispatch_device_arrays():
    """One front end: fastact.sigmoid(d_x) hands the device array to the CUDA executor and
    returns a device array."""
    x = sample(np.float32)
    d = D(x)
    y = fastact.sigmoid(d)
    assert fc.is_device_array(y)
    assert_close(H(y), fastact.sigmoid(x), np.float32)
    g = D(np.ones_like(x))
    assert_close(
        H(fastact.silu_backward(g, d)), fastact.silu_backward(np.ones_like(x), x), np.float32
    )
    assert fastact.relu_(d) is d
    assert_close(H(d), fastact.relu(x), np.float32)


def test_out_strided_and_multidimensional():
    x = sample(np.float64).reshape(4, 11)
    out = cuda.device_array((4, 11), np.float64)
    assert fc.tanh(D(x), out=out) is out
    assert_close(H(out), np.tanh(x), np.float64)
    inter = np.empty((4, 22))
    inter[:, ::2], inter[:, 1::2] = x, -x
    strided = D(inter)[:, ::2]  # not contiguous
    assert_close(H(fc.elu(strided, 0.5)), fastact.elu(x, 0.5), np.float64)
    target = cuda.device_array((4, 22), np.float64)
    fc.relu(D(x), out=target[:, 1::2])
    assert_close(H(target)[:, 1::2], fastact.relu(x), np.float64)
    d = D(inter)
    fc.hardtanh_(d[:, ::2], -0.5, 0.5)  # in place through a strided view
    assert_close(H(d)[:, ::2], fastact.hardtanh(x, -0.5, 0.5), np.float64)
    assert_close(H(d)[:, 1::2], -x, np.float64)
    e = cuda.device_array(0, np.float32)
    assert fc.sigmoid(e).shape == (0,)


def test_huge_float64_inputs():
    """|x| >= 1e10 in float64: the simulator's exact FMA raised OverflowError where the
    polynomial branch not taken overflows (a device gives inf there)."""
    x = np.array([1e30, 2.0, -1e300, 1e308])
    with np.errstate(over="ignore"):
        assert_close(H(fc.tanhshrink(D(x))), fastact.tanhshrink(x), np.float64)


def test_elementwise_errors_name_the_argument():
    x32, x64 = D(np.zeros(4, np.float32)), D(np.zeros(4))
    with pytest.raises(TypeError, match="grad_output has dtype float32 but input"):
        fc.sigmoid_backward(x32, x64)
    with pytest.raises(ValueError, match="grad_output has shape"):
        fc.sigmoid_backward(D(np.zeros(3)), x64)
    with pytest.raises(TypeError, match="input must be float32 or float64"):
        fc.relu(D(np.zeros(4, np.int32)))
    with pytest.raises(TypeError, match="out must be a CUDA device array"):
        fc.relu(x64, out=np.zeros(4))
    with pytest.raises(TypeError, match="out has dtype"):
        fc.relu(x64, out=cuda.device_array(4, np.float32))
    with pytest.raises(TypeError, match="negative_slope must be a real number"):
        fc.leaky_relu(x64, np.array([0.1, 0.2, 0.3, 0.4]))
    with pytest.raises(ValueError, match="max_val cannot be less than min_val"):
        fc.hardtanh(x64, 1.0, -1.0)
    with pytest.raises(TypeError, match="exactly one of input= and output="):
        fc.relu_backward(x64, x64, output=x64)
    big = D(np.zeros(8))
    with pytest.raises(ValueError, match="partially overlaps"):
        fc.relu(big[:4], out=big[2:6])


# ----------------------------------------------------------------------------- along an axis
def test_prelu_forward_and_weight_gradient():
    rng = np.random.default_rng(2)
    for k, (shape, c) in enumerate((((3, 4, 5), 4), ((20, 3), 3), ((2, 3, 2, 3), 1), ((7,), 1))):
        dt = DTYPES[k % 2]
        x = rng.standard_normal(shape).astype(dt)
        g = rng.standard_normal(shape).astype(dt)
        w = rng.random(c).astype(dt)
        assert_close(H(fc.prelu(D(x), D(w))), fastact.prelu(x, w), dt)
        gx, gw = fc.prelu_backward(D(g), D(x), D(w))
        cgx, cgw = fastact.prelu_backward(g, x, w)
        assert_close(H(gx), cgx, dt)
        assert H(gw).shape == cgw.shape and H(gw).dtype == cgw.dtype
        assert_close(H(gw), cgw, dt, rtol=1e-6 if dt == np.float32 else None)
    with pytest.raises(ValueError, match="Mismatch of parameter numbers"):
        fc.prelu(D(np.zeros((2, 3))), D(np.zeros(2)))


@pytest.mark.parametrize("dim", [1, -1])  # (outer, C, inner > 1) and rows (inner == 1)
def test_softmax_family(dim):
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((2, 3, 4)) * 3).astype(np.float32)
    g = rng.standard_normal(x.shape).astype(np.float32)
    for f in ("softmax", "log_softmax", "softmin"):
        y = getattr(fastact, f)(x, dim)
        assert_close(H(getattr(fc, f)(D(x), dim)), y, np.float32)
        assert_close(
            H(getattr(fc, f + "_backward")(D(g), D(x), dim)),
            getattr(fastact, f + "_backward")(g, x, dim),
            np.float32,
        )
        assert_close(
            H(getattr(fc, f + "_backward")(D(g), dim=dim, output=D(y))),
            getattr(fastact, f + "_backward")(g, dim=dim, output=y),
            np.float32,
        )


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize(("shape", "dim"), [((150, 3), 0), ((2, 97, 3), 1)])
def test_softmax_family_with_columns_split_into_chunks(monkeypatch, dt, shape, dim):
    """Few long columns (softmax over dim 0 of a tall array): C is cut into chunks of at
    least 32 rows, one thread per (chunk, column), and combined per column. The simulator's
    grid is tiny, so the device is made to look large enough for the split to be taken (a
    column with a NaN and one with -inf values included)."""
    from fastact.cuda import _axis
    from fastact.cuda import _runtime as rt

    used = []
    real = _axis.get

    def spy(name, dtype=None):
        used.append(name)
        return real(name, dtype)

    monkeypatch.setattr(rt, "max_blocks", lambda: 64)
    monkeypatch.setattr(_axis, "get", spy)
    rng = np.random.default_rng(5)
    x = (rng.standard_normal(shape) * 4).astype(dt)
    x.reshape(-1, shape[-1])[7, 0] = np.nan
    x.reshape(-1, shape[-1])[:, 1] = -np.inf
    x.reshape(-1, shape[-1])[5, 1] = 2.0
    g = rng.standard_normal(shape).astype(dt)
    for f in ("softmax", "log_softmax", "softmin"):
        y = getattr(fastact, f)(x, dim)
        assert_close(H(getattr(fc, f)(D(x), dim)), y, dt)
        yf = np.where(np.isfinite(y), y, 0).astype(dt)  # a backward needs finite outputs
        assert_close(
            H(getattr(fc, f + "_backward")(D(g), dim=dim, output=D(yf))),
            getattr(fastact, f + "_backward")(g, dim=dim, output=yf),
            dt,
        )
    assert {"softmax_columns_chunk_stats", "softmax_columns_write"} <= set(used)
    assert "softmax_columns_backward_chunk_sum" in used
    assert "softmax_columns" not in used and "softmax_columns_backward" not in used


@pytest.mark.parametrize("dt", DTYPES)
def test_split_columns_as_accurate_as_whole_ones(monkeypatch, dt):
    """The chunked column path computes what the one-thread-per-column path does: log-softmax
    near 0 as (x - max) - log1p(sum below the max + ties - 1) (it took x - (max + log sum):
    37000 float32 ULP at -0.00286), softmax's exponent in two words, and the backward's
    float64 sum unrounded (it was rounded to the data's type first: 6.7e-3 relative error
    where g is nearly constant). Compared with the CPU, which is within 4 ULP of exact."""
    from fastact.cuda import _runtime as rt

    monkeypatch.setattr(rt, "max_blocks", lambda: 64)
    x = np.zeros((64, 2), dt)
    x[0] = 1000.0
    x[1:] = 990.0
    x[5:, 1] = np.linspace(980, 991, 59)
    rng = np.random.default_rng(0)
    g = (0.1 + 1e-4 * rng.standard_normal((64, 2))).astype(dt)
    for f in ("softmax", "log_softmax"):
        want = getattr(fastact, f)(x, 0)
        assert_close(H(getattr(fc, f)(D(x), 0)), want, dt, rtol=8 * np.finfo(dt).eps, atol=0)
        y = want
        back = getattr(fastact, f + "_backward")(g, dim=0, output=y)
        got = H(getattr(fc, f + "_backward")(D(g), dim=0, output=D(y)))
        # (the difference g - sum cancels: judged against the sum's magnitude)
        eps = np.finfo(dt).eps
        assert_close(got, back, dt, rtol=8 * eps, atol=8 * eps * float(np.abs(g).max()))


def test_softmax_dtype_rows_with_nan_and_implicit_dim_warning():
    x = np.array([[1.0, 2.0, np.nan, 0.5], [3.0, -1.0, 0.0, 2.0]], np.float32)
    with pytest.raises(TypeError, match="float16 is not supported for device arrays"):
        fc.softmax(D(x), -1, dtype=np.float16)
    got = H(fc.softmax(D(x), -1, dtype=np.float64))
    assert got.dtype == np.float64
    assert_close(got, fastact.softmax(x, -1, dtype=np.float64), np.float64)
    with pytest.warns(UserWarning, match="Implicit dimension"):
        fc.log_softmax(D(x))


def test_glu_maxout_rrelu():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 4, 5))
    g = rng.standard_normal((3, 2, 5))
    assert_close(H(fc.glu(D(x), 1)), fastact.glu(x, 1), np.float64)
    assert_close(H(fc.glu_backward(D(g), D(x), 1)), fastact.glu_backward(g, x, 1), np.float64)
    assert_close(H(fc.maxout(D(x), 2, 1)), fastact.maxout(x, 2, 1), np.float64)
    assert_close(
        H(fc.maxout_backward(D(g), D(x), 2, 1)), fastact.maxout_backward(g, x, 2, 1), np.float64
    )
    xs = sample(np.float32)
    y, noise = fc.rrelu(D(xs), training=True, generator=11, return_noise=True)
    cy, cnoise = fastact.rrelu(xs, training=True, generator=11, return_noise=True)
    # the same counter-based slopes (to the ulp: the CPU fuses lower + span * u into an FMA,
    # as the GPU does; the simulator's NumPy arithmetic does not)
    assert_close(H(noise), cnoise, np.float32, rtol=2 * np.finfo(np.float32).eps)
    assert_close(H(y), cy, np.float32)
    gs = np.ones_like(xs)
    assert_close(
        H(fc.rrelu_backward(D(gs), D(xs), training=True, generator=11)),
        fastact.rrelu_backward(gs, xs, training=True, generator=11),
        np.float32,
    )
    assert_close(H(fc.rrelu_backward(D(gs), D(xs), training=True, noise=noise)), cnoise, np.float32)
    assert_close(H(fc.rrelu(D(xs))), fastact.rrelu(xs), np.float32)


# ----------------------------------------------------------------------------- losses
LOSS_CASES = [
    ("mse_loss", ("x", "t"), {}),
    ("l1_loss", ("x", "t"), {"reduction": "sum"}),
    ("smooth_l1_loss", ("x", "t"), {"beta": 0.5}),
    ("huber_loss", ("x", "t"), {"delta": 0.7, "reduction": "none"}),
    ("binary_cross_entropy", ("p", "q"), {}),
    ("binary_cross_entropy_with_logits", ("x", "q"), {}),
    ("soft_margin_loss", ("x", "y"), {}),
    ("kl_div", ("x", "q"), {"reduction": "batchmean"}),
    ("poisson_nll_loss", ("x", "v"), {"log_input": True, "full": True}),
    ("gaussian_nll_loss", ("x", "t", "v"), {"full": True}),
    ("hinge_embedding_loss", ("x", "y"), {}),
    ("margin_ranking_loss", ("x", "t", "y"), {"margin": 0.2, "reduction": "none"}),
]


def _loss_data(dt, shape=(4, 5)):
    rng = np.random.default_rng(5)
    return {
        "x": rng.standard_normal(shape).astype(dt),
        "t": rng.standard_normal(shape).astype(dt),
        "p": rng.uniform(0.01, 0.99, shape).astype(dt),
        "q": rng.uniform(0, 1, shape).astype(dt),
        "y": np.where(rng.random(shape) < 0.5, -1, 1).astype(dt),
        "v": rng.uniform(0.1, 2, shape).astype(dt),
    }


@pytest.mark.parametrize("name,args,kw", LOSS_CASES, ids=[c[0] for c in LOSS_CASES])
def test_losses_match_cpu(name, args, kw):
    from fastact.cuda import losses as CL

    dt = np.float32 if len(name) % 2 else np.float64  # both dtypes across the table
    h = _loss_data(dt)
    loss, grad = getattr(CL, name)(*[D(h[a]) for a in args], **kw, return_grad=True)
    closs, cgrad = getattr(L, name)(*[h[a] for a in args], **kw, return_grad=True)
    assert fc.is_device_array(loss)
    assert_close(H(loss), closs, dt)
    for gd, gc in zip(
        grad if isinstance(grad, tuple) else (grad,),
        cgrad if isinstance(cgrad, tuple) else (cgrad,),
        strict=True,
    ):
        assert_close(H(gd), gc, dt)


def test_loss_weights_and_domain_errors():
    from fastact.cuda import losses as CL

    h = _loss_data(np.float64)
    w = np.random.default_rng(6).random((4, 5))
    loss, g = CL.mse_loss(D(h["x"]), D(h["t"]), weight=D(w), return_grad=True)
    closs, cg = L.mse_loss(h["x"], h["t"], weight=w, return_grad=True)  # sum(w l) / sum(w)
    assert_close(H(loss), closs, np.float64)
    assert_close(H(g), cg, np.float64)
    pw = np.array([1.0, 2.0, 0.5, 3.0, 1.5])  # broadcast over rows
    loss, g = CL.binary_cross_entropy_with_logits(
        D(h["x"]), D(h["q"]), pos_weight=D(pw), return_grad=True
    )
    closs, cg = L.binary_cross_entropy_with_logits(h["x"], h["q"], pos_weight=pw, return_grad=True)
    assert_close(H(loss), closs, np.float64)
    assert_close(H(g), cg, np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="between 0 and 1"):
            CL.binary_cross_entropy(D(h["p"] + 1), D(h["q"]))
    with pytest.raises(ValueError, match="cannot be broadcast together"):
        CL.mse_loss(D(h["x"]), D(h["t"][:2]))
    # one front end: the element-wise device losses take grad_out= and broadcast targets too
    buf = cuda.device_array((4, 5))
    with pytest.warns(UserWarning, match="target size"):
        loss, g = CL.mse_loss(D(h["x"]), D(h["t"][:1]), return_grad=True, grad_out=buf)
    closs, cg = L.mse_loss(h["x"], h["t"][:1], return_grad=True)
    assert g is buf
    assert_close(H(loss), closs, np.float64)
    assert_close(H(buf), cg, np.float64)
    with pytest.raises(ValueError, match="grad_out for input has shape"):
        CL.l1_loss(D(h["x"]), D(h["t"]), return_grad=True, grad_out=cuda.device_array((5, 4)))
    with pytest.raises(ValueError, match="input2 of shape .* gradient"):
        CL.margin_ranking_loss(D(h["x"]), D(h["t"][:1]), D(h["y"]), return_grad=True)
    with pytest.raises(ValueError, match="reduction must be one of"):
        CL.l1_loss(D(h["x"]), D(h["t"]), reduction="avg")


# ----------------------------------------------------------------------------- row-wise losses
def _row_data(dt, seed=11):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 7, 5)
    y[1] = -100
    q = rng.random((5, 7)).astype(dt)
    y4 = rng.integers(0, 4, (2, 3, 2))
    y4[0, 1, 1] = -100
    return {
        "x": rng.standard_normal((5, 7)).astype(dt),
        "y": y,
        "y2": np.where(y == -100, 2, y),
        "q": q / q.sum(axis=1, keepdims=True),
        "w": rng.random(7).astype(dt),
        "x1": rng.standard_normal(7).astype(dt),
        "y0": np.array(3),
        "x4": rng.standard_normal((2, 4, 3, 2)).astype(dt),
        "y4": y4,
        "q4": rng.random((2, 4, 3, 2)).astype(dt),
        "a": rng.standard_normal((6, 9)).astype(dt),
        "b": rng.standard_normal((6, 9)).astype(dt),
        "c": rng.standard_normal((6, 9)).astype(dt),
        "s": np.array([1, -1, 1, -1, -1, 1]).astype(dt),
        "s0": np.array(-1.0, dt),
        "m": (rng.random((6, 9)) < 0.4).astype(dt),
        "wc": rng.random(9).astype(dt),
        "wr": rng.random((6, 9)).astype(dt),
    }


ROW_LOSS_CASES = [
    ("cross_entropy", ("x", "y"), {"weight": "w", "label_smoothing": 0.2}),
    ("cross_entropy", ("x", "y2"), {"ignore_index": 2, "reduction": "none"}),
    ("cross_entropy", ("x", "q"), {"weight": "w", "label_smoothing": 0.1, "reduction": "sum"}),
    ("cross_entropy", ("x4", "y4"), {"label_smoothing": 0.3}),
    ("cross_entropy", ("x4", "q4"), {"reduction": "none"}),
    ("cross_entropy", ("x1", "y0"), {}),
    ("nll_loss", ("x", "y"), {"weight": "w"}),
    ("nll_loss", ("x4", "y4"), {"reduction": "none"}),
    ("cosine_embedding_loss", ("a", "b", "s"), {"margin": 0.1}),
    ("cosine_embedding_loss", ("a", "b", "s"), {"reduction": "none"}),
    ("cosine_embedding_loss", ("x1", "x1", "s0"), {"margin": -0.5}),
    ("triplet_margin_loss", ("a", "b", "c"), {}),
    ("triplet_margin_loss", ("a", "b", "c"), {"p": 1, "reduction": "none"}),
    ("triplet_margin_loss", ("a", "b", "c"), {"p": 3, "swap": True, "reduction": "sum"}),
    ("multilabel_soft_margin_loss", ("a", "m"), {"weight": "wc"}),
    ("multilabel_soft_margin_loss", ("a", "m"), {"weight": "wr", "reduction": "none"}),
    ("multilabel_soft_margin_loss", ("a", "m"), {"reduction": "sum"}),
]


def _dev_arg(v):
    return cuda.to_device(v) if isinstance(v, np.ndarray) else v


@pytest.mark.parametrize(
    "k,name,args,kw",
    [(k, *c) for k, c in enumerate(ROW_LOSS_CASES)],
    ids=[c[0] for c in ROW_LOSS_CASES],
)
def test_row_losses_match_cpu(k, name, args, kw):
    from fastact.cuda import losses as CL

    dt = DTYPES[k % 2]
    h = _row_data(dt)
    hkw = {key: (h[v] if isinstance(v, str) and v in h else v) for key, v in kw.items()}
    hargs = [h[a] for a in args]
    loss, grad = getattr(CL, name)(
        *[_dev_arg(a) for a in hargs],
        **{key: _dev_arg(v) for key, v in hkw.items()},
        return_grad=True,
    )
    closs, cgrad = getattr(L, name)(*hargs, **hkw, return_grad=True)
    assert fc.is_device_array(loss)
    assert H(loss).dtype == np.asarray(closs).dtype
    assert_close(H(loss), closs, dt)
    grads = grad if isinstance(grad, tuple) else (grad,)
    cgrads = cgrad if isinstance(cgrad, tuple) else (cgrad,)
    assert len(grads) == len(cgrads)
    for gd, gc in zip(grads, cgrads, strict=True):
        assert fc.is_device_array(gd)
        assert_close(H(gd), gc, dt)
    # the value without return_grad, and through the CPU function's device dispatch
    assert_close(
        H(
            getattr(L, name)(
                *[_dev_arg(a) for a in hargs], **{key: _dev_arg(v) for key, v in hkw.items()}
            )
        ),
        closs,
        dt,
    )


def test_row_losses_validation_and_edge_cases():
    from fastact.cuda import losses as CL

    h = _row_data(np.float64)
    x, w = D(h["x"]), D(h["w"])
    bad = h["y"].copy()
    bad[3] = 7
    with pytest.raises(ValueError, match=r"target 7 is out of bounds for 7 classes"):
        CL.cross_entropy(x, D(bad))
    with pytest.raises(ValueError, match=r"target 7 is out of bounds"):
        CL.nll_loss(x, D(bad))
    with pytest.raises(ValueError, match=r"weight must have shape \(7,\)"):
        CL.cross_entropy(x, D(h["y"]), weight=D(np.ones(6)))
    with pytest.raises(TypeError, match="weight has dtype float32"):
        CL.nll_loss(x, D(h["y"]), weight=D(np.ones(7, np.float32)))
    with pytest.raises(TypeError, match="must hold integer class indices"):
        CL.cross_entropy(x, D(h["y"].astype(np.float64)))
    with pytest.raises(TypeError, match="holds class probabilities and must be floating"):
        CL.cross_entropy(x, D(np.zeros((5, 7), np.int64)))
    with pytest.raises(ValueError, match="target has shape"):
        CL.nll_loss(x, D(h["y"][:4]))
    with pytest.raises(ValueError, match="label_smoothing must be between"):
        CL.cross_entropy(x, D(h["y"]), label_smoothing=1.5)
    with pytest.raises(TypeError, match="ignore_index must be an int"):
        CL.cross_entropy(x, D(h["y"]), ignore_index=1.5)
    with pytest.raises(ValueError, match="not a positive finite norm.*host arrays only"):
        CL.triplet_margin_loss(D(h["a"]), D(h["b"]), D(h["c"]), p=0)
    with pytest.raises(ValueError, match="cannot be broadcast together"):
        CL.triplet_margin_loss(D(h["a"]), D(h["b"]), D(h["c"][:2]))
    with pytest.raises(ValueError, match="a 1-d target expects 2-d inputs"):
        CL.cosine_embedding_loss(D(h["x1"]), D(h["x1"]), D(h["s"]))
    with pytest.raises(ValueError, match="cannot be broadcast together"):
        CL.multilabel_soft_margin_loss(D(h["a"]), D(h["m"][:, :4]))
    with pytest.raises(ValueError, match="reduction must be one of"):
        CL.nll_loss(x, D(h["y"]), reduction="avg")
    with pytest.raises(ValueError, match="grad_out requires return_grad=True"):
        CL.cross_entropy(x, D(h["y"]), grad_out=cuda.device_array((5, 7)))
    # every target ignored: 'mean' is NaN like torch, the gradient zero
    ign = D(np.full(5, -100))
    loss, g = CL.cross_entropy(x, ign, return_grad=True)
    assert np.isnan(H(loss)) and not H(g).any()
    assert np.isnan(H(CL.nll_loss(x, ign)))
    # grad_out: the gradient is written into the caller's device buffer
    buf = cuda.device_array((5, 7))
    loss, g = CL.cross_entropy(x, D(h["y"]), weight=w, return_grad=True, grad_out=buf)
    assert g is buf
    assert_close(
        H(buf), L.cross_entropy(h["x"], h["y"], weight=h["w"], return_grad=True)[1], np.float64
    )
    bufs = (cuda.device_array((6, 9)), None, cuda.device_array((6, 9)))
    _, gs = CL.triplet_margin_loss(D(h["a"]), D(h["b"]), D(h["c"]), return_grad=True, grad_out=bufs)
    assert gs[0] is bufs[0] and gs[2] is bufs[2]
    cg = L.triplet_margin_loss(h["a"], h["b"], h["c"], return_grad=True)[1]
    for gd, gc in zip(gs, cg, strict=True):
        assert_close(H(gd), gc, np.float64)


# ----------------------------------------------------------------------------- optimizers
OPTIM_CASES = [
    ("sgd", ("momentum_buffers",), {"lr": 0.1, "momentum": 0.9, "nesterov": True}, False),
    (
        "adam",
        ("exp_avgs", "exp_avg_sqs", "max_exp_avg_sqs"),
        {"lr": 0.01, "weight_decay": 0.1, "amsgrad": True},
        True,
    ),
    ("adamw", ("exp_avgs", "exp_avg_sqs"), {"lr": 0.01, "maximize": True}, True),
    ("adamax", ("exp_avgs", "exp_infs"), {"lr": 0.01}, True),
    (
        "rmsprop",
        ("square_avgs", "grad_avgs", "momentum_buffers"),
        {"lr": 0.01, "momentum": 0.9, "centered": True},
        False,
    ),
    ("rprop", ("prevs", "step_sizes"), {}, False),
    ("adagrad", ("state_sums",), {"lr": 0.1, "lr_decay": 0.01}, True),
    ("adadelta", ("square_avgs", "acc_deltas"), {"weight_decay": 0.1}, False),
]
SIZES = [(3,), (2, 5), (7,), (1,)]


@pytest.mark.parametrize("name,states,kw,stepped", OPTIM_CASES, ids=[c[0] for c in OPTIM_CASES])
def test_optimizers_match_cpu(name, states, kw, stepped):
    from fastact.cuda import optim as CO

    rng = np.random.default_rng(7)
    dt = np.float64 if name in ("rmsprop", "adagrad") else np.float32
    p = [rng.standard_normal(s).astype(dt) for s in SIZES]
    gs = [[rng.standard_normal(s).astype(dt) for s in SIZES] for _ in range(2)]
    init = {"step_sizes": 0.01}
    st = {k: [np.full(s, init.get(k, 0.0), dt) for s in SIZES] for k in states}
    if name == "sgd":
        st["momentum_buffers"] = [None] * len(SIZES)  # created by the first step, like torch
    dp = [D(a) for a in p]
    dst = {k: [None if a is None else D(a) for a in v] for k, v in st.items()}
    for t, g in enumerate(gs, 1):
        extra = {"step": t} if stepped else {}
        getattr(OF, name)(p, g, **st, **extra, **kw)
        getattr(CO, name)(dp, [D(a) for a in g], **dst, **extra, **kw)
    for a, b in zip(dp, p, strict=True):
        assert_close(H(a), b, dt, rtol=1e-5 if dt == np.float32 else 1e-12)
    for k in st:
        for a, b in zip(dst[k], st[k], strict=True):
            assert_close(H(a), b, dt, rtol=1e-5 if dt == np.float32 else 1e-12)


def test_optimizer_validation_before_any_write():
    from fastact.cuda import optim as CO

    p = [D(np.ones(3, np.float32)), D(np.ones(4, np.float32))]
    m = [D(np.zeros(3, np.float32)), D(np.zeros(4, np.float32))]
    v = [D(np.zeros(3, np.float32)), D(np.zeros(4, np.float32))]
    bad_grads = [D(np.ones(3, np.float32)), D(np.ones(4, np.float64))]
    with pytest.raises(TypeError, match=r"grads\[1\] has dtype float64"):
        CO.adam(p, bad_grads, m, v, step=1)
    with pytest.raises(ValueError, match="grads has 1 entries"):
        CO.adam(p, bad_grads[:1], m, v, step=1)
    with pytest.raises(ValueError, match="share memory"):
        CO.adam(
            p,
            [D(np.ones(3, np.float32)), D(np.ones(4, np.float32))],
            [m[0], m[0]][:1] + [m[1]],
            [v[0], m[1]],
            step=1,
        )
    nan = [D(np.array([1.0, np.nan, 0.0], np.float32)), D(np.ones(4, np.float32))]
    with pytest.raises(ValueError, match=r"grads\[0\] contains NaN"):
        CO.adam(p, nan, m, v, step=1, check_finite=True)
    for a in p:  # nothing was written by the rejected calls
        np.testing.assert_array_equal(H(a), 1.0)


def test_launch_takes_the_cpu_tables():
    """The class-level hook: the CPU optimizer's pointer/chunk/coefficient tables with device
    addresses run the same update as fastact.optim.functional.launch on host arrays."""
    import fastact.host as host
    from fastact.kernels.optim import chunk_table

    rng = np.random.default_rng(8)
    hs = [[rng.standard_normal(n) for n in (5, 9)] for _ in range(3)]  # p, g, buf
    ds = [[D(a) for a in row] for row in hs]
    sizes = np.array([5, 9])
    coefs = np.array([[1.0], [0.0]])  # tensor 0: first step (buf = g)
    scal = (0.1, 0.01, 0.9, 0.0, False, False, True)
    hptr = np.array([[host.entry(a, "a").addr for a in row] for row in hs], dtype=np.int64)
    host.optim_launch(
        "sgd", np.float64, hptr, chunk_table(sizes, host.OPTIM_CHUNK), coefs, scal, 14
    )
    ex = fc.executor(ds[0][0])
    dptr = np.array([[ex.entry(a, "a").addr for a in row] for row in ds], dtype=np.int64)
    ex.optim_launch("sgd", np.float64, dptr, chunk_table(sizes, ex.OPTIM_CHUNK), coefs, scal, 14)
    for drow, hrow in zip(ds, hs, strict=True):
        for d, h in zip(drow, hrow, strict=True):
            assert_close(H(d), h, np.float64)
    ((z, _addr),) = ex.new_states([ex.entry(ds[0][1], "p")], 0.0)
    assert H(z).tolist() == [0.0] * 9


# ----------------------------------------------------------------------------- optimizer classes
CLASS_CASES = [
    ("SGD", {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01}),
    ("Adam", {"lr": 0.01, "amsgrad": True, "weight_decay": 0.1}),
    ("AdamW", {"lr": 0.01, "maximize": True}),
    ("Adamax", {"lr": 0.01}),
    ("RMSprop", {"lr": 0.01, "momentum": 0.5, "centered": True}),
    ("Rprop", {"lr": 0.02}),
    ("Adagrad", {"lr": 0.1, "lr_decay": 0.01, "initial_accumulator_value": 0.1}),
    ("Adadelta", {"weight_decay": 0.1}),
]
CLASS_SHAPES = [(10,), (3, 4)]


def _class_data(dt, steps, seed=9):
    rng = np.random.default_rng(seed)
    p = [rng.standard_normal(s).astype(dt) for s in CLASS_SHAPES]
    gs = [[rng.standard_normal(s).astype(dt) for s in CLASS_SHAPES] for _ in range(steps)]
    return p, gs


def _assert_state_close(dopt, hopt, dparams, hparams, dt):
    rtol = 1e-5 if dt == np.float32 else 1e-12
    for a, b in zip(dparams, hparams, strict=True):
        assert_close(H(a), b, dt, rtol=rtol)
        ds, hs = dopt.state[a], hopt.state[b]
        assert ds.keys() == hs.keys()
        for key, v in hs.items():
            if key == "step":
                assert ds[key] == v
            else:
                assert fc.is_device_array(ds[key])
                assert_close(H(ds[key]), v, dt, rtol=rtol)


@pytest.mark.parametrize("name,kw", CLASS_CASES, ids=[c[0] for c in CLASS_CASES])
def test_optimizer_classes_on_device_match_cpu(name, kw):
    """Each class on device arrays = the same class on NumPy copies (5 steps, a None grad)."""
    cls = getattr(fastact.optim, name)
    for dt in DTYPES:
        hp, gs = _class_data(dt, 5)
        dp = [D(a) for a in hp]
        hopt, dopt = cls(hp, **kw), cls(dp, **kw)
        for t, g in enumerate(gs):
            hg = [None if (t == 1 and k == 0) else a for k, a in enumerate(g)]
            hopt.step(hg)
            dopt.step([None if a is None else D(a) for a in hg])
        _assert_state_close(dopt, hopt, dp, hp, dt)
        assert not dopt.found_inf


def test_optimizer_class_groups_and_mixed_dtypes_on_device():
    """Two groups with their own options, float32 and float64 in one group."""
    rng = np.random.default_rng(10)
    hp = [
        rng.standard_normal(5).astype(np.float32),
        rng.standard_normal((2, 3)),
        rng.standard_normal(4).astype(np.float32),
    ]
    dp = [D(a) for a in hp]

    def groups(ps):
        return [{"params": ps[:2]}, {"params": ps[2:], "lr": 0.05, "betas": (0.8, 0.9)}]

    hopt, dopt = fastact.optim.Adam(groups(hp), lr=0.01), fastact.optim.Adam(groups(dp), lr=0.01)
    for _ in range(3):
        g = [rng.standard_normal(a.shape).astype(a.dtype) for a in hp]
        hopt.step(g)
        dopt.step([D(a) for a in g])
    for a, b in zip(dp, hp, strict=True):
        assert_close(H(a), b, b.dtype, rtol=1e-5 if b.dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("name,kw", [CLASS_CASES[1], CLASS_CASES[0], CLASS_CASES[6]])
def test_optimizer_class_state_dict_round_trip_on_device(name, kw):
    """state_dict holds device copies; a new optimizer loading it resumes identically."""
    cls = getattr(fastact.optim, name)
    hp, gs = _class_data(np.float64, 4)
    dp = [D(a) for a in hp]
    opt = cls(dp, **kw)
    for g in gs[:2]:
        opt.step([D(a) for a in g])
    sd = opt.state_dict()
    for st in sd["state"].values():
        for key, v in st.items():
            if key != "step":
                assert fc.is_device_array(v)
    dp2 = [D(H(a)) for a in dp]
    opt2 = cls(dp2, **kw)
    opt2.load_state_dict(sd)
    for key, v in sd["state"][0].items():
        if key != "step":
            assert opt2.state[dp2[0]][key] is not v  # copied on load
    for g in gs[2:]:
        opt.step([D(a) for a in g])
        opt2.step([D(a) for a in g])
    for a, b in zip(dp2, dp, strict=True):
        np.testing.assert_array_equal(H(a), H(b))
    # host state dicts (as torch.save would give after .cpu()) load too
    host_sd = {
        "state": {
            i: {k: (v if k == "step" else H(v)) for k, v in st.items()}
            for i, st in sd["state"].items()
        },
        "param_groups": sd["param_groups"],
    }
    opt3 = cls([D(a) for a in hp], **kw)
    opt3.load_state_dict(host_sd)
    for st3, st in zip(opt3.state_dict()["state"].values(), sd["state"].values(), strict=True):
        for k, v in st.items():
            if k == "step":
                assert st3[k] == v
            else:
                np.testing.assert_array_equal(H(st3[k]), H(v))


def test_optimizer_class_nonfinite_on_device():
    hp, gs = _class_data(np.float32, 2)
    dp = [D(a) for a in hp]
    opt = fastact.optim.Adam(dp, lr=0.1)
    opt.step([D(a) for a in gs[0]])
    before = [H(a) for a in dp]
    m = H(opt.state[dp[1]]["exp_avg"])
    bad = [D(gs[1][0]), D(np.where(np.arange(12).reshape(3, 4) == 7, np.inf, gs[1][1]))]
    opt.step(bad, skip_nonfinite=True)
    assert opt.found_inf and opt.skipped_steps == 1
    assert opt.state[dp[0]]["step"] == 1.0
    with pytest.raises(ValueError, match=r"grads\[1\] contains NaN or infinite"):
        opt.step(bad, check_finite=True)
    for a, b in zip(dp, before, strict=True):
        np.testing.assert_array_equal(H(a), b)
    np.testing.assert_array_equal(H(opt.state[dp[1]]["exp_avg"]), m)
    opt.step([D(a) for a in gs[1]], skip_nonfinite=True)
    assert not opt.found_inf and opt.state[dp[0]]["step"] == 2.0


def test_optimizer_class_device_state_replaced_and_grad_layouts():
    """The cached launch tables follow replaced state entries; gradients in another memory
    order are copied into the parameter's."""
    rng = np.random.default_rng(12)
    hp = [rng.standard_normal((3, 4)), rng.standard_normal(5)]
    dp = [D(a) for a in hp]
    hopt = fastact.optim.SGD(hp, lr=0.1, momentum=0.9)
    dopt = fastact.optim.SGD(dp, lr=0.1, momentum=0.9)
    g = [rng.standard_normal(a.shape) for a in hp]
    hopt.step(g)
    dopt.step([D(a) for a in g])
    hopt.state[hp[0]]["momentum_buffer"] = np.full((3, 4), 0.5)
    dopt.state[dp[0]]["momentum_buffer"] = D(np.full((3, 4), 0.5))
    g = [rng.standard_normal(a.shape) for a in hp]
    hopt.step(g)
    dopt.step([cuda.to_device(np.asfortranarray(g[0])), D(g[1])])
    g = [rng.standard_normal(a.shape) for a in hp]
    hopt.step([g[0], None])
    dopt.step([D(g[0]), None])
    _assert_state_close(dopt, hopt, dp, hp, np.float64)


def test_optimizer_class_device_validation():
    h = np.ones(3, np.float32)
    d = [D(np.ones(3, np.float32)), D(np.ones(4, np.float32))]
    with pytest.raises(ValueError, match="mixing them in one optimizer"):
        fastact.optim.SGD([d[0], h], lr=0.1)
    opt = fastact.optim.Adam([{"params": [d[0]]}], lr=0.1)
    with pytest.raises(ValueError, match="mixing them in one optimizer"):
        opt.add_param_group({"params": [h]})
    with pytest.raises(ValueError, match="mixing them in one optimizer"):
        fastact.optim.SGD([{"params": [h]}, {"params": [d[0]]}], lr=0.1)
    with pytest.raises(ValueError, match="share memory"):
        big = D(np.ones(8, np.float32))
        fastact.optim.SGD([big[:4], big[2:6]], lr=0.1)
    opt.add_param_group({"params": [d[1]], "lr": 0.2})
    with pytest.raises(TypeError, match=r"grads\[1\] has dtype float64"):
        opt.step([D(np.ones(3, np.float32)), D(np.ones(4))])
    with pytest.raises(TypeError, match=r"grads\[0\] must be a CUDA device array"):
        opt.step([np.ones(3, np.float32), D(np.ones(4, np.float32))])
    with pytest.raises(ValueError, match=r"grads\[1\] has shape"):
        opt.step([D(np.ones(3, np.float32)), D(np.ones(5, np.float32))])
    with pytest.raises(TypeError, match="without .grad"):
        opt.step()
    for a in d:  # nothing written, no state created by the rejected steps
        np.testing.assert_array_equal(H(a), 1.0)
    assert len(opt.state) == 0
    opt.step([D(np.ones(3, np.float32)), None])
    opt.state[d[0]]["exp_avg"] = D(np.zeros(3))  # wrong dtype: rejected before any write
    with pytest.raises(TypeError, match=r"state\[params\[0\]\]\['exp_avg'\] has dtype"):
        opt.step([D(np.ones(3, np.float32)), D(np.ones(4, np.float32))])
    np.testing.assert_array_equal(H(d[1]), 1.0)


# ----------------------------------------------------------------------------- gpu_check
def _gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "scripts" / "gpu_check.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def test_gpu_check_simulated(capsys):
    gc = _gpu_check()
    status = gc.main(
        ["--simulate", "--only", "sigmoid,softmax,prelu,mse_loss,adam", "--dtypes", "float32"]
    )
    out = capsys.readouterr().out
    assert status == 0, out
    for case in (
        "sigmoid",
        "sigmoid_backward(output=)",
        "softmax(dim=-1)",
        "prelu_backward",
        "mse_loss(none)",
        "adam step",
    ):
        assert case in out
    assert " NO " not in out


def test_gpu_check_reports_mismatches():
    gc = _gpu_check()
    ok, err = gc.compare(np.array([1.0, 2.0]), np.array([1.0, 2.0 + 1e-3]), np.dtype("float32"))
    assert not ok and err > 1e-4
    ok, _ = gc.compare(np.array([np.nan, 1.0]), np.array([0.0, 1.0]), np.dtype("float64"))
    assert not ok
    ok, _ = gc.compare((np.ones(2), np.ones(3)), (np.ones(2), np.ones(3)), np.dtype("float64"))
    assert ok
    rows = [
        {
            "name": "x",
            "group": "activation",
            "dtype": "float32",
            "n": 1 << 23,
            "ok": True,
            "err": 0.0,
            "pct": 0.5,
        },
        {
            "name": "y",
            "group": "optim",
            "dtype": "float32",
            "n": 10,
            "ok": True,
            "err": 0.0,
            "ms": 2.0,
            "torch_ms": 1.0,
        },
    ]
    status, msgs = gc.summarize(rows, timing=True)
    assert status == gc.EXIT_TARGET and len(msgs) == 2
    rows.append(
        {"name": "z", "group": "loss", "dtype": "float32", "n": 10, "ok": False, "err": 1.0}
    )
    assert gc.summarize(rows, timing=True)[0] == gc.EXIT_MISMATCH


@pytest.mark.slow
def test_kernels_compile_for_the_real_cuda_target():
    """Every kind of kernel compiles to PTX for sm_90 (the simulator does not type-check)."""
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    res = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "gpu_check.py"),
            "--compile-only",
            "--only",
            "sigmoid,gelu,softmax_rows,softmax_columns*,column_max,prelu_backward_channels,"
            "rrelu_train,bce_logits,adam,sgd,"
            "nonfinite,loss_finalize,class_stats,ce_rows,ce_columns,nll,cosine_rows,"
            "triplet_pgen,msm_rows,fused",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "compiled" in res.stdout


def test_none_arguments_launch_on_the_real_cuda_target():
    """Optional arrays are passed to kernels as ``None``; numba-cuda's launcher has no rule
    for them (``NotImplementedError: (none, None)`` at every loss launch on an H200), so
    fastact's kernels carry a launch extension. Checked without a GPU: the launcher's own
    argument marshalling, with the extension, turns a ``None`` into one 8-byte integer, and
    the PTX of a kernel taking ``None`` has exactly one ``.u64`` parameter in that place."""
    code = """
import ctypes
from numba import cuda, types
from numba.cuda.dispatcher import _Kernel
from fastact.cuda._retarget import KERNEL_OPTIONS, NoneArguments

assert any(isinstance(e, NoneArguments) for e in KERNEL_OPTIONS["extensions"])

class Launcher:  # numba-cuda's marshalling, with fastact's kernel options
    extensions = KERNEL_OPTIONS["extensions"]
    _prepare_args = _Kernel._prepare_args

args = []
sig = types.Tuple((types.none, types.float32))
Launcher()._prepare_args(sig, (None, 1.5), 0, [], args)
assert [type(a) for a in args] == [ctypes.c_uint64, ctypes.c_float], args
assert args[0].value == 0 and ctypes.sizeof(args[0]) == 8
bare = type("Bare", (), {"extensions": [], "_prepare_args": _Kernel._prepare_args})
try:
    bare()._prepare_args(types.none, None, 0, [], [])
except NotImplementedError:
    pass
else:
    raise AssertionError("numba-cuda passes None itself now: the extension can go")

def k(a, w, b):
    i = cuda.grid(1)
    if i < a.shape[0]:
        a[i] = b if w is None else w[i]

def params(sig):
    ptx, _ = cuda.compile_ptx(k, sig, cc=(9, 0))
    return [line.split()[1] for line in ptx.splitlines() if line.strip().startswith(".param")]

with_none = params((types.float32[::1], types.none, types.float32))
with_array = params((types.float32[::1], types.float32[::1], types.float32))
assert len(with_array) == 7 + 7 + 1, with_array
assert with_none == with_array[:7] + [".u64"] + with_array[-1:], with_none
print("ok")
"""
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert res.stdout.strip() == "ok"


def test_low_precision_states_are_host_only():
    """8-bit and bfloat16 states on device parameters: TypeError at construction (and from
    a group added later) before any array is written."""
    p = [D(np.ones(5000, np.float32))]
    with pytest.raises(TypeError, match="host only"):
        fastact.optim.AdamW8bit(p)
    with pytest.raises(TypeError, match="host only"):
        fastact.optim.Adam(p, state_dtype="bfloat16")
    opt = fastact.optim.Adam(p)
    with pytest.raises(TypeError, match="host only"):
        opt.add_param_group({"params": [D(np.ones(3, np.float32))], "state_dtype": "bfloat16"})
    assert len(opt.param_groups) == 1
    np.testing.assert_array_equal(H(p[0]), np.ones(5000, np.float32))


# ------------------------------------------------------------------ @fastact.elementwise
def test_fused_elementwise_on_device_matches_cpu():
    """A user's ``@fastact.elementwise`` function runs through the CUDA executor: one array,
    several arrays with a Python-number scalar, out=, in place, backward; errors name the
    argument."""
    from fastact.scalar import exp, gelu, leaky_relu

    @fastact.elementwise
    def prep(x):
        return gelu(leaky_relu(2 * x + 1, 0.1))

    @fastact.elementwise(grad=lambda g, x, y, a: (g * (y + exp(x) * a), g * x, g))
    def mul_exp(x, y, a):
        return x * y + exp(x) * a

    for dt in DTYPES:
        x, y = sample(dt), sample(dt, seed=1)
        dx, dy = D(x), D(y)
        r = prep(dx)
        assert type(r) is type(dx) and r.dtype == dt
        assert_close(H(r), prep(x), dt)
        assert_close(H(mul_exp(dx, dy, 0.5)), mul_exp(x, y, 0.5), dt)
        o = cuda.device_array(x.shape, dt)
        assert mul_exp(dx, dy, 2, out=o) is o
        assert_close(H(o), mul_exp(x, y, 2), dt)
        gx, gy, ga = mul_exp.backward(D(np.ones_like(x)), dx, dy, 0.5)
        assert ga is None
        want_gx, want_gy, _ = mul_exp.backward(np.ones_like(x), x, y, 0.5)
        assert_close(H(gx), want_gx, dt)
        assert_close(H(gy), want_gy, dt)
        prep.inplace(dx)
        assert_close(H(dx), prep(x), dt)
    with pytest.raises(TypeError, match="device arrays must share one dtype"):
        mul_exp(D(sample(np.float32)), D(sample(np.float64)), 1.0)
    with pytest.raises(ValueError, match="must share one shape"):
        mul_exp(D(np.ones(5, np.float32)), D(np.ones(6, np.float32)), 1.0)
    # NumPy scalars are scalars as on the CPU (they were refused as "not a device array")
    x = sample(np.float64)
    for a in (np.float64(0.5), np.float32(0.5), np.int64(2)):
        assert_close(H(mul_exp(D(x), D(x), a)), mul_exp(x, x, a), np.float64)
    with pytest.raises(TypeError, match="at least one argument must be a device array"):
        mul_exp(1.0, 2.0, 0.5, out=cuda.device_array(2))


def test_torch_tensors_with_lazy_bits_are_refused_at_the_device_edge():
    """``__cuda_array_interface__`` gives a tensor's memory, which for ``torch._neg_view(t)``
    holds -t (and a conjugated complex tensor the unconjugated values): the device edge
    refuses such a tensor with a TypeError naming it (fastact.cuda read and wrote its memory
    as if it held its values); the optimizers' gradients, which are only read, are resolved
    first (DeviceEntry.grad, as the host's Entry.grad). Checked on CPU tensors: the refusal
    comes before the interface is looked up."""
    torch = pytest.importorskip("torch")
    from fastact.cuda import _runtime as rt

    for t in (torch._neg_view(torch.ones(3)), torch.ones(3, dtype=torch.complex64).conj()):
        with pytest.raises(TypeError, match="^g has torch's lazy negative/conjugate bit"):
            rt.view(t, "g")
