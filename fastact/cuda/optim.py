"""Fused multi-tensor optimizer steps on CUDA device arrays: one launch per parameter group.

The CPU optimizers (:mod:`fastact.optim.functional`) describe a step by a pointer table
``ptrs[row, j]`` (parameter, gradient, state arrays of tensor ``j``), a chunk table
``chunks[c] = (j, start, length)`` and per-tensor coefficients ``coefs[j]``; their kernels are
loop templates ``for c in prange(chunks): ...; for i in range(n): <update>``. The device
kernels here are compiled from *those same templates*: the references to ``prange`` and
``range`` are renamed to device functions that stride blocks over chunks and threads over a
chunk's elements, ``_view`` becomes a global-memory pointer at the table's address, and the
update arithmetic (operation order included) is the CPU's, compiled for the GPU. So every
optimizer fastact has on the CPU (SGD, Adam/AdamW, Adamax, RMSprop, Rprop, Adagrad, Adadelta)
runs as one kernel for all tensors of a dtype, the tables living on the device (cached by
content, so a training loop uploads only the per-step coefficients).

The functional API mirrors :mod:`fastact.optim.functional` (same signatures and validation,
device arrays instead of NumPy arrays): the CPU functions are reused with their table
builder swapped for :func:`_functional` below. :func:`launch` is the hook for the optimizer
classes (same contract as ``fastact.optim.functional.launch``).
"""

from __future__ import annotations

import ctypes
import math
import types as pytypes
from collections import OrderedDict
from typing import Any

import numpy as np
from numba import cuda, float64, types
from numba.extending import intrinsic

from fastact.cuda import require

require("fastact.cuda.optim was called")

from fastact.cuda import _runtime as rt  # noqa: E402
from fastact.cuda._reduce import block_sum  # noqa: E402
from fastact.cuda._retarget import DEVICE_OPTIONS, kernel  # noqa: E402
from fastact.cuda._runtime import SIMULATOR, THREADS  # noqa: E402
from fastact.optim import functional as F  # noqa: E402

__all__ = [
    "CHUNK",
    "sgd",
    "adam",
    "adamw",
    "adamax",
    "rmsprop",
    "rprop",
    "adagrad",
    "adadelta",
    "launch",
    "address",
    "nonfinite_chunks",
    "zeros_like",
    "KINDS",
]


# ----------------------------------------------------------------------------- device pieces
@intrinsic
def _global_pointer(typingctx, address, proto):
    """``(T addrspace(1)*) address`` where T is ``proto``'s element type."""
    if not isinstance(address, types.Integer) or not isinstance(proto, types.Array):
        return None
    ptr_type = types.CPointer(proto.dtype, addrspace=1)

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], context.get_value_type(ptr_type))

    return ptr_type(address, proto), codegen


@cuda.jit(device=True, inline="always", **DEVICE_OPTIONS)
def _view_device(ptrs, row, j, start, n, proto):
    """Elements [start, start + n) of array ``row`` of tensor ``j`` (indexable pointer)."""
    return _global_pointer(ptrs[row, j] + start * proto.itemsize, proto)


def _view_simulator(ptrs, row, j, start, n, proto):
    """Simulator: device arrays are host memory, so the address is a NumPy view."""
    dt = np.dtype(proto.dtype)
    addr = int(ptrs[row, j]) + int(start) * dt.itemsize
    return np.frombuffer((ctypes.c_char * (int(n) * dt.itemsize)).from_address(addr), dt)


@cuda.jit(device=True, **DEVICE_OPTIONS)
def _block_range(n):
    return range(cuda.blockIdx.x, n, cuda.gridDim.x)


@cuda.jit(device=True, **DEVICE_OPTIONS)
def _thread_range(n):
    return range(cuda.threadIdx.x, n, cuda.blockDim.x)


#: ``np`` as the CPU templates use it (np.sqrt of a scalar), for the CUDA target.
_NP_DEVICE = pytypes.ModuleType("fastact_cuda_np")
_NP_DEVICE.sqrt = math.sqrt


