"""Element-wise activations (the ``fastact.ACTIVATIONS`` registry) against torch and NumPy.

Driven by ``activation_cases.CASES`` (one entry per registry name, gelu and gelu_tanh being
the two ``approximate`` modes of ``fastact.gelu``). For every activation, float32 and float64,
every parameter set (defaults and non-default values, passed by position and by keyword):

* value and gradient against torch 2.13 autograd on random inputs plus edge values;
  kinks and NaN/inf behaviour bitwise like torch; where torch is known to be inaccurate (see
  the ``_bad_*`` masks in activation_cases.py) against the float64 reference instead;
* value and gradient against independent float64 NumPy references (finite inputs);
* in-place variants, backward from the output, ``out=``, argument validation;
* the scalar cores of ``fastact.scalar`` inside a user's ``@njit(parallel=True)`` function.
"""

from __future__ import annotations

import inspect
import warnings
import zlib
from pathlib import Path

import numba
import numpy as np
import pytest
import torch
from activation_cases import (
    CASES,
    DTYPES,
    SELU_ALPHA,
    SELU_SCALE,
    Collect,
    assert_same,
    assert_ulp,
    default_params,
    sample_inputs,
    torch_forward_backward,
    ulp_error,
)

import fastact
import fastact.scalar as fs

torch.set_num_threads(1)

#: fastact vs torch where torch is accurate (two implementations' errors add up): float32
#: 8 ULP, float64 256 ULP (~6e-14 relative)
TORCH_ULP = {np.float32: 8.0, np.float64: 256.0}
#: fastact float64 vs the float64 reference (both rounded: a few ULP; 256 leaves room for the
#: polynomial cores) -- float32 bounds are per activation (Case.fwd_ulp32 / grad_ulp32)
REF_ULP64 = 256.0

PARAM_CASES = [(n, i) for n, c in CASES.items() for i in range(len(c.param_sets))]
PARAM_IDS = [f"{n}-{i}" for n, i in PARAM_CASES]
DT_IDS = ["f32", "f64"]

#: torch.nn module of each registry entry (for signatures and the inplace flag)
TORCH_MODULES = {
    "sigmoid": "Sigmoid",
    "tanh": "Tanh",
    "relu": "ReLU",
    "leaky_relu": "LeakyReLU",
    "hardtanh": "Hardtanh",
    "relu6": "ReLU6",
    "elu": "ELU",
    "celu": "CELU",
    "selu": "SELU",
    "softplus": "Softplus",
    "logsigmoid": "LogSigmoid",
    "silu": "SiLU",
    "mish": "Mish",
    "gelu": "GELU",
    "gelu_tanh": "GELU",
    "hardsigmoid": "Hardsigmoid",
    "hardswish": "Hardswish",
    "softsign": "Softsign",
    "tanhshrink": "Tanhshrink",
    "softshrink": "Softshrink",
    "hardshrink": "Hardshrink",
    "threshold": "Threshold",
}

#: activations whose backward may be computed from the output, with torch's aten backward
#: evaluated on that same output (what torch's in-place autograd nodes call)
OUTPUT_BACKWARD = {
    "sigmoid": lambda g, y, p: torch.ops.aten.sigmoid_backward(g, y),
    "tanh": lambda g, y, p: torch.ops.aten.tanh_backward(g, y),
    "relu": lambda g, y, p: torch.ops.aten.threshold_backward(g, y, 0),
    "leaky_relu": lambda g, y, p: torch.ops.aten.leaky_relu_backward(
        g, y, p["negative_slope"], True
    ),
    "hardtanh": lambda g, y, p: torch.ops.aten.hardtanh_backward(g, y, p["min_val"], p["max_val"]),
    "relu6": lambda g, y, p: torch.ops.aten.hardtanh_backward(g, y, 0.0, 6.0),
    "elu": lambda g, y, p: torch.ops.aten.elu_backward(g, p["alpha"], 1.0, 1.0, True, y),
    "celu": lambda g, y, p: torch.ops.aten.elu_backward(
        g, p["alpha"], 1.0, 1.0 / p["alpha"], True, y
    ),
    "selu": lambda g, y, p: torch.ops.aten.elu_backward(g, SELU_ALPHA, SELU_SCALE, 1.0, True, y),
    "threshold": None,  # torch's in-place node recovers the input mask; compared to input=
}


def _rng(*key) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def _setup(name: str, pi: int, dtype):
    c = CASES[name]
    p = c.param_sets[pi]
    rp = c.ref_params(p, dtype)
    rng = _rng(name, pi, np.dtype(dtype).name)
    x = sample_inputs(dtype, rng, kinks=c.kinks(**rp))
    g = rng.uniform(-2.0, 2.0, x.size).astype(dtype)
    return c, p, rp, x, g


