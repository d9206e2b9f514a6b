"""The element-wise spec and its loop templates: what an element-wise function computes.

An :class:`Elementwise` holds an activation's three jitted scalar functions

* ``forward(x, *p)``           the value,
* ``grad(g, x, *p)``           ``g * f'(x)``, the gradient from the input,
* ``grad_output(g, y, *p)``    the same gradient written with the output ``y = f(x)``
  (optional: only where the derivative is a function of the output),

its parameters (names and torch's defaults), their checks and its documentation. It computes
nothing itself: the host executor (:mod:`fastact.host`) turns each scalar into serial and
parallel loops from the templates below, the CUDA executor into grid-stride kernels, and the
front end (:mod:`fastact.activations`) into the public functions.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from llvmlite import ir
from numba import carray, prange, types
from numba.extending import intrinsic, overload
from numba.np.numpy_support import as_dtype

from fastact._core.arrays import scalar_param
from fastact._core.stream import STREAM_PIECE_BYTES, prefetch_ahead, streamed
from fastact._core.thresholds import PARALLEL_THRESHOLD, THRESHOLDS

__all__ = [
    "Elementwise",
    "FINITE_MAX",
    "MAP_LOOPS",
    "REQUIRED",
    "like_dtype",
    "map_loop",
    "map_inplace_loop",
    "map2_loop",
    "map2_split_loop",
    "map_split_loop",
    "map_inplace_split_loop",
    "SPLIT_BLOCK",
    "FORWARD_SPLIT_BLOCK",
    "map3_loop",
    "map4_loop",
    "map5_loop",
    "ADDRESS_LOOPS",
    "f32_at",
    "f64_at",
]

#: the kinds of loop of an element-wise function
_KINDS = ("forward", "inplace", "grad", "grad_output")

REQUIRED = object()  # marks a parameter without a default (torch's threshold(x, threshold, value))


class Elementwise:
    """The spec of an element-wise function with its gradient (see the module docstring).

    ``prepare(dtype, *params)``: checks (and may transform) the parameters cast to the
    compute dtype; ``check_output(*params)``: checks that the gradient can be computed from
    the output with these parameters. ``threshold``: the serial/parallel crossover in
    elements (the measured one from :mod:`fastact._core.thresholds` when not given).
    ``host`` and ``cuda``: per-executor caches of compiled kernels, filled lazily by them.
    """

    def __init__(
        self,
        name: str,
        forward: Callable,
        grad: Callable,
        grad_output: Callable | None = None,
        params: tuple[tuple[str, Any], ...] = (),
        inplace: bool = False,
        prepare: Callable | None = None,
        check_output: Callable | None = None,
        threshold: int | None = None,
        doc: str = "",
        torch_name: str | None = None,
        arity: int = 1,
        cache: bool | None = None,
        split: dict[str, tuple[Callable, Callable]] | None = None,
        stream: bool | tuple[str, ...] = True,
    ) -> None:
        self.name = name
        self.scalars = {"forward": forward, "grad": grad, "grad_output": grad_output}
        self.params = params
        self.param_names = tuple(p for p, _ in params)
        self.inplace = inplace
        self.prepare = prepare
        self.check_output = check_output
        if threshold is None:
            threshold = THRESHOLDS.get(name, PARALLEL_THRESHOLD)
        self.threshold = threshold
        self.doc = doc
        self.torch_name = torch_name or name
        #: array inputs of ``forward`` (1 for activations; a user's ``fastact.elementwise``
        #: function of several arrays has more, see :data:`MAP_LOOPS`)
        self.arity = arity
        #: disk cache of the host loops (None: fastact's rule, False: compiled in memory)
        self.cache = cache
        #: kind -> (near, wide) for the host loops' per-block fix-up (:func:`map2_split_loop`;
        #: ``"forward"`` also for the in-place loop: :func:`map_split_loop`,
        #: :func:`map_inplace_split_loop`; a third item ``"float32"`` or ``"float64"`` splits
        #: that dtype only, the other runs ``forward`` on every element):
        #: ``wide(*args)`` equals the scalar of ``kind`` wherever ``near(*args)`` is false and
        #: costs less (it leaves out a narrow band where the scalar takes an accurate form)
        self.split = dict(split or {})
        #: the kinds whose host loops stream arrays of STREAM_MIN_BYTES and more in pieces
        #: with software prefetch (:mod:`fastact._core.stream`; ``True``: every kind,
        #: ``False``: none): not for the cheapest bodies, which the hint slowed down
        self.stream = frozenset(_KINDS if stream is True else (stream or ()))
        self.host: dict[str, Any] = {}  # kind -> (serial, parallel) compiled loops
        self.cuda: dict[Any, Any] = {}  # compiled device kernels
        self.param_cache: dict[tuple, tuple] = {}  # converted Python-number parameters
        self.param_memo: tuple = (None, (), ())  # (dtype, values, converted) of the last call

    def __repr__(self) -> str:
        return f"Elementwise({self.name!r}, params={self.param_names})"

    def kernel_params(self, values: tuple, dtype: np.dtype) -> tuple:
        """The user's parameter values as ``dtype`` scalars (or arrays, which broadcast),
        checked by the spec's ``prepare``; TypeError/ValueError naming the parameter."""
        if not values and self.prepare is None:
            return ()
        t = dtype.type
        top = FINITE_MAX[dtype]
        cast = tuple(
            [
                t(v) if type(v) is float and -top <= v <= top else _overflowing(v, n, dtype)
                for v, n in zip(values, self.param_names, strict=False)
            ]
        )
        if self.prepare is not None:  # the spec's own checks (and messages) first
            cast = self.prepare(dtype, *cast)
        _check_no_overflow(values, self.param_names, dtype)
        return cast


