"""The benchmark harness (``fastact.bench``): rows of every family in the one schema, tables,
JSON, the results folder, the plot's layout, the command lines, and the peers it compares
against (they must compute the same function). No timing assertions."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

import fastact
from fastact import bench
from fastact.bench import activations, harness, losses, optim, peers, report, rows
from fastact.bench.timing import Runner, Unsupported

FUNCS = ["relu", "sigmoid"]
ROW_KEYS = {"family", "function", "variant", "size", "dtype", "times", "ratios", "bytes", "probe"}


@pytest.fixture(scope="module")
def act_report():
    return bench.run(
        functions=FUNCS,
        sizes=["1K"],
        quick=True,
        isolate=False,
        progress=False,
        families=["activation"],
        budget_scale=0.2,
    )


@pytest.fixture(scope="module")
def mixed_report():
    """One small run of every family (a few names each), in this process."""
    return bench.run(
        functions=["relu", "mse_loss", "cross_entropy", "triplet_margin_loss", "Adam", "Adagrad"],
        sizes=["4K"],
        quick=True,
        isolate=False,
        progress=False,
        budget_scale=0.2,
    )


def _check_common(r: dict) -> None:
    assert ROW_KEYS <= set(r), r
    assert not r.get("errors"), r
    assert r["times"]["fastact"] > 0
    assert set(r["ratios"]) == set(r["times"]) - {"fastact"}
    for lib, ratio in r["ratios"].items():
        assert ratio > 0 and math.isfinite(ratio)
        assert ratio == pytest.approx(r["times"][lib] / r["times"]["fastact"])
    assert r["roofline_s"] == pytest.approx(r["roofline_fraction"] * r["times"]["fastact"])
    assert r["roofline_fraction"] > 0


def test_activation_rows(act_report):
    rs = act_report["results"]
    seen = {(r["function"], r["variant"]) for r in rs}
    assert seen == {(f, v) for f in FUNCS for v in ("forward", "backward")} | {("relu", "inplace")}
    for r in rs:
        _check_common(r)
        assert r["family"] == "activation" and r["size"] == 1024 and r["dtype"] == "float32"
        assert r["roofline_fraction"] < 1.5
        assert r["bytes"] == (3 if r["variant"] == "backward" else 2) * 1024 * 4
        assert r["probe"] == ("rmw" if r["variant"] == "inplace" else "copy")
    # torch and NumPy are test dependencies: their columns must be filled
    assert all("torch" in r["times"] for r in rs)
    assert all("numpy" in r["times"] for r in rs if r["variant"] == "forward")
    meta = act_report["meta"]
    assert meta["fastact"] == fastact.__version__ and meta["threads"] >= 1
    assert meta["threading_layer"] in ("tbb", "omp", "workqueue")
    assert {(b["probe"], b["size"]) for b in act_report["bandwidth"]} == {
        ("copy", 1024),
        ("rmw", 1024),
    }
    assert all(
        b["Bps"] == pytest.approx(b["bytes"] / b["seconds"]) for b in act_report["bandwidth"]
    )


def test_loss_and_optimizer_rows(mixed_report):
    """Losses and optimizers land in the same row schema, with their own peers and probes."""
    by_family: dict[str, list[dict]] = {}
    for r in mixed_report["results"]:
        if r["ratios"]:
            _check_common(r)
        by_family.setdefault(r["family"], []).append(r)
    assert set(by_family) == {"activation", "loss", "optimizer"}
    ls = by_family["loss"]
    assert {(r["function"], r["variant"]) for r in ls} == {
        (f, v)
        for f in ("mse_loss", "cross_entropy", "triplet_margin_loss")
        for v in ("value+grad", "grad_out")
    }
    for r in ls:
        assert r["probe"] == "triad" and r["size"] == 4096
        if r["variant"] == "grad_out":
            assert set(r["times"]) == {"fastact"} and r["roofline_fraction"] > 0
        else:
            assert set(r["times"]) == {"fastact", "torch", "numpy"}
    ce = next(r for r in ls if r["function"] == "cross_entropy")
    assert ce["shape"] == [4, 1000]
    assert ce["bytes"] == 4 * 1000 * 4 * 2 + 4 * 8  # logits read, gradient written, targets
    opt = by_family["optimizer"]
    assert {r["function"] for r in opt} == {"Adam", "Adagrad"}
    for r in opt:
        _check_common(r)
        assert r["variant"] == "1 tensor" and r["size"] == 4096
        assert set(r["times"]) == {"fastact", "torch", "torch_foreach", "torch_fused"}
    adam = next(r for r in opt if r["function"] == "Adam")
    assert adam["probe"] == "stream3" and adam["bytes"] == 7 * 4096 * 4
    probes = {b["probe"] for b in mixed_report["bandwidth"]}
    assert probes == {"copy", "rmw", "triad", "stream2", "stream3"}


def _section(lines: list[str], title: str) -> list[str]:
    start = lines.index(title) + 1
    end = next((k for k in range(start, len(lines)) if not lines[k].strip()), len(lines))
    return [ln for ln in lines[start:end] if ln.strip()]


def test_text_and_markdown_tables(act_report, mixed_report):
    text = bench.format_report(act_report, "text")
    lines = text.splitlines()
    assert lines[0].startswith("Machine: ") and "threads" in lines[0] and "layer" in lines[0]
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
    md = bench.format_report(act_report, "markdown").splitlines()
    i = md.index("### Activations")
    table = [ln for ln in md[i:] if ln.startswith("|")][:7]
    assert len(table) == 2 + 5 and table[1].startswith("|---|")
    ncol = table[0].count("|")
    assert all(ln.count("|") == ncol for ln in table)
    assert any("Roofline = bytes moved" in ln for ln in md)
    with pytest.raises(ValueError, match="format"):
        bench.format_report(act_report, "html")
    mixed = bench.format_report(mixed_report, "text").splitlines()
    assert "cross_entropy" in "\n".join(_section(mixed, "== Losses =="))
    assert "4K (4x1000)" in "\n".join(_section(mixed, "== Losses =="))
    opt = _section(mixed, "== Optimizers ==")
    assert "torch_fused/fastact" in opt[0] and len(opt) == 2 + 2
    data = json.loads(bench.format_report(mixed_report, "json"))
    assert set(data) == {"meta", "bandwidth", "results", "notes"}


def test_missing_peer_first_and_fastact_still_timed(monkeypatch):
    """A family whose peer is missing still shows fastact's timings; the missing peer is
    named at the top of the report."""
    real = harness._library_available
    monkeypatch.setattr(harness, "_library_available", lambda lb: lb != "torch" and real(lb))
    rep = bench.run(
        functions=["Adam"],
        sizes=["2K"],
        quick=True,
        isolate=False,
        progress=False,
        budget_scale=0.2,
    )
    (r,) = rep["results"]
    assert set(r["times"]) == {"fastact"} and r["roofline_fraction"] > 0
    lines = bench.format_report(rep, "text").splitlines()
    assert lines[0].startswith("Machine: ")
    assert lines[1].startswith("Note: torch is not installed")
    assert "== Optimizers ==" in lines


def _cli(*args: str, cwd: str | None = None, timeout: float = 240) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(fastact.__file__))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env
    )


def test_cli_json_and_results_folder(tmp_path):
    out, png = tmp_path / "bench.json", tmp_path / "ratios.png"
    proc = _cli(
        "-m", "fastact", "bench", "--functions", "relu", "--sizes", "1024", "--quick",
        "--format", "json", "--libraries", "numpy", "--threads", "1", "--output", str(out),
        "--plot", str(png), "--no-progress", cwd=str(tmp_path),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert set(data) == {"meta", "bandwidth", "results", "notes"}
    assert data["meta"]["threads"] == 1 and data["meta"]["isolation"].startswith("one spawned")
    rs = data["results"]
    assert {(r["function"], r["variant"]) for r in rs} == {
        ("relu", "forward"),
        ("relu", "backward"),
        ("relu", "inplace"),
    }
    for r in rs:
        assert set(r["times"]) == {"fastact", "numpy"}
        assert all(v > 0 for v in r["ratios"].values())
        assert 0 < r["roofline_fraction"] < 1.5
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the default results folder, named at the end of the run
    (folder,) = (tmp_path / "fastact-bench-results").iterdir()
    assert sorted(p.name for p in folder.iterdir()) == ["bench.json", "bench.md", "bench.png"]
    assert f"Results: {folder}/" in proc.stderr
    md = (folder / "bench.md").read_text()
    assert md.startswith("Machine: ") and "### Activations" in md
    assert json.loads((folder / "bench.json").read_text())["results"] == rs


def test_cli_output_dir_no_files_and_thread_warning(tmp_path):
    args = ["-m", "fastact", "bench", "-f", "relu", "-s", "1K", "--quick", "--libraries", "numpy"]
    cpus = harness.default_threads()
    proc = _cli(*args, "--output-dir", str(tmp_path / "res"), "--threads", str(cpus + 2),
                "--no-progress", cwd=str(tmp_path))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (tmp_path / "res").iterdir()) == [
        "bench.json",
        "bench.md",
        "bench.png",
    ]
    assert f"--threads {cpus + 2} on {cpus} CPUs oversubscribes" in proc.stderr
    head = proc.stdout.splitlines()[:3]
    assert any(ln.startswith("Note: ") and "oversubscribed" in ln for ln in head), head
    other = tmp_path / "other"
    other.mkdir()
    proc = _cli(*args, "--no-files", "--no-progress", cwd=str(other))
    assert proc.returncode == 0, proc.stderr
    assert list(other.iterdir()) == [] and "Results:" not in proc.stderr


def test_cli_errors_and_help():
    proc = _cli("-m", "fastact", "bench", "-f", "no_such_fn", "--no-progress", timeout=60)
    assert proc.returncode == 2 and "no_such_fn" in proc.stderr
    with pytest.raises(ValueError, match="sizes"):
        bench.run(functions=["relu"], sizes=["12Q"], isolate=False, progress=False)
    with pytest.raises(ValueError, match="dtype"):
        bench.run(functions=["relu"], dtype="int8", isolate=False, progress=False)
    with pytest.raises(ValueError, match="families"):
        bench.run(families=["layers"], isolate=False, progress=False)
    for module in ("fastact bench", "fastact bench losses", "fastact bench optim"):
        proc = _cli("-m", *module.split(), "--help", timeout=60)
        assert proc.returncode == 0 and "--output-dir" in proc.stdout, proc.stderr
        assert "``" not in proc.stdout
    proc = _cli("-m", "fastact", "--help", timeout=60)
    assert proc.returncode == 0 and "bench" in proc.stdout and "info" in proc.stdout


def test_family_commands(tmp_path):
    """``python -m fastact bench losses`` / ``optim``: one family with its full cases."""
    proc = _cli("-m", "fastact", "bench", "losses", "-f", "mse_loss", "-s", "2K", "--quick",
                "--no-files", "--no-progress", "--threads", "1")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    table = _section(proc.stdout.splitlines(), "== Losses ==")
    assert "numpy/fastact" in table[0] and len(table) == 2 + 2
    proc = _cli("-m", "fastact", "bench", "optim", "-f", "SGD", "-s", "64K", "--quick",
                "--no-files", "--no-progress", "--threads", "1")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    table = _section(proc.stdout.splitlines(), "== Optimizers ==")
    assert [ln.split()[1:3] for ln in table[2:]] == [["1", "tensor"], ["160", "tensors"]]
    assert "ns/element" in proc.stdout
    proc = _cli("-m", "fastact", "bench", "fused", "-s", "4K", "--quick", "--no-files",
                "--no-progress", "--threads", "1")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    table = _section(proc.stdout.splitlines(), "== Fused chains (@fastact.elementwise) ==")
    assert "separate/fastact" in table[0] and "numba.vectorize/fastact" in table[0]
    assert [ln.split()[0] for ln in table[2:]] == [
        "gelu_chain",
        "gelu_tanh_chain",
        "relu_alone",
        "gelu_alone",
    ]


def test_parse_size():
    assert [rows.parse_size(s) for s in ("1K", "256K", "16M", "1000", 7)] == [
        1024,
        262144,
        16777216,
        1000,
        7,
    ]
    with pytest.raises(ValueError, match="sizes"):
        rows.parse_size("0")


def test_cases_cover_registries():
    cases = activations.cases(None, [1024])
    names = {c["function"] for c in cases}
    assert names == set(fastact.ACTIVATIONS) | set(fastact.AXIS_ACTIVATIONS)
    inplace = {c["function"] for c in cases if c["variant"] == "inplace"}
    assert inplace == {n for n, op in fastact.ACTIVATIONS.items() if op.inplace} | {"rrelu"}
    assert {c["function"] for c in activations.cases(["gelu*"], [8])} == {"gelu", "gelu_tanh"}
    assert set(losses.names()) == set(fastact.losses.__all__) == set(peers.NP_LOSSES)
    assert set(optim.names()) == set(fastact.optim.OPTIMIZERS)
    model = [c for c in optim.cases(["Adam"], [1 << 20], model=True) if "shapes" in c]
    assert len(model) == 1 and model[0]["size"] == sum(math.prod(s) for s in model[0]["shapes"])


def test_rounds_take_the_median_and_alternate(monkeypatch):
    """``rounds``: each library's blocks alternate (fastact first, then last, ...) and every
    time is the median over the rounds (a fake worker supplies known times)."""
    calls = []
    fake = {"fastact": [3e-6, 1e-6, 2e-6], "torch": [9e-6, 4e-6, 5e-6]}

    def fake_block(target, args, isolate, progress, timeout=None):
        lb, cases = args[0], args[1]
        rnd = calls.count(lb)
        calls.append(lb)
        t = fake[lb][rnd]
        results = [{c: {"median_s": t} for c in harness.columns(case, lb)} for case in cases]
        return "done", {"results": results, "bandwidth": [], "meta": {}}

    monkeypatch.setattr(harness, "_run_block", fake_block)
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


# ---------------------------------------------------------------------------- the peers
def _result(runner: Runner):
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
def test_activation_peers_compute_the_same_function(lib):
    """Every peer formula timed by the bench agrees with fastact on the same input."""
    pytest.importorskip(lib)
    inputs = activations.Inputs()
    checked = 0
    for case in activations.cases(None, [2048]):
        try:
            peer = activations.build(lib, case, inputs)
        except Unsupported:
            continue
        ref = _as_numpy(_result(activations.build("fastact", case, inputs)))
        got = _as_numpy(_result(peer))
        assert got.dtype == ref.dtype, (case, got.dtype)
        np.testing.assert_allclose(got, ref, rtol=2e-3, atol=2e-4, err_msg=str(case))
        checked += 1
    assert checked >= {"torch": 60, "numpy": 35, "numexpr": 30}[lib]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fused_family_columns_compute_the_same_chain(dtype):
    """Every column of the fused family (the @fastact.elementwise chain, the separate fastact
    calls, numba.vectorize, torch, NumPy, numexpr, the built-in activation) gives the same
    values; the fused chain and the separate calls are bit-identical."""
    # the harness's own modules as imported now (tests/test_asv_config.py reloads the
    # working tree's fastact.bench by path, as asv does, which makes new module objects)
    from fastact.bench import fused, timing

    inputs = fused.Inputs()
    seen = set()
    for case in fused.cases(None, [3000], dtype):
        ref = _as_numpy(_result(fused.build("fastact", case, inputs)))
        assert ref.dtype == np.dtype(dtype)
        for column in ("builtin", "separate", "separate in place", "numba.vectorize", "torch",
                       "numpy", "numexpr"):  # fmt: skip
            try:
                runner = fused.build(column, case, inputs)
            except timing.Unsupported:
                continue
            except ImportError:
                continue
            got = _as_numpy(_result(runner))
            assert got.dtype == ref.dtype, (case, column)
            if column in ("builtin", "separate", "separate in place"):
                np.testing.assert_array_equal(got, ref, err_msg=f"{case} {column}")
            else:
                np.testing.assert_allclose(got, ref, rtol=2e-5, atol=1e-6, err_msg=column)
            seen.add(column)
    assert {"builtin", "separate", "separate in place", "numba.vectorize"} <= seen


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_numpy_loss_formulas_match_fastact(dtype):
    """fastact.bench.peers.NP_LOSSES (the NumPy peers, usable as references) give fastact's
    loss and gradients on the bench's inputs."""
    inputs = losses.Inputs()
    tol = {"float32": (2e-4, 1e-6), "float64": (1e-9, 1e-12)}[dtype]
    for case in losses.cases(None, [8192], dtype):
        if case["variant"] != "value+grad":
            continue
        args = losses.case_inputs(case, inputs)
        loss, grads = peers.NP_LOSSES[case["function"]](*args)
        kw = losses.LOSSES[case["function"]][2]
        ref_loss, ref_grads = getattr(fastact.losses, case["function"])(
            *args, return_grad=True, **kw
        )
        name = case["function"]
        np.testing.assert_allclose(loss, ref_loss, rtol=tol[0], err_msg=name)
        grads = grads if isinstance(grads, tuple) else (grads,)
        ref_grads = ref_grads if isinstance(ref_grads, tuple) else (ref_grads,)
        for g, rg in zip(grads, ref_grads, strict=True):
            assert g.dtype == rg.dtype == np.dtype(dtype), name
            scale = float(np.max(np.abs(rg)))
            np.testing.assert_allclose(
                g, rg, rtol=tol[0], atol=tol[1] * scale + 1e-30, err_msg=name
            )


