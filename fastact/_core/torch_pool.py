"""Host kernels on torch's OpenMP thread pool, for work on torch tensors.

**Why.** After each parallel operator torch's OpenMP workers keep spinning on their cores for
a while (GNU libgomp's default ``GOMP_SPINCOUNT`` is 300000 ``pause`` instructions: several
milliseconds). A fastact kernel started on numba's threading layer in that window shares its
cores with spinning threads. In a torch program that is the common case: an optimizer step
right after ``backward()``, an activation between two matmuls. Measured on 2 cores (Intel
Xeon, torch imported first, a torch op on the gradients just before each step): fastact's
float32 AdamW step over 2**24 parameters took 0.80 ns per parameter on numba's TBB layer and
0.61 on torch's pool (torch's fused step 0.68); at 2**20, 0.67 against 0.39 (torch 0.45).

**How.** A numba ``cfunc`` per (serial kernel, argument types) unpacks a block of addresses
and scalars, and every thread of the team runs the kernel's serial build on its share of
the *split* arguments (contiguous, aligned ranges of their leading axis). It is started
through ``GOMP_parallel`` of the OpenMP runtime that torch's ``libtorch_cpu`` binds to
(found by symbol lookup in that library's scope, so libgomp, LLVM's libomp or Intel's
libiomp5 alike), without the GIL. The element-wise launches (arrays split along one length,
then floats) go through one compiled launcher per arity that builds the argument block and
calls ``GOMP_parallel`` by its address (:func:`_flat_launcher`, ``nogil``: 3.4 us a launch
of a 4K relu on 2 threads against 7.3 us with the block built in Python and a ctypes call);
the others build their block from a description of every argument and call through ctypes.
With the team size torch uses, the call reuses torch's "hot" team: the threads that are
spinning anyway pick up the work.

**When.** :func:`pool_threads` decides per launch:

* ``FASTACT_TORCH_POOL``: ``always`` (default) runs the host launches that go through
  :func:`fastact.host.launch.launch` (element-wise kernels, the softmax family), the chunked
  losses (:mod:`fastact.host.losses`: each thread on whole chunks) and the optimizer steps
  past their crossover there once torch is imported, on NumPy arrays too
  (in a process that alternates torch ops and fastact calls on NumPy arrays, a 256K gelu
  after a 256K torch op: 250-258 us a pair against 398-402 on numba's TBB layer, 219 for
  the two alone); ``tensors`` only launches on torch tensors (the optimizers' steps on
  tensors, element-wise kernels on tensors); ``never`` none (numba's layer as before). With
  torch imported and idle, the pool cost a lone NumPy gelu of 512K-2M elements 4-6% against
  TBB, and several Python threads calling fastact at once each start a team of their own.
* torch must be imported (this module never imports it) and its runtime found (Linux);
* not in a forked child (an OpenMP pool does not survive ``fork``: numba's layer runs there);
* the team size is ``min(torch.get_num_threads(), numba's thread count)``; 1 means serial.

The serial builds give the same bits as the parallel ones (element-wise kernels; chunked
optimizer loops whose chunks are independent; softmax rows; loss chunks, whose sums are
added in order afterwards), so where a launch runs never changes a result.
"""

from __future__ import annotations

import ctypes
import os
import re
import sys
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from fastact._core.jit import address
from fastact._core.threads import num_threads, omp_layer_started

__all__ = [
    "MODES",
    "mode",
    "pool_threads",
    "report",
    "prepare",
    "run_split",
    "address_launch",
    "tensor_calls",
]

#: FASTACT_TORCH_POOL values, the default first
MODES = ("always", "tensors", "never")

_state: dict[str, Any] = {"runtime": None, "note": "torch not imported yet"}
_in_forked_child = False
_local = threading.local()
_tramps: dict[tuple, Any] = {}
_lock = threading.Lock()


#: ``os.environ``'s own storage (CPython's ``os._Environ._data``, keyed by encoded names) and
#: the encoded key: a lookup there costs ~0.07 us against ~1 us for ``os.environ.get`` (its
#: key and value conversions), on every launch; it holds what ``os.environ[...] = ...`` set
_ENV_DATA = getattr(os.environ, "_data", None)
try:
    _MODE_KEY = os.environ.encodekey("FASTACT_TORCH_POOL")  # type: ignore[attr-defined]
