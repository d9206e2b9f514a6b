"""fastact's activations and losses as ``torch.autograd.Function``s, with functional wrappers
named and called like ``torch.nn.functional``'s.

``fastact.torch.autograd.gelu(x)`` computes ``F.gelu(x)`` with fastact's kernel and records
one node in the autograd graph whose backward is fastact's ``gelu_backward``. Each Function
saves what its backward needs: the output where torch saves the output (sigmoid, tanh, relu,
the softmax family), otherwise the input. In place (``inplace=True``, ``relu_``) the input
tensor is overwritten and marked dirty; the backward then works from the output where
torch's does (relu, leaky_relu, elu, celu, selu, with parameters that allow it), else from
a copy of the input taken first and recorded in the graph, as torch's clone (hardtanh,
relu6, threshold, silu, mish, ...): a later in-place op on the output is allowed there, and
double backward differentiates through the copy.

A backward runs fastact's kernels when it is not itself recorded; with
``create_graph=True`` (a gradient penalty, a Hessian-vector product) it is computed by torch's
own differentiable ops from the same saved tensors instead, so higher derivatives are
torch's and never silently missing.

The losses run fastact's fused value-and-gradient pass in the forward (only when an input
needs a gradient) and keep the gradient; the backward scales it by the upstream gradient
(for ``reduction='none'`` element by element; where an argument was broadcast against the
others, that case recomputes the gradient with torch). Targets, weights and other
non-prediction arguments get no gradient from fastact: when one of them requires grad, the
call is torch's.

What the Functions take: CPU tensors of float32 or float64. Anything else (CUDA tensors,
float16, bfloat16, sparse tensors) is computed by torch's own function with the same
arguments, so a model keeps working on any input, and so does everything while
torch.compile or torch.jit.trace records. The element-wise functions keep a dense input's
layout (channels_last, a transpose: the output and the input gradient are allocated like
the input, as torch's); other strided inputs are copied (in place on them is torch's).
"""

from __future__ import annotations

import ctypes
import inspect
import sys
import warnings
from typing import Any

import numpy as np
import torch
import torch.nn.functional as TF

from fastact import activations as A
from fastact import losses as L
from fastact._core.jit import env_off
from fastact._core.threads import num_threads
from fastact._core.torch_pool import address_launch, pool_threads
from fastact.host.elementwise import address_kernels
from fastact.host.elementwise import kernels as host_kernels
from fastact.host.launch import SPLIT_ALIGN
from fastact.kernels.activations import ACTIVATIONS, GELU
from fastact.kernels.elementwise import REQUIRED
from fastact.kernels.elementwise import Elementwise as Spec
from fastact.kernels.losses import LOSSES

__all__: list[str] = ["Elementwise", "Loss", "supported", "ACTIVATION_FUNCTIONS", "LOSS_FUNCTIONS"]

_F32, _F64 = torch.float32, torch.float64
_STRIDED = torch.strided

#: element-wise functions whose backward torch computes from the saved output
_SAVES_OUTPUT = frozenset({"sigmoid", "tanh", "relu"})
#: in-place forms whose backward torch computes from the output (``relu_``, ``leaky_relu_``,
#: ``elu_``, ...: their nodes save the result); every other in-place form saves a copy of the
#: input taken before the write (``hardtanh_``, ``relu6``, ``threshold_``, ``silu_``, ...),
#: connected to the graph, so a later in-place op on the output is fine there and double
#: backward differentiates through the copy
_INPLACE_SAVES_OUTPUT = frozenset({"relu", "leaky_relu", "elu", "celu", "selu"})


def supported(x: Any) -> bool:
    """``x`` is a tensor fastact's host kernels take: CPU, float32/float64, strided and not
    nested (a nested tensor of strided layout has no sizes), its memory holding its values
    (not a lazily negated view: ``torch._neg_view``), in eager code: not while torch.compile
    traces (Dynamo cannot see into numba's kernels: it guarded
    a kernel lookup by type only and ran one activation's kernel for another) or
    torch.jit.trace records (a kernel call is no traceable op), not inside a
    forward-mode AD level (the tangent was dropped) or a torch.func transform (vmap, grad,
    jvp: wrapped tensors). There torch's own function runs."""
    return (
        isinstance(x, torch.Tensor)
        and x.is_cpu
        and (x.dtype is _F32 or x.dtype is _F64)
        and x.layout is _STRIDED
        and not x.is_nested
        and not x.is_neg()
        and _forward_ad._current_level < 0
        and not _is_compiling()
        and not _is_tracing()
        and not _is_wrapped(x)
    )


_forward_ad = torch.autograd.forward_ad
_is_compiling = torch.compiler.is_compiling
_is_tracing = torch._C._is_tracing  # torch.jit.trace (numel() is a tensor there)
_is_wrapped = torch._C._functorch.is_functorch_wrapped_tensor


def _np(t: torch.Tensor) -> np.ndarray:
    """A zero-copy NumPy view (of the data only: autograd is not involved)."""
    return t.detach().numpy()


def _tensor(a: Any) -> torch.Tensor:
    return torch.from_numpy(a if isinstance(a, np.ndarray) else np.asarray(a))


def _grad_np(g: torch.Tensor) -> np.ndarray:
    """The upstream gradient as a C-contiguous NumPy array (``sum().backward()`` sends an
    expanded, stride-0 one; a lazily negated one is resolved)."""
    if not g.is_contiguous() or g.is_neg():
        g = g.resolve_neg().contiguous()
    return g.detach().numpy()


