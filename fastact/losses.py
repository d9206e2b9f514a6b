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
A reduced loss is returned as a NumPy scalar of that type, an unreduced one as an array;
when any array argument is a CPU torch tensor (the input, a target, a weight: README's one
result rule) the loss and the new gradients are tensors (a 0-d one when reduced), bfloat16
when every tensor argument is bfloat16. Sums are accumulated in float64 per fixed chunk, so
results do not depend on the thread count.

Where fastact differs from torch: ``soft_margin_loss`` is computed stably (torch returns inf
for ``-y*x`` above ~89 in float32); sums are more accurate than torch's float32 sums.
"""

from __future__ import annotations

import functools
import math
import numbers
import os
import warnings
from typing import Any

import numpy as np

from fastact import host
from fastact._core.arrays import stacklevel_outside, torch_module, written
from fastact._core.backend import device, on_device
from fastact._core.torch_pool import tensor_calls
from fastact.kernels.losses import LOSSES

__all__ = list(LOSSES)


def _executor(*arrays: Any):
    """The executor owning a call's arrays: the CUDA one if any is a device array."""
    return device(*arrays) if on_device(*arrays) else host


#: warnings name the line that called the loss (also through :func:`_on_tensor_views`)
_THIS_FILE = os.path.abspath(__file__)


class _NotViewable(Exception):
    """A tensor argument NumPy cannot view as it is (the call takes the tensor edge)."""


def _view(v: Any, torch: Any, back: dict) -> Any:
    """A loss argument as the NumPy view of a tensor (noted in ``back``), a tuple of such, or
    itself."""
    if isinstance(v, torch.Tensor):
        if (
            v.requires_grad
            or not v.is_cpu
            or v.layout is not torch.strided
            or v.is_nested  # (strided layout, but no sizes: the edge refuses it)
            or v.dtype is torch.bfloat16
            or v.is_neg()
            or v.is_conj()
        ):
            raise _NotViewable
        a = v.numpy()
        back[id(a)] = v
        return a
    if type(v) is tuple:
        return tuple([_view(u, torch, back) for u in v])
    return v


def _on_tensor_views(fn):
    """``fn`` (a loss) that, when its prediction (first argument) is a float32/float64 CPU
    tensor and every tensor argument is one NumPy can view as it is (CPU, strided, not
    requiring grad, no lazy negative/conjugate bit, not bfloat16), runs on the views and
    returns tensors sharing the results (``grad_out`` tensors themselves). The tensor edge of
    the executor (per-argument checks and conversions) cost a (64, 10) cross_entropy ~12 us;
    tensors it must check or convert still go there, and their new results (the loss, the
    gradients not written into ``grad_out``) follow the one result rule over every array
    argument (:func:`_by_the_rule`: a tensor target gives a tensor loss too). On either path
    the ``grad_out`` tensors written have their version counters advanced afterwards
    (autograd's record of the write)."""
    first = fn.__code__.co_varnames[0]

    @functools.wraps(fn)
    def loss(*args: Any, **kwargs: Any) -> Any:
        res = _loss(*args, **kwargs)
        go = kwargs.get("grad_out")
        if go is not None:  # the tensors among them were written: their version counters
            written(*(go if type(go) is tuple else (go,)))
        return res

    def _loss(*args: Any, **kwargs: Any) -> Any:
        torch = torch_module()
        if torch is None:
            return fn(*args, **kwargs)
        like = args[0] if args else kwargs.get(first)
        if type(like) is not torch.Tensor or not (
            like.dtype is torch.float32 or like.dtype is torch.float64
        ):
            return _by_the_rule(fn(*args, **kwargs), args, kwargs, torch)
        back: dict = {}
        go = kwargs.get("grad_out")
        for g in go if type(go) is tuple else (go,):
            if type(g) is np.ndarray:  # returned as itself, as on the general path
                back[id(g)] = g
            elif type(g) is torch.Tensor and g.is_inference():
                if not torch.is_inference_mode_enabled():  # the general path: torch's rule
                    return _by_the_rule(fn(*args, **kwargs), args, kwargs, torch)
        try:
            vargs = [_view(a, torch, back) for a in args]
            vkw = {k: _view(v, torch, back) for k, v in kwargs.items()}
        except _NotViewable:
            vargs = None  # the tensor edge, outside the handler (no chained traceback)
        if vargs is None:
            return _by_the_rule(fn(*args, **kwargs), args, kwargs, torch)
        with tensor_calls():  # the views are tensors' memory: torch's pool decides as for them
            res = fn(*vargs, **vkw)
        return _as_tensors(res, back, torch)

    return loss