def _overflowing(v: Any, name: str, dtype: np.dtype) -> Any:
    """:func:`scalar_param`, without NumPy's overflow warning for a Python float beyond
    ``dtype``'s range (a finite one: :func:`_check_no_overflow` refuses it after the spec's
    own checks; infinities and NaN pass as they are)."""
    if type(v) is float:
        with np.errstate(over="ignore"):
            return dtype.type(v)
    return scalar_param(v, name, dtype)


def _check_no_overflow(values: tuple, names: tuple, dtype: np.dtype) -> None:
    """ValueError for a finite real parameter beyond ``dtype``'s range (torch: "value cannot
    be converted to type float without overflow"; the cast would make it infinite)."""
    top = FINITE_MAX[dtype]
    for v, n in zip(values, names, strict=False):
        if (
            isinstance(v, (float, int, np.floating, np.integer))
            and not isinstance(v, (bool, np.bool_))
            and top < abs(float(v)) < math.inf
        ):
            raise ValueError(f"{n} = {v} cannot be converted to {dtype.name} without overflow")
        if isinstance(v, np.ndarray) and v.dtype.kind == "f" and v.dtype.itemsize > dtype.itemsize:
            a = np.abs(v)
            if np.any((a > top) & (a < math.inf)):
                raise ValueError(
                    f"{n} has finite values beyond {dtype.name}'s range "
                    f"(largest {float(a[a < math.inf].max())!r}): they cannot be converted "
                    "without overflow"
                )


#: the largest finite value of each float dtype (a parameter beyond it is refused)
#: the largest finite value of each float dtype (parameters beyond it are refused)
FINITE_MAX = {np.dtype(d): float(np.finfo(d).max) for d in (np.float16, np.float32, np.float64)}


# ------------------------------------------------------------------------- loop templates
def like_dtype(arr, params):
    """``params`` (a tuple of numbers) cast to ``arr``'s dtype, inside jitted code.

    The loops take their scalar parameters as Python floats, whose dispatch is a fast C path
    in numba (NumPy scalars cost about a microsecond each), and cast them here once, outside
    the loop, with the same rounding as ``dtype.type(value)``."""
    raise NotImplementedError("like_dtype is only callable from jitted code")


@overload(like_dtype, jit_options={"error_model": "numpy"})
def _like_dtype_impl(arr, params):
    cast = as_dtype(arr.dtype).type
    src = (
        "def impl(arr, params):\n    return ("
        + "".join(f"cast(params[{i}]), " for i in range(len(params)))
        + ")\n"
    )
    ns: dict[str, Any] = {"cast": cast}
    exec(src, ns)
    return ns["impl"]