@pytest.mark.parametrize("column", ["torch", "torch_foreach", "torch_fused"])
def test_optimizer_peers_step_like_fastact(column):
    """The torch optimizer columns take the same steps as fastact's (3 steps, same grads)."""
    torch = pytest.importorskip("torch")
    inputs = optim.Inputs()
    checked = 0
    for case in optim.cases(None, [4096]):
        try:
            peer = optim.build(column, case, inputs)
        except Unsupported:
            continue
        ours = optim.build("fastact", case, inputs)
        for _ in range(3):
            peer.fn()
            ours.fn()
        tp = peer.keep[1][0].detach().numpy()
        fp = ours.keep[1][0]
        np.testing.assert_allclose(tp, fp, rtol=1e-5, atol=1e-6, err_msg=str(case))
        checked += 1
    assert checked == {"torch": 8, "torch_foreach": 8, "torch_fused": 4}[column]
    del torch


def test_bandwidth_probes():
    from fastact.bench.bandwidth import PROBES, measure_probe

    for probe in PROBES:
        b = measure_probe(probe, 4096, "float32", 0.002, 3)
        assert b["bytes"] == PROBES[probe] * 4096 * 4 and b["Bps"] > 0
    with pytest.raises(ValueError, match="probe"):
        measure_probe("nope", 8, "float32")


