"""The factory: one scalar definition of an element-wise function -> every loop users call.

An :class:`Elementwise` holds three jitted scalar functions of an activation

* ``forward(x, *p)``           the value,
* ``grad(g, x, *p)``           ``g * f'(x)``, the gradient from the input,
* ``grad_output(g, y, *p)``    the same gradient written with the output ``y = f(x)``
  (optional: only where the derivative is a function of the output),

and turns each into a serial and a parallel 1-D loop (compiled lazily, cached on disk), plus a
NumPy ufunc for the rare calls whose parameters are arrays (ufunc broadcasting). The public
functions (``name``, ``name_``, ``name_backward``) are generated with real signatures by
:func:`make_public`.
"""

from __future__ import annotations

import functools
import keyword
import operator
from collections.abc import Callable
from typing import Any

import numba
import numpy as np
from numba import prange
from numba.extending import overload
from numba.np.numpy_support import as_dtype

from fastact._core.arrays import (
    as_float_array,
    check_inplace,
    check_out,
    flat_pair,
    is_dask,
    result_dtype,
    scalar_param,
)
from fastact._core.jit import ELEMENTWISE_FASTMATH, specialize
from fastact._core.threads import num_threads, use_parallel
from fastact._core.thresholds import THRESHOLDS
from fastact.cuda import is_device_array

__all__ = ["Elementwise", "REQUIRED", "make_public", "pick", "PARALLEL_THRESHOLD"]

#: Below this many elements a kernel runs on the calling thread (measured with
#: ``python -m fastact bench``: thread start-up costs more than it saves on smaller arrays).
PARALLEL_THRESHOLD = 1 << 15

_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)
FLOAT_DTYPES = (_F32, _F64)  # the dtypes the kernels compute in
REQUIRED = object()  # marks a parameter without a default (torch's threshold(x, threshold, value))


def like_dtype(arr, params):
    """``params`` (a tuple of numbers) cast to ``arr``'s dtype, inside jitted code.

    The CPU loops take their scalar parameters as Python floats, whose dispatch is a fast C
    path in numba (NumPy scalars cost about a microsecond each), and cast them here once,
    outside the loop, with the same rounding as ``dtype.type(value)``."""
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


def _map_loop(x, out, *p):
    q = like_dtype(x, p)
    for i in prange(x.shape[0]):
        out[i] = f(x[i], *q)  # noqa: F821  (f is bound by specialize)


def _map_inplace_loop(x, *p):
    # x[i] = f(x[i]) on one array: with separate in and out arrays that are the same memory,
    # LLVM's runtime overlap check fails and the loop runs scalar (3-5x slower for exp-based
    # activations)
    q = like_dtype(x, p)
    for i in prange(x.shape[0]):
        x[i] = f(x[i], *q)  # noqa: F821


def _map2_loop(a, b, out, *p):
    q = like_dtype(a, p)
    for i in prange(a.shape[0]):
        out[i] = f(a[i], b[i], *q)  # noqa: F821


def pick(kernels: tuple, n: int, threshold: int = PARALLEL_THRESHOLD):
    """The serial or the parallel kernel of a ``(serial, parallel)`` pair for ``n`` elements."""
    return kernels[1] if use_parallel(n, threshold) else kernels[0]


def pair(loop: Callable) -> tuple:
    """(serial, parallel) kernels of a module-level loop function, each cached on its own."""
    name = f"{loop.__module__.rsplit('.', 1)[-1]}_{loop.__name__}"
    return (
        specialize(loop, f"{name}_serial", parallel=False),
        specialize(loop, f"{name}_parallel", parallel=True),
    )