# ============================================================================= element-wise
#: outputs of at least this many bytes are advised into transparent huge pages (Linux):
#: glibc serves allocations from 32 MB (its largest dynamic mmap threshold) with fresh
#: mappings, which fault page by page on first touch; smaller ones come back from its heap
#: already mapped (measured: no faults per call at 4-16 MB), where the advice only costs
#: (relu/sigmoid forward at 1M float32: 10-20% slower with it)
HUGE_PAGES_FROM = 1 << 25
_HUGE = 1 << 21  # the x86-64/arm64 huge page


def _madvise() -> Any:
    """libc's ``madvise`` (Linux), or None: also when ``FASTACT_HUGE_PAGES`` turns the advice
    off (``0``, ``false``, ``no`` or ``off``, any case: :func:`fastact._core.jit.env_off`, as
    ``FASTACT_DISABLE_CACHE`` reads them)."""
    if not sys.platform.startswith("linux") or env_off("FASTACT_HUGE_PAGES"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn


_MADVISE = _madvise()
_MADV_HUGEPAGE = 14


def _empty_like(t: torch.Tensor, n: int) -> torch.Tensor:
    """``torch.empty_like(t)`` (torch's allocator, ``t``'s dtype and layout), its aligned
    interior advised into transparent huge pages when it spans ``HUGE_PAGES_FROM`` bytes or
    more (NumPy advises its own arrays from 4 MB). A fresh buffer of 64 MB then takes 32
    page faults instead of 16384: on the development VM (THP in ``madvise`` mode) a 4 KB
    fault costs ~2.5 us, and at 16M float32 elements the faults of the output were most of
    the time of torch's own relu (33 ms, of which ~9 ms the loop). Memory use is unchanged
    (the huge pages lie inside the allocation). ``FASTACT_HUGE_PAGES=0`` (``false``, ``no``,
    ``off``) turns it off; torch's own ``THP_MEM_ALLOC_ENABLE=1`` does the same for every
    torch allocation."""
    y = torch.empty_like(t)
    if n * t.element_size() >= HUGE_PAGES_FROM and _MADVISE is not None:
        a = y.data_ptr()
        start = (a + _HUGE - 1) & -_HUGE
        end = (a + n * t.element_size()) & -_HUGE
        if end > start:
            _MADVISE(start, end - start, _MADV_HUGEPAGE)  # advice only: errors are ignored
    return y


_DTYPE_NAME = {_F32: "float32", _F64: "float64"}
_NP_DTYPE = {_F32: np.dtype(np.float32), _F64: np.dtype(np.float64)}
_SERIAL: dict = {}


def _serial(op: Spec, kind: str, dtype: torch.dtype) -> Any:
    """The serial loop of ``kind`` over raw addresses of ``dtype`` elements."""
    k = _SERIAL.get((op, kind, dtype))
    if k is None:
        k = _SERIAL[op, kind, dtype] = address_kernels(op, kind, _DTYPE_NAME[dtype])[0]
    return k


#: the pool launchers over tensors' addresses: (spec, kind, dtype, floats) -> run
_POOL_RUNS: dict = {}


def _run(op: Spec, kind: str, tensors: tuple, n: int, kp: tuple) -> None:
    """``kind``'s loop of ``op`` over ``n`` > 0 elements of ``tensors`` (its arrays in the
    loop's order: C-contiguous, one dtype) with the parameters ``kp``: past the front end's
    crossover on torch's thread pool (:mod:`fastact._core.torch_pool`) by the tensors'
    addresses, else numba's parallel array loop on NumPy views (the parallel loops over
    addresses ran 1.2-1.35x slower than the array loops, gelu and silu at 1M), else the
    serial loop by address."""
    if n >= op.threshold:
        pool = pool_threads(n, op.threshold, True)
        if pool:
            key = (op, kind, tensors[0].dtype, len(kp))
            run = _POOL_RUNS.get(key)
            if run is None:
                ks = op.host.get(kind) or host_kernels(op, kind)
                dt = _NP_DTYPE[tensors[0].dtype]
                run = address_launch(ks[0], dt, len(tensors), len(kp), SPLIT_ALIGN)
                _POOL_RUNS[key] = run
            run(pool, n, *[t.data_ptr() for t in tensors], *kp)
            return
        if num_threads() > 1:
            ks = op.host.get(kind) or host_kernels(op, kind)
            ks[1](*[t.detach().numpy().reshape(-1) for t in tensors], *kp)
            return
    _serial(op, kind, tensors[0].dtype)(*[t.data_ptr() for t in tensors], n, *kp)


def _run_forward(op: Spec, x: torch.Tensor, y: torch.Tensor, n: int, kp: tuple) -> None:
    """``y = f(x)`` (``y is x``: in place) over ``n`` > 0 contiguous elements."""
    if y is x:
        _run(op, "inplace", (x,), n, kp)
    else:
        _run(op, "forward", (x, y), n, kp)


def _kernel_params(op: Spec, values: tuple, dtype: np.dtype) -> tuple:
    """The parameters as the loops take them (validated; TypeError/ValueError naming them)."""
    kp = A.scalar_params(op, values, dtype)
    if kp is None:
        raise TypeError(f"{op.name}: parameters must be numbers for fastact.torch")
    return kp


def _dense_order(t: torch.Tensor) -> Any:
    """None for a C-contiguous tensor; else the order of ``t``'s dimensions in memory (a
    permutation ``p`` with ``t.permute(p)`` C-contiguous: channels_last, a transpose) where
    ``t`` is dense and non-overlapping in another order, or False (strided, expanded)."""
    if t.is_contiguous():
        return None
    st = t.stride()
    perm = sorted(range(t.dim()), key=lambda i: -st[i])
    return perm if t.permute(perm).is_contiguous() else False


def _np_dtype(x: torch.Tensor) -> tuple:
    """The NumPy dtype of ``x`` and its :func:`_dense_order`, checked to be a tensor the
    loops over raw memory may take: a dense CPU tensor of float32 or float64 (C-contiguous
    or in another order of its dimensions) whose memory holds its values."""
    dt = _NP_DTYPE.get(x.dtype)
    perm = False
    if dt is not None and x.is_cpu and x.layout is _STRIDED and not x.is_neg():
        perm = _dense_order(x)
    if perm is False:
        raise TypeError(
            "fastact.torch.autograd.Elementwise takes a dense CPU tensor of float32 or "
            f"float64, got {x.dtype} on {x.device}"
        )
    return dt, perm


def _inplace_from_output(op: Spec, values: tuple) -> bool:
    """Whether the in-place form's backward works from the output, as torch's does (the
    parameters allow recovering the derivative from it), else from a copy of the input."""
    if op.name not in _INPLACE_SAVES_OUTPUT or op.scalars["grad_output"] is None:
        return False
    if op.check_output is not None:
        try:
            op.check_output(*values)
        except ValueError:  # e.g. a negative slope: the input cannot be recovered
            return False
    return True


def _input_copy(x: torch.Tensor) -> torch.Tensor:
    """A copy of ``x`` (its layout) recorded in the graph (torch's in-place ops save such a
    clone): a double backward differentiates through it."""
    c = _empty_like(x, x.numel())
    c.copy_(x)
    return c


def _c_order(t: torch.Tensor, perm: Any) -> torch.Tensor:
    return t if perm is None else t.permute(perm)


class Elementwise(torch.autograd.Function):
    """One element-wise activation of :data:`fastact.kernels.activations.ACTIVATIONS`:
    ``apply(x, op, values, inplace[, copy])`` with ``x`` a dense supported tensor
    (C-contiguous, or another order of its dimensions: channels_last) and ``values`` the
    activation's parameters; ``copy``, for an in-place form whose backward needs the input,
    a copy of ``x`` taken by the caller in the graph (without it, one is taken here, and
    double backward through it raises). The loops run on the tensors' memory by address
    (:func:`_run`: serial, or on torch's pool; NumPy views only for numba's own parallel
    loops, where torch's pool is not used); results are allocated by torch (its allocator,
    the input's memory format). ``ctx.state``: ``(op, kernel
    parameters, values, from_output, copied)``."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, op: Spec, values: tuple, inplace: bool, copy=None):
        dt, perm = _np_dtype(x)
        kp = _kernel_params(op, values, dt)
        n = x.numel()
        if inplace:
            from_output = copy is None and _inplace_from_output(op, values)
            copied = not from_output and copy is None
            if from_output:
                saved = x
            elif copy is not None:
                saved = copy
            else:  # the input, copied before it is overwritten (torch keeps it too)
                saved = _empty_like(x, n)
                saved.copy_(x.detach())
            if n:
                xc = _c_order(x, perm)
                _run_forward(op, xc, xc, n, kp)
            ctx.mark_dirty(x)
            ctx.state = (op, kp, values, from_output, copied)
            ctx.save_for_backward(saved)
            return x
        y = _empty_like(x, n)
        if n:
            _run_forward(op, _c_order(x, perm), _c_order(y, perm), n, kp)
        from_output = op.name in _SAVES_OUTPUT
        ctx.state = (op, kp, values, from_output, False)
        ctx.save_for_backward(y if from_output else x)
        return y

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor):
        (v,) = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: a backward torch can differentiate
            return _elementwise_graph(ctx, grad_output, v), None, None, None, None
        op, kp, _, from_output, _ = ctx.state
        perm = None if v.is_contiguous() else _dense_order(v)
        g = grad_output if perm is None else grad_output.permute(perm)
        if not g.is_contiguous() or g.dtype is not v.dtype or g.is_neg():
            # sum().backward() sends an expanded, stride-0 gradient
            g = g.to(v.dtype).resolve_neg().contiguous()
        n = v.numel()
        out = _empty_like(v, n)  # the input gradient in the input's layout
        if n:
            vc, oc = (v, out) if perm is None else (v.permute(perm), out.permute(perm))
            _run(op, "grad_output" if from_output else "grad", (g, vc, oc), n, kp)
        return out, None, None, None, None


def _direct_apply(fn: type) -> Any:
    """``fn.apply`` without torch's Python preamble (default-argument binding and a pytree
    walk for functorch's dead wrappers, ~3 us of a 1K-element call): the C entry point, used
    only while no functorch transform (vmap, grad, ...) is active; ``fn.apply`` otherwise
    and wherever this torch has no such entry point."""
    base = getattr(torch._C, "_FunctionBase", None)
    raw = getattr(base, "__dict__", {}).get("apply")
    active = getattr(torch._C, "_are_functorch_transforms_active", None)
    if raw is None or active is None:
        return fn.apply
    c_apply = raw.__get__(None, fn)
    py_apply = fn.apply

    def apply(*args: Any) -> Any:
        return py_apply(*args) if active() else c_apply(*args)

    return apply


_apply_elementwise = _direct_apply(Elementwise)


def _torch_fn(op: Spec) -> Any:
    """torch.nn.functional's function of an element-wise spec (parameters positional)."""
    if op.name == "gelu_tanh":
        return lambda x: TF.gelu(x, approximate="tanh")
    return getattr(TF, op.torch_name)


_SELU = (1.6732632423543772848170429916717, 1.0507009873554804934193349852946)


def _elementwise_graph(ctx: Any, g: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The input gradient as torch ops (differentiable): torch's function recomputed from the
    saved input, or torch's backward op of the saved output."""
    op, _, values, from_output, copied = ctx.state
    aten = torch.ops.aten
    if not from_output:
        if copied:
            raise RuntimeError(
                f"double backward through an in-place fastact {op.name} is not supported when "
                "Elementwise.apply is given no copy of its input (it was overwritten); use the "
                "functional wrappers or torch's function"
            )
        with torch.enable_grad():
            y = _torch_fn(op)(v, *values)
            return torch.autograd.grad(y, v, g, create_graph=True)[0]
    name = op.name
    if name == "sigmoid":
        return aten.sigmoid_backward(g, v)
    if name == "tanh":
        return aten.tanh_backward(g, v)
    if name in ("relu", "threshold"):
        return aten.threshold_backward(g, v, values[0] if values else 0.0)
    if name == "leaky_relu":
        return aten.leaky_relu_backward(g, v, values[0], True)
    if name in ("hardtanh", "relu6"):
        return aten.hardtanh_backward(g, v, *(values or (0.0, 6.0)))
    alpha, scale, input_scale = {
        "elu": lambda: (values[0], 1.0, 1.0),
        "celu": lambda: (values[0], 1.0, 1.0 / values[0]),
        "selu": lambda: (*_SELU, 1.0),
    }[name]()
    return aten.elu_backward(g, alpha, scale, input_scale, True, v)


def _check_leaf(x: torch.Tensor) -> None:
    """torch's refusal of an in-place write to a leaf that requires grad (before writing)."""
    if x.requires_grad and x.is_leaf and torch.is_grad_enabled():
        raise RuntimeError(
            "a leaf Variable that requires grad is being used in an in-place operation."
        )


def _elementwise(op: Spec, x: Any, values: tuple, inplace: bool, fallback: Any) -> Any:
    """Run ``op`` through :class:`Elementwise` when fastact takes ``x``, else torch's. Without
    autograd (no grad needed) the kernel runs directly, with no graph node. A dense input in
    another order of its dimensions (channels_last, a transpose) gets an output of its layout,
    as torch's (the kernel runs on the flat memory); other strided inputs are copied."""
    if inplace and x.is_inference() and not torch.is_inference_mode_enabled():
        return fallback(x, *values, inplace)  # torch's error: no in-place update of it here
    if supported(x):
        perm = None if x.is_contiguous() else _dense_order(x)
        if perm is not False:
            if not (x.requires_grad and torch.is_grad_enabled()):
                kp = A.scalar_params(op, values, _NP_DTYPE[x.dtype])
                n = x.numel()
                xc = x if perm is None else x.permute(perm)
                if inplace:
                    if kp is None:  # array parameters: the general path
                        A.forward(op, xc.detach().numpy(), values, None, True)
                    elif n:
                        _run_forward(op, xc, xc, n, kp)
                    torch.autograd.graph.increment_version(x)
                    return x
                y = _empty_like(x, n)
                yc = y if perm is None else y.permute(perm)
                if kp is None:
                    A.forward(op, xc.detach().numpy(), values, yc.numpy())
                elif n:
                    _run_forward(op, xc, yc, n, kp)
                return y
            if inplace:
                _check_leaf(x)
                copy = None if _inplace_from_output(op, values) else _input_copy(x)
                return _apply_elementwise(x, op, values, True, copy)
            return _apply_elementwise(x, op, values, False)
        if not inplace:
            return _apply_elementwise(x.contiguous(), op, values, False)
    return fallback(x, *values, inplace) if op.inplace else fallback(x, *values)


def _make_elementwise(op: Spec, namespace: dict) -> str:
    """``name(input, *params[, inplace])`` with torch.nn.functional's signature."""
    name = op.name
    ns: dict[str, Any] = {"_op": op, "_run": _elementwise, "_tf": getattr(TF, op.torch_name)}
    parts, names = [], []
    for i, (pname, default) in enumerate(op.params):
        parts.append(pname if default is REQUIRED else f"{pname}=_d{i}")
        ns[f"_d{i}"] = default
        names.append(pname)
    tup = "(" + "".join(f"{n}, " for n in names) + ")"
    psig = "".join(f", {p}" for p in parts)
    if op.inplace:
        src = (
            f"def {name}(input{psig}, inplace=False):\n"
            f"    return _run(_op, input, {tup}, bool(inplace), _tf)\n"
        )
    else:
        src = f"def {name}(input{psig}):\n    return _run(_op, input, {tup}, False, _tf)\n"
    exec(src, ns)
    fn = ns[name]
    fn.__doc__ = (
        f"``torch.nn.functional.{op.torch_name}`` computed by :func:`fastact.{name}` as an "
        "autograd Function (torch's for tensors fastact does not take)."
    )
    fn.__module__ = namespace["__name__"]
    namespace[name] = fn
    return name


#: public element-wise wrappers, created below
ACTIVATION_FUNCTIONS: list[str] = []
for _op in ACTIVATIONS.values():
    if _op.name not in ("gelu", "gelu_tanh"):
        ACTIVATION_FUNCTIONS.append(_make_elementwise(_op, globals()))
del _op


def gelu(input: Any, approximate: str = "none") -> Any:
    """``torch.nn.functional.gelu`` (``approximate='none'`` or ``'tanh'``) computed by
    :func:`fastact.gelu` as an autograd Function."""
    op = GELU.get(approximate) if isinstance(approximate, str) else None
    if op is None:
        raise ValueError(f"approximate must be 'none' or 'tanh', got {approximate!r}")
    if supported(input):
        x = input if _dense_order(input) is not False else input.contiguous()
        return _apply_elementwise(x, op, (), False)
    return TF.gelu(input, approximate=approximate)


def _inplace(fn_name: str) -> Any:
    fn = globals()[fn_name]

    def inplace_fn(input: Any, *args: Any) -> Any:
        return fn(input, *args, inplace=True)

    inplace_fn.__name__ = inplace_fn.__qualname__ = fn_name + "_"
    inplace_fn.__doc__ = f"In-place :func:`{fn_name}` (``inplace=True``)."
    return inplace_fn


for _name in list(ACTIVATION_FUNCTIONS):
    if ACTIVATIONS[_name].inplace:
        globals()[_name + "_"] = _inplace(_name)
        ACTIVATION_FUNCTIONS.append(_name + "_")
del _name
ACTIVATION_FUNCTIONS.append("gelu")


# ============================================================================= along an axis
def _recompute(fn: Any, saved: tuple, grad_output: torch.Tensor, want: tuple) -> tuple:
    """The gradients (where ``want``) of torch's ``fn`` at the saved inputs: with
    ``create_graph=True`` a differentiable expression of the graph-connected inputs, else of
    detached copies."""
    create = torch.is_grad_enabled()
    with torch.enable_grad():
        if not create:
            saved = tuple(
                t.detach().requires_grad_(bool(w)) for t, w in zip(saved, want, strict=True)
            )
        y = fn(*saved)
        wanted = [t for t, w in zip(saved, want, strict=True) if w]
        got = iter(torch.autograd.grad(y, wanted, grad_output, create_graph=create))
    return tuple(next(got) if w else None for w in want)


class Softmax(torch.autograd.Function):
    """softmax (``log=False, sign=1``), log_softmax (``log=True``), softmin (``sign=-1``)
    along ``dim``; the backward works from the saved output, as torch's."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, dim: int, log: bool, sign: int):
        f = A.log_softmax if log else (A.softmin if sign < 0 else A.softmax)
        y = _tensor(f(_np(x), dim))
        ctx.dim, ctx.log, ctx.sign = dim, log, sign
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor):
        (y,) = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: torch's differentiable backward
            if ctx.log:
                return (
                    torch._log_softmax_backward_data(grad_output, y, ctx.dim, y.dtype),
                    None,
                    None,
                    None,
                )
            gx = torch._softmax_backward_data(grad_output, y, ctx.dim, y.dtype)
            return (-gx if ctx.sign < 0 else gx), None, None, None
        f = (
            A.log_softmax_backward
            if ctx.log
            else (A.softmin_backward if ctx.sign < 0 else A.softmax_backward)
        )
        res = f(_grad_np(grad_output), dim=ctx.dim, output=_np(y))
        return _tensor(res), None, None, None


def _implicit_dim(name: str, ndim: int, stacklevel: int) -> int:
    warnings.warn(
        f"Implicit dimension choice for {name} has been deprecated. Change the call to "
        "include dim=X as an argument.",
        UserWarning,
        stacklevel=stacklevel,
    )
    return 0 if ndim in (0, 1, 3) else 1


def _softmax(name, input, dim, stacklevel, dtype, log, sign):
    if dim is None:
        dim = _implicit_dim(name, input.dim(), stacklevel + 1)
    if dtype is not None:
        input = input.to(dtype)
    if supported(input):
        return Softmax.apply(input, dim, log, sign)
    return getattr(TF, name)(input, dim)


def softmax(input: Any, dim: int | None = None, _stacklevel: int = 3, dtype: Any = None) -> Any:
    """``torch.nn.functional.softmax`` by :func:`fastact.softmax`; dtype= casts first."""
    return _softmax("softmax", input, dim, _stacklevel, dtype, False, 1)


def log_softmax(input: Any, dim: int | None = None, _stacklevel: int = 3, dtype: Any = None) -> Any:
    """``torch.nn.functional.log_softmax`` by :func:`fastact.log_softmax`."""
    return _softmax("log_softmax", input, dim, _stacklevel, dtype, True, 1)


def softmin(input: Any, dim: int | None = None, _stacklevel: int = 3, dtype: Any = None) -> Any:
    """``torch.nn.functional.softmin`` by :func:`fastact.softmin`."""
    return _softmax("softmin", input, dim, _stacklevel, dtype, False, -1)


class GLU(torch.autograd.Function):
    """glu along ``dim``: ``a sigmoid(b)`` of the two halves."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, dim: int):
        ctx.dim = dim
        ctx.save_for_backward(x)
        return _tensor(A.glu(_np(x), dim))

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor):
        (x,) = ctx.saved_tensors
        if torch.is_grad_enabled():
            fn = lambda t: TF.glu(t, ctx.dim)  # noqa: E731
            return _recompute(fn, (x,), grad_output, ctx.needs_input_grad[:1])[0], None
        return _tensor(A.glu_backward(_grad_np(grad_output), _np(x), ctx.dim)), None


def glu(input: Any, dim: int = -1) -> Any:
    """``torch.nn.functional.glu`` by :func:`fastact.glu`."""
    if supported(input):
        return GLU.apply(input, dim)
    return TF.glu(input, dim)


class Maxout(torch.autograd.Function):
    """maxout: the maximum of each group of ``pieces`` channels along ``dim``."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, pieces: int, dim: int):
        ctx.pieces, ctx.dim = pieces, dim
        ctx.save_for_backward(x)
        return _tensor(A.maxout(_np(x), pieces, dim))

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor):
        (x,) = ctx.saved_tensors
        if torch.is_grad_enabled():
            fn = lambda t: _torch_maxout(t, ctx.pieces, ctx.dim)  # noqa: E731
            return _recompute(fn, (x,), grad_output, ctx.needs_input_grad[:1])[0], None, None
        g = A.maxout_backward(_grad_np(grad_output), _np(x), ctx.pieces, ctx.dim)
        return _tensor(g), None, None


def _torch_maxout(input: torch.Tensor, pieces: int, dim: int) -> torch.Tensor:
    d = dim % max(input.dim(), 1)
    shape = input.shape[:d] + (input.shape[d] // pieces, pieces) + input.shape[d + 1 :]
    # max, not amax: its gradient goes to the first maximum of a group (NaN: the first NaN),
    # as fastact's kernel routes it (amax splits it among tied entries)
    return input.reshape(shape).max(d + 1).values


def maxout(input: Any, pieces: int, dim: int = 1) -> Any:
    """:func:`fastact.maxout` (torch has no maxout: other tensors use ``amax`` of a view)."""
    if supported(input):
        return Maxout.apply(input, pieces, dim)
    return _torch_maxout(input, pieces, dim)


class PReLU(torch.autograd.Function):
    """prelu with a slope per channel (dim 1) or one slope; gradients for input and weight."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor):
        ctx.save_for_backward(x, weight)
        return _tensor(A.prelu(_np(x), _np(weight)))

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor):
        x, w = ctx.saved_tensors
        if torch.is_grad_enabled():
            return _recompute(TF.prelu, (x, w), grad_output, ctx.needs_input_grad)
        gi, gw = A.prelu_backward(_grad_np(grad_output), _np(x), _np(w))
        return _tensor(gi), _tensor(gw).reshape(w.shape)


