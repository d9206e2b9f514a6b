"""Jitted scalar cores for your own ``@numba.njit`` (including parallel) code and for
``@fastact.elementwise`` functions.

For every element-wise activation ``name``: ``name(x, *params)``, ``name_grad(g, x,
*params)`` (``g * name'(x)``) and, where the derivative is a function of the output,
``name_grad_output(g, y, *params)``. Parameters are positional, in torch's order, with torch's
defaults; Python numbers (or values of another float type) are converted to the type of ``x``
(of ``y`` for ``_grad_output``), so ``leaky_relu(x, 0.1)`` on a float32 ``x`` computes and
returns float32. The math cores ``exp, expm1, log, log1p, tanh, erf, erfc`` (and
``sigmoid_core``) are vectorizable replacements for the ``math`` functions, which numba 0.68
compiles to scalar libm calls (no SVML); ``tanh`` is the math core (the activation computes
the same).

Arguments (``x``, ``g``, ``y``): float32 or float64; an int or a bool is taken as float64, as
``math.exp`` takes it (``relu(3)`` is ``3.0``); any other type (float16, complex, an array)
raises a TypeError naming the form and the argument, in jit code while numba types your
function. The same rule holds from plain Python, where every form returns a Python float (a
float64 holding the float32 result exactly for a float32 argument: ``np.float32(r)`` gives
it back; in jit code a float32 argument gives a float32). A form gives the same bits as the
array function, a fused function and ``fastact.torch`` (``tests/test_scalar.py``).

Parameters are not checked in jit code (a check per element of your loop; and an exception
raised on a worker thread of a parallel loop is lost): ``celu(x, 0.0)``, ``softshrink(x, -1.0)`` or
``hardtanh(x, 2.0, -2.0)`` return numbers where ``fastact.celu`` & co. raise. Check them once,
outside the loop, with :func:`check_params` (the array functions' rules and errors).
Example::

    from numba import njit, prange
    from fastact.scalar import silu, exp

    @njit(parallel=True)
    def my_layer(x, out):
        for i in prange(x.size):
            out[i] = silu(x[i]) * 2

Accuracy (float32, max error in ULP of the result against references checked against mpmath):

=============  =========  ===================================================================
core           float32    how it was measured
=============  =========  ===================================================================
exp            0.88       all 2**32 inputs (``scripts/ulp_sweep.py``; see fastact._core.math)
expm1          0.90       all 2**32 inputs
log            0.90       all 2**32 inputs
log1p          0.99       all 2**32 inputs
tanh           1.42       all 2**32 inputs
erf            0.99       all 2**32 inputs
erfc           0.92       all 2**32 inputs
sigmoid        2.4        all 2**32 inputs (``scripts/ulp_sweep_activations.py``; the README's
                          table and ``notes/ulp_sweep_float32_all.md``)
softplus       1.71       all 2**32 inputs
logsigmoid     1.71       all 2**32 inputs
elu            0.82       all 2**32 inputs
selu           1.88       all 2**32 inputs
celu           0.82       all 2**32 inputs
gelu           3.82       all 2**32 inputs
gelu_tanh      3.62       all 2**32 inputs (the argument in two words: no loss in the far tail)
silu           2.4        all 2**32 inputs
mish           3.94       all 2**32 inputs
tanhshrink     1.49       all 2**32 inputs
=============  =========  ===================================================================

The piecewise-linear forms (relu, relu6, hardtanh, threshold, hardshrink, leaky_relu,
softshrink, hardsigmoid, hardswish, softsign) are one to three roundings of exact operations
(0.5 to 1.5 ULP). Every forward and gradient form, float32 and float64, is tested against
float64 references (``tests/test_activations.py``): float32 within 4 ULP (gelu 4.5) at
the cancellation scales of ``tests/activation_cases.py``, float64 within 256 ULP (a few ULP
measured), and against torch. float64 math cores: 0.8 to 1.3 ULP (sampled against 80-bit
long double or mpmath).
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
from numba.core import types
from numba.extending import overload

from fastact._core.jit import ELEMENTWISE_FASTMATH, jit
from fastact._core.math import erf, erfc, exp, expm1, lit, log, log1p, real_argument_error, tanh
from fastact.kernels.activations import ACTIVATIONS, sigmoid_core
from fastact.kernels.elementwise import REQUIRED

__all__ = ["exp", "expm1", "log", "log1p", "tanh", "erf", "erfc", "sigmoid_core"]
#: the math cores: fastact._core.math's functions themselves (the activation ``tanh`` computes
#: the same as the core, which keeps the name: one rule from Python for all the forms)
_MATH_CORES = frozenset(__all__[:7])


def _to_float(v):
    """``v`` as a float: an int or a bool as float64, a float as it is (also the body run by
    the CUDA simulator; jit code: the overload below)."""
    return np.float64(v) if isinstance(v, (int, np.integer, np.bool_)) else v


@overload(_to_float, inline="always")
def _to_float_ol(v):
    if isinstance(v, (types.Integer, types.Boolean)):
        return lambda v: np.float64(v)
    return lambda v: v


def _check_floats(function: str, names: tuple[str, ...], arg_types: tuple) -> None:
    """The rule of every scalar form's arguments, while numba types a call: float32 and
    float64, or an int or a bool (taken as float64, as ``math.exp`` takes them); for any other
    type a TypeError naming the form and the argument (numba passes a TypeError raised there
    on as it is; its own TypingError named fastact's internal ``lit`` instead)."""
    for name, t in zip(names, arg_types, strict=True):
        if t not in (types.float32, types.float64) and not isinstance(
            t, (types.Integer, types.Boolean)
        ):
            raise TypeError(real_argument_error(f"fastact.scalar.{function}", name, str(t)))


_KIND_DOCS = {
    "forward": "``{name}({args})``: the activation at one element.",
    "grad": "``{name}_grad({args})``: ``g * {name}'(x)``, the gradient from the input.",
    "grad_output": (
        "``{name}_grad_output({args})``: ``g * {name}'(x)`` from the output ``y = {name}(x)``."
    ),
}


def _scalar_form(public: str, f: Any, args: tuple[str, ...], params: tuple, doc: str) -> Any:
    """The public scalar form ``public``: a jitted function of ``args`` (then the parameters,
    with torch's defaults) that takes the arguments as floats (``_floats_<public>``: see
    :func:`_check_floats`), converts the parameters to the type of the last argument (``x``,
    or ``y`` for a ``_grad_output`` form) and calls ``f`` (the activation's own scalar
    function, or ``sigmoid_core``). LLVM inlines it into the caller: the loop is the one a
    call of ``f`` gives. ``_floats_<public>`` is bound in this module under its name, so that
    a pickled copy of the form (cloudpickle, dask) finds it, with its overload, by reference."""
    defaults = {f"_d{i}": d for i, (_, d) in enumerate(params)}
    sig = list(args) + [p if d is REQUIRED else f"{p}=_d{i}" for i, (p, d) in enumerate(params)]
    floats = [f"_{a}" for a in args]
    call = floats + [f"_lit({floats[-1]}, {p})" for p, _ in params]
    stub = f"_floats_{public}"
    src = (
        f"def {stub}({', '.join(args)}):\n"
        f"    return ({', '.join(f'_to_float({a})' for a in args)},)\n\n\n"
        f"def _typing({', '.join(args)}):\n"
        f"    _check_floats({public!r}, {args!r}, ({', '.join(args)},))\n"
        f"    return {stub}\n\n\n"
        f"def {public}({', '.join(sig)}):\n"
        f"    {', '.join(floats)}, = {stub}({', '.join(args)})\n"
        f"    return _f({', '.join(call)})\n"
    )
    ns: dict[str, Any] = {
        "_f": f,
        "_lit": lit,
        "_to_float": _to_float,
        "_check_floats": _check_floats,
        "__name__": __name__,
        **defaults,
    }
    exec(compile(src, f"<fastact.scalar.{public}>", "exec"), ns)
    overload(ns[stub])(ns["_typing"])
    globals()[stub] = ns[stub]
    py = ns[public]
    py.__doc__ = doc
    return jit(py, fastmath=set(ELEMENTWISE_FASTMATH))


def _form_doc(name: str, kind: str, args: tuple[str, ...], op: Any) -> str:
    params = [p if d is REQUIRED else f"{p}={d!r}" for p, d in op.params]
    text = _KIND_DOCS[kind].format(name=name, args=", ".join([*args, *params]))
    return f"{text}\n\n{inspect.cleandoc(op.doc)}" if op.doc else text


sigmoid_core = _scalar_form("sigmoid_core", sigmoid_core, ("x",), (), sigmoid_core.__doc__)

for _name, _op in ACTIVATIONS.items():
    for _kind, _suffix, _args in (
        ("forward", "", ("x",)),
        ("grad", "_grad", ("g", "x")),
        ("grad_output", "_grad_output", ("g", "y")),
    ):
        _f = _op.scalars[_kind]
        if _f is None or _name + _suffix in _MATH_CORES:
            continue
        _doc = _form_doc(_name, _kind, _args, _op)
        globals()[_name + _suffix] = _scalar_form(_name + _suffix, _f, _args, _op.params, _doc)
        __all__.append(_name + _suffix)
del _name, _op, _kind, _suffix, _f, _args, _doc

_SUFFIXES = ("_grad_output", "_grad", "")


def check_params(name: str, *params: Any, dtype: Any = np.float64, **named: Any) -> tuple:
    """Check the parameters of the scalar form ``name`` by the rules of the array functions,
    once, outside your loop; returns them as ``dtype`` scalars, torch's defaults filled in.

    The scalar forms do not check their parameters in jit code (a check per element of your
    loop; and an exception raised on a worker thread of a parallel loop is lost): ``celu(x, 0.0)``,
    ``softshrink(x, -1.0)`` or ``hardtanh(x, 2.0, -2.0)`` return numbers there, where
    ``fastact.celu`` & co. raise. ``check_params("celu", 0.0)`` raises the ValueError of
    ``fastact.celu`` (TypeError for a parameter that is not a real number, ValueError for a
    finite one beyond ``dtype``'s range); for a ``_grad_output`` form also the check of
    ``name_backward(g, output=y)`` (e.g. ``leaky_relu_grad_output`` needs ``negative_slope >=
    0``). ``name`` is a form's name (``"celu"``, ``"celu_grad"``, ``"celu_grad_output"``),
    the parameters are positional or named as in the form; ``dtype`` (float32 or float64) is
    the type your loop computes in: the range checks depend on it. Example::

        alpha = check_params("celu", alpha, dtype=np.float32)[0]
        my_kernel(x, out, alpha)  # @njit code calling celu(x[i], alpha)
    """
    if not isinstance(name, str) or name not in __all__ or name == "check_params":
        raise ValueError(f"name: fastact.scalar has no form {name!r}")
    dt = np.dtype(dtype) if isinstance(dtype, (type, np.dtype, str)) else None
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise TypeError(f"dtype must be float32 or float64, got {dtype!r}")
    base, suffix = next((name[: len(name) - len(s)], s) for s in _SUFFIXES if name.endswith(s))
    op = ACTIVATIONS.get(base)
    specs = op.params if op is not None else ()  # a math core or sigmoid_core: none
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    signature = inspect.Signature(
        [inspect.Parameter(p, kind, **({} if d is REQUIRED else {"default": d})) for p, d in specs]
    )
    try:
        bound = signature.bind(*params, **named)
    except TypeError as e:  # Python's own binding errors, prefixed with the form
        raise TypeError(f"{name}: {e}") from None
    bound.apply_defaults()
    if op is None:
        return ()
    checked = op.kernel_params(tuple(bound.arguments.values()), dt)
    if suffix == "_grad_output" and op.check_output is not None:
        op.check_output(*checked)
    return checked


__all__.append("check_params")
