"""Losses: fastact's fused value-and-gradient (``return_grad=True``) against torch's forward
plus autograd backward. Skipped for commits without ``fastact.losses``."""

from __future__ import annotations

import importlib

import numpy as np

from ._common import DTYPES, LARGE_SIZES, require

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


class LossValueAndGrad:
    """One loss value and its gradient w.r.t. the input (reduction='mean')."""

    params = (LOSSES, DTYPES, SIZES, ["fastact", "torch"])
    param_names = ["loss", "dtype", "size", "peer"]
    timeout = 300

    def setup(self, loss, dtype, size, peer):
        require(peer)
        try:
            losses = importlib.import_module("fastact.losses")
        except ImportError:
            raise NotImplementedError("fastact.losses is not in this commit") from None
        if not hasattr(losses, loss):
            raise NotImplementedError(f"fastact.losses.{loss} is not in this commit")
        x, t = _inputs(loss, size, dtype)
        if peer == "fastact":
            f = getattr(losses, loss)
            self.fn = lambda: f(x, t, return_grad=True)
        else:
            import torch
            import torch.nn.functional as F

            xt = torch.from_numpy(x).requires_grad_(True)
            tt = torch.from_numpy(t)
            f = getattr(F, loss)

            def fn():
                xt.grad = None
                f(xt, tt).backward()

            self.fn = fn
        self.fn()

    def time_value_and_grad(self, loss, dtype, size, peer):
        self.fn()
