"""Fused optimizer kernels and the functional optimizer API (torch.optim update rules).

Every update is one parallel pass over memory. The tensors of one call (or of one optimizer
param group and dtype) are described by two small int64 tables:

* a **pointer table** ``ptrs[row, j]``: the data address of array ``row`` of tensor ``j``
  (row 0 the parameter, row 1 the gradient, rows 2.. the state arrays in kernel order);
* a **chunk table** ``chunks[c] = (j, start, length)`` that cuts the concatenation of all
  tensors into pieces of at most :data:`CHUNK` elements (a piece never spans two tensors).

A kernel is a ``prange`` over chunks; each chunk turns addresses into arrays
(``inttoptr`` + ``numba.carray``) and runs one vectorised loop that reads and writes every
array once. So a model of hundreds of small tensors is one kernel launch, not a Python loop.
Scalar coefficients that depend on the step (bias corrections, decayed lr) are computed once
per step in float64 Python, exactly as torch computes them, and passed in per tensor
(``coefs[j, :]``); the arithmetic runs in the parameter's dtype, with the constants rounded
to it, in the same operation order as torch's single-tensor path.

The functional API (:func:`sgd`, :func:`adam`, :func:`adamw`, :func:`adamax`,
:func:`rmsprop`, :func:`rprop`, :func:`adagrad`, :func:`adadelta`) is for trainers that keep
their own state: it updates parameters and state arrays in place and increments nothing (the
caller passes the step number ``t`` that torch would use, i.e. after its increment).
Arguments are validated completely before any array is written.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numba
import numpy as np
from numba import prange, types
from numba.extending import intrinsic, overload
from numba.np.numpy_support import as_dtype

from fastact._core.jit import jit, specialize
from fastact._core.threads import use_parallel

__all__ = [
    "sgd",
    "adam",
    "adamw",
    "adamax",
    "rmsprop",
    "rprop",
    "adagrad",
    "adadelta",
    "CHUNK",
    "SERIAL_BELOW",
]

#: Elements per chunk of the chunk table (16K: a few arrays of a chunk stay in L2).
CHUNK = 16384
#: Launches over fewer elements than this run the serial build of the kernel (measured
#: crossover of the serial and the 2-thread parallel Adam step, float32: ~48K elements).
SERIAL_BELOW = 49152

_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

# ---------------------------------------------------------------------------------------------
# jit helpers: address -> array view, constant in the array's dtype, NaN-propagating maximum
# ---------------------------------------------------------------------------------------------


@intrinsic
def _pointer(typingctx, address, proto):
    """``(T*) address`` where T is ``proto``'s element type (an int64 address from a table)."""
    if not isinstance(address, types.Integer) or not isinstance(proto, types.Array):
        return None
    ptr_type = types.CPointer(proto.dtype)

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], context.get_value_type(ptr_type))

    return ptr_type(address, proto), codegen


def _as(proto, value):
    """``value`` converted to ``proto``'s element type (jit code only)."""
    return value


@overload(_as, inline="always")
def _as_impl(proto, value):
    if isinstance(proto, types.Array):
        cast = as_dtype(proto.dtype).type

        def impl(proto, value):
            return cast(value)

        return impl


@jit
def _view(ptrs, row, j, start, n, proto):
    """Elements ``[start, start + n)`` of array ``row`` of tensor ``j`` as a 1-d array."""
    return numba.carray(_pointer(ptrs[row, j] + start * proto.itemsize, proto), n)


@jit
def address(a):
    """Data address of a NumPy array (several times faster than ``a.ctypes.data``)."""
    return a.ctypes.data


@jit
def _maximum(a, b):
    """torch.maximum for scalars: NaN if either is NaN."""
    return a if (a > b or a != a) else b


# ---------------------------------------------------------------------------------------------
# kernel templates: (proto, ptrs, chunks, coefs, *group scalars); compiled serial and parallel.
# Each has a branch-free fast loop for its common configuration (no L2 weight decay, no
# maximize, ...) chosen per chunk, and a general loop; both use the same operation order.
# Loop-invariant flags inside one loop cost ~10% of memory speed (LLVM does not unswitch them
# all), hence the explicit fast loops.
# ---------------------------------------------------------------------------------------------


def _sgd_loop(
    proto,
    ptrs,
    chunks,
    coefs,
    lr,
    weight_decay,
    momentum,
    dampening,
    nesterov,
    maximize,
    has_buffer,
):
    """SGD. Rows p, g, buf. ``coefs[j, 0] != 0``: first step of tensor j (buf = g)."""
    nlr = _as(proto, -lr)
    wd = _as(proto, weight_decay)
    mu = _as(proto, momentum)
    d1 = _as(proto, 1.0 - dampening)
    gs = _as(proto, -1.0 if maximize else 1.0)
    l2 = weight_decay != 0.0
    plain = not l2 and not maximize
    for c in prange(chunks.shape[0]):
        j = chunks[c, 0]
        start = chunks[c, 1]
        n = chunks[c, 2]
        pa = _view(ptrs, 0, j, start, n, proto)
        ga = _view(ptrs, 1, j, start, n, proto)
        ba = _view(ptrs, 2, j, start, n, proto)
        first = coefs[j, 0] != 0.0
        if plain and has_buffer and not first and not nesterov:
            for i in range(n):
                b = ba[i] * mu + d1 * ga[i]
                ba[i] = b
                pa[i] = pa[i] + nlr * b
        elif plain and has_buffer and not first:
            for i in range(n):
                g = ga[i]
                b = ba[i] * mu + d1 * g
                ba[i] = b
                pa[i] = pa[i] + nlr * (g + mu * b)
        elif plain and not has_buffer:
            for i in range(n):
                pa[i] = pa[i] + nlr * ga[i]
        else:
            for i in range(n):
                g = ga[i] * gs
                p = pa[i]
                if l2:
                    g = g + wd * p
                if has_buffer:
                    if first:
                        b = g
                    else:
                        b = ba[i] * mu + d1 * g
                    ba[i] = b
                    if nesterov:
                        g = g + mu * b
                    else:
                        g = b
                pa[i] = p + nlr * g


