"""Losses on host arrays: the array edge the loss front end needs and the kernel launches.

The templates of :mod:`fastact.kernels.losses` are compiled here into (serial, parallel)
pairs (lazily, cached on disk); each launch below takes the views the front end prepared
(C-contiguous, the compute dtype) and returns the loss: a NumPy scalar of the data's dtype
for a reduced loss (float64 chunk sums divided by ``div``), an array for ``'none'``. The CUDA
executor has the same functions.

CPU torch tensors are viewed as NumPy arrays at this edge (a tensor that requires grad is
refused); when the prediction (``like``) is a tensor, the loss is a tensor (0-d when reduced)
and so are the gradients the front end allocates through :func:`fastact.host.edge.empty`
(the front end then brings every new result to the one result rule over all the array
arguments: a tensor target makes them tensors too).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from fastact._core.arrays import (
    FLOAT_DTYPES,
    as_array,
    as_tensor,
    base_view,
    is_tensor,
    not_masked,
    not_matrix,
    tensor_input,
    tensor_view,
)
from fastact._core.threads import parallel_by_size
from fastact._core.thresholds import PARALLEL_THRESHOLD
from fastact._core.torch_pool import pool_threads, run_split
from fastact.host.edge import output_view
from fastact.host.launch import pair
from fastact.kernels import losses as K

__all__ = [
    "CHUNK",
    "copy_into",
    "full",
    "unit_interval_message",
    "class_targets",
    "class_weight",
    "cosine_embedding",
    "cross_entropy",
    "flat",
    "float_inputs",
    "float_sum",
    "grad_buffer",
    "loss_map",
    "multilabel_soft_margin",
    "nll",
    "real_input",
    "sum_to_shape",
    "triplet_margin",
    "typed_input",
]

#: elements per reduction chunk (fixed, so the summation order does not depend on threads)
CHUNK = 16384
#: elements per block of unit_interval_message's scan (its masks: 3 bytes per element)
_SCAN_BLOCK = 65536
#: columns per tile of the (N, C, d1, ...) cross-entropy kernel
_CE_TILE = 64

_EW: dict[str, tuple] = {}
_ROWS: dict[str, tuple] = {}


def _ew_kernels(name: str) -> tuple:
    ks = _EW.get(name)
    if ks is None:
        ks = _EW[name] = pair(
            K.ew_loop,
            f"ew_{name}",
            f=K.ELEMENTWISE_SCALARS[name],
            FUSED_SUM=name in K.FUSED_SUM,
        )
    return ks


def _row_kernels(name: str) -> tuple:
    ks = _ROWS.get(name)
    if ks is None:
        if name.startswith("triplet_"):
            ks = pair(K.triplet_loop, name, **K.PNORM_PIECES[name.split("_", 1)[1]])
        else:
            ks = pair(getattr(K, f"{name}_loop"), name)
        _ROWS[name] = ks
    return ks


# ----------------------------------------------------------------------------- array edge
def _plain(x: Any, name: str) -> Any:
    """A CPU tensor argument as its NumPy view (anything else as is)."""
    return tensor_input(x, name) if type(x) is not np.ndarray and is_tensor(x) else x


def _like(value: Any, like: Any) -> Any:
    """A loss (NumPy scalar or array) as a tensor when the prediction ``like`` is one."""
    return as_tensor(value) if type(like) is not np.ndarray and is_tensor(like) else value


def real_input(x: Any, name: str) -> np.ndarray:
    """``x`` as an array of real numbers (any int or float dtype)."""
    arr = as_array(_plain(x, name), name)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be an array of real numbers, got dtype {arr.dtype}")
    return arr


def _compute_dtype(dtype: np.dtype) -> np.dtype:
    """float32/float64 as is; other reals by NumPy's float promotion (computed in f32/f64)."""
    if dtype in FLOAT_DTYPES:
        return dtype
    promoted = np.promote_types(dtype, np.float16)
    return FLOAT_DTYPES[0] if promoted.itemsize <= 4 else FLOAT_DTYPES[1]


