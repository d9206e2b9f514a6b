"""Compile fastact's CPU scalar definitions as CUDA device functions (one source, two targets).

Every scalar core of fastact (an activation's forward/grad/grad_output, a loss's
``f(a, b, c, w1, w2, prm)``) is a ``fastact._core.jit.jit`` dispatcher of a plain Python function.
:func:`device_function` compiles that same Python function (``dispatcher.py_func``) with
``numba.cuda.jit(device=True)``:

* globals that are other fastact CPU dispatchers (``sigmoid_core``, ``_softplus_parts`` ...)
  are replaced, recursively, by their own device versions, compiled with *our* CUDA options
  (numba-cuda would otherwise retarget them itself, copying the CPU options: its fast-math
  then means ``ex2.approx.ftz`` exponentials and flushed subnormals);
* the math cores of :mod:`fastact._core.math` (``exp``, ``log1p``, ``erfc``, ``lit`` ...) are
  ``numba.extending.overload`` / ``intrinsic`` templates, which numba-cuda resolves on the CUDA
  target too: their implementations call ``math.*``, which the CUDA target lowers to
  libdevice (``__nv_expf``, ``__nv_erfcf`` ...), in the argument's precision.
* CUDA options: IEEE arithmetic (``fastmath=False``: exact division and square root, precise
  libdevice functions, subnormals kept), so the device results match the CPU kernels to a few
  ULP; FMA contraction is on (NVVM's default), like the CPU's ``contract`` flag.

Under ``NUMBA_ENABLE_CUDASIM=1`` the same calls produce simulator device functions that run
the Python source directly; there the ``fastact._core.math`` stubs are swapped for NumPy versions
(:data:`_SIM_MATH`) that keep float32 in float32 and return NaN/inf instead of raising, like
the device does.
"""

from __future__ import annotations

import math
import types
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import numpy as np
from numba import cuda
from numba.core import types as nbtypes
from numba.core.dispatcher import Dispatcher

from fastact._core import math as _math

#: Options of every fastact device function and kernel (see the module docstring).
DEVICE_OPTIONS: dict[str, Any] = {"fastmath": False}


class NoneArguments:
    """A numba-cuda launch extension that passes ``None`` arguments.

    fastact's kernels take optional arrays as ``None`` (``w is None`` is resolved when the
    kernel compiles for that signature), but numba-cuda's launcher has no rule for a
    ``none`` argument and raised ``NotImplementedError: (none, None)`` at every such launch
    (every loss on an H200, numba-cuda 0.30.4; the CUDA simulator and PTX compilation never
    launch, so they did not see it). The CUDA target lays a ``none`` parameter out as one
    opaque pointer (``i8*``, a ``.u64`` kernel parameter) that the kernel never reads: a null
    pointer-sized integer fills it (tests/test_cuda.py checks that layout)."""

    def prepare_args(self, ty, val, stream=None, retr=None):
        if isinstance(ty, nbtypes.NoneType):
            return nbtypes.uintp, 0
        return ty, val


#: Options of every fastact kernel (launch extensions are not part of the simulator's API).
KERNEL_OPTIONS: dict[str, Any] = (
    DEVICE_OPTIONS
    if cuda.config.ENABLE_CUDASIM
    else {**DEVICE_OPTIONS, "extensions": [NoneArguments()]}
)

_DEVICE: dict[int, Any] = {}


def _is_cpu_dispatcher(v: Any) -> bool:
    return isinstance(v, Dispatcher) and type(v).__module__.startswith("numba.core")


def _ieee(fn: Callable) -> Callable:
    def sim(x):
        with np.errstate(all="ignore"):
            return fn(x)

    return sim


def _via_math(fn: Callable) -> Callable:
    def sim(x):
        return type(x)(fn(x)) if isinstance(x, np.floating) else fn(x)

    return sim


def _sim_fma(a, b, c):
    """a*b + c with one rounding (exact rational arithmetic; the simulator only)."""
    if not all(math.isfinite(v) for v in (a, b, c)):
        return type(a)(a * b + c)
    exact = Fraction(float(a)) * Fraction(float(b)) + Fraction(float(c))
    try:
        return type(a)(float(exact))
    except OverflowError:  # beyond float64: a device fma gives the infinity
        return type(a)(math.inf if exact > 0 else -math.inf)


