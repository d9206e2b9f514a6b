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
* a weighted ``'mean'`` (mse/l1 with ``weight``) reads ``sum(weight)`` back first;
* cross_entropy / nll_loss with class-index targets validate the indices on the device and
  read the out-of-range count and ``sum(w[y])`` (the 'mean' divisor) back.

Device arrays must share one float dtype; ``target`` and the third input must have the
input's shape; ``weight`` / ``pos_weight`` broadcast to it.

Row-wise losses (cross_entropy, nll_loss, cosine_embedding_loss, triplet_margin_loss,
multilabel_soft_margin_loss) take the CPU functions' arguments too (``grad_out`` as device
buffers; class indices as an integer device array): one block per row of a contiguous axis
(threads over its elements, shared-memory float64 block reductions), one thread per sample
for cross_entropy over (N, C, d1, ...) inputs; no global atomics.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import cuda, float64

from fastact import _losses_kernels as _LK
from fastact._core.math import exp, lit
from fastact._losses_kernels import _diff_eps, _norm_terms
from fastact.cuda import require

require("fastact.cuda.losses was called")

from fastact.cuda import _runtime as rt  # noqa: E402
from fastact.cuda._reduce import block_max, block_sum  # noqa: E402
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
            w2i = lit(ai, 1.0)
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
        from fastact._core.math import lit

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


# ============================================================================= row-wise losses
# cross_entropy / nll_loss see the input as (N, C, D) (class axis C, D = prod of the spatial
# dims); cosine_embedding / triplet_margin / multilabel_soft_margin work on rows of the last
# axis. A row of a contiguous axis is one block (threads over its elements, shared-memory
# block reductions, float64 sums); (N, C, D) with D > 1 is one thread per sample (its classes
# are D apart, so neighbouring threads read neighbouring addresses). Each block writes its
# float64 loss sum to ``partials[0, block]``; the one-block ``_finalize`` divides.
_NEG_INF = -math.inf


def _class_stats(y, w, ignore_index, n_classes, partials):
    """Class-index targets: partials[0] = sum of w[y] over kept targets (w None: count),
    [1] = out-of-range count, [2] = max of -(position) over the bad ones, [3] = sum of w."""
    sh = cuda.shared.array(THREADS, float64)
    i = cuda.grid(1)
    stride = cuda.gridsize(1)
    kept = 0.0
    nbad = 0.0
    first = _NEG_INF
    while i < y.size:
        yi = y[i]
        if yi != ignore_index:
            if yi < 0 or yi >= n_classes:
                nbad += 1.0
                if -float64(i) > first:
                    first = -float64(i)
            elif w is None:
                kept += 1.0
            else:
                kept += float64(w[yi])
        i += stride
    wsum = 0.0
    if w is not None:
        j = cuda.grid(1)
        while j < w.size:
            wsum += float64(w[j])
            j += stride
    a = block_sum(kept, sh)
    b = block_sum(nbad, sh)
    c = block_max(first, sh)
    d = block_sum(wsum, sh)
    if cuda.threadIdx.x == 0:
        partials[0, cuda.blockIdx.x] = a
        partials[1, cuda.blockIdx.x] = b
        partials[2, cuda.blockIdx.x] = c
        partials[3, cuda.blockIdx.x] = d


