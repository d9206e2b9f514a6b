"""Shared pieces of the asv suites.

The peer formulas (torch, NumPy, numexpr) and the fastact calls are those of the benchmark
command, ``fastact/bench.py``. It is loaded from *this* working tree by path, not from the
installed package, so the same definitions time every commit asv benchmarks (asv takes the
benchmarks from the working tree too), including commits that predate ``fastact.bench``.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

#: float32 and float64: every activation is benchmarked in both (FASTACT_ASV_DTYPES overrides).
DTYPES = os.environ.get("FASTACT_ASV_DTYPES", "float32,float64").split(",")
#: small (call overhead), cache-sized, and streaming from memory. 4M rather than the bench
#: command's 16M keeps a full asv run and the CI smoke run short; FASTACT_ASV_SIZES (comma
#: separated element counts) overrides it.
SIZES = [int(s) for s in os.environ.get("FASTACT_ASV_SIZES", "1024,262144,4194304").split(",")]
PEERS = ["fastact", "torch", "numpy", "numexpr"]
#: sizes of the loss and optimizer suites (a call there costs more per element); the same
#: FASTACT_ASV_SIZES override applies.
LARGE_SIZES = SIZES if os.environ.get("FASTACT_ASV_SIZES") else [1 << 18, 1 << 22]


def _load_tbb() -> None:
    """Make numba's TBB layer loadable for every commit asv times, also those before fastact
    loaded the tbb wheel's library itself (fastact._core.threads): the same layer for all."""
    import ctypes
    from importlib import metadata

    try:
        files = metadata.distribution("tbb").files or []
    except metadata.PackageNotFoundError:
        return
    for f in files:
        if f.name == "libtbb.so.12":
            ctypes.CDLL(str(Path(f.locate()).resolve()), mode=getattr(os, "RTLD_GLOBAL", 0))
            return


_load_tbb()

try:  # imported once by asv's fork server (launch_method), not in every benchmark process
    import torch  # noqa: F401
except ImportError:
    pass

_harness: Any = None
_runners: dict[tuple, Any] = {}


def harness():
    """The working tree's ``fastact/bench.py`` as a module (peers and fastact calls)."""
    global _harness
    if _harness is None:
        path = ROOT / "fastact" / "bench.py"
        if path.exists():
            spec = importlib.util.spec_from_file_location("_fastact_bench_tree", path)
            mod = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = mod
            spec.loader.exec_module(mod)
            _harness = mod
        else:  # an installed fastact that ships its harness
            import fastact.bench as mod

            _harness = mod
    return _harness


def activation_names() -> list[str]:
    """Activations in the installed fastact's registries (element-wise, then axis ones)."""
    try:
        import fastact
    except Exception:  # asv discovery must not fail on a broken commit
        return []
    return list(fastact.ACTIVATIONS) + list(getattr(fastact, "AXIS_ACTIVATIONS", {}))


def inplace_names() -> list[str]:
    try:
        import fastact
    except Exception:
        return []
    return [n for n, op in fastact.ACTIVATIONS.items() if getattr(op, "inplace", False)]


def require(lib: str) -> None:
    """Skip (asv: NotImplementedError) when ``lib`` is not installed."""
    if lib in ("fastact", "numpy"):
        return
    name = lib.split("_", 1)[0]
    if importlib.util.find_spec(name) is None:
        raise NotImplementedError(f"{name} is not installed")


def runner(lib: str, function: str, variant: str, size: int, dtype: str):
    """The harness's Runner for one case (cached per process), or NotImplementedError."""
    key = (lib, function, variant, size, dtype)
    if key in _runners:
        return _runners[key]
    require(lib)
    h = harness()
    cases = [
        c
        for c in h.activation_cases([function], [size], dtype)
        if c["function"] == function and c["variant"] == variant
    ]
    if not cases:
        raise NotImplementedError(f"{function} {variant} is not in this fastact")
    try:
        r = h.build(lib, cases[0])
    except h.Unsupported as e:
        raise NotImplementedError(str(e)) from None
    except (AttributeError, TypeError) as e:  # an older fastact without this API
        raise NotImplementedError(f"{type(e).__name__}: {e}") from None
    _runners[key] = r
    return r
