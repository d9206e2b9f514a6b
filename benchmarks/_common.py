"""Shared pieces of the asv suites, and the one place that knows fastact's benchmark harness.

The peer formulas (torch, NumPy, numexpr), the activation cases and the fastact calls are those
of the benchmark command (``python -m fastact bench``). They are taken from *this* working
tree, not from the installed package, so the same definitions time every commit that asv
benchmarks (asv takes the suites from the working tree too), including commits that predate
the harness:

* :func:`catalog` lists what is benchmarked (the tree's activations per variant, and which of
  them each peer can compute). It runs in a child process that imports the tree's
  ``fastact`` (``fastact/bench.py`` or the package ``fastact/bench/``), so the parameter lists
  are the same for every commit of one ``asv run``: asv discovers the parameters once and
  labels every commit's results by their position in these lists, so lists that followed the
  installed commit would mislabel results of commits with another set of functions.
* :func:`harness` loads the tree's harness into the benchmark process, where ``fastact`` is
  the installed commit (the calls it builds are that commit's), under the name
  ``fastact.bench``: a harness package may import its own submodules by absolute or relative
  name.

Everything else in the suites uses only :func:`activation_cases`, :func:`build` and
:func:`unsupported` below, which accept both harness layouts: the package (``fastact/bench/``:
``activations.cases`` / ``activations.build``, ``timing.Unsupported``) and the older module
(``fastact/bench.py``: ``activation_cases`` / ``build`` / ``Unsupported`` at its top level).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _env_list(name: str, default: str) -> list[str]:
    items = [s.strip() for s in os.environ.get(name, default).split(",") if s.strip()]
    if not items:
        raise ValueError(f"{name} is empty (comma-separated values expected)")
    return items


def _env_dtypes(name: str, default: str) -> list[str]:
    """The dtypes in ``name``: float32 and float64, the ones fastact's benchmark times."""
    items = _env_list(name, default)
    for d in items:
        if d not in ("float32", "float64"):
            raise ValueError(f"{name}: {d!r} is not float32 or float64")
    return items


def _env_sizes(name: str, default: str) -> list[int]:
    """The element counts in ``name``, in the bench command's notation (``1024``, ``256K``,
    ``4M``: :func:`fastact.bench.rows.parse_size` of this tree, loaded by its path, as the
    installed fastact of an older commit may lack it)."""
    spec = importlib.util.spec_from_file_location(
        "_fastact_tree_rows", ROOT / "fastact" / "bench" / "rows.py"
    )
    rows = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rows)
    sizes = []
    for s in _env_list(name, default):
        try:
            sizes.append(rows.parse_size(s))
        except ValueError as e:
            raise ValueError(f"{name}: {str(e).removeprefix('sizes: ')}") from None
    return sizes


#: float32 and float64: every activation is benchmarked in both (FASTACT_ASV_DTYPES overrides).
DTYPES = _env_dtypes("FASTACT_ASV_DTYPES", "float32,float64")
#: small (call overhead), cache-sized, and streaming from memory. 4M rather than the bench
#: command's 16M keeps a full asv run short; FASTACT_ASV_SIZES (comma-separated element
#: counts, ``256K`` alike) overrides it.
SIZES = _env_sizes("FASTACT_ASV_SIZES", "1024,262144,4194304")
#: the libraries timed next to fastact (in the ``peers`` suite, one benchmark per peer)
PEERS = ("torch", "numpy", "numexpr")
#: sizes of the loss and optimizer suites (a call there costs more per element); the same
#: FASTACT_ASV_SIZES override applies.
LARGE_SIZES = SIZES if os.environ.get("FASTACT_ASV_SIZES") else [1 << 18, 1 << 22]
VARIANTS = ("forward", "backward", "inplace")

#: asv's ``repeat`` of the activation, loss and optimizer benchmarks: at least 10 and at most
#: 50 samples per round, stopping after 2 s.
REPEAT = (10, 50, 2.0)
#: asv's ``rounds`` of fastact's own suites: 3 rounds (3 processes, run at different times;
#: asv continuous alternates them between the two commits), so a burst of load from another
#: process that spoils one round is outvoted by the other two in the median.
ROUNDS = 3
#: Target duration of one sample: small calls are repeated back to back (see :class:`Timed`).
SAMPLE_S = 2e-4


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


def _warm_numba() -> None:
    """Run one small fastact kernel in asv's fork server: numba's one-time setup on the first
    kernel load (~0.6 s on the development VM) then happens once per commit instead of once
    in each of the hundreds of benchmark processes forked from it. 16 elements run serially:
    no thread pool is started before asv forks."""
    try:
        import numpy as np

        import fastact

        fastact.relu(np.zeros(16, np.float32))
    except Exception:  # a commit without fastact.relu, or a broken one: benchmarks tell
        pass


