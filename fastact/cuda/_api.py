"""The public device API: generated from the same registry as the CPU functions."""

from __future__ import annotations

from typing import Any

from fastact._kernels import make_public
from fastact.activations import _GELU, ACTIVATIONS
from fastact.cuda import require

require("fastact.cuda was called")

from fastact.cuda import _elementwise as _ew  # noqa: E402

__all__: list[str] = []


class _DeviceOp:
    """An :class:`~fastact._kernels.Elementwise` whose calls run the CUDA kernels."""

    def __init__(self, op: Any) -> None:
        self._op = op
        self.doc = "On CUDA device arrays. " + op.doc.strip()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._op, name)

    def forward(self, x: Any, values: tuple, out: Any = None, inplace: bool = False):
        return _ew.forward(self._op, x, values, out, inplace)

    def backward(self, grad_output: Any, x: Any, output: Any, values: tuple, out: Any = None):
        return _ew.backward(self._op, grad_output, x, output, values, out)


for _name, _op in ACTIVATIONS.items():
    if _name in ("gelu", "gelu_tanh"):
        continue
    __all__.extend(make_public(_DeviceOp(_op), globals()))
del _name, _op


def _gelu_op(approximate: Any):
    op = _GELU.get(approximate) if isinstance(approximate, str) else None
    if op is None:
        raise ValueError(f"approximate must be 'none' or 'tanh', got {approximate!r}")
    return op


def gelu(input, approximate: str = "none", *, out=None):
    """On CUDA device arrays: ``x * Phi(x)`` (``approximate='tanh'``: the tanh form), the CPU
    gelu's scalar definitions. torch: ``F.gelu(input, approximate='none')``."""
    return _ew.forward(_gelu_op(approximate), input, (), out)


def gelu_backward(grad_output, input, approximate: str = "none", *, out=None):
    """On CUDA device arrays: gradient of gelu w.r.t. its input."""
    return _ew.backward(_gelu_op(approximate), grad_output, input, None, (), out)


__all__ += ["gelu", "gelu_backward"]


# ============================================================================= along an axis
import warnings as _warnings  # noqa: E402

import numpy as _np  # noqa: E402
from numba import cuda as _cuda  # noqa: E402

from fastact._core.arrays import normalize_dim as _normalize_dim  # noqa: E402
from fastact.activations import _rrelu_bounds, _rrelu_key  # noqa: E402
from fastact.cuda import _axis as _K  # noqa: E402
from fastact.cuda import _runtime as _rt  # noqa: E402
from fastact.cuda._reduce import column_sums as _column_sums  # noqa: E402


def _view3(d, dim: int):
    """A C-contiguous device array as (outer, d.shape[dim], inner)."""
    shape = tuple(d.shape) or (1,)
    outer = _rt.prod(shape[:dim])
    inner = _rt.prod(shape[dim + 1 :])
    return d.reshape(outer, shape[dim], inner)


def _pair(a: Any, b: Any, name_a: str, name_b: str):
    da = _rt.float_view(a, name_a)
    db = _rt.float_view(b, name_b)
    if tuple(da.shape) != tuple(db.shape):
        raise ValueError(
            f"{name_a} has shape {tuple(da.shape)} but {name_b} has shape {tuple(db.shape)}"
        )
    if da.dtype != db.dtype:
        raise TypeError(
            f"{name_a} has dtype {da.dtype} but {name_b} has dtype {db.dtype}; "
            "device arrays must share one dtype"
        )
    return da, db


def _grid(n: int) -> int:
    return _rt.blocks(n)


