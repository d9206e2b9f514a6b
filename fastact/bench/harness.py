"""The benchmark harness: cases of every family, one process per library, rounds, rows.

Isolation. Each library is timed in its own process (``multiprocessing`` with the ``spawn``
start method), one after the other, with its thread pool set to ``threads`` before anything
runs (``numba.set_num_threads``, ``torch.set_num_threads``, ``numexpr.set_num_threads`` and the
``*_NUM_THREADS`` variables). So torch's OpenMP threads, which spin for a while after each
parallel region, never share the cores with fastact's timings, and no library inherits another
one's warm pools. ``isolate=False`` (used by the tests) runs the same blocks in this process,
still one library at a time and each warmed before it is timed.

A library's block times every case of every family it has a column for (torch has three for
optimizers: for-loop, foreach, fused), with the one timer of :mod:`fastact.bench.timing`;
fastact's block also measures the bandwidth probes of :mod:`fastact.bench.bandwidth` that the
cases' rooflines need. With ``rounds=N`` the blocks run N times, the libraries alternating
(fastact first in even rounds, last in odd ones), and every time is the median over rounds.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import multiprocessing as mp
import os
import queue as queue_mod
import sys
import time
import traceback
from collections.abc import Sequence
from types import ModuleType
from typing import Any

import numpy as np

from . import activations, fused, losses, optim
from .bandwidth import measure_probe
from .rows import finish_row, matches, parse_size, size_label
from .timing import Unsupported, budget, measure, timer_overhead

__all__ = [
    "DEFAULT_SIZES",
    "FAMILIES",
    "LIBRARIES",
    "PEERS",
    "WorkerFailed",
    "check_settings",
    "default_threads",
    "run",
    "usable_threads",
]

#: Default sizes: a small array (call overhead), one that fits in cache, one that streams from
#: memory.
DEFAULT_SIZES = (1 << 10, 1 << 18, 1 << 24)
#: Libraries timed, in this order (each in its own process).
LIBRARIES = ("fastact", "torch", "numpy", "numexpr")
PEERS = LIBRARIES[1:]
#: Benchmark families and their modules (``cases``, ``build``, ``COLUMNS``, ``Inputs``).
FAMILIES: dict[str, ModuleType] = {
    "activation": activations,
    "loss": losses,
    "optimizer": optim,
    "fused": fused,
}
_FAMILY_ALIASES = {
    "activation": "activation",
    "activations": "activation",
    "loss": "loss",
    "losses": "loss",
    "optimizer": "optimizer",
    "optimizers": "optimizer",
    "optim": "optimizer",
    "fused": "fused",
}
_THREAD_ENV = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "NUMEXPR_MAX_THREADS",
    "NUMBA_NUM_THREADS",
)


def default_threads() -> int:
    """The CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def columns(case: dict, lib: str) -> tuple[str, ...]:
    """The columns (timed implementations) ``lib`` contributes to ``case``."""
    cols = FAMILIES[case["family"]].COLUMNS.get(lib, ())
    allowed = case.get("columns")
    return tuple(c for c in cols if allowed is None or c in allowed)


class WorkerFailed(RuntimeError):
    """fastact's benchmark block failed (without fastact's times there is no report): the
    message holds the worker's traceback, ``last_line`` its error line."""

    def __init__(self, traceback_text: str) -> None:
        super().__init__(f"fastact benchmark worker failed:\n{traceback_text}")
        lines = [ln for ln in traceback_text.strip().splitlines() if ln.strip()]
        self.last_line = lines[-1].strip() if lines else "no error message"


def check_settings() -> None:
    """Check the environment variables every worker reads before any worker starts, so that a
    bad one is one ValueError naming it, not a traceback from each spawned process:
    ``FASTACT_TORCH_POOL`` and ``NUMBA_THREADING_LAYER`` (a name numba knows; whether that
    layer can be loaded shows only when a worker starts it)."""
    import numba

    from fastact._core.torch_pool import mode

    mode()  # ValueError naming FASTACT_TORCH_POOL
    layer = str(numba.config.THREADING_LAYER).lower()
    known = ("default", "safe", "threadsafe", "forksafe", *numba.config.THREADING_LAYER_PRIORITY)
    if layer not in known:
        raise ValueError(
            f"NUMBA_THREADING_LAYER={numba.config.THREADING_LAYER!r} is no threading layer "
            f"numba knows (choose from {', '.join(known)})"
        )


