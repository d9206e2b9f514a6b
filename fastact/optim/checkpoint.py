"""Checkpoint files for state dicts: no code runs on load; checked, and written atomically.

``save(obj, path)`` stores a structure of dicts (also ``OrderedDict`` and ``Counter``), lists,
tuples, str, int, float, bool, None and bytes, whose leaves may also be NumPy arrays, NumPy
scalars and torch tensors: the structure as JSON, every array as raw bytes with its dtype
and shape. ``load(path)`` reads it back with ``json`` and ``readinto``: no pickle, no
``torch.load``, no import of a class named by the file, so a file from anyone can at worst
give a ``ValueError``. Compare ``torch.load(weights_only=True)`` and safetensors; unlike
safetensors the structure (int keys of ``state``, tuples, param groups, scheduler fields)
comes back exactly, and every byte is covered by a SHA-256 digest.

File layout (version 2, every integer little-endian)::

    offset 0   magic  b"FASTACT-CKPT\\x02\\x00\\x00\\x00"                  16 bytes
    offset 16  u64    header length H (at most MAX_HEADER_BYTES)
    offset 24  u64    data length D
    offset 32  32 B   SHA-256 of the header
    offset 64  32 B   data digest: SHA-256 of the concatenated SHA-256 digests of the data
                      section's consecutive 8 MiB blocks (the last one shorter; hashed in
                      parallel threads)
    offset 96  H B    header: ASCII JSON {"format", "version", "entries", "root"}
               zeros  up to the next multiple of 64 (the data start S)
    offset S   D B    every entry's bytes in table order, each starting on a multiple of
                      64 (zeros between); the file ends at S + D exactly

``entries`` is a table of arrays: ``{"kind": "ndarray"|"tensor"|"scalar"|"bytes", "dtype":
"<f4", "shape": [64, 32]}`` (plus ``"order": "F"`` for Fortran-ordered arrays and tensors,
``"requires_grad"``/``"parameter"`` for tensors; ``"parameter"`` also for an ndarray that is a
``fastact.nn.Parameter``, which fastact versions before it refuse, as they refuse a tensor's
``"order"``); dtypes are NumPy's byte-order strings of the bool, int, uint, float and complex
types, ``"bfloat16"`` (little-endian bits) or ``">bfloat16"`` (big-endian bits, from a NumPy
array of ``ml_dtypes.bfloat16`` in that byte order; fastact versions before it refuse such an
entry). Offsets are not stored: they follow from the dtypes and shapes. In ``root`` a JSON
string, bool, null, array (a Python list), finite float and int below 2**63 in magnitude stand
for themselves; every other value is an object with one tag: ``{"tuple": [...]}``, ``{"dict":
[[key, value], ...]}`` (also ``"odict"``, ``"counter"``), ``{"int": "-1f..."}`` (hexadecimal),
``{"float": "<16 hex digits>"}`` (the bits of a non-finite float), ``{"str": "<hex>"}`` (a str
holding a surrogate code point, U+D800 to U+DFFF: its UTF-32-BE code units, 8 hex digits each;
as a JSON string a high surrogate followed by a low one would load as one character) or
``{"data": i}`` (entry ``i``; one object per entry, so a tensor stored under two names loads as
one tensor).

Loading validates before it allocates: the lengths against the file size, the header's
size, digest and JSON nesting depth, then every entry's dtype and shape, whose sizes must
add up to the data length exactly; arrays are then allocated (never more than the file holds)
and filled by ``readinto`` while the data digest is computed, and the structure is built
only after both digests match. Besides the arrays, parsing the header takes memory bounded
by its size (at most about 25 times MAX_HEADER_BYTES, for a header of nothing but ``[]``).

NumPy arrays come back as writable arrays in their saved dtype, shape, byte order and memory
order (C or Fortran; other strides are stored C-contiguous); torch tensors come back as CPU
tensors in their memory order too (``requires_grad`` and ``nn.Parameter`` kept) when torch is
importable, else as NumPy arrays with a warning. (The order can carry meaning: an 8-bit
optimizer state's codes are blockwise in theirs.) A ``fastact.nn.Parameter`` comes back as one
(its ``.grad`` is not stored, as torch stores no ``Parameter``'s ``.grad``). A bfloat16 entry
comes back as a torch.bfloat16 tensor, or a NumPy array of ``ml_dtypes.bfloat16`` if ml_dtypes
is importable; without either it comes back as float32 (exactly the same numbers) with a
warning.

Tensors are stored from their little-endian CPU bytes (torch runs on little-endian machines);
NumPy arrays keep their byte order on any machine.

Files of version 1 (written by earlier fastact versions: a pickle behind a length and a
digest) load only with ``load(path, allow_pickle=True)``, which unpickles: only for files you
trust, since a pickle can run any code.
"""

from __future__ import annotations

import collections
import errno
import hashlib
import json
import math
import os
import re
import secrets
import struct
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from fastact._core.arrays import Parameter

__all__ = ["save", "load", "MAX_HEADER_BYTES", "MAX_DEPTH"]

MAX_HEADER_BYTES = 16 << 20
"""Largest JSON header ``save`` writes and ``load`` reads (about 150,000 arrays)."""
MAX_DEPTH = 64
"""Deepest nesting of containers (dict, list, tuple) ``save`` writes and ``load`` reads."""

