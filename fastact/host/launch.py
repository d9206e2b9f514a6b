"""Compiled (serial, parallel) pairs of loop templates and the per-call choice between them."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from fastact._core.jit import specialize
from fastact._core.threads import use_parallel
from fastact._core.thresholds import PARALLEL_THRESHOLD
from fastact._core.torch_pool import pool_threads, run_split

__all__ = ["pair", "pick", "launch", "SPLIT_ALIGN", "MIN_ROWS_PER_THREAD"]

#: Element-wise work on torch's pool is split at multiples of this many elements (whole
#: cache lines and vectors; 1 KiB of float32).
SPLIT_ALIGN = 256
#: Axis kernels on torch's pool: at least this many rows per thread (else numba's layer).
MIN_ROWS_PER_THREAD = 4


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


def launch(
    kernels: tuple,
    n: int,
    args: Sequence,
    split: Sequence[int],
    threshold: int = PARALLEL_THRESHOLD,
    tensors: bool = False,
) -> None:
    """Run a ``(serial, parallel)`` pair over ``n`` elements: the serial kernel on torch's
    thread pool, each thread on its share of the C-contiguous arrays ``args[i]``, ``i`` in
    ``split``, along their leading axis (where :func:`~fastact._core.torch_pool.pool_threads`
    says so; ``tensors``: the work is on torch tensors), else the kernel :func:`pick`
    chooses, on all of ``args``. Multi-dimensional splits (rows of an axis kernel) need
    ``MIN_ROWS_PER_THREAD`` rows per thread: fewer rows balance badly, and the parallel
    kernels split inside a row's blocks as well; 1-d ones are aligned to ``SPLIT_ALIGN``."""
    pool = pool_threads(n, threshold, tensors)
    if pool:
        first = args[split[0]]
        if first.ndim == 1:
            run_split(kernels[0], args, split, pool, SPLIT_ALIGN)
            return
        if first.shape[0] >= MIN_ROWS_PER_THREAD * pool and all(
            args[i].flags.c_contiguous for i in split
        ):
            run_split(kernels[0], args, split, pool, 1)
            return
    try:
        pick(kernels, n, threshold)(*args)
    except SystemError as e:
        reraise_inner(e)


def reraise_inner(e: SystemError):
    """Raise the exception a parallel loop raised inside (a user's kernel: numba reports
    "returned a result with an exception set", the error itself only in the context)."""
    ctx = e.__context__
    if isinstance(ctx, Exception) and not isinstance(ctx, SystemError):
        raise ctx.with_traceback(ctx.__traceback__) from None
    raise e