def _adam_loop(
    proto, ptrs, chunks, coefs, beta1, beta2, eps, weight_decay, decay, amsgrad, maximize
):
    """Adam/AdamW. Rows p, g, m, v, vmax. coefs[j] = (lr / bc1, sqrt(bc2)).

    ``decay`` multiplies p first (decoupled weight decay 1 - lr*wd; 1.0 is exact for every p);
    ``weight_decay`` is L2. ``maximize`` multiplies g by -1 (exact).
    """
    w = _as(proto, 1.0 - beta1)
    small = abs(w) < _as(proto, 0.5)
    wm1 = w - _as(proto, 1.0)
    b2 = _as(proto, beta2)
    c2 = _as(proto, 1.0 - beta2)
    e = _as(proto, eps)
    wd = _as(proto, weight_decay)
    dec = _as(proto, decay)
    gs = _as(proto, -1.0 if maximize else 1.0)
    l2 = weight_decay != 0.0
    plain = not l2 and not maximize and not amsgrad and small
    for c in prange(chunks.shape[0]):
        j = chunks[c, 0]
        start = chunks[c, 1]
        n = chunks[c, 2]
        pa = _view(ptrs, 0, j, start, n, proto)
        ga = _view(ptrs, 1, j, start, n, proto)
        ma = _view(ptrs, 2, j, start, n, proto)
        va = _view(ptrs, 3, j, start, n, proto)
        xa = _view(ptrs, 4, j, start, n, proto)
        nss = _as(proto, -coefs[j, 0])
        bc2s = _as(proto, coefs[j, 1])
        if plain:
            for i in range(n):
                g = ga[i]
                m = ma[i]
                m = m + w * (g - m)
                ma[i] = m
                v = va[i] * b2 + c2 * g * g
                va[i] = v
                pa[i] = pa[i] * dec + nss * m / (np.sqrt(v) / bc2s + e)
        else:
            for i in range(n):
                g = ga[i] * gs
                p = pa[i] * dec
                if l2:
                    g = g + wd * p
                m = ma[i]
                if small:
                    m = m + w * (g - m)
                else:
                    m = g + wm1 * (g - m)
                ma[i] = m
                v = va[i] * b2 + c2 * g * g
                va[i] = v
                if amsgrad:
                    v = _maximum(xa[i], v)
                    xa[i] = v
                pa[i] = p + nss * m / (np.sqrt(v) / bc2s + e)


def _adamax_loop(proto, ptrs, chunks, coefs, beta1, beta2, eps, weight_decay, maximize):
    """Adamax. Rows p, g, m, u. coefs[j] = (lr / bc1,)."""
    w = _as(proto, 1.0 - beta1)
    small = abs(w) < _as(proto, 0.5)
    wm1 = w - _as(proto, 1.0)
    b2 = _as(proto, beta2)
    e = _as(proto, eps)
    wd = _as(proto, weight_decay)
    gs = _as(proto, -1.0 if maximize else 1.0)
    l2 = weight_decay != 0.0
    plain = not l2 and not maximize and small
    for c in prange(chunks.shape[0]):
        j = chunks[c, 0]
        start = chunks[c, 1]
        n = chunks[c, 2]
        pa = _view(ptrs, 0, j, start, n, proto)
        ga = _view(ptrs, 1, j, start, n, proto)
        ma = _view(ptrs, 2, j, start, n, proto)
        ua = _view(ptrs, 3, j, start, n, proto)
        nclr = _as(proto, -coefs[j, 0])
        if plain:
            for i in range(n):
                g = ga[i]
                m = ma[i]
                m = m + w * (g - m)
                ma[i] = m
                u = _maximum(ua[i] * b2, abs(g) + e)
                ua[i] = u
                pa[i] = pa[i] + nclr * m / u
        else:
            for i in range(n):
                g = ga[i] * gs
                p = pa[i]
                if l2:
                    g = g + wd * p
                m = ma[i]
                if small:
                    m = m + w * (g - m)
                else:
                    m = g + wm1 * (g - m)
                ma[i] = m
                u = _maximum(ua[i] * b2, abs(g) + e)
                ua[i] = u
                pa[i] = p + nclr * m / u


