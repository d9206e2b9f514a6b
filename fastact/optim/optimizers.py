"""torch.optim-compatible optimizers whose step is one fused parallel kernel per param group.

Parameters are writable float32/float64 NumPy arrays (any shape, C or Fortran contiguous) or
CPU torch tensors, which are updated in place through zero-copy NumPy views; or, in the whole
optimizer, CUDA device arrays (``__cuda_array_interface__``: numba, CuPy, torch CUDA), whose
steps run on the GPU (the CUDA executor, needs ``fastact[cuda]``; state on the
device; host and device parameters cannot be mixed). ``step(grads)``
takes a list of gradients aligned with all parameters (groups flattened in order; ``None``
skips a parameter like a missing ``.grad`` in torch); ``step()`` reads each tensor's ``.grad``.

Differences from torch.optim, by design:

* ``step`` validates every gradient (count, dtype, shape), parameter (writable, contiguous)
  and state array first and raises ``TypeError``/``ValueError`` naming it before anything is
  written (all-or-nothing). ``step(grads, check_finite=True)`` also rejects NaN/inf gradients
  up front, ``step(grads, skip_nonfinite=True)`` skips the whole step on them and reports it
  in ``found_inf``; by default NaN/inf propagate exactly as in torch.
* Non-contiguous parameters are rejected (ValueError); gradients in another memory order are
  copied once into the parameter's order.
* A parameter listed twice, or two parameters sharing memory, raise ValueError (torch only
  warns for duplicates); they would race in a parallel update.
* ``foreach``/``fused`` are accepted and stored but every step is fused;
  ``differentiable=True`` and ``capturable=True`` raise ValueError.
* ``state[p]['step']`` is a Python float (torch: a float32 scalar tensor; the value sequence
  is the same, including float32 saturation past 2**24); ``state_dict()`` returns copies
  (torch returns references), with torch tensors for torch parameters so that torch.optim
  can load it, and ``load_state_dict`` accepts torch.optim's state dicts.
* Group options are validated like the constructor's arguments (torch validates only the
  defaults), when a group is added and again by every step before it writes anything: an
  option set out of range later (``param_groups[1]['betas'] = (1.0, 0.999)``, which divides
  by zero in torch's step after the groups before it were updated) is a ``ValueError``
  naming the group and the option. A step's lr may be any real number, as a loaded one (a
  schedule decaying to 0 can end at -1e-17).
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from itertools import chain
from typing import Any

import numpy as np

from fastact import host
from fastact._core.arrays import is_tensor, torch_module
from fastact._core.backend import device as _device
from fastact._core.backend import on_device as _is_device_array
from fastact.kernels.optim import OPTIMIZERS as SPECS
from fastact.kernels.optim import Optim
from fastact.optim import driver

__all__ = [
    "Optimizer",
    "SGD",
    "Adam",
    "AdamW",
    "Adamax",
    "RMSprop",
    "Rprop",
    "Adagrad",
    "Adadelta",
    "SGD8bit",
    "Adam8bit",
    "AdamW8bit",
    "RMSprop8bit",
    "Adagrad8bit",
    "DEFAULT_BLOCK_SIZE",
]

#: The storage options and their values when neither a group nor the defaults set them.
_STORAGE_DEFAULTS = {
    "state_dtype": None,
    "block_size": 2048,
    "min_8bit_size": 4096,
    "stochastic_rounding": False,
    "seed": 0,
}
#: Default elements per block scale of the 8-bit optimizers (measured: scripts/bench_lowp_optim.py).
DEFAULT_BLOCK_SIZE = 2048
#: Tensors with fewer elements keep float32 state in the 8-bit optimizers (like bitsandbytes).
DEFAULT_MIN_8BIT_SIZE = 4096
#: block_size must be a positive multiple of this (whole 512-bit vectors of float32).
BLOCK_MULTIPLE = 16
#: and at most this: each thread's scratch holds three float32 blocks (48 MiB here); larger
#: blocks only coarsen the scales (a block is meant to stay in cache between its two passes)
MAX_BLOCK_SIZE = 2**22


class _Required:
    def __repr__(self) -> str:
        return "<required parameter>"


required = _Required()


def _typename(x: Any) -> str:
    t = type(x)
    return t.__name__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


def _is_param(x: Any) -> bool:
    return host.is_param(x)


#: one parameter's state dict (mutations bump the state map's version)
_ParamState = driver.ParamState


class _StateMap(MutableMapping):
    """``optimizer.state``: per-parameter dicts keyed by parameter *identity* (NumPy arrays are
    not hashable). Like torch's defaultdict, ``state[p]`` of an unknown ``p`` is a new ``{}``."""

    def __init__(self) -> None:
        self._d: dict[int, tuple[Any, _ParamState]] = {}
        self._version = 0

    def __getitem__(self, p: Any) -> dict:
        item = self._d.get(id(p))
        if item is None or item[0] is not p:
            value = _ParamState(self)
            self._d[id(p)] = (p, value)
            self._version += 1
            return value
        return item[1]

    def get(self, p: Any, default: Any = None) -> Any:
        item = self._d.get(id(p))
        return default if item is None or item[0] is not p else item[1]

    def __setitem__(self, p: Any, value: dict) -> None:
        if not isinstance(value, dict):
            raise TypeError(f"optimizer state entries must be dicts, got {_typename(value)}")
        if not (isinstance(value, _ParamState) and value._owner is self):
            value = _ParamState(self, value)
        self._d[id(p)] = (p, value)
        self._version += 1

    def __delitem__(self, p: Any) -> None:
        item = self._d.get(id(p))
        if item is None or item[0] is not p:
            raise KeyError("parameter has no state")
        del self._d[id(p)]
        self._version += 1

    def __contains__(self, p: object) -> bool:
        item = self._d.get(id(p))
        return item is not None and item[0] is p

    def __iter__(self) -> Iterator[Any]:
        return (p for p, _ in list(self._d.values()))

    def __len__(self) -> int:
        return len(self._d)

    def __repr__(self) -> str:
        return f"_StateMap({len(self)} parameters)"

    def __getstate__(self) -> dict:
        # keyed by id(): pickle/deepcopy the (param, state) pairs and re-key on load (and the
        # block sizes of the 8-bit codes, driver.block_records)
        blocks = driver.saved_blocks(self)
        return {"items": [(p, dict(st)) for p, st in self._d.values()], "blocks": blocks}

    def __setstate__(self, state: dict) -> None:
        self._d = {}
        self._version = 0
        for p, st in state["items"]:
            self._d[id(p)] = (p, _ParamState(self, st))
        driver.restore_blocks(self, state.get("blocks", ()))


