"""The activation family: every activation's forward, backward and in-place call.

Cases are plain dicts (picklable, sent to the worker processes); :func:`build` makes the
:class:`~fastact.bench.timing.Runner` of one library for one case. torch is timed on
``torch.from_numpy`` views of the same arrays (no copy): its forward is ``torch.sigmoid`` /
``F.*``, its backward the aten kernel autograd would run (``torch.autograd.grad`` with
``retain_graph`` only where there is none). fastact's backward is timed from the same tensor
torch's autograd saves: the output for sigmoid, tanh, relu and the softmax family, the input
otherwise. In-place calls restore their input, untimed, before every call.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from . import peers
from .timing import Runner, Unsupported

__all__ = ["BENCH_PARAMS", "GRAD_FROM_OUTPUT", "Inputs", "build", "cases", "names"]

FAMILY = "activation"
#: Parameter values for parameters without a default (torch's ``threshold(x, threshold,
#: value)``).
BENCH_PARAMS: dict[str, tuple] = {"threshold": (0.1, 20.0)}
#: Activations whose backward torch computes from the forward's *output* (what its autograd
#: saves); fastact is timed from the same tensor so both kernels read the same data.
GRAD_FROM_OUTPUT = frozenset({"sigmoid", "tanh", "relu", "softmax", "log_softmax", "softmin"})
#: Columns (timed implementations) each library contributes to this family.
COLUMNS = {
    "fastact": ("fastact",),
    "torch": ("torch",),
    "numpy": ("numpy",),
    "numexpr": ("numexpr",),
}


def names() -> list[str]:
    """Element-wise activations (registry order, plus ``gelu_tanh``), then the axis ones."""
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


def axis_shapes(name: str, n: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(input shape, output shape) of activation ``name`` with ``n`` input elements."""
    from fastact.activations import AXIS_ACTIVATIONS

    if name not in AXIS_ACTIVATIONS:
        return (n,), (n,)
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


def cases(
    patterns: Sequence[str] | None, sizes: Sequence[int], dtype: str = "float32"
) -> list[dict]:
    """Benchmark cases of the activations matching ``patterns`` (names or globs)."""
    from .rows import matches

    inplace = _inplace_names()
    out = []
    for name in (n for n in names() if matches(n, patterns)):
        variants = ("forward", "backward") + (("inplace",) if name in inplace else ())
        for variant in variants:
            for n in sizes:
                case: dict[str, Any] = {
                    "family": FAMILY,
                    "function": name,
                    "variant": variant,
                    "size": int(n),
                    "dtype": np.dtype(dtype).name,
                }
                if variant == "backward":
                    case["grad_from"] = "output" if name in GRAD_FROM_OUTPUT else "input"
                item = np.dtype(dtype).itemsize
                case["bytes"] = int(_bytes_factor(name, variant) * n * item)
                case["probe"] = "rmw" if variant == "inplace" else "copy"
                out.append(case)
    return out


def params(name: str) -> tuple:
    """The parameter values an element-wise activation is benchmarked with."""
    if name in BENCH_PARAMS:
        return BENCH_PARAMS[name]
    from fastact.activations import ACTIVATIONS

    op = ACTIVATIONS.get(name)
    return tuple(d for _, d in op.params) if op is not None else ()


class Inputs:
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


def _case_arrays(case: dict, inputs: Inputs) -> tuple[np.ndarray, np.ndarray]:
    name, n = case["function"], case["size"]
    x0, g0 = inputs.get(n, case["dtype"])
    shape, oshape = axis_shapes(name, n)
    return x0.reshape(shape), g0[: math.prod(oshape)].reshape(oshape)


def build(column: str, case: dict, inputs: Inputs | None = None) -> Runner:
    """The :class:`Runner` of ``column`` (fastact, torch, numpy or numexpr) for a case;
    raises :class:`Unsupported` where the library has no equivalent."""
    inputs = inputs or Inputs()
    if case.get("family", FAMILY) != FAMILY:
        raise Unsupported(f"{case.get('family')} cases are built by their own module")
    x, g = _case_arrays(case, inputs)
    builder = {
        "fastact": _build_fastact,
        "torch": _build_torch,
        "numpy": _build_numpy,
        "numexpr": _build_numexpr,
    }.get(column)
    if builder is None:
        raise Unsupported(f"no {column} column for activations")
    return builder(case, x, g)


def inplace_runner(
    x: np.ndarray,
    make: Callable[[np.ndarray], Callable[[], Any]],
    wrap: Callable[[np.ndarray], Any] | None = None,
) -> Runner:
    """A runner of an in-place call on a copy of ``x``, restored (untimed) before each call."""
    buf = np.empty_like(x)
    np.copyto(buf, x)
    target = wrap(buf) if wrap else buf
    return Runner(make(target), functools.partial(np.copyto, buf, x), keep=(buf, target))


# ---------------------------------------------------------------------------- fastact
def _axis_args(name: str, x: np.ndarray) -> tuple[tuple, dict] | None:
    """(positional args, keyword args) of an axis activation for an input x, or None."""
    if name in ("softmax", "log_softmax", "softmin", "glu"):
        return (), {"dim": -1}
    if name == "maxout":
        return (4,), {"dim": 1}
    if name == "prelu":
        return (peers.prelu_weight(x),), {}
    if name == "rrelu":
        return (0.125, 1 / 3, False), {}
    return None


