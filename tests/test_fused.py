"""``@fastact.elementwise``: a user's scalar function as a fused element-wise array function.

References are independent: the separate fastact calls (bit-identical where the fused chain
does not reorder rounding), NumPy in float64 written here, torch autograd for gradients, and
NumPy's own ufunc rules for casting and broadcasting.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest

import fastact
import fastact.scalar as S
from fastact._core.thresholds import THRESHOLDS
from fastact.fused import _DOUBLE_OP, ElementwiseFunction, ScalarMathWarning
from fastact.scalar import exp, gelu, leaky_relu, log1p, sigmoid, tanh

ROOT = Path(__file__).resolve().parents[1]
F32, F64 = np.float32, np.float64


@fastact.elementwise
def prep(x):
    return gelu(leaky_relu(2 * x + 1, 0.1))


@fastact.elementwise(grad=lambda g, x, y: (g * (y + exp(x)), g * x))
def mul_exp(x, y):
    return x * y + exp(x)


def rand(n, dtype=F32, seed=0):
    return np.random.default_rng(seed).standard_normal(n).astype(dtype) * 3


def loop_ir_body(disp) -> str:
    """LLVM IR of a compiled loop without its CPython wrapper."""
    ir = disp.inspect_llvm(disp.signatures[0])
    body, keep = [], False
    for ln in ir.splitlines():
        if ln.startswith("define "):
            keep = "cpython" not in ln and "cfunc." not in ln
        if keep:
            body.append(ln)
    return "\n".join(body)


# ------------------------------------------------------------------------- values, dtypes
@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("n", [0, 1, 1000, 300_001])  # serial and parallel loops
def test_fused_chain_is_bit_identical_to_separate_calls(dtype, n):
    x = rand(n, dtype)
    # 2*x is exact, so 2*x + 1 (one FMA in the fused loop) rounds once either way
    want = fastact.gelu(fastact.leaky_relu(2 * x + 1, 0.1))
    got = prep(x)
    assert got.dtype == dtype and got.shape == x.shape
    np.testing.assert_array_equal(got, want)


def test_float32_stays_float32_in_the_loop(monkeypatch):
    monkeypatch.setenv("FASTACT_DISABLE_CACHE", "1")  # compiled here: its IR can be read
    f = fastact.elementwise(prep.__wrapped__)
    x = rand(4096)
    y = f(x)
    assert y.dtype == F32
    np.testing.assert_array_equal(y, prep(x))
    sp = f._forward.specs[("a", np.dtype(F32))]
    f(rand(1 << 20))  # the parallel loop too
    compiled = [k for k in sp.host["forward"] if k.signatures]
    assert compiled
    for k in compiled:
        body = loop_ir_body(k)
        assert "float" in body
        assert not _DOUBLE_OP.search(body), "float64 arithmetic in the float32 loop"


def test_literals_closures_and_globals_take_the_input_dtype():
    c = 0.1

    @fastact.elementwise
    def scale(x):
        return (x + c) * 0.3 * SHIFT  # no add after a product: no FMA contraction

    x = rand(10_000)
    y = scale(x)
    want32 = (x + F32(0.1)) * F32(0.3) * F32(SHIFT)
    np.testing.assert_array_equal(y, want32)
    # computing in float64 then rounding gives other bits somewhere: the test can fail
    want64 = ((x.astype(F64) + 0.1) * 0.3 * SHIFT).astype(F32)
    assert not np.array_equal(y, want64)
    x64 = x.astype(F64)
    np.testing.assert_array_equal(scale(x64), (x64 + 0.1) * 0.3 * SHIFT)


SHIFT = 0.7


def test_plain_python_helpers_are_compiled_with_typed_literals():
    def half(v):
        return (v + 1) * 0.5

    @fastact.elementwise
    def f(x):
        return half(x) * 3

    x = rand(100)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = f(x)
    assert y.dtype == F32
    np.testing.assert_array_equal(y, (x + F32(1)) * F32(0.5) * F32(3))


def test_float64_reaching_a_float32_result_warns_once():
    @fastact.elementwise
    def wide(x):
        return x * np.float64(0.1)

    x = rand(10)
    with pytest.warns(RuntimeWarning, match="wide computes in float64"):
        y = wide(x)
    assert y.dtype == F32
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        wide(x)  # once per function and dtype

    # not for float64 arithmetic inside fastact's own cores (tanhshrink's polynomial): the
    # warning blamed the user's function for it
    from fastact.scalar import tanhshrink

    @fastact.elementwise
    def ts(x):
        return tanhshrink(x)

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = ts(x)
    np.testing.assert_array_equal(y, fastact.tanhshrink(x))


@pytest.mark.parametrize(
    "args",
    [
        (np.ones((2, 3), F32), np.arange(3, dtype=F64)),  # float64 wins
        (np.ones((2, 3), F32), 2.5),  # Python number: weak
        (np.ones((2, 3), F32), np.float64(2.5)),  # NumPy scalar: strong (NEP 50)
        (np.arange(6, dtype=np.int32).reshape(2, 3), 1),  # ints: float64 like np.add(x, 1.)
        (np.ones((2, 3), np.float16), np.ones(3, np.float16)),  # float16 stays float16
        (np.ones((4, 1), F32), np.ones((1, 5), F32)),  # both broadcast
        (2.0, 3),  # numbers: a NumPy float64 scalar
    ],
)
def test_numpy_casting_and_broadcasting(args):
    @fastact.elementwise
    def f(x, y):
        return x * y + 1

    got = f(*args)
    a = [np.asarray(v) if not isinstance(v, (int, float)) else v for v in args]
    want = np.add(np.multiply(a[0], a[1], dtype=None), 1.0)
    want_dtype = np.result_type(
        *(np.asarray(v).dtype if not isinstance(v, (int, float)) else v for v in args), 1.0
    )
    assert np.asarray(got).dtype == want_dtype
    assert np.shape(got) == np.shape(want)
    np.testing.assert_allclose(np.asarray(got, F64), np.asarray(want, F64), rtol=1e-3)
    if all(isinstance(v, (int, float)) for v in args):
        assert type(got) is np.float64


@pytest.mark.parametrize(
    "view",
    [
        lambda a: a[::2],
        lambda a: a.reshape(40, 50).T,
        lambda a: np.asfortranarray(a.reshape(40, 50)),
        lambda a: a.reshape(40, 50)[:, 3:17],
    ],
)
def test_any_layout(view):
    x = view(rand(2000, F64))
    np.testing.assert_array_equal(prep(x), fastact.gelu(fastact.leaky_relu(2 * x + 1, 0.1)))
    y = view(rand(2000, F64, seed=1))
    np.testing.assert_allclose(mul_exp(x, y), x * y + np.exp(x), rtol=1e-14, atol=1e-14)


def test_many_arrays_and_scalars():
    @fastact.elementwise
    def f(a, b, c, d, e, k):
        return a + 2 * b + 3 * c + 4 * d + 5 * e + k

    arrs = [rand(1001, F64, seed=s) for s in range(5)]
    want = arrs[0] + 2 * arrs[1] + 3 * arrs[2] + 4 * arrs[3] + 5 * arrs[4] + 0.5
    np.testing.assert_allclose(f(*arrs, 0.5), want, rtol=1e-14, atol=1e-13)

    @fastact.elementwise
    def g(a, b, c, d, e, h):
        return a + b + c + d + e + h

    with pytest.raises(TypeError, match="at most 5 array arguments"):
        g(*arrs, arrs[0])
    np.testing.assert_allclose(g(*arrs, 1.0), sum(arrs) + 1, rtol=1e-14, atol=1e-13)


# ------------------------------------------------------------------------- out=, in place
def test_out_and_its_checks():
    x = rand(1000)
    out = np.full_like(x, 7)
    assert prep(x, out=out) is out
    np.testing.assert_array_equal(out, prep(x))
    strided = np.zeros(2000, F32)[::2]
    prep(x, out=strided)
    np.testing.assert_array_equal(strided, prep(x))
    out16 = np.zeros(1000, np.float16)
    with pytest.raises(TypeError, match="out has dtype float16"):
        prep(x, out=out16)
    bad = np.full(999, 7, F32)
    with pytest.raises(ValueError, match="out has shape"):
        prep(x, out=bad)
    assert (bad == 7).all()
    z = rand(1001)
    before = z.copy()
    with pytest.raises(ValueError, match="partially overlaps"):
        mul_exp(z[1:], z[1:], out=z[:-1])
    np.testing.assert_array_equal(z, before)
    mul_exp(z, z, out=z)  # out may be an input itself
    np.testing.assert_array_equal(z, mul_exp(before, before))


def test_inplace():
    x = rand(3000)
    want = prep(x)
    y = x.copy()
    assert prep.inplace(y) is y
    np.testing.assert_array_equal(y, want)
    a, b = rand(3000, F64), rand(3000, F64, seed=2)
    want = mul_exp(a, b)
    mul_exp.inplace(a, b)
    np.testing.assert_array_equal(a, want)
    ro = rand(10)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        prep.inplace(ro)
    with pytest.raises(TypeError, match="numpy.ndarray"):
        prep.inplace([1.0, 2.0])
    small = np.ones(3, F32)
    with pytest.raises(ValueError, match="broadcast to shape"):
        mul_exp.inplace(small, np.ones((2, 3), F32))
    assert (small == 1).all()


# ------------------------------------------------------------------------- dask
def test_dask_stays_lazy():
    import dask
    import dask.array as da

    x = rand(4 * 1000, F32).reshape(4, 1000)
    y = np.arange(1000, dtype=F32) / 1000
    dx = da.from_array(x, chunks=(2, 500))
    with dask.config.set(scheduler="sync"):
        r = mul_exp(dx, y)
        assert isinstance(r, da.Array) and r.dtype == F32 and r.shape == x.shape
        assert r.chunks == dx.chunks
        np.testing.assert_array_equal(r.compute(), mul_exp(x, y))
        r2 = prep(dx)
        np.testing.assert_array_equal(r2.compute(), prep(x))


def test_dask_names_follow_the_functions_content():
    """A function redefined under the same name (a notebook cell run again) took the first
    one's dask graph name: one compute of both gave the first one's results for both. Bool
    arguments are refused at the call; .backward works on unknown chunk sizes; 0-d arrays
    give 0-d arrays on every call (the first call returned a NumPy scalar)."""
    import dask
    import dask.array as da

    @fastact.elementwise(grad=lambda g, x: g * 2 * x)
    def prep(x):
        return x * x

    d = da.from_array(np.arange(4.0), chunks=2)
    first = prep(d)
    again = prep(d)
    assert again.name == first.name  # the same function: dask's cache is shared

    @fastact.elementwise
    def prep(x):  # noqa: F811 (redefined on purpose)
        return 3 * x

    second = prep(d)
    assert second.name != first.name
    a, b = dask.compute(first, second, scheduler="sync")
    np.testing.assert_array_equal(a, np.arange(4.0) ** 2)
    np.testing.assert_array_equal(b, 3 * np.arange(4.0))
    with pytest.raises(TypeError, match="got bool"):
        mul_exp(da.from_array(rand(10, F64), chunks=5), True)

    @fastact.elementwise(grad=lambda g, x: g * 2 * x)
    def sq(x):
        return x * x

    v = da.from_array(np.array([-1.0, 2.0, 3.0, -4.0, 5.0]), chunks=2)
    u = v[v > 0]  # unknown chunk sizes
    np.testing.assert_array_equal(sq.backward(sq(u) * 0 + 1, u).compute(), [4.0, 6.0, 10.0])

    @fastact.elementwise
    def twice(x):
        return 2 * x

    z = np.array(0.5, np.float32)
    for _ in range(3):
        r = twice(z)
        assert type(r) is np.ndarray and r.shape == () and r == 1.0
    assert type(twice(0.5)) is np.float64


# ------------------------------------------------------------------------- gradients
def test_backward_against_torch():
    torch = pytest.importorskip("torch")
    x, y = rand(2000, F64), rand(2000, F64, seed=3)
    g = rand(2000, F64, seed=4)
    tx = torch.tensor(x, requires_grad=True)
    ty = torch.tensor(y, requires_grad=True)
    (tx * ty + torch.exp(tx)).backward(torch.tensor(g))
    gx, gy = mul_exp.backward(g, x, y)
    np.testing.assert_allclose(gx, tx.grad.numpy(), rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(gy, ty.grad.numpy(), rtol=1e-15)
    # broadcast argument: its gradient is summed over the broadcast dimensions
    y2 = rand(5, F64).reshape(1, 5)
    x2 = rand(20, F64).reshape(4, 5)
    g2 = np.ones((4, 5))
    gx2, gy2 = mul_exp.backward(g2, x2, y2)
    assert gx2.shape == (4, 5) and gy2.shape == (1, 5)
    np.testing.assert_allclose(gy2, x2.sum(axis=0, keepdims=True), rtol=1e-14)
    # a Python number has no gradient
    gx3, gy3 = mul_exp.backward(g, x, 2.0)
    assert gy3 is None
    np.testing.assert_allclose(gx3, g * (2.0 + np.exp(x)), rtol=1e-14)


def test_backward_one_argument():
    torch = pytest.importorskip("torch")

    def dsoftplus(g, x):
        return g * sigmoid(x)

    @fastact.elementwise(grad=dsoftplus)
    def sp(x):
        return log1p(exp(-abs(x))) + max(x, 0)

    x = rand(1000, F32)
    g = rand(1000, F32, seed=1)
    gx = sp.backward(g, x)
    assert gx.dtype == F32
    tx = torch.tensor(x, requires_grad=True)
    torch.nn.functional.softplus(tx).backward(torch.tensor(g))
    np.testing.assert_allclose(gx, tx.grad.numpy(), rtol=2e-6, atol=1e-6)
    np.testing.assert_allclose(sp(x), torch.nn.functional.softplus(torch.tensor(x)), rtol=2e-6)
    with pytest.raises(TypeError, match="no backward"):
        prep.backward(g, x)


# ------------------------------------------------------------------------- errors
def test_errors_name_the_function_or_argument():
    @fastact.elementwise
    def uses_list(x):
        return [x]

    with pytest.raises(TypeError, match="uses_list must return one real number"):
        uses_list(rand(3))

    @fastact.elementwise
    def undefined(x):
        return not_defined_anywhere(x)  # noqa: F821

    with pytest.raises(TypeError) as e:
        undefined(rand(3))
    msg = str(e.value)
    assert "undefined cannot be compiled by numba" in msg and "not_defined_anywhere" in msg
    assert "\n" not in msg

    @fastact.elementwise
    def with_dict(x):
        return {"a": x}["a"] + "s"

    with pytest.raises(TypeError, match="with_dict cannot be compiled"):
        with_dict(rand(3))

    with pytest.raises(TypeError, match="takes 1 arguments"):
        prep(rand(3), rand(3))
    with pytest.raises(TypeError, match="input|x must be"):
        prep("abc")
    with pytest.raises(TypeError, match="y must be a real number or array, got bool"):
        mul_exp(rand(3), True)
    with pytest.raises(ValueError, match="do not broadcast"):
        mul_exp(rand(3), rand(4))
    with pytest.raises(TypeError, match="y must have a real numeric dtype"):
        mul_exp(rand(3), np.array(["a", "b", "c"]))
    with pytest.raises(TypeError, match="positional scalar arguments"):
        fastact.elementwise(lambda *xs: xs[0])
    with pytest.raises(TypeError, match="has a default"):
        fastact.elementwise(lambda x, a=1.0: x * a)
    with pytest.raises(TypeError, match="Python function"):
        fastact.elementwise(np.exp)
    with pytest.raises(TypeError, match="grad must take"):
        fastact.elementwise(lambda x: x, grad=lambda g: g)
    with pytest.raises(TypeError, match="grad must be a function"):
        fastact.elementwise(lambda x: x, grad=1.0)
    with pytest.raises(ValueError, match="threshold"):
        fastact.elementwise(lambda x: x, threshold=-1)


def test_math_exp_warns_once_naming_the_replacement():
    with pytest.warns(ScalarMathWarning, match=r"math\.exp -> fastact\.scalar\.exp") as rec:

        @fastact.elementwise
        def slow(x):
            return math.exp(x) * np.log1p(x)

    assert len(rec) == 1
    assert "numpy.log1p -> fastact.scalar.log1p" in str(rec[0].message)
    assert rec[0].filename == __file__  # attributed to the user's line
    x = np.abs(rand(100, F64))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_allclose(slow(x), np.exp(x) * np.log1p(x), rtol=1e-15)


def test_fastact_cores_do_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")

        @fastact.elementwise
        def f(x):
            return S.exp(x) + tanh(x) + S.erf(x) + sigmoid(x)

        y = f(rand(100))
    assert y.dtype == F32


# ------------------------------------------------------------------------- cache, threads
def _key(ef):
    """(cache key, cacheable) of an elementwise function's forward as of now."""
    return fastact.fused._cache_key(ef._forward.py, ef._forward.extra)


