"""A fresh Python process running a snippet against this checkout (tests of settings read
once per process: environment variables, the compile cache's key)."""

from __future__ import annotations

import os
import subprocess
import sys

import fastact

ROOT = os.path.dirname(os.path.dirname(fastact.__file__))


def run_code(code: str, **env: str) -> subprocess.CompletedProcess:
    """``python -c code`` with this checkout first on the path, FASTACT_VECTOR_WIDTH unset
    unless ``env`` sets it, and ``env`` added."""
    e = {k: v for k, v in os.environ.items() if k != "FASTACT_VECTOR_WIDTH"}
    e["PYTHONPATH"] = ROOT + os.pathsep + e.get("PYTHONPATH", "")
    e.update(env)
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=e
    )