def _rmsprop_loop(
    proto, ptrs, chunks, coefs, lr, alpha, eps, weight_decay, momentum, centered, maximize
):
    """RMSprop. Rows p, g, v, buf, grad_avg (the last two only read when used)."""
    nlr = _as(proto, -lr)
    al = _as(proto, alpha)
    w = _as(proto, 1.0 - alpha)
    small = abs(w) < _as(proto, 0.5)
    wm1 = w - _as(proto, 1.0)
    e = _as(proto, eps)
    wd = _as(proto, weight_decay)
    mu = _as(proto, momentum)
    gs = _as(proto, -1.0 if maximize else 1.0)
    use_buf = momentum > 0.0
    l2 = weight_decay != 0.0
    plain = not l2 and not maximize and not centered
    for c in prange(chunks.shape[0]):
        j = chunks[c, 0]
        start = chunks[c, 1]
        n = chunks[c, 2]
        pa = _view(ptrs, 0, j, start, n, proto)
        ga = _view(ptrs, 1, j, start, n, proto)
        va = _view(ptrs, 2, j, start, n, proto)
        ba = _view(ptrs, 3, j, start, n, proto)
        aa = _view(ptrs, 4, j, start, n, proto)
        if plain and not use_buf:
            for i in range(n):
                g = ga[i]
                v = va[i] * al + w * g * g
                va[i] = v
                pa[i] = pa[i] + nlr * g / (np.sqrt(v) + e)
        elif plain:
            for i in range(n):
                g = ga[i]
                v = va[i] * al + w * g * g
                va[i] = v
                b = ba[i] * mu + g / (np.sqrt(v) + e)
                ba[i] = b
                pa[i] = pa[i] + nlr * b
        else:
            for i in range(n):
                g = ga[i] * gs
                p = pa[i]
                if l2:
                    g = g + wd * p
                v = va[i] * al + w * g * g
                va[i] = v
                if centered:
                    a = aa[i]
                    if small:
                        a = a + w * (g - a)
                    else:
                        a = g + wm1 * (g - a)
                    aa[i] = a
                    avg = np.sqrt(v + (-a) * a) + e
                else:
                    avg = np.sqrt(v) + e
                if use_buf:
                    b = ba[i] * mu + g / avg
                    ba[i] = b
                    pa[i] = p + nlr * b
                else:
                    pa[i] = p + nlr * g / avg


def _rprop_loop(
    proto, ptrs, chunks, coefs, etaminus, etaplus, step_size_min, step_size_max, maximize
):
    """Rprop. Rows p, g, prev, step_size. sign() is torch's: 0 for NaN."""
    em = _as(proto, etaminus)
    ep = _as(proto, etaplus)
    lo = _as(proto, step_size_min)
    hi = _as(proto, step_size_max)
    zero = _as(proto, 0.0)
    one = _as(proto, 1.0)
    gs = _as(proto, -1.0 if maximize else 1.0)
    for c in prange(chunks.shape[0]):
        j = chunks[c, 0]
        start = chunks[c, 1]
        n = chunks[c, 2]
        pa = _view(ptrs, 0, j, start, n, proto)
        ga = _view(ptrs, 1, j, start, n, proto)
        qa = _view(ptrs, 2, j, start, n, proto)
        sa = _view(ptrs, 3, j, start, n, proto)
        if not maximize:
            for i in range(n):
                g = ga[i]
                s = g * qa[i]
                ss = sa[i]
                if s > zero:
                    ss = ss * ep
                elif s < zero:
                    ss = ss * em
                    g = zero
                ss = lo if ss < lo else ss
                ss = hi if ss > hi else ss
                sa[i] = ss
                sg = one if g > zero else (-one if g < zero else zero)
                pa[i] = pa[i] + (-sg) * ss
                qa[i] = g
        else:
            for i in range(n):
                g = ga[i] * gs
                s = g * qa[i]
                ss = sa[i]
                if s > zero:
                    ss = ss * ep
                elif s < zero:
                    ss = ss * em
                    g = zero
                ss = lo if ss < lo else ss
                ss = hi if ss > hi else ss
                sa[i] = ss
                sg = one if g > zero else (-one if g < zero else zero)
                pa[i] = pa[i] + (-sg) * ss
                qa[i] = g


def _adagrad_loop(proto, ptrs, chunks, coefs, eps, weight_decay, maximize):
    """Adagrad. Rows p, g, sum. coefs[j] = (lr / (1 + (t - 1) * lr_decay),)."""
    e = _as(proto, eps)
    wd = _as(proto, weight_decay)
    gs = _as(proto, -1.0 if maximize else 1.0)
    l2 = weight_decay != 0.0
    plain = not l2 and not maximize
    for c in prange(chunks.shape[0]):
        j = chunks[c, 0]
        start = chunks[c, 1]
        n = chunks[c, 2]
        pa = _view(ptrs, 0, j, start, n, proto)
        ga = _view(ptrs, 1, j, start, n, proto)
        sa = _view(ptrs, 2, j, start, n, proto)
        nclr = _as(proto, -coefs[j, 0])
        if plain:
            for i in range(n):
                g = ga[i]
                s = sa[i] + g * g
                sa[i] = s
                pa[i] = pa[i] + nclr * g / (np.sqrt(s) + e)
        else:
            for i in range(n):
                g = ga[i] * gs
                p = pa[i]
                if l2:
                    g = g + wd * p
                s = sa[i] + g * g
                sa[i] = s
                pa[i] = p + nclr * g / (np.sqrt(s) + e)


