"""Numba's threading layer for fastact: TBB loaded from the ``tbb`` wheel, the default layer,
forked children that never die, and the one serial/parallel decision of every kernel.

* **TBB from the wheel.** The ``tbb`` distribution installs ``libtbb.so.12`` into the
  environment's ``lib/`` folder, which the dynamic loader does not search, and numba's
  ``tbbpool`` extension carries no rpath: left alone, numba cannot load its TBB layer and
  silently falls back to GNU OpenMP. :func:`load_tbb` finds the library among the installed
  files of the ``tbb`` distribution (its RECORD, not a guessed path) and loads it when fastact
  is imported, before numba's first parallel launch; ``tbbpool``'s dependency is then resolved
  by its soname to the library already in the process.
* **The layer.** fastact leaves numba's choice alone (``NUMBA_THREADING_LAYER``, or
  ``numba.config.THREADING_LAYER`` set before the first parallel call); with the default
  setting numba takes TBB first (see README, "Threads", for the measurements behind it).
* **Forked children.** GNU OpenMP's thread pool does not survive ``fork``: numba terminates a
  child forked after the parent used its OpenMP layer at the child's first parallel launch
  ("fork() called from a process already using GNU OpenMP"). An at-fork hook marks such a
  child, and every fastact kernel in it then runs on the calling thread; torch's parallel
  operators there run on one thread too (they waited forever on the parent's GNU OpenMP pool).
  TBB and workqueue children run parallel kernels as usual (numba restarts those pools after a
  fork).
"""

from __future__ import annotations

import ctypes
import os
import sys
from pathlib import Path

import numba
import numpy as np
from numba.np.ufunc import parallel as _numba_parallel

__all__ = [
    "DEFAULT_LAYER",
    "forked_serial",
    "load_tbb",
    "num_threads",
    "omp_layer_started",
    "parallel_by_size",
    "report",
    "use_parallel",
]

#: The layer a process gets when nothing is requested (numba's own order puts TBB first once
#: :func:`load_tbb` has made it loadable; the measurements behind the choice: README, "Threads").
DEFAULT_LAYER = "tbb"

#: The TBB runtime numba's ``tbbpool`` links against, per platform.
_TBB_SONAME = {"darwin": "libtbb.12.dylib", "win32": "tbb12.dll"}.get(sys.platform, "libtbb.so.12")

_tbb_path: str | None = None  # the file fastact loaded
_tbb_note = "not attempted"  # how TBB was (or was not) made loadable
_started_before_import = bool(_numba_parallel._is_initialized)
_forked_serial = False


def _loaded_library(soname: str) -> str | None:
    """The file a library with ``soname`` was mapped from in this process (Linux), or None."""
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                path = line.rstrip("\n").split(maxsplit=5)[-1]
                if os.path.basename(path).startswith(soname):
                    return path
    except OSError:
        pass
    return None


def _wheel_tbb() -> Path | None:
    """``libtbb.so.12`` as recorded among the installed files of the ``tbb`` distribution."""
    from importlib import metadata

    try:
        files = metadata.distribution("tbb").files or []
    except metadata.PackageNotFoundError:
        return None
    for f in files:
        if f.name == _TBB_SONAME:
            p = Path(f.locate()).resolve()
            if p.is_file():
                return p
    return None


def load_tbb() -> str | None:
    """Load the ``tbb`` wheel's runtime library so that numba's TBB layer can start.

    Returns the path loaded (or already mapped), None when TBB cannot be provided; the reason
    is in :func:`report`. Never raises; idempotent."""
    global _tbb_path, _tbb_note
    if _tbb_path is not None:
        return _tbb_path
    if _numba_parallel._is_initialized:
        _tbb_note = "numba's threading layer had started before fastact could load TBB"
        _tbb_path = _loaded_library(_TBB_SONAME)
        return _tbb_path
    mapped = _loaded_library(_TBB_SONAME)
    if mapped is not None:
        _tbb_path, _tbb_note = mapped, "already loaded in the process"
        return mapped
    wheel = _wheel_tbb()
    if wheel is None:
        _tbb_note = "the tbb distribution is not installed (pip install tbb)"
        return None
    try:
        ctypes.CDLL(str(wheel), mode=getattr(os, "RTLD_GLOBAL", 0))
    except OSError as e:
        _tbb_note = f"loading {wheel} failed: {e}"
        return None
    _tbb_path, _tbb_note = str(wheel), "loaded from the tbb distribution"
    return _tbb_path