def _num(group: dict, key: str, gi: int) -> float:
    try:
        v = group[key]
        if isinstance(v, (str, bytes)):  # float('0.5') would parse it (torch: TypeError)
            raise TypeError
        return float(v)
    except KeyError:
        raise KeyError(f"param_groups[{gi}] has no '{key}' option") from None
    except (TypeError, ValueError):
        raise TypeError(
            f"param_groups[{gi}]['{key}'] must be a number, got {group[key]!r}"
        ) from None


class Optimizer:
    """Base class: param groups, state, step driver, state_dict (torch.optim.Optimizer API).

    Subclasses set ``_spec`` (their entry of :data:`fastact.kernels.optim.OPTIMIZERS`: state
    rows, kernel scalars, step coefficients) and ``_options(group, gi)`` (the group's options
    under the functional API's names); :mod:`fastact.optim.driver` runs the steps.
    """

    #: the state_dtype values the class accepts (the 8-bit classes add '8bit')
    _STATE_DTYPES: tuple = (None, "float32", "bfloat16")
    #: storage defaults of the 8-bit classes (block_size, min_8bit_size), set before __init__
    _extra_defaults: dict = {}
    #: group defaults a class fixes whatever its arguments (AdamW: the decoupled decay)
    _FIXED: dict = {}
    #: betas must be both floats or both tensors (torch's Adam and AdamW check it)
    _PAIRED_BETAS = False
    #: the state is made with the parameters, in the constructor (torch's Adagrad does)
    _EAGER_STATE = False
    #: its step() sets ``_opt_called`` itself (the LR schedulers' order warning; a torch
    #: optimizer gets it from the wrapper the first scheduler puts on its step)
    _SETS_OPT_CALLED = True

    @staticmethod
    def _check_options(group: dict, loading: bool = False) -> None:
        """A class's checks of a group's options beyond the per-option rules (``loading``:
        a group of a loaded state dict, or one at a step, whose options a scheduler may have
        moved)."""

    def _construct(self, args: dict[str, Any]) -> None:
        """The constructors' one body: ``args`` are a constructor's arguments (its
        ``locals()``), every one but ``params`` and the storage options a group default."""
        params, defaults = constructor_defaults(type(self), args)
        Optimizer.__init__(self, params, defaults)
        if self._EAGER_STATE:
            driver.eager_state(self, self._executor())

    def __init__(self, params: Any, defaults: dict[str, Any]) -> None:
        defaults = {**defaults, **self._extra_defaults}
        self._check_group(dict(defaults))
        self.defaults = defaults
        #: True when the parameters are CUDA device arrays (fastact.cuda runs the steps).
        self._device = False
        if (
            _is_param(params)
            or _is_device_array(params)
            or not isinstance(params, Iterable)
            or isinstance(params, str)
        ):
            raise TypeError(
                "params argument given to the optimizer should be an iterable of arrays, "
                "Tensors or dicts, but got " + _typename(params)
            )
        self.state: _StateMap = _StateMap()
        self.param_groups: list[dict[str, Any]] = []
        self._cache: dict[int, driver.GroupCache] = {}
        self._opt_called = False
        #: True when the last ``step(skip_nonfinite=True)`` was skipped (non-finite gradient).
        self.found_inf = False
        #: Steps skipped by ``skip_nonfinite=True`` since construction.
        self.skipped_steps = 0
        param_groups = list(params)
        if len(param_groups) == 0:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(param_groups[0], dict):
            param_groups = [{"params": param_groups}]
        for param_group in param_groups:
            self.add_param_group(param_group)

    # ----------------------------------------------------------------------------- groups

    def _check_group(self, group: dict[str, Any], loading: bool = False) -> None:
        """Validate a group's options like the constructor's arguments (``_RULES``); a
        loaded group's lr (``loading``; every step checks its groups so too) may be any real
        number, as a step takes it (a schedule decaying to 0 can end at -1e-17, and torch
        loads what it saved)."""
        for key, value in group.items():
            rule = _real if loading and key == "lr" else _RULES.get(key)
            if rule is not None:
                rule(value, key)
        if "state_dtype" in group and group["state_dtype"] not in self._STATE_DTYPES:
            raise ValueError(
                f"state_dtype must be one of {self._STATE_DTYPES} for {type(self).__name__}, "
                f"got {group['state_dtype']!r}"
                + (" (use the 8-bit classes, e.g. AdamW8bit)" if group["state_dtype"] == "8bit"
                   else "")
            )  # fmt: skip
        self._check_options(group, loading)

    def _step_options(self, group: dict, gi: int) -> dict:
        """``_options`` plus the storage options (state_dtype, block_size, min_8bit_size,
        stochastic_rounding, seed), missing ones taken from the defaults."""
        o = self._options(group, gi)
        d = self.defaults
        for key, default in _STORAGE_DEFAULTS.items():
            o[key] = group.get(key, d.get(key, default))
        return o

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a param group (a dict with 'params' and optional per-group options)."""
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, but got {type(param_group)}")
        if "params" not in param_group:
            raise ValueError("param_group must have a 'params' entry")
        params = param_group["params"]
        if _is_param(params) or _is_device_array(params):
            params = [params]
        elif isinstance(params, (set, frozenset)):
            raise TypeError(
                "optimizer parameters need to be organized in ordered collections, but "
                "the ordering of tensors in sets will change between runs. Please use a list "
                "instead."
            )
        else:
            params = list(params)
        tensors, names = [], []
        for p in params:
            if isinstance(p, tuple):
                names.append(p[0])
                tensors.append(p[1])
            else:
                tensors.append(p)
        if names and len(names) != len(tensors):
            raise ValueError(
                "all optimizer params should be with/without names. Some param names are missing"
            )
        gi = len(self.param_groups)
        on_device = [_is_device_array(p) for p in tensors]
        device = any(on_device)
        if (device and not all(on_device)) or (self.param_groups and device != self._device):
            raise ValueError(
                "an optimizer's parameters must all be CUDA device arrays or all host arrays "
                "(NumPy arrays, CPU tensors); mixing them in one optimizer is not supported"
            )
        for p, dev in zip(tensors, on_device, strict=True):
            if not (dev or _is_param(p)):
                raise TypeError(
                    "optimizer can only optimize NumPy arrays and torch Tensors, but one of the "
                    "params is " + _typename(p)
                )
            if is_tensor(p) and not (p.is_leaf or p.retains_grad):
                raise ValueError("can't optimize a non-leaf Tensor")
        names_k = [f"param_groups[{gi}]['params'][{k}]" for k in range(len(tensors))]
        ex = _device(*tensors) if device else host
        entries = [ex.entry(p, n) for p, n in zip(tensors, names_k, strict=True)]
        new_group = dict(param_group)
        new_group["params"] = tensors
        if names:
            new_group["param_names"] = names
        for name, default in self.defaults.items():
            if default is required and name not in new_group:
                raise ValueError(
                    "parameter group didn't specify a value of required optimization "
                    f"parameter {name}"
                )
            new_group.setdefault(name, default)
        self._check_group(new_group)
        if len({id(p) for p in tensors}) != len(tensors):
            raise ValueError(
                "optimizer contains a parameter group with duplicate parameters; fused "
                "parallel updates need each parameter once"
            )
        for g in self.param_groups:
            if ("param_names" in new_group) != ("param_names" in g):
                txt = "with names" if "param_names" in new_group else "without names"
                raise ValueError(
                    "all optimizer param groups should be with/without names. "
                    f"cannot add param group {txt} to the optimizer"
                )
        existing = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in existing for p in tensors):
            raise ValueError("some parameters appear in more than one parameter group")
        driver.check_overlap(self, ex, list(zip(entries, names_k, strict=True)))
        options = self._step_options(new_group, gi)
        for e, n in zip(entries, names_k, strict=True):
            driver.entry_layout(ex, options, e, n)  # TypeError for unsupported storage
        # all checks passed: commit (the caller's dict gets the defaults, like torch)
        param_group.clear()
        param_group.update(new_group)
        self._device = device
        self.param_groups.append(param_group)
        self._cache[id(param_group)] = driver.GroupCache(param_group, entries)

    # ----------------------------------------------------------------------------- step

    #: the optimizer's spec (state rows, kernel scalars, coefficients)
    _spec: Optim
    #: where ``state['step']`` lives: a Python float
    _steps = driver.FloatSteps

    def _options(self, group: dict, gi: int) -> dict:
        """The group's options as the spec's flat dict (names of the functional API)."""
        raise NotImplementedError

    def _executor(self) -> Any:
        """The host executor, or the CUDA one bound to the parameters' stream."""
        if not self._device:
            return host
        return _device(*(p for g in self.param_groups for p in g["params"][:1]))

    def step(
        self,
        grads: Any = None,
        *,
        closure: Callable[[], Any] | None = None,
        check_finite: bool = False,
        skip_nonfinite: bool = False,
    ) -> Any:
        """One optimization step over all groups; returns ``closure()``'s value if given.

        ``grads``: list aligned with all parameters (None entries skip a parameter); omitted,
        each torch parameter's ``.grad`` is used. A callable first argument is a closure.
        ``check_finite=True`` raises ValueError on NaN/inf gradients before any update.
        ``skip_nonfinite=True`` skips the whole step instead (no parameter, state or step
        count changes; torch's ``found_inf`` rule of its fused kernels and GradScaler) and
        reports it: ``self.found_inf`` is True after a skipped step, False after an applied
        one, and ``self.skipped_steps`` counts the skipped steps.
        Everything is validated before anything is written.
        """
        if callable(grads) and closure is None:
            closure, grads = grads, None
        loss = None
        if closure is not None:
            torch = torch_module()
            if torch is None:
                loss = closure()
            else:  # the closure's backward needs grad (torch.optim's steps enable it too)
                with torch.enable_grad():
                    loss = closure()
        ex = self._executor()
        work = driver.prepare(self, ex, grads)
        if check_finite or skip_nonfinite:
            k = driver.first_nonfinite(ex, work)
            if k is not None:
                if skip_nonfinite:
                    self.found_inf = True
                    self.skipped_steps += 1
                    self._opt_called = True
                    return loss
                raise ValueError(f"grads[{k}] contains NaN or infinite values (check_finite=True)")
        driver.apply(self, ex, work)
        self.found_inf = False
        self._opt_called = True
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset ``.grad`` of torch parameters and of arrays carrying one (fastact.nn.Parameter):
        None, or zeros."""
        for group in self.param_groups:
            for p in group["params"]:
                if not is_tensor(p) and getattr(p, "grad", None) is not None:
                    if set_to_none:
                        p.grad = None
                    else:
                        p.grad[...] = 0
                elif is_tensor(p) and p.grad is not None:
                    if set_to_none:
                        p.grad = None
                    else:
                        if p.grad.grad_fn is not None:
                            p.grad.detach_()
                        else:
                            p.grad.requires_grad_(False)
                        p.grad.zero_()

    # ----------------------------------------------------------------------------- state dict

    def state_dict(self) -> dict[str, Any]:
        """{'state': {index: {...}}, 'param_groups': [{..., 'params': [indices]}]} with copies
        of the state (torch tensors for torch parameters, loadable by torch.optim)."""
        mapping: dict[int, int] = {}
        groups = []
        for gi, group in enumerate(self.param_groups):
            packed = {k: copy.deepcopy(v) for k, v in group.items() if k != "params"}
            if "block_size" in packed:  # the block size the 8-bit codes were written in
                block = driver.saved_block_size(self.state, group, gi, len(mapping))
                if block is not None:
                    packed["block_size"] = block
            for p in group["params"]:
                mapping.setdefault(id(p), len(mapping))
            packed["params"] = [mapping[id(p)] for p in group["params"]]
            groups.append(packed)
        torch = torch_module()
        ex = self._executor()
        state = {}
        for p, st in self.state._d.values():
            if id(p) not in mapping:
                continue
            is_t = is_tensor(p)
            out = {}
            for key, v in st.items():
                if key == "step":
                    out[key] = torch.tensor(float(v), dtype=torch.float32) if is_t else float(v)
                else:
                    out[key] = ex.copy_state(v, is_t)
            state[mapping[id(p)]] = out
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a dict from :meth:`state_dict` (or from torch.optim): group options and state
        (copied, cast to each parameter's dtype, shape-checked). All-or-nothing."""
        if not isinstance(state_dict, dict) or not {"state", "param_groups"} <= state_dict.keys():
            raise TypeError("state_dict must be a dict with 'state' and 'param_groups'")
        groups = self.param_groups
        saved_groups = copy.deepcopy(state_dict["param_groups"])
        if len(groups) != len(saved_groups):
            raise ValueError("loaded state dict has a different number of parameter groups")
        if any(
            len(g["params"]) != len(s["params"]) for g, s in zip(groups, saved_groups, strict=True)
        ):
            raise ValueError(
                "loaded state dict contains a parameter group "
                "that doesn't match the size of optimizer's group"
            )
        id_map = dict(
            zip(
                chain.from_iterable(g["params"] for g in saved_groups),
                chain.from_iterable(g["params"] for g in groups),
                strict=True,
            )
        )
        new_groups = []
        for g, s in zip(groups, saved_groups, strict=True):
            s["params"] = g["params"]
            if "param_names" in g and "param_names" not in s:
                s["param_names"] = g["param_names"]
            driver.keep_storage(s, g)  # the storage is this optimizer's: the state converts
            for key, value in self.defaults.items():  # options an older state dict lacks
                s.setdefault(key, value)
            s.update(self._FIXED)  # AdamW stays AdamW with an Adam state dict (as in torch)
            self._check_group(s, loading=True)
            new_groups.append(s)
        new_state = _StateMap()
        ex = self._executor()
        where = {id(p): gi for gi, g in enumerate(new_groups) for p in g["params"]}
        rows = dict(zip((k for k, _a in self._spec.state), self._spec.signed, strict=True))
        for key, value in state_dict["state"].items():
            if key not in id_map:
                continue
            p = id_map[key]
            name = f"state_dict['state'][{key!r}]"
            gi = where[id(p)]
            options = self._step_options(new_groups[gi], gi)
            layout = driver.entry_layout(ex, options, ex.entry(p, name), name)
            if ex.NAME == "host":
                # the codes' blocks: the saved group's
                block = int(state_dict["param_groups"][gi].get("block_size") or 0)
                new_state[p] = ex.load_param_state(p, value, name, layout, rows, block)
                if layout.q8:  # the loaded codes are in this layout's blocks now
                    driver.record_block(new_state, p, layout.block)
            else:
                new_state[p] = ex.load_param_state(p, value, name)
        self.state = new_state
        self.param_groups = new_groups
        self._cache = {}

    def __getstate__(self) -> dict[str, Any]:
        # the launch caches hold raw addresses: never copy or pickle them
        return {k: v for k, v in self.__dict__.items() if k != "_cache"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.__dict__.setdefault("_device", False)  # pickled before device support
        self._cache = {}

    def __repr__(self) -> str:
        s = self.__class__.__name__ + " ("
        for i, group in enumerate(self.param_groups):
            s += f"\nParameter Group {i}\n"
            for key in sorted(group.keys()):
                if key != "params":
                    s += f"    {key}: {group[key]}\n"
        return s + ")"


# --------------------------------------------------------------------------------------------


def _real(value: Any, name: str) -> float:
    """``value`` as a float: a real number, a 0-d real array or a 1-element tensor."""
    if type(value) is float:  # the usual options, first: every step checks its groups
        return value
    if type(value) is int:
        return float(value)
    if is_tensor(value):
        if value.numel() != 1:
            raise ValueError(f"Tensor {name} must be 1-element")
        value = value.item()
    elif isinstance(value, np.ndarray):
        if value.ndim != 0 or value.dtype.kind not in "biuf":
            raise TypeError(f"{name} must be a real number, got an array of shape {value.shape}")
        value = value.item()
    if not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a real number, got {_typename(value)}")
    return float(value)


def _pair(value: Any, name: str) -> tuple[float, float]:
    if isinstance(value, (str, bytes)) or not isinstance(value, (tuple, list)):
        raise TypeError(f"{name} must be a pair of numbers, got {_typename(value)}")
    if len(value) != 2:
        raise ValueError(f"{name} must be a pair of numbers, got {len(value)} values")
    return _real(value[0], name), _real(value[1], name)


def _nonneg(label: str) -> Callable[[Any, str], None]:
    def rule(value: Any, name: str) -> None:
        if not 0.0 <= _real(value, name):
            raise ValueError(f"Invalid {label} value: {value}")

    return rule


def _lr_rule(value: Any, name: str) -> None:
    if not 0.0 <= _real(value, name):
        raise ValueError(f"Invalid learning rate: {value}")


def _rho_rule(value: Any, name: str) -> None:
    if not 0.0 <= _real(value, name) <= 1.0:
        raise ValueError(f"Invalid rho value: {value}")


def _betas_rule(value: Any, name: str) -> None:
    for i, b in enumerate(_pair(value, name)):
        if not 0.0 <= b < 1.0:
            raise ValueError(f"Invalid beta parameter at index {i}: {value[i]}")


def _etas_rule(value: Any, name: str) -> None:
    minus, plus = _pair(value, name)
    if not 0.0 < minus < 1.0 < plus:
        raise ValueError(f"Invalid eta values: {value[0]}, {value[1]}")


def _step_sizes_rule(value: Any, name: str) -> None:
    lo, hi = _pair(value, name)
    if not 0.0 <= lo <= hi:
        raise ValueError(f"Invalid step_sizes: need 0 <= min <= max, got {tuple(value)}")


def _any_real(value: Any, name: str) -> None:
    _real(value, name)


def _int(value: Any, name: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {_typename(value)}")
    return int(value)


def _block_size_rule(value: Any, name: str) -> None:
    b = _int(value, name)
    if b <= 0 or b % BLOCK_MULTIPLE or b > MAX_BLOCK_SIZE:
        raise ValueError(
            f"{name} must be a positive multiple of {BLOCK_MULTIPLE} up to {MAX_BLOCK_SIZE}, "
            f"got {b}"
        )


def _min_size_rule(value: Any, name: str) -> None:
    if _int(value, name) < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")


def _flag_rule(value: Any, name: str) -> None:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {_typename(value)}")


def _seed_rule(value: Any, name: str) -> None:
    _int(value, name)


#: Validation of each numeric option (constructor arguments and param-group entries alike),
#: with torch's messages where torch checks the option.
_RULES: dict[str, Callable[[Any, str], None]] = {
    "lr": _lr_rule,
    "eps": _nonneg("epsilon"),
    "momentum": _nonneg("momentum"),
    "weight_decay": _nonneg("weight_decay"),
    "alpha": _nonneg("alpha"),
    "lr_decay": _nonneg("lr_decay"),
    "initial_accumulator_value": _nonneg("initial_accumulator_value"),
    "dampening": _any_real,
    "rho": _rho_rule,
    "betas": _betas_rule,
    "etas": _etas_rule,
    "step_sizes": _step_sizes_rule,
    "block_size": _block_size_rule,
    "min_8bit_size": _min_size_rule,
    "stochastic_rounding": _flag_rule,
    "seed": _seed_rule,
}


def _storage(state_dtype: Any, stochastic_rounding: Any, seed: Any) -> dict:
    """The storage defaults of every class: state_dtype (None: the parameter's dtype;
    'float32', 'bfloat16', and '8bit' in the 8-bit classes), stochastic rounding of bfloat16
    parameters and its seed; only the options that differ from the defaults become group
    keys (the groups of a default optimizer have torch's keys)."""
    out: dict = {}
    if state_dtype is not None:
        out["state_dtype"] = state_dtype
    if stochastic_rounding or seed != 0:  # the groups keep torch's keys by default
        out["stochastic_rounding"] = stochastic_rounding
        out["seed"] = seed
    return out


def constructor_defaults(cls: type, args: dict[str, Any], float_betas: bool = True) -> tuple:
    """``(params, defaults)`` from the arguments of a constructor of class ``cls`` (a
    fastact.optim class; fastact.torch.optim's classes pass theirs' with
    ``float_betas=False``: tensor betas stay tensors, as in torch). Every argument but
    ``params`` is a group default; the storage options are checked and merged
    (:func:`_storage`), the class's fixed defaults applied, the torch flags checked."""
    args = {k: v for k, v in args.items() if k != "self"}
    params = args.pop("params")
    storage = _storage(args.pop("state_dtype"), args.pop("stochastic_rounding"), args.pop("seed"))
    args.update(cls._FIXED)
    if cls._PAIRED_BETAS:
        betas = args["betas"]
        _RULES["betas"](betas, "betas")
        if not all(isinstance(b, float) for b in betas) and not all(is_tensor(b) for b in betas):
            raise ValueError("betas must be either both floats or both Tensors")
        if float_betas:
            args["betas"] = tuple(float(b) for b in betas)
    _check_flags(
        args.get("capturable", False), args.get("differentiable", False), args.get("foreach"),
        args.get("fused"),
    )  # fmt: skip
    return params, {**args, **storage}


def _check_flags(capturable: bool, differentiable: bool, foreach: Any, fused: Any) -> None:
    if fused and foreach:
        raise RuntimeError("`fused` and `foreach` cannot be `True` together.")
    if fused and differentiable:
        raise RuntimeError("`fused` does not support `differentiable`")
    if differentiable:
        raise ValueError("differentiable=True is not supported: fastact steps are not autograd ops")
    if capturable:
        raise ValueError("capturable=True is not supported: it needs a CUDA-like device")


def _coef_num(group: dict, key: str, gi: int) -> Any:
    """An option the step coefficients are computed from (lr, and betas' entries through
    :func:`_num_pair`): a tensor stays a tensor (detached), so that the coefficients are
    computed in its dtype as torch computes them (a float32 lr: ``lr / bias_correction1``
    and ``1 - lr * weight_decay`` in float32 tensor arithmetic); anything else as
    :func:`_num`."""
    v = group.get(key)
    return _detached(v) if is_tensor(v) else _num(group, key, gi)


def _detached(t: Any) -> Any:
    """A tensor option as the coefficients take it: without its autograd history."""
    return t.detach() if t.requires_grad else t


def _num_pair(group: dict, gi: int, key: str = "betas", tensors: bool = False) -> tuple:
    """A pair option of a group (betas, etas, step_sizes) as two floats (TypeError naming
    it otherwise; the step's checks of the ranges follow); ``tensors``: tensor entries kept
    as tensors (as :func:`_coef_num`)."""
    b = group[key]
    try:
        if isinstance(b, (str, bytes)) or len(b) != 2:
            raise TypeError
        if tensors and is_tensor(b[0]) and is_tensor(b[1]):
            return _detached(b[0]), _detached(b[1])
        return float(b[0]), float(b[1])
    except (TypeError, ValueError, LookupError):
        raise TypeError(
            f"param_groups[{gi}]['{key}'] must be a pair of numbers, got {b!r}"
        ) from None


# --------------------------------------------------------------------------------------------
# optimizers
# --------------------------------------------------------------------------------------------


class SGD(Optimizer):
    """SGD with momentum/dampening/nesterov/weight_decay/maximize (torch.optim.SGD).

    g ← ±g + wd·p; buf ← g on the first step, else μ·buf + (1−dampening)·g;
    g ← g + μ·buf (nesterov) or buf; p ← p − lr·g.
    """

    _spec = SPECS["SGD"]

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        momentum: float = 0,
        dampening: float = 0,
        weight_decay: float = 0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        differentiable: bool = False,
        fused: bool | None = None,
        state_dtype: str | None = None,
        stochastic_rounding: bool = False,
        seed: int = 0,
    ) -> None:
        self._construct(locals())

    @staticmethod
    def _check_options(group: dict, loading: bool = False) -> None:
        # the constructor's rule only (torch's): a scheduler (CyclicLR, OneCycleLR) may drive
        # the momentum to 0 mid-run, and a state dict saved then loads, as into torch
        if (
            not loading
            and group.get("nesterov")
            and (float(group["momentum"]) <= 0 or float(group["dampening"]) != 0)
        ):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")

    def _options(self, group: dict, gi: int) -> dict:
        return {
            "lr": _num(group, "lr", gi),
            "weight_decay": _num(group, "weight_decay", gi),
            "momentum": _num(group, "momentum", gi),
            "dampening": _num(group, "dampening", gi),
            "nesterov": bool(group["nesterov"]),
            "maximize": bool(group["maximize"]),
        }


class Adam(Optimizer):
    """Adam / AMSGrad (torch.optim.Adam); ``decoupled_weight_decay=True`` is AdamW.

    m ← lerp(m, g, 1−β1); v ← β2·v + (1−β2)·g²; (amsgrad: vmax ← max(vmax, v), v ← vmax);
    p ← p − (lr/(1−β1ᵗ))·m/(√v/√(1−β2ᵗ) + eps); L2 g ← g + wd·p or decoupled p ← p·(1 − lr·wd).
    """

    _spec = SPECS["Adam"]
    _PAIRED_BETAS = True

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        amsgrad: bool = False,
        *,
        foreach: bool | None = None,
        maximize: bool = False,
        capturable: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
        decoupled_weight_decay: bool = False,
        state_dtype: str | None = None,
        stochastic_rounding: bool = False,
        seed: int = 0,
    ) -> None:
        self._construct(locals())

    def _options(self, group: dict, gi: int) -> dict:
        beta1, beta2 = _num_pair(group, gi, tensors=True)
        return {
            "lr": _coef_num(group, "lr", gi),
            "beta1": beta1,
            "beta2": beta2,
            "eps": _num(group, "eps", gi),
            "weight_decay": _num(group, "weight_decay", gi),
            "amsgrad": bool(group["amsgrad"]),
            "maximize": bool(group["maximize"]),
            "decoupled_weight_decay": bool(group.get("decoupled_weight_decay", False)),
        }


