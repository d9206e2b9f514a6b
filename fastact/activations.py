"""Activations with ``torch.nn.functional``'s names, parameters and gradients: the front end.

Every public function here is written once for both executors. A call checks its arguments,
then hands its arrays to the executor that owns them: :mod:`fastact.host` for host arrays,
:mod:`fastact.cuda` for device arrays (loaded by name on the first one), whose functions have
the same names. The common call (a C-contiguous float32/float64 NumPy array, scalar
parameters, no ``out=``) takes a fast path straight to the host's compiled loop.

The element-wise functions (``name``, ``name_`` where torch's module takes ``inplace=``, and
``name_backward``) are generated with real signatures from the specs of
:data:`fastact.kernels.activations.ACTIVATIONS`; the ones that work along an axis (rrelu,
prelu, glu, maxout, softmax, log_softmax, softmin and their backwards) are written out below.
Conventions at kinks, NaN propagation and saturation follow torch 2.13
(``docs/torch_semantics.md``).
"""

from __future__ import annotations

import keyword
import math
import operator
import os
import warnings
from typing import Any

import numpy as np

from fastact import host
from fastact._core.arrays import (
    FLOAT_DTYPES,
    any_tensor,
    is_tensor,
    normalize_dim,
    scalar_param,
    stacklevel_outside,
    torch_module,
    written,
)
from fastact._core.backend import device, on_device
from fastact._core.torch_pool import tensor_calls
from fastact.host.axis import (
    GLU_BACKWARD,
    GLU_FORWARD,
    PRELU_FORWARD,
    maxout_rows_kernels,
)
from fastact.host.axis import softmax as _softmax_rows
from fastact.host.axis import softmax_backward as _softmax_rows_backward
from fastact.host.elementwise import kernels as _host_kernels
from fastact.host.launch import launch, pick
from fastact.kernels.activations import ACTIVATIONS, GELU
from fastact.kernels.axis import MAXOUT_ROW_PIECES
from fastact.kernels.elementwise import REQUIRED, Elementwise

__all__: list[str] = ["ACTIVATIONS", "AXIS_ACTIVATIONS", "MODULE_FUNCTIONS"]

#: torch.nn module name -> the element-wise function its forward computes (fastact.nn's and
#: fastact.torch.nn's modules are made from it)
MODULE_FUNCTIONS: dict[str, str] = {
    "Sigmoid": "sigmoid",
    "Tanh": "tanh",
    "ReLU": "relu",
    "ReLU6": "relu6",
    "LeakyReLU": "leaky_relu",
    "Hardtanh": "hardtanh",
    "ELU": "elu",
    "CELU": "celu",
    "SELU": "selu",
    "SiLU": "silu",
    "Mish": "mish",
    "Hardsigmoid": "hardsigmoid",
    "Hardswish": "hardswish",
    "Softsign": "softsign",
    "Tanhshrink": "tanhshrink",
    "Softshrink": "softshrink",
    "Hardshrink": "hardshrink",
    "Threshold": "threshold",
    "Softplus": "softplus",
    "LogSigmoid": "logsigmoid",
}

_F32, _F64 = FLOAT_DTYPES


def _executor(*arrays: Any):
    """The executor owning a call's arrays: the CUDA one if any is a device array."""
    return device(*arrays) if on_device(*arrays) else host


# ============================================================================= element-wise
def scalar_params(
    op: Elementwise, values: tuple, dtype: np.dtype, no_tensors: bool = False
) -> tuple | None:
    """``op.kernel_params`` as Python floats for the host loops when they are all scalars
    (exactly representable in ``dtype``), else None (array parameters; with ``no_tensors``
    also a torch tensor parameter, 0-d or not: the array fast paths leave the call to the
    general path, whose result follows the one result rule, a tensor then).

    Python-number parameters are converted once per (values, types, dtype) and cached (the
    conversion and checks cost more than a 1K-element kernel); zeros are not cached because
    0.0 and -0.0 compare equal but may give differently signed results.
    """
    if not values and op.prepare is None:
        return ()
    # the last call's parameters when they are the very same objects (the defaults, a
    # caller's constants): ~50 ns instead of ~400 ns for the keyed cache below; identity
    # also tells 0.0 from -0.0
    memo = op.param_memo
    if memo[0] is dtype and values:
        mv = memo[1]
        if len(values) == len(mv) and (
            values[0] is mv[0] if len(mv) == 1 else all(map(operator.is_, values, mv))
        ):
            return memo[2]
    cache = op.param_cache
    try:
        key = (dtype, values, *map(type, values))
        kp = cache.get(key)
    except TypeError:  # an unhashable parameter (an array)
        key = kp = None
    if kp is None:
        if no_tensors and any_tensor(*values):  # (a cache hit holds numbers only)
            return None
        kp = op.kernel_params(values, dtype)
        if any(type(p) is np.ndarray for p in kp):
            return None
        kp = tuple([float(p) for p in kp])  # exact: the loops cast back to dtype
        if (
            key is not None
            and len(cache) < 256
            and all((type(v) is float or type(v) is int) and v != 0 for v in values)
        ):
            cache[key] = kp
    if values and all(type(v) is float or type(v) is int for v in values):
        op.param_memo = (dtype, values, kp)  # immutable objects, held alive here
    return kp


