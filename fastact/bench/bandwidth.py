"""Memory-bandwidth probes for the roofline column, compiled in memory by fastact's jit.

Every probe is a streaming loop over float arrays of the benchmarked size, on the same thread
count and serial/parallel switch as fastact's kernels
(``fastact._core.thresholds.PARALLEL_THRESHOLD``):

* ``copy``: ``dst[i] = src[i]`` (2 streams), the limit of an out-of-place activation;
* ``rmw``: ``x[i] = x[i] * a + b`` (1 stream read and written), the limit of an in-place one;
* ``triad``: ``z[i] = x[i] + y[i]`` (3 streams), the pattern of a fused loss and gradient;
* ``stream1`` .. ``stream4``: ``a_k[i] = a_k[i] * s + g[i]`` for k < w (``2 w + 1`` streams),
  an optimizer step over a parameter and ``w - 1`` state arrays.

:func:`measure_state_floor` is the floor of a low-precision optimizer step (a parameter and
two states of other widths than the parameter's, as AdamW8bit's codes): the same traffic
with no arithmetic.

``fastact/bench/`` is not part of the compile cache's fingerprint: these kernels compile in
memory (a fraction of a second each) in the process that measures.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
from numba import prange

from .timing import Runner, measure

__all__ = ["PROBES", "measure_probe", "measure_state_floor", "probe_bytes"]


def _copy_loop(src, dst):
    for i in prange(src.shape[0]):
        dst[i] = src[i]


def _rmw_loop(x, a, b):
    for i in prange(x.shape[0]):
        x[i] = x[i] * a + b


def _triad_loop(x, y, z):
    for i in prange(x.shape[0]):
        z[i] = x[i] + y[i]


def _stream1_loop(g, a0, s):
    for i in prange(g.shape[0]):
        a0[i] = a0[i] * s + g[i]


def _stream2_loop(g, a0, a1, s):
    for i in prange(g.shape[0]):
        a0[i] = a0[i] * s + g[i]
        a1[i] = a1[i] * s + g[i]


def _stream3_loop(g, a0, a1, a2, s):
    for i in prange(g.shape[0]):
        a0[i] = a0[i] * s + g[i]
        a1[i] = a1[i] * s + g[i]
        a2[i] = a2[i] * s + g[i]


def _stream4_loop(g, a0, a1, a2, a3, s):
    for i in prange(g.shape[0]):
        a0[i] = a0[i] * s + g[i]
        a1[i] = a1[i] * s + g[i]
        a2[i] = a2[i] * s + g[i]
        a3[i] = a3[i] * s + g[i]


def _state_floor_loop(g, p, s0, s1):
    """An optimizer step's traffic without its arithmetic, on unsigned-integer views: the
    parameter read and written (``p ^= g``), the gradient read, two states read and written."""
    for i in prange(g.shape[0]):
        p[i] = p[i] ^ g[i]
        s0[i] = s0[i] ^ 1
        s1[i] = s1[i] ^ 1


_LOOPS: dict[str, Callable] = {
    "copy": _copy_loop,
    "rmw": _rmw_loop,
    "triad": _triad_loop,
    "stream1": _stream1_loop,
    "stream2": _stream2_loop,
    "stream3": _stream3_loop,
    "stream4": _stream4_loop,
    "state_floor": _state_floor_loop,
}
#: Probe name -> streams it moves (arrays read or written once per element).
PROBES: dict[str, int] = {
    "copy": 2,
    "rmw": 2,
    "triad": 3,
    "stream1": 3,
    "stream2": 5,
    "stream3": 7,
    "stream4": 9,
}
_compiled: dict[str, tuple] = {}


def _kernels(name: str) -> tuple:
    """(serial, parallel) kernels of a probe, compiled on first use."""
    if name not in _compiled:
        from fastact._core.jit import specialize

        loop = _LOOPS[name]
        _compiled[name] = tuple(
            specialize(loop, f"bench_{name}_{mode}", parallel=par)
            for mode, par in (("serial", False), ("parallel", True))
        )
    return _compiled[name]


def _pick(name: str, n: int):
    import numba

    from fastact._core.thresholds import PARALLEL_THRESHOLD

    serial, parallel = _kernels(name)
    return parallel if n >= PARALLEL_THRESHOLD and numba.get_num_threads() > 1 else serial


def probe_bytes(name: str, n: int, dtype: str) -> int:
    """Bytes one call of probe ``name`` moves over ``n`` elements."""
    return PROBES[name] * n * np.dtype(dtype).itemsize


def _runner(name: str, n: int, dtype: str) -> Runner:
    k = _pick(name, n)
    t = np.dtype(dtype).type
    src = np.resize(np.arange(1 << 12, dtype=dtype), n)
    if name == "copy":
        dst = np.empty_like(src)
        return Runner(functools.partial(k, src, dst), keep=(src, dst))
    if name == "rmw":  # x * 1 + 0: the values never change
        return Runner(functools.partial(k, src, t(1), t(0)), keep=src)
    if name == "triad":
        y, z = src.copy(), np.empty_like(src)
        return Runner(functools.partial(k, src, y, z), keep=(src, y, z))
    w = int(name.removeprefix("stream"))
    states = [np.full(n, 0.5, dtype) for _ in range(w)]
    return Runner(functools.partial(k, src, *states, t(0.5)), keep=(src, states))


def measure_probe(
    name: str,
    n: int,
    dtype: str,
    budget: float = 0.05,
    min_samples: int = 5,
    overhead: float | None = None,
) -> dict:
    """Time probe ``name`` over ``n`` elements of ``dtype``: ``{"probe", "size", "dtype",
    "bytes", "seconds", "Bps"}`` (bytes per second, the roofline's bandwidth)."""
    if name not in PROBES:
        raise ValueError(f"probe: unknown bandwidth probe {name!r} (choose from {list(PROBES)})")
    t = measure(_runner(name, n, dtype), budget, min_samples, overhead=overhead)["median_s"]
    return _rate(probe_bytes(name, n, dtype), t, probe=name, size=n, dtype=dtype)


def _rate(nbytes: int, seconds: float, **fields) -> dict:
    """A probe's result: ``fields`` and its bytes, seconds and bytes per second."""
    return {**fields, "bytes": nbytes, "seconds": seconds, "Bps": nbytes / seconds}


_UINT = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


def measure_state_floor(
    n: int,
    param_bytes: int,
    state_bytes: int,
    budget: float = 0.05,
    min_samples: int = 5,
) -> dict:
    """The memory floor of an optimizer step with two states over ``n`` parameters of
    ``param_bytes`` bytes (4: float32, 2: bfloat16) and states of ``state_bytes`` bytes (4:
    float32, 2: bfloat16, 1: 8-bit codes; their block scales are left out): the time of a
    loop that reads and writes the parameter and both states and reads the gradient, with no
    arithmetic (:func:`_state_floor_loop`; serial or parallel like the other probes).
    ``{"size", "param_bytes", "state_bytes", "bytes", "seconds", "Bps"}``."""
    for name, v in (("param_bytes", param_bytes), ("state_bytes", state_bytes)):
        if v not in _UINT:
            raise ValueError(f"{name}: must be 1, 2, 4 or 8 bytes, got {v!r}")
    k = _pick("state_floor", n)
    pt, st = _UINT[param_bytes], _UINT[state_bytes]
    g = np.ones(n, pt)
    p, s0, s1 = np.zeros(n, pt), np.zeros(n, st), np.zeros(n, st)
    runner = Runner(functools.partial(k, g, p, s0, s1), keep=(g, p, s0, s1))
    t = measure(runner, budget, min_samples)["median_s"]
    nbytes = n * (3 * param_bytes + 4 * state_bytes)
    return _rate(nbytes, t, size=n, param_bytes=param_bytes, state_bytes=state_bytes)