def test_cache_key_follows_source_and_closure():
    def make(c):
        def f(x):
            return x * c

        return fastact.elementwise(f)

    a, b, c = make(0.5), make(0.5), make(0.25)
    assert _key(a)[0] == _key(b)[0] != _key(c)[0]
    assert _key(a)[1]

    def g(x):
        return x * 0.5

    def h(x):
        return x * 0.25

    assert _key(fastact.elementwise(g))[0] != _key(fastact.elementwise(h))[0]
    obj = object()

    def k(x):
        return x if obj is None else x

    assert not _key(fastact.elementwise(k))[1]


def test_disk_cache_follows_values_and_helpers_of_the_moment_of_compiling(tmp_path):
    """The key is taken when a variant is compiled (the typed copy freezes the values of
    then): a global rebound between decoration and the first call was compiled with its new
    value but stored under the old value's key, which a later process with the old value
    loaded. An edited helper reached as ``module.helper`` and a helper's changed default
    argument are in the key too."""
    (tmp_path / "helpmod.py").write_text(
        "import numba\n@numba.njit\ndef helper(x):\n    return x * 2\n"
        "def scale(x, k=2.0):\n    return x * k\n"
    )
    script = textwrap.dedent(
        """
        import sys, numpy as np, fastact, helpmod
        from helpmod import scale
        K = 1.0

        @fastact.elementwise
        def g(x):
            return x * K

        @fastact.elementwise
        def f(x):
            return helpmod.helper(x) + scale(x)

        if sys.argv[1] == "late":
            K = 5.0
        print(g(np.ones(1))[0], f(np.ones(1))[0])
        """
    )
    env = {**os.environ, "FASTACT_CACHE_DIR": str(tmp_path / "cache"),
           "PYTHONPATH": os.pathsep.join([str(ROOT), str(tmp_path)])}  # fmt: skip
    env.pop("FASTACT_DISABLE_CACHE", None)

    def run(arg):
        out = subprocess.run([sys.executable, "-c", script, arg], env=env, cwd=tmp_path,
                             capture_output=True, text=True, check=True).stdout  # fmt: skip
        return [float(v) for v in out.split()]

    assert run("late") == [5.0, 4.0]
    assert run("early") == [1.0, 4.0]  # was 5.0: the late kernel under the early key
    (tmp_path / "helpmod.py").write_text(
        "import numba\n@numba.njit\ndef helper(x):\n    return x * 3\n"
        "def scale(x, k=5.0):\n    return x * k\n"
    )
    for p in tmp_path.rglob("__pycache__"):
        for q in p.iterdir():
            q.unlink()
    assert run("early") == [1.0, 8.0]  # was 4.0: the edited helper and default not seen