def _ce_rows(x, y, q, w, wsum, eps, ignore_index, gscale, g, out, partials):
    """cross_entropy over (N, C) rows, one block per row (blocks stride over rows).

    Index target ``y`` (q None): (1 - eps) w_y (lse - x_y) + eps/C (lse W - sum_c w_c x_c);
    probabilities ``q``: with q' = (1 - eps) q + eps/C, sum_c w_c q'_c (lse - x_c). Gradient
    p_j coef - (smoothed target terms), like the CPU's ``_ce_row`` (same operation order).
    """
    sh = cuda.shared.array(THREADS, float64)
    n_rows, n_cls = x.shape
    tid = cuda.threadIdx.x
    acc = 0.0
    r = cuda.blockIdx.x
    while r < n_rows:
        yr = 0
        skip = False
        if y is not None:
            yr = y[r]
            skip = yr == ignore_index
        if skip:
            if g is not None:
                for c in range(tid, n_cls, THREADS):
                    g[r, c] = lit(x[r, c], 0.0)
            if tid == 0 and out is not None:
                out[r] = 0.0
        else:
            m = _NEG_INF
            for c in range(tid, n_cls, THREADS):
                v = float64(x[r, c])
                if v > m or m != m:
                    m = v
            mt = lit(x[r, 0], block_max(m, sh))
            keep = lit(mt, 1.0 - eps)
            spread = lit(mt, eps / n_cls)
            s = 0.0
            sx = 0.0
            sq = 0.0
            for c in range(tid, n_cls, THREADS):
                xc = x[r, c]
                s += exp(xc - mt)
                wc = lit(xc, 1.0) if w is None else w[c]
                if q is None:
                    if eps != 0:
                        sx += wc * xc
                else:
                    wq = wc * (q[r, c] * keep + spread)
                    sx += wq * xc
                    sq += wq
            s = block_sum(s, sh)
            if q is not None or eps != 0:  # the same for every thread of the block
                sx = block_sum(sx, sh)
            if q is not None:
                sq = block_sum(sq, sh)
            lse = mt + math.log(s)
            if q is None:
                wy = 1.0 if w is None else float64(w[yr])
                xy = x[r, yr]
                loss = (1.0 - eps) * wy * (lse - xy) + (eps / n_cls) * (lse * wsum - sx)
                coef = gscale * ((1.0 - eps) * wy + eps * wsum / n_cls)
            else:
                wy = 0.0
                loss = sq * lse - sx
                coef = gscale * sq
            if g is not None:
                a = lit(mt, coef / s)
                if q is None:
                    b = lit(mt, gscale * eps / n_cls)
                    cy = lit(mt, gscale * (1.0 - eps) * wy)
                    for c in range(tid, n_cls, THREADS):
                        wc = lit(mt, 1.0) if w is None else w[c]
                        gv = exp(x[r, c] - mt) * a - b * wc
                        if c == yr:
                            gv -= cy
                        g[r, c] = gv
                else:
                    gs = lit(mt, gscale)
                    for c in range(tid, n_cls, THREADS):
                        wc = lit(mt, 1.0) if w is None else w[c]
                        g[r, c] = exp(x[r, c] - mt) * a - gs * wc * (q[r, c] * keep + spread)
            if tid == 0 and out is not None:
                out[r] = loss
            acc += loss
        r += cuda.gridDim.x
    if tid == 0:
        partials[0, cuda.blockIdx.x] = acc
        partials[1, cuda.blockIdx.x] = 0.0


def _ce_columns(x, y, q, w, wsum, eps, ignore_index, gscale, g, out, partials):
    """cross_entropy over (N, C, D) with D > 1: one thread per sample (n, d), float64 block
    sum of the losses. Same formulas as ``_ce_rows``."""
    sh = cuda.shared.array(THREADS, float64)
    n_s, n_cls, n_d = x.shape
    j = cuda.grid(1)
    stride = cuda.gridsize(1)
    acc = 0.0
    while j < n_s * n_d:
        n = j // n_d
        d = j - n * n_d
        yr = 0
        skip = False
        if y is not None:
            yr = y[n, d]
            skip = yr == ignore_index
        loss = 0.0
        if skip:
            if g is not None:
                for c in range(n_cls):
                    g[n, c, d] = lit(x[n, 0, d], 0.0)
        else:
            mt = x[n, 0, d]
            for c in range(1, n_cls):
                v = x[n, c, d]
                if v > mt or mt != mt:
                    mt = v
            keep = lit(mt, 1.0 - eps)
            spread = lit(mt, eps / n_cls)
            s = 0.0
            sx = 0.0
            sq = 0.0
            for c in range(n_cls):
                xc = x[n, c, d]
                s += exp(xc - mt)
                wc = lit(xc, 1.0) if w is None else w[c]
                if q is None:
                    if eps != 0:
                        sx += wc * xc
                else:
                    wq = wc * (q[n, c, d] * keep + spread)
                    sx += wq * xc
                    sq += wq
            lse = mt + math.log(s)
            if q is None:
                wy = 1.0 if w is None else float64(w[yr])
                loss = (1.0 - eps) * wy * (lse - x[n, yr, d]) + (eps / n_cls) * (lse * wsum - sx)
                coef = gscale * ((1.0 - eps) * wy + eps * wsum / n_cls)
            else:
                wy = 0.0
                loss = sq * lse - sx
                coef = gscale * sq
            if g is not None:
                a = lit(mt, coef / s)
                if q is None:
                    b = lit(mt, gscale * eps / n_cls)
                    cy = lit(mt, gscale * (1.0 - eps) * wy)
                    for c in range(n_cls):
                        wc = lit(mt, 1.0) if w is None else w[c]
                        gv = exp(x[n, c, d] - mt) * a - b * wc
                        if c == yr:
                            gv -= cy
                        g[n, c, d] = gv
                else:
                    gs = lit(mt, gscale)
                    for c in range(n_cls):
                        wc = lit(mt, 1.0) if w is None else w[c]
                        g[n, c, d] = exp(x[n, c, d] - mt) * a - gs * wc * (
                            q[n, c, d] * keep + spread
                        )
        if out is not None:
            out[n, d] = loss
        acc += loss
        j += stride
    total = block_sum(acc, sh)
    if cuda.threadIdx.x == 0:
        partials[0, cuda.blockIdx.x] = total
        partials[1, cuda.blockIdx.x] = 0.0