# ----------------------------------------------------------------------------- PReLU
def _prelu_args(input, weight):
    x = _rt.float_view(input, "input")
    w = _rt.float_view(weight, "weight")
    if x.ndim == 0:
        raise ValueError("prelu: input must have at least 1 dimension, got a 0-d array")
    if w.ndim > 1:
        raise ValueError(f"prelu: weight must be 1-D (num_parameters,), got shape {tuple(w.shape)}")
    channels = x.shape[1] if x.ndim >= 2 else 1
    if w.size not in (1, channels):
        raise ValueError(
            f"Mismatch of parameter numbers and input channel size: weight has "
            f"{w.size} elements, input has {channels} channels (dim 1)"
        )
    if w.dtype != x.dtype:
        raise TypeError(
            f"weight has dtype {w.dtype} but input has dtype {x.dtype}; device "
            "arrays must share one dtype"
        )
    if w.size == 1:  # one slope for everything: a single "channel" spanning the array
        outer, c_n, inner = 1, 1, max(x.size, 1)
    else:
        outer, c_n, inner = x.shape[0], channels, _rt.prod(x.shape[2:])
    return x, w, (outer, c_n, inner)


def prelu(input, weight, *, out=None):
    """On CUDA device arrays: ``max(0, x) + weight * min(0, x)``, one slope per channel (dim
    1) or one for all. torch: ``F.prelu(input, weight)``."""
    x, w, (_, _, inner) = _prelu_args(input, weight)
    stream = _rt.stream_of(input, weight, out)
    res, o, target = _rt.result(out, input, x.shape, x.dtype, (x, w), stream)
    if x.size:
        xc = _rt.contiguous(x, stream)
        wc = _rt.flat(_rt.contiguous(w, stream))
        _K.get("prelu_forward")[_grid(x.size), _rt.THREADS, stream](
            _rt.flat(xc), wc, _rt.flat(o), inner
        )
    return _rt.finish(res, o, target, stream)


