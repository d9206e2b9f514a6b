"""``@fastact.elementwise``: a user's scalar function as a fused element-wise array function.

The decorated function is written for one element, with :mod:`fastact.scalar`'s cores and
ordinary arithmetic::

    @fastact.elementwise
    def prep(x):
        return gelu(leaky_relu(2 * x + 1, 0.1))

and the result behaves like fastact's own activations: one pass over memory, NumPy ufunc
casting and broadcasting between its arguments, float32 stays float32, any layout, ``out=``,
an in-place form (``prep.inplace(x)``), dask arrays (lazily, one task per block), device
arrays through the CUDA executor, the serial/parallel choice by size, fastact's vector width
and its disk cache. ``grad=`` (a scalar function of ``(g, *args)`` returning ``g * df/darg``,
one value per argument) gives ``prep.backward(grad_output, *args)``.

How a call runs: the front end here classifies the arguments (arrays or Python numbers) and
hands them to the executor owning them (:func:`fastact.host.elementwise.map_call`, or the CUDA
executor's ``map_call``); the executor settles dtypes and shapes and asks :meth:`_Scalar.spec`
for the :class:`~fastact.kernels.elementwise.Elementwise` spec of that argument pattern and
compute dtype, whose loops are the activations' templates (``map_loop`` ... ``map5_loop``)
with the user's function inlined.

Literals: numba types ``2 * x + 1`` and ``leaky_relu(x, 0.1)`` in float64 for a float32 ``x``.
The function is compiled once per compute dtype from a copy of its code whose number
constants (and number-valued closure cells and globals) are constants of that dtype, so a
float32 call computes in float32 (checked: a float64 result, or float64 arithmetic in the
compiled float32 function, warns once, naming the function).

Cache: the kernels are named after a hash of the function's code (nested code included),
its closure values, the values of the globals it reads (numbers, fastact's cores, and the
same, recursively, for plain Python or numba functions it calls), the compute dtype and the
argument pattern; fastact's cache folder (keyed on fastact's own sources) holds them, so an
edit of the function compiles anew and an unchanged function loads from disk in a new
process. A function reading other kinds of globals is compiled in memory.
"""

from __future__ import annotations

import dis
import hashlib
import importlib
import inspect
import keyword
import marshal
import math
import os
import re
import sys
import types
import warnings
from collections.abc import Callable
from typing import Any

import numba
import numpy as np
from numba.core import errors as nb_errors
from numba.core.dispatcher import Dispatcher

from fastact import host
from fastact._core.arrays import stacklevel_outside, written
from fastact._core.backend import device, on_device
from fastact._core.jit import ELEMENTWISE_FASTMATH, cache_dir, cache_disabled, jit
from fastact._core.math import erf, erfc, exp, expm1, log, log1p, tanh
from fastact._core.threads import num_threads
from fastact._core.thresholds import THRESHOLDS
from fastact.host.elementwise import kernels as _host_kernels
from fastact.host.launch import reraise_inner
from fastact.kernels.activations import ACTIVATIONS
from fastact.kernels.elementwise import FINITE_MAX, MAP_LOOPS, REQUIRED, Elementwise

__all__ = ["elementwise", "ElementwiseFunction", "ScalarMathWarning"]

_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)
_NB = {_F32: numba.float32, _F64: numba.float64}


class ScalarMathWarning(UserWarning):
    """A ``math``/NumPy scalar function in an element-wise function: a libm call per element
    (numba 0.68 has no SVML), which keeps the loop from vectorizing."""


#: math/NumPy functions a user may call, and their vectorizable fastact.scalar replacement.
_REPLACEMENTS = {
    "exp": "exp",
    "expm1": "expm1",
    "log": "log",
    "log1p": "log1p",
    "tanh": "tanh",
    "erf": "erf",
    "erfc": "erfc",
}
#: Scalar libm calls without a fastact.scalar replacement (also not vectorized).
_LIBM = frozenset(
    "sin cos tan asin acos atan atan2 sinh cosh asinh acosh atanh exp2 log2 log10 pow cbrt "
    "gamma lgamma power arcsin arccos arctan arctan2 arcsinh arccosh arctanh".split()
)
_CORES = {id(f) for f in (exp, expm1, log, log1p, tanh, erf, erfc)}

#: Serial/parallel crossover of a function calling fastact's scalar forms: the smallest
#: measured crossover among the activations it calls (transcendental ones cross earlier);
#: arithmetic only: the crossover of the memory-bound activations.
_OP_OF: dict[int, str] = {}
for _name, _op in ACTIVATIONS.items():
    for _f in _op.scalars.values():
        if _f is not None:
            _OP_OF[id(_f)] = _name
del _name, _op, _f
_CHEAP_THRESHOLD = THRESHOLDS["relu"]
_CORE_THRESHOLD = THRESHOLDS["sigmoid"]


# ============================================================================ code walking
def _codes(code: types.CodeType):
    """``code`` and the code objects nested in it (lambdas, comprehensions, inner defs)."""
    yield code
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            yield from _codes(c)


