"""The command line and the environment variables: a bad setting is reported in one line
(``python -m fastact bench: ...``, exit status 2) before anything runs or is written, never as
a traceback, and ``python -m fastact info`` (the diagnostic command) reports it as a value.
The bench runs here are tiny (``-f relu --sizes 1K --quick --in-process``) or stop before the
first case; no timing assertions."""

from __future__ import annotations

import os
import subprocess
import sys

import fastact
from fastact.bench import cli, harness

ROOT = os.path.dirname(os.path.dirname(fastact.__file__))
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
