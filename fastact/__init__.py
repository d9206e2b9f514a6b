"""fastact: PyTorch-compatible activations, losses, optimizers and LR schedulers as
parallel Numba CPU kernels over NumPy arrays.

Activations are top-level functions named like ``torch.nn.functional``'s, each with an
in-place variant ``name_`` (where torch's module takes ``inplace=``) and ``name_backward``.
Losses live in :mod:`fastact.losses`, optimizers and schedulers in :mod:`fastact.optim`, the
scalar cores for your own ``@numba.njit`` code in :mod:`fastact.scalar`.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

from fastact import activations as _activations  # noqa: E402
from fastact.activations import ACTIVATIONS, AXIS_ACTIVATIONS  # noqa: E402

#: Public activation functions: forward, in-place and backward variants.
ACTIVATION_FUNCTIONS = [
    n for n in _activations.__all__ if n not in ("ACTIVATIONS", "AXIS_ACTIVATIONS")
]
globals().update({name: getattr(_activations, name) for name in ACTIVATION_FUNCTIONS})
_SUBMODULES = ("activations", "losses", "optim", "nn", "cuda", "scalar", "bench")

__all__ = ["__version__", "ACTIVATIONS", "AXIS_ACTIVATIONS", *ACTIVATION_FUNCTIONS, *_SUBMODULES]


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"fastact.{name}")
    raise AttributeError(f"module 'fastact' has no attribute {name!r}")