class Elementwise:
    """An element-wise function with its gradient, as kernels over NumPy arrays."""

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
        threshold: int = PARALLEL_THRESHOLD,
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
        if threshold == PARALLEL_THRESHOLD:  # the measured crossover, where there is one
            threshold = THRESHOLDS.get(name, threshold)
        self.threshold = threshold
        self.doc = doc
        self.torch_name = torch_name or name
        self._kernels: dict[str, tuple] = {}
        self._ufuncs: dict[str, Any] = {}
        self._param_cache: dict[tuple, tuple] = {}
        self._param_memo: tuple = (None, (), ())  # (dtype, values, kp) of the last call

    # ----------------------------------------------------------------- compiled pieces
    def kernels(self, kind: str) -> tuple:
        """(serial, parallel) compiled loops for ``kind`` in forward/inplace/grad/grad_output."""
        ks = self._kernels.get(kind)
        if ks is None:
            template = {"forward": _map_loop, "inplace": _map_inplace_loop}.get(kind, _map2_loop)
            f = self.scalars["forward" if kind == "inplace" else kind]
            ks = tuple(
                specialize(
                    template,
                    f"{self.name}_{kind}_{mode}",
                    parallel=par,
                    fastmath=ELEMENTWISE_FASTMATH,
                    f=f,
                )
                for mode, par in (("serial", False), ("parallel", True))
            )  # same as pair(), with the scalar function bound
            self._kernels[kind] = ks
        return ks

    def ufunc(self, kind: str):
        """A NumPy ufunc (numba DUFunc, compiled on demand) for broadcasting array parameters."""
        u = self._ufuncs.get(kind)
        if u is None:
            nin = (1 if kind == "forward" else 2) + len(self.params)
            args = ", ".join(f"a{i}" for i in range(nin))
            ns: dict[str, Any] = {"f": self.scalars[kind]}
            exec(f"def {self.name}_{kind}({args}):\n    return f({args})\n", ns)
            u = numba.vectorize(nopython=True)(ns[f"{self.name}_{kind}"])
            self._ufuncs[kind] = u
        return u

    # ----------------------------------------------------------------- parameters
    def kernel_params(self, values: tuple, dtype: np.dtype) -> tuple:
        """User parameters -> ``dtype`` scalars (or arrays), validated (ufunc and CUDA paths;
        the CPU loops take :meth:`scalar_params`)."""
        if not values and self.prepare is None:
            return ()
        return self._convert_params(values, dtype)

    def scalar_params(self, values: tuple, dtype: np.dtype) -> tuple | None:
        """:meth:`kernel_params` as Python floats for the CPU loops when they are all scalars
        (exactly representable in ``dtype``), else None (array parameters).

        Python-number parameters are converted once per (values, types, dtype) and cached
        (the conversion and checks cost more than a 1K-element kernel); zeros are not cached
        because 0.0 and -0.0 compare equal but may give differently signed results.
        """
        if not values and self.prepare is None:
            return ()
        # the last call's parameters when they are the very same objects (the defaults, a
        # caller's constants): ~50 ns instead of ~400 ns for the keyed cache below; identity
        # also tells 0.0 from -0.0
        memo = self._param_memo
        if memo[0] is dtype and values:
            mv = memo[1]
            if len(values) == len(mv) and (
                values[0] is mv[0] if len(mv) == 1 else all(map(operator.is_, values, mv))
            ):
                return memo[2]
        cache = self._param_cache
        try:
            key = (dtype, values, *map(type, values))
            kp = cache.get(key)
        except TypeError:  # an unhashable parameter (an array)
            key = kp = None
        if kp is None:
            kp = self._convert_params(values, dtype)
            if any(type(p) is np.ndarray for p in kp):
                return None
            kp = tuple([float(p) for p in kp])  # exact: the loops cast back to dtype
            if (
                key is not None
                and len(cache) < 256
                and all((type(v) is float or type(v) is int) and v != 0 for v in values)
            ):
                cache[key] = kp
        if values and all(type(v) is float or type(v) is int for v in values):
            self._param_memo = (dtype, values, kp)  # immutable objects, held alive here
        return kp

    def _convert_params(self, values: tuple, dtype: np.dtype) -> tuple:
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

    # ----------------------------------------------------------------- calls
    def forward(self, x: Any, values: tuple, out: Any = None, inplace: bool = False):
        """``f(x)`` into a new array, into ``out``, or into ``x`` itself (``inplace``)."""
        if type(x) is np.ndarray and (x.dtype is _F32 or x.dtype is _F64) and x.flags.c_contiguous:
            # fast path for the common call: C-contiguous float array, scalar parameters
            if inplace:
                dst = x if out is None and x.flags.writeable else None
            elif out is None:
                dst = np.empty_like(x)
            elif (
                type(out) is np.ndarray
                and out.dtype == x.dtype
                and out.shape == x.shape
                and out.flags.c_contiguous
                and out.flags.writeable
                and (out is x or not np.may_share_memory(out, x))
            ):
                dst = out
            else:
                dst = None
            if dst is not None:
                kp = self.scalar_params(values, x.dtype)
                if kp is not None:
                    n = x.size
                    if n:
                        kind = "inplace" if dst is x else "forward"
                        ks = self._kernels.get(kind) or self.kernels(kind)
                        k = ks[1] if n >= self.threshold and num_threads() > 1 else ks[0]
                        # a view costs 0.25 us by reshape(-1), 0.05 us by ravel (C-contiguous:
                        # always a view)
                        xf = x if x.ndim == 1 else x.ravel()
                        if kind == "inplace":
                            k(xf, *kp)
                        else:
                            k(xf, dst if dst.ndim == 1 else dst.ravel(), *kp)
                    return dst
        return self._forward(x, values, out, inplace)

    def _forward(self, x: Any, values: tuple, out: Any, inplace: bool):
        if is_device_array(x) or is_device_array(out):
            from fastact.cuda import elementwise_forward

            return elementwise_forward(self, x, values, out, inplace)
        if is_dask(x) and not inplace and out is None:
            return self._dask_forward(x, values)
        scalar_input = not isinstance(x, np.ndarray)
        if inplace:
            if out is not None:
                raise ValueError("out= cannot be combined with inplace=True")
            x = check_inplace(x, "input")
            rdt = x.dtype
        else:
            xf = as_float_array(x, "input")  # validates first: errors name the argument
            rdt = result_dtype(np.asarray(x).dtype if scalar_input else x.dtype, "input")
            x = xf
        kp = self.kernel_params(values, x.dtype)
        if inplace:
            out = x
        elif out is not None:
            out = check_out(out, _broadcast_shape(x, kp, "input", self.param_names), rdt, (x,))
        if any(isinstance(p, np.ndarray) for p in kp):
            return self._ufunc_call("forward", (x,), kp, out, rdt, inplace)
        kp = tuple([float(p) for p in kp])  # the loops' parameter convention
        if out is None:
            res = np.empty_like(x)
            self._run("forward", (x,), kp, res)
            res = res if rdt == res.dtype else res.astype(rdt)
            return res[()] if scalar_input else res
        if out.dtype != x.dtype:  # float16 output: compute in float32, then cast into out
            out[...] = self.forward(x, values)
            return out
        self._run("forward", (x,), kp, out)
        return out

    def backward(self, grad_output: Any, x: Any, output: Any, values: tuple, out: Any = None):
        """``grad_output * f'(input)``, from ``input`` or (where supported) from ``output``."""
        v = x if output is None else output
        if (
            out is None
            and type(v) is np.ndarray
            and type(grad_output) is np.ndarray
            and (x is None) != (output is None)
            and v.dtype in FLOAT_DTYPES
            and grad_output.dtype == v.dtype
            and grad_output.shape == v.shape
            and v.flags.c_contiguous
            and grad_output.flags.c_contiguous
            and (output is None or self.check_output is None)
        ):
            # fast path: matching C-contiguous float arrays, scalar parameters
            kind = "grad" if output is None else "grad_output"
            if self.scalars[kind] is not None:
                kp = self.scalar_params(values, v.dtype)
                if kp is not None:
                    res = np.empty_like(v)
                    n = v.size
                    if n:
                        ks = self._kernels.get(kind) or self.kernels(kind)
                        k = ks[1] if n >= self.threshold and num_threads() > 1 else ks[0]
                        if v.ndim == 1:
                            k(grad_output, v, res, *kp)
                        else:
                            k(grad_output.ravel(), v.ravel(), res.ravel(), *kp)
                    return res
        if any(is_device_array(a) for a in (grad_output, x, output, out)):
            from fastact.cuda import elementwise_backward

            return elementwise_backward(self, grad_output, x, output, values, out)
        if (x is None) == (output is None):
            raise TypeError(f"{self.name}_backward needs exactly one of input= and output=")
        kind = "grad" if output is None else "grad_output"
        if kind == "grad_output" and self.scalars["grad_output"] is None:
            raise TypeError(f"{self.name}_backward cannot be computed from output=; pass input=")
        arg_name = "input" if output is None else "output"
        g = as_float_array(grad_output, "grad_output")
        v = as_float_array(x if output is None else output, arg_name)
        if g.shape != v.shape:
            raise ValueError(f"grad_output has shape {g.shape} but {arg_name} has shape {v.shape}")
        dtype = np.promote_types(g.dtype, v.dtype)
        g, v = g.astype(dtype, copy=False), v.astype(dtype, copy=False)
        kp = self.kernel_params(values, dtype)
        if kind == "grad_output" and self.check_output is not None:
            self.check_output(*values)
        if out is not None:
            out = check_out(out, _broadcast_shape(v, kp, arg_name, self.param_names), dtype, (g, v))
        if any(isinstance(p, np.ndarray) for p in kp):
            return self._ufunc_call(kind, (g, v), kp, out, dtype, False)
        if out is None:
            out = np.empty_like(v)
        self._run(kind, (g, v), tuple([float(p) for p in kp]), out)
        return out

    # ----------------------------------------------------------------- execution
    def _run(self, kind: str, arrays: tuple, kp: tuple, out: np.ndarray) -> None:
        n = out.size
        if n == 0:
            return
        flats = [flat_pair(a, out) for a in arrays]
        if all(f is not None for f in flats):
            a0, o = flats[0][0], flats[0][1]
            if kind == "forward" and a0.ctypes.data == o.ctypes.data:  # in place
                pick(self.kernels("inplace"), n, self.threshold)(o, *kp)
                return
            kernel = pick(self.kernels(kind), n, self.threshold)
            kernel(*(f[0] for f in flats), o, *kp)
            return
        kernel = pick(self.kernels(kind), n, self.threshold)
        # Strided layouts: gather into contiguous buffers, run, scatter back into out.
        cont = [np.ascontiguousarray(a) for a in arrays]
        tmp = np.empty(out.shape, out.dtype)
        kernel(*(c.reshape(-1) for c in cont), tmp.reshape(-1), *kp)
        out[...] = tmp

    def _ufunc_call(self, kind, arrays, kp, out, rdt, inplace):
        shape = _broadcast_shape(arrays[-1], kp, "input", self.param_names)
        if inplace and shape != arrays[0].shape:
            raise ValueError(
                f"parameters {', '.join(self.param_names)} broadcast to shape {shape}"
                f", not to the shape {arrays[0].shape} of the input modified "
                "in place"
            )
        u = self.ufunc(kind)
        res = u(*arrays, *kp, out=out) if out is not None else u(*arrays, *kp)
        if out is None and res.dtype != rdt:
            res = res.astype(rdt)
        return res

    def _dask_forward(self, x, values):
        for v, n in zip(values, self.param_names, strict=False):
            if isinstance(v, np.ndarray) and v.ndim > 0:
                raise TypeError(f"{n} must be a scalar when input is a dask array")
        dtype = result_dtype(np.dtype(x.dtype), "input")
        # a partial of a module-level function: dask tokenizes and pickles it by reference
        return x.map_blocks(functools.partial(_dask_block, self.name, values), dtype=dtype)


