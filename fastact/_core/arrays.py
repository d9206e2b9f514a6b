"""The array edge: validate and prepare arrays once, before any kernel runs.

Every check happens before anything is written, so a rejected call leaves the caller's arrays
untouched. Errors are ``TypeError`` (wrong kind of object or dtype) or ``ValueError`` (wrong
shape, read-only, overlapping memory), and name the argument.
"""

from __future__ import annotations

import numbers
import os
import sys
from typing import Any

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_MODULES = sys.modules
_F16 = np.dtype(np.float16)
_F32 = np.dtype(np.float32)


def stacklevel_outside(prefix: str) -> int:
    """The ``stacklevel`` that attributes a warning raised by the caller of this function to
    the first frame whose file lies outside ``prefix`` (a module's file, or a package's
    folder: the user's line, whatever fastact frames lie between). The import system's frames
    (a warning while fastact is imported: the user's ``import`` line) are passed over
    uncounted, as ``warnings.warn`` passes over them."""
    f, level = sys._getframe(1), 1
    while f is not None and os.path.abspath(f.f_code.co_filename).startswith(prefix):
        f, level = f.f_back, level + 1
        while f is not None and _import_system_frame(f):
            f = f.f_back
    return level


def _import_system_frame(frame: Any) -> bool:
    """A frame of importlib's bootstrap (what ``warnings`` leaves out of its stack levels)."""
    name = frame.f_code.co_filename
    return "importlib" in name and "_bootstrap" in name


def is_dask(x: Any) -> bool:
    """True for a dask array (checked without importing dask)."""
    return type(x).__module__.startswith("dask.") and hasattr(x, "map_blocks")


def result_dtype(dtype: np.dtype, name: str) -> np.dtype:
    """NumPy's rule for a float-valued ufunc: the smallest float type that holds ``dtype``."""
    if dtype in FLOAT_DTYPES:
        return dtype
    if dtype.kind in "biuf":
        return np.promote_types(dtype, _F16)
    raise TypeError(f"{name} must have a real numeric dtype, got {dtype}")


def compute_dtype(dtype: np.dtype) -> np.dtype:
    """The kernel dtype for a result dtype (float16 and other floats computed in float32/64)."""
    return dtype if dtype in FLOAT_DTYPES else (_F32 if dtype.itemsize <= 4 else FLOAT_DTYPES[1])


def not_masked(x: Any, name: str) -> Any:
    """TypeError naming ``name`` for a ``numpy.ma.MaskedArray``: ``np.asarray`` drops its mask
    (the masked elements would take part in a result or a sum) and numba's kernels refuse to
    write one, so fastact refuses it everywhere rather than guess what a masked element
    should give. Checked without importing ``numpy.ma`` (none exists before it is loaded).
    A label that says which of an argument's arrays it is (``grad_out for input``) names the
    argument itself in the hint."""
    ma = _MODULES.get("numpy.ma")
    if ma is not None and isinstance(x, ma.MaskedArray):
        expr = name.partition(" for ")[0]
        raise TypeError(
            f"{name} is a numpy.ma.MaskedArray; fastact does not apply masks: pass "
            f"{expr}.filled(value) or np.asarray({expr})"
        )
    return x


def base_view(a: np.ndarray) -> np.ndarray:
    """``a`` as a plain ndarray of the same memory (a view of a subclass: memmap, a user's
    subclass), the array handed to the kernels, so numba's ``typeof`` never sees a subclass;
    the caller's own object is what the functions return."""
    return a if type(a) is np.ndarray else a.view(np.ndarray)


def as_array(x: Any, name: str) -> np.ndarray:
    """``x`` as an ndarray (``np.asarray``), TypeError naming ``name`` for what is not an
    array of numbers (also a masked array: :func:`not_masked`)."""
    if x is None:
        raise TypeError(f"{name} must be an array, got None")
    if isinstance(x, (str, bytes, dict, set)):
        raise TypeError(f"{name} must be an array of real numbers, got {type(x).__name__}")
    if type(x) is not np.ndarray:
        not_masked(x, name)
    try:
        arr = np.asarray(x)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{name} must be an array of real numbers: {e}") from None
    if arr.dtype == object:
        raise TypeError(f"{name} must be an array of real numbers, got an object array")
    return arr


def as_float_array(x: Any, name: str) -> np.ndarray:
    """``x`` as an ndarray with a float32/float64 dtype (a view when it already is one)."""
    if type(x) is np.ndarray and x.dtype in FLOAT_DTYPES:
        return x
    arr = as_array(x, name)
    cd = compute_dtype(result_dtype(arr.dtype, name))
    return arr if arr.dtype == cd else arr.astype(cd)


