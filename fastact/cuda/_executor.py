"""The CUDA executor: the host executor's functions (:mod:`fastact.host`), for device arrays.

A front end asks :func:`fastact._core.backend.device` for the executor of a call's arrays and
gets an :class:`Executor` bound to their stream (the producer's stream named by the first
array's ``__cuda_array_interface__``, else the default stream): its array edge views device
arrays without copying (numba device arrays, CuPy arrays, torch CUDA tensors), allocates
results with the input's own library, and its launches run the kernels compiled from the same
scalar definitions as the host's loops. Device rules differ from NumPy's in one way: arrays
must be float32 or float64 and share one dtype (no implicit casts).
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
from numba import cuda

from fastact.cuda import _axis as K
from fastact.cuda import _elementwise as E
from fastact.cuda import _runtime as rt
from fastact.cuda._losses import LossLaunches
from fastact.cuda._optim import OptimLaunches
from fastact.cuda._reduce import column_sums

__all__ = ["Executor", "executor"]

#: Fewest rows of C per thread when a softmax over a strided axis is split into chunks.
SOFTMAX_MIN_CHUNK = 32


def executor(*arrays: Any) -> Executor:
    """The executor for a call with these arrays (bound to their stream)."""
    return Executor(rt.stream_of(*arrays))


class Executor(LossLaunches, OptimLaunches):
    """Device versions of the host executor's functions, on one stream."""

    NAME = "cuda"

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    # ------------------------------------------------------------------ array edge
    def float_input(self, x: Any, name: str):
        return rt.float_view(x, name)

    def inplace_input(self, x: Any, name: str = "input"):
        d = rt.float_view(x, name)
        if rt.readonly(x):
            raise ValueError(f"{name} is read-only and cannot be modified in place")
        return d

    def common_dtype(self, a, b, name_a: str, name_b: str):
        if a.dtype != b.dtype:
            raise TypeError(
                f"{name_b} has dtype {b.dtype} but {name_a} has dtype {a.dtype}; device "
                "arrays must share one dtype"
            )
        return a, b

    @staticmethod
    def c_contiguous(a) -> bool:
        return a.is_c_contiguous()

    @staticmethod
    def shape_of(a) -> tuple:
        return tuple(a.shape)

    def astype(self, a, dtype: np.dtype):
        dtype = np.dtype(dtype)
        if a.dtype == dtype:
            return a
        src = rt.contiguous(a, self.stream)
        y = cuda.device_array(tuple(a.shape), dtype, stream=self.stream)
        if a.size:
            K.get("cast")[rt.blocks(a.size), rt.THREADS, self.stream](rt.flat(src), rt.flat(y))
        return y

    def contiguous(self, a):
        return rt.contiguous(a, self.stream)

    def empty(self, like: Any, shape: tuple, dtype: np.dtype):
        return rt.empty(like, tuple(shape), np.dtype(dtype), self.stream)

    def result(self, out: Any, like: Any, shape: tuple, dtype: np.dtype, inputs: tuple):
        return rt.result(out, like, tuple(shape), np.dtype(dtype), inputs, self.stream)

    def finish(self, res: Any, written, target) -> Any:
        return rt.finish(res, written, target, self.stream)

    # ------------------------------------------------------------------ element-wise
    def elementwise(
        self,
        op: Any,
        kind: str,
        inputs: tuple,
        values: tuple,
        out: Any = None,
        inplace: bool = False,
        names: tuple = ("input",),
    ):
        """``op``'s ``kind`` over device ``inputs`` (see :func:`fastact.host.elementwise`)."""
        stream = self.stream
        views = tuple(rt.float_view(a, n) for a, n in zip(inputs, names, strict=False))
        if len(views) == 2:
            g, v = views
            if tuple(g.shape) != tuple(v.shape):
                raise ValueError(
                    f"grad_output has shape {tuple(g.shape)} but {names[1]} has shape "
                    f"{tuple(v.shape)}"
                )
            self.common_dtype(v, g, names[1], "grad_output")
        d = views[-1]
        kp = op.kernel_params(values, d.dtype)
        for p, n in zip(kp, op.param_names, strict=False):
            if isinstance(p, np.ndarray):
                raise TypeError(
                    f"{n} must be a real number for device arrays (array-valued "
                    "parameters are supported on the CPU only)"
                )
        if kind == "grad_output" and op.check_output is not None:
            op.check_output(*values)
        if inplace:
            if rt.readonly(inputs[0]):
                raise ValueError("input is read-only and cannot be modified in place")
            E.run(op, kind, views, kp, d, stream)
            return inputs[0]
        if out is not None:
            o = rt.check_out(out, d.shape, d.dtype, views)
            E.run(op, kind, views, kp, o, stream)
            return out
        res, o = rt.empty(inputs[-1], d.shape, d.dtype, stream)
        E.run(op, kind, views, kp, o, stream)
        return res

    def map_call(self, fn: Any, args: tuple, out: Any, inplace: bool, names: tuple):
        """A ``fastact.elementwise`` function over device arrays (see
        :func:`fastact.host.elementwise.map_call`): the array arguments share one shape and
        one float dtype; Python numbers are scalars of that dtype."""
        stream = self.stream
        pattern, views, values, first = [], [], [], None
        for a, n in zip(args, names, strict=True):
            if isinstance(a, numbers.Real) and not isinstance(a, (bool, np.bool_)):
                a = float(a) if isinstance(a, (float, np.floating)) else int(a)
                pattern.append("s")
                values.append(a)
                continue
            v = rt.float_view(a, n)
            if first is None:
                first = (v, n)
            else:
                self.common_dtype(first[0], v, first[1], n)
                if tuple(v.shape) != tuple(first[0].shape):
                    raise ValueError(
                        f"{n} has shape {tuple(v.shape)} but {first[1]} has shape "
                        f"{tuple(first[0].shape)}; device arrays must share one shape"
                    )
            pattern.append("a")
            views.append(v)
        if inplace and pattern[0] != "a":
            raise TypeError(f"{names[0]} must be an array to be modified in place")
        if first is None:
            raise TypeError(f"{', '.join(names)}: at least one argument must be a device array")
        d = first[0]
        spec = fn.spec("".join(pattern), d.dtype)
        kp = spec.kernel_params(tuple(values), d.dtype)
        if inplace:
            if rt.readonly(args[0]):
                raise ValueError(f"{names[0]} is read-only and cannot be modified in place")
            E.run(spec, "forward", tuple(views), kp, views[0], stream)
            return args[0]
        if out is not None:
            o = rt.check_out(out, d.shape, d.dtype, tuple(views))
            E.run(spec, "forward", tuple(views), kp, o, stream)
            return out
        res, o = rt.empty(args[pattern.index("a")], d.shape, d.dtype, stream)
        E.run(spec, "forward", tuple(views), kp, o, stream)
        return res

    # ------------------------------------------------------------------ along an axis
    def _grid(self, n: int) -> int:
        return rt.blocks(n)

    def rrelu_train(self, x, out, noise, lower: float, span: float, key: int) -> None:
        write = noise is not None
        nz = noise if write else cuda.device_array(1, x.dtype, stream=self.stream)
        K.get("rrelu_train", x.dtype)[self._grid(x.size), rt.THREADS, self.stream](
            x, out, nz, lower, span, np.uint64(key), write
        )

    def rrelu_train_grad(self, g, v, out, lower: float, span: float, key: int) -> None:
        K.get("rrelu_train_grad", v.dtype)[self._grid(v.size), rt.THREADS, self.stream](
            g, v, out, lower, span, np.uint64(key)
        )

    def multiply(self, a, b, out) -> None:
        K.get("mul")[self._grid(a.size), rt.THREADS, self.stream](
            rt.flat(a), rt.flat(b), rt.flat(out)
        )

    def prelu_forward(self, x3, w, out3) -> None:
        K.get("prelu_forward")[self._grid(x3.size), rt.THREADS, self.stream](
            rt.flat(x3), w, rt.flat(out3), x3.shape[2]
        )

    def prelu_backward(self, g3, x3, w, out3, gw) -> None:
        """out3 = g or w g; ``gw`` = per-channel float64 sums of x g (x <= 0): a block
        reduction into per-block partials, then column sums (no atomics)."""
        stream = self.stream
        outer, c_n, inner = x3.shape
        cap = rt.max_blocks()
        if x3.size == 0:
            partial = cuda.device_array((0, c_n), dtype=np.float64, stream=stream)
        elif inner == 1 and c_n > 1:
            by = min(rt.ceil_div(c_n, rt.THREADS), 65535)
            bx = max(1, min(outer, cap // by))
            partial = cuda.device_array((bx, c_n), dtype=np.float64, stream=stream)
            K.get("prelu_backward_rows")[(bx, by), rt.THREADS, stream](
                rt.flat(g3), rt.flat(x3), w, rt.flat(out3), partial, outer
            )
        else:
            by = min(c_n, 65535)
            bx = max(1, min(rt.ceil_div(outer * inner, rt.THREADS), cap // by))
            partial = cuda.device_array((bx, c_n), dtype=np.float64, stream=stream)
            K.get("prelu_backward_channels")[(bx, by), rt.THREADS, stream](
                rt.flat(g3), rt.flat(x3), w, rt.flat(out3), partial, outer, inner
            )
        column_sums(partial, gw, stream)

    def glu_forward(self, x3, out2) -> None:
        K.get("glu_forward")[self._grid(out2.size), rt.THREADS, self.stream](x3, out2)

    def glu_backward(self, g2, x3, out3) -> None:
        K.get("glu_backward")[self._grid(g2.size), rt.THREADS, self.stream](g2, x3, out3)

    def maxout_forward(self, x4, out3) -> None:
        K.get("maxout_forward")[self._grid(out3.size), rt.THREADS, self.stream](x4, out3)

    def maxout_backward(self, g3, x4, out4) -> None:
        K.get("maxout_backward")[self._grid(g3.size), rt.THREADS, self.stream](g3, x4, out4)

    def _softmax(self, kind: str, arrays: tuple, log: bool, sign: float) -> None:
        outer, c_n, inner = arrays[0].shape
        s = arrays[0].dtype.type(sign)
        if inner == 1:
            k = K.get(f"softmax_rows{kind}")
            k[max(1, min(outer, rt.max_blocks())), rt.THREADS, self.stream](
                *(a.reshape(outer, c_n) for a in arrays), log, s
            )
        elif c_n >= 2 * SOFTMAX_MIN_CHUNK and 0 < outer * inner * 4 < rt.max_blocks() * rt.THREADS:
            self._softmax_chunked(kind, arrays, log, s)
        else:
            k = K.get(f"softmax_columns{kind}")
            k[self._grid(outer * inner), rt.THREADS, self.stream](*arrays, log, s)

    def _softmax_chunked(self, kind: str, arrays: tuple, log: bool, s) -> None:
        """Few columns (outer * inner under a quarter of the device's threads), long ones:
        split C into chunks, one thread per (chunk, column); float64 per-chunk maxima and
        sums combined per column, then an element-parallel write (see fastact.cuda._axis)."""
        stream = self.stream
        outer, c_n, inner = arrays[0].shape
        ncol = outer * inner
        nk = min(rt.ceil_div(rt.max_blocks() * rt.THREADS, ncol), c_n // SOFTMAX_MIN_CHUNK)
        chunk = rt.ceil_div(c_n, nk)
        nk = rt.ceil_div(c_n, chunk)
        part = cuda.device_array((nk, ncol), dtype=np.float64, stream=stream)
        colsum = cuda.device_array(ncol, dtype=np.float64, stream=stream)
        grid = self._grid(nk * ncol)
        n = arrays[0].size
        if kind == "_backward":
            g3, y3, out3 = arrays
            K.get("softmax_columns_backward_chunk_sum")[grid, rt.THREADS, stream](
                g3, y3, part, log, chunk
            )
            column_sums(part, colsum, stream)
            K.get("softmax_columns_backward_write")[self._grid(n), rt.THREADS, stream](
                g3, y3, out3, colsum, log, s
            )
            return
        x3, out3 = arrays
        colmax = cuda.device_array(ncol, dtype=np.float64, stream=stream)
        # log-softmax: the maximum's ties counted apart from the sum of the terms below it
        ties = cuda.device_array((nk if log else 1, ncol), dtype=np.float64, stream=stream)
        colties = cuda.device_array(ncol, dtype=np.float64, stream=stream)
        stats = K.get("softmax_columns_chunk_stats")
        stats[grid, rt.THREADS, stream](x3, colmax, part, ties, s, chunk, True, log)
        K.get("column_max")[self._grid(ncol), rt.THREADS, stream](part, colmax)
        stats[grid, rt.THREADS, stream](x3, colmax, part, ties, s, chunk, False, log)
        column_sums(part, colsum, stream)
        if log:
            column_sums(ties, colties, stream)
        K.get("softmax_columns_write")[self._grid(n), rt.THREADS, stream](
            x3, out3, colmax, colsum, colties, log, s
        )

    def softmax(self, x3, out3, log: bool, sign: float) -> None:
        self._softmax("", (x3, out3), log, sign)

    def softmax_backward(self, g3, y3, out3, log: bool, sign: float) -> None:
        self._softmax("_backward", (g3, y3, out3), log, sign)
