"""What the optimizers compute: fused update loops, their tables, and the OPTIMIZERS specs.

Every update is one pass over memory. The tensors of one step (an optimizer param group and
dtype, or one functional call) are described by two small int64 tables:

* a **pointer table** ``ptrs[row, j]``: the data address of array ``row`` of tensor ``j``
  (row 0 the parameter, row 1 the gradient, rows 2.. the state arrays in kernel order);
* a **chunk table** ``chunks[c] = (j, start, length)`` (:func:`chunk_table`) that cuts the
  concatenation of all tensors into pieces (a piece never spans two tensors).

A loop template is a ``prange`` over chunks; each chunk turns addresses into arrays
(``inttoptr`` + ``numba.carray``, :func:`_view`) and runs one vectorised loop that reads and
writes every array once, so a model of hundreds of small tensors is one kernel launch.
Scalar coefficients that depend on the step (bias corrections, decayed lr) are computed once
per step in float64 Python, exactly as torch computes them (:func:`adam_coefs` ...), and
passed in per tensor (``coefs[j, :]``); the arithmetic runs in the parameter's dtype, with
the constants rounded to it, in the same operation order as torch's single-tensor path.

:data:`OPTIMIZERS` declares each optimizer once: its state rows (the classes' state keys and
the functional API's argument names, in kernel order), when a row is used and its initial
value, the kernel's scalar arguments and the per-step coefficients, all from one flat dict of
options named like the functional API's keywords. The classes, the functional API, both
executors, the tests and the benchmarks read it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numba
import numpy as np
from numba import prange, types
from numba.extending import intrinsic, overload
from numba.np.numpy_support import as_dtype

from fastact._core.jit import jit

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


def sgd_loop(
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


def adam_loop(
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


def adamax_loop(proto, ptrs, chunks, coefs, beta1, beta2, eps, weight_decay, maximize):
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


def rmsprop_loop(
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


def rprop_loop(
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


def adagrad_loop(proto, ptrs, chunks, coefs, eps, weight_decay, maximize):
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


def adadelta_loop(proto, ptrs, chunks, coefs, lr, rho, eps, weight_decay, maximize):
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


def nonfinite_loop(proto, ptrs, row, chunks, out):
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


#: kernel name -> loop template (compiled serial and parallel by the host executor, for the
#: device by the CUDA executor)
TEMPLATES = {
    "sgd": sgd_loop,
    "adam": adam_loop,
    "adamax": adamax_loop,
    "rmsprop": rmsprop_loop,
    "rprop": rprop_loop,
    "adagrad": adagrad_loop,
    "adadelta": adadelta_loop,
    "nonfinite": nonfinite_loop,
}


#: Number of pointer-table rows (param, grad, state...) each kernel reads.
ROWS = {"sgd": 3, "adam": 5, "adamax": 4, "rmsprop": 5, "rprop": 4, "adagrad": 3, "adadelta": 4}

# ---------------------------------------------------------------------------------------------
# tables and step-dependent coefficients (float64, exactly like torch's Python code)
# ---------------------------------------------------------------------------------------------


def chunk_table(sizes: Sequence[int] | np.ndarray, chunk: int) -> np.ndarray:
    """(n_chunks, 3) int64 table of (tensor, start, length) covering every tensor in order."""
    chunk = int(chunk)
    sizes = np.asarray(sizes, dtype=np.int64).reshape(-1)
    counts = (sizes + (chunk - 1)) // chunk
    total = int(counts.sum())
    tensor = np.repeat(np.arange(sizes.size, dtype=np.int64), counts)
    first = np.cumsum(counts) - counts
    start = (np.arange(total, dtype=np.int64) - np.repeat(first, counts)) * chunk
    length = np.minimum(chunk, sizes[tensor] - start)
    return np.ascontiguousarray(np.stack([tensor, start, length], axis=1))


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


_F32_LIMIT = float(2**24)


def next_step(s: float) -> float:
    """s + 1 as torch's float32 step tensor computes it (exact below 2**24)."""
    if s < _F32_LIMIT:
        return s + 1.0
    return float(np.float32(s) + np.float32(1.0))