def test_state_floor_probe_moves_an_optimizer_steps_bytes():
    """The low-precision optimizer floor (scripts/bench_lowp_optim.py): bytes of the
    parameter and two states read and written and the gradient read, and a loop that really
    writes every array (each call flips the parameter by the gradient and the states by 1)."""
    from fastact.bench.bandwidth import _pick, measure_state_floor

    for pb, sb in ((4, 4), (4, 1), (2, 2), (2, 1)):
        b = measure_state_floor(4096, pb, sb, 0.002, 3)
        assert b["bytes"] == 4096 * (3 * pb + 4 * sb)
        assert b["Bps"] == pytest.approx(b["bytes"] / b["seconds"]) and b["seconds"] > 0
    k = _pick("state_floor", 100)
    g = np.arange(1, 101, dtype=np.uint32)
    p, s0, s1 = np.zeros(100, np.uint32), np.zeros(100, np.uint8), np.full(100, 6, np.uint8)
    k(g, p, s0, s1)
    assert (p == g).all() and (s0 == 1).all() and (s1 == 7).all()
    with pytest.raises(ValueError, match="state_bytes"):
        measure_state_floor(8, 4, 3)
    with pytest.raises(ValueError, match="param_bytes"):
        measure_state_floor(8, 0, 1)


# ---------------------------------------------------------------------------- the plot
def _fake_report(n_cases: int | None, seed: int = 0) -> dict:
    """Rows with made-up times for the cases of a default run (no timing)."""
    rng = np.random.default_rng(seed)
    cases = (
        activations.cases(None, list(harness.DEFAULT_SIZES))
        + losses.cases(None, [1 << 24])
        + optim.cases(None, [1 << 24], model=True)
    )
    if n_cases is not None:
        cases = [cases[i] for i in sorted(rng.choice(len(cases), n_cases, replace=False))]
    cols = {"activation": ["torch", "numpy", "numexpr"], "loss": ["torch", "numpy"]}
    out = []
    for c in cases:
        allowed = c.get("columns") or ["torch", "numpy", "torch_foreach", "torch_fused"]
        peers_ = [p for p in cols.get(c["family"], allowed) if p in allowed]
        times = {"fastact": 1e-4, **{p: 1e-4 * float(np.exp(rng.normal(0.5, 1.5))) for p in peers_}}
        row = {k: v for k, v in c.items() if k not in ("columns", "shapes")}
        row["times"] = times
        out.append(rows.finish_row(row, 2e10))
    meta = {"fastact": fastact.__version__, "cpu": "Test CPU (znver3)", "threads": 2}
    return {"meta": {**meta, "dtype": "float32"}, "results": out, "notes": [], "bandwidth": []}