#: argument types that are not tensors, told apart by a set lookup (isinstance with
#: torch.Tensor's metaclass costs ~0.1 us an argument: return_grad=True, reduction='sum')
_NOT_TENSORS = frozenset({np.ndarray, bool, int, float, str, type(None)})


def _by_the_rule(res: Any, args: tuple, kwargs: dict, torch: Any) -> Any:
    """A loss's new results (the loss, its gradients; a ``grad_out`` buffer is returned as
    itself) by the one result rule of every function (:func:`fastact.host.edge.tensor_result`)
    over the call's array arguments: every argument but ``grad_out`` (input, target, weight,
    pos_weight, var, ...; its numbers and strings are not tensors). On the views' path every
    result is a tensor already, and no tensor there is bfloat16. Without a tensor among the
    arguments (the common call: ~0.15 us) the results are returned as they are."""
    for a in args:
        if type(a) not in _NOT_TENSORS and isinstance(a, torch.Tensor):
            break
    else:
        for k, a in kwargs.items():
            if type(a) not in _NOT_TENSORS and k != "grad_out" and isinstance(a, torch.Tensor):
                break
        else:
            return res
    go = kwargs.get("grad_out")
    if kwargs:
        args = (*args, *[v for k, v in kwargs.items() if k != "grad_out"])
    return _each_result(res, args, () if go is None else go if type(go) is tuple else (go,))


def _each_result(res: Any, arrays: tuple, buffers: tuple) -> Any:
    if type(res) is tuple:
        return tuple([_each_result(r, arrays, buffers) for r in res])
    if res is None or any(res is b for b in buffers):
        return res
    return host.tensor_result(res, arrays)


def _as_tensors(res: Any, back: dict, torch: Any) -> Any:
    """A loss's NumPy results as tensors: the caller's own tensor where a result is one of
    its views (``grad_out``), else a tensor sharing the array."""
    if type(res) is tuple:
        return tuple([_as_tensors(r, back, torch) for r in res])
    if res is None:
        return None
    t = back.get(id(res))
    return t if t is not None else torch.from_numpy(np.asarray(res))


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
            stacklevel=stacklevel_outside(_THIS_FILE),
        )
    allowed = ("none", "mean", "sum") + extra
    if not isinstance(reduction, str) or reduction not in allowed:
        raise ValueError(f"reduction must be one of {allowed}, got {reduction!r}")
    return reduction


def _number(v: Any, name: str) -> float:
    if type(v) is float or type(v) is int:  # the common call (the ABC check costs ~1 us)
        return float(v)
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real):
        if isinstance(v, np.ndarray) and v.ndim == 0 and v.dtype.kind in "iuf":
            return float(v)
        raise TypeError(f"{name} must be a real number, got {type(v).__name__}")
    return float(v)


def _check_ignore_index(ignore_index: Any) -> None:
    if type(ignore_index) is int and -(2**63) <= ignore_index < 2**63:
        return
    if isinstance(ignore_index, (bool, np.bool_)) or not isinstance(ignore_index, numbers.Integral):
        raise TypeError(f"ignore_index must be an int, got {type(ignore_index).__name__}")
    if not -(2**63) <= ignore_index < 2**63:
        raise ValueError(f"ignore_index must fit in int64, got {ignore_index}")


def _broadcast(shapes: dict[str, tuple | None]) -> tuple[int, ...]:
    present = [s for s in shapes.values() if s is not None]
    if all(sh == present[0] for sh in present):
        return present[0]
    # NumPy's broadcast_shapes stops at 32 dimensions; arrays may have up to 64
    ndim = max(len(sh) for sh in present)
    out = [1] * ndim
    for sh in present:
        for i, d in enumerate(sh, ndim - len(sh)):
            if d != out[i]:
                if out[i] != 1 and d != 1:
                    desc = ", ".join(f"{k} {s}" for k, s in shapes.items() if s is not None)
                    raise ValueError(f"shapes cannot be broadcast together: {desc}")
                out[i] = max(out[i], d) if d != 0 and out[i] != 0 else 0
    return tuple(out)


def _check_broadcasts_to(shape: tuple | None, to: tuple, name: str) -> None:
    if shape is None:
        return
    try:
        ok = np.broadcast_shapes(shape, to) == to
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"{name} of shape {shape} does not broadcast to input's {to}")


def _size_warning(shape: tuple, target_shape: tuple) -> None:
    if target_shape != shape:
        warnings.warn(
            f"Using a target size ({target_shape}) that is different to the input size "
            f"({shape}). This will likely lead to incorrect results due to "
            "broadcasting. Please ensure they have the same size.",
            UserWarning,
            stacklevel=stacklevel_outside(_THIS_FILE),
        )


