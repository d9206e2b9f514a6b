"""The fused family: a chain of element-wise operations as one ``@fastact.elementwise`` pass.

Two chains, each one row per size:

* ``gelu_chain``: ``gelu(leaky_relu(2*x + 1, 0.1))`` (exact gelu, ``erf``);
* ``gelu_tanh_chain``: ``gelu(leaky_relu(2*x + 1, 0.1), approximate='tanh')``, the same
  chain with the tanh form, which numexpr and NumPy can also write (neither has ``erf``).

Columns (ratios above 1: the fused call is faster):

* ``fastact``: the ``@fastact.elementwise`` function (one pass: one read, one write);
* ``separate``: the natural separate calls, ``fastact.gelu(fastact.leaky_relu(2 * x + 1,
  0.1))`` (NumPy's ``2 * x + 1`` makes two passes and two arrays, then one pass per call);
* ``separate in place``: the same with one buffer, ``np.multiply(x, 2, out=t)``, ``t += 1``,
  ``leaky_relu_(t)``, ``gelu(t, out=t)`` (no allocation after the first call);
* ``numba.vectorize``: the chain written with ``math.erf``/``math.tanh`` as a plain
  ``numba.vectorize(target='parallel')`` ufunc (what a user writes without fastact);
* ``torch``: ``F.gelu(F.leaky_relu(2 * x + 1, 0.1))`` on a view of the same array;
* ``numpy``, ``numexpr`` (the tanh chain only): the same expression, constants in the
  array's dtype.

Call overhead: ``relu_alone`` and ``gelu_alone`` are one activation written as an
``@fastact.elementwise`` function (``relu(x)``, ``gelu(x)``) against the built-in
``fastact.relu`` / ``fastact.gelu`` (column ``builtin``): the same loop, so at 1K the ratio
is the difference of the two front ends.

Bytes moved: the fused pass's one read and one write; the roofline's probe is ``copy``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .timing import Runner, Unsupported

__all__ = ["CHAINS", "Inputs", "build", "cases", "names"]

FAMILY = "fused"
COLUMNS = {
    "fastact": ("fastact", "builtin", "separate", "separate in place", "numba.vectorize"),
    "torch": ("torch",),
    "numpy": ("numpy",),
    "numexpr": ("numexpr",),
}
#: chain name -> gelu's ``approximate``
CHAINS = {"gelu_chain": "none", "gelu_tanh_chain": "tanh"}
#: one activation as a fused function, against the built-in one (call overhead)
ALONE = {"relu_alone": "relu", "gelu_alone": "gelu"}
_SQRT_HALF = math.sqrt(0.5)
_TANH_C = math.sqrt(2.0 / math.pi)


def names() -> list[str]:
    return [*CHAINS, *ALONE]


def cases(patterns: Sequence[str] | None, sizes: Sequence[int], dtype: str = "float32"):
    """One forward case per chain matching ``patterns`` and size."""
    from .rows import matches

    dt = np.dtype(dtype)
    out = []
    for name in (n for n in names() if matches(n, patterns)):
        for n in sizes:
            case: dict[str, Any] = {
                "family": FAMILY,
                "function": name,
                "variant": "forward",
                "size": int(n),
                "dtype": dt.name,
                "bytes": int(2 * n * dt.itemsize),
                "probe": "copy",
            }
            if name in ALONE:
                case["columns"] = ["fastact", "builtin"]
            elif CHAINS[name] == "none":
                case["columns"] = [
                    "fastact",
                    "separate",
                    "separate in place",
                    "numba.vectorize",
                    "torch",
                ]
            out.append(case)
    return out


class Inputs:
    """Deterministic inputs per (size, dtype): a random block of 64K values tiled."""

    def __init__(self) -> None:
        self._cache: dict[tuple, np.ndarray] = {}

    def get(self, n: int, dtype: str) -> np.ndarray:
        key = (n, dtype)
        if key not in self._cache:
            self._cache.clear()
            rng = np.random.default_rng(2024)
            block = min(n, 1 << 16)
            self._cache[key] = np.resize(rng.standard_normal(block) * 2.0, n).astype(dtype)
        return self._cache[key]


@functools.cache
def fused_function(approximate: str) -> Any:
    """The ``@fastact.elementwise`` function of a chain."""
    import fastact
    from fastact.scalar import gelu, gelu_tanh, leaky_relu

    if approximate == "none":

        def chain(x):
            return gelu(leaky_relu(2 * x + 1, 0.1))

    else:

        def chain(x):
            return gelu_tanh(leaky_relu(2 * x + 1, 0.1))

    return fastact.elementwise(chain)


def _separate(x: np.ndarray, approximate: str) -> np.ndarray:
    import fastact

    return fastact.gelu(fastact.leaky_relu(2 * x + 1, 0.1), approximate=approximate)


def _separate_inplace(x: np.ndarray, t: np.ndarray, approximate: str) -> np.ndarray:
    import fastact

    np.multiply(x, x.dtype.type(2), out=t)
    t += x.dtype.type(1)
    fastact.leaky_relu_(t, 0.1)
    return fastact.gelu(t, approximate=approximate, out=t)


@functools.cache
def vectorized(approximate: str) -> Any:
    """The chain as a plain ``numba.vectorize(target='parallel')`` ufunc with ``math``."""
    import numba

    sigs = ["float32(float32)", "float64(float64)"]
    if approximate == "none":

        def chain(x):
            y = 2 * x + 1
            y = y if y > 0 else 0.1 * y
            return 0.5 * y * (1.0 + math.erf(y * _SQRT_HALF))

    else:

        def chain(x):
            y = 2 * x + 1
            y = y if y > 0 else 0.1 * y
            return 0.5 * y * (1.0 + math.tanh(_TANH_C * (y + 0.044715 * y * y * y)))

    return numba.vectorize(sigs, target="parallel")(chain)


def build(column: str, case: dict, inputs: Inputs | None = None) -> Runner:
    """The :class:`Runner` of ``column`` for a fused-chain case."""
    name = case["function"]
    if case.get("family", FAMILY) != FAMILY or name not in names():
        raise Unsupported(f"not a fused case: {case.get('family')} {name}")
    if column not in case.get("columns", [column]) or (column == "builtin" and name not in ALONE):
        raise Unsupported(f"no {column} column for {name}")
    x = (inputs or Inputs()).get(case["size"], case["dtype"])
    if name in ALONE:
        import fastact

        act = ALONE[name]
        f = fastact.elementwise(getattr(fastact.scalar, act)) if column == "fastact" else None
        return Runner(functools.partial(f or getattr(fastact, act), x))
    approx = CHAINS[name]
    if column == "fastact":
        return Runner(functools.partial(fused_function(approx), x))
    if column == "separate":
        return Runner(functools.partial(_separate, x, approx))
    if column == "separate in place":
        t = np.empty_like(x)
        return Runner(functools.partial(_separate_inplace, x, t, approx), keep=t)
    if column == "numba.vectorize":
        return Runner(functools.partial(vectorized(approx), x))
    if column == "torch":
        import torch
        import torch.nn.functional as F

        xt = torch.from_numpy(x)

        def run_torch():
            return F.gelu(F.leaky_relu(2 * xt + 1, 0.1), approximate=approx)

        return Runner(run_torch, keep=xt)
    if column == "numpy":
        c = x.dtype.type

        def run_numpy():
            y = 2 * x + c(1)
            y = np.where(y > 0, y, y * c(0.1))
            return c(0.5) * y * (c(1) + np.tanh(c(_TANH_C) * (y + c(0.044715) * y * y * y)))

        return Runner(run_numpy)
    if column == "numexpr":
        import numexpr as ne

        c = x.dtype.type  # constants as variables of the array's dtype (no float64 upcast)
        env = {"two": c(2), "one": c(1), "s": c(0.1), "h": c(0.5), "k": c(0.044715)}
        env["tc"] = c(_TANH_C)
        y = "where(two * x + one > 0, two * x + one, s * (two * x + one))"
        expr = f"h * {y} * (one + tanh(tc * ({y} + k * {y} * {y} * {y})))"
        return Runner(functools.partial(ne.evaluate, expr, local_dict={"x": x, **env}))
    raise Unsupported(f"no {column} column for fused chains")
