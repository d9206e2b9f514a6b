"""``python -m fastact bench``: fastact against torch, NumPy and numexpr on this machine.

For every benchmark case (an activation's forward, backward or in-place call at one size and
dtype, plus the losses and optimizers of :mod:`fastact.bench_losses` and
:mod:`fastact.bench_optim`) the harness prints the median time of fastact and of each peer
library that is installed, the ratio ``peer time / fastact time`` (above 1: fastact is faster)
and the fraction of the memory-bandwidth roofline that fastact reaches: the bytes the call must
move divided by the bandwidth of a streaming copy (out-of-place calls) or of a streaming
read-modify-write (in-place calls) of the same size, both measured in the same run.

Isolation. Each library is timed in its own process (``multiprocessing`` with the ``spawn``
start method), one after the other, with its thread pool set to ``--threads`` before anything
runs (``numba.set_num_threads``, ``torch.set_num_threads``, ``numexpr.set_num_threads`` and the
``*_NUM_THREADS`` variables). So torch's OpenMP threads, which spin for a while after each
parallel region, never share the cores with fastact's timings, and no library inherits another
one's warm pools. ``isolate=False`` (used by the tests) runs the same blocks in this process,
still one library at a time and each warmed before it is timed.

Timing. Each measurement calls the function once untimed (JIT compilation, first-touch), then
takes samples of ``number`` back-to-back calls (``number`` chosen so a sample lasts about
0.1 ms, 1 for large arrays) with the garbage collector off; the median per-call time of the
samples is reported. The number of samples is budgeted by the call's duration: many samples for
microsecond calls, at least 5 (3 for calls above 20 ms) for large arrays; a peer's first call
above 20 ms counts as a sample (nothing compiles there). In-place calls are timed one call per
sample, with the input restored untimed before each call, so repeated application never drifts
into denormals. The default run (every activation, loss and optimizer at 1K, 256K and 16M)
is budgeted to about 3 minutes on 2 idle cores once fastact's kernels are in the cache (the
first run after an install or upgrade also compiles them).

Row schema (``run()['results']``; the other families' ``run()`` may return the same keys)::

    {"family": "activation", "function": "sigmoid", "variant": "forward" | "backward" |
     "inplace", "size": 16777216, "dtype": "float32", "shape": [...],
     "times": {"fastact": s, "torch": s, ...}, "ratios": {"torch": t_torch / t_fastact, ...},
     "bytes": bytes the call must move, "roofline_s": bytes / bandwidth,
     "roofline_fraction": roofline_s / t_fastact, "grad_from": "input" | "output"}
"""

from __future__ import annotations

import argparse
import fnmatch
import functools
import gc
import importlib
import importlib.util
import inspect
import json
import math
import multiprocessing as mp
import os
import platform
import queue as queue_mod
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from numba import prange

__all__ = [
    "DEFAULT_SIZES",
    "LIBRARIES",
    "activation_cases",
    "build",
    "format_report",
    "info",
    "main",
    "measure",
    "plot",
    "run",
]

#: Default sizes: a small array (call overhead), one that fits in cache, one that streams from
#: memory.
DEFAULT_SIZES = (1 << 10, 1 << 18, 1 << 24)
#: Libraries timed, in this order (each in its own process).
LIBRARIES = ("fastact", "torch", "numpy", "numexpr")
PEERS = LIBRARIES[1:]
#: Other benchmark families: (family name, module with ``run(...) -> list[dict]``).
EXTERNAL_FAMILIES = (("loss", "fastact.bench_losses"), ("optimizer", "fastact.bench_optim"))
FAMILIES = ("activation", "loss", "optimizer")
_FAMILY_ALIASES = {
    "activation": "activation",
    "activations": "activation",
    "loss": "loss",
    "losses": "loss",
    "optimizer": "optimizer",
    "optimizers": "optimizer",
    "optim": "optimizer",
}

#: Parameter values for parameters without a default (torch's ``threshold(x, threshold,
#: value)``).
BENCH_PARAMS: dict[str, tuple] = {"threshold": (0.1, 20.0)}
#: Activations whose backward torch computes from the forward's *output* (what its autograd
#: saves); fastact is timed from the same tensor so both kernels read the same data.
GRAD_FROM_OUTPUT = frozenset({"sigmoid", "tanh", "relu", "softmax", "log_softmax", "softmin"})
_TARGET_SAMPLE_S = 1e-4  # one timing sample lasts about this long (small arrays)


class Unsupported(Exception):
    """The library has no equivalent of this benchmark case."""


# ============================================================================ cases
def _size_label(n: int) -> str:
    for shift, suffix in ((30, "G"), (20, "M"), (10, "K")):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return f"{n >> shift}{suffix}"
    return str(n)


def parse_size(text: str | int) -> int:
    """``'1K'`` -> 1024, ``'256K'``, ``'16M'`` (binary multiples), or a plain integer."""
    if isinstance(text, (int, np.integer)):
        n = int(text)
    else:
        s = str(text).strip().upper().removesuffix("I").removesuffix("B")
        mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(s[-1:], 1)
        digits = s[:-1] if mult > 1 else s
        try:
            n = int(float(digits) * mult)
        except ValueError:
            raise ValueError(f"sizes: cannot read {text!r} (use e.g. 1024, 256K, 16M)") from None
    if n < 1:
        raise ValueError(f"sizes: {text!r} is not a positive element count")
    return n