def _nll(x, y, w, ignore_index, gscale, g, out, partials):
    """nll_loss over (N, C, D): loss = -w_y x[n, y, d]; g (zeroed before) gets -w_y gscale."""
    sh = cuda.shared.array(THREADS, float64)
    n_s, n_cls, n_d = x.shape
    j = cuda.grid(1)
    stride = cuda.gridsize(1)
    acc = 0.0
    while j < n_s * n_d:
        n = j // n_d
        d = j - n * n_d
        yi = y[n, d]
        loss = 0.0
        if yi != ignore_index:
            wy = 1.0 if w is None else float64(w[yi])
            loss = -wy * x[n, yi, d]
            if g is not None:
                g[n, yi, d] = -wy * gscale
        if out is not None:
            out[n, d] = loss
        acc += loss
        j += stride
    total = block_sum(acc, sh)
    if cuda.threadIdx.x == 0:
        partials[0, cuda.blockIdx.x] = total
        partials[1, cuda.blockIdx.x] = 0.0


def _zero(a):
    """a[:] = 0 over a flat array (grid-stride)."""
    i = cuda.grid(1)
    stride = cuda.gridsize(1)
    while i < a.size:
        a[i] = 0
        i += stride


def _cosine_rows(x1, x2, y, margin, z0, gscale, g1, g2, out, partials):
    """cosine_embedding_loss, one block per row: cos = x1.x2 / sqrt((|x1|^2 + 1e-12)
    (|x2|^2 + 1e-12)); 1 - cos where y = 1, max(0, cos - margin) where y = -1, else 0."""
    sh = cuda.shared.array(THREADS, float64)
    n_rows, n_d = x1.shape
    tid = cuda.threadIdx.x
    acc = 0.0
    r = cuda.blockIdx.x
    while r < n_rows:
        dot = 0.0
        n1 = 0.0
        n2 = 0.0
        for j in range(tid, n_d, THREADS):
            u = x1[r, j]
            v = x2[r, j]
            dot += u * v
            n1 += u * u
            n2 += v * v
        dot = block_sum(dot, sh)
        n1 = block_sum(n1, sh)
        n2 = block_sum(n2, sh)
        a_ = n1 + 1e-12
        b_ = n2 + 1e-12
        den = math.sqrt(a_ * b_)
        cs = dot / den
        yr = y[r]
        if yr == 1:
            loss = 1.0 - cs
            dl = -1.0
        elif yr == -1:
            z = cs - margin
            loss = 0.0 if z < 0 else z
            dl = 1.0 if z >= 0 else 0.0
        else:
            loss = 0.0
            dl = 0.0
        if tid == 0 and out is not None:
            out[r] = loss
        acc += loss
        if g1 is not None:
            c = gscale * dl
            p = lit(z0, c / den)
            s1 = lit(z0, c * cs / a_)
            s2 = lit(z0, c * cs / b_)
            for j in range(tid, n_d, THREADS):
                u = x1[r, j]
                v = x2[r, j]
                g1[r, j] = p * v - s1 * u
                g2[r, j] = p * u - s2 * v
        r += cuda.gridDim.x
    if tid == 0:
        partials[0, cuda.blockIdx.x] = acc
        partials[1, cuda.blockIdx.x] = 0.0