class AdamW(Adam):
    """AdamW (torch.optim.AdamW): Adam with decoupled weight decay p ← p·(1 − lr·wd), wd=1e-2."""

    _spec = SPECS["AdamW"]
    _FIXED = {"decoupled_weight_decay": True}

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        capturable: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
        state_dtype: str | None = None,
        stochastic_rounding: bool = False,
        seed: int = 0,
    ) -> None:
        self._construct(locals())


class Adamax(Optimizer):
    """Adamax (torch.optim.Adamax): m ← lerp(m, g, 1−β1); u ← max(β2·u, |g| + eps);
    p ← p − (lr/(1−β1ᵗ))·m/u."""

    _spec = SPECS["Adamax"]

    def __init__(
        self,
        params: Any,
        lr: float = 2e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        foreach: bool | None = None,
        *,
        maximize: bool = False,
        differentiable: bool = False,
        capturable: bool = False,
        state_dtype: str | None = None,
        stochastic_rounding: bool = False,
        seed: int = 0,
    ) -> None:
        self._construct(locals())

    def _options(self, group: dict, gi: int) -> dict:
        beta1, beta2 = _num_pair(group, gi, tensors=True)
        return {
            "lr": _coef_num(group, "lr", gi),
            "beta1": beta1,
            "beta2": beta2,
            "eps": _num(group, "eps", gi),
            "weight_decay": _num(group, "weight_decay", gi),
            "maximize": bool(group["maximize"]),
        }