def no_self_overlap(a: np.ndarray, name: str) -> np.ndarray:
    """ValueError when elements of an array to be written share memory (a zero stride along
    a dimension of more than one element: an expanded torch tensor, a writable
    ``as_strided`` view); torch refuses to write such tensors too. An empty array has no
    elements to share (NumPy gives a (3, 0) array strides (0, 0))."""
    st = a.strides
    if 0 in st and a.size and any(s == 0 and n > 1 for s, n in zip(st, a.shape, strict=True)):
        raise ValueError(
            f"{name} has elements that share memory (a zero stride, e.g. an expanded tensor) "
            "and cannot be written: pass a contiguous copy"
        )
    return a


def not_matrix(a: np.ndarray, name: str) -> np.ndarray:
    """TypeError for an ``np.matrix`` to be written: its reshapes and element indexing stay
    two-dimensional, so a flat write loop would assign whole rows (past the buffer's end)."""
    if isinstance(a, np.matrix):
        raise TypeError(
            f"{name} is a numpy.matrix, which cannot be written element-wise; pass "
            f"np.asarray({name}) (a plain ndarray view of the same memory)"
        )
    return a


def check_inplace(x: Any, name: str = "input") -> np.ndarray:
    """``x`` must be a writeable float32/float64 ndarray to be overwritten in place (not a
    masked array). Returns the plain ndarray to write (:func:`base_view`)."""
    if not isinstance(x, np.ndarray):
        raise TypeError(
            f"{name} must be a numpy.ndarray to be modified in place, got {type(x).__name__}"
        )
    not_matrix(x, name)
    not_masked(x, name)
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32 or float64 to be modified in place, got {x.dtype}")
    if not x.flags.writeable:
        raise ValueError(f"{name} is read-only and cannot be modified in place")
    return base_view(no_self_overlap(x, name))


def check_out(out: Any, shape: tuple, dtype: np.dtype, inputs: tuple, name: str = "out"):
    """Validate a caller's output buffer against the expected shape and dtype.

    ``out`` may be exactly one of the inputs (same memory, same strides: element-wise kernels
    then work in place), but not a partial overlap of any input; not a masked array. Returns
    the plain ndarray to write (:func:`base_view`; the caller returns its own ``out``).
    """
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(out).__name__}")
    not_matrix(out, name)
    not_masked(out, name)
    if out.shape != shape:
        raise ValueError(f"{name} has shape {out.shape}, expected {shape}")
    if out.dtype != dtype:
        raise TypeError(f"{name} has dtype {out.dtype}, expected {dtype}")
    if not out.flags.writeable:
        raise ValueError(f"{name} is read-only")
    no_self_overlap(out, name)
    for a in inputs:
        if a is None or a is out or not np.may_share_memory(out, a):
            continue
        if same_memory(out, a):
            continue
        if np.shares_memory(out, a):
            raise ValueError(
                f"{name} partially overlaps an input array; pass a separate "
                "buffer or the input itself"
            )
    return base_view(out)


def same_memory(a: np.ndarray, b: np.ndarray) -> bool:
    """True when ``a`` and ``b`` view exactly the same elements in the same order."""
    return (
        a.shape == b.shape
        and a.strides == b.strides
        and a.__array_interface__["data"][0] == b.__array_interface__["data"][0]
    )


def scalar_param(value: Any, name: str, dtype: np.dtype):
    """A real-number parameter as a ``dtype`` scalar (an ndarray is returned as is). A torch
    tensor is taken as the tensor arguments are (:func:`tensor_input`: TypeError naming
    ``name`` for one that requires grad, is not on the CPU or is sparse; bfloat16 read as
    float32, a lazy negative bit resolved)."""
    if type(value) is float or type(value) is int:
        return dtype.type(value)
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a real number, got bool")
    if isinstance(value, numbers.Real):
        return dtype.type(value)
    if isinstance(value, np.ndarray) or hasattr(value, "__array__"):
        arr = tensor_input(value, name) if is_tensor(value) else np.asarray(not_masked(value, name))
        if arr.dtype.kind not in "iuf":
            raise TypeError(f"{name} must be a real number or array, got dtype {arr.dtype}")
        with np.errstate(over="ignore"):  # an overflowing parameter is refused by its user
            return dtype.type(arr) if arr.ndim == 0 else arr.astype(dtype, copy=False)
    raise TypeError(f"{name} must be a real number, got {type(value).__name__}")


def flat_pair(x: np.ndarray, out: np.ndarray):
    """1-D views of ``x`` and ``out`` in one common element order, or None if impossible."""
    if x.flags.c_contiguous and out.flags.c_contiguous:
        return x.reshape(-1), out.reshape(-1)
    if x.flags.f_contiguous and out.flags.f_contiguous:
        return x.T.reshape(-1), out.T.reshape(-1)
    return None