def test_inplace_refuses_arguments_that_overlap_the_array_partly():
    """``.inplace(b[1:], b[:-1])`` read elements it had already written (NumPy's ufuncs
    buffer such calls); out= refused it already. The array itself is fine."""

    @fastact.elementwise
    def f2(x, a):
        return x * 2 + a

    b = np.arange(8.0)
    with pytest.raises(ValueError, match="partially overlaps"):
        f2.inplace(b[1:], b[:-1])
    np.testing.assert_array_equal(b, np.arange(8.0))
    f2.inplace(b, b)
    np.testing.assert_array_equal(b, np.arange(8.0) * 3)


def test_disk_cache_is_used_by_a_new_process(tmp_path):
    script = textwrap.dedent(
        """
        import numpy as np, fastact
        from fastact.scalar import gelu

        @fastact.elementwise
        def f(x):
            return gelu(x * 0.5) + 1

        x = np.linspace(-3, 3, 50000, dtype=np.float32)
        y = f(x)
        sp = f._forward.specs[("a", np.dtype(np.float32))]
        hits = sum(k.stats.cache_hits.get(k.signatures[0], 0) for k in sp.host["forward"]
                   if k.signatures)
        print(hits, len(f._forward.variants[np.dtype(np.float32)].signatures), float(y.sum()))
        """
    )
    env = {**os.environ, "FASTACT_CACHE_DIR": str(tmp_path), "PYTHONPATH": str(ROOT)}
    env.pop("FASTACT_DISABLE_CACHE", None)
    runs = [
        subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
        ).stdout.split()
        for _ in range(2)
    ]
    assert runs[0][0] == "0" and runs[0][1] == "1"  # compiled, and checked
    assert runs[1][0] == "1" and runs[1][1] == "0"  # loaded from disk, no check compile
    assert runs[0][2] == runs[1][2]
    assert any(p.name.startswith("fused-") for p in tmp_path.rglob("*.check"))