class RMSprop(Optimizer):
    """RMSprop (torch.optim.RMSprop): v ← α·v + (1−α)·g²; avg = √v + eps (centered:
    √(v − ḡ²) + eps with ḡ ← lerp(ḡ, g, 1−α)); momentum: buf ← μ·buf + g/avg, p ← p − lr·buf,
    else p ← p − lr·g/avg."""

    _spec = SPECS["RMSprop"]

    def __init__(
        self,
        params: Any,
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0,
        momentum: float = 0,
        centered: bool = False,
        capturable: bool = False,
        foreach: bool | None = None,
        maximize: bool = False,
        differentiable: bool = False,
        *,
        state_dtype: str | None = None,
        stochastic_rounding: bool = False,
        seed: int = 0,
    ) -> None:
        self._construct(locals())

    @staticmethod
    def _check_options(group: dict, loading: bool = False) -> None:
        if group.get("centered") and group.get("state_dtype") == "8bit":
            raise ValueError(
                "centered=True is not supported with 8-bit states: the quantized second "
                "moment can fall below the squared quantized mean, whose square root is NaN "
                "(bitsandbytes' 8-bit RMSprop refuses it too); use state_dtype='bfloat16'"
            )

    def _options(self, group: dict, gi: int) -> dict:
        return {
            "lr": _num(group, "lr", gi),
            "alpha": _num(group, "alpha", gi),
            "eps": _num(group, "eps", gi),
            "weight_decay": _num(group, "weight_decay", gi),
            "momentum": _num(group, "momentum", gi),
            "centered": bool(group["centered"]),
            "maximize": bool(group["maximize"]),
        }