def _all_styles(c, p, x, g):
    """Forward and backward through every call style; all must agree bitwise."""
    x_before = x.copy()
    results = []
    for args, kw in c.call_styles(p):
        results.append((c.forward(x, *args, **kw), c.backward(g, x, *args, **kw)))
    results.append((c.forward(x, **c.full_params(p)), c.backward(g, input=x, **c.full_params(p))))
    y0, g0 = results[0]
    assert y0.dtype == x.dtype and g0.dtype == x.dtype
    assert y0.shape == x.shape and g0.shape == x.shape
    for k, (y, gx) in enumerate(results[1:], 1):
        assert_same(y, y0, f"{c.name} forward, call style {k}")
        assert_same(gx, g0, f"{c.name} backward, call style {k}")
    assert_same(x, x_before, "input modified by the out-of-place call")
    return y0, g0


def _ref(c, rp, x64, g):
    with np.errstate(all="ignore"):
        ry = c.ref(x64, **rp)
        rg = g.astype(np.float64) * c.dref(x64, **rp)
        sc = c.scale(x64, **rp)
        dsc = np.abs(g.astype(np.float64)) * c.dscale(x64, **rp)
        cond = None if c.cond is None else c.cond(x64, **rp)
        dcond = None if c.dcond is None else c.dcond(x64, **rp)
    return ry, rg, sc, dsc, cond, dcond


def _sel(a, m):
    return None if a is None else np.asarray(a)[m]


# ------------------------------------------------------------------------------ registry
def test_registry_has_every_torch_elementwise_activation():
    expected = set(TORCH_MODULES)
    assert set(fastact.ACTIVATIONS) == expected
    assert set(CASES) == expected
    for name in expected:
        pub = CASES[name].public_name
        for suffix in ("", "_backward"):
            assert callable(getattr(fastact, pub + suffix)), pub + suffix


def test_activation_function_list_holds_functions_and_tables_stay_exported():
    """ACTIVATION_FUNCTIONS drives the fuzzer: functions only; the tables are exported apart."""
    assert fastact.ACTIVATION_FUNCTIONS
    assert all(callable(getattr(fastact, n)) for n in fastact.ACTIVATION_FUNCTIONS)
    for table in ("ACTIVATIONS", "AXIS_ACTIVATIONS", "MODULE_FUNCTIONS"):
        assert table in fastact.__all__ and table not in fastact.ACTIVATION_FUNCTIONS
    # public (the fuzzer and fastact.torch.autograd's list of the same name use it): exported
    # and in the stub, where it was missing
    assert "ACTIVATION_FUNCTIONS" in fastact.__all__
    stub = (Path(fastact.__file__).with_suffix(".pyi")).read_text()
    assert "\nACTIVATION_FUNCTIONS: Any\n" in stub


#: torch 2.13's results at -0.0 and +0.0 (the same in its vector loop, n = 40, and its
#: scalar loop, n = 1, float32 and float64): -0.0 stays -0.0 where the function returns its
#: input (clamp_min / clamp keep it), and threshold returns ``value`` at x <= threshold
_ZERO_SIGN_CASES = {
    "relu": (lambda x: fastact.relu(x), lambda t: torch.nn.functional.relu(t)),
    "relu_": (lambda x: fastact.relu_(x), lambda t: torch.nn.functional.relu_(t)),
    "relu(inplace)": (
        lambda x: fastact.relu(x, inplace=True),
        lambda t: torch.nn.functional.relu(t, inplace=True),
    ),
    "relu6": (fastact.relu6, torch.nn.functional.relu6),
    "tanhshrink": (fastact.tanhshrink, torch.nn.functional.tanhshrink),  # float32 gave -0
    "relu6_": (fastact.relu6_, lambda t: torch.nn.functional.relu6(t, inplace=True)),
    "hardtanh": (fastact.hardtanh, torch.nn.functional.hardtanh),
    "hardtanh(0, 6)": (
        lambda x: fastact.hardtanh(x, 0.0, 6.0),
        lambda t: torch.nn.functional.hardtanh(t, 0.0, 6.0),
    ),
    "hardtanh_": (fastact.hardtanh_, torch.nn.functional.hardtanh_),
    "threshold(0, 0)": (
        lambda x: fastact.threshold(x, 0.0, 0.0),
        lambda t: torch.nn.functional.threshold(t, 0.0, 0.0),
    ),
    "threshold(0, -0.0)": (
        lambda x: fastact.threshold(x, 0.0, -0.0),
        lambda t: torch.nn.functional.threshold(t, 0.0, -0.0),
    ),
    "leaky_relu": (fastact.leaky_relu, torch.nn.functional.leaky_relu),
    "leaky_relu_": (fastact.leaky_relu_, torch.nn.functional.leaky_relu_),
    "leaky_relu(-1)": (
        lambda x: fastact.leaky_relu(x, -1.0),
        lambda t: torch.nn.functional.leaky_relu(t, -1.0),
    ),
}