def _axis_shapes(name: str, n: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(input shape, output shape) of an axis activation with ``n`` input elements."""
    rows = n // 1024 if n % 1024 == 0 else 1
    cols = n // rows
    if name == "prelu":
        ch = 16 if cols % 16 == 0 else 1
        shape = (rows, ch, cols // ch)
        return shape, shape
    if name == "glu":
        if cols % 2:
            raise Unsupported("glu needs an even size")
        return (rows, cols), (rows, cols // 2)
    if name == "maxout":
        if cols % 4:
            raise Unsupported("maxout needs a size divisible by 4")
        return (rows, cols), (rows, cols // 4)
    return (rows, cols), (rows, cols)


def activation_names() -> list[str]:
    """Element-wise activations (registry order), then the axis ones."""
    from fastact.activations import ACTIVATIONS, AXIS_ACTIVATIONS

    return list(ACTIVATIONS) + list(AXIS_ACTIVATIONS)


def _inplace_names() -> set[str]:
    from fastact.activations import ACTIVATIONS

    return {n for n, op in ACTIVATIONS.items() if op.inplace} | {"rrelu"}


def _bytes_factor(name: str, variant: str) -> float:
    """Elements moved (reads + writes) per input element."""
    if name == "glu":
        return 1.5 if variant == "forward" else 2.5
    if name == "maxout":
        return 1.25 if variant == "forward" else 2.25
    return 3.0 if variant == "backward" else 2.0


def activation_cases(
    functions: Sequence[str] | None, sizes: Sequence[int], dtype: str = "float32"
) -> list[dict]:
    """Benchmark cases (plain dicts, picklable) of the activations matching ``functions``."""
    names = [n for n in activation_names() if _matches(n, functions)]
    inplace = _inplace_names()
    cases = []
    for name in names:
        variants = ("forward", "backward") + (("inplace",) if name in inplace else ())
        for variant in variants:
            for n in sizes:
                case = {
                    "family": "activation",
                    "function": name,
                    "variant": variant,
                    "size": int(n),
                    "dtype": np.dtype(dtype).name,
                }
                if variant == "backward":
                    case["grad_from"] = "output" if name in GRAD_FROM_OUTPUT else "input"
                cases.append(case)
    return cases


def _matches(name: str, patterns: Sequence[str] | None) -> bool:
    if not patterns:
        return True
    low = name.lower()
    return any(fnmatch.fnmatchcase(low, p.lower()) for p in patterns)


def _params(name: str) -> tuple:
    """The parameter values an element-wise activation is benchmarked with."""
    if name in BENCH_PARAMS:
        return BENCH_PARAMS[name]
    from fastact.activations import ACTIVATIONS

    op = ACTIVATIONS.get(name)
    return tuple(d for _, d in op.params) if op is not None else ()


# ============================================================================ inputs
class _Inputs:
    """Deterministic inputs per (size, dtype), shared by the cases of one worker."""

    def __init__(self) -> None:
        self._cache: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}

    def get(self, n: int, dtype: str) -> tuple[np.ndarray, np.ndarray]:
        key = (n, dtype)
        if key not in self._cache:
            self._cache.clear()  # one size at a time keeps the footprint small
            rng = np.random.default_rng(12345)
            block = min(n, 1 << 16)  # a random block, tiled: fast to make, unpredictable
            x = np.resize(rng.standard_normal(block) * 3.0, n).astype(dtype)
            g = np.resize(rng.standard_normal(block), n).astype(dtype)
            self._cache[key] = (x, g)
        return self._cache[key]


class Runner:
    """A timed call: ``fn()`` runs the operation; ``reset()`` (untimed) restores its input."""

    def __init__(
        self, fn: Callable[[], Any], reset: Callable[[], Any] | None = None, keep: Any = None
    ) -> None:
        self.fn = fn
        self.reset = reset
        self.keep = keep  # arrays that must outlive the closure (torch views of numpy data)


def _case_arrays(case: dict, inputs: _Inputs):
    name, n = case["function"], case["size"]
    x0, g0 = inputs.get(n, case["dtype"])
    from fastact.activations import AXIS_ACTIVATIONS

    if name in AXIS_ACTIVATIONS:
        shape, oshape = _axis_shapes(name, n)
    else:
        shape = oshape = (n,)
    x = x0.reshape(shape)
    g = g0[: math.prod(oshape)].reshape(oshape)
    return x, g


def build(lib: str, case: dict, inputs: _Inputs | None = None) -> Runner:
    """The :class:`Runner` of ``lib`` for a benchmark case; raises :class:`Unsupported`."""
    inputs = inputs or _Inputs()
    if case.get("family", "activation") != "activation":
        raise Unsupported(f"{case.get('family')} cases are built by their own module")
    x, g = _case_arrays(case, inputs)
    builder = {
        "fastact": _build_fastact,
        "torch": _build_torch,
        "numpy": _build_numpy,
        "numexpr": _build_numexpr,
    }[lib]
    return builder(case, x, g)


def _inplace_runner(
    x: np.ndarray,
    make: Callable[[np.ndarray], Callable[[], Any]],
    wrap: Callable[[np.ndarray], Any] | None = None,
) -> Runner:
    buf = np.empty_like(x)
    np.copyto(buf, x)
    target = wrap(buf) if wrap else buf
    return Runner(make(target), functools.partial(np.copyto, buf, x), keep=(buf, target))


# ---------------------------------------------------------------------------- fastact
def _build_fastact(case: dict, x: np.ndarray, g: np.ndarray) -> Runner:
    import fastact

    name, variant = case["function"], case["variant"]
    p = _params(name)
    axis_kw = _fastact_axis_kwargs(name)
    if axis_kw is not None:
        args, kw = axis_kw(x)
        fwd = getattr(fastact, name)
        if variant == "forward":
            return Runner(functools.partial(fwd, x, *args, **kw))
        if variant == "inplace":
            return _inplace_runner(x, lambda b: functools.partial(fastact.rrelu_, b, *args))
        bwd = getattr(fastact, name + "_backward")
        if case.get("grad_from") == "output":
            y = fwd(x, *args, **kw)
            return Runner(functools.partial(bwd, g, None, *args, output=y, **kw))
        return Runner(functools.partial(bwd, g, x, *args, **kw))
    if variant == "forward":
        return Runner(
            functools.partial(
                getattr(fastact, name if name != "gelu_tanh" else "gelu"),
                x,
                *(p if name != "gelu_tanh" else ("tanh",)),
            )
        )
    if variant == "inplace":
        f = getattr(fastact, name + "_")
        return _inplace_runner(x, lambda b: functools.partial(f, b, *p))
    if name in ("gelu", "gelu_tanh"):
        approx = "tanh" if name == "gelu_tanh" else "none"
        return Runner(functools.partial(fastact.gelu_backward, g, x, approx))
    bwd = getattr(fastact, name + "_backward")
    if case.get("grad_from") == "output":
        y = getattr(fastact, name)(x, *p)
        return Runner(functools.partial(bwd, g, None, *p, output=y))
    return Runner(functools.partial(bwd, g, x, *p))


def _fastact_axis_kwargs(name: str):
    """(positional args, keyword args) of an axis activation for an input x, or None."""
    if name in ("softmax", "log_softmax", "softmin"):
        return lambda x: ((), {"dim": -1})
    if name == "glu":
        return lambda x: ((), {"dim": -1})
    if name == "maxout":
        return lambda x: ((4,), {"dim": 1})
    if name == "prelu":
        return lambda x: ((np.linspace(0.05, 0.3, x.shape[1]).astype(x.dtype),), {})
    if name == "rrelu":
        return lambda x: ((0.125, 1 / 3, False), {})
    return None


# ---------------------------------------------------------------------------- torch
def _torch_forward_fn(name: str):
    import torch
    import torch.nn.functional as F

    if name in ("sigmoid", "tanh"):
        return getattr(torch, name)
    if name == "gelu_tanh":
        return functools.partial(F.gelu, approximate="tanh")
    return getattr(F, name)


def _torch_backward(name: str, gt, xt, yt, p):
    """torch's backward kernel of an element-wise activation (aten, no autograd), or None."""
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
            a.elu_backward, gt, 1.6732632423543772, 1.0507009873554805, 1.0, False, xt
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


def _apply(f: Callable, p: tuple, t: Any) -> Any:
    return f(t, *p)


def _build_torch(case: dict, x: np.ndarray, g: np.ndarray) -> Runner:
    import torch
    import torch.nn.functional as F

    name, variant = case["function"], case["variant"]
    p = _params(name)
    xt, gt = torch.from_numpy(x), torch.from_numpy(g)  # zero-copy views
    if name == "prelu":
        w = torch.from_numpy(np.linspace(0.05, 0.3, x.shape[1]).astype(x.dtype))
        fwd: Callable = functools.partial(F.prelu, weight=w)
    elif name == "maxout":
        rows, cols = x.shape
        fwd = lambda t: t.view(rows, cols // 4, 4).amax(-1)  # torch has no maxout
    elif name in ("softmax", "log_softmax", "softmin", "glu"):
        fwd = functools.partial(getattr(F, name), dim=-1)
    elif name == "rrelu":
        fwd = functools.partial(F.rrelu, lower=0.125, upper=1 / 3, training=False)
    else:
        f = _torch_forward_fn(name)
        if variant == "forward":
            return Runner(functools.partial(f, xt, *p), keep=(xt, gt))
        fwd = functools.partial(_apply, f, p)
    if variant == "forward":
        return Runner(functools.partial(fwd, xt), keep=(xt, gt))
    if variant == "inplace":
        if name == "rrelu":
            return _inplace_runner(
                x,
                lambda b: functools.partial(F.rrelu_, b, 0.125, 1 / 3, False),
                wrap=torch.from_numpy,
            )
        f = getattr(F, name)
        return _inplace_runner(
            x, lambda b: functools.partial(f, b, *p, inplace=True), wrap=torch.from_numpy
        )
    yt = fwd(xt)
    fn = _torch_backward(name, gt, xt, yt, p)
    if fn is not None:
        return Runner(fn, keep=(xt, gt, yt))
    # autograd fallback: only the backward graph is run (retain_graph), nothing accumulates
    xr = xt.clone().requires_grad_(True)
    leaves = (xr,)
    if name == "prelu":
        wr = fwd.keywords["weight"].clone().requires_grad_(True)
        leaves = (xr, wr)
        yr = F.prelu(xr, wr)
    else:
        yr = fwd(xr)
    return Runner(
        functools.partial(torch.autograd.grad, yr, leaves, gt, retain_graph=True), keep=(xr, yr, gt)
    )


# ---------------------------------------------------------------------------- NumPy
def _np_sigmoid(x):
    with np.errstate(over="ignore"):
        return 1 / (1 + np.exp(-x))


def _np_forward(name: str, x: np.ndarray, p: tuple):
    t = x.dtype.type
    # inputs are bounded (|x| < 20): exp never overflows here
    table: dict[str, Callable[[], Any]] = {
        "sigmoid": lambda: _np_sigmoid(x),
        "tanh": lambda: np.tanh(x),
        "relu": lambda: np.maximum(x, 0),
        "leaky_relu": lambda: np.where(x > 0, x, x * t(p[0])),
        "hardtanh": lambda: np.clip(x, t(p[0]), t(p[1])),
        "relu6": lambda: np.clip(x, 0, 6),
        "elu": lambda: np.where(x > 0, x, t(p[0]) * np.expm1(x)),
        "celu": lambda: np.where(x > 0, x, t(p[0]) * np.expm1(x / t(p[0]))),
        "selu": lambda: (
            t(1.0507009873554805) * np.where(x > 0, x, t(1.6732632423543772) * np.expm1(x))
        ),
        "softplus": lambda: np.where(
            x * t(p[0]) > t(p[1]), x, np.logaddexp(0, x * t(p[0])) / t(p[0])
        ),
        "logsigmoid": lambda: -np.logaddexp(0, -x),
        "silu": lambda: x * _np_sigmoid(x),
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
    return table


def _np_softmax(x, sign=1):
    z = x if sign > 0 else -x
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _np_log_softmax(x):
    z = x - x.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def _np_axis_forward(name: str, x: np.ndarray):
    t = x.dtype.type
    if name == "softmax":
        return lambda: _np_softmax(x)
    if name == "softmin":
        return lambda: _np_softmax(x, -1)
    if name == "log_softmax":
        return lambda: _np_log_softmax(x)
    if name == "glu":
        h = x.shape[-1] // 2
        return lambda: x[..., :h] * _np_sigmoid(x[..., h:])
    if name == "prelu":
        w = np.linspace(0.05, 0.3, x.shape[1]).astype(x.dtype)[:, None]
        return lambda: np.where(x > 0, x, w * x)
    if name == "maxout":
        rows, cols = x.shape
        return lambda: x.reshape(rows, cols // 4, 4).max(-1)
    if name == "rrelu":
        s = t((0.125 + 1 / 3) / 2)
        return lambda: np.where(x > 0, x, x * s)
    return None


def _np_backward(name: str, g: np.ndarray, x: np.ndarray, p: tuple):
    t = x.dtype.type

    def softplus_grad():
        z = x * t(p[0])
        return np.where(z > t(p[1]), g, g * _np_sigmoid(z))

    def silu_grad():
        s = _np_sigmoid(x)
        return g * s * (1 + x * (1 - s))

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
    if name == "sigmoid":  # from the output, like torch
        return lambda y: g * y * (1 - y)
    if name == "tanh":
        return lambda y: g * (1 - y * y)
    if name == "relu":
        return lambda y: np.where(y > 0, g, 0)
    if name == "softmax":
        return lambda y: y * (g - (g * y).sum(-1, keepdims=True))
    if name == "log_softmax":
        return lambda y: g - np.exp(y) * g.sum(-1, keepdims=True)
    return table.get(name)


def _np_inplace(name: str, b: np.ndarray, p: tuple):
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
        np.multiply(b, _np_sigmoid(b), out=b)

    table = {
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


def _build_numpy(case: dict, x: np.ndarray, g: np.ndarray) -> Runner:
    name, variant = case["function"], case["variant"]
    p = _params(name)
    if variant == "forward":
        fn = _np_axis_forward(name, x) or _np_forward(name, x, p).get(name)
        if fn is None:
            raise Unsupported(f"no NumPy formula for {name}")
        return Runner(fn)
    if variant == "inplace":
        if name not in _INPLACE_NUMPY:
            raise Unsupported(f"no in-place NumPy formula for {name}")
        return _inplace_runner(x, lambda b: _np_inplace(name, b, p))
    f = _np_backward(name, g, x, p)
    if f is None:
        raise Unsupported(f"no NumPy gradient formula for {name}")
    if case.get("grad_from") == "output":
        y = (_np_axis_forward(name, x) or _np_forward(name, x, p)[name])()
        return Runner(functools.partial(f, y))
    return Runner(f)


_INPLACE_NUMPY = frozenset(
    {"relu", "relu6", "hardtanh", "leaky_relu", "threshold", "hardsigmoid", "elu", "silu"}
)

# ---------------------------------------------------------------------------- numexpr
# Expressions in x (and g for gradients); float constants are passed as variables of the
# array's dtype (numexpr turns float literals into float64 and would upcast float32 arrays).
_NE_FORWARD = {
    "sigmoid": ("1 / (1 + exp(-x))", {}),
    "tanh": ("tanh(x)", {}),
    "relu": ("where(x > 0, x, 0)", {}),
    "leaky_relu": ("where(x > 0, x, x * p0)", {}),
    "hardtanh": ("where(x < p0, p0, where(x > p1, p1, x))", {}),
    "relu6": ("where(x < 0, 0, where(x > 6, 6, x))", {}),
    "elu": ("where(x > 0, x, p0 * expm1(x))", {}),
    "celu": ("where(x > 0, x, p0 * expm1(x / p0))", {}),
    "selu": (
        "where(x > 0, s * x, s * a * expm1(x))",
        {"s": 1.0507009873554805, "a": 1.6732632423543772},
    ),
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
_NE_BACKWARD = {
    "sigmoid": "g * x * (1 - x)",  # x holds the output here (like torch)
    "tanh": "g * (1 - x * x)",  # likewise
    "relu": "where(x > 0, g, 0)",  # likewise
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


def _build_numexpr(case: dict, x: np.ndarray, g: np.ndarray) -> Runner:
    import numexpr as ne

    name, variant = case["function"], case["variant"]
    if name not in _NE_FORWARD or (variant == "backward" and name not in _NE_BACKWARD):
        raise Unsupported(f"no numexpr expression for {name} {variant}")
    expr, consts = _NE_FORWARD[name]
    t = x.dtype.type
    env = {k: t(v) for k, v in consts.items()}
    env.update({f"p{i}": t(v) for i, v in enumerate(_params(name))})
    if variant == "forward":
        return Runner(functools.partial(ne.evaluate, expr, local_dict={"x": x, **env}))
    if variant == "inplace":
        return _inplace_runner(
            x, lambda b: functools.partial(ne.evaluate, expr, local_dict={"x": b, **env}, out=b)
        )
    v = x
    if case.get("grad_from") == "output":
        v = ne.evaluate(expr, local_dict={"x": x, **env})
    return Runner(
        functools.partial(ne.evaluate, _NE_BACKWARD[name], local_dict={"x": v, "g": g, **env}),
        keep=v,
    )


# ============================================================================ timing
def _timer_overhead() -> float:
    pc = time.perf_counter
    d = []
    for _ in range(200):
        t0 = pc()
        t1 = pc()
        d.append(t1 - t0)
    return float(np.median(d))


def measure(
    runner: Runner,
    budget: float = 0.05,
    min_samples: int = 5,
    max_samples: int = 300,
    overhead: float | None = None,
    jit: bool = True,
) -> dict:
    """Median per-call time of ``runner.fn`` over samples that fill about ``budget`` seconds.

    One untimed warm-up call; then samples of ``number`` back-to-back calls (``number`` = 1
    when the call has a ``reset`` or lasts more than ~0.1 ms); at least ``min_samples``
    samples (3 for calls above 20 ms), at most ``max_samples``. ``jit=False`` (a library
    that compiles nothing on first use) counts a first call slower than 20 ms as a sample
    instead of discarding it: for such calls it is not special (every call allocates and
    first-touches its temporaries), and the large-array peers are the bulk of a run."""
    fn, reset = runner.fn, runner.reset
    pc = time.perf_counter
    if overhead is None:
        overhead = _timer_overhead()
    gc_was = gc.isenabled()
    gc.disable()
    try:
        if reset is not None:
            reset()
        t0 = pc()
        fn()  # warm: compile, first touch
        first = max(pc() - t0 - overhead, 1e-9)
        if not jit and first >= 0.02:
            est, times = first, [first]
        else:
            if reset is not None:
                reset()
            t0 = pc()
            fn()
            est = max(pc() - t0 - overhead, 1e-9)
            times = []
        number = 1 if reset is not None else max(1, min(10_000, int(_TARGET_SAMPLE_S / est)))
        lo = min_samples if est * number < 0.02 else min(3, min_samples)
        samples = int(min(max_samples, max(lo, budget / (est * number))))
        if number == 1 and not times:
            times = [est]
        loops = range(number)
        while len(times) < samples:
            if reset is not None:
                reset()
            t0 = pc()
            for _ in loops:
                fn()
            t1 = pc()
            times.append(max(t1 - t0 - overhead, 1e-9) / number)
    finally:
        if gc_was:
            gc.enable()
    return {
        "median_s": float(np.median(times)),
        "samples": len(times),
        "number": number,
        "min_s": float(np.min(times)),
    }


def _budget(n: int, quick: bool, scale: float = 1.0) -> tuple[float, int]:
    """(seconds per measurement, minimum samples) for arrays of n elements."""
    base = 0.02 if n <= 1 << 12 else (0.03 if n <= 1 << 20 else 0.1)
    if quick:
        return base * scale / 4, 3
    return base * scale, 5


# ---------------------------------------------------------------------------- roofline
_stream_kernels: dict[bool, tuple] = {}


def _copy_loop(src, dst):
    for i in prange(src.shape[0]):
        dst[i] = src[i]


def _rmw_loop(x, a, b):
    for i in prange(x.shape[0]):
        x[i] = x[i] * a + b


def _streams():
    """(copy, read-modify-write) kernels: (serial, parallel) pairs, compiled by fastact's jit."""
    if not _stream_kernels:
        from fastact._core.jit import specialize

        for key, loop in ((False, _copy_loop), (True, _rmw_loop)):
            _stream_kernels[key] = tuple(
                specialize(loop, f"bench{loop.__name__}_{mode}", parallel=par)
                for mode, par in (("serial", False), ("parallel", True))
            )
    return _stream_kernels[False], _stream_kernels[True]


def _pick(pair: tuple, n: int):
    import numba

    from fastact._kernels import PARALLEL_THRESHOLD

    return pair[1] if n >= PARALLEL_THRESHOLD and numba.get_num_threads() > 1 else pair[0]


def measure_bandwidth(n: int, dtype: str, budget: float, min_samples: int, overhead: float) -> dict:
    """Bandwidth (bytes/s) of a streaming copy and of a streaming read-modify-write of n
    elements, on the same thread count and serial/parallel switch as fastact's kernels."""
    copy, rmw = _streams()
    src = np.resize(np.arange(1 << 12, dtype=dtype), n)
    dst = np.empty_like(src)
    item = src.itemsize
    k = _pick(copy, n)
    c = measure(Runner(functools.partial(k, src, dst)), budget, min_samples, overhead=overhead)
    k2 = _pick(rmw, n)
    one, zero = src.dtype.type(1), src.dtype.type(0)
    r = measure(
        Runner(functools.partial(k2, dst, one, zero)), budget, min_samples, overhead=overhead
    )
    return {
        "size": n,
        "dtype": dtype,
        "copy_s": c["median_s"],
        "copy_Bps": 2 * n * item / c["median_s"],
        "rmw_s": r["median_s"],
        "rmw_Bps": 2 * n * item / r["median_s"],
    }


# ============================================================================ workers
_THREAD_ENV = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "NUMEXPR_MAX_THREADS",
    "NUMBA_NUM_THREADS",
)


def _settle_threads(lib: str, threads: int) -> None:
    """Set the thread pool of ``lib`` (and numba's, which fastact uses) to ``threads``."""
    import numba

    if threads <= numba.config.NUMBA_NUM_THREADS:
        numba.set_num_threads(threads)
    if lib == "torch":
        import torch

        torch.set_num_threads(threads)
    elif lib == "numexpr":
        import numexpr

        numexpr.set_num_threads(threads)


def _library_available(lib: str) -> bool:
    return lib in ("fastact", "numpy") or importlib.util.find_spec(lib) is not None


def _short_error(e: BaseException) -> str:
    """One line naming an exception (numba's multi-page messages cut to their first line)."""
    import re

    text = re.sub(r"\x1b\[[0-9;]*m", "", str(e)).strip()
    first = text.splitlines()[0] if text else ""
    return f"{type(e).__name__}: {first}"[:200]


def _worker(lib: str, cases: list[dict], opts: dict, out_q) -> None:
    """Time every case with ``lib`` (one process per library); report through ``out_q``."""
    try:
        _settle_threads(lib, opts["threads"])
        overhead = _timer_overhead()
        inputs = _Inputs()
        results: list[dict | None] = []
        order = sorted(range(len(cases)), key=lambda i: (cases[i]["size"], i))
        by_index: dict[int, dict | None] = {}
        for i in order:
            case = cases[i]
            label = f"{lib} {case['function']} {case['variant']} {_size_label(case['size'])}"
            try:
                runner = build(lib, case, inputs)
            except Unsupported:
                by_index[i] = None
            except Exception as e:  # a peer that fails to build is reported, not fatal
                by_index[i] = {"error": _short_error(e)}
            else:
                budget, lo = _budget(case["size"], opts["quick"], opts.get("budget_scale", 1.0))
                try:
                    by_index[i] = measure(
                        runner, budget, lo, overhead=overhead, jit=lib == "fastact"
                    )
                except Exception as e:
                    by_index[i] = {"error": _short_error(e)}
                del runner
            out_q.put(("tick", lib, label))
        results = [by_index[i] for i in range(len(cases))]
        bandwidth = []
        if lib == "fastact":
            for n, dt in sorted({(c["size"], c["dtype"]) for c in cases}):
                budget, lo = _budget(n, opts["quick"], opts.get("budget_scale", 1.0))
                bandwidth.append(measure_bandwidth(n, dt, budget, lo, overhead))
                out_q.put(("tick", lib, f"bandwidth {_size_label(n)}"))
        extra = _library_meta(lib)
        out_q.put(("done", lib, {"results": results, "bandwidth": bandwidth, "meta": extra}))
    except BaseException:
        out_q.put(("error", lib, traceback.format_exc()))


def _library_meta(lib: str) -> dict:
    if lib == "fastact":
        import numba

        import fastact

        return {
            "fastact": fastact.__version__,
            "numba": numba.__version__,
            "numba_threads": numba.get_num_threads(),
            "threading_layer": _threading_layer(),
        }
    if lib == "torch":
        import torch

        return {"torch": torch.__version__, "torch_threads": torch.get_num_threads()}
    if lib == "numexpr":
        import numexpr

        return {"numexpr": numexpr.__version__}
    return {"numpy": np.__version__}


def _threading_layer() -> str:
    from fastact._core.threads import report

    return report()["threading_layer"]


def _external_worker(module: str, kwargs: dict, threads: int, out_q) -> None:
    """Run another family's ``run(**kwargs)`` (one process) and send its rows."""
    try:
        _settle_threads("torch" if importlib.util.find_spec("torch") else "fastact", threads)
        mod = importlib.import_module(module)
        sig = inspect.signature(mod.run)
        accepts_any = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
        if "progress" in sig.parameters or accepts_any:
            kwargs = dict(kwargs, progress=lambda *a, **k: out_q.put(("tick", module, "")))
        kw = {k: v for k, v in kwargs.items() if accepts_any or k in sig.parameters}
        rows = mod.run(**kw)
        out_q.put(("done", module, {"results": list(rows), "kwargs": sorted(kw)}))
    except BaseException:
        out_q.put(("error", module, traceback.format_exc()))


# ---------------------------------------------------------------------------- progress
class _Progress:
    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.n, self.enabled = total, 0, enabled
        self._bar = None
        self._last = 0.0
        if enabled:
            try:
                from tqdm import tqdm

                self._bar = tqdm(
                    total=total, file=sys.stderr, unit="case", leave=False, dynamic_ncols=True
                )
            except ImportError:
                self._bar = None

    def update(self, label: str, k: int = 1) -> None:
        self.n += k
        if not self.enabled:
            return
        if self._bar is not None:
            if self.n > self._bar.total:
                self._bar.total = self.n
            self._bar.set_description_str(label[:40], refresh=False)
            self._bar.update(k)
            return
        now = time.monotonic()
        if now - self._last < 0.2 and self.n < self.total:
            return
        self._last = now
        frac = min(1.0, self.n / max(1, self.total))
        bar = "#" * int(30 * frac)
        sys.stderr.write(f"\r[{bar:<30}] {self.n}/{self.total} {label[:40]:<40}")
        sys.stderr.flush()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        elif self.enabled:
            sys.stderr.write("\n")
            sys.stderr.flush()


def _run_block(
    target, args: tuple, isolate: bool, progress: _Progress, timeout: float | None = None
) -> tuple[str, Any]:
    """Run ``target(*args, queue)`` in a spawned process (or inline); return its last
    message, forwarding progress ticks."""
    if not isolate:
        q: Any = queue_mod.Queue()
        target(*args, q)
        while True:
            kind, _who, payload = q.get_nowait()
            if kind == "tick":
                progress.update(payload)
            else:
                return kind, payload
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, q), daemon=False)
    proc.start()
    start = time.monotonic()
    finished = False
    try:
        while True:
            try:
                kind, _who, payload = q.get(timeout=0.5)
            except queue_mod.Empty:
                if not proc.is_alive():
                    try:  # a final message may arrive just after the process ends
                        kind, _who, payload = q.get(timeout=2.0)
                    except queue_mod.Empty:
                        return "error", f"worker exited with code {proc.exitcode}"
                elif timeout is not None and time.monotonic() - start > timeout:
                    return "error", f"worker exceeded {timeout:.0f} s"
                else:
                    continue
            if kind == "tick":
                progress.update(payload)
            else:
                finished = True
                return kind, payload
    finally:
        # a worker that reported its result exits by itself; otherwise (error, Ctrl-C) stop it
        proc.join(timeout=30 if finished else 0.1)
        if proc.is_alive():
            proc.terminate()
            proc.join()


class _ThreadEnv:
    """Temporarily set the ``*_NUM_THREADS`` variables (inherited by spawned workers)."""

    def __init__(self, threads: int) -> None:
        self.threads = threads
        self.saved: dict[str, str | None] = {}

    def __enter__(self):
        for k in _THREAD_ENV:
            self.saved[k] = os.environ.get(k)
            os.environ[k] = str(self.threads)
        return self

    def __exit__(self, *exc):
        for k, v in self.saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# ============================================================================ run
def _default_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _external_names(module: str) -> list[str]:
    """Names another family benchmarks (to route --functions), best effort."""
    try:
        mod = importlib.import_module(module)
    except Exception:
        return []
    for attr in ("FUNCTIONS", "NAMES", "CASES", "CONFIGS", "OPTIMIZERS", "LOSSES"):
        v = getattr(mod, attr, None)
        if isinstance(v, dict):
            return [str(k) for k in v]
        if isinstance(v, (list, tuple)):
            return [str(k if isinstance(k, str) else getattr(k, "name", k)) for k in v]
    target = "fastact.losses" if "loss" in module else "fastact.optim"
    try:
        tm = importlib.import_module(target)
    except Exception:
        return []
    return [n for n in getattr(tm, "__all__", []) if not n.startswith("_")]


def run(
    functions: Sequence[str] | str | None = None,
    sizes: Sequence[int | str] | None = None,
    dtype: str = "float32",
    threads: int | None = None,
    libraries: Sequence[str] | None = None,
    families: Sequence[str] | None = None,
    quick: bool = False,
    isolate: bool = True,
    progress: bool = True,
    budget_scale: float = 1.0,
    rounds: int = 1,
) -> dict:
    """Run the benchmarks; return ``{"meta": ..., "bandwidth": [...], "results": [rows],
    "notes": [...]}`` (rows: see the module docstring).

    ``functions``: names or globs (``'gelu*'``); ``sizes``: element counts or ``'256K'``;
    ``libraries``: subset of :data:`LIBRARIES` (fastact is always timed); ``families``:
    subset of ``activation``, ``loss``, ``optimizer``; ``isolate``: one spawned process per
    library (default) or one block per library in this process; ``rounds``: the activation
    cases are timed in that many rounds, the libraries' blocks alternating (fastact first in
    even rounds, last in odd ones), and each time is the median over the rounds, so a slow
    phase of a shared machine weighs on every library alike."""
    t_start = time.monotonic()
    if isinstance(functions, str):
        functions = [functions]
    patterns = [p.strip() for f in (functions or []) for p in f.split(",") if p.strip()]
    sizes = [parse_size(s) for s in (sizes or DEFAULT_SIZES)]
    try:
        dtype = np.dtype(dtype).name
    except TypeError:
        raise ValueError(f"dtype: unknown dtype {dtype!r}") from None
    if dtype not in ("float32", "float64"):
        raise ValueError(f"dtype must be float32 or float64, got {dtype!r}")
    threads = int(threads or _default_threads())
    if threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"rounds must be a positive integer, got {rounds!r}")
    libs = ["fastact"] + [lb for lb in (libraries or PEERS) if lb != "fastact"]
    for lb in libs:
        if lb not in LIBRARIES:
            raise ValueError(f"libraries: unknown library {lb!r} (choose from {LIBRARIES})")
    fams = _resolve_families(families, patterns)
    notes: list[str] = []

    cases = activation_cases(patterns, sizes, dtype) if "activation" in fams else []
    externals = []
    for fam, module in EXTERNAL_FAMILIES:
        if fam not in fams:
            continue
        if importlib.util.find_spec(module) is None:
            notes.append(
                f"{fam} benchmarks skipped: {module} is not available in this fastact build"
            )
            continue
        externals.append((fam, module))
    if patterns and not cases and not externals:
        raise ValueError(
            f"functions: {patterns} match no benchmark (activations: "
            f"{', '.join(activation_names())})"
        )

    available = [lb for lb in libs if _library_available(lb)]
    for lb in libs:
        if lb not in available:
            notes.append(
                f"{lb} is not installed: no {lb} column (pip install -e '.[bench]' installs "
                "every peer)"
            )
    total = len(cases) * len(available) + len({(c["size"], c["dtype"]) for c in cases})
    total = total * rounds + len(externals)
    bar = _Progress(total, progress)
    opts = {"threads": threads, "quick": quick, "budget_scale": budget_scale}
    per_lib: dict[str, list[dict]] = {}  # one payload per round
    meta: dict[str, Any] = {}
    block_s: dict[str, float] = {}
    try:
        with _ThreadEnv(threads):
            for rnd in range(rounds if cases else 0):
                for lb in available if rnd % 2 == 0 else available[::-1]:
                    if rnd and lb not in per_lib:
                        continue  # its worker failed in the first round
                    t0 = time.monotonic()
                    kind, payload = _run_block(_worker, (lb, cases, opts), isolate, bar)
                    block_s[lb] = round(block_s.get(lb, 0.0) + time.monotonic() - t0, 1)
                    if kind == "error":
                        notes.append(f"{lb} worker failed: {payload.strip().splitlines()[-1]}")
                        if lb == "fastact":
                            raise RuntimeError(f"fastact benchmark worker failed:\n{payload}")
                        per_lib.pop(lb, None)
                        continue
                    per_lib.setdefault(lb, []).append(payload)
                    meta.update(payload["meta"])
            ext_rows: list[dict] = []
            for fam, module in externals:
                default_run = not (patterns or families or _sizes_given(sizes))
                kw = _external_kwargs(sizes, dtype, threads, quick, patterns, libs, default_run)
                if default_run and fam == "loss" and "numpy" in libs:
                    notes.append(
                        "loss NumPy peers left out of the default run (seconds per call at "
                        "16M): `--families loss` or `python -m fastact.bench_losses` time them"
                    )
                if patterns:  # the family's own name list (e.g. optimizers=["Adam"])
                    chosen = [n for n in _external_names(module) if _matches(n, patterns)]
                    kw.update({"optimizers": chosen, "losses": chosen, "names": chosen})
                kw = {k: v for k, v in kw.items() if v is not None}
                t0 = time.monotonic()
                kind, payload = _run_block(_external_worker, (module, kw, threads), isolate, bar)
                block_s[fam] = round(time.monotonic() - t0, 1)
                bar.update(f"{fam} done")
                if kind == "error":
                    notes.append(
                        f"{fam} benchmarks failed ({module}): {payload.strip().splitlines()[-1]}"
                    )
                    continue
                rows = [_normalize_external(r, fam) for r in payload["results"]]
                if patterns:
                    rows = [
                        r
                        for r in rows
                        if _matches(str(r["function"]), patterns)
                        or not _names_overlap(patterns, fam)
                    ]
                ext_rows.extend(rows)
                notes.append(
                    f"{fam} benchmarks from {module}.run "
                    f"({len(rows)} rows, {time.monotonic() - t0:.0f} s)"
                )
    finally:
        bar.close()

    bandwidth = per_lib["fastact"][0].get("bandwidth", []) if "fastact" in per_lib else []
    bw = {(b["size"], b["dtype"]): b for b in bandwidth}
    rows = []
    for i, case in enumerate(cases):
        row = dict(case)
        times, errors = {}, {}
        for lb, payloads in per_lib.items():
            rs = [p["results"][i] for p in payloads if p["results"][i] is not None]
            bad = [r["error"] for r in rs if "error" in r]
            if bad:
                errors[lb] = bad[0]
            elif rs:
                times[lb] = float(np.median([r["median_s"] for r in rs]))
        row["times"] = times
        if errors:
            row["errors"] = errors
        _finish_row(row, bw.get((case["size"], case["dtype"])))
        rows.append(row)
    rows.extend(ext_rows)
    meta = {**_versions(), **meta, **_static_meta(threads, dtype, isolate, quick)}
    meta["rounds"] = rounds
    meta["elapsed_s"] = round(time.monotonic() - t_start, 1)
    meta["block_s"] = block_s
    return {"meta": meta, "bandwidth": bandwidth, "results": rows, "notes": notes}


def _external_kwargs(
    sizes: list[int],
    dtype: str,
    threads: int,
    quick: bool,
    patterns: list[str],
    libs: list[str],
    default_run: bool,
) -> dict:
    """Keyword arguments for another family's ``run()`` (only those it accepts are passed).

    The combined command keeps to one case of the largest size per family and 3 repeats; the
    plain default run (no --functions/--families/--sizes) also leaves out the NumPy loss
    formulas (seconds per call at 16M), so it stays within its ~3 minute budget. The
    families' own commands (``python -m fastact.bench_losses``, ``python -m
    fastact.bench_optim``) run their full cases (a model-like set of tensors, (65536, 1000)
    logits)."""
    given = _sizes_given(sizes)
    big = max(sizes)
    kw: dict[str, Any] = {
        "with_numpy": "numpy" in libs and not default_run,
        "with_torch": "torch" in libs,
        "sizes": sizes if given else [big],
        "dtype": dtype,
        "threads": threads,
        "num_threads": threads,
        "quick": quick,
        "functions": patterns or None,
        "repeat": 3,
        "repeats": 3,
        # bench_losses: one element count and a cross-entropy shape of about as many
        "n": big,
        "ce_shape": (max(1, big // 1000), 1000),
    }
    return kw


def _sizes_given(sizes: Sequence[int]) -> bool:
    return tuple(sizes) != DEFAULT_SIZES


def _names_overlap(patterns: Sequence[str], fam: str) -> bool:
    module = dict(EXTERNAL_FAMILIES)[fam]
    return any(_matches(n, patterns) for n in _external_names(module))


def _resolve_families(families: Sequence[str] | str | None, patterns: list[str]) -> list[str]:
    if isinstance(families, str):
        families = families.split(",")
    if families:
        out = []
        for f in families:
            key = _FAMILY_ALIASES.get(f.strip().lower())
            if key is None:
                raise ValueError(f"families: unknown family {f!r} (choose from {FAMILIES})")
            out.append(key)
        return out
    if not patterns:
        return list(FAMILIES)
    fams = []
    if any(_matches(n, patterns) for n in activation_names()):
        fams.append("activation")
    for fam, _module in EXTERNAL_FAMILIES:
        if _names_overlap(patterns, fam):
            fams.append(fam)
    return fams


def _finish_row(row: dict, bw: dict | None) -> None:
    """Add ratios and roofline fields to a row that has ``times``."""
    times = row.get("times", {})
    tf = times.get("fastact")
    row["ratios"] = {lb: t / tf for lb, t in times.items() if lb != "fastact" and tf}
    if bw is not None and tf and "bytes" not in row:
        item = np.dtype(row["dtype"]).itemsize
        row["bytes"] = int(_bytes_factor(row["function"], row["variant"]) * row["size"] * item)
        rate = bw["rmw_Bps"] if row["variant"] == "inplace" else bw["copy_Bps"]
        row["roofline_s"] = row["bytes"] / rate
    if tf and row.get("roofline_s") and "roofline_fraction" not in row:
        row["roofline_fraction"] = row["roofline_s"] / tf


_TIME_ALIASES = {"foreach": "torch_foreach", "fused": "torch_fused", "np": "numpy"}
_TIME_SUFFIXES = ("_median_s", "_time_s", "_s", "_time", "_median")


def _normalize_external(r: dict, family: str) -> dict:
    """A row from another family's ``run()`` in this module's schema (best effort)."""
    row = {"family": r.get("family", family)}
    row["function"] = str(
        r.get("function") or r.get("name") or r.get("optimizer") or r.get("loss") or "?"
    )
    row["variant"] = str(r.get("variant") or r.get("case") or r.get("mode") or "")
    size = r.get("size", r.get("n_elements", r.get("n", r.get("numel", r.get("shape", "")))))
    if isinstance(size, str) and size.isdigit():
        size = int(size)
    row["size"] = size if isinstance(size, (int, str)) else str(size)
    row["dtype"] = str(r.get("dtype", "float32"))
    times = dict(r["times"]) if isinstance(r.get("times"), dict) else {}
    if not times:
        for k, v in r.items():
            if not isinstance(v, (int, float)) or isinstance(v, bool) or k in row:
                continue
            for suf in _TIME_SUFFIXES:
                if k.endswith(suf) and not k.startswith("roofline"):
                    times[k[: -len(suf)]] = float(v)
                    break
    row["times"] = {
        _TIME_ALIASES.get(k, k): float(v)
        for k, v in times.items()
        if v is not None and math.isfinite(float(v))
    }
    for key in ("roofline_s", "roofline_fraction", "bytes"):
        if isinstance(r.get(key), (int, float)):
            row[key] = r[key]
    if "roofline_fraction" not in row and isinstance(r.get("roofline"), (int, float)):
        row["roofline_fraction"] = float(r["roofline"])
    _finish_row(row, None)
    if isinstance(r.get("ratios"), dict):
        row["ratios"] = {k: float(v) for k, v in r["ratios"].items() if v is not None}
    extra = {k: v for k, v in r.items() if k not in row and k not in ("name", "times")}
    if extra:
        row["extra"] = extra
    return row


def _versions() -> dict:
    """Versions of fastact, numba and the installed peers (without importing the peers)."""
    from importlib import metadata

    import numba

    import fastact

    d = {"fastact": fastact.__version__, "numba": numba.__version__}
    for lib in ("torch", "numexpr"):
        try:
            d[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            pass
    return d


def _static_meta(threads: int, dtype: str, isolate: bool, quick: bool) -> dict:
    return {
        "threads": threads,
        "dtype": dtype,
        "cpu": _cpu_name(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "isolation": "one spawned process per library"
        if isolate
        else "one block per library in one process",
        "quick": quick,
        "date": time.strftime("%Y-%m-%d"),
    }


def _cpu_name() -> str:
    name = ""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        name = platform.processor()
    try:
        import llvmlite.binding as llvm

        arch = llvm.get_host_cpu_name()
        name = f"{name} ({arch})" if name else arch
    except Exception:
        pass
    return name or platform.machine()


# ============================================================================ output
def _fmt_time(s: float | None) -> str:
    if s is None or not math.isfinite(s):
        return ""
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if s >= scale:
            return f"{s / scale:.3g} {unit}"
    return f"{s * 1e9:.3g} ns"


def _fmt_ratio(r: float | None) -> str:
    return "" if r is None else f"{r:.2f}x"


def _peers_in(rows: list[dict]) -> list[str]:
    seen = []
    for lb in LIBRARIES[1:]:
        if any(lb in r.get("times", {}) for r in rows):
            seen.append(lb)
    for r in rows:
        for lb in r.get("times", {}):
            if lb != "fastact" and lb not in seen:
                seen.append(lb)
    return seen


def table_rows(rows: list[dict]) -> tuple[list[str], list[list[str]]]:
    """Header and string cells of a results table (one family's rows)."""
    peers = _peers_in(rows)
    header = ["function", "variant", "size", "fastact"]
    for lb in peers:
        header += [lb, f"{lb}/fastact"]
    header.append("roofline")
    cells = []
    for r in rows:
        size = r["size"]
        variant = r["variant"]
        if variant == "backward" and r.get("grad_from") == "output":
            variant = "backward (y)"
        line = [
            r["function"],
            variant,
            _size_label(size) if isinstance(size, int) else str(size),
            _fmt_time(r["times"].get("fastact")),
        ]
        for lb in peers:
            line += [_fmt_time(r["times"].get(lb)), _fmt_ratio(r.get("ratios", {}).get(lb))]
        frac = r.get("roofline_fraction")
        line.append("" if frac is None else f"{100 * frac:.0f}%")
        cells.append(line)
    return header, cells


def _by_family(report: dict) -> list[tuple[str, list[dict]]]:
    groups: dict[str, list[dict]] = {}
    for r in report["results"]:
        groups.setdefault(str(r.get("family", "")), []).append(r)
    return list(groups.items())


def _summary_lines(report: dict) -> list[str]:
    m = report["meta"]
    libs = ", ".join(
        f"{k} {m[k]}" for k in ("fastact", "numba", "numpy", "torch", "numexpr") if k in m
    )
    lines = [
        f"Machine: {m.get('cpu', '?')}; {m.get('threads')} threads"
        + (f" (numba's {m['threading_layer']} layer)" if "threading_layer" in m else "")
        + f"; {m.get('dtype')}; {libs}.",
        "Timing: median per call"
        + (
            f" (activations: median of {m['rounds']} rounds, libraries alternating)"
            if m.get("rounds", 1) > 1
            else ""
        )
        + "; ratio = peer time / fastact time (>1: fastact faster); "
        f"isolation: {m.get('isolation')}; run took {m.get('elapsed_s')} s"
        + (
            " (" + ", ".join(f"{k} {v:.0f} s" for k, v in m["block_s"].items()) + ")."
            if m.get("block_s")
            else "."
        ),
    ]
    bws = [
        f"{_size_label(b['size'])}: copy {b['copy_Bps'] / 1e9:.1f} GB/s, "
        f"rmw {b['rmw_Bps'] / 1e9:.1f} GB/s"
        for b in report.get("bandwidth", [])
    ]
    if bws:
        lines.append(
            "Roofline = bytes moved / streaming bandwidth measured in this run ("
            + "; ".join(bws)
            + ")."
        )
    lines += [f"Note: {n}" for n in report.get("notes", [])]
    errs = [
        f"{r['function']} {r['variant']} {r['size']}: {lb}: {e}"
        for r in report["results"]
        for lb, e in r.get("errors", {}).items()
    ]
    lines += [f"Error: {e}" for e in errs[:20]]
    return lines


def summary_rows(report: dict) -> tuple[list[str], list[list[str]]]:
    """Per family, variant and size: the geometric-mean ratio against each peer, how many
    cases fastact wins (ratio >= 1), and the median roofline fraction."""
    groups: dict[tuple, list[dict]] = {}
    for r in report["results"]:
        variant = r["variant"] if r["family"] == "activation" else ""
        groups.setdefault((r["family"], variant, r["size"]), []).append(r)
    peers = [p for p in _peers_in(report["results"]) if p in (*PEERS, "torch_fused")]
    header = ["family", "variant", "size", "cases"]
    for p in peers:
        header += [f"vs {p} (geomean)", f"wins vs {p}"]
    header.append("roofline (median)")
    cells = []
    for (family, variant, size), rows in groups.items():
        label = _size_label(size) if isinstance(size, int) else str(size)
        line = [family, variant, label, str(len(rows))]
        for p in peers:
            rs = [r["ratios"][p] for r in rows if p in r.get("ratios", {})]
            if rs:
                gm = math.exp(sum(math.log(v) for v in rs) / len(rs))
                line += [_fmt_ratio(gm), f"{sum(v >= 1 for v in rs)}/{len(rs)}"]
            else:
                line += ["", ""]
        fr = [r["roofline_fraction"] for r in rows if r.get("roofline_fraction")]
        line.append(f"{100 * float(np.median(fr)):.0f}%" if fr else "")
        cells.append(line)
    return header, cells


def _table(header: list[str], cells: list[list[str]], fmt: str, right: set[int]) -> list[str]:
    if fmt == "markdown":
        out = ["| " + " | ".join(header) + " |"]
        out.append(
            "|" + "|".join("---:" if i in right else "---" for i in range(len(header))) + "|"
        )
        return out + ["| " + " | ".join(c) + " |" for c in cells]
    widths = [
        max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(header)
    ]

    def line(vals):
        return "  ".join(
            v.rjust(w) if i in right else v.ljust(w)
            for i, (v, w) in enumerate(zip(vals, widths, strict=True))
        ).rstrip()

    return [line(header), line(["-" * w for w in widths])] + [line(c) for c in cells]


def format_report(report: dict, fmt: str = "text") -> str:
    """The report as ``'markdown'``, ``'json'`` or ``'text'``: a summary table, then one table
    per family."""
    if fmt == "json":
        return json.dumps(_finite(report), indent=1, default=_json_default, allow_nan=False)
    if fmt not in ("markdown", "text"):
        raise ValueError(f"format must be markdown, json or text, got {fmt!r}")
    out: list[str] = []
    header, cells = summary_rows(report)
    if cells:
        out += ["### Summary", ""] if fmt == "markdown" else ["== Summary =="]
        out += _table(header, cells, fmt, set(range(3, len(header)))) + [""]
    title = {"activation": "Activations", "loss": "Losses", "optimizer": "Optimizers"}
    for family, rows in _by_family(report):
        header, cells = table_rows(rows)
        name = title.get(family, family)
        out += [f"### {name}", ""] if fmt == "markdown" else [f"== {name} =="]
        out += _table(header, cells, fmt, set(range(3, len(header)))) + [""]
    summary = _summary_lines(report)
    # the machine, its threading layer and any missing peer first: they decide how to read
    # every number below
    head = [s for s in summary if s.startswith("Machine:") or "is not installed" in s]
    tail = [s for s in summary if s not in head]
    if fmt == "markdown":
        head, tail = [f"{s}  " for s in head], [f"{s}  " for s in tail]
    return "\n".join(head + ([""] if head else []) + out + tail) + "\n"


def _finite(o):
    """``o`` with NaN/inf floats replaced by None (strict JSON)."""
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_finite(v) for v in o]
    if isinstance(o, (float, np.floating)):
        return float(o) if math.isfinite(o) else None
    return o


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def _size_text(size: Any) -> str:
    return _size_label(size) if isinstance(size, int) else str(size)


def plot(report: dict, path: str) -> str:
    """Bar chart of the ratios (peer time / fastact time, log scale): one panel per activation
    size, one for the losses, one for the optimizers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in report["results"] if r.get("ratios")]
    if not rows:
        raise ValueError("plot: no ratios to draw (no peer library was timed)")
    panels: dict[str, list[dict]] = {}
    for r in rows:
        if r["family"] == "activation":
            key = f"activations, {_size_text(r['size'])} elements"
        else:
            key = {"loss": "losses", "optimizer": "optimizers"}.get(r["family"], r["family"])
        panels.setdefault(key, []).append(r)
    height = max(len(v) for v in panels.values())
    fig, axes = plt.subplots(
        1, len(panels), figsize=(4.6 * len(panels), 0.16 * height + 1.8), squeeze=False
    )
    colors = {
        "torch": "#ee4c2c",
        "numpy": "#4d77cf",
        "numexpr": "#2ca02c",
        "torch_foreach": "#f5a623",
        "torch_fused": "#8b1a0e",
    }
    for ax, (title, sub) in zip(axes[0], panels.items(), strict=True):
        peers = [p for p in _peers_in(sub) if not p.startswith("fastact")]
        ys = np.arange(len(sub))
        w = 0.8 / max(1, len(peers))
        for j, p in enumerate(peers):
            vals = [r["ratios"].get(p, np.nan) for r in sub]
            ax.barh(ys + j * w - 0.4 + w / 2, vals, height=w, label=p, color=colors.get(p))
        ax.axvline(1.0, color="k", lw=0.8)
        ax.set_xscale("log")
        ax.set_yticks(ys)
        if sub[0]["family"] == "activation":
            labels = [f"{r['function']} {r['variant'][:3]}" for r in sub]
        else:
            labels = [f"{r['function']} {r['variant'] or _size_text(r['size'])}" for r in sub]
        ax.set_yticklabels(labels, fontsize=6)
        ax.set_ylim(len(sub) - 0.5, -0.5)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("peer time / fastact time (>1: fastact faster)", fontsize=7)
        ax.tick_params(axis="x", labelsize=7)
        ax.legend(fontsize=6, loc="lower right")
    m = report["meta"]
    fig.suptitle(
        f"fastact {m.get('fastact', '')} vs peers, {m.get('dtype')}, "
        f"{m.get('threads')} threads, {m.get('cpu', '')}",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ============================================================================ info
def info() -> dict:
    """Version, threading layer, thread count, SIMD width, cache folder, CUDA availability."""
    import numba

    import fastact
    from fastact._core.jit import cache_dir

    d: dict[str, Any] = {
        "fastact": fastact.__version__,
        "numba": numba.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }
    from fastact._core.threads import report

    d["threads"] = numba.get_num_threads()
    d.update(report())
    d["cpu"] = _cpu_name()
    d["simd_width_bits"], d["simd_features"] = _simd_width()
    d["simd_registers_used"] = _vector_registers()
    d["cache_dir"] = str(cache_dir())
    d["cache_disabled"] = bool(os.environ.get("FASTACT_DISABLE_CACHE"))
    d["cuda_available"], d["cuda_detail"] = _cuda()
    return d


def _simd_width() -> tuple[int, str]:
    """Widest vector ISA the host CPU offers (as numba's LLVM sees it)."""
    try:
        import llvmlite.binding as llvm

        feats = {
            f[1:] for f in llvm.get_host_cpu_features().flatten().split(",") if f.startswith("+")
        }
    except Exception:
        feats = set()
    for bits, names in (
        (512, ("avx512f",)),
        (256, ("avx2", "avx")),
        (128, ("sse2", "neon")),
        (128, ("altivec", "vsx")),
    ):
        hit = [n for n in names if n in feats]
        if hit:
            return bits, hit[0]
    if platform.machine().lower() in ("arm64", "aarch64"):
        return 128, "neon"
    return 0, "unknown"


def _vector_registers() -> str:
    """Register width LLVM uses for a float32 loop compiled like fastact's kernels (with
    fastact's vector-width setting, ``FASTACT_VECTOR_WIDTH``; compiles a tiny kernel)."""
    try:
        from fastact._core.jit import jit

        @jit(cache=False)
        def axpy(x, out, a):  # pragma: no cover - compiled
            for i in range(x.shape[0]):
                out[i] = x[i] * a + out[i]

        a = np.zeros(64, np.float32)
        axpy(a, a.copy(), np.float32(2))
        asm = axpy.inspect_asm(axpy.signatures[0])
        for reg, bits in (("zmm", 512), ("ymm", 256), ("xmm", 128), ("v0.4s", 128)):
            if reg in asm:
                return f"{reg} ({bits}-bit)"
        return "scalar"
    except Exception as e:  # never fail `info`
        return f"unknown ({type(e).__name__})"


def _cuda() -> tuple[bool, str]:
    import warnings

    try:
        if importlib.util.find_spec("fastact.cuda") is not None:
            import fastact.cuda as fc

            return bool(fc.is_available()), "fastact.cuda"
    except Exception as e:
        return False, f"fastact.cuda failed: {type(e).__name__}: {e}"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from numba import cuda

            ok = bool(cuda.is_available())
        return ok, "numba.cuda"
    except Exception as e:
        return False, f"numba.cuda unavailable: {type(e).__name__}"


def format_info(d: dict) -> str:
    width = max(len(k) for k in d)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in d.items()) + "\n"


# ============================================================================ CLI
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m fastact", description="fastact's benchmark command and environment report."
    )
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser(
        "bench",
        help="time fastact against torch, NumPy and numexpr",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    b.add_argument(
        "--functions",
        "-f",
        action="append",
        metavar="NAMES",
        help="comma-separated names or globs (repeatable), e.g. 'sigmoid,gelu*'",
    )
    b.add_argument(
        "--sizes",
        "-s",
        default=None,
        metavar="LIST",
        help="comma-separated element counts (1K = 1024, 16M = 16*2**20); default 1K,256K,16M",
    )
    b.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    b.add_argument(
        "--threads",
        "-t",
        type=int,
        default=None,
        help="threads for every library (default: the CPUs this process may use)",
    )
    b.add_argument(
        "--families",
        default=None,
        metavar="LIST",
        help="activation,loss,optimizer (default: all that match --functions)",
    )
    b.add_argument(
        "--libraries",
        default=None,
        metavar="LIST",
        help="peers to time: torch,numpy,numexpr (default: all installed)",
    )
    b.add_argument("--format", default="text", choices=["text", "markdown", "json"])
    b.add_argument(
        "--output",
        "-o",
        default=None,
        metavar="FILE",
        help="write the table there instead of stdout",
    )
    b.add_argument(
        "--plot",
        default=None,
        metavar="FILE.png",
        help="draw the ratios as a bar chart (needs matplotlib)",
    )
    b.add_argument("--quick", action="store_true", help="fewer repetitions (noisier)")
    b.add_argument(
        "--rounds",
        type=int,
        default=1,
        metavar="N",
        help="time the activations in N rounds, libraries alternating, and report the median "
        "over rounds (steadier ratios on a shared or noisy machine); default 1",
    )
    b.add_argument(
        "--in-process",
        action="store_true",
        help="time every library in this process (one block each) instead of "
        "one spawned process per library",
    )
    b.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    sub.add_parser(
        "info",
        help="version, threading layer, threads, SIMD width, cache folder, CUDA availability",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "info":
        sys.stdout.write(format_info(info()))
        return 0
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            sys.stderr.write("--plot needs matplotlib (pip install matplotlib)\n")
            return 2
    try:
        report = run(
            functions=args.functions,
            sizes=_split(args.sizes),
            dtype=args.dtype,
            threads=args.threads,
            libraries=_split(args.libraries),
            families=_split(args.families),
            quick=args.quick,
            isolate=not args.in_process,
            progress=not args.no_progress,
            rounds=args.rounds,
        )
    except ValueError as e:
        sys.stderr.write(f"python -m fastact bench: {e}\n")
        return 2
    text = format_report(report, args.format)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as fh:
            fh.write(text)
        sys.stderr.write(f"wrote {args.output}\n")
    else:
        sys.stdout.write(text)
    if args.plot:
        plot(report, args.plot)
        sys.stderr.write(f"wrote {args.plot}\n")
    return 0


def _split(text: str | None) -> list[str] | None:
    if not text:
        return None
    return [t.strip() for t in text.split(",") if t.strip()]
