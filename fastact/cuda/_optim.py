"""Fused multi-tensor optimizer steps on CUDA device arrays: one launch per parameter group.

The host's optimizers (:mod:`fastact.kernels.optim`) describe a step by a pointer table
``ptrs[row, j]`` (parameter, gradient, state arrays of tensor ``j``), a chunk table
``chunks[c] = (j, start, length)`` and per-tensor coefficients ``coefs[j]``; their kernels are
loop templates ``for c in prange(chunks): ...; for i in range(n): <update>``. The device
kernels here are compiled from *those same templates*: the references to ``prange`` and
``range`` are renamed to device functions that stride blocks over chunks and threads over a
chunk's elements, ``_view`` becomes a global-memory pointer at the table's address, and the
update arithmetic (operation order included) is the host's, compiled for the GPU. So every
optimizer (SGD, Adam/AdamW, Adamax, RMSprop, Rprop, Adagrad, Adadelta) runs as one kernel for
all tensors of a dtype, the tables living on the device (cached by content, so a training
loop uploads only the per-step coefficients).

:class:`OptimLaunches` gives the CUDA executor the host executor's optimizer functions
(:mod:`fastact.host.optim`), which the one step driver (:mod:`fastact.optim.driver`) calls for
the classes and the functional API alike. State arrays live on the device, allocated by the
parameter's own library (torch, CuPy or numba); ``state['step']`` stays a Python float.
"""

from __future__ import annotations

import copy
import ctypes
import math
import types as pytypes
from collections import OrderedDict
from typing import Any

import numpy as np
from numba import cuda, float64, types
from numba.extending import intrinsic

from fastact._core.arrays import is_tensor, torch_module
from fastact.cuda import _runtime as rt
from fastact.cuda._reduce import block_sum
from fastact.cuda._retarget import DEVICE_OPTIONS, kernel
from fastact.cuda._runtime import SIMULATOR, THREADS
from fastact.kernels import optim as OK

__all__ = ["OptimLaunches", "launch", "nonfinite_chunks", "CHUNK", "KINDS"]


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
KINDS = dict(OK.ROWS)
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
                OK.TEMPLATES[kind],
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


# ----------------------------------------------------------------------------- the executor part
def _layout(d) -> str | None:
    return "C" if d.is_c_contiguous() else ("F" if d.is_f_contiguous() else None)


def _like(x: Any, p, name: str, pname: str, state: bool, stream):
    """A gradient or state array for device parameter ``p``: same dtype and shape; a state
    array also writable and in ``p``'s memory order (a gradient is copied into it)."""
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


class DeviceEntry:
    """A validated device parameter: user object, numba view, address, identity."""

    __slots__ = ("obj", "arr", "addr", "dtype", "shape", "tptr", "stream")

    def __init__(self, obj: Any, name: str, stream: Any) -> None:
        d = rt.float_view(obj, name)
        if rt.readonly(obj):
            raise ValueError(f"{name} is read-only; parameters are updated in place")
        if _layout(d) is None:
            raise ValueError(
                f"{name} is not contiguous in device memory (shape {tuple(d.shape)}, "
                f"strides {tuple(d.strides)}); pass a contiguous array"
            )
        self.obj = obj
        self.arr = d
        self.addr = rt._pointer(d)
        self.dtype = d.dtype
        self.shape = tuple(d.shape)
        self.tptr = obj.data_ptr() if is_tensor(obj) else 0
        self.stream = stream

    @property
    def size(self) -> int:
        return self.arr.size

    @property
    def is_torch(self) -> bool:
        return bool(self.tptr)

    def current(self) -> bool:
        """False when a torch tensor's storage or shape was replaced since validation."""
        t = self.obj
        return not self.tptr or (t.data_ptr() == self.tptr and tuple(t.shape) == self.shape)

    def grad(self, g: Any, k: int) -> tuple[Any, int]:
        """Validate gradient ``g`` (grads[k]): (array to keep alive, device address). Fast
        paths for numba arrays and torch CUDA tensors of the parameter's dtype, shape and
        layout; other layouts are copied into the parameter's. A tensor with torch's lazy
        negative bit (its memory holds -g) is read as ``g.resolve_neg()``, as on the host."""
        if is_tensor(g) and g.is_neg():
            g = g.resolve_neg()
        if rt.is_numba_array(g):
            if g.dtype == self.dtype and g.shape == self.shape and _layout(g) == _layout(self.arr):
                return g, rt._pointer(g)
        elif self.tptr and is_tensor(g):
            if (
                g.is_cuda
                and g.dtype == self.obj.dtype
                and tuple(g.shape) == self.shape
                and g.is_contiguous()
                and _layout(self.arr) == "C"
            ):
                return g, g.data_ptr()
        d = _like(g, self.arr, f"grads[{k}]", f"params[{k}]", False, self.stream)
        return d, rt._pointer(d)


def _filled(e: DeviceEntry, value: float, stream) -> Any:
    """A new device array like parameter ``e`` (its library, its memory order) = ``value``."""
    obj = e.obj
    lib = rt._library(obj)
    if lib == "torch":
        torch = torch_module()
        return torch.full_like(obj.detach(), value, memory_format=torch.preserve_format)
    if lib == "cupy":
        import cupy

        with obj.device:
            return cupy.full(e.shape, value, dtype=e.dtype, order=_layout(e.arr) or "C")
    order = "F" if _layout(e.arr) == "F" and len(e.shape) > 1 else "C"
    return cuda.to_device(np.full(e.shape, value, dtype=e.dtype, order=order), stream=stream)


