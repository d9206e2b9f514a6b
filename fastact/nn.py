"""Modules with torch.nn's names and constructor arguments, and explicit backward passes.

Each module's ``forward(x)`` (also ``module(x)``) keeps what its backward needs;
``backward(grad_output)`` returns the gradient with respect to the input and *accumulates*
the gradients of the module's parameters into their ``.grad`` (as torch's autograd does),
where :mod:`fastact.optim` finds them::

    opt = fastact.optim.Adam(model.parameters())
    loss = criterion(model(x), y)
    model.zero_grad()
    model.backward(criterion.backward())
    opt.step([p.grad for p in model.parameters()])

There is no general autograd: a network is a :class:`Sequential` of modules whose backward
passes run in reverse order. A module keeps what its backward needs in ``self._saved``, the
arrays of its *last* forward call, so call ``backward`` once per ``forward``. A
:class:`Sequential` keeps each position's ``_saved`` and hands it back before that position's
backward, so a module used at several places (``Sequential(lin, Tanh(), lin)``, weight
tying) is differentiated at each from that use's input, as torch's autograd does. Like torch,
modifying an array in place after a module saved it (e.g. an in-place activation applied to
a Softmax's output) invalidates that module's backward (torch raises; fastact does not
check).

PReLU answers the study note's question "who updates the slope a?": its backward yields
``weight.grad`` and the optimizer updates ``weight`` like any other parameter.
"""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple

import numpy as np

from fastact import activations as F
from fastact import losses as L
from fastact._core.arrays import Parameter, float_dtype, not_masked

__all__ = [
    "Parameter",
    "Module",
    "Linear",
    "Sequential",
    "PReLU",
    "RReLU",
    "Maxout",
    "GLU",
    "GELU",
    "Softmax",
    "LogSoftmax",
    "Softmin",
    "Softmax2d",
    "ACTIVATION_MODULES",
    "LOSS_MODULES",
]

_P = inspect.Parameter


class _IncompatibleKeys(NamedTuple):
    missing_keys: list[str]
    unexpected_keys: list[str]


def _to_numpy(v: Any, name: str) -> np.ndarray:
    """A state dict value as a NumPy array of real numbers that ``np.copyto`` can cast to
    the parameter's dtype, as torch's ``copy_`` casts: a bfloat16 (or float8) torch tensor or
    an ``ml_dtypes`` array (NumPy has no such dtypes) becomes float32 / float64, exactly."""
    if hasattr(v, "detach") and hasattr(v, "cpu"):  # a torch tensor
        v = v.detach().cpu().resolve_conj().resolve_neg()
        try:
            v = v.numpy()
        except TypeError:  # a dtype NumPy lacks (bfloat16, float8_*): float32 holds it exactly
            if not v.is_floating_point():
                raise TypeError(f"state_dict['{name}'] has dtype {v.dtype}") from None
            v = v.float().numpy()
    not_masked(v, f"state_dict['{name}']")
    try:
        v = np.asarray(v)
    except (TypeError, ValueError) as e:
        raise TypeError(f"state_dict['{name}'] must be an array: {e}") from None
    if v.dtype.kind == "V" and v.dtype.type.__module__.startswith("ml_dtypes"):
        v = v.astype(np.float64)  # bfloat16, float8_*, int4 ...: exact in float64
    if v.dtype.kind not in "biuf":
        raise TypeError(f"state_dict['{name}'] must be real numbers, got {v.dtype}")
    return v