def map_loop(x, out, *p):
    """out[i] = f(x[i], *p) (``f`` is bound per function and kind); from STREAM_MIN_BYTES
    over pieces of STREAM_PIECE_BYTES, each after prefetching ``x`` ahead
    (:mod:`fastact._core.stream`)."""
    q = like_dtype(x, p)
    n = x.shape[0]
    if not (stream and streamed(x)):  # noqa: F821  (bound by specialize)
        for i in prange(n):
            out[i] = f(x[i], *q)  # noqa: F821  (f is bound by specialize)
        return
    piece = STREAM_PIECE_BYTES // x.itemsize
    for j in prange((n + piece - 1) // piece):
        lo = j * piece
        prefetch_ahead(x, lo, piece)
        xb, ob = x[lo : lo + piece], out[lo : lo + piece]  # views: see map2_split_loop
        for i in range(ob.shape[0]):
            ob[i] = f(xb[i], *q)  # noqa: F821


@intrinsic
def stored(typingctx, v):
    """``v`` as a value LLVM cannot prove equal to the array element it came from
    (``llvm.canonicalize``: the identity, except that a signalling NaN becomes quiet; one
    multiplication by 1 on x86).

    In ``x[i] = f(x[i])``, a branch of ``f`` that returns its input (relu for x > 0,
    leaky_relu, threshold, hardshrink, elu...) stores the value just loaded; LLVM drops that
    store, and the vectorizer turns the remaining conditional store into a masked store
    (``vmaskmovps`` with AVX2, ``vmovups mem {k}`` with AVX-512), which AMD CPUs execute
    slowly: relu in place took 4-6x the time of relu out of place on Zen 3 and Zen 5. Storing
    ``stored(f(x[i]))`` keeps every store, and plain vector stores."""
    if not isinstance(v, types.Float):
        return None

    def codegen(context, builder, sig, args):
        ty = args[0].type
        fn = builder.module.declare_intrinsic("llvm.canonicalize", [ty], ir.FunctionType(ty, [ty]))
        return builder.call(fn, [args[0]])

    return v(v), codegen


def map_inplace_loop(x, *p):
    """x[i] = f(x[i], *p) on one array: with separate in and out arrays that are the same
    memory, LLVM's runtime overlap check fails and the loop runs scalar (3-5x slower for
    exp-based activations); :func:`stored` keeps the stores unconditional (no masked
    stores)."""
    q = like_dtype(x, p)
    n = x.shape[0]
    if not (stream and streamed(x)):  # noqa: F821
        for i in prange(n):
            x[i] = stored(f(x[i], *q))  # noqa: F821
        return
    piece = STREAM_PIECE_BYTES // x.itemsize
    for j in prange((n + piece - 1) // piece):
        lo = j * piece
        prefetch_ahead(x, lo, piece)
        xb = x[lo : lo + piece]
        for i in range(xb.shape[0]):
            xb[i] = stored(f(xb[i], *q))  # noqa: F821


def map2_loop(a, b, out, *p):
    """out[i] = f(a[i], b[i], *p): the gradients (``a`` the incoming gradient); streamed in
    pieces with prefetch from STREAM_MIN_BYTES, as :func:`map_loop`."""
    q = like_dtype(a, p)
    n = a.shape[0]
    if not (stream and streamed(a)):  # noqa: F821
        for i in prange(n):
            out[i] = f(a[i], b[i], *q)  # noqa: F821
        return
    piece = STREAM_PIECE_BYTES // a.itemsize
    for j in prange((n + piece - 1) // piece):
        lo = j * piece
        prefetch_ahead(a, lo, piece)
        prefetch_ahead(b, lo, piece)
        ab, bb, ob = a[lo : lo + piece], b[lo : lo + piece], out[lo : lo + piece]
        for i in range(ob.shape[0]):
            ob[i] = f(ab[i], bb[i], *q)  # noqa: F821


#: elements per block of :func:`map2_split_loop`
SPLIT_BLOCK = 64
#: elements per block of the forwards' split loops (:func:`map_split_loop`): their tails are
#: rarer than the gradients' root bands (gelu_tanh float32 below -4.5: 3.4e-6 of N(0, 1)
#: inputs) and the loop over a block costs less per element in longer blocks (gelu_tanh
#: float32, 2 threads, in one process: 256K 1.39x main with blocks of 64, 1.34x with 256,
#: 1.31x with 1024; 16M 1.06x / 1.02x / 1.00x, noisy)
FORWARD_SPLIT_BLOCK = 256


def map2_split_loop(a, b, out, *p):
    """out[i] = f(a[i], b[i], *p) with a cheaper ``wide`` where ``near`` is false: per block
    of SPLIT_BLOCK elements one vectorized pass stores ``wide`` and notes whether any element
    is ``near``; only then a scalar pass over the block stores ``f`` at those elements (rare:
    a narrow band, where ``f`` takes an accurate form that would cost every element a
    select). Where ``out`` overlaps ``a`` or ``b`` (the second pass could not read them),
    ``f`` for all elements."""
    q = like_dtype(a, p)
    n = a.shape[0]
    o0, o1 = out.ctypes.data, out.ctypes.data + n * out.itemsize
    a0, b0 = a.ctypes.data, b.ctypes.data
    if (o0 < a0 + n * a.itemsize and a0 < o1) or (o0 < b0 + n * b.itemsize and b0 < o1):
        for i in prange(n):
            out[i] = f(a[i], b[i], *q)  # noqa: F821  (f is bound by specialize)
    else:
        for j in prange((n + SPLIT_BLOCK - 1) // SPLIT_BLOCK):
            lo = j * SPLIT_BLOCK
            hi = min(lo + SPLIT_BLOCK, n)
            # views indexed from 0: with range(lo, hi) numba cannot prove the index >= 0, and
            # its wraparound select turns the vector loads and stores into gathers
            if stream and streamed(a):  # noqa: F821
                prefetch_ahead(a, lo, SPLIT_BLOCK)
                prefetch_ahead(b, lo, SPLIT_BLOCK)
            ab, bb, ob = a[lo:hi], b[lo:hi], out[lo:hi]
            hits = False
            for i in range(ob.shape[0]):
                v = bb[i]
                hits |= near(ab[i], v, *q)  # noqa: F821
                ob[i] = wide(ab[i], v, *q)  # noqa: F821
            if hits:
                for i in range(ob.shape[0]):
                    if near(ab[i], bb[i], *q):  # noqa: F821
                        ob[i] = f(ab[i], bb[i], *q)  # noqa: F821


def _float32_array(a):
    """Whether ``a`` holds float32 (a constant of the compiled code: jit code only)."""
    raise NotImplementedError("only callable from jitted code")


@overload(_float32_array, jit_options={"error_model": "numpy"})
def _float32_array_impl(a):
    value = a.dtype == types.float32
    return lambda a: value


def map_split_loop(x, out, *p):
    """out[i] = f(x[i], *p) with a cheaper ``wide`` where ``near`` is false: the forward's
    form of :func:`map2_split_loop` (per block of FORWARD_SPLIT_BLOCK elements a vectorized pass
    stores ``wide`` and notes whether any element is ``near``; then a scalar pass stores
    ``f`` at those). Where ``out`` overlaps ``x`` without being ``x`` itself, ``f`` for all
    elements (``x`` itself: :func:`map_inplace_split_loop`); also for a dtype the spec does
    not split (``split_f32``, ``split_f64``: a spec's split may be for one dtype only; blocks
    of 64 cost float64 gelu_tanh 27% at 16M)."""
    q = like_dtype(x, p)
    n = x.shape[0]
    o0, o1 = out.ctypes.data, out.ctypes.data + n * out.itemsize
    x0 = x.ctypes.data
    split = split_f32 if _float32_array(x) else split_f64  # noqa: F821  (bound by specialize)
    if (o0 < x0 + n * x.itemsize and x0 < o1) or not split:
        for i in prange(n):
            out[i] = f(x[i], *q)  # noqa: F821  (f is bound by specialize)
    else:
        for j in prange((n + FORWARD_SPLIT_BLOCK - 1) // FORWARD_SPLIT_BLOCK):
            lo = j * FORWARD_SPLIT_BLOCK
            hi = min(lo + FORWARD_SPLIT_BLOCK, n)
            if stream and streamed(x):  # noqa: F821
                prefetch_ahead(x, lo, FORWARD_SPLIT_BLOCK)
            xb, ob = x[lo:hi], out[lo:hi]  # views: see map2_split_loop
            hits = False
            for i in range(ob.shape[0]):
                v = xb[i]
                hits |= near(v, *q)  # noqa: F821
                ob[i] = wide(v, *q)  # noqa: F821
            if hits:
                for i in range(ob.shape[0]):
                    if near(xb[i], *q):  # noqa: F821
                        ob[i] = f(xb[i], *q)  # noqa: F821


def map_inplace_split_loop(x, *p):
    """x[i] = f(x[i], *p) in place with ``wide`` where ``near`` is false: per block of
    FORWARD_SPLIT_BLOCK elements a vectorized scan for ``near`` (the input is overwritten by the
    pass that follows, so it is read first), then ``wide`` over the block, or where the
    block holds a ``near`` element, ``f`` at those and ``wide`` at the others (the values
    of :func:`map_split_loop`)."""
    q = like_dtype(x, p)
    n = x.shape[0]
    if not (split_f32 if _float32_array(x) else split_f64):  # noqa: F821
        for i in prange(n):
            x[i] = stored(f(x[i], *q))  # noqa: F821
        return
    for j in prange((n + FORWARD_SPLIT_BLOCK - 1) // FORWARD_SPLIT_BLOCK):
        lo = j * FORWARD_SPLIT_BLOCK
        hi = min(lo + FORWARD_SPLIT_BLOCK, n)
        if stream and streamed(x):  # noqa: F821
            prefetch_ahead(x, lo, FORWARD_SPLIT_BLOCK)
        xb = x[lo:hi]
        hits = False
        for i in range(xb.shape[0]):
            hits |= near(xb[i], *q)  # noqa: F821
        if hits:  # the same values as out of place: f only at the near elements
            for i in range(xb.shape[0]):
                v = xb[i]
                xb[i] = stored(f(v, *q) if near(v, *q) else wide(v, *q))  # noqa: F821
        else:
            for i in range(xb.shape[0]):
                xb[i] = stored(wide(xb[i], *q))  # noqa: F821


def map3_loop(a, b, c, out, *p):
    """out[i] = f(a[i], b[i], c[i], *p)."""
    q = like_dtype(a, p)
    for i in prange(a.shape[0]):
        out[i] = f(a[i], b[i], c[i], *q)  # noqa: F821


def map4_loop(a, b, c, d, out, *p):
    """out[i] = f(a[i], b[i], c[i], d[i], *p)."""
    q = like_dtype(a, p)
    for i in prange(a.shape[0]):
        out[i] = f(a[i], b[i], c[i], d[i], *q)  # noqa: F821


def map5_loop(a, b, c, d, e, out, *p):
    """out[i] = f(a[i], b[i], c[i], d[i], e[i], *p)."""
    q = like_dtype(a, p)
    for i in prange(a.shape[0]):
        out[i] = f(a[i], b[i], c[i], d[i], e[i], *q)  # noqa: F821


#: The out-of-place loop template of a forward function of ``n`` array inputs.
MAP_LOOPS = {1: map_loop, 2: map2_loop, 3: map3_loop, 4: map4_loop, 5: map5_loop}


# ------------------------------------------------------------------- loops over addresses
def _typed_address(dtype: types.Float):
    """An intrinsic ``at(address)``: the integer ``address`` as a pointer to ``dtype``."""

    @intrinsic
    def at(typingctx, address):
        if not isinstance(address, types.Integer):
            return None

        def codegen(context, builder, sig, args):
            return builder.inttoptr(args[0], context.get_value_type(sig.return_type))

        return types.CPointer(dtype)(address), codegen

    return at


#: ``f32_at(address)``, ``f64_at(address)``: a raw address as a typed pointer, for
#: ``carray(f32_at(address), n)`` (the caller guarantees ``n`` contiguous elements there)
f32_at = _typed_address(types.float32)
f64_at = _typed_address(types.float64)


def address_loop(xa, oa, n, *p):
    """``loop`` (:func:`map_loop`, compiled serial or parallel, bound with ``at``) over ``n``
    contiguous elements at the addresses ``xa`` (input) and ``oa`` (output). Callers that
    hold tensors pass ``t.data_ptr()``: ~0.1 us instead of ~1.5 us for each NumPy view of a
    tensor, most of an autograd node's cost at 1K elements. (The arrays are handed to the
    array loop rather than looped over here: numba's parfor pass drops the stores of a
    prange loop into an array made by ``carray`` in the same function.)"""
    loop(carray(at(xa), n), carray(at(oa), n), *p)  # noqa: F821  (bound by specialize)


def address_inplace_loop(xa, n, *p):
    """:func:`map_inplace_loop` over ``n`` contiguous elements at the address ``xa``."""
    loop(carray(at(xa), n), *p)  # noqa: F821


def address2_loop(ga, va, oa, n, *p):
    """:func:`map2_loop` (a gradient) over ``n`` contiguous elements at three addresses."""
    loop(carray(at(ga), n), carray(at(va), n), carray(at(oa), n), *p)  # noqa: F821


#: The loop over addresses of each kind of an element-wise function of one input.
ADDRESS_LOOPS = {
    "forward": address_loop,
    "inplace": address_inplace_loop,
    "grad": address2_loop,
    "grad_output": address2_loop,
}
