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

from fastact._core.backend import is_device_array

__all__ = [
    "is_available",
    "is_device_array",
    "require",
    "executor",
    "CudaUnavailableError",
]


class CudaUnavailableError(RuntimeError):
    """A CUDA device array was passed but fastact's CUDA path cannot run."""


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


#: Public names of fastact that take device arrays, reached as ``fastact.cuda.<name>`` too
#: (the same function objects: one front end for both executors).
_ALIASES = {"losses": "fastact.losses", "optim": "fastact.optim.functional"}


def executor(*arrays: Any):
    """The CUDA executor for a call with these arrays (see :mod:`fastact.cuda._executor`)."""
    from fastact.cuda._executor import executor as make

    return make(*arrays)


def __getattr__(name: str):
    if name in _ALIASES:
        return importlib.import_module(_ALIASES[name])
    if name.startswith("_"):  # private submodules are imported, not looked up in the API
        raise AttributeError(f"module 'fastact.cuda' has no attribute {name!r}")
    front = importlib.import_module("fastact.activations")
    if name in front.__all__ and name not in ("ACTIVATIONS", "AXIS_ACTIVATIONS"):
        return getattr(front, name)
    raise AttributeError(f"module 'fastact.cuda' has no attribute {name!r}")


def __dir__() -> list[str]:
    front = importlib.import_module("fastact.activations")
    names = set(__all__) | set(_ALIASES)
    return sorted(names | {n for n in front.__all__ if not n.isupper()})