class Module:
    """Base class: parameters are attributes of type :class:`Parameter`, children are
    attributes of type :class:`Module` (in definition order). torch: ``torch.nn.Module``."""

    training: bool = True

    def forward(self, *args: Any) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def backward(self, grad_output: Any) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.forward(*args, **kwargs)

    # constructor arguments read and set as attributes, as in torch (``m.inplace``)
    def __getattr__(self, name: str) -> Any:
        args = self.__dict__.get("_args")
        if args is not None and name in args:
            return args[name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __setattr__(self, name: str, value: Any) -> None:
        args = self.__dict__.get("_args")
        if args is not None and name in args and name not in self.__dict__:
            args[name] = value
        else:
            object.__setattr__(self, name, value)

    # --------------------------------------------------------------------------- tree
    def named_children(self) -> Iterator[tuple[str, Module]]:
        for k, v in vars(self).items():
            if isinstance(v, Module):
                yield k, v

    def children(self) -> Iterator[Module]:
        for _, m in self.named_children():
            yield m

    def named_modules(
        self, prefix: str = "", _memo: set[int] | None = None
    ) -> Iterator[tuple[str, Module]]:
        """This module and all below it, depth first (torch's order), each module once."""
        memo = set() if _memo is None else _memo
        if id(self) in memo:
            return
        memo.add(id(self))
        yield prefix, self
        for k, m in self.named_children():
            yield from m.named_modules(prefix + ("." if prefix else "") + k, memo)

    def modules(self) -> Iterator[Module]:
        for _, m in self.named_modules():
            yield m

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        """(name, parameter) pairs with torch's dotted names (``"0.weight"``), each
        parameter once even when shared."""
        seen: set[int] = set()
        for mname, m in self.named_modules(prefix.rstrip(".")):
            for k, v in vars(m).items():
                if isinstance(v, Parameter) and id(v) not in seen:
                    seen.add(id(v))
                    yield (mname + "." if mname else "") + k, v

    def parameters(self) -> list[Parameter]:
        """All parameters (a list, so it can be passed to an optimizer and reused)."""
        return [p for _, p in self.named_parameters()]

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset every parameter's ``.grad`` (to None, or to zeros)."""
        for p in self.parameters():
            if set_to_none or p.grad is None:
                p.grad = None
            else:
                p.grad.fill(0)

    def train(self, mode: bool = True) -> Module:
        """Set training mode here and below (affects :class:`RReLU`)."""
        for m in self.modules():
            m.training = bool(mode)
        return self

    def eval(self) -> Module:
        return self.train(False)

    # --------------------------------------------------------------------------- state
    def _state_items(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        """Every (name, parameter) pair of the state dict: like torch's, one per module path
        and attribute, so a shared (tied) parameter or a module used twice appears under
        each of its names."""
        for k, v in vars(self).items():
            if isinstance(v, Parameter):
                yield prefix + k, v
        for k, m in self.named_children():
            yield from m._state_items(prefix + k + ".")

    def state_dict(self) -> dict[str, np.ndarray]:
        """{name: array} views of the parameters (share memory, like torch's tensors), a
        shared parameter under each of its names (torch's keys)."""
        return {k: np.asarray(p) for k, p in self._state_items()}

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True):
        """Copy arrays (or torch tensors, e.g. a torch twin's ``state_dict()``) into the
        parameters, in place, cast to the parameters' dtype as torch's ``copy_`` casts
        (a bfloat16 state into float32 parameters). Everything is checked before anything is
        written; with ``strict`` missing or unexpected keys raise torch's RuntimeError
        (``Error(s) in loading state_dict for ...``). Returns
        ``(missing_keys, unexpected_keys)``."""
        params = dict(self._state_items())
        missing = [k for k in params if k not in state_dict]
        unexpected = [k for k in state_dict if k not in params]
        if strict and (missing or unexpected):
            errors = [
                f"{what} key(s) in state_dict: " + ", ".join(f'"{k}"' for k in keys) + ". "
                for what, keys in (("Missing", missing), ("Unexpected", unexpected))
                if keys
            ]
            raise RuntimeError(
                f"Error(s) in loading state_dict for {type(self).__name__}:\n\t"
                + "\n\t".join(errors)
            )
        todo = []
        for k, p in params.items():
            if k not in state_dict:
                continue
            v = _to_numpy(state_dict[k], k)
            if v.shape != p.shape:
                raise ValueError(
                    f"state_dict['{k}'] has shape {v.shape}, the parameter has {p.shape}"
                )
            todo.append((p, v))
        for p, v in todo:
            np.copyto(np.asarray(p), v, casting="unsafe")
        return _IncompatibleKeys(missing, unexpected)

    #: torch's ``extra_repr`` of this module as a ``str.format`` of its constructor arguments
    #: (``"negative_slope={negative_slope}"``); ``inplace=True`` is added when set, unless
    #: ``_extra_repr_inplace`` is False (torch's Hardsigmoid and Hardswish do not show it)
    _extra_repr_format: str = ""
    _extra_repr_inplace: bool = True

    def extra_repr(self) -> str:
        """What torch's repr shows between the parentheses: the arguments torch's
        ``extra_repr`` shows (``PReLU(num_parameters=3)``, ``ReLU()``, ``ReLU(inplace=True)``)."""
        args = self.__dict__.get("_args", {})
        shown = [self._extra_repr_format.format(**args)] if self._extra_repr_format else []
        if args.get("inplace") and self._extra_repr_inplace:
            shown.append("inplace=True")
        return ", ".join(shown)

    def __repr__(self) -> str:
        """torch's ``Module.__repr__``: the extra repr, then one indented line per child."""
        extra = self.extra_repr()
        extra_lines = extra.split("\n") if extra else []
        child_lines = [f"({k}): " + repr(m).replace("\n", "\n  ") for k, m in self.named_children()]
        if len(extra_lines) == 1 and not child_lines:
            return f"{type(self).__name__}({extra_lines[0]})"
        lines = extra_lines + child_lines
        inner = "\n  " + "\n  ".join(lines) + "\n" if lines else ""
        return f"{type(self).__name__}({inner})"


def _need(saved: Any, name: str) -> Any:
    if saved is None:
        raise RuntimeError(f"{name}.backward() called before forward()")
    return saved


def _init_signature(params: list[inspect.Parameter]) -> inspect.Signature:
    return inspect.Signature([_P("self", _P.POSITIONAL_OR_KEYWORD), *params])


def _bind(sig: inspect.Signature, args: tuple, kwargs: dict, cls: str) -> dict:
    try:
        bound = sig.bind(None, *args, **kwargs)
    except TypeError as e:
        raise TypeError(f"{cls}: {e}") from None
    bound.apply_defaults()
    out = dict(bound.arguments)
    out.pop("self")
    return out


def _make_class(name: str, body: dict, doc: str) -> type:
    body = dict(body, __doc__=doc, __module__=__name__, __qualname__=name)
    return type(name, (Module,), body)


# ----------------------------------------------------------------------------- activations
def _output_gives_gradient(spec: Any, params: dict) -> bool:
    """Whether the spec's gradient can be taken from its output with these parameters (its
    ``check_output``: not with a negative slope or alpha, nor threshold's value above it)."""
    if spec is None or spec.check_output is None:
        return True
    try:
        spec.check_output(*(params[n] for n in spec.param_names))
    except ValueError:
        return False
    return True


#: torch's ``extra_repr`` of the generated activation modules (the others show nothing but
#: ``inplace=True``; Softshrink and Hardshrink show the bare lambda, as torch's)
_EXTRA_REPR = {
    "LeakyReLU": "negative_slope={negative_slope}",
    "Hardtanh": "min_val={min_val}, max_val={max_val}",
    "ELU": "alpha={alpha}",
    "CELU": "alpha={alpha}",
    "Threshold": "threshold={threshold}, value={value}",
    "Softplus": "beta={beta}, threshold={threshold}",
    "Softshrink": "{lambd}",
    "Hardshrink": "{lambd}",
}
#: torch's modules whose repr does not show ``inplace=True``
_INPLACE_NOT_SHOWN = ("Hardsigmoid", "Hardswish")


def _activation_module(cls_name: str, fname: str) -> type:
    """A module class for the elementwise activation ``fastact.<fname>``: constructor
    arguments are the function's parameters in the function's (= torch's) order."""
    fwd = getattr(F, fname)
    bwd = getattr(F, fname + "_backward")
    bwd_params = inspect.signature(bwd).parameters
    from_output = "output" in bwd_params
    spec = F.ACTIVATIONS.get(fname)
    params = [
        p.replace(kind=_P.POSITIONAL_OR_KEYWORD)
        for n, p in inspect.signature(fwd).parameters.items()
        if n not in ("input", "out")
    ]
    sig = _init_signature(params)
    has_inplace = "inplace" in sig.parameters

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._args = _bind(sig, args, kwargs, cls_name)
        if has_inplace:
            self._args["inplace"] = bool(self._args["inplace"])
        self._saved = None

    __init__.__signature__ = sig  # type: ignore[attr-defined]

    def forward(self, x: Any) -> np.ndarray:
        inplace = self._args.get("inplace", False)
        params = {k: v for k, v in self._args.items() if k != "inplace"}
        if not inplace:  # the input, as torch (an output may be overwritten by an in-place
            y = fwd(x, **params)  # successor: logsigmoid's cheaper gradient from it was wrong)
            self._saved = ("input", x)
        elif from_output and _output_gives_gradient(spec, params):
            # the derivative is recovered from the output (torch: ...Backward1)
            y = fwd(x, **params, inplace=True)
            self._saved = ("output", y)
        else:  # the derivative needs x itself (or the parameters hide it in the output: a
            # negative slope, threshold's value above it): keep a copy, as fastact.torch does
            saved = np.array(x, copy=True)
            y = fwd(x, **params, inplace=True)
            self._saved = ("input", saved)
        return y

    def backward(self, grad_output: Any) -> np.ndarray:
        kind, v = _need(self._saved, cls_name)
        params = {k: p for k, p in self._args.items() if k in bwd_params}
        if kind == "output":
            return bwd(grad_output, None, output=v, **params)
        return bwd(grad_output, v, **params)

    body = {
        "__init__": __init__,
        "forward": forward,
        "backward": backward,
        "_extra_repr_format": _EXTRA_REPR.get(cls_name, ""),
        "_extra_repr_inplace": cls_name not in _INPLACE_NOT_SHOWN,
    }
    doc = (
        f"Module form of :func:`fastact.{fname}` (torch: ``torch.nn.{cls_name}"
        f"{str(sig).replace('(self, ', '(').replace('(self)', '()')}``)."
    )
    return _make_class(cls_name, body, doc)


_ELEMENTWISE = F.MODULE_FUNCTIONS
for _cls, _fname in _ELEMENTWISE.items():
    globals()[_cls] = _activation_module(_cls, _fname)
    __all__.append(_cls)

_HardtanhBase = globals()["Hardtanh"]


class Hardtanh(_HardtanhBase):  # type: ignore[valid-type,misc]
    """Module form of :func:`fastact.hardtanh` (torch: ``torch.nn.Hardtanh(min_val=-1.0,
    max_val=1.0, inplace=False, min_value=None, max_value=None)``; ``min_value`` and
    ``max_value`` are torch's deprecated aliases and warn)."""

    def __init__(
        self,
        min_val: float = -1.0,
        max_val: float = 1.0,
        inplace: bool = False,
        min_value: float | None = None,
        max_value: float | None = None,
    ) -> None:
        if min_value is not None:
            warnings.warn(
                "keyword argument `min_value` is deprecated and rename to `min_val`",
                FutureWarning,
                stacklevel=2,
            )
            min_val = min_value
        if max_value is not None:
            warnings.warn(
                "keyword argument `max_value` is deprecated and rename to `max_val`",
                FutureWarning,
                stacklevel=2,
            )
            max_val = max_value
        if not max_val > min_val:
            raise ValueError(f"max_val ({max_val}) must be greater than min_val ({min_val})")
        super().__init__(min_val, max_val, inplace)


class GELU(Module):
    """``x * Phi(x)`` (``approximate='tanh'`` for the tanh form). torch:
    ``nn.GELU(approximate='none')``."""

    _extra_repr_format = "approximate={approximate!r}"

    def __init__(self, approximate: str = "none") -> None:
        F.gelu_op(approximate)  # validates
        self._args = {"approximate": approximate}
        self._saved = None

    def forward(self, x: Any) -> np.ndarray:
        self._saved = x
        return F.gelu(x, self._args["approximate"])

    def backward(self, grad_output: Any) -> np.ndarray:
        return F.gelu_backward(grad_output, _need(self._saved, "GELU"), self._args["approximate"])


def _check_device(device: Any, cls: str) -> None:
    if device is not None and str(device) != "cpu":
        raise ValueError(f"{cls}: device must be None or 'cpu' (NumPy arrays), got {device!r}")


def _param_dtype(dtype: Any, cls: str) -> np.dtype:
    return np.dtype(np.float32) if dtype is None else float_dtype(dtype, f"{cls}: dtype")


class PReLU(Module):
    """``max(0, x) + weight * min(0, x)`` with a learnable ``weight`` of shape
    (num_parameters,), broadcast over dim 1 (the channels).
    torch: ``nn.PReLU(num_parameters=1, init=0.25, device=None, dtype=None)``.

    ``backward`` accumulates ``weight.grad`` = sum over every dim but 1 of
    ``(x < 0) * x * grad_output``; the optimizer updates ``weight`` like any other weight
    (torch's docs advise no weight decay on it)."""

    _extra_repr_format = "num_parameters={num_parameters}"

    def __init__(
        self, num_parameters: int = 1, init: float = 0.25, device: Any = None, dtype: Any = None
    ) -> None:
        if isinstance(num_parameters, bool) or int(num_parameters) != num_parameters:
            raise TypeError(f"num_parameters must be an int, got {num_parameters!r}")
        if int(num_parameters) < 1:
            raise ValueError(f"num_parameters must be >= 1, got {num_parameters}")
        _check_device(device, "PReLU")
        self._args = {"num_parameters": int(num_parameters), "init": init}
        self.weight = Parameter(
            np.full(int(num_parameters), float(init)), _param_dtype(dtype, "PReLU")
        )
        self._saved = None

    def forward(self, x: Any) -> np.ndarray:
        self._saved = x
        return F.prelu(x, np.asarray(self.weight))

    def backward(self, grad_output: Any) -> np.ndarray:
        gx, gw = F.prelu_backward(grad_output, _need(self._saved, "PReLU"), np.asarray(self.weight))
        self.weight.accumulate_grad(gw)
        return gx


class RReLU(Module):
    """Randomized leaky ReLU: a slope drawn from U(lower, upper) per element in ``train()``
    mode, the mean slope ``(lower + upper) / 2`` in ``eval()``.
    torch: ``nn.RReLU(lower=1/8, upper=1/3, inplace=False)``. ``generator``: an int seed or a
    ``numpy.random.Generator`` for reproducible slopes (torch uses its global generator)."""

    _extra_repr_format = "lower={lower}, upper={upper}"

    def __init__(
        self,
        lower: float = 1.0 / 8,
        upper: float = 1.0 / 3,
        inplace: bool = False,
        *,
        generator: Any = None,
    ) -> None:
        self._args = {"lower": lower, "upper": upper, "inplace": bool(inplace)}
        self.generator = np.random.default_rng(generator)
        self._saved = None

    def forward(self, x: Any) -> np.ndarray:
        a = self._args
        y, noise = F.rrelu(
            x,
            a["lower"],
            a["upper"],
            self.training,
            a["inplace"],
            generator=self.generator,
            return_noise=True,
        )
        # in place (or in eval mode) the slope is recovered from the output, as in torch
        self._saved = (x if not a["inplace"] else None, y, noise)
        return y

    def backward(self, grad_output: Any) -> np.ndarray:
        x, y, noise = _need(self._saved, "RReLU")
        a = self._args
        if noise is not None:  # training: grad = noise (the slope drawn per element, 1 for x>0)
            return F.rrelu_backward(
                grad_output,
                output=y,
                lower=a["lower"],
                upper=a["upper"],
                training=True,
                noise=noise,
            )
        if x is not None:
            return F.rrelu_backward(grad_output, x, lower=a["lower"], upper=a["upper"])
        return F.rrelu_backward(grad_output, output=y, lower=a["lower"], upper=a["upper"])


class Maxout(Module):
    """Max over groups of ``pieces`` consecutive channels along ``dim`` (default 1): with a
    preceding ``Linear(d, k * pieces)`` this is the study note's max over affine pieces.
    torch has no module; :func:`fastact.maxout` documents the convention."""

    _extra_repr_format = "pieces={pieces}, dim={dim}"

    def __init__(self, pieces: int, dim: int = 1) -> None:
        if isinstance(pieces, bool) or int(pieces) != pieces or int(pieces) < 1:
            raise ValueError(f"pieces must be a positive int, got {pieces!r}")
        self._args = {"pieces": int(pieces), "dim": dim}
        self._saved = None

    def forward(self, x: Any) -> np.ndarray:
        self._saved = x
        return F.maxout(x, **self._args)

    def backward(self, grad_output: Any) -> np.ndarray:
        return F.maxout_backward(grad_output, _need(self._saved, "Maxout"), **self._args)


class GLU(Module):
    """Gated linear unit ``a * sigmoid(b)`` on the two halves along ``dim``.
    torch: ``nn.GLU(dim=-1)``."""

    _extra_repr_format = "dim={dim}"

    def __init__(self, dim: int = -1) -> None:
        self._args = {"dim": dim}
        self._saved = None

    def forward(self, x: Any) -> np.ndarray:
        self._saved = x
        return F.glu(x, **self._args)

    def backward(self, grad_output: Any) -> np.ndarray:
        return F.glu_backward(grad_output, _need(self._saved, "GLU"), **self._args)


def _softmax_module(cls_name: str, fname: str) -> type:
    fwd, bwd = getattr(F, fname), getattr(F, fname + "_backward")

    def __init__(self, dim: int | None = None) -> None:
        self._args = {"dim": dim}
        self._saved = None

    def forward(self, x: Any) -> np.ndarray:
        y = fwd(x, self._args["dim"])
        self._saved = (y, np.ndim(x))
        return y

    def backward(self, grad_output: Any) -> np.ndarray:
        y, _ = _need(self._saved, cls_name)
        return bwd(grad_output, dim=self._args["dim"], output=y)

    body = {
        "__init__": __init__,
        "forward": forward,
        "backward": backward,
        "_extra_repr_format": "dim={dim}",
    }
    doc = f"Module form of :func:`fastact.{fname}` along ``dim`` (torch: ``nn.{cls_name}``)."
    return _make_class(cls_name, body, doc)


Softmax = _softmax_module("Softmax", "softmax")
LogSoftmax = _softmax_module("LogSoftmax", "log_softmax")
Softmin = _softmax_module("Softmin", "softmin")


class Softmax2d(Module):
    """Softmax over the channels (dim -3) of a (C, H, W) or (N, C, H, W) input.
    torch: ``nn.Softmax2d()``."""

    def __init__(self) -> None:
        self._args: dict = {}
        self._saved = None

    def forward(self, x: Any) -> np.ndarray:
        if np.ndim(x) not in (3, 4):
            raise ValueError(f"Softmax2d: expected input to be 3D or 4D, got {np.ndim(x)}D instead")
        y = F.softmax(x, -3)
        self._saved = y
        return y

    def backward(self, grad_output: Any) -> np.ndarray:
        return F.softmax_backward(grad_output, dim=-3, output=_need(self._saved, "Softmax2d"))


#: torch.nn activation class name -> fastact.nn class (Maxout has no torch module).
ACTIVATION_MODULES: dict[str, type] = {
    name: globals()[name]
    for name in [
        *_ELEMENTWISE,
        "GELU",
        "PReLU",
        "RReLU",
        "GLU",
        "Softmax",
        "LogSoftmax",
        "Softmin",
        "Softmax2d",
        "Maxout",
    ]
}


# ----------------------------------------------------------------------------- layers
class Linear(Module):
    """``y = x W^T + b`` with torch's initialization U(-1/sqrt(in), 1/sqrt(in)) for both.
    torch: ``nn.Linear(in_features, out_features, bias=True, device=None, dtype=None)``
    (float32 by default). ``generator``: an int seed or ``numpy.random.Generator``.

    The layer computes in its parameters' dtype: ``forward`` casts its input to it (a float64
    array into a float32 layer is rounded to float32, the NumPy convenience; torch raises for
    mixed dtypes) and ``backward`` its ``grad_output``; complex or non-numeric input raises
    TypeError (a cast would drop the imaginary part)."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        device: Any = None,
        dtype: Any = None,
        *,
        generator: Any = None,
    ) -> None:
        for n, v in (("in_features", in_features), ("out_features", out_features)):
            if isinstance(v, bool) or int(v) != v or int(v) < 0:
                raise ValueError(f"{n} must be a non-negative int, got {v!r}")
        _check_device(device, "Linear")
        dt = _param_dtype(dtype, "Linear")
        in_features, out_features = int(in_features), int(out_features)
        rng = np.random.default_rng(generator)
        bound = 1.0 / math.sqrt(in_features) if in_features > 0 else 0.0
        self.weight = Parameter(rng.uniform(-bound, bound, (out_features, in_features)), dt)
        self.bias = Parameter(rng.uniform(-bound, bound, out_features), dt) if bias else None
        self._args = {"in_features": in_features, "out_features": out_features, "bias": bias}
        self._saved = None

    def extra_repr(self) -> str:
        """torch's: ``in_features=2, out_features=3, bias=True``."""
        a = self._args
        return (
            f"in_features={a['in_features']}, out_features={a['out_features']}, "
            f"bias={self.bias is not None}"
        )

    def _real(self, v: Any, name: str) -> np.ndarray:
        """``v`` as an array of the parameters' dtype; TypeError naming ``name`` unless it
        holds real numbers (a masked array refused: its mask would be dropped)."""
        a = np.asarray(not_masked(v, name))
        if a.dtype.kind not in "biuf":
            raise TypeError(f"Linear: {name} must be real numbers, got {a.dtype}")
        return a.astype(self.weight.dtype, copy=False)

    def forward(self, x: Any) -> np.ndarray:
        x = self._real(x, "input")
        if x.ndim == 0 or x.shape[-1] != self.weight.shape[1]:
            raise ValueError(
                f"Linear: input has shape {x.shape}, expected (..., {self.weight.shape[1]})"
            )
        self._saved = x
        y = x @ np.asarray(self.weight).T
        if self.bias is not None:
            y += np.asarray(self.bias)
        return y

    def backward(self, grad_output: Any) -> np.ndarray:
        """Returns ``grad_output @ W``; accumulates ``W.grad += g^T x`` and
        ``b.grad += sum(g)`` over all leading dims."""
        x = _need(self._saved, "Linear")
        g = self._real(grad_output, "grad_output")
        if g.shape != x.shape[:-1] + (self.weight.shape[0],):
            raise ValueError(
                f"Linear: grad_output has shape {g.shape}, expected "
                f"{x.shape[:-1] + (self.weight.shape[0],)}"
            )
        g2, x2 = g.reshape(-1, g.shape[-1]), x.reshape(-1, x.shape[-1])
        self.weight.accumulate_grad(g2.T @ x2)
        if self.bias is not None:
            self.bias.accumulate_grad(g2.sum(axis=0))
        return g @ np.asarray(self.weight)


class Sequential(Module):
    """Modules applied in order; ``backward`` runs their backward passes in reverse.
    torch: ``nn.Sequential(*modules)`` (parameter names ``"0.weight"`` etc. match, so
    ``load_state_dict(torch_model.state_dict())`` copies a torch twin's weights)."""

    def __init__(self, *modules: Module) -> None:
        for i, m in enumerate(modules):
            if not isinstance(m, Module):
                raise TypeError(
                    f"Sequential argument {i} is not a fastact.nn.Module: {type(m).__name__}"
                )
            setattr(self, str(i), m)
        self._modules = list(modules)
        self._saved: list | None = None  # each position's ``_saved`` after its forward

    def __getitem__(self, i: int) -> Module:
        return self._modules[i]

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules)

    def named_children(self) -> Iterator[tuple[str, Module]]:
        for i, m in enumerate(self._modules):
            yield str(i), m

    def forward(self, x: Any) -> Any:
        """Each module in order; keeps what each position's backward needs (a module used
        twice overwrites its own ``_saved`` with its second use's arrays)."""
        saved = []
        for m in self._modules:
            x = m(x)
            saved.append(m.__dict__.get("_saved"))
        self._saved = saved
        return x

    def backward(self, grad_output: Any) -> Any:
        """Each module's backward in reverse order, from the arrays that position saved in
        the last ``forward`` (restored into the module first: a module used at several
        places, or called on its own since, differentiates each use from its own input)."""
        saved = _need(self._saved, "Sequential")
        for m, s in zip(reversed(self._modules), reversed(saved), strict=True):
            if "_saved" in m.__dict__:
                m._saved = s
            grad_output = m.backward(grad_output)
        for m, s in zip(self._modules, saved, strict=True):  # each module's last use again
            if "_saved" in m.__dict__:
                m._saved = s
        return grad_output