def _nonfinite(proto, ptrs, row, chunks, out):
    """out[c] = chunk c of array ``row`` holds a NaN or an infinity (block reduction)."""
    sh = cuda.shared.array(THREADS, float64)
    for c in range(cuda.blockIdx.x, chunks.shape[0], cuda.gridDim.x):
        j = chunks[c, 0]
        start = chunks[c, 1]
        n = chunks[c, 2]
        xa = _view(ptrs, row, j, start, n, proto)  # noqa: F821 (bound at compile time)
        acc = 0.0
        for i in range(cuda.threadIdx.x, n, cuda.blockDim.x):
            acc += float64(xa[i]) * 0.0
        total = block_sum(acc, sh)
        if cuda.threadIdx.x == 0:
            out[c] = total != total


#: Optimizer kernels: CPU template name -> number of pointer-table rows.
KINDS = dict(F.ROWS)
_COMPILED: dict[str, Any] = {}


def _kernel(kind: str):
    k = _COMPILED.get(kind)
    if k is None:
        view = _view_simulator if SIMULATOR else _view_device
        if kind == "nonfinite":
            k = kernel(_nonfinite, "optim_nonfinite_cuda", _view=view)
        else:
            extra = {} if SIMULATOR else {"np": _NP_DEVICE}
            k = kernel(
                F._TEMPLATES[kind],
                f"optim_{kind}_cuda",
                rename={"prange": "_fa_block_range", "range": "_fa_thread_range"},
                _fa_block_range=_block_range,
                _fa_thread_range=_thread_range,
                _view=view,
                **extra,
            )
        _COMPILED[kind] = k
    return k


# ----------------------------------------------------------------------------- tables
_TABLES: OrderedDict[tuple, Any] = OrderedDict()
_PROTOS: dict[tuple, Any] = {}
#: Elements per chunk of the device chunk tables (16 per thread of a 256-thread block, so a
#: mid-sized model still gives several waves of blocks); tiny in the simulator so that
#: tensors span several chunks there too.
CHUNK = 4 if SIMULATOR else 4096


def _on_device(a: np.ndarray, stream):
    """A device copy of a small host table, cached by content (LRU of 32)."""
    key = (rt.device_id(), a.dtype.str, a.shape, a.tobytes())
    d = _TABLES.get(key)
    if d is None:
        d = cuda.to_device(np.ascontiguousarray(a), stream=stream)
        _TABLES[key] = d
        if len(_TABLES) > 32:
            _TABLES.popitem(last=False)
    else:
        _TABLES.move_to_end(key)
    return d


def _proto(dtype: np.dtype):
    key = (rt.device_id(), dtype)
    p = _PROTOS.get(key)
    if p is None:
        p = _PROTOS[key] = cuda.device_array(1, dtype=dtype)
    return p


def _dtype_of(x: Any) -> np.dtype:
    """A dtype from a dtype-like or from an array (the CPU passes its ``proto`` array)."""
    if isinstance(x, (np.dtype, type, str)):
        return np.dtype(x)
    return np.dtype(x.dtype)


def address(x: Any) -> int:
    """The device address of a device array (``__cuda_array_interface__`` data pointer)."""
    return rt._pointer(rt.view(x, "array"))


def launch(
    kind: str,
    dtype: Any,
    ptrs: Any,
    chunks: Any,
    coefs: Any,
    scalars: tuple,
    n_elements: int | None = None,
    stream: Any = None,
) -> None:
    """Run optimizer kernel ``kind`` over tensors in device memory.

    Same arguments as ``fastact.optim.functional.launch`` (``ptrs`` holding *device*
    addresses, ``scalars`` in the CPU kernel's order), with ``dtype`` for the CPU's proto
    array; ``ptrs``/``chunks``/``coefs`` may be NumPy tables (uploaded, cached by content)
    or device arrays. One launch: blocks stride over chunks, threads over elements.
    """
    dt = _dtype_of(dtype)
    if stream is None:
        stream = cuda.default_stream()
    n_chunks = chunks.shape[0]
    if n_chunks == 0:
        return
    dev = [
        (_on_device(np.asarray(t), stream) if isinstance(t, np.ndarray) else t)
        for t in (ptrs, chunks, coefs)
    ]
    _kernel(kind)[min(n_chunks, rt.max_blocks()), THREADS, stream](_proto(dt), *dev, *scalars)


