"""Activations: forward, backward and in-place calls, fastact next to its peers.

Generated from fastact's registries (``ACTIVATIONS`` and ``AXIS_ACTIVATIONS``): every
function x dtype x size, with the peer library as a parameter (a peer without an equivalent
is skipped). ``setup`` builds the call and runs it once, so the JIT is warm (compiled or
loaded from the cache) before anything is timed.
"""

from __future__ import annotations

import numpy as np

from ._common import DTYPES, PEERS, SIZES, activation_names, inplace_names, runner

_NAMES = activation_names()
_INPLACE = inplace_names() + (["rrelu"] if "rrelu" in _NAMES else [])


class Forward:
    """``fastact.name(x, *defaults)`` against ``torch``/``F.name``, NumPy and numexpr."""

    params = (_NAMES, DTYPES, SIZES, PEERS)
    param_names = ["function", "dtype", "size", "peer"]
    timeout = 300

    def setup(self, function, dtype, size, peer):
        self.fn = runner(peer, function, "forward", size, dtype).fn
        self.fn()  # warm: compile or load the kernel, first-touch the pages

    def time_forward(self, function, dtype, size, peer):
        self.fn()


class Backward:
    """``fastact.name_backward(g, x)`` (from the output where torch's autograd saves it)
    against torch's aten backward kernel (``torch.ops.aten.*_backward``; autograd where
    there is none) and NumPy/numexpr gradient formulas."""

    params = (_NAMES, DTYPES, SIZES, PEERS)
    param_names = ["function", "dtype", "size", "peer"]
    timeout = 300

    def setup(self, function, dtype, size, peer):
        self.fn = runner(peer, function, "backward", size, dtype).fn
        self.fn()

    def time_backward(self, function, dtype, size, peer):
        self.fn()


class Inplace:
    """``fastact.name_(x)`` against ``F.name(x, inplace=True)`` and friends. ``number = 1``
    makes asv call ``setup`` before every sample, which restores the input, so repeated
    application never drifts (e.g. into denormals)."""

    params = (_INPLACE, DTYPES, SIZES, PEERS)
    param_names = ["function", "dtype", "size", "peer"]
    number = 1
    repeat = (10, 200, 10.0)
    timeout = 300

    def setup(self, function, dtype, size, peer):
        r = runner(peer, function, "inplace", size, dtype)
        if getattr(self, "_warm", None) is not r:
            r.reset()
            r.fn()
            self._warm = r
        r.reset()
        self.fn = r.fn

    def time_inplace(self, function, dtype, size, peer):
        self.fn()


class InplaceMemory:
    """Peak memory of one call on 16M float32 elements: in place (no new array) against
    out of place (one 64 MiB result)."""

    params = (inplace_names(), ["inplace", "out_of_place"])
    param_names = ["function", "mode"]
    timeout = 300

    def setup(self, function, mode):
        import fastact

        small = np.linspace(-3, 3, 1 << 16, dtype=np.float32)
        self.f = getattr(fastact, function + ("_" if mode == "inplace" else ""))
        args = (0.1, 20.0) if function == "threshold" else ()
        self.args = args
        self.f(small.copy(), *args)  # compile/load serial and parallel kernels first
        self.f(small[:64].copy(), *args)
        self.x = np.resize(np.linspace(-3, 3, 1 << 16, dtype=np.float32), 1 << 24)

    def peakmem_forward(self, function, mode):
        self.f(self.x, *self.args)