# ----------------------------------------------------------------------------- losses
_LOSSES = {
    "MSELoss": "mse_loss",
    "L1Loss": "l1_loss",
    "SmoothL1Loss": "smooth_l1_loss",
    "HuberLoss": "huber_loss",
    "BCELoss": "binary_cross_entropy",
    "BCEWithLogitsLoss": "binary_cross_entropy_with_logits",
    "CrossEntropyLoss": "cross_entropy",
    "NLLLoss": "nll_loss",
    "KLDivLoss": "kl_div",
    "PoissonNLLLoss": "poisson_nll_loss",
    "GaussianNLLLoss": "gaussian_nll_loss",
    "SoftMarginLoss": "soft_margin_loss",
    "MarginRankingLoss": "margin_ranking_loss",
    "HingeEmbeddingLoss": "hinge_embedding_loss",
    "CosineEmbeddingLoss": "cosine_embedding_loss",
    "MultiLabelSoftMarginLoss": "multilabel_soft_margin_loss",
    "TripletMarginLoss": "triplet_margin_loss",
}


def _scale(grad: np.ndarray, go: Any, loss_shape: tuple, cls: str) -> np.ndarray:
    """``grad`` (of the summed unreduced loss) times the upstream gradient ``go``: a new
    array each call (for ``go == 1`` a copy), as torch's autograd returns a new tensor, so a
    caller scaling it in place does not change what the next ``backward()`` returns."""
    not_masked(go, "grad_output")
    if np.ndim(go) == 0:
        if np.isscalar(go) and go == 1:
            return grad.copy()
        return grad * np.asarray(go, grad.dtype)
    go = np.asarray(go, dtype=grad.dtype)
    if go.shape != loss_shape:
        raise ValueError(f"{cls}.backward: grad_output has shape {go.shape}, loss {loss_shape}")
    if grad.shape == loss_shape:
        return grad * go
    if grad.ndim == go.ndim + 1 and grad.shape[:1] + grad.shape[2:] == loss_shape:
        return grad * np.expand_dims(go, 1)  # the class / feature dim reduced by the loss
    raise ValueError(
        f"{cls}.backward: a gradient of shape {grad.shape} cannot be scaled by a non-scalar "
        f"grad_output of shape {go.shape} (broadcast argument); use a reduced loss"
    )