def float_inputs(names: tuple[str, ...], *xs: Any) -> tuple[np.ndarray, ...]:
    """The prediction arrays, all in their common compute dtype."""
    if all(type(x) is np.ndarray and x.dtype in FLOAT_DTYPES for x in xs):
        dt = xs[0].dtype
        if all(x.dtype == dt for x in xs):
            return xs  # fast path: nothing to convert
    arrs = [real_input(x, n) for x, n in zip(xs, names, strict=False)]
    dt = _compute_dtype(np.result_type(*[a.dtype for a in arrs]))
    return tuple(a.astype(dt, copy=False) for a in arrs)


def typed_input(x: Any, name: str, dt: np.dtype) -> np.ndarray:
    """A target or weight in the compute dtype (cast)."""
    if type(x) is np.ndarray and x.dtype == dt:
        return x
    return real_input(x, name).astype(dt, copy=False)


def flat(a: np.ndarray | None, shape: tuple) -> np.ndarray | None:
    """``a`` broadcast to ``shape`` as a C-contiguous 1-D array (no copy when possible)."""
    if a is None:
        return None
    if a.shape != shape:
        a = np.broadcast_to(a, shape)
    return np.ascontiguousarray(a).reshape(-1)


def sum_to_shape(g: Any, shape: tuple, name: str) -> Any:
    """Sum a gradient of the broadcast shape back to an argument's ``shape`` (a tensor for a
    tensor)."""
    if tuple(g.shape) == shape:
        return g
    if type(g) is not np.ndarray and is_tensor(g):
        return as_tensor(sum_to_shape(g.numpy(), shape, name))
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, s in enumerate(shape) if s == 1 and g.shape[lead + i] != 1
    )
    return np.sum(g, axis=axes, dtype=np.float64).astype(g.dtype).reshape(shape)


def unit_interval_message(p: np.ndarray, t: np.ndarray) -> str:
    """The ValueError message naming the first of ``p``, ``t`` with an element outside [0, 1]
    (NaN included). Scanned in blocks of ``_SCAN_BLOCK`` elements (any layout, buffered a block
    at a time), stopping at the first block with one: masks of the whole arrays cost 2 bytes per
    element (4 GiB at 2**31 elements) just to word an error."""
    for arr, name in ((p, "input"), (t, "target")):
        blocks = np.nditer(
            arr,
            flags=["external_loop", "buffered", "zerosize_ok"],
            buffersize=_SCAN_BLOCK,
            order="K",
        )
        if not all(((b >= 0) & (b <= 1)).all() for b in blocks):
            return f"all elements of {name} should be between 0 and 1"
    return "all elements of input and target should be between 0 and 1"


def full(like: Any, shape: tuple, value: float, dt: np.dtype) -> np.ndarray:
    return np.full(shape, value, dt)


def copy_into(dst: np.ndarray, src: Any) -> None:
    np.copyto(dst, _plain(src, "gradient"))


def float_sum(a: Any) -> float:
    """The float64 sum of ``a`` (a weighted mean's divisor)."""
    # the ufunc's reduce (np.sum's Python wrapper costs ~3 us more; the same sum)
    return float(np.add.reduce(np.asarray(_plain(a, "array")), axis=None, dtype=np.float64))


def grad_buffer(buf: Any, shape: tuple, dt: np.dtype, label: str, inputs: tuple):
    """A caller's ``grad_out`` buffer, validated: (object to return, array to write)."""
    res, buf = buf, output_view(buf, label)
    if not isinstance(buf, np.ndarray):
        raise TypeError(f"{label} must be a numpy.ndarray, got {type(buf).__name__}")
    not_matrix(buf, label)
    buf = base_view(not_masked(buf, label))  # the kernels write a plain ndarray view
    if buf.shape != shape:
        raise ValueError(f"{label} has shape {buf.shape}, expected {shape}")
    if buf.dtype != dt:
        raise TypeError(f"{label} has dtype {buf.dtype}, expected {dt}")
    if not buf.flags.writeable:
        raise ValueError(f"{label} is read-only")
    if not buf.flags.c_contiguous:
        raise ValueError(f"{label} must be C-contiguous")
    for other in inputs:
        if type(other) is not np.ndarray and is_tensor(other):
            try:
                other = tensor_view(other, "argument")
            except TypeError:  # not viewable, so not our memory
                other = None
        if isinstance(other, np.ndarray) and np.may_share_memory(buf, other):
            raise ValueError(f"{label} shares memory with an argument or another buffer")
    return res, buf


