"""fastact's activations: forward, backward and in-place calls, and in-place peak memory.

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
    """Peak memory of one call on 16M float32 elements: in place (no new array) against
    out of place (one 64 MiB result)."""

    params = (functions("inplace"), ["inplace", "out_of_place"])
    param_names = ["function", "mode"]
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

    def peakmem_forward(self, function, mode):
        self.f(self.x, *self.args)