def omp_layer_started() -> bool:
    """Whether numba's OpenMP layer has started in this process (in a forked child: in its
    parent before the fork; the child inherits numba's record of it)."""
    return bool(_numba_parallel._is_initialized) and _numba_parallel._threading_layer == "omp"


def _gomp_libraries() -> list[str]:
    """The GNU OpenMP libraries mapped in this process (Linux; e.g. the system's, torch's)."""
    try:
        with open("/proc/self/maps") as f:
            paths = {line.rstrip("\n").split(maxsplit=5)[-1] for line in f}
    except OSError:
        return []
    return sorted(p for p in paths if os.path.basename(p).startswith("libgomp"))


def _after_fork_in_child() -> None:
    """A child forked after its parent started numba's OpenMP layer: fastact's kernels run
    serially there (:func:`forked_serial`), and GNU OpenMP's thread count is set to one, so
    that a library imported after the fork (torch) runs its parallel operators on the calling
    thread: they waited forever on the parent's pool, which does not survive ``fork`` (torch
    imported before the fork: :mod:`fastact._core.torch_pool` sets its thread count)."""
    global _forked_serial
    if omp_layer_started():
        _forked_serial = True
        for path in _gomp_libraries():
            try:
                ctypes.CDLL(path).omp_set_num_threads(1)
            except (OSError, AttributeError):
                pass


def forked_serial() -> bool:
    """True in a child forked after its parent started numba's OpenMP layer: fastact's kernels
    run serially there (a parallel launch would terminate the process)."""
    return _forked_serial


def num_threads() -> int:
    """``numba.get_num_threads()`` in ~0.1 us instead of ~1.5 us (once numba's pool is up, the
    layer's own getter; numba's public function takes two locks first); 1 in a forked child
    that must run serially."""
    if _forked_serial:
        return 1
    get = getattr(_numba_parallel, "_get_num_threads", None)
    if get is not None and _numba_parallel._is_initialized:
        n = get()
        if n > 0:
            return n
    return numba.get_num_threads()


def use_parallel(n: int, threshold: int) -> bool:
    """Whether a kernel over ``n`` elements runs its parallel build (``threshold``: the
    measured crossover of that kernel; one thread: the serial build)."""
    return n >= threshold and not _forked_serial and num_threads() > 1


def parallel_by_size(n: int, threshold: int) -> bool:
    """:func:`use_parallel` by size alone, for kernels whose reductions must give the same
    bits whatever the thread count (the parallel build also runs on one thread); serial in a
    forked child that cannot start threads."""
    return n >= threshold and not _forked_serial


def _probe_parallel() -> None:
    """Run a tiny parallel kernel: starts numba's threading layer (to learn which it is)."""
    from fastact._core.jit import jit

    @jit(parallel=True, cache=False)
    def probe(x):  # pragma: no cover - compiled
        for i in numba.prange(x.shape[0]):
            x[i] = 0.0

    probe(np.empty(2))


def report(start: bool = True) -> dict:
    """The threading facts ``python -m fastact info`` prints. ``start``: start numba's layer
    (one tiny parallel call) when it has not started yet, so that the layer is known. A layer
    that cannot start (``NUMBA_THREADING_LAYER`` unknown to numba, or not loadable) is
    reported as ``invalid: <numba's message>``: the diagnostic command must not fail on it."""
    problem = None
    if start and not _numba_parallel._is_initialized and not _forked_serial:
        try:
            _probe_parallel()
        except ValueError as e:  # numba's error for a layer it cannot start
            problem = "invalid: " + " ".join(str(e).split())
    layer = _numba_parallel._threading_layer if _numba_parallel._is_initialized else None
    mapped = _loaded_library(_TBB_SONAME)
    if layer == "omp":
        children = "serial (GNU OpenMP cannot run in a forked child; fastact falls back)"
    elif layer in ("tbb", "workqueue"):
        children = f"parallel (numba restarts its {layer} pool after fork)"
    else:
        children = "parallel until the parent starts numba's OpenMP layer"
    if _forked_serial:
        children = "this process is such a child: serial"
    requested = str(numba.config.THREADING_LAYER) or "''"
    return {
        "threading_layer": layer or problem or "not started",
        "threading_layer_requested": requested
        + (" (NUMBA_THREADING_LAYER)" if "NUMBA_THREADING_LAYER" in os.environ else ""),
        "tbb_library": mapped or f"not loaded: {_tbb_note}",
        "tbb_note": _tbb_note,
        "forked_children": children,
        "layer_started_before_fastact": _started_before_import,
    }


os.register_at_fork(after_in_child=_after_fork_in_child)
load_tbb()
