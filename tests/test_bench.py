"""The benchmark command: structure and sanity of its table and JSON (no timing assertions),
the peers it compares against (they must compute the same function), and ``info``."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest

import fastact
from fastact import bench

FUNCS = ["relu", "sigmoid"]


@pytest.fixture(scope="module")
def report():
    return bench.run(
        functions=FUNCS,
        sizes=["1K"],
        quick=True,
        isolate=False,
        progress=False,
        families=["activation"],
        budget_scale=0.2,
    )


def _check_rows(rows: list[dict], functions: list[str], size: int) -> None:
    seen = {(r["function"], r["variant"]) for r in rows}
    for f in functions:
        assert (f, "forward") in seen and (f, "backward") in seen
    assert ("relu", "inplace") in seen  # relu has relu_; sigmoid has no in-place form
    assert ("sigmoid", "inplace") not in seen
    for r in rows:
        assert r["family"] == "activation" and r["size"] == size and r["dtype"] == "float32"
        assert not r.get("errors"), r
        assert r["times"]["fastact"] > 0
        assert set(r["ratios"]) == set(r["times"]) - {"fastact"}
        for lib, ratio in r["ratios"].items():
            assert ratio > 0 and math.isfinite(ratio)
            assert ratio == pytest.approx(r["times"][lib] / r["times"]["fastact"])
        assert 0 < r["roofline_fraction"] < 1.5
        assert r["roofline_s"] == pytest.approx(r["roofline_fraction"] * r["times"]["fastact"])
        factor = 3 if r["variant"] == "backward" else 2
        assert r["bytes"] == factor * size * 4
    # torch and NumPy are test dependencies: their columns must be filled
    assert all("torch" in r["times"] for r in rows)
    assert all("numpy" in r["times"] for r in rows if r["variant"] == "forward")


def test_api_rows(report):
    _check_rows(report["results"], FUNCS, 1024)
    assert len(report["results"]) == 5
    meta = report["meta"]
    assert meta["fastact"] == fastact.__version__ and meta["threads"] >= 1
    assert meta["threading_layer"] in ("tbb", "omp", "workqueue")
    (bw,) = report["bandwidth"]
    assert bw["size"] == 1024 and bw["copy_Bps"] > 0 and bw["rmw_Bps"] > 0


def _section(lines: list[str], title: str) -> list[str]:
    start = lines.index(title) + 1
    end = next((k for k in range(start, len(lines)) if not lines[k].strip()), len(lines))
    return [ln for ln in lines[start:end] if ln.strip()]


def test_text_and_markdown_tables(report):
    lines = bench.format_report(report, "text").splitlines()
    table = _section(lines, "== Activations ==")
    header = table[0].split()
    assert header[:4] == ["function", "variant", "size", "fastact"]
    assert "torch/fastact" in header and header[-1] == "roofline"
    body = table[2:]
    assert len(body) == 5 and {ln.split()[0] for ln in body} == set(FUNCS)
    assert all(ln.rstrip().endswith("%") for ln in body)
    summary = _section(lines, "== Summary ==")[2:]
    assert [ln.split()[:4] for ln in summary] == [
        ["activation", "forward", "1K", "2"],
        ["activation", "backward", "1K", "2"],
        ["activation", "inplace", "1K", "1"],
    ]
    md = bench.format_report(report, "markdown").splitlines()
    i = md.index("### Activations")
    table = [ln for ln in md[i:] if ln.startswith("|")][:7]
    assert len(table) == 2 + 5 and table[1].startswith("|---|")
    ncol = table[0].count("|")
    assert all(ln.count("|") == ncol for ln in table)
    assert any("Roofline = bytes moved" in ln for ln in md)
    with pytest.raises(ValueError, match="format"):
        bench.format_report(report, "html")


def test_cli_json_subprocess(tmp_path):
    out, png = tmp_path / "bench.json", tmp_path / "ratios.png"
    cmd = [
        sys.executable,
        "-m",
        "fastact",
        "bench",
        "--functions",
        "relu",
        "--sizes",
        "1024",
        "--quick",
        "--format",
        "json",
        "--libraries",
        "numpy",
        "--threads",
        "1",
        "--output",
        str(out),
        "--plot",
        str(png),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert set(data) == {"meta", "bandwidth", "results", "notes"}
    assert data["meta"]["threads"] == 1 and data["meta"]["isolation"].startswith("one spawned")
    rows = data["results"]
    assert {(r["function"], r["variant"]) for r in rows} == {
        ("relu", "forward"),
        ("relu", "backward"),
        ("relu", "inplace"),
    }
    for r in rows:
        assert set(r["times"]) == {"fastact", "numpy"} or r["variant"] == "backward"
        assert all(v > 0 for v in r["ratios"].values())
        assert 0 < r["roofline_fraction"] < 1.5
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_errors():
    proc = subprocess.run(
        [sys.executable, "-m", "fastact", "bench", "-f", "no_such_fn", "--no-progress"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "no_such_fn" in proc.stderr
    with pytest.raises(ValueError, match="sizes"):
        bench.run(functions=["relu"], sizes=["12Q"], isolate=False, progress=False)
    with pytest.raises(ValueError, match="dtype"):
        bench.run(functions=["relu"], dtype="int8", isolate=False, progress=False)


def test_parse_size():
    assert [bench.parse_size(s) for s in ("1K", "256K", "16M", "1000", 7)] == [
        1024,
        262144,
        16777216,
        1000,
        7,
    ]


def test_cases_cover_registry():
    cases = bench.activation_cases(None, [1024])
    names = {c["function"] for c in cases}
    assert names == set(fastact.ACTIVATIONS) | set(fastact.AXIS_ACTIVATIONS)
    inplace = {c["function"] for c in cases if c["variant"] == "inplace"}
    assert inplace == {n for n, op in fastact.ACTIVATIONS.items() if op.inplace} | {"rrelu"}
    assert {c["function"] for c in bench.activation_cases(["gelu*"], [8])} == {
        "gelu",
        "gelu_tanh",
    }


def _result(runner: bench.Runner):
    if runner.reset is not None:
        runner.reset()
        runner.fn()
        return runner.keep[0]  # the buffer modified in place
    return runner.fn()


def _as_numpy(v):
    if isinstance(v, tuple):  # autograd.grad returns a tuple (prelu: input and weight grads)
        v = v[0]
    return v.numpy() if hasattr(v, "numpy") else np.asarray(v)


@pytest.mark.parametrize("lib", ["torch", "numpy", "numexpr"])
def test_peers_compute_the_same_function(lib):
    """Every peer formula timed by the bench agrees with fastact on the same input."""
    pytest.importorskip(lib)
    inputs = bench._Inputs()
    checked = 0
    for case in bench.activation_cases(None, [2048]):
        try:
            peer = bench.build(lib, case, inputs)
        except bench.Unsupported:
            continue
        ref = _as_numpy(_result(bench.build("fastact", case, inputs)))
        got = _as_numpy(_result(peer))
        assert got.dtype == ref.dtype, (case, got.dtype)
        np.testing.assert_allclose(got, ref, rtol=2e-3, atol=2e-4, err_msg=str(case))
        checked += 1
    assert checked >= {"torch": 60, "numpy": 35, "numexpr": 30}[lib]


def test_normalize_external_rows():
    """Rows of another family's run() (bench_optim's keys) land in the common schema."""
    row = {
        "case": "1 x 16.8M",
        "n_elements": 1 << 24,
        "dtype": "float32",
        "optimizer": "Adam",
        "bytes": 7 << 26,
        "fastact_s": 0.02,
        "roofline_s": 0.018,
        "torch_s": 0.2,
        "foreach_s": 0.1,
        "fused_s": math.nan,
        "pct_roofline": 90.0,
    }
    r = bench._normalize_external(row, "optimizer")
    assert r["family"] == "optimizer" and r["function"] == "Adam" and r["size"] == 1 << 24
    assert r["times"] == {"fastact": 0.02, "torch": 0.2, "torch_foreach": 0.1}
    assert r["ratios"] == pytest.approx({"torch": 10.0, "torch_foreach": 5.0})
    assert r["roofline_fraction"] == pytest.approx(0.9)
    text = bench.format_report({"meta": {}, "results": [r], "notes": []}, "text")
    assert "== Optimizers ==" in text and "10.00x" in text
    assert "optimizer" in _section(text.splitlines(), "== Summary ==")[2]


def test_info():
    d = bench.info()
    assert d["fastact"] == fastact.__version__
    assert d["threads"] >= 1 and d["threading_layer"] in ("tbb", "omp", "workqueue")
    assert d["simd_width_bits"] in (0, 128, 256, 512)
    assert d["cache_dir"].endswith(fastact._core.jit.cache_dir().name)
    assert isinstance(d["cuda_available"], bool)
    proc = subprocess.run(
        [sys.executable, "-m", "fastact", "info"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert "threading_layer" in proc.stdout and "simd_width_bits" in proc.stdout


def test_rounds_take_the_median_and_alternate(monkeypatch):
    """``rounds``: each library's blocks alternate (fastact first, then last, ...) and every
    time is the median over the rounds (a fake worker supplies known times)."""
    calls = []
    fake = {"fastact": [3e-6, 1e-6, 2e-6], "torch": [9e-6, 4e-6, 5e-6]}

    def fake_block(target, args, isolate, progress, timeout=None):
        lb, cases = args[0], args[1]
        rnd = sum(1 for c in calls if c == lb)
        calls.append(lb)
        t = fake[lb][rnd]
        return "result", {"results": [{"median_s": t} for _ in cases], "meta": {}}

    monkeypatch.setattr(bench, "_run_block", fake_block)
    rep = bench.run(
        functions=["relu"],
        sizes=["1K"],
        libraries=["torch"],
        families=["activation"],
        progress=False,
        rounds=3,
    )
    assert calls == ["fastact", "torch", "torch", "fastact", "fastact", "torch"]
    assert rep["meta"]["rounds"] == 3
    for r in rep["results"]:
        assert r["times"] == {"fastact": 2e-6, "torch": 5e-6}
        assert r["ratios"]["torch"] == pytest.approx(2.5)
    assert "median of 3 rounds" in bench.format_report(rep, "text")
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="rounds"):
            bench.run(functions=["relu"], sizes=["1K"], progress=False, rounds=bad)