def _triplet_rows(an, po, ne, margin, p, eps, swap, z0, gscale, ga, gp, gn, out, partials):
    """triplet_margin_loss, one block per row: max(0, margin + d(a, p) - d(a, n)) with
    d(x, y) = ||x - y + eps||_p (swap: min(d(a, n), d(p, n)), ties split the gradient)."""
    sh = cuda.shared.array(THREADS, float64)
    n_rows, n_d = an.shape
    tid = cuda.threadIdx.x
    e = lit(z0, eps)
    acc = 0.0
    r = cuda.blockIdx.x
    while r < n_rows:
        sap = 0.0
        san = 0.0
        spn = 0.0
        for j in range(tid, n_d, THREADS):
            a = an[r, j]
            b = po[r, j]
            c = ne[r, j]
            sap += powabs(_diff_eps(a, b, e), p)  # noqa: F821 (bound per kind of p)
            san += powabs(_diff_eps(a, c, e), p)  # noqa: F821
            spn += powabs(_diff_eps(b, c, e), p)  # noqa: F821
        sap = block_sum(sap, sh)
        san = block_sum(san, sh)
        spn = block_sum(spn, sh)
        dap = root(sap, p)  # noqa: F821
        dan = root(san, p)  # noqa: F821
        dpn = root(spn, p)  # noqa: F821
        alpha = 1.0
        beta = 0.0
        dneg = dan
        if swap:
            if dpn < dan:
                dneg = dpn
                alpha = 0.0
                beta = 1.0
            elif dpn == dan:
                alpha = 0.5
                beta = 0.5
        z = margin + dap - dneg
        loss = 0.0 if z < 0 else z
        if tid == 0 and out is not None:
            out[r] = loss
        acc += loss
        if ga is not None:
            cf = gscale if z >= 0 else 0.0
            ca = lit(e, cf)
            cal = lit(e, cf * alpha)
            cbe = lit(e, cf * beta)
            iap, lap = _norm_terms(dap)
            ian, lan = _norm_terms(dan)
            ipn, lpn = _norm_terms(dpn)
            for j in range(tid, n_d, THREADS):
                a = an[r, j]
                b = po[r, j]
                c = ne[r, j]
                uap = dnorm(_diff_eps(a, b, e), p, iap, lap)  # noqa: F821
                uan = dnorm(_diff_eps(a, c, e), p, ian, lan)  # noqa: F821
                upn = dnorm(_diff_eps(b, c, e), p, ipn, lpn)  # noqa: F821
                ga[r, j] = ca * uap - cal * uan
                gp[r, j] = -ca * uap - cbe * upn
                gn[r, j] = cal * uan + cbe * upn
        r += cuda.gridDim.x
    if tid == 0:
        partials[0, cuda.blockIdx.x] = acc
        partials[1, cuda.blockIdx.x] = 0.0


def _msm_rows(x, t, w, prm, gscale, g, out, partials):
    """multilabel_soft_margin_loss, one block per row of C classes: the row's mean of the
    BCE-with-logits terms (the CPU's scalar ``f``); ``w`` is (1, C) or (R, C)."""
    sh = cuda.shared.array(THREADS, float64)
    n_rows, n_cls = x.shape
    tid = cuda.threadIdx.x
    acc = 0.0
    r = cuda.blockIdx.x
    while r < n_rows:
        s = 0.0
        for c in range(tid, n_cls, THREADS):
            xc = x[r, c]
            one = lit(xc, 1.0)
            if w is None:
                wc = one
            elif w.shape[0] == 1:
                wc = w[0, c]
            else:
                wc = w[r, c]
            v, d1, _d2, _bad = f(xc, t[r, c], xc, wc, one, prm)  # noqa: F821 (bce_logits)
            s += v
            if g is not None:
                g[r, c] = d1 * gscale
        total = block_sum(s, sh)
        if tid == 0 and out is not None:
            out[r] = total / n_cls
        acc += total
        r += cuda.gridDim.x
    if tid == 0:
        partials[0, cuda.blockIdx.x] = acc
        partials[1, cuda.blockIdx.x] = 0.0


_ROW_TEMPLATES = {
    "class_stats": _class_stats,
    "ce_rows": _ce_rows,
    "ce_columns": _ce_columns,
    "nll": _nll,
    "zero": _zero,
    "cosine_rows": _cosine_rows,
    "msm_rows": _msm_rows,
}


def _row_kernel(name: str):
    """The compiled row-wise kernel ``name`` (``triplet_p2`` / ``_p1`` / ``_pgen`` per p)."""
    k = _KERNELS.get(name)
    if k is None:
        glb: dict[str, Any] = {}
        if name.startswith("triplet_"):
            pieces = _LK._PNORM_PIECES[name.split("_", 1)[1]]
            glb.update({key: device_function(fn) for key, fn in pieces.items()})
            template = _triplet_rows
        else:
            template = _ROW_TEMPLATES[name]
            if name == "msm_rows":
                glb["f"] = device_function(_LK.ELEMENTWISE_SCALARS["bce_logits"])
        k = _KERNELS[name] = kernel(template, f"loss_{name}_cuda", **glb)
    return k


# ----------------------------------------------------------------------------- row-wise engine
def _index_view(x: Any, name: str):
    """A device array of integers (class indices), C-contiguous."""
    d = rt.view(x, name)
    if d.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integer class indices, got dtype {d.dtype}")
    return d


def _typed(x: Any, name: str, dt: np.dtype):
    d = rt.float_view(x, name)
    if d.dtype != dt:
        raise TypeError(
            f"{name} has dtype {d.dtype} but input has dtype {dt}; device arrays must share "
            "one dtype"
        )
    return d


