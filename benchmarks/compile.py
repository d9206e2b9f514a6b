"""Compilation: cold compile (no cache), first call with a filled cache, and import time.

Each measurement runs a fresh Python process, so nothing is warm: ``track_cold_compile``
turns the cache off (``FASTACT_DISABLE_CACHE=1``) and reports how long the first call takes
(type inference + LLVM); ``track_cached_first_call`` fills a private cache folder in
``setup`` and reports the first call of a new process that loads the kernel from it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile

from ._common import activation_names

_CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy as np
import fastact
t1 = time.perf_counter()
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
t2 = time.perf_counter()
call()
t3 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "first_call": t3 - t2}))
"""

_FUNCS = [f for f in ("sigmoid", "gelu", "softmax") if f in activation_names()]
#: serial: 4096 elements (below the parallel threshold); parallel: 1M elements
_PATHS = {"serial": 1 << 12, "parallel": 1 << 20}


def _child(name: str, kind: str, path: str, cache: str, disable: bool) -> dict:
    env = dict(os.environ, FASTACT_CACHE_DIR=cache)
    env.pop("FASTACT_DISABLE_CACHE", None)
    if disable:
        env["FASTACT_DISABLE_CACHE"] = "1"
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, name, kind, str(_PATHS[path])],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


class ColdCompile:
    """Seconds for the first call in a new process with the cache off (compilation)."""

    params = (_FUNCS, ["forward", "backward"], list(_PATHS))
    param_names = ["function", "kind", "path"]
    timeout = 600

    def setup(self, function, kind, path):
        self.tmp = tempfile.mkdtemp(prefix="fastact-asv-")

    def teardown(self, function, kind, path):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def track_cold_compile(self, function, kind, path):
        return _child(function, kind, path, self.tmp, disable=True)["first_call"]

    track_cold_compile.unit = "seconds"


class CachedFirstCall:
    """Seconds for the first call in a new process whose kernels are in the cache."""

    params = (_FUNCS, ["forward", "backward"], list(_PATHS))
    param_names = ["function", "kind", "path"]
    timeout = 600

    def setup(self, function, kind, path):
        self.tmp = tempfile.mkdtemp(prefix="fastact-asv-")
        _child(function, kind, path, self.tmp, disable=False)  # fill the cache

    def teardown(self, function, kind, path):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def track_cached_first_call(self, function, kind, path):
        return _child(function, kind, path, self.tmp, disable=False)["first_call"]

    track_cached_first_call.unit = "seconds"


class Import:
    """Seconds to ``import fastact`` in a new process (kernels compile lazily, on first use)."""

    timeout = 300

    def setup(self):
        self.tmp = tempfile.mkdtemp(prefix="fastact-asv-")

    def teardown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def track_import_time(self):
        return _child("relu", "none", "serial", self.tmp, disable=False)["import"]

    track_import_time.unit = "seconds"
