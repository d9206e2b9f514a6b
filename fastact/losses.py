"""Loss functions with torch.nn.functional's names and semantics, value and gradient fused.

Every loss takes NumPy arrays (anything ``np.asarray`` accepts) and torch's parameters,
defaults and ``reduction='mean'|'sum'|'none'`` (plus ``'batchmean'`` for :func:`kl_div`).
The deprecated ``size_average``/``reduce`` arguments are accepted in torch's positions and
mapped the way torch maps them. With ``return_grad=True`` a loss returns ``(loss, grad)``
computed in the same pass over the data:

* ``grad`` is the gradient of the returned loss. For a reduced loss that is the gradient of
  the scalar (``'mean'`` divides by what torch divides by, weighted means included); for
  ``reduction='none'`` it is the gradient of the *sum* of the unreduced losses, i.e. what
  torch's autograd gives for a gradient of ones.
* One-input losses (``input`` plus a target) return ``(loss, grad_input)``.
* Losses with several differentiable inputs return a tuple of gradients in argument order:
  ``margin_ranking_loss`` and ``cosine_embedding_loss`` -> ``(grad_input1, grad_input2)``,
  ``triplet_margin_loss`` -> ``(grad_anchor, grad_positive, grad_negative)``,
  ``gaussian_nll_loss`` -> ``(grad_input, grad_var)``. Targets and weights get no gradient
  (for the regression losses, d/dtarget = -d/dinput when no broadcasting is involved).
* Every gradient has the shape of its argument (summed over broadcast dimensions).
* ``grad_out=`` (with ``return_grad=True``) writes the gradient into a caller's C-contiguous
  array of that shape and dtype (a tuple of arrays or None for several gradients) and returns
  it, so a training loop can reuse one buffer instead of allocating (and page-faulting) a new
  one per step. It must not share memory with any argument.

Data types: the prediction argument(s) choose the compute type: float32 and float64 stay as
they are, other real types follow NumPy's float promotion (float16 and small integers are
computed in float32, larger integers in float64); targets and weights are cast to that type.
A reduced loss is returned as a NumPy scalar of that type, an unreduced one as an array.
Sums are accumulated in float64 per fixed chunk, so results do not depend on the thread
count.

Where fastact differs from torch: ``soft_margin_loss`` is computed stably (torch returns inf
for ``-y*x`` above ~89 in float32); sums are more accurate than torch's float32 sums.
"""

from __future__ import annotations

import math
import numbers
import warnings
from typing import Any

import numpy as np

from fastact import _losses_kernels as K
from fastact._core.threads import use_parallel

__all__ = [
    "mse_loss",
    "l1_loss",
    "smooth_l1_loss",
    "huber_loss",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "cross_entropy",
    "nll_loss",
    "kl_div",
    "poisson_nll_loss",
    "gaussian_nll_loss",
    "soft_margin_loss",
    "margin_ranking_loss",
    "hinge_embedding_loss",
    "cosine_embedding_loss",
    "multilabel_soft_margin_loss",
    "triplet_margin_loss",
]

#: elements per reduction chunk (fixed, so the summation order does not depend on threads)
CHUNK = 16384
#: below this many elements the serial kernel is used (same chunking, same result)
PARALLEL_MIN = 1 << 15
#: columns per tile of the (N, C, d1, ...) cross-entropy kernel
_CE_TILE = 64

_F32 = np.dtype(np.float32)
_F64 = np.dtype(np.float64)
_FLOATS = (_F32, _F64)


# ----------------------------------------------------------------------------------------
# argument handling
# ----------------------------------------------------------------------------------------


def _reduction(
    reduction: Any, size_average: Any = None, reduce: Any = None, extra: tuple = ()
) -> str:
    """torch's reduction string, mapping the deprecated size_average/reduce like torch."""
    if size_average is not None or reduce is not None:
        sa = True if size_average is None else bool(size_average)
        rd = True if reduce is None else bool(reduce)
        reduction = "mean" if (sa and rd) else ("sum" if rd else "none")
        warnings.warn(
            "size_average and reduce args will be deprecated, please use "
            f"reduction='{reduction}' instead.",
            UserWarning,
            stacklevel=3,
        )
    allowed = ("none", "mean", "sum") + extra
    if not isinstance(reduction, str) or reduction not in allowed:
        raise ValueError(f"reduction must be one of {allowed}, got {reduction!r}")
    return reduction


def _array(x: Any, name: str) -> np.ndarray:
    if x is None:
        raise TypeError(f"{name} must be an array, got None")
    if isinstance(x, (str, bytes, dict, set)):
        raise TypeError(f"{name} must be an array of real numbers, got {type(x).__name__}")
    try:
        arr = np.asarray(x)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{name} must be an array of real numbers: {e}") from None
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be an array of real numbers, got dtype {arr.dtype}")
    return arr


def _compute_dtype(dtype: np.dtype) -> np.dtype:
    """float32/float64 as is; other reals by NumPy's float promotion (computed in f32/f64)."""
    if dtype in (_F32, _F64):
        return dtype
    promoted = np.promote_types(dtype, np.float16)
    return _F32 if promoted.itemsize <= 4 else _F64


def _predictions(names: tuple[str, ...], *xs: Any) -> tuple[np.ndarray, ...]:
    """The prediction arrays, all in their common compute dtype."""
    if all(type(x) is np.ndarray and x.dtype in _FLOATS for x in xs):
        dt = xs[0].dtype
        if all(x.dtype == dt for x in xs):
            return xs  # fast path: nothing to convert
    arrs = [_array(x, n) for x, n in zip(xs, names, strict=False)]
    dt = _compute_dtype(np.result_type(*[a.dtype for a in arrs]))
    return tuple(a.astype(dt, copy=False) for a in arrs)


def _cast(x: Any, name: str, dt: np.dtype) -> np.ndarray:
    if type(x) is np.ndarray and x.dtype == dt:
        return x
    return _array(x, name).astype(dt, copy=False)


