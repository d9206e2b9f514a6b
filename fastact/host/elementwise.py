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
    as_array,
    as_float_array,
    check_inplace,
    check_out,
    compute_dtype,
    flat_pair,
    is_dask,
    is_tensor,
    result_dtype,
    tensor_input,
    written,
)
from fastact._core.jit import ELEMENTWISE_FASTMATH, specialize
from fastact._core.torch_pool import tensor_calls
from fastact.host.edge import output_view, tensor_result
from fastact.host.launch import launch
from fastact.kernels.activations import ACTIVATIONS
from fastact.kernels.elementwise import (
    ADDRESS_LOOPS,
    MAP_LOOPS,
    Elementwise,
    f32_at,
    f64_at,
    map2_loop,
    map2_split_loop,
    map_inplace_loop,
    map_inplace_split_loop,
    map_loop,
    map_split_loop,
)

__all__ = ["address_kernels", "elementwise", "kernels", "map_call", "ufunc"]

_TEMPLATES = {"forward": map_loop, "inplace": map_inplace_loop}


def kernels(op: Elementwise, kind: str) -> tuple:
    """(serial, parallel) compiled loops of ``op`` for ``kind``."""
    ks = op.host.get(kind)
    if ks is None:
        if op.arity > 1 and kind == "forward":
            template = MAP_LOOPS[op.arity]
        else:
            template = _TEMPLATES.get(kind, map2_loop)
        f = op.scalars["forward" if kind == "inplace" else kind]
        extra = {}
        if kind in op.split and template is map2_loop:
            template = map2_split_loop
            extra = dict(zip(("near", "wide"), op.split[kind], strict=True))
        split_fw = {map_loop: map_split_loop, map_inplace_loop: map_inplace_split_loop}
        if "forward" in op.split and template in split_fw:
            template = split_fw[template]
            near, wide, *only = op.split["forward"]  # (near, wide[, "float32"|"float64"])
            extra = dict(
                near=near,
                wide=wide,
                split_f32=only in ([], ["float32"]),
                split_f64=only in ([], ["float64"]),
            )
        ks = tuple(
            specialize(
                template,
                f"{op.name}_{kind}_{mode}",
                parallel=par,
                fastmath=ELEMENTWISE_FASTMATH,
                cache=op.cache,
                f=f,
                stream=kind in op.stream,
                **extra,
            )
            for mode, par in (("serial", False), ("parallel", True))
        )
        op.host[kind] = ks
    return ks


_AT = {"float32": f32_at, "float64": f64_at}


