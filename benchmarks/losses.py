"""Losses: fastact's fused value-and-gradient (``return_grad=True``); torch's forward plus
autograd backward of the same loss is ``peers.TorchLossValueAndGrad``. Skipped for commits
without ``fastact.losses``."""

from __future__ import annotations

import importlib
import warnings

import numpy as np

from ._common import DTYPES, LARGE_SIZES, Timed, require

#: element-wise losses on (input, target) of one shape, plus cross_entropy on (N, 1000)
LOSSES = [
    "mse_loss",
    "l1_loss",
    "smooth_l1_loss",
    "huber_loss",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "soft_margin_loss",
    "kl_div",
    "poisson_nll_loss",
    "cross_entropy",
]
SIZES = LARGE_SIZES
CLASSES = 1000

# kl_div's reduction='mean' (the default, timed here) warns on every call, in torch and in
# fastact alike: keep the benchmarks' stderr for real problems
warnings.filterwarnings("ignore", message="reduction: 'mean' divides", category=UserWarning)


def _inputs(name: str, n: int, dtype: str):
    rng = np.random.default_rng(0)
    block = min(n, 1 << 16)

    def tile(a):
        return np.resize(a, n).astype(dtype)

    x = tile(rng.standard_normal(block))
    if name == "cross_entropy":
        rows = max(1, n // CLASSES)
        logits = x[: rows * CLASSES].reshape(rows, CLASSES)
        return logits, rng.integers(0, CLASSES, rows)
    if name == "binary_cross_entropy":
        return 1 / (1 + np.exp(-x)), tile(rng.uniform(0, 1, block))
    if name == "binary_cross_entropy_with_logits":
        return x, tile(rng.uniform(0, 1, block))
    if name == "soft_margin_loss":
        return x, tile(np.sign(rng.standard_normal(block)))
    if name == "kl_div":
        return -np.abs(x), tile(rng.uniform(0, 1, block))
    if name == "poisson_nll_loss":
        return x, tile(rng.poisson(2.0, block))
    return x, tile(rng.standard_normal(block))


_calls: dict[tuple, object] = {}


def _call(lib: str, loss: str, dtype: str, size: int):
    """One loss value and its gradient w.r.t. the input, by ``lib`` (cached per process)."""
    key = (lib, loss, dtype, size)
    if key in _calls:
        return _calls[key]
    require(lib)
    x, t = _inputs(loss, size, dtype)
    if lib == "fastact":
        try:
            losses = importlib.import_module("fastact.losses")
        except ImportError:
            raise NotImplementedError("fastact.losses is not in this commit") from None
        if not hasattr(losses, loss):
            raise NotImplementedError(f"fastact.losses.{loss} is not in this commit")
        f = getattr(losses, loss)

        def fn():
            return f(x, t, return_grad=True)

    else:
        import torch
        import torch.nn.functional as F

        xt = torch.from_numpy(x).requires_grad_(True)
        tt = torch.from_numpy(t)
        tf = getattr(F, loss)

        def fn():
            xt.grad = None
            tf(xt, tt).backward()

    fn()  # warm
    _calls[key] = fn
    return fn


class _LossBench(Timed):
    lib = "fastact"
    params = (LOSSES, DTYPES, SIZES)
    param_names = ["loss", "dtype", "size"]

    def setup(self, loss, dtype, size):
        self._use(_call(self.lib, loss, dtype, size))

    def time_value_and_grad(self, loss, dtype, size):
        self._run()


class LossValueAndGrad(_LossBench):
    """One loss value and its gradient w.r.t. the input (reduction='mean')."""

    lib = "fastact"
