"""Losses on CUDA device arrays: value and gradient in one pass, from the CPU loss scalars.

The element-wise losses of :mod:`fastact.losses` with the same signatures (including torch's
deprecated ``size_average``/``reduce``) and the same ``return_grad=True`` convention. Each
runs one grid-stride kernel around the CPU's scalar ``f(a, b, c, w1, w2, prm) -> (value,
d1, d2, bad)`` (``fastact._losses_kernels.ELEMENTWISE_SCALARS``, compiled for the device),
reducing the values in float64 per block (shared-memory tree), then a one-block second pass
divides by the loss's divisor. The reduced loss is a 0-d device array of the input's library
(a torch 0-d CUDA tensor for torch input), so nothing waits for the GPU, except:

* losses with a domain check (binary_cross_entropy, gaussian_nll_loss) read one count back
  from the device to raise ``ValueError`` like the CPU version;
* a weighted ``'mean'`` (mse/l1 with ``weight``) reads ``sum(weight)`` back first.

Device arrays must share one float dtype; ``target`` and the third input must have the
input's shape; ``weight`` / ``pos_weight`` broadcast to it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import cuda, float64

from fastact import _losses_kernels as _LK
from fastact.cuda import require

require("fastact.cuda.losses was called")

from fastact.cuda import _runtime as rt  # noqa: E402
from fastact.cuda._reduce import block_sum  # noqa: E402
from fastact.cuda._retarget import device_function, kernel  # noqa: E402
from fastact.cuda._runtime import THREADS  # noqa: E402
from fastact.losses import _number, _reduction  # noqa: E402

__all__ = [
    "mse_loss",
    "l1_loss",
    "smooth_l1_loss",
    "huber_loss",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "kl_div",
    "poisson_nll_loss",
    "gaussian_nll_loss",
    "soft_margin_loss",
    "margin_ranking_loss",
    "hinge_embedding_loss",
]


# ----------------------------------------------------------------------------- kernels
def _ew_loss(a, b, c, w1, w2, prm, gscale, ga, gb, out, partials):
    """Grid-stride loss over 1-D arrays; partials[0, block] = float64 sum of the values,
    partials[1, block] = count of out-of-domain elements. None arrays are pruned."""
    sh = cuda.shared.array(THREADS, float64)
    n = a.size
    i = cuda.grid(1)
    stride = cuda.gridsize(1)
    acc = 0.0
    nbad = 0.0
    while i < n:
        ai = a[i]
        if w1 is None:
            w1i = lit(ai, 1.0)  # noqa: F821 (bound below)
        else:
            w1i = w1[i]
        if w2 is None:
            w2i = lit(ai, 1.0)  # noqa: F821
        else:
            w2i = w2[i]
        v, d1, d2, isbad = f(ai, b[i], c[i], w1i, w2i, prm)  # noqa: F821 (bound per loss)
        acc += v
        nbad += isbad
        if out is not None:
            out[i] = v
        if ga is not None:
            ga[i] = d1 * gscale
        if gb is not None:
            gb[i] = d2 * gscale
        i += stride
    total = block_sum(acc, sh)
    bad = block_sum(nbad, sh)
    if cuda.threadIdx.x == 0:
        partials[0, cuda.blockIdx.x] = total
        partials[1, cuda.blockIdx.x] = bad


def _finalize(partials, div, loss, count):
    """One block: loss[0] = sum(partials[0]) / div (in the loss dtype), count[0] = bad."""
    sh = cuda.shared.array(THREADS, float64)
    acc = 0.0
    nbad = 0.0
    for j in range(cuda.threadIdx.x, partials.shape[1], THREADS):
        acc += partials[0, j]
        nbad += partials[1, j]
    total = block_sum(acc, sh)
    bad = block_sum(nbad, sh)
    if cuda.threadIdx.x == 0:
        loss[0] = total / div
        count[0] = bad


def _sum(x, partials):
    """partials[0, block] = float64 sum of x over the block's elements (row 1: zero)."""
    sh = cuda.shared.array(THREADS, float64)
    i = cuda.grid(1)
    stride = cuda.gridsize(1)
    acc = 0.0
    while i < x.size:
        acc += float64(x[i])
        i += stride
    total = block_sum(acc, sh)
    if cuda.threadIdx.x == 0:
        partials[0, cuda.blockIdx.x] = total
        partials[1, cuda.blockIdx.x] = 0.0


_KERNELS: dict[str, Any] = {}