class OptimLaunches:
    """The host executor's optimizer functions (:mod:`fastact.host.optim`) for device
    arrays; mixed into :class:`fastact.cuda._executor.Executor` (``self.stream``)."""

    stream: Any
    OPTIM_CHUNK = CHUNK

    def entry(self, obj: Any, name: str) -> DeviceEntry:
        return DeviceEntry(obj, name, self.stream)

    @staticmethod
    def gradients(ents: list[DeviceEntry], grads: Any, k0: int) -> tuple[list, list, list]:
        """Validate a group's gradients (None skips): indices, objects to keep, addresses."""
        js, keeps, addrs = [], [], []
        for j, (e, g) in enumerate(zip(ents, grads, strict=True)):
            if g is not None:
                keep, addr = e.grad(g, k0 + j)
                js.append(j)
                keeps.append(keep)
                addrs.append(addr)
        return js, keeps, addrs

    @staticmethod
    def stale_entries(ents: list[DeviceEntry], k0: int) -> list[int]:
        return [j for j, e in enumerate(ents) if not e.current()]

    def state_address(self, x: Any, e: DeviceEntry, name: str, pname: str):
        d = _like(x, e.arr, name, pname, True, self.stream)
        return d, rt._pointer(d)

    @staticmethod
    def no_overlap(arrays: list, names: list[str]) -> None:
        spans = sorted(
            (rt.bounds(a) + (k,) for k, a in enumerate(arrays) if a.size), key=lambda s: s[0]
        )
        for (_, end, ka), (start, _, kb) in zip(spans, spans[1:], strict=False):
            if start < end:
                raise ValueError(
                    f"{names[ka]} and {names[kb]} share memory; every updated array must be "
                    "distinct"
                )

    def new_states(self, ents: list[DeviceEntry], value: float) -> list[tuple[Any, int]]:
        out = []
        for e in ents:
            obj = _filled(e, value, self.stream)
            out.append((obj, rt._pointer(rt.view(obj, "state"))))
        return out

    def optim_launch(
        self, kind, dt, ptrs, chunks, coefs, scalars, n_elements, tensors=False
    ) -> None:
        launch(kind, dt, ptrs, chunks, coefs, scalars, n_elements, self.stream)

    def optim_nonfinite(self, dt, ptrs, row, chunks, n_elements, tensors=False) -> np.ndarray:
        if not chunks.shape[0]:
            return np.zeros(0, np.bool_)
        return nonfinite_chunks(dt, ptrs, row, chunks, self.stream)

    def copy_state(self, v: Any, tensor_param: bool) -> Any:
        """A copy of one state value for ``state_dict``: device arrays stay on the device."""
        if is_tensor(v):
            torch = torch_module()
            return v.detach().clone(memory_format=torch.preserve_format)
        if rt.is_numba_array(v) or rt.interface(v) is not None:
            d = rt.view(v, "state")
            if rt._library(v) == "cupy":
                return v.copy()
            out = cuda.device_array(
                tuple(d.shape), d.dtype, order="F" if _layout(d) == "F" else "C"
            )
            rt.assign(out, d, self.stream)
            return out
        if isinstance(v, np.ndarray):
            return v.copy("K")
        return copy.deepcopy(v)

    def load_param_state(self, p: Any, value: Any, name: str) -> dict:
        """``load_state_dict``'s per-parameter state for device parameter ``p``: arrays
        (device arrays, NumPy arrays or torch tensors) are copied to the device in ``p``'s
        dtype and memory order; ``step`` becomes a float. Validates everything first."""
        if not isinstance(value, dict):
            raise TypeError(f"{name} must be a dict, got {type(value).__name__}")
        e = self.entry(p, "parameter")
        staged = {}
        for key, v in value.items():
            label = f"{name}[{key!r}]"
            if is_tensor(v) and v.is_neg():  # read only: its values, not its memory (-v)
                v = v.resolve_neg()
            if key == "step":
                try:
                    staged[key] = ("step", float(v))
                except (TypeError, ValueError):
                    raise TypeError(f"{name}['step'] must be a number, got {v!r}") from None
            elif v is None:
                continue
            elif rt.is_numba_array(v) or rt.interface(v) is not None:
                d = rt.view(v, label)
                if d.dtype.kind != "f":
                    raise TypeError(f"{label} has non-float dtype {d.dtype}")
                if tuple(d.shape) != e.shape:
                    raise ValueError(
                        f"{label} has shape {tuple(d.shape)} but its parameter has shape {e.shape}"
                    )
                staged[key] = ("device", d)
            elif isinstance(v, np.ndarray) or is_tensor(v):
                a = v.detach().cpu().numpy() if is_tensor(v) else v
                if a.dtype.kind != "f":
                    raise TypeError(f"{label} has non-float dtype {a.dtype}")
                if a.shape != e.shape:
                    raise ValueError(
                        f"{label} has shape {a.shape} but its parameter has shape {e.shape}"
                    )
                staged[key] = ("host", a)
            else:
                staged[key] = ("copy", copy.deepcopy(v))
        out = {}
        stream = self.stream
        for key, (kind, v) in staged.items():
            if kind in ("step", "copy"):
                out[key] = v
                continue
            if kind == "device" and v.dtype != e.dtype:
                v = v.copy_to_host(stream=stream)  # cast on the host (rare: dtype change)
                kind = "host"
            if kind == "host":
                order = "F" if _layout(e.arr) == "F" and len(e.shape) > 1 else "C"
                v = cuda.to_device(np.array(v, dtype=e.dtype, order=order), stream=stream)
            target = _filled(e, 0.0, stream)
            rt.assign(rt.view(target, key), v, stream)
            out[key] = target
        return out