class Rprop(Optimizer):
    """Rprop (torch.optim.Rprop): step sizes grow by η+ / shrink by η− on sign agreement /
    flip (clamped to step_sizes); where the sign flipped the gradient is zeroed;
    p ← p − sign(g)·step_size. No weight decay; ``lr`` only sets the initial step size."""

    _spec = SPECS["Rprop"]

    def __init__(
        self,
        params: Any,
        lr: float = 1e-2,
        etas: tuple[float, float] = (0.5, 1.2),
        step_sizes: tuple[float, float] = (1e-6, 50),
        *,
        capturable: bool = False,
        foreach: bool | None = None,
        maximize: bool = False,
        differentiable: bool = False,
        state_dtype: str | None = None,
        stochastic_rounding: bool = False,
        seed: int = 0,
    ) -> None:
        self._construct(locals())

    def _options(self, group: dict, gi: int) -> dict:
        etaminus, etaplus = _num_pair(group, gi, "etas")
        lo, hi = _num_pair(group, gi, "step_sizes")
        return {
            "lr": _num(group, "lr", gi),
            "etaminus": etaminus,
            "etaplus": etaplus,
            "step_size_min": lo,
            "step_size_max": hi,
            "maximize": bool(group["maximize"]),
        }


class Adagrad(Optimizer):
    """Adagrad (torch.optim.Adagrad, dense): clr = lr/(1 + (t−1)·lr_decay); sum ← sum + g²;
    p ← p − clr·g/(√sum + eps). State is created in the constructor (sum = init value)."""

    _spec = SPECS["Adagrad"]
    _EAGER_STATE = True  # torch creates it in the constructor too

    def __init__(
        self,
        params: Any,
        lr: float = 1e-2,
        lr_decay: float = 0,
        weight_decay: float = 0,
        initial_accumulator_value: float = 0,
        eps: float = 1e-10,
        foreach: bool | None = None,
        *,
        maximize: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
        state_dtype: str | None = None,
        stochastic_rounding: bool = False,
        seed: int = 0,
    ) -> None:
        self._construct(locals())

    def _options(self, group: dict, gi: int) -> dict:
        return {
            "lr": _coef_num(group, "lr", gi),
            "lr_decay": _num(group, "lr_decay", gi),
            "eps": _num(group, "eps", gi),
            "weight_decay": _num(group, "weight_decay", gi),
            "maximize": bool(group["maximize"]),
            # like torch, lazily created state uses the constructor's accumulator value
            "initial_accumulator_value": float(self.defaults["initial_accumulator_value"]),
        }