def prelu_backward(grad_output, input, weight, *, out=None):
    """On CUDA device arrays: ``(grad_input, grad_weight)`` like the CPU prelu_backward; the
    weight gradient is a float64 block reduction per channel plus a second pass over the
    per-block partials (no atomics), cast to the weight's dtype."""
    x, w, (outer, c_n, inner) = _prelu_args(input, weight)
    g = _rt.float_view(grad_output, "grad_output")
    if tuple(g.shape) != tuple(x.shape):
        raise ValueError(
            f"grad_output has shape {tuple(g.shape)} but input has shape {tuple(x.shape)}"
        )
    if g.dtype != x.dtype:
        raise TypeError(f"grad_output has dtype {g.dtype} but input has dtype {x.dtype}")
    stream = _rt.stream_of(grad_output, input, weight, out)
    res, o, target = _rt.result(out, input, x.shape, x.dtype, (x, g, w), stream)
    gw_res, gw = _rt.empty(weight, tuple(w.shape), w.dtype, stream)
    xc = _rt.flat(_rt.contiguous(x, stream))
    gc = _rt.flat(_rt.contiguous(g, stream))
    wc = _rt.flat(_rt.contiguous(w, stream))
    cap = _rt.max_blocks()
    if inner == 1 and c_n > 1:
        by = min(_rt.ceil_div(c_n, _rt.THREADS), 65535)
        bx = max(1, min(outer, cap // by))
        partial = _cuda.device_array((bx, c_n), dtype=_np.float64, stream=stream)
        if x.size:
            _K.get("prelu_backward_rows")[(bx, by), _rt.THREADS, stream](
                gc, xc, wc, _rt.flat(o), partial, outer
            )
    else:
        by = min(c_n, 65535)
        bx = max(1, min(_rt.ceil_div(outer * inner, _rt.THREADS), cap // by))
        partial = _cuda.device_array((bx, c_n), dtype=_np.float64, stream=stream)
        if x.size:
            _K.get("prelu_backward_channels")[(bx, by), _rt.THREADS, stream](
                gc, xc, wc, _rt.flat(o), partial, outer, inner
            )
    if not x.size:  # no elements: the column sums of an empty table are zeros
        partial = _cuda.device_array((0, c_n), dtype=_np.float64, stream=stream)
    _column_sums(partial, _rt.flat(gw), stream)
    return _rt.finish(res, o, target, stream), gw_res


# ----------------------------------------------------------------------------- GLU
def _glu_view(x, dim):
    if x.ndim == 0:
        raise ValueError("glu does not support 0-d input")
    d = _normalize_dim(dim, x.ndim)
    if x.shape[d] % 2:
        raise ValueError(f"Halving dimension must be even, but dimension {d} is size {x.shape[d]}")
    shape = tuple(x.shape)
    outer = _rt.prod(shape[:d])
    out_shape = shape[:d] + (shape[d] // 2,) + shape[d + 1 :]
    return outer, out_shape


def glu(input, dim: int = -1, *, out=None):
    """On CUDA device arrays: ``a * sigmoid(b)`` of the two halves of ``input`` along
    ``dim``. torch: ``F.glu(input, dim=-1)``."""
    x = _rt.float_view(input, "input")
    outer, out_shape = _glu_view(x, dim)
    stream = _rt.stream_of(input, out)
    res, o, target = _rt.result(out, input, out_shape, x.dtype, (x,), stream)
    if x.size:
        x3 = _rt.contiguous(x, stream).reshape(outer, 2, x.size // (2 * outer))
        o2 = o.reshape(outer, x3.shape[2])
        _K.get("glu_forward")[_grid(o.size), _rt.THREADS, stream](x3, o2)
    return _rt.finish(res, o, target, stream)


def glu_backward(grad_output, input, dim: int = -1, *, out=None):
    """On CUDA device arrays: gradient of glu, ``[g sigmoid(b), g a sigmoid(b) sigmoid(-b)]``."""
    x = _rt.float_view(input, "input")
    outer, out_shape = _glu_view(x, dim)
    g = _rt.float_view(grad_output, "grad_output")
    if tuple(g.shape) != out_shape:
        raise ValueError(f"grad_output has shape {tuple(g.shape)}, expected {out_shape}")
    if g.dtype != x.dtype:
        raise TypeError(f"grad_output has dtype {g.dtype} but input has dtype {x.dtype}")
    stream = _rt.stream_of(grad_output, input, out)
    res, o, target = _rt.result(out, input, x.shape, x.dtype, (x, g), stream)
    if x.size:
        m = x.size // (2 * outer)
        x3 = _rt.contiguous(x, stream).reshape(outer, 2, m)
        g2 = _rt.contiguous(g, stream).reshape(outer, m)
        _K.get("glu_backward")[_grid(g.size), _rt.THREADS, stream](g2, x3, o.reshape(outer, 2, m))
    return _rt.finish(res, o, target, stream)


# ----------------------------------------------------------------------------- Maxout
def _maxout_view(x, pieces, dim):
    if isinstance(pieces, (bool, _np.bool_)) or not isinstance(pieces, (int, _np.integer)):
        raise TypeError(f"pieces must be an int, got {type(pieces).__name__}")
    if pieces < 1:
        raise ValueError(f"pieces must be >= 1, got {pieces}")
    if x.ndim == 0:
        raise ValueError("maxout does not support 0-d input")
    d = _normalize_dim(dim, x.ndim)
    shape = tuple(x.shape)
    c = shape[d]
    if c % pieces:
        raise ValueError(f"input size {c} along dim {d} is not divisible by pieces={pieces}")
    dims = (_rt.prod(shape[:d]), c // pieces, int(pieces), _rt.prod(shape[d + 1 :]))
    return dims, shape[:d] + (c // pieces,) + shape[d + 1 :]


def maxout(input, pieces: int, dim: int = 1, *, out=None):
    """On CUDA device arrays: the maximum over each group of ``pieces`` consecutive entries
    along ``dim`` (a NaN wins)."""
    x = _rt.float_view(input, "input")
    dims, out_shape = _maxout_view(x, pieces, dim)
    stream = _rt.stream_of(input, out)
    res, o, target = _rt.result(out, input, out_shape, x.dtype, (x,), stream)
    if x.size:
        x4 = _rt.contiguous(x, stream).reshape(*dims)
        _K.get("maxout_forward")[_grid(o.size), _rt.THREADS, stream](
            x4, o.reshape(dims[0], dims[1], dims[3])
        )
    return _rt.finish(res, o, target, stream)


def maxout_backward(grad_output, input, pieces: int, dim: int = 1, *, out=None):
    """On CUDA device arrays: ``grad_output`` routed to the (first) argmax of each group."""
    x = _rt.float_view(input, "input")
    dims, out_shape = _maxout_view(x, pieces, dim)
    g = _rt.float_view(grad_output, "grad_output")
    if tuple(g.shape) != out_shape:
        raise ValueError(f"grad_output has shape {tuple(g.shape)}, expected {out_shape}")
    if g.dtype != x.dtype:
        raise TypeError(f"grad_output has dtype {g.dtype} but input has dtype {x.dtype}")
    stream = _rt.stream_of(grad_output, input, out)
    res, o, target = _rt.result(out, input, x.shape, x.dtype, (x, g), stream)
    if x.size:
        x4 = _rt.contiguous(x, stream).reshape(*dims)
        g3 = _rt.contiguous(g, stream).reshape(dims[0], dims[1], dims[3])
        _K.get("maxout_backward")[_grid(g.size), _rt.THREADS, stream](g3, x4, o.reshape(*dims))
    return _rt.finish(res, o, target, stream)


# ----------------------------------------------------------------------------- RReLU
def rrelu(
    input,
    lower: float = 1.0 / 8,
    upper: float = 1.0 / 3,
    training: bool = False,
    inplace: bool = False,
    *,
    generator=None,
    return_noise: bool = False,
    out=None,
):
    """On CUDA device arrays: randomized leaky ReLU with the CPU's counter-based slopes (the
    same integer seed gives the same slopes as ``fastact.rrelu`` on the host)."""
    if not training:
        x = _rt.float_view(input, "input")
        lo, hi = _rrelu_bounds(lower, upper, x.dtype)
        y = _ew.forward(
            ACTIVATIONS["leaky_relu"], input, ((float(lo) + float(hi)) / 2,), out, inplace
        )
        return (y, None) if return_noise else y
    x = _rt.float_view(input, "input")
    lo, hi = _rrelu_bounds(lower, upper, x.dtype)
    key = _rrelu_key(generator)
    stream = _rt.stream_of(input, out)
    if inplace:
        if out is not None:
            raise ValueError("out= cannot be combined with inplace=True")
        if _rt.readonly(input):
            raise ValueError("input is read-only and cannot be modified in place")
        res, o, target = (
            (input, x, None)
            if x.is_c_contiguous()
            else (input, _cuda.device_array(tuple(x.shape), x.dtype, stream=stream), x)
        )
    else:
        res, o, target = _rt.result(out, input, x.shape, x.dtype, (x,), stream)
    if return_noise:
        noise_res, noise = _rt.empty(input, tuple(x.shape), x.dtype, stream)
    else:
        noise_res, noise = None, _cuda.device_array(1, x.dtype, stream=stream)
    if x.size:
        xc = _rt.contiguous(x, stream)
        _K.get("rrelu_train", x.dtype)[_grid(x.size), _rt.THREADS, stream](
            _rt.flat(xc),
            _rt.flat(o),
            _rt.flat(noise),
            lo,
            hi - lo,
            _np.uint64(key),
            bool(return_noise),
        )
    res = _rt.finish(res, o, target, stream)
    return (res, noise_res) if return_noise else res


def rrelu_(
    input, lower: float = 1.0 / 8, upper: float = 1.0 / 3, training: bool = False, *, generator=None
):
    """On CUDA device arrays: in-place rrelu (returns ``input``)."""
    return rrelu(input, lower, upper, training, True, generator=generator)


def rrelu_backward(
    grad_output,
    input=None,
    lower: float = 1.0 / 8,
    upper: float = 1.0 / 3,
    training: bool = False,
    *,
    generator=None,
    noise=None,
    output=None,
    out=None,
):
    """On CUDA device arrays: gradient of rrelu (slopes from ``noise=`` or the forward's
    integer seed ``generator=``, as on the CPU)."""
    if not training:
        return _ew.backward(
            ACTIVATIONS["leaky_relu"],
            grad_output,
            input,
            output,
            ((float(lower) + float(upper)) / 2,),
            out,
        )
    if (input is None) == (output is None):
        raise TypeError("rrelu_backward needs exactly one of input= and output=")
    name = "input" if output is None else "output"
    src = input if output is None else output
    g, v = _pair(grad_output, src, "grad_output", name)
    stream = _rt.stream_of(grad_output, src, out)
    if noise is not None:
        nz = _rt.float_view(noise, "noise")
        if tuple(nz.shape) != tuple(v.shape):
            raise ValueError(f"noise has shape {tuple(nz.shape)}, expected {tuple(v.shape)}")
        return _mul(g, nz, out, src, stream)
    if not isinstance(generator, (int, _np.integer)) or isinstance(generator, bool):
        raise TypeError(
            "rrelu_backward in training mode needs noise= or the forward's integer "
            "seed as generator="
        )
    lo, hi = _rrelu_bounds(lower, upper, v.dtype)
    res, o, target = _rt.result(out, src, v.shape, v.dtype, (g, v), stream)
    if v.size:
        gc = _rt.flat(_rt.contiguous(g, stream))
        vc = _rt.flat(_rt.contiguous(v, stream))
        _K.get("rrelu_train_grad", v.dtype)[_grid(v.size), _rt.THREADS, stream](
            gc, vc, _rt.flat(o), lo, hi - lo, _np.uint64(_rrelu_key(generator))
        )
    return _rt.finish(res, o, target, stream)


def _mul(a, b, out, like, stream):
    if a.dtype != b.dtype:
        raise TypeError(f"noise has dtype {b.dtype} but grad_output has dtype {a.dtype}")
    res, o, target = _rt.result(out, like, a.shape, a.dtype, (a, b), stream)
    if a.size:
        _K.get("mul")[_grid(a.size), _rt.THREADS, stream](
            _rt.flat(_rt.contiguous(a, stream)), _rt.flat(_rt.contiguous(b, stream)), _rt.flat(o)
        )
    return _rt.finish(res, o, target, stream)


# ----------------------------------------------------------------------------- softmax
def _softmax_dim(dim, ndim, fname):
    if dim is None:
        _warnings.warn(
            f"Implicit dimension choice for {fname} has been deprecated. Change "
            "the call to include dim=X as an argument.",
            UserWarning,
            stacklevel=4,
        )
        return 0 if ndim in (0, 1, 3) else 1
    return _normalize_dim(dim, ndim)


def _launch_softmax(kind: str, arrays: tuple, x3, log: bool, sign, stream) -> None:
    outer, c_n, inner = x3.shape
    if inner == 1:
        k = _K.get(f"softmax_rows{kind}")
        k[max(1, min(outer, _rt.max_blocks())), _rt.THREADS, stream](
            *(a.reshape(outer, c_n) for a in arrays), log, sign
        )
    else:
        k = _K.get(f"softmax_columns{kind}")
        k[_grid(outer * inner), _rt.THREADS, stream](*arrays, log, sign)


def _softmax_forward(input, dim, dtype, out, log, sign, fname):
    x = _rt.float_view(input, "input")
    stream = _rt.stream_of(input, out)
    if dtype is not None:
        dt = _np.dtype(dtype)
        if dt not in _rt.FLOATS:
            raise TypeError(f"dtype must be float32 or float64, got {dt}")
        if dt != x.dtype:
            xc = _rt.contiguous(x, stream)
            y = _cuda.device_array(tuple(x.shape), dt, stream=stream)
            if x.size:
                _K.get("cast")[_grid(x.size), _rt.THREADS, stream](_rt.flat(xc), _rt.flat(y))
            x = y
    d = _softmax_dim(dim, x.ndim, fname)
    res, o, target = _rt.result(out, input, x.shape, x.dtype, (x,), stream)
    if x.size:
        x3 = _view3(_rt.contiguous(x, stream), d)
        _launch_softmax("", (x3, o.reshape(*x3.shape)), x3, log, x.dtype.type(sign), stream)
    return _rt.finish(res, o, target, stream)


def _softmax_backward(grad_output, input, output, dim, out, log, sign, fname):
    if (input is None) == (output is None):
        raise TypeError(f"{fname}_backward needs exactly one of input= and output=")
    name = "input" if output is None else "output"
    src = input if output is None else output
    g, v = _pair(grad_output, src, "grad_output", name)
    d = _softmax_dim(dim, v.ndim, fname)
    stream = _rt.stream_of(grad_output, src, out)
    y = (
        v
        if output is not None
        else _rt.view(_softmax_forward(v, d, None, None, log, sign, fname), "output")
    )
    res, o, target = _rt.result(out, src, v.shape, v.dtype, (g, v), stream)
    if v.size:
        y3 = _view3(_rt.contiguous(y, stream), d)
        g3 = _view3(_rt.contiguous(g, stream), d)
        _launch_softmax(
            "_backward", (g3, y3, o.reshape(*y3.shape)), y3, log, v.dtype.type(sign), stream
        )
    return _rt.finish(res, o, target, stream)


def softmax(input, dim: int | None = None, dtype=None, *, out=None):
    """On CUDA device arrays: ``exp(x) / sum(exp(x))`` along ``dim`` (max-shifted, float64
    sums). torch: ``F.softmax(input, dim=None, dtype=None)``."""
    return _softmax_forward(input, dim, dtype, out, False, 1, "softmax")


def log_softmax(input, dim: int | None = None, dtype=None, *, out=None):
    """On CUDA device arrays: ``x - max - log(sum(exp(x - max)))`` along ``dim``."""
    return _softmax_forward(input, dim, dtype, out, True, 1, "log_softmax")


def softmin(input, dim: int | None = None, dtype=None, *, out=None):
    """On CUDA device arrays: ``softmax(-x)`` along ``dim``."""
    return _softmax_forward(input, dim, dtype, out, False, -1, "softmin")


def softmax_backward(grad_output, input=None, dim: int | None = None, *, output=None, out=None):
    """On CUDA device arrays: ``y * (g - sum(g * y))`` along ``dim``."""
    return _softmax_backward(grad_output, input, output, dim, out, False, 1, "softmax")


def log_softmax_backward(grad_output, input=None, dim: int | None = None, *, output=None, out=None):
    """On CUDA device arrays: ``g - exp(y) * sum(g)`` along ``dim``."""
    return _softmax_backward(grad_output, input, output, dim, out, True, 1, "log_softmax")


def softmin_backward(grad_output, input=None, dim: int | None = None, *, output=None, out=None):
    """On CUDA device arrays: ``-y * (g - sum(g * y))`` along ``dim``."""
    return _softmax_backward(grad_output, input, output, dim, out, False, -1, "softmin")


__all__ += [
    "prelu",
    "prelu_backward",
    "glu",
    "glu_backward",
    "maxout",
    "maxout_backward",
    "rrelu",
    "rrelu_",
    "rrelu_backward",
    "softmax",
    "log_softmax",
    "softmin",
    "softmax_backward",
    "log_softmax_backward",
    "softmin_backward",
]