def _adadelta_loop(proto, ptrs, chunks, coefs, lr, rho, eps, weight_decay, maximize):
    """Adadelta. Rows p, g, square_avg, acc_delta (eps inside both roots)."""
    nlr = _as(proto, -lr)
    r = _as(proto, rho)
    c1 = _as(proto, 1.0 - rho)
    e = _as(proto, eps)
    wd = _as(proto, weight_decay)
    gs = _as(proto, -1.0 if maximize else 1.0)
    l2 = weight_decay != 0.0
    plain = not l2 and not maximize
    for c in prange(chunks.shape[0]):
        j = chunks[c, 0]
        start = chunks[c, 1]
        n = chunks[c, 2]
        pa = _view(ptrs, 0, j, start, n, proto)
        ga = _view(ptrs, 1, j, start, n, proto)
        va = _view(ptrs, 2, j, start, n, proto)
        ua = _view(ptrs, 3, j, start, n, proto)
        if plain:
            for i in range(n):
                g = ga[i]
                v = va[i] * r + c1 * g * g
                va[i] = v
                u = ua[i]
                d = np.sqrt(u + e) / np.sqrt(v + e) * g
                ua[i] = u * r + c1 * d * d
                pa[i] = pa[i] + nlr * d
        else:
            for i in range(n):
                g = ga[i] * gs
                p = pa[i]
                if l2:
                    g = g + wd * p
                v = va[i] * r + c1 * g * g
                va[i] = v
                u = ua[i]
                d = np.sqrt(u + e) / np.sqrt(v + e) * g
                ua[i] = u * r + c1 * d * d
                pa[i] = p + nlr * d


def _nonfinite_loop(proto, ptrs, row, chunks, out):
    """out[c] = chunk c of array ``row`` holds a NaN or an infinity (x * 0 is NaN then)."""
    for c in prange(chunks.shape[0]):
        j = chunks[c, 0]
        start = chunks[c, 1]
        n = chunks[c, 2]
        xa = _view(ptrs, row, j, start, n, proto)
        acc = _as(proto, 0.0)
        zero = _as(proto, 0.0)
        for i in range(n):
            acc += xa[i] * zero
        out[c] = acc != acc


_TEMPLATES = {
    "sgd": _sgd_loop,
    "adam": _adam_loop,
    "adamax": _adamax_loop,
    "rmsprop": _rmsprop_loop,
    "rprop": _rprop_loop,
    "adagrad": _adagrad_loop,
    "adadelta": _adadelta_loop,
    "nonfinite": _nonfinite_loop,
}

#: name -> (parallel kernel, serial kernel); compiled lazily per dtype on first use.
KERNELS: dict[str, tuple[Any, Any]] = {
    name: (
        specialize(tpl, f"optim_{name}_parallel", parallel=True),
        specialize(tpl, f"optim_{name}_serial"),
    )
    for name, tpl in _TEMPLATES.items()
}

#: Number of pointer-table rows (param, grad, state...) each kernel reads.
ROWS = {"sgd": 3, "adam": 5, "adamax": 4, "rmsprop": 5, "rprop": 4, "adagrad": 3, "adadelta": 4}

# ---------------------------------------------------------------------------------------------
# tables and launch
# ---------------------------------------------------------------------------------------------


def chunk_table(sizes: Sequence[int] | np.ndarray, chunk: int | None = None) -> np.ndarray:
    """(n_chunks, 3) int64 table of (tensor, start, length) covering every tensor in order."""
    chunk = CHUNK if chunk is None else int(chunk)
    sizes = np.asarray(sizes, dtype=np.int64).reshape(-1)
    counts = (sizes + (chunk - 1)) // chunk
    total = int(counts.sum())
    tensor = np.repeat(np.arange(sizes.size, dtype=np.int64), counts)
    first = np.cumsum(counts) - counts
    start = (np.arange(total, dtype=np.int64) - np.repeat(first, counts)) * chunk
    length = np.minimum(chunk, sizes[tensor] - start)
    return np.ascontiguousarray(np.stack([tensor, start, length], axis=1))


def launch(
    kind: str,
    proto: np.ndarray,
    ptrs: np.ndarray,
    chunks: np.ndarray,
    coefs: np.ndarray,
    scalars: tuple,
    n_elements: int,
) -> None:
    """Run kernel ``kind`` over a pointer and chunk table (serial below SERIAL_BELOW)."""
    if chunks.shape[0] == 0:
        return
    parallel, serial = KERNELS[kind]
    kernel = parallel if use_parallel(n_elements, SERIAL_BELOW) else serial
    kernel(proto, ptrs, chunks, coefs, *scalars)


def nonfinite_chunks(
    proto: np.ndarray, ptrs: np.ndarray, row: int, chunks: np.ndarray, n_elements: int
) -> np.ndarray:
    """Boolean per chunk: array ``row`` of the chunk holds a NaN or an infinity."""
    out = np.zeros(chunks.shape[0], dtype=np.bool_)
    if chunks.shape[0]:
        parallel, serial = KERNELS["nonfinite"]
        (parallel if use_parallel(n_elements, SERIAL_BELOW) else serial)(
            proto, ptrs, row, chunks, out
        )
    return out


# ---------------------------------------------------------------------------------------------
# validation helpers (shared with the optimizer classes)
# ---------------------------------------------------------------------------------------------


def _torch():
    import sys

    return sys.modules.get("torch")


def is_tensor(x: Any) -> bool:
    """``x`` is a torch.Tensor (without importing torch when it is not loaded)."""
    torch = _torch()
    return torch is not None and isinstance(x, torch.Tensor)


