"""Training quality of the low-precision states, at a small size (the full comparison is
scripts/lowp_quality.py, whose functions these tests run): the digits trainer reaches the
float32 accuracy with AdamW8bit, and a torch-model twin stays close to float32 AdamW."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import sklearn  # noqa: F401  (the test extra installs it)
import torch


@pytest.fixture(autouse=True)
def _keep_torch_rng():
    """These tests seed torch's global generator: give the next test module its state back."""
    state = torch.get_rng_state()
    yield
    torch.set_rng_state(state)


_SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "lowp_quality.py"


def _quality():
    spec = importlib.util.spec_from_file_location("lowp_quality", _SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_digits_accuracy_with_8bit_states_matches_float32():
    (row,) = _quality().digits(seeds=(0,), epochs=12)
    assert row["AdamW"] > 0.93
    assert abs(row["AdamW8bit"] - row["AdamW"]) <= 0.015


def test_torch_twin_stays_close_to_float32_adamw():
    res = _quality().twin(steps=100, every=25, hidden=64)
    last = res["rows"][-1]
    # float32 rounding noise (torch fused vs fastact) is far below the low-precision deviations
    assert last["torch AdamW fused"] < 1e-3
    assert last["fastact AdamW8bit"] < 0.1
    assert last["fastact AdamW bf16 states"] < 0.1
    ref = last["loss fastact AdamW (reference)"]
    assert abs(last["loss fastact AdamW8bit"] - ref) < 0.05 * max(ref, 0.1)
