"""``fastact.scalar``: the rule for its forms' argument types (in jit code and from Python),
their names, signatures and docs, and :func:`fastact.scalar.check_params`."""

from __future__ import annotations

import inspect
import math
import os
import subprocess
import sys
from pathlib import Path

import numba
import numpy as np
import pytest
import torch

import fastact
import fastact.scalar as S

F32, F64 = np.float32, np.float64
FORMS = [n for n in S.__all__ if n != "check_params"]


def _one_argument_forms():
    return [
        n for n in FORMS if list(inspect.signature(getattr(S, n).py_func).parameters)[:2] != ["g"]
    ]


# ------------------------------------------------------------------- argument types
@pytest.mark.parametrize("name", ["exp", "tanh", "relu", "silu", "gelu", "sigmoid_core"])
def test_ints_and_bools_are_taken_as_float64_in_jit_code(name):
    """relu(3) in jit code raised numba's TypingError about fastact's internal
    ``lit(int64, float64)``, exp(3) "No implementation of function exp"; math.exp(3) works."""
    f = getattr(S, name)
    call = numba.njit(lambda v: f(v))
    for v in (3, -2, True, np.int32(2), np.uint8(1), np.bool_(False)):
        assert call(v) == call(F64(v)), (name, v)
        assert type(call(v)) is float  # a float64 result
    assert call(3) == f(3.0)  # from Python: the same rule


def test_grad_forms_take_int_arguments():
    call = numba.njit(lambda g, v: S.leaky_relu_grad(g, v, 0.1) + S.elu_grad_output(g, v))
    assert call(1, -2) == call(1.0, -2.0)
    assert numba.njit(lambda v: S.leaky_relu(v))(True) == 1.0


@pytest.mark.parametrize(
    ("name", "value", "shown"),
    [
        ("relu", np.float16(1), "float16"),
        ("gelu", np.float16(1), "float16"),
        ("exp", np.float16(1), "float16"),
        ("erf", np.float16(1), "float16"),
        ("leaky_relu", 1j, "complex128"),
        ("tanh", np.float16(1), "float16"),
    ],
)
def test_other_types_raise_a_type_error_naming_the_form(name, value, shown):
    """float16 raised a bare ``NotImplementedError: float16`` (activations) or numba's
    "No implementation" (math cores) in jit code; from Python the math cores took it as
    float64 and the activations failed: one rule now, in both places."""
    f = getattr(S, name)
    msg = rf"fastact\.scalar\.{name}: x must be float32 or float64 .*got {shown}"
    with pytest.raises(TypeError, match=msg):
        numba.njit(lambda v: f(v))(value)
    with pytest.raises(TypeError, match=rf"fastact\.scalar\.{name}: x must be float32 or float64"):
        f(value)


def test_the_argument_is_named():
    with pytest.raises(TypeError, match=r"fastact\.scalar\.elu_grad: g must be .*got float16"):
        numba.njit(lambda g, v: S.elu_grad(g, v))(np.float16(1), 1.0)
    with pytest.raises(TypeError, match=r"relu_grad_output: y must be .*got array"):
        numba.njit(lambda g, v: S.relu_grad_output(g, v))(1.0, np.ones(2))


def test_every_form_takes_an_int_from_python():
    """S.exp(3) worked from Python, S.tanh(3) (the activation's dispatcher, which had replaced
    the math core in the module) and S.relu(3) raised: the same rule for every form."""
    for name in FORMS:
        f = getattr(S, name)
        params = inspect.signature(getattr(f, "py_func", f)).parameters.values()
        args = [1 if i == 0 else 0 for i, p in enumerate(params) if p.default is p.empty]
        assert isinstance(f(*args), float), name
    from fastact._core import math as core_math

    assert S.tanh is core_math.tanh and S.tanh(3) == S.tanh(3.0)


@numba.njit
def _exp(v):
    return S.exp(v)


@numba.njit
def _silu(v):
    return S.silu(v)