def _is_number(v: Any) -> bool:
    return type(v) is float or type(v) is int


def _typed_code(code: types.CodeType, cast: Callable, ints: bool) -> types.CodeType:
    """``code`` with its float (and, with ``ints``, int) constants replaced by ``cast(c)``."""
    consts = []
    for c in code.co_consts:
        if type(c) is float or (ints and type(c) is int):
            c = cast(c)
        elif isinstance(c, types.CodeType):
            c = _typed_code(c, cast, ints)
        consts.append(c)
    return code.replace(co_consts=tuple(consts))


def _globals_read(py: Callable) -> dict[str, Any]:
    """The globals (and builtins) ``py``'s code reads, by name, with their values."""
    glb = py.__globals__
    found: dict[str, Any] = {}
    for code in _codes(py.__code__):
        for n in code.co_names:
            if n in glb:
                found[n] = glb[n]
    return found


def _walk(py: Callable, seen: set[int] | None = None):
    """(name, value) of every global and closure value ``py`` reads, recursively through
    the plain Python and numba functions it calls (fastact's own are leaves)."""
    seen = set() if seen is None else seen
    if id(py) in seen:
        return
    seen.add(id(py))
    items = list(_globals_read(py).items())
    for cell, n in zip(py.__closure__ or (), py.__code__.co_freevars, strict=False):
        try:
            items.append((n, cell.cell_contents))
        except ValueError:  # an empty cell
            continue
    names = {n for c in _codes(py.__code__) for n in c.co_names}
    for n, v in list(items):
        if isinstance(v, types.ModuleType) and not _is_fastact(v) and v not in (math, np):
            # a helper reached as ``module.helper``: the attributes the code reads
            items += [(f"{n}.{a}", getattr(v, a)) for a in sorted(names) if hasattr(v, a)]
    for n, v in items:
        yield n, v
        inner = _user_function(v)
        if inner is not None:
            yield from _walk(inner, seen)


def _is_fastact(v: Any) -> bool:
    mod = getattr(getattr(v, "py_func", v), "__module__", None) or ""
    return mod == "fastact" or mod.startswith("fastact.")


def _user_function(v: Any) -> Callable | None:
    """The Python function behind ``v`` when it is a user's function or numba dispatcher."""
    if _is_fastact(v):
        return None
    if isinstance(v, Dispatcher):
        return v.py_func
    if isinstance(v, types.FunctionType):
        return v
    return None


def _cache_key(py: Callable, extra: str) -> tuple[str, bool]:
    """(hash of everything that decides ``py``'s compiled code, whether the hash covers it
    all so that the kernels may be cached on disk)."""
    h = hashlib.sha1(extra.encode())
    cacheable = True

    def code_hash(fn: Callable) -> None:
        h.update(marshal.dumps(fn.__code__))
        h.update(repr((fn.__defaults__, fn.__kwdefaults__)).encode())  # a helper's k=2.0

    code_hash(py)
    for n, v in _walk(py):
        h.update(n.encode())
        inner = _user_function(v)
        if inner is not None:
            code_hash(inner)
        elif isinstance(v, (bool, int, float, complex, str, bytes, type(None))):
            h.update(f"{type(v).__name__}:{v!r}".encode())
        elif isinstance(v, types.ModuleType):
            h.update(f"module:{v.__name__}".encode())
        elif _is_fastact(v):
            h.update(f"fastact:{getattr(v, '__qualname__', getattr(v, '__name__', ''))}".encode())
        elif isinstance(v, (np.ufunc, types.BuiltinFunctionType)) or (
            callable(v) and getattr(v, "__module__", "") in ("math", "numpy", "cmath")
        ):
            h.update(f"builtin:{getattr(v, '__module__', '')}.{v.__name__}".encode())
        elif isinstance(v, np.generic):
            h.update(f"{v.dtype}:{v!r}".encode())
        else:  # something whose value the hash cannot see: compile in memory
            cacheable = False
            h.update(f"id:{id(v)}".encode())
    return h.hexdigest()[:16], cacheable


def _libm_calls(py: Callable) -> list[str]:
    """The ``math``/NumPy scalar functions ``py`` (or a function it calls) reads."""
    found: list[str] = []

    def note(module: str, attr: str) -> None:
        name = f"{module}.{attr}"
        if name not in found:
            found.append(name)

    fns = [py] + [u for _, v in _walk(py) if (u := _user_function(v)) is not None]
    for fn in fns:
        names = {n for c in _codes(fn.__code__) for n in c.co_names}
        for n, v in _globals_read(fn).items():
            if v is math or v is np:
                for attr in sorted(names):
                    if attr in _REPLACEMENTS or attr in _LIBM:
                        note(v.__name__, attr)
            elif callable(v) and getattr(v, "__module__", None) in ("math", "numpy"):
                attr = getattr(v, "__name__", n)
                if attr in _REPLACEMENTS or attr in _LIBM:
                    note(v.__module__, attr)
            elif isinstance(v, np.ufunc) and v.__name__ in {*_REPLACEMENTS, *_LIBM}:
                note("numpy", v.__name__)
    return found


