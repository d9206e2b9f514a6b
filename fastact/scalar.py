"""Jitted scalar cores for your own ``@numba.njit`` (including parallel) code and for
``@fastact.elementwise`` functions.

For every element-wise activation ``name``: ``name(x, *params)``, ``name_grad(g, x,
*params)`` (``g * name'(x)``) and, where the derivative is a function of the output,
``name_grad_output(g, y, *params)``. Parameters are positional, in torch's order, with torch's
defaults; Python numbers (or values of another float type) are converted to the type of ``x``
(of ``y`` for ``_grad_output``), so ``leaky_relu(x, 0.1)`` on a float32 ``x`` computes and
returns float32. The math cores ``exp, expm1, log, log1p, tanh, erf, erfc`` (and
``sigmoid_core``) are vectorizable replacements for the ``math`` functions, which numba 0.68
compiles to scalar libm calls (no SVML). Example::

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

from fastact._core.jit import ELEMENTWISE_FASTMATH, jit
from fastact._core.math import erf, erfc, exp, expm1, lit, log, log1p, tanh
from fastact.kernels.activations import ACTIVATIONS, sigmoid_core
from fastact.kernels.elementwise import REQUIRED

__all__ = ["exp", "expm1", "log", "log1p", "tanh", "erf", "erfc", "sigmoid_core"]


def _typed_parameters(name: str, f: Any, params: tuple, lead: int) -> Any:
    """``f`` (an activation's scalar form) with its parameters converted to the type of its
    ``lead``-th argument (``x``, or ``y`` for a ``_grad_output`` form) and torch's
    defaults; ``f`` itself when it takes no parameters."""
    if not params:
        return f
    names = list(inspect.signature(f.py_func).parameters)
    args = names[: len(names) - len(params)]
    defaults = {f"_d{i}": d for i, (_, d) in enumerate(params)}
    sig = args + [
        p if d is REQUIRED else f"{p}=_d{i}"
        for i, (p, (_, d)) in enumerate(zip(names[len(args) :], params, strict=True))
    ]
    like = args[lead]
    call = args + [f"_lit({like}, {p})" for p in names[len(args) :]]
    src = f"def {name}({', '.join(sig)}):\n    return _f({', '.join(call)})\n"
    ns: dict[str, Any] = {"_f": f, "_lit": lit, "__name__": __name__, **defaults}
    exec(compile(src, f"<fastact.scalar.{name}>", "exec"), ns)
    py = ns[name]
    py.__doc__ = f.py_func.__doc__
    return jit(py, fastmath=set(ELEMENTWISE_FASTMATH))


for _name, _op in ACTIVATIONS.items():
    for _kind, _suffix, _lead in (
        ("forward", "", 0),
        ("grad", "_grad", 1),
        ("grad_output", "_grad_output", 1),
    ):
        _f = _op.scalars[_kind]
        if _f is not None:
            _pub = _typed_parameters(_name + _suffix, _f, _op.params, _lead)
            globals()[_name + _suffix] = _pub
            if _name + _suffix not in __all__:
                __all__.append(_name + _suffix)
del _name, _op, _kind, _suffix, _f, _lead, _pub
