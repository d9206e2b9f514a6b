"""The command line and the environment variables: a bad setting is reported in one line
(``python -m fastact bench: ...``, exit status 2) before anything runs or is written, never as
a traceback, and ``python -m fastact info`` (the diagnostic command) reports it as a value.
The bench runs here are tiny (``-f relu --sizes 1K --quick --in-process``) or stop before the
first case; no timing assertions."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys

import pytest
from fresh_python import run_code

import fastact
from fastact.bench import cli, harness, report, rows

ROOT = os.path.dirname(os.path.dirname(fastact.__file__))


@pytest.fixture(autouse=True)
def _bench_modules_of_now():
    """Bind cli, harness, report and rows to the modules ``fastact.bench`` holds when the test
    runs: the asv suites' loader (benchmarks/_common.harness, run by tests/test_asv_config.py
    in the same process) replaces the package and its submodules in ``sys.modules``, and the
    command's lazy imports then reach modules other than the ones imported above, so a patch
    of those would miss."""
    global cli, harness, report, rows
    cli, harness, report, rows = (
        importlib.import_module(f"fastact.bench.{m}") for m in ("cli", "harness", "report", "rows")
    )


TINY = ["-f", "relu", "--sizes", "1K", "--quick", "--no-progress", "--libraries", "numpy"]


def _fastact(*args: str, cwd: str | None = None, **env: str) -> subprocess.CompletedProcess:
    """``python -m fastact ARGS`` in a fresh process with ``env`` added."""
    e = {k: v for k, v in os.environ.items() if not k.startswith(("FASTACT_V", "NUMBA_T"))}
    e["PYTHONPATH"] = ROOT + os.pathsep + e.get("PYTHONPATH", "")
    e.update(env)
    return subprocess.run(
        [sys.executable, "-m", "fastact", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
        env=e,
    )


def _one_line_error(proc: subprocess.CompletedProcess, rc: int = 2) -> str:
    """The one stderr line of a refused command (no traceback)."""
    assert proc.returncode == rc, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith("python -m fastact bench"), lines
    return lines[0]


# ---------------------------------------------------------------------------- settings
def test_info_reports_bad_settings_as_values():
    """FASTACT_TORCH_POOL and NUMBA_THREADING_LAYER values that fastact or numba refuse:
    ``info`` prints every line, the refused ones as ``invalid: ...``, and exits 0."""
    proc = _fastact("info", FASTACT_TORCH_POOL="garbage", NUMBA_THREADING_LAYER="garbage")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    facts = dict(ln.split(None, 1) for ln in proc.stdout.splitlines())
    assert facts["torch_pool_mode"].startswith("invalid: FASTACT_TORCH_POOL must be one of")
    assert facts["threading_layer"].startswith("invalid: The threading layer requested 'garbage'")
    assert facts["threads"].startswith("unknown")
    assert facts["cache_disabled"] == "False" and "cuda_detail" in facts  # the lines after
    proc = _fastact("info", NUMBA_THREADING_LAYER="")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert "threading_layer               invalid: " in proc.stdout


def test_bench_checks_settings_before_spawning():
    """A bad NUMBA_THREADING_LAYER / FASTACT_TORCH_POOL with spawned workers: one line naming
    the variable, exit status 2 (it was a worker's traceback)."""
    proc = _fastact("bench", *TINY, "--no-files", NUMBA_THREADING_LAYER="garbage")
    assert "NUMBA_THREADING_LAYER='garbage'" in _one_line_error(proc)
    proc = _fastact("bench", *TINY, "--no-files", FASTACT_TORCH_POOL="garbage")
    assert "FASTACT_TORCH_POOL" in _one_line_error(proc)


def test_bench_worker_failure_is_one_line(monkeypatch, capsys):
    """fastact's block failing (here: its thread setup) ends the command with one line, the
    worker's error, and exit status 1 (a RuntimeError escaped the command)."""

    def broken(lib: str, threads: int) -> None:
        raise OSError("no threading layer could be loaded")

    monkeypatch.setattr(harness, "_settle_threads", broken)
    assert cli.main([*TINY, "--in-process", "--no-files"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == (
        "python -m fastact bench: fastact's benchmark worker failed: "
        "OSError: no threading layer could be loaded"
    )


# ---------------------------------------------------------------------------- files
def _tiny_run(function: str) -> dict:
    """A tiny report of one benchmark (at 1K against NumPy, in this process)."""
    return harness.run(
        functions=[function],
        sizes=["1K"],
        quick=True,
        isolate=False,
        progress=False,
        libraries=["numpy"],
        budget_scale=0.2,
    )


@pytest.fixture(scope="module")
def tiny_report():
    """One tiny report (relu)."""
    return _tiny_run("relu")


def _refuse_run(monkeypatch) -> None:
    """Make the benchmark fail the test if it starts (the check must come first)."""

    def run(**kwargs: object) -> dict:
        raise AssertionError("the benchmark ran before the arguments were checked")

    monkeypatch.setattr(harness, "run", run)


@pytest.mark.parametrize(
    "option, path, why",
    [
        ("--output", "{tmp}/no_folder/x.md", "no folder"),
        ("--output", "{tmp}", "is a folder"),
        ("--plot", "{tmp}/no_folder/x.png", "no folder"),
        ("--plot", "{tmp}", "is a folder"),
        ("--plot", "{tmp}/x.foo", "matplotlib cannot save .foo"),
        ("--output-dir", "{tmp}/a_file", "is not a folder"),
        ("--output-dir", "{tmp}/a_file/res", "cannot be made: {tmp}/a_file is not a folder"),
        ("--output-dir", "{tmp}/a_file/res/x", "cannot be made: {tmp}/a_file is not a folder"),
    ],
)
def test_output_paths_checked_before_the_run(monkeypatch, capsys, tmp_path, option, path, why):
    """``--output`` / ``--plot`` / ``--output-dir`` that cannot be written: one line and exit
    status 2 before the run starts (it ran to the end, then died with a traceback and the
    results folder unwritten); nothing is written."""
    (tmp_path / "a_file").write_text("")
    path, why = path.format(tmp=tmp_path), why.format(tmp=tmp_path)
    _refuse_run(monkeypatch)
    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    assert cli.main([*TINY, option, path]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"python -m fastact bench: {option} {path}: ")
    assert why in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_results_folder_in_a_read_only_folder_refused_before_the_run(monkeypatch, capsys, tmp_path):
    """A results folder that cannot be made in a read-only folder (``--output-dir`` or the
    default one in the current folder): one line and exit status 2 before the run (it ran to
    the end, then failed with exit status 1). os.access is faked: root may write anywhere."""
    read_only = tmp_path / "ro"
    read_only.mkdir()
    real_access = os.access
    monkeypatch.setattr(
        os, "access", lambda p, mode: os.fspath(p) != str(read_only) and real_access(p, mode)
    )
    _refuse_run(monkeypatch)
    for option in (
        ["--output-dir", str(read_only / "res" / "x")],
        ["--output-dir", str(read_only)],
    ):
        assert cli.main([*TINY, *option]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("python -m fastact bench: --output-dir "), err
        assert err[0].endswith("not writable"), err
    monkeypatch.chdir(read_only)
    assert cli.main(TINY) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"python -m fastact bench: results folder fastact-bench-results: cannot be made: "
        f"{read_only} is not writable (give --output-dir DIR or --no-files)"
    ]
    with pytest.raises(AssertionError, match="the benchmark ran"):  # --no-files: no folder
        cli.main([*TINY, "--no-files"])
    assert list(read_only.iterdir()) == []


def test_write_errors_keep_the_results_folder(monkeypatch, capsys, tmp_path, tiny_report):
    """``--output`` and ``--plot`` failing while they are written (after the checks): one
    line each, exit status 1, and the results folder is still written."""
    real_plot = report.plot
    bad_plot = str(tmp_path / "ratios.png")

    def plot(rep: dict, path: str) -> str:
        if path == bad_plot:
            raise OSError(28, "No space left on device")
        return real_plot(rep, path)

    monkeypatch.setattr(harness, "run", lambda **kwargs: tiny_report)
    monkeypatch.setattr(report, "plot", plot)
    monkeypatch.setattr(cli, "_file_problem", lambda path: None, raising=False)  # passes...
    out_dir = tmp_path / "out.md"
    out_dir.mkdir()  # ... and the write fails
    res = tmp_path / "res"
    rc = cli.main([*TINY, "-o", str(out_dir), "--plot", bad_plot, "--output-dir", str(res)])
    err = capsys.readouterr().err
    assert rc == 1 and "Traceback" not in err
    assert f"python -m fastact bench: could not write --output {out_dir}: " in err
    assert f"python -m fastact bench: could not write --plot {bad_plot}: " in err
    assert sorted(p.name for p in res.iterdir()) == ["bench.json", "bench.md", "bench.png"]


# ---------------------------------------------------------------------------- sizes
def test_parse_size_bounds_and_suffixes():
    """Finite, whole sizes up to 2**40 elements, each refused with one ValueError naming the
    sizes (inf and 1e400 raised OverflowError; 1e30 was taken and failed in a worker); KiB,
    MiB, KB take the binary multiple (1KiB was refused)."""
    assert [rows.parse_size(s) for s in ("1KiB", "1kib", "1KB", "2MiB", "1Gi", "1.5K")] == [
        1024,
        1024,
        1024,
        2 << 20,
        1 << 30,
        1536,
    ]
    assert rows.parse_size(1 << 40) == rows.MAX_SIZE == 1 << 40
    for bad, why in [
        ("inf", "more than 2\\*\\*40"),
        ("1e400", "more than 2\\*\\*40"),
        ("1e30", "more than 2\\*\\*40"),
        ("1025G", "more than 2\\*\\*40"),
        ((1 << 40) + 1, "more than 2\\*\\*40"),
        ("-inf", "not a positive"),
        ("nan", "cannot read"),
        ("1.5", "not a whole"),
        ("0.5", "not a whole"),
    ]:
        with pytest.raises(ValueError, match=f"^sizes: .*{why}"):
            rows.parse_size(bad)


@pytest.mark.parametrize("sizes", ["", ",", " ", " , "])
def test_empty_sizes_are_refused(monkeypatch, capsys, sizes):
    """``--sizes ''`` (or only commas and blanks) is an error, not the default sizes."""

    def cases(patterns: list, sizes: list, dtype: str) -> list:
        raise AssertionError(f"the cases were built with sizes {sizes}")

    monkeypatch.setattr(harness.activations, "cases", cases)
    assert cli.main(["-f", "relu", "--no-files", "--no-progress", "--sizes", sizes]) == 2
    assert capsys.readouterr().err.startswith("python -m fastact bench: sizes: empty list")


@pytest.mark.parametrize("option", ["--libraries", "--families"])
@pytest.mark.parametrize("value", ["", ",", " , "])
def test_empty_libraries_and_families_are_refused(monkeypatch, capsys, option, value):
    """``--libraries ''`` and ``--families ''`` (or only commas and blanks) are errors, as
    ``--sizes ''`` and ``-f ''`` are: they meant every peer and every family."""
    _refuse_cases(monkeypatch)
    args = ["-f", "relu", "--sizes", "1K", "--no-files", "--no-progress", option, value]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    name = option.removeprefix("--")
    assert err.startswith(f"python -m fastact bench: {name}: empty list") and err.count("\n") == 1
    with pytest.raises(ValueError, match=f"^{name}: empty list"):
        harness.run(functions="relu", sizes="1K", isolate=False, progress=False, **{name: []})


# ---------------------------------------------------------------------------- threads, names
def _refuse_cases(monkeypatch) -> None:
    """Make building the benchmark's cases fail the test (the check must come first)."""

    def cases(*args: object) -> list:
        raise AssertionError("the benchmark's cases were built")

    for mod in harness.FAMILIES.values():
        monkeypatch.setattr(mod, "cases", cases)


@pytest.mark.parametrize(
    "args, message",
    [
        (["-f", "relu", "--threads", "0"], "threads must be at least 1, got 0"),
        (["-f", "relu,sigmiod"], "functions: ['sigmiod'] match no benchmark (activation: "),
        (["-f", "relu", "-f", "Adamm"], "functions: ['Adamm'] match no benchmark (activation: "),
        (["-f", "relu,mse_loss", "--families", "activation"], "functions: ['mse_loss'] match no"),
        (["-f", ""], "functions: empty list"),
        (["-f", ","], "functions: empty list"),
    ],
)
def test_threads_and_function_names(monkeypatch, capsys, args, message):
    """``--threads 0`` is refused like -5 (it ran on every CPU); every ``-f`` pattern must
    match a benchmark of the families run (a misspelled one next to good ones was dropped);
    ``-f ''`` / ``-f ','`` name nothing (they ran every benchmark of every family)."""
    _refuse_cases(monkeypatch)
    assert cli.main([*args, "--sizes", "1K", "--no-files", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"python -m fastact bench: {message}") and err.count("\n") == 1, err


# ---------------------------------------------------------------------------- variables
_WIDTH_PROBE = """
import json, warnings
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import fastact
from numba.core.codegen import CPUCodeLibrary
from fastact._core import jit
print(json.dumps({
    "warnings": [str(w.message) for w in caught if "FASTACT_VECTOR_WIDTH" in str(w.message)],
    "categories": [w.category.__name__ for w in caught if "VECTOR_WIDTH" in str(w.message)],
    "width": jit._VECTOR_WIDTH,
    "cache": jit.cache_dir().name,
    "hook": getattr(CPUCodeLibrary.add_ir_module, "_fastact", False),
}))
"""


def test_vector_width_empty_or_invalid_is_the_default():
    """FASTACT_VECTOR_WIDTH: empty is unset; a value other than 128/256/512 is the default
    512 with one RuntimeWarning naming the variable (both dropped fastact's width and
    compiled a cache folder of their own, without a word)."""
    runs = {}
    for value in (None, "", " 512 ", "abc", "1024"):
        env = {} if value is None else {"FASTACT_VECTOR_WIDTH": value}
        proc = run_code(_WIDTH_PROBE, **env)
        assert proc.returncode == 0, proc.stderr
        runs[value] = json.loads(proc.stdout.strip().splitlines()[-1])
    default = runs[None]
    assert default["width"] == "512" and default["hook"] and not default["warnings"]
    for value in ("", " 512 "):
        assert runs[value] == default, value
    for value in ("abc", "1024"):
        got = runs[value]
        assert got["warnings"] == [
            f"fastact: FASTACT_VECTOR_WIDTH={value!r} is not 128, 256 or 512; "
            "the default 512 is used"
        ]
        assert got["categories"] == ["RuntimeWarning"]
        assert {k: got[k] for k in ("width", "cache", "hook")} == {
            k: default[k] for k in ("width", "cache", "hook")
        }


# ---------------------------------------------------------------------------- in-process threads
def test_in_process_threads_capped_to_numbas_pool(monkeypatch, capsys):
    """``--in-process --threads N`` above numba's pool (NUMBA_NUM_THREADS): numba could only
    run its pool's size while torch got N and the report said N; now every library gets the
    pool's size, the report's threads and a note say so, and the command warns."""
    import numba

    pool = numba.config.NUMBA_NUM_THREADS
    settled = []
    real_settle = harness._settle_threads

    def settle(lib: str, threads: int) -> None:
        settled.append((lib, threads))
        real_settle(lib, threads)

    monkeypatch.setattr(harness, "_settle_threads", settle)
    rep = harness.run(
        functions=["relu"],
        sizes=["1K"],
        threads=pool + 1,
        quick=True,
        isolate=False,
        progress=False,
        libraries=["numpy"],
        budget_scale=0.2,
    )
    assert settled == [("fastact", pool), ("numpy", pool)]
    assert rep["meta"]["threads"] == rep["meta"]["numba_threads"] == pool
    assert any(f"above numba's pool of {pool}" in n for n in rep["notes"]), rep["notes"]

    monkeypatch.setattr(harness, "run", lambda **kwargs: rep)
    assert cli.main([*TINY, "--in-process", "--no-files", "--threads", str(pool + 1)]) == 0
    err = capsys.readouterr().err
    assert f"--threads {pool + 1} is above numba's pool of {pool} threads" in err


# ---------------------------------------------------------------------------- asv variables
def _load_asv_common(monkeypatch, **env: str):
    """benchmarks/_common.py executed afresh with ``env`` set (its lists are read at import)."""
    import importlib.util

    for k, v in env.items():
        monkeypatch.setenv(k, v)
    spec = importlib.util.spec_from_file_location(
        "_asv_common_probe", os.path.join(ROOT, "benchmarks", "_common.py")
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_asv_sizes_take_the_bench_notation_and_bad_values_name_the_variable(monkeypatch):
    """FASTACT_ASV_SIZES takes ``1K`` like the bench command (a bare int() error at import of
    every suite); bad sizes and dtypes are a ValueError naming the variable (0, -5, 'garbage'
    and 'int32' were taken without a word)."""
    common = _load_asv_common(monkeypatch, FASTACT_ASV_SIZES="1K, 64K,1048576")
    assert common.SIZES == common.LARGE_SIZES == [1024, 65536, 1 << 20]
    assert common.DTYPES == ["float32", "float64"]
    for env, message in [
        ({"FASTACT_ASV_SIZES": "0,-5"}, "FASTACT_ASV_SIZES: '0' is not a positive element count"),
        ({"FASTACT_ASV_SIZES": "1X"}, "FASTACT_ASV_SIZES: cannot read '1X'"),
        ({"FASTACT_ASV_SIZES": "1e30"}, "FASTACT_ASV_SIZES: '1e30' is more than 2\\*\\*40"),
        ({"FASTACT_ASV_DTYPES": "garbage,int32"}, "FASTACT_ASV_DTYPES: 'garbage' is not float32"),
        ({"FASTACT_ASV_DTYPES": "float16"}, "FASTACT_ASV_DTYPES: 'float16' is not float32"),
    ]:
        with monkeypatch.context() as m:
            with pytest.raises(ValueError, match=f"^{message}"):
                _load_asv_common(m, **env)


def test_invalid_vector_width_is_not_passed_to_the_workers(monkeypatch):
    """An invalid FASTACT_VECTOR_WIDTH is warned about once, in this process: the spawned
    workers get the width this process uses (none: the variable removed), not the value, which
    each of them warned about again (from multiprocessing/spawn.py). The variable is restored
    after the run."""
    from fastact._core import jit

    seen = []

    def fake_block(target, args, isolate, progress, timeout=None):
        seen.append(os.environ.get("FASTACT_VECTOR_WIDTH"))
        lb, cases = args[0], args[1]
        results = [{c: {"median_s": 1e-6} for c in harness.columns(case, lb)} for case in cases]
        return "done", {"results": results, "bandwidth": [], "meta": {}}

    monkeypatch.setattr(harness, "_run_block", fake_block)
    for value, parent, workers in [
        ("300", ("512", False), None),
        (" 256 ", ("256", True), "256"),
    ]:
        monkeypatch.setenv("FASTACT_VECTOR_WIDTH", value)
        monkeypatch.setattr(jit, "_VECTOR_WIDTH", parent[0])
        monkeypatch.setattr(jit, "_VECTOR_WIDTH_FROM_ENV", parent[1])
        seen.clear()
        harness.run(functions="relu", sizes="1K", libraries=["numpy"], progress=False)
        assert seen == [workers, workers], value
        assert os.environ["FASTACT_VECTOR_WIDTH"] == value


# ---------------------------------------------------------------------------- huge pages, optim
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="madvise advice: Linux only")
@pytest.mark.parametrize(
    "value, advised",
    [("0", False), (" 0", False), ("off", False), ("False", False), ("NO", False),
     ("1", True), ("", True), ("on", True)],
)  # fmt: skip
def test_huge_pages_switch_reads_like_disable_cache(monkeypatch, value, advised):
    """FASTACT_HUGE_PAGES: 0, false, no, off (any case, blanks stripped) turn the huge-page
    advice off, as FASTACT_DISABLE_CACHE reads them (only the exact '0' did)."""
    pytest.importorskip("torch")
    from fastact.torch import autograd

    monkeypatch.setenv("FASTACT_HUGE_PAGES", value)
    assert (autograd._madvise() is not None) == advised


@pytest.mark.parametrize(
    "value, off",
    [("0", True), (" Off ", True), ("FALSE", True), ("no", True),
     ("1", False), ("", False), ("on", False), ("00", False)],
)  # fmt: skip
def test_off_switches_share_one_reading(monkeypatch, value, off):
    """fastact._core.jit.env_off reads the on/off variables' off values (0, false, no, off,
    blanks stripped, any case) for FASTACT_DISABLE_CACHE and FASTACT_HUGE_PAGES alike (each
    module had its own copy of the list)."""
    from fastact._core import jit

    monkeypatch.setenv("FASTACT_X", value)
    assert jit.env_off("FASTACT_X") is off
    monkeypatch.delenv("FASTACT_X")
    assert jit.env_off("FASTACT_X") is False
    monkeypatch.setenv("FASTACT_DISABLE_CACHE", value)
    assert jit.cache_disabled() is (value.strip() != "" and not off)


def test_optim_command_output_file_has_the_step_costs(tmp_path, monkeypatch, capsys):
    """``bench optim -o FILE``: the "step cost per element" lines are in FILE with the table
    (they went to stdout, which was to stay empty)."""
    rep = _tiny_run("SGD")
    monkeypatch.setattr(harness, "run", lambda **kwargs: rep)
    out = tmp_path / "optim.txt"
    assert cli.main(["optim", "-f", "SGD", "--no-files", "-o", str(out)]) == 0
    assert capsys.readouterr().out == ""
    text = out.read_text()
    assert "== Optimizers ==" in text
    assert "\nfastact's step cost per element:\nSGD: 1 tensor " in text
    assert text.endswith(" ns/element\n")