def tensor_view(t: Any, name: str) -> np.ndarray:
    """Zero-copy NumPy view of a CPU torch tensor (TypeError naming ``name`` otherwise)."""
    if t.device.type != "cpu":
        raise TypeError(f"{name} is a torch tensor on {t.device}; only CPU tensors are supported")
    if t.is_sparse or t.layout != _torch().strided:
        raise TypeError(f"{name} is a sparse torch tensor; only dense tensors are supported")
    try:
        return t.detach().numpy()
    except (TypeError, RuntimeError) as exc:
        raise TypeError(f"{name} cannot be viewed as a NumPy array: {exc}") from None


def as_array(x: Any, name: str) -> np.ndarray:
    """NumPy array or torch tensor -> NumPy array (a zero-copy view for tensors)."""
    if isinstance(x, np.ndarray):
        return x
    if is_tensor(x):
        return tensor_view(x, name)
    raise TypeError(f"{name} must be a NumPy array or a torch tensor, got {type(x).__name__}")


def layout_ok(a: np.ndarray) -> bool:
    """Contiguous (C or Fortran order) and aligned: the kernels can walk it as a flat block."""
    f = a.flags
    return (f.c_contiguous or f.f_contiguous) and f.aligned


def check_param(a: np.ndarray, name: str) -> None:
    """A parameter: float32/float64, writable, contiguous and aligned."""
    if a.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"{name} has dtype {a.dtype}; only float32 and float64 are supported")
    if not a.flags.writeable:
        raise ValueError(f"{name} is read-only; parameters are updated in place")
    if not layout_ok(a):
        raise ValueError(
            f"{name} is not contiguous in memory (shape {a.shape}, strides {a.strides}); "
            "pass a contiguous array (np.ascontiguousarray) or tensor (.contiguous())"
        )


def same_layout(a: np.ndarray, p: np.ndarray) -> bool:
    """``a`` enumerates its elements in the same memory order as ``p`` (both contiguous)."""
    fa, fp = a.flags, p.flags
    return fa.aligned and (
        (fa.c_contiguous and fp.c_contiguous) or (fa.f_contiguous and fp.f_contiguous)
    )


def grad_array(g: Any, p: np.ndarray, name: str, pname: str) -> np.ndarray:
    """A gradient for ``p``: same dtype (TypeError) and shape (ValueError); other memory
    layouts are copied into ``p``'s order."""
    a = as_array(g, name)
    if a.dtype != p.dtype:
        raise TypeError(f"{name} has dtype {a.dtype} but {pname} has dtype {p.dtype}")
    if a.shape != p.shape:
        raise ValueError(f"{name} has shape {a.shape} but {pname} has shape {p.shape}")
    if not same_layout(a, p):
        a = np.array(a, order="C" if p.flags.c_contiguous else "F")
    return a


def state_array(x: Any, p: np.ndarray, name: str, pname: str) -> np.ndarray:
    """A state array for ``p``: same dtype, shape and memory order, writable."""
    a = as_array(x, name)
    if a.dtype != p.dtype:
        raise TypeError(f"{name} has dtype {a.dtype} but {pname} has dtype {p.dtype}")
    if a.shape != p.shape:
        raise ValueError(f"{name} has shape {a.shape} but {pname} has shape {p.shape}")
    if not a.flags.writeable:
        raise ValueError(f"{name} is read-only; optimizer state is updated in place")
    if not same_layout(a, p):
        raise ValueError(f"{name} does not have the memory layout of {pname} (shape {p.shape})")
    return a


def check_no_overlap(arrays: Sequence[np.ndarray], names: Sequence[str]) -> None:
    """ValueError if two of the (contiguous) arrays share memory: a parallel update would race."""
    spans = [(address(a), a.nbytes, k) for k, a in enumerate(arrays) if a.nbytes]
    if len(spans) < 2:
        return
    tab = np.array(spans, dtype=np.int64)
    order = np.argsort(tab[:, 0], kind="stable")
    start, end = tab[order, 0], tab[order, 0] + tab[order, 1]
    bad = np.nonzero(start[1:] < end[:-1])[0]
    if bad.size:
        a, b = names[tab[order[bad[0]], 2]], names[tab[order[bad[0] + 1], 2]]
        raise ValueError(f"{a} and {b} share memory; every updated array must be distinct")


def _seq(x: Any, name: str) -> list:
    if x is None:
        raise TypeError(f"{name} must be a sequence of arrays, got None")
    if isinstance(x, np.ndarray) or is_tensor(x):
        return [x]
    if not isinstance(x, (list, tuple)):
        raise TypeError(
            f"{name} must be an array or a list/tuple of arrays, got {type(x).__name__}"
        )
    return list(x)


def _per_tensor(x: Any, n: int, name: str) -> list[float]:
    def num(v: Any, where: str) -> float:
        if isinstance(v, (str, bytes, complex)):
            raise TypeError(f"{where} must be a real number, got {type(v).__name__}")
        try:
            return float(v)
        except (TypeError, ValueError):
            raise TypeError(f"{where} must be a real number, got {type(v).__name__}") from None

    if isinstance(x, (list, tuple)) or ((isinstance(x, np.ndarray) or is_tensor(x)) and x.ndim > 0):
        if len(x) != n:
            raise ValueError(f"{name} has {len(x)} entries but there are {n} parameters")
        return [num(v, f"{name}[{k}]") for k, v in enumerate(x)]
    if isinstance(x, (str, bytes)) or x is None:
        raise TypeError(f"{name} must be a number or a sequence of numbers, got {type(x).__name__}")
    return [num(x, name)] * n


