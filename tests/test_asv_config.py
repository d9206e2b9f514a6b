"""The asv setup: regression patterns of asv.conf.json against the benchmarks' real names,
parameter sets without never-run combinations, the timing helpers as asv_runner drives
them, the harness loader for both layouts, and the offline dashboard server.

The benchmarks are imported from the checkout (``benchmarks/``); asv and asv_runner are the
``bench`` extra's. Nothing here times anything: clocks are replaced by counters."""

from __future__ import annotations

import importlib
import itertools
import json
import re
import subprocess
import sys
import textwrap
import threading
import types
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from asv import util as asv_util  # noqa: E402
from asv.plugins.regressions import _GraphDataFilter  # noqa: E402
from asv_runner.discovery import disc_benchmarks, get_benchmark_from_name  # noqa: E402

from benchmarks import _common  # noqa: E402
from benchmarks import compile as bcompile  # noqa: E402


def _load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


dash = _load_script("check_dashboard")


@pytest.fixture(scope="module")
def conf():
    return asv_util.load_json(str(ROOT / "asv.conf.json"), js_comments=True)


@pytest.fixture(scope="module")
def benchmarks():
    """name -> (params, param_names, rounds) of every benchmark asv discovers."""
    found = {}
    for b in disc_benchmarks(str(ROOT / "benchmarks")):
        params = [[repr(v) for v in p] for p in b._params]
        found[b.name] = (params, b.param_names, getattr(b, "rounds", None))
    return found


# ---------------------------------------------------------------- regression patterns
class _Conf:
    def __init__(self, conf):
        self.regressions_first_commits = conf.get("regressions_first_commits", {})
        self.regressions_thresholds = conf.get("regressions_thresholds", {})
        self.branches = conf["branches"]


class _Graph:
    def __init__(self, branch, n):
        self.params = {"branch": branch}
        self._n = n

    def get_steps(self):
        steps = [(0, 1, 1.0, 1.0, 0.0)]  # (left, right, value, min, error)
        return steps if self._n is None else [steps] * self._n


def _searched(conf, name, params, branch="main"):
    """Entry names asv's regression search keeps, and their thresholds (asv's own filter:
    the names with parameters and branch suffix it matches the patterns against)."""
    n = len(list(itertools.product(*params))) if params else None
    bench = {"name": name, "params": params}
    filt = _GraphDataFilter(_Conf(conf), repo=None, revisions={"abc": 0})
    return {
        entry: threshold for _, entry, _, threshold in filt.get_graph_data(_Graph(branch, n), bench)
    }


def test_fastact_suites_take_three_rounds(benchmarks):
    """3 rounds outvote one spoiled by a burst of load; the peers keep asv's 2."""
    checked = 0
    for name, (_, _, rounds) in benchmarks.items():
        if name.startswith(("compile.", "activations.InplaceMemory")):
            continue  # fresh processes / allocated bytes: rounds of their own
        assert rounds == (2 if name.startswith("peers.") else 3), name
        checked += 1
    assert checked >= 17


def test_peers_are_left_out_of_the_regression_search(conf, benchmarks):
    peers = [n for n in benchmarks if n.startswith("peers.")]
    assert len(peers) >= 10
    for name in peers:
        params = benchmarks[name][0]
        assert _searched(conf, name, params) == {}, name
    # asv matches "name(params)@branch": the pattern must not be anchored at the end
    for pattern in conf["regressions_first_commits"]:
        assert not pattern.endswith("$"), pattern


def test_fastact_benchmarks_stay_in_the_regression_search(conf, benchmarks):
    own = [n for n in benchmarks if not n.startswith("peers.")]
    assert {n.split(".")[0] for n in own} == {"activations", "compile", "losses", "optimizers"}
    for name in own:
        params = benchmarks[name][0]
        kept = _searched(conf, name, params)
        n = len(list(itertools.product(*params))) if params else 1
        assert len(kept) == n, name
        want = 0.1 if name.startswith("compile.") else 0.05
        assert set(kept.values()) == {want}, name