def _number(v: Any, name: str) -> float:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real):
        if isinstance(v, np.ndarray) and v.ndim == 0 and v.dtype.kind in "iuf":
            return float(v)
        raise TypeError(f"{name} must be a real number, got {type(v).__name__}")
    return float(v)


def _check_ignore_index(ignore_index: Any) -> None:
    if isinstance(ignore_index, (bool, np.bool_)) or not isinstance(ignore_index, numbers.Integral):
        raise TypeError(f"ignore_index must be an int, got {type(ignore_index).__name__}")
    if not -(2**63) <= ignore_index < 2**63:
        raise ValueError(f"ignore_index must fit in int64, got {ignore_index}")


def _broadcast(arrays: dict[str, np.ndarray | None]) -> tuple[int, ...]:
    shapes = [a.shape for a in arrays.values() if a is not None]
    if all(sh == shapes[0] for sh in shapes):
        return shapes[0]
    # NumPy's broadcast_shapes stops at 32 dimensions; arrays may have up to 64
    ndim = max(len(sh) for sh in shapes)
    out = [1] * ndim
    for sh in shapes:
        for i, d in enumerate(sh, ndim - len(sh)):
            if d != out[i]:
                if out[i] != 1 and d != 1:
                    desc = ", ".join(f"{k} {a.shape}" for k, a in arrays.items() if a is not None)
                    raise ValueError(f"shapes cannot be broadcast together: {desc}")
                out[i] = max(out[i], d) if d != 0 and out[i] != 0 else 0
    return tuple(out)


def _flat(a: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray | None:
    """``a`` broadcast to ``shape`` as a C-contiguous 1-D array (no copy when possible)."""
    if a is None:
        return None
    if a.shape != shape:
        a = np.broadcast_to(a, shape)
    return np.ascontiguousarray(a).reshape(-1)


def _unbroadcast(g: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum a gradient of the broadcast shape back to an argument's ``shape``."""
    if g.shape == shape:
        return g
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, s in enumerate(shape) if s == 1 and g.shape[lead + i] != 1
    )
    return np.sum(g, axis=axes, dtype=np.float64).astype(g.dtype).reshape(shape)


def _check_broadcasts_to(a: np.ndarray | None, shape: tuple[int, ...], name: str) -> None:
    if a is None:
        return
    try:
        ok = np.broadcast_shapes(a.shape, shape) == shape
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"{name} of shape {a.shape} does not broadcast to input's {shape}")


def _size_warning(input: np.ndarray, target: np.ndarray) -> None:
    if target.shape != input.shape:
        warnings.warn(
            f"Using a target size ({target.shape}) that is different to the input size "
            f"({input.shape}). This will likely lead to incorrect results due to "
            "broadcasting. Please ensure they have the same size.",
            UserWarning,
            stacklevel=3,
        )


def _same_shape(input: np.ndarray, other: np.ndarray, name: str) -> None:
    if other.shape != input.shape:
        raise ValueError(
            f"{name} must have the same shape as input: got {other.shape} and {input.shape}"
        )


def _grad_buffers(
    grad_out: Any,
    return_grad: bool,
    targets: list[tuple[str, tuple[int, ...]]],
    dt: np.dtype,
    inputs: tuple,
) -> list[np.ndarray | None]:
    """Validate ``grad_out`` (an array, or a tuple with one array or None per gradient)."""
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
    checked: list[np.ndarray | None] = []
    for buf, (name, shape) in zip(bufs, targets, strict=False):
        if buf is None:
            checked.append(None)
            continue
        label = f"grad_out for {name}"
        if not isinstance(buf, np.ndarray):
            raise TypeError(f"{label} must be a numpy.ndarray, got {type(buf).__name__}")
        if buf.shape != shape:
            raise ValueError(f"{label} has shape {buf.shape}, expected {shape}")
        if buf.dtype != dt:
            raise TypeError(f"{label} has dtype {buf.dtype}, expected {dt}")
        if not buf.flags.writeable:
            raise ValueError(f"{label} is read-only")
        if not buf.flags.c_contiguous:
            raise ValueError(f"{label} must be C-contiguous")
        for other in tuple(inputs) + tuple(c for c in checked if c is not None):
            if isinstance(other, np.ndarray) and np.may_share_memory(buf, other):
                raise ValueError(f"{label} shares memory with an argument or another buffer")
        checked.append(buf)
    return checked


def _chunks(n: int, ch: int) -> int:
    return (n + ch - 1) // ch


def _div(a: float, b: float) -> float:
    """a / b with IEEE results for b == 0 (inf or NaN) instead of an exception."""
    if b == 0:
        return (
            math.nan
            if a == 0 or math.isnan(a)
            else math.copysign(math.inf, a) * (math.copysign(1.0, b))
        )
    return a / b


def _finish(total: float, div: float, dt: np.dtype) -> np.generic:
    return dt.type(_div(float(total), float(div)))


def _gscale(reduction: str, div: float, dt: np.dtype) -> np.generic:
    return dt.type(_div(1.0, float(div)) if reduction == "mean" else 1.0)


# ----------------------------------------------------------------------------------------
# element-wise engine
# ----------------------------------------------------------------------------------------