@numba.njit
def _leaky_relu(v):
    return S.leaky_relu(v, 0.1)


def test_float32_keeps_float32_in_jit_code_and_returns_a_python_float_from_python():
    """From Python a float32 argument returns a Python float (numba boxes a float32 result as
    a Python float), holding the float32 result exactly; in jit code the result is float32."""
    for f, jitted, args in (
        (S.exp, _exp, (F32(1.0),)),
        (S.silu, _silu, (F32(1.0),)),
        (S.leaky_relu, _leaky_relu, (F32(-1.0), 0.1)),
    ):
        r = f(*args)
        assert type(r) is float
        assert float(F32(r)) == r  # a float32 value
        assert jitted(args[0]) == r
        assert jitted.nopython_signatures[0].return_type == numba.float32
    assert S.exp(F32(1.0)) == float(F32(math.e))
    assert "Python float" in S.__doc__


# ------------------------------------------------------------------- names and docs
def test_grad_output_forms_name_their_output_y():
    """relu, leaky_relu, hardtanh, relu6 and threshold's _grad_output forms named it x."""
    for name in (n for n in FORMS if n.endswith("_grad_output")):
        params = list(inspect.signature(getattr(S, name).py_func).parameters)
        assert params[:2] == ["g", "y"], name
    call = numba.njit(lambda g, y: S.leaky_relu_grad_output(g, y=y))
    assert call(1.0, -0.5) == 0.01


def test_forms_carry_their_public_name_and_doc():
    """The parameter-free forms were the private dispatchers (``_relu``, no doc)."""
    for name in FORMS:
        f = getattr(S, name)
        assert f.__name__ == name, name
        assert f.__doc__ and f.__doc__.strip(), name
    assert S.relu.__doc__.startswith("``relu(x)``")
    assert "max(0, x)" in S.relu.__doc__
    assert S.leaky_relu_grad_output.__doc__.startswith("``leaky_relu_grad_output(g, y, negative")


def test_parameter_free_forms_still_vectorize():
    """A user's loop over a form is the loop over the activation's own scalar function."""
    import re

    @numba.njit
    def loop(x, out):
        for i in range(x.shape[0]):
            out[i] = S.relu(x[i]) + S.sigmoid(x[i])

    x = np.linspace(-3, 3, 64).astype(F32)
    out = np.empty_like(x)
    loop(x, out)
    np.testing.assert_array_equal(out, fastact.relu(x) + fastact.sigmoid(x))
    asm = loop.inspect_asm(loop.signatures[0])
    assert re.search(r"\tv?(?:mul|add|max|fmadd\w*)ps\s[^\n]*%[xyz]mm", asm)


def test_forms_pickle_to_another_process_by_value(tmp_path):
    """A form is a generated function: its helper ``_floats_<name>`` (an overload) is bound
    in fastact.scalar, so a user's function pickled by value (cloudpickle, dask) compiles in a
    fresh process."""
    cloudpickle = pytest.importorskip("cloudpickle")

    relu, leaky_relu, relu_grad_output = S.relu, S.leaky_relu, S.relu_grad_output

    @numba.njit
    def mine(v):  # the forms themselves pickled (closure cells), not the module
        return relu(v) + leaky_relu(v, 0.5) + relu_grad_output(v, v)

    (tmp_path / "blob").write_bytes(cloudpickle.dumps(mine))
    script = "import pickle, sys; print(pickle.loads(open(sys.argv[1], 'rb').read())(-2.0))"
    env = {**os.environ, "PYTHONPATH": str(Path(fastact.__file__).parents[1])}
    out = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "blob")],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert float(out.stdout) == mine(-2.0) == -1.0


