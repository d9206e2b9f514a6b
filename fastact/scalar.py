"""Jitted scalar cores for use inside your own ``@numba.njit`` (including parallel) code.

For every element-wise activation ``name``: ``name(x, *params)``, ``name_grad(g, x,
*params)`` (``g * name'(x)``) and, where the derivative is a function of the output,
``name_grad_output(g, y, *params)``. Parameters are positional, in torch's order, and must
have the dtype of ``x`` (float32 or float64). The math cores ``exp, expm1, log, log1p, tanh,
erf, erfc`` are vectorizable replacements for the ``math`` functions. Example::

    from numba import njit, prange
    from fastact.scalar import silu

    @njit(parallel=True)
    def my_layer(x, out):
        for i in prange(x.size):
            out[i] = silu(x[i]) * 2
"""

from __future__ import annotations

from fastact._core.math import erf, erfc, exp, expm1, log, log1p, tanh
from fastact.kernels.activations import ACTIVATIONS, sigmoid_core

__all__ = ["exp", "expm1", "log", "log1p", "tanh", "erf", "erfc", "sigmoid_core"]

for _name, _op in ACTIVATIONS.items():
    for _kind, _suffix in (("forward", ""), ("grad", "_grad"), ("grad_output", "_grad_output")):
        _f = _op.scalars[_kind]
        if _f is not None:
            globals()[_name + _suffix] = _f
            if _name + _suffix not in __all__:
                __all__.append(_name + _suffix)
del _name, _op, _kind, _suffix, _f