def _fastact_calls(py: Callable):
    """The fastact scalars ``py`` calls: an activation's name for each of its scalar forms,
    None for each math core (``exp``, ``log1p`` ...)."""
    for _, v in _walk(py):
        vals = [v]
        if isinstance(v, types.ModuleType) and v.__name__.startswith("fastact"):
            vals = list(vars(v).values())
        for u in vals:
            if isinstance(u, Dispatcher) and u.py_func.__module__ == "fastact.scalar":
                u = u.py_func.__globals__.get("_f", u)  # a form: the scalar it calls
            if id(u) in _OP_OF:
                yield _OP_OF[id(u)]
            elif id(u) in _CORES:
                yield None


#: The threshold of a function that may raise: its loops run on one thread (numba's parallel
#: loops lose an exception raised on a worker thread: the call returned with that thread's
#: share of the output unwritten; on the calling thread's share it came back as the error).
SERIAL_ONLY = sys.maxsize


def _may_raise(py: Callable) -> bool:
    """Whether ``py`` or a Python or numba function it calls holds a ``raise`` or ``assert``
    (fastact's own scalars raise nothing)."""
    fns = [py, *(u for _, v in _walk(py) if (u := _user_function(v)) is not None)]
    return any(
        ins.opname in ("RAISE_VARARGS", "RERAISE", "LOAD_ASSERTION_ERROR")
        for f in fns
        for c in _codes(f.__code__)
        for ins in dis.get_instructions(c)
    )


def _threshold(py: Callable) -> int:
    """The serial/parallel crossover guessed from the fastact scalars ``py`` calls."""
    ts = [
        _CORE_THRESHOLD if op is None else THRESHOLDS.get(op, _CORE_THRESHOLD)
        for op in _fastact_calls(py)
    ]
    return min(ts) if ts else _CHEAP_THRESHOLD


def _streams(py: Callable) -> bool:
    """Whether ``py``'s loops stream large arrays with software prefetch
    (:mod:`fastact._core.stream`): when it calls a math core or an activation whose own
    forward loop streams. Arithmetic alone is as cheap as relu, which the hint slowed down
    (``2 * x + 1`` at 2**24 float32: 3.35 -> 3.97 ms; ``gelu(leaky_relu(2 * x + 1, 0.1))``
    8.9 -> 7.4 ms)."""
    return any(op is None or "forward" in ACTIVATIONS[op].stream for op in _fastact_calls(py))


_PACKAGE = os.path.dirname(os.path.abspath(__file__))


def _warn(msg: str, category: type[Warning]) -> None:
    """``warnings.warn`` attributed to the first caller outside fastact (the user's line)."""
    warnings.warn(msg, category, stacklevel=stacklevel_outside(_PACKAGE))


