"""Element-wise functions on host arrays: compiled loops, NumPy ufuncs, dask arrays.

:func:`kernels` compiles an :class:`~fastact.kernels.elementwise.Elementwise` spec's scalar
function of one kind (``forward``, ``inplace``, ``grad``, ``grad_output``) into a serial and a
parallel 1-D loop (lazily, cached on disk and in ``op.host``); :func:`elementwise` is the
general host path of a call (the front end's fast path calls the loops directly): NumPy's
casting and scalar rules, any layout, ``out=``, array-valued parameters (through a numba
ufunc, which broadcasts), float16 results and dask arrays (one ``map_blocks``).
"""

from __future__ import annotations

import functools
from typing import Any

import numba
import numpy as np

from fastact._core.arrays import (
    any_tensor,
    as_float_array,
    as_tensor,
    check_inplace,
    check_out,
    flat_pair,
    is_dask,
    is_tensor,
    result_dtype,
    tensor_input,
)
from fastact._core.jit import ELEMENTWISE_FASTMATH, specialize
from fastact.host.edge import output_view
from fastact.host.launch import pick
from fastact.kernels.activations import ACTIVATIONS
from fastact.kernels.elementwise import Elementwise, map2_loop, map_inplace_loop, map_loop

__all__ = ["elementwise", "kernels", "ufunc"]

_TEMPLATES = {"forward": map_loop, "inplace": map_inplace_loop}


def kernels(op: Elementwise, kind: str) -> tuple:
    """(serial, parallel) compiled loops of ``op`` for ``kind``."""
    ks = op.host.get(kind)
    if ks is None:
        template = _TEMPLATES.get(kind, map2_loop)
        f = op.scalars["forward" if kind == "inplace" else kind]
        ks = tuple(
            specialize(
                template,
                f"{op.name}_{kind}_{mode}",
                parallel=par,
                fastmath=ELEMENTWISE_FASTMATH,
                f=f,
            )
            for mode, par in (("serial", False), ("parallel", True))
        )
        op.host[kind] = ks
    return ks


def ufunc(op: Elementwise, kind: str):
    """A NumPy ufunc (numba DUFunc, compiled on demand) for broadcasting array parameters."""
    key = f"ufunc_{kind}"
    u = op.host.get(key)
    if u is None:
        nin = (1 if kind == "forward" else 2) + len(op.params)
        args = ", ".join(f"a{i}" for i in range(nin))
        ns: dict[str, Any] = {"f": op.scalars[kind]}
        exec(f"def {op.name}_{kind}({args}):\n    return f({args})\n", ns)
        u = numba.vectorize(nopython=True)(ns[f"{op.name}_{kind}"])
        op.host[key] = u
    return u


def elementwise(
    op: Elementwise,
    kind: str,
    inputs: tuple,
    values: tuple,
    out: Any = None,
    inplace: bool = False,
    names: tuple = ("input",),
):
    """``op``'s ``kind`` (``forward``, ``grad`` or ``grad_output``) over host ``inputs``
    (``(x,)`` or ``(grad_output, v)``) into a new array, ``out``, or ``x`` itself
    (``inplace``). The front end has checked the arguments that do not depend on arrays.
    CPU tensors are viewed as arrays; with a tensor among the inputs the result is one."""
    if any_tensor(out, *inputs):
        return _on_tensors(op, kind, inputs, values, out, inplace, names)
    if kind == "forward":
        return _forward(op, inputs[0], values, out, inplace)
    g = as_float_array(inputs[0], "grad_output")
    v = as_float_array(inputs[1], names[1])
    if g.shape != v.shape:
        raise ValueError(f"grad_output has shape {g.shape} but {names[1]} has shape {v.shape}")
    dtype = np.promote_types(g.dtype, v.dtype)
    g, v = g.astype(dtype, copy=False), v.astype(dtype, copy=False)
    kp = op.kernel_params(values, dtype)
    if kind == "grad_output" and op.check_output is not None:
        op.check_output(*values)
    if out is not None:
        out = check_out(out, _broadcast_shape(v, kp, names[1], op.param_names), dtype, (g, v))
    if any(isinstance(p, np.ndarray) for p in kp):
        return _ufunc_call(op, kind, (g, v), kp, out, dtype, False)
    if out is None:
        out = np.empty_like(v)
    run(op, kind, (g, v), tuple([float(p) for p in kp]), out)
    return out


