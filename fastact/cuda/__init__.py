"""fastact on NVIDIA GPUs: the same activations, losses and optimizers as numba-cuda kernels.

Optional: needs the ``cuda`` extra (``pip install fastact[cuda]``, the maintained
``numba-cuda`` package) and a GPU (or ``NUMBA_ENABLE_CUDASIM=1``, numba's CUDA simulator, for
tests). ``import fastact`` and ``import fastact.cuda`` never need either; this module only
imports numba-cuda when a function is first used.

* Device arrays: anything exposing ``__cuda_array_interface__`` (numba device arrays, CuPy
  arrays, torch CUDA tensors) is used in place, without copies. Work is queued on the stream
  the array's interface names (its producer's stream), else on the default stream.
* Results are allocated on the device by the input's own library (torch / CuPy / numba).
* API: every element-wise activation as ``name(x, *params, out=None)``, ``name_(x)`` and
  ``name_backward(grad_output, input | output=...)`` with the CPU functions' signatures, plus
  ``prelu``, ``glu``, ``softmax``, ``log_softmax``, ``softmin`` (and their backwards),
  :mod:`fastact.cuda.losses` and :mod:`fastact.cuda.optim`. The optimizer classes of
  :mod:`fastact.optim` (``Adam(params)`` ...) take device parameters too (one fused launch
  per param group and dtype; see :mod:`fastact.cuda._optimizer`).
* The kernels are compiled from the *same* scalar Python definitions as the CPU kernels (the
  registry's ``Elementwise.scalars``, the loss scalars): see :mod:`fastact.cuda._retarget`.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

import numpy as np

__all__ = [
    "is_available",
    "is_device_array",
    "require",
    "CudaUnavailableError",
    "elementwise_forward",
    "elementwise_backward",
    "device_aware",
]


#: Argument types that are never device arrays (skipped by ``device_aware`` without a lookup).
_HOST_TYPES = frozenset({np.ndarray, float, int, bool, str, type(None), tuple, list})


class CudaUnavailableError(RuntimeError):
    """A CUDA device array was passed but fastact's CUDA path cannot run."""


def is_device_array(x: Any) -> bool:
    """True for an object living in GPU memory: ``__cuda_array_interface__`` (CuPy, torch CUDA
    tensors, numba device arrays) or a numba (simulator) device array. Cheap; imports nothing."""
    if getattr(type(x), "__cuda_ndarray__", False):
        return True
    try:
        return hasattr(x, "__cuda_array_interface__")
    except Exception:  # torch raises RuntimeError for a CUDA tensor that requires grad
        return True


_AVAILABLE: bool | None = None
_REASON = ""


def is_available() -> bool:
    """True when numba-cuda is installed and finds a usable GPU (or its simulator is on)."""
    global _AVAILABLE, _REASON
    if _AVAILABLE is None:
        try:
            installed = importlib.util.find_spec("numba_cuda") is not None
        except (ImportError, ValueError):  # blocked or broken installation
            installed = False
        if not installed:
            _AVAILABLE, _REASON = False, "numba-cuda is not installed (pip install fastact[cuda])"
        else:
            try:
                from numba import cuda

                _AVAILABLE = bool(cuda.is_available())
                _REASON = "" if _AVAILABLE else "numba-cuda finds no usable GPU or CUDA driver"
            except Exception as exc:  # broken driver / toolkit: report, never raise on query
                _AVAILABLE, _REASON = False, f"numba-cuda failed to initialise: {exc}"
    return _AVAILABLE


def require(what: str = "fastact got a CUDA device array") -> None:
    """Raise :class:`CudaUnavailableError` (a RuntimeError) unless the CUDA path can run."""
    if not is_available():
        raise CudaUnavailableError(
            f"{what}, but fastact's CUDA path is unavailable: {_REASON}. Pass NumPy arrays "
            "(copy the data to the host) or install fastact[cuda] on a machine with a GPU."
        )


_SUBMODULES = ("losses", "optim")


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"fastact.cuda.{name}")
    if name.startswith("_"):  # private submodules are imported, not looked up in the API
        raise AttributeError(f"module 'fastact.cuda' has no attribute {name!r}")
    api = importlib.import_module("fastact.cuda._api")
    try:
        return getattr(api, name)
    except AttributeError:
        raise AttributeError(f"module 'fastact.cuda' has no attribute {name!r}") from None


def __dir__() -> list[str]:
    names = set(__all__) | set(_SUBMODULES)
    if is_available():
        names |= set(importlib.import_module("fastact.cuda._api").__all__)
    return sorted(names)


# ----------------------------------------------------------------------------- CPU-side hooks
def elementwise_forward(op: Any, x: Any, values: tuple, out: Any = None, inplace: bool = False):
    """Hook for ``fastact._kernels.Elementwise.forward``: run ``op`` on device arrays (raises
    :class:`CudaUnavailableError` when the CUDA path cannot run)."""
    require()
    from fastact.cuda._elementwise import forward

    return forward(op, x, values, out, inplace)


def elementwise_backward(
    op: Any, grad_output: Any, x: Any, output: Any, values: tuple, out: Any = None
):
    """Hook for ``fastact._kernels.Elementwise.backward`` (see :func:`elementwise_forward`)."""
    require()
    from fastact.cuda._elementwise import backward

    return backward(op, grad_output, x, output, values, out)


def device_aware(fn=None, *, module: str = "fastact.cuda._api", name: str | None = None):
    """Decorator for a CPU function whose device twin has the same name in ``module``
    (``fastact.cuda._api`` for activations, ``fastact.cuda.losses`` for losses): a call with
    a device array among its arguments goes to the twin (one cheap check per argument on the
    CPU path). Without a twin, such a call raises TypeError naming the function. ``name``:
    the twin's name when it is not ``fn``'s (a public function's general part)."""
    import functools

    if fn is None:
        return functools.partial(device_aware, module=module, name=name)
    name = name or fn.__name__

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        for a in args:
            if type(a) not in _HOST_TYPES and is_device_array(a):
                break
        else:
            for a in kwargs.values():
                if type(a) not in _HOST_TYPES and is_device_array(a):
                    break
            else:
                return fn(*args, **kwargs)
        require()
        twin = getattr(importlib.import_module(module), name, None)
        if twin is None:
            raise TypeError(f"{name} does not support CUDA device arrays yet; pass NumPy arrays")
        return twin(*args, **kwargs)

    wrapper.__wrapped_cpu__ = fn
    return wrapper