def nonfinite_chunks(
    dt: Any, ptrs: np.ndarray, row: int, chunks: np.ndarray, stream: Any = None
) -> np.ndarray:
    """Host boolean per chunk: array ``row`` of the chunk holds a NaN or an infinity (like
    ``fastact.optim.functional.nonfinite_chunks``; reads the flags back, so it synchronises)."""
    dt = _dtype_of(dt)
    if stream is None:
        stream = cuda.default_stream()
    out = cuda.device_array(chunks.shape[0], dtype=np.bool_, stream=stream)
    dp, dc = _on_device(ptrs, stream), _on_device(chunks, stream)
    _kernel("nonfinite")[min(chunks.shape[0], rt.max_blocks()), THREADS, stream](
        _proto(dt), dp, row, dc, out
    )
    return out.copy_to_host(stream=stream)


def zeros_like(x: Any) -> Any:
    """A zero-filled device array like ``x`` from ``x``'s library (for optimizer state)."""
    d = rt.view(x, "array")
    lib = rt._library(x)
    if lib == "torch":
        return x.detach().new_zeros(x.shape)
    if lib == "cupy":
        import cupy

        with x.device:
            return cupy.zeros_like(x)
    order = "F" if _layout(d) == "F" and d.ndim > 1 else "C"
    return cuda.to_device(np.zeros(tuple(d.shape), d.dtype, order=order))


# ----------------------------------------------------------------------------- functional
def _seq(x: Any, name: str) -> list:
    if x is None:
        raise TypeError(f"{name} must be a sequence of arrays, got None")
    if rt.is_numba_array(x) or hasattr(x, "__cuda_array_interface__"):
        return [x]
    if not isinstance(x, (list, tuple)):
        raise TypeError(
            f"{name} must be a device array or a list/tuple of device arrays, got "
            f"{type(x).__name__}"
        )
    return list(x)


def _layout(d) -> str | None:
    return "C" if d.is_c_contiguous() else ("F" if d.is_f_contiguous() else None)


def _param(x: Any, name: str):
    d = rt.float_view(x, name)
    if rt.readonly(x):
        raise ValueError(f"{name} is read-only; parameters are updated in place")
    if _layout(d) is None:
        raise ValueError(
            f"{name} is not contiguous in device memory (shape {tuple(d.shape)}, "
            f"strides {tuple(d.strides)}); pass a contiguous array"
        )
    return d


def _like(x: Any, p, name: str, pname: str, state: bool, stream):
    d = rt.float_view(x, name)
    if d.dtype != p.dtype:
        raise TypeError(f"{name} has dtype {d.dtype} but {pname} has dtype {p.dtype}")
    if tuple(d.shape) != tuple(p.shape):
        raise ValueError(
            f"{name} has shape {tuple(d.shape)} but {pname} has shape {tuple(p.shape)}"
        )
    if state and rt.readonly(x):
        raise ValueError(f"{name} is read-only; optimizer state is updated in place")
    if _layout(d) != _layout(p) and d.size > 1:
        if state:
            raise ValueError(
                f"{name} does not have the memory layout of {pname} (shape {tuple(p.shape)})"
            )
        if _layout(p) == "C":
            return rt.contiguous(d, stream)
        tmp = cuda.device_array(tuple(d.shape), d.dtype, order="F", stream=stream)
        rt.assign(tmp, d, stream)
        return tmp
    return d


def _check_no_overlap(arrays: list, names: list[str]) -> None:
    spans = sorted(
        (rt.bounds(a) + (k,) for k, a in enumerate(arrays) if a.size), key=lambda s: s[0]
    )
    for (_, end, ka), (start, _, kb) in zip(spans, spans[1:], strict=False):
        if start < end:
            raise ValueError(
                f"{names[ka]} and {names[kb]} share memory; every updated array must be distinct"
            )