def test_no_fastact_benchmark_has_a_peer_parameter(benchmarks):
    """fastact's own suites time fastact only: no parameter value names a peer library."""
    peer_values = {repr(p) for p in ("torch", "numpy", "numexpr", "torch_foreach", "fused")}
    for name, (params, names, _) in benchmarks.items():
        if name.startswith("peers."):
            continue
        assert "peer" not in names, name
        assert not peer_values & set(itertools.chain(*params)), name


# ---------------------------------------------------------------- parameter sets
def _registry():
    from fastact.activations import ACTIVATIONS, AXIS_ACTIVATIONS

    names = list(ACTIVATIONS) + list(AXIS_ACTIVATIONS)
    inplace = [n for n, op in ACTIVATIONS.items() if op.inplace] + ["rrelu"]
    return names, inplace


def test_catalog_is_the_working_trees_registry():
    cat = _common.catalog()
    assert Path(cat["fastact_file"]).resolve() == ROOT / "fastact" / "__init__.py"
    names, inplace = _registry()
    assert _common.functions("forward") == names
    assert _common.functions("backward") == names
    assert _common.functions("inplace") == inplace


@pytest.mark.parametrize("variant", _common.VARIANTS)
@pytest.mark.parametrize("lib", _common.PEERS)
def test_peer_lists_hold_exactly_the_functions_the_peer_has(variant, lib):
    """Every listed (function, peer) builds, every other one is Unsupported: the peers'
    benchmarks have no combination that is never run, and leave out none that can run."""
    listed = set(_common.functions(variant, lib))
    assert listed <= set(_common.functions(variant))
    for name in _common.functions(variant):
        case = [
            c
            for c in _common.activation_cases([name], [1024], "float64")
            if c["function"] == name and c["variant"] == variant
        ][0]
        if name in listed:
            _common.build(lib, case)
        else:
            with pytest.raises(_common.unsupported()):
                _common.build(lib, case)


def test_every_listed_activation_combination_runs(benchmarks):
    """The fastact and peer activation suites: each function's setup succeeds (no n/a)."""
    mods = {"activations": importlib.import_module("benchmarks.activations")}
    mods["peers"] = importlib.import_module("benchmarks.peers")
    checked, classes = 0, set()
    for name in benchmarks:
        mod, cls, _method = name.split(".")
        klass = getattr(mods.get(mod), cls, None)
        if not isinstance(klass, type) or not issubclass(klass, _common.ActivationBench):
            continue
        bench = klass()
        for function in klass.params[0]:
            bench.setup(function, "float32", 1024)
            bench._run()
            checked += 1
        classes.add(name)
    assert len(classes) == 3 * (1 + len(_common.PEERS))  # forward, backward, in place
    assert checked > 200


def test_inplace_memory_is_the_calls_own_allocation(benchmarks):
    """InplaceMemory reports what the call allocated (exact, whatever the process did
    before): nothing in place, the 64 MiB result out of place."""
    assert "activations.InplaceMemory.track_allocated_bytes" in benchmarks
    mod = importlib.import_module("benchmarks.activations")
    bench = mod.InplaceMemory()
    got = {}
    for mode in ("inplace", "out_of_place"):
        bench.setup("relu", mode)
        got[mode] = bench.track_allocated_bytes("relu", mode)
    assert got["inplace"] < 1 << 16
    assert (1 << 26) <= got["out_of_place"] < (1 << 26) + (1 << 20)


# ---------------------------------------------------------------- timing through asv_runner
class _FakeClock:
    def __init__(self):
        self.t = 0.0

    def perf_counter(self):
        return self.t


