"""Fused chains: ``@fastact.elementwise`` against the same chain as separate calls and peers.

The cases and columns are those of ``python -m fastact bench fused``
(:mod:`fastact.bench.fused`): ``gelu(leaky_relu(2*x + 1, 0.1))`` with the exact and the tanh
gelu, and one activation as a fused function against the built-in one (call overhead).
The peers' ways (numba.vectorize, torch, NumPy, numexpr) are ``peers.FusedPeers``.
Commits without ``fastact.elementwise`` skip (asv: NotImplementedError in ``setup``).
"""

from __future__ import annotations

from ._common import DTYPES, ROUNDS, SIZES, require

CHAINS = ["gelu_chain", "gelu_tanh_chain", "relu_alone", "gelu_alone"]
#: fastact's own ways of computing a chain (the peers' columns are in peers.FusedPeers)
COLUMNS = ["fastact", "builtin", "separate", "separate in place"]


class Fused:
    """The fused chain (column ``fastact``) and fastact's other ways of computing it: the
    built-in activation, the chain as separate calls, and as separate calls in place."""

    params = (CHAINS, DTYPES, SIZES, COLUMNS)
    param_names = ["chain", "dtype", "size", "column"]
    rounds = ROUNDS
    timeout = 300

    def setup(self, chain, dtype, size, column):
        try:
            from fastact.bench import fused
            from fastact.bench.timing import Unsupported
        except ImportError as e:
            raise NotImplementedError(f"no fused family: {e}") from None
        lib = column if column in ("torch", "numpy", "numexpr") else "fastact"
        require(lib)
        cases = [c for c in fused.cases([chain], [size], dtype) if c["function"] == chain]
        try:
            self.fn = fused.build(column, cases[0]).fn
        except Unsupported as e:
            raise NotImplementedError(str(e)) from None
        self.fn()  # warm: compile or load the kernels

    def time_fused(self, chain, dtype, size, column):
        self.fn()
