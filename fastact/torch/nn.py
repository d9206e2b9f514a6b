"""``torch.nn.Module``s for every activation and loss of fastact, computed by fastact's kernels
through the autograd Functions of :mod:`fastact.torch.autograd`.

Where torch has the module, fastact's is a subclass of it that only replaces ``forward``:
constructor arguments, defaults, attributes, buffers (a loss's ``weight``), ``extra_repr``
and ``state_dict`` are torch's, so ``fastact.torch.nn.GELU()`` goes wherever a
``torch.nn.GELU()`` goes (``nn.Sequential``, ``isinstance`` checks, a saved state dict).
``inplace=True`` works in place. :class:`Maxout` has no torch module.

:func:`convert` swaps the class of every torch activation and loss module in a model for
fastact's, in place (the modules keep their parameters and state)::

    model = fastact.torch.nn.convert(model)
"""

from __future__ import annotations

import inspect
from typing import Any

import torch

from fastact.activations import MODULE_FUNCTIONS
from fastact.kernels.losses import LOSSES
from fastact.torch import autograd as AF

__all__ = ["Maxout", "Softmax2d", "convert", "ACTIVATION_MODULES", "LOSS_MODULES"]

#: torch module -> the functional of fastact.torch.autograd its forward calls
_ELEMENTWISE = {
    **MODULE_FUNCTIONS,
    "GELU": "gelu",
    "GLU": "glu",
    "PReLU": "prelu",
}


def _module(name: str, fname: str) -> type:
    """A subclass of ``torch.nn.<name>`` whose forward is ``fastact.torch.autograd.<fname>``
    with the module's attributes of the functional's parameter names."""
    base = getattr(torch.nn, name)
    fn = getattr(AF, fname)
    params = list(inspect.signature(fn).parameters)[1:]
    args = "".join(f", self.{p}" for p in params)
    ns: dict[str, Any] = {"_fn": fn}
    exec(f"def forward(self, input):\n    return _fn(input{args})\n", ns)
    forward = ns["forward"]
    forward.__doc__ = f"``{fname}(input{args.replace('self.', '')})`` by fastact's kernels."
    doc = (
        f"``torch.nn.{name}`` computed by fastact (:func:`fastact.torch.autograd.{fname}`): "
        f"same constructor, attributes and state; see torch's documentation."
    )
    return type(name, (base,), {"forward": forward, "__doc__": doc, "__module__": __name__})


for _name, _fname in _ELEMENTWISE.items():
    globals()[_name] = _module(_name, _fname)
    __all__.append(_name)


class RReLU(torch.nn.RReLU):
    """``torch.nn.RReLU`` computed by fastact: in ``train()`` a random slope per element
    (fastact's generator, keyed from torch's), in ``eval()`` the mean slope."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return AF.rrelu(input, self.lower, self.upper, self.training, self.inplace)


def _softmax_module(name: str, fname: str) -> type:
    fn = getattr(AF, fname)

    def forward(self: Any, input: torch.Tensor) -> torch.Tensor:
        return fn(input, self.dim, _stacklevel=5)

    doc = f"``torch.nn.{name}`` computed by fastact (:func:`fastact.torch.autograd.{fname}`)."
    body = {"forward": forward, "__doc__": doc, "__module__": __name__}
    return type(name, (getattr(torch.nn, name),), body)


Softmax = _softmax_module("Softmax", "softmax")
LogSoftmax = _softmax_module("LogSoftmax", "log_softmax")
Softmin = _softmax_module("Softmin", "softmin")
__all__ += ["RReLU", "Softmax", "LogSoftmax", "Softmin"]


class Softmax2d(torch.nn.Softmax2d):
    """``torch.nn.Softmax2d`` (softmax over the channels of (C, H, W) or (N, C, H, W))
    computed by fastact."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if input.dim() not in (3, 4):
            raise ValueError(
                f"Softmax2d: expected input to be 3D or 4D, got {input.dim()}D instead"
            )
        return AF.softmax(input, -3, _stacklevel=5)


class Maxout(torch.nn.Module):
    """The maximum over each group of ``pieces`` consecutive channels along ``dim`` (torch has
    no module: :func:`fastact.maxout` documents the convention)."""

    def __init__(self, pieces: int, dim: int = 1) -> None:
        super().__init__()
        if isinstance(pieces, bool) or int(pieces) != pieces or int(pieces) < 1:
            raise ValueError(f"pieces must be a positive int, got {pieces!r}")
        self.pieces = int(pieces)
        self.dim = dim

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return AF.maxout(input, self.pieces, self.dim)

    def extra_repr(self) -> str:
        return f"pieces={self.pieces}, dim={self.dim}"


#: torch.nn activation class name -> fastact.torch.nn class (Maxout: fastact's only).
ACTIVATION_MODULES: dict[str, type] = {
    n: globals()[n]
    for n in [*_ELEMENTWISE, "RReLU", "Softmax", "LogSoftmax", "Softmin", "Softmax2d", "Maxout"]
}


# ----------------------------------------------------------------------------- losses
def _loss_module(name: str, fname: str) -> type:
    """A subclass of ``torch.nn.<name>`` whose forward calls the fastact.torch functional
    with the module's options (the functional's keyword parameters the module has)."""
    base = getattr(torch.nn, name)
    fn = getattr(AF, fname)
    sig = inspect.signature(fn)
    data = [
        n
        for n, p in sig.parameters.items()
        if p.default is inspect.Parameter.empty and p.kind is p.POSITIONAL_OR_KEYWORD
    ]
    probe = base()
    options = [
        n
        for n in sig.parameters
        if n not in data and n not in ("size_average", "reduce") and hasattr(probe, n)
    ]
    args = ", ".join(data)
    kw = "".join(f", {o}=self.{o}" for o in options)
    ns: dict[str, Any] = {"_fn": fn}
    exec(f"def forward(self, {args}):\n    return _fn({args}{kw})\n", ns)
    doc = (
        f"``torch.nn.{name}`` computed by fastact (:func:`fastact.torch.autograd.{fname}`: "
        "value and gradient in one pass): same constructor, options and buffers."
    )
    return type(name, (base,), {"forward": ns["forward"], "__doc__": doc, "__module__": __name__})


#: torch.nn loss class name -> fastact.torch.nn class.
LOSS_MODULES: dict[str, type] = {}
for _spec in LOSSES.values():
    LOSS_MODULES[_spec.module] = globals()[_spec.module] = _loss_module(_spec.module, _spec.name)
    __all__.append(_spec.module)
del _name, _fname, _spec

_BY_TORCH = {
    getattr(torch.nn, n): c
    for n, c in {**ACTIVATION_MODULES, **LOSS_MODULES}.items()
    if hasattr(torch.nn, n)
}


def convert(module: torch.nn.Module) -> torch.nn.Module:
    """Make every submodule whose class is exactly a torch activation or loss module (ReLU,
    GELU, CrossEntropyLoss, ...) an instance of fastact's subclass, in place; returns
    ``module``. Parameters, buffers, hooks and state stay as they are (the classes differ
    only in ``forward``)."""
    for m in module.modules():
        cls = _BY_TORCH.get(type(m))
        if cls is not None:
            m.__class__ = cls
    return module
