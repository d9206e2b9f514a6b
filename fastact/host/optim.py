"""Optimizer steps on host arrays (NumPy arrays, CPU torch tensors through zero-copy views).

The loop templates of :mod:`fastact.kernels.optim` compiled serial and parallel, and the
host side of the optimizer driver (:mod:`fastact.optim.driver`): validated parameter entries
(with their addresses), gradient and state checks, new state arrays, the launches. The CUDA
executor has the same functions (:mod:`fastact.cuda._optim`).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np

from fastact._core.arrays import FLOAT_DTYPES, is_tensor, tensor_view, torch_module
from fastact._core.jit import specialize
from fastact._core.threads import parallel_by_size
from fastact._core.thresholds import THRESHOLDS
from fastact.kernels.optim import TEMPLATES, address

__all__ = [
    "OPTIM_CHUNK",
    "SERIAL_BELOW",
    "Entry",
    "as_array",
    "bump_versions",
    "copy_state",
    "entry",
    "is_param",
    "stale_entries",
    "load_param_state",
    "new_states",
    "no_overlap",
    "optim_launch",
    "optim_nonfinite",
    "state_address",
]

#: Elements per chunk of the chunk table (16K: a few arrays of a chunk stay in L2).
OPTIM_CHUNK = 16384
#: Launches over fewer elements than this run the serial build of the kernel.
SERIAL_BELOW = THRESHOLDS["optimizer"]

#: name -> (parallel kernel, serial kernel); compiled lazily per dtype on first use.
KERNELS: dict[str, tuple[Any, Any]] = {
    name: (
        specialize(tpl, f"optim_{name}_parallel", parallel=True),
        specialize(tpl, f"optim_{name}_serial"),
    )
    for name, tpl in TEMPLATES.items()
}
_PROTOS = {dt: np.empty(0, dt) for dt in FLOAT_DTYPES}


def optim_launch(kind, dt, ptrs, chunks, coefs, scalars, n_elements: int) -> None:
    """Run kernel ``kind`` over a pointer and chunk table (serial below SERIAL_BELOW)."""
    if chunks.shape[0] == 0:
        return
    parallel, serial = KERNELS[kind]
    kernel = parallel if parallel_by_size(n_elements, SERIAL_BELOW) else serial
    proto = _PROTOS.get(dt)
    kernel(_PROTOS[np.dtype(dt)] if proto is None else proto, ptrs, chunks, coefs, *scalars)


def optim_nonfinite(dt, ptrs, row: int, chunks, n_elements: int) -> np.ndarray:
    """Boolean per chunk: array ``row`` of the chunk holds a NaN or an infinity."""
    out = np.zeros(chunks.shape[0], dtype=np.bool_)
    if chunks.shape[0]:
        parallel, serial = KERNELS["nonfinite"]
        kernel = parallel if parallel_by_size(n_elements, SERIAL_BELOW) else serial
        kernel(_PROTOS[np.dtype(dt)], ptrs, row, chunks, out)
    return out


# ----------------------------------------------------------------------------- arrays
def is_param(x: Any) -> bool:
    """A host parameter: a NumPy array or a torch tensor."""
    return isinstance(x, np.ndarray) or is_tensor(x)


def as_array(x: Any, name: str) -> np.ndarray:
    """NumPy array or torch tensor -> NumPy array (a zero-copy view for tensors)."""
    if isinstance(x, np.ndarray):
        return x
    if is_tensor(x):
        return tensor_view(x, name)
    raise TypeError(f"{name} must be a NumPy array or a torch tensor, got {type(x).__name__}")


def _layout_ok(a: np.ndarray) -> bool:
    f = a.flags
    return (f.c_contiguous or f.f_contiguous) and f.aligned


def _same_layout(a: np.ndarray, p: np.ndarray) -> bool:
    """``a`` enumerates its elements in the same memory order as ``p`` (both contiguous)."""
    fa, fp = a.flags, p.flags
    return fa.aligned and (
        (fa.c_contiguous and fp.c_contiguous) or (fa.f_contiguous and fp.f_contiguous)
    )


class Entry:
    """A validated parameter: its NumPy view, address, layout and torch identity."""

    __slots__ = (
        "obj",
        "arr",
        "addr",
        "dtype",
        "shape",
        "c",
        "f",
        "tdtype",
        "tptr",
        "tcls",
        "tlayout",
    )

    def __init__(self, obj: Any, name: str) -> None:
        self.obj = obj
        arr = as_array(obj, name)
        if arr.dtype not in FLOAT_DTYPES:
            raise TypeError(f"{name} has dtype {arr.dtype}; only float32 and float64 are supported")
        if not arr.flags.writeable:
            raise ValueError(f"{name} is read-only; parameters are updated in place")
        if not _layout_ok(arr):
            raise ValueError(
                f"{name} is not contiguous in memory (shape {arr.shape}, strides {arr.strides}); "
                "pass a contiguous array (np.ascontiguousarray) or tensor (.contiguous())"
            )
        self.arr = arr
        self.addr = address(arr)
        self.dtype = arr.dtype
        self.shape = arr.shape
        self.c = arr.flags.c_contiguous
        self.f = arr.flags.f_contiguous
        if is_tensor(obj):
            torch = torch_module()
            self.tdtype = obj.dtype
            self.tptr = obj.data_ptr()
            self.tcls, self.tlayout = torch.Tensor, torch.strided
        else:
            self.tdtype = None
            self.tptr = 0
            self.tcls = self.tlayout = None

    @property
    def size(self) -> int:
        return self.arr.size

    @property
    def is_torch(self) -> bool:
        return self.tdtype is not None

    def grad(self, g: Any, k: int) -> tuple[Any, int]:
        """Validate gradient ``g`` (grads[k]); return (object to keep alive, address).
        Other memory layouts are copied into the parameter's order."""
        if type(g) is np.ndarray:
            if g.dtype == self.dtype and g.shape == self.shape:
                fl = g.flags
                if fl.aligned and ((self.c and fl.c_contiguous) or (self.f and fl.f_contiguous)):
                    return g, address(g)
        elif self.tdtype is not None and isinstance(g, self.tcls):
            if (
                g.dtype is self.tdtype
                and self.c
                and g.shape == self.shape
                and g.is_cpu
                and g.layout is self.tlayout
                and g.is_contiguous()
            ):
                return g, g.data_ptr()
        name, pname = f"grads[{k}]", f"params[{k}]"
        a = as_array(g, name)
        if a.dtype != self.dtype:
            raise TypeError(f"{name} has dtype {a.dtype} but {pname} has dtype {self.dtype}")
        if a.shape != self.shape:
            raise ValueError(f"{name} has shape {a.shape} but {pname} has shape {self.shape}")
        if not _same_layout(a, self.arr):
            a = np.array(a, order="C" if self.c else "F")
        return a, address(a)