@pytest.mark.parametrize("name", list(_ZERO_SIGN_CASES))
@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
def test_sign_of_zero_matches_torch(name, dtype):
    """relu(-0.0) is -0.0 in torch (it returned +0.0): the sign of a zero result as torch's,
    for NumPy arrays, torch tensors through fastact, and the scalar form, in both of torch's
    loops (n = 1 and n = 40); the gradients at -0.0 are unchanged (relu'(-0.0) = 0)."""
    ours, theirs = _ZERO_SIGN_CASES[name]
    for zero in (-0.0, 0.0):
        for n in (1, 40):
            x = np.full(n, zero, dtype)
            want = np.signbit(theirs(torch.from_numpy(x.copy())).numpy())
            assert want.all() or not want.any(), f"torch's loops disagree for {name}"
            a = x.copy()
            got = ours(a)
            got = a if got is None else got
            np.testing.assert_array_equal(np.signbit(got), want, err_msg=f"{name} at {zero}")
            t = torch.from_numpy(x.copy())
            got_t = ours(t)
            got_t = t if got_t is None else got_t
            np.testing.assert_array_equal(np.signbit(np.asarray(got_t)), want, err_msg=name)
    if name.split("(")[0].rstrip("_") != "relu":
        return
    relu_scalar = numba.njit(lambda v: fs.relu(v))
    assert np.signbit(relu_scalar(dtype(-0.0))) and not np.signbit(relu_scalar(dtype(0.0)))
    x = np.full(40, -0.0, dtype)
    assert not fastact.relu_backward(np.ones_like(x), x).any()
    assert not fastact.relu_backward(np.ones_like(x), output=fastact.relu(x)).any()


#: (activation, inputs) where a gradient is zero and torch's sign of that zero is the same in
#: both of its loops: +0 times g from torch's sums (Phi(x) + x phi(x), tanh(sp) + x sigmoid(x)
#: sech^2(sp)), +0 for any g from its differences (tanhshrink: g - g (1 - tanh^2), softsign:
#: g / d - g (x / d) / d), where fastact's products gave -0
_ZERO_GRAD_CASES = {
    "gelu": ("max", -1e3, -40.0),
    "mish": ("max", -1e4, -800.0),
    "softsign": ("max",),
    "tanhshrink": (0.0, -0.0, "tiny"),
    "logsigmoid": ("max", "inf", 800.0, 1e4),
}


@pytest.mark.parametrize("name", list(_ZERO_GRAD_CASES))
@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
def test_sign_of_zero_gradients_matches_torch(name, dtype):
    """The sign of a zero gradient as torch's (both loops: n = 1 and n = 40) for g of either
    sign and 0: gelu_backward(1, -max), mish_backward(1, -max) and softsign_backward(-0.75,
    +-max) were -0 (torch +0), tanhshrink_backward(-0.75, 0) -0, and
    logsigmoid_backward(1, output=0) -0 (torch's from the input: +0)."""
    c = CASES[name]
    fi = np.finfo(dtype)
    named = {"max": fi.max, "tiny": fi.smallest_subnormal, "inf": np.inf}
    xs = [named.get(v, v) if isinstance(v, str) else v for v in _ZERO_GRAD_CASES[name]]
    xs = [s * v for v in xs for s in ((1.0, -1.0) if name in ("softsign", "tanhshrink") else (1,))]
    if name in ("gelu", "mish"):
        xs = [-abs(v) for v in xs]
    for xv in xs:
        for gv in (1.25, -0.75, 0.0):
            signs = set()
            for n in (1, 40):
                _, tg = torch_forward_backward(c, np.full(n, xv, dtype), np.full(n, gv, dtype), {})
                signs |= {bool(np.signbit(tg[0])), bool(np.signbit(tg[-1]))}
                assert tg[0] == 0
            assert len(signs) == 1, f"torch's loops disagree for {name} at {xv}"
            want = signs.pop()
            x, g = np.full(40, xv, dtype), np.full(40, gv, dtype)
            got = [c.backward(g[:1], x[:1]), c.backward(g, x)]
            if name == "logsigmoid":
                got += [c.backward(g, None, output=fastact.logsigmoid(x))]
            got += [np.array([fs.__dict__[name + "_grad"](g[0], x[0])], dtype)]
            for k, r in enumerate(got):
                assert (r == 0).all() and (np.signbit(r) == want).all(), (
                    f"{name}_backward({gv}, {xv!r}) path {k}: {r[:1]}, torch "
                    f"{'-' if want else '+'}0.0"
                )


@pytest.mark.parametrize("name", list(TORCH_MODULES))
def test_signature_matches_torch(name):
    """Parameter names and defaults as torch's module; name_ exactly where it has inplace."""
    c = CASES[name]
    module = getattr(torch.nn, TORCH_MODULES[name])
    tparams = inspect.signature(module.__init__).parameters
    fwd = inspect.signature(getattr(fastact, c.public_name)).parameters
    bwd = inspect.signature(getattr(fastact, c.public_name + "_backward")).parameters
    for pname, _ in c.api_params:
        assert pname in tparams, pname
        tdef = tparams[pname].default
        if tdef is inspect.Parameter.empty:
            assert fwd[pname].default is inspect.Parameter.empty
        else:
            assert fwd[pname].default == tdef and bwd[pname].default == tdef
    has_inplace = "inplace" in tparams
    assert hasattr(fastact, c.public_name + "_") == has_inplace
    assert ("inplace" in fwd) == has_inplace
    assert list(fwd)[0] == "input" and list(bwd)[:2] == ["grad_output", "input"]
    assert fwd["out"].kind is inspect.Parameter.KEYWORD_ONLY