def normalize_dim(dim: Any, ndim: int, name: str = "dim") -> int:
    """A dimension index in [-ndim, ndim) as a non-negative int (0-d arrays act as 1-d)."""
    if type(dim) is int and -1 <= dim < ndim:
        return dim % max(ndim, 1)
    if isinstance(dim, (bool, np.bool_)) or not isinstance(dim, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(dim).__name__}")
    n = max(ndim, 1)
    if not -n <= dim < n:
        raise ValueError(f"{name}={dim} is out of range for an array with {ndim} dimensions")
    return int(dim) % n


# ------------------------------------------------------------------------- torch CPU tensors
def torch_module():
    """The torch module when it is already imported (fastact never imports torch), else None."""
    return _MODULES.get("torch")


def any_tensor(*xs: Any) -> bool:
    """Some argument is a torch.Tensor (False at once when torch is not loaded)."""
    torch = torch_module()
    return torch is not None and any(isinstance(x, torch.Tensor) for x in xs)


def is_tensor(x: Any) -> bool:
    """``x`` is a torch.Tensor (without importing torch when it is not loaded)."""
    torch = torch_module()
    return torch is not None and isinstance(x, torch.Tensor)


def written(*xs: Any) -> None:
    """After fastact wrote into them (``out=``, in place, ``grad_out=``): the version counters
    of the torch tensors among ``xs`` advanced, as torch's own in-place ops do, so that
    autograd refuses a backward through a saved tensor fastact overwrote (the writes go
    through NumPy views or raw addresses, which torch does not see). One C call for all;
    inference tensors, which have no counter, are skipped by torch; anything that is not a
    tensor (None, NumPy or device arrays) is ignored."""
    torch = _MODULES.get("torch")
    if torch is not None:
        ts = [x for x in xs if isinstance(x, torch.Tensor)]
        if ts:
            torch._C._increment_version(ts)


def tensor_view(t: Any, name: str) -> np.ndarray:
    """Zero-copy NumPy view of a CPU torch tensor (TypeError naming ``name`` otherwise)."""
    _dense_cpu(t, name)
    try:
        return t.detach().numpy()
    except (TypeError, RuntimeError) as exc:
        raise TypeError(f"{name} cannot be viewed as a NumPy array: {exc}") from None


# The plain API on CPU tensors: an argument becomes a NumPy view at the host executor's edge,
# a result is allocated (or wrapped) as a tensor when the call's first array was one.
_GRAD_HINT = (
    "fastact's plain functions are not recorded by autograd: use fastact.torch (autograd "
    "functions and torch.nn modules) or pass {name}.detach()"
)


def _check_tensor(t: Any, name: str) -> None:
    """TypeError naming ``name`` for a tensor the plain API cannot take. A label that says
    which of an argument's arrays it is (``grad_out for input``: one of a loss's gradient
    buffers) names the argument itself in the ``.detach()`` hint."""
    if t.requires_grad:
        expr = name.partition(" for ")[0]
        raise TypeError(
            f"{name} is a torch tensor that requires grad; " + _GRAD_HINT.format(name=expr)
        )
    _dense_cpu(t, name)


def _dense_cpu(t: Any, name: str) -> None:
    """TypeError naming ``name`` for a tensor that is not a dense CPU one: on another device,
    nested (a strided one has torch's layout but no sizes; a jagged one its own), sparse."""
    if not t.is_cpu:  # (t.device builds a device object: ~1 us a call)
        raise TypeError(f"{name} is a torch tensor on {t.device}; only CPU tensors are supported")
    if t.is_nested:
        raise TypeError(f"{name} is a nested tensor; only dense tensors are supported")
    if t.layout != torch_module().strided:
        raise TypeError(f"{name} is a sparse torch tensor; only dense tensors are supported")


def tensor_input(t: Any, name: str) -> np.ndarray:
    """A CPU tensor argument as a NumPy array: a zero-copy view, or a float32 copy of a
    bfloat16 tensor (NumPy has no bfloat16; computed in float32 like float16 is). TypeError
    naming ``name`` for a tensor that requires grad, a non-CPU, a nested or a sparse tensor."""
    _check_tensor(t, name)
    torch = torch_module()
    if t.dtype == torch.bfloat16:
        t = t.float()
    if t.is_conj() or t.is_neg():  # (resolving a tensor without either bit costs ~1 us)
        t = t.resolve_conj().resolve_neg()
    try:
        return t.numpy()
    except (TypeError, RuntimeError) as exc:
        raise TypeError(f"{name} cannot be viewed as a NumPy array: {exc}") from None