def test_timed_samples_are_per_call_times(monkeypatch):
    """asv_runner's TimeBenchmark (which re-runs setup before every sample) records the
    duration of one call, whatever the number of back-to-back calls in a sample."""
    clock = _FakeClock()
    monkeypatch.setattr(_common, "time", clock)
    calls = []

    def fn():
        clock.t += 5e-6  # every call "lasts" 5 us
        calls.append(1)

    class Fake(_common.Timed):
        repeat = (4, 4, 10.0)
        warmup_time = 0.0

        def setup(self):
            self._use(fn)

        def time_fake(self):
            self._run()

    from asv_runner.benchmarks.time import TimeBenchmark

    inst = Fake()  # built as asv_runner's discovery builds a benchmark of a class
    sources = [inst.time_fake, inst, types.ModuleType("fake")]
    tb = TimeBenchmark("fake.Fake.time_fake", inst.time_fake, sources)
    assert not tb.do_setup()
    res = tb.run()
    tb.do_teardown()
    assert res["samples"] == pytest.approx([5e-6] * 4, rel=1e-9)
    assert len(calls) == 3 + 4 * 40  # 3 to size the batch, then 40 calls per sample


def test_in_place_samples_are_single_calls(monkeypatch):
    clock = _FakeClock()
    monkeypatch.setattr(_common, "time", clock)
    inst = _common.Timed()
    inst._use(lambda: None, single=True)
    assert list(inst._calls) == [0]
    assert _common._calls_per_sample[0] == 1


def test_fresh_process_benchmarks_record_what_the_child_measured(monkeypatch, tmp_path):
    """compile.Import through asv_runner: one sample per child process, valued at the
    child's own measurement (not the parent's wall time)."""
    monkeypatch.chdir(tmp_path)
    values = iter([0.9, 0.30, 0.25, 0.35, 0.28, 0.31, 0.27, 0.26, 0.29, 0.33, 0.32, 0.34])
    seen = []

    def child(name, kind, path, cache, disable):
        v = next(values)
        seen.append((name, kind, path, cache.name, disable))
        return {"import": v, "first_call": -1.0}

    monkeypatch.setattr(bcompile, "_child", child)
    tb = get_benchmark_from_name(str(ROOT / "benchmarks"), "compile.Import.time_import")
    tb.do_setup()
    res = tb.run()
    tb.do_teardown()
    # the first process is the discarded warm-up; then 10 samples, each one child's value
    assert res["samples"] == pytest.approx(
        [0.30, 0.25, 0.35, 0.28, 0.31, 0.27, 0.26, 0.29, 0.33, 0.32], rel=1e-12
    )
    assert res["number"] == 1
    assert seen[0] == ("relu", "none", "serial", "fastact-cache-import", False)