def _one_line(err: BaseException) -> str:
    """The message of a numba compile error on one line (its first informative line)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(err))
    skip = ("Failed in ", "During: ", "File ", "No implementation", "Known signatures")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    useful = [ln for ln in lines if not ln.startswith(skip) and not ln.startswith("^")]
    return (useful or lines or [type(err).__name__])[0]


_DOUBLE_OP = re.compile(
    r"= (?:fadd|fsub|fmul|fdiv|frem|fneg)(?: \w+)* double |= fpext |call (?:\w+ )*double @llvm\."
)


def _float64_ops(disp: Any, sig: tuple, source: Callable[[], Callable]) -> bool:
    """Whether the compiled function (not its CPython wrapper) does float64 arithmetic.
    numba cannot show the IR of a function it loaded from its cache (a warning and an
    invalid result): then a copy made by ``source()`` is compiled in memory to read it."""
    if getattr(disp.overloads[sig].library, "_disable_inspection", False):
        disp = jit(source(), cache=False, fastmath=set(ELEMENTWISE_FASTMATH))
        disp.compile(sig)
    ir = disp.inspect_llvm(sig)
    body = []
    keep = False
    for ln in ir.splitlines():
        if ln.startswith("define "):
            keep = "@cpython." not in ln and "@_ZN7cpython" not in ln and "@cfunc." not in ln
        if keep:
            body.append(ln)
    return bool(_DOUBLE_OP.search("\n".join(body)))


def _cores_compute_float64(py: Callable) -> bool:
    """Whether a fastact scalar that ``py`` calls does float64 arithmetic itself for float32
    arguments (tanhshrink's polynomial near 0, on purpose): the float64 warning would blame
    the user's function for fastact's own choice."""
    for _, v in _walk(py):
        if not (isinstance(v, Dispatcher) and _is_fastact(v)):
            continue
        sig = (numba.float32,)
        try:
            v.compile(sig)
        except Exception:  # a core with required parameters: not one of these
            continue
        if _float64_ops(v, sig, lambda v=v: v.py_func):
            return True
    return False


def _typed_function(py: Callable, dtype: np.dtype, ints: bool, done: dict) -> Callable:
    """A copy of ``py`` whose number constants, number globals and closure numbers are
    ``dtype`` scalars, and whose plain Python or numba helper functions are (recursively)
    such copies, compiled with fastact's settings."""
    if id(py) in done:
        return done[id(py)]
    cast = dtype.type
    code = _typed_code(py.__code__, cast, ints)
    glb = dict(py.__globals__)
    for n in {n for c in _codes(code) for n in c.co_names}:
        v = glb.get(n)
        if type(v) is float or (ints and type(v) is int):
            glb[n] = cast(v)
        elif (inner := _user_function(v)) is not None and inner is not py:
            glb[n] = jit(
                _typed_function(inner, dtype, ints, done), fastmath=set(ELEMENTWISE_FASTMATH)
            )
    closure = None
    if py.__closure__ is not None:
        cells = []
        for cell in py.__closure__:
            try:
                v = cell.cell_contents
            except ValueError:
                cells.append(cell)
                continue
            if type(v) is float or (ints and type(v) is int):
                cell = types.CellType(cast(v))
            elif (inner := _user_function(v)) is not None and inner is not py:
                fn = _typed_function(inner, dtype, ints, done)
                cell = types.CellType(jit(fn, fastmath=set(ELEMENTWISE_FASTMATH)))
            cells.append(cell)
        closure = tuple(cells)
    fn = types.FunctionType(code, glb, py.__name__, py.__defaults__, closure)
    fn.__qualname__ = py.__qualname__
    done[id(py)] = fn
    return fn


# ============================================================================ compilation
class _Scalar:
    """A user's scalar function of ``nargs`` arguments, compiled per compute dtype (with typed
    literals) and per argument pattern (as an :class:`Elementwise` spec).

    ``index``: the function returns a tuple and this is its ``index``-th element (the
    gradients of a ``grad=`` function of several arguments)."""

    def __init__(
        self,
        py: Callable,
        name: str,
        arg_names: tuple[str, ...],
        extra: str,
        threshold: int,
        index: int | None = None,
        returns: int | None = None,
        stream: bool = False,
    ) -> None:
        self.py = py
        self.name = name
        self.arg_names = arg_names
        self.extra = extra  # what else the cache key covers ("forward" or "grad")
        #: per compute dtype, (cache key, cacheable) taken when the variant is typed: the
        #: typed copy freezes the globals' and closure cells' values of that moment, which
        #: may differ from those at decoration (a key from then served stale kernels)
        self.keys: dict[np.dtype, tuple[str, bool]] = {}
        self.threshold = threshold
        self.index = index
        self.returns = returns  # None: one number; k: a tuple of k numbers
        self.stream = stream  # see _streams
        self.variants: dict[np.dtype, Any] = {}
        self.specs: dict[tuple[str, np.dtype], Elementwise] = {}
        #: (the ElementwiseFunction, None for its forward or the gradient's index): pickled
        #: as that, by reference (dask ships the compiled function of each block's task)
        self.owner: tuple | None = None

    def __reduce__(self) -> tuple:
        if self.owner is None:
            raise TypeError(f"{self.name}'s compiled function cannot be pickled on its own")
        return (_scalar_of, self.owner)

    def __dask_tokenize__(self) -> tuple:
        """dask's token of a block task: the function's content (its code, closure and the
        globals it reads, as the compile key), not its name: a function redefined under the
        same name (a notebook cell run again) took the first one's name in dask's graph, and
        a compute of both returned the first one's results for both."""
        return (
            "fastact.elementwise",
            self.py.__qualname__,
            self.index,
            _cache_key(self.py, self.extra)[0],
        )

    # ------------------------------------------------------------------ per dtype
    def _typed(self, dtype: np.dtype, ints: bool) -> Callable:
        return _typed_function(self.py, dtype, ints, {})

    def variant(self, dtype: np.dtype):
        """The function compiled for ``dtype`` arguments, checked (TypeError with numba's
        message in one line; one warning when float64 reaches a float32 computation).

        A cacheable function's check is remembered in fastact's cache folder: a new process
        loads its kernels from disk without compiling the function for the check."""
        disp = self.variants.get(dtype)
        if disp is not None:
            return disp
        self.keys[dtype] = _cache_key(self.py, self.extra)  # the values _typed reads below
        memo = self._memo(dtype)
        if memo is not None:
            ints, msg = memo
            disp = jit(self._typed(dtype, ints), fastmath=set(ELEMENTWISE_FASTMATH))
        else:
            disp, ints, msg = self._compile_checked(dtype)
            self._remember(dtype, ints, msg)
        if msg:
            _warn(msg, RuntimeWarning)
        self.variants[dtype] = disp
        return disp

    def _memo_path(self, dtype: np.dtype) -> Any:
        key, cacheable = self.keys[dtype]
        tag = f"{key}-{dtype.char}-{self.index}-{self.returns}"
        return None if not cacheable else cache_dir() / f"fused-{tag}.check"

    def _memo(self, dtype: np.dtype) -> tuple[bool, str] | None:
        path = self._memo_path(dtype)
        if path is None or cache_disabled():
            return None
        try:
            text = path.read_text()
        except OSError:
            return None
        flag, _, msg = text.partition("\n")
        if flag not in ("ints", "floats"):
            return None
        return flag == "ints", msg

    def _remember(self, dtype: np.dtype, ints: bool, msg: str) -> None:
        path = self._memo_path(dtype)
        if path is None or cache_disabled():
            return
        try:
            tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
            tmp.write_text(("ints" if ints else "floats") + "\n" + msg)
            os.replace(tmp, path)
        except OSError:
            pass  # no cache folder: checked again in the next process

    def _compile_checked(self, dtype: np.dtype) -> tuple[Any, bool, str]:
        sig = (_NB[dtype],) * len(self.arg_names)
        err: BaseException | None = None
        for ints in (True, False):  # ints typed too, unless an int must stay one (range())
            disp = jit(self._typed(dtype, ints), fastmath=set(ELEMENTWISE_FASTMATH))
            try:
                disp.compile(sig)
                err = None
                break
            except (nb_errors.NumbaError, TypeError, ValueError, NotImplementedError) as e:
                err = e
        if err is not None:
            raise TypeError(
                f"fastact.elementwise: {self.name} cannot be compiled by numba for {dtype} "
                f"arguments: {_one_line(err)}"
            ) from None
        rtype = disp.overloads[sig].signature.return_type
        msg = self._check_return(rtype, dtype)
        if (
            not msg
            and dtype == _F32
            and _float64_ops(disp, sig, lambda: self._typed(dtype, ints))
            and not _cores_compute_float64(self.py)
        ):
            msg = (
                f"fastact.elementwise: {self.name} computes in float64 for float32 arguments "
                "(a float64 value inside a function it calls, or a NumPy float64 constant); "
                "the result is float32, the speed that of float64"
            )
        return disp, ints, msg

    def _check_return(self, rtype: Any, dtype: np.dtype) -> str:
        """TypeError for what is not one number (or the tuple ``returns`` asks for); the
        warning to give when a wider float reaches the result, else ''."""
        what = "return one real number"
        if self.returns is not None:
            ok = isinstance(rtype, numba.types.BaseTuple) and len(rtype) == self.returns
            if not ok:
                raise TypeError(
                    f"fastact.elementwise: {self.name} must return a tuple of {self.returns} "
                    f"real numbers (one gradient per argument), got {rtype}"
                )
            elems = list(rtype)
        else:
            elems = [rtype]
        for t in elems:
            if isinstance(t, numba.types.Boolean) or not isinstance(
                t, (numba.types.Float, numba.types.Integer)
            ):
                raise TypeError(
                    f"fastact.elementwise: {self.name} must {what} per element, got {rtype}"
                )
            if isinstance(t, numba.types.Integer):
                return (
                    f"fastact.elementwise: {self.name} returns an integer ({t}) per element, "
                    f"converted to {dtype}: NaN, infinities and magnitudes beyond the "
                    "integer's range have no integer value and give arbitrary results "
                    "(math.floor, ceil and trunc return int64 in numba: np.floor, np.ceil "
                    "and np.trunc keep the float)"
                )
            if isinstance(t, numba.types.Float) and t.bitwidth > dtype.itemsize * 8:
                return (
                    f"fastact.elementwise: {self.name} computes in {t} for {dtype} arguments "
                    "(a float64 value inside a function it calls, or a NumPy float64 "
                    f"constant, reaches its result); the result is rounded to {dtype}"
                )
        return ""

    # ------------------------------------------------------------------ per pattern
    def spec(self, pattern: str, dtype: np.dtype) -> Elementwise:
        """The spec of the loops over the arguments marked ``a`` in ``pattern`` (in order),
        with those marked ``s`` as scalar parameters of ``dtype``."""
        dtype = np.dtype(dtype)
        sp = self.specs.get((pattern, dtype))
        if sp is not None:
            return sp
        if len(pattern) != len(self.arg_names):
            raise TypeError(
                f"{self.name}() takes {len(self.arg_names)} arguments, got {len(pattern)}"
            )
        arity = pattern.count("a")
        if arity > max(MAP_LOOPS):
            raise TypeError(
                f"{self.name}: at most {max(MAP_LOOPS)} array arguments are supported "
                f"(got {arity}); pass the others as Python numbers"
            )
        v = self.variant(dtype)
        key, cacheable = self.keys[dtype]
        a = [f"a{i}" for i, c in enumerate(pattern) if c == "a"]
        s = [f"a{i}" for i, c in enumerate(pattern) if c == "s"]
        call = f"v({', '.join(f'a{i}' for i in range(len(pattern)))})"
        if self.index is not None:
            call += f"[{self.index}]"
        tag = f"{'f' if dtype == _F32 else 'd'}_{pattern}" + (
            "" if self.index is None else f"_d{self.index}"
        )
        wname = f"fused_{_ident(self.name)}_{key}_{tag}"
        # the result as the compute dtype: an integer return (allowed, with a warning) is
        # stored like a float one, also by the in-place and out= loops
        ns: dict[str, Any] = {"v": v, "T": dtype.type}
        exec(f"def {wname}({', '.join(a + s)}):\n    return T({call})\n", ns)
        w = jit(ns[wname], fastmath=set(ELEMENTWISE_FASTMATH))
        params = tuple((self.arg_names[i], REQUIRED) for i, c in enumerate(pattern) if c == "s")
        sp = Elementwise(
            wname,
            w,
            None,
            params=params,
            threshold=self.threshold,
            doc=f"fastact.elementwise({self.name})",
            arity=arity,
            cache=None if cacheable else False,
            stream=self.stream,
        )
        self.specs[(pattern, dtype)] = sp
        return sp


_F32_TOP = FINITE_MAX[np.dtype(np.float32)]


def _check_grad_shape(grad_output: Any, args: tuple, name: str) -> None:
    """ValueError for a grad_output larger than the result (torch's autograd refuses one not
    of the result's shape; the gradients would sum its extra dimensions away silently); one
    that broadcasts to the result (a number, a row) is taken. The common case, grad_output of
    an argument's shape, costs a comparison per argument."""
    gs = np.shape(grad_output)
    shapes = [np.shape(a) for a in args if not _is_number(a)]
    if gs == () or gs in shapes:
        return
    try:
        result_shape = np.broadcast_shapes(*shapes) if shapes else ()
        larger = np.broadcast_shapes(result_shape, gs) != result_shape
    except (ValueError, TypeError):
        return  # map_call's checks name the arguments (dask: unknown lengths)
    if larger:
        raise ValueError(
            f"grad_output has shape {gs}, larger than the shape {result_shape} of {name}'s result"
        )


def _ident(name: str) -> str:
    return re.sub(r"\W", "_", name)[:40]


# ============================================================================ the front end
def _module_attr(module: str, qualname: str, imported: bool = False) -> Any:
    """``module.qualname`` (unpickling an :class:`ElementwiseFunction` by reference; with
    ``imported``, among the modules already imported, None where it is not)."""
    target: Any = sys.modules.get(module) if imported else importlib.import_module(module)
    for part in qualname.split("."):
        target = getattr(target, part, None)
    return target


def _rebuild(py: Callable, grad: Callable | None, threshold: int) -> ElementwiseFunction:
    return ElementwiseFunction(py, grad=grad, threshold=threshold)


def _scalar_of(owner: ElementwiseFunction, index: int | None) -> _Scalar:
    return owner._forward if index is None else owner._grads[index]


class ElementwiseFunction:
    """The array function made by :func:`elementwise` (see the module docstring)."""

    def __init__(
        self,
        py: Callable,
        *,
        grad: Callable | None = None,
        threshold: int | None = None,
    ) -> None:
        py, names = _check_function(py, "function")
        self.__wrapped__ = py
        self.__name__ = py.__name__
        self.__qualname__ = py.__qualname__
        self.__doc__ = py.__doc__
        self.__module__ = py.__module__
        self.arg_names = names
        thr = _threshold(py) if threshold is None else _check_threshold(threshold)
        thr = SERIAL_ONLY if _may_raise(py) else thr
        self.threshold = thr
        libm = _libm_calls(py)
        self._forward = _Scalar(py, py.__name__, names, "forward", thr, stream=_streams(py))
        self._forward.owner = (self, None)
        self._fast1: dict[np.dtype, tuple] = {}  # dtype -> (serial, parallel) loops
        self._grads: tuple[_Scalar | None, ...] = ()
        self.grad = grad
        if grad is not None:
            gpy, gnames = _check_function(grad, "grad")
            if len(gnames) != len(names) + 1:
                raise TypeError(
                    f"grad must take (g, {', '.join(names)}): {len(names) + 1} arguments, "
                    f"got {len(gnames)}"
                )
            libm += [c for c in _libm_calls(gpy) if c not in libm]
            n = len(names)
            self._grads = tuple(
                _Scalar(
                    gpy,
                    gpy.__name__,
                    gnames,
                    "grad",  # its own code decides its kernels, whichever forward it serves
                    SERIAL_ONLY if _may_raise(gpy) else thr,
                    index=None if n == 1 else j,
                    returns=None if n == 1 else n,
                    stream=_streams(gpy),
                )
                for j in range(n)
            )
            for j, g in enumerate(self._grads):
                g.owner = (self, j)
        if libm:
            repl = [
                f"{c} -> fastact.scalar.{_REPLACEMENTS[c.split('.')[1]]}"
                for c in libm
                if c.split(".")[1] in _REPLACEMENTS
            ]
            other = [c for c in libm if c.split(".")[1] not in _REPLACEMENTS]
            msg = (
                f"fastact.elementwise: {py.__name__} calls {', '.join(libm)}: a scalar libm "
                "call per element (numba has no SVML), which keeps the loop from vectorizing"
            )
            if repl:
                msg += f"; use the vectorizable cores: {', '.join(repl)}"
            if other:
                msg += f" ({', '.join(other)}: no fastact.scalar replacement)"
            _warn(msg, ScalarMathWarning)

    def __reduce__(self) -> tuple:
        """Pickled by reference (module and name), like a function: another process (dask's
        process schedulers and distributed workers, a spawn pool) imports the module and
        gets the same function, its globals and compile cache, instead of a copy of its
        compiled parts (which lost the globals of fastact's scalar cores). A function not
        reachable by its name is pickled as its arguments, for cloudpickle."""
        if _module_attr(self.__module__, self.__qualname__, imported=True) is self:
            return (_module_attr, (self.__module__, self.__qualname__))
        return (_rebuild, (self.__wrapped__, self.grad, self.threshold))

    def __repr__(self) -> str:
        return f"<fastact.elementwise {self.__qualname__}({', '.join(self.arg_names)})>"

    # ------------------------------------------------------------------ calls
    def __call__(self, *args: Any, out: Any = None) -> Any:
        """The function over arrays (or numbers): a new array, or ``out``."""
        if out is None and len(args) == 1:
            # the common call of a one-argument function: a C-contiguous float array whose
            # loops exist (one dict lookup; the general path below fills self._fast1)
            x = args[0]
            if type(x) is np.ndarray:
                ks = self._fast1.get(x.dtype)
                if ks is not None and x.flags.c_contiguous:
                    res = np.empty_like(x)
                    n = x.size
                    if n:
                        k = ks[1] if n >= self.threshold and num_threads() > 1 else ks[0]
                        try:
                            if x.ndim == 1:
                                k(x, res)
                            else:
                                k(x.ravel(), res.ravel())
                        except SystemError as e:
                            reraise_inner(e)
                    return res
        if len(args) != len(self.arg_names):
            raise TypeError(
                f"{self.__name__}() takes {len(self.arg_names)} arguments "
                f"({', '.join(self.arg_names)}), got {len(args)}"
            )
        if out is None:
            res = self._fast(args)
            if res is not None:
                return res
        res = self._run(self._forward, args, out, False, self.arg_names)
        if out is not None:
            written(out)  # a torch tensor's version counter (as torch's out= ops)
        if len(args) == 1 and len(self._fast1) < 2:
            for (pattern, dt), sp in self._forward.specs.items():
                if pattern == "a" and "forward" in sp.host:
                    self._fast1[dt] = sp.host["forward"]
        return res

    def inplace(self, *args: Any) -> Any:
        """The function written into its first argument (a writeable float ndarray or device
        array, of the broadcast shape of all arguments), which is returned."""
        if len(args) != len(self.arg_names):
            raise TypeError(
                f"{self.__name__}.inplace() takes {len(self.arg_names)} arguments, got {len(args)}"
            )
        res = self._run(self._forward, args, None, True, self.arg_names)
        written(args[0])  # a torch tensor's version counter (as torch's in-place ops)
        return res

    def backward(self, grad_output: Any, *args: Any) -> Any:
        """The gradients ``grad_output * df/darg`` from ``grad=``: one array for a function
        of one argument, else a tuple with one entry per argument (summed over the
        dimensions it was broadcast along, like autograd; None for a Python number)."""
        if not self._grads:
            raise TypeError(f"{self.__name__} has no backward: pass grad= to fastact.elementwise")
        if len(args) != len(self.arg_names):
            raise TypeError(
                f"{self.__name__}.backward() takes grad_output and {len(self.arg_names)} "
                f"arguments, got {len(args)}"
            )
        _check_grad_shape(grad_output, args, self.__name__)
        names = ("grad_output", *self.arg_names)
        full = (grad_output, *args)
        grads = []
        for j, a in enumerate(args):
            if _is_number(a):
                grads.append(None)
                continue
            g = self._run(self._grads[j], full, None, False, names)
            grads.append(_unbroadcast(g, a))
        return grads[0] if len(args) == 1 else tuple(grads)

    # ------------------------------------------------------------------ dispatch
    @staticmethod
    def _run(fn: _Scalar, args: tuple, out: Any, inplace: bool, names: tuple) -> Any:
        if on_device(*args, out):
            return device(*args, out).map_call(fn, args, out, inplace, names)
        return host.map_call(fn, args, out, inplace, names)

    def _fast(self, args: tuple) -> Any:
        """The common call without a lookup: C-contiguous float arrays of one dtype and shape
        and Python numbers, whose spec exists (None: take the general path)."""
        x = args[0]
        if type(x) is not np.ndarray or not x.flags.c_contiguous:
            return None
        dt = x.dtype
        if len(args) == 1:
            sp = self._forward.specs.get(("a", dt))
            if sp is None:
                return None
            arrays: tuple = (x,)
            kp: tuple = ()
        else:
            pattern, arrs, vals = [], [], []
            shape = x.shape
            for a in args:
                t = type(a)
                if t is float or t is int:
                    pattern.append("s")
                    vals.append(float(a))
                elif (
                    t is np.ndarray
                    and a.dtype is dt
                    and a.shape == shape
                    and (a.flags.c_contiguous)
                ):
                    pattern.append("a")
                    arrs.append(a)
                else:
                    return None
            sp = self._forward.specs.get(("".join(pattern), dt))
            if sp is None or (dt.itemsize == 4 and not all(abs(v) <= _F32_TOP for v in vals)):
                return None  # (beyond float32: the general path's check raises, inf passes)
            arrays, kp = tuple(arrs), tuple(vals)
        res = np.empty_like(x)
        n = x.size
        if n:
            ks = sp.host.get("forward") or _host_kernels(sp, "forward")
            k = ks[1] if n >= sp.threshold and num_threads() > 1 else ks[0]
            try:
                if x.ndim == 1:
                    k(*arrays, res, *kp)
                else:
                    k(*(a.ravel() for a in arrays), res.ravel(), *kp)
            except SystemError as e:
                reraise_inner(e)
        return res


def _unbroadcast(g: Any, a: Any) -> Any:
    """``g`` summed down to the shape of argument ``a`` (autograd's rule for broadcasting)."""
    shape = tuple(np.shape(a)) if not hasattr(a, "shape") else tuple(a.shape)
    gshape = tuple(g.shape)
    if len(gshape) == len(shape) and all(
        s == t or (s != s and t != t) for s, t in zip(gshape, shape, strict=True)
    ):  # (a dask array's unknown sizes are NaN: equal where both are)
        return g
    lead = len(gshape) - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, s in enumerate(shape) if s == 1 and gshape[lead + i] != 1
    )
    r = g.sum(axis=axes, keepdims=True) if axes else g
    return r.reshape(shape)