_MAGIC = b"FASTACT-CKPT\x02\x00\x00\x00"
_LEGACY_MAGIC = b"FASTACT-CKPT\x01"
_LEGACY_HEADER = struct.Struct("<Q32s")  # version 1: payload length, SHA-256 of the payload
_PREAMBLE = struct.Struct("<16sQQ32s32s")  # magic, header length, data length, two digests
_ALIGN = 64
_BLOCK = 8 << 20  # the data digest hashes blocks of this size (in parallel), then their digests
_WORKERS = min(
    4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
)
_MAX_NDIM = 64  # NumPy's limit
_MAX_JSON_DEPTH = 3 * MAX_DEPTH + 8  # a dict level is 3 JSON levels: {"dict": [[k, v]]}
_INT_LIMIT = 1 << 63  # ints at least this large in magnitude are stored as {"int": hex}
_FORMAT = "fastact-checkpoint"
_VERSION = 2

_DTYPES = frozenset(
    ["|b1", "|i1", "|u1", "bfloat16", ">bfloat16"]
    + [f"{o}{k}{n}" for o in "<>" for k in "iu" for n in (2, 4, 8)]
    + [f"{o}f{n}" for o in "<>" for n in (2, 4, 8)]
    + [f"{o}c{n}" for o in "<>" for n in (8, 16)]
)
_KINDS = ("ndarray", "tensor", "scalar", "bytes")
_ENTRY_KEYS = frozenset(["kind", "dtype", "shape", "order", "requires_grad", "parameter"])
_DICT_TAGS = {"dict": dict, "odict": collections.OrderedDict, "counter": collections.Counter}
_CONTAINER_TAGS = frozenset(["tuple", *_DICT_TAGS])
_SURROGATE = re.compile("[\ud800-\udfff]")  # str holding these are stored as {"str": hex}
_TORCH_NAMES = {  # entry dtype -> torch dtype name (native little-endian bytes only)
    "|b1": "bool",
    "|u1": "uint8",
    "|i1": "int8",
    "<i2": "int16",
    "<i4": "int32",
    "<i8": "int64",
    "<u2": "uint16",
    "<u4": "uint32",
    "<u8": "uint64",
    "<f2": "float16",
    "<f4": "float32",
    "<f8": "float64",
    "<c8": "complex64",
    "<c16": "complex128",
    "bfloat16": "bfloat16",
}
_BFLOAT16_ORDER = {"bfloat16": "<", ">bfloat16": ">"}  # entry dtype -> byte order of its bits
_NATIVE_ORDER = "<" if sys.byteorder == "little" else ">"
_GRAD_DTYPES = frozenset(["<f2", "<f4", "<f8", "bfloat16", "<c8", "<c16"])  # torch's rule
_SUPPORTED = (
    "checkpoints hold dict, OrderedDict, Counter, list, tuple, str, int, float, bool, None, "
    "bytes, NumPy arrays and scalars (bool, int, uint, float, complex, bfloat16), "
    "fastact.nn.Parameter and torch tensors"
)