def _ew_run(
    kernel: str,
    a: np.ndarray,
    b: np.ndarray,
    c: np.ndarray | None,
    w1: np.ndarray | None,
    w2: np.ndarray | None,
    prm: tuple,
    gscale: np.generic,
    grads: int,
    want_out: bool,
    check: bool,
    ch: int = CHUNK,
    bufs: tuple = (None, None),
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None, np.ndarray | None, int]:
    """Run one fused element-wise kernel on 1-D arrays; returns (partials, out, d1, d2, bad).

    ``bufs``: caller's 1-D gradient buffers (or None to allocate).
    """
    n = a.size
    dt = a.dtype
    partials = np.empty(_chunks(n, ch), np.float64)
    out = np.empty(n if want_out else 0, dt)
    ga = gb = None
    if grads >= 1:
        ga = np.empty(n, dt) if bufs[0] is None else bufs[0]
    if grads >= 2:
        gb = np.empty(n, dt) if bufs[1] is None else bufs[1]
    bad = np.zeros(partials.size, np.float64) if check else None
    serial, parallel = K.ELEMENTWISE_KERNELS[kernel]
    fn = parallel if use_parallel(n, PARALLEL_MIN) else serial
    prm = tuple(dt.type(p) for p in prm)
    fn(a, b, a if c is None else c, w1, w2, prm, gscale, ga, gb, out, want_out, partials, bad, ch)
    nbad = int(bad.sum()) if check else 0
    return partials, out, ga, gb, nbad


def _elementwise(
    kernel: str,
    reduction: str,
    args: dict[str, np.ndarray],
    grad_of: tuple[str, ...],
    return_grad: bool,
    prm: tuple = (0.0,),
    weights: tuple[np.ndarray | None, np.ndarray | None] = (None, None),
    div: float | None = None,
    check: bool = False,
    on_bad: Any = None,
    bufs: list | None = None,
):
    """Broadcast the arguments, run the kernel, reduce, and shape the results.

    ``args`` holds the per-element arrays in kernel order (a, b[, c]); ``grad_of`` names the
    arguments that receive the kernel's first and second derivative; ``bufs`` are validated
    ``grad_out`` buffers for them (or None).
    """
    names = list(args)
    shape = _broadcast({**args, "weight": weights[0], "pos_weight": weights[1]})
    dt = args[names[0]].dtype
    n = math.prod(shape)
    flats = [_flat(args[k], shape) for k in names]
    w1, w2 = (_flat(w, shape) for w in weights)
    if div is None:
        div = n
    gscale = _gscale(reduction, div, dt)
    bufs = bufs or [None] * len(grad_of)
    direct = [
        b.reshape(-1) if b is not None and args[k].shape == shape else None
        for b, k in zip(bufs, grad_of, strict=False)
    ] + [None]
    partials, out, d1, d2, nbad = _ew_run(
        kernel,
        flats[0],
        flats[1],
        flats[2] if len(flats) > 2 else None,
        w1,
        w2,
        prm,
        gscale,
        len(grad_of) if return_grad else 0,
        reduction == "none",
        check,
        bufs=(direct[0], direct[1]),
    )
    if nbad:
        on_bad()
    if reduction == "none":
        loss = out.reshape(shape)
    else:
        loss = _finish(partials.sum(), div if reduction != "sum" else 1.0, dt)
    if not return_grad:
        return loss
    gs = []
    for d, k, buf, dr in zip((d1, d2), grad_of, bufs, direct, strict=False):
        g = _unbroadcast(d.reshape(shape), args[k].shape)
        if buf is not None:
            if dr is None:  # computed at the broadcast shape, summed, then copied
                np.copyto(buf, g)
            g = buf
        gs.append(g)
    return loss, (gs[0] if len(gs) == 1 else tuple(gs))


# ----------------------------------------------------------------------------------------
# regression losses
# ----------------------------------------------------------------------------------------


def _weighted_regression(
    kernel: str,
    input: Any,
    target: Any,
    reduction: str,
    weight: Any,
    prm: tuple,
    return_grad: bool,
    weighted_mean: bool,
    grad_out: Any,
):
    (x,) = _predictions(("input",), input)
    t = _cast(target, "target", x.dtype)
    bufs = _grad_buffers(
        grad_out, return_grad, [("input", x.shape)], x.dtype, (input, target, weight)
    )
    _size_warning(x, t)
    w = None
    div = None
    if weight is not None:
        w = _cast(weight, "weight", x.dtype)
        if w.shape != x.shape:
            raise ValueError(
                f"weight must have the same shape as input: got {w.shape} and {x.shape}"
            )
        if weighted_mean and reduction == "mean":
            div = float(np.sum(w, dtype=np.float64))
    return _elementwise(
        kernel,
        reduction,
        {"input": x, "target": t},
        ("input",),
        return_grad,
        prm=prm,
        weights=(w, None),
        div=div,
        bufs=bufs,
    )


def mse_loss(
    input: Any,
    target: Any,
    size_average: Any = None,
    reduce: Any = None,
    reduction: str = "mean",
    weight: Any = None,
    *,
    return_grad: bool = False,
    grad_out: Any = None,
):
    """Mean squared error ``w (x - t)^2``; torch.nn.functional.mse_loss.

    With ``weight`` (same shape as input) the mean is ``sum(w l) / sum(w)`` like torch.
    Gradient ``2 w (x - t)`` divided like the loss.
    """
    red = _reduction(reduction, size_average, reduce)
    return _weighted_regression(
        "mse", input, target, red, weight, (0.0,), return_grad, True, grad_out
    )


def l1_loss(
    input: Any,
    target: Any,
    size_average: Any = None,
    reduce: Any = None,
    reduction: str = "mean",
    weight: Any = None,
    *,
    return_grad: bool = False,
    grad_out: Any = None,
):
    """Mean absolute error ``w |x - t|``; torch.nn.functional.l1_loss (gradient 0 at x == t).

    With ``weight`` the mean is ``sum(w l) / sum(w)`` like torch.
    """
    red = _reduction(reduction, size_average, reduce)
    return _weighted_regression(
        "l1", input, target, red, weight, (0.0,), return_grad, True, grad_out
    )