def _dask_block(name: str, values: tuple, block: np.ndarray) -> np.ndarray:
    from fastact.activations import ACTIVATIONS

    return ACTIVATIONS[name].forward(block, values)


def _broadcast_shape(x: np.ndarray, kp: tuple, name: str, pnames: tuple = ()) -> tuple:
    shapes = [p.shape for p in kp if isinstance(p, np.ndarray)]
    if not shapes:
        return x.shape
    try:
        return np.broadcast_shapes(x.shape, *shapes)
    except ValueError:
        raise ValueError(
            f"parameters {', '.join(pnames)} (shapes {shapes}) do not broadcast "
            f"against {name} of shape {x.shape}"
        ) from None


# ------------------------------------------------------------------------- public functions
def _signature(params, trailing: str) -> tuple[str, str]:
    parts, names = [], []
    for i, (pname, default) in enumerate(params):
        assert pname.isidentifier() and not keyword.iskeyword(pname)
        parts.append(pname if default is REQUIRED else f"{pname}=_d{i}")
        names.append(pname)
    tup = "(" + "".join(f"{n}, " for n in names) + ")"
    sig = ", ".join(parts + ([trailing] if trailing else []))
    return sig, tup


def make_public(op: Elementwise, namespace: dict) -> list[str]:
    """Create ``name``, ``name_`` (if in-place exists) and ``name_backward`` in ``namespace``."""
    ns: dict[str, Any] = {"_op": op}
    ns.update({f"_d{i}": d for i, (_, d) in enumerate(op.params)})
    name, doc = op.name, op.doc.strip()
    psig, tup = _signature(op.params, "")
    psig = (", " + psig) if psig else ""
    created = [name]
    if op.inplace:
        src = (
            f"def {name}(input{psig}, inplace=False, *, out=None):\n"
            f"    return _op.forward(input, {tup}, out, inplace)\n"
            f"def {name}_(input{psig}):\n"
            f"    return _op.forward(input, {tup}, None, True)\n"
        )
        created.append(name + "_")
    else:
        src = f"def {name}(input{psig}, *, out=None):\n    return _op.forward(input, {tup}, out)\n"
    has_out = op.scalars["grad_output"] is not None
    all_defaults = all(d is not REQUIRED for _, d in op.params)
    inp = "input=None" if has_out and all_defaults else "input"
    kw = "*, output=None, out=None" if has_out else "*, out=None"
    outarg = "output" if has_out else "None"
    src += (
        f"def {name}_backward(grad_output, {inp}{psig}, {kw}):\n"
        f"    return _op.backward(grad_output, input, {outarg}, {tup}, out)\n"
    )
    created.append(name + "_backward")
    exec(src, ns)
    pdoc = ", ".join(op.param_names)
    ns[name].__doc__ = doc + "\n\nReturns a new array, or ``out`` when given."
    if op.inplace:
        ns[name].__doc__ += " ``inplace=True`` overwrites ``input`` and returns it."
        ns[name + "_"].__doc__ = f"In-place {name}: overwrites ``input`` and returns it."
    ns[name + "_backward"].__doc__ = (
        f"Gradient of {name} w.r.t. its input: ``grad_output * {name}'(input)``"
        + (f" (parameters {pdoc})" if pdoc else "")
        + (
            ". Pass ``output=`` instead of ``input`` to differentiate from the forward's result"
            " (e.g. after the in-place forward)."
            if has_out
            else "."
        )
    )
    for fn in created:
        ns[fn].__module__ = namespace.get("__name__", "fastact")
        ns[fn].__qualname__ = fn
        namespace[fn] = ns[fn]
    return created