def forward(op: Elementwise, x: Any, values: tuple, out: Any = None, inplace: bool = False):
    """``op``'s value into a new array, into ``out``, or into ``x`` itself (``inplace``)."""
    if type(x) is np.ndarray and (x.dtype is _F32 or x.dtype is _F64) and x.flags.c_contiguous:
        # fast path for the common call: C-contiguous float array, scalar parameters
        if inplace:
            dst = x if out is None and x.flags.writeable else None
        elif out is None:
            dst = np.empty_like(x)
        elif _writable_like(out, x) and (out is x or not np.may_share_memory(out, x)):
            dst = out
        else:
            dst = None
        if dst is not None:
            kp = scalar_params(op, values, x.dtype, True)
            if kp is not None:
                n = x.size
                if n:
                    kind = "inplace" if dst is x else "forward"
                    ks = op.host.get(kind) or _host_kernels(op, kind)
                    # a view costs 0.25 us by reshape(-1), 0.05 us by ravel (C-contiguous:
                    # always a view)
                    xf = x if x.ndim == 1 else x.ravel()
                    args = (
                        (xf,) if kind == "inplace" else (xf, dst if dst.ndim == 1 else dst.ravel())
                    )
                    if n >= op.threshold:  # numba's parallel loop, or torch's pool
                        launch(ks, n, (*args, *kp), range(len(args)), op.threshold)
                    else:
                        ks[0](*args, *kp)
                return dst
    elif (
        _plain_cpu_tensor(x)
        and (out is None or (not inplace and _plain_cpu_tensor(out)))
        and not (inplace and x.is_inference())  # the general path applies torch's rule
        and not (out is not None and out.is_inference())
        and (not values or _no_tensor(values))  # (the general path: the result rule on x)
    ):
        # CPU float tensors outside autograd: the arrays' path on their views (the general
        # path's checks cost ~14 us per call, ~30 us with a tensor out=); the result a
        # tensor sharing the new array, or out itself
        xv, ov = x.numpy(), None if out is None else out.numpy()
        if xv.size < op.threshold:
            # the serial loop: no launch asks torch's pool, which tensor_calls is for (its
            # context costs ~0.35 us, more than the version counter's bump below)
            res = forward(op, xv, values, ov, inplace)
        else:
            with tensor_calls():
                res = forward(op, xv, values, ov, inplace)
        if inplace:
            _increment_version((x,))  # autograd's record of the write (torch's in-place ops)
            return x
        if out is not None:
            _increment_version((out,))
            return out
        return torch_module().from_numpy(res)
    if inplace and out is not None:
        raise ValueError("out= cannot be combined with inplace=True")
    res = _executor(x, out).elementwise(op, "forward", (x,), values, out, inplace)
    if inplace or out is not None:
        written(x if inplace else out)
    return res


def _writable_like(out: Any, v: Any) -> bool:
    """``out`` is an array the fast paths may write as it is: C-contiguous, writeable, of
    ``v``'s dtype and shape (overlaps are the caller's check; anything else takes the
    general path, which validates it and writes through a temporary where needed)."""
    return (
        type(out) is np.ndarray
        and type(v) is np.ndarray
        and out.dtype == v.dtype
        and out.shape == v.shape
        and out.flags.c_contiguous
        and out.flags.writeable
    )


def _plain_cpu_tensor(x: Any) -> bool:
    """``x`` is a C-contiguous float32/float64 CPU torch.Tensor (not a subclass, not nested)
    that does not require grad and has no lazy negation: its NumPy view is the tensor's data
    as is (a nested tensor of strided layout passes the other checks, and ``.numpy()`` raised
    torch's internal error)."""
    torch = torch_module()
    return (
        torch is not None
        and type(x) is torch.Tensor
        and (x.dtype is torch.float32 or x.dtype is torch.float64)
        and not x.requires_grad
        and x.is_cpu
        and x.layout is torch.strided
        and x.is_contiguous()
        and not x.is_neg()
        and not x.is_nested
    )


def _no_tensor(values: tuple) -> bool:
    """No parameter is a torch tensor (a tensor parameter makes a new result a tensor, by the
    one result rule the general path applies with the call's own arguments). Numbers first:
    ~0.1 us for one parameter."""
    for v in values:
        if type(v) is not float and type(v) is not int and is_tensor(v):
            return False
    return True


def _increment_version(tensors: tuple) -> None:
    """``torch._C._increment_version(tensors)`` (:func:`fastact._core.arrays.written` for the
    tensor fast paths, without its checks): looked up at the first call, made when torch is
    imported, which then replaces this function by torch's own."""
    global _increment_version
    _increment_version = torch_module()._C._increment_version
    _increment_version(tensors)


def backward(op: Elementwise, grad_output: Any, x: Any, output: Any, values: tuple, out=None):
    """``grad_output * f'(input)``, from ``input`` or (where the spec allows) from ``output``."""
    v = x if output is None else output
    if (
        (
            out is None
            or (
                _writable_like(out, v)
                and not np.may_share_memory(out, v)
                and not np.may_share_memory(out, grad_output)
            )
        )
        and type(v) is np.ndarray
        and type(grad_output) is np.ndarray
        and (x is None) != (output is None)
        and v.dtype in FLOAT_DTYPES
        and grad_output.dtype == v.dtype
        and grad_output.shape == v.shape
        and v.flags.c_contiguous
        and grad_output.flags.c_contiguous
        and (output is None or op.check_output is None)
    ):
        # fast path: matching C-contiguous float arrays, scalar parameters
        kind = "grad" if output is None else "grad_output"
        if op.scalars[kind] is not None:
            kp = scalar_params(op, values, v.dtype, True)
            if kp is not None:
                res = np.empty_like(v) if out is None else out
                n = v.size
                if n:
                    ks = op.host.get(kind) or _host_kernels(op, kind)
                    if v.ndim == 1:
                        args = (grad_output, v, res, *kp)
                    else:
                        args = (grad_output.ravel(), v.ravel(), res.ravel(), *kp)
                    if n >= op.threshold:  # numba's parallel loop, or torch's pool
                        launch(ks, n, args, range(3), op.threshold)
                    else:
                        ks[0](*args)
                return res
    elif (
        (x is None) != (output is None)
        and _plain_cpu_tensor(grad_output)
        and _plain_cpu_tensor(v)
        and (out is None or (_plain_cpu_tensor(out) and not out.is_inference()))
        and (not values or _no_tensor(values))
    ):
        # CPU float tensors outside autograd: as forward, the arrays' path on their views
        views = (
            op, grad_output.numpy(), None if x is None else x.numpy(),
            None if output is None else output.numpy(), values,
            None if out is None else out.numpy(),
        )  # fmt: skip
        if v.numel() < op.threshold:  # as forward: serial, tensor_calls not needed
            res = backward(*views)
        else:
            with tensor_calls():
                res = backward(*views)
        if out is not None:
            _increment_version((out,))
            return out
        return torch_module().from_numpy(res)
    if (x is None) == (output is None):
        raise TypeError(f"{op.name}_backward needs exactly one of input= and output=")
    kind = "grad" if output is None else "grad_output"
    if kind == "grad_output" and op.scalars["grad_output"] is None:
        raise TypeError(f"{op.name}_backward cannot be computed from output=; pass input=")
    name = "input" if output is None else "output"
    res = _executor(grad_output, v, out).elementwise(
        op, kind, (grad_output, v), values, out, False, ("grad_output", name)
    )
    if out is not None:
        written(out)
    return res