def usable_threads(threads: int, isolate: bool) -> int:
    """The thread count every library is timed on: ``threads``, except in this process
    (``isolate=False``), where numba cannot run more threads than the pool it started with
    (``NUMBA_NUM_THREADS``): there every library gets at most that many, so that torch and
    numexpr do not run on more threads than fastact while the report says one count. Spawned
    workers get ``NUMBA_NUM_THREADS=threads`` and no limit."""
    if isolate:
        return threads
    import numba

    return min(threads, numba.config.NUMBA_NUM_THREADS)


# ============================================================================ workers
def _settle_threads(lib: str, threads: int) -> None:
    """Set the thread pool of ``lib`` (and numba's, which fastact uses) to ``threads``."""
    import numba

    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    if lib == "torch":
        import torch

        torch.set_num_threads(threads)
    elif lib == "numexpr":
        import numexpr

        numexpr.set_num_threads(threads)


def _library_available(lib: str) -> bool:
    return lib in ("fastact", "numpy") or importlib.util.find_spec(lib) is not None


def short_error(e: BaseException) -> str:
    """One line naming an exception (numba's multi-page messages cut to their first line)."""
    import re

    text = re.sub(r"\x1b\[[0-9;]*m", "", str(e)).strip()
    first = text.splitlines()[0] if text else ""
    return f"{type(e).__name__}: {first}"[:200]


def _label(case: dict) -> str:
    return f"{case['function']} {case['variant']} {size_label(case['size'])}"


def _worker(lib: str, cases: list[dict], opts: dict, out_q: Any) -> None:
    """Time every case with ``lib`` (one process per library); report through ``out_q``:
    per case ``{column: measure() result or {"error": ...}}``, the probes, the metadata."""
    try:
        _settle_threads(lib, opts["threads"])
        overhead = timer_overhead()
        inputs = {fam: mod.Inputs() for fam, mod in FAMILIES.items()}
        fam_order = list(FAMILIES)
        order = sorted(
            range(len(cases)),
            key=lambda i: (fam_order.index(cases[i]["family"]), cases[i]["size"], i),
        )
        by_index: dict[int, dict] = {}
        scale = opts.get("budget_scale", 1.0)
        for i in order:
            case = cases[i]
            mod = FAMILIES[case["family"]]
            got: dict[str, dict] = {}
            for column in columns(case, lib):
                try:
                    runner = mod.build(column, case, inputs[case["family"]])
                except Unsupported:
                    continue
                except Exception as e:  # a peer that fails to build is reported, not fatal
                    got[column] = {"error": short_error(e)}
                    continue
                secs, lo = budget(case["size"], opts["quick"], scale)
                # an optimizer's first step allocates its state: never a sample
                warm = column == "fastact" or case["family"] == "optimizer"
                try:
                    got[column] = measure(runner, secs, lo, overhead=overhead, jit=warm)
                except Exception as e:
                    got[column] = {"error": short_error(e)}
                del runner
            by_index[i] = got
            out_q.put(("tick", lib, f"{lib} {_label(case)}"))
        bandwidth = []
        if lib == "fastact":
            for probe, n, dt in sorted({(c["probe"], c["size"], c["dtype"]) for c in cases}):
                secs, lo = budget(n, opts["quick"], scale)
                bandwidth.append(measure_probe(probe, n, dt, secs, lo, overhead))
                out_q.put(("tick", lib, f"bandwidth {probe} {size_label(n)}"))
        payload = {
            "results": [by_index[i] for i in range(len(cases))],
            "bandwidth": bandwidth,
            "meta": _library_meta(lib),
        }
        out_q.put(("done", lib, payload))
    except BaseException:
        out_q.put(("error", lib, traceback.format_exc()))