def entry(obj: Any, name: str) -> Entry:
    return Entry(obj, name)


def stale_entries(ents: list[Entry], k0: int) -> list[int]:
    """Indices of the entries whose tensor's storage, shape or dtype changed since they were
    validated (to rebuild); ValueError when an array became read-only. One call per group and
    step: the loop stays in one function (a method call per entry costs ~10% of a step over
    160 small tensors)."""
    out: list[int] = []
    for j, e in enumerate(ents):
        if e.tdtype is not None:
            t = e.obj
            if t.data_ptr() != e.tptr or t.shape != e.shape or t.dtype is not e.tdtype:
                out.append(j)
        elif not e.arr.flags.writeable:
            raise ValueError(f"params[{k0 + j}] is read-only; parameters are updated in place")
    return out


def state_address(x: Any, e: Entry, name: str, pname: str) -> tuple[np.ndarray, int]:
    """A state array for parameter ``e``: same dtype, shape and memory order, writable."""
    a = as_array(x, name)
    if a.dtype != e.dtype:
        raise TypeError(f"{name} has dtype {a.dtype} but {pname} has dtype {e.dtype}")
    if a.shape != e.shape:
        raise ValueError(f"{name} has shape {a.shape} but {pname} has shape {e.shape}")
    if not a.flags.writeable:
        raise ValueError(f"{name} is read-only; optimizer state is updated in place")
    if not _same_layout(a, e.arr):
        raise ValueError(f"{name} does not have the memory layout of {pname} (shape {e.shape})")
    return a, address(a)