def _signature(params, trailing: str) -> tuple[str, str]:
    parts, names = [], []
    for i, (pname, default) in enumerate(params):
        assert pname.isidentifier() and not keyword.iskeyword(pname)
        parts.append(pname if default is REQUIRED else f"{pname}=_d{i}")
        names.append(pname)
    tup = "(" + "".join(f"{n}, " for n in names) + ")"
    sig = ", ".join(parts + ([trailing] if trailing else []))
    return sig, tup


def make_public(op: Elementwise, namespace: dict) -> list[str]:
    """Create ``name``, ``name_`` (if in-place exists) and ``name_backward`` in ``namespace``
    (real signatures, torch's parameter names and defaults; see ``activations.pyi``)."""
    ns: dict[str, Any] = {"_op": op, "_fw": forward, "_bw": backward}
    ns.update({f"_d{i}": d for i, (_, d) in enumerate(op.params)})
    name, doc = op.name, op.doc.strip()
    psig, tup = _signature(op.params, "")
    psig = (", " + psig) if psig else ""
    created = [name]
    if op.inplace:
        src = (
            f"def {name}(input{psig}, inplace=False, *, out=None):\n"
            f"    return _fw(_op, input, {tup}, out, inplace)\n"
            f"def {name}_(input{psig}):\n"
            f"    return _fw(_op, input, {tup}, None, True)\n"
        )
        created.append(name + "_")
    else:
        src = f"def {name}(input{psig}, *, out=None):\n    return _fw(_op, input, {tup}, out)\n"
    has_out = op.scalars["grad_output"] is not None
    all_defaults = all(d is not REQUIRED for _, d in op.params)
    inp = "input=None" if has_out and all_defaults else "input"
    kw = "*, output=None, out=None" if has_out else "*, out=None"
    outarg = "output" if has_out else "None"
    src += (
        f"def {name}_backward(grad_output, {inp}{psig}, {kw}):\n"
        f"    return _bw(_op, grad_output, input, {outarg}, {tup}, out)\n"
    )
    created.append(name + "_backward")
    exec(src, ns)
    pdoc = ", ".join(op.param_names)
    ns[name].__doc__ = doc + "\n\nReturns a new array, or ``out`` when given."
    if op.inplace:
        ns[name].__doc__ += " ``inplace=True`` overwrites ``input`` and returns it."
        ns[name + "_"].__doc__ = f"In-place {name}: overwrites ``input`` and returns it."
    ns[name + "_backward"].__doc__ = (
        f"Gradient of {name} w.r.t. its input: ``grad_output * {name}'(input)``"
        + (f" (parameters {pdoc})" if pdoc else "")
        + (
            ". Pass ``output=`` instead of ``input`` to differentiate from the forward's result"
            " (e.g. after the in-place forward)."
            if has_out
            else "."
        )
    )
    for fn in created:
        ns[fn].__module__ = namespace.get("__name__", "fastact")
        ns[fn].__qualname__ = fn
        namespace[fn] = ns[fn]
    return created


for _op in ACTIVATIONS.values():
    if _op.name not in ("gelu", "gelu_tanh"):
        __all__.extend(make_public(_op, globals()))
del _op


# ----------------------------------------------------------------------------- gelu
def gelu_op(approximate: Any) -> Elementwise:
    """gelu's spec for ``approximate`` ('none' or 'tanh'; ValueError otherwise)."""
    op = GELU.get(approximate) if isinstance(approximate, str) else None
    if op is None:
        raise ValueError(f"approximate must be 'none' or 'tanh', got {approximate!r}")
    return op


def gelu(input, approximate: str = "none", *, out=None):
    """Gaussian error linear unit ``x * Phi(x)``; ``approximate='tanh'`` uses
    ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``.
    torch: ``F.gelu(input, approximate='none')``. The normal CDF's tail is computed as
    ``exp(-x^2/2) erfcx(|x|/sqrt 2) / 2`` with ``x^2`` split exactly (float32: max 3.82 ULP over
    all inputs; float64 through erfc, 2.2 ULP sampled, subnormal results scaled once), the tanh
    form as ``x sigmoid(2z)`` with ``2z`` in two words in float32 (max 3.62 ULP over all
    inputs; float64: the same two-word argument below -4.5, within 1.6 ULP there, and one
    word above, up to 33.4 ULP near -4.43), so the negative tail does not cancel (torch's
    does)."""
    return forward(gelu_op(approximate), input, (), out)


def gelu_backward(grad_output, input, approximate: str = "none", *, out=None):
    """Gradient of gelu w.r.t. its input: ``grad_output * (Phi(x) + x phi(x))`` (or the
    derivative of the tanh form). ``Phi(x) + x phi(x)`` vanishes at x = -0.75179, where its
    terms cancel; fastact writes it as ``exp(-x^2/2) (a0 - |x|) P(t)`` (``1 -`` that for
    x >= 0), ``a0`` the zero in three words and ``P`` a polynomial in ``t = 1/(1 + |x|/2)``
    (``scripts/fit_gelu_deriv.py``): a product, within 2.95 ULP over all float32 inputs and
    2.8 ULP in float64 (sampled), also at the zero (torch: 1.2e8 / 6.8e16 ULP there)."""
    return backward(gelu_op(approximate), grad_output, input, None, (), out)


__all__ += ["gelu", "gelu_backward"]


# ============================================================================= along an axis
def _matching_pair(ex, a: Any, b: Any, name_a: str, name_b: str):
    """Two inputs of one shape in one float dtype (the executor's rule for mixed dtypes)."""
    a = ex.float_input(a, name_a)
    b = ex.float_input(b, name_b)
    sa, sb = tuple(ex.shape_of(a)), tuple(ex.shape_of(b))
    if sa != sb:
        raise ValueError(f"{name_a} has shape {sa} but {name_b} has shape {sb}")
    return ex.common_dtype(a, b, name_a, name_b)


def _finish(ex, res: Any, o: Any, target: Any, out: Any, arrays: tuple = ()) -> Any:
    """``ex.finish(res, o, target)`` (the result of ``ex.result``), then, where the caller's
    ``out`` (or input written in place) is a torch tensor, its version counter advanced; a
    new host result by the element-wise functions' rule over the call's array arguments
    ``arrays`` (:func:`fastact.host.edge.tensor_result`: a tensor when any is one, bfloat16
    for bfloat16 tensors)."""
    res = ex.finish(res, o, target)
    if out is not None:
        written(out)
    elif ex is host:
        res = host.tensor_result(res, arrays)
    return res