def first_nonfinite(plans: Sequence[tuple]) -> tuple[int, int] | None:
    """(plan index, tensor index in that plan's table) of the first gradient holding NaN or
    inf, or None; ``plans``: (proto, ptrs, chunks, total) launch tables (gradients in row 1)."""
    for pi, (proto, ptrs, chunks, total) in enumerate(plans):
        bad = nonfinite_chunks(proto, ptrs, 1, chunks, total)
        if bad.any():
            return pi, int(chunks[int(np.argmax(bad)), 0])
    return None


def _functional(
    kind: str,
    params: Any,
    grads: Any,
    states: list[tuple[str, Any, bool]],
    coefs_of,
    scalars: tuple,
    check_finite: bool,
    skip_nonfinite: bool = False,
    allocate: dict[int, np.ndarray] | None = None,
) -> bool:
    """Validate everything, then run one launch per dtype; True when a non-finite gradient
    skipped the whole step (``skip_nonfinite``), else False.

    ``states``: (name, sequence or None, used) per kernel state row; an unused row points at
    the parameter and is never read. ``coefs_of(k)`` gives tensor k's coefficient tuple.
    """
    plist = _seq(params, "params")
    n = len(plist)
    if n == 0:
        return False
    glist = _seq(grads, "grads")
    if len(glist) != n:
        raise ValueError(f"grads has {len(glist)} entries but params has {n}")
    pa = [as_array(p, f"params[{k}]") for k, p in enumerate(plist)]
    for k, a in enumerate(pa):
        check_param(a, f"params[{k}]")
    rows: list[list[np.ndarray | None]] = []
    written = list(pa)
    wnames = [f"params[{k}]" for k in range(n)]
    for sname, seq, used in states:
        if not used:
            rows.append([None] * n)
            continue
        slist = _seq(seq, sname)
        if len(slist) != n:
            raise ValueError(f"{sname} has {len(slist)} entries but params has {n}")
        row = []
        for k, s in enumerate(slist):
            if s is None and allocate is not None:
                row.append(None)  # created below (torch's functional sgd does the same)
                continue
            row.append(state_array(s, pa[k], f"{sname}[{k}]", f"params[{k}]"))
            written.append(row[-1])
            wnames.append(f"{sname}[{k}]")
        rows.append(row)
    garr = [
        None if g is None else grad_array(g, pa[k], f"grads[{k}]", f"params[{k}]")
        for k, g in enumerate(glist)
    ]
    check_no_overlap(written, wnames)
    coefs_all = [coefs_of(k) for k in range(n)]  # may raise (bad step) before any write
    by_dtype: dict[np.dtype, list[int]] = {}
    for k in range(n):
        if garr[k] is not None:
            by_dtype.setdefault(pa[k].dtype, []).append(k)
    # all checks done: allocate missing buffers, then launch
    if allocate is not None:
        for k in range(n):
            if rows[0][k] is None and garr[k] is not None:
                buf = np.zeros_like(pa[k])
                allocate[k] = buf
                rows[0][k] = buf
    plans = []
    for dt, idx in by_dtype.items():
        nr = 2 + len(rows)
        ptrs = np.empty((nr, len(idx)), dtype=np.int64)
        for jj, k in enumerate(idx):
            paddr = address(pa[k])
            ptrs[0, jj] = paddr
            ptrs[1, jj] = address(garr[k])
            for r, row in enumerate(rows):
                ptrs[2 + r, jj] = paddr if row[k] is None else address(row[k])
        sizes = np.array([pa[k].size for k in idx], dtype=np.int64)
        plans.append((np.empty(0, dt), ptrs, chunk_table(sizes), int(sizes.sum()), idx))
    if check_finite or skip_nonfinite:
        bad = first_nonfinite([plan[:4] for plan in plans])
        if bad is not None:
            if skip_nonfinite:
                return True
            k = plans[bad[0]][4][bad[1]]
            raise ValueError(f"grads[{k}] contains NaN or infinite values (check_finite=True)")
    for proto, ptrs, chunks, total, idx in plans:
        coefs = np.array([coefs_all[k] for k in idx], dtype=np.float64).reshape(len(idx), -1)
        launch(kind, proto, ptrs, chunks, coefs, scalars, total)
    touched = [plist[k] for idx in by_dtype.values() for k in idx if is_tensor(plist[k])]
    if touched:  # tell autograd the tensors changed in place (as torch's ops do)
        _torch().autograd.graph.increment_version(touched)
    return False


# ---------------------------------------------------------------------------------------------
# step-dependent coefficients, computed in float64 exactly like torch's Python code
# ---------------------------------------------------------------------------------------------


def adam_coefs(step: float, lr: float, beta1: float, beta2: float) -> tuple[float, float]:
    """(lr / (1 - beta1**t), sqrt(1 - beta2**t)) as torch's single-tensor Adam computes them."""
    bias_correction1 = 1 - beta1**step
    bias_correction2 = 1 - beta2**step
    return lr / bias_correction1, bias_correction2**0.5


