"""Accuracy, special values, typing and SIMD of the scalar math cores in ``fastact._core.math``.

float32 cores are checked on millions of points (random bit patterns plus dense edge ranges)
against the C library in float64; float64 cores against 80-bit long double (exp, expm1, log,
log1p, tanh) or mpmath (erf, erfc). Every check asserts the bound documented in the core's
docstring (``scripts/ulp_sweep.py`` does the exhaustive float32 sweep).
"""

from __future__ import annotations

import math
import re

import mpmath
import numba
import numpy as np
import pytest

import fastact._core.math as fm
from fastact._core.jit import specialize

NAMES = ["exp", "expm1", "log", "log1p", "tanh", "erf", "erfc"]

# Max ULP errors documented in fastact._core.math (keep in sync): float32 = exhaustive maxima
# (scripts/ulp_sweep.py), float64 = documented bounds (sampled maxima plus a margin).
BOUND_F32 = {
    "exp": 0.88,
    "expm1": 0.90,
    "log": 0.90,
    "log1p": 0.99,
    "tanh": 1.42,
    "erf": 0.99,
    "erfc": 0.92,
}
BOUND_F64 = {
    "exp": 1.0,
    "expm1": 1.3,
    "log": 0.9,
    "log1p": 0.9,
    "tanh": 0.8,
    "erf": 1.0,
    "erfc": 1.0,
}


# ----------------------------------------------------------------------------- helpers


def _loop(x, out):
    for i in range(x.size):
        out[i] = f(x[i])  # noqa: F821  (f is injected by specialize)


_KERNELS = {
    name: specialize(_loop, f"test_math_loop_{name}", f=getattr(fm, name)) for name in NAMES
}


def _lib_ref(fn):
    @numba.njit
    def ref(x, out):
        for i in range(x.size):
            v = x[i]
            if fn is math.log and v <= 0.0:
                out[i] = -np.inf if v == 0.0 else np.nan
            elif fn is math.log1p and v <= -1.0:
                out[i] = -np.inf if v == -1.0 else np.nan
            else:
                out[i] = fn(v)

    return ref


_LIBM = {
    "exp": _lib_ref(math.exp),
    "expm1": _lib_ref(math.expm1),
    "log": _lib_ref(math.log),
    "log1p": _lib_ref(math.log1p),
    "tanh": _lib_ref(math.tanh),
    "erf": _lib_ref(math.erf),
    "erfc": _lib_ref(math.erfc),
}
_LONGDOUBLE = {
    "exp": np.exp,
    "expm1": np.expm1,
    "log": np.log,
    "log1p": np.log1p,
    "tanh": np.tanh,
}


def run(name: str, x: np.ndarray) -> np.ndarray:
    out = np.empty_like(x)
    _KERNELS[name](x, out)
    return out


def libm64(name: str, x: np.ndarray) -> np.ndarray:
    out = np.empty(x.shape, np.float64)
    with np.errstate(invalid="ignore"):  # signalling nans among random bit patterns
        x64 = x.astype(np.float64)
    _LIBM[name](x64, out)
    return out