def _view3(ex, a: Any, dim: int):
    """``a`` as a C-contiguous (outer, a.shape[dim], inner) array (a view when possible)."""
    shape = tuple(ex.shape_of(a)) or (1,)
    outer = math.prod(shape[:dim])
    inner = math.prod(shape[dim + 1 :])
    return ex.contiguous(a).reshape(outer, shape[dim], inner)


def _last_axis_fast(a, dim) -> bool:
    """A C-contiguous float32/64 ndarray worked on along its last axis: no conversion,
    no copy, rows of the last axis (the common call, kept to a few microseconds)."""
    return (
        type(a) is np.ndarray
        and a.dtype in FLOAT_DTYPES
        and a.ndim >= 1
        and a.size > 0
        and type(dim) is int
        and (dim == -1 or dim == a.ndim - 1)
        and a.flags.c_contiguous
    )


# ----------------------------------------------------------------------------- RReLU
_LEAKY_RELU = ACTIVATIONS["leaky_relu"]


def _rrelu_key(generator) -> int:
    if generator is None:  # fresh OS entropy (np.random.default_rng() costs ~25 us)
        return int.from_bytes(os.urandom(8), "little") >> 1
    if isinstance(generator, np.random.Generator):
        return int(generator.integers(0, 2**63))
    if isinstance(generator, (int, np.integer)) and not isinstance(generator, bool):
        return int(generator) & (2**64 - 1)
    raise TypeError(
        "generator must be None, an int seed or a numpy.random.Generator, got "
        f"{type(generator).__name__}"
    )


def _rrelu_bounds(lower, upper, dtype):
    lo = scalar_param(lower, "lower", dtype)
    hi = scalar_param(upper, "upper", dtype)
    if isinstance(lo, np.ndarray) or isinstance(hi, np.ndarray):
        raise TypeError("lower and upper must be real numbers")
    for bound, v in (("lower", lower), ("upper", upper)):  # torch's checks and messages
        if not math.isfinite(float(v)):
            raise ValueError(f"rrelu: {bound} bound must be finite, got {float(v)}")
        if abs(float(v)) > float(np.finfo(dtype).max):
            raise ValueError(f"{bound} = {v} cannot be converted to {dtype} without overflow")
    if not lo <= hi:
        raise ValueError(f"lower must be <= upper, got lower={lower} upper={upper}")
    return lo, hi


#: (lower, upper, dtype, consts) of the last call with finite Python-float bounds, one slot
#: for float32, one for float64
_RRELU_MEMO: list[tuple] = [(None, None, None, None)] * 2


def _rrelu_consts(lower, upper, dtype: np.dtype) -> tuple[float, float, float]:
    """``(lower, upper - lower, (lower + upper) / 2)`` of the bounds as ``dtype`` scalars
    (the kernels' arguments and the eval-mode slope), as Python floats, validated.

    Remembered for the last call's bound objects (~50 ns; the same slope object each call,
    so leaky_relu's parameter memo hits too). Bounds that overflow the dtype are not
    remembered: they warn on every call."""
    slot = dtype is _F32
    memo = _RRELU_MEMO[slot]
    if lower is memo[0] and upper is memo[1] and dtype is memo[2]:
        return memo[3]
    lo, hi = _rrelu_bounds(lower, upper, dtype)
    # the eval slope as torch's: (lower + upper) / 2 in double, rounded once by the kernel
    c = (float(lo), float(hi - lo), (float(lower) + float(upper)) / 2)
    if (
        type(lower) is float
        and type(upper) is float
        and math.isfinite(c[0])
        and math.isfinite(c[1])
    ):
        _RRELU_MEMO[slot] = (lower, upper, dtype, c)  # immutable objects, held alive here
    return c


def _with_bounds(res: Any, arrays: tuple, lower: Any, upper: Any) -> Any:
    """A new eval-mode result (its slope computed from the bounds, a number) by the one
    result rule over ``arrays`` and the bounds: tensor bounds make it a tensor, as a tensor
    slope makes leaky_relu's (a device array as it is)."""
    if type(lower) is float and type(upper) is float:
        return res
    return host.tensor_result(res, (*arrays, lower, upper))


def _rrelu_dtype(x) -> np.dtype:
    """The dtype the eval-mode slope is checked against (and rounded to by the kernel)."""
    if type(x) is np.ndarray and x.dtype in FLOAT_DTYPES:
        return x.dtype
    if on_device(x):  # the slope is rounded to the device array's dtype
        return device(x).float_input(x, "input").dtype
    if is_tensor(x):  # the dtype its NumPy view computes in
        return host.float_input(x, "input").dtype
    return _F64


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
    """Randomized leaky ReLU. ``training=False``: leaky_relu with slope (lower+upper)/2.
    ``training=True``: each element x <= 0 gets its own slope a ~ U(lower, upper).

    The slopes come from a counter-based generator indexed by element position (C order), so
    results are identical whatever the thread count (and on the GPU). ``generator`` is an int
    seed (the same seed reproduces the same slopes, and ``rrelu_backward`` recomputes them
    from it) or a ``numpy.random.Generator`` (one key drawn from it per call).
    ``return_noise=True`` also returns the per-element slope array (1 where x > 0), like
    torch's internal noise buffer.
    torch: ``F.rrelu(input, lower=1/8, upper=1/3, training=False, inplace=False)``.
    """
    if not training:
        dt = _rrelu_dtype(input)
        y = forward(_LEAKY_RELU, input, (_rrelu_consts(lower, upper, dt)[2],), out, inplace)
        if out is None and not inplace:
            y = _with_bounds(y, (input,), lower, upper)
        return (y, None) if return_noise else y
    if inplace and out is not None:
        raise ValueError("out= cannot be combined with inplace=True")
    ex = _executor(input, out)
    x = ex.inplace_input(input, "input") if inplace else ex.float_input(input, "input")
    lo, span, _ = _rrelu_consts(lower, upper, x.dtype)
    key = _rrelu_key(generator)
    shape = tuple(ex.shape_of(x))
    if not inplace:
        res, o, target = ex.result(out, input, shape, x.dtype, (x,))
    elif ex.c_contiguous(x):
        res, o, target = input, x, None
    else:  # a strided array modified in place: through a contiguous temporary
        res, o, target = input, ex.empty(input, shape, x.dtype)[1], x
    noise_res, noise = ex.empty(input, shape, x.dtype) if return_noise else (None, None)
    if math.prod(shape):
        nz = None if noise is None else noise.reshape(-1)
        ex.rrelu_train(ex.contiguous(x).reshape(-1), o.reshape(-1), nz, lo, span, key)
    res = _finish(ex, res, o, target, input if inplace else out, (input, lower, upper))
    if return_noise and ex is host:
        noise_res = host.tensor_result(noise_res, (input, lower, upper))
    return (res, noise_res) if return_noise else res


