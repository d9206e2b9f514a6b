"""fastact: PyTorch-compatible activations, losses, optimizers and LR schedulers as
parallel Numba CPU kernels over NumPy arrays.

Activations are top-level functions named like ``torch.nn.functional``'s, each with an
in-place variant ``name_`` (where torch's module takes ``inplace=``) and ``name_backward``.
Losses live in :mod:`fastact.losses`, optimizers and schedulers in :mod:`fastact.optim`, the
scalar cores for your own ``@numba.njit`` code in :mod:`fastact.scalar`.
"""

from __future__ import annotations

import importlib
import os
import sys

from fastact._core.version import __version__

# torch's OpenMP workers spin for a while after each parallel region (GNU libgomp's default
# spin count, 300000), taking the cores that fastact's next kernel needs: alternating torch
# ops and fastact kernels on 2 cores then ran 2-9x slower (p99) than each alone. A short
# spin (1000) brings that to 1.1-1.35x without slowing torch's own back-to-back ops (0, i.e.
# passive waiting, doubles torch's latency at 64K elements; measured with
# scripts/bench_interleave.py). libgomp reads the variable when torch loads, so this only
# helps when fastact is imported first; a value set by the user, OMP_WAIT_POLICY, or
# FASTACT_KEEP_OMP_SPIN=1 leave the environment alone.
if (
    "torch" not in sys.modules
    and "GOMP_SPINCOUNT" not in os.environ
    and "OMP_WAIT_POLICY" not in os.environ
    and os.environ.get("FASTACT_KEEP_OMP_SPIN", "") in ("", "0")
):
    os.environ["GOMP_SPINCOUNT"] = "1000"

# before anything can start numba's threading layer: make the tbb wheel's library loadable
from fastact._core import threads as _threads  # noqa: E402, F401, I001

from fastact import activations as _activations  # noqa: E402
from fastact.activations import ACTIVATIONS, AXIS_ACTIVATIONS, MODULE_FUNCTIONS  # noqa: E402

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
    "elementwise",
    *ACTIVATION_FUNCTIONS,
    *_SUBMODULES,
]


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"fastact.{name}")
    raise AttributeError(f"module 'fastact' has no attribute {name!r}")
