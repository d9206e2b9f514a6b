"""In-place activations store every element with plain vector stores.

In ``x[i] = f(x[i])`` a branch of ``f`` that returns its input (relu for x > 0, leaky_relu,
threshold, elu, celu) used to become a *masked* store after LLVM dropped the store of the
unchanged value (``vmaskmovps`` with AVX2, ``vmovups mem {k}`` with AVX-512): 3.6-4x slower
than the out-of-place call on AMD Zen 3 at 256K elements (issue #17, item 8). The in-place
loop now stores ``llvm.canonicalize`` of the result, which keeps every store. These tests read
the machine code of the in-place loops (compiled in memory: numba cannot show cached code), for
this CPU and for an AVX-512 target (compiled, not run), and check that the in-place results
stay bit-identical to the out-of-place ones on special values."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastact
from fastact.activations import ACTIVATIONS

ROOT = os.path.dirname(os.path.dirname(fastact.__file__))
_X86 = platform.machine().lower() in ("x86_64", "amd64")

_SCRIPT = textwrap.dedent(
    """
    import json, re, sys
    from numba import types
    from fastact.activations import ACTIVATIONS
    from fastact.host.elementwise import kernels

    names = sys.argv[1].split(",")
    found = {}
    for name in names:
        op = ACTIVATIONS[name]
        kernel = kernels(op, "inplace")[0]  # the serial loop (the parallel one has its body)
        n = len(op.params)
        params = types.UniTuple(types.float64, n) if n else types.Tuple(())
        for dt in (types.float32, types.float64):
            kernel.compile((dt[::1], params))
        for sig in kernel.signatures:
            asm = kernel.inspect_asm(sig)
            masked = [
                ln.strip() for ln in asm.splitlines()
                if "maskmov" in ln or re.search(r"\\)\\s*\\{%k\\d\\}", ln)
            ]
            found[f"{name} {sig[0].dtype}"] = {"masked": masked[:3], "vector": "mm" in asm}
    print(json.dumps(found))
    """
)
_AVX512 = {
    "NUMBA_CPU_NAME": "skylake-avx512",
    "NUMBA_CPU_FEATURES": "+avx512f,+avx512vl,+avx512bw,+avx512dq,+avx512cd,+avx2,+avx,+fma,"
    "+f16c,+bmi,+bmi2,+sse4.2,+popcnt,+lzcnt,+movbe,+cx16",
}
_INPLACE = [n for n, op in ACTIVATIONS.items() if op.inplace]


def _compile_and_read(names: list[str], **env: str) -> dict:
    e = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_CPU")}
    e.update(PYTHONPATH=ROOT + os.pathsep + e.get("PYTHONPATH", ""), FASTACT_DISABLE_CACHE="1")
    e.update(env)
    proc = subprocess.run(
        [sys.executable, "-c", _SCRIPT, ",".join(names)],
        capture_output=True,
        text=True,
        timeout=600,
        env=e,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not _X86, reason="the masked-store instructions checked are x86's")
@pytest.mark.parametrize("target", ["host", "avx512"])
def test_inplace_loops_have_no_masked_stores(target):
    names = _INPLACE if target == "host" else ["relu", "leaky_relu", "threshold", "elu", "celu"]
    found = _compile_and_read(names, **(_AVX512 if target == "avx512" else {}))
    assert len(found) == 2 * len(names)
    assert {k: v["masked"] for k, v in found.items() if v["masked"]} == {}
    assert all(v["vector"] for v in found.values())  # still vectorized


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_inplace_equals_out_of_place_bitwise(dtype):
    """Special values through every in-place loop (serial and parallel) give exactly the
    out-of-place result: NaN, +-0, +-inf, subnormals, the largest values."""
    fi = np.finfo(dtype)
    special = np.array(
        [np.nan, -np.nan, 0.0, -0.0, np.inf, -np.inf, fi.tiny, -fi.tiny, fi.tiny / 8,
         -fi.tiny / 8, fi.max, -fi.max, 1.0, -1.0, 0.1, 20.0, 0.5, -0.5],
        dtype=dtype,
    )  # fmt: skip
    rng = np.random.default_rng(17)
    for n in (len(special), 1 << 19):  # serial and parallel kernels
        x = np.resize(special, n) if n == len(special) else rng.standard_normal(n).astype(dtype)
        x[: len(special)] = special
        for name in _INPLACE:
            op = ACTIVATIONS[name]
            params = (0.1, 2.0) if name == "threshold" else ()
            ref = getattr(fastact, name)(x, *params)
            got = x.copy()
            assert getattr(fastact, name + "_")(got, *params) is got
            assert np.array_equal(got.view(np.uint8), ref.view(np.uint8)), (name, n, op.name)
