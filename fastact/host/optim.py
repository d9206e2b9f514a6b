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

from fastact._core.arrays import FLOAT_DTYPES, is_tensor, not_masked, tensor_view, torch_module
from fastact._core.jit import EXACT_FASTMATH, address, specialize
from fastact._core.threads import parallel_by_size
from fastact._core.thresholds import THRESHOLDS
from fastact._core.torch_pool import pool_threads, run_split
from fastact.kernels.lowp import dequantize_blocks, quantize_blocks
from fastact.kernels.optim import (
    BF16,
    CODES,
    F32,
    LEGACY_SCALE_SUFFIX,
    LOWP_INNER,
    LOWP_TEMPLATES,
    SCALE_SUFFIX,
    TEMPLATE_FASTMATH,
    TEMPLATES,
    UPDATES,
    UPDATES8,
    Layout,
    Storage,
    general_only,
    no_fold8,
)

__all__ = [
    "OPTIM_CHUNK",
    "SERIAL_BELOW",
    "Entry",
    "as_array",
    "host_view",
    "copy_state",
    "entry",
    "is_param",
    "stale_entries",
    "gradients",
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
    name: tuple(
        specialize(tpl, f"optim_{name}_{mode}", parallel=par, fastmath=TEMPLATE_FASTMATH.get(name))
        for mode, par in (("parallel", True), ("serial", False))
    )
    for name, tpl in TEMPLATES.items()
}
_PROTOS = {dt: np.empty(0, dt) for dt in (*FLOAT_DTYPES, BF16, CODES)}


_LOWP: dict[tuple, Any] = {}
#: True: the low-precision launches run the general loop even for the plain options (for
#: tests: the low-precision loops are compiled without fast-math, so both loops, serial and
#: parallel builds and any chunking give the same bits; tests/test_lowp_optim.py checks it).
LOWP_GENERAL_ONLY = False


def _lowp_kernel(kind: str, layout: Layout, rows: tuple, sr: bool, parallel: bool) -> Any:
    """The low-precision loop of kernel ``kind`` for the used rows (``rows[r]``: None when
    unused, else whether the row's code is signed) and rounding ``sr``, compiled lazily."""
    storage = "8bit" if layout.q8 else "elementwise"
    general = LOWP_GENERAL_ONLY
    key = (storage, kind, rows, sr, parallel, general)
    k = _LOWP.get(key)
    if k is None:
        rows = tuple(rows) + (None,) * (3 - len(rows))
        tag = "".join("x" if r is None else ("s" if r else "u") for r in rows)
        name = f"optim_{storage[:2]}_{kind}_{tag}_{int(sr)}_{'par' if parallel else 'ser'}"
        name += "_gen" if general else ""
        consts = {f"U{r}": rows[r] is not None for r in range(3)}
        consts.update({f"S{r}": bool(rows[r]) for r in range(3)})
        update, plain = UPDATES[kind]
        plain = general_only if general else plain
        if storage == "8bit":
            update, consts["_fold"] = UPDATES8.get(kind, (update, no_fold8))
        inner, inner_tpl = LOWP_INNER[storage]
        for suffix, flag in (("", False), ("_plain", True)):
            consts[inner + suffix] = specialize(
                inner_tpl, f"{name}_inner{suffix}", fastmath=EXACT_FASTMATH, noalias=True,
                inline=False, _update=update, SR=sr, PLAIN=flag, **consts,
            )  # fmt: skip
        k = specialize(
            LOWP_TEMPLATES[storage], name, parallel=parallel, fastmath=EXACT_FASTMATH,
            _update=update, _plain=plain, SR=sr, **consts,
        )  # fmt: skip
        _LOWP[key] = k
    return k