def _library_meta(lib: str) -> dict:
    if lib == "fastact":
        import numba

        import fastact
        from fastact._core.threads import report

        return {
            "fastact": fastact.__version__,
            "numba": numba.__version__,
            "numba_threads": numba.get_num_threads(),
            "threading_layer": report()["threading_layer"],
        }
    if lib == "torch":
        import torch

        return {"torch": torch.__version__, "torch_threads": torch.get_num_threads()}
    if lib == "numexpr":
        import numexpr

        return {"numexpr": numexpr.__version__}
    return {"numpy": np.__version__}


# ---------------------------------------------------------------------------- progress
class Progress:
    """A progress bar on stderr (tqdm when installed, else a plain one), or nothing."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.n, self.enabled = total, 0, enabled
        self._bar = None
        self._last = 0.0
        if enabled:
            try:
                from tqdm import tqdm

                self._bar = tqdm(
                    total=total, file=sys.stderr, unit="case", leave=False, dynamic_ncols=True
                )
            except ImportError:
                self._bar = None

    def update(self, label: str, k: int = 1) -> None:
        self.n += k
        if not self.enabled:
            return
        if self._bar is not None:
            if self.n > self._bar.total:
                self._bar.total = self.n
            self._bar.set_description_str(label[:40], refresh=False)
            self._bar.update(k)
            return
        now = time.monotonic()
        if now - self._last < 0.2 and self.n < self.total:
            return
        self._last = now
        frac = min(1.0, self.n / max(1, self.total))
        bar = "#" * int(30 * frac)
        sys.stderr.write(f"\r[{bar:<30}] {self.n}/{self.total} {label[:40]:<40}")
        sys.stderr.flush()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        elif self.enabled:
            sys.stderr.write("\n")
            sys.stderr.flush()


def _run_block(
    target: Any, args: tuple, isolate: bool, progress: Progress, timeout: float | None = None
) -> tuple[str, Any]:
    """Run ``target(*args, queue)`` in a spawned process (or inline); return its last
    message, forwarding progress ticks."""
    if not isolate:
        q: Any = queue_mod.Queue()
        with _SavedThreads():
            target(*args, q)
        while True:
            kind, _who, payload = q.get_nowait()
            if kind == "tick":
                progress.update(payload)
            else:
                return kind, payload
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, q), daemon=False)
    proc.start()
    start = time.monotonic()
    finished = False
    try:
        while True:
            try:
                kind, _who, payload = q.get(timeout=0.5)
            except queue_mod.Empty:
                if not proc.is_alive():
                    try:  # a final message may arrive just after the process ends
                        kind, _who, payload = q.get(timeout=2.0)
                    except queue_mod.Empty:
                        return "error", f"worker exited with code {proc.exitcode}"
                elif timeout is not None and time.monotonic() - start > timeout:
                    return "error", f"worker exceeded {timeout:.0f} s"
                else:
                    continue
            if kind == "tick":
                progress.update(payload)
            else:
                finished = True
                return kind, payload
    finally:
        # a worker that reported its result exits by itself; otherwise (error, Ctrl-C) stop it
        proc.join(timeout=30 if finished else 0.1)
        if proc.is_alive():
            proc.terminate()
            proc.join()


class _SavedThreads:
    """Restore numba's and torch's thread counts after an in-process block."""

    def __enter__(self) -> _SavedThreads:
        import numba

        torch = sys.modules.get("torch")
        self.numba = numba.get_num_threads()
        self.torch = torch.get_num_threads() if torch is not None else None
        return self

    def __exit__(self, *exc: object) -> None:
        import numba

        numba.set_num_threads(self.numba)
        torch = sys.modules.get("torch")
        if torch is not None and self.torch is not None:
            torch.set_num_threads(self.torch)


class _WorkerEnv:
    """Temporarily set the variables spawned workers inherit: the ``*_NUM_THREADS`` ones to
    ``threads``, and ``FASTACT_VECTOR_WIDTH`` to the width this process uses (removed when it
    chose none): an invalid value was warned about here once, and each worker, reading it
    again, repeated the warning (from ``multiprocessing/spawn.py``) and used the default."""

    def __init__(self, threads: int) -> None:
        self.threads = threads
        self.saved: dict[str, str | None] = {}

    def __enter__(self) -> _WorkerEnv:
        from fastact._core import jit

        width = jit._VECTOR_WIDTH if jit._VECTOR_WIDTH_FROM_ENV else None
        for k, v in [
            *((k, str(self.threads)) for k in _THREAD_ENV),
            ("FASTACT_VECTOR_WIDTH", width),
        ]:
            self.saved[k] = os.environ.get(k)
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        return self

    def __exit__(self, *exc: object) -> None:
        for k, v in self.saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# ============================================================================ run
def _items(option: str, values: Sequence[Any] | str | None, example: str) -> list | None:
    """The items of ``option`` (a list, whose strings may hold several comma-separated items,
    or one such string), blank strings dropped, other items (a size as an int) kept; None when
    not given. An empty list (``--sizes ''``, ``-f ','``, ``--libraries ''``) is a ValueError
    naming the option: it used to mean the default (every size, benchmark, peer, family)."""
    if values is None:
        return None
    if isinstance(values, str):
        values = [values]
    out = [
        t.strip() if isinstance(t, str) else t
        for v in values
        for t in (v.split(",") if isinstance(v, str) else [v])
        if not isinstance(t, str) or t.strip()
    ]
    if not out:
        raise ValueError(f"{option}: empty list (give {example})")
    return out


def _resolve_families(families: list[str] | None, patterns: list[str]) -> list[str]:
    if families is not None:
        out = []
        for f in families:
            key = _FAMILY_ALIASES.get(f.strip().lower())
            if key is None:
                raise ValueError(f"families: unknown family {f!r} (choose from {list(FAMILIES)})")
            if key not in out:
                out.append(key)
        return out
    return [f for f, mod in FAMILIES.items() if any(matches(n, patterns) for n in mod.names())]


def _check_patterns(patterns: list[str], fams: list[str]) -> None:
    """ValueError naming the patterns that match no benchmark of ``fams`` (a misspelled name
    next to good ones was dropped without a word)."""
    names = [n for f in fams for n in FAMILIES[f].names()]
    unmatched = [p for p in patterns if not any(matches(n, [p]) for n in names)]
    if unmatched:
        listing = "; ".join(f"{f}: {', '.join(FAMILIES[f].names())}" for f in fams)
        raise ValueError(f"functions: {unmatched} match no benchmark ({listing})")


def all_names() -> dict[str, list[str]]:
    """Family -> the names ``--functions`` can select."""
    return {f: mod.names() for f, mod in FAMILIES.items()}


def run(
    functions: Sequence[str] | str | None = None,
    sizes: Sequence[int | str] | None = None,
    dtype: str = "float32",
    threads: int | None = None,
    libraries: Sequence[str] | str | None = None,
    families: Sequence[str] | str | None = None,
    quick: bool = False,
    isolate: bool = True,
    progress: bool = True,
    budget_scale: float = 1.0,
    rounds: int = 1,
    model: bool = False,
    numpy_losses: bool | None = None,
) -> dict:
    """Run the benchmarks; return ``{"meta": ..., "bandwidth": [...], "results": [rows],
    "notes": [...]}`` (rows: :mod:`fastact.bench.rows`).

    ``functions``: names or globs (``'gelu*'``, ``'Adam*'``), each of which must match a
    benchmark of the families run (None: every benchmark); ``sizes``: element counts or
    ``'256K'``; ``libraries``: subset of :data:`LIBRARIES` (fastact is always timed; default:
    every peer); ``families``: subset of ``activation``, ``loss``, ``optimizer``, ``fused``
    (default: those with a name matching ``functions``); each of these three a list or one
    comma-separated string, an empty one an error, not the defaults; ``isolate``: one
    spawned process per library (default) or one block per library in this process;
    ``rounds``: every block runs that many times, libraries alternating, and each time is the
    median over the rounds, so a slow phase of a shared machine weighs on every library
    alike; ``model``: also step the optimizers over a model-like list of ~160 tensors;
    ``numpy_losses``: time NumPy's loss formulas (default: unless this is the plain default
    run, where they would take seconds per call at 16M).

    Losses and optimizers run at the largest size only unless ``sizes`` is given. A bad
    argument or setting (:func:`check_settings`) raises ValueError naming it before anything
    runs; a failure of fastact's own block raises :class:`WorkerFailed`."""
    t_start = time.monotonic()
    patterns = _items("functions", functions, "names or globs, e.g. -f 'relu,gelu*'") or []
    sizes = _items("sizes", sizes, "element counts, e.g. 1K,256K,16M")
    sizes_given = sizes is not None
    size_list = [parse_size(s) for s in (sizes or DEFAULT_SIZES)]
    try:
        dtype = np.dtype(dtype).name
    except TypeError:
        raise ValueError(f"dtype: unknown dtype {dtype!r}") from None
    if dtype not in ("float32", "float64"):
        raise ValueError(f"dtype must be float32 or float64, got {dtype!r}")
    cpus = default_threads()
    threads = cpus if threads is None else int(threads)  # 0 is refused, not "all CPUs"
    if threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"rounds must be a positive integer, got {rounds!r}")
    libraries = _items("libraries", libraries, "names, e.g. torch,numpy; fastact alone: fastact")
    families = _items("families", families, "names, e.g. activation,loss")
    libs = ["fastact"] + [
        lb for lb in (PEERS if libraries is None else libraries) if lb != "fastact"
    ]
    for lb in libs:
        if lb not in LIBRARIES:
            raise ValueError(f"libraries: unknown library {lb!r} (choose from {LIBRARIES})")
    fams = _resolve_families(families, patterns)
    _check_patterns(patterns, fams if families else list(FAMILIES))
    check_settings()
    default_run = not (patterns or families or sizes_given)
    if numpy_losses is None:
        numpy_losses = not default_run
    notes: list[str] = []
    usable = usable_threads(threads, isolate)
    if usable < threads:
        notes.append(
            f"{threads} threads asked for, above numba's pool of {usable} in this process "
            f"(NUMBA_NUM_THREADS): every library ran on {usable} (without --in-process each "
            "library's own process gets the count asked for)"
        )
        threads = usable
    if threads > cpus:
        notes.append(
            f"{threads} threads on {cpus} CPUs: every library's thread pool is oversubscribed "
            f"and its parallel calls time-share the cores (--threads {cpus} avoids it)"
        )

    big = [max(size_list)]
    cases: list[dict] = []
    if "activation" in fams:
        cases += activations.cases(patterns, size_list, dtype)
    if "loss" in fams:
        cases += losses.cases(patterns, size_list if sizes_given else big, dtype, numpy_losses)
        if not numpy_losses and "numpy" in libs:
            notes.append(
                "loss NumPy peers left out of the default run (seconds per call at 16M): "
                "`--families loss` or `python -m fastact bench losses` time them"
            )
    if "optimizer" in fams:
        cases += optim.cases(patterns, size_list if sizes_given else big, dtype, model)
    if "fused" in fams:
        cases += fused.cases(patterns, size_list, dtype)
    if not cases:
        listing = "; ".join(f"{f}: {', '.join(n)}" for f, n in all_names().items())
        raise ValueError(f"functions: {patterns} match no benchmark ({listing})")

    available = [lb for lb in libs if _library_available(lb)]
    for lb in libs:
        if lb not in available:
            notes.append(
                f"{lb} is not installed: no {lb} column (pip install -e '.[bench]' installs "
                "every peer)"
            )
    probes = {(c["probe"], c["size"], c["dtype"]) for c in cases}
    total = (len(cases) * len(available) + len(probes)) * rounds
    bar = Progress(total, progress)
    opts = {"threads": threads, "quick": quick, "budget_scale": budget_scale}
    per_lib: dict[str, list[dict]] = {}  # one payload per round
    meta: dict[str, Any] = {}
    block_s: dict[str, float] = {}
    try:
        # the variables reach spawned workers; in this process numba re-reads its own at
        # each compilation and refuses a thread count other than the one it started with
        with _WorkerEnv(threads) if isolate else contextlib.nullcontext():
            for rnd in range(rounds):
                for lb in available if rnd % 2 == 0 else available[::-1]:
                    if rnd and lb not in per_lib:
                        continue  # its worker failed in the first round
                    t0 = time.monotonic()
                    kind, payload = _run_block(_worker, (lb, cases, opts), isolate, bar)
                    block_s[lb] = round(block_s.get(lb, 0.0) + time.monotonic() - t0, 1)
                    if kind == "error":
                        notes.append(f"{lb} worker failed: {payload.strip().splitlines()[-1]}")
                        if lb == "fastact":
                            raise WorkerFailed(payload)
                        per_lib.pop(lb, None)
                        continue
                    per_lib.setdefault(lb, []).append(payload)
                    meta.update(payload.get("meta", {}))
    finally:
        bar.close()

    bandwidth = _median_bandwidth([p.get("bandwidth", []) for p in per_lib.get("fastact", [])])
    bw = {(b["probe"], b["size"], b["dtype"]): b["Bps"] for b in bandwidth}
    rows = [_row(i, case, per_lib, bw) for i, case in enumerate(cases)]
    meta = {**_versions(), **meta, **_static_meta(threads, cpus, dtype, isolate, quick)}
    meta["rounds"] = rounds
    meta["elapsed_s"] = round(time.monotonic() - t_start, 1)
    meta["block_s"] = block_s
    return {"meta": meta, "bandwidth": bandwidth, "results": rows, "notes": notes}