def _get(name: str):
    k = _KERNELS.get(name)
    if k is None:
        from fastact._math import lit

        if name == "finalize":
            k = kernel(_finalize, "loss_finalize_cuda")
        elif name == "sum":
            k = kernel(_sum, "loss_sum_cuda")
        else:
            f = device_function(_LK.ELEMENTWISE_SCALARS[name])
            k = kernel(_ew_loss, f"loss_{name}_cuda", f=f, lit=lit)
        _KERNELS[name] = k
    return k


# ----------------------------------------------------------------------------- engine
def _full(x: Any, name: str, shape: tuple, dtype: np.dtype, stream):
    """A device array of ``shape`` (C-contiguous, 1-D view) from ``x`` broadcast to it."""
    d = rt.float_view(x, name)
    if d.dtype != dtype:
        raise TypeError(
            f"{name} has dtype {d.dtype} but input has dtype {dtype}; device "
            "arrays must share one dtype"
        )
    if tuple(d.shape) == tuple(shape):
        return rt.flat(rt.contiguous(d, stream))
    try:
        ok = np.broadcast_shapes(tuple(d.shape), tuple(shape)) == tuple(shape)
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(
            f"{name} of shape {tuple(d.shape)} does not broadcast to input's {tuple(shape)}"
        )
    src = rt.contiguous(d, stream).reshape(*((1,) * (len(shape) - d.ndim) + tuple(d.shape)))
    tmp = cuda.device_array(tuple(shape), dtype=dtype, stream=stream)
    rt.assign(tmp, src, stream)
    return rt.flat(tmp)


def _same(x: Any, name: str, shape: tuple, dtype: np.dtype, stream):
    d = rt.float_view(x, name)
    if tuple(d.shape) != tuple(shape):
        raise ValueError(
            f"{name} must have the same shape as input on the device: got "
            f"{tuple(d.shape)} and {tuple(shape)}"
        )
    if d.dtype != dtype:
        raise TypeError(
            f"{name} has dtype {d.dtype} but input has dtype {dtype}; device "
            "arrays must share one dtype"
        )
    return rt.flat(rt.contiguous(d, stream))


def _reduce_blocks(n: int) -> int:
    return rt.blocks(n)


def _device_sum(x, stream) -> float:
    """float64 sum of a flat device array, read back to the host (synchronises)."""
    nb = _reduce_blocks(x.size)
    partials = cuda.device_array((2, nb), dtype=np.float64, stream=stream)
    _get("sum")[nb, THREADS, stream](x, partials)
    loss = cuda.device_array(1, dtype=np.float64, stream=stream)
    count = cuda.device_array(1, dtype=np.float64, stream=stream)
    _get("finalize")[1, THREADS, stream](partials, 1.0, loss, count)
    return float(loss.copy_to_host(stream=stream)[0])


def _run(
    name: str,
    reduction: str,
    like: Any,
    arrays: list,
    grad_of: int,
    return_grad: bool,
    prm: tuple = (0.0,),
    weights: tuple = (None, None),
    div: float | None = None,
    weighted_mean: bool = False,
    check: str | None = None,
    stream=None,
):
    """Run loss ``name`` over flat device ``arrays`` (a, b[, c]) of ``like``'s shape."""
    shape = tuple(rt.view(like, "input").shape)
    a = arrays[0]
    dt = a.dtype
    n = a.size
    w1, w2 = weights
    if div is None:
        div = float(n)
    if weighted_mean and w1 is not None and reduction == "mean":
        div = _device_sum(w1, stream)
    gscale = dt.type(1.0 / div if div else math.inf) if reduction == "mean" else dt.type(1.0)
    want = grad_of if return_grad else 0
    grads = []
    views = []
    for _ in range(want):
        res, g = rt.empty(like, shape, dt, stream)
        grads.append(res)
        views.append(rt.flat(g))
    out_res = out = None
    if reduction == "none":
        out_res, o = rt.empty(like, shape, dt, stream)
        out = rt.flat(o)
    nb = _reduce_blocks(n)
    partials = cuda.device_array((2, nb), dtype=np.float64, stream=stream)
    c = arrays[2] if len(arrays) > 2 else a
    prm_t = tuple(dt.type(p) for p in prm)
    ga = views[0] if want >= 1 else None
    gb = views[1] if want >= 2 else None
    _get(name)[nb, THREADS, stream](a, arrays[1], c, w1, w2, prm_t, gscale, ga, gb, out, partials)
    loss_res, lv = rt.empty(like, (), dt, stream)
    count = cuda.device_array(1, dtype=np.float64, stream=stream)
    _get("finalize")[1, THREADS, stream](
        partials, div if reduction == "mean" else 1.0, lv.reshape(1), count
    )
    if check is not None and n and count.copy_to_host(stream=stream)[0] > 0:
        raise ValueError(check)
    loss = out_res if reduction == "none" else loss_res
    if not return_grad:
        return loss
    return loss, (grads[0] if want == 1 else tuple(grads))


