"""What a newcomer gets from a wheel: run by .ci/run in a second, new virtual environment,
from a folder outside the checkout, with no loader or numba variable set.

Checks: fastact is imported from the environment (not the checkout), one parallel activation
and one optimizer step are correct, numba's layer is fastact's documented default with the
tbb wheel's libtbb.so.12 mapped from inside the environment, TBB loads when requested, and a
fork pool of two workers finishes after parallel calls in the parent.
"""

import multiprocessing as mp
import os
import subprocess
import sys

import numba
import numpy as np

import fastact
from fastact import optim
from fastact._core.threads import DEFAULT_LAYER

PREFIX = os.path.realpath(sys.prefix) + os.sep
N = 1 << 20  # above every kernel's serial/parallel crossover


def mapped_tbb() -> str | None:
    with open("/proc/self/maps") as f:
        paths = {line.split()[-1] for line in f if "libtbb.so.12" in line}
    return os.path.realpath(paths.pop()) if paths else None


def work(seed: int) -> float:
    x = np.random.default_rng(seed).standard_normal(N).astype(np.float32)
    ref = 1 / (1 + np.exp(-x.astype(np.float64)))
    return float(np.max(np.abs(fastact.sigmoid(x) - ref)))


def main() -> None:
    assert os.path.realpath(fastact.__file__).startswith(PREFIX), fastact.__file__
    for var in ("LD_LIBRARY_PATH", "LD_PRELOAD", "NUMBA_THREADING_LAYER", "PYTHONPATH"):
        assert var not in os.environ, f"{var} is set"
    assert work(0) < 1e-6
    p = np.ones(N, np.float32)
    optim.SGD([p], lr=0.5).step([np.full(N, 2.0, np.float32)])
    assert np.array_equal(p, np.zeros(N, np.float32)), "SGD step"
    layer = numba.threading_layer()
    assert layer == DEFAULT_LAYER, f"layer {layer}, documented default {DEFAULT_LAYER}"
    lib = mapped_tbb()
    if layer == "tbb":
        assert lib is not None and lib.startswith(PREFIX), f"libtbb.so.12 mapped from {lib}"
    with mp.get_context("fork").Pool(2) as pool:
        errs = pool.map_async(work, range(4)).get(timeout=300)
    assert max(errs) < 1e-6, errs
    # TBB when requested (numba raises if it cannot load it)
    code = (
        "import numpy as np, numba, fastact; fastact.relu(np.ones(1 << 20, np.float32)); "
        "print(numba.threading_layer())"
    )
    r = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "NUMBA_THREADING_LAYER": "tbb"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0 and r.stdout.split()[-1] == "tbb", r.stdout + r.stderr
    print(
        f"newcomer check OK: fastact {fastact.__version__} from {fastact.__file__}; layer "
        f"{layer}; libtbb.so.12 from {lib}; fork pool of 2 finished; TBB on request"
    )


if __name__ == "__main__":
    main()