def _grad_targets(
    grad_out: Any, return_grad: bool, targets: list[tuple[str, tuple]], dt, inputs: tuple
) -> list:
    """Validate ``grad_out`` (device arrays) like the CPU's ``_grad_buffers``."""
    if grad_out is None:
        return [None] * len(targets)
    if not return_grad:
        raise ValueError("grad_out requires return_grad=True")
    if len(targets) == 1:
        bufs = (grad_out,)
    else:
        names = ", ".join(n for n, _ in targets)
        if not isinstance(grad_out, tuple) or len(grad_out) != len(targets):
            raise TypeError(f"grad_out must be a tuple of {len(targets)} arrays or None ({names})")
        bufs = grad_out
    out: list = []
    for buf, (name, shape) in zip(bufs, targets, strict=True):
        if buf is None:
            out.append(None)
            continue
        label = f"grad_out for {name}"
        d = rt.check_out(buf, shape, dt, (), label)
        if not d.is_c_contiguous():
            raise ValueError(f"{label} must be C-contiguous")
        for other in tuple(inputs) + tuple(o[1] for o in out if o is not None):
            if other is not None and other.size and d.size and rt.overlaps(d, other):
                raise ValueError(f"{label} shares memory with an argument or another buffer")
        out.append((buf, d))
    return out


def _grad_arrays(bufs: list, like: Any, shape: tuple, dt, stream) -> tuple[list, list]:
    """(objects to return, C-contiguous numba arrays to write) for each gradient."""
    res, views = [], []
    for b in bufs:
        if b is None:
            r, v = rt.empty(like, shape, dt, stream)
        else:
            r, v = b
        res.append(r)
        views.append(v)
    return res, views


def _finish_rows(partials, red: str, div: float, like: Any, out_res: Any, dt, stream) -> Any:
    """The loss: ``out_res`` for 'none', else a 0-d device array sum(partials) / div."""
    if red == "none":
        return out_res
    loss_res, lv = rt.empty(like, (), dt, stream)
    count = cuda.device_array(1, dtype=np.float64, stream=stream)
    _get("finalize")[1, THREADS, stream](
        partials, float(div) if red == "mean" else 1.0, lv.reshape(1), count
    )
    return loss_res


def _row_blocks(rows: int) -> int:
    return min(max(1, rows), rt.max_blocks())


def _gscale_for(red: str, div: float) -> float:
    if red != "mean":
        return 1.0
    return 1.0 / div if div else math.inf


def _class_layout(shape: tuple) -> tuple[int, int, int, tuple]:
    if len(shape) == 0:
        raise ValueError("input must have at least one dimension (the classes)")
    if len(shape) == 1:
        return 1, shape[0], 1, ()
    n, c = shape[:2]
    return n, c, rt.prod(shape[2:]), (n,) + tuple(shape[2:])


def _class_weight(weight: Any, n_cls: int, dt, stream):
    if weight is None:
        return None
    w = _typed(weight, "weight", dt)
    if tuple(w.shape) != (n_cls,):
        raise ValueError(f"weight must have shape ({n_cls},) (one per class), got {tuple(w.shape)}")
    return rt.contiguous(w, stream)


def _class_targets(target: Any, sample_shape: tuple, n_cls: int, ignore_index: int, w, stream):
    """Validated class indices (reads 4 float64 per block back: one synchronisation) and
    (sum of w[y] over kept targets, sum of w)."""
    y = _index_view(target, "target")
    if tuple(y.shape) != tuple(sample_shape):
        raise ValueError(f"target has shape {tuple(y.shape)}, expected {tuple(sample_shape)}")
    y = rt.contiguous(y, stream)
    yf = rt.flat(y)
    nb = rt.blocks(max(yf.size, 1))
    partials = cuda.device_array((4, nb), dtype=np.float64, stream=stream)
    _row_kernel("class_stats")[nb, THREADS, stream](yf, w, ignore_index, n_cls, partials)
    h = partials.copy_to_host(stream=stream)
    if h[1].sum() > 0:
        pos = int(-h[2].max())
        val = int(yf[pos : pos + 1].copy_to_host(stream=stream)[0])
        raise ValueError(
            f"target {val} is out of bounds for {n_cls} classes (ignore_index={ignore_index})"
        )
    return y, float(h[0].sum()), (float(n_cls) if w is None else float(h[3].sum()))


