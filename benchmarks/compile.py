"""Compilation and import: cold compile (no cache), first call with a filled cache, import time.

Each sample is a new Python process, so nothing is warm: ``ColdCompile`` turns the cache off
(``FASTACT_DISABLE_CACHE=1``) and times the first call (type inference + LLVM);
``CachedFirstCall`` fills a private cache folder first and times the first call of a new
process that loads the kernel from it; ``Import`` times ``import numpy, fastact``.

One process is a noisy sample (eight imports of one commit took 231-308 ms on the development
VM), so these are asv *timing* benchmarks with several processes per commit: asv reports their
median and spread (the interquartile range, ``±`` in ``asv compare``, the error bars of the
graphs), its regression search weighs the spread, and ``asv continuous`` and ``asv compare``
flag a change only when the samples differ significantly.

The time asv records is the one the child measured itself around the import or the call
(:data:`_clock` is the benchmarks' timer), as CPU time of the child process (user + system,
all threads): for these single-threaded steps that is their wall time on an idle machine, and
unlike the wall time it does not grow when other processes compete for the cores (the child
also reports the wall times).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from ._common import functions

_CHILD = r"""
import json, sys, time
w0, c0 = time.perf_counter(), time.process_time()
import numpy as np
import fastact
w1, c1 = time.perf_counter(), time.process_time()
name, kind, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
x = np.linspace(-3.0, 3.0, n).astype(np.float32)
if name in ("softmax", "log_softmax", "softmin"):
    x = x.reshape(-1, 256)
extra = (-1,) if x.ndim == 2 else ()
if kind == "none":
    call = lambda: None
elif kind == "forward":
    f = getattr(fastact, name)
    call = lambda: f(x, *extra)
else:
    f = getattr(fastact, name + "_backward")
    g = np.ones_like(x)
    call = lambda: f(g, x, *extra)
w2, c2 = time.perf_counter(), time.process_time()
call()
w3, c3 = time.perf_counter(), time.process_time()
print(json.dumps({"import": c1 - c0, "first_call": c3 - c2,
                  "import_wall": w1 - w0, "first_call_wall": w3 - w2}))
"""

_FUNCS = [f for f in ("sigmoid", "gelu", "softmax") if f in functions("forward")]
#: serial: 4096 elements (below the parallel threshold); parallel: 1M elements
_PATHS = {"serial": 1 << 12, "parallel": 1 << 20}

#: Seconds the child processes of this benchmark process measured, summed: the benchmarks'
#: ``timer``, so a sample (timer after - timer before) is what one child measured.
_measured = [0.0]


def _clock() -> float:
    return _measured[0]


def _child(name: str, kind: str, path: str, cache: Path, disable: bool) -> dict:
    """Run one fresh process; its ``import`` and ``first_call`` CPU seconds (and the wall
    seconds, ``*_wall``)."""
    env = dict(os.environ, FASTACT_CACHE_DIR=str(cache))
    env.pop("FASTACT_DISABLE_CACHE", None)
    if disable:
        env["FASTACT_DISABLE_CACHE"] = "1"
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, name, kind, str(_PATHS[path])],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if out.returncode != 0:
        tail = "\n".join(out.stderr.strip().splitlines()[-5:])
        if "AttributeError" in tail or "ModuleNotFoundError" in tail:
            raise NotImplementedError(f"{name} {kind} is not in this fastact: {tail}")
        raise RuntimeError(f"the child process failed:\n{tail}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _sample(key: str, *args) -> None:
    """One sample: a child process; advance :func:`_clock` by what it measured."""
    _measured[0] += _child(*args)[key]


def _cache_dir(name: str) -> Path:
    """A cache folder in the benchmark's working directory (asv gives every benchmark
    process a new temporary one and deletes it afterwards)."""
    d = Path.cwd() / f"fastact-cache-{name}"
    d.mkdir(exist_ok=True)
    return d


class _FreshProcesses:
    """Timing attributes shared by the suites of this module: every sample one process
    (``number = 1``), its own measurement as the time (``timer``)."""

    timer = staticmethod(_clock)
    number = 1
    timeout = 900


class ColdCompile(_FreshProcesses):
    """Seconds for the first forward call in a new process with the cache off (compilation
    of the serial kernel at 4096 elements, of the parallel one at 1M): 2 rounds of 2
    processes per commit (a compilation takes 1-10 s)."""

    params = (_FUNCS, list(_PATHS))
    param_names = ["function", "path"]
    repeat = (2, 2, 120.0)
    warmup_time = 0.0  # no warm-up process: nothing is shared between the samples

    def time_cold_compile(self, function, path):
        _sample("first_call", function, "forward", path, _cache_dir("cold"), True)


_filled: set[tuple] = set()


class CachedFirstCall(_FreshProcesses):
    """Seconds for the first call (4096 elements) in a new process whose kernel is in the
    cache: 2 rounds of 3 processes per commit, each round after one that fills the cache."""

    params = (_FUNCS, ["forward", "backward"])
    param_names = ["function", "kind"]
    repeat = (3, 3, 60.0)
    warmup_time = 0.0  # filling the cache (setup) is the warm-up

    def setup(self, function, kind):
        # asv runs setup before every sample: fill the cache once per benchmark process
        key = (function, kind)
        self.cache = _cache_dir("cached-" + "-".join(key))
        if key not in _filled:
            _child(function, kind, "serial", self.cache, False)
            _filled.add(key)

    def time_cached_first_call(self, function, kind):
        _sample("first_call", function, kind, "serial", self.cache, False)


class Import(_FreshProcesses):
    """Seconds to ``import numpy; import fastact`` in a new process (kernels compile lazily,
    on first use): 2 rounds of 10 processes after a warm-up process each."""

    repeat = (10, 10, 60.0)
    warmup_time = 1e-6  # one discarded process per round (cold file cache)

    def time_import(self):
        _sample("import", "relu", "none", "serial", _cache_dir("import"), False)