def _functional(
    kind: str,
    params: Any,
    grads: Any,
    states: list,
    coefs_of,
    scalars: tuple,
    check_finite: bool,
    skip_nonfinite: bool = False,
    allocate: dict | None = None,
) -> bool:
    """``fastact.optim.functional._functional`` for device arrays: validate everything, then
    one launch per dtype (same tables, same kernels' arithmetic)."""
    plist = _seq(params, "params")
    n = len(plist)
    if n == 0:
        return False
    glist = _seq(grads, "grads")
    if len(glist) != n:
        raise ValueError(f"grads has {len(glist)} entries but params has {n}")
    stream = rt.stream_of(*plist)
    pa = [_param(p, f"params[{k}]") for k, p in enumerate(plist)]
    rows: list[list] = []
    written = list(pa)
    wnames = [f"params[{k}]" for k in range(n)]
    for sname, seq, used in states:
        if not used:
            rows.append([None] * n)
            continue
        slist = _seq(seq, sname)
        if len(slist) != n:
            raise ValueError(f"{sname} has {len(slist)} entries but params has {n}")
        row = []
        for k, s in enumerate(slist):
            if s is None and allocate is not None:
                row.append(None)
                continue
            row.append(_like(s, pa[k], f"{sname}[{k}]", f"params[{k}]", True, stream))
            written.append(row[-1])
            wnames.append(f"{sname}[{k}]")
        rows.append(row)
    garr = [
        None if g is None else _like(g, pa[k], f"grads[{k}]", f"params[{k}]", False, stream)
        for k, g in enumerate(glist)
    ]
    _check_no_overlap(written, wnames)
    coefs_all = [coefs_of(k) for k in range(n)]
    by_dtype: dict[np.dtype, list[int]] = {}
    for k in range(n):
        if garr[k] is not None:
            by_dtype.setdefault(pa[k].dtype, []).append(k)
    if allocate is not None:
        for k in range(n):
            if rows[0][k] is None and garr[k] is not None:
                order = "F" if _layout(pa[k]) == "F" and pa[k].ndim > 1 else "C"
                if order == "C":
                    res, buf = rt.empty(plist[k], tuple(pa[k].shape), pa[k].dtype, stream)
                else:
                    res = buf = cuda.device_array(
                        tuple(pa[k].shape), pa[k].dtype, order="F", stream=stream
                    )
                allocate[k] = res  # the first step writes it (buf = g), like torch's clone
                rows[0][k] = buf
    plans = []
    for dt, idx in by_dtype.items():
        ptrs = np.empty((2 + len(rows), len(idx)), dtype=np.int64)
        for jj, k in enumerate(idx):
            paddr = rt._pointer(pa[k])
            ptrs[0, jj] = paddr
            ptrs[1, jj] = rt._pointer(garr[k])
            for r, row in enumerate(rows):
                ptrs[2 + r, jj] = paddr if row[k] is None else rt._pointer(row[k])
        sizes = np.array([pa[k].size for k in idx], dtype=np.int64)
        plans.append((dt, ptrs, F.chunk_table(sizes, CHUNK), int(sizes.sum()), idx))
    if check_finite or skip_nonfinite:
        for dt, ptrs, chunks, _, idx in plans:
            bad = nonfinite_chunks(dt, ptrs, 1, chunks, stream)
            if bad.any():
                if skip_nonfinite:
                    return True
                j = int(chunks[int(np.argmax(bad)), 0])
                raise ValueError(
                    f"grads[{idx[j]}] contains NaN or infinite values (check_finite=True)"
                )
    for dt, ptrs, chunks, total, idx in plans:
        coefs = np.array([coefs_all[k] for k in idx], dtype=np.float64).reshape(len(idx), -1)
        launch(kind, dt, ptrs, chunks, coefs, scalars, total, stream)
    return False


def _device_version(fn, extra: dict):
    g = {**fn.__globals__, "_functional": _functional, "_seq": _seq, **extra}
    new = pytypes.FunctionType(fn.__code__, g, fn.__name__, fn.__defaults__, fn.__closure__)
    new.__kwdefaults__ = fn.__kwdefaults__
    new.__qualname__ = fn.__name__
    new.__module__ = __name__
    new.__doc__ = (
        "On CUDA device arrays (one fused launch per dtype). " + (fn.__doc__ or "").strip()
    )
    return new


sgd = _device_version(F.sgd, {})
adam = _device_version(F.adam, {})
adamw = _device_version(F.adamw, {"adam": adam})
adamax = _device_version(F.adamax, {})
rmsprop = _device_version(F.rmsprop, {})
rprop = _device_version(F.rprop, {})
adagrad = _device_version(F.adagrad, {})
adadelta = _device_version(F.adadelta, {})
