"""``python -m fastact info``: what fastact runs with on this machine.

:func:`report` returns the facts as a dict (versions, CPU, threads and threading layer, the
vector width and registers of fastact's compiled loops, the compile cache, the GPU path);
:func:`format` lays them out one per line.

Vector width: ``FASTACT_VECTOR_WIDTH`` (default 512) is part of the compile cache's key, so
the kernels in ``cache_dir`` were compiled with the width reported here; ``simd_registers``
is read from the machine code of a small loop compiled in memory with exactly the settings of
the cached kernels (numba cannot show the machine code of a kernel loaded from its cache).
"""

from __future__ import annotations

import importlib.util
import os
import platform
from typing import Any

__all__ = ["cpu_name", "format", "report", "simd_width"]


def cpu_name() -> str:
    """The CPU's model name and LLVM's name for its micro-architecture."""
    name = ""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        name = platform.processor()
    try:
        import llvmlite.binding as llvm

        arch = llvm.get_host_cpu_name()
        name = f"{name} ({arch})" if name else arch
    except Exception:
        pass
    return name or platform.machine()


def simd_width() -> tuple[int, str]:
    """(bits, feature): the widest vector ISA the host CPU offers, as numba's LLVM sees it."""
    try:
        import llvmlite.binding as llvm

        feats = {
            f[1:] for f in llvm.get_host_cpu_features().flatten().split(",") if f.startswith("+")
        }
    except Exception:
        feats = set()
    for bits, names in ((512, ("avx512f",)), (256, ("avx2", "avx")), (128, ("sse2", "neon"))):
        hit = [n for n in names if n in feats]
        if hit:
            return bits, hit[0]
    if platform.machine().lower() in ("arm64", "aarch64"):
        return 128, "neon"
    return 0, "unknown"


def _vector_facts() -> tuple[str, str]:
    """(vector width, registers) of a float32 loop compiled like fastact's kernels: the
    ``prefer-vector-width`` its LLVM function carries and the widest registers of its packed
    arithmetic (a tiny kernel compiled in memory with fastact's jit and settings)."""
    import re

    import numpy as np

    from fastact._core import jit as _jit

    setting = _jit._VECTOR_WIDTH
    source = f"FASTACT_VECTOR_WIDTH={setting}" if _jit._VECTOR_WIDTH_FROM_ENV else "default"
    try:

        @_jit.jit(cache=False)
        def axpy(x, out, a):  # pragma: no cover - compiled
            for i in range(x.shape[0]):
                out[i] = x[i] * a + out[i]

        a = np.zeros(64, np.float32)
        axpy(a, a.copy(), np.float32(2))
        sig = axpy.signatures[0]
        found = re.findall(r'"prefer-vector-width"="(\d+)"', axpy.inspect_llvm(sig))
        asm = axpy.inspect_asm(sig)
    except Exception as e:  # never fail `info`
        return f"{setting} ({source})", f"unknown ({type(e).__name__})"
    width = (
        f"{found[0]} ({source}; part of the compile cache's key)"
        if found
        else f"LLVM's choice (no width on the compiled function; setting {setting})"
    )
    # only the registers of the loop's packed arithmetic: the rest of the function moves
    # other values (stack copies used ymm with FASTACT_VECTOR_WIDTH=128)
    x86 = set(re.findall(r"\bv?(?:fn?madd|fn?msub|mul|add)\w*p[sd]\s[^\n]*%([xyz]mm)\d", asm))
    for reg, bits in (("zmm", 512), ("ymm", 256), ("xmm", 128)):
        if reg in x86:
            return width, f"{reg} ({bits}-bit)"
    if re.search(r"\bf(?:mla|mul|add)\s+v\d+\.4s", asm):  # AArch64 NEON
        return width, "v0.4s (128-bit)"
    return width, "scalar"


def _cache_state() -> str:
    """Whether fastact's kernels are cached on disk: ``on``, ``off (FASTACT_DISABLE_CACHE)``,
    or ``not writable: compiled in memory`` when the folder cannot be made or written (the
    compile cache's own test, made here without its warning)."""
    from fastact._core import jit as _jit

    if _jit.cache_disabled():
        return "off (FASTACT_DISABLE_CACHE)"
    try:
        _jit._FastactCacheLocator(_cache_state, __file__).ensure_cache_path()
    except OSError:
        return "not writable: compiled in memory"
    return "on"


def _cuda() -> tuple[bool, str]:
    """(available, why not / what runs it)."""
    try:
        if importlib.util.find_spec("fastact.cuda") is None:
            return False, "this fastact build has no CUDA package"
        import fastact.cuda as fc

        ok = bool(fc.is_available())
        return ok, "numba-cuda with a usable GPU" if ok else fc._REASON
    except Exception as e:
        return False, f"fastact.cuda failed: {type(e).__name__}: {e}"


def report() -> dict[str, Any]:
    """Versions, CPU, threads and threading layer, vector width and registers of fastact's
    loops, the compile cache folder and whether it is in use (``cache``: on, off, or not
    writable; ``cache_disabled``: whether ``FASTACT_DISABLE_CACHE`` turns it off), and whether
    the GPU path can run (and why not). A setting that fastact or numba refuses
    (``FASTACT_TORCH_POOL``, ``NUMBA_THREADING_LAYER``) is reported as the value
    ``invalid: <why>`` of the facts it decides: this is the command that diagnoses such
    settings, so it never fails on them."""
    import numba
    import numpy as np

    import fastact
    from fastact._core.jit import cache_dir, cache_disabled
    from fastact._core.threads import report as threads_report
    from fastact._core.torch_pool import report as torch_pool_report

    d: dict[str, Any] = {
        "fastact": fastact.__version__,
        "numba": numba.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "cpu": cpu_name(),
    }
    try:
        d["cpus"] = len(os.sched_getaffinity(0))
    except AttributeError:
        d["cpus"] = os.cpu_count() or 1
    try:
        d["threads"] = numba.get_num_threads()  # starts numba's threading layer
    except ValueError:  # NUMBA_THREADING_LAYER: a layer numba cannot start (threading_layer)
        d["threads"] = "unknown: the threading layer cannot start (see threading_layer)"
    d.update(threads_report())
    d.update(torch_pool_report())
    d["simd_width_bits"], d["simd_features"] = simd_width()
    d["vector_width"], d["simd_registers"] = _vector_facts()
    d["cache_dir"] = str(cache_dir())
    d["cache"] = _cache_state()
    d["cache_disabled"] = cache_disabled()
    d["cuda_available"], d["cuda_detail"] = _cuda()
    return d


def format(d: dict[str, Any]) -> str:
    """``key  value`` lines, keys aligned."""
    width = max(len(k) for k in d)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in d.items()) + "\n"