def optim_launch(
    kind,
    layout,
    ptrs,
    chunks,
    coefs,
    scalars,
    n_elements: int,
    rows: tuple = (),
    key: int = -1,
    tensors: bool = False,
) -> None:
    """Run kernel ``kind`` over a pointer and chunk table (serial below SERIAL_BELOW; the
    serial build on torch's thread pool, split by chunks, where
    :func:`~fastact._core.torch_pool.pool_threads` says so: ``tensors``, the parameters are
    torch tensors).

    ``layout``: a :class:`~fastact.kernels.optim.Layout` (or a dtype: native storage). The
    low-precision loops also take ``rows`` (per state row None when unused, else whether its
    8-bit code is signed) and ``key`` (>= 0: stochastic rounding of bfloat16 parameters with
    this 32-bit key; -1: round to nearest even)."""
    if chunks.shape[0] == 0:
        return
    pool = pool_threads(n_elements, SERIAL_BELOW, tensors)
    par = not pool and parallel_by_size(n_elements, SERIAL_BELOW)
    if not isinstance(layout, Layout):
        layout = Layout(np.dtype(layout), np.dtype(layout))
    if layout.native:
        parallel, serial = KERNELS[kind]
        proto = _PROTOS.get(layout.param)
        if proto is None:
            proto = _PROTOS[np.dtype(layout.param)]
        args = (proto, ptrs, chunks, coefs, *scalars)
        split = 2
        kernel = parallel if par else serial
    else:
        kernel = _lowp_kernel(kind, layout, tuple(rows), key >= 0, par)
        args = (
            _PROTOS[layout.param], _PROTOS[layout.state], ptrs, chunks, coefs, layout.block,
            max(key, 0), tuple(scalars),
        )  # fmt: skip
        split = 3
    if pool:
        run_split(kernel, args, (split,), pool)
    else:
        kernel(*args)


def optim_nonfinite(dt, ptrs, row: int, chunks, n_elements: int, tensors: bool = False):
    """Boolean per chunk: array ``row`` of the chunk holds a NaN or an infinity (``dt``: the
    array's dtype or a Layout, whose parameter dtype is the gradient's; ``tensors``: as in
    :func:`optim_launch`)."""
    if isinstance(dt, Layout):
        dt = dt.param
    out = np.zeros(chunks.shape[0], dtype=np.bool_)
    if chunks.shape[0]:
        parallel, serial = KERNELS["nonfinite"]
        args = (_PROTOS[np.dtype(dt)], ptrs, row, chunks, out)
        pool = pool_threads(n_elements, SERIAL_BELOW, tensors)
        if pool:
            run_split(serial, args, (3, 4), pool)
        else:
            kernel = parallel if parallel_by_size(n_elements, SERIAL_BELOW) else serial
            kernel(*args)
    return out


# ----------------------------------------------------------------------------- arrays
def is_param(x: Any) -> bool:
    """A host parameter: a NumPy array or a torch tensor."""
    return isinstance(x, np.ndarray) or is_tensor(x)


def _is_bf16_dtype(dt: np.dtype) -> bool:
    """ml_dtypes' bfloat16 (checked by name: ml_dtypes is only imported when present)."""
    return dt.name == "bfloat16" and dt.itemsize == 2


def host_view(x: Any, name: str) -> tuple[np.ndarray, bool]:
    """NumPy array or torch tensor -> (NumPy array, is bfloat16); bfloat16 data (torch
    bfloat16 tensors, NumPy arrays of ml_dtypes.bfloat16) is viewed as its uint16 bits; a
    masked array is refused (:func:`~fastact._core.arrays.not_masked`: a step would ignore
    its mask)."""
    if isinstance(x, np.ndarray):
        if type(x) is not np.ndarray:
            not_masked(x, name)
        if _is_bf16_dtype(x.dtype):
            return x.view(np.uint16), True
        return x, False
    if is_tensor(x):
        if x.is_neg():  # (memory holds -x; a gradient is resolved by Entry.grad before this)
            raise TypeError(
                f"{name} has torch's lazy negative bit (torch._neg_view, the .imag of a "
                f"conjugated complex tensor) and cannot be updated in place: pass "
                f"{name}.resolve_neg()"
            )
        if x.dtype is torch_module().bfloat16:
            return tensor_view(x.view(torch_module().int16), name).view(np.uint16), True
        return tensor_view(x, name), False
    raise TypeError(f"{name} must be a NumPy array or a torch tensor, got {type(x).__name__}")