def prelu(input: Any, weight: Any) -> Any:
    """``torch.nn.functional.prelu`` by :func:`fastact.prelu`."""
    if supported(input) and supported(weight) and weight.dtype is input.dtype and input.dim():
        return PReLU.apply(input, weight)
    return TF.prelu(input, weight)


def _rrelu_train(x: torch.Tensor, lower: float, upper: float, inplace: bool) -> tuple:
    """``(y, noise)`` of rrelu in training mode (``y`` is ``x`` in place), the generator keyed
    from torch's."""
    key = int(torch.randint(0, 2**62, (1,)).item())
    y, noise = A.rrelu(_np(x), lower, upper, True, inplace, generator=key, return_noise=True)
    return (x if inplace else _tensor(y)), _tensor(noise)


class RReLU(torch.autograd.Function):
    """rrelu in training mode: a slope from U(lower, upper) per element x <= 0 (fastact's
    counter-based generator, keyed from torch's generator), saved for the backward with the
    input (the output in place), as torch's node saves them: a ``create_graph=True`` backward
    is torch's ``rrelu_with_noise_backward`` of them, connected to the input."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, lower: float, upper: float, inplace: bool):
        y, noise = _rrelu_train(x, lower, upper, inplace)
        ctx.state = (lower, upper, inplace)
        if inplace:
            ctx.mark_dirty(x)
        ctx.save_for_backward(noise, x)
        return y

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor):
        noise, x = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: torch's op (zero derivative in x)
            lower, upper, inplace = ctx.state
            gx = torch.ops.aten.rrelu_with_noise_backward(
                grad_output, x, noise, lower, upper, True, inplace
            )
            return gx, None, None, None
        return grad_output * noise, None, None, None


def rrelu(
    input: Any,
    lower: float = 1.0 / 8,
    upper: float = 1.0 / 3,
    training: bool = False,
    inplace: bool = False,
) -> Any:
    """``torch.nn.functional.rrelu``: in training a random slope per element (fastact's
    generator keyed from torch's, so ``torch.manual_seed`` reproduces it), in eval
    leaky_relu with the slope ``(lower + upper) / 2`` as torch computes it."""
    if not training:
        return leaky_relu(input, (lower + upper) / 2, inplace)  # noqa: F821 (made above)
    if inplace and input.is_inference() and not torch.is_inference_mode_enabled():
        raise RuntimeError(  # torch's error (torch's rrelu_ writes first), nothing written
            "Inplace update to inference tensor outside InferenceMode is not allowed. You can "
            "make a clone to get a normal tensor before doing inplace update."
        )
    if supported(input) and (input.is_contiguous() or not inplace):
        if not (input.requires_grad and torch.is_grad_enabled()):  # no graph node
            y = _rrelu_train(input, float(lower), float(upper), bool(inplace))[0]
            if inplace:
                torch.autograd.graph.increment_version(input)
            return y
        if inplace:
            _check_leaf(input)
        return RReLU.apply(input, float(lower), float(upper), bool(inplace))
    return TF.rrelu(input, lower, upper, True, inplace)


def rrelu_(input: Any, lower: float = 1.0 / 8, upper: float = 1.0 / 3, training: bool = False):
    """In-place :func:`rrelu`."""
    return rrelu(input, lower, upper, training, True)


ACTIVATION_FUNCTIONS += ["softmax", "log_softmax", "softmin", "glu", "maxout", "prelu", "rrelu",
                         "rrelu_"]  # fmt: skip


# ============================================================================= losses
class Loss(torch.autograd.Function):
    """One loss of :data:`fastact.kernels.losses.LOSSES`: ``apply(name, call, *inputs)``
    with ``inputs`` its differentiable tensors (in the order of the gradients fastact
    returns) and ``call(*inputs, return_grad)`` the fastact call on their detached values.
    The forward runs the fused value-and-gradient pass when an input needs a gradient."""

    @staticmethod
    def forward(ctx: Any, name: str, call: Any, *inputs: torch.Tensor):
        want = any(ctx.needs_input_grad[2:])
        res = call(*(t.detach() for t in inputs), return_grad=want)
        if not want:
            ctx.grads = ()
            return _as_tensor(res, inputs[0])
        loss, grads = res
        loss = _as_tensor(loss, inputs[0])
        ctx.name, ctx.loss_shape, ctx.call, ctx.n = name, tuple(loss.shape), call, len(inputs)
        # the gradients, and the inputs (as torch's losses save them) for a torch backward
        grads = tuple(_as_tensor(g, t) for g, t in zip(grads, inputs, strict=True))
        ctx.save_for_backward(*grads, *inputs)
        return loss

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor):
        saved = ctx.saved_tensors
        grads, inputs = saved[: ctx.n], saved[ctx.n :]
        if torch.is_grad_enabled():  # create_graph=True: torch's differentiable gradients
            return (None, None, *_torch_grads(ctx, inputs, grad_output))
        out = [None, None]
        if grad_output.dim() == 0:
            # new tensors also for grad_output = 1: the saved ones handed out were changed
            # by the caller (an in-place hook, .data) under a later backward of the graph
            out += [g * grad_output for g in grads]
            return tuple(out)
        for g in grads:
            s = _scale_none(g, grad_output, ctx.loss_shape)
            if s is None:
                return (None, None, *_torch_grads(ctx, inputs, grad_output))
            out.append(s)
        return tuple(out)


_apply_loss = _direct_apply(Loss)


def _as_tensor(v: Any, like: torch.Tensor) -> torch.Tensor:
    """A loss or gradient as a tensor of ``like``'s dtype (NumPy scalars from a float var)."""
    if isinstance(v, torch.Tensor):
        return v
    return torch.as_tensor(np.asarray(v), dtype=like.dtype)


def _scale_none(g: torch.Tensor, go: torch.Tensor, loss_shape: tuple) -> torch.Tensor | None:
    """The gradient of ``sum(go * loss)`` from the gradient ``g`` of ``sum(loss)`` for an
    unreduced loss, where each gradient element belongs to one loss element; None where an
    argument was broadcast (its gradient was summed over loss elements)."""
    gs = tuple(g.shape)
    if gs == loss_shape:
        return g * go
    if len(gs) == len(loss_shape) + 1:
        if gs[:1] + gs[2:] == loss_shape:  # the class axis 1 (cross_entropy, nll_loss)
            return g * go.unsqueeze(1) if go.dim() else g * go
        if gs[:-1] == loss_shape:  # rows of the last axis (cosine, triplet, multilabel)
            return g * go.unsqueeze(-1)
    return None


def _torch_grads(ctx: Any, inputs: tuple, grad_output: torch.Tensor) -> tuple:
    """The input gradients computed by torch's loss at the saved inputs: for
    ``create_graph=True`` (connected to the graph) and for an unreduced loss whose arguments
    were broadcast (fastact's gradient is summed over loss elements)."""
    fn = lambda *xs: ctx.call(*xs, torch_fn=True)  # noqa: E731
    return _recompute(fn, inputs, grad_output, ctx.needs_input_grad[2:])


#: The losses whose integer target holds class indices.
_CLASS_INDEX_LOSSES = frozenset({"cross_entropy", "nll_loss"})


def _index_target_refused(t: Any, x: torch.Tensor) -> bool:
    """Whether torch refuses ``t`` as the class indices of a cross_entropy / nll_loss of
    ``x``: an integer (or bool) tensor other than int64, or uint8 with spatial dimensions
    (torch: "expected target dtype to be Long or Byte", "expected scalar type Long"). Such a
    call goes to torch's own loss, for its error: fastact.losses takes any integer dtype, the
    twin is a drop-in."""
    if not isinstance(t, torch.Tensor) or t.is_floating_point() or t.is_complex():
        return False
    return t.dtype != torch.int64 and (t.dtype != torch.uint8 or x.dim() > 2)


def _loss_call(spec: Any, fn: Any, tfn: Any, params: tuple, a: dict) -> Any:
    """The body of the functional loss ``spec.name`` for the call's arguments ``a`` (name ->
    value, every parameter of ``params``): fastact's autograd Function when the tensors are
    ones fastact takes, else torch's own loss."""
    diff = spec.inputs
    # the differentiable arguments given as tensors (gaussian_nll's var may be a float)
    names = [n for n in diff if isinstance(a[n], torch.Tensor)]
    inputs = [a[n] for n in names]
    ours = (
        bool(inputs)
        and all(supported(t) for t in inputs)
        and len({t.dtype for t in inputs}) == 1
        and all(
            not isinstance(a[n], torch.Tensor) or (not a[n].requires_grad and a[n].is_cpu)
            for n in params
            if n not in names
        )
    )
    t = a.get("target")
    if not ours or (spec.name in _CLASS_INDEX_LOSSES and _index_target_refused(t, a["input"])):
        return tfn(**a)
    if (
        spec.promotes
        and isinstance(t, torch.Tensor)
        and t.is_floating_point()
        and t.dtype != inputs[0].dtype
    ):
        # torch promotes the prediction with a wider float target: cast the inputs
        # (differentiably)
        wide = torch.promote_types(inputs[0].dtype, t.dtype)
        if wide != inputs[0].dtype:
            if not supported(torch.empty(0, dtype=wide)):
                return tfn(**a)
            inputs = [x.to(wide) for x in inputs]
    fixed = {n: a[n] for n in params if n not in names}
    pick = [diff.index(n) for n in names]
    warned = _warnings(spec.name, a)

    def call(*xs: Any, return_grad: bool = False, torch_fn: bool = False) -> Any:
        kw = dict(fixed, **dict(zip(names, xs, strict=True)))
        if torch_fn:
            return tfn(**kw)
        # (fastact's loss runs on the tensors' NumPy views: fastact.losses._on_tensor_views)
        if warned:  # the plain call repeats the warnings given from the caller's line
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = fn(**kw, return_grad=return_grad)
        else:
            res = fn(**kw, return_grad=return_grad)
        if not return_grad:
            return res
        loss, grads = res
        grads = grads if isinstance(grads, tuple) else (grads,)
        return loss, tuple(grads[i] for i in pick)

    loss = _apply_loss(spec.name, call, *inputs)
    if (
        spec.name == "binary_cross_entropy_with_logits"
        and isinstance(t, torch.Tensor)
        and t.is_floating_point()
        and t.dtype != loss.dtype
    ):
        # torch's loss has the target's dtype (a float64 input, a float32 target: float32);
        # a differentiable cast, the input's gradient keeps the input's dtype
        loss = loss.to(t.dtype)
    return loss


def _make_loss(spec: Any, namespace: dict) -> str:
    """``name(...)`` with torch.nn.functional's signature (fastact.losses' without
    return_grad/grad_out), generated as a plain function: binding the arguments with
    ``inspect.Signature.bind`` cost ~12 us a call."""
    fn = getattr(L, spec.name)
    tfn = getattr(TF, spec.name)
    sig = inspect.signature(fn)
    params = [p for n, p in sig.parameters.items() if n not in ("return_grad", "grad_out")]
    wsig = sig.replace(parameters=params)
    names = tuple(p.name for p in params)
    defaults = {f"_d{i}": p.default for i, p in enumerate(params) if p.default is not p.empty}
    parts, kw_only = [], False
    for i, p in enumerate(params):
        if p.kind is p.KEYWORD_ONLY and not kw_only:
            parts.append("*")
            kw_only = True
        parts.append(p.name if p.default is p.empty else f"{p.name}=_d{i}")
    args = ", ".join(f"{n!r}: {n}" for n in names)
    src = (
        f"def {spec.name}({', '.join(parts)}):\n"
        f"    return _body(_spec, _fn, _tfn, _params, {{{args}}})\n"
    )
    ns = {"_body": _loss_call, "_spec": spec, "_fn": fn, "_tfn": tfn, "_params": names, **defaults}
    exec(src, ns)  # noqa: S102 (a signature from fastact's own functions)
    wrapper = ns[spec.name]
    wrapper.__signature__ = wsig  # type: ignore[attr-defined]
    wrapper.__qualname__ = spec.name
    wrapper.__module__ = namespace["__name__"]
    wrapper.__doc__ = (
        f"``torch.nn.functional.{spec.name}`` computed by :func:`fastact.losses.{spec.name}` "
        "(value and gradient in one pass) as an autograd Function; torch's own call for "
        "tensors fastact does not take or when a target/weight requires grad."
    )
    namespace[spec.name] = wrapper
    return spec.name


def _warnings(name: str, a: dict) -> bool:
    """torch's warnings of a loss call (deprecated arguments, broadcast targets, kl_div's
    'mean'), raised at the caller's line; whether any was (fastact's plain call then warns
    the same, and is silenced)."""
    level = 4  # the caller of the functional wrapper (_warnings, _loss_call, the wrapper, it)
    warned = False
    if a.get("size_average") is not None or a.get("reduce") is not None:
        sa = True if a.get("size_average") is None else bool(a["size_average"])
        rd = True if a.get("reduce") is None else bool(a["reduce"])
        red = "mean" if (sa and rd) else ("sum" if rd else "none")
        warnings.warn(
            f"size_average and reduce args will be deprecated, please use reduction='{red}' "
            "instead.",
            UserWarning,
            stacklevel=level,
        )
        warned = True
    x, t = a.get("input"), a.get("target")
    if (
        name in ("mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss")
        and isinstance(t, torch.Tensor)
        and t.shape != x.shape
    ):
        warnings.warn(
            f"Using a target size ({t.shape}) that is different to the input size "
            f"({x.shape}). This will likely lead to incorrect results due to broadcasting. "
            "Please ensure they have the same size.",
            UserWarning,
            stacklevel=level,
        )
        warned = True
    if name == "kl_div" and a.get("reduction") == "mean" and a.get("size_average") is None:
        warnings.warn(
            "reduction: 'mean' divides the total loss by both the batch size and the support "
            "size.'batchmean' divides only by the batch size, and aligns with the KL div math "
            "definition.'mean' will be changed to behave the same as 'batchmean' in the next "
            "major release.",
            UserWarning,
            stacklevel=level,
        )
        warned = True
    return warned


LOSS_FUNCTIONS: list[str] = [_make_loss(spec, globals()) for spec in LOSSES.values()]

__all__ += ACTIVATION_FUNCTIONS + LOSS_FUNCTIONS + ["Softmax", "GLU", "Maxout", "PReLU", "RReLU"]