def _inputs(input: Any, others: tuple[tuple[Any, str], ...]):
    x = rt.float_view(input, "input")
    stream = rt.stream_of(input, *(o for o, _ in others))
    shape, dt = tuple(x.shape), x.dtype
    flats = [rt.flat(rt.contiguous(x, stream))]
    flats += [_same(o, name, shape, dt, stream) for o, name in others]
    return flats, shape, dt, stream


def _weight(w: Any, name: str, shape: tuple, dt: np.dtype, stream):
    return None if w is None else _full(w, name, shape, dt, stream)


# ----------------------------------------------------------------------------- losses
def mse_loss(
    input,
    target,
    size_average=None,
    reduce=None,
    reduction: str = "mean",
    weight=None,
    *,
    return_grad: bool = False,
):
    """On CUDA device arrays: ``w (x - t)^2``, mean ``sum(w l) / sum(w)`` like torch."""
    red = _reduction(reduction, size_average, reduce)
    arrs, shape, dt, s = _inputs(input, ((target, "target"),))
    w = _weight(weight, "weight", shape, dt, s)
    return _run(
        "mse", red, input, arrs, 1, return_grad, weights=(w, None), weighted_mean=True, stream=s
    )


def l1_loss(
    input,
    target,
    size_average=None,
    reduce=None,
    reduction: str = "mean",
    weight=None,
    *,
    return_grad: bool = False,
):
    """On CUDA device arrays: ``w |x - t|`` (gradient 0 at x == t)."""
    red = _reduction(reduction, size_average, reduce)
    arrs, shape, dt, s = _inputs(input, ((target, "target"),))
    w = _weight(weight, "weight", shape, dt, s)
    return _run(
        "l1", red, input, arrs, 1, return_grad, weights=(w, None), weighted_mean=True, stream=s
    )


def smooth_l1_loss(
    input,
    target,
    size_average=None,
    reduce=None,
    reduction: str = "mean",
    beta: float = 1.0,
    *,
    return_grad: bool = False,
):
    """On CUDA device arrays: ``0.5 d^2 / beta`` if ``|d| < beta`` else ``|d| - 0.5 beta``."""
    red = _reduction(reduction, size_average, reduce)
    beta = _number(beta, "beta")
    if beta < 0:
        raise ValueError(f"beta must be non-negative, got {beta}")
    arrs, _, _, s = _inputs(input, ((target, "target"),))
    inv = math.inf if beta == 0 else 1.0 / beta
    return _run("smooth_l1", red, input, arrs, 1, return_grad, prm=(beta, inv), stream=s)


def huber_loss(
    input,
    target,
    reduction: str = "mean",
    delta: float = 1.0,
    weight=None,
    *,
    return_grad: bool = False,
):
    """On CUDA device arrays: ``0.5 d^2`` if ``|d| < delta`` else ``delta (|d| - delta/2)``."""
    red = _reduction(reduction)
    delta = _number(delta, "delta")
    if not delta > 0:
        raise ValueError(f"delta must be positive, got {delta}")
    arrs, shape, dt, s = _inputs(input, ((target, "target"),))
    w = _weight(weight, "weight", shape, dt, s)
    return _run(
        "huber", red, input, arrs, 1, return_grad, prm=(delta,), weights=(w, None), stream=s
    )


def binary_cross_entropy(
    input,
    target,
    weight=None,
    size_average=None,
    reduce=None,
    reduction: str = "mean",
    *,
    return_grad: bool = False,
):
    """On CUDA device arrays: ``-w [t log p + (1 - t) log(1 - p)]`` (logs clamped at -100);
    raises ValueError (one value read back) when input or target leaves [0, 1]."""
    red = _reduction(reduction, size_average, reduce)
    arrs, shape, dt, s = _inputs(input, ((target, "target"),))
    w = _weight(weight, "weight", shape, dt, s)
    return _run(
        "bce",
        red,
        input,
        arrs,
        1,
        return_grad,
        weights=(w, None),
        check="all elements of input and target should be between 0 and 1",
        stream=s,
    )


def binary_cross_entropy_with_logits(
    input,
    target,
    weight=None,
    size_average=None,
    reduce=None,
    reduction: str = "mean",
    pos_weight=None,
    *,
    return_grad: bool = False,
):
    """On CUDA device arrays: ``-w [pw t log sigmoid(x) + (1 - t) log sigmoid(-x)]``."""
    red = _reduction(reduction, size_average, reduce)
    arrs, shape, dt, s = _inputs(input, ((target, "target"),))
    w = _weight(weight, "weight", shape, dt, s)
    pw = _weight(pos_weight, "pos_weight", shape, dt, s)
    return _run("bce_logits", red, input, arrs, 1, return_grad, weights=(w, pw), stream=s)


