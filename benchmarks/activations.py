"""fastact's activations: forward, backward and in-place calls, and the memory a call allocates.

Generated from the working tree's registries (``ACTIVATIONS`` and ``AXIS_ACTIVATIONS``, through
the benchmark harness): every function x dtype x size. fastact alone: the peers' timings of
the same calls are the ``peers`` suite (one benchmark per peer), so these graphs show
fastact's own times on their own scale, and the regression search sees only fastact here.
"""

from __future__ import annotations

import numpy as np

from ._common import DTYPES, SIZES, ActivationBench, functions


class Forward(ActivationBench):
    """``fastact.name(x, *defaults)``."""

    variant = "forward"
    params = (functions("forward"), DTYPES, SIZES)

    def time_forward(self, function, dtype, size):
        self._run()


class Backward(ActivationBench):
    """``fastact.name_backward(g, x)`` (from the output where torch's autograd saves it)."""

    variant = "backward"
    params = (functions("backward"), DTYPES, SIZES)

    def time_backward(self, function, dtype, size):
        self._run()


class Inplace(ActivationBench):
    """``fastact.name_(x)``; the input is restored (untimed) before every call."""

    variant = "inplace"
    params = (functions("inplace"), DTYPES, SIZES)

    def time_inplace(self, function, dtype, size):
        self._run()


class InplaceMemory:
    """Memory one call allocates on 16M float32 elements: in place (nothing) against out of
    place (the 64 MiB result). The value is the peak of NumPy's allocations during the call
    (``tracemalloc``; NumPy reports its array buffers to it), so it is exact and repeatable.
    asv's ``peakmem_`` (the process's peak RSS) is not used: a process forked from asv's
    fork server starts with the server's high-water mark, which moves with what the server
    did before forking (every in-place function's peak moved 280 -> 333 MB between two
    commits that did not touch them), a step the regression search would list."""

    params = (functions("inplace"), ["inplace", "out_of_place"])
    param_names = ["function", "mode"]
    unit = "bytes"
    timeout = 300

    def setup(self, function, mode):
        import fastact

        name = function + ("_" if mode == "inplace" else "")
        if not hasattr(fastact, name):
            raise NotImplementedError(f"fastact.{name} is not in this commit")
        small = np.linspace(-3, 3, 1 << 16, dtype=np.float32)
        self.f = getattr(fastact, name)
        self.args = (0.1, 20.0) if function == "threshold" else ()
        self.f(small.copy(), *self.args)  # compile/load serial and parallel kernels first
        self.f(small[:64].copy(), *self.args)
        self.x = np.resize(np.linspace(-3, 3, 1 << 16, dtype=np.float32), 1 << 24)
        self.f(self.x, *self.args)  # first touch of the input, thread pool started

    def track_allocated_bytes(self, function, mode):
        import tracemalloc

        tracemalloc.start()
        try:
            out = self.f(self.x, *self.args)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        del out
        return peak