# ------------------------------------------------------------------------------ vs torch
@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("name,pi", PARAM_CASES, ids=PARAM_IDS)
def test_matches_torch(name, pi, dtype):
    """Finite inputs (random + edges + kinks) against torch autograd; +-inf and NaN are
    checked in test_nan_inf_like_torch."""
    c, p, rp, x, g = _setup(name, pi, dtype)
    y, gx = _all_styles(c, p, x, g)
    ty, tg = torch_forward_backward(c, x, g, p)
    x64 = x.astype(np.float64)
    fin = np.isfinite(x)
    bad = c.torch_bad(x64, dtype, **rp) & fin
    badg = c.torch_bad_grad(x64, dtype, **rp) & fin
    ry, rg, sc, dsc, cond, dcond = _ref(c, rp, x64, g)
    tol = TORCH_ULP[dtype]
    what = f"{name} {p} {np.dtype(dtype).name}"
    with Collect() as check:
        m = fin & ~bad
        check.check(
            assert_ulp,
            y[m],
            ty[m],
            dtype,
            tol,
            x=x[m],
            scale=sc[m],
            what=f"{what} forward vs torch",
        )
        m = fin & ~badg
        check.check(
            assert_ulp,
            gx[m],
            tg[m],
            dtype,
            tol,
            x=x[m],
            scale=dsc[m],
            what=f"{what} backward vs torch",
        )

        # Where torch is inaccurate (documented per mask): the float64 reference instead.
        rtol = REF_ULP64 if dtype == np.float64 else c.fwd_ulp32
        check.check(
            assert_ulp,
            y[bad],
            ry[bad],
            dtype,
            rtol,
            x=x[bad],
            scale=sc[bad],
            cond=_sel(cond, bad),
            what=f"{what} forward vs reference where torch is inaccurate",
        )
        rtol = REF_ULP64 if dtype == np.float64 else c.grad_ulp32
        check.check(
            assert_ulp,
            gx[badg],
            rg[badg],
            dtype,
            rtol,
            x=x[badg],
            scale=dsc[badg],
            cond=_sel(dcond, badg),
            what=f"{what} backward vs reference where torch is inaccurate",
        )

        # kinks: bitwise torch's value and gradient (the float64 reference rounded to dtype
        # where torch is inaccurate)
        kinks = np.array(c.kinks(**rp) if c.exact_kinks else [], dtype=dtype)
        k = np.isin(x, kinks)
        assert k.any() or not len(kinks)
        with np.errstate(over="ignore"):
            ty_k = np.where(bad, ry.astype(dtype), ty)
            tg_k = np.where(badg, rg.astype(dtype), tg)
        for got, want, part in ((y, ty_k, "forward"), (gx, tg_k, "backward")):
            if c.kink_ulp:
                check.check(
                    assert_ulp,
                    got[k],
                    want[k],
                    dtype,
                    c.kink_ulp,
                    x=x[k],
                    what=f"{what} {part} at the kinks",
                )
            else:
                check.check(assert_same, got[k], want[k], f"{what} {part} at the kinks", x=x[k])


def _torch_both_paths(c, xv, gv, p, dtype):
    """torch's value and gradient at one point through its scalar loop (a 1-element tensor)
    and its vectorized loop (element 0 of a 64-element tensor)."""
    res = []
    for n in (1, 64):
        ty, tg = torch_forward_backward(c, np.full(n, xv, dtype), np.full(n, gv, dtype), p)
        res.append((ty[0], tg[0]))
    return res


@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("name,pi", PARAM_CASES, ids=PARAM_IDS)
def test_nan_inf_like_torch(name, pi, dtype):
    """NaN/inf inputs and NaN/zero grad_output: NaN and inf exactly where torch has them.

    torch 2.13's vectorized and scalar loops disagree at a NaN input for the gradients of
    hardtanh, relu6, softshrink, hardshrink (vectorized 0, scalar grad_output), hardswish,
    elu, celu, selu (vectorized NaN, scalar grad_output): there fastact's gradient must be NaN
    (docs/torch_semantics.md, section 1). At +-inf torch disagrees with itself for gelu's
    value: matching either of torch's two loops is accepted there. mish's gradient at +inf
    is its limit grad_output (torch: NaN, inf / inf in its formula): the limit or torch's
    value is accepted there; at -inf it is NaN, as torch's (float32 gave -0, the limit)."""
    c = CASES[name]
    p = c.param_sets[pi]
    xs = [np.nan, np.inf, -np.inf, 1.5, -1.5, 0.0, 1e4, -1e4]
    pairs = [(xv, gv) for xv in xs[:3] for gv in (1.25, -0.75)]
    pairs += [(xv, gv) for xv in xs for gv in (np.nan, 0.0)]
    x = np.array([a for a, _ in pairs], dtype)
    g = np.array([b for _, b in pairs], dtype)
    full = c.full_params(p)
    y = c.forward(x, **full)
    gx = c.backward(g, x, **full)
    tol = TORCH_ULP[dtype]
    for i, (xv, gv) in enumerate(pairs):
        paths = _torch_both_paths(c, xv, gv, p, dtype)
        fy = min(ulp_error(y[i], ty, dtype) for ty, _ in paths)
        fg = min(ulp_error(gx[i], tg, dtype, scale=1) for _, tg in paths)
        (_, tg1), (_, tg64) = paths
        if np.isnan(xv) and not (tg1 == tg64 or (np.isnan(tg1) and np.isnan(tg64))):
            fg = 0.0 if np.isnan(gx[i]) else np.inf  # torch depends on the position: NaN
        if name == "mish" and xv == np.inf:  # the limit of g mish'(x): g
            lim = np.array(gv, dtype)
            fg = min(fg, ulp_error(gx[i], lim, dtype, scale=1))
        assert fy <= tol, (
            f"{name} {p} forward at x={xv}: got {y[i]!r}, torch {[float(t) for t, _ in paths]}"
        )
        assert fg <= tol, (
            f"{name} {p} backward at x={xv}, grad_output={gv}: got {gx[i]!r}, "
            f"torch {[float(t) for _, t in paths]}"
        )


