"""Threading layers on a machine with nothing left over: TBB from the wheel, forked children.

Every test runs a script in a fresh interpreter whose environment has ``LD_LIBRARY_PATH``,
``LD_PRELOAD`` and every ``NUMBA_*`` variable removed, so that no library left on the machine
and no setting of the developer's can make them pass. They check the facts themselves: the
layer numba started, the file ``libtbb.so.12`` was mapped from (``/proc/self/maps``), and
whether forked children ran their kernels serially.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from fastact._core.threads import DEFAULT_LAYER
from fastact._core.thresholds import PARALLEL_THRESHOLD, THRESHOLDS

_REPO = Path(__file__).resolve().parent.parent
# large enough for every kernel's parallel (prange) path
BIG = 2 * max(PARALLEL_THRESHOLD, *THRESHOLDS.values())

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads /proc/self/maps (Linux)"
)


def clean_env(layer: str | None = None) -> dict:
    """os.environ without loader overrides and numba settings (plus PYTHONPATH=repo)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("LD_LIBRARY_PATH", "LD_PRELOAD", "PYTHONPATH") and not k.startswith("NUMBA_")
    }
    env["PYTHONPATH"] = str(_REPO)
    if layer is not None:
        env["NUMBA_THREADING_LAYER"] = layer
    return env


def run(script: str, tmp_path: Path, *args: str, layer: str | None = None, timeout=300):
    path = tmp_path / "script.py"
    path.write_text(textwrap.dedent(script))
    return subprocess.run(
        [sys.executable, str(path), *args],
        capture_output=True,
        text=True,
        env=clean_env(layer),
        timeout=timeout,
        cwd=str(tmp_path),
    )


_MAPS = """
import os, sys

def mapped_tbb():
    with open("/proc/self/maps") as f:
        paths = set(line.split()[-1] for line in f if "libtbb.so.12" in line)
    assert len(paths) <= 1, paths
    return os.path.realpath(paths.pop()) if paths else None

def inside_prefix(path):
    prefix = os.path.realpath(sys.prefix) + os.sep
    return path is not None and os.path.realpath(path).startswith(prefix)
"""

_LAYER_SCRIPT = (
    _MAPS
    + """
import importlib
for name in sys.argv[1].split(","):  # the import order under test
    importlib.import_module(name)
import numba
import numpy as np

import fastact
from fastact._core import threads as _threads

x = np.linspace(-3, 3, {big}, dtype=np.float32)
y = fastact.sigmoid(x)  # a parallel kernel starts numba's threading layer
assert np.allclose(y, 1 / (1 + np.exp(-x.astype(np.float64))), atol=1e-6)
lib = mapped_tbb()
rep = _threads.report()
print("LAYER", numba.threading_layer())
print("TBB", lib, inside_prefix(lib))
print("REPORT", rep["tbb_library"] == lib, rep["threading_layer"])
"""
)


@pytest.mark.parametrize("first", ["fastact", "numba", "torch,numba"])
def test_default_layer_loads_tbb_from_the_wheel(tmp_path, first):
    r = run(_LAYER_SCRIPT.format(big=BIG), tmp_path, first)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"LAYER {DEFAULT_LAYER}" in r.stdout, r.stdout + r.stderr
    # the library numba's TBB layer runs on is the tbb wheel's, inside this environment
    assert "TBB " in r.stdout and r.stdout.split("TBB ")[1].split()[1] == "True", r.stdout
    assert f"REPORT True {DEFAULT_LAYER}" in r.stdout, r.stdout


def test_tbb_requested_loads_from_the_wheel(tmp_path):
    r = run(_LAYER_SCRIPT.format(big=BIG), tmp_path, "fastact", layer="tbb")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "LAYER tbb" in r.stdout
    assert r.stdout.split("TBB ")[1].split()[1] == "True", r.stdout


def test_omp_requested_is_respected(tmp_path):
    r = run(_LAYER_SCRIPT.format(big=BIG), tmp_path, "fastact", layer="omp")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "LAYER omp" in r.stdout


_POOL_SCRIPT = """
import multiprocessing as mp
import sys

import numba
import numpy as np

import fastact
import fastact.losses as L
from fastact._core import threads as _threads
from fastact.optim import functional as F

N = {big}


def work(seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(N).astype(np.float32)
    y = fastact.silu(x)  # parallel size
    ref = x.astype(np.float64) / (1 + np.exp(-x.astype(np.float64)))
    loss = L.mse_loss(x, np.zeros_like(x))  # parallel size
    p, g = x.copy(), np.ones_like(x)
    F.sgd([p], [g], [None], lr=0.5)  # parallel size
    return (
        float(np.max(np.abs(y - ref))),
        abs(float(loss) - float(np.mean(x.astype(np.float64) ** 2))),
        bool(np.array_equal(p, x - np.float32(0.5))),
        _threads.forked_serial(),
    )


if __name__ == "__main__":
    method = sys.argv[1]
    x = np.random.default_rng(0).standard_normal(N).astype(np.float32)
    fastact.silu(x)
    fastact.sigmoid(x)  # the parent has run parallel kernels before starting children
    layer = numba.threading_layer()
    with mp.get_context(method).Pool(2) as pool:
        res = pool.map_async(work, range(4)).get(timeout=240)
    assert len(res) == 4
    for err, lerr, ok, serial in res:
        assert err < 1e-5, err
        assert lerr < 1e-5, lerr
        assert ok
    fastact.sigmoid(x)  # the parent still runs parallel kernels afterwards
    print("OK", method, layer, "serial" if all(r[3] for r in res) else "parallel")
"""


