"""The device edge: device-array views, streams, output allocation and launch configuration.

Every fastact CUDA entry point goes through here once per call: ``view`` turns any object with
``__cuda_array_interface__`` into a numba device array without copying (and without
synchronising: the work is queued on the producer's stream, so ordering holds), ``stream_of``
picks that stream, ``empty`` allocates results with the input's own library (torch's caching
allocator for torch tensors, CuPy's pool for CuPy arrays), and ``blocks`` sizes grid-stride
launches from the device's multiprocessor count.
"""

from __future__ import annotations

import math
import sys
from typing import Any

import numpy as np
from numba import cuda

from fastact._core.arrays import is_tensor


def _load_array_support() -> None:
    """Import numba-cuda's NumPy array support before the first kernel compiles, under NumPy
    2.5 too: numba-cuda (0.30.4 and earlier) registers an overload of ``np.row_stack`` when its
    CUDA target first loads ``numba.cuda.np.arrayobj``, and NumPy 2.5 removed that alias of
    ``np.vstack``, so every first compile failed with ``AttributeError: module 'numpy' has
    no attribute 'row_stack'`` (seen on an H200 machine: numpy 2.5.2). The alias exists only
    while that module is imported, and the overload it registers is numba-cuda's vstack."""
    alias = "row_stack"
    if SIMULATOR or hasattr(np, alias):
        return
    setattr(np, alias, np.vstack)
    try:
        import numba.cuda.np.arrayobj  # noqa: F401
    except ImportError:  # an older numba-cuda layout: nothing registered there
        pass
    finally:
        delattr(np, alias)


#: True under ``NUMBA_ENABLE_CUDASIM=1`` (numba's CUDA simulator: Python threads, tiny sizes).
SIMULATOR = bool(cuda.config.ENABLE_CUDASIM)
#: Threads per block of every kernel (a power of two: the block reductions rely on it).
THREADS = 4 if SIMULATOR else 256
#: Resident blocks per multiprocessor a grid-stride launch aims for (2048 threads per SM on
#: sm_70 .. sm_90 = 8 blocks of 256), i.e. one full wave; more only adds scheduling.
BLOCKS_PER_SM = 8
#: In the simulator at most this many blocks (so the grid-stride loops are still exercised).
_SIM_BLOCKS = 2

_load_array_support()

FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
_SM_COUNT: dict[int, int] = {}


def device_id() -> int:
    """The current device's ordinal (0 in the simulator): keys the per-device caches."""
    if SIMULATOR:
        return 0
    return int(cuda.get_current_device().id)


def sm_count() -> int:
    """Multiprocessors of the current device (cached per device)."""
    if SIMULATOR:
        return 1
    dev = cuda.get_current_device()
    n = _SM_COUNT.get(dev.id)
    if n is None:
        n = _SM_COUNT[dev.id] = int(dev.MULTIPROCESSOR_COUNT)
    return n