def rrelu_(
    input, lower: float = 1.0 / 8, upper: float = 1.0 / 3, training: bool = False, *, generator=None
):
    """In-place rrelu: overwrites ``input`` and returns it."""
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
    """Gradient of rrelu: ``grad_output * slope`` where x <= 0, ``grad_output`` elsewhere.

    In training mode the slopes are the forward's: pass ``noise=`` (from
    ``return_noise=True``) or the same integer seed as ``generator=``. ``output=`` may replace
    ``input`` where the slopes are not negative (then the sign of the output is the sign of
    the input; ``lower < 0`` with ``output=`` raises ValueError)."""
    if (
        training is False
        and type(lower) is float
        and type(upper) is float
        and generator is None
        and noise is None
        and out is None
        and type(grad_output) is np.ndarray
        and type(input if output is None else output) is np.ndarray
        and (input is None or output is None)
    ):
        # fast path: eval mode on host arrays (leaky_relu's backward checks the rest)
        slope = _rrelu_consts(lower, upper, _rrelu_dtype(input if output is None else output))[2]
        return backward(_LEAKY_RELU, grad_output, input, output, (slope,), None)
    return _rrelu_backward_any(
        grad_output,
        input,
        lower,
        upper,
        training,
        generator=generator,
        noise=noise,
        output=output,
        out=out,
    )


def _rrelu_backward_any(gy, input, lower, upper, training, *, generator, noise, output, out):
    """rrelu_backward without the fast path (any input, either executor); called with every
    argument of :func:`rrelu_backward`."""
    grad_output = gy
    if not training:
        slope = _rrelu_consts(lower, upper, _rrelu_dtype(input if output is None else output))[2]
        res = backward(_LEAKY_RELU, grad_output, input, output, (slope,), out)
        if out is None:
            res = _with_bounds(res, (grad_output, input, output), lower, upper)
        return res
    if (input is None) == (output is None):
        raise TypeError("rrelu_backward needs exactly one of input= and output=")
    name = "input" if output is None else "output"
    src = input if output is None else output
    ex = _executor(grad_output, src, noise, out)
    g, v = _matching_pair(ex, grad_output, src, "grad_output", name)
    shape = tuple(ex.shape_of(v))
    if noise is not None:
        nz = ex.float_input(noise, "noise")
        if tuple(ex.shape_of(nz)) != shape:
            raise ValueError(f"noise has shape {tuple(ex.shape_of(nz))}, expected {shape}")
        g, nz = ex.common_dtype(g, nz, "grad_output", "noise")
        res, o, target = ex.result(out, src, shape, v.dtype, (g, v))
        if math.prod(shape):
            ex.multiply(ex.contiguous(g), ex.contiguous(nz), o)
        return _finish(ex, res, o, target, out, (grad_output, src, noise, lower, upper))
    if not isinstance(generator, (int, np.integer)) or isinstance(generator, bool):
        raise TypeError(
            "rrelu_backward in training mode needs noise= or the forward's integer "
            "seed as generator="
        )
    lo, span, _ = _rrelu_consts(lower, upper, v.dtype)
    if output is not None and lo < 0:
        raise ValueError(
            "rrelu_backward from output= needs lower >= 0 (a negative slope makes the "
            "input's sign unrecoverable from the output): pass input= or noise="
        )
    res, o, target = ex.result(out, src, shape, v.dtype, (g, v))
    if math.prod(shape):
        ex.rrelu_train_grad(
            ex.contiguous(g).reshape(-1),
            ex.contiguous(v).reshape(-1),
            o.reshape(-1),
            lo,
            span,
            _rrelu_key(generator),
        )
    return _finish(ex, res, o, target, out, (grad_output, src, lower, upper))


# ----------------------------------------------------------------------------- PReLU
def _prelu_args(ex, input, weight):
    """(x, w, x3 view, weight per row of x3) of a prelu call."""
    x = ex.float_input(input, "input")
    w = ex.float_input(weight, "weight")
    xs, ws = tuple(ex.shape_of(x)), tuple(ex.shape_of(w))
    if len(ws) > 1:
        raise ValueError(f"prelu: weight must be 1-D (num_parameters,), got shape {ws}")
    channels = xs[1] if len(xs) >= 2 else 1
    wn = math.prod(ws)
    if wn not in (1, channels):
        raise ValueError(
            f"Mismatch of parameter numbers and input channel size: weight has "
            f"{wn} elements, input has {channels} channels (dim 1)"
        )
    x, w = ex.common_dtype(x, w, "input", "weight")
    if wn == 1 or len(xs) < 2:  # one slope for everything: a single "channel"
        x3 = ex.contiguous(x).reshape(1, 1, math.prod(xs))
    else:
        x3 = _view3(ex, x, 1)
    return x, w, x3, ex.contiguous(w).reshape(-1)


def prelu(input, weight, *, out=None):
    """``max(0, x) + weight * min(0, x)`` with a learnable slope per channel (dim 1) or one
    for all (weight of shape (1,)). torch: ``F.prelu(input, weight)``."""
    if (
        out is None
        and type(input) is np.ndarray
        and type(weight) is np.ndarray
        and input.dtype in FLOAT_DTYPES
        and weight.dtype == input.dtype
        and input.ndim >= 2
        and weight.ndim == 1
        and input.size > 0
        and input.flags.c_contiguous
        and weight.flags.c_contiguous
    ):
        # fast path (the common call: one slope per channel, or one for all)
        s = input.shape
        if weight.shape[0] == s[1] or weight.shape[0] == 1:
            res = np.empty_like(input)
            if weight.shape[0] == s[1]:
                x3 = input.reshape(s[0], s[1], -1)
            else:
                x3 = input.reshape(1, 1, -1)
            pick(PRELU_FORWARD, input.size)(x3, weight, res.reshape(x3.shape))
            return res
    return _prelu_any(input, weight, out=out)