def no_overlap(arrays: Sequence[np.ndarray], names: Sequence[str]) -> None:
    """ValueError if two of the (contiguous) arrays share memory: a parallel update would race."""
    spans = [(address(a), a.nbytes, k) for k, a in enumerate(arrays) if a.nbytes]
    if len(spans) < 2:
        return
    tab = np.array(spans, dtype=np.int64)
    order = np.argsort(tab[:, 0], kind="stable")
    start, end = tab[order, 0], tab[order, 0] + tab[order, 1]
    bad = np.nonzero(start[1:] < end[:-1])[0]
    if bad.size:
        a, b = names[tab[order[bad[0]], 2]], names[tab[order[bad[0] + 1], 2]]
        raise ValueError(f"{a} and {b} share memory; every updated array must be distinct")


def new_states(ents: list[Entry], value: float) -> list[tuple[Any, int]]:
    """State arrays for ``ents`` (one dtype), filled with ``value``: views into one flat buffer
    (each start padded to 64 bytes), so big models get few large allocations (huge pages)
    instead of many small ones. Returns (state object, address) pairs; torch parameters get
    torch tensors."""
    if not ents:
        return []
    dt = ents[0].dtype
    pad = max(1, 64 // dt.itemsize)
    sizes = [e.arr.size for e in ents]
    offsets = np.cumsum([0] + [-(-n // pad) * pad for n in sizes])
    buf = np.zeros(int(offsets[-1]), dtype=dt)
    if value != 0:
        buf.fill(value)
    out = []
    for e, n, off in zip(ents, sizes, offsets[:-1], strict=True):
        a = buf[int(off) : int(off) + n].reshape(e.shape, order="C" if e.c else "F")
        obj = torch_module().from_numpy(a) if e.tdtype is not None else a
        out.append((obj, address(a)))
    return out


def bump_versions(params: list) -> None:
    """Tell autograd that these torch tensors changed in place (as torch's own steps do)."""
    if params:
        torch_module().autograd.graph.increment_version(params)


def copy_state(v: Any, tensor_param: bool) -> Any:
    """A copy of one state value for ``state_dict`` (torch tensors for torch parameters, so
    that torch.optim can load it)."""
    torch = torch_module()
    if isinstance(v, np.ndarray):
        return torch.from_numpy(np.copy(v, order="K")) if tensor_param else v.copy("K")
    if is_tensor(v):
        return v.detach().clone(memory_format=torch.preserve_format)
    return copy.deepcopy(v)


def load_param_state(p: Any, value: Any, name: str) -> dict:
    """``load_state_dict``'s state for parameter ``p``: arrays copied in ``p``'s dtype and
    memory order (torch tensors for torch parameters), ``step`` a float. Validates all first."""
    if not isinstance(value, dict):
        raise TypeError(f"{name} must be a dict, got {type(value).__name__}")
    arr = as_array(p, "parameter")
    out = {}
    for key, v in value.items():
        if key == "step":
            try:
                out[key] = float(v)
            except (TypeError, ValueError):
                raise TypeError(f"{name}['step'] must be a number, got {v!r}") from None
        elif isinstance(v, np.ndarray) or is_tensor(v):
            a = as_array(v, f"{name}[{key!r}]")
            if a.shape != arr.shape:
                raise ValueError(
                    f"{name}[{key!r}] has shape {a.shape} but its parameter has shape {arr.shape}"
                )
            if a.dtype.kind != "f":
                raise TypeError(f"{name}[{key!r}] has non-float dtype {a.dtype}")
            order = "C" if arr.flags.c_contiguous else "F"
            a = np.array(a, dtype=arr.dtype, order=order, copy=True)
            out[key] = torch_module().from_numpy(a) if is_tensor(p) else a
        elif v is None:
            continue
        else:
            out[key] = copy.deepcopy(v)
    return out