def smooth_l1_loss(
    input: Any,
    target: Any,
    size_average: Any = None,
    reduce: Any = None,
    reduction: str = "mean",
    beta: float = 1.0,
    *,
    return_grad: bool = False,
    grad_out: Any = None,
):
    """``0.5 d^2 / beta`` if ``|d| < beta`` else ``|d| - 0.5 beta`` (d = x - t).

    torch.nn.functional.smooth_l1_loss; ``beta=0`` is exactly l1_loss.
    """
    red = _reduction(reduction, size_average, reduce)
    beta = _number(beta, "beta")
    if beta < 0:
        raise ValueError(f"beta must be non-negative, got {beta}")
    inv = math.inf if beta == 0 else 1.0 / beta
    return _weighted_regression(
        "smooth_l1", input, target, red, None, (beta, inv), return_grad, False, grad_out
    )


def huber_loss(
    input: Any,
    target: Any,
    reduction: str = "mean",
    delta: float = 1.0,
    weight: Any = None,
    *,
    return_grad: bool = False,
    grad_out: Any = None,
):
    """``0.5 d^2`` if ``|d| < delta`` else ``delta (|d| - 0.5 delta)``, times ``weight``.

    torch.nn.functional.huber_loss (a weighted 'mean' divides by the element count, like
    torch).
    """
    red = _reduction(reduction)
    delta = _number(delta, "delta")
    if not delta > 0:
        raise ValueError(f"delta must be positive, got {delta}")
    return _weighted_regression(
        "huber", input, target, red, weight, (delta,), return_grad, False, grad_out
    )


# ----------------------------------------------------------------------------------------
# binary cross-entropy family
# ----------------------------------------------------------------------------------------


def binary_cross_entropy(
    input: Any,
    target: Any,
    weight: Any = None,
    size_average: Any = None,
    reduce: Any = None,
    reduction: str = "mean",
    *,
    return_grad: bool = False,
    grad_out: Any = None,
):
    """``-w [t log p + (1 - t) log(1 - p)]`` with each log clamped at -100 like torch.

    torch.nn.functional.binary_cross_entropy. The gradient is torch's
    ``w (p - t) / max(p (1 - p), 1e-12)`` (finite at p in {0, 1}). input and target must
    have the same shape and lie in [0, 1]; weight broadcasts to input's shape.
    """
    red = _reduction(reduction, size_average, reduce)
    (p,) = _predictions(("input",), input)
    t = _cast(target, "target", p.dtype)
    if t.shape != p.shape:
        raise ValueError(f"target must have the same shape as input: got {t.shape} and {p.shape}")
    w = None if weight is None else _cast(weight, "weight", p.dtype)
    _check_broadcasts_to(w, p.shape, "weight")
    bufs = _grad_buffers(
        grad_out, return_grad, [("input", p.shape)], p.dtype, (input, target, weight)
    )

    def on_bad():
        for arr, name in ((p, "input"), (t, "target")):
            if not np.all((arr >= 0) & (arr <= 1)):
                raise ValueError(f"all elements of {name} should be between 0 and 1")

    return _elementwise(
        "bce",
        red,
        {"input": p, "target": t},
        ("input",),
        return_grad,
        weights=(w, None),
        check=True,
        on_bad=on_bad,
        bufs=bufs,
    )


def _bce_logits_args(input: Any, target: Any, weight: Any, pos_weight: Any):
    (x,) = _predictions(("input",), input)
    t = _cast(target, "target", x.dtype)
    if t.shape != x.shape:
        raise ValueError(f"target must have the same shape as input: got {t.shape} and {x.shape}")
    ws = []
    for v, name in ((weight, "weight"), (pos_weight, "pos_weight")):
        a = None if v is None else _cast(v, name, x.dtype)
        _check_broadcasts_to(a, x.shape, name)
        ws.append(a)
    return x, t, ws[0], ws[1]


def binary_cross_entropy_with_logits(
    input: Any,
    target: Any,
    weight: Any = None,
    size_average: Any = None,
    reduce: Any = None,
    reduction: str = "mean",
    pos_weight: Any = None,
    *,
    return_grad: bool = False,
    grad_out: Any = None,
):
    """``-w [pw t log sigmoid(x) + (1 - t) log sigmoid(-x)]``, stable for any logit.

    torch.nn.functional.binary_cross_entropy_with_logits; weight and pos_weight broadcast to
    input's shape (pos_weight of shape (C,) weighs the positives of each class).
    Gradient ``w [(1 - t) - (pw t + 1 - t) sigmoid(-x)]`` (= w (sigmoid(x) - t) without pw).
    """
    red = _reduction(reduction, size_average, reduce)
    x, t, w, pw = _bce_logits_args(input, target, weight, pos_weight)
    bufs = _grad_buffers(
        grad_out, return_grad, [("input", x.shape)], x.dtype, (input, target, weight, pos_weight)
    )
    return _elementwise(
        "bce_logits",
        red,
        {"input": x, "target": t},
        ("input",),
        return_grad,
        weights=(w, pw),
        bufs=bufs,
    )


def multilabel_soft_margin_loss(
    input: Any,
    target: Any,
    weight: Any = None,
    size_average: Any = None,
    reduce: Any = None,
    reduction: str = "mean",
    *,
    return_grad: bool = False,
    grad_out: Any = None,
):
    """Per sample, the mean over the last (class) axis of the BCE-with-logits terms.

    torch.nn.functional.multilabel_soft_margin_loss: input (C,) or (N, C) (any leading
    shape), weight broadcasting against it; 'none' gives one loss per sample.
    """
    red = _reduction(reduction, size_average, reduce)
    (x,) = _predictions(("input",), input)
    if x.ndim == 0:
        raise ValueError("input must have at least one dimension (the classes)")
    t = _cast(target, "target", x.dtype)
    w = None if weight is None else _cast(weight, "weight", x.dtype)
    (buf,) = _grad_buffers(
        grad_out, return_grad, [("input", x.shape)], x.dtype, (input, target, weight)
    )
    shape = _broadcast({"input": x, "target": t, "weight": w})
    direct = buf.reshape(-1) if buf is not None and shape == x.shape else None
    C = shape[-1]
    n = math.prod(shape)
    rows = n // C if C else 0
    dt = x.dtype
    if red == "none":
        gscale = dt.type(1.0 / C) if C else dt.type(0.0)
        ch = max(C, 1)
    else:
        gscale = dt.type(1.0 / (C * rows) if red == "mean" else 1.0 / C) if n else dt.type(0)
        ch = CHUNK
    partials, _, d1, _, _ = _ew_run(
        "bce_logits",
        _flat(x, shape),
        _flat(t, shape),
        None,
        _flat(w, shape),
        None,
        (0.0,),
        gscale,
        1 if return_grad else 0,
        False,
        False,
        ch,
        bufs=(direct, None),
    )
    if red == "none":
        loss = (partials[:rows] / C).astype(dt).reshape(shape[:-1])
    else:
        loss = _finish(partials.sum(), C * rows if red == "mean" else C, dt)
    if not return_grad:
        return loss
    g = _unbroadcast(d1.reshape(shape), x.shape)
    if buf is not None:
        if direct is None:
            np.copyto(buf, g)
        g = buf
    return loss, g


