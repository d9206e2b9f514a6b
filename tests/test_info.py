"""``python -m fastact info`` (fastact.info): the facts it reports, the GPU path's reason, and
that the vector width it reports is the one the cached kernels were compiled with (the width
is part of the compile cache's key)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from fresh_python import run_code

import fastact
from fastact import info

ROOT = os.path.dirname(os.path.dirname(fastact.__file__))


def test_report_fields():
    d = info.report()
    assert d["fastact"] == fastact.__version__
    assert d["threads"] >= 1 and d["cpus"] >= 1
    assert d["threading_layer"] in ("tbb", "omp", "workqueue")
    assert d["simd_width_bits"] in (0, 128, 256, 512)
    assert d["vector_width"].split()[0] in ("128", "256", "512")
    assert d["simd_registers"].split()[0] in ("zmm", "ymm", "xmm", "v0.4s", "scalar")
    assert d["cache_dir"].endswith(fastact._core.jit.cache_dir().name)
    assert d["cache"] in ("on", "off (FASTACT_DISABLE_CACHE)", "not writable: compiled in memory")
    assert isinstance(d["cuda_available"], bool)
    text = info.format(d)
    assert len(text.splitlines()) == len(d) and text.startswith("fastact ")


def test_cache_disabled_follows_the_cache_rule(monkeypatch):
    # the report used to call any non-empty FASTACT_DISABLE_CACHE "disabled", while the
    # compile cache stays on for 0 / false / no / off
    for value, disabled in [("0", False), ("off", False), (" False ", False), ("", False),
                            ("1", True), ("yes", True)]:  # fmt: skip
        monkeypatch.setenv("FASTACT_DISABLE_CACHE", value)
        assert fastact._core.jit.cache_disabled() is disabled
        assert info.report()["cache_disabled"] is disabled, value


def test_cache_line_says_whether_kernels_are_cached(tmp_path, monkeypatch):
    """``cache``: on, off (FASTACT_DISABLE_CACHE), or not writable (compiled in memory): with
    FASTACT_CACHE_DIR under a regular file the report said cache_disabled False while every
    kernel compiled in memory (with a RuntimeWarning)."""
    monkeypatch.delenv("FASTACT_DISABLE_CACHE", raising=False)
    want_here = "on" if _cacheable_now() else "not writable: compiled in memory"
    assert info.report()["cache"] == want_here
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    for env, want in [
        ({"FASTACT_CACHE_DIR": str(tmp_path / "cache")}, "on"),
        ({"FASTACT_CACHE_DIR": str(tmp_path / "cache"), "FASTACT_DISABLE_CACHE": "0"}, "on"),
        ({"FASTACT_CACHE_DIR": str(tmp_path / "cache"), "FASTACT_DISABLE_CACHE": "1"},
         "off (FASTACT_DISABLE_CACHE)"),
        ({"FASTACT_CACHE_DIR": str(blocker / "sub")}, "not writable: compiled in memory"),
    ]:  # fmt: skip
        code = (
            "import json, warnings\n"
            "from fastact import info\n"
            "from fastact._core.jit import _cacheable\n"
            "from fastact.kernels.activations import ACTIVATIONS\n"
            "with warnings.catch_warnings(record=True) as w:\n"
            "    warnings.simplefilter('always')\n"
            "    d = info.report()\n"
            "    quiet = not w\n"
            "    used = _cacheable(ACTIVATIONS['relu'].scalars['forward'].py_func)\n"
            "print(json.dumps([d['cache'], d['cache_disabled'], used, quiet]))\n"
        )
        proc = run_code(code, **env)
        assert proc.returncode == 0, proc.stderr
        cache, disabled, used, quiet = json.loads(proc.stdout.strip().splitlines()[-1])
        assert cache == want, env
        assert used == (want == "on"), env  # the compile cache's own rule agrees
        assert disabled == (env.get("FASTACT_DISABLE_CACHE") == "1")
        assert quiet, "info warned"
    text = info.format(info.report())
    assert "\ncache " in text and "\ncache_disabled " in text


def _cacheable_now() -> bool:
    from fastact._core.jit import _cacheable
    from fastact.kernels.activations import ACTIVATIONS

    return _cacheable(ACTIVATIONS["relu"].scalars["forward"].py_func)


def test_simd_registers_are_those_of_the_loop_arithmetic():
    """With FASTACT_VECTOR_WIDTH=128 the report said ymm: it searched the whole machine code,
    where stack copies outside the loop use ymm; the loop's packed arithmetic is on xmm."""
    bits = info.simd_width()[0]
    code = "from fastact import info; print(info.report()['simd_registers'])"
    for width, reg in (("128", "xmm"), ("256", "ymm"), ("512", "zmm")):
        if bits < int(width) or info.simd_width()[1] == "neon":
            continue
        proc = run_code(code, FASTACT_VECTOR_WIDTH=width)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip().splitlines()[-1] == f"{reg} ({width}-bit)", width