# ------------------------------------------------------------------- check_params
@pytest.mark.parametrize(
    ("args", "kw", "array_call"),
    [
        (("celu", 0.0), {}, lambda x: fastact.celu(x, 0.0)),
        (("softshrink", -1.0), {"dtype": F32}, lambda x: fastact.softshrink(x, -1.0)),
        (("hardtanh", 2.0, -2.0), {}, lambda x: fastact.hardtanh(x, 2.0, -2.0)),
        (
            ("hardtanh",),
            {"min_val": 2.0, "max_val": -2.0},
            lambda x: fastact.hardtanh(x, 2.0, -2.0),
        ),
        (("celu_grad", 0.0), {}, lambda x: fastact.celu_backward(x, x, 0.0)),
        (
            ("leaky_relu_grad_output", -0.1),
            {},
            lambda x: fastact.leaky_relu_backward(x, output=x, negative_slope=-0.1),
        ),
        (("elu", 1e39), {"dtype": F32}, lambda x: fastact.elu(x, 1e39)),
    ],
)
def test_check_params_raises_the_array_functions_errors(args, kw, array_call):
    """The scalar forms return numbers for parameters the array functions refuse (celu
    alpha=0: -0.0; softshrink lambd=-1: -1.5; hardtanh min > max: 2.0): check_params, run
    once outside the loop, raises the array function's ValueError."""
    x = np.array([-0.5], kw.get("dtype", F64))
    with pytest.raises(ValueError) as want:
        array_call(x)
    with pytest.raises(ValueError) as got:
        S.check_params(*args, **kw)
    assert str(got.value) == str(want.value)


def test_check_params_returns_the_parameters_in_the_dtype():
    assert S.check_params("celu", 0.5, dtype=F32) == (F32(0.5),)
    assert type(S.check_params("celu", 0.5, dtype=F32)[0]) is F32
    assert S.check_params("hardtanh", max_val=3) == (-1.0, 3.0)
    assert S.check_params("threshold", 1.0, 0.5) == (1.0, 0.5)
    assert S.check_params("leaky_relu_grad", -0.1) == (-0.1,)  # from the input: any slope
    assert S.check_params("relu") == () and S.check_params("exp") == ()
    # the checked values in jit code: the array function's results
    alpha = S.check_params("celu", 0.5, dtype=F32)[0]
    x = np.linspace(-2, 2, 9, dtype=F32)
    got = np.array([numba.njit(lambda v, a: S.celu(v, a))(v, alpha) for v in x], F32)
    np.testing.assert_array_equal(got, fastact.celu(x, 0.5))
    np.testing.assert_array_equal(torch.nn.functional.celu(torch.from_numpy(x), 0.5).numpy(), got)


@pytest.mark.parametrize(
    ("args", "kw", "err", "match"),
    [
        (("nope",), {}, ValueError, "name: fastact.scalar has no form 'nope'"),
        (("check_params",), {}, ValueError, "no form"),
        ((3,), {}, ValueError, "no form"),
        (("relu", 1.0), {}, TypeError, "relu: too many positional arguments"),
        (("celu",), {"beta": 1.0}, TypeError, "celu: got an unexpected keyword argument 'beta'"),
        (("celu", 1.0), {"alpha": 2.0}, TypeError, "celu: multiple values for argument 'alpha'"),
        (("threshold", 1.0), {}, TypeError, "threshold: missing a required argument: 'value'"),
        (("celu", True), {}, TypeError, "alpha must be a real number, got bool"),
        (("celu",), {"dtype": np.float16}, TypeError, "dtype must be float32 or float64"),
    ],
)
def test_check_params_refuses_bad_calls(args, kw, err, match):
    with pytest.raises(err, match=match):
        S.check_params(*args, **kw)


# ------------------------------------------------------------------- one definition, same bits
#: (form, array function, its backward's kind, parameters): parameters that are not powers of
#: two, whose reciprocal is inexact
_PARAM_FORMS = [
    ("softplus", "forward", (3.0, 20.0)),
    ("softplus", "forward", (0.7, 5.0)),
    ("softplus_grad", "grad", (3.0, 20.0)),
    ("celu", "forward", (0.7,)),
    ("celu", "forward", (3.0,)),
    ("celu_grad", "grad", (0.7,)),
    ("celu_grad_output", "grad_output", (0.7,)),
    ("celu_grad_output", "grad_output", (3.0,)),
]