@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("beta", [1.0, 3.0])
def test_softplus_of_nan_is_a_positive_nan_on_every_path(beta, dtype):
    """softplus(NaN) is torch's +NaN in the vector loop, its scalar tail, the scalar form and
    fastact.torch (the vector loop and the scalar form gave -NaN, the tail +NaN: the NaN's
    sign depended on the element's position)."""
    from fastact.torch import autograd

    x = np.full(40, 0.3, dtype)
    x[[0, 20, 39]] = np.nan
    want = np.signbit(torch.nn.functional.softplus(torch.from_numpy(x), beta).numpy())
    assert not want.any()
    for got in (
        fastact.softplus(x, beta),
        fastact.softplus(x[:1], beta),
        autograd.softplus(torch.from_numpy(x), beta).numpy(),
        np.array([fs.softplus(dtype(np.nan), beta)]),
    ):
        assert np.isnan(got[0]) and not np.signbit(got).any()


@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
def test_nan_parameters_as_torchs_scalar_loop(dtype):
    """A NaN parameter is not under the NaN-input rule (docs/torch_semantics.md, section 1):
    NaN where torch's scalar loop (a 1-element tensor) gives NaN, its number elsewhere (the
    smooth ones to rounding), for inputs on both sides of the kinks, in a 40-element array
    (fastact's vector loop and tail alike)."""
    nan = float("nan")
    cases = [
        ("hardtanh", (nan, 1.0)),
        ("hardtanh", (-1.0, nan)),
        ("hardshrink", (nan,)),
        ("leaky_relu", (nan,)),
        ("elu", (nan,)),
        ("celu", (nan,)),
        ("softplus", (nan, 20.0)),
        ("softplus", (1.0, nan)),
        ("threshold", (nan, 0.5)),
        ("threshold", (0.1, nan)),
    ]
    for name, params in cases:
        for xv in (-2.0, -0.3, 0.3, 2.0):
            x, g = np.full(40, xv, dtype), np.full(40, 1.25, dtype)
            xt = torch.tensor(x[:1], requires_grad=True)
            yt = getattr(torch.nn.functional, name)(xt, *params)
            yt.backward(torch.tensor(g[:1]))
            want_y, want_g = yt.detach().numpy()[0], xt.grad.numpy()[0]
            y = getattr(fastact, name)(x, *params)
            gx = getattr(fastact, name + "_backward")(g, x, *params)
            for got, want, what in ((y, want_y, "value"), (gx, want_g, "gradient")):
                ok = np.isnan(got) if np.isnan(want) else np.isclose(got, want, rtol=1e-6)
                assert ok.all(), f"{name}{params} {what} at {xv}: {got[:1]}, torch {want!r}"


# ------------------------------------------------------------------------------ vs NumPy
@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("name,pi", PARAM_CASES, ids=PARAM_IDS)
def test_matches_reference(name, pi, dtype):
    """Finite inputs against the float64 references (float32: per-activation ULP bound)."""
    c, p, rp, x, g = _setup(name, pi, dtype)
    full = c.full_params(p)
    y = c.forward(x, **full)
    gx = c.backward(g, x, **full)
    x64 = x.astype(np.float64)
    ry, rg, sc, dsc, cond, dcond = _ref(c, rp, x64, g)
    m = np.isfinite(x)
    f32 = dtype == np.float32
    what = f"{name} {p} {np.dtype(dtype).name}"
    with Collect() as check:
        check.check(
            assert_ulp,
            y[m],
            ry[m],
            dtype,
            c.fwd_ulp32 if f32 else REF_ULP64,
            x=x[m],
            scale=sc[m],
            cond=_sel(cond, m),
            what=f"{what} forward vs reference",
        )
        check.check(
            assert_ulp,
            gx[m],
            rg[m],
            dtype,
            c.grad_ulp32 if f32 else REF_ULP64,
            x=x[m],
            scale=dsc[m],
            cond=_sel(dcond, m),
            what=f"{what} backward vs reference",
        )


# ------------------------------------------------------------------------------ in-place
INPLACE = [n for n in CASES if CASES[n].op.inplace]