except (AttributeError, TypeError):  # another os.environ: the public lookup
    _ENV_DATA = None
#: (raw value last seen, its mode): parsed again only when the variable changes
_mode_seen: tuple = (None, MODES[0])


def mode() -> str:
    """The FASTACT_TORCH_POOL setting (read per call; unknown values raise ValueError)."""
    if _ENV_DATA is not None and type(_ENV_DATA) is dict:
        raw = _ENV_DATA.get(_MODE_KEY)
    else:
        raw = os.environ.get("FASTACT_TORCH_POOL")
    global _mode_seen
    seen = _mode_seen
    if raw == seen[0]:
        return seen[1]
    text = raw.decode(errors="replace") if isinstance(raw, bytes) else (raw or "")
    m = text.strip().lower() or MODES[0]
    if m not in MODES:
        raise ValueError(f"FASTACT_TORCH_POOL must be one of {', '.join(MODES)}, got {m!r}")
    _mode_seen = (raw, m)
    return m


class tensor_calls:  # noqa: N801 (used like a function: ``with tensor_calls():``)
    """Context: launches inside work on torch tensors (thread-local, nestable)."""

    __slots__ = ()

    def __enter__(self) -> None:
        _local.depth = getattr(_local, "depth", 0) + 1

    def __exit__(self, *exc: Any) -> None:
        _local.depth -= 1


def _mapped_file(address: int) -> str | None:
    """The file mapped at ``address`` in this process (Linux), or None."""
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                parts = line.split(maxsplit=5)
                lo, hi = (int(v, 16) for v in parts[0].split("-"))
                if lo <= address < hi:
                    return parts[5].strip() if len(parts) > 5 else None
    except (OSError, ValueError, IndexError):
        pass
    return None


def _find_runtime() -> dict | None:
    """torch's OpenMP entry point ``GOMP_parallel`` as resolved from ``libtorch_cpu``'s
    lookup scope, with the file that holds it."""
    torch = sys.modules.get("torch")
    if torch is None:
        _state["note"] = "torch not imported"
        return None
    if not sys.platform.startswith("linux"):
        _state["note"] = f"not supported on {sys.platform}"
        return None
    lib = None
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                path = line.rstrip("\n").split(maxsplit=5)[-1]
                if os.path.basename(path).startswith("libtorch_cpu."):
                    lib = path
                    break
    except OSError:
        pass
    if lib is None:
        _state["note"] = "libtorch_cpu is not mapped in this process"
        return None
    try:
        handle = ctypes.CDLL(lib)  # already loaded: the same handle, its dependencies' scope
        start = handle.GOMP_parallel
    except (OSError, AttributeError) as e:
        _state["note"] = f"no OpenMP runtime in torch's scope: {e}"
        return None
    start.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
    start.restype = None
    where = _mapped_file(ctypes.cast(start, ctypes.c_void_p).value or 0) or "unknown"
    _state["note"] = f"torch's OpenMP runtime: {where}"
    return {
        "start": start,
        "start_address": ctypes.cast(start, ctypes.c_void_p).value,
        "library": where,
        "get_threads": torch.get_num_threads,
    }


def _runtime() -> dict | None:
    rt = _state["runtime"]
    if rt is None and "torch" in sys.modules:
        with _lock:
            if _state["runtime"] is None:
                _state["runtime"] = _find_runtime() or False
        rt = _state["runtime"]
    return rt or None


def pool_threads(n: int, threshold: int, tensors: bool = False) -> int:
    """The team size for a launch over ``n`` elements on torch's pool, or 0 when it runs
    elsewhere (below ``threshold``, torch not imported or its runtime not found, in a forked
    child, FASTACT_TORCH_POOL, one thread). ``tensors``: the launch works on torch tensors
    (also true inside :class:`tensor_calls`). Once torch is imported an unknown
    FASTACT_TORCH_POOL raises ValueError whatever ``n`` (an optimizer step asks before it
    writes anything)."""
    if "torch" not in sys.modules:
        return 0
    m = mode()
    if n < threshold or _in_forked_child:
        return 0
    if m == "never" or (m == "tensors" and not tensors and not getattr(_local, "depth", 0)):
        return 0
    rt = _runtime()
    if rt is None:
        return 0
    t = min(rt["get_threads"](), num_threads())
    return t if t > 1 else 0