def _build_fastact(case: dict, x: np.ndarray, g: np.ndarray) -> Runner:
    import fastact

    name, variant = case["function"], case["variant"]
    p = params(name)
    axis = _axis_args(name, x)
    if axis is not None:
        args, kw = axis
        fwd = getattr(fastact, name)
        if variant == "forward":
            return Runner(functools.partial(fwd, x, *args, **kw))
        if variant == "inplace":
            return inplace_runner(x, lambda b: functools.partial(fastact.rrelu_, b, *args))
        bwd = getattr(fastact, name + "_backward")
        if case.get("grad_from") == "output":
            y = fwd(x, *args, **kw)
            return Runner(functools.partial(bwd, g, None, *args, output=y, **kw))
        return Runner(functools.partial(bwd, g, x, *args, **kw))
    if name == "gelu_tanh":
        name, p = "gelu", ("tanh",)
    if variant == "forward":
        return Runner(functools.partial(getattr(fastact, name), x, *p))
    if variant == "inplace":
        f = getattr(fastact, name + "_")
        return inplace_runner(x, lambda b: functools.partial(f, b, *p))
    bwd = getattr(fastact, name + "_backward")
    if case.get("grad_from") == "output":
        y = getattr(fastact, name)(x, *p)
        return Runner(functools.partial(bwd, g, None, *p, output=y))
    return Runner(functools.partial(bwd, g, x, *p))


# ---------------------------------------------------------------------------- torch
def _apply(f: Callable, p: tuple, t: Any) -> Any:
    return f(t, *p)


def _build_torch(case: dict, x: np.ndarray, g: np.ndarray) -> Runner:
    import torch
    import torch.nn.functional as F

    name, variant = case["function"], case["variant"]
    p = params(name)
    xt, gt = torch.from_numpy(x), torch.from_numpy(g)  # zero-copy views
    if name == "prelu":
        w = torch.from_numpy(peers.prelu_weight(x))
        fwd: Callable = functools.partial(F.prelu, weight=w)
    elif name == "maxout":
        rows, cols = x.shape
        fwd = lambda t: t.view(rows, cols // 4, 4).amax(-1)  # torch has no maxout
    elif name in ("softmax", "log_softmax", "softmin", "glu"):
        fwd = functools.partial(getattr(F, name), dim=-1)
    elif name == "rrelu":
        fwd = functools.partial(F.rrelu, lower=0.125, upper=1 / 3, training=False)
    else:
        f = peers.torch_forward(name)
        if variant == "forward":
            return Runner(functools.partial(f, xt, *p), keep=(xt, gt))
        fwd = functools.partial(_apply, f, p)
    if variant == "forward":
        return Runner(functools.partial(fwd, xt), keep=(xt, gt))
    if variant == "inplace":
        if name == "rrelu":
            return inplace_runner(
                x,
                lambda b: functools.partial(F.rrelu_, b, 0.125, 1 / 3, False),
                wrap=torch.from_numpy,
            )
        f = getattr(F, name)
        return inplace_runner(
            x, lambda b: functools.partial(f, b, *p, inplace=True), wrap=torch.from_numpy
        )
    yt = fwd(xt)
    fn = peers.torch_backward(name, gt, xt, yt, p)
    if fn is not None:
        return Runner(fn, keep=(xt, gt, yt))
    # autograd fallback: only the backward graph is run (retain_graph), nothing accumulates
    xr = xt.clone().requires_grad_(True)
    leaves: tuple = (xr,)
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
def _build_numpy(case: dict, x: np.ndarray, g: np.ndarray) -> Runner:
    name, variant = case["function"], case["variant"]
    p = params(name)
    if variant == "forward":
        fn = peers.np_forward(name, x, p)
        if fn is None:
            raise Unsupported(f"no NumPy formula for {name}")
        return Runner(fn)
    if variant == "inplace":
        if name not in peers.NP_INPLACE:
            raise Unsupported(f"no in-place NumPy formula for {name}")
        return inplace_runner(x, lambda b: peers.np_inplace(name, b, p))
    f = peers.np_backward(name, g, x, p)
    if f is None:
        raise Unsupported(f"no NumPy gradient formula for {name}")
    if case.get("grad_from") == "output":
        y = peers.np_forward(name, x, p)()
        return Runner(functools.partial(f, y))
    return Runner(f)


# ---------------------------------------------------------------------------- numexpr
def _build_numexpr(case: dict, x: np.ndarray, g: np.ndarray) -> Runner:
    import numexpr as ne

    name, variant = case["function"], case["variant"]
    if name not in peers.NE_FORWARD or (variant == "backward" and name not in peers.NE_BACKWARD):
        raise Unsupported(f"no numexpr expression for {name} {variant}")
    expr, consts = peers.NE_FORWARD[name]
    t = x.dtype.type
    env = {k: t(v) for k, v in consts.items()}
    env.update({f"p{i}": t(v) for i, v in enumerate(params(name))})
    if variant == "forward":
        return Runner(functools.partial(ne.evaluate, expr, local_dict={"x": x, **env}))
    if variant == "inplace":
        return inplace_runner(
            x, lambda b: functools.partial(ne.evaluate, expr, local_dict={"x": b, **env}, out=b)
        )
    v = x
    if case.get("grad_from") == "output":
        v = ne.evaluate(expr, local_dict={"x": x, **env})
    return Runner(
        functools.partial(ne.evaluate, peers.NE_BACKWARD[name], local_dict={"x": v, "g": g, **env}),
        keep=v,
    )