@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize(
    "name,pi",
    [(n, i) for n, i in PARAM_CASES if n in INPLACE],
    ids=[i for (n, _), i in zip(PARAM_CASES, PARAM_IDS, strict=True) if n in INPLACE],
)
def test_inplace_equals_out_of_place(name, pi, dtype):
    c, p, rp, x, g = _setup(name, pi, dtype)
    full = c.full_params(p)
    want = c.forward(x, **full)
    a = x.copy()
    r = getattr(fastact, name + "_")(a, **full)
    assert r is a
    assert_same(a, want, f"{name}_")
    b = x.copy()
    r = getattr(fastact, name + "_")(b, *full.values())
    assert r is b
    assert_same(b, want, f"{name}_ positional")
    b = x.copy()
    r = c.forward(b, *full.values(), True)
    assert r is b
    assert_same(b, want, f"{name}(..., inplace=True) positional")
    b = x.copy()
    r = c.forward(b, inplace=True, **full)
    assert r is b
    assert_same(b, want, f"{name}(inplace=True)")


@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize(
    "name,pi",
    [(n, i) for n, i in PARAM_CASES if n in OUTPUT_BACKWARD],
    ids=[i for (n, _), i in zip(PARAM_CASES, PARAM_IDS, strict=True) if n in OUTPUT_BACKWARD],
)
def test_backward_from_output(name, pi, dtype):
    """name_backward(g, output=y) after the in-place forward: equal to the gradient from the
    input (bitwise for the piecewise-linear ones; within a few ULP where the output-based
    formula is well conditioned for the smooth ones) and to torch's in-place backward."""
    c, p, rp, x, g = _setup(name, pi, dtype)
    full = c.full_params(p)
    x = x[~np.isnan(x)]
    g = g[: x.size]
    if (name in ("leaky_relu", "elu", "celu") and min(full.values()) < 0) or (
        name == "threshold" and full["value"] > full["threshold"]
    ):
        with pytest.raises(ValueError):
            c.backward(g, None, **full, output=c.forward(x, **full))
        return
    y = c.forward(x.copy(), **full)
    if c.op.inplace:
        y = getattr(fastact, name + "_")(x.copy(), **full)
    from_out = c.backward(g, None, **full, output=y)
    from_out_kw = c.backward(g, output=y, **full) if name != "threshold" else from_out
    assert_same(from_out_kw, from_out, f"{name} output= by keyword")
    from_in = c.backward(g, x, **full)
    what = f"{name} {p} {np.dtype(dtype).name} backward from output"
    if name in ("sigmoid", "tanh", "elu", "celu", "selu"):
        well = np.abs(x) <= 1.0
        assert_ulp(
            from_out[well], from_in[well], dtype, 8, x=x[well], scale=np.abs(g[well]), what=what
        )
        tfn = OUTPUT_BACKWARD[name]
        tp = {k: float(np.dtype(dtype).type(v)) for k, v in full.items()}
        tg = tfn(torch.tensor(g), torch.tensor(y), tp).numpy()
        assert_ulp(
            from_out,
            tg,
            dtype,
            TORCH_ULP[dtype],
            x=x,
            scale=np.abs(g),
            what=f"{what} vs torch's backward from the same output",
        )
    else:
        assert_same(from_out, from_in, what, x=x)


@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("alpha", [0.7, 0.3, 1.0, 3.0])
def test_celu_backward_from_saturated_output(alpha, dtype):
    """celu_backward(g, output=y) where y saturates at -alpha: the derivative exp(x/alpha)
    is positive and tiny, torch's in-place backward gives 0. fastact computed y (1/alpha) +
    1 as one fma, which cancels to a rounding error there: -6.8e-9 g in float32 (wrong sign)
    and 4.1e-17 in float64 with alpha = 0.7, also through fastact.torch's in-place celu."""
    x = np.concatenate([-np.geomspace(1e-3, 1e4, 300), [-np.inf, -0.0, 0.0, 0.5]]).astype(dtype)
    g = np.ones_like(x)
    y = fastact.celu(x, alpha)
    got = fastact.celu_backward(g, output=y, alpha=alpha)
    sat = y == dtype(-alpha)
    assert sat.sum() > 10
    assert (got >= 0).all(), f"negative gradient at x = {x[got < 0][:3]}"
    np.testing.assert_array_equal(got[sat], 0.0)
    a = float(dtype(alpha))
    want = torch.ops.aten.elu_backward(torch.tensor(g), a, 1.0, 1.0 / a, True, torch.tensor(y))
    assert_ulp(got, want.numpy(), dtype, 1, x=x, what=f"celu_backward(output=) alpha={alpha}")
    from fastact.torch import autograd

    xt = torch.tensor(x[:-4], requires_grad=True)
    autograd.celu(xt * 1.0, alpha, inplace=True).backward(torch.ones(x.size - 4, dtype=xt.dtype))
    assert (xt.grad >= 0).all() and not xt.grad.numpy()[sat[:-4]].any()


def test_threshold_backward_from_output_value_above_threshold():
    """With value > threshold the output no longer tells which inputs were thresholded
    (y == value may come from x <= threshold or from x == value): the gradient from output=
    must still be torch's (its in-place node gives 0 where x <= threshold) or be refused."""
    x = np.array([-1.0, 0.0, 0.3, 0.6, 2.0])
    g = np.ones(5)
    y = fastact.threshold(x, 0.5, 2.0)
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.nn.functional.threshold(xt * 1.0, 0.5, 2.0, inplace=True)
    yt.backward(torch.tensor(g))
    try:
        got = fastact.threshold_backward(g, None, 0.5, 2.0, output=y)
    except ValueError:
        return
    assert_same(got, xt.grad.numpy(), "threshold_backward(output=) with value > threshold")