# ------------------------------------------------------------------------------- trampolines
#: NumPy float scalar types by name (``a.dtype.name`` costs several microseconds)
_FLOAT_NAMES = {np.float32: "float32", np.float64: "float64"}


def _describe(a: Any, ints: list, floats: list) -> tuple:
    """A hashable description of one kernel argument (the trampoline's unpacking code), its
    integers (addresses, shapes) appended to ``ints`` and its floats to ``floats``."""
    t = type(a)
    if t is np.ndarray:
        if not a.flags.c_contiguous:
            raise ValueError("torch-pool launches take C-contiguous arrays")
        ints.append(address(a))
        ints.extend(a.shape)
        return ("a", a.dtype.str, a.ndim)
    if t is float:
        floats.append(a)
        return ("f", "float64")
    if a is None:
        return ("n",)
    name = _FLOAT_NAMES.get(t)
    if name is not None:
        floats.append(float(a))
        return ("f", name)
    if isinstance(a, (bool, np.bool_)):
        ints.append(int(a))
        return ("b",)
    if isinstance(a, (int, np.integer)):
        ints.append(int(a))
        return ("i",)
    if isinstance(a, np.floating):
        floats.append(float(a))
        return ("f", a.dtype.name)
    if isinstance(a, float):  # a float subclass
        floats.append(float(a))
        return ("f", "float64")
    if isinstance(a, tuple):
        return ("t", tuple(_describe(v, ints, floats) for v in a))
    raise TypeError(f"torch-pool launches take arrays and numbers, got {type(a).__name__}")


def _trampoline(kernel: Any, specs: tuple, split: tuple, align: int) -> Any:
    """The cfunc ``void(void*)`` that runs ``kernel`` on one thread's share (compiled once per
    kernel and argument description); ``split``: (argument index, rows per share row) pairs
    (:func:`_split_spec`)."""
    key = (id(kernel), specs, split, align)
    t = _tramps.get(key)
    if t is not None:
        return t
    from numba import carray, types

    from fastact._core.jit import address_of, cached_file, cfunc, define, fetch_add, pointer_to

    ns: dict[str, Any] = {
        "__name__": __name__,  # the module numba's cache imports to rebuild the function
        "_k": kernel,
        "carray": carray,
        "_ptr": pointer_to,
        "_addr": address_of,
        "_claim": fetch_add,
        "_I64": np.empty(0, np.int64),
        "_F64": np.empty(0, np.float64),
        "np": np,
    }
    # Each thread claims shares (of blk[3] in all) from the counter blk[2] until none is
    # left: every share runs exactly once, whatever the team size the runtime grants.
    lines = [
        "def {name}(data):",
        "    blk = carray(_ptr(_addr(data), _I64), {ni})",
        "    fl = carray(_ptr(blk[0], _F64), {nf})",
        "    total = blk[1]",
        "    t = blk[3]",
        "    r = _claim(blk[4], 1)",
        "    while r < t:",
        f"        lo = (total * r // t) // {align} * {align}",
        f"        hi = total if r == t - 1 else (total * (r + 1) // t) // {align} * {align}",
    ]
    body: list[str] = []
    # blk[0]: the float block's address, blk[1]: the split axis length, blk[2]: the claim
    # counter, blk[3]: the number of shares, blk[4]: the counter's address
    ni, nf = 5, 0

    def unpack(spec: tuple, name: str, is_split: bool) -> str:
        nonlocal ni, nf
        kind = spec[0]
        if kind == "a":
            proto = f"_P_{name}"
            ns[proto] = np.empty(0, np.dtype(spec[1]))
            dims = [f"blk[{ni + 1 + d}]" for d in range(spec[2])]
            row = " * ".join([f"np.int64({ns[proto].itemsize})", *dims[1:]])
            base = f"blk[{ni}]"
            if is_split:
                scale = scales[name]
                if scale == 1:
                    base = f"blk[{ni}] + lo * {row}"
                    dims[0] = "(hi - lo)"
                else:  # rows [lo, hi) * scale, clipped to the array's own length
                    body.append(f"{name}_lo = min(lo * {scale}, blk[{ni + 1}])")
                    body.append(f"{name}_hi = min(hi * {scale}, blk[{ni + 1}])")
                    base = f"blk[{ni}] + {name}_lo * {row}"
                    dims[0] = f"({name}_hi - {name}_lo)"
            ni += 1 + spec[2]
            body.append(f"{name} = carray(_ptr({base}, {proto}), ({', '.join(dims)},))")
            return name
        if kind == "b":
            ni += 1
            return f"(blk[{ni - 1}] != 0)"
        if kind == "i":
            ni += 1
            return f"blk[{ni - 1}]"
        if kind == "f":
            nf += 1
            return f"np.{spec[1]}(fl[{nf - 1}])"
        if kind == "n":
            return "None"
        parts = [unpack(s, f"{name}_{i}", False) for i, s in enumerate(spec[1])]
        return "(" + "".join(p + ", " for p in parts) + ")"

    scales = {f"a{i}": sc for i, sc in split}
    call = [unpack(s, f"a{i}", f"a{i}" in scales) for i, s in enumerate(specs)]
    body += ["if hi > lo:", f"    _k({', '.join(call)})", "r = _claim(blk[4], 1)"]
    lines += ["        " + b for b in body]
    py = kernel.py_func
    name = "pool_" + re.sub(r"\W", "_", py.__qualname__)
    head = "\n".join(lines[:3]).format(name=name, ni=ni, nf=max(nf, 1))
    # The source names everything the compiled code depends on (fastact's cache keys a
    # generated function by its source): the kernel and the argument types, whose
    # prototypes (_P_*) are globals. Without the types, two dtype specializations of one
    # kernel shared a cache entry (bfloat16 parameters ran float32 code: a heap overrun).
    src = "\n".join(
        [
            f"# {py.__module__}.{py.__qualname__} on one thread's share",
            f"# arguments {specs!r}",
            head,
            *lines[3:],
        ]
    )
    fn = define(src, name, ns)
    # cached when the kernel is fastact's own (a user's kernel may hold what cannot be cached)
    t = cfunc(
        types.void(types.voidptr), fn, cache=None if cached_file(py.__code__.co_filename) else False
    )
    _tramps[key] = t
    return t


