"""Compiled (serial, parallel) pairs of loop templates and the per-call choice between them."""

from __future__ import annotations

from collections.abc import Callable

from fastact._core.jit import specialize
from fastact._core.threads import use_parallel
from fastact._core.thresholds import PARALLEL_THRESHOLD

__all__ = ["pair", "pick"]


def pair(loop: Callable, name: str | None = None, **globals_) -> tuple:
    """(serial, parallel) kernels of a module-level loop template, each cached on its own;
    ``globals_`` rebinds names the template calls (see :func:`fastact._core.jit.specialize`)."""
    name = name or loop.__name__
    return (
        specialize(loop, f"{name}_serial", parallel=False, **globals_),
        specialize(loop, f"{name}_parallel", parallel=True, **globals_),
    )


def pick(kernels: tuple, n: int, threshold: int = PARALLEL_THRESHOLD):
    """The serial or the parallel kernel of a ``(serial, parallel)`` pair for ``n`` elements."""
    return kernels[1] if use_parallel(n, threshold) else kernels[0]
