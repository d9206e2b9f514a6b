"""Optimizers: one ``step`` of fastact's fused optimizers against torch.optim's default
(for-loop), ``foreach=True`` and ``fused=True`` (where torch has it on CPU). Skipped for
commits without ``fastact.optim``."""

from __future__ import annotations

import importlib

import numpy as np

from ._common import LARGE_SIZES, require

CONFIGS = {
    "SGD": {"lr": 1e-3, "momentum": 0.9},
    "Adam": {},
    "AdamW": {},
    "Adamax": {},
    "RMSprop": {},
    "Rprop": {},
    "Adagrad": {},
    "Adadelta": {},
}
TORCH_FUSED = ("SGD", "Adam", "AdamW", "Adagrad")
SIZES = LARGE_SIZES


class OptimizerStep:
    """One step on one float32 parameter of ``size`` elements."""

    params = (list(CONFIGS), SIZES, ["fastact", "torch", "torch_foreach", "torch_fused"])
    param_names = ["optimizer", "size", "peer"]
    timeout = 300

    def setup(self, optimizer, size, peer):
        require(peer)
        rng = np.random.default_rng(0)
        p = np.resize(rng.standard_normal(1 << 16), size).astype(np.float32)
        g = (np.resize(rng.standard_normal(1 << 16), size) * 1e-3).astype(np.float32)
        kwargs = CONFIGS[optimizer]
        if peer == "fastact":
            try:
                optim = importlib.import_module("fastact.optim")
                cls = optim.OPTIMIZERS[optimizer]
            except (ImportError, AttributeError, KeyError):
                raise NotImplementedError(f"fastact.optim.{optimizer} is not here") from None
            opt = cls([p], **kwargs)
            self.fn = lambda: opt.step([g])
        else:
            import torch

            if peer == "torch_fused" and optimizer not in TORCH_FUSED:
                raise NotImplementedError(f"torch has no fused CPU {optimizer}")
            flags = {"torch": {"foreach": False}, "torch_foreach": {"foreach": True},
                     "torch_fused": {"fused": True}}[peer]  # fmt: skip
            pt = torch.from_numpy(p).requires_grad_(True)
            pt.grad = torch.from_numpy(g)
            opt = getattr(torch.optim, optimizer)([pt], **kwargs, **flags)
            self.fn = opt.step
        self.fn()

    def time_step(self, optimizer, size, peer):
        self.fn()
