"""fastact: PyTorch-compatible activations, losses, optimizers and LR schedulers as
parallel Numba CPU kernels over NumPy arrays.

Activations are top-level functions named like ``torch.nn.functional``'s, each with an
in-place variant ``name_`` (where torch's module takes ``inplace=``) and ``name_backward``.
Losses live in :mod:`fastact.losses`, optimizers and schedulers in :mod:`fastact.optim`, the
scalar cores for your own ``@numba.njit`` code in :mod:`fastact.scalar`.
"""

# ruff: noqa: I001 (the threads module first: see below)
from __future__ import annotations

import importlib

# first, before anything can start numba's threading layer: make the tbb wheel's library loadable
from fastact._core import threads as _threads  # noqa: F401
from fastact._core.version import __version__

from fastact import activations as _activations
from fastact.activations import ACTIVATIONS, AXIS_ACTIVATIONS, MODULE_FUNCTIONS

_ACTIVATION_TABLES = ("ACTIVATIONS", "AXIS_ACTIVATIONS", "MODULE_FUNCTIONS")
#: Public activation functions: forward, in-place and backward variants (the tables excluded).
ACTIVATION_FUNCTIONS = [n for n in _activations.__all__ if n not in _ACTIVATION_TABLES]
globals().update({name: getattr(_activations, name) for name in ACTIVATION_FUNCTIONS})
from fastact.fused import elementwise  # noqa: E402

_SUBMODULES = ("activations", "losses", "optim", "nn", "cuda", "scalar", "info", "bench", "fused")

__all__ = [
    "__version__",
    "ACTIVATIONS",
    "AXIS_ACTIVATIONS",
    "MODULE_FUNCTIONS",
    "ACTIVATION_FUNCTIONS",
    "elementwise",
    *ACTIVATION_FUNCTIONS,
    *_SUBMODULES,
]


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"fastact.{name}")
    raise AttributeError(f"module 'fastact' has no attribute {name!r}")
