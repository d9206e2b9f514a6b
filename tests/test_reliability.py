"""Reliability in real use: forked/spawned workers, Python threads, the compile cache.

Process tests run a small script in a fresh interpreter (with a timeout, so a hang fails the
test instead of blocking the suite). Sizes are kept small: the CI machine has few cores.
"""

from __future__ import annotations

import itertools
import os
import pickle
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numba
import numpy as np
import pytest

import fastact
import fastact._core.jit as fj
import fastact.losses as L
import fastact.optim as O
from fastact._core.thresholds import PARALLEL_THRESHOLD, THRESHOLDS

_REPO = Path(__file__).resolve().parent.parent
# large enough for every kernel's parallel (prange) path
BIG = 2 * max(PARALLEL_THRESHOLD, *THRESHOLDS.values())


def _run(script: str, tmp_path: Path, *args: str, env: dict | None = None, timeout: float = 300):
    """Run ``script`` in a fresh interpreter; return the CompletedProcess (never hangs)."""
    path = tmp_path / "script.py"
    path.write_text(textwrap.dedent(script))
    full_env = {**os.environ, "PYTHONPATH": str(_REPO), **(env or {})}
    return subprocess.run(
        [sys.executable, str(path), *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        cwd=str(tmp_path),
    )


# ---------------------------------------------------------------------------- threads

N_THREADS = 8
N_ITERS = 150  # x 6 calls x 8 threads = 7,200 calls


def _thread_work(seed: int, iters: int) -> list:
    """Activations (serial and parallel sizes), losses and an own optimizer's steps."""
    rng = np.random.default_rng(seed)
    small = rng.standard_normal(257).astype(np.float32)
    big = rng.standard_normal(BIG).astype(np.float64)
    target = rng.standard_normal(257).astype(np.float32)
    p = rng.standard_normal(1000).astype(np.float32)
    g = rng.standard_normal(1000).astype(np.float32)
    opt = O.Adam([p], lr=1e-2, weight_decay=0.1)
    out = []
    for i in range(iters):
        a = fastact.silu(small)
        b = fastact.tanh_backward(small, small)
        c = fastact.softmax(small.reshape(1, -1), dim=-1)
        d = fastact.gelu(big) if i % 10 == 0 else None
        loss, grad = L.mse_loss(a, target, return_grad=True)
        opt.step([g * np.float32(1 + i % 3)])
        if i % 25 == 0 or i == iters - 1:
            out.append((a, b, c, d, loss, grad, p.copy()))
    return out


def _compare(x, y) -> None:
    if x is None:
        assert y is None
        return
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.slow
def test_threads_match_serial():
    serial = [_thread_work(s, N_ITERS) for s in range(N_THREADS)]
    results: list = [None] * N_THREADS
    errors: list = []

    def run(k: int) -> None:
        try:
            results[k] = _thread_work(k, N_ITERS)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(N_THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
        assert not t.is_alive(), "a thread hung"
    assert not errors, errors
    for k in range(N_THREADS):
        assert len(results[k]) == len(serial[k])
        for got, want in zip(results[k], serial[k], strict=True):
            for x, y in zip(got, want, strict=True):
                _compare(x, y)


# ---------------------------------------------------------------------------- cache

_KERNELS_SCRIPT = """
import warnings

import numpy as np

warnings.simplefilter("always")
with warnings.catch_warnings(record=True) as w:
    import fastact
    import fastact.losses as L
    import fastact.optim as O

    x = np.linspace(-3, 3, 1001, dtype=np.float32)
    y = fastact.sigmoid(x)
    z = fastact.relu(x)
    loss = L.mse_loss(x, y)
    p = x.copy()
    O.SGD([p], lr=0.5).step([np.ones_like(p)])
ref = 1 / (1 + np.exp(-x.astype(np.float64)))
assert np.max(np.abs(y - ref)) < 1e-6
assert np.array_equal(z, np.maximum(x, 0))
assert abs(float(loss) - np.mean((x.astype(np.float64) - y) ** 2)) < 1e-5
assert np.allclose(p, x - 0.5)
msgs = [str(m.message) for m in w if "fastact" in str(m.message)]
print("WARNINGS", len(msgs))
for m in msgs:
    print("W:", m)
print("RESULT", float(y.sum()), float(loss))
"""

_READONLY_HOOK = """
import errno
import os
import pickle
import sys

RO = {ro!r}


def _hook(event, args):
    # Simulate a read-only file system under RO, also when the tests run as root.
    if event in ("open", "os.mkdir", "os.rename", "os.replace", "os.remove", "os.chmod"):
        path = args[0]
        if isinstance(path, (str, bytes, os.PathLike)):
            path = os.fsdecode(path)
            if os.path.abspath(path).startswith(RO):
                write = event != "open"
                if event == "open":
                    mode, flags = args[1], args[2]
                    write = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                        isinstance(flags, int)
                        and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND)
                    )
                if write:
                    raise PermissionError(errno.EROFS, "Read-only file system", path)


sys.addaudithook(_hook)
"""


def test_read_only_cache_folder(tmp_path):
    ro = tmp_path / "ro"
    (ro / "home").mkdir(parents=True)
    (ro / "cache").mkdir()
    for d in (ro / "home", ro / "cache", ro):
        d.chmod(0o555)
    script = _READONLY_HOOK.format(ro=str(ro)) + _KERNELS_SCRIPT
    try:
        env = {"FASTACT_CACHE_DIR": str(ro / "cache"), "HOME": str(ro / "home")}
        env["XDG_CACHE_HOME"] = ""
        env["NUMBA_CACHE_DIR"] = ""
        r = _run(script, tmp_path, env=env)
        r2 = _run(script, tmp_path, env={**env, "FASTACT_CACHE_DIR": ""})  # default: ~/.cache
    finally:
        for d in (ro, ro / "home", ro / "cache"):
            d.chmod(0o755)
    for res in (r, r2):
        assert res.returncode == 0, res.stdout + res.stderr
        n = int(res.stdout.split("WARNINGS ")[1].split()[0])
        assert n <= 1, res.stdout
        assert "W: fastact: cache folder" in res.stdout  # the one warning says why
    assert list((ro / "cache").iterdir()) == []
    assert list((ro / "home").iterdir()) == []


def _result(res) -> str:
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout.split("RESULT")[1].strip()


@pytest.mark.slow
def test_concurrent_compiles_into_one_empty_folder(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    path = tmp_path / "script.py"
    path.write_text(_KERNELS_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(_REPO), "FASTACT_CACHE_DIR": str(cache)}
    procs = [
        subprocess.Popen(
            [sys.executable, str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=str(tmp_path),
        )
        for _ in range(4)
    ]
    outs = []
    for p in procs:
        try:
            out, err = p.communicate(timeout=600)
        except subprocess.TimeoutExpired:
            p.kill()
            raise
        assert p.returncode == 0, out + err
        assert "WARNINGS 0" in out, out
        outs.append(out.split("RESULT")[1].strip())
    assert len(set(outs)) == 1
    sub = cache / os.path.basename(str(fj.cache_dir()))
    assert any(sub.glob("*.nbi")) and any(sub.glob("*.nbc"))
    # a fifth process loads what the four wrote
    r = _run(
        _KERNELS_SCRIPT, tmp_path, env={"FASTACT_CACHE_DIR": str(cache), "NUMBA_DEBUG_CACHE": "1"}
    )
    assert _result(r) == outs[0]
    assert "data loaded" in r.stdout + r.stderr


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["truncate", "garbage", "flip"])
def test_corrupted_cache_files_are_recompiled(tmp_path, damage):
    """Damaged cache files are recompiled and rewritten. "flip": 16 bytes of each data file's
    object code changed, its length and pickle intact (LLVM aborted the process, SIGABRT,
    on every later run: each data file now carries a digest checked before loading)."""
    cache = tmp_path / "cache"
    env = {"FASTACT_CACHE_DIR": str(cache)}
    first = _result(_run(_KERNELS_SCRIPT, tmp_path, env=env))
    sub = cache / os.path.basename(str(fj.cache_dir()))
    files = sorted(sub.glob("*.nbi")) + sorted(sub.glob("*.nbc"))
    assert any(f.suffix == ".nbi" for f in files) and any(f.suffix == ".nbc" for f in files)
    for f in files:
        data = f.read_bytes()
        if damage == "flip":
            if f.suffix == ".nbc":
                i = int(len(data) * 0.3)
                f.write_bytes(data[:i] + bytes(b ^ 0x5A for b in data[i : i + 16]) + data[i + 16 :])
            continue
        f.write_bytes(data[: len(data) // 3] if damage == "truncate" else b"\x80\x05garbage")
    # only data files damaged, then index files too: both recovered, results unchanged
    second = _run(_KERNELS_SCRIPT, tmp_path, env=env)
    assert _result(second) == first
    assert "WARNINGS 0" in second.stdout
    # the damaged files were rewritten: a third run loads them from the cache
    third = _run(_KERNELS_SCRIPT, tmp_path, env={**env, "NUMBA_DEBUG_CACHE": "1"})
    assert _result(third) == first
    assert "data loaded" in third.stdout + third.stderr
    for f in files:
        assert f.stat().st_size > 100


def test_corrupted_index_only(tmp_path):
    """A corrupted index alone (data files intact) is a cache miss, not an error."""
    cache = tmp_path / "cache"
    env = {"FASTACT_CACHE_DIR": str(cache)}
    first = _result(_run(_KERNELS_SCRIPT, tmp_path, env=env))
    sub = cache / os.path.basename(str(fj.cache_dir()))
    for f in sub.glob("*.nbi"):
        f.write_bytes(b"")
    assert _result(_run(_KERNELS_SCRIPT, tmp_path, env=env)) == first


def test_cache_folder_changes_with_version(monkeypatch, tmp_path):
    monkeypatch.setenv("FASTACT_CACHE_DIR", str(tmp_path))
    before = fj.cache_dir()
    assert before.parent == tmp_path
    assert before.name.startswith(fastact.__version__ + "-")
    import fastact._core.version as fv

    monkeypatch.setattr(fv, "__version__", fastact.__version__ + ".post1")
    after = fj.cache_dir()
    assert after != before
    assert after.name.startswith(fv.__version__ + "-")
    assert after.name.split("-")[-1] == before.name.split("-")[-1]  # same source fingerprint


def test_cache_folder_changes_with_source(monkeypatch, tmp_path):
    monkeypatch.setenv("FASTACT_CACHE_DIR", str(tmp_path))
    before = fj.cache_dir()
    monkeypatch.setattr(fj, "_FINGERPRINT", fj._fingerprint() + "x")
    assert fj.cache_dir() != before
    assert fj._fingerprint() == before.name.split("-")[-1]  # deterministic


# Two processes saving different signatures of one kernel into one cache folder: numba's
# index/data files through fastact's cache class, the file operations interleaved one by one
# in every order (threads stand in for the processes; each has its own cache-file object).
_BASE = "kernels.sigmoid_forward-12.py311"
_MAGIC = ("x86_64-unknown-linux-gnu", "skylake-avx512", "+avx512f")
_K32 = ((numba.float32[::1],), _MAGIC, ("code-hash", "closure-hash"))
_K64 = ((numba.float64[::1],), _MAGIC, ("code-hash", "closure-hash"))
_SAVES = [(_K32, ("float32 code",)), (_K64, ("float64 code",))]
_FILE_OPS = ("_load_index", "_save_index", "_save_data")


def _interleaved_saves(folder: Path, schedule: tuple) -> None:
    """``save`` of each entry of ``_SAVES`` on its own thread, their file operations run one at
    a time in the order ``schedule`` gives (save numbers; a finished save's number is skipped,
    and what is left runs to the end afterwards)."""
    n = len(_SAVES)
    go = [threading.Semaphore(0) for _ in range(n)]
    paused = [threading.Semaphore(0) for _ in range(n)]
    done = [False] * n

    def stepped(i, op):
        def run(*args):
            paused[i].release()
            go[i].acquire()
            return op(*args)

        return run

    def work(i, cache_file, key, data):
        try:
            cache_file.save(key, data)
        finally:
            done[i] = True
            paused[i].release()

    threads = []
    for i, (key, data) in enumerate(_SAVES):
        cache_file = fj._SafeIndexDataCacheFile(str(folder), _BASE, "stamp")
        for name in _FILE_OPS:
            setattr(cache_file, name, stepped(i, getattr(cache_file, name)))
        threads.append(threading.Thread(target=work, args=(i, cache_file, key, data)))
        threads[-1].start()
        paused[i].acquire()  # waiting before its first file operation
    for i in list(schedule) + [i for i in range(n) for _ in range(10)]:
        if not done[i]:
            go[i].release()
            paused[i].acquire()
    for t in threads:
        t.join(10)
    assert all(done)


def test_concurrent_saves_of_two_signatures_keep_each_ones_code(tmp_path):
    """Every interleaving of two saves leaves each signature loading its own code. Numba's
    files took the first free data file number: the order A reads the index, B reads it, A
    writes it, B writes it, B writes data 1, A writes data 1 left the index naming float64's
    code in a file holding float32's, which every later process loaded and failed on ("can't
    unbox array")."""
    wrong, lost = [], []
    for k, schedule in enumerate(itertools.product(range(2), repeat=6)):
        folder = tmp_path / f"s{k}"
        folder.mkdir()
        _interleaved_saves(folder, schedule)
        fresh = fj._SafeIndexDataCacheFile(str(folder), _BASE, "stamp")  # a later process
        for key, data in _SAVES:
            got = fresh.load(key)
            if got is None:
                lost.append((schedule, key[0]))  # a cache miss: compiled again
            elif got != data:
                wrong.append((schedule, key[0], got))
    assert not wrong
    assert not lost  # the index entry one process's write dropped: found by the key's name


def test_cache_data_file_of_another_signature_is_a_miss(tmp_path):
    """A data file holding another signature's code (what an interleaving of two processes'
    writes could leave) is a cache miss: recompiled, not handed to the process."""
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    fa = fj._SafeIndexDataCacheFile(str(a), _BASE, "stamp")
    fb = fj._SafeIndexDataCacheFile(str(b), _BASE, "stamp")
    fa.save(*_SAVES[0])
    fb.save(*_SAVES[1])
    assert fb.load(_K64) == _SAVES[1][1]
    target = b / fb._load_index()[_K64]
    target.write_bytes((a / fa._load_index()[_K32]).read_bytes())
    assert fb.load(_K64) is None
    fb.save(*_SAVES[1])  # the recompiled code replaces it
    assert fb.load(_K64) == _SAVES[1][1]


def test_relative_cache_folder_is_the_one_at_import(tmp_path):
    """A relative FASTACT_CACHE_DIR is taken from the working folder at import: a program that
    changes folder afterwards (Hydra, per run) wrote its kernels under the new folder, where
    the next run (started from the same folder) never looked."""
    script = """
    import os
    import numpy as np
    import fastact
    from fastact._core.jit import cache_dir

    os.makedirs("run1")
    os.chdir("run1")
    assert np.array_equal(fastact.relu(np.arange(-2.0, 3.0)), [0, 0, 0, 1, 2])
    print("DIR", cache_dir())
    """
    r = _run(script, tmp_path, env={"FASTACT_CACHE_DIR": ".fastact_cache"})
    assert r.returncode == 0, r.stdout + r.stderr
    folder = tmp_path / ".fastact_cache" / os.path.basename(str(fj.cache_dir()))
    assert r.stdout.split("DIR ")[1].strip() == str(folder)
    assert any(folder.glob("*.nbc"))
    assert not (tmp_path / "run1" / ".fastact_cache").exists()


@pytest.mark.parametrize(
    "value, disabled",
    [("", False), ("0", False), ("false", False), ("No", False), (" OFF ", False),
     ("1", True), ("true", True), ("yes", True)],
)  # fmt: skip
def test_disable_cache_setting(monkeypatch, tmp_path, value, disabled):
    """FASTACT_DISABLE_CACHE=0 (false, no, off) keeps the cache on: any non-empty value
    turned it off."""
    monkeypatch.setenv("FASTACT_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("FASTACT_DISABLE_CACHE", value)
    assert fj._cacheable(fj._digest) is not disabled


def test_unwritable_cache_warning_names_the_users_line(tmp_path):
    """The one "cache folder is not writable" warning points at the user's import line, not
    inside fastact."""
    (tmp_path / "a_file").write_text("")
    script = """
    import warnings
    import numpy as np
    warnings.simplefilter("always")
    with warnings.catch_warnings(record=True) as w:
        import fastact  # line 6
        fastact.relu(np.ones(3))
    for m in w:
        if "cache folder" in str(m.message):
            print("AT", m.filename, m.lineno)
    """
    r = _run(script, tmp_path, env={"FASTACT_CACHE_DIR": str(tmp_path / "a_file" / "cache")})
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.split() == ["AT", str(tmp_path / "script.py"), "6"], r.stdout + r.stderr


# ---------------------------------------------------------------------------- optimizer safety


@pytest.mark.parametrize("name", sorted(O.OPTIMIZERS))
def test_check_finite_rejects_whole_step(name):
    """``step(grads, check_finite=True)`` on a NaN/inf gradient raises before any write: no
    parameter and no state changes (torch's fused kernels skip the step on ``found_inf``)."""
    rng = np.random.default_rng(3)
    params = [rng.standard_normal(50_000).astype(np.float32), rng.standard_normal((7, 3))]
    opt = getattr(O, name)(params, lr=1e-2)
    opt.step([np.full_like(p, 0.1) for p in params])
    before = [p.copy() for p in params]
    sd = opt.state_dict()
    for bad in (np.nan, np.inf, -np.inf):
        g1 = np.full((7, 3), 0.1)
        g1[6, 2] = bad  # last element of the last parameter
        with pytest.raises(ValueError, match=r"grads\[1\]"):
            opt.step([np.full_like(params[0], 0.1), g1], check_finite=True)
        for p, b in zip(params, before, strict=True):
            np.testing.assert_array_equal(p, b)
        after = opt.state_dict()["state"]
        for k, st in sd["state"].items():
            for key, v in st.items():
                np.testing.assert_array_equal(np.asarray(after[k][key]), np.asarray(v))
    opt.step([np.full_like(p, 0.1) for p in params], check_finite=True)  # finite: runs
    assert not np.array_equal(params[0], before[0])


@pytest.mark.parametrize("name", sorted(O.OPTIMIZERS))
def test_skip_nonfinite_skips_the_whole_step_and_reports_it(name):
    """``step(grads, skip_nonfinite=True)``: a NaN/inf anywhere skips every group's update
    (params, state and step counts unchanged) and sets ``found_inf``; the next finite step
    gives exactly the trajectory of an optimizer that never saw the bad step."""
    rng = np.random.default_rng(4)
    shapes = [(50_000,), (7, 3)]
    init = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    grads = [[rng.standard_normal(s).astype(np.float32) for s in shapes] for _ in range(4)]
    params = [p.copy() for p in init]
    twin = [p.copy() for p in init]
    opt = getattr(O, name)([{"params": params[:1]}, {"params": params[1:], "lr": 3e-3}], lr=1e-2)
    ref = getattr(O, name)([{"params": twin[:1]}, {"params": twin[1:], "lr": 3e-3}], lr=1e-2)
    opt.step(grads[0], skip_nonfinite=True)
    ref.step(grads[0])
    assert opt.found_inf is False and opt.skipped_steps == 0
    for bad in (np.nan, np.inf, -np.inf):
        g = [x.copy() for x in grads[1]]
        g[1][6, 2] = bad  # the last element of the last group
        before = [p.copy() for p in params]
        state_before = opt.state_dict()["state"]
        assert opt.step(g, skip_nonfinite=True) is None
        assert opt.found_inf is True
        for p, b in zip(params, before, strict=True):
            np.testing.assert_array_equal(p, b)
        state_after = opt.state_dict()["state"]
        for k, st in state_before.items():
            for key, v in st.items():
                np.testing.assert_array_equal(np.asarray(state_after[k][key]), np.asarray(v))
    assert opt.skipped_steps == 3
    for g in grads[2:]:
        opt.step(g, skip_nonfinite=True)
        ref.step(g)
        assert opt.found_inf is False
    for p, q in zip(params, twin, strict=True):
        np.testing.assert_array_equal(p, q)


def test_functional_skip_nonfinite_returns_found_inf():
    rng = np.random.default_rng(5)
    p = [rng.standard_normal(1000).astype(np.float32), rng.standard_normal(10)]
    m = [np.zeros_like(x) for x in p]
    v = [np.zeros_like(x) for x in p]
    g = [np.ones_like(x) for x in p]
    g[1][3] = np.nan
    before = [x.copy() for x in p]
    assert O.functional.adam(p, g, m, v, step=1, skip_nonfinite=True) is True
    for x, b in zip(p, before, strict=True):
        np.testing.assert_array_equal(x, b)
    assert not any(np.any(s) for s in m + v)
    g[1][3] = 1.0
    assert O.functional.adam(p, g, m, v, step=1, skip_nonfinite=True) is False
    assert not np.array_equal(p[0], before[0])
    buffers = [None, None]
    assert O.functional.sgd(p, g, buffers, momentum=0.9, skip_nonfinite=True) is False
    assert all(isinstance(b, np.ndarray) for b in buffers)


# ------------------------------------------------------------------------------- checkpoints


def _trained_adam(steps: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    params = [rng.standard_normal((64, 32)).astype(np.float32), rng.standard_normal(32)]
    opt = O.Adam(params, lr=1e-2, amsgrad=True)
    for _ in range(steps):
        opt.step([rng.standard_normal(p.shape).astype(p.dtype) for p in params])
    return params, opt


def test_checkpoint_round_trip_resumes_identically(tmp_path):
    params, opt = _trained_adam(5)
    sched = O.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    path = tmp_path / "ckpt.bin"
    O.save({"params": params, "opt": opt.state_dict(), "sched": sched.state_dict()}, path)
    assert [f.name for f in tmp_path.iterdir()] == ["ckpt.bin"]  # no temporary left over
    ck = O.load(path)
    params2 = ck["params"]
    opt2 = O.Adam(params2, lr=1e-2, amsgrad=True)
    opt2.load_state_dict(ck["opt"])
    sched2 = O.lr_scheduler.StepLR(opt2, step_size=2, gamma=0.5)
    sched2.load_state_dict(ck["sched"])
    rng = np.random.default_rng(9)
    for _ in range(5):
        g = [rng.standard_normal(p.shape).astype(p.dtype) for p in params]
        opt.step(g)
        opt2.step([x.copy() for x in g])
        sched.step()
        sched2.step()
    for a, b in zip(params, params2, strict=True):
        np.testing.assert_array_equal(a, b)
    assert sched.get_last_lr() == sched2.get_last_lr()


def test_checkpoint_damage_is_detected(tmp_path):
    params, opt = _trained_adam(2)
    path = tmp_path / "ckpt.bin"
    O.save(opt.state_dict(), path)
    data = path.read_bytes()
    (tmp_path / "short.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated"):
        O.load(tmp_path / "short.bin")
    flipped = bytearray(data)
    flipped[-10] ^= 0xFF
    (tmp_path / "flip.bin").write_bytes(bytes(flipped))
    with pytest.raises(ValueError, match="corrupted"):
        O.load(tmp_path / "flip.bin")
    (tmp_path / "other.bin").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a fastact checkpoint"):
        O.load(tmp_path / "other.bin")


def test_checkpoint_failed_save_keeps_the_old_file(tmp_path):
    params, opt = _trained_adam(2)
    path = tmp_path / "ckpt.bin"
    O.save(opt.state_dict(), path)
    os.chmod(path, 0o600)
    old = path.read_bytes()
    with pytest.raises((TypeError, AttributeError, pickle.PicklingError)):
        O.save({"f": lambda: 0}, path)  # unpicklable: fails before any I/O
    assert path.read_bytes() == old
    assert sorted(f.name for f in tmp_path.iterdir()) == ["ckpt.bin"]
    O.save({"x": 1}, path)
    assert O.load(path) == {"x": 1}
    assert os.stat(path).st_mode & 0o777 == 0o600  # permissions kept


def test_checkpoint_crash_mid_write_leaves_the_old_file(tmp_path):
    """A process killed (os._exit) half-way through writing the new checkpoint: the old file
    is intact and loads; only a stray temporary file remains."""
    params, opt = _trained_adam(3)
    path = tmp_path / "ckpt.bin"
    O.save(opt.state_dict(), path)
    old = path.read_bytes()
    script = textwrap.dedent(
        f"""
        import os, numpy as np
        import fastact.optim.checkpoint as C
        real = os.fdopen
        def dying_fdopen(fd, *a, **k):
            f = real(fd, *a, **k)
            w = f.write
            def write(b):
                w(bytes(b)[: len(b) // 2])
                f.flush()
                os._exit(3)  # killed mid-write
            f.write = write
            return f
        C.os.fdopen = dying_fdopen
        C.save({{"big": np.ones(1_000_000)}}, {str(path)!r})
        """
    )
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert res.returncode == 3, res.stderr
    assert path.read_bytes() == old
    sd = O.load(path)
    opt2 = O.Adam([p.copy() for p in params], lr=1e-2, amsgrad=True)
    opt2.load_state_dict(sd)
    assert opt2.state_dict()["state"][0]["step"] == 3
    leftovers = [f for f in tmp_path.iterdir() if f.name != "ckpt.bin"]
    assert len(leftovers) == 1 and leftovers[0].name.startswith(".ckpt.bin.")
    with pytest.raises(ValueError):
        O.load(leftovers[0])  # the partial write is recognisably incomplete


# --------------------------------------------------------------------- alongside torch


def _env_after_import(env: dict, code: str) -> str:
    drop = ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY", "FASTACT_TORCH_POOL")
    full = {k: v for k, v in os.environ.items() if k not in drop}
    full.update(env)
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=full, timeout=300
    )
    assert res.returncode == 0, res.stderr
    return res.stdout.strip()


def test_fastact_leaves_torch_openmp_settings_alone_and_joins_its_pool():
    """fastact does not touch libgomp's settings (an earlier version shortened
    GOMP_SPINCOUNT, which slowed torch's own ops): whatever the import order, its kernels run
    on torch's OpenMP pool once torch is imported, so torch's spinning workers take them."""
    show = (
        "import os; import numpy as np; x = np.ones(1 << 20, np.float32); fastact.gelu(x); "
        "from fastact._core import torch_pool as tp; "
        "print(os.environ.get('GOMP_SPINCOUNT'), tp.report()['torch_pool_runtime'])"
    )
    for order in ("import fastact, torch", "import torch, fastact"):
        spin, runtime = _env_after_import({}, f"{order}; {show}").split()
        assert spin == "None"
        assert os.path.basename(runtime).startswith("libgomp"), runtime
        assert "torch" in runtime  # the copy torch's wheel ships, not a system one