def _on_tensors(op, kind, inputs, values, out, inplace, names):
    """:func:`elementwise` with CPU tensors among the arrays: run on their NumPy views."""
    views = tuple(
        tensor_input(a, n) if is_tensor(a) else a for a, n in zip(inputs, names, strict=False)
    )
    if inplace:  # the front end already refused out= with inplace
        elementwise(op, kind, (check_inplace(output_view(inputs[0], names[0]), names[0]),),
                    values, None, True, names)  # fmt: skip
        return inputs[0]
    if out is not None:
        elementwise(op, kind, views, values, output_view(out), False, names)
        return out
    res = elementwise(op, kind, views, values, None, False, names)
    return as_tensor(res) if any(is_tensor(a) for a in inputs) else res


def _forward(op: Elementwise, x: Any, values: tuple, out: Any, inplace: bool):
    if is_dask(x) and not inplace and out is None:
        return _dask_forward(op, x, values)
    scalar_input = not isinstance(x, np.ndarray)
    if inplace:
        x = check_inplace(x, "input")
        rdt = x.dtype
    else:
        xf = as_float_array(x, "input")  # validates first: errors name the argument
        rdt = result_dtype(np.asarray(x).dtype if scalar_input else x.dtype, "input")
        x = xf
    kp = op.kernel_params(values, x.dtype)
    if inplace:
        out = x
    elif out is not None:
        out = check_out(out, _broadcast_shape(x, kp, "input", op.param_names), rdt, (x,))
    if any(isinstance(p, np.ndarray) for p in kp):
        return _ufunc_call(op, "forward", (x,), kp, out, rdt, inplace)
    kp = tuple([float(p) for p in kp])  # the loops' parameter convention
    if out is None:
        res = np.empty_like(x)
        run(op, "forward", (x,), kp, res)
        res = res if rdt == res.dtype else res.astype(rdt)
        return res[()] if scalar_input else res
    if out.dtype != x.dtype:  # float16 output: compute in float32, then cast into out
        out[...] = _forward(op, x, values, None, False)
        return out
    run(op, "forward", (x,), kp, out)
    return out


def run(op: Elementwise, kind: str, arrays: tuple, kp: tuple, out: np.ndarray) -> None:
    """The compiled loop of ``kind`` over ``arrays`` into ``out`` (any layout)."""
    n = out.size
    if n == 0:
        return
    flats = [flat_pair(a, out) for a in arrays]
    if all(f is not None for f in flats):
        a0, o = flats[0][0], flats[0][1]
        if kind == "forward" and a0.ctypes.data == o.ctypes.data:  # in place
            pick(kernels(op, "inplace"), n, op.threshold)(o, *kp)
            return
        kernel = pick(kernels(op, kind), n, op.threshold)
        kernel(*(f[0] for f in flats), o, *kp)
        return
    kernel = pick(kernels(op, kind), n, op.threshold)
    # Strided layouts: gather into contiguous buffers, run, scatter back into out.
    cont = [np.ascontiguousarray(a) for a in arrays]
    tmp = np.empty(out.shape, out.dtype)
    kernel(*(c.reshape(-1) for c in cont), tmp.reshape(-1), *kp)
    out[...] = tmp


def _ufunc_call(op, kind, arrays, kp, out, rdt, inplace):
    shape = _broadcast_shape(arrays[-1], kp, "input", op.param_names)
    if inplace and shape != arrays[0].shape:
        raise ValueError(
            f"parameters {', '.join(op.param_names)} broadcast to shape {shape}"
            f", not to the shape {arrays[0].shape} of the input modified "
            "in place"
        )
    u = ufunc(op, kind)
    res = u(*arrays, *kp, out=out) if out is not None else u(*arrays, *kp)
    if out is None and res.dtype != rdt:
        res = res.astype(rdt)
    return res


def _dask_forward(op: Elementwise, x, values):
    for v, n in zip(values, op.param_names, strict=False):
        if isinstance(v, np.ndarray) and v.ndim > 0:
            raise TypeError(f"{n} must be a scalar when input is a dask array")
    dtype = result_dtype(np.dtype(x.dtype), "input")
    # a partial of a module-level function: dask tokenizes and pickles it by reference
    return x.map_blocks(functools.partial(_dask_block, op.name, values), dtype=dtype)


def _dask_block(name: str, values: tuple, block: np.ndarray) -> np.ndarray:
    return _forward(ACTIVATIONS[name], block, values, None, False)


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
