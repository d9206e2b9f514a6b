"""What the benchmark compares fastact with: torch's kernels, NumPy and numexpr formulas.

The NumPy formulas are the straightforward expressions a NumPy user would write; they double
as references (``tests/test_bench.py`` checks that every peer computes what fastact computes):

* activations: :func:`np_forward` / :func:`np_backward` / :func:`np_inplace` (a callable
  for one input, or None where no plain formula exists);
* losses: :data:`NP_LOSSES`, ``name -> f(*inputs) -> (loss, gradient or tuple of
  gradients)`` with torch's defaults and ``reduction='mean'`` (``kl_div``: ``'batchmean'``);
* numexpr: :data:`NE_FORWARD` / :data:`NE_BACKWARD` expressions in ``x`` (and ``g``).

torch: :func:`torch_forward` (the functional call) and :func:`torch_backward` (the aten
backward kernel autograd would run, without autograd's bookkeeping).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = [
    "NE_BACKWARD",
    "NE_FORWARD",
    "NP_INPLACE",
    "NP_LOSSES",
    "np_backward",
    "np_forward",
    "np_inplace",
    "torch_backward",
    "torch_forward",
]

_SELU_ALPHA = 1.6732632423543772
_SELU_SCALE = 1.0507009873554805


# ============================================================================ torch
def torch_forward(name: str) -> Callable:
    """torch's functional form of an element-wise activation (``gelu_tanh``: tanh gelu)."""
    import torch
    import torch.nn.functional as F

    if name in ("sigmoid", "tanh"):
        return getattr(torch, name)
    if name == "gelu_tanh":
        return functools.partial(F.gelu, approximate="tanh")
    return getattr(F, name)


def torch_backward(name: str, gt: Any, xt: Any, yt: Any, p: tuple) -> Callable | None:
    """torch's backward kernel of an activation (aten, no autograd) bound to its tensors, or
    None where there is none (the caller falls back to autograd). ``gt``: the output's
    gradient, ``xt``: the input, ``yt``: the forward's output, ``p``: the parameters."""
    import torch

    a = torch.ops.aten
    table: dict[str, Callable[[], Any]] = {
        "sigmoid": lambda: functools.partial(a.sigmoid_backward, gt, yt),
        "tanh": lambda: functools.partial(a.tanh_backward, gt, yt),
        "relu": lambda: functools.partial(a.threshold_backward, gt, yt, 0),
        "leaky_relu": lambda: functools.partial(a.leaky_relu_backward, gt, xt, p[0], False),
        "hardtanh": lambda: functools.partial(a.hardtanh_backward, gt, xt, p[0], p[1]),
        "relu6": lambda: functools.partial(a.hardtanh_backward, gt, xt, 0.0, 6.0),
        "elu": lambda: functools.partial(a.elu_backward, gt, p[0], 1.0, 1.0, False, xt),
        "celu": lambda: functools.partial(a.elu_backward, gt, p[0], 1.0, 1.0 / p[0], False, xt),
        "selu": lambda: functools.partial(
            a.elu_backward, gt, _SELU_ALPHA, _SELU_SCALE, 1.0, False, xt
        ),
        "softplus": lambda: functools.partial(a.softplus_backward, gt, xt, p[0], p[1]),
        "logsigmoid": lambda: functools.partial(
            a.log_sigmoid_backward, gt, xt, a.log_sigmoid_forward(xt)[1]
        ),
        "silu": lambda: functools.partial(a.silu_backward, gt, xt),
        "mish": lambda: functools.partial(a.mish_backward, gt, xt),
        "gelu": lambda: functools.partial(a.gelu_backward, gt, xt, approximate="none"),
        "gelu_tanh": lambda: functools.partial(a.gelu_backward, gt, xt, approximate="tanh"),
        "hardsigmoid": lambda: functools.partial(a.hardsigmoid_backward, gt, xt),
        "hardswish": lambda: functools.partial(a.hardswish_backward, gt, xt),
        "softshrink": lambda: functools.partial(a.softshrink_backward, gt, xt, p[0]),
        "hardshrink": lambda: functools.partial(a.hardshrink_backward, gt, xt, p[0]),
        "threshold": lambda: functools.partial(a.threshold_backward, gt, xt, p[0]),
        "softmax": lambda: functools.partial(a._softmax_backward_data, gt, yt, -1, xt.dtype),
        "log_softmax": lambda: functools.partial(
            a._log_softmax_backward_data, gt, yt, -1, xt.dtype
        ),
        "glu": lambda: functools.partial(a.glu_backward, gt, xt, -1),
        "rrelu": lambda: functools.partial(
            a.leaky_relu_backward, gt, xt, (0.125 + 1 / 3) / 2, False
        ),
    }
    make = table.get(name)
    if make is None:
        return None
    try:
        return make()
    except (AttributeError, RuntimeError):
        return None