_SPLITS: dict = {}


def _split_spec(split: Sequence[Any]) -> tuple:
    """``split`` as (index, scale) pairs: an index ``i`` alone is ``(i, 1)``, the array split
    along with the shares; ``(i, k)`` takes rows ``[k lo, k hi)`` of a share ``[lo, hi)``,
    clipped to the array's length (chunked kernels: share rows are chunks of ``k``
    elements). The first entry must have scale 1: its length is the number of share rows."""
    key = split if type(split) is tuple else tuple(split)
    out = _SPLITS.get(key)
    if out is None:
        out = tuple(
            (int(s), 1) if isinstance(s, (int, np.integer)) else (int(s[0]), int(s[1])) for s in key
        )
        if out[0][1] != 1 or any(sc < 1 for _, sc in out):
            raise ValueError("split scales must be positive, the first one 1")
        if len(_SPLITS) < 1024:
            _SPLITS[key] = out
    return out


#: element-wise launches (every array split, then Python floats): (kernel, dtype, arrays,
#: floats, align, by address) -> (trampoline, compiled launcher); see :func:`_flat_pair`
_FLAT: dict = {}
#: (arrays, floats, by address) -> the compiled launcher of :func:`_flat_launcher`
_LAUNCHERS: dict = {}


def _flat_launcher(k: int, nf: int, by_address: bool = False) -> Any:
    """A jit function ``(start, trampoline, threads, *arrays, *floats)`` that builds the
    block of an element-wise launch (:func:`_described_block`'s layout: ``k`` arrays split,
    ``nf`` floats) and calls the runtime's ``GOMP_parallel`` at address ``start`` with it,
    compiled ``nogil`` (the GIL stays released during the parallel region, as with ctypes):
    one dispatch instead of the block built in Python and a ctypes call. ``by_address``:
    ``(start, trampoline, threads, n, *addresses, *floats)`` instead, the arrays given by
    the addresses of ``n`` elements each (torch tensors' ``data_ptr()``: no NumPy views)."""
    fn = _LAUNCHERS.get((k, nf, by_address))
    if fn is not None:
        return fn
    from fastact._core.jit import call_parallel, define, jit

    ni = 5 + 2 * k
    name = f"pool_launch_{k}_{nf}" + ("_addresses" if by_address else "")
    params = (["n"] if by_address else []) + [f"a{i}" for i in range(k)]
    params += [f"f{j}" for j in range(nf)]
    lines = [
        f"# the element-wise launch on an OpenMP pool: {k} arrays"
        + (" by address" if by_address else "")
        + f", {nf} floats",
        f"def {name}(start, tramp, threads, {', '.join(params)}):",
        *([] if by_address else ["    n = a0.shape[0]"]),
        f"    blk = np.zeros({ni + max(nf, 1)}, np.int64)",
        "    base = blk.ctypes.data",
        f"    blk[0] = base + {ni * 8}",  # the float block
        "    blk[1] = n",
        "    blk[3] = threads",
        "    blk[4] = base + 16",  # the claim counter, blk[2]
    ]
    for i in range(k):
        where = f"a{i}" if by_address else f"a{i}.ctypes.data"
        lines += [f"    blk[{5 + 2 * i}] = {where}", f"    blk[{6 + 2 * i}] = n"]
    if nf:
        lines.append(f"    fl = blk[{ni}:].view(np.float64)")
        lines += [f"    fl[{j}] = f{j}" for j in range(nf)]
    lines.append("    _start(start, tramp, base, threads)")
    ns = {"__name__": __name__, "np": np, "_start": call_parallel}
    fn = jit(define("\n".join(lines) + "\n", name, ns), forceinline=False)
    _LAUNCHERS[(k, nf, by_address)] = fn
    return fn