def cross_entropy(
    input,
    target,
    weight=None,
    size_average=None,
    ignore_index: int = -100,
    reduce=None,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    *,
    return_grad: bool = False,
    grad_out=None,
):
    """On CUDA device arrays: softmax cross-entropy of logits ((C,), (N, C) or (N, C, d...)).

    Class-index targets (an integer device array of the per-sample shape; ``ignore_index``
    skipped; 'mean' = sum w_y l / sum w_y, NaN if all are ignored) or class probabilities
    (input's shape and dtype; 'mean' divides by the sample count); ``label_smoothing`` eps
    mixes in the uniform distribution. Index targets are validated on the device (one
    synchronisation reads the out-of-range count back). torch: ``F.cross_entropy``.
    """
    from fastact.losses import _check_ignore_index

    red = _reduction(reduction, size_average, reduce)
    x = rt.float_view(input, "input")
    eps = _number(label_smoothing, "label_smoothing")
    if not 0.0 <= eps <= 1.0:
        raise ValueError(f"label_smoothing must be between 0.0 and 1.0, got {eps}")
    _check_ignore_index(ignore_index)
    stream = rt.stream_of(input, target)
    dt = x.dtype
    shape = tuple(x.shape)
    n_s, n_cls, n_d, sample_shape = _class_layout(shape)
    w = _class_weight(weight, n_cls, dt, stream)
    t = rt.view(target, "target")
    if tuple(t.shape) == shape:
        if t.dtype.kind != "f":
            raise TypeError(
                "target has input's shape, so it holds class probabilities and must be "
                f"floating point, got dtype {t.dtype}"
            )
        q = rt.contiguous(_typed(target, "target", dt), stream).reshape(n_s, n_cls, n_d)
        y = None
        div, wsum = float(n_s * n_d), 0.0
    else:
        q = None
        y, div, wsum = _class_targets(target, sample_shape, n_cls, int(ignore_index), w, stream)
        y = y.reshape(n_s, n_d)
    bufs = _grad_targets(grad_out, return_grad, [("input", shape)], dt, (x, t, w))
    x3 = rt.contiguous(x, stream).reshape(n_s, n_cls, n_d)
    gscale = _gscale_for(red, div)
    g = None
    grads: list = []
    if return_grad:
        grads, views = _grad_arrays(bufs, input, shape, dt, stream)
        g = views[0].reshape(n_s, n_cls, n_d)
    out_res = out = None
    if red == "none":
        out_res, o = rt.empty(input, sample_shape, dt, stream)
        out = o.reshape(n_s, n_d)
    if n_d == 1:
        nb = _row_blocks(n_s)
        partials = cuda.device_array((2, nb), dtype=np.float64, stream=stream)
        _row_kernel("ce_rows")[nb, THREADS, stream](
            x3.reshape(n_s, n_cls),
            None if y is None else y.reshape(n_s),
            None if q is None else q.reshape(n_s, n_cls),
            w,
            wsum,
            eps,
            int(ignore_index),
            gscale,
            None if g is None else g.reshape(n_s, n_cls),
            None if out is None else out.reshape(n_s),
            partials,
        )
    else:
        nb = rt.blocks(n_s * n_d)
        partials = cuda.device_array((2, nb), dtype=np.float64, stream=stream)
        _row_kernel("ce_columns")[nb, THREADS, stream](
            x3, y, q, w, wsum, eps, int(ignore_index), gscale, g, out, partials
        )
    loss = _finish_rows(partials, red, div, input, out_res, dt, stream)
    return (loss, grads[0]) if return_grad else loss


def nll_loss(
    input,
    target,
    weight=None,
    size_average=None,
    ignore_index: int = -100,
    reduce=None,
    reduction: str = "mean",
    *,
    return_grad: bool = False,
    grad_out=None,
):
    """On CUDA device arrays: ``-w_y x[y]`` of log-probabilities ((C,), (N, C), (N, C, d...));
    'mean' = sum / sum w_y over non-ignored samples. torch: ``F.nll_loss``."""
    from fastact.losses import _check_ignore_index

    red = _reduction(reduction, size_average, reduce)
    x = rt.float_view(input, "input")
    _check_ignore_index(ignore_index)
    stream = rt.stream_of(input, target)
    dt = x.dtype
    shape = tuple(x.shape)
    n_s, n_cls, n_d, sample_shape = _class_layout(shape)
    w = _class_weight(weight, n_cls, dt, stream)
    y, div, _ = _class_targets(target, sample_shape, n_cls, int(ignore_index), w, stream)
    bufs = _grad_targets(grad_out, return_grad, [("input", shape)], dt, (x, y, w))
    x3 = rt.contiguous(x, stream).reshape(n_s, n_cls, n_d)
    gscale = _gscale_for(red, div)
    g = None
    grads: list = []
    if return_grad:
        grads, views = _grad_arrays(bufs, input, shape, dt, stream)
        gf = rt.flat(views[0])
        _row_kernel("zero")[rt.blocks(max(gf.size, 1)), THREADS, stream](gf)
        g = views[0].reshape(n_s, n_cls, n_d)
    out_res = out = None
    if red == "none":
        out_res, o = rt.empty(input, sample_shape, dt, stream)
        out = o.reshape(n_s, n_d)
    nb = rt.blocks(max(n_s * n_d, 1))
    partials = cuda.device_array((2, nb), dtype=np.float64, stream=stream)
    _row_kernel("nll")[nb, THREADS, stream](
        x3, y.reshape(n_s, n_d), w, int(ignore_index), gscale, g, out, partials
    )
    loss = _finish_rows(partials, red, div, input, out_res, dt, stream)
    return (loss, grads[0]) if return_grad else loss