def test_cuda_detail_says_why():
    """Without a usable GPU, ``cuda_detail`` is the reason (not a module name)."""
    import fastact.cuda as fc

    d = info.report()
    if d["cuda_available"]:
        assert d["cuda_detail"].startswith("numba-cuda")
    else:
        assert d["cuda_detail"] == fc._REASON and d["cuda_detail"]
        assert d["cuda_detail"] != "fastact.cuda"
    proc = run_code(
        "import sys; sys.modules['numba_cuda'] = None\n"  # numba-cuda not importable
        "from fastact import info; print(info.report()['cuda_detail'])"
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "numba-cuda is not installed (pip install fastact[cuda])"


def test_cli():
    proc = run_code("import sys; from fastact.__main__ import _main; sys.exit(_main(['info']))")
    assert proc.returncode == 0, proc.stderr
    for key in ("threading_layer", "simd_width_bits", "vector_width", "simd_registers"):
        assert key in proc.stdout
    proc = subprocess.run(
        [sys.executable, "-m", "fastact", "info", "--bogus"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": ROOT},
    )
    assert proc.returncode == 2 and "--bogus" in proc.stderr


_PROBE = textwrap.dedent(
    """
    import json, re
    import numpy as np
    import fastact
    from fastact import info
    from fastact.activations import ACTIVATIONS
    from fastact.host.elementwise import kernels

    kernel = kernels(ACTIVATIONS["sigmoid"], "forward")[0]  # the serial float32 loop
    y = fastact.sigmoid(np.linspace(-3, 3, 16, dtype=np.float32))
    hits = sum(kernel.stats.cache_hits.values())
    misses = sum(kernel.stats.cache_misses.values())
    ir = kernel.inspect_llvm(kernel.signatures[0]) if misses else ""
    d = info.report()
    print(json.dumps({
        "cache_dir": d["cache_dir"], "hits": hits, "misses": misses,
        "compiled_width": sorted(set(re.findall(r'"prefer-vector-width"="(\\d+)"', ir))),
        "info_width": d["vector_width"], "y": y.tolist(),
    }))
    """
)


def test_vector_width_is_in_the_cache_key(tmp_path):
    """Compile with the default width, then run with FASTACT_VECTOR_WIDTH=256: no cache hit
    (the 512-bit kernel is not loaded), the kernel compiled then carries the 256 setting and
    ``info`` reports 256; back at the default, the first run's kernel is loaded from the
    cache and ``info`` reports 512."""
    cache = str(tmp_path / "cache")
    runs = []
    for width in (None, "256", None):
        env = {"FASTACT_CACHE_DIR": cache}
        if width:
            env["FASTACT_VECTOR_WIDTH"] = width
        proc = run_code(_PROBE, **env)
        assert proc.returncode == 0, proc.stderr
        runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    first, narrow, again = runs
    assert (first["misses"], first["hits"]) == (1, 0) and first["compiled_width"] == ["512"]
    assert first["info_width"].startswith("512 (default")
    assert narrow["cache_dir"] != first["cache_dir"]
    assert (narrow["misses"], narrow["hits"]) == (1, 0) and narrow["compiled_width"] == ["256"]
    assert narrow["info_width"].startswith("256 (FASTACT_VECTOR_WIDTH=256")
    assert again["cache_dir"] == first["cache_dir"]
    assert (again["misses"], again["hits"]) == (0, 1)
    assert again["info_width"].startswith("512")
    assert first["y"] == again["y"]