def _prelu_any(input, weight, *, out=None):
    """prelu without the fast path (any input, either executor)."""
    ex = _executor(input, weight, out)
    x, w, x3, wc = _prelu_args(ex, input, weight)
    res, o, target = ex.result(out, input, tuple(ex.shape_of(x)), x.dtype, (x, w))
    if x3.size:
        ex.prelu_forward(x3, wc, o.reshape(x3.shape))
    return _finish(ex, res, o, target, out, (input, weight))


def prelu_backward(grad_output, input, weight, *, out=None):
    """Returns ``(grad_input, grad_weight)``: ``grad_input = g if x > 0 else weight * g`` and
    ``grad_weight[c] = sum over all dims but 1 of (x * g where x <= 0)``, reduced in float64
    in a fixed order (thread-count independent), shaped like ``weight``. The optimizer
    updates the weight from this gradient like any other parameter."""
    ex = _executor(grad_output, input, weight, out)
    x, w, x3, wc = _prelu_args(ex, input, weight)
    g, _ = _matching_pair(ex, grad_output, x, "grad_output", "input")
    g = ex.astype(g, x.dtype)
    shape = tuple(ex.shape_of(x))
    res, o, target = ex.result(out, input, shape, x.dtype, (x, g, w))
    gw_res, gw = ex.empty(weight, tuple(ex.shape_of(w)), w.dtype)
    ex.prelu_backward(
        ex.contiguous(g).reshape(x3.shape), x3, wc, o.reshape(x3.shape), gw.reshape(-1)
    )
    arrays = (grad_output, input, weight)
    gw_res = host.tensor_result(gw_res, arrays) if ex is host else gw_res
    return _finish(ex, res, o, target, out, arrays), gw_res


