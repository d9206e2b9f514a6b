"""Software prefetch for the streaming host loops.

On the 2-core Intel Xeon VM the hardware prefetchers alone did not overlap a long loop
body's arithmetic with its memory traffic: at 2**24 float32 elements gelu(tanh)'s gradient
took 10.0 ms, about its in-cache compute time (6.1 ms) plus a plain copy's (6.3 ms). Loops
over pieces of ``STREAM_PIECE_BYTES`` of each array, each after a hint for the lines
``STREAM_AHEAD_BYTES`` further on, took 7.1 ms (``notes/perf_experiments.md``, "Prefetch in
the element-wise loops"). Below ``STREAM_MIN_BYTES`` per array the plain loop runs: there the
arrays of a pass fit a 32-48 MB last-level cache, the hardware prefetchers keep up, and the
pieces only cost (2 threads, plain / streamed, float32: forwards of sigmoid, silu, gelu at
2**20 elements 1.00-1.11x slower streamed, at 2**21 1.04-1.11x; gradients at 2**20 0.98-1.08x,
2**21 0.95-1.08x; from 2**22 streaming was level or faster: forwards 0.97-1.00x, gradients
0.83-0.96x, and at 2**23-2**24 0.89-0.93x for sigmoid and silu forwards). The cheapest loops
(relu's) lost 10-25% with the hint, at any distance tried: their specs opt out
(``Elementwise(stream=False)``).
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from fastact._core.jit import jit

__all__ = [
    "STREAM_AHEAD_BYTES",
    "STREAM_MIN_BYTES",
    "STREAM_PIECE_BYTES",
    "prefetch",
    "prefetch_ahead",
    "streamed",
]

#: bytes of each array per piece of a streaming loop (128 float32, 64 float64 elements)
STREAM_PIECE_BYTES = 512
#: how far ahead of its piece a streaming loop prefetches, in bytes of each array
STREAM_AHEAD_BYTES = 2048
#: bytes per array from which the host loops stream in pieces (2**22 float32 elements: the
#: three arrays of a gradient pass no longer fit a 48 MB last-level cache)
STREAM_MIN_BYTES = 16 << 20


@intrinsic
def prefetch(typingctx, address):
    """A hint to bring the 64-byte line at integer ``address`` into the L1 cache
    (``llvm.prefetch``: read, highest locality, data): it never faults, whatever the address."""
    if not isinstance(address, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        i8p = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
        flags = [ir.Constant(i32, v) for v in (0, 3, 1)]  # read, locality 3, data cache
        builder.call(fn, [builder.inttoptr(args[0], i8p), *flags])
        return context.get_dummy_value()

    return types.void(address), codegen


@jit
def prefetch_ahead(a, lo, m):
    """Hint the lines of ``a[lo : lo + m]`` moved STREAM_AHEAD_BYTES on (``a`` contiguous; a
    hint never faults, also past the end of ``a``)."""
    base = a.ctypes.data + lo * a.itemsize + STREAM_AHEAD_BYTES
    for q in range(0, m * a.itemsize, 64):
        prefetch(base + q)


@jit
def streamed(a):
    """Whether the host loops stream the 1-d array ``a``: STREAM_MIN_BYTES or more."""
    return a.shape[0] * a.itemsize >= STREAM_MIN_BYTES