def test_leaky_relu_negative_slope_from_output_raises():
    x = np.linspace(-2, 2, 9)
    y = fastact.leaky_relu(x, -0.1)
    with pytest.raises(ValueError, match="negative_slope"):
        fastact.leaky_relu_backward(np.ones(9), output=y, negative_slope=-0.1)
    with pytest.raises(ValueError):
        fastact.elu_backward(np.ones(9), output=y, alpha=-1.0)


@pytest.mark.parametrize("name", INPLACE)
def test_inplace_rejects_bad_arrays_untouched(name):
    c = CASES[name]
    full = c.full_params(default_params(c))
    fn = getattr(fastact, name + "_")
    for bad in (np.arange(-3, 4), np.arange(-3, 4) > 0, np.linspace(-1, 1, 7).astype(np.float16)):
        before = bad.copy()
        with pytest.raises(TypeError):
            fn(bad, **full)
        with pytest.raises(TypeError):
            c.forward(bad, inplace=True, **full)
        assert_same(bad, before, f"{name}_ on {bad.dtype}")
        assert bad.dtype == before.dtype
    ro = np.linspace(-2, 2, 7)
    ro.flags.writeable = False
    before = ro.copy()
    with pytest.raises(ValueError, match="read-only"):
        fn(ro, **full)
    assert_same(ro, before, f"{name}_ read-only")
    with pytest.raises(TypeError):
        fn([0.5, -0.5], **full)
    a = np.linspace(-2, 2, 7)
    with pytest.raises(ValueError):
        c.forward(a, inplace=True, out=np.empty(7), **full)
    assert_same(a, np.linspace(-2, 2, 7), f"{name} inplace+out")


# ------------------------------------------------------------------------------ out=
@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("name", list(CASES))
def test_out_argument(name, dtype):
    c = CASES[name]
    full = c.full_params(default_params(c))
    rng = _rng("out", name, np.dtype(dtype).name)
    x = (rng.standard_normal(64) * 3).astype(dtype)
    g = rng.standard_normal(64).astype(dtype)
    want = c.forward(x, **full)
    gwant = c.backward(g, x, **full)

    out = np.full_like(x, 7.0)
    assert c.forward(x, **full, out=out) is out
    assert_same(out, want, f"{name} out=")
    gout = np.empty_like(x)
    assert c.backward(g, x, **full, out=gout) is gout
    assert_same(gout, gwant, f"{name}_backward out=")
    # strided out buffer
    buf = np.zeros(128, dtype)
    assert c.forward(x, **full, out=buf[::2]) is not None
    assert_same(buf[::2], want, f"{name} strided out")
    assert not buf[1::2].any()

    # out is the input itself: allowed, in place
    a = x.copy()
    assert c.forward(a, **full, out=a) is a
    assert_same(a, want, f"{name} out=input")
    gg = g.copy()
    assert c.backward(gg, x, **full, out=gg) is gg
    assert_same(gg, gwant, f"{name}_backward out=grad_output")
    xx = x.copy()
    assert c.backward(g, xx, **full, out=xx) is xx
    assert_same(xx, gwant, f"{name}_backward out=input")

    other = np.float64 if dtype == np.float32 else np.float32
    for bad, exc in (
        (np.empty(63, dtype), ValueError),
        (np.empty((8, 8), dtype), ValueError),
        (np.empty(64, other), TypeError),
        ([0.0] * 64, TypeError),
    ):
        with pytest.raises(exc):
            c.forward(x, **full, out=bad)
        with pytest.raises(exc):
            c.backward(g, x, **full, out=bad)
    ro = np.empty_like(x)
    ro.flags.writeable = False
    with pytest.raises(ValueError):
        c.forward(x, **full, out=ro)

    # partial overlap with the input: refused before anything is written
    base = np.concatenate([x, [dtype(0.25)]]).astype(dtype)
    before = base.copy()
    with pytest.raises(ValueError, match="overlap"):
        c.forward(base[:-1], **full, out=base[1:])
    assert_same(base, before, f"{name} partial overlap wrote")
    base2 = np.concatenate([g, [dtype(0.25)]]).astype(dtype)
    before2 = base2.copy()
    with pytest.raises(ValueError, match="overlap"):
        c.backward(base2[:-1], x, **full, out=base2[1:])
    assert_same(base2, before2, f"{name}_backward partial overlap wrote")
    with pytest.raises(ValueError, match="overlap"):
        c.forward(base[::2][:32], **full, out=base[:32])
    assert_same(base, before, f"{name} strided partial overlap wrote")