def as_array(x: Any, name: str) -> np.ndarray:
    """NumPy array or torch tensor -> NumPy array (a zero-copy view for tensors; bfloat16
    data as its uint16 bits)."""
    if type(x) is np.ndarray and not _is_bf16_dtype(x.dtype):
        return x
    return host_view(x, name)[0]


def _dtype_name(dt: np.dtype, bf16: bool) -> str:
    return "bfloat16" if bf16 else str(dt)


def _layout_ok(a: np.ndarray) -> bool:
    f = a.flags
    return (f.c_contiguous or f.f_contiguous) and f.aligned


def _unaligned(a: np.ndarray, name: str, obj: Any) -> str:
    """The ValueError message for an array the kernels cannot update in place because its
    address is not a multiple of its element size (``np.frombuffer`` / ``torch.frombuffer``
    at an odd offset): it may well be contiguous, which the message said it was not. The
    remedy is worded for what the caller passed (``obj``: a tensor or an array)."""
    made, copy = (
        ("torch.frombuffer", ".clone()") if is_tensor(obj) else ("np.frombuffer", "np.array(...)")
    )
    return (
        f"{name} is not aligned (its address is not a multiple of its {a.itemsize}-byte "
        f"elements, e.g. {made} at an odd offset); pass an aligned copy ({copy})"
    )


def _same_layout(a: np.ndarray, p: np.ndarray) -> bool:
    """``a`` enumerates its elements in the same memory order as ``p`` (both contiguous)."""
    fa, fp = a.flags, p.flags
    return fa.aligned and (
        (fa.c_contiguous and fp.c_contiguous) or (fa.f_contiguous and fp.f_contiguous)
    )


class Entry:
    """A validated parameter: its NumPy view (bfloat16: uint16 bits), address, layout and
    torch identity."""

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
        "bf16",
    )

    def __init__(self, obj: Any, name: str) -> None:
        self.obj = obj
        if is_tensor(obj) and obj.is_inference() and not torch_module().is_inference_mode_enabled():
            raise RuntimeError(  # torch's error (torch's steps raise it after writing)
                f"{name} is an inference tensor: Inplace update to inference tensor outside "
                "InferenceMode is not allowed (make a clone outside inference mode)"
            )
        arr, bf16 = host_view(obj, name)
        if arr.dtype not in FLOAT_DTYPES and not bf16:
            raise TypeError(
                f"{name} has dtype {arr.dtype}; only float32, float64 and bfloat16 are supported"
            )
        if not arr.flags.writeable:
            raise ValueError(f"{name} is read-only; parameters are updated in place")
        if not arr.flags.aligned:
            raise ValueError(_unaligned(arr, name, obj))
        if not _layout_ok(arr):
            raise ValueError(
                f"{name} is not contiguous in memory (shape {arr.shape}, strides {arr.strides}); "
                "pass a contiguous array (np.ascontiguousarray) or tensor (.contiguous())"
            )
        self.arr = arr
        self.bf16 = bf16
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

    @property
    def dtype_name(self) -> str:
        return _dtype_name(self.dtype, self.bf16)

    def grad(self, g: Any, k: int) -> tuple[Any, int]:
        """Validate gradient ``g`` (grads[k]); return (object to keep alive, address).
        Other memory layouts are copied into the parameter's order. A tensor with torch's
        lazy negative bit (``torch._neg_view``, the ``.imag`` of a conjugated complex
        tensor) holds the negated values in memory: it is read as ``g.resolve_neg()`` (a
        temporary copy), the values torch's optimizers step with."""
        if type(g) is np.ndarray:
            if g.dtype == self.dtype and g.shape == self.shape:
                fl = g.flags
                if fl.aligned and ((self.c and fl.c_contiguous) or (self.f and fl.f_contiguous)):
                    return g, address(g)
        elif is_tensor(g) and g.is_neg():
            g = g.resolve_neg()
        if self.tdtype is not None and isinstance(g, self.tcls):
            if (
                g.dtype is self.tdtype
                and self.c
                and not g.is_nested  # (no shape: host_view names it)
                and g.shape == self.shape
                and g.is_cpu
                and g.layout is self.tlayout
                and g.is_contiguous()
            ):
                return g, g.data_ptr()
        name, pname = f"grads[{k}]", f"params[{k}]"
        a, bf16 = host_view(g, name)
        if a.dtype != self.dtype or bf16 != self.bf16:
            raise TypeError(
                f"{name} has dtype {_dtype_name(a.dtype, bf16)} but {pname} has dtype "
                f"{self.dtype_name}"
            )
        if a.shape != self.shape:
            raise ValueError(f"{name} has shape {a.shape} but {pname} has shape {self.shape}")
        if not _same_layout(a, self.arr):
            a = np.array(a, order="C" if self.c else "F")
        return a, address(a)