def test_float64_check_reads_ir_when_numba_loaded_the_function_from_its_cache(tmp_path):
    """A numba function with cache=True (a user's, or fastact.scalar's cores), its check memo
    lost but numba's cache kept: numba cannot show the IR of a function it loaded from its
    cache (a warning and an invalid result), so the check compiles a copy in memory. The
    float64 warning comes every time, numba's 'Inspection disabled' warning never."""
    (tmp_path / "usermod.py").write_text(
        "import numba, numpy as np\n\n\n"
        "@numba.njit(cache=True)\n"
        "def wide(x):\n"
        "    return x * np.float64(0.1)\n"
    )
    script = textwrap.dedent(
        """
        import warnings, numpy as np, fastact, usermod

        with warnings.catch_warnings(record=True) as got:
            warnings.simplefilter("always")
            fastact.elementwise(usermod.wide)(np.ones(8, np.float32))
            fastact.elementwise(fastact.scalar.relu)(np.ones(8, np.float32))
        print("|".join(str(w.message)[:60] for w in got))
        """
    )
    cache = tmp_path / "cache"
    env = {**os.environ, "FASTACT_CACHE_DIR": str(cache)}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(tmp_path)])
    env.pop("FASTACT_DISABLE_CACHE", None)

    def run() -> str:
        cmd = [sys.executable, "-c", script]
        return subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout

    outs = [run(), run()]  # compiled and checked; then both from the caches
    memos = [p for p in cache.rglob("*.check") if p.name.startswith("fused-")]
    assert len(memos) == 2 and list(cache.rglob("*wide*.nbi"))
    for p in memos:
        p.unlink()
    outs.append(run())  # numba's cache only: the checks run again on loaded functions
    for out in outs:
        assert out.count("computes in float64") == 1, out
        assert "Inspection disabled" not in out, out