def adamax_coefs(step: float, lr: float, beta1: float) -> tuple[float]:
    """(lr / (1 - beta1**t),)."""
    return (lr / (1 - beta1**step),)


def adagrad_coefs(step: float, lr: float, lr_decay: float) -> tuple[float]:
    """(lr / (1 + (t - 1) * lr_decay),)."""
    return (lr / (1 + (step - 1) * lr_decay),)


def _positive_steps(step: Any, n: int) -> list[float]:
    steps = _per_tensor(step, n, "step")
    for s in steps:
        if not s >= 1:
            raise ValueError(f"step must be >= 1 (the step count after its increment), got {s}")
    return steps


# ---------------------------------------------------------------------------------------------
# functional API
# ---------------------------------------------------------------------------------------------


def sgd(
    params,
    grads,
    momentum_buffers=None,
    *,
    lr: float = 1e-3,
    momentum: float = 0.0,
    dampening: float = 0.0,
    weight_decay: float = 0.0,
    nesterov: bool = False,
    maximize: bool = False,
    check_finite: bool = False,
    skip_nonfinite: bool = False,
) -> bool:
    """SGD step in place (torch.optim.sgd single-tensor rule).

    g ← ±g + wd·p; with momentum μ: buf ← μ·buf + (1−dampening)·g (a ``None`` entry of
    ``momentum_buffers`` is replaced by a new buffer holding g, like torch); g ← g + μ·buf if
    nesterov else buf; p ← p − lr·g. Grad entries may be None (that tensor is skipped).
    """
    lr, momentum, dampening, weight_decay = map(float, (lr, momentum, dampening, weight_decay))
    if nesterov and (momentum <= 0 or dampening != 0):
        raise ValueError("Nesterov momentum requires a momentum and zero dampening")
    has_buf = momentum != 0.0
    first: list[bool] = []
    created: dict[int, np.ndarray] = {}
    if has_buf:
        if momentum_buffers is None:
            raise TypeError(
                "momentum_buffers is required when momentum != 0 (a list; None entries "
                "receive new buffers)"
            )
        first = [b is None for b in _seq(momentum_buffers, "momentum_buffers")]
        if any(first) and not isinstance(momentum_buffers, list):
            raise TypeError("momentum_buffers must be a list to receive new buffers for None")
    skipped = _functional(
        "sgd",
        params,
        grads,
        [("momentum_buffers", momentum_buffers if has_buf else None, has_buf)],
        lambda k: (1.0 if (has_buf and first[k]) else 0.0,),
        (lr, weight_decay, momentum, dampening, bool(nesterov), bool(maximize), has_buf),
        check_finite,
        skip_nonfinite,
        allocate=created if has_buf else None,
    )
    for k, buf in created.items():
        momentum_buffers[k] = buf
    return skipped


def adam(
    params,
    grads,
    exp_avgs,
    exp_avg_sqs,
    max_exp_avg_sqs=None,
    *,
    step,
    lr: float = 1e-3,
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    amsgrad: bool = False,
    maximize: bool = False,
    decoupled_weight_decay: bool = False,
    check_finite: bool = False,
    skip_nonfinite: bool = False,
) -> bool:
    """Adam step in place (torch.optim.adam single-tensor rule); ``step`` is t (>= 1).

    L2: g ← ±g + wd·p (decoupled: p ← p·(1 − lr·wd)); m ← lerp(m, g, 1−β1);
    v ← β2·v + (1−β2)·g²; amsgrad: vmax ← max(vmax, v), v ← vmax;
    p ← p − (lr/(1−β1ᵗ))·m / (√v/√(1−β2ᵗ) + eps).
    """
    lr, beta1, beta2, eps, wd = map(float, (lr, beta1, beta2, eps, weight_decay))
    n = len(_seq(params, "params"))
    steps = _positive_steps(step, n)
    decay = 1 - lr * wd if (decoupled_weight_decay and wd != 0) else 1.0
    l2 = 0.0 if decoupled_weight_decay else wd
    return _functional(
        "adam",
        params,
        grads,
        [
            ("exp_avgs", exp_avgs, True),
            ("exp_avg_sqs", exp_avg_sqs, True),
            ("max_exp_avg_sqs", max_exp_avg_sqs, bool(amsgrad)),
        ],
        lambda k: adam_coefs(steps[k], lr, beta1, beta2),
        (beta1, beta2, eps, l2, decay, bool(amsgrad), bool(maximize)),
        check_finite,
        skip_nonfinite,
    )


def adamw(
    params,
    grads,
    exp_avgs,
    exp_avg_sqs,
    max_exp_avg_sqs=None,
    *,
    step,
    lr: float = 1e-3,
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 1e-2,
    amsgrad: bool = False,
    maximize: bool = False,
    check_finite: bool = False,
    skip_nonfinite: bool = False,
) -> bool:
    """AdamW step in place: :func:`adam` with decoupled weight decay p ← p·(1 − lr·wd)."""
    return adam(
        params,
        grads,
        exp_avgs,
        exp_avg_sqs,
        max_exp_avg_sqs,
        step=step,
        lr=lr,
        beta1=beta1,
        beta2=beta2,
        eps=eps,
        weight_decay=weight_decay,
        amsgrad=amsgrad,
        maximize=maximize,
        decoupled_weight_decay=True,
        check_finite=check_finite,
        skip_nonfinite=skip_nonfinite,
    )