class Adadelta(Optimizer):
    """Adadelta (torch.optim.Adadelta): v ← ρv + (1−ρ)g²; δ = √(u + eps)/√(v + eps)·g;
    u ← ρu + (1−ρ)δ²; p ← p − lr·δ."""

    _spec = SPECS["Adadelta"]

    def __init__(
        self,
        params: Any,
        lr: float = 1.0,
        rho: float = 0.9,
        eps: float = 1e-6,
        weight_decay: float = 0,
        foreach: bool | None = None,
        *,
        capturable: bool = False,
        maximize: bool = False,
        differentiable: bool = False,
        state_dtype: str | None = None,
        stochastic_rounding: bool = False,
        seed: int = 0,
    ) -> None:
        self._construct(locals())

    def _options(self, group: dict, gi: int) -> dict:
        return {
            "lr": _num(group, "lr", gi),
            "rho": _num(group, "rho", gi),
            "eps": _num(group, "eps", gi),
            "weight_decay": _num(group, "weight_decay", gi),
            "maximize": bool(group["maximize"]),
        }


# --------------------------------------------------------------------------------------------
# 8-bit states
# --------------------------------------------------------------------------------------------

_EIGHT_BIT_DOC = """

    8-bit states (Dettmers et al. 2021): every state tensor of at least ``min_8bit_size``
    elements is stored as one byte per element (a dynamic non-linear, float8-like code:
    sign + 4 exponent + 3 fraction bits for moments and momentum buffers, 5 exponent + 3
    fraction bits for second moments and sums) plus one float32 scale (the block's absolute
    maximum) per ``block_size`` elements, ``<key>`` and ``<key>_f8absmax`` in the state
    dict; smaller tensors keep float32 state. A step decodes a
    block into float32 registers, applies the update of the float32 class in float32, and
    re-encodes the block with its new maximum (see :mod:`fastact.kernels.lowp`). Parameters
    are float32 or bfloat16 (``stochastic_rounding=True``: stochastic write-back)."""