def test_serial_and_parallel_loops_agree():
    x = rand(100_000, F64)
    par = fastact.elementwise(threshold=0)(prep.__wrapped__)
    ser = fastact.elementwise(threshold=1 << 40)(prep.__wrapped__)
    np.testing.assert_array_equal(par(x), ser(x))
    assert prep.threshold == 16384  # gelu's measured crossover
    # arithmetic only: the crossover of the cheap activations
    assert fastact.elementwise(lambda x: 2 * x + 1).threshold == THRESHOLDS["relu"]


def test_repr_and_public_api():
    assert isinstance(prep, ElementwiseFunction)
    assert "prep(x)" in repr(prep)
    assert prep.__name__ == "prep" and prep.__wrapped__(1.0) == pytest.approx(
        float(fastact.gelu(np.float64(3.0)))
    )
    assert "elementwise" in fastact.__all__
    assert re.search(r"fused", fastact.fused.__doc__)


# ------------------------------------------------------------------------- fastact.scalar
def test_scalar_cores_take_python_numbers_in_the_input_dtype():
    import numba

    @numba.njit
    def user(x):
        return S.leaky_relu(x, 0.1) + S.elu(x) + S.softplus(x, 2, 20) + S.hardtanh_grad(x, x)

    x = F32(-0.7)
    got = user(x)
    assert user.nopython_signatures[0].return_type == numba.float32
    want = (  # each part in float32, summed in float32
        F32(S.leaky_relu(x, F32(0.1)))
        + F32(S.elu(x, F32(1.0)))
        + F32(S.softplus(x, F32(2), F32(20)))
        + F32(S.hardtanh_grad(x, x, F32(-1), F32(1)))
    )
    assert got == want
    assert S.leaky_relu(-2.0) == -0.02  # torch's default parameter
    names = set(S.__all__)
    for core in ("exp", "expm1", "log", "log1p", "tanh", "erf", "erfc", "sigmoid", "softplus"):
        assert core in names
    for name, op in fastact.ACTIVATIONS.items():
        assert name in names and f"{name}_grad" in names
        assert (f"{name}_grad_output" in names) == (op.scalars["grad_output"] is not None)
    for row in ("sigmoid", "gelu_tanh", "mish", "exp", "erfc"):
        assert re.search(rf"^{row}\s+\d", S.__doc__, re.M), f"{row}: accuracy not documented"