def _row(i: int, case: dict, per_lib: dict[str, list[dict]], bw: dict) -> dict:
    """The result row of case ``i``: the median over rounds of every column's time."""
    row = {k: v for k, v in case.items() if k not in ("columns", "shapes")}
    times: dict[str, float] = {}
    errors: dict[str, str] = {}
    for payloads in per_lib.values():
        got = [p["results"][i] for p in payloads]
        for column in dict.fromkeys(c for g in got for c in g):
            rs = [g[column] for g in got if column in g]
            bad = [r["error"] for r in rs if "error" in r]
            if bad:
                errors[column] = bad[0]
            else:
                times[column] = float(np.median([r["median_s"] for r in rs]))
    row["times"] = times
    if errors:
        row["errors"] = errors
    return finish_row(row, bw.get((case["probe"], case["size"], case["dtype"])))


def _median_bandwidth(rounds: list[list[dict]]) -> list[dict]:
    """One entry per probe: the median time over the rounds."""
    if not rounds:
        return []
    out = []
    for entry in rounds[0]:
        key = (entry["probe"], entry["size"], entry["dtype"])
        ts = [e["seconds"] for r in rounds for e in r if (e["probe"], e["size"], e["dtype"]) == key]
        t = float(np.median(ts))
        out.append({**entry, "seconds": t, "Bps": entry["bytes"] / t})
    return out


def _versions() -> dict:
    """Versions of fastact, numba and the installed peers (without importing the peers)."""
    from importlib import metadata

    import numba

    import fastact

    d = {"fastact": fastact.__version__, "numba": numba.__version__}
    for lib in ("torch", "numexpr"):
        try:
            d[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            pass
    return d


def _static_meta(threads: int, cpus: int, dtype: str, isolate: bool, quick: bool) -> dict:
    import platform

    from fastact.info import cpu_name, simd_width

    return {
        "threads": threads,
        "cpus": cpus,
        "dtype": dtype,
        "cpu": cpu_name(),
        "simd": simd_width()[1],
        "python": platform.python_version(),
        "numpy": np.__version__,
        "isolation": "one spawned process per library"
        if isolate
        else "one block per library in one process",
        "quick": quick,
        "date": time.strftime("%Y-%m-%d"),
    }