def tensor_output(t: Any, name: str) -> np.ndarray:
    """A CPU tensor to be written (``out=``, in place) as a writable zero-copy NumPy view."""
    _check_tensor(t, name)
    if t.dtype == torch_module().bfloat16:
        raise TypeError(
            f"{name} is a bfloat16 tensor and cannot be written in place (NumPy has no "
            "bfloat16): write float32/float64 tensors, or use fastact.torch"
        )
    if t.is_conj() or t.is_neg():
        raise TypeError(f"{name} has a lazy conjugate/negative bit; cannot be written in place")
    if t.is_inference() and not torch_module().is_inference_mode_enabled():
        raise RuntimeError(  # torch's rule and error type
            f"{name}: inplace update to inference tensor outside InferenceMode is not allowed"
        )
    try:
        a = t.numpy()
    except (TypeError, RuntimeError) as exc:
        raise TypeError(f"{name} cannot be written as a NumPy array: {exc}") from None
    return no_self_overlap(a, name)


def as_tensor(a: Any) -> Any:
    """A NumPy result (array or scalar) as a CPU tensor sharing its memory."""
    torch = torch_module()
    return torch.from_numpy(a if isinstance(a, np.ndarray) else np.asarray(a))


def torch_dtype(dtype: np.dtype) -> Any:
    """The torch dtype of a NumPy float dtype (float16, float32, float64)."""
    torch = torch_module()
    return {np.float64: torch.float64, np.float32: torch.float32}.get(
        np.dtype(dtype).type, torch.float16
    )


def float_dtype(dtype: Any, label: str = "dtype") -> np.dtype:
    """``dtype`` (a NumPy dtype or its name, or a torch dtype: ``torch.float32`` reads as
    float32) as float32 or float64, the dtypes a parameter holds; TypeError
    ``"{label} must be float32 or float64"`` otherwise."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        try:
            dt = np.dtype(str(dtype).removeprefix("torch."))
        except TypeError:
            dt = None  # (compared with a dtype, None would read as float64)
    if dt is None or dt not in FLOAT_DTYPES:
        raise TypeError(f"{label} must be float32 or float64, got {dtype!r}")
    return dt


class Parameter(np.ndarray):
    """A float array that carries its gradient in ``.grad`` (None until a backward pass).

    torch: ``torch.nn.Parameter``. Optimizers update it in place; ``np.asarray(p)`` gives a
    plain ndarray view of the same memory."""

    grad: np.ndarray | None

    def __new__(cls, data: Any, dtype: Any = None) -> Parameter:
        """A copy of ``data`` (real numbers: bool, int, uint, float, ``ml_dtypes`` reals)
        as float32, float64 kept; ``dtype`` float32 or float64 (a Parameter holds one of
        them: the optimizers' and layers' dtypes). TypeError naming the argument otherwise:
        complex data lost its imaginary part, object data became NaN where it held None,
        datetimes became day counts, ``dtype=np.int32`` truncated the data, then float32."""
        not_masked(data, "data")  # (a copy would drop the mask)
        if dtype is not None:
            dt = float_dtype(dtype)
        if isinstance(data, (str, bytes, dict, set)) or data is None:
            raise TypeError(f"data must be an array of real numbers, got {type(data).__name__}")
        try:
            src = np.asarray(data)
        except (TypeError, ValueError) as e:
            raise TypeError(f"data must be an array of real numbers: {e}") from None
        kind = src.dtype.kind
        if kind not in "biuf" and not (
            kind == "V" and src.dtype.type.__module__.startswith("ml_dtypes")
        ):
            raise TypeError(f"data must be an array of real numbers, got dtype {src.dtype}")
        if dtype is None:
            dt = src.dtype if src.dtype in FLOAT_DTYPES else _F32
        arr = np.array(src, dtype=dt, copy=True, order="C")  # 0-d stays 0-d
        obj = arr.view(cls)
        obj.grad = None
        return obj

    def __array_finalize__(self, obj: Any) -> None:
        self.grad = None

    def __reduce__(self):
        return (Parameter, (np.asarray(self),))

    def __repr__(self) -> str:
        return "Parameter(" + repr(np.asarray(self))[6:]

    def accumulate_grad(self, g: Any) -> None:
        """``grad += g`` (``grad = g`` when there is none yet), like torch's autograd."""
        g = np.asarray(g, dtype=self.dtype)
        if g.shape != self.shape:
            if g.size != self.size:
                raise ValueError(f"gradient of shape {g.shape} for a parameter of {self.shape}")
            g = g.reshape(self.shape)
        if self.grad is None:
            self.grad = np.array(g, dtype=self.dtype, order="C", copy=True)
        else:
            self.grad += g


#: public as ``fastact.nn.Parameter`` (its name there, for pickles and reprs); defined in this
#: layer so that the checkpoint format (fastact.optim) can recognise one
Parameter.__module__ = "fastact.nn"