@pytest.mark.parametrize("name", list(CASES))
def test_bad_arguments(name):
    c = CASES[name]
    full = c.full_params(default_params(c))
    x = np.linspace(-2, 2, 8)
    with pytest.raises(TypeError):
        c.forward("abc", **full)
    with pytest.raises(TypeError):
        c.forward(None, **full)
    with pytest.raises(TypeError):
        c.forward(np.array([1 + 2j]), **full)
    with pytest.raises(ValueError, match="shape"):
        c.backward(np.ones(7), x, **full)
    with pytest.raises(TypeError):
        c.backward(None, x, **full)
    for pname, _ in c.api_params:
        if pname == "approximate":
            with pytest.raises(ValueError, match="approximate"):
                c.forward(x, approximate="sigmoid")
            continue
        for bad in ("0.5", None, True):
            with pytest.raises(TypeError, match=pname):
                c.forward(x, **{**full, pname: bad})
    if c.op.scalars["grad_output"] is None:
        assert (
            "output"
            not in inspect.signature(getattr(fastact, c.public_name + "_backward")).parameters
        )
    else:
        with pytest.raises(TypeError):
            c.backward(np.ones(8), x, **full, output=x)


def test_parameter_validation_like_torch():
    x = np.linspace(-2, 2, 8)
    with pytest.raises(ValueError):
        fastact.hardtanh(x, 1.0, -1.0)
    with pytest.raises(ValueError):
        fastact.celu(x, 0.0)
    with pytest.raises(ValueError):
        fastact.softshrink(x, -0.5)
    np.testing.assert_array_equal(fastact.hardshrink(x, -0.5), x)  # torch accepts it too
    with pytest.raises(TypeError):
        fastact.threshold(x, 0.5)  # both threshold and value are required, like torch


@pytest.mark.parametrize(
    ("name", "kw"),
    [
        ("leaky_relu", {"negative_slope": 1e40}),
        ("elu", {"alpha": -1e40}),
        ("celu", {"alpha": 1e40}),
        ("threshold", {"threshold": 0.0, "value": 1e39}),
        ("hardtanh", {"min_val": -1e39}),
        ("softplus", {"beta": 1e40}),
    ],
)
def test_parameters_that_overflow_the_dtype_raise_like_torch(name, kw):
    """A finite parameter beyond float32's range: torch raises ("cannot be converted to type
    float without overflow"); fastact raised nothing and returned inf and NaN (0 * inf)."""
    x = np.array([-1.0, 0.0, 1.0], np.float32)
    tf = getattr(torch.nn.functional, name)
    with pytest.raises(RuntimeError, match="without overflow"):
        tf(torch.tensor(x), **kw)
    out = np.full(3, 7.0, np.float32)
    with pytest.raises(
        ValueError,
        match=f"{next(iter(kw)) if name != 'threshold' else 'value'} "
        r"= .* cannot be converted to float32 without overflow",
    ):
        getattr(fastact, name)(x, **kw, out=out)
    assert (out == 7.0).all()  # nothing written
    fastact.leaky_relu(x, 3.4028234663852886e38)  # float32's largest: accepted (torch too)
    getattr(fastact, name)(x.astype(np.float64), **kw)  # representable in float64


# ------------------------------------------------------------------------------ scalar cores
@numba.njit(parallel=True)
def _user_kernel(x, slope, out):
    for i in numba.prange(x.size):
        v = x[i]
        out[0, i] = fs.silu(v)
        out[1, i] = fs.leaky_relu(v, slope)
        out[2, i] = fs.gelu_grad(v * 0 + 1, v)
        out[3, i] = fs.elu_grad_output(v * 0 + 1, fs.elu(v, slope * 0 + 1), slope * 0 + 1)
        out[4, i] = fs.sigmoid_core(v) + fs.exp(v * 0)


@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
def test_scalar_cores_in_user_parallel_code(dtype):
    names = set(fs.__all__)
    for name, op in fastact.ACTIVATIONS.items():
        for kind, suffix in (("forward", ""), ("grad", "_grad"), ("grad_output", "_grad_output")):
            assert ((name + suffix) in names) == (op.scalars[kind] is not None), name + suffix
    x = np.linspace(-8, 8, 1001).astype(dtype)
    slope = dtype(0.2)
    out = np.empty((5, x.size), dtype)
    _user_kernel(x, slope, out)
    ones = np.ones_like(x)
    assert_ulp(out[0], fastact.silu(x), dtype, 1, x=x, what="scalar silu")
    assert_ulp(out[1], fastact.leaky_relu(x, 0.2), dtype, 1, x=x, what="scalar leaky_relu")
    assert_ulp(
        out[2], fastact.gelu_backward(ones, x), dtype, 1, x=x, scale=ones, what="scalar gelu_grad"
    )
    assert_ulp(
        out[3],
        fastact.elu_backward(ones, output=fastact.elu(x)),
        dtype,
        1,
        x=x,
        what="scalar elu_grad_output",
    )
    assert_ulp(out[4], fastact.sigmoid(x) + 1, dtype, 1, x=x, what="scalar sigmoid_core")
    assert out.dtype == dtype


def test_no_warnings_on_edge_values():
    """Overflow/invalid inside the kernels must not leak NumPy warnings."""
    x = np.array([np.inf, -np.inf, np.nan, 1e30, -1e30, 0.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for c in CASES.values():
            full = c.full_params(default_params(c))
            c.forward(x, **full)
            c.backward(np.ones_like(x), x, **full)