def _flat_entry(kernel: Any, args: Sequence[Any], split: Sequence[Any], align: int) -> Any:
    """The cached (trampoline, compiled launcher) of the common launch, where ``split`` is
    ``range(k)``, ``args[:k]`` 1-d C-contiguous arrays of one dtype and length and the rest
    Python floats; None for any other launch (the general description of
    :func:`_described_block` cost 7 us a launch, several times that beside torch's autograd,
    whose working set evicts the interpreter's)."""
    if type(split) is not range or split.start != 0 or split.step != 1:
        return None
    k = split.stop
    a0 = args[0]
    if type(a0) is not np.ndarray or a0.ndim != 1:
        return None
    dt, shape = a0.dtype, a0.shape
    for i in range(k):
        a = args[i]
        # (dtype by identity: NumPy's native float dtypes are singletons; another one only
        # takes the general path)
        if type(a) is not np.ndarray or a.dtype is not dt or a.shape != shape:
            return None
        if not a.flags.c_contiguous:
            return None
    nf = len(args) - k
    for i in range(k, len(args)):
        if type(args[i]) is not float:
            return None
    return _flat_pair(kernel, dt, k, nf, align, False)


def _flat_pair(kernel: Any, dt: np.dtype, k: int, nf: int, align: int, by_address: bool):
    """The cached (trampoline, compiled launcher) of an element-wise launch of ``kernel``
    over ``k`` 1-d arrays of ``dt`` (given as arrays, or ``by_address``) and ``nf`` floats."""
    key = (kernel, dt, k, nf, align, by_address)
    entry = _FLAT.get(key)
    if entry is None:
        specs = (("a", dt.str, 1),) * k + (("f", "float64"),) * nf
        tramp = _trampoline(kernel, specs, _split_spec(range(k)), int(align))
        entry = (tramp, _flat_launcher(k, nf, by_address))
        if len(_FLAT) < 1024:
            _FLAT[key] = entry
    return entry


def address_launch(kernel: Any, dtype: Any, k: int, nf: int, align: int = 1) -> Any:
    """``run(threads, n, *addresses, *floats)``: ``kernel`` (a serial jit function of ``k``
    1-d arrays of ``dtype``, then ``nf`` floats) on ``threads`` threads of torch's pool,
    each array given by the address of the first of its ``n`` C-contiguous elements (a torch
    tensor's ``data_ptr()``) and split into shares as :func:`run_split` splits 1-d arrays
    (starts at multiples of ``align``). No NumPy view is made: at 256K float32 elements the
    views and checks of :func:`run_split` cost ~10 us of a 30 us relu beside torch's
    autograd (after a kernel that streamed 2 MB the interpreter's own working set comes
    back from memory). The caller chose ``threads`` with :func:`pool_threads`."""
    tramp, launcher = _flat_pair(kernel, np.dtype(dtype), k, nf, align, True)
    tramp_address = tramp.address

    def run(threads: int, n: int, *args: Any) -> None:
        rt = _runtime()
        _state["started"] = True
        launcher(rt["start_address"], tramp_address, threads, n, *args)

    return run