# ---------------------------------------------------------------------------------------------
# the spec table
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Optim:
    """An optimizer's spec. ``state``: per kernel state row, (the class's state key, the
    functional API's argument); ``rows(o)``: per row its initial value (a number) or None
    when the options ``o`` leave it unused; ``scalars(o)``: the kernel's group arguments;
    ``coefs(o, step)``: the per-tensor coefficients of a step (None: the first-step flag of
    SGD's momentum buffer, or nothing); ``has_step``: the state counts steps."""

    name: str
    functional: str
    kernel: str
    state: tuple[tuple[str, str], ...]
    rows: Callable[[dict], tuple]
    scalars: Callable[[dict], tuple]
    coefs: Callable[[dict, float], tuple] | None
    has_step: bool = True


def _adam_scalars(o: dict) -> tuple:
    lr, wd = o["lr"], o["weight_decay"]
    decoupled = bool(o.get("decoupled_weight_decay", False))
    decay = 1 - lr * wd if (decoupled and wd != 0) else 1.0
    return (o["beta1"], o["beta2"], o["eps"], 0.0 if decoupled else wd, decay,
            bool(o["amsgrad"]), bool(o["maximize"]))  # fmt: skip


_ADAM_STATE = (("exp_avg", "exp_avgs"), ("exp_avg_sq", "exp_avg_sqs"),
               ("max_exp_avg_sq", "max_exp_avg_sqs"))  # fmt: skip


def _adam_rows(o: dict) -> tuple:
    return (0.0, 0.0, 0.0 if o["amsgrad"] else None)


def _adam_coefs(o: dict, step: float) -> tuple:
    return adam_coefs(step, o["lr"], o["beta1"], o["beta2"])


OPTIMIZERS: dict[str, Optim] = {
    spec.name: spec
    for spec in (
        Optim(
            "SGD",
            "sgd",
            "sgd",
            (("momentum_buffer", "momentum_buffers"),),
            lambda o: (0.0 if o["momentum"] != 0 else None,),
            lambda o: (
                o["lr"],
                o["weight_decay"],
                o["momentum"],
                o["dampening"],
                bool(o["nesterov"]),
                bool(o["maximize"]),
                o["momentum"] != 0.0,
            ),
            None,
            has_step=False,
        ),
        Optim("Adam", "adam", "adam", _ADAM_STATE, _adam_rows, _adam_scalars, _adam_coefs),
        Optim("AdamW", "adamw", "adam", _ADAM_STATE, _adam_rows, _adam_scalars, _adam_coefs),
        Optim(
            "Adamax",
            "adamax",
            "adamax",
            (("exp_avg", "exp_avgs"), ("exp_inf", "exp_infs")),
            lambda o: (0.0, 0.0),
            lambda o: (o["beta1"], o["beta2"], o["eps"], o["weight_decay"], bool(o["maximize"])),
            lambda o, step: adamax_coefs(step, o["lr"], o["beta1"]),
        ),
        Optim(
            "RMSprop",
            "rmsprop",
            "rmsprop",
            (
                ("square_avg", "square_avgs"),
                ("momentum_buffer", "momentum_buffers"),
                ("grad_avg", "grad_avgs"),
            ),
            lambda o: (0.0, 0.0 if o["momentum"] > 0 else None, 0.0 if o["centered"] else None),
            lambda o: (
                o["lr"],
                o["alpha"],
                o["eps"],
                o["weight_decay"],
                o["momentum"],
                bool(o["centered"]),
                bool(o["maximize"]),
            ),
            None,
        ),
        Optim(
            "Rprop",
            "rprop",
            "rprop",
            (("prev", "prevs"), ("step_size", "step_sizes")),
            lambda o: (0.0, o["lr"]),
            lambda o: (
                o["etaminus"],
                o["etaplus"],
                o["step_size_min"],
                o["step_size_max"],
                bool(o["maximize"]),
            ),
            None,
        ),
        Optim(
            "Adagrad",
            "adagrad",
            "adagrad",
            (("sum", "state_sums"),),
            lambda o: (o["initial_accumulator_value"],),
            lambda o: (o["eps"], o["weight_decay"], bool(o["maximize"])),
            lambda o, step: adagrad_coefs(step, o["lr"], o["lr_decay"]),
        ),
        Optim(
            "Adadelta",
            "adadelta",
            "adadelta",
            (("square_avg", "square_avgs"), ("acc_delta", "acc_deltas")),
            lambda o: (0.0, 0.0),
            lambda o: (o["lr"], o["rho"], o["eps"], o["weight_decay"], bool(o["maximize"])),
            None,
        ),
    )
}