_warm_numba()


# ---------------------------------------------------------------------------- the harness
def _tree_harness_spec():
    """Import spec of the working tree's harness: package ``fastact/bench/`` or module
    ``fastact/bench.py``; None when the tree has neither."""
    pkg = ROOT / "fastact" / "bench"
    if (pkg / "__init__.py").is_file():
        return importlib.util.spec_from_file_location(
            "fastact.bench", pkg / "__init__.py", submodule_search_locations=[str(pkg)]
        )
    if (ROOT / "fastact" / "bench.py").is_file():
        return importlib.util.spec_from_file_location(
            "fastact.bench", ROOT / "fastact" / "bench.py"
        )
    return None


_harness: Any = None


def harness():
    """The working tree's harness as ``fastact.bench``, on top of the installed fastact."""
    global _harness
    if _harness is None:
        import fastact

        spec = _tree_harness_spec()
        if spec is None:  # an installed fastact that ships its harness
            import fastact.bench as mod
        else:
            for name in [
                m for m in sys.modules if m == "fastact.bench" or m.startswith("fastact.bench.")
            ]:
                del sys.modules[name]  # an installed harness imported earlier
            mod = importlib.util.module_from_spec(spec)
            sys.modules["fastact.bench"] = mod
            try:
                spec.loader.exec_module(mod)
            except BaseException:
                del sys.modules["fastact.bench"]
                raise
            fastact.bench = mod
        _harness = mod
    return _harness


def _activations_module():
    """The harness's activation family: ``fastact.bench.activations`` (the package) or the
    harness module itself (the older ``fastact/bench.py``)."""
    h = harness()
    if hasattr(h, "__path__"):  # loaded with submodule_search_locations: the tree's package
        return importlib.import_module("fastact.bench.activations")
    return h


def activation_cases(patterns, sizes, dtype: str) -> list[dict]:
    """The harness's activation cases (``activations.cases`` or ``activation_cases``)."""
    acts = _activations_module()
    fn = getattr(acts, "cases", None) or acts.activation_cases
    return fn(patterns, sizes, dtype)


def build(lib: str, case: dict):
    """The harness's Runner of ``lib`` for an activation ``case`` (``.fn``, ``.reset``)."""
    return _activations_module().build(lib, case)


def unsupported() -> type[Exception]:
    """The harness's exception for a case a library has no equivalent of."""
    return harness().Unsupported


# ---------------------------------------------------------------------------- the catalog
#: Run by :func:`catalog` in a child process whose ``fastact`` is the working tree's.
_CATALOG_CHILD = r"""
import importlib, json, sys
sys.path.insert(0, sys.argv[1])
import fastact
import fastact.bench as h
if hasattr(h, "__path__"):  # the package: its activation family module
    acts = importlib.import_module("fastact.bench.activations")
else:  # the older module fastact/bench.py
    acts = h
cases = getattr(acts, "cases", None) or acts.activation_cases
peers = sys.argv[2].split(",")
out = {"fastact_file": fastact.__file__, "variants": {}}
for case in cases(None, [1024], "float32"):
    v = out["variants"].setdefault(case["variant"], {"fastact": [], **{p: [] for p in peers}})
    v["fastact"].append(case["function"])
    for peer in peers:
        try:
            acts.build(peer, case)
        except (h.Unsupported, ImportError):
            continue
        v[peer].append(case["function"])
print("CATALOG " + json.dumps(out))
"""

_catalog: dict | None = None


def _catalog_here() -> dict:
    """The same catalog from the harness in this process (installed fastact's registry)."""
    out: dict = {"fastact_file": None, "variants": {}}
    for case in activation_cases(None, [1024], "float32"):
        v = out["variants"].setdefault(case["variant"], {"fastact": [], **{p: [] for p in PEERS}})
        v["fastact"].append(case["function"])
        for peer in PEERS:
            try:
                build(peer, case)
            except (unsupported(), ImportError):
                continue
            v[peer].append(case["function"])
    return out


def catalog() -> dict:
    """``{"variants": {variant: {library: [function, ...]}}}``: the working tree's
    activations (``activation_cases`` at 1K float32, registry order) and, per peer, those
    the peer computes (``build`` does not raise ``Unsupported``). Falls back to the
    installed fastact when the tree's cannot be imported (a warning on stderr)."""
    global _catalog
    if _catalog is None:
        try:
            proc = subprocess.run(
                [sys.executable, "-c", _CATALOG_CHILD, str(ROOT), ",".join(PEERS)],
                capture_output=True,
                text=True,
                timeout=600,
                cwd=str(ROOT),
            )
            line = [s for s in proc.stdout.splitlines() if s.startswith("CATALOG ")]
            if proc.returncode != 0 or not line:
                raise RuntimeError(proc.stderr.strip()[-2000:])
            _catalog = json.loads(line[-1][len("CATALOG ") :])
        except Exception as e:
            print(
                f"benchmarks: the working tree's fastact could not list the benchmark cases "
                f"({type(e).__name__}: {e}); using the installed fastact's",
                file=sys.stderr,
            )
            try:
                _catalog = _catalog_here()
            except Exception as e2:  # asv discovery must not fail on a broken commit
                print(f"benchmarks: no activation cases ({e2})", file=sys.stderr)
                _catalog = {"fastact_file": None, "variants": {}}
    return _catalog