# ----------------------------------------------------------------------------------------
# divergences and likelihoods
# ----------------------------------------------------------------------------------------


def kl_div(
    input: Any,
    target: Any,
    size_average: Any = None,
    reduce: Any = None,
    reduction: str = "mean",
    log_target: bool = False,
    *,
    return_grad: bool = False,
    grad_out: Any = None,
):
    """Pointwise ``t (log t - x)`` (0 where t = 0), or ``exp(t) (t - x)`` if ``log_target``.

    torch.nn.functional.kl_div: ``input`` holds log-probabilities; 'batchmean' divides the
    sum by ``input.shape[0]``, 'mean' by the element count (with torch's warning).
    Gradient ``-t`` (or ``-exp(t)``) divided like the loss.
    """
    red = _reduction(reduction, size_average, reduce, extra=("batchmean",))
    (x,) = _predictions(("input",), input)
    t = _cast(target, "target", x.dtype)
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
        div = x.shape[0] if x.ndim else 1
        red = "mean"
    kernel = "kl_log" if log_target else "kl"
    bufs = _grad_buffers(grad_out, return_grad, [("input", x.shape)], x.dtype, (input, target))
    return _elementwise(
        kernel, red, {"input": x, "target": t}, ("input",), return_grad, div=div, bufs=bufs
    )


def poisson_nll_loss(
    input: Any,
    target: Any,
    log_input: bool = True,
    full: bool = False,
    size_average: Any = None,
    eps: float = 1e-8,
    reduce: Any = None,
    reduction: str = "mean",
    *,
    return_grad: bool = False,
    grad_out: Any = None,
):
    """``exp(x) - t x`` (log_input) or ``x - t log(x + eps)``; torch's poisson_nll_loss.

    ``full`` adds the Stirling term ``t log t - t + 0.5 log(2 pi t)`` where t > 1.
    """
    red = _reduction(reduction, size_average, reduce)
    (x,) = _predictions(("input",), input)
    t = _cast(target, "target", x.dtype)
    eps = _number(eps, "eps")
    kernel = ("poisson_log" if log_input else "poisson") + ("_full" if full else "")
    bufs = _grad_buffers(grad_out, return_grad, [("input", x.shape)], x.dtype, (input, target))
    return _elementwise(
        kernel, red, {"input": x, "target": t}, ("input",), return_grad, prm=(eps,), bufs=bufs
    )


def gaussian_nll_loss(
    input: Any,
    target: Any,
    var: Any,
    full: bool = False,
    eps: float = 1e-6,
    reduction: str = "mean",
    *,
    return_grad: bool = False,
    grad_out: Any = None,
):
    """``0.5 (log v + (x - t)^2 / v)`` with ``v = max(var, eps)`` (+ 0.5 log 2 pi if full).

    torch.nn.functional.gaussian_nll_loss: var has input's shape, or one dimension less, or
    a size-1 dimension (homoscedastic), or is a float. Gradients ``(grad_input, grad_var)``;
    like torch's autograd, grad_var ignores the clamp: ``0.5 (1/v - (x - t)^2 / v^2)``.
    """
    red = _reduction(reduction)
    (x,) = _predictions(("input",), input)
    t = _cast(target, "target", x.dtype)
    eps = _number(eps, "eps")
    scalar_var = isinstance(var, numbers.Real) and not isinstance(var, (bool, np.bool_))
    v = _cast(var, "var", x.dtype)
    if scalar_var:
        if var < 0:
            raise ValueError("var has negative entry/entries")
        v = np.full(x.shape, float(var), x.dtype)
    vshape = v.shape
    if v.shape != x.shape:
        if x.ndim >= 1 and v.shape == x.shape[:-1]:
            v = v[..., None]
        elif (
            x.ndim == v.ndim
            and sum(s for xs, s in zip(x.shape, v.shape, strict=False) if xs != s) == 1
        ):
            pass
        else:
            raise ValueError(f"var is of incorrect size: {vshape} for input {x.shape}")
    vu_shape = v.shape
    k = 0.5 * math.log(2.0 * math.pi) if full else 0.0
    bufs = _grad_buffers(
        grad_out, return_grad, [("input", x.shape), ("var", vshape)], x.dtype, (input, target, var)
    )
    if scalar_var and bufs[1] is not None:
        raise ValueError("grad_out for var must be None when var is a float")
    vbuf = bufs[1]
    if vbuf is not None:
        bufs[1] = vbuf.reshape(vu_shape)

    def on_bad():
        raise ValueError("var has negative entry/entries")

    res = _elementwise(
        "gaussian_nll",
        red,
        {"input": x, "target": t, "var": v},
        ("input", "var"),
        return_grad,
        prm=(eps, k),
        check=True,
        on_bad=on_bad,
        bufs=bufs,
    )
    if not return_grad:
        return res
    loss, (gx, gv) = res
    gv = vbuf if vbuf is not None else gv.reshape(vshape)
    if scalar_var:
        gv = x.dtype.type(np.sum(gv, dtype=np.float64))
    return loss, (gx, gv)