def kl_div(
    input,
    target,
    size_average=None,
    reduce=None,
    reduction: str = "mean",
    log_target: bool = False,
    *,
    return_grad: bool = False,
):
    """On CUDA device arrays: ``t (log t - x)`` or ``exp(t) (t - x)`` (log_target);
    'batchmean' divides by ``input.shape[0]``."""
    import warnings

    red = _reduction(reduction, size_average, reduce, extra=("batchmean",))
    arrs, shape, _, s = _inputs(input, ((target, "target"),))
    div = None
    if red == "mean":
        warnings.warn(
            "reduction: 'mean' divides the total loss by both the batch size and the support "
            "size.'batchmean' divides only by the batch size, and aligns with the KL div math "
            "definition.'mean' will be changed to behave the same as 'batchmean' in the next "
            "major release.",
            UserWarning,
            stacklevel=2,
        )
    elif red == "batchmean":
        div, red = float(shape[0] if shape else 1), "mean"
    return _run(
        "kl_log" if log_target else "kl", red, input, arrs, 1, return_grad, div=div, stream=s
    )


def poisson_nll_loss(
    input,
    target,
    log_input: bool = True,
    full: bool = False,
    size_average=None,
    eps: float = 1e-8,
    reduce=None,
    reduction: str = "mean",
    *,
    return_grad: bool = False,
):
    """On CUDA device arrays: ``exp(x) - t x`` (log_input) or ``x - t log(x + eps)``."""
    red = _reduction(reduction, size_average, reduce)
    eps = _number(eps, "eps")
    arrs, _, _, s = _inputs(input, ((target, "target"),))
    name = ("poisson_log" if log_input else "poisson") + ("_full" if full else "")
    return _run(name, red, input, arrs, 1, return_grad, prm=(eps,), stream=s)


def gaussian_nll_loss(
    input,
    target,
    var,
    full: bool = False,
    eps: float = 1e-6,
    reduction: str = "mean",
    *,
    return_grad: bool = False,
):
    """On CUDA device arrays (``var`` of input's shape): ``0.5 (log v + (x - t)^2 / v)``,
    ``v = max(var, eps)``; gradients ``(grad_input, grad_var)``."""
    red = _reduction(reduction)
    eps = _number(eps, "eps")
    arrs, _, _, s = _inputs(input, ((target, "target"), (var, "var")))
    k = 0.5 * math.log(2.0 * math.pi) if full else 0.0
    return _run(
        "gaussian_nll",
        red,
        input,
        arrs,
        2,
        return_grad,
        prm=(eps, k),
        check="var has negative entry/entries",
        stream=s,
    )


def soft_margin_loss(
    input,
    target,
    size_average=None,
    reduce=None,
    reduction: str = "mean",
    *,
    return_grad: bool = False,
):
    """On CUDA device arrays: ``log(1 + exp(-y x))``, computed stably."""
    red = _reduction(reduction, size_average, reduce)
    arrs, _, _, s = _inputs(input, ((target, "target"),))
    return _run("soft_margin", red, input, arrs, 1, return_grad, stream=s)


def margin_ranking_loss(
    input1,
    input2,
    target,
    margin: float = 0.0,
    size_average=None,
    reduce=None,
    reduction: str = "mean",
    *,
    return_grad: bool = False,
):
    """On CUDA device arrays: ``max(0, -y (x1 - x2) + margin)``; gradients
    ``(grad_input1, grad_input2)``."""
    red = _reduction(reduction, size_average, reduce)
    margin = _number(margin, "margin")
    arrs, _, _, s = _inputs(input1, ((input2, "input2"), (target, "target")))
    return _run("margin_ranking", red, input1, arrs, 2, return_grad, prm=(margin,), stream=s)


def hinge_embedding_loss(
    input,
    target,
    margin: float = 1.0,
    size_average=None,
    reduce=None,
    reduction: str = "mean",
    *,
    return_grad: bool = False,
):
    """On CUDA device arrays: ``x`` where y = 1, ``max(0, margin - x)`` where y = -1."""
    red = _reduction(reduction, size_average, reduce)
    margin = _number(margin, "margin")
    arrs, _, _, s = _inputs(input, ((target, "target"),))
    return _run("hinge_embedding", red, input, arrs, 1, return_grad, prm=(margin,), stream=s)
