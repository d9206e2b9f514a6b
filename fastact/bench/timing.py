"""The benchmark's one timer: the budgeted median of warm calls (every family uses it).

Each measurement calls the function once untimed (JIT compilation or cache load, first touch,
an optimizer's state allocation), then takes samples of ``number`` back-to-back calls
(``number`` chosen so a sample lasts about 0.1 ms, 1 for long calls and for calls with a
``reset``) with the garbage collector off; the median per-call time of the samples is
reported. The number of samples is budgeted by the call's duration: many samples for
microsecond calls, at least ``min_samples`` (3 for calls above 20 ms) for large arrays. A
peer library that compiles nothing (``jit=False``) has its first call above 20 ms counted as a
sample. Calls with a ``reset`` (in place) are timed one call per sample, the input restored
untimed before each call, so repeated application never drifts into denormals.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["Runner", "Unsupported", "budget", "measure", "timer_overhead"]

#: One timing sample lasts about this long (small, fast calls are repeated within a sample).
TARGET_SAMPLE_S = 1e-4
#: Calls longer than this get fewer minimum samples (and a peer's first call counts).
LONG_CALL_S = 0.02


class Unsupported(Exception):
    """The library has no equivalent of this benchmark case."""


class Runner:
    """A timed call: ``fn()`` runs the operation; ``reset()`` (untimed) restores its input."""

    def __init__(
        self, fn: Callable[[], Any], reset: Callable[[], Any] | None = None, keep: Any = None
    ) -> None:
        self.fn = fn
        self.reset = reset
        self.keep = keep  # objects that must outlive the closure (torch views of NumPy data)


def timer_overhead() -> float:
    """Median cost of two back-to-back ``perf_counter`` calls (subtracted from samples)."""
    pc = time.perf_counter
    d = []
    for _ in range(200):
        t0 = pc()
        t1 = pc()
        d.append(t1 - t0)
    return float(np.median(d))


def budget(n: int, quick: bool = False, scale: float = 1.0) -> tuple[float, int]:
    """(seconds per measurement, minimum samples) for a call over ``n`` elements."""
    base = 0.02 if n <= 1 << 12 else (0.03 if n <= 1 << 20 else 0.1)
    if quick:
        return base * scale / 4, 3
    return base * scale, 5


def measure(
    runner: Runner,
    budget: float = 0.05,
    min_samples: int = 5,
    max_samples: int = 300,
    overhead: float | None = None,
    jit: bool = True,
) -> dict:
    """Median per-call time of ``runner.fn`` over samples that fill about ``budget`` seconds.

    Returns ``{"median_s", "samples", "number", "min_s"}``. See the module docstring for the
    sampling rules; ``jit=False`` (a library that compiles nothing on first use) counts a
    first call slower than 20 ms as a sample instead of discarding it: for such calls it is
    not special (every call allocates and first-touches its temporaries)."""
    fn, reset = runner.fn, runner.reset
    pc = time.perf_counter
    if overhead is None:
        overhead = timer_overhead()
    gc_was = gc.isenabled()
    gc.disable()
    try:
        if reset is not None:
            reset()
        t0 = pc()
        fn()  # warm: compile, first touch
        first = max(pc() - t0 - overhead, 1e-9)
        if not jit and first >= LONG_CALL_S:
            est, times = first, [first]
        else:
            if reset is not None:
                reset()
            t0 = pc()
            fn()
            est = max(pc() - t0 - overhead, 1e-9)
            times = []
        number = 1 if reset is not None else max(1, min(10_000, int(TARGET_SAMPLE_S / est)))
        lo = min_samples if est * number < LONG_CALL_S else min(3, min_samples)
        samples = int(min(max_samples, max(lo, budget / (est * number))))
        if number == 1 and not times:
            times = [est]
        loops = range(number)
        while len(times) < samples:
            if reset is not None:
                reset()
            t0 = pc()
            for _ in loops:
                fn()
            t1 = pc()
            times.append(max(t1 - t0 - overhead, 1e-9) / number)
    finally:
        if gc_was:
            gc.enable()
    return {
        "median_s": float(np.median(times)),
        "samples": len(times),
        "number": number,
        "min_s": float(np.min(times)),
    }