def _sim_exp_mk(x):
    """(m, v, k) of ``_exp_mk``: exp(x) = m 2^k, v = m - 1, x clamped as there (the simulator
    only)."""
    t = type(x)
    lo, hi = (-170.0, 89.0) if t is np.float32 else (-1400.0, 709.0)
    v = min(max(float(x), lo), hi) if x == x else float(x)
    k = int(round(v / math.log(2.0))) if v == v else 0
    m = t(math.exp(v - k * math.log(2.0)) if v == v else v)
    return m, m - t(1.0), np.int32(k)


def _sim_ldexp(p, k):
    return type(p)(np.ldexp(p, int(k)))


#: Simulator replacements of the ``fastact._core.math`` cores (NumPy semantics, dtype kept).
_SIM_MATH = {
    "_fma": _sim_fma,
    "_exp_mk": _sim_exp_mk,
    "_ldexp": _sim_ldexp,
    "exp": _ieee(np.exp),
    "expm1": _ieee(np.expm1),
    "log": _ieee(np.log),
    "log1p": _ieee(np.log1p),
    "tanh": _ieee(np.tanh),
    "erf": _via_math(math.erf),
    "erfc": _via_math(math.erfc),
    "lit": _math.lit,
}
_SIM_MODULE = types.SimpleNamespace(**_SIM_MATH)
_MATH_STUBS = {id(getattr(_math, n)): n for n in _SIM_MATH if n != "lit"}


def rebind(
    py_func: Callable,
    name: str | None = None,
    *,
    rename: dict[str, str] | None = None,
    **extra: Any,
) -> Callable:
    """A copy of ``py_func`` whose CPU-dispatcher globals are their CUDA device versions
    (and whose globals are updated with ``extra``), named ``name``.

    ``rename`` maps global names *read by the bytecode* to other names (numba refuses to
    see a builtin such as ``range`` redefined, but a renamed reference is just a global):
    e.g. ``{"prange": "block_range", "range": "thread_range"}`` turns a CPU loop template
    over chunks into a kernel whose blocks stride over chunks and threads over elements.
    """
    code = py_func.__code__
    if rename:
        code = code.replace(co_names=tuple(rename.get(n, n) for n in code.co_names))
    glb = dict(py_func.__globals__)
    sim = bool(cuda.config.ENABLE_CUDASIM)
    for gname in code.co_names:
        v = glb.get(gname)
        if _is_cpu_dispatcher(v):
            glb[gname] = device_function(v)
        elif callable(getattr(v, "device_impl", None)):  # a CPU-only dispatch by dtype
            glb[gname] = device_function(v.device_impl)
        elif sim and v is _math:
            glb[gname] = _SIM_MODULE
        elif sim and id(v) in _MATH_STUBS:
            glb[gname] = _SIM_MATH[_MATH_STUBS[id(v)]]
    glb.update(extra)
    fn = types.FunctionType(
        code, glb, name or py_func.__name__, py_func.__defaults__, py_func.__closure__
    )
    fn.__qualname__ = name or py_func.__qualname__
    fn.__module__ = py_func.__module__
    fn.__doc__ = py_func.__doc__
    return fn


def device_function(fn: Callable):
    """The CUDA device function compiled from the Python source of ``fn`` (a fastact CPU
    dispatcher or a plain function), cached per function."""
    key = id(fn)
    dev = _DEVICE.get(key)
    if dev is None:
        py = fn.py_func if _is_cpu_dispatcher(fn) else fn
        dev = cuda.jit(device=True, **DEVICE_OPTIONS)(rebind(py))
        _DEVICE[key] = dev
        _DEVICE[id(py)] = dev
    return dev


def kernel_from_source(src: str, name: str, **glb: Any):
    """Compile the kernel ``name`` defined by ``src`` with globals ``glb`` (plus ``cuda``)."""
    ns: dict[str, Any] = {"cuda": cuda, **glb}
    exec(compile(src, f"<fastact.cuda:{name}>", "exec"), ns)
    return cuda.jit(**KERNEL_OPTIONS)(ns[name])


def kernel(template: Callable, name: str, *, rename: dict[str, str] | None = None, **glb: Any):
    """Compile a module-level kernel template with some globals rebound (like
    ``fastact._core.jit.specialize``, for the CUDA target); see :func:`rebind`."""
    return cuda.jit(**KERNEL_OPTIONS)(rebind(template, name, rename=rename, **glb))