def address_kernels(op: Elementwise, kind: str, dtype: str) -> tuple:
    """(serial, parallel) loops of ``op``'s ``kind`` over raw addresses of C-contiguous
    ``dtype`` (``'float32'`` or ``'float64'``) data: ``forward(x_addr, out_addr, n, *p)``,
    ``inplace(x_addr, n, *p)``, ``grad``/``grad_output(g_addr, v_addr, out_addr, n, *p)``,
    ``p`` the parameters as Python floats (:func:`fastact.activations.scalar_params`).
    For callers that hold torch tensors (``fastact.torch``): no NumPy views to build. The
    caller guarantees that each address holds ``n`` elements of ``dtype``. The parallel
    ones call the parallel array loop from jitted code, which ran 1.2-1.35x slower than the
    same loop called from Python (gelu, silu forward at 1M float32, 2 threads):
    ``fastact.torch`` uses the serial ones only, and NumPy views past the crossover."""
    key = f"address_{kind}_{dtype}"
    ks = op.host.get(key)
    if ks is None:
        if op.arity != 1:
            raise ValueError(f"{op.name}: address loops take functions of one input")
        ks = tuple(
            specialize(
                ADDRESS_LOOPS[kind],
                f"{op.name}_{kind}_address_{dtype}_{mode}",
                cache=op.cache,
                loop=loop,
                at=_AT[dtype],
            )
            for mode, loop in zip(("serial", "parallel"), kernels(op, kind), strict=True)
        )
        op.host[key] = ks
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
    CPU tensors are viewed as arrays; with a tensor among the inputs or the parameter
    ``values`` the result is one (:func:`~fastact.host.edge.tensor_result`)."""
    if any_tensor(out, *inputs, *values):
        return _on_tensors(op, kind, inputs, values, out, inplace, names)
    if kind == "forward":
        return _forward(op, inputs[0], values, out, inplace)
    g = as_float_array(inputs[0], "grad_output")
    v = as_float_array(inputs[1], names[1])
    if g.shape != v.shape:
        raise ValueError(f"grad_output has shape {g.shape} but {names[1]} has shape {v.shape}")
    dtype = np.promote_types(g.dtype, v.dtype)
    rdt = dtype
    if type(inputs[0]) in _PY_NUMBERS or type(inputs[1]) in _PY_NUMBERS:
        # a Python number beside an array takes the array's dtype (NumPy's weak scalars:
        # np.multiply(1.0, float32 array) is float32)
        rdt = result_dtype(np.result_type(inputs[0], inputs[1]), "input")
        dtype = compute_dtype(rdt)
    elif g is not inputs[0] or v is not inputs[1]:  # cast: NumPy's result dtype (float16 ...)
        rdt = result_dtype(np.promote_types(_dtype_of(inputs[0]), _dtype_of(inputs[1])), "input")
    g, v = g.astype(dtype, copy=False), v.astype(dtype, copy=False)
    kp = op.kernel_params(values, dtype)
    if kind == "grad_output" and op.check_output is not None:
        op.check_output(*values)
    o = None  # the plain ndarray written for the caller's out (returned as itself)
    if out is not None:
        o = check_out(out, _broadcast_shape(v, kp, names[1], op.param_names), rdt, (g, v))
    if any(isinstance(p, np.ndarray) for p in kp):
        res = _ufunc_call(op, kind, (g, v), kp, o, rdt, False)
        return res if out is None else out
    kp = tuple([float(p) for p in kp])
    if o is not None and o.dtype == dtype:
        run(op, kind, (g, v), kp, o)
        return out
    res = np.empty_like(v)
    run(op, kind, (g, v), kp, res)
    if o is not None:  # float16 output: computed in float32, cast into out
        o[...] = res
        return out
    res = res if rdt == dtype else res.astype(rdt)
    # the forward's rule: NumPy scalars (and Python numbers) give a NumPy scalar, an array
    # among the arguments (0-d too) an array
    scalars = not isinstance(inputs[0], np.ndarray) and not isinstance(inputs[1], np.ndarray)
    return res[()] if scalars else res


_PY_NUMBERS = (bool, int, float)


def _dtype_of(a: Any) -> np.dtype:
    return a.dtype if isinstance(a, np.ndarray) else np.asarray(a).dtype


def _on_tensors(op, kind, inputs, values, out, inplace, names):
    """:func:`elementwise` with CPU tensors among the arrays: run on their NumPy views (on
    torch's thread pool past the crossover: :mod:`fastact._core.torch_pool`)."""
    with tensor_calls():
        return _on_tensor_views(op, kind, inputs, values, out, inplace, names)


def _on_tensor_views(op, kind, inputs, values, out, inplace, names):
    views = tuple(
        tensor_input(a, n) if is_tensor(a) else a for a, n in zip(inputs, names, strict=False)
    )
    # a tensor parameter as its view too (checked and read as scalar_param reads it)
    vals = tuple(
        tensor_input(v, n) if is_tensor(v) else v
        for v, n in zip(values, op.param_names, strict=False)
    )
    if inplace:  # the front end already refused out= with inplace
        elementwise(op, kind, (check_inplace(output_view(inputs[0], names[0]), names[0]),),
                    vals, None, True, names)  # fmt: skip
        return inputs[0]
    if out is not None:
        elementwise(op, kind, views, vals, output_view(out), False, names)
        return out
    res = elementwise(op, kind, views, vals, None, False, names)
    return tensor_result(res, (*inputs, *values))


def _forward(op: Elementwise, x: Any, values: tuple, out: Any, inplace: bool):
    if is_dask(x) and not inplace and out is None:
        return _dask_forward(op, x, values)
    scalar_input = not isinstance(x, np.ndarray)
    if inplace:
        out = x  # the caller's array, returned as itself (o: the plain ndarray written)
        x = check_inplace(x, "input")
        rdt = x.dtype
    else:
        xf = as_float_array(x, "input")  # validates first: errors name the argument
        rdt = result_dtype(np.asarray(x).dtype if scalar_input else x.dtype, "input")
        x = xf
    kp = op.kernel_params(values, x.dtype)
    o = None
    if inplace:
        o = x
    elif out is not None:
        o = check_out(out, _broadcast_shape(x, kp, "input", op.param_names), rdt, (x,))
    if any(isinstance(p, np.ndarray) for p in kp):
        res = _ufunc_call(op, "forward", (x,), kp, o, rdt, inplace)
        return res if out is None else out
    kp = tuple([float(p) for p in kp])  # the loops' parameter convention
    if o is None:
        res = np.empty_like(x)
        run(op, "forward", (x,), kp, res)
        res = res if rdt == res.dtype else res.astype(rdt)
        return res[()] if scalar_input else res
    if o.dtype != x.dtype:  # float16 output: compute in float32, then cast into out
        o[...] = _forward(op, x, values, None, False)
        return out
    run(op, "forward", (x,), kp, o)
    return out


def run(op: Elementwise, kind: str, arrays: tuple, kp: tuple, out: np.ndarray) -> None:
    """The compiled loop of ``kind`` over ``arrays`` into ``out`` (any layout)."""
    n = out.size
    if n == 0:
        return
    flats = [flat_pair(a, out) for a in arrays]
    if all(f is not None for f in flats):
        a0, o = flats[0][0], flats[0][1]
        if kind == "forward" and len(arrays) == 1 and a0.ctypes.data == o.ctypes.data:
            launch(kernels(op, "inplace"), n, (o, *kp), (0,), op.threshold)
            return
        args = (*(f[0] for f in flats), o)
    else:
        # Strided layouts: gather into contiguous buffers, run, scatter back into out.
        cont = [np.ascontiguousarray(a) for a in arrays]
        tmp = np.empty(out.shape, out.dtype)
        args = (*(c.reshape(-1) for c in cont), tmp.reshape(-1))
    launch(kernels(op, kind), n, (*args, *kp), range(len(args)), op.threshold)
    if not all(f is not None for f in flats):
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
    # no floating-point warnings: the loops evaluate both sides of a select (exp of a large
    # x on the side not taken raised "overflow"/"divide by zero"), as the array loops do
    # without NumPy watching their status flags
    with np.errstate(all="ignore"):
        if out is not None and not out.flags.c_contiguous:
            # numba's vectorized functions write a strided out= as if it were C-contiguous
            # (wrong elements, and past a view's end): a contiguous temporary, copied in
            tmp = np.empty(out.shape, out.dtype)
            u(*arrays, *kp, out=tmp)
            out[...] = tmp
            return out
        res = u(*arrays, *kp, out=out) if out is not None else u(*arrays, *kp)
    if out is None and res.dtype != rdt:
        res = res.astype(rdt)
    return res


def _dask_forward(op: Elementwise, x, values):
    for v, n in zip(values, op.param_names, strict=False):
        if np.ndim(v) > 0:  # an array, tensor or dask array would apply per block
            raise TypeError(f"{n} must be a scalar when input is a dask array")
    dtype = result_dtype(np.dtype(x.dtype), "input")
    op.kernel_params(values, compute_dtype(dtype))  # bad parameters raise here, not in compute
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


# ------------------------------------------------------------------- a user's fused function
def _map_on_tensor_views(fn: Any, args: tuple, out: Any, inplace: bool, names: tuple):
    """:func:`map_call` with CPU tensors among the arguments, on their NumPy views."""
    views = tuple(
        tensor_input(a, n) if is_tensor(a) else a for a, n in zip(args, names, strict=True)
    )
    if inplace:
        first = output_view(args[0], names[0])  # the tensor's own memory (a TypeError else)
        map_call(fn, (first, *views[1:]), None, True, names, partial=args[0])
        return args[0]
    if out is not None:
        map_call(fn, views, output_view(out), False, names, partial=out)
        return out
    return tensor_result(map_call(fn, views, None, False, names), args)


def map_call(fn: Any, args: tuple, out: Any, inplace: bool, names: tuple, partial: Any = None):
    """A ``fastact.elementwise`` function over host arguments, with a NumPy ufunc's rules.

    ``fn.spec(pattern, dtype)`` gives the :class:`Elementwise` spec of the function for a
    pattern of array (``"a"``) and scalar (``"s"``) arguments and a compute dtype. Python
    numbers are scalars of the arrays' dtype (NumPy's weak scalars); 0-d arrays and NumPy
    scalars take part in the dtype and are passed as scalars; the other arrays broadcast.
    Everything is checked before anything is written. CPU tensors run on their NumPy views
    (as the activations': tensor results, tensor ``out=`` and in place). ``partial``: the
    tensor whose view ``out`` (or the in-place argument) is: its version counter advances
    if the user's function raises part-way through the loop that writes it (the front end
    advances it after a call that returns; a call refused before writing leaves it)."""
    if any_tensor(out, *args):
        with tensor_calls():
            return _map_on_tensor_views(fn, args, out, inplace, names)
    if not inplace and out is None and any(is_dask(a) for a in args):
        return _dask_map(fn, args, names)
    pattern, arrays, values, dtypes, weak = [], [], [], [], []
    for a, n in zip(args, names, strict=True):
        t = type(a)
        if t is float or t is int:
            pattern.append("s")
            values.append(a)
            weak.append(a)
            continue
        if isinstance(a, (bool, np.bool_)):
            raise TypeError(f"{n} must be a real number or array, got bool")
        arr = as_array(a, n)
        result_dtype(arr.dtype, n)  # TypeError naming the argument for non-real dtypes
        dtypes.append(arr.dtype)
        if arr.ndim == 0 and not (inplace and not arrays):
            pattern.append("s")
            values.append(arr)
        else:
            pattern.append("a")
            arrays.append(arr)
    if inplace:
        x = check_inplace(args[0], names[0])
        rdt = cd = x.dtype
    else:
        rdt = result_dtype(np.result_type(*dtypes, *weak), names[0])
        cd = compute_dtype(rdt)
    # numbers only: a NumPy scalar back (0-d arrays give a 0-d array, as the activations)
    scalar_result = not any(isinstance(a, np.ndarray) for a in args)
    if not arrays:  # a 0-d computation
        pattern[0] = "a"
        arrays.append(np.asarray(values.pop(0)))
    try:
        shape = np.broadcast_shapes(*(a.shape for a in arrays))
    except ValueError:
        shapes = ", ".join(f"{n} {np.shape(a)}" for a, n in zip(args, names, strict=True))
        raise ValueError(f"the arguments do not broadcast together: {shapes}") from None
    if inplace and shape != args[0].shape:
        raise ValueError(
            f"the arguments broadcast to shape {shape}, not to the shape {args[0].shape} of "
            f"{names[0]} modified in place"
        )
    spec = fn.spec("".join(pattern), cd)
    kp = tuple([float(p) for p in spec.kernel_params(tuple(values), cd)])
    arrays = [a.astype(cd, copy=False) for a in arrays]
    o = None  # the plain ndarray written for the caller's out (returned as itself)
    if inplace:
        out = args[0]
        # the other arguments may be the array itself, not a part of it (the loop would
        # read elements it already wrote)
        o = arrays[0] = check_out(x, x.shape, x.dtype, tuple(arrays[1:]), names[0])
    elif out is not None:
        o = check_out(out, shape, rdt, tuple(arrays))
    arrays = [a if a.shape == shape else np.broadcast_to(a, shape) for a in arrays]
    if o is None or o.dtype != cd:
        res = np.empty(shape, cd)
        run(spec, "forward", tuple(arrays), kp, res)
        if o is not None:
            o[...] = res
            return out
        res = res if rdt == cd else res.astype(rdt)
        return res[()] if scalar_result else res
    try:
        run(spec, "forward", tuple(arrays), kp, o)
    except BaseException:
        written(partial)  # the loop stopped at the element that raised: partly written
        raise
    return out


def _dask_map(fn: Any, args: tuple, names: tuple):
    import dask.array as da

    dtypes = []
    for a, n in zip(args, names, strict=True):
        if type(a) is float or type(a) is int:
            continue
        if isinstance(a, (bool, np.bool_)):  # as map_call, at the call (not in compute)
            raise TypeError(f"{n} must be a real number or array, got bool")
        dt = np.dtype(a.dtype) if is_dask(a) else as_array(a, n).dtype
        result_dtype(dt, n)
        dtypes.append(dt)
    weak = [a for a in args if type(a) is float or type(a) is int]
    rdt = result_dtype(np.result_type(*dtypes, *weak), names[0])
    # one task per block, each a call of the compiled function on NumPy blocks
    return da.core.elemwise(functools.partial(_dask_map_block, fn, names), *args, dtype=rdt)


def _dask_map_block(fn: Any, names: tuple, *blocks: Any):
    return map_call(fn, blocks, None, False, names)