def _loss_module(cls_name: str, fname: str) -> type:
    fn = getattr(L, fname)
    sig = inspect.signature(fn)
    data_args = tuple(
        n
        for n, p in sig.parameters.items()
        if p.default is _P.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    )
    params = [
        p
        for n, p in sig.parameters.items()
        if n not in data_args and n not in ("return_grad", "grad_out")
    ]
    init_sig = _init_signature(params)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._args = _bind(init_sig, args, kwargs, cls_name)
        self._saved = None

    __init__.__signature__ = init_sig  # type: ignore[attr-defined]

    def forward(self, *inputs: Any) -> Any:
        if len(inputs) != len(data_args):
            raise TypeError(
                f"{cls_name}.forward takes {len(data_args)} arrays "
                f"({', '.join(data_args)}), got {len(inputs)}"
            )
        loss, grad = fn(*inputs, **self._args, return_grad=True)
        self._saved = (grad, np.shape(loss))
        return loss

    def backward(self, grad_output: Any = 1.0) -> Any:
        """Gradient of the loss w.r.t. the prediction input(s) (a tuple when there are
        several), times ``grad_output``: the upstream gradient of the loss, 1 by default, or
        an array of the unreduced loss's shape for ``reduction='none'``."""
        grad, shape = _need(self._saved, cls_name)
        if isinstance(grad, tuple):
            return tuple(_scale(g, grad_output, shape, cls_name) for g in grad)
        return _scale(grad, grad_output, shape, cls_name)

    body = {
        "__init__": __init__,
        "forward": forward,
        "backward": backward,
    }
    doc = (
        f"Module form of :func:`fastact.losses.{fname}` (torch: ``nn.{cls_name}``): "
        f"``forward({', '.join(data_args)})`` returns the loss and keeps its gradient, "
        "``backward()`` returns it (fused: no second pass over the data)."
    )
    return _make_class(cls_name, body, doc)


for _cls, _fname in _LOSSES.items():
    globals()[_cls] = _loss_module(_cls, _fname)
    __all__.append(_cls)
del _cls, _fname

#: torch.nn loss class name -> fastact.nn class.
LOSS_MODULES: dict[str, type] = {name: globals()[name] for name in _LOSSES}