def _finish(total: float, div: float, dt: np.dtype) -> np.generic:
    """``total / div`` in ``dt`` with IEEE results for div == 0 (inf or NaN)."""
    a, b = float(total), float(div)
    if b == 0:
        q = math.nan if a == 0 or math.isnan(a) else math.copysign(math.inf, a)
        return dt.type(q)
    return dt.type(a / b)


def _rows_per_chunk(width: int) -> int:
    return max(1, CHUNK // max(width, 1))


def _chunks(n: int, ch: int) -> int:
    return (n + ch - 1) // ch


def pick(kernels: tuple, n: int, threshold: int) -> Any:
    """The serial or parallel build by size (the same chunk sums whatever the thread count)."""
    return kernels[1] if parallel_by_size(n, threshold) else kernels[0]


def _launch(kernels: tuple, n: int, args: tuple, split: tuple, like: Any) -> None:
    """Run a chunked (serial, parallel) pair over ``n`` elements: the serial kernel on torch's
    thread pool where :func:`~fastact._core.torch_pool.pool_threads` says so, each thread on
    whole chunks (``split``: the per-chunk ``partials`` first, then (index, elements or rows
    per chunk) of the arrays that go with them, see :func:`~fastact._core.torch_pool.run_split`;
    the chunk sums, and so the loss, are the same bits), else the kernel :func:`pick`
    chooses."""
    pool = pool_threads(n, PARALLEL_THRESHOLD, type(like) is not np.ndarray and is_tensor(like))
    if pool and args[split[0]].shape[0] >= pool:
        run_split(kernels[0], args, split, pool)
        return
    pick(kernels, n, PARALLEL_THRESHOLD)(*args)


def _split_by(args: tuple, indices: tuple, per_chunk: int) -> list:
    """``(i, per_chunk)`` split entries of the arrays ``args[i]`` given; an empty
    placeholder (no rows: a gradient or per-element output not wanted) is passed whole (split
    with one row per chunk, e.g. cross_entropy over more than CHUNK classes or one class per
    row of multilabel_soft_margin_loss, it had to match the other arrays' length: a
    ValueError on torch's pool)."""
    return [(i, per_chunk) for i in indices if args[i] is not None and args[i].shape[0]]


def _ew_split(args: tuple, ch: int) -> tuple:
    """The split of :func:`fastact.kernels.losses.ew_loop`'s arguments: partials, then a, b,
    c, the weights, the gradients and the per-element values by chunks of ``ch`` (those
    given), and the bad-element counts."""
    split: list = [11, *_split_by(args, (0, 1, 2, 3, 4, 7, 8, 9), ch)]
    if args[12] is not None:
        split.append(12)
    return tuple(split)


def _chunks_total(partials: np.ndarray, dt: np.dtype) -> float:
    """The sum of a row loss's chunk sums. float64 data: exact, then rounded once
    (``math.fsum``), so that the kernels' compensated chunk sums keep their accuracy (NumPy's
    pairwise sum adds up to about log2(chunks) roundings); an infinite or overflowing sum,
    which fsum refuses, is NumPy's. float32 data: the float64 sum, far below a float32 ULP."""
    if dt == np.float64:
        try:
            return math.fsum(partials.tolist())
        except (ValueError, OverflowError):  # inf - inf, or an intermediate overflow
            with np.errstate(over="ignore", invalid="ignore"):  # IEEE's inf / NaN, as the
                return float(partials.sum())  # kernels' sums give them: no warning
    return float(partials.sum())


def _row_loss(partials, out, reduction: str, div: float, out_shape: tuple, dt: np.dtype):
    if reduction == "none":
        return out.astype(dt, copy=False).reshape(out_shape)
    return _finish(_chunks_total(partials, dt), div if reduction == "mean" else 1.0, dt)


# ----------------------------------------------------------------------------- launches
def loss_map(
    kernel: str,
    arrays: tuple,
    weights: tuple,
    prm: tuple,
    gscale: float,
    grads: tuple,
    reduction: str,
    div: float,
    check: Any,
    like: Any,
    shape: tuple,
):
    """An element-wise loss over flat ``arrays`` (a, b[, c]) of ``shape``; ``grads``: flat
    arrays (or None) receiving ``gscale * d1`` and ``gscale * d2``. Returns the loss (the
    per-element array for ``'none'``); ValueError(``check``) if an element is out of the
    loss's domain."""
    a = arrays[0]
    c = arrays[2] if len(arrays) > 2 else a
    n = a.size
    dt = a.dtype
    partials = np.empty(_chunks(n, CHUNK), np.float64)
    out = np.empty(n if reduction == "none" else 0, dt)
    bad = np.zeros(partials.size, np.float64) if check else None
    prm = tuple(dt.type(p) for p in prm)
    w1, w2 = weights
    ga, gb = grads
    args = (a, arrays[1], c, w1, w2, prm, dt.type(gscale), ga, gb, out, reduction == "none",
            partials, bad, CHUNK)  # fmt: skip
    _launch(_ew_kernels(kernel), n, args, _ew_split(args, CHUNK), like)
    if check and bad.sum():
        raise ValueError(check() if callable(check) else check)
    if reduction == "none":
        return _like(out.reshape(shape), like)
    return _like(_finish(partials.sum(), div if reduction == "mean" else 1.0, dt), like)


def multilabel_soft_margin(x2, t2, w, gscale, g2, reduction, div, out_shape, like):
    """Per row of (rows, C) logits the BCE-with-logits terms' sum (the front end divides by C
    through ``div`` and ``gscale``); ``w`` broadcasts to (rows, C)."""
    rows, n_cls = x2.shape
    n = rows * n_cls
    dt = x2.dtype
    if n_cls == 0:  # no classes: each sample's mean is 0 / 0 (torch: NaN; a sum of none is 0)
        per = np.full(rows, np.nan, dt)
        if reduction == "none":
            return _like(per.reshape(out_shape), like)
        return _like(dt.type(np.nan if rows or reduction == "mean" else 0.0), like)
    ch = max(n_cls, 1) if reduction == "none" else CHUNK
    partials = np.empty(_chunks(n, ch), np.float64)
    wf = flat(w, x2.shape)  # w: (1, C) or (rows, C)
    gf = None if g2 is None else g2.reshape(-1)
    xf = x2.reshape(-1)
    args = (xf, t2.reshape(-1), xf, wf, None, (dt.type(0.0),), dt.type(gscale), gf, None,
            np.empty(0, dt), False, partials, None, ch)  # fmt: skip
    _launch(_ew_kernels("bce_logits"), n, args, _ew_split(args, ch), like)
    if reduction == "none":
        return _like((partials[:rows] / n_cls).astype(dt).reshape(out_shape), like)
    return _like(_finish(partials.sum(), div, dt), like)


def class_weight(weight: Any, n_cls: int, dt: np.dtype) -> np.ndarray:
    """The class weights (ones when ``weight`` is None: a C-vector costs nothing to read)."""
    if weight is None:
        return np.ones(n_cls, dt)
    w = typed_input(weight, "weight", dt)
    if w.shape != (n_cls,):
        raise ValueError(f"weight must have shape ({n_cls},) (one per class), got {w.shape}")
    return np.ascontiguousarray(w)


def class_targets(target: Any, sample_shape: tuple, n_cls: int, ignore_index: int, w):
    """(validated int64 class indices of ``sample_shape``, sum of w[y] over kept targets,
    sum of w)."""
    y = np.asarray(not_masked(_plain(target, "target"), "target"))
    if y.dtype.kind not in "iu":
        raise TypeError(f"target must hold integer class indices, got dtype {y.dtype}")
    if y.shape != sample_shape:
        raise ValueError(f"target has shape {y.shape}, expected {sample_shape}")
    if y.dtype == np.uint64 and y.size and y.max() > np.iinfo(np.int64).max:
        # int64 would wrap it (2**64 - 100 to -100, the default ignore_index: dropped)
        raise ValueError(
            f"target {y.max()} is out of bounds for {n_cls} classes (ignore_index={ignore_index})"
        )
    y = np.ascontiguousarray(y, dtype=np.int64)
    pos, total = K.class_target_stats(y.reshape(-1), n_cls, ignore_index, w)
    if pos >= 0:
        raise ValueError(
            f"target {y.reshape(-1)[pos]} is out of bounds for {n_cls} classes "
            f"(ignore_index={ignore_index})"
        )
    return y, total, float_sum(w)


def cross_entropy(x3, y, q, w, wsum, eps, ignore_index, gscale, g3, reduction, div, shape, like):
    """Softmax cross-entropy over (N, C, D) logits: class indices ``y`` (N, D) or
    probabilities ``q`` (N, C, D); ``g3`` (or None) receives the gradient."""
    n_s, n_cls, n_d = x3.shape
    dt = x3.dtype
    if n_cls == 0 and q is not None:  # no classes: an empty sum per sample (torch: -0; its
        out = np.full((n_s, n_d), -0.0)  # mean divides 0 by 0 / 0 classes: NaN)
        value = out.astype(dt).reshape(shape) if reduction == "none" else dt.type(-0.0)
        return _like(dt.type(np.nan) if reduction == "mean" else value, like)
    want = g3 is not None
    g = g3 if want else np.empty((0, n_cls, 1), dt)  # placeholder: the loops use scratch rows
    out = np.empty((n_s, n_d), np.float64)
    if n_d == 1:
        rpc = _rows_per_chunk(n_cls)
        partials = np.empty(_chunks(n_s, rpc), np.float64)
        args = (
            x3.reshape(n_s, n_cls),
            None if y is None else y.reshape(n_s),
            None if q is None else q.reshape(n_s, n_cls),
            w,
            wsum,
            eps,
            ignore_index,
            gscale,
            want,
            g.reshape(g.shape[0], n_cls),
            out.reshape(n_s),
            partials,
            rpc,
        )
        split = (11, *_split_by(args, (0, 1, 2, 9, 10), rpc))
        _launch(_row_kernels("ce_rows"), x3.size, args, split, like)
    else:  # tiles of positions, one sample's tiles after another: shares of samples
        tiles = _chunks(n_d, _CE_TILE)
        partials = np.empty(n_s * tiles, np.float64)
        args = (x3, y, q, w, wsum, eps, ignore_index, gscale, want, g, out, partials, _CE_TILE)
        split = (0, *[i for i in (1, 2) if args[i] is not None], *([9] if want else []), 10,
                 (11, tiles))  # fmt: skip
        _launch(_row_kernels("ce_spatial"), x3.size, args, split, like)
    return _like(_row_loss(partials, out, reduction, div, shape, dt), like)


def nll(x3, y2, w, ignore_index, gscale, g3, reduction, div, shape, like):
    """nll_loss over (N, C, D); ``g3`` (or None) receives the gradient (zeroed here)."""
    n_s, n_cls, n_d = x3.shape
    dt = x3.dtype
    want = g3 is not None
    zero = want and n_d == 1  # rows of C: the kernel zeroes them in parallel
    g = g3 if want else np.empty((0, n_cls, 1), dt)
    if want and not zero:
        g.fill(0)
    ch = max(1, min(CHUNK, (1 << 16) // max(n_cls, 1))) if zero else CHUNK  # ~64K entries a task
    out = np.empty((n_s, n_d), np.float64)
    partials = np.empty(_chunks(n_s * n_d, ch), np.float64)
    args = (x3, y2, w, ignore_index, gscale, want, g, zero, out, partials, ch)
    if n_d == 1:  # a chunk is ch samples: shares of chunks
        split = (9, (0, ch), (1, ch), *([(6, ch)] if want else []), (8, ch))
        _launch(_row_kernels("nll"), x3.size, args, split, like)
    else:  # chunks of positions straddle samples
        pick(_row_kernels("nll"), x3.size, PARALLEL_THRESHOLD)(*args)
    return _like(_row_loss(partials, out, reduction, div, shape, dt), like)


def cosine_embedding(a, b, yy, margin, gscale, g1, g2, reduction, div, shape, like):
    """cosine_embedding_loss over rows of (R, D) inputs; ``g1``/``g2`` (or None)."""
    n_r, n_d = a.shape
    rpc = _rows_per_chunk(n_d)
    partials = np.empty(_chunks(n_r, rpc), np.float64)
    out = np.empty(n_r, np.float64)
    pick(_row_kernels("cosine"), a.size, PARALLEL_THRESHOLD)(
        a, b, yy, margin, a.dtype.type(0), gscale, g1, g2, out, partials, rpc
    )
    return _like(_row_loss(partials, out, reduction, div, shape, a.dtype), like)


def triplet_margin(kind, arrs, margin, p, eps, swap, gscale, gs, reduction, div, shape, like):
    """triplet_margin_loss over rows of (R, D) inputs; ``kind`` of p: p2, p1, pgen, or any
    (torch's norms without a kernel, in float64 NumPy)."""
    n_r, n_d = arrs[0].shape
    if kind == "any":
        out = _triplet_any_norm(*arrs, margin, p, arrs[0].dtype.type(eps), swap, gscale, gs)
        loss = _row_loss(out, out, reduction, div, shape, arrs[0].dtype)  # rows as chunks
        return _like(loss, like)
    rpc = _rows_per_chunk(n_d)
    partials = np.empty(_chunks(n_r, rpc), np.float64)
    out = np.empty(n_r, np.float64)
    dt = arrs[0].dtype
    pick(_row_kernels(f"triplet_{kind}"), arrs[0].size, PARALLEL_THRESHOLD)(
        *arrs, margin, p, eps, swap, dt.type(0), gscale, *gs, out, partials, rpc
    )
    return _like(_row_loss(partials, out, reduction, div, shape, dt), like)


def _pnorm_and_grad(d: np.ndarray, p: float) -> tuple[np.ndarray, np.ndarray]:
    """torch's vector norm of each row of ``d`` (float64) and its gradient, for the norms the
    kernels leave out: p = 0 (count of nonzeros, gradient 0), p = +-inf (max/min of |d|,
    gradient shared by the ties), p < 0 and NaN (``(sum |d|^p)^(1/p)``)."""
    a = np.abs(d)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if math.isnan(p):
            n = np.full(d.shape[0], np.nan)
            return n, np.full(d.shape, np.nan)
        if p == 0:
            return np.count_nonzero(a, axis=1).astype(np.float64), np.zeros(d.shape)
        if math.isinf(p):
            n = a.max(axis=1) if p > 0 else a.min(axis=1)
            hit = a == n[:, None]
            return n, np.sign(d) * hit / np.maximum(hit.sum(axis=1, keepdims=True), 1)
        n = np.sum(a**p, axis=1) ** (1.0 / p)
        g = d * a ** (p - 2.0) / n[:, None] ** (p - 1.0)
        g[n == 0] = 0.0  # torch's norm backward: zero where the norm is zero
        return n, g


def _triplet_any_norm(an, po, ne, margin, p, e, swap, gscale, gs) -> np.ndarray:
    """triplet_margin_loss rows for the norms without a kernel (see :func:`_pnorm_and_grad`),
    in float64 like the kernels' sums; fills ``gs`` (when given) and returns the row losses.
    The differences ``(x - y) + eps`` are rounded in the inputs' dtype, as in the kernels."""
    dap, uap = _pnorm_and_grad(((an - po) + e).astype(np.float64), p)
    dan, uan = _pnorm_and_grad(((an - ne) + e).astype(np.float64), p)
    alpha, beta = np.ones_like(dap), np.zeros_like(dap)
    dneg = dan
    if swap:
        dpn, upn = _pnorm_and_grad(((po - ne) + e).astype(np.float64), p)
        dneg = np.minimum(dan, dpn)
        alpha = np.where(dpn < dan, 0.0, np.where(dpn == dan, 0.5, 1.0))
        beta = 1.0 - alpha
    z = margin + dap - dneg
    loss = np.where(z < 0, 0.0, z)  # NaN stays NaN
    if gs[0] is not None:
        cf = np.where(z >= 0, gscale, 0.0)[:, None]
        ga = cf * uap - (cf * alpha[:, None]) * uan
        gp = -cf * uap
        gn = (cf * alpha[:, None]) * uan
        if swap:
            gp = gp - (cf * beta[:, None]) * upn
            gn = gn + (cf * beta[:, None]) * upn
        for g, v in zip(gs, (ga, gp, gn), strict=True):
            g[...] = v
    return loss
