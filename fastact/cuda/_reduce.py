"""Block reductions shared by the CUDA kernels (shared-memory trees, one partial per block).

A kernel reduces its threads' float64 values with :func:`block_sum` / :func:`block_max` into
one value per block, writes it to a partials array, and a second small launch
(:func:`column_sums`) adds the partials: no global atomics, and the summation order is fixed
for a given launch configuration.
"""

from __future__ import annotations

from numba import cuda

from fastact.cuda._retarget import DEVICE_OPTIONS
from fastact.cuda._runtime import THREADS

__all__ = ["block_sum", "block_max", "column_sums", "THREADS"]


@cuda.jit(device=True, **DEVICE_OPTIONS)
def block_sum(v, sh):
    """Sum of ``v`` over the block (every thread gets it); ``sh``: shared float64[THREADS]."""
    t = cuda.threadIdx.x
    sh[t] = v
    cuda.syncthreads()
    s = THREADS // 2
    while s > 0:
        if t < s:
            sh[t] += sh[t + s]
        cuda.syncthreads()
        s //= 2
    r = sh[0]
    cuda.syncthreads()
    return r


@cuda.jit(device=True, **DEVICE_OPTIONS)
def block_max(v, sh):
    """Maximum of ``v`` over the block (NaNs are ignored unless all are NaN)."""
    t = cuda.threadIdx.x
    sh[t] = v
    cuda.syncthreads()
    s = THREADS // 2
    while s > 0:
        if t < s:
            a = sh[t + s]
            if a > sh[t] or sh[t] != sh[t]:
                sh[t] = a
        cuda.syncthreads()
        s //= 2
    r = sh[0]
    cuda.syncthreads()
    return r


@cuda.jit(**DEVICE_OPTIONS)
def _column_sums(partial, out):
    """out[c] = sum over rows of partial[:, c] (one thread per column, fixed order)."""
    c = cuda.grid(1)
    stride = cuda.gridsize(1)
    rows, cols = partial.shape
    while c < cols:
        acc = 0.0
        for r in range(rows):
            acc += partial[r, c]
        out[c] = acc
        c += stride


def column_sums(partial, out, stream) -> None:
    """Second pass of a block reduction: ``out[c] = partial[:, c].sum()`` (out may be any
    float dtype; the sum is float64)."""
    from fastact.cuda._runtime import blocks

    cols = partial.shape[1]
    if cols:
        _column_sums[blocks(cols), THREADS, stream](partial, out)