def _shape(ex, a) -> tuple | None:
    return None if a is None else tuple(ex.shape_of(a))


def _grad_buffers(ex, grad_out, return_grad: bool, targets: list, dt, inputs: tuple) -> list:
    """Validate ``grad_out`` (an array, or a tuple with one array or None per gradient):
    per gradient None or (object to return, array to write)."""
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
    checked: list = []
    for buf, (name, shape) in zip(bufs, targets, strict=False):
        if buf is None:
            checked.append(None)
            continue
        others = tuple(inputs) + tuple(c[1] for c in checked if c is not None)
        checked.append(ex.grad_buffer(buf, shape, dt, f"grad_out for {name}", others))
    return checked


def _gradient_array(ex, buf, like, shape: tuple, dt):
    """(object to return, array the kernel writes) for one gradient: the caller's buffer or a
    new array."""
    return buf if buf is not None else ex.empty(like, shape, dt)


def _broadcast_gradients(ex, names, shapes, full, bufs, like, dt, checked: bool = False):
    """Per argument ``names[j]`` of shape ``shapes[j]``: (object to return, array of the
    broadcast shape ``full`` the kernel writes, direct). A gradient is written into the
    caller's buffer directly when the argument has the full shape (and, with ``checked``, the
    kernel's domain check cannot fail after writing it), else into a new array that
    :func:`_gradients_back` sums back to the argument's shape."""
    outs = []
    for shape, buf in zip(shapes, bufs, strict=False):
        direct = shape == full and not (checked and buf is not None)
        res, arr = _gradient_array(ex, buf if direct else None, like, full, dt)
        outs.append((res, arr, direct))
    return outs


def _gradients_back(ex, outs, names, shapes, bufs) -> list:
    """The gradients of :func:`_broadcast_gradients` at their arguments' shapes (summed over
    the broadcast axes, copied into the caller's buffers)."""
    gs = []
    for (res, _arr, direct), name, shape, buf in zip(outs, names, shapes, bufs, strict=False):
        if direct:
            gs.append(res)
            continue
        g = ex.sum_to_shape(res, shape, name)
        if buf is not None:
            ex.copy_into(buf[1], g)
            g = buf[0]
        gs.append(g)
    return gs


def _gscale(reduction: str, div: float) -> float:
    if reduction != "mean":
        return 1.0
    return 1.0 / div if div else math.inf


# ----------------------------------------------------------------------------------------
# the element-wise losses
# ----------------------------------------------------------------------------------------


def _elementwise(
    ex,
    kernel: str,
    reduction: str,
    args: dict,
    grad_of: tuple[str, ...],
    return_grad: bool,
    like: Any,
    prm: tuple = (0.0,),
    weights: tuple = (None, None),
    div: float | None = None,
    check: Any = None,
    bufs: list | None = None,
):
    """Broadcast the arguments, run the kernel, reduce, and shape the results.

    ``args`` holds the per-element arrays in kernel order (a, b[, c]); ``grad_of`` names the
    arguments that receive the kernel's first and second derivative; ``bufs`` are validated
    ``grad_out`` buffers for them (or None); ``check``: the ValueError message (or a function
    returning it) for elements outside the loss's domain.
    """
    names = list(args)
    shapes = {k: _shape(ex, a) for k, a in args.items()}
    shape = _broadcast({**shapes, "weight": _shape(ex, weights[0]),
                        "pos_weight": _shape(ex, weights[1])})  # fmt: skip
    dt = args[names[0]].dtype
    n = math.prod(shape)
    flats = [ex.flat(args[k], shape) for k in names]
    w1, w2 = (ex.flat(w, shape) for w in weights)
    if div is None:
        div = n
    bufs = bufs or [None] * len(grad_of)
    gshapes = [shapes[k] for k in grad_of]
    grads: list = [None, None]
    outs: list = []  # per gradient: (object to return, array of the broadcast shape, direct)
    if return_grad:
        # a loss whose domain the kernel checks writes a caller's buffer only after the check
        # passed (through a temporary: nothing half-written on a ValueError)
        outs = _broadcast_gradients(ex, grad_of, gshapes, shape, bufs, like, dt, check is not None)
        for j, (_res, arr, _direct) in enumerate(outs):
            grads[j] = arr.reshape(-1)
    loss = ex.loss_map(
        kernel, tuple(flats), (w1, w2), prm, _gscale(reduction, div), tuple(grads),
        reduction, div, check, like, shape,
    )  # fmt: skip
    if not return_grad:
        return loss
    gs = _gradients_back(ex, outs, grad_of, gshapes, bufs)
    return loss, (gs[0] if len(gs) == 1 else tuple(gs))


