"""Save/load throughput of a 16.8M-parameter AdamW checkpoint: fastact vs pickle vs torch.

    python scripts/bench_checkpoint.py [--params 16777216] [--tensors 16] [--repeats 5]
                                       [--dir DIR] [--fresh]

The state is ``{"params": [...], "opt": AdamW.state_dict()}`` after one step: parameters,
exp_avg and exp_avg_sq in float32 (3 x 4 bytes per parameter, 201 MB at 16.8M), split
over ``--tensors`` equal tensors. Methods, each timed in the same loop, interleaved, medians
of ``--repeats`` rounds (the file is in the page cache when loaded; every save ends with an
fsync, as ``fastact.optim.save`` does, and the "no fsync" column times the same save with
fsync made a no-op, i.e. the cost of the format itself):

- fastact: ``fastact.optim.save``/``load`` (JSON + raw arrays + SHA-256, NumPy state);
- fastact (torch): the same with torch tensors as parameters (the state holds tensors);
- fastact v1: the previous format (pickle behind a length and a SHA-256 digest), loaded
  with ``allow_pickle=True``;
- pickle: ``pickle.dump``/``pickle.load`` (protocol 5) of the NumPy state;
- torch: ``torch.save``/``torch.load`` (``weights_only=True``, torch's default) of the torch
  state;
- safetensors (if importable): ``safetensors.numpy.save_file``/``load_file`` of the state
  flattened to a str -> array dict (it cannot store the structure itself).

``--fresh`` also loads each file ``--repeats`` times in new processes (the way a run
resumes: no memory freed by an earlier load to reuse) and reports the median time and the
peak resident memory above the resident size before the load (Linux: VmHWM after a reset),
as a multiple of the state's size.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import pickle
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

import fastact
import fastact.optim.checkpoint as C

try:
    import safetensors.numpy as stn
except ImportError:
    stn = None


def _state(n: int, k: int, use_torch: bool) -> dict:
    rng = np.random.default_rng(0)
    shape = (k, n // k)
    params = [rng.standard_normal(shape[1], dtype=np.float32) for _ in range(k)]
    grads = [rng.standard_normal(shape[1], dtype=np.float32) for _ in range(k)]
    if use_torch:
        params = [torch.from_numpy(p) for p in params]
        for p, g in zip(params, grads, strict=True):
            p.grad = torch.from_numpy(g)
        opt = fastact.optim.AdamW(params, lr=1e-3)
        opt.step()
    else:
        opt = fastact.optim.AdamW(params, lr=1e-3)
        opt.step(grads)
    return {"params": params, "opt": opt.state_dict()}


def _flat(state: dict) -> dict[str, np.ndarray]:
    out = {f"params.{i}": p for i, p in enumerate(state["params"])}
    for i, st in state["opt"]["state"].items():
        for key, v in st.items():
            if isinstance(v, np.ndarray):
                out[f"state.{i}.{key}"] = v
    return out


def _save_v1(obj: Any, path: str) -> None:
    """The previous fastact format (pickle + length + SHA-256), written like its save did."""
    payload = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    with open(path, "wb") as f:
        f.write(C._LEGACY_MAGIC)
        f.write(C._LEGACY_HEADER.pack(len(payload), hashlib.sha256(payload).digest()))
        f.write(payload)
        f.flush()
        os.fsync(f.fileno())


def _pickle_save(obj: Any, path: str) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=pickle.HIGHEST_PROTOCOL)
        f.flush()
        os.fsync(f.fileno())


def _pickle_load(path: str) -> Any:
    with open(path, "rb") as f:
        return pickle.load(f)


def _torch_save(obj: Any, path: str) -> None:
    with open(path, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())


def _st_save(obj: Any, path: str) -> None:
    stn.save_file(_flat(obj), path)
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _methods(np_state: dict, t_state: dict) -> dict[str, tuple[Any, Callable, Callable]]:
    m = {
        "fastact": (np_state, fastact.optim.save, fastact.optim.load),
        "fastact (torch)": (t_state, fastact.optim.save, fastact.optim.load),
        "fastact v1 (pickle)": (
            np_state,
            _save_v1,
            lambda p: fastact.optim.load(p, allow_pickle=True),
        ),
        "pickle": (np_state, _pickle_save, _pickle_load),
        "torch": (t_state, _torch_save, lambda p: torch.load(p, weights_only=True)),
    }
    if stn is not None:
        m["safetensors"] = (np_state, _st_save, stn.load_file)
    return m


def _timed(fn: Callable, *args: Any) -> float:
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


_FRESH = """
import time
import numpy, torch, fastact, fastact.optim, pickle
{imports}
def kib(field):
    with open("/proc/self/status") as f:
        return next(int(ln.split()[1]) for ln in f if ln.startswith(field))
