"""Optimizers: one ``step`` of fastact's fused optimizers; torch.optim's for-loop, foreach and
fused steps are in ``peers``. Skipped for commits without ``fastact.optim``."""

from __future__ import annotations

import importlib

import numpy as np

from ._common import LARGE_SIZES, Timed, require

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
#: torch.optim classes with a fused CPU step
TORCH_FUSED = ["SGD", "Adam", "AdamW", "Adagrad"]
SIZES = LARGE_SIZES
#: torch.optim flags of each torch implementation
TORCH_IMPLS = {
    "for_loop": {"foreach": False},
    "foreach": {"foreach": True},
    "fused": {"fused": True},
}

_steps: dict[tuple, object] = {}


def _step(impl: str, optimizer: str, size: int):
    """One step on one float32 parameter of ``size`` elements: ``impl`` is "fastact" or one
    of :data:`TORCH_IMPLS` (cached per process, run once)."""
    key = (impl, optimizer, size)
    if key in _steps:
        return _steps[key]
    rng = np.random.default_rng(0)
    p = np.resize(rng.standard_normal(1 << 16), size).astype(np.float32)
    g = (np.resize(rng.standard_normal(1 << 16), size) * 1e-3).astype(np.float32)
    kwargs = CONFIGS[optimizer]
    if impl == "fastact":
        try:
            optim = importlib.import_module("fastact.optim")
            cls = optim.OPTIMIZERS[optimizer]
        except (ImportError, AttributeError, KeyError):
            raise NotImplementedError(f"fastact.optim.{optimizer} is not here") from None
        opt = cls([p], **kwargs)

        def fn():
            opt.step([g])

    else:
        require("torch")
        import torch

        pt = torch.from_numpy(p).requires_grad_(True)
        pt.grad = torch.from_numpy(g)
        fn = getattr(torch.optim, optimizer)([pt], **kwargs, **TORCH_IMPLS[impl]).step
    fn()
    _steps[key] = fn
    return fn


class OptimizerStep(Timed):
    """One ``step`` of ``fastact.optim.<optimizer>`` on one float32 parameter."""

    params = (list(CONFIGS), SIZES)
    param_names = ["optimizer", "size"]

    def setup(self, optimizer, size):
        self._use(_step("fastact", optimizer, size))

    def time_step(self, optimizer, size):
        self._run()
