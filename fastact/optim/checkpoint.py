"""Crash-safe checkpoint files for state dicts (optimizer, scheduler, model).

``save(obj, path)`` writes ``obj`` (any picklable object: dicts of NumPy arrays, torch
tensors, numbers) to a temporary file in the same folder, flushes it to disk and renames it
over ``path`` in one atomic step, so a crash, a full disk or a kill at any moment leaves
either the old file or the new one, never a mix. ``load(path)`` checks a length and a
SHA-256 digest before unpickling, so a truncated or damaged file raises ``ValueError`` rather
than returning partial state. Like ``torch.load(weights_only=False)``, ``load`` unpickles:
only load files you trust.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import struct
import tempfile
from typing import Any

__all__ = ["save", "load"]

_MAGIC = b"FASTACT-CKPT\x01"
_HEADER = struct.Struct("<Q32s")  # payload length, sha256 of the payload


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


def save(obj: Any, path: str | os.PathLike) -> None:
    """Write ``obj`` to ``path`` atomically (temporary file, fsync, rename, fsync folder).

    An existing file keeps its permission bits; a new one gets 0o644. On any error the
    temporary file is removed and ``path`` is left as it was.
    """
    path = os.fspath(path)
    if not isinstance(path, str):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    payload = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)  # fails before any I/O
    folder = os.path.dirname(os.path.abspath(path))
    try:
        mode = os.stat(path).st_mode & 0o7777
    except FileNotFoundError:
        mode = 0o644
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(_MAGIC)
            f.write(_HEADER.pack(len(payload), hashlib.sha256(payload).digest()))
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(folder)


def load(path: str | os.PathLike) -> Any:
    """Read an object written by :func:`save`; ``ValueError`` if the file is damaged."""
    path = os.fspath(path)
    with open(path, "rb") as f:
        data = f.read()
    head = len(_MAGIC) + _HEADER.size
    if not data.startswith(_MAGIC) or len(data) < head:
        raise ValueError(f"{path!r} is not a fastact checkpoint (or its header is damaged)")
    size, digest = _HEADER.unpack_from(data, len(_MAGIC))
    payload = data[head:]
    if len(payload) != size:
        raise ValueError(
            f"checkpoint {path!r} is truncated or padded: {len(payload)} payload bytes, "
            f"expected {size}"
        )
    if hashlib.sha256(payload).digest() != digest:
        raise ValueError(f"checkpoint {path!r} is corrupted (SHA-256 mismatch)")
    return pickle.loads(payload)