def prepare(
    kernel: Any, args: Sequence[Any], split: Sequence[Any], threads: int, align: int = 1
) -> tuple[Any, np.ndarray, np.ndarray]:
    """(trampoline, argument block, float block) of a :func:`run_split` launch: the
    trampoline called with the block's address runs every share (from any number of
    threads; the blocks must stay alive meanwhile), from a description of every argument
    (:func:`run_split` gives the element-wise launches to their compiled launcher instead,
    which builds the same block in jit code)."""
    return _described_block(kernel, args, split, threads, align)


def _described_block(
    kernel: Any, args: Sequence[Any], split: Sequence[Any], threads: int, align: int
) -> tuple[Any, np.ndarray, np.ndarray]:
    """:func:`prepare` for any launch, from a description of every argument."""
    ints: list = [0, 0, 0, threads, 0]
    floats: list = []
    specs = tuple([_describe(a, ints, floats) for a in args])
    split = _split_spec(split)
    n = args[split[0][0]].shape[0]
    if any(args[i].shape[0] != n for i, sc in split if sc == 1):
        raise ValueError("the split arrays must have one leading length")
    tramp = _trampoline(kernel, specs, split, int(align))
    ni = len(ints)
    blk = np.empty(ni + max(len(floats), 1), dtype=np.int64)
    blk[:ni] = ints
    fl = blk[ni:].view(np.float64)
    fl[: len(floats)] = floats
    base = address(blk)
    blk[0] = base + ni * 8  # the float block
    blk[1] = n
    blk[4] = base + 2 * 8  # the claim counter, blk[2]
    return tramp, blk, fl


def run_split(
    kernel: Any, args: Sequence[Any], split: Sequence[Any], threads: int, align: int = 1
) -> None:
    """``kernel(*args)`` (a serial jit function) on ``threads`` threads of torch's pool, each
    on a contiguous share of the arrays ``args[i]``, ``i`` in ``split``, along their leading
    axis (equal lengths; shares start at multiples of ``align`` rows; an entry ``(i, k)``
    instead takes ``k`` rows of ``args[i]`` per share row, see :func:`_split_spec`); the
    other arguments whole (numbers, tuples of them, None). The caller chose ``threads`` with
    :func:`pool_threads`."""
    entry = _flat_entry(kernel, args, split, align)
    rt = _runtime()
    _state["started"] = True
    if entry is not None:
        entry[1](rt["start_address"], entry[0].address, threads, *args)
        return
    tramp, blk, _fl = _described_block(kernel, args, split, threads, align)
    rt["start"](tramp.address, address(blk), threads, 0)


def report() -> dict:
    """The facts ``python -m fastact info`` prints (an unknown FASTACT_TORCH_POOL as
    ``invalid: <why>``: the diagnostic command reports it rather than failing on it)."""
    rt = _runtime()
    try:
        setting = mode()
    except ValueError as e:
        setting = f"invalid: {e}"
    return {
        "torch_pool_mode": setting,
        "torch_pool_runtime": rt["library"] if rt else f"not used: {_state['note']}",
        "torch_pool_forked_child": _in_forked_child,
    }


def _after_fork_in_child() -> None:
    """A forked child: fastact's kernels run on numba's layer here. If fastact started
    torch's OpenMP pool in the parent (also for NumPy arrays, with no torch op of the user's
    own), or the parent ran numba's OpenMP layer (GNU OpenMP, shared with torch), the child's
    own parallel torch ops would wait forever on the parent's pool (GNU OpenMP does not
    survive ``fork``): torch runs them on one thread in the child, as it does in its
    DataLoader workers."""
    global _in_forked_child
    _in_forked_child = True
    if (_state.get("started") or omp_layer_started()) and "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)


os.register_at_fork(after_in_child=_after_fork_in_child)
