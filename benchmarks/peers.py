"""The peers: torch, NumPy and numexpr computing what fastact's suites time, one benchmark per
peer and call kind, with exactly the functions that peer has (no combination that is never
run). The peers are pinned (asv.conf.json), so no fastact commit moves these timings: they
stay on the graphs, as the reference to read fastact's times against (and as a gauge of the
machine's noise), and asv.conf.json keeps this whole suite out of the regression search
(``regressions_first_commits``: ``^peers\\.``).

The calls are the benchmark harness's (``python -m fastact bench``): torch.nn.functional and
the aten backward kernels, NumPy and numexpr formulas; see ``benchmarks/_common.py``.
"""

from __future__ import annotations

from ._common import DTYPES, SIZES, ActivationBench, Timed, functions
from .losses import _LossBench
from .optimizers import CONFIGS as OPTIM_CONFIGS
from .optimizers import SIZES as OPTIM_SIZES
from .optimizers import TORCH_FUSED, _step


class _Peer:
    """The peers are not in the regression search: 2 rounds (asv's default) instead of the 3
    of fastact's suites keep a run shorter."""

    rounds = 2


def _activations(variant: str, lib: str) -> tuple:
    return (functions(variant, lib), DTYPES, SIZES)


class TorchForward(_Peer, ActivationBench):
    """``torch.nn.functional.name(x)`` (torch.sigmoid, torch.tanh, ...)."""

    lib, variant = "torch", "forward"
    params = _activations("forward", "torch")

    def time_forward(self, function, dtype, size):
        self._run()


class TorchBackward(_Peer, ActivationBench):
    """torch's aten backward kernel (``torch.ops.aten.*_backward``; autograd where there is
    none)."""

    lib, variant = "torch", "backward"
    params = _activations("backward", "torch")

    def time_backward(self, function, dtype, size):
        self._run()


class TorchInplace(_Peer, ActivationBench):
    """``F.name(x, inplace=True)`` and friends."""

    lib, variant = "torch", "inplace"
    params = _activations("inplace", "torch")

    def time_inplace(self, function, dtype, size):
        self._run()


class NumpyForward(_Peer, ActivationBench):
    """A NumPy formula of the activation."""

    lib, variant = "numpy", "forward"
    params = _activations("forward", "numpy")

    def time_forward(self, function, dtype, size):
        self._run()


class NumpyBackward(_Peer, ActivationBench):
    """A NumPy formula of the gradient."""

    lib, variant = "numpy", "backward"
    params = _activations("backward", "numpy")

    def time_backward(self, function, dtype, size):
        self._run()


class NumpyInplace(_Peer, ActivationBench):
    """NumPy ufuncs with ``out=`` the input."""

    lib, variant = "numpy", "inplace"
    params = _activations("inplace", "numpy")

    def time_inplace(self, function, dtype, size):
        self._run()


class NumexprForward(_Peer, ActivationBench):
    """``numexpr.evaluate`` of the activation's formula."""

    lib, variant = "numexpr", "forward"
    params = _activations("forward", "numexpr")

    def time_forward(self, function, dtype, size):
        self._run()


class NumexprBackward(_Peer, ActivationBench):
    """``numexpr.evaluate`` of the gradient's formula."""

    lib, variant = "numexpr", "backward"
    params = _activations("backward", "numexpr")

    def time_backward(self, function, dtype, size):
        self._run()


class NumexprInplace(_Peer, ActivationBench):
    """``numexpr.evaluate(..., out=x)``."""

    lib, variant = "numexpr", "inplace"
    params = _activations("inplace", "numexpr")

    def time_inplace(self, function, dtype, size):
        self._run()


class TorchLossValueAndGrad(_Peer, _LossBench):
    """torch.nn.functional's loss (reduction='mean') and ``backward()``."""

    lib = "torch"


class TorchOptimizerStep(_Peer, Timed):
    """One ``step`` of ``torch.optim.<optimizer>``: the default for-loop implementation and
    ``foreach=True``."""

    params = (list(OPTIM_CONFIGS), OPTIM_SIZES, ["for_loop", "foreach"])
    param_names = ["optimizer", "size", "impl"]

    def setup(self, optimizer, size, impl):
        self._use(_step(impl, optimizer, size))

    def time_step(self, optimizer, size, impl):
        self._run()


class TorchFusedOptimizerStep(_Peer, Timed):
    """One ``step`` of ``torch.optim.<optimizer>(fused=True)`` (the optimizers with a fused
    CPU kernel)."""

    params = (TORCH_FUSED, OPTIM_SIZES)
    param_names = ["optimizer", "size"]

    def setup(self, optimizer, size):
        self._use(_step("fused", optimizer, size))

    def time_step(self, optimizer, size):
        self._run()