def cosine_embedding_loss(
    input1,
    input2,
    target,
    margin: float = 0.0,
    size_average=None,
    reduce=None,
    reduction: str = "mean",
    *,
    return_grad: bool = False,
    grad_out=None,
):
    """On CUDA device arrays: ``1 - cos(x1, x2)`` where y = 1, ``max(0, cos - margin)``
    where y = -1; inputs (N, D) with target (N,), or (D,) with a 0-d target; gradients
    ``(grad_input1, grad_input2)``. torch: ``F.cosine_embedding_loss``."""
    red = _reduction(reduction, size_average, reduce)
    x1 = rt.float_view(input1, "input1")
    dt = x1.dtype
    x2 = _typed(input2, "input2", dt)
    y = rt.view(target, "target")
    if y.dtype.kind not in "iuf":
        raise TypeError(f"target must be an array of real numbers, got dtype {y.dtype}")
    margin = _number(margin, "margin")
    if y.ndim not in (0, 1):
        raise ValueError(f"target must be 0-d or 1-d, got shape {tuple(y.shape)}")
    want = 2 if y.ndim == 1 else 1
    for a, name in ((x1, "input1"), (x2, "input2")):
        if a.ndim != want:
            raise ValueError(
                f"a {y.ndim}-d target expects {want}-d inputs, but {name} has shape "
                f"{tuple(a.shape)}"
            )
    if tuple(x1.shape) != tuple(x2.shape):
        raise ValueError(
            f"input1 {tuple(x1.shape)} and input2 {tuple(x2.shape)} must have the same shape"
        )
    if y.ndim == 1 and y.shape[0] != x1.shape[0]:
        raise ValueError(f"target has shape {tuple(y.shape)}, expected ({x1.shape[0]},)")
    stream = rt.stream_of(input1, input2, target)
    shape = tuple(x1.shape)
    bufs = _grad_targets(
        grad_out, return_grad, [("input1", shape), ("input2", shape)], dt, (x1, x2, y)
    )
    n_d = shape[-1]
    rows = rt.prod(shape[:-1])
    a = rt.contiguous(x1, stream).reshape(rows, n_d)
    b = rt.contiguous(x2, stream).reshape(rows, n_d)
    yy = rt.flat(rt.contiguous(y, stream)) if y.ndim else rt.contiguous(y, stream).reshape(1)
    g1 = g2 = None
    grads: list = []
    if return_grad:
        grads, views = _grad_arrays(bufs, input1, shape, dt, stream)
        g1, g2 = (v.reshape(rows, n_d) for v in views)
    out_res = out = None
    if red == "none":
        out_res, o = rt.empty(input1, tuple(y.shape), dt, stream)
        out = o.reshape(rows)
    nb = _row_blocks(rows)
    partials = cuda.device_array((2, nb), dtype=np.float64, stream=stream)
    gscale = 1.0 / rows if red == "mean" and rows else (math.inf if red == "mean" else 1.0)
    _row_kernel("cosine_rows")[nb, THREADS, stream](
        a, b, yy, margin, dt.type(0), gscale, g1, g2, out, partials
    )
    loss = _finish_rows(partials, red, rows, input1, out_res, dt, stream)
    return (loss, tuple(grads)) if return_grad else loss