def blocks(n: int, per_block: int = THREADS) -> int:
    """Blocks of a grid-stride launch over ``n`` work items of ``per_block`` per block."""
    return min(max(1, -(-n // per_block)), max_blocks())


def max_blocks() -> int:
    """Blocks of one full wave on the current device (the cap of every grid-stride launch)."""
    return _SIM_BLOCKS if SIMULATOR else sm_count() * BLOCKS_PER_SM


# ----------------------------------------------------------------------------- arrays
def is_numba_array(x: Any) -> bool:
    return bool(getattr(type(x), "__cuda_ndarray__", False))


def _plain(x: Any) -> Any:
    """torch tensors without autograd (their interface refuses tensors requiring grad);
    ``detach`` shares the storage, so this stays zero-copy."""
    if _library(x) == "torch":
        return x.detach()
    return x


def interface(x: Any) -> dict | None:
    """``x.__cuda_array_interface__`` (None when absent)."""
    try:
        return getattr(_plain(x), "__cuda_array_interface__", None)
    except Exception:
        return None


def view(x: Any, name: str):
    """``x`` as a numba device array (zero-copy), or TypeError naming ``name``. A torch
    tensor with a lazy negative or conjugate bit is refused: its interface gives the memory
    (``-x`` for ``torch._neg_view(x)``), not the values (callers that only read a tensor
    resolve it first)."""
    if is_numba_array(x):
        return x
    if is_tensor(x) and (x.is_neg() or x.is_conj()):
        raise TypeError(
            f"{name} has torch's lazy negative/conjugate bit (its memory holds other values "
            f"than it shows): pass {name}.resolve_neg() (or .resolve_conj())"
        )
    if interface(x) is not None:
        try:
            return cuda.as_cuda_array(_plain(x), sync=False)
        except Exception as exc:
            raise TypeError(f"{name}: its __cuda_array_interface__ is not usable: {exc}") from None
    raise TypeError(
        f"{name} must be a CUDA device array (numba device array, CuPy array or torch CUDA "
        f"tensor) like the other arguments, got {type(x).__name__}"
    )


def float_view(x: Any, name: str):
    """A float32/float64 device array view of ``x`` (TypeError otherwise)."""
    d = view(x, name)
    if d.dtype not in FLOATS:
        raise TypeError(f"{name} must be float32 or float64 on the device, got {d.dtype}")
    return d


def readonly(x: Any) -> bool:
    cai = None if is_numba_array(x) else interface(x)
    return bool(cai and cai["data"][1])


def stream_of(*xs: Any):
    """The stream of the first argument whose interface names one, else the default stream.

    numba device arrays carry their stream (``cuda.device_array(..., stream=s)``); the
    ``__cuda_array_interface__`` v3 ``stream`` field is a handle, 1 (legacy default stream) or
    2 (per-thread default stream); None/absent means no ordering is required.
    """
    if SIMULATOR:
        return cuda.default_stream()
    for x in xs:
        if x is None:
            continue
        if is_numba_array(x):
            s = x.stream
            if s:
                return s
            continue
        cai = interface(x)
        s = cai.get("stream") if cai else None
        if s is None or s == 0:
            continue
        if s == 1:
            return cuda.legacy_default_stream()
        if s == 2:
            return cuda.per_thread_default_stream()
        return cuda.external_stream(s)
    return cuda.default_stream()


def _pointer(d) -> int:
    if SIMULATOR:
        return int(d._ary.__array_interface__["data"][0])
    return int(d.__cuda_array_interface__["data"][0])


def bounds(d) -> tuple[int, int]:
    """[first byte, one past the last byte) of the memory ``d`` can reach."""
    p = _pointer(d)
    if d.size == 0:
        return p, p
    lo = hi = 0
    for n, s in zip(d.shape, d.strides, strict=False):
        if s < 0:
            lo += s * (n - 1)
        else:
            hi += s * (n - 1)
    return p + lo, p + hi + d.dtype.itemsize


def same_memory(a, b) -> bool:
    return a.shape == b.shape and a.strides == b.strides and _pointer(a) == _pointer(b)


def overlaps(a, b) -> bool:
    (a0, a1), (b0, b1) = bounds(a), bounds(b)
    return a0 < b1 and b0 < a1


def check_out(out: Any, shape: tuple, dtype: np.dtype, inputs: tuple, name: str = "out"):
    """Validate a caller's device output (shape, dtype, writable, no partial overlap)."""
    d = view(out, name)
    if tuple(d.shape) != tuple(shape):
        raise ValueError(f"{name} has shape {tuple(d.shape)}, expected {tuple(shape)}")
    if d.dtype != dtype:
        raise TypeError(f"{name} has dtype {d.dtype}, expected {dtype}")
    if readonly(out):
        raise ValueError(f"{name} is read-only")
    for a in inputs:
        if a is not None and a.size and d.size and overlaps(d, a) and not same_memory(d, a):
            raise ValueError(
                f"{name} partially overlaps an input array; pass a separate "
                "buffer or the input itself"
            )
    return d


def _library(x: Any) -> str:
    mod = type(x).__module__.split(".", 1)[0]
    return mod if mod in ("torch", "cupy") else "numba"


def empty(like: Any, shape: tuple, dtype: np.dtype, stream) -> tuple[Any, Any]:
    """A new C-contiguous device array from ``like``'s library: (user object, numba view)."""
    lib = _library(like)
    if lib == "torch":
        torch = sys.modules["torch"]
        tdt = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}[dtype]
        t = torch.empty(tuple(shape), dtype=tdt, device=like.device)
        return t, view(t, "result")
    if lib == "cupy":
        cupy = sys.modules["cupy"]
        with like.device:
            c = cupy.empty(tuple(shape), dtype=dtype)
        return c, view(c, "result")
    d = cuda.device_array(tuple(shape), dtype=dtype, stream=stream)
    return d, d


def result(out: Any, like: Any, shape: tuple, dtype: np.dtype, inputs: tuple, stream):
    """(object to return, C-contiguous numba array to write, strided target or None): a new
    array from ``like``'s library, or the caller's ``out`` (through a temporary when it is
    strided or overlaps an input)."""
    if out is None:
        res, o = empty(like, shape, dtype, stream)
        return res, o, None
    o = check_out(out, shape, dtype, inputs)
    if o.is_c_contiguous() and not any(
        a is not None and a.size and o.size and overlaps(o, a) for a in inputs
    ):
        return out, o, None
    tmp = cuda.device_array(tuple(shape), dtype=dtype, stream=stream)
    return out, tmp, o


def finish(res: Any, written, target, stream) -> Any:
    """Scatter ``written`` into ``target`` (when :func:`result` returned one); return res."""
    if target is not None:
        assign(target, written, stream)
    return res


def flat(d):
    """A 1-D view of a C-contiguous device array."""
    return d.reshape(d.size)


def assign(dst, src, stream) -> None:
    """``dst[...] = src`` on ``stream`` (any strides)."""
    if SIMULATOR:
        dst[...] = src
    else:
        dst.setitem(Ellipsis, src, stream=stream)


def contiguous(d, stream):
    """``d`` itself when C-contiguous, else a C-contiguous device copy (on ``stream``)."""
    if d.is_c_contiguous():
        return d
    tmp = cuda.device_array(tuple(d.shape), dtype=d.dtype, stream=stream)
    assign(tmp, d, stream)
    return tmp


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def prod(shape) -> int:
    return int(math.prod(shape))
