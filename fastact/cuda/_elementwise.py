"""Element-wise activations on the GPU: the registry's scalar functions in grid-stride kernels.

For an :class:`fastact.kernels.elementwise.Elementwise` ``op`` and a kind (forward / grad /
grad_output), :func:`kernel` compiles ``out[i] = f(x[i], *params)`` (or ``f(g[i], v[i],
*params)``) where ``f`` is ``op.scalars[kind]`` compiled for the device by
:mod:`fastact.cuda._retarget`; :func:`run` launches it (the executor's ``elementwise``).
"""

from __future__ import annotations

from typing import Any

from fastact.cuda import _runtime as rt
from fastact.cuda._retarget import device_function, kernel_from_source

#: Elements per thread and loop trip of the element-wise kernels.
UNROLL = 4


def kernel(op: Any, kind: str):
    """The grid-stride CUDA kernel of ``op.scalars[kind]`` (compiled lazily per dtype)."""
    nparams = len(op.params)
    k = op.cuda.get(kind)
    if k is None:
        f = device_function(op.scalars[kind])
        ps = "".join(f", p{i}" for i in range(nparams))
        if kind != "forward":
            arrays: tuple[str, ...] = ("g", "v")
        elif op.arity == 1:
            arrays = ("x",)
        else:  # a user's fastact.elementwise function of several arrays
            arrays = tuple(f"x{j}" for j in range(op.arity))
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
        k = op.cuda[kind] = kernel_from_source(src, name, f=f)
    return k


def launch(k: Any, arrays: tuple, out, kp: tuple, stream) -> None:
    """Run an element-wise kernel on 1-D views of C-contiguous arrays of one shape."""
    n = out.size
    if n == 0:
        return
    k[rt.blocks(n, rt.THREADS * UNROLL), rt.THREADS, stream](
        *(rt.flat(a) for a in arrays), rt.flat(out), *kp
    )


def run(op: Any, kind: str, inputs: tuple, kp: tuple, out, stream) -> None:
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