def _check_function(f: Any, what: str) -> tuple[Callable, tuple[str, ...]]:
    """The plain Python function behind ``f`` and its parameter names (TypeError naming
    ``what`` for what cannot be an element-wise scalar function)."""
    if isinstance(f, ElementwiseFunction):
        f = f.__wrapped__
    if isinstance(f, Dispatcher):
        f = f.py_func
    if not isinstance(f, types.FunctionType):
        raise TypeError(
            f"{what} must be a Python function of scalar arguments, got {type(f).__name__}"
        )
    if inspect.isgeneratorfunction(f) or inspect.iscoroutinefunction(f):
        raise TypeError(f"{what} {f.__name__} must return a value, not be a generator")
    names = []
    for p in inspect.signature(f).parameters.values():
        if p.kind not in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            raise TypeError(
                f"{what} {f.__name__} must take positional scalar arguments only, "
                f"got {p.kind.description} {p.name!r}"
            )
        if p.default is not p.empty:
            raise TypeError(
                f"{what} {f.__name__}: parameter {p.name!r} has a default; element-wise "
                "functions take every argument at each call (bind constants in a closure)"
            )
        if p.name == "out" or keyword.iskeyword(p.name):
            raise TypeError(f"{what} {f.__name__}: the parameter name {p.name!r} is reserved")
        names.append(p.name)
    if not names:
        raise TypeError(f"{what} {f.__name__} must take at least one argument")
    return f, tuple(names)


