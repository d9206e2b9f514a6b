"""torch.optim-compatible fused optimizers and LR schedulers on NumPy arrays / CPU tensors.

``fastact.optim.Adam(params, ...)`` etc. mirror torch.optim's classes (same signatures,
defaults, update rules and state layout) with one fused parallel kernel per param group;
:mod:`fastact.optim.functional` exposes the kernels for trainers that keep their own state and
:mod:`fastact.optim.lr_scheduler` has torch's schedulers. ``save``/``load`` write and read
checkpoints (state dicts) atomically.
"""

from fastact.optim import functional, lr_scheduler
from fastact.optim.checkpoint import load, save
from fastact.optim.optimizers import (
    OPTIMIZERS,
    OPTIMIZERS_8BIT,
    SGD,
    Adadelta,
    Adagrad,
    Adagrad8bit,
    Adam,
    Adam8bit,
    Adamax,
    AdamW,
    AdamW8bit,
    Optimizer,
    RMSprop,
    RMSprop8bit,
    Rprop,
    SGD8bit,
)

__all__ = [
    "Optimizer",
    "SGD",
    "Adam",
    "AdamW",
    "Adamax",
    "RMSprop",
    "Rprop",
    "Adagrad",
    "Adadelta",
    "SGD8bit",
    "Adam8bit",
    "AdamW8bit",
    "RMSprop8bit",
    "Adagrad8bit",
    "OPTIMIZERS",
    "OPTIMIZERS_8BIT",
    "functional",
    "lr_scheduler",
    "save",
    "load",
]
