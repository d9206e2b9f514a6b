"""Element-wise activations on the GPU: the registry's scalar functions in grid-stride kernels.

For an :class:`fastact._kernels.Elementwise` ``op`` and a kind (forward / grad / grad_output),
:func:`kernel` compiles ``out[i] = f(x[i], *params)`` (or ``f(g[i], v[i], *params)``) where
``f`` is ``op.scalars[kind]`` compiled for the device by :mod:`fastact.cuda._retarget`.
:func:`forward` / :func:`backward` mirror ``Elementwise.forward`` / ``backward`` for device
arrays (the CPU functions delegate to them when given a device array).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fastact.cuda import _runtime as rt
from fastact.cuda._retarget import device_function, kernel_from_source

#: Elements per thread and loop trip of the element-wise kernels.
UNROLL = 4

_KERNELS: dict[tuple[str, str, int], Any] = {}


def kernel(op: Any, kind: str):
    """The grid-stride CUDA kernel of ``op.scalars[kind]`` (compiled lazily per dtype)."""
    nparams = len(op.params)
    key = (op.name, kind, nparams)
    k = _KERNELS.get(key)
    if k is None:
        f = device_function(op.scalars[kind])
        ps = "".join(f", p{i}" for i in range(nparams))
        arrays = ("x",) if kind == "forward" else ("g", "v")
        name = f"{op.name}_{kind}_cuda"
        # UNROLL elements per thread and trip, all loads issued before the first store (the
        # arrays may alias, so the compiler could not hoist them itself): enough bytes in
        # flight per SM to saturate HBM at one wave of blocks.
        lines = [
            f"def {name}({', '.join(arrays)}, out{ps}):",
            "    i = cuda.grid(1)",
            "    stride = cuda.gridsize(1)",
            "    n = out.size",
            f"    while i + {UNROLL - 1} * stride < n:",
        ]
        for u in range(UNROLL):
            for a in arrays:
                lines.append(f"        {a}{u} = {a}[i + {u} * stride]")
        for u in range(UNROLL):
            args = ", ".join(f"{a}{u}" for a in arrays)
            lines.append(f"        out[i + {u} * stride] = f({args}{ps})")
        lines += [
            f"        i += {UNROLL} * stride",
            "    while i < n:",
            f"        out[i] = f({', '.join(a + '[i]' for a in arrays)}{ps})",
            "        i += stride",
        ]
        src = "\n".join(lines) + "\n"
        k = _KERNELS[key] = kernel_from_source(src, name, f=f)
    return k


def _params(op: Any, values: tuple, dtype: np.dtype) -> tuple:
    kp = op.kernel_params(values, dtype)
    for p, n in zip(kp, op.param_names, strict=False):
        if isinstance(p, np.ndarray):
            raise TypeError(
                f"{n} must be a real number for device arrays (array-valued "
                "parameters are supported on the CPU only)"
            )
    return tuple(kp)


def launch(k: Any, arrays: tuple, out, kp: tuple, stream) -> None:
    """Run an element-wise kernel on 1-D views of C-contiguous arrays of one shape."""
    n = out.size
    if n == 0:
        return
    k[rt.blocks(n, rt.THREADS * UNROLL), rt.THREADS, stream](
        *(rt.flat(a) for a in arrays), rt.flat(out), *kp
    )


def _run(op: Any, kind: str, inputs: tuple, kp: tuple, out, stream) -> None:
    """Kernel over ``inputs`` into the numba view ``out`` (strided arrays via temporaries)."""
    k = kernel(op, kind)
    cont = tuple(rt.contiguous(a, stream) for a in inputs)
    if out.is_c_contiguous():
        launch(k, cont, out, kp, stream)
        return
    import numba.cuda as cuda

    tmp = cuda.device_array(tuple(out.shape), dtype=out.dtype, stream=stream)
    launch(k, cont, tmp, kp, stream)
    rt.assign(out, tmp, stream)


def forward(op: Any, x: Any, values: tuple, out: Any = None, inplace: bool = False):
    """``op``'s forward on a device array: new array, ``out``, or in place (returns it)."""
    d = rt.float_view(x, "input")
    kp = _params(op, values, d.dtype)
    stream = rt.stream_of(x, out)
    if inplace:
        if out is not None:
            raise ValueError("out= cannot be combined with inplace=True")
        if rt.readonly(x):
            raise ValueError("input is read-only and cannot be modified in place")
        _run(op, "forward", (d,), kp, d, stream)
        return x
    if out is not None:
        o = rt.check_out(out, d.shape, d.dtype, (d,))
        _run(op, "forward", (d,), kp, o, stream)
        return out
    res, o = rt.empty(x, d.shape, d.dtype, stream)
    _run(op, "forward", (d,), kp, o, stream)
    return res


def backward(op: Any, grad_output: Any, x: Any, output: Any, values: tuple, out: Any = None):
    """``grad_output * f'(input)`` on device arrays, from ``input`` or (where the op allows)
    from ``output``."""
    if (x is None) == (output is None):
        raise TypeError(f"{op.name}_backward needs exactly one of input= and output=")
    kind = "grad" if output is None else "grad_output"
    if kind == "grad_output" and op.scalars["grad_output"] is None:
        raise TypeError(f"{op.name}_backward cannot be computed from output=; pass input=")
    arg_name = "input" if output is None else "output"
    src = x if output is None else output
    g = rt.float_view(grad_output, "grad_output")
    v = rt.float_view(src, arg_name)
    if tuple(g.shape) != tuple(v.shape):
        raise ValueError(
            f"grad_output has shape {tuple(g.shape)} but {arg_name} has shape {tuple(v.shape)}"
        )
    if g.dtype != v.dtype:
        raise TypeError(
            f"grad_output has dtype {g.dtype} but {arg_name} has dtype {v.dtype}; "
            "device arrays must share one dtype"
        )
    kp = _params(op, values, v.dtype)
    if kind == "grad_output" and op.check_output is not None:
        op.check_output(*values)
    stream = rt.stream_of(grad_output, src, out)
    if out is not None:
        o = rt.check_out(out, v.shape, v.dtype, (g, v))
        _run(op, kind, (g, v), kp, o, stream)
        return out
    res, o = rt.empty(src, v.shape, v.dtype, stream)
    _run(op, kind, (g, v), kp, o, stream)
    return res