# ----------------------------------------------------------------------------- GLU
def _glu_shape(shape: tuple, dim: Any) -> tuple[int, int, tuple]:
    """(outer, half, result shape) of glu along ``dim`` of ``shape``."""
    if len(shape) == 0:
        raise ValueError("glu does not support 0-d input")
    d = normalize_dim(dim, len(shape))
    if shape[d] % 2:
        raise ValueError(f"Halving dimension must be even, but dimension {d} is size {shape[d]}")
    out_shape = shape[:d] + (shape[d] // 2,) + shape[d + 1 :]
    return math.prod(shape[:d]), math.prod(out_shape[d:]), out_shape


def glu(input, dim: int = -1, *, out=None):
    """Gated linear unit ``a * sigmoid(b)`` where a, b are the two halves of ``input`` along
    ``dim``. torch: ``F.glu(input, dim=-1)``."""
    if out is None and _last_axis_fast(input, dim) and input.shape[-1] % 2 == 0:
        half = input.shape[-1] // 2
        res = np.empty(input.shape[:-1] + (half,), input.dtype)
        r2 = res if res.ndim == 2 else res.reshape(-1, half)
        pick(GLU_FORWARD, input.size)(input.reshape(-1, 2, half), r2)
        return res
    return _glu_any(input, dim, out=out)


def _glu_any(input, dim: int = -1, *, out=None):
    """glu without the fast path (any input, either executor)."""
    ex = _executor(input, out)
    x = ex.float_input(input, "input")
    outer, half, out_shape = _glu_shape(tuple(ex.shape_of(x)), dim)
    res, o, target = ex.result(out, input, out_shape, x.dtype, (x,))
    if outer * half:
        ex.glu_forward(ex.contiguous(x).reshape(outer, 2, half), o.reshape(outer, half))
    return _finish(ex, res, o, target, out, (input,))


def glu_backward(grad_output, input, dim: int = -1, *, out=None):
    """Gradient of glu w.r.t. its input: ``[g sigmoid(b), g a sigmoid(b) sigmoid(-b)]``."""
    if (
        out is None
        and _last_axis_fast(input, dim)
        and type(grad_output) is np.ndarray
        and grad_output.dtype == input.dtype
        and grad_output.flags.c_contiguous
        and input.shape[-1] % 2 == 0
        and grad_output.shape == input.shape[:-1] + (input.shape[-1] // 2,)
    ):
        half = input.shape[-1] // 2
        res = np.empty_like(input)
        x3 = input.reshape(-1, 2, half)
        g2 = grad_output if grad_output.ndim == 2 else grad_output.reshape(-1, half)
        pick(GLU_BACKWARD, input.size)(g2, x3, res.reshape(x3.shape))
        return res
    return _glu_backward_any(grad_output, input, dim, out=out)


def _glu_backward_any(grad_output, input, dim: int = -1, *, out=None):
    """glu_backward without the fast path (any input, either executor)."""
    ex = _executor(grad_output, input, out)
    x = ex.float_input(input, "input")
    outer, half, out_shape = _glu_shape(tuple(ex.shape_of(x)), dim)
    g = ex.float_input(grad_output, "grad_output")
    if tuple(ex.shape_of(g)) != out_shape:
        raise ValueError(f"grad_output has shape {tuple(ex.shape_of(g))}, expected {out_shape}")
    x, g = ex.common_dtype(x, g, "input", "grad_output")
    res, o, target = ex.result(out, input, tuple(ex.shape_of(x)), x.dtype, (x, g))
    if outer * half:
        x3 = ex.contiguous(x).reshape(outer, 2, half)
        ex.glu_backward(ex.contiguous(g).reshape(outer, half), x3, o.reshape(outer, 2, half))
    return _finish(ex, res, o, target, out, (grad_output, input))


# ----------------------------------------------------------------------------- Maxout
def _maxout_shape(shape: tuple, pieces: Any, dim: Any) -> tuple[tuple, tuple]:
    """((outer, cout, pieces, inner), result shape) of maxout along ``dim`` of ``shape``."""
    if isinstance(pieces, (bool, np.bool_)) or not isinstance(pieces, (int, np.integer)):
        raise TypeError(f"pieces must be an int, got {type(pieces).__name__}")
    if pieces < 1:
        raise ValueError(f"pieces must be >= 1, got {pieces}")
    if len(shape) == 0:
        raise ValueError("maxout does not support 0-d input")
    d = normalize_dim(dim, len(shape))
    c = shape[d]
    if c % pieces:
        raise ValueError(f"input size {c} along dim {d} is not divisible by pieces={pieces}")
    dims = (math.prod(shape[:d]), c // pieces, int(pieces), math.prod(shape[d + 1 :]))
    return dims, shape[:d] + (c // pieces,) + shape[d + 1 :]


def maxout(input, pieces: int, dim: int = 1, *, out=None):
    """Maxout: the maximum over each group of ``pieces`` consecutive entries along ``dim``
    (channel ``j`` of the result is ``max(x[j*pieces : (j+1)*pieces])``), i.e. the max over
    ``pieces`` affine feature maps computed by the preceding layer. A NaN wins the max."""
    if (
        out is None
        and type(pieces) is int
        and pieces in MAXOUT_ROW_PIECES
        and _last_axis_fast(input, dim)
        and input.shape[-1] % pieces == 0
    ):
        # fast path: groups along the last axis of a C-contiguous float array
        c = input.shape[-1]
        cout = c // pieces
        res = np.empty(input.shape[:-1] + (cout,), input.dtype)
        x2 = input if input.ndim == 2 else input.reshape(-1, c)
        r2 = res if res.ndim == 2 else res.reshape(-1, cout)
        pick(maxout_rows_kernels(pieces)[0], input.size)(x2, r2)
        return res
    return _maxout_any(input, pieces, dim, out=out)


def _maxout_any(input, pieces: int, dim: int = 1, *, out=None):
    """maxout without the fast path (any input, either executor)."""
    ex = _executor(input, out)
    x = ex.float_input(input, "input")
    dims, out_shape = _maxout_shape(tuple(ex.shape_of(x)), pieces, dim)
    res, o, target = ex.result(out, input, out_shape, x.dtype, (x,))
    if math.prod(dims):
        x4 = ex.contiguous(x).reshape(*dims)
        ex.maxout_forward(x4, o.reshape(dims[0], dims[1], dims[3]))
    return _finish(ex, res, o, target, out, (input,))


def maxout_backward(grad_output, input, pieces: int, dim: int = 1, *, out=None):
    """Gradient of maxout: ``grad_output`` routed to the (first) argmax of each group."""
    if (
        out is None
        and type(pieces) is int
        and pieces in MAXOUT_ROW_PIECES
        and _last_axis_fast(input, dim)
        and type(grad_output) is np.ndarray
        and grad_output.dtype == input.dtype
        and grad_output.flags.c_contiguous
        and input.shape[-1] % pieces == 0
        and grad_output.shape == input.shape[:-1] + (input.shape[-1] // pieces,)
    ):
        c = input.shape[-1]
        res = np.empty_like(input)
        two_d = input.ndim == 2
        pick(maxout_rows_kernels(pieces)[1], input.size)(
            grad_output if two_d else grad_output.reshape(-1, c // pieces),
            input if two_d else input.reshape(-1, c),
            res if two_d else res.reshape(-1, c),
        )
        return res
    return _maxout_backward_any(grad_output, input, pieces, dim, out=out)


def _maxout_backward_any(grad_output, input, pieces: int, dim: int = 1, *, out=None):
    """maxout_backward without the fast path (any input, either executor)."""
    ex = _executor(grad_output, input, out)
    x = ex.float_input(input, "input")
    dims, out_shape = _maxout_shape(tuple(ex.shape_of(x)), pieces, dim)
    g = ex.float_input(grad_output, "grad_output")
    if tuple(ex.shape_of(g)) != out_shape:
        raise ValueError(f"grad_output has shape {tuple(ex.shape_of(g))}, expected {out_shape}")
    x, g = ex.common_dtype(x, g, "input", "grad_output")
    res, o, target = ex.result(out, input, tuple(ex.shape_of(x)), x.dtype, (x, g))
    if math.prod(dims):
        x4 = ex.contiguous(x).reshape(*dims)
        g3 = ex.contiguous(g).reshape(dims[0], dims[1], dims[3])
        ex.maxout_backward(g3, x4, o.reshape(*dims))
    return _finish(ex, res, o, target, out, (grad_output, input))


# ----------------------------------------------------------------------------- softmax
_PACKAGE = os.path.dirname(os.path.abspath(__file__))


def _softmax_dim(dim, ndim, fname):
    if dim is None:
        warnings.warn(
            f"Implicit dimension choice for {fname} has been deprecated. Change the "
            "call to include dim=X as an argument.",
            UserWarning,
            stacklevel=stacklevel_outside(_PACKAGE),
        )
        return 0 if ndim in (0, 1, 3) else 1
    return normalize_dim(dim, ndim)


def _numpy_dtype(dtype):
    """A torch dtype object (``torch.float64``) as the NumPy dtype of the same name; anything
    else unchanged (``np.dtype`` then reads it)."""
    if type(dtype).__module__ == "torch" and type(dtype).__name__ == "dtype":
        name = str(dtype).removeprefix("torch.")
        try:
            return np.dtype(name)
        except TypeError:
            raise TypeError(f"dtype: {dtype} has no NumPy equivalent") from None
    return dtype


def _softmax_forward(input, dim, dtype, out, log, sign, fname):
    if dtype is None and out is None and _last_axis_fast(input, dim):
        res = np.empty_like(input)
        x3 = input.reshape(-1, input.shape[-1], 1)
        _softmax_rows(x3, res.reshape(x3.shape), log, sign)
        return res
    if dtype is None and out is None and _plain_cpu_tensor(input):
        # a CPU float tensor outside autograd: the arrays' fast path on its view (the general
        # tensor path cost ~14 us a call)
        xv = input.numpy()
        if _last_axis_fast(xv, dim):
            with tensor_calls():
                return torch_module().from_numpy(
                    _softmax_forward(xv, dim, None, None, log, sign, fname)
                )
    ex = _executor(input, out)
    x = ex.float_input(input, "input")
    if dtype is not None and dtype is getattr(torch_module(), "bfloat16", None):
        return _softmax_bfloat16(ex, input, x, dim, out, log, sign, fname)
    if dtype is not None:
        try:
            dt = np.dtype(_numpy_dtype(dtype))
        except TypeError:
            raise TypeError(f"dtype must be float16, float32 or float64, got {dtype!r}") from None
        if dt == np.float16 and ex is host:
            # torch's dtype=float16: the input cast to float16 first, the softmax of that
            # computed in float32 (torch's CPU accumulation type for half), the result cast
            x16 = ex.astype(ex.astype(x, np.float16), np.float32)
            y = _softmax_forward(x16, dim, None, None, log, sign, fname)
            res, o, target = ex.result(out, input, y.shape, dt, (x,))
            o[...] = y
            return _finish(ex, res, o, target, out)
        if dt == np.float16:
            raise TypeError("dtype=float16 is not supported for device arrays (float32, float64)")
        if dt not in FLOAT_DTYPES:
            raise TypeError(f"dtype must be float16, float32 or float64, got {dt}")
        x = ex.astype(x, dt)
    shape = tuple(ex.shape_of(x))
    d = _softmax_dim(dim, len(shape), fname)
    res, o, target = ex.result(out, input, shape, x.dtype, (x,))
    if math.prod(shape):
        x3 = _view3(ex, x, d)
        ex.softmax(x3, o.reshape(x3.shape), log, sign)
    # dtype given: the result has it (a bfloat16 input's softmax with dtype=float32 is float32)
    return _finish(ex, res, o, target, out, (input,) if dtype is None else ())


def _softmax_bfloat16(ex, input, x, dim, out, log, sign, fname):
    """torch's ``dtype=torch.bfloat16``: the input rounded to bfloat16 first, the softmax of
    that computed in float32 (torch's CPU accumulation type for bfloat16), the result a
    bfloat16 tensor. CPU tensors only: NumPy has no bfloat16, and ``out=`` cannot be a
    bfloat16 tensor (fastact writes tensors through their NumPy views)."""
    if ex is not host or not is_tensor(input):
        raise TypeError(
            "dtype=torch.bfloat16 needs a CPU torch tensor input (NumPy has no bfloat16); "
            f"got {type(input).__name__}"
        )
    if out is not None:
        raise TypeError(
            "dtype=torch.bfloat16 cannot be combined with out= (a bfloat16 tensor cannot be "
            "written in place: NumPy has no bfloat16)"
        )
    torch = torch_module()
    xb = torch.from_numpy(x).to(torch.bfloat16).float().numpy()
    return torch.from_numpy(_softmax_forward(xb, dim, None, None, log, sign, fname)).to(
        torch.bfloat16
    )


def _softmax_backward(grad_output, input, output, dim, out, log, sign, fname):
    if (
        input is None
        and out is None
        and _last_axis_fast(output, dim)
        and type(grad_output) is np.ndarray
        and grad_output.dtype == output.dtype
        and grad_output.shape == output.shape
        and grad_output.flags.c_contiguous
    ):
        res = np.empty_like(output)
        y3 = output.reshape(-1, output.shape[-1], 1)
        _softmax_rows_backward(grad_output.reshape(y3.shape), y3, res.reshape(y3.shape), log, sign)
        return res
    if (
        input is None
        and out is None
        and _plain_cpu_tensor(output)
        and _plain_cpu_tensor(grad_output)
    ):
        gv, yv = grad_output.numpy(), output.numpy()  # as the forward: the views' fast path
        if _last_axis_fast(yv, dim) and gv.dtype == yv.dtype and gv.shape == yv.shape:
            with tensor_calls():
                return torch_module().from_numpy(
                    _softmax_backward(gv, None, yv, dim, None, log, sign, fname)
                )
    if (input is None) == (output is None):
        raise TypeError(f"{fname}_backward needs exactly one of input= and output=")
    name = "input" if output is None else "output"
    src = input if output is None else output
    ex = _executor(grad_output, src, out)
    g, v = _matching_pair(ex, grad_output, src, "grad_output", name)
    shape = tuple(ex.shape_of(v))
    d = _softmax_dim(dim, len(shape), fname)
    y = _softmax_forward(v, d, None, None, log, sign, fname) if output is None else v
    res, o, target = ex.result(out, src, shape, v.dtype, (g, v))
    if math.prod(shape):
        y3 = _view3(ex, ex.float_input(y, "output"), d)
        ex.softmax_backward(_view3(ex, g, d), y3, o.reshape(y3.shape), log, sign)
    return _finish(ex, res, o, target, out, (grad_output, src))


def softmax(input, dim: int | None = None, dtype=None, *, out=None):
    """``exp(x) / sum(exp(x))`` along ``dim`` (max-shifted, float64 sums).
    torch: ``F.softmax(input, dim=None, dtype=None)``; dim=None picks torch's legacy implicit
    dim with a warning."""
    return _softmax_forward(input, dim, dtype, out, False, 1, "softmax")


def log_softmax(input, dim: int | None = None, dtype=None, *, out=None):
    """``x - max - log(sum(exp(x - max)))`` along ``dim``. torch: ``F.log_softmax``."""
    return _softmax_forward(input, dim, dtype, out, True, 1, "log_softmax")


def softmin(input, dim: int | None = None, dtype=None, *, out=None):
    """``softmax(-x)`` along ``dim``. torch: ``F.softmin(input, dim=None, dtype=None)``."""
    return _softmax_forward(input, dim, dtype, out, False, -1, "softmin")


def softmax_backward(grad_output, input=None, dim: int | None = None, *, output=None, out=None):
    """``y * (g - sum(g * y))`` along ``dim``, with y the softmax output (pass ``output=`` to
    reuse the forward's result, or ``input`` to recompute it)."""
    return _softmax_backward(grad_output, input, output, dim, out, False, 1, "softmax")


def log_softmax_backward(grad_output, input=None, dim: int | None = None, *, output=None, out=None):
    """``g - exp(y) * sum(g)`` along ``dim``, with y the log-softmax output."""
    return _softmax_backward(grad_output, input, output, dim, out, True, 1, "log_softmax")


def softmin_backward(grad_output, input=None, dim: int | None = None, *, output=None, out=None):
    """``-y * (g - sum(g * y))`` along ``dim``, with y the softmin output."""
    return _softmax_backward(grad_output, input, output, dim, out, False, -1, "softmin")


#: Activations that are not element-wise, with their parameters (for docs, tests, benches).
AXIS_ACTIVATIONS = {
    "rrelu": ("lower", "upper", "training"),
    "prelu": ("weight",),
    "glu": ("dim",),
    "maxout": ("pieces", "dim"),
    "softmax": ("dim",),
    "log_softmax": ("dim",),
    "softmin": ("dim",),
}

__all__ += [
    f"{name}{suffix}"
    for name in AXIS_ACTIVATIONS
    for suffix in ("", "_backward") + (("_",) if name == "rrelu" else ())
]