# ----------------------------------------------------------------------------------------
# margin losses
# ----------------------------------------------------------------------------------------


def soft_margin_loss(
    input: Any,
    target: Any,
    size_average: Any = None,
    reduce: Any = None,
    reduction: str = "mean",
    *,
    return_grad: bool = False,
    grad_out: Any = None,
):
    """``log(1 + exp(-y x))``, computed stably; torch.nn.functional.soft_margin_loss."""
    red = _reduction(reduction, size_average, reduce)
    (x,) = _predictions(("input",), input)
    y = _cast(target, "target", x.dtype)
    bufs = _grad_buffers(grad_out, return_grad, [("input", x.shape)], x.dtype, (input, target))
    return _elementwise(
        "soft_margin", red, {"input": x, "target": y}, ("input",), return_grad, bufs=bufs
    )


def margin_ranking_loss(
    input1: Any,
    input2: Any,
    target: Any,
    margin: float = 0.0,
    size_average: Any = None,
    reduce: Any = None,
    reduction: str = "mean",
    *,
    return_grad: bool = False,
    grad_out: Any = None,
):
    """``max(0, -y (x1 - x2) + margin)``; gradients ``(grad_input1, grad_input2)``.

    torch.nn.functional.margin_ranking_loss (all three arrays must have the same number of
    dimensions, then broadcast).
    """
    red = _reduction(reduction, size_average, reduce)
    x1, x2 = _predictions(("input1", "input2"), input1, input2)
    y = _cast(target, "target", x1.dtype)
    if not x1.ndim == x2.ndim == y.ndim:
        raise ValueError(
            "input1, input2 and target must have the same number of dimensions: got "
            f"{x1.shape}, {x2.shape} and {y.shape}"
        )
    bufs = _grad_buffers(
        grad_out,
        return_grad,
        [("input1", x1.shape), ("input2", x2.shape)],
        x1.dtype,
        (input1, input2, target),
    )
    return _elementwise(
        "margin_ranking",
        red,
        {"input1": x1, "input2": x2, "target": y},
        ("input1", "input2"),
        return_grad,
        prm=(_number(margin, "margin"),),
        bufs=bufs,
    )


def hinge_embedding_loss(
    input: Any,
    target: Any,
    margin: float = 1.0,
    size_average: Any = None,
    reduce: Any = None,
    reduction: str = "mean",
    *,
    return_grad: bool = False,
    grad_out: Any = None,
):
    """``x`` where y = 1, ``max(0, margin - x)`` where y = -1 (torch's formula for other y).

    torch.nn.functional.hinge_embedding_loss.
    """
    red = _reduction(reduction, size_average, reduce)
    (x,) = _predictions(("input",), input)
    y = _cast(target, "target", x.dtype)
    bufs = _grad_buffers(grad_out, return_grad, [("input", x.shape)], x.dtype, (input, target))
    return _elementwise(
        "hinge_embedding",
        red,
        {"input": x, "target": y},
        ("input",),
        return_grad,
        prm=(_number(margin, "margin"),),
        bufs=bufs,
    )


# ----------------------------------------------------------------------------------------
# row-wise losses
# ----------------------------------------------------------------------------------------


