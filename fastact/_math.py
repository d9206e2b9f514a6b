"""Vectorizable scalar math cores (TEMPORARY STUB: math.* calls, replaced by polynomial cores).

Contract (stable, used by activations and losses):
    exp, expm1, log, log1p, tanh, erf, erfc  -- generic over float32/float64, callable from
    numba-jitted code only; a float32 argument gives a float32 result computed in float32.
    lit(x, v) -- the constant v in x's float type (lets one scalar definition serve both).
"""

import math

import numpy as np
from numba import types
from numba.extending import overload
from numba.np.numpy_support import as_dtype

__all__ = ["exp", "expm1", "log", "log1p", "tanh", "erf", "erfc", "lit"]


def lit(x, v):
    """The Python number ``v`` as a constant of ``x``'s floating type (jit code only)."""
    return type(x)(v)


@overload(lit, inline="always")
def _lit(x, v):
    if isinstance(x, types.Float):
        cast = as_dtype(x).type

        def impl(x, v):
            return cast(v)

        return impl


def _generic(name, fn):
    def stub(x):
        return fn(x)

    stub.__name__ = name

    @overload(stub)
    def _ol(x):
        if isinstance(x, types.Float):
            def impl(x):
                return fn(x)
            return impl

    return stub


exp = _generic("exp", math.exp)
expm1 = _generic("expm1", math.expm1)
log = _generic("log", math.log)
log1p = _generic("log1p", math.log1p)
tanh = _generic("tanh", math.tanh)
erf = _generic("erf", math.erf)
erfc = _generic("erfc", math.erfc)