def test_child_process_reports_import_and_first_call(tmp_path, monkeypatch):
    """The real child (one process) of the compile suite, against this checkout's fastact."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    r = bcompile._child("relu", "forward", "serial", tmp_path / "cache", False)
    assert set(r) == {"import", "first_call", "import_wall", "first_call_wall"}
    assert r["import"] > 0 and r["first_call"] > 0
    with pytest.raises(NotImplementedError):
        bcompile._child("no_such_activation", "forward", "serial", tmp_path / "c", False)


# ---------------------------------------------------------------- harness layouts
_FAKE_UNSUPPORTED = textwrap.dedent(
    """
    class Unsupported(Exception):
        pass
    """
)
_FAKE_CASES = textwrap.dedent(
    """
    def activation_cases(functions, sizes, dtype="float32"):
        names = ["alpha", "beta"]
        return [{"function": n, "variant": v, "size": s, "dtype": dtype}
                for n in names if not functions or n in functions
                for v in ("forward", "backward") for s in sizes]

    def build(lib, case):
        if lib == "numexpr" and case["function"] == "beta":
            raise Unsupported("no beta")
        return lib
    """
)


def _fake_tree(root: Path, layout: str) -> None:
    """A tree whose harness has one of the two layouts fastact's history holds: the module
    ``fastact/bench.py`` (everything at its top level), or the package ``fastact/bench/`` as
    on main (``timing.Unsupported``, the family module ``activations`` with ``cases`` and
    ``build``, imported relatively and not by the package's ``__init__``)."""
    pkg = root / "fastact"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    if layout == "module":
        (pkg / "bench.py").write_text(_FAKE_UNSUPPORTED + _FAKE_CASES)
    else:
        (pkg / "bench").mkdir()
        (pkg / "bench" / "timing.py").write_text(_FAKE_UNSUPPORTED)
        (pkg / "bench" / "activations.py").write_text(
            "from .timing import Unsupported\n"
            + _FAKE_CASES.replace("def activation_cases(", "def cases(")
        )
        (pkg / "bench" / "__init__.py").write_text("from .timing import Unsupported\n")


@pytest.mark.parametrize("layout", ["module", "package"])
def test_catalog_reads_either_harness_layout(tmp_path, monkeypatch, layout):
    _fake_tree(tmp_path, layout)
    monkeypatch.setattr(_common, "ROOT", tmp_path)
    monkeypatch.setattr(_common, "_catalog", None)
    cat = _common.catalog()
    assert Path(cat["fastact_file"]).resolve() == tmp_path / "fastact" / "__init__.py"
    fwd = cat["variants"]["forward"]
    assert fwd["fastact"] == ["alpha", "beta"]
    assert fwd["torch"] == ["alpha", "beta"]
    assert fwd["numexpr"] == ["alpha"]


@pytest.mark.parametrize("layout", ["module", "package"])
def test_harness_loads_either_layout_as_fastact_bench(tmp_path, monkeypatch, layout):
    import fastact

    _fake_tree(tmp_path, layout)
    monkeypatch.setattr(_common, "ROOT", tmp_path)
    monkeypatch.setattr(_common, "_harness", None)
    saved = {k: v for k, v in sys.modules.items() if k.split(".")[:2] == ["fastact", "bench"]}
    had = fastact.__dict__.get("bench")
    try:
        h = _common.harness()
        assert h is sys.modules["fastact.bench"]
        got = _common.activation_cases(["beta"], [8], "float32")
        assert [c["function"] for c in got] == ["beta", "beta"]
        assert _common.build("numexpr", {"function": "alpha"}) == "numexpr"
        with pytest.raises(_common.unsupported()):
            _common.build("numexpr", {"function": "beta"})
        assert Path(h.__file__).resolve().is_relative_to(tmp_path)
        acts = _common._activations_module()
        assert Path(acts.__file__).resolve().is_relative_to(tmp_path)
    finally:
        for k in [k for k in sys.modules if k.split(".")[:2] == ["fastact", "bench"]]:
            del sys.modules[k]
        sys.modules.update(saved)
        if had is None:
            fastact.__dict__.pop("bench", None)
        else:
            fastact.bench = had


# ---------------------------------------------------------------- offline dashboard
def _asv_index_html() -> str:
    import asv

    return (Path(asv.__file__).parent / "www" / "index.html").read_text(encoding="utf-8")


def test_every_cdn_url_of_asvs_pages_has_an_npm_source():
    urls = set(dash.CDN.findall(_asv_index_html()))
    assert len(urls) >= 8
    for url in urls:
        name, version, path = dash.npm_source(url)
        assert name and re.fullmatch(r"[\d.]+", version) and path, url
    assert dash.npm_source("https://code.jquery.com/jquery-3.3.1.min.js") == (
        "jquery",
        "3.3.1",
        "dist/jquery.min.js",
    )
    with pytest.raises(ValueError):
        dash.npm_source("https://example.com/x.js")


def _fake_deps(root: Path) -> None:
    """Local 'npm packages' holding the files asv's page names (unminified where npm is)."""
    for url in set(dash.CDN.findall(_asv_index_html())):
        name, version, path = dash.npm_source(url)
        f = root / f"{name}@{version}" / "package" / path.replace(".min.", ".")
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(f"/* {name} */")
    fonts = root / "bootstrap@3.1.1" / "package" / "dist" / "fonts"
    fonts.mkdir(parents=True)
    (fonts / "glyphicons-halflings-regular.woff").write_bytes(b"woff")


def test_served_pages_load_only_local_scripts(tmp_path):
    html_dir = tmp_path / "html"
    html_dir.mkdir()
    (html_dir / "index.html").write_text(_asv_index_html())
    (html_dir / "secret.txt").write_text("x")
    _fake_deps(tmp_path / "deps")
    deps = dash.Deps(tmp_path / "deps", fetch=False)
    assert deps.prepare(html_dir) == []
    server, base = dash.serve(html_dir, deps)
    try:
        page = urllib.request.urlopen(f"{base}/index.html").read().decode()
        assert not dash.CDN.search(page)
        assert "integrity=" not in page
        srcs = re.findall(r'(?:src|href)="(/__deps__/[^"]+)"', page)
        assert len(srcs) >= 8
        for src in srcs:
            assert urllib.request.urlopen(base + src).status == 200
        # bootstrap's CSS finds its fonts by a relative URL inside the package
        font = "/__deps__/bootstrap@3.1.1/dist/css/../fonts/glyphicons-halflings-regular.woff"
        assert urllib.request.urlopen(base + font).read() == b"woff"
        for bad in ("/__deps__/jquery@3.3.1/../../html/secret.txt", "/__deps__/nover/x.js"):
            with pytest.raises(urllib.error.HTTPError):
                urllib.request.urlopen(base + bad.replace("..", "%2e%2e"))
    finally:
        server.shutdown()


def test_missing_packages_without_npm_are_reported(tmp_path, monkeypatch):
    html_dir = tmp_path / "html"
    html_dir.mkdir()
    (html_dir / "index.html").write_text(_asv_index_html())
    monkeypatch.setattr(dash.shutil, "which", lambda name: None)
    problems = dash.Deps(tmp_path / "deps").prepare(html_dir)
    assert problems and all("npm" in p for p in problems)


def test_serve_mode_needs_no_network(tmp_path):
    """--serve on local copies: the page comes back, the process runs until stopped."""
    html_dir = tmp_path / "html"
    html_dir.mkdir()
    (html_dir / "index.html").write_text(_asv_index_html())
    _fake_deps(tmp_path / "deps")
    proc = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "scripts" / "check_dashboard.py"),
            "--serve",
            "--port",
            "0",
            "--html",
            str(html_dir),
            "--deps-dir",
            str(tmp_path / "deps"),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={"PATH": "/nonexistent"},  # no npm: everything must come from the folder
    )
    try:
        line = ""
        timer = threading.Timer(60, proc.kill)
        timer.start()
        while "serving" not in line:
            line = proc.stdout.readline()
            assert line, "the server stopped"
        timer.cancel()
        url = re.search(r"(http://\S+)", line).group(1)
        page = urllib.request.urlopen(url).read().decode()
        assert "/__deps__/jquery@3.3.1/" in page
        assert proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_regressions_lines(tmp_path):
    (tmp_path / "index.json").write_text(json.dumps({"revision_to_hash": {"3": "a" * 40}}))
    entry = ["activations.Forward.time_forward('gelu', 'float32', 1024)", "g", {}, 13,
             2.4e-6, 2.0e-6, [[None, 3, 2.0e-6, 2.4e-6]]]  # fmt: skip
    (tmp_path / "regressions.json").write_text(json.dumps({"regressions": [entry]}))
    assert dash.regressions(tmp_path) == [
        "activations.Forward.time_forward('gelu', 'float32', 1024): 1.20x of best; "
        "steps: aaaaaaaa 1.20x"
    ]


def test_regressions_counted_per_published_branch(tmp_path):
    """The headless check expects each branch's page to show exactly its entries (a branch
    without any, 0 rows)."""
    index = {"params": {"branch": ["main", "demo"]}, "revision_to_hash": {}}
    (tmp_path / "index.json").write_text(json.dumps(index))
    entries = [
        ["a.B.time_x(1)", "g", {"branch": "demo"}, 1, 2.0, 1.0, [[None, 3, 1.0, 2.0]]],
        ["a.B.time_x(2)", "g", {"branch": "demo"}, 2, 2.0, 1.0, [[None, 3, 1.0, 2.0]]],
    ]
    (tmp_path / "regressions.json").write_text(json.dumps({"regressions": entries}))
    assert dash._regressions_per_branch(tmp_path) == {"main": 0, "demo": 2}
    ready = dash._rows_ready(2)
    assert ready({"regression_rows": 2}) and not ready({"regression_rows": 0})
    (tmp_path / "regressions.json").unlink()
    assert dash._regressions_per_branch(tmp_path) == {}