fn = {loader}
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the peak (VmHWM) to the current resident size
before = kib("VmRSS:")
t0 = time.perf_counter()
obj = fn({path!r})
print(time.perf_counter() - t0, kib("VmHWM:") - before)
"""
_LOADERS = {
    "fastact": ("", "fastact.optim.load"),
    "fastact (torch)": ("", "fastact.optim.load"),
    "fastact v1 (pickle)": ("", "lambda p: fastact.optim.load(p, allow_pickle=True)"),
    "pickle": ("", "lambda p: pickle.load(open(p, 'rb'))"),
    "torch": ("", "lambda p: torch.load(p, weights_only=True)"),
    "safetensors": ("import safetensors.numpy as stn", "stn.load_file"),
}


def _fresh(name: str, path: str) -> tuple[float, int]:
    """(seconds, peak KiB above the resident size before) of one load in a new process."""
    imports, loader = _LOADERS[name]
    code = _FRESH.format(path=path, imports=imports, loader=loader)
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=os.environ
    )
    secs, kib = res.stdout.split()[-2:]
    return float(secs), int(kib)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", type=int, default=1 << 24)
    ap.add_argument("--tensors", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--dir", default=None, help="folder for the files (default: a temp dir)")
    ap.add_argument(
        "--fresh", action="store_true", help="also time each load in new processes (+ memory)"
    )
    a = ap.parse_args(argv)
    np_state = _state(a.params, a.tensors, False)
    t_state = _state(a.params, a.tensors, True)
    nbytes = 3 * 4 * (a.params // a.tensors) * a.tensors
    methods = _methods(np_state, t_state)
    folder = tempfile.mkdtemp(dir=a.dir)
    paths = {name: os.path.join(folder, f"{i}.ckpt") for i, name in enumerate(methods)}
    times: dict[str, dict[str, list[float]]] = {
        n: {"save": [], "nosync": [], "load": []} for n in methods
    }
    real_fsync = os.fsync
    try:
        for _ in range(a.repeats):
            for name, (obj, save, load) in methods.items():
                times[name]["save"].append(_timed(save, obj, paths[name]))
                os.fsync = lambda fd: None
                try:
                    times[name]["nosync"].append(_timed(save, obj, paths[name]))
                finally:
                    os.fsync = real_fsync
                times[name]["load"].append(_timed(load, paths[name]))
        fresh: dict[str, list] = {n: [] for n in methods}
        for _ in range(a.repeats if a.fresh else 0):
            for n in methods:
                fresh[n].append(_fresh(n, paths[n]))
        sizes = {n: os.path.getsize(paths[n]) for n in methods}
    finally:
        for p in paths.values():
            if os.path.exists(p):
                os.remove(p)
        os.rmdir(folder)
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    print(
        f"Machine: {cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"NumPy {np.__version__}, torch {torch.__version__}"
    )
    print(
        f"State: {a.params} float32 parameters in {a.tensors} tensors, AdamW state "
        f"(params + exp_avg + exp_avg_sq) = {nbytes / 1e6:.0f} MB; medians of {a.repeats}; "
        f"files in {a.dir or tempfile.gettempdir()}, loads from the page cache"
    )
    head = "| method | file MB | save s (GB/s) | save, no fsync s (GB/s) | load s (GB/s) |"
    if a.fresh:
        head += " load in a new process s (GB/s) | its peak RSS / state |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    out = {}
    for name in methods:
        med = {k: statistics.median(v) for k, v in times[name].items()}
        row = f"| {name} | {sizes[name] / 1e6:.0f} |"
        for k in ("save", "nosync", "load"):
            row += f" {med[k]:.3f} ({nbytes / med[k] / 1e9:.2f}) |"
        if a.fresh:
            secs = statistics.median(t for t, _ in fresh[name])
            peak = max(k for _, k in fresh[name]) * 1024 / nbytes
            row += f" {secs:.3f} ({nbytes / secs / 1e9:.2f}) | {peak:.2f} |"
        print(row)
        out[name] = med
    return out


if __name__ == "__main__":
    main()