def triplet_margin_loss(
    anchor,
    positive,
    negative,
    margin: float = 1.0,
    p: float = 2,
    eps: float = 1e-6,
    swap: bool = False,
    size_average=None,
    reduce=None,
    reduction: str = "mean",
    *,
    return_grad: bool = False,
    grad_out=None,
):
    """On CUDA device arrays: ``max(0, margin + d(a, p) - d(a, n))`` with
    ``d(x, y) = ||x - y + eps||_p`` along the last axis (``swap``: min(d(a, n), d(p, n)));
    gradients ``(grad_anchor, grad_positive, grad_negative)``. torch:
    ``F.triplet_margin_loss``."""
    red = _reduction(reduction, size_average, reduce)
    an = rt.float_view(anchor, "anchor")
    dt = an.dtype
    po = _typed(positive, "positive", dt)
    ne = _typed(negative, "negative", dt)
    if not an.ndim == po.ndim == ne.ndim:
        raise ValueError(
            "anchor, positive and negative must have the same number of dimensions: got "
            f"{tuple(an.shape)}, {tuple(po.shape)} and {tuple(ne.shape)}"
        )
    if an.ndim == 0:
        raise ValueError("anchor must have at least one dimension")
    if not tuple(an.shape) == tuple(po.shape) == tuple(ne.shape):
        raise ValueError(
            "anchor, positive and negative must have the same shape: got "
            f"{tuple(an.shape)}, {tuple(po.shape)} and {tuple(ne.shape)}"
        )
    p = _number(p, "p")
    if not (p > 0 and math.isfinite(p)):
        raise ValueError(f"p must be a positive finite number, got {p}")
    margin, eps = _number(margin, "margin"), _number(eps, "eps")
    stream = rt.stream_of(anchor, positive, negative)
    shape = tuple(an.shape)
    bufs = _grad_targets(
        grad_out,
        return_grad,
        [("anchor", shape), ("positive", shape), ("negative", shape)],
        dt,
        (an, po, ne),
    )
    n_d = shape[-1]
    rows = rt.prod(shape[:-1])
    arrs = [rt.contiguous(v, stream).reshape(rows, n_d) for v in (an, po, ne)]
    gs: list = [None] * 3
    grads: list = []
    if return_grad:
        grads, views = _grad_arrays(bufs, anchor, shape, dt, stream)
        gs = [v.reshape(rows, n_d) for v in views]
    out_res = out = None
    if red == "none":
        out_res, o = rt.empty(anchor, shape[:-1], dt, stream)
        out = o.reshape(rows)
    nb = _row_blocks(rows)
    partials = cuda.device_array((2, nb), dtype=np.float64, stream=stream)
    gscale = 1.0 / rows if red == "mean" and rows else (math.inf if red == "mean" else 1.0)
    kind = "p2" if p == 2.0 else ("p1" if p == 1.0 else "pgen")
    _row_kernel(f"triplet_{kind}")[nb, THREADS, stream](
        *arrs, margin, p, eps, bool(swap), dt.type(0), gscale, *gs, out, partials
    )
    loss = _finish_rows(partials, red, rows, anchor, out_res, dt, stream)
    return (loss, tuple(grads)) if return_grad else loss


def multilabel_soft_margin_loss(
    input,
    target,
    weight=None,
    size_average=None,
    reduce=None,
    reduction: str = "mean",
    *,
    return_grad: bool = False,
    grad_out=None,
):
    """On CUDA device arrays: per sample (rows of the last, class, axis) the mean of the
    BCE-with-logits terms; ``target`` and ``weight`` broadcast to input's shape; 'none' gives
    one loss per sample. torch: ``F.multilabel_soft_margin_loss``."""
    red = _reduction(reduction, size_average, reduce)
    x = rt.float_view(input, "input")
    if x.ndim == 0:
        raise ValueError("input must have at least one dimension (the classes)")
    dt = x.dtype
    shape = tuple(x.shape)
    stream = rt.stream_of(input, target, weight)
    t = _full(target, "target", shape, dt, stream)
    n_cls = shape[-1]
    n = rt.prod(shape)
    rows = n // n_cls if n_cls else 0
    w2 = None
    if weight is not None:
        wd = _typed(weight, "weight", dt)
        wshape = tuple(wd.shape)
        if wshape and wshape[-1] == n_cls and all(s == 1 for s in wshape[:-1]):
            w2 = rt.contiguous(wd, stream).reshape(1, n_cls)  # one weight per class
        else:
            w2 = _full(weight, "weight", shape, dt, stream).reshape(max(rows, 1), n_cls)
    bufs = _grad_targets(grad_out, return_grad, [("input", shape)], dt, (x,))
    if red == "none":
        gscale = 1.0 / n_cls if n_cls else 0.0
    elif n:
        gscale = 1.0 / (n_cls * rows) if red == "mean" else 1.0 / n_cls
    else:
        gscale = 0.0
    g = None
    grads: list = []
    if return_grad:
        grads, views = _grad_arrays(bufs, input, shape, dt, stream)
        g = views[0].reshape(rows, n_cls)
    out_res = out = None
    if red == "none":
        out_res, o = rt.empty(input, shape[:-1], dt, stream)
        out = o.reshape(rows)
    nb = _row_blocks(rows)
    partials = cuda.device_array((2, nb), dtype=np.float64, stream=stream)
    if rows:
        xr = rt.contiguous(x, stream).reshape(rows, n_cls)
        _row_kernel("msm_rows")[nb, THREADS, stream](
            xr, t.reshape(rows, n_cls), w2, (dt.type(0.0),), dt.type(gscale), g, out, partials
        )
    else:
        partials = cuda.to_device(np.zeros((2, 1)), stream=stream)
    div = n_cls * rows if red == "mean" else n_cls
    if red != "none":
        red = "mean"  # loss = sum / div in both cases (the CPU divides 'sum' by C too)
    loss = _finish_rows(partials, red, div, input, out_res, dt, stream)
    return (loss, grads[0]) if return_grad else loss


__all__ += [
    "cross_entropy",
    "nll_loss",
    "cosine_embedding_loss",
    "triplet_margin_loss",
    "multilabel_soft_margin_loss",
]