@pytest.mark.parametrize("dtype", [F32, F64], ids=["f32", "f64"])
@pytest.mark.parametrize(("form", "kind", "params"), _PARAM_FORMS)
def test_every_path_gives_the_same_bits_with_inexact_reciprocals(form, kind, params, dtype):
    """One scalar definition, the same bits on every path: the form called from Python, in
    an njit loop (the parameter an argument: loop-invariant, or a constant), the array
    function (its serial and parallel loops), a fused function and fastact.torch. With the
    arcp flag LLVM divided by beta / alpha in the form alone and multiplied by the hoisted
    reciprocal in loops: softplus(-0.972, beta=3) float32 0.017575664 against 0.017575666,
    celu_grad(1, -12.573, 0.7) 1.5828972e-08 against 1.5828942e-08."""
    from fastact.torch import autograd

    name = form.split("_grad")[0]
    rng = np.random.default_rng(7)
    x = np.concatenate(
        [[-0.9720495, -33.054516, -12.572997, -4.754929], rng.standard_normal(3000) * 6]
    ).astype(dtype)
    g = rng.uniform(-2, 2, x.size).astype(dtype)
    f, fa = getattr(S, form), getattr(fastact, name)
    fb = getattr(fastact, name + "_backward")
    if kind == "forward":
        args, want = (x,), fa(x, *params)
        big = fa(np.tile(x, 100), *params)[: x.size]
        t = autograd.__dict__[name](torch.from_numpy(x.copy()), *params).numpy()
    elif kind == "grad":
        args, want = (g, x), fb(g, x, *params)
        big = fb(np.tile(g, 100), np.tile(x, 100), *params)[: x.size]
        xt = torch.from_numpy(x.copy()).requires_grad_()
        autograd.__dict__[name](xt, *params).backward(torch.from_numpy(g))
        t = xt.grad.numpy()
    else:
        y = fa(x, *params)
        args, want = (g, y), fb(g, output=y, alpha=params[0])
        big = fb(np.tile(g, 100), output=np.tile(y, 100), alpha=params[0])[: x.size]
        xt = torch.from_numpy(x.copy()).requires_grad_()
        autograd.__dict__[name](xt * 1.0, *params, inplace=True).backward(torch.from_numpy(g))
        t = xt.grad.numpy()
    u = want.dtype.str.replace("f", "u")

    def same(got, path):
        got = np.asarray(got, dtype)
        bad = np.nonzero(got.view(u) != want.view(u))[0]
        assert not bad.size, (
            f"{form}{params} {path}: {bad.size} differ, e.g. at {args[-1][bad[0]]!r}: "
            f"{got[bad[0]]!r}, the array function {want[bad[0]]!r}"
        )

    same(big, "parallel loop")
    same(t, "fastact.torch")
    same([dtype(f(*a, *params)) for a in zip(*args, strict=True)], "from Python")
    n = len(args)
    src = (
        f"def loop({', '.join(f'a{i}' for i in range(n))}, p, out):\n"
        "    for i in range(out.size):\n"
        f"        out[i] = f({', '.join(f'a{i}[i]' for i in range(n))}, *p)\n"
    )
    ns = {"f": f}
    exec(src, ns)
    out = np.empty_like(want)
    numba.njit(ns["loop"])(*args, tuple(dtype(p) for p in params), out)
    same(out, "njit loop")
    ns = {"f": f, "S": S}
    sig = ", ".join(f"a{i}" for i in range(n))
    exec(f"def fused({sig}):\n    return S.{form}({sig}, {', '.join(map(repr, params))})\n", ns)
    same(fastact.elementwise(ns["fused"])(*args), "fused")
