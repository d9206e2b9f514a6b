"""fastact inside torch programs (importing this package imports torch; ``import fastact``
does not).

* :mod:`fastact.torch.optim`: fastact's fused optimizers as ``torch.optim.Optimizer``
  subclasses (torch's schedulers, hooks and state dicts work with them unchanged).
* :mod:`fastact.torch.autograd`: every activation and loss of fastact as a
  ``torch.autograd.Function``, with functional wrappers named like ``torch.nn.functional``'s.
* :mod:`fastact.torch.nn`: ``torch.nn.Module``s for every activation and loss, with torch's
  constructor arguments (subclasses of torch's own modules where torch has one).

The plain API (``fastact.relu(tensor)``, ``fastact.losses.*``, ``fastact.optim.functional``)
takes CPU tensors too, without autograd.
"""

from fastact.torch import autograd, nn, optim

__all__ = ["autograd", "nn", "optim"]