@pytest.mark.parametrize("n_cases", [3, 30, None])
def test_plot_layout_has_no_clipped_or_overlapping_text(n_cases, tmp_path):
    """The ratio plot at 3, 30 and all cases of a default run: every text inside the figure
    (matplotlib's tight bbox against the figure), full labels, no overlapping tick labels."""
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    rep = _fake_report(n_cases)
    fig = report.figure(rep)
    try:
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        box = fig.bbox
        tight = fig.get_tightbbox(renderer)  # inches
        dpi = fig.dpi
        assert tight.x0 * dpi >= box.x0 - 1 and tight.y0 * dpi >= box.y0 - 1
        assert tight.x1 * dpi <= box.x1 + 1 and tight.y1 * dpi <= box.y1 + 1
        labels_drawn = set()
        for ax in fig.get_axes():
            for axis, vertical in ((ax.yaxis, True), (ax.xaxis, False)):
                texts = [t for t in axis.get_ticklabels() if t.get_visible() and t.get_text()]
                extents = [t.get_window_extent(renderer) for t in texts]
                for e in extents:
                    assert box.x0 - 1 <= e.x0 and e.x1 <= box.x1 + 1, e
                    assert box.y0 - 1 <= e.y0 and e.y1 <= box.y1 + 1, e
                ordered = sorted(extents, key=(lambda e: e.y0) if vertical else (lambda e: e.x0))
                for a, b in zip(ordered, ordered[1:], strict=False):
                    gap = b.y0 - a.y1 if vertical else b.x0 - a.x1
                    assert gap >= -0.5, (ax.get_title(), [t.get_text() for t in texts])
                if vertical:
                    labels_drawn |= {t.get_text() for t in texts}
        expected = {report._label(r) for r in rep["results"] if r["ratios"]}
        assert expected <= labels_drawn  # full labels, none shortened
        legend_texts = [t.get_text() for leg in fig.legends for t in leg.get_texts()]
        assert len(fig.legends) == 1 and "torch" in legend_texts
        height_in = fig.get_figheight()
        n_rows = max(len(ax.get_yticks()) for ax in fig.get_axes())
        assert height_in >= n_rows * 0.15  # a bar group keeps its height as cases grow
    finally:
        plt.close(fig)
    path = report.plot(rep, str(tmp_path / "p.png"))
    assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_lowp_optimizer_bench_script_smoke(capsys):
    """scripts/bench_lowp_optim.py at a tiny size: every case gets a step time, its state
    bytes and a floor (the floor of the nearest measured state width), and the table prints."""
    import runpy

    pytest.importorskip("torch")
    path = os.path.join(os.path.dirname(__file__), "..", "scripts", "bench_lowp_optim.py")
    mod = runpy.run_path(path)
    rows = mod["run"](1, False, 1, 12)
    assert len(rows) == 22  # 2 dtypes x 2 sets x (5 or 6 cases)
    for r in rows:
        assert r["ms"] > 0 and r["floor_ms"] > 0 and r["bytes"] > 0
        assert r["of_floor"] == pytest.approx(r["floor_ms"] / r["ms"])
    mod["main"](["--log2", "12", "--repeat", "1", "--no-bnb"])
    lines = [x for x in capsys.readouterr().out.splitlines() if x.startswith("| ")]
    assert lines[0].endswith("| floor ms | of floor |") and len(lines) == 23
