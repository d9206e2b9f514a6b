"""The host array edge as the front ends see it: inputs, results and their dtypes.

The same functions exist in the CUDA executor (:mod:`fastact.cuda`) with the device's rules;
the host follows NumPy's: any array-like is accepted, non-float inputs are cast like NumPy's
float ufuncs, and two inputs of different float types meet in the wider one.

CPU torch tensors are NumPy arrays here: an argument is viewed without copying
(:func:`fastact._core.arrays.tensor_input`; a tensor that requires grad is refused with a
pointer to :mod:`fastact.torch`), and a result is allocated as a tensor when the call's
``like`` argument (its first array) is one, so tensor input gives tensor output; a call's
new result is then brought to one rule for every function (:func:`tensor_result`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fastact._core.arrays import (
    as_float_array,
    as_tensor,
    check_inplace,
    check_out,
    is_tensor,
    tensor_input,
    tensor_output,
    torch_dtype,
    torch_module,
)

__all__ = [
    "NAME",
    "astype",
    "contiguous",
    "empty",
    "finish",
    "float_input",
    "inplace_input",
    "output_view",
    "common_dtype",
    "c_contiguous",
    "result",
    "shape_of",
    "tensor_result",
]

#: This executor's name (``"cuda"`` for the device executor).
NAME = "host"


def float_input(x: Any, name: str) -> np.ndarray:
    """``x`` as a float32/float64 array (a view when it already is one); errors name ``name``."""
    if type(x) is not np.ndarray and is_tensor(x):
        x = tensor_input(x, name)
    return as_float_array(x, name)


def inplace_input(x: Any, name: str = "input") -> np.ndarray:
    """``x`` itself (a view of a tensor), checked to be a writeable float32/float64 array."""
    if type(x) is not np.ndarray and is_tensor(x):
        x = tensor_output(x, name)
    return check_inplace(x, name)


def output_view(out: Any, name: str = "out") -> Any:
    """A caller's output argument as the array to validate and write (a tensor's view)."""
    if out is not None and type(out) is not np.ndarray and is_tensor(out):
        return tensor_output(out, name)
    return out


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


def empty(like: Any, shape: tuple, dtype: np.dtype) -> tuple[Any, np.ndarray]:
    """A new C-contiguous array: (object to return, array to write), the same array, or a
    tensor and its view when ``like`` is a tensor."""
    if type(like) is not np.ndarray and is_tensor(like):
        t = torch_module().empty(shape, dtype=torch_dtype(dtype))
        return t, t.numpy()
    a = np.empty(shape, dtype)
    return a, a


def result(out: Any, like: Any, shape: tuple, dtype: np.dtype, inputs: tuple):
    """(object to return, C-contiguous array to write, strided target or None): a new array,
    or the caller's validated ``out`` (written through a temporary when it is not
    C-contiguous or shares memory with an input)."""
    if out is None:
        res, a = empty(like, shape, dtype)
        return res, a, None
    o = check_out(output_view(out), shape, dtype, inputs)  # (a subclass: a plain view)
    if o.flags.c_contiguous and not any(
        a is not None and np.may_share_memory(a, o) for a in inputs
    ):
        return out, o, None
    return out, np.empty(shape, dtype), o


def finish(res: Any, written: np.ndarray, target: np.ndarray | None) -> Any:
    """Copy ``written`` into ``target`` when :func:`result` returned one; return ``res``."""
    if target is not None:
        target[...] = written
    return res


def tensor_result(res: Any, arrays: tuple) -> Any:
    """A new result (array or tensor) of a call on ``arrays`` (its array arguments, None
    allowed), by one rule for every function: a tensor when any of ``arrays`` is a tensor
    (whichever argument it is), bfloat16 (computed in float32, NumPy having no bfloat16)
    when every tensor among them is bfloat16, as torch's result would be; else ``res`` (also
    for a result that is neither an array nor a tensor: a device array of the CUDA
    executor)."""
    torch = torch_module()
    if torch is None:
        return res
    tensors = ()  # one pass, NumPy arrays and None skipped first: this runs on every call
    for a in arrays:
        if a is not None and type(a) is not np.ndarray and isinstance(a, torch.Tensor):
            tensors += (a,)
    if not tensors:
        return res
    if not isinstance(res, torch.Tensor):
        if not isinstance(res, (np.ndarray, np.generic)):
            return res  # a device array: the device path's own result
        res = as_tensor(res)
    if res.dtype is torch.float32:  # (bfloat16 tensors are computed in float32)
        for a in tensors:
            if a.dtype is not torch.bfloat16:
                return res
        res = res.to(torch.bfloat16)
    return res