def _check_threshold(t: Any) -> int:
    if type(t) is not int or t < 0:
        raise ValueError(f"threshold must be a non-negative int (elements), got {t!r}")
    return t


def elementwise(
    func: Callable | None = None,
    *,
    grad: Callable | None = None,
    threshold: int | None = None,
) -> Any:
    """Turn a scalar function into a fused element-wise array function (a decorator).

    ``func(*args)`` computes one element from one element of each argument, with
    :mod:`fastact.scalar`'s cores (``exp``, ``log1p``, ``tanh``, ``erf``, ``gelu``,
    ``leaky_relu`` ...) and ordinary arithmetic; Python number literals take the dtype of the
    arrays. The result ``f(*arrays, out=None)`` runs it over arrays in one pass (NumPy's
    casting and broadcasting; float32 stays float32; dask arrays give a lazy dask array;
    device arrays run on the GPU), ``f.inplace(x, ...)`` writes into ``x``, and with
    ``grad=`` (``grad(g, *args)`` returning ``g * df/darg`` for each argument: one number for
    one argument, else a tuple) ``f.backward(grad_output, *args)`` gives the gradients.
    ``threshold``: the size from which the loop runs on all threads (default: a measured
    crossover of the fastact cores it calls). Example::

        @fastact.elementwise
        def prep(x):
            return gelu(leaky_relu(2 * x + 1, 0.1))

        y = prep(x)            # like gelu(leaky_relu(2 * x + 1, 0.1)), one pass
    """
    if grad is not None and not callable(grad):
        raise TypeError(f"grad must be a function, got {type(grad).__name__}")

    def wrap(f: Callable) -> ElementwiseFunction:
        return ElementwiseFunction(f, grad=grad, threshold=threshold)

    return wrap if func is None else wrap(func)