def ulp32(y: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Errors of float32 ``y`` in float32 ULPs of float64 ``ref`` (inf for a wrong nan/inf)."""
    with np.errstate(all="ignore"):
        y64 = y.astype(np.float64)
        r32 = ref.astype(np.float32)
        ulp = np.ldexp(1.0, np.maximum(np.frexp(ref)[1] - 1, -126) - 23)
        err = np.abs(y64 - ref) / ulp
    ny, nr = np.isnan(y), np.isnan(ref)
    err = np.where(ny | nr, np.where(ny & nr, 0.0, np.inf), err)
    inf = ~(ny | nr) & (np.isinf(r32) | np.isinf(y))
    return np.where(inf, np.where(y == r32, 0.0, np.inf), err)


def ulp64(y: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Errors of float64 ``y`` in float64 ULPs of long double ``ref``."""
    with np.errstate(all="ignore"):
        yl = y.astype(np.longdouble)
        r64 = ref.astype(np.float64)
        ulp = np.ldexp(np.longdouble(1), np.maximum(np.frexp(ref)[1] - 1, -1022) - 52)
        err = (np.abs(yl - ref) / ulp).astype(np.float64)
    ny, nr = np.isnan(y), np.isnan(ref)
    err = np.where(ny | nr, np.where(ny & nr, 0.0, np.inf), err)
    inf = ~(ny | nr) & (np.isinf(r64) | np.isinf(y))
    return np.where(inf, np.where(y == r64, 0.0, np.inf), err)


def _worst(err, x, y):
    i = int(np.argmax(err))
    return f"max {err[i]:.3f} ULP at x={x[i]!r} (got {y[i]!r})"


def _dense(centers, width_ulps, dtype):
    """All values within ``width_ulps`` floats of each center (both directions)."""
    itype = np.int32 if dtype == np.float32 else np.int64
    out = []
    for c in centers:
        b = np.asarray(c, dtype).view(itype)
        k = np.arange(-width_ulps, width_ulps + 1, dtype=itype)
        v = (b + np.where(b < 0, -k, k).astype(itype)).view(dtype)
        out.append(v)
    return np.concatenate(out)


EDGES32 = {
    "exp": ([88.72283, 88.7, -87.33654, -103.97208, -103.2789, -104.0, 0.0, 1e-8, 0.34657], 2**13),
    "expm1": ([88.72283, -17.32868, -18.0, 2.0**-25, -(2.0**-25), 0.34657, 0.0, 1e-4], 2**13),
    "log": ([1.0, 2.0**-126, 2.0**-149, 0.70710677, 1.4142135, 3.4028235e38, 0.5], 2**13),
    "log1p": ([0.0, 2.0**-25, -(2.0**-25), -0.29289323, 0.41421357, -0.99999994, 1e30], 2**13),
    "tanh": ([0.0, 0.55, -0.55, 9.01, 2.0**-12, 0.625, 20.0], 2**13),
    "erf": ([0.0, 1.0, -1.0, 3.9, 2.0**-12, 0.5], 2**13),
    "erfc": ([0.25, 0.5, -0.5, 1.0, 4.0, 9.2, 10.0546, 10.06, -4.0, 0.0], 2**13),
}
UNIFORM = {
    "exp": (-104.0, 89.0, -750.0, 712.0),
    "expm1": (-20.0, 89.0, -40.0, 712.0),
    "log": (0.0, 4.0, 0.0, 4.0),
    "log1p": (-1.0, 4.0, -1.0, 4.0),
    "tanh": (-10.0, 10.0, -20.0, 20.0),
    "erf": (-4.0, 4.0, -6.0, 6.0),
    "erfc": (-4.0, 10.5, -6.0, 27.5),
}


# ----------------------------------------------------------------------------- accuracy


@pytest.mark.parametrize("name", NAMES)
def test_float32_accuracy(name):
    rng = np.random.default_rng(12345)
    lo, hi, _, _ = UNIFORM[name]
    centers, width = EDGES32[name]
    x = np.concatenate(
        [
            rng.integers(0, 2**32, 2**20, dtype=np.uint64).astype(np.uint32).view(np.float32),
            rng.uniform(lo, hi, 2**19).astype(np.float32),
            _dense(centers, width, np.float32),
        ]
    )
    y = run(name, x)
    assert y.dtype == np.float32
    err = ulp32(y, libm64(name, x))
    assert err.max() <= BOUND_F32[name], _worst(err, x, y)


@pytest.mark.parametrize("name", ["exp", "expm1", "log", "log1p", "tanh"])
def test_float64_accuracy_longdouble(name):
    rng = np.random.default_rng(54321)
    _, _, lo, hi = UNIFORM[name]
    bits = rng.integers(0, 2**63, 2**18, dtype=np.int64).view(np.float64)
    edges = {
        "exp": [709.782712893384, -708.3964185322641, -745.1332191019411, 0.0, 0.34657359],
        "expm1": [709.782712893384, -37.42994775023705, 2.0**-54, -(2.0**-54), 0.34657359],
        "log": [1.0, 2.0**-1022, 5e-324, 0.7071067811865476, 1.4142135623730951, 1.7e308],
        "log1p": [0.0, 2.0**-54, -(2.0**-54), -0.2928932188134524, 0.41421356237309515, 1e300],
        "tanh": [0.0, 0.55, -0.55, 19.06, 2.0**-27],
    }[name]
    x = np.concatenate([bits, -bits, rng.uniform(lo, hi, 2**18), _dense(edges, 2**11, np.float64)])
    y = run(name, x)
    with np.errstate(all="ignore"):
        ref = _LONGDOUBLE[name](x.astype(np.longdouble))
    err = ulp64(y, ref)
    assert err.max() <= BOUND_F64[name], _worst(err, x, y)


@pytest.mark.parametrize("name", ["erf", "erfc"])
def test_float64_accuracy_mpmath(name):
    rng = np.random.default_rng(777)
    pts = {
        "erf": [
            rng.uniform(-6, 6, 600),
            rng.uniform(0.9, 1.1, 200),
            10.0 ** rng.uniform(-30, 0, 100),
        ],
        "erfc": [
            rng.uniform(-6, 27.5, 600),
            rng.uniform(0.2, 1.2, 200),
            rng.uniform(2.9, 3.1, 100),
            rng.uniform(26.0, 27.3, 100),
        ],
    }[name]
    x = np.concatenate(pts)
    y = run(name, x)
    mf = mpmath.erf if name == "erf" else mpmath.erfc
    with mpmath.workdps(40):
        ref = [mf(mpmath.mpf(float(v))) for v in x]
        ulp = [
            mpmath.ldexp(1, max(int(mpmath.floor(mpmath.log(abs(r), 2))), -1022) - 52) for r in ref
        ]
        err = np.array(
            [float(abs(mpmath.mpf(float(a)) - r) / u) for a, r, u in zip(y, ref, ulp, strict=True)]
        )
    assert err.max() <= BOUND_F64[name], _worst(err, x, y)


@pytest.mark.parametrize("name", ["erf", "erfc"])
def test_float64_erf_dense_against_libm(name):
    # libm's erfc is itself a few ULP off, so this denser check uses a loose bound.
    rng = np.random.default_rng(99)
    _, _, lo, hi = UNIFORM[name]
    x = np.concatenate(
        [rng.uniform(lo, hi, 2**19), _dense([0.5, 1.0, 3.0, -3.0], 2**11, np.float64)]
    )
    y = run(name, x)
    err = ulp64(y, libm64(name, x).astype(np.longdouble))
    assert err.max() <= 8, _worst(err, x, y)


# ----------------------------------------------------------------------------- special values

INF, NAN = math.inf, math.nan
SPECIAL = {
    "exp": [(-INF, 0.0), (INF, INF), (0.0, 1.0), (-0.0, 1.0), (1000.0, INF), (-1000.0, 0.0)],
    "expm1": [(-INF, -1.0), (INF, INF), (0.0, 0.0), (-0.0, -0.0), (1000.0, INF), (-1000.0, -1.0)],
    "log": [(0.0, -INF), (-0.0, -INF), (-1.0, NAN), (-INF, NAN), (INF, INF), (1.0, 0.0)],
    "log1p": [(-1.0, -INF), (-2.0, NAN), (-INF, NAN), (INF, INF), (0.0, 0.0), (-0.0, -0.0)],
    "tanh": [(INF, 1.0), (-INF, -1.0), (0.0, 0.0), (-0.0, -0.0), (50.0, 1.0), (-50.0, -1.0)],
    "erf": [(INF, 1.0), (-INF, -1.0), (0.0, 0.0), (-0.0, -0.0), (10.0, 1.0), (-10.0, -1.0)],
    "erfc": [(INF, 0.0), (-INF, 2.0), (0.0, 1.0), (-0.0, 1.0), (30.0, 0.0), (-30.0, 2.0)],
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", NAMES)
def test_special_values(name, dtype):
    xs, want = zip(*SPECIAL[name], (NAN, NAN), strict=True)
    x = np.array(xs, dtype)
    y = run(name, x)
    want = np.array(want, dtype)
    np.testing.assert_array_equal(y, want)  # nan == nan here
    assert np.array_equal(np.signbit(y), np.signbit(want))  # signed zeros


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tiny_and_subnormal_inputs(dtype):
    info = np.finfo(dtype)
    tiny = np.array(
        [info.smallest_subnormal, -info.smallest_subnormal, info.smallest_normal, 1e-30, -1e-30],
        dtype,
    )
    tiny = tiny[tiny != 0]
    for name in ("expm1", "log1p", "tanh"):
        np.testing.assert_array_equal(run(name, tiny), tiny, err_msg=name)  # f(x) = x exactly
    np.testing.assert_array_equal(run("exp", tiny), np.ones_like(tiny))
    # erf(x) = 2x/sqrt(pi) for tiny x
    pos = tiny[tiny > info.smallest_normal]
    err = (ulp32 if dtype == np.float32 else ulp64)(
        run("erf", pos), (pos.astype(np.longdouble) * (2 / np.sqrt(np.longdouble(np.pi))))
    )
    assert err.max() <= 1.0
    # log of subnormals: log(2**-149) = -149 log 2
    k = -149 if dtype == np.float32 else -1074
    x = np.array([info.smallest_subnormal, 2 * info.smallest_subnormal], dtype)
    want = np.array([k, k + 1], np.longdouble) * np.log(np.longdouble(2))
    err = (ulp32 if dtype == np.float32 else ulp64)(run("log", x), want.astype(np.float64))
    assert err.max() <= 0.5


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_underflow_and_overflow_edges(dtype):
    info = np.finfo(dtype)
    # exp: subnormal results near the bottom, inf just above the top
    if dtype == np.float32:
        x = np.array([-103.27893, -88.0, 88.72283, 88.72284, 89.0], dtype)
    else:
        x = np.array([-745.1332191019411, -720.0, 709.782712893384, 709.7827128933841], dtype)
    y = run("exp", x)
    ref = np.exp(x.astype(np.longdouble))
    with np.errstate(over="ignore", invalid="ignore"):
        ok = (ref.astype(dtype) == y) | (np.abs(y - ref) <= info.smallest_subnormal)
    assert np.all(ok), (x, y)
    # erfc: correct subnormal tail, then exactly 0
    x = (
        np.array([9.2, 10.0, 10.05], np.float32)
        if dtype == np.float32
        else np.array([26.5, 27.0, 27.2])
    )
    y = run("erfc", x.astype(dtype))
    with mpmath.workdps(40):
        want = np.array([float(mpmath.erfc(float(v))) for v in x]).astype(dtype)
    assert np.all(y > 0)
    np.testing.assert_allclose(y, want, rtol=0, atol=2 * float(info.smallest_subnormal))
    assert run("erfc", np.array([11.0 if dtype == np.float32 else 27.5], dtype))[0] == 0.0


# ----------------------------------------------------------------------------- API


def test_generic_keeps_float32_in_jit_code():
    @numba.njit
    def f32(x):
        return fm.exp(x), fm.log(x), fm.erfc(x), fm.lit(x, 0.5)

    f32(np.float32(0.7))
    res = f32.overloads[f32.signatures[0]].signature.return_type
    assert all(t == numba.float32 for t in res.types)


@pytest.mark.parametrize("name", NAMES)
def test_typed_versions_match_generic(name):
    rng = np.random.default_rng(3)
    x64 = np.concatenate([rng.standard_normal(300) * 4, rng.uniform(0, 1, 100), [-0.0, 0.0]])
    x32 = x64.astype(np.float32)
    f32, f64 = getattr(fm, name + "_f32"), getattr(fm, name + "_f64")
    assert f32.signatures == [(numba.float32,)]
    assert f64.signatures == [(numba.float64,)]
    # a kernel compiled with fastact's FASTMATH flags gives bit-identical results
    assert_same = np.testing.assert_array_equal  # nan == nan, bit-identical values
    assert_same(run(name, x32), np.array([f32(v) for v in x32], np.float32))
    assert_same(run(name, x64), np.array([f64(v) for v in x64]))
    # SIMD body and scalar remainder agree: shifting the start moves elements between them
    for x in (x32, x64):
        assert_same(run(name, x)[3:], run(name, x[3:]))
    # the generic name works from Python too
    assert getattr(fm, name)(np.float32(0.7)) == f32(np.float32(0.7))
    assert getattr(fm, name)(0.7) == f64(0.7)


def test_typed_versions_usable_from_user_njit():
    @numba.njit
    def user(x):
        return fm.exp_f64(x) + fm.erf_f32(np.float32(x))

    assert abs(user(0.5) - (math.exp(0.5) + math.erf(0.5))) < 1e-6


def test_ints_are_float64_and_other_types_a_type_error():
    """An int or a bool is taken as float64 (as math.exp takes it; it was numba's "No
    implementation of function exp"); another type raises a TypeError naming the core, in
    jit code and from Python (float16 ran as float64 from Python)."""

    @numba.njit
    def user(x):
        return fm.exp(x)

    assert user(1) == user(True) == fm.exp(1) == fm.exp_f64(1.0)
    assert user(0) == user(False) == 1.0
    for bad in (np.float16(1), 1j):
        with pytest.raises(TypeError, match=r"fastact\.scalar\.exp: x must be float32 or float64"):
            user(bad)
        with pytest.raises(TypeError, match=r"fastact\.scalar\.exp: x must be float32 or float64"):
            fm.exp(bad)


@pytest.mark.parametrize("name", NAMES)
def test_loops_vectorize(name):
    """The cores inline into a FASTMATH loop with no calls left, as SIMD code."""
    for sig in _KERNELS[name].signatures:
        llvm = _KERNELS[name].inspect_llvm(sig)
        heads = [(fn.split("\n")[0], fn) for fn in re.split(r"\n(?=define )", llvm)]
        body = [
            fn
            for head, fn in heads
            if head.startswith("define")
            and "test_math_loop" in head
            and "cpython" not in head
            and "cfunc" not in head
        ]
        assert len(body) == 1
        calls = set(re.findall(r"call [^@]*@([\w.$]+)", body[0]))
        assert {c for c in calls if not c.startswith(("llvm.", "NRT_"))} == set(), calls
        ty = "float" if sig[0].dtype == numba.float32 else "double"
        assert re.search(rf"<(2|4|8|16) x {ty}>", body[0]), f"{name} {sig} not vectorized"


def test_docstrings_state_accuracy():
    """The bounds asserted above are the ones documented in each function's docstring."""
    for name in NAMES:
        doc = " ".join(getattr(fm, name).__doc__.split())
        f32 = re.search(r"float32: ([0-9.]+) ULP", doc)
        f64 = re.search(r"float64: ([0-9.]+) ULP", doc)
        assert f32 and f64, name
        assert (float(f32.group(1)), float(f64.group(1))) == (BOUND_F32[name], BOUND_F64[name])


def _ldexp_kernel():
    """A fresh compile of a loop over ``fastact._core.math._ldexp`` (the intrinsic's codegen, which
    picks the path, runs anew; the exp and erfc cores call it)."""

    @numba.njit(cache=False)
    def run(p, k, out):
        for i in range(p.size):
            out[i] = fm._ldexp(p[i], k[i])

    return run


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_ldexp_both_paths_match_numpy(dtype, monkeypatch):
    """The exponent scaling of exp & co.: ``llvm.ldexp`` (vscalef, AVX-512) and the two-factor
    bit construction (other CPUs, CUDA) both equal NumPy's correctly rounded ldexp over the
    whole exponent range, subnormal results (rounded once) and overflow included."""
    from numba.core.registry import cpu_target

    rng = np.random.default_rng(7)
    lo, hi = (-252, 254) if dtype == np.float32 else (-2044, 2046)
    k = np.repeat(np.arange(lo, hi + 1, dtype=np.int32), 7)
    p = rng.uniform(1.0, 2.0, k.size).astype(dtype)
    p[::5] = np.nextafter(dtype(2.0), dtype(1.0))  # rounding carries into the exponent
    p[::11] = dtype(1.5)  # ties when the result is subnormal
    with np.errstate(over="ignore"):
        want = np.ldexp(p, k)
    ctx = cpu_target.target_context
    for native in (True, False):
        if not native:
            monkeypatch.setattr(fm, "_TWO_FACTOR_ONLY", True)
        got = np.empty_like(p)
        run = _ldexp_kernel()
        run(p, k, got)
        np.testing.assert_array_equal(got.view(np.uint8), want.view(np.uint8))
        asm = next(iter(run.inspect_asm().values()))
        assert ("vscalef" in asm) == fm._native_ldexp(ctx)


def _bce_logs_loop(p, lp, l1p, full_lp, full_l1p):
    lo = np.float32(-100.0)
    for i in range(p.size):
        lp[i], l1p[i] = fm._bce_logs_f32(p[i])
        full_lp[i] = max(fm.log(p[i]), lo)
        full_l1p[i] = max(fm.log1p(-p[i]), lo)


def test_bce_logs_equal_the_full_cores():
    """binary_cross_entropy's float32 logs (no special-value checks, 1 - p split exactly)
    give the values of max(log p, -100) and max(log1p(-p), -100) for every p in [0, 1]."""
    bits = np.arange(0, 0x3F800000 + 1, 97, dtype=np.uint32)
    p = np.concatenate(
        [
            bits.view(np.float32),  # every 97th float32 in [0, 1), subnormals included
            np.array([0.0, 1.0, 2.0**-149, 2.0**-126, 0.5, 2.0**-25, 2.0**-24], np.float32),
            np.nextafter(np.float32(1.0), np.float32(0.0), dtype=np.float32)[None],
            np.float32(1.0) - np.random.default_rng(3).uniform(0, 1e-5, 4096).astype(np.float32),
        ]
    )
    outs = [np.empty_like(p) for _ in range(4)]
    specialize(_bce_logs_loop, "test_math_bce_logs")(p, *outs)
    lp, l1p, full_lp, full_l1p = outs
    np.testing.assert_array_equal(lp, full_lp)
    np.testing.assert_array_equal(l1p, full_l1p)
    k = bits.size  # p[k] = 0, p[k + 1] = 1
    assert lp[k] == -100.0 and l1p[k + 1] == -100.0 and lp[k + 1] == 0.0 and l1p[k] == 0.0
