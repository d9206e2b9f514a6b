"""Fused chains: ``@fastact.elementwise`` against the same chain as separate calls and peers.

The cases and columns are those of ``python -m fastact bench fused``
(:mod:`fastact.bench.fused`): ``gelu(leaky_relu(2*x + 1, 0.1))`` with the exact and the tanh
gelu, and one activation as a fused function against the built-in one (call overhead).
Commits without ``fastact.elementwise`` skip (asv: NotImplementedError in ``setup``).
"""

from __future__ import annotations

from ._common import DTYPES, SIZES, require

_CHAINS = ["gelu_chain", "gelu_tanh_chain", "relu_alone", "gelu_alone"]
_COLUMNS = [
    "fastact",
    "builtin",
    "separate",
    "separate in place",
    "numba.vectorize",
    "torch",
    "numpy",
    "numexpr",
]


class Fused:
    """The fused chain (column ``fastact``) and each other way of computing it."""

    params = (_CHAINS, DTYPES, SIZES, _COLUMNS)
    param_names = ["chain", "dtype", "size", "column"]
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