def entry(obj: Any, name: str) -> Entry:
    return Entry(obj, name)


def gradients(ents: list[Entry], grads: Any, k0: int) -> tuple[list, list, list]:
    """Validate a group's gradients (``grads[j]`` belongs to ``ents[j]``, named
    ``grads[k0 + j]``; None skips the parameter): the indices that have one, the objects to
    keep alive and their addresses. One call per group and step, the common case (a NumPy
    array matching its parameter) inlined: a method call per parameter costs ~5% of a step
    over 160 small tensors."""
    js: list[int] = []
    keeps: list = []
    addrs: list[int] = []
    ndarray = np.ndarray
    for j, (e, g) in enumerate(zip(ents, grads, strict=True)):
        if g is None:
            continue
        if type(g) is ndarray:
            if g.dtype == e.dtype and g.shape == e.shape:
                fl = g.flags
                if fl.aligned and ((e.c and fl.c_contiguous) or (e.f and fl.f_contiguous)):
                    js.append(j)
                    keeps.append(g)
                    addrs.append(address(g))
                    continue
        elif g.__class__ is e.tcls and g.dtype is e.tdtype and e.c:
            # a torch gradient like its (C-contiguous) parameter: Entry.grad's fast path
            try:
                same = (
                    g.shape == e.shape
                    and g.is_cpu
                    and g.layout is e.tlayout
                    and g.is_contiguous()
                    and not g.is_neg()  # (its memory holds -g: Entry.grad reads g.resolve_neg())
                )
            except RuntimeError:  # a nested tensor has no shape (Entry.grad names it)
                same = False
            if same:
                js.append(j)
                keeps.append(g)
                addrs.append(g.data_ptr())
                continue
        keep, addr = e.grad(g, k0 + j)
        js.append(j)
        keeps.append(keep)
        addrs.append(addr)
    return js, keeps, addrs


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


def state_address(
    x: Any, e: Entry, name: str, pname: str, storage: Storage | None = None
) -> tuple[np.ndarray, int]:
    """A state array for parameter ``e``, writable: by default of the parameter's dtype,
    shape and memory order; with ``storage``, of its dtype (bfloat16: a torch bfloat16
    tensor, an ml_dtypes.bfloat16 array or uint16 bits) and shape (block scales: 1-d)."""
    a, bf16 = host_view(x, name)
    if storage is None:
        want, want_bf16, shape = e.dtype, e.bf16, e.shape
    else:
        want, want_bf16 = storage.dtype, storage.bf16
        shape = storage.shape(e.shape, e.size)
        if want_bf16 and a.dtype == BF16:
            bf16 = True  # uint16 arrays hold bfloat16 bits (NumPy without ml_dtypes)
    if a.dtype != want or bf16 != want_bf16:
        raise TypeError(
            f"{name} has dtype {_dtype_name(a.dtype, bf16)} but {_dtype_name(want, want_bf16)} "
            f"is expected for {pname}"
            + ("" if storage is None else f" ({'block scales' if storage.block else 'state'})")
        )
    if a.shape != shape:
        raise ValueError(f"{name} has shape {a.shape} but {shape} is expected for {pname}")
    if not a.flags.writeable:
        raise ValueError(f"{name} is read-only; optimizer state is updated in place")
    if not a.flags.aligned:
        raise ValueError(_unaligned(a, name, x))
    ok = _layout_ok(a) if (storage is not None and storage.block) else _same_layout(a, e.arr)
    if not ok:
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


