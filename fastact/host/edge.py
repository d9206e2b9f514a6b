"""The host array edge as the front ends see it: inputs, results and their dtypes.

The same functions exist in the CUDA executor (:mod:`fastact.cuda`) with the device's rules;
the host follows NumPy's: any array-like is accepted, non-float inputs are cast like NumPy's
float ufuncs, and two inputs of different float types meet in the wider one.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fastact._core.arrays import as_float_array, check_inplace, check_out

__all__ = [
    "NAME",
    "astype",
    "contiguous",
    "empty",
    "finish",
    "float_input",
    "inplace_input",
    "common_dtype",
    "c_contiguous",
    "result",
    "shape_of",
]

#: This executor's name (``"cuda"`` for the device executor).
NAME = "host"


def float_input(x: Any, name: str) -> np.ndarray:
    """``x`` as a float32/float64 array (a view when it already is one); errors name ``name``."""
    return as_float_array(x, name)


def inplace_input(x: Any, name: str = "input") -> np.ndarray:
    """``x`` itself, checked to be a writeable float32/float64 array."""
    return check_inplace(x, name)


def common_dtype(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str):
    """Two float arrays in their common (wider) float type (NumPy's promotion)."""
    if a.dtype == b.dtype:
        return a, b
    dt = np.promote_types(a.dtype, b.dtype)
    return a.astype(dt, copy=False), b.astype(dt, copy=False)


def c_contiguous(a: np.ndarray) -> bool:
    return a.flags.c_contiguous


def shape_of(a: Any) -> tuple:
    return a.shape


def astype(a: np.ndarray, dtype: np.dtype) -> np.ndarray:
    return a.astype(dtype, copy=False)


def contiguous(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a)


def empty(like: Any, shape: tuple, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """A new C-contiguous array: (object to return, array to write), the same array here."""
    a = np.empty(shape, dtype)
    return a, a


def result(out: Any, like: Any, shape: tuple, dtype: np.dtype, inputs: tuple):
    """(object to return, C-contiguous array to write, strided target or None): a new array,
    or the caller's validated ``out`` (written through a temporary when it is not
    C-contiguous or shares memory with an input)."""
    if out is None:
        a = np.empty(shape, dtype)
        return a, a, None
    check_out(out, shape, dtype, inputs)
    if out.flags.c_contiguous and not any(
        a is not None and np.may_share_memory(a, out) for a in inputs
    ):
        return out, out, None
    return out, np.empty(shape, dtype), out


def finish(res: Any, written: np.ndarray, target: np.ndarray | None) -> Any:
    """Copy ``written`` into ``target`` when :func:`result` returned one; return ``res``."""
    if target is not None:
        target[...] = written
    return res