class _EightBit:
    """Mixin: sets the storage defaults before the float32 class's constructor runs."""

    _STATE_DTYPES = (None, "float32", "bfloat16", "8bit")

    def _eight_bit(self, block_size: int, min_8bit_size: int) -> None:
        _RULES["block_size"](block_size, "block_size")
        _RULES["min_8bit_size"](min_8bit_size, "min_8bit_size")
        self._extra_defaults = {"block_size": block_size, "min_8bit_size": min_8bit_size}


#: the float32 classes' arguments that an 8-bit class does not take (its states are 8-bit; the
#: torch flags have no other value here)
_NOT_EIGHT_BIT = ("foreach", "capturable", "differentiable", "fused", "state_dtype")


def eight_bit_variant(base: type, doc: str, module: str) -> type:
    """The 8-bit class of the float32 optimizer class ``base`` (``<base>8bit`` of ``module``):
    ``base``'s signature without :data:`_NOT_EIGHT_BIT` (keyword-only from the first of them
    on), with ``block_size`` and ``min_8bit_size`` before ``stochastic_rounding``; it runs
    ``base``'s constructor with ``state_dtype='8bit'``. Declared once for fastact.optim and
    fastact.torch.optim."""
    name = base.__name__ + "8bit"
    sig = inspect.signature(base.__init__)
    kw = inspect.Parameter.KEYWORD_ONLY
    params, dropped = [], False
    for p in sig.parameters.values():  # keyword-only from the first dropped one on
        dropped = dropped or p.name in _NOT_EIGHT_BIT
        if p.name not in _NOT_EIGHT_BIT:
            params.append(p.replace(kind=kw) if dropped else p)
    at = next(i for i, p in enumerate(params) if p.name == "stochastic_rounding")
    params[at:at] = [
        inspect.Parameter("block_size", kw, default=DEFAULT_BLOCK_SIZE, annotation="int"),
        inspect.Parameter("min_8bit_size", kw, default=DEFAULT_MIN_8BIT_SIZE, annotation="int"),
    ]
    sig8 = sig.replace(parameters=params)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        try:
            bound = sig8.bind(self, *args, **kwargs)
        except TypeError as e:
            raise TypeError(f"{name}(): {e}") from None
        bound.apply_defaults()
        arguments = dict(bound.arguments)
        del arguments["self"]
        self._eight_bit(arguments.pop("block_size"), arguments.pop("min_8bit_size"))
        base.__init__(self, **arguments, state_dtype="8bit")

    __init__.__signature__ = sig8  # type: ignore[attr-defined]
    __init__.__qualname__ = f"{name}.__init__"
    __init__.__module__ = module
    namespace = {"__init__": __init__, "__doc__": (base.__doc__ or "") + doc}
    namespace.update(__module__=module, __qualname__=name)
    return type(name, (_EightBit, base), namespace)


SGD8bit = eight_bit_variant(SGD, _EIGHT_BIT_DOC, __name__)
Adam8bit = eight_bit_variant(Adam, _EIGHT_BIT_DOC, __name__)
AdamW8bit = eight_bit_variant(AdamW, _EIGHT_BIT_DOC, __name__)
RMSprop8bit = eight_bit_variant(RMSprop, _EIGHT_BIT_DOC, __name__)
Adagrad8bit = eight_bit_variant(Adagrad, _EIGHT_BIT_DOC, __name__)


#: The 8-bit optimizers: name -> class.
OPTIMIZERS_8BIT: dict[str, type[Optimizer]] = {
    cls.__name__: cls for cls in (SGD8bit, Adam8bit, AdamW8bit, RMSprop8bit, Adagrad8bit)
}

#: Registry: name -> class (used by the tests and the benchmark).
OPTIMIZERS: dict[str, type[Optimizer]] = {
    cls.__name__: cls for cls in (SGD, Adam, AdamW, Adamax, RMSprop, Rprop, Adagrad, Adadelta)
}