def _bf16_numpy_dtype() -> np.dtype:
    """ml_dtypes.bfloat16 when ml_dtypes is installed, else uint16 (the bits)."""
    try:
        import ml_dtypes
    except ImportError:
        return BF16
    return np.dtype(ml_dtypes.bfloat16)


def _wrap(a: np.ndarray, bf16: bool, torch_param: bool) -> Any:
    """The user-visible object of a new state array (a view of ``a``)."""
    if torch_param:
        t = torch_module().from_numpy(a)
        return t.view(torch_module().bfloat16) if bf16 else t
    return a.view(_bf16_numpy_dtype()) if bf16 else a


def new_states(
    ents: list[Entry], value: float, storage: Storage | None = None
) -> list[tuple[Any, int]]:
    """State arrays for ``ents`` (one dtype), filled with ``value``: views into one flat buffer
    (each start padded to 64 bytes), so big models get few large allocations (huge pages)
    instead of many small ones. Returns (state object, address) pairs; torch parameters get
    torch tensors. ``storage``: the arrays' dtype and shape (default: the parameter's;
    bfloat16: torch bfloat16 tensors, or ml_dtypes.bfloat16 arrays when ml_dtypes is
    installed, else uint16 bits; ``value`` is rounded to nearest even)."""
    if not ents:
        return []
    dt = ents[0].dtype if storage is None else storage.dtype
    bf16 = ents[0].bf16 if storage is None else storage.bf16
    shapes = [e.shape if storage is None else storage.shape(e.shape, e.size) for e in ents]
    pad = max(1, 64 // dt.itemsize)
    sizes = [int(np.prod(sh, dtype=np.int64)) for sh in shapes]
    offsets = np.cumsum([0] + [-(-n // pad) * pad for n in sizes])
    buf = np.zeros(int(offsets[-1]), dtype=dt)
    if value != 0:
        buf.fill(_bf16_bits(value) if bf16 else value)
    out = []
    for e, n, sh, off in zip(ents, sizes, shapes, offsets[:-1], strict=True):
        order = "C" if (e.c or len(sh) == 1) else "F"
        a = buf[int(off) : int(off) + n].reshape(sh, order=order)
        out.append((_wrap(a, bf16, e.tdtype is not None), address(a)))
    return out


def _bf16_bits(x: Any) -> np.ndarray:
    """float32 values -> bfloat16 bits, round to nearest even (NaN stays NaN)."""
    b = np.asarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    r = ((b + 0x7FFF + ((b >> 16) & 1)) >> 16).astype(np.uint16)
    nan = np.isnan(np.asarray(x, dtype=np.float32))
    return np.where(nan, np.uint16(0x7FC0) | (b >> 16).astype(np.uint16) & 0x8000, r)


def _bf16_float(bits: np.ndarray) -> np.ndarray:
    return (bits.astype(np.uint32) << 16).view(np.float32)


def copy_state(v: Any, tensor_param: bool) -> Any:
    """A copy of one state value for ``state_dict`` (torch tensors for torch parameters, so
    that torch.optim can load it)."""
    torch = torch_module()
    if isinstance(v, np.ndarray):
        if tensor_param:
            a, bf16 = host_view(v, "state")
            return _wrap(np.copy(a, order="K"), bf16, True)
        return v.copy("K")
    if is_tensor(v):
        return v.detach().clone(memory_format=torch.preserve_format)
    return copy.deepcopy(v)


def _as_float32(a: np.ndarray, bf16: bool) -> np.ndarray:
    return _bf16_float(a) if bf16 else a.astype(np.float32, copy=False)


def load_param_state(
    p: Any,
    value: Any,
    name: str,
    layout: Layout | None = None,
    rows: dict | None = None,
    code_block: int = 0,
) -> dict:
    """``load_state_dict``'s state for parameter ``p``: arrays copied in ``p``'s dtype and
    memory order (torch tensors for torch parameters), ``step`` a float. Validates all first.

    With ``layout`` (the parameter's state storage) and ``rows`` (state key -> the row's
    code is signed), the state rows are converted to that storage: float arrays (any float
    dtype, bfloat16 included) are cast or rounded, or quantized block-wise for 8-bit
    storage; 8-bit codes with their ``<key>_f8absmax`` scales are copied (same block size
    and memory order as ``p``'s) or decoded (then requantized for 8-bit storage), in blocks
    of ``code_block`` (the loaded group's own block_size, which the scales must fit; 0, none
    given: inferred from their number, a power of two first) over the codes' own memory
    order: the order of the parameter they were written for, which ``state_dict`` keeps
    (a Fortran-ordered parameter's codes are Fortran-ordered, as torch's state tensors keep
    their parameter's strides). Codes with ``<key>_absmax`` scales (fastact's earlier
    8-bit code) are refused: their bytes mean other values."""
    if not isinstance(value, dict):
        raise TypeError(f"{name} must be a dict, got {type(value).__name__}")
    e = entry(p, "parameter")
    rows = rows or {}
    torch_param = is_tensor(p)
    order = "C" if e.c else "F"
    walk = _walk(e.shape, range(len(e.shape)) if e.c else range(len(e.shape) - 1, -1, -1))
    out: dict = {}
    staged: dict = {}
    for key, v in value.items():
        label = f"{name}[{key!r}]"
        if key == "step":
            try:
                out[key] = float(v)
            except (TypeError, ValueError):
                raise TypeError(f"{name}['step'] must be a number, got {v!r}") from None
        elif isinstance(v, np.ndarray) or is_tensor(v):
            if is_tensor(v) and v.is_neg():  # read only: its values, not its memory (-v)
                v = v.resolve_neg()
            staged[key] = (*host_view(v, label), label)
        elif v is not None:
            out[key] = copy.deepcopy(v)
    for key in staged:
        base = key[: -len(LEGACY_SCALE_SUFFIX)] if key.endswith(LEGACY_SCALE_SUFFIX) else None
        if base is not None and base in rows:
            raise ValueError(
                f"{name}[{key!r}]: 8-bit state saved with fastact's earlier 8-bit code (block "
                f"scales under '<key>{LEGACY_SCALE_SUFFIX}'), whose codes this version reads "
                f"differently; load it with the fastact version that saved it into a float32 "
                f"or bfloat16 optimizer and save that state dict instead"
            )
    for key, (a, bf16, label) in staged.items():
        base = key[: -len(SCALE_SUFFIX)] if key.endswith(SCALE_SUFFIX) else None
        if base is not None and base in rows:
            continue  # handled with its codes
        if layout is None or key not in rows:
            if a.shape != e.shape:
                raise ValueError(
                    f"{label} has shape {a.shape} but its parameter has shape {e.shape}"
                )
            if a.dtype.kind != "f" and not bf16:
                raise TypeError(f"{label} has non-float dtype {a.dtype}")
            vals = _as_float32(a, bf16) if (bf16 or e.bf16) else a
            out[key] = _stored(vals, e.dtype, e.bf16, e.shape, order, torch_param)
            continue
        signed = rows[key]
        if a.shape != e.shape:
            raise ValueError(f"{label} has shape {a.shape} but its parameter has shape {e.shape}")
        if f"{key}{SCALE_SUFFIX}" in staged and (a.dtype != CODES or bf16):
            raise ValueError(
                f"{label} has dtype {'bfloat16' if bf16 else a.dtype} beside its block scales "
                f"{key + SCALE_SUFFIX!r}: 8-bit codes must stay uint8 (a state dict cast to "
                "float would load the codes 0..255 as values)"
            )
        if a.dtype == CODES and not bf16:
            sk = f"{key}{SCALE_SUFFIX}"
            if sk not in staged:
                raise ValueError(f"{label} holds 8-bit codes but {name} has no {sk!r}")
            s, sbf, slabel = staged[sk]
            if s.ndim != 1 or s.dtype != F32:
                raise ValueError(f"{slabel} must be a 1-d float32 array of block scales")
            block = _block_of(e.size, s.size, code_block)
            if not block or code_block and block != code_block:
                raise ValueError(
                    f"{slabel} holds {s.size} block scales, which do not fit {e.size} elements"
                    + (f" in blocks of {code_block} (the group's block_size)" if code_block else "")
                )
            # the blocks run over the codes in their own memory order (the order of the
            # parameter they were written for: state_dict keeps it, as torch's state dicts
            # keep their tensors' strides)
            axes = _memory_axes(a)
            if layout.q8 and layout.block == block and _walk(a.shape, axes) == walk:
                out[key] = _stored(a, CODES, False, e.shape, order, torch_param)
                out[sk] = _stored(s, F32, False, s.shape, "C", torch_param)
                continue
            flat = np.ascontiguousarray(np.transpose(a, axes).reshape(-1))
            vals = np.empty(flat.size, np.float32)
            dequantize_blocks(flat, np.ascontiguousarray(s), block, signed, vals)
            vals = vals.reshape([a.shape[i] for i in axes]).transpose(np.argsort(axes))
        elif a.dtype.kind == "f" or bf16:
            vals = a if (a.dtype.kind == "f" and layout.native and not e.bf16) else None
            if vals is None:
                vals = _as_float32(a, bf16)
        else:
            raise TypeError(f"{label} has non-float dtype {a.dtype}")
        if layout.q8:
            flat = np.ascontiguousarray(vals, dtype=np.float32).reshape(-1, order=order)
            codes = np.empty(flat.size, np.uint8)
            scales = np.empty(-(-flat.size // layout.block), np.float32)
            quantize_blocks(flat, layout.block, signed, codes, scales)
            out[key] = _stored(codes.reshape(e.shape, order=order), CODES, False, e.shape,
                               order, torch_param)  # fmt: skip
            out[f"{key}{SCALE_SUFFIX}"] = _stored(
                scales, F32, False, scales.shape, "C", torch_param
            )
        elif layout.native:
            out[key] = _stored(vals, e.dtype, e.bf16, e.shape, order, torch_param)
        else:
            bf = layout.state == BF16
            out[key] = _stored(vals, layout.state, bf, e.shape, order, torch_param)
    return out


def _memory_axes(a: np.ndarray) -> list[int]:
    """The axes of ``a`` from the outermost in memory to the innermost (by stride; stable:
    a C-contiguous array gives 0, 1, ..., a Fortran-contiguous one the reverse)."""
    return sorted(range(a.ndim), key=lambda i: -abs(a.strides[i]))


def _walk(shape: tuple, axes: Any) -> tuple:
    """The axes of length above 1 in the order ``axes`` walks them: two arrays of one shape
    enumerate their elements in the same order when their walks are equal."""
    return tuple(i for i in axes if shape[i] > 1)


def _block_of(size: int, n_blocks: int, hint: int) -> int:
    """The block size of ``n_blocks`` scales over ``size`` elements: ``hint`` when it fits,
    else a power of two, else a multiple of 16, else the smallest size that fits (0: none;
    an empty tensor's no scales fit any block size: ``hint``, else 16)."""
    if size == 0 and n_blocks == 0:
        return hint or 16
    if n_blocks <= 0 or size <= 0:
        return 0
    if hint and -(-size // hint) == n_blocks:
        return hint
    lo = -(-size // n_blocks)
    hi = (size - 1) // (n_blocks - 1) if n_blocks > 1 else max(size, lo)
    if lo > hi:
        return 0
    fits = range(lo, hi + 1)
    for b in fits:
        if b & (b - 1) == 0:
            return b
    for b in fits:
        if b % 16 == 0:
            return b
    return lo


def _stored(vals: np.ndarray, dt: np.dtype, bf16: bool, shape: tuple, order: str, tp: bool):
    """A new array of dtype ``dt`` (bfloat16 bits when ``bf16``) holding ``vals``."""
    if bf16:
        a = np.array(_bf16_bits(vals) if vals.dtype != BF16 else vals, order=order, copy=True)
    else:
        a = np.array(vals, dtype=dt, order=order, copy=True)
    return _wrap(a.reshape(shape, order=order), bf16, tp)