def _align(n: int) -> int:
    return -(-n // _ALIGN) * _ALIGN


def _fsync_dir(folder: str) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # platforms without directory file descriptors
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _torch_if_loaded() -> Any:
    return sys.modules.get("torch")  # no object can be a tensor before torch is imported


def _import_optional(name: str) -> Any:
    try:
        return __import__(name)
    except ImportError:
        return None


def _byte_view(a: np.ndarray) -> np.ndarray:
    """The bytes of a C- or Fortran-contiguous array in memory order, as a uint8 view."""
    if a.ndim > 1 and not a.flags.c_contiguous:
        a = a.T  # Fortran-contiguous: its transpose is C-contiguous over the same memory
    return a.reshape(-1).view(np.uint8)


# ------------------------------------------------------------------------------------ save


class _Entry:
    """One array to write: its table record and how to get its bytes when writing."""

    __slots__ = ("record", "source", "nbytes")

    def __init__(self, record: dict, source: Any, nbytes: int) -> None:
        self.record = record
        self.source = source  # kept alive so that id() stays unique while saving
        self.nbytes = nbytes

    def data(self) -> np.ndarray:
        """A uint8 view (or, for non-contiguous arrays, a copy) of the bytes to write."""
        src = self.source
        kind = self.record["kind"]
        if kind == "bytes":
            return np.frombuffer(src, np.uint8)
        if kind == "tensor":
            t = src.detach()
            if t.device.type != "cpu":
                t = t.cpu()
            t = t.resolve_conj().resolve_neg()
            if self.record.get("order") == "F":  # its transpose is C-contiguous
                t = _reversed_dims(t)
            t = t.contiguous().reshape(-1)
            if t.numel() == 0:
                return np.empty(0, np.uint8)
            return t.view(_torch_if_loaded().uint8).numpy()
        if kind == "scalar":
            return np.array(src).reshape(-1).view(np.uint8)
        a = src
        if not isinstance(a, np.ndarray):  # a device array: copy to the host
            a = a.copy_to_host() if hasattr(a, "copy_to_host") else a.get()
        if self.record.get("order") == "F":
            a = np.asfortranarray(a)
        else:
            a = np.ascontiguousarray(a)
        return _byte_view(a)


class _Encoder:
    """Turns a structure into its JSON tree and a table of entries; TypeError/ValueError
    naming the path of anything it cannot store, before any file is touched."""

    def __init__(self) -> None:
        self.entries: list[_Entry] = []
        self.memo: dict[int, int] = {}  # id(array or tensor) -> entry index
        self.active: set[int] = set()  # ids of the containers on the current path
        self.where: list[tuple[str, Any]] = []  # the current path, formatted on error only
        self.torch = _torch_if_loaded()

    def path(self) -> str:
        text = {"item": "[{!r}]", "key": " (the key {!r})", "attr": ".{}"}
        return "obj" + "".join(text[kind].format(k) for kind, k in self.where)

    def unsupported(self, what: str) -> TypeError:
        return TypeError(f"cannot save {self.path()}: {what}; {_SUPPORTED}")

    # -- leaves
    def _dtype_name(self, dtype: np.dtype) -> str:
        if dtype.kind == "V" and dtype.name == "bfloat16" and dtype.itemsize == 2:
            # ml_dtypes.bfloat16, written in its own byte order like the other NumPy dtypes
            order = dtype.byteorder if dtype.byteorder in "<>" else _NATIVE_ORDER
            return "bfloat16" if order == "<" else ">bfloat16"
        if dtype.str not in _DTYPES:
            raise self.unsupported(f"unsupported dtype {dtype}")
        return dtype.str

    def _add(self, obj: Any, record: dict, nbytes: int) -> dict:
        if id(obj) not in self.memo:
            self.memo[id(obj)] = len(self.entries)
            self.entries.append(_Entry(record, obj, nbytes))
        return {"data": self.memo[id(obj)]}

    def _ndarray(self, a: Any, shape: tuple, dtype: np.dtype, parameter: bool = False) -> dict:
        name = self._dtype_name(dtype)
        if len(shape) > _MAX_NDIM:
            raise self.unsupported(f"an array of {len(shape)} dimensions (at most {_MAX_NDIM})")
        record: dict[str, Any] = {"kind": "ndarray", "dtype": name, "shape": list(shape)}
        if parameter:
            record["parameter"] = True
        if isinstance(a, np.ndarray):
            if a.ndim > 1 and a.flags.f_contiguous and not a.flags.c_contiguous:
                record["order"] = "F"
        elif len(shape) > 1 and _device_layout(a) == "F":
            record["order"] = "F"
        return self._add(a, record, math.prod(shape) * dtype.itemsize)

    def _tensor(self, t: Any) -> dict:
        torch = self.torch
        if type(t) not in (torch.Tensor, torch.nn.Parameter):
            raise self.unsupported(f"tensor subclass {type(t).__name__}")
        if t.layout != torch.strided or t.is_quantized or t.is_nested or t.device.type == "meta":
            raise self.unsupported(f"a {t.layout} {t.device.type} tensor (dense tensors only)")
        name = str(t.dtype).removeprefix("torch.")
        dtype = next((k for k, v in _TORCH_NAMES.items() if v == name), None)
        if dtype is None:
            raise self.unsupported(f"unsupported dtype {t.dtype}")
        if t.dim() > _MAX_NDIM:
            raise self.unsupported(f"a tensor of {t.dim()} dimensions (at most {_MAX_NDIM})")
        record: dict[str, Any] = {"kind": "tensor", "dtype": dtype, "shape": list(t.shape)}
        if t.dim() > 1 and not t.is_contiguous():
            if _reversed_dims(t).is_contiguous():
                record["order"] = "F"  # Fortran-contiguous (a transposed matrix): kept
        if t.requires_grad:
            record["requires_grad"] = True
        if type(t) is torch.nn.Parameter:
            record["parameter"] = True
        return self._add(t, record, t.numel() * t.element_size())

    # -- tree
    def encode(self, obj: Any, depth: int, key: bool = False) -> Any:
        """The JSON node of ``obj``, ``depth`` containers below the root; ``key``: a dict
        key (a hashable value: no list, dict or array)."""
        t = type(obj)
        if obj is None or t is bool:
            return obj
        if t is str:
            if obj.isascii() or not _SURROGATE.search(obj):
                return obj
            return {"str": obj.encode("utf-32-be", "surrogatepass").hex()}
        if t is int:
            return obj if -_INT_LIMIT < obj < _INT_LIMIT else {"int": format(obj, "x")}
        if t is float:
            return obj if math.isfinite(obj) else {"float": struct.pack("<d", obj).hex()}
        if t is bytes:
            return self._add(obj, {"kind": "bytes", "dtype": "|u1", "shape": [len(obj)]}, len(obj))
        if isinstance(obj, np.generic):
            record = {"kind": "scalar", "dtype": self._dtype_name(obj.dtype), "shape": []}
            return self._add(obj, record, obj.dtype.itemsize)
        if t in (list, tuple, dict, collections.OrderedDict, collections.Counter):
            if key and t is not tuple:
                raise self.unsupported(f"a {t.__name__} as a dict key")
            if depth >= MAX_DEPTH:
                raise ValueError(f"cannot save {self.path()}: nested deeper than {MAX_DEPTH}")
            if id(obj) in self.active:
                raise ValueError(f"cannot save {self.path()}: it contains itself (a cycle)")
            self.active.add(id(obj))
            try:
                return self._container(obj, t, depth + 1, key)
            finally:
                self.active.discard(id(obj))
        if not key:
            if t is np.ndarray or t is np.memmap:
                return self._ndarray(obj, obj.shape, obj.dtype)
            if t is Parameter:  # fastact.nn.Parameter
                return self._ndarray(obj, obj.shape, obj.dtype, parameter=True)
            torch = self.torch
            if torch is not None and isinstance(obj, torch.Tensor):
                return self._tensor(obj)
            if _is_device_array(obj):
                shape = tuple(int(d) for d in obj.shape)
                return self._ndarray(obj, shape, np.dtype(obj.dtype))
        what = "dict key" if key else "object"
        raise self.unsupported(f"unsupported {what} of type {t.__module__}.{t.__qualname__}")

    def _items(self, items: Any, depth: int, key: bool) -> list:
        where = self.where
        out = []
        for i, v in items:
            where.append(("item", i))
            out.append(self.encode(v, depth, key))
            where.pop()
        return out

    def _container(self, obj: Any, t: type, depth: int, key: bool) -> Any:
        if t is list:
            return self._items(enumerate(obj), depth, False)
        if t is tuple:
            return {"tuple": self._items(enumerate(obj), depth, key)}
        tag = "dict" if t is dict else "odict" if t is collections.OrderedDict else "counter"
        where = self.where
        pairs = []
        for k, v in obj.items():
            where.append(("key", k))
            ek = self.encode(k, depth, True)
            where[-1] = ("item", k)
            pairs.append([ek, self.encode(v, depth)])
            where.pop()
        node: dict[str, Any] = {tag: pairs}
        meta = getattr(obj, "_metadata", None) if t is collections.OrderedDict else None
        if meta is not None:  # torch's nn.Module.state_dict() versions, kept like pickle does
            where.append(("attr", "_metadata"))
            node["_metadata"] = self.encode(meta, depth)
            where.pop()
        return node


def _is_device_array(x: Any) -> bool:
    return hasattr(type(x), "__cuda_array_interface__") and (
        callable(getattr(x, "copy_to_host", None)) or callable(getattr(x, "get", None))
    )


def _device_layout(x: Any) -> str:
    """'F' for a Fortran-contiguous device array, else 'C' (copied to the host in C order)."""
    try:
        iface = x.__cuda_array_interface__
        strides, shape = iface.get("strides"), tuple(iface["shape"])
        if strides is None:
            return "C"
        itemsize = np.dtype(iface["typestr"]).itemsize
        expect, f = itemsize, []
        for n in shape:
            f.append(expect)
            expect *= n
        return "F" if tuple(strides) == tuple(f) else "C"
    except (AttributeError, KeyError, TypeError):
        return "C"


class _Hasher:
    """The data digest: SHA-256 of the concatenated SHA-256 digests of the data section's
    consecutive _BLOCK-byte blocks (the last one shorter). Blocks are hashed by a thread pool
    while the calling thread reads or writes the next ones (hashlib releases the GIL)."""

    def __init__(self, total: int) -> None:
        workers = min(_WORKERS, -(-total // _BLOCK))
        self.pool = ThreadPoolExecutor(workers) if workers > 1 else None
        self.done: list = []  # block digests, or futures of them
        self.pieces: list = []
        self.filled = 0

    def cut(self, view: memoryview) -> Any:
        """``view`` in pieces that each end at most at the end of the current block."""
        i = 0
        while i < len(view):
            n = min(len(view) - i, _BLOCK - self.filled)
            yield view[i : i + n]
            i += n

    def add(self, piece: Any) -> None:
        """Account for the next ``piece`` of the data section (from :meth:`cut`)."""
        self.pieces.append(piece)
        self.filled += len(piece)
        if self.filled == _BLOCK:
            self._submit()

    def _submit(self) -> None:
        pieces, self.pieces, self.filled = self.pieces, [], 0
        if self.pool is None:
            self.done.append(_block_digest(pieces))
        else:
            self.done.append(self.pool.submit(_block_digest, pieces))

    def digest(self) -> bytes:
        if self.pieces:
            self._submit()
        parts = [d if isinstance(d, bytes) else d.result() for d in self.done]
        return hashlib.sha256(b"".join(parts)).digest()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)


def _block_digest(pieces: list) -> bytes:
    h = hashlib.sha256()
    for piece in pieces:
        h.update(piece)
    return h.digest()


def _write_data(f: Any, entries: list[_Entry], data_len: int) -> bytes:
    """Write the entries' bytes (each at a multiple of _ALIGN, zeros between) and return the
    data digest."""
    hasher = _Hasher(data_len)
    try:
        pos = 0
        for e in entries:
            pad = _align(pos) - pos
            views = [memoryview(bytes(pad))] if pad else []
            if e.nbytes:
                views.append(memoryview(e.data()))
            for view in views:
                for piece in hasher.cut(view):
                    hasher.add(piece)
                    f.write(piece)
            pos += pad + e.nbytes
        return hasher.digest()
    finally:
        hasher.close()


_TEMP_FLAGS = (
    os.O_WRONLY
    | os.O_CREAT
    | os.O_EXCL
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_NOINHERIT", 0)
    | getattr(os, "O_BINARY", 0)
)


def _name_max(folder: str) -> int:
    """The longest file name (in bytes) the file system of ``folder`` takes (255 if unknown)."""
    try:
        n = os.pathconf(folder, "PC_NAME_MAX")
    except (AttributeError, OSError, ValueError):  # no pathconf (Windows), or no such limit
        return 255
    return n if isinstance(n, int) and n >= 32 else 255


def _create_temp(folder: str, name: str, mode: int) -> tuple[int, str]:
    """A new file ``.<name>.<8 random hex digits>.tmp`` in ``folder``, created with the
    permission bits ``mode`` less the umask (by the OS, as ``open()`` creates a file, unlike
    ``tempfile.mkstemp``'s 0o600): its descriptor and path. ``name`` is cut short where the
    whole would pass the file system's longest name (a 250-byte ``name`` is valid itself)."""
    stem = "." + name
    limit = _name_max(folder) - len(".01234567.tmp")
    while len(os.fsencode(stem)) > limit:
        stem = stem[: max(1, min(len(stem) - 1, limit))]  # a str char is 1 to 4 bytes
    for _ in range(100):
        tmp = os.path.join(folder, f"{stem}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(tmp, _TEMP_FLAGS, mode), tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no unused temporary file name", folder)


def save(obj: Any, path: str | os.PathLike) -> None:
    """Write ``obj`` to ``path`` atomically (temporary file, fsync, rename, fsync folder).

    ``obj``: dicts (``OrderedDict``, ``Counter``; keys str, int, float, bool, None, bytes,
    NumPy scalars or tuples of these), lists, tuples, str, int, float, bool, None, bytes, NumPy
    arrays and scalars, ``fastact.nn.Parameter`` (loads as one), torch tensors (any device;
    stored from the CPU) — everything a torch or fastact state dict holds. Anything else raises
    ``TypeError`` naming its path in the structure (e.g. ``obj['state'][3]['foo']``) before any
    file is touched; so do reference cycles and nesting deeper than :data:`MAX_DEPTH`
    (``ValueError``). An object stored under several names (the same array or tensor) is
    written once and loads as one object; containers stored twice load as two copies.

    A symlink ``path`` is written through, as ``open(path, "wb")`` and ``torch.save`` do: the
    file it points to is replaced (the temporary file is made beside it) and the link stays;
    a dangling link gets its target created. An existing file keeps its permission bits; a
    new one gets 0o666 less the umask, as from ``open()`` (the OS applies the umask when it
    creates the temporary file: reading it with ``os.umask`` would change it for a moment in
    every thread). On any error the temporary file is removed and ``path`` is left as it was.
    """
    path = os.fspath(path)
    if not isinstance(path, str):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    enc = _Encoder()
    root = enc.encode(obj, 0)
    header = json.dumps(
        {
            "format": _FORMAT,
            "version": _VERSION,
            "entries": [e.record for e in enc.entries],
            "root": root,
        },
        ensure_ascii=True,
        allow_nan=False,
        separators=(",", ":"),
    ).encode("ascii")
    if len(header) > MAX_HEADER_BYTES:
        raise ValueError(
            f"cannot save: the structure needs a {len(header)}-byte header, more than "
            f"MAX_HEADER_BYTES={MAX_HEADER_BYTES} (too many arrays or values)"
        )
    start = _align(_PREAMBLE.size + len(header))
    pos = 0
    for e in enc.entries:
        pos = _align(pos) + e.nbytes
    data_len = pos
    if not os.path.basename(path):  # realpath would make "" the working folder, drop "x/"'s /
        err = errno.EISDIR if path else errno.ENOENT  # open(path, "wb")'s errors
        raise OSError(err, os.strerror(err), path)
    try:
        mode = os.stat(path).st_mode & 0o7777  # a symlink loop raises here, as open() does
    except FileNotFoundError:
        mode = None  # a new file: the umask's bits
    path = os.path.realpath(path)  # the file a symlink points to (renaming onto it keeps the link)
    folder = os.path.dirname(path)
    # owner-only while written when the file exists: chmod to its bits at the end
    fd, tmp = _create_temp(folder, os.path.basename(path), 0o666 if mode is None else 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            # the digests are written last: an interrupted file never passes the checks
            f.write(_PREAMBLE.pack(_MAGIC, len(header), data_len, bytes(32), bytes(32)))
            f.write(header + bytes(start - _PREAMBLE.size - len(header)))
            data_digest = _write_data(f, enc.entries, data_len)
            if f.tell() != start + data_len:
                raise RuntimeError("checkpoint size changed while saving (arrays resized?)")
            f.seek(0)
            head_digest = hashlib.sha256(header).digest()
            f.write(_PREAMBLE.pack(_MAGIC, len(header), data_len, head_digest, data_digest))
            f.flush()
            os.fsync(f.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(folder)


# ------------------------------------------------------------------------------------ load

_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_HEX_INT = re.compile(r"-?[0-9a-f]+")
_HEX_FLOAT = re.compile(r"[0-9a-f]{16}")
_HEX_STR = re.compile(r"(?:[0-9a-f]{8})*")


def _json_depth(text: bytes) -> int:
    """Deepest nesting of [ and { outside strings (checked before json.loads recurses)."""
    a = np.frombuffer(_JSON_STRING.sub(b'""', text), np.uint8)
    step = (a == ord("[")).astype(np.int32)
    step += a == ord("{")
    step -= a == ord("]")
    step -= a == ord("}")
    return int(np.cumsum(step).max()) if len(step) else 0


def _short(x: Any) -> str:
    """repr of a value read from a file, cut to a length fit for an error message."""
    r = repr(x)
    return r if len(r) <= 80 else r[:77] + "..."


def _no_constant(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


def _pairs(pairs: list) -> dict:
    d = dict(pairs)
    if len(d) != len(pairs):
        raise ValueError("a JSON object repeats a key")
    return d


def _json_int(s: str) -> int:
    if len(s.lstrip("-")) > 19:
        raise ValueError("a JSON integer has more than 19 digits")
    return int(s)


class _Plan:
    """A validated entry: where its bytes are and what object to make of them."""

    __slots__ = ("kind", "dtype", "shape", "order", "requires_grad", "parameter", "offset")

    def __init__(self, i: int, rec: Any) -> None:
        where = f"entry {i}"
        if type(rec) is not dict or not rec.keys() <= _ENTRY_KEYS:
            raise ValueError(f"{where} is not an entry record")
        self.kind = rec.get("kind")
        self.dtype = rec.get("dtype")
        shape = rec.get("shape")
        self.order = rec.get("order", "C")
        self.requires_grad = rec.get("requires_grad", False)
        self.parameter = rec.get("parameter", False)
        if self.kind not in _KINDS:
            raise ValueError(f"{where} has an unknown kind {_short(self.kind)}")
        if type(self.dtype) is not str or self.dtype not in _DTYPES:
            raise ValueError(f"{where} has an unsupported dtype {_short(self.dtype)}")
        if (
            type(shape) is not list
            or len(shape) > _MAX_NDIM
            or not all(type(n) is int and 0 <= n < _INT_LIMIT for n in shape)
        ):
            raise ValueError(f"{where} has an invalid shape {_short(shape)}")
        self.shape = tuple(shape)
        if self.order not in ("C", "F") or (self.order == "F" and self.kind in ("scalar", "bytes")):
            raise ValueError(f"{where} has an invalid order {_short(self.order)}")
        if type(self.requires_grad) is not bool or type(self.parameter) is not bool:
            raise ValueError(f"{where} has non-bool flags")
        if self.requires_grad and self.kind != "tensor":
            raise ValueError(f"{where}: only tensors have requires_grad")
        if self.parameter and self.kind not in ("tensor", "ndarray"):
            raise ValueError(f"{where}: only tensors and arrays are parameters")
        if self.kind == "tensor" and self.dtype not in _TORCH_NAMES:
            raise ValueError(f"{where}: a tensor cannot have dtype {self.dtype!r}")
        if self.requires_grad and self.dtype not in _GRAD_DTYPES:  # torch would raise later
            raise ValueError(f"{where}: a {self.dtype!r} tensor cannot require gradients")
        if self.kind == "scalar" and self.shape:
            raise ValueError(f"{where}: a scalar has shape ()")
        if self.kind == "bytes" and (self.dtype != "|u1" or len(self.shape) != 1):
            raise ValueError(f"{where}: bytes are a 1-d |u1 entry")
        self.offset = 0

    @property
    def itemsize(self) -> int:
        return 2 if self.dtype in _BFLOAT16_ORDER else int(self.dtype[2:])

    def nbytes(self) -> int:
        # zero-size arrays may have any other extents: bound them as if each were 1 at least
        if math.prod(max(n, 1) for n in self.shape) * self.itemsize >= _INT_LIMIT >> 1:
            raise ValueError(f"an entry of shape {self.shape} is too large for any array")
        return math.prod(self.shape) * self.itemsize


class _Loader:
    def __init__(self, path: str, f: Any, size: int, head: bytes) -> None:
        self.path = path
        self.f = f
        self.size = size
        self.head = head

    def fail(self, what: str) -> ValueError:
        return ValueError(f"checkpoint {self.path!r} {what}")

    def read_exact(self, n: int) -> bytes:
        """``n`` bytes (at most the file size, checked by the caller)."""
        buf = bytearray(n)
        self.read_into(memoryview(buf))
        return bytes(buf)

    def read_into(self, buf: memoryview) -> None:
        got = 0
        while got < len(buf):
            more = self.f.readinto(buf[got:])
            if not more:
                raise self.fail("is truncated (the file shrank while it was read)")
            got += more

    def run(self) -> Any:
        magic, hlen, dlen, hdig, ddig = _PREAMBLE.unpack(self.head)
        if hlen > MAX_HEADER_BYTES:
            raise self.fail(f"declares a {hlen}-byte header (more than {MAX_HEADER_BYTES})")
        start = _align(_PREAMBLE.size + hlen)
        if start + dlen != self.size:
            raise self.fail(
                f"is truncated or padded: {self.size} bytes, its header declares {start + dlen}"
            )
        raw = self.read_exact(start - _PREAMBLE.size)
        header = raw[:hlen]
        if hashlib.sha256(header).digest() != hdig:
            raise self.fail("is corrupted (SHA-256 mismatch of the header)")
        if raw.count(0, hlen) != len(raw) - hlen:
            raise self.fail("is corrupted (non-zero padding after the header)")
        doc = self.parse(header)
        try:
            plans = [_Plan(i, rec) for i, rec in enumerate(doc["entries"])]
        except ValueError as e:
            raise self.fail(f"has an invalid entry table: {e}") from None
        pos = 0
        for p in plans:
            p.offset = _align(pos)
            pos = p.offset + p.nbytes()
            if pos > dlen:
                raise self.fail(f"declares entries larger than its {dlen}-byte data section")
        if pos != dlen:
            raise self.fail(f"declares {pos} bytes of entries but has {dlen} bytes of data")
        objects = self.read_entries(plans, dlen, ddig)
        try:
            return _Decoder(objects, plans).decode(doc["root"], 0)
        except (ValueError, RecursionError) as e:
            raise self.fail(f"has an invalid structure: {e}") from None

    def parse(self, header: bytes) -> dict:
        try:
            header.decode("ascii")
            if _json_depth(header) > _MAX_JSON_DEPTH:
                raise ValueError(f"JSON nesting deeper than {_MAX_JSON_DEPTH}")
            doc = json.loads(
                header,
                object_pairs_hook=_pairs,
                parse_constant=_no_constant,
                parse_int=_json_int,
            )
        except (ValueError, RecursionError) as e:  # UnicodeDecodeError, JSONDecodeError
            raise self.fail(f"has an invalid header ({e})") from None
        if (
            type(doc) is not dict
            or doc.keys() != {"format", "version", "entries", "root"}
            or doc["format"] != _FORMAT
            or type(doc["entries"]) is not list
        ):
            raise self.fail("has an invalid header (not a fastact checkpoint header)")
        if doc["version"] != _VERSION or type(doc["version"]) is not int:
            raise self.fail(f"has unsupported format version {_short(doc['version'])}")
        return doc

    def read_entries(self, plans: list[_Plan], dlen: int, digest: bytes) -> list:
        torch = None
        if any(p.kind == "tensor" for p in plans):
            torch = _import_optional("torch")
            if torch is None:
                warnings.warn(
                    f"checkpoint {self.path!r} holds torch tensors but torch is not "
                    "installed: they are returned as NumPy arrays",
                    UserWarning,
                    stacklevel=4,
                )
        ml_dtypes = None
        if any(p.dtype in _BFLOAT16_ORDER and (p.kind != "tensor" or torch is None) for p in plans):
            ml_dtypes = _import_optional("ml_dtypes")
            if ml_dtypes is None:
                warnings.warn(
                    f"checkpoint {self.path!r} holds bfloat16 arrays but neither ml_dtypes "
                    "nor torch (for tensors) is installed: they are returned as float32 "
                    "arrays holding the same values",
                    UserWarning,
                    stacklevel=4,
                )
        hasher = _Hasher(dlen)
        objects: list = []
        pos = 0
        try:
            for p in plans:
                views = []
                if p.offset > pos:
                    pad = bytearray(p.offset - pos)
                    views.append(memoryview(pad))
                obj, buf = _allocate(p, torch, ml_dtypes)
                views.append(buf)
                for view in views:
                    for piece in hasher.cut(view):
                        self.read_into(piece)
                        hasher.add(piece)
                if p.offset > pos and pad.count(0) != len(pad):
                    raise self.fail("is corrupted (non-zero padding between arrays)")
                objects.append(obj)
                pos = p.offset + p.nbytes()
            digest_ok = pos == dlen and hasher.digest() == digest
        finally:
            hasher.close()
        if not digest_ok:
            raise self.fail("is corrupted (SHA-256 mismatch of the data)")
        return [_finish(p, o, torch, ml_dtypes) for p, o in zip(plans, objects, strict=True)]


def _reversed_dims(t: Any) -> Any:
    """``t`` with its dimensions in reverse order (a view): C-contiguous exactly when ``t`` is
    Fortran-contiguous, the memory order of an entry with ``"order": "F"``."""
    return t.permute(*range(t.dim() - 1, -1, -1))


def _allocate(p: _Plan, torch: Any, ml_dtypes: Any) -> tuple[Any, memoryview]:
    """An uninitialised object for entry ``p`` and a writable byte view of its memory."""
    if p.kind == "tensor" and torch is not None:
        dtype = getattr(torch, _TORCH_NAMES[p.dtype])
        if p.order == "F":  # Fortran strides (a tensor of its own, not a view of another)
            strides = [1]
            for n in p.shape[:-1]:
                strides.append(strides[-1] * max(n, 1))
            t = torch.empty_strided(p.shape, strides, dtype=dtype)
            flat = _reversed_dims(t).reshape(-1)
        else:
            t = torch.empty(p.shape, dtype=dtype)
            flat = t.reshape(-1)
        buf = flat.view(torch.uint8).numpy() if flat.numel() else np.empty(0, np.uint8)
        return t, memoryview(buf)
    if p.dtype in _BFLOAT16_ORDER:
        order = _BFLOAT16_ORDER[p.dtype]
        if ml_dtypes is None:
            dtype = np.dtype(order + "u2")  # the bits, made float32 by _finish
        else:
            dtype = np.dtype(ml_dtypes.bfloat16)
            if order != _NATIVE_ORDER:
                dtype = dtype.newbyteorder(order)
    else:
        dtype = np.dtype(p.dtype)
    if p.parameter and p.kind == "ndarray":  # a fastact.nn.Parameter, owning its memory
        a = np.ndarray.__new__(Parameter, p.shape, dtype, order=p.order)
    else:
        a = np.empty(p.shape, dtype, order=p.order)
    return a, memoryview(_byte_view(a))


def _finish(p: _Plan, obj: Any, torch: Any, ml_dtypes: Any) -> Any:
    if p.kind == "tensor" and torch is not None:
        if p.parameter:
            return torch.nn.Parameter(obj, requires_grad=p.requires_grad)
        return obj.requires_grad_(p.requires_grad)
    if p.dtype in _BFLOAT16_ORDER and ml_dtypes is None:  # exact: bfloat16 is float32's top half
        obj = (obj.astype(np.uint32) << np.uint32(16)).view(np.float32)
    if p.kind == "scalar":
        return obj[()]
    if p.kind == "bytes":
        return obj.tobytes()
    return obj


class _Decoder:
    """Builds the structure from the JSON tree; ValueError for anything not in the grammar."""

    def __init__(self, objects: list, plans: list[_Plan]) -> None:
        self.objects = objects
        self.plans = plans

    def decode(self, node: Any, depth: int, key: bool = False) -> Any:
        t = type(node)
        if node is None or t is bool or t is str:
            return node
        if t is int:
            if not -_INT_LIMIT < node < _INT_LIMIT:
                raise ValueError("an int outside the JSON range")
            return node
        if t is float:
            if not math.isfinite(node):
                raise ValueError("a non-finite JSON number")
            return node
        if t is list:
            if key:
                raise ValueError("a list used as a dict key")
            self.enter(depth)
            return [self.decode(v, depth + 1) for v in node]
        if t is not dict or not node:
            raise ValueError(f"unexpected {t.__name__}")
        tag = next(iter(node))
        value = node[tag]
        extra = node.keys() - {tag}
        if extra and not (tag == "odict" and extra == {"_metadata"}):
            raise ValueError(f"a node with keys {_short(sorted(node))}")
        if tag in _CONTAINER_TAGS:
            self.enter(depth)
        if tag == "tuple" and type(value) is list:
            return tuple(self.decode(v, depth + 1, key) for v in value)
        if tag in _DICT_TAGS and type(value) is list and not key:
            return self._dict(tag, value, node.get("_metadata"), depth + 1)
        if tag == "int" and type(value) is str and _HEX_INT.fullmatch(value):
            return int(value, 16)
        if tag == "float" and type(value) is str and _HEX_FLOAT.fullmatch(value):
            return struct.unpack("<d", bytes.fromhex(value))[0]
        if tag == "str" and type(value) is str and _HEX_STR.fullmatch(value):
            return bytes.fromhex(value).decode("utf-32-be", "surrogatepass")  # or ValueError
        if tag == "data" and type(value) is int and 0 <= value < len(self.objects):
            if key and self.plans[value].kind not in ("scalar", "bytes"):
                raise ValueError("an array used as a dict key")
            return self.objects[value]
        raise ValueError(f"invalid node {_short(tag)}")

    @staticmethod
    def enter(depth: int) -> None:
        if depth >= MAX_DEPTH:
            raise ValueError(f"nested deeper than {MAX_DEPTH} levels")

    def _dict(self, tag: str, pairs: list, meta: Any, depth: int) -> Any:
        out = _DICT_TAGS[tag]()
        for pair in pairs:
            if type(pair) is not list or len(pair) != 2:
                raise ValueError("a dict item is not a [key, value] pair")
            k = self.decode(pair[0], depth, True)
            if k in out:
                raise ValueError(f"a dict repeats the key {_short(k)}")
            out[k] = self.decode(pair[1], depth)
        if meta is not None:
            out._metadata = self.decode(meta, depth)
        return out


def load(path: str | os.PathLike, *, allow_pickle: bool = False) -> Any:
    """Read a structure written by :func:`save`; ``ValueError`` for anything else.

    No code from the file runs: the structure is JSON, arrays are raw bytes read into
    freshly allocated arrays (one copy in memory), and both SHA-256 digests (header, data)
    are checked before anything is returned. A damaged, truncated, padded or forged file,
    a pickle, a ``torch.save`` file or a header that declares more than the file holds
    raises ``ValueError`` naming the problem, before any object is built from it.

    ``allow_pickle=True`` also loads version-1 files (written by fastact before this format:
    a pickle behind a length and a SHA-256 digest). Unpickling runs whatever code the file
    names: use it only for files you trust, then re-save them in the safe format.
    """
    path = os.fspath(path)
    if not isinstance(path, str):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    if type(allow_pickle) is not bool:
        raise TypeError(f"allow_pickle must be a bool, got {type(allow_pickle).__name__}")
    with open(path, "rb", buffering=0) as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(min(size, _PREAMBLE.size))
        if head.startswith(_LEGACY_MAGIC):
            return _load_legacy(path, f, size, head, allow_pickle)
        if not head.startswith(_MAGIC[:12]):
            raise ValueError(f"{path!r} is not a fastact checkpoint{_what_is(head)}")
        if len(head) < len(_MAGIC) and _MAGIC.startswith(head):
            raise ValueError(f"checkpoint {path!r} is truncated ({size} bytes)")
        if not head.startswith(_MAGIC):
            raise ValueError(
                f"{path!r} is a fastact checkpoint of an unsupported format version "
                f"(byte {head[12:13]!r}); a newer fastact may read it"
            )
        if len(head) < _PREAMBLE.size:
            raise ValueError(f"checkpoint {path!r} is truncated ({size} bytes)")
        return _Loader(path, f, size, head).run()


def _what_is(head: bytes) -> str:
    if head[:1] == b"\x80" or head[:2] in (b"(d", b"(l", b"}q", b"]q"):
        return " (it looks like a pickle, which fastact does not load: it can run code)"
    if head[:4] == b"PK\x03\x04":
        return " (it looks like a torch.save zip file; load it with torch.load)"
    return " (or its header is damaged)"


def _load_legacy(path: str, f: Any, size: int, head: bytes, allow_pickle: bool) -> Any:
    if not allow_pickle:
        raise ValueError(
            f"{path!r} is a version-1 fastact checkpoint, a pickle: loading it can run any "
            "code the file names. Only if you trust its origin, load it with "
            "allow_pickle=True, and re-save it (fastact.optim.save writes the safe format)"
        )
    start = len(_LEGACY_MAGIC) + _LEGACY_HEADER.size
    if size < start:
        raise ValueError(f"{path!r} is not a fastact checkpoint (or its header is damaged)")
    data = head + f.readall()
    length, digest = _LEGACY_HEADER.unpack_from(data, len(_LEGACY_MAGIC))
    payload = data[start:]
    if len(payload) != length:
        raise ValueError(
            f"checkpoint {path!r} is truncated or padded: {len(payload)} payload bytes, "
            f"expected {length}"
        )
    if hashlib.sha256(payload).digest() != digest:
        raise ValueError(f"checkpoint {path!r} is corrupted (SHA-256 mismatch)")
    import pickle  # only here, only when asked for

    return pickle.loads(payload)
