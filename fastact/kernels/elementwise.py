"""The element-wise spec and its loop templates: what an element-wise function computes.

An :class:`Elementwise` holds an activation's three jitted scalar functions

* ``forward(x, *p)``           the value,
* ``grad(g, x, *p)``           ``g * f'(x)``, the gradient from the input,
* ``grad_output(g, y, *p)``    the same gradient written with the output ``y = f(x)``
  (optional: only where the derivative is a function of the output),

its parameters (names and torch's defaults), their checks and its documentation. It computes
nothing itself: the host executor (:mod:`fastact.host`) turns each scalar into serial and
parallel loops from the templates below, the CUDA executor into grid-stride kernels, and the
front end (:mod:`fastact.activations`) into the public functions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from llvmlite import ir
from numba import prange, types
from numba.extending import intrinsic, overload
from numba.np.numpy_support import as_dtype

from fastact._core.arrays import scalar_param
from fastact._core.thresholds import PARALLEL_THRESHOLD, THRESHOLDS

__all__ = ["Elementwise", "REQUIRED", "like_dtype", "map_loop", "map_inplace_loop", "map2_loop"]

REQUIRED = object()  # marks a parameter without a default (torch's threshold(x, threshold, value))


class Elementwise:
    """The spec of an element-wise function with its gradient (see the module docstring).

    ``prepare(dtype, *params)``: checks (and may transform) the parameters cast to the
    compute dtype; ``check_output(*params)``: checks that the gradient can be computed from
    the output with these parameters. ``threshold``: the serial/parallel crossover in
    elements (the measured one from :mod:`fastact._core.thresholds` when not given).
    ``host`` and ``cuda``: per-executor caches of compiled kernels, filled lazily by them.
    """

    def __init__(
        self,
        name: str,
        forward: Callable,
        grad: Callable,
        grad_output: Callable | None = None,
        params: tuple[tuple[str, Any], ...] = (),
        inplace: bool = False,
        prepare: Callable | None = None,
        check_output: Callable | None = None,
        threshold: int | None = None,
        doc: str = "",
        torch_name: str | None = None,
    ) -> None:
        self.name = name
        self.scalars = {"forward": forward, "grad": grad, "grad_output": grad_output}
        self.params = params
        self.param_names = tuple(p for p, _ in params)
        self.inplace = inplace
        self.prepare = prepare
        self.check_output = check_output
        if threshold is None:
            threshold = THRESHOLDS.get(name, PARALLEL_THRESHOLD)
        self.threshold = threshold
        self.doc = doc
        self.torch_name = torch_name or name
        self.host: dict[str, Any] = {}  # kind -> (serial, parallel) compiled loops
        self.cuda: dict[Any, Any] = {}  # compiled device kernels
        self.param_cache: dict[tuple, tuple] = {}  # converted Python-number parameters
        self.param_memo: tuple = (None, (), ())  # (dtype, values, converted) of the last call

    def __repr__(self) -> str:
        return f"Elementwise({self.name!r}, params={self.param_names})"

    def kernel_params(self, values: tuple, dtype: np.dtype) -> tuple:
        """The user's parameter values as ``dtype`` scalars (or arrays, which broadcast),
        checked by the spec's ``prepare``; TypeError/ValueError naming the parameter."""
        if not values and self.prepare is None:
            return ()
        t = dtype.type
        cast = tuple(
            [
                t(v) if type(v) is float else scalar_param(v, n, dtype)
                for v, n in zip(values, self.param_names, strict=False)
            ]
        )
        if self.prepare is not None:
            cast = self.prepare(dtype, *cast)
        return cast


# ------------------------------------------------------------------------- loop templates
def like_dtype(arr, params):
    """``params`` (a tuple of numbers) cast to ``arr``'s dtype, inside jitted code.

    The loops take their scalar parameters as Python floats, whose dispatch is a fast C path
    in numba (NumPy scalars cost about a microsecond each), and cast them here once, outside
    the loop, with the same rounding as ``dtype.type(value)``."""
    raise NotImplementedError("like_dtype is only callable from jitted code")


@overload(like_dtype, jit_options={"error_model": "numpy"})
def _like_dtype_impl(arr, params):
    cast = as_dtype(arr.dtype).type
    src = (
        "def impl(arr, params):\n    return ("
        + "".join(f"cast(params[{i}]), " for i in range(len(params)))
        + ")\n"
    )
    ns: dict[str, Any] = {"cast": cast}
    exec(src, ns)
    return ns["impl"]


def map_loop(x, out, *p):
    """out[i] = f(x[i], *p) (``f`` is bound per function and kind)."""
    q = like_dtype(x, p)
    for i in prange(x.shape[0]):
        out[i] = f(x[i], *q)  # noqa: F821  (f is bound by specialize)


@intrinsic
def stored(typingctx, v):
    """``v`` as a value LLVM cannot prove equal to the array element it came from
    (``llvm.canonicalize``: the identity, except that a signalling NaN becomes quiet; one
    multiplication by 1 on x86).

    In ``x[i] = f(x[i])``, a branch of ``f`` that returns its input (relu for x > 0,
    leaky_relu, threshold, hardshrink, elu...) stores the value just loaded; LLVM drops that
    store, and the vectorizer turns the remaining conditional store into a masked store
    (``vmaskmovps`` with AVX2, ``vmovups mem {k}`` with AVX-512), which AMD CPUs execute
    slowly: relu in place took 4-6x the time of relu out of place on Zen 3 and Zen 5. Storing
    ``stored(f(x[i]))`` keeps every store, and plain vector stores."""
    if not isinstance(v, types.Float):
        return None

    def codegen(context, builder, sig, args):
        ty = args[0].type
        fn = builder.module.declare_intrinsic("llvm.canonicalize", [ty], ir.FunctionType(ty, [ty]))
        return builder.call(fn, [args[0]])

    return v(v), codegen


def map_inplace_loop(x, *p):
    """x[i] = f(x[i], *p) on one array: with separate in and out arrays that are the same
    memory, LLVM's runtime overlap check fails and the loop runs scalar (3-5x slower for
    exp-based activations); :func:`stored` keeps the stores unconditional (no masked
    stores)."""
    q = like_dtype(x, p)
    for i in prange(x.shape[0]):
        x[i] = stored(f(x[i], *q))  # noqa: F821


def map2_loop(a, b, out, *p):
    """out[i] = f(a[i], b[i], *p): the gradients (``a`` the incoming gradient)."""
    q = like_dtype(a, p)
    for i in prange(a.shape[0]):
        out[i] = f(a[i], b[i], *q)  # noqa: F821