def _regression(
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
    ex = _executor(input, target, weight, grad_out)
    (x,) = ex.float_inputs(("input",), input)
    dt = x.dtype
    t = ex.typed_input(target, "target", dt)
    shape = _shape(ex, x)
    bufs = _grad_buffers(
        ex, grad_out, return_grad, [("input", shape)], dt, (input, target, weight, x, t)
    )
    _size_warning(shape, _shape(ex, t))
    w = None
    div = None
    if weight is not None:
        w = ex.typed_input(weight, "weight", dt)
        if _shape(ex, w) != shape:
            raise ValueError(
                f"weight must have the same shape as input: got {_shape(ex, w)} and {shape}"
            )
        if weighted_mean and reduction == "mean":
            div = ex.float_sum(w)
    return _elementwise(
        ex, kernel, reduction, {"input": x, "target": t}, ("input",), return_grad, input,
        prm=prm, weights=(w, None), div=div, bufs=bufs,
    )  # fmt: skip


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
    return _regression("mse", input, target, red, weight, (0.0,), return_grad, True, grad_out)


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
    return _regression("l1", input, target, red, weight, (0.0,), return_grad, True, grad_out)


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
    if not beta >= 0:  # torch's check (NaN fails it too) and message
        raise ValueError(f"smooth_l1_loss does not support negative values for beta, got {beta}")
    inv = math.inf if beta == 0 else 1.0 / beta
    return _regression(
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
    if not delta > 0:  # torch's message
        raise ValueError(f"huber_loss does not support non-positive values for delta, got {delta}")
    return _regression("huber", input, target, red, weight, (delta,), return_grad, False, grad_out)


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
    have the same shape and lie in [0, 1] (ValueError; on the device one count is read
    back to check it); weight broadcasts to input's shape.
    """
    red = _reduction(reduction, size_average, reduce)
    ex = _executor(input, target, weight, grad_out)
    (p,) = ex.float_inputs(("input",), input)
    dt = p.dtype
    t = ex.typed_input(target, "target", dt)
    shape = _shape(ex, p)
    if _shape(ex, t) != shape:
        raise ValueError(
            f"target must have the same shape as input: got {_shape(ex, t)} and {shape}"
        )
    w = None if weight is None else ex.typed_input(weight, "weight", dt)
    _check_broadcasts_to(_shape(ex, w), shape, "weight")
    bufs = _grad_buffers(
        ex, grad_out, return_grad, [("input", shape)], dt, (input, target, weight, p, t)
    )
    return _elementwise(
        ex, "bce", red, {"input": p, "target": t}, ("input",), return_grad, input,
        weights=(w, None), check=lambda: ex.unit_interval_message(p, t), bufs=bufs,
    )  # fmt: skip


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
    ex = _executor(input, target, weight, pos_weight, grad_out)
    (x,) = ex.float_inputs(("input",), input)
    dt = x.dtype
    t = ex.typed_input(target, "target", dt)
    shape = _shape(ex, x)
    if _shape(ex, t) != shape:
        raise ValueError(
            f"target must have the same shape as input: got {_shape(ex, t)} and {shape}"
        )
    ws = []
    for v, name in ((weight, "weight"), (pos_weight, "pos_weight")):
        a = None if v is None else ex.typed_input(v, name, dt)
        _check_broadcasts_to(_shape(ex, a), shape, name)
        ws.append(a)
    bufs = _grad_buffers(
        ex, grad_out, return_grad, [("input", shape)], dt, (input, target, weight, pos_weight)
    )
    return _elementwise(
        ex, "bce_logits", red, {"input": x, "target": t}, ("input",), return_grad, input,
        weights=tuple(ws), prm=(1.0,), bufs=bufs,
    )  # fmt: skip


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
    ex = _executor(input, target, weight, grad_out)
    (x,) = ex.float_inputs(("input",), input)
    xshape = _shape(ex, x)
    if len(xshape) == 0:
        raise ValueError("input must have at least one dimension (the classes)")
    dt = x.dtype
    t = ex.typed_input(target, "target", dt)
    w = None if weight is None else ex.typed_input(weight, "weight", dt)
    (buf,) = _grad_buffers(
        ex, grad_out, return_grad, [("input", xshape)], dt, (input, target, weight, x, t)
    )
    shape = _broadcast({"input": xshape, "target": _shape(ex, t), "weight": _shape(ex, w)})
    n_cls = shape[-1]
    n = math.prod(shape)
    rows = math.prod(shape[:-1])  # samples (also with no classes: torch gives 0 / 0 per sample)
    if red == "none":
        gscale = 1.0 / n_cls if n_cls else 0.0
    elif n:
        gscale = 1.0 / (n_cls * rows) if red == "mean" else 1.0 / n_cls
    else:
        gscale = 0.0
    direct = shape == xshape
    res = arr = None
    if return_grad:
        res, arr = _gradient_array(ex, buf if direct else None, input, shape, dt)
    x2 = ex.flat(x, shape).reshape(rows, n_cls)
    t2 = ex.flat(t, shape).reshape(rows, n_cls)
    if w is not None:
        ws = _shape(ex, w)
        if ws and ws[-1] == n_cls and all(s == 1 for s in ws[:-1]):
            w = ex.contiguous(w).reshape(1, n_cls)  # one weight per class
        else:
            w = ex.flat(w, shape).reshape(rows, n_cls)
    g2 = None if arr is None else arr.reshape(rows, n_cls)
    loss = ex.multilabel_soft_margin(
        x2, t2, w, gscale, g2, red, n_cls * rows if red == "mean" else n_cls, shape[:-1], input
    )
    if not return_grad:
        return loss
    if direct:
        return loss, res
    g = ex.sum_to_shape(res, xshape, "input")
    if buf is not None:
        ex.copy_into(buf[1], g)
        g = buf[0]
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
    ex = _executor(input, target, grad_out)
    (x,) = ex.float_inputs(("input",), input)
    dt = x.dtype
    t = ex.typed_input(target, "target", dt)
    shape = _shape(ex, x)
    div = None
    if red == "mean":
        warnings.warn(
            "reduction: 'mean' divides the total loss by both the batch size and the support "
            "size.'batchmean' divides only by the batch size, and aligns with the KL div math "
            "definition.'mean' will be changed to behave the same as 'batchmean' in the next "
            "major release.",
            UserWarning,
            stacklevel=stacklevel_outside(_THIS_FILE),
        )
    elif red == "batchmean":
        div = shape[0] if shape else 1
        red = "mean"
    kernel = "kl_log" if log_target else "kl"
    bufs = _grad_buffers(ex, grad_out, return_grad, [("input", shape)], dt, (input, target))
    return _elementwise(
        ex, kernel, red, {"input": x, "target": t}, ("input",), return_grad, input, div=div,
        bufs=bufs,
    )  # fmt: skip


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
    ex = _executor(input, target, grad_out)
    (x,) = ex.float_inputs(("input",), input)
    t = ex.typed_input(target, "target", x.dtype)
    eps = _number(eps, "eps")
    kernel = ("poisson_log" if log_input else "poisson") + ("_full" if full else "")
    bufs = _grad_buffers(
        ex, grad_out, return_grad, [("input", _shape(ex, x))], x.dtype, (input, target)
    )
    return _elementwise(
        ex, kernel, red, {"input": x, "target": t}, ("input",), return_grad, input,
        prm=(eps,), bufs=bufs,
    )  # fmt: skip


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
    scalar_var = isinstance(var, numbers.Real) and not isinstance(var, (bool, np.bool_))
    ex = _executor(input, target, None if scalar_var else var, grad_out)
    (x,) = ex.float_inputs(("input",), input)
    dt = x.dtype
    xshape = _shape(ex, x)
    t = ex.typed_input(target, "target", dt)
    eps = _number(eps, "eps")
    if scalar_var:
        if var < 0:
            raise ValueError("var has negative entry/entries")
        v = ex.full(input, xshape, float(var), dt)
    else:
        v = ex.typed_input(var, "var", dt)
    vshape = _shape(ex, v)
    vu_shape = vshape
    if vshape != xshape:
        if len(xshape) >= 1 and vshape == xshape[:-1]:
            vu_shape = vshape + (1,)
            v = ex.contiguous(v).reshape(*vu_shape)
        elif len(xshape) != len(vshape) or (
            sum(s for a, s in zip(xshape, vshape, strict=False) if a != s) != 1
        ):
            raise ValueError(f"var is of incorrect size: {vshape} for input {xshape}")
    if math.isnan(eps):  # torch clamps var to min=NaN: every variance, so the loss, is NaN
        if ex is not host:
            raise ValueError("eps=NaN is supported for host arrays only")
        if np.any(v < 0):
            raise ValueError("var has negative entry/entries")
        v = np.full(v.shape, np.nan, v.dtype)
    k = 0.5 * math.log(2.0 * math.pi) if full else 0.0
    bufs = _grad_buffers(
        ex, grad_out, return_grad, [("input", xshape), ("var", vshape)], dt,
        (input, target, None if scalar_var else var),
    )  # fmt: skip
    if scalar_var and bufs[1] is not None:
        raise ValueError("grad_out for var must be None when var is a float")
    vbuf = bufs[1]
    if vbuf is not None:
        bufs[1] = (vbuf[0], vbuf[1].reshape(*vu_shape))
    res = _elementwise(
        ex, "gaussian_nll", red, {"input": x, "target": t, "var": v}, ("input", "var"),
        return_grad, input, prm=(eps, k), check="var has negative entry/entries", bufs=bufs,
    )  # fmt: skip
    if not return_grad:
        return res
    loss, (gx, gv) = res
    if vbuf is not None:
        gv = vbuf[0]
    elif vu_shape != vshape:
        gv = gv.reshape(vshape)
    if scalar_var:
        gv = dt.type(ex.float_sum(gv))
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
    ex = _executor(input, target, grad_out)
    (x,) = ex.float_inputs(("input",), input)
    y = ex.typed_input(target, "target", x.dtype)
    bufs = _grad_buffers(
        ex, grad_out, return_grad, [("input", _shape(ex, x))], x.dtype, (input, target)
    )
    return _elementwise(
        ex, "soft_margin", red, {"input": x, "target": y}, ("input",), return_grad, input,
        bufs=bufs,
    )  # fmt: skip


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
    ex = _executor(input1, input2, target, grad_out)
    x1, x2 = ex.float_inputs(("input1", "input2"), input1, input2)
    y = ex.typed_input(target, "target", x1.dtype)
    s1, s2, sy = _shape(ex, x1), _shape(ex, x2), _shape(ex, y)
    if not len(s1) == len(s2) == len(sy):
        raise ValueError(
            "input1, input2 and target must have the same number of dimensions: got "
            f"{s1}, {s2} and {sy}"
        )
    bufs = _grad_buffers(
        ex, grad_out, return_grad, [("input1", s1), ("input2", s2)], x1.dtype,
        (input1, input2, target),
    )  # fmt: skip
    return _elementwise(
        ex, "margin_ranking", red, {"input1": x1, "input2": x2, "target": y},
        ("input1", "input2"), return_grad, input1, prm=(_number(margin, "margin"),), bufs=bufs,
    )  # fmt: skip


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
    ex = _executor(input, target, grad_out)
    (x,) = ex.float_inputs(("input",), input)
    y = ex.typed_input(target, "target", x.dtype)
    bufs = _grad_buffers(
        ex, grad_out, return_grad, [("input", _shape(ex, x))], x.dtype, (input, target)
    )
    return _elementwise(
        ex, "hinge_embedding", red, {"input": x, "target": y}, ("input",), return_grad, input,
        prm=(_number(margin, "margin"),), bufs=bufs,
    )  # fmt: skip


# ----------------------------------------------------------------------------------------
# row-wise losses
# ----------------------------------------------------------------------------------------


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
    a 0-d target, their rows broadcasting against each other (and the target against them)
    like torch's (not their last dimension: ValueError);
    ``cos = x1.x2 / sqrt((|x1|^2 + 1e-12)(|x2|^2 + 1e-12))``. Gradients
    ``(grad_input1, grad_input2)``, each of its input's shape.
    """
    red = _reduction(reduction, size_average, reduce)
    ex = _executor(input1, input2, target, grad_out)
    x1, x2 = ex.float_inputs(("input1", "input2"), input1, input2)
    dt = x1.dtype
    y = ex.typed_input(target, "target", dt)
    s1, s2, sy = _shape(ex, x1), _shape(ex, x2), _shape(ex, y)
    if len(sy) not in (0, 1):
        raise ValueError(f"target must be 0-d or 1-d, got shape {sy}")
    want = 2 if len(sy) == 1 else 1
    for shape, name in ((s1, "input1"), (s2, "input2")):
        if len(shape) != want:
            raise ValueError(
                f"a {len(sy)}-d target expects {want}-d inputs, but {name} has shape {shape}"
            )
    if s1[-1] != s2[-1]:  # a deliberate departure (docs/torch_semantics.md, section 2)
        raise ValueError(
            f"input1 {s1} and input2 {s2} must have the same last dimension (torch broadcasts "
            "it in the dot product but takes each norm over the input's own last dimension, "
            "which is not a cosine)"
        )
    # torch broadcasts the rows of the inputs (and a 1-d target against them)
    full = _broadcast({"input1": s1, "input2": s2})
    if len(sy) == 1:
        rows_of = _broadcast({"target": sy, "rows of the inputs": full[:1]})
        full = rows_of + full[1:]
    bufs = _grad_buffers(
        ex, grad_out, return_grad, [("input1", s1), ("input2", s2)], dt, (input1, input2, target)
    )
    n_d = full[-1]
    rows = math.prod(full[:-1])
    a = ex.flat(x1, full).reshape(rows, n_d)
    b = ex.flat(x2, full).reshape(rows, n_d)
    yy = ex.flat(y, full[:-1]).reshape(max(rows, 1) if len(sy) == 0 else rows)
    names, shapes = ("input1", "input2"), (s1, s2)
    grads: list = [None, None]
    outs: list = []
    if return_grad:
        outs = _broadcast_gradients(ex, names, shapes, full, bufs, input1, dt)
        grads = [arr.reshape(rows, n_d) for _res, arr, _direct in outs]
    loss = ex.cosine_embedding(
        a, b, yy, _number(margin, "margin"), _gscale(red, rows), grads[0], grads[1], red, rows,
        full[:-1], input1,
    )  # fmt: skip
    if not return_grad:
        return loss
    return loss, tuple(_gradients_back(ex, outs, names, shapes, bufs))


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

    torch.nn.functional.triplet_margin_loss: rows along the last axis ((N, D) or (D,)), the
    three of one number of dimensions broadcasting against each other like torch's;
    ``swap`` uses ``min(d(a, n), d(p, n))``. Gradients
    ``(grad_anchor, grad_positive, grad_negative)``, each of its input's shape. ``margin``
    must be > 0 (torch's rule); ``p`` is any of torch's norms: p > 0 runs the fused kernels,
    p = 0 (count of nonzeros, no gradient), p < 0, +-inf (max/min of |d|, gradient shared by
    ties) and NaN are computed in float64 NumPy (host arrays only).
    """
    red = _reduction(reduction, size_average, reduce)
    ex = _executor(anchor, positive, negative, grad_out)
    an, po, ne = ex.float_inputs(("anchor", "positive", "negative"), anchor, positive, negative)
    sa, sp, sn = _shape(ex, an), _shape(ex, po), _shape(ex, ne)
    if not len(sa) == len(sp) == len(sn):
        raise ValueError(
            "anchor, positive and negative must have the same number of dimensions: got "
            f"{sa}, {sp} and {sn}"
        )
    if len(sa) == 0:
        raise ValueError("anchor must have at least one dimension")
    full = _broadcast({"anchor": sa, "positive": sp, "negative": sn})  # torch broadcasts them
    p = _number(p, "p")
    margin = _number(margin, "margin")
    if margin <= 0:  # torch's check and message
        raise ValueError(f"margin must be greater than 0, got {margin}")
    dt = an.dtype
    names, shapes = ("anchor", "positive", "negative"), (sa, sp, sn)
    bufs = _grad_buffers(
        ex, grad_out, return_grad, list(zip(names, shapes, strict=True)), dt,
        (anchor, positive, negative),
    )  # fmt: skip
    n_d = full[-1]
    rows = math.prod(full[:-1])
    arrs = tuple(ex.flat(v, full).reshape(rows, n_d) for v in (an, po, ne))
    grads: list = [None] * 3
    outs: list = []
    if return_grad:
        outs = _broadcast_gradients(ex, names, shapes, full, bufs, anchor, dt)
        grads = [arr.reshape(rows, n_d) for _res, arr, _direct in outs]
    if not (p > 0 and math.isfinite(p)):
        kind = "any"  # torch's other norms: 0, negative, +-inf, NaN (host NumPy, float64)
    else:
        kind = "p2" if p == 2.0 else ("p1" if p == 1.0 else "pgen")
    loss = ex.triplet_margin(
        kind, arrs, margin, p, _number(eps, "eps"), bool(swap),
        _gscale(red, rows), tuple(grads), red, rows, full[:-1], anchor,
    )  # fmt: skip
    if not return_grad:
        return loss
    return loss, tuple(_gradients_back(ex, outs, names, shapes, bufs))


# ----------------------------------------------------------------------------------------
# cross_entropy / nll_loss
# ----------------------------------------------------------------------------------------


def _class_layout(shape: tuple) -> tuple[int, int, int, tuple[int, ...]]:
    """(N, C, D, shape of per-sample results) for torch's (C,), (N, C), (N, C, d1, ...)."""
    if len(shape) == 0:
        raise ValueError("input must have at least one dimension (the classes)")
    if len(shape) == 1:
        return 1, shape[0], 1, ()
    n, c = shape[:2]
    return n, c, math.prod(shape[2:]), (n,) + tuple(shape[2:])


def _class_views(ex, x, input, target, weight, grad_out, return_grad: bool):
    """(logits as (N, C, D), the gradient to return, its (N, C, D) view to write or None)."""
    shape = _shape(ex, x)
    n_s, n_cls, n_d, _ = _class_layout(shape)
    (buf,) = _grad_buffers(
        ex, grad_out, return_grad, [("input", shape)], x.dtype, (input, target, weight)
    )
    x3 = ex.contiguous(x).reshape(n_s, n_cls, n_d)
    if not return_grad:
        return x3, None, None
    res, arr = _gradient_array(ex, buf, input, shape, x.dtype)
    return x3, res, arr.reshape(n_s, n_cls, n_d)


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
    (NaN if all are ignored; on the device the indices are checked there and one count is
    read back). Probability targets: 'mean' divides by the sample count.
    ``label_smoothing`` eps mixes the target with the uniform distribution (like torch, eps
    above 1 is an error and eps <= 0 or NaN smooths nothing). The gradient is
    ``softmax(x) * sum_c w_c q_c - w q`` for the (smoothed) target distribution q, scaled
    like the loss, computed with log-softmax in one pass over each row.
    """
    red = _reduction(reduction, size_average, reduce)
    ex = _executor(input, target, weight, grad_out)
    (x,) = ex.float_inputs(("input",), input)
    eps = _number(label_smoothing, "label_smoothing")
    if eps > 1.0:  # torch's check and message
        raise ValueError(f"label_smoothing must be between 0.0 and 1.0. Got: {eps:g}")
    if not eps > 0.0:  # like torch: zero, negative and NaN smoothing smooth nothing
        eps = 0.0
    _check_ignore_index(ignore_index)
    dt = x.dtype
    shape = _shape(ex, x)
    n_s, n_cls, n_d, sample_shape = _class_layout(shape)
    w = ex.class_weight(weight, n_cls, dt)
    t = ex.real_input(target, "target")
    if _shape(ex, t) == shape:
        if t.dtype.kind != "f":
            raise TypeError(
                "target has input's shape, so it holds class probabilities and must be "
                f"floating point, got dtype {t.dtype}"
            )
        if int(ignore_index) != -100:  # torch: RuntimeError, the same words
            raise ValueError(
                "ignore_index is not supported for floating point target (class "
                f"probabilities), got ignore_index={ignore_index}"
            )
        q = ex.contiguous(ex.typed_input(target, "target", dt)).reshape(n_s, n_cls, n_d)
        y = None
        div, wsum = float(n_s * n_d), 0.0  # the weight sum only enters index targets
    else:
        q = None
        y, div, wsum = ex.class_targets(target, sample_shape, n_cls, int(ignore_index), w)
        y = y.reshape(n_s, n_d)
    x3, res, g3 = _class_views(ex, x, input, target, weight, grad_out, return_grad)
    loss = ex.cross_entropy(
        x3, y, q, w, wsum, eps, int(ignore_index), _gscale(red, div), g3, red, div,
        sample_shape, input,
    )  # fmt: skip
    if red == "mean" and y is not None and div == 0 and eps > 0:
        # no weight on any kept target: torch's mean is NaN (its nll part is 0 / 0; the
        # smoothing part alone, folded into one sum here, would give inf)
        loss = loss * math.nan
    return (loss, res) if return_grad else loss


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
    ex = _executor(input, target, weight, grad_out)
    (x,) = ex.float_inputs(("input",), input)
    _check_ignore_index(ignore_index)
    dt = x.dtype
    shape = _shape(ex, x)
    n_s, n_cls, n_d, sample_shape = _class_layout(shape)
    w = ex.class_weight(weight, n_cls, dt)
    y, div, _ = ex.class_targets(target, sample_shape, n_cls, int(ignore_index), w)
    x3, res, g3 = _class_views(ex, x, input, target, weight, grad_out, return_grad)
    loss = ex.nll(
        x3, y.reshape(n_s, n_d), w, int(ignore_index), _gscale(red, div), g3, red, div,
        sample_shape, input,
    )  # fmt: skip
    return (loss, res) if return_grad else loss


# every loss on torch tensors through their NumPy views (see _on_tensor_views)
for _name in __all__:
    globals()[_name] = _on_tensor_views(globals()[_name])
del _name