def _rows_per_chunk(width: int) -> int:
    return max(1, CHUNK // max(width, 1))


def _row_reduce(partials, out, red, rows, out_shape, dt):
    if red == "none":
        return out.astype(dt, copy=False).reshape(out_shape)
    return _finish(partials.sum(), rows if red == "mean" else 1, dt)


def cosine_embedding_loss(
    input1: Any,
    input2: Any,
    target: Any,
    margin: float = 0.0,
    size_average: Any = None,
    reduce: Any = None,
    reduction: str = "mean",
    *,
    return_grad: bool = False,
    grad_out: Any = None,
):
    """``1 - cos(x1, x2)`` where y = 1, ``max(0, cos(x1, x2) - margin)`` where y = -1.

    torch.nn.functional.cosine_embedding_loss: inputs (N, D) with target (N,), or (D,) with
    a 0-d target; ``cos = x1.x2 / sqrt((|x1|^2 + 1e-12)(|x2|^2 + 1e-12))``. Gradients
    ``(grad_input1, grad_input2)``.
    """
    red = _reduction(reduction, size_average, reduce)
    x1, x2 = _predictions(("input1", "input2"), input1, input2)
    y = _cast(target, "target", x1.dtype)
    if y.ndim not in (0, 1):
        raise ValueError(f"target must be 0-d or 1-d, got shape {y.shape}")
    want = 2 if y.ndim == 1 else 1
    for a, name in ((x1, "input1"), (x2, "input2")):
        if a.ndim != want:
            raise ValueError(
                f"a {y.ndim}-d target expects {want}-d inputs, but {name} has shape {a.shape}"
            )
    if x1.shape != x2.shape:
        raise ValueError(f"input1 {x1.shape} and input2 {x2.shape} must have the same shape")
    if y.ndim == 1 and y.shape[0] != x1.shape[0]:
        raise ValueError(f"target has shape {y.shape}, expected ({x1.shape[0]},)")
    dt = x1.dtype
    bufs = _grad_buffers(
        grad_out,
        return_grad,
        [("input1", x1.shape), ("input2", x2.shape)],
        dt,
        (input1, input2, target),
    )
    a = np.ascontiguousarray(x1).reshape(-1, x1.shape[-1])
    b = np.ascontiguousarray(x2).reshape(-1, x2.shape[-1])
    yy = np.ascontiguousarray(y).reshape(-1)
    R, D = a.shape
    rpc = _rows_per_chunk(D)
    partials = np.empty(_chunks(R, rpc), np.float64)
    out = np.empty(R, np.float64)
    g1 = g2 = None
    if return_grad:
        g1 = np.empty_like(a) if bufs[0] is None else bufs[0].reshape(a.shape)
        g2 = np.empty_like(b) if bufs[1] is None else bufs[1].reshape(b.shape)
    gscale = 1.0 / R if red == "mean" else 1.0
    fn = K.cosine_kernels[use_parallel(a.size, PARALLEL_MIN)]
    fn(a, b, yy, _number(margin, "margin"), dt.type(0), gscale, g1, g2, out, partials, rpc)
    loss = _row_reduce(partials, out, red, R, y.shape, dt)
    if not return_grad:
        return loss
    return loss, tuple(
        g.reshape(x.shape) if buf is None else buf
        for g, buf, x in zip((g1, g2), bufs, (x1, x2), strict=False)
    )


def triplet_margin_loss(
    anchor: Any,
    positive: Any,
    negative: Any,
    margin: float = 1.0,
    p: float = 2,
    eps: float = 1e-6,
    swap: bool = False,
    size_average: Any = None,
    reduce: Any = None,
    reduction: str = "mean",
    *,
    return_grad: bool = False,
    grad_out: Any = None,
):
    """``max(0, margin + d(a, p) - d(a, n))`` with ``d(x, y) = ||x - y + eps||_p``.

    torch.nn.functional.triplet_margin_loss: rows along the last axis ((N, D) or (D,));
    ``swap`` uses ``min(d(a, n), d(p, n))``. Gradients
    ``(grad_anchor, grad_positive, grad_negative)``.
    """
    red = _reduction(reduction, size_average, reduce)
    an, po, ne = _predictions(("anchor", "positive", "negative"), anchor, positive, negative)
    if not an.ndim == po.ndim == ne.ndim:
        raise ValueError(
            "anchor, positive and negative must have the same number of dimensions: got "
            f"{an.shape}, {po.shape} and {ne.shape}"
        )
    if an.ndim == 0:
        raise ValueError("anchor must have at least one dimension")
    if not an.shape == po.shape == ne.shape:
        raise ValueError(
            "anchor, positive and negative must have the same shape: got "
            f"{an.shape}, {po.shape} and {ne.shape}"
        )
    p = _number(p, "p")
    if not (p > 0 and math.isfinite(p)):
        raise ValueError(f"p must be a positive finite number, got {p}")
    dt = an.dtype
    bufs = _grad_buffers(
        grad_out,
        return_grad,
        [("anchor", an.shape), ("positive", po.shape), ("negative", ne.shape)],
        dt,
        (anchor, positive, negative),
    )
    D = an.shape[-1]
    arrs = [np.ascontiguousarray(v).reshape(-1, D) for v in (an, po, ne)]
    R = arrs[0].shape[0]
    rpc = _rows_per_chunk(D)
    partials = np.empty(_chunks(R, rpc), np.float64)
    out = np.empty(R, np.float64)
    gs = [None] * 3
    if return_grad:
        gs = [np.empty_like(arrs[0]) if b is None else b.reshape(-1, D) for b in bufs]
    gscale = 1.0 / R if red == "mean" else 1.0
    kind = "p2" if p == 2.0 else ("p1" if p == 1.0 else "pgen")
    fn = K.triplet_kernels[kind][use_parallel(arrs[0].size, PARALLEL_MIN)]
    fn(
        *arrs,
        _number(margin, "margin"),
        p,
        _number(eps, "eps"),
        bool(swap),
        dt.type(0),
        gscale,
        *gs,
        out,
        partials,
        rpc,
    )
    loss = _row_reduce(partials, out, red, R, an.shape[:-1], dt)
    if not return_grad:
        return loss
    return loss, tuple(
        g.reshape(an.shape) if b is None else b for g, b in zip(gs, bufs, strict=False)
    )


# ----------------------------------------------------------------------------------------
# cross_entropy / nll_loss
# ----------------------------------------------------------------------------------------


def _class_layout(x: np.ndarray) -> tuple[int, int, int, tuple[int, ...]]:
    """(N, C, D, shape of per-sample results) for torch's (C,), (N, C), (N, C, d1, ...)."""
    if x.ndim == 0:
        raise ValueError("input must have at least one dimension (the classes)")
    if x.ndim == 1:
        return 1, x.shape[0], 1, ()
    N, C = x.shape[:2]
    return N, C, math.prod(x.shape[2:]), (N,) + x.shape[2:]


def _class_weight(weight: Any, C: int, dt: np.dtype) -> np.ndarray:
    """The class weights (ones when ``weight`` is None: a C-vector costs nothing to read)."""
    if weight is None:
        return np.ones(C, dt)
    w = _cast(weight, "weight", dt)
    if w.shape != (C,):
        raise ValueError(f"weight must have shape ({C},) (one per class), got {w.shape}")
    return np.ascontiguousarray(w)


def _class_indices(
    target: Any, sample_shape: tuple, C: int, ignore_index: int, w: np.ndarray
) -> tuple[np.ndarray, float]:
    """Validated int64 class indices of ``sample_shape`` and sum of w[y] over kept ones."""
    y = np.asarray(target)
    if y.dtype.kind not in "iu":
        raise TypeError(f"target must hold integer class indices, got dtype {y.dtype}")
    if y.shape != sample_shape:
        raise ValueError(f"target has shape {y.shape}, expected {sample_shape}")
    y = np.ascontiguousarray(y, dtype=np.int64)
    pos, total = K.class_target_stats(y.reshape(-1), C, ignore_index, w)
    if pos >= 0:
        raise ValueError(
            f"target {y.reshape(-1)[pos]} is out of bounds for {C} classes "
            f"(ignore_index={ignore_index})"
        )
    return y, total


def cross_entropy(
    input: Any,
    target: Any,
    weight: Any = None,
    size_average: Any = None,
    ignore_index: int = -100,
    reduce: Any = None,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    *,
    return_grad: bool = False,
    grad_out: Any = None,
):
    """Softmax cross-entropy of logits ``input`` ((C,), (N, C) or (N, C, d1, ...)).

    torch.nn.functional.cross_entropy. ``target`` is either class indices (integer, shape
    of input without the class axis; ``ignore_index`` skipped) or class probabilities (same
    shape as input, floating). Index targets: 'mean' = sum w_y l / sum w_y over kept samples
    (NaN if all are ignored). Probability targets: 'mean' divides by the sample count.
    ``label_smoothing`` eps mixes the target with the uniform distribution. The gradient is
    ``softmax(x) * sum_c w_c q_c - w q`` for the (smoothed) target distribution q, scaled
    like the loss, computed with log-softmax in one pass over each row.
    """
    red = _reduction(reduction, size_average, reduce)
    (x,) = _predictions(("input",), input)
    eps = _number(label_smoothing, "label_smoothing")
    if not 0.0 <= eps <= 1.0:
        raise ValueError(f"label_smoothing must be between 0.0 and 1.0, got {eps}")
    _check_ignore_index(ignore_index)
    dt = x.dtype
    N, C, D, sample_shape = _class_layout(x)
    w = _class_weight(weight, C, dt)
    wsum = float(np.sum(w, dtype=np.float64))
    t = _array(target, "target")
    if t.shape == x.shape:
        if t.dtype.kind != "f":
            raise TypeError(
                "target has input's shape, so it holds class probabilities and must be "
                f"floating point, got dtype {t.dtype}"
            )
        q = np.ascontiguousarray(t, dtype=dt).reshape(N, C, D)
        y = None
        div = float(N * D)
    else:
        q = None
        y, div = _class_indices(t, sample_shape, C, int(ignore_index), w)
        y = y.reshape(N, D)
    (buf,) = _grad_buffers(grad_out, return_grad, [("input", x.shape)], dt, (input, target, weight))
    x3 = np.ascontiguousarray(x).reshape(N, C, D)
    gscale = 1.0 / div if red == "mean" and div else (math.inf if red == "mean" else 1.0)
    g = np.empty((0, C, 1), dt)  # placeholder: the kernels then use scratch rows
    if return_grad:
        g = np.empty_like(x3) if buf is None else buf.reshape(N, C, D)
    out = np.empty((N, D), np.float64)
    par = use_parallel(x3.size, PARALLEL_MIN)
    if D == 1:
        rpc = _rows_per_chunk(C)
        partials = np.empty(_chunks(N, rpc), np.float64)
        K.ce_rows_kernels[par](
            x3.reshape(N, C),
            None if y is None else y.reshape(N),
            None if q is None else q.reshape(N, C),
            w,
            wsum,
            eps,
            int(ignore_index),
            gscale,
            return_grad,
            g.reshape(g.shape[0], C),
            out.reshape(N),
            partials,
            rpc,
        )
    else:
        partials = np.empty(N * _chunks(D, _CE_TILE), np.float64)
        K.ce_spatial_kernels[par](
            x3,
            y,
            q,
            w,
            wsum,
            eps,
            int(ignore_index),
            gscale,
            return_grad,
            g,
            out,
            partials,
            _CE_TILE,
        )
    loss = _row_reduce(partials, out, red, div, sample_shape, dt)
    if not return_grad:
        return loss
    return loss, g.reshape(x.shape) if buf is None else buf


def nll_loss(
    input: Any,
    target: Any,
    weight: Any = None,
    size_average: Any = None,
    ignore_index: int = -100,
    reduce: Any = None,
    reduction: str = "mean",
    *,
    return_grad: bool = False,
    grad_out: Any = None,
):
    """Negative log-likelihood ``-w_y x[y]`` of log-probabilities ``input``.

    torch.nn.functional.nll_loss: input (C,), (N, C) or (N, C, d1, ...), integer target of
    the per-sample shape; 'mean' = sum / sum w_y over non-ignored samples (NaN if none).
    The gradient is ``-w_y / denominator`` at the target class and 0 elsewhere.
    """
    red = _reduction(reduction, size_average, reduce)
    (x,) = _predictions(("input",), input)
    _check_ignore_index(ignore_index)
    dt = x.dtype
    N, C, D, sample_shape = _class_layout(x)
    w = _class_weight(weight, C, dt)
    y, div = _class_indices(target, sample_shape, C, int(ignore_index), w)
    (buf,) = _grad_buffers(grad_out, return_grad, [("input", x.shape)], dt, (input, target, weight))
    x3 = np.ascontiguousarray(x).reshape(N, C, D)
    gscale = 1.0 / div if red == "mean" and div else (math.inf if red == "mean" else 1.0)
    g = np.empty((0, C, 1), dt)  # placeholder when no gradient is wanted
    zero = return_grad and D == 1  # rows of C: the kernel zeroes them in parallel
    if return_grad:
        g = np.empty_like(x3) if buf is None else buf.reshape(N, C, D)
        if not zero:
            g.fill(0)
    ch = max(1, min(CHUNK, (1 << 16) // C)) if zero else CHUNK  # ~64K gradient entries a task
    out = np.empty((N, D), np.float64)
    partials = np.empty(_chunks(N * D, ch), np.float64)
    K.nll_kernels[use_parallel(x3.size, PARALLEL_MIN)](
        x3, y.reshape(N, D), w, int(ignore_index), gscale, return_grad, g, zero, out, partials, ch
    )
    loss = _row_reduce(partials, out, red, div, sample_shape, dt)
    if not return_grad:
        return loss
    return loss, g.reshape(x.shape) if buf is None else buf


# Device arrays (__cuda_array_interface__) go to fastact.cuda's kernels.
from fastact.cuda import device_aware as _device_aware  # noqa: E402

for _n in __all__:
    globals()[_n] = _device_aware(globals()[_n], module="fastact.cuda.losses")
del _n