@pytest.mark.slow
@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
@pytest.mark.parametrize("layer", ["tbb", "omp"])
def test_pool_after_parallel_kernels(tmp_path, layer, method):
    r = run(_POOL_SCRIPT.format(big=BIG), tmp_path, method, layer=layer)
    assert r.returncode == 0, r.stdout + r.stderr
    # children forked from a process running GNU OpenMP run serially; all others in parallel
    mode = "serial" if (layer, method) == ("omp", "fork") else "parallel"
    assert f"OK {method} {layer} {mode}" in r.stdout, r.stdout + r.stderr
    assert "unsafe" not in r.stderr


_LOADER_SCRIPT = """
import numba
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

import fastact


class DS(Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, i):
        x = np.linspace(-4, 4, {big}, dtype=np.float32) + np.float32(i)
        return torch.from_numpy(fastact.gelu(x))


if __name__ == "__main__":
    x = np.linspace(-4, 4, {big}, dtype=np.float32)
    fastact.gelu(x)  # parallel kernel in the parent first
    dl = DataLoader(DS(), batch_size=2, num_workers=2, timeout=240)
    got = torch.cat([b.reshape(-1) for b in dl]).numpy()
    xs = [x + np.float32(i) for i in range(8)]
    # identical to the parent's own results, and close to torch's float64 gelu
    np.testing.assert_array_equal(got, np.concatenate([fastact.gelu(v) for v in xs]))
    want = np.concatenate(
        [torch.nn.functional.gelu(torch.from_numpy(v.astype(np.float64))).numpy() for v in xs]
    )
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-7)
    print("OK loader", numba.threading_layer())
"""


@pytest.mark.slow
@pytest.mark.parametrize("layer", ["tbb", "omp"])
def test_torch_dataloader_workers(tmp_path, layer):
    r = run(_LOADER_SCRIPT.format(big=BIG), tmp_path, layer=layer)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"OK loader {layer}" in r.stdout
    assert "unsafe" not in r.stderr


def test_info_reports_the_layer_and_the_tbb_file(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "fastact", "info"],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=300,
        cwd=str(tmp_path),
    )
    assert r.returncode == 0, r.stdout + r.stderr
    rows = dict(line.split(None, 1) for line in r.stdout.splitlines() if line.strip())
    assert rows["threading_layer"].strip() == DEFAULT_LAYER
    tbb = rows["tbb_library"].strip()
    real_prefix = os.path.realpath(sys.prefix) + os.sep
    assert os.path.realpath(tbb).startswith(real_prefix), tbb
    assert rows["forked_children"].startswith("parallel")


_OMP_FORK_SCRIPT = """
import multiprocessing as mp
import os
import sys

try:
    from numba.np.ufunc import omppool  # noqa: F401
except ImportError as e:
    print("NO_OMP", e)
    sys.exit(0)
import numba
import numpy as np

if sys.argv[1] == "before":
    import torch
os.environ["FASTACT_TORCH_POOL"] = "never"  # the kernel runs on numba's layer
import fastact

x = np.linspace(-3, 3, {big}, dtype=np.float32)
fastact.silu(x)  # a parallel kernel starts numba's OpenMP layer
assert numba.threading_layer() == "omp", numba.threading_layer()


def child():
    import torch

    y = torch.tanh(torch.from_numpy(x))  # large enough for torch's parallel loop
    print("CHILD", torch.get_num_threads(), float(y.sum()), flush=True)


if __name__ == "__main__":
    p = mp.get_context("fork").Process(target=child)
    p.start()
    p.join(60)
    if p.is_alive():
        p.kill()
        print("HUNG")
    print("EXIT", p.exitcode)
"""


@pytest.mark.parametrize("torch_imported", ["before", "in-the-child"])
def test_torch_ops_in_a_child_forked_from_numbas_omp_layer(tmp_path, torch_imported):
    """A child forked after the parent ran numba's OpenMP layer (GNU OpenMP, torch's runtime
    too) runs torch's parallel operators on one thread; they waited forever on the parent's
    pool, torch imported before the fork or in the child."""
    r = run(_OMP_FORK_SCRIPT.format(big=max(BIG, 400_000)), tmp_path, torch_imported, layer="omp")
    if "NO_OMP" in r.stdout:
        pytest.skip(f"numba's OpenMP layer cannot load here ({r.stdout.split('NO_OMP')[1]})")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "HUNG" not in r.stdout, r.stdout + r.stderr
    assert "CHILD 1 " in r.stdout and "EXIT 0" in r.stdout, r.stdout + r.stderr