# ============================================================================ NumPy: activations
def _sigmoid(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return 1 / (1 + np.exp(-x))


def _softmax(x: np.ndarray, sign: int = 1) -> np.ndarray:
    z = x if sign > 0 else -x
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _log_softmax(x: np.ndarray) -> np.ndarray:
    z = x - x.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def _elementwise_forward(name: str, x: np.ndarray, p: tuple) -> Callable[[], Any] | None:
    t = x.dtype.type
    table: dict[str, Callable[[], Any]] = {
        "sigmoid": lambda: _sigmoid(x),
        "tanh": lambda: np.tanh(x),
        "relu": lambda: np.maximum(x, 0),
        "leaky_relu": lambda: np.where(x > 0, x, x * t(p[0])),
        "hardtanh": lambda: np.clip(x, t(p[0]), t(p[1])),
        "relu6": lambda: np.clip(x, 0, 6),
        "elu": lambda: np.where(x > 0, x, t(p[0]) * np.expm1(x)),
        "celu": lambda: np.where(x > 0, x, t(p[0]) * np.expm1(x / t(p[0]))),
        "selu": lambda: t(_SELU_SCALE) * np.where(x > 0, x, t(_SELU_ALPHA) * np.expm1(x)),
        "softplus": lambda: np.where(
            x * t(p[0]) > t(p[1]), x, np.logaddexp(0, x * t(p[0])) / t(p[0])
        ),
        "logsigmoid": lambda: -np.logaddexp(0, -x),
        "silu": lambda: x * _sigmoid(x),
        "mish": lambda: x * np.tanh(np.logaddexp(0, x)),
        "gelu_tanh": lambda: (
            t(0.5) * x * (1 + np.tanh(t(0.7978845608028654) * (x + t(0.044715) * x * x * x)))
        ),
        "hardsigmoid": lambda: np.clip(x / 6 + t(0.5), 0, 1),
        "hardswish": lambda: x * np.clip(x + 3, 0, 6) / 6,
        "softsign": lambda: x / (1 + np.abs(x)),
        "tanhshrink": lambda: x - np.tanh(x),
        "softshrink": lambda: np.where(
            x > t(p[0]), x - t(p[0]), np.where(x < -t(p[0]), x + t(p[0]), 0)
        ),
        "hardshrink": lambda: np.where(np.abs(x) > t(p[0]), x, 0),
        "threshold": lambda: np.where(x > t(p[0]), x, t(p[1])),
    }
    return table.get(name)


def np_forward(name: str, x: np.ndarray, p: tuple = ()) -> Callable[[], Any] | None:
    """A NumPy forward of activation ``name`` on ``x`` (parameters ``p``; the axis ones along
    the last axis, prelu/maxout along dim 1 with the bench's weights), or None."""
    t = x.dtype.type
    if name == "softmax":
        return lambda: _softmax(x)
    if name == "softmin":
        return lambda: _softmax(x, -1)
    if name == "log_softmax":
        return lambda: _log_softmax(x)
    if name == "glu":
        h = x.shape[-1] // 2
        return lambda: x[..., :h] * _sigmoid(x[..., h:])
    if name == "prelu":
        w = prelu_weight(x)[:, None]
        return lambda: np.where(x > 0, x, w * x)
    if name == "maxout":
        rows, cols = x.shape
        return lambda: x.reshape(rows, cols // 4, 4).max(-1)
    if name == "rrelu":  # eval mode: the mean slope
        s = t((0.125 + 1 / 3) / 2)
        return lambda: np.where(x > 0, x, x * s)
    return _elementwise_forward(name, x, p)


def prelu_weight(x: np.ndarray) -> np.ndarray:
    """The PReLU slopes the benchmark uses: one per channel (dim 1), from 0.05 to 0.3."""
    return np.linspace(0.05, 0.3, x.shape[1]).astype(x.dtype)


def np_backward(name: str, g: np.ndarray, x: np.ndarray, p: tuple = ()) -> Callable | None:
    """A NumPy gradient of activation ``name``, or None. For sigmoid, tanh, relu, softmax and
    log_softmax (gradient from the forward's output, like torch) the result takes the output:
    ``f(y)``; otherwise it takes nothing: ``f()``."""
    t = x.dtype.type

    def softplus_grad():
        z = x * t(p[0])
        return np.where(z > t(p[1]), g, g * _sigmoid(z))

    def silu_grad():
        s = _sigmoid(x)
        return g * s * (1 + x * (1 - s))

    from_output: dict[str, Callable[[Any], Any]] = {
        "sigmoid": lambda y: g * y * (1 - y),
        "tanh": lambda y: g * (1 - y * y),
        "relu": lambda y: np.where(y > 0, g, 0),
        "softmax": lambda y: y * (g - (g * y).sum(-1, keepdims=True)),
        "log_softmax": lambda y: g - np.exp(y) * g.sum(-1, keepdims=True),
    }
    if name in from_output:
        return from_output[name]
    table: dict[str, Callable[[], Any]] = {
        "leaky_relu": lambda: np.where(x > 0, g, g * t(p[0])),
        "hardtanh": lambda: np.where((x > t(p[0])) & (x < t(p[1])), g, 0),
        "relu6": lambda: np.where((x > 0) & (x < 6), g, 0),
        "elu": lambda: np.where(x > 0, g, g * t(p[0]) * np.exp(x)),
        "softplus": softplus_grad,
        "silu": silu_grad,
        "softsign": lambda: g / np.square(1 + np.abs(x)),
        "hardsigmoid": lambda: np.where((x > -3) & (x < 3), g / 6, 0),
        "threshold": lambda: np.where(x > t(p[0]), g, 0),
    }
    return table.get(name)


#: Activations with an in-place NumPy formula (``out=`` ufuncs on the buffer).
NP_INPLACE = frozenset(
    {"relu", "relu6", "hardtanh", "leaky_relu", "threshold", "hardsigmoid", "elu", "silu"}
)


def np_inplace(name: str, b: np.ndarray, p: tuple = ()) -> Callable[[], Any] | None:
    """An in-place NumPy formula of activation ``name`` on buffer ``b``, or None."""
    t = b.dtype.type

    def leaky():
        np.multiply(b, t(p[0]), out=b, where=b < 0)

    def hardsigmoid():
        np.divide(b, 6, out=b)
        np.add(b, t(0.5), out=b)
        np.clip(b, 0, 1, out=b)

    def elu():
        m = b < 0
        np.expm1(b, out=b, where=m)
        if p[0] != 1.0:
            np.multiply(b, t(p[0]), out=b, where=m)

    def silu():
        np.multiply(b, _sigmoid(b), out=b)

    table: dict[str, Callable[[], Any]] = {
        "relu": lambda: np.maximum(b, 0, out=b),
        "relu6": lambda: np.clip(b, 0, 6, out=b),
        "hardtanh": lambda: np.clip(b, t(p[0]), t(p[1]), out=b),
        "leaky_relu": leaky,
        "threshold": lambda: np.putmask(b, b <= t(p[0]), t(p[1])),
        "hardsigmoid": hardsigmoid,
        "elu": elu,
        "silu": silu,
    }
    return table.get(name)


# ============================================================================ numexpr
#: Expressions in x; float constants are passed as variables of the array's dtype (numexpr
#: turns float literals into float64 and would upcast float32 arrays). ``p0``, ``p1``: the
#: activation's parameters.
NE_FORWARD: dict[str, tuple[str, dict[str, float]]] = {
    "sigmoid": ("1 / (1 + exp(-x))", {}),
    "tanh": ("tanh(x)", {}),
    "relu": ("where(x > 0, x, 0)", {}),
    "leaky_relu": ("where(x > 0, x, x * p0)", {}),
    "hardtanh": ("where(x < p0, p0, where(x > p1, p1, x))", {}),
    "relu6": ("where(x < 0, 0, where(x > 6, 6, x))", {}),
    "elu": ("where(x > 0, x, p0 * expm1(x))", {}),
    "celu": ("where(x > 0, x, p0 * expm1(x / p0))", {}),
    "selu": ("where(x > 0, s * x, s * a * expm1(x))", {"s": _SELU_SCALE, "a": _SELU_ALPHA}),
    "softplus": ("where(x * p0 > p1, x, log1p(exp(x * p0)) / p0)", {}),
    "logsigmoid": ("-log1p(exp(-x))", {}),
    "silu": ("x / (1 + exp(-x))", {}),
    "mish": ("x * tanh(log1p(exp(x)))", {}),
    "gelu_tanh": (
        "h * x * (1 + tanh(c * (x + k * x * x * x)))",
        {"h": 0.5, "c": 0.7978845608028654, "k": 0.044715},
    ),
    "hardsigmoid": ("where(x < -3, 0, where(x > 3, 1, x / 6 + h))", {"h": 0.5}),
    "hardswish": ("where(x < -3, 0, where(x > 3, x, x * (x + 3) / 6))", {}),
    "softsign": ("x / (1 + abs(x))", {}),
    "tanhshrink": ("x - tanh(x)", {}),
    "softshrink": ("where(x > p0, x - p0, where(x < -p0, x + p0, 0))", {}),
    "hardshrink": ("where(abs(x) > p0, x, 0)", {}),
    "threshold": ("where(x > p0, x, p1)", {}),
}
#: Gradient expressions in x and g; for sigmoid, tanh and relu ``x`` holds the forward's
#: output (like torch).
NE_BACKWARD: dict[str, str] = {
    "sigmoid": "g * x * (1 - x)",
    "tanh": "g * (1 - x * x)",
    "relu": "where(x > 0, g, 0)",
    "leaky_relu": "where(x > 0, g, g * p0)",
    "hardtanh": "where((x > p0) & (x < p1), g, 0)",
    "relu6": "where((x > 0) & (x < 6), g, 0)",
    "elu": "where(x > 0, g, g * p0 * exp(x))",
    "softplus": "where(x * p0 > p1, g, g / (1 + exp(-x * p0)))",
    "silu": "g / (1 + exp(-x)) * (1 + x * (1 - 1 / (1 + exp(-x))))",
    "softsign": "g / ((1 + abs(x)) * (1 + abs(x)))",
    "hardsigmoid": "where((x > -3) & (x < 3), g / 6, 0)",
    "threshold": "where(x > p0, g, 0)",
}


# ============================================================================ NumPy: losses
# loss + gradient with torch's defaults and reduction='mean'; constants in the inputs' dtype
def _scale(x: np.ndarray, n: int) -> Any:
    return x.dtype.type(1.0 / n)


def _np_mse(x, t):
    d = x - t
    return np.mean(d * d), d * (2 * _scale(d, d.size))


def _np_l1(x, t):
    d = x - t
    return np.mean(np.abs(d)), np.sign(d) * _scale(d, d.size)


def _np_smooth_l1(x, t):
    d = x - t
    ad = np.abs(d)
    small = ad < 1
    loss = np.mean(np.where(small, 0.5 * d * d, ad - 0.5))
    return loss, np.where(small, d, np.sign(d)) * _scale(d, d.size)


def _np_bce(p, t):
    lp = np.maximum(np.log(p), -100)
    l1p = np.maximum(np.log1p(-p), -100)
    loss = np.mean((t - 1) * l1p - t * lp)
    eps = p.dtype.type(1e-12)
    return loss, (p - t) / np.maximum((1 - p) * p, eps) * _scale(p, p.size)


def _np_bce_logits(x, t):
    loss = np.mean((1 - t) * x + np.logaddexp(0, -x))
    return loss, (_sigmoid(x) - t) * _scale(x, x.size)


def _np_kl_batchmean(x, t):
    loss = np.sum(t * (np.log(t) - x)) / x.shape[0]
    return loss, -t * _scale(x, x.shape[0])


def _np_poisson(x, t):
    ex = np.exp(x)
    return np.mean(ex - t * x), (ex - t) * _scale(x, x.size)


def _np_gaussian(x, t, v):
    v = np.maximum(v, v.dtype.type(1e-6))
    d = x - t
    q = d / v
    s = _scale(x, x.size)
    return np.mean(0.5 * (np.log(v) + d * q)), (q * s, 0.5 * (1 / v - q * q) * s)


def _np_soft_margin(x, y):
    z = -y * x
    return np.mean(np.logaddexp(0, z)), -y * _sigmoid(z) * _scale(x, x.size)


def _np_margin_ranking(x1, x2, y):
    z = -y * (x1 - x2)
    act = z >= 0
    s = _scale(x1, x1.size)
    zero = x1.dtype.type(0)
    return np.mean(np.maximum(z, 0)), (np.where(act, -y, zero) * s, np.where(act, y, zero) * s)


def _np_hinge(x, y):
    mc = 1 - x
    loss = np.mean(np.where(y == 1, x, np.maximum(mc, 0)))
    g = np.where(y == 1, 1, np.where(mc >= 0, -1, 0)).astype(x.dtype)
    return loss, g * _scale(x, x.size)


def _np_cross_entropy(x, y):
    m = x.max(1, keepdims=True)
    e = np.exp(x - m)
    s = e.sum(1, keepdims=True)
    rows = np.arange(x.shape[0])
    loss = np.mean(np.log(s[:, 0]) + m[:, 0] - x[rows, y])
    g = e / s
    g[rows, y] -= 1
    return loss, g * _scale(x, x.shape[0])


def _np_nll(x, y):
    rows = np.arange(x.shape[0])
    g = np.zeros_like(x)
    g[rows, y] = -_scale(x, x.shape[0])
    return -np.mean(x[rows, y]), g


def _np_multilabel(x, t):
    loss = np.mean((1 - t) * x + np.logaddexp(0, -x))
    return loss, (_sigmoid(x) - t) * _scale(x, x.size)


def _np_cosine(x1, x2, y):
    eps = 1e-12
    dot = np.sum(x1 * x2, 1)
    a = np.sum(x1 * x1, 1) + eps
    b = np.sum(x2 * x2, 1) + eps
    den = np.sqrt(a * b)
    cos = dot / den
    pos = y == 1
    loss = np.mean(np.where(pos, 1 - cos, np.maximum(cos, 0)))
    dl = np.where(pos, -1.0, (cos >= 0).astype(np.float64)) / x1.shape[0]
    g1 = (dl / den)[:, None] * x2 - (dl * cos / a)[:, None] * x1
    g2 = (dl / den)[:, None] * x1 - (dl * cos / b)[:, None] * x2
    return loss, (g1.astype(x1.dtype), g2.astype(x1.dtype))


def _np_triplet(a, p, n):
    eps = a.dtype.type(1e-6)
    up = a - p + eps
    un = a - n + eps
    dp = np.sqrt(np.sum(up * up, 1))
    dn = np.sqrt(np.sum(un * un, 1))
    z = 1.0 + dp - dn
    act = (z >= 0) * _scale(a, a.shape[0])
    gp = up * (act / dp)[:, None]
    gn = un * (act / dn)[:, None]
    return np.mean(np.maximum(z, 0)), (gp - gn, -gp, gn)


#: Loss name -> NumPy ``f(*inputs) -> (loss, gradient or tuple of gradients)`` (mean reduction,
#: torch's defaults; kl_div with reduction='batchmean'; huber_loss with delta=1, i.e.
#: smooth_l1_loss). Gradients are with respect to the differentiable inputs in order.
NP_LOSSES: dict[str, Callable[..., tuple[Any, Any]]] = {
    "mse_loss": _np_mse,
    "l1_loss": _np_l1,
    "smooth_l1_loss": _np_smooth_l1,
    "huber_loss": _np_smooth_l1,
    "binary_cross_entropy": _np_bce,
    "binary_cross_entropy_with_logits": _np_bce_logits,
    "kl_div": _np_kl_batchmean,
    "poisson_nll_loss": _np_poisson,
    "gaussian_nll_loss": _np_gaussian,
    "soft_margin_loss": _np_soft_margin,
    "margin_ranking_loss": _np_margin_ranking,
    "hinge_embedding_loss": _np_hinge,
    "cross_entropy": _np_cross_entropy,
    "nll_loss": _np_nll,
    "multilabel_soft_margin_loss": _np_multilabel,
    "cosine_embedding_loss": _np_cosine,
    "triplet_margin_loss": _np_triplet,
}