def adamax(
    params,
    grads,
    exp_avgs,
    exp_infs,
    *,
    step,
    lr: float = 2e-3,
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    maximize: bool = False,
    check_finite: bool = False,
    skip_nonfinite: bool = False,
) -> bool:
    """Adamax step in place (torch.optim.adamax): m ← lerp(m, g, 1−β1);
    u ← max(β2·u, |g| + eps); p ← p − (lr/(1−β1ᵗ))·m/u."""
    lr, beta1, beta2, eps, wd = map(float, (lr, beta1, beta2, eps, weight_decay))
    n = len(_seq(params, "params"))
    steps = _positive_steps(step, n)
    return _functional(
        "adamax",
        params,
        grads,
        [("exp_avgs", exp_avgs, True), ("exp_infs", exp_infs, True)],
        lambda k: adamax_coefs(steps[k], lr, beta1),
        (beta1, beta2, eps, wd, bool(maximize)),
        check_finite,
        skip_nonfinite,
    )


def rmsprop(
    params,
    grads,
    square_avgs,
    grad_avgs=None,
    momentum_buffers=None,
    *,
    lr: float = 1e-2,
    alpha: float = 0.99,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    momentum: float = 0.0,
    centered: bool = False,
    maximize: bool = False,
    check_finite: bool = False,
    skip_nonfinite: bool = False,
) -> bool:
    """RMSprop step in place (torch.optim.rmsprop): v ← α·v + (1−α)·g²;
    centered: ḡ ← lerp(ḡ, g, 1−α), avg = √(v − ḡ²) + eps, else avg = √v + eps (eps outside);
    momentum: buf ← μ·buf + g/avg, p ← p − lr·buf; else p ← p − lr·g/avg."""
    lr, alpha, eps, wd, momentum = map(float, (lr, alpha, eps, weight_decay, momentum))
    return _functional(
        "rmsprop",
        params,
        grads,
        [
            ("square_avgs", square_avgs, True),
            ("momentum_buffers", momentum_buffers, momentum > 0),
            ("grad_avgs", grad_avgs, bool(centered)),
        ],
        lambda k: (0.0,),
        (lr, alpha, eps, wd, momentum, bool(centered), bool(maximize)),
        check_finite,
        skip_nonfinite,
    )


def rprop(
    params,
    grads,
    prevs,
    step_sizes,
    *,
    step_size_min: float = 1e-6,
    step_size_max: float = 50.0,
    etaminus: float = 0.5,
    etaplus: float = 1.2,
    maximize: bool = False,
    check_finite: bool = False,
    skip_nonfinite: bool = False,
) -> bool:
    """Rprop step in place (torch.optim.rprop): s = sign(g·prev) selects η+ / η− / 1;
    step_size ← clamp(step_size·factor, min, max); where the sign flipped g ← 0;
    p ← p − sign(g)·step_size; prev ← g. State starts as prev = 0, step_size = lr."""
    etaminus, etaplus, lo, hi = map(float, (etaminus, etaplus, step_size_min, step_size_max))
    return _functional(
        "rprop",
        params,
        grads,
        [("prevs", prevs, True), ("step_sizes", step_sizes, True)],
        lambda k: (0.0,),
        (etaminus, etaplus, lo, hi, bool(maximize)),
        check_finite,
        skip_nonfinite,
    )


def adagrad(
    params,
    grads,
    state_sums,
    *,
    step,
    lr: float = 1e-2,
    lr_decay: float = 0.0,
    weight_decay: float = 0.0,
    eps: float = 1e-10,
    maximize: bool = False,
    check_finite: bool = False,
    skip_nonfinite: bool = False,
) -> bool:
    """Adagrad step in place (torch.optim.adagrad, dense): clr = lr/(1 + (t−1)·lr_decay);
    sum ← sum + g²; p ← p − clr·g/(√sum + eps)."""
    lr, lr_decay, wd, eps = map(float, (lr, lr_decay, weight_decay, eps))
    n = len(_seq(params, "params"))
    steps = _positive_steps(step, n)
    return _functional(
        "adagrad",
        params,
        grads,
        [("state_sums", state_sums, True)],
        lambda k: adagrad_coefs(steps[k], lr, lr_decay),
        (eps, wd, bool(maximize)),
        check_finite,
        skip_nonfinite,
    )


def adadelta(
    params,
    grads,
    square_avgs,
    acc_deltas,
    *,
    lr: float = 1.0,
    rho: float = 0.9,
    eps: float = 1e-6,
    weight_decay: float = 0.0,
    maximize: bool = False,
    check_finite: bool = False,
    skip_nonfinite: bool = False,
) -> bool:
    """Adadelta step in place (torch.optim.adadelta): v ← ρv + (1−ρ)g²;
    δ = √(u + eps)/√(v + eps)·g; u ← ρu + (1−ρ)δ²; p ← p − lr·δ."""
    lr, rho, eps, wd = map(float, (lr, rho, eps, weight_decay))
    return _functional(
        "adadelta",
        params,
        grads,
        [("square_avgs", square_avgs, True), ("acc_deltas", acc_deltas, True)],
        lambda k: (0.0,),
        (lr, rho, eps, wd, bool(maximize)),
        check_finite,
        skip_nonfinite,
    )