def test_int_literals_in_loops_and_powers():
    @fastact.elementwise
    def halve3(x):
        for _ in range(3):  # an int that must stay one
            x = x * 0.5
        return x**2 + 3 * x

    x = rand(100)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = halve3(x)
    h = x * F32(0.125)
    assert y.dtype == F32
    np.testing.assert_allclose(y, h * h + F32(3) * h, rtol=2e-7, atol=1e-7)


def test_an_exception_inside_the_parallel_loop_is_the_users():
    """A ValueError raised by the kernel came out of the parallel loop (10**6 elements) as
    numba's SystemError ("returned a result with an exception set"), the user's error only
    in its context; the serial loop raised it as is."""

    @fastact.elementwise
    def checked(x):
        if x < 0:
            raise ValueError("negative input")
        return x

    for n in (1000, 10**6, 10**6):  # the last: the fast path of a call seen before
        with pytest.raises(ValueError, match="negative input"):
            checked(-np.ones(n))
    # the one-argument fast path after a successful call (it raised numba's SystemError)
    assert checked(np.ones(10**6)).sum() == 10**6
    with pytest.raises(ValueError, match="negative input"):
        checked(-np.ones(10**6))


def test_an_exception_on_any_element_reaches_the_caller():
    """A kernel that can raise runs on one thread: an exception raised in a worker thread's
    share of a parallel loop was lost (no error, that share of out= unwritten). Also the
    gradient, .inplace and a helper that raises; a kernel without raise stays parallel."""
    from fastact.fused import SERIAL_ONLY

    def check(v):
        if v > 3.0:
            raise ValueError("too big")
        return v

    @fastact.elementwise(grad=lambda g, x: g * check(x))
    def checked(x):
        return check(x) * 2

    @fastact.elementwise
    def plain(x):
        return x * 2

    assert checked.threshold == SERIAL_ONLY and plain.threshold < SERIAL_ONLY
    n = 2_000_000
    for where in (n - 1, n // 2, 0):
        x = np.ones(n, np.float32)
        x[where] = 5.0
        out = np.full(n, -1.0, np.float32)
        with pytest.raises(ValueError, match="too big"):
            checked(x, out=out)
        with pytest.raises(ValueError, match="too big"):
            checked.inplace(x.copy())
        with pytest.raises(ValueError, match="too big"):
            checked.backward(np.ones(n, np.float32), x)
    x = np.ones(n, np.float32)
    assert (checked(x) == 2).all()


def test_cpu_tensors_like_the_activations():
    """Tensors in, tensors out (bfloat16 back as bfloat16), tensor out= and in place, the
    fastact error for a tensor that requires grad, and .backward summed to each tensor's
    shape; it returned NumPy arrays and refused tensor out= and .inplace."""
    import torch

    from fastact.scalar import gelu, sigmoid

    @fastact.elementwise
    def prep(x, a):
        return gelu(x) * a

    t = torch.randn(4, 3)
    r = prep(t, 2.0)
    assert type(r) is torch.Tensor and r.dtype == torch.float32
    np.testing.assert_array_equal(r.numpy(), prep(t.numpy(), 2.0))
    o = torch.empty(4, 3)
    assert prep(t, 2.0, out=o) is o and torch.equal(o, r)
    u = t.clone()
    assert prep.inplace(u, 2.0) is u and torch.equal(u, r)
    assert prep(t.bfloat16(), 2.0).dtype == torch.bfloat16
    with pytest.raises(TypeError, match="requires grad"):
        prep(torch.randn(3, requires_grad=True), 1.0)

    def grad(g, x, a):
        s = sigmoid(a * x)
        return g * s * (1 + a * x * (1 - s)), g * x * x * s * (1 - s)

    f = fastact.elementwise(lambda x, a: x * sigmoid(a * x), grad=grad)
    x, a = torch.randn(4, 3), torch.randn(3)
    gx, ga = f.backward(torch.ones(4, 3), x, a)
    assert type(ga) is torch.Tensor and ga.shape == (3,)
    # the same float32 computation on the arrays (a float64 grad_output computed in float64:
    # up to a few float32 ULP apart, above rtol=1e-6 in about 1 of 10 random draws)
    want = f.backward(np.ones((4, 3), np.float32), x.numpy(), a.numpy())
    np.testing.assert_allclose(gx.numpy(), want[0], rtol=1e-6)
    np.testing.assert_allclose(ga.numpy(), want[1], rtol=1e-6)


def test_pickled_by_reference_for_other_processes(tmp_path):
    """A function from an importable module pickles as its module and name (and its
    compiled parts, which dask ships with each block's task, as their function's): another
    process imports it with its globals. Pickling by value lost the globals of fastact's
    scalar cores (numba: "Untyped global name '_gelu_fw'") under dask's process schedulers,
    and plain pickle refused it."""
    import pickle

    (tmp_path / "mykern.py").write_text(
        "import fastact\nfrom fastact.scalar import gelu\n\n"
        "@fastact.elementwise\ndef prep(x):\n    return gelu(x) + 1\n"
    )
    script = textwrap.dedent(
        """
        import multiprocessing as mp, pickle, numpy as np, dask.array as da
        import fastact, mykern
        if __name__ == "__main__":
            x = np.linspace(-2, 2, 40).reshape(4, 10)
            assert pickle.loads(pickle.dumps(mykern.prep)) is mykern.prep
            assert pickle.loads(pickle.dumps(mykern.prep._forward)) is mykern.prep._forward
            with mp.get_context("spawn").Pool(1) as pool:
                assert np.array_equal(pool.map(mykern.prep, [x])[0], mykern.prep(x))
            dx = da.from_array(x, chunks=2)
            got = mykern.prep(dx).compute(scheduler="processes", num_workers=1)
            assert np.array_equal(got, mykern.prep(x))
            print("ok")
        """
    )
    (tmp_path / "run.py").write_text(script)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(tmp_path)])}
    out = subprocess.run([sys.executable, str(tmp_path / "run.py")], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert out.stdout.strip() == "ok", out.stderr[-2000:]

    @fastact.elementwise
    def local(x):
        return x + 1

    with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
        pickle.dumps(local)  # a local function: as for any local function


def test_cloudpickled_by_value_with_a_scalar_core(tmp_path):
    """A function not reachable by its name (made in a factory) is pickled by value for
    cloudpickle, and so is a user's own njit function: the scalar cores' helpers they reach
    (``_gelu_fw``, a float32 variant with an overload) pickle by reference to the module
    that binds them, so a fresh process compiles the copy (it raised numba's "Untyped global
    name '_gelu_fw'" there)."""
    import cloudpickle
    import numba

    from fastact.scalar import gelu

    def make(scale):
        @fastact.elementwise
        def scaled_gelu(x):
            return gelu(x) * scale

        return scaled_gelu

    @numba.njit
    def mine(v):
        return gelu(v) * 2

    f = make(2.0)
    x = np.linspace(-1, 1, 5, dtype=np.float32)
    (tmp_path / "blob").write_bytes(cloudpickle.dumps((f, mine, x)))
    script = (
        "import pickle, sys, numpy as np\n"
        "f, mine, x = pickle.loads(open(sys.argv[1], 'rb').read())\n"
        "np.save(sys.argv[2], np.stack([f(x), np.array([mine(v) for v in x], x.dtype)]))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "blob"), str(tmp_path / "r.npy")],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    got = np.load(tmp_path / "r.npy")
    want = np.array([mine(v) for v in x], x.dtype)
    np.testing.assert_array_equal(got[0], f(x))
    np.testing.assert_array_equal(got[1], want)
    np.testing.assert_array_equal(got[0], want)


def test_integer_return_is_stored_as_a_float_everywhere():
    """A kernel returning an integer (numba types math.floor as int64): converted to the
    compute dtype by every loop (the in-place and out= loops raised numba's TypingError
    "stored(int64)"), with a warning naming what an integer cannot hold."""

    @fastact.elementwise
    def floor_int(x):
        return math.floor(x)

    x = np.array([1.5, -2.5, 3.75, -0.25], np.float32)
    with pytest.warns(RuntimeWarning, match="returns an integer"):
        want = floor_int(x)
    np.testing.assert_array_equal(want, np.floor(x))
    assert want.dtype == np.float32
    y = x.copy()
    floor_int.inplace(y)
    np.testing.assert_array_equal(y, want)
    z = x.copy()
    floor_int(z, out=z)
    np.testing.assert_array_equal(z, want)


def test_python_number_beyond_float32_raises_on_every_call():
    """The fast path of repeated calls took 1e39 as inf for float32 (the first call raised
    the ValueError); and the refusal gives no NumPy overflow warning first."""

    @fastact.elementwise
    def times(x, s):
        return x * s

    x = np.ones(3, np.float32)
    for _ in range(3):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with pytest.raises(ValueError, match="s = 1e\\+39 cannot be converted to float32"):
                times(x, 1e39)
        np.testing.assert_array_equal(times(x, 2.0), 2 * x)
    np.testing.assert_array_equal(times(x, math.inf), np.full(3, np.inf, np.float32))


def test_overflowing_number_after_a_nan_raises_on_every_call():
    """The fast path's check took max(abs) of the numbers, which a NaN first hides."""

    @fastact.elementwise
    def three(x, b, c):
        return x * b + c

    x = np.ones(3, np.float32)
    for _ in range(3):
        with pytest.raises(ValueError, match="b = 1e\\+39"):
            three(x, 1e39, math.nan)
        with pytest.raises(ValueError, match="c = 1e\\+39"):
            three(x, math.nan, 1e39)


def test_backward_refuses_a_grad_output_larger_than_the_result():
    """A grad_output with extra leading dimensions was summed away silently (torch's
    autograd refuses a grad_output that is not of the result's shape); one that broadcasts
    to the result (a number, a row) is taken."""

    @fastact.elementwise(grad=lambda g, x, a: (g * a, g * x))
    def mul(x, a):
        return x * a

    x = np.arange(12.0).reshape(4, 3)
    a = np.array([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match=r"grad_output has shape \(2, 4, 3\)"):
        mul.backward(np.ones((2, 4, 3)), x, a)
    gx, ga = mul.backward(np.ones((4, 3)), x, a)
    np.testing.assert_array_equal(gx, np.broadcast_to(a, (4, 3)))
    np.testing.assert_array_equal(ga, x.sum(0))
    gx1, ga1 = mul.backward(1.0, x, a)
    np.testing.assert_array_equal(gx1, gx)
    np.testing.assert_array_equal(ga1, ga)
