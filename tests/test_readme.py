"""Every Python block of README.md runs as written, saved as a script and run by a fresh
interpreter (so ``if __name__ == "__main__":`` guards, imports and module-level code are
exercised as a user meets them). A block that continues an earlier example (names such as
``epochs``, ``batches``, ``torch_model``, ``opt``) gets a short prelude with small data; a
block nobody has given a prelude runs bare. Blocks on CUDA devices run where a GPU is usable."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BLOCKS = re.findall(r"^```python\n(.*?)^```", (ROOT / "README.md").read_text(), re.S | re.M)

#: a line of the block -> code run before it (what the surrounding prose assumes)
PRELUDES = {
    "for epoch in range(epochs):": """
        import numpy as np
        _rng = np.random.default_rng(0)
        epochs = 2
        batches = [
            (_rng.standard_normal((32, 64)).astype(np.float32), _rng.integers(0, 10, 32))
            for _ in range(3)
        ]
        """,
    "opt = fastact.optim.AdamW(torch_model.parameters()": """
        import torch
        import fastact
        torch_model = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.ReLU())
        loss = torch_model(torch.randn(16, 8)).square().mean()
        """,
    "opt.step(grads, skip_nonfinite=True)": """
        import numpy as np
        import fastact
        from fastact.optim.lr_scheduler import LambdaLR
        params = [np.ones(5, np.float32), np.zeros((2, 3), np.float32)]
        opt = fastact.optim.Adam(params, lr=1e-3)
        sched = LambdaLR(opt, lambda epoch: 0.9 ** epoch)
        grads = [np.full(5, 0.1, np.float32), np.full((2, 3), -0.2, np.float32)]
        scale = 1024.0
        """,
}
#: blocks that need a CUDA device, with the prelude that gives them device data
CUDA_PRELUDES = {
    'x = torch.randn(1 << 24, device="cuda")': """
        import torch
        pred, target = torch.randn(1000, device="cuda"), torch.randn(1000, device="cuda")
        params = [torch.randn(257, device="cuda"), torch.randn(3, 4, device="cuda")]
        grads = [torch.randn_like(p) for p in params]
        exp_avgs = [torch.zeros_like(p) for p in params]
        exp_avg_sqs = [torch.zeros_like(p) for p in params]
        t = 1
        """,
}


def _prelude(block: str) -> tuple[str, bool]:
    for key, code in PRELUDES.items():
        if key in block:
            return textwrap.dedent(code), False
    for key, code in CUDA_PRELUDES.items():
        if key in block:
            return textwrap.dedent(code), True
    return "", False


def _cuda_usable() -> bool:
    try:
        import torch

        import fastact.cuda
    except ImportError:
        return False
    return bool(torch.cuda.is_available() and fastact.cuda.is_available())


def test_readme_has_python_blocks():
    assert len(BLOCKS) >= 7
    used = [k for k in (*PRELUDES, *CUDA_PRELUDES) if not any(k in b for b in BLOCKS)]
    assert used == [], f"preludes for blocks no longer in the README: {used}"


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_block_runs_as_a_script(index, tmp_path):
    block = BLOCKS[index]
    prelude, cuda = _prelude(block)
    if cuda and not _cuda_usable():
        pytest.skip("needs a CUDA GPU with numba-cuda (the block allocates torch CUDA tensors)")
    script = tmp_path / f"readme_block_{index}.py"
    script.write_text(prelude + "\n" + block)
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert proc.returncode == 0, f"README block {index}:\n{block}\n{proc.stderr[-4000:]}"


def _load_example(name: str):
    import importlib.util

    path = ROOT / "examples" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_readme_example_{name}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("name", ["train_digits", "dask_preprocess"])
def test_example_help_shows_the_whole_first_paragraph(name, capsys):
    mod = _load_example(name)
    first = " ".join(mod.__doc__.split("\n\n")[0].split())
    with pytest.raises(SystemExit):
        mod.main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert first in out


def test_train_digits_draws_no_bar_into_a_file(tmp_path):
    """Redirected stdout: the log lines only, no tqdm redraws between them."""
    pytest.importorskip("tqdm")
    pytest.importorskip("sklearn")
    out = tmp_path / "log.txt"
    path = str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")
    with open(out, "w") as fh:
        proc = subprocess.run(
            [sys.executable, str(ROOT / "examples" / "train_digits.py"), "--epochs", "2",
             "--out-dir", str(tmp_path)],
            stdout=fh, stderr=subprocess.STDOUT, timeout=300,
            env={**os.environ, "PYTHONPATH": path},
        )  # fmt: skip
    text = out.read_text()
    assert proc.returncode == 0, text
    assert "\r" not in text and "epochs:" not in text and "test accuracy" in text