def functions(variant: str, lib: str = "fastact") -> list[str]:
    """Activations benchmarked for ``variant`` with ``lib`` (see :func:`catalog`)."""
    return list(catalog()["variants"].get(variant, {}).get(lib, []))


# ---------------------------------------------------------------------------- runners
def require(lib: str) -> None:
    """Skip (asv: NotImplementedError) when ``lib`` is not installed."""
    if lib in ("fastact", "numpy"):
        return
    name = lib.split("_", 1)[0]
    if importlib.util.find_spec(name) is None:
        raise NotImplementedError(f"{name} is not installed")


_runners: dict[tuple, Any] = {}


def runner(lib: str, function: str, variant: str, size: int, dtype: str):
    """The harness's Runner for one case (cached per process), or NotImplementedError
    (``function`` is not in this commit's fastact, or ``lib`` has no equivalent)."""
    key = (lib, function, variant, size, dtype)
    if key in _runners:
        return _runners[key]
    require(lib)
    cases = [
        c
        for c in activation_cases([function], [size], dtype)
        if c["function"] == function and c["variant"] == variant
    ]
    if not cases:
        raise NotImplementedError(f"{function} {variant} is not in this fastact")
    try:
        r = build(lib, cases[0])
    except unsupported() as e:
        raise NotImplementedError(str(e)) from None
    except (AttributeError, TypeError) as e:  # an older fastact without this API
        raise NotImplementedError(f"{type(e).__name__}: {e}") from None
    _runners[key] = r
    return r


_calls_per_sample = [1]


def _per_call_clock() -> float:
    """``perf_counter`` divided by the calls in the current sample: asv's sample (clock after
    minus clock before) is then the mean time of one call."""
    return time.perf_counter() / _calls_per_sample[0]


class Timed:
    """Timing of the suites that time one call (``fn``): each asv sample is ``calls``
    back-to-back calls lasting about :data:`SAMPLE_S`, reported per call.

    asv_runner (>= 0.3) re-runs ``setup`` before every timed call of a benchmark that has
    one, so without this a sample would be one microsecond call after Python code: it
    measures a cold call (on the development VM sigmoid at 1K took 5.5 us per sample that
    way and 2.7 us in a loop, and the spread between samples was +-40%), not the throughput a
    loop of calls sees. In-place calls (``single=True``) stay one call per sample: their input
    is restored before each one (the bench command times them the same way).
    """

    timer = staticmethod(_per_call_clock)
    number = 1
    repeat = REPEAT
    rounds = ROUNDS
    timeout = 300

    def _use(self, fn, single: bool = False) -> None:
        """Time ``fn`` (already warm) in this benchmark process."""
        if getattr(self, "_sized", None) is not fn:
            calls = 1
            if not single:
                est = []
                for _ in range(3):
                    t0 = time.perf_counter()
                    fn()
                    est.append(time.perf_counter() - t0)
                calls = int(min(10_000, max(1, SAMPLE_S / max(min(est), 1e-9))))
            self._sized, self._calls = fn, range(calls)
            _calls_per_sample[0] = calls
        self.fn = fn

    def _run(self) -> None:
        fn = self.fn
        for _ in self._calls:
            fn()


class ActivationBench(Timed):
    """Base of the activation benchmarks: ``lib`` and ``variant`` name the calls; subclasses
    set ``params`` (function, dtype, size) and define the ``time_*`` method (``self._run()``).

    ``setup`` builds the call and runs it once, so the JIT is warm (compiled or loaded from
    the cache) before anything is timed; for in-place calls it restores the input before
    every sample (asv re-runs it), so repeated application never drifts (e.g. into denormals).
    """

    lib = "fastact"
    variant = "forward"
    param_names = ["function", "dtype", "size"]

    def setup(self, function, dtype, size):
        r = runner(self.lib, function, self.variant, size, dtype)
        if self.variant == "inplace":
            if getattr(self, "_warm", None) is not r:
                r.reset()
                r.fn()
                self._warm = r
            r.reset()
            self._use(r.fn, single=True)
        else:
            if getattr(self, "_warm", None) is not r:
                r.fn()  # warm: compile or load the kernel, first-touch the pages
                self._warm = r
            self._use(r.fn)
