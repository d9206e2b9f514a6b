"""Which executor runs a call: the host's, or the CUDA one for device arrays.

:func:`on_device` is the cheap test every general path makes (no import); :func:`device`
loads :mod:`fastact.cuda` by name on the first device array (nothing below the front ends
imports it) and returns its executor for the call's arrays (bound to their stream)."""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np

__all__ = ["is_device_array", "on_device", "device"]

#: Argument types that are never device arrays (skipped without a lookup).
_HOST_TYPES = frozenset({np.ndarray, float, int, bool, str, type(None), tuple, list})


def is_device_array(x: Any) -> bool:
    """True for an object living in GPU memory: ``__cuda_array_interface__`` (CuPy, torch CUDA
    tensors, numba device arrays) or a numba (simulator) device array. Cheap; imports nothing."""
    if getattr(type(x), "__cuda_ndarray__", False):
        return True
    if getattr(x, "is_cpu", None) is True:
        # a torch CPU tensor: torch's __cuda_array_interface__ property raises AttributeError
        # there, which hasattr turns into False at ~1.5 us a call
        return False
    try:
        return hasattr(x, "__cuda_array_interface__")
    except Exception:  # torch raises RuntimeError for a CUDA tensor that requires grad
        return True


def on_device(*xs: Any) -> bool:
    """Whether any argument is a device array."""
    for x in xs:
        if type(x) not in _HOST_TYPES and is_device_array(x):
            return True
    return False


def device(*xs: Any):
    """The CUDA executor for a call with these arrays (CudaUnavailableError, a RuntimeError,
    when the CUDA path cannot run)."""
    cuda = importlib.import_module("fastact.cuda")
    cuda.require()
    return cuda.executor(*xs)
