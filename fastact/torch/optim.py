"""fastact's fused optimizer steps as ``torch.optim.Optimizer`` subclasses.

``fastact.torch.optim.AdamW(model.parameters(), lr=...)`` is a ``torch.optim.Optimizer``:
torch's schedulers (``torch.optim.lr_scheduler.*``, ``torch.optim.swa_utils.SWALR``), step
and state-dict hooks, ``add_param_group``, ``zero_grad``, closures, and wrappers that take an
``optimizer_class`` (``torch.distributed.optim.ZeroRedundancyOptimizer``) drive it
unchanged. Constructor signatures and defaults are torch's (torch 2.13); the update rules are
torch's single-tensor ones (``docs/torch_semantics.md``, section 3).

What differs from ``torch.optim`` is how a step runs: every param group is updated by one
fused parallel kernel per dtype (:mod:`fastact.optim.driver` over the host executor, the
kernels of :data:`fastact.kernels.optim.OPTIMIZERS`), in place through zero-copy NumPy views
of the parameters, gradients and state tensors; the launch tables are cached between steps
and rebuilt when a parameter's storage or the state changes, including a state tensor or
step count given new storage in place (``t.data = ...``, ``t.set_(...)``,
``t.share_memory_()``: every step compares their addresses).

The state is torch's own format, so state dicts go both ways between ``torch.optim.X`` and
``fastact.torch.optim.X`` (``state[p]['step']`` a 0-d float32 tensor, ``exp_avg`` ... tensors
shaped like the parameter): a run can switch implementations mid-training. Inside, the step
counts of the tensors stepped together are 0-d views of one small buffer, advanced in float32
like torch's ``step_t += 1`` in one vector operation.

Parameters must be CPU tensors of float32, float64 or bfloat16 (strided, C or Fortran
contiguous); others raise ``TypeError`` at construction (keep them in a ``torch.optim``
optimizer), and so do sparse gradients at a step (torch's SGD and Adagrad take them).
bfloat16 parameters are updated in float32 arithmetic and rounded back (to nearest even, or
stochastically with ``stochastic_rounding=True``), like torch's fused steps.

Low-precision states, as in :mod:`fastact.optim`: every class takes ``state_dtype``
('float32', 'bfloat16'; default the parameter's dtype), and ``SGD8bit``, ``Adam8bit``,
``AdamW8bit``, ``RMSprop8bit``, ``Adagrad8bit`` keep block-wise 8-bit states (``<key>`` uint8
codes and ``<key>_f8absmax`` float32 scales). Their state dicts are plain tensors
(``torch.load(weights_only=True)``); :meth:`Optimizer.load_state_dict` converts a loaded
state to the optimizer's own storage, so torch's float32 states load into the 8-bit classes
and 8-bit states into the float32 ones. (Not into ``torch.optim``'s: torch casts the uint8
codes to float and steps with them.)
Options torch has and fastact does not (``differentiable=True``, ``capturable=True``) raise
``ValueError``; ``foreach`` and ``fused`` are accepted, stored and ignored (every step is
fused). Like :mod:`fastact.optim`, a step validates every gradient and state tensor before it
writes anything, and a parameter listed twice (or two sharing memory) raises instead of
warning. ``step`` also takes ``check_finite=True`` / ``skip_nonfinite=True``
(:meth:`fastact.optim.Optimizer.step`).
"""

from __future__ import annotations

import copy
import inspect
import warnings
import weakref
from collections import defaultdict
from collections.abc import Callable
from itertools import chain
from typing import Any

import numpy as np
import torch

from fastact import host
from fastact.kernels.optim import Optim
from fastact.optim import driver
from fastact.optim import optimizers as _fa

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
    "OPTIMIZERS",
    "OPTIMIZERS_8BIT",
]

_NP_OF = {torch.float32: np.dtype(np.float32), torch.float64: np.dtype(np.float64)}
#: the parameter dtypes a step takes (bfloat16: the low-precision loops, float32 arithmetic)
_PARAM_DTYPES = (torch.float32, torch.float64, torch.bfloat16)


def _scalar_dtype() -> torch.dtype:
    """The dtype of torch's step tensors (float64 only under a float64 default dtype)."""
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


class StateMap(defaultdict):
    """``optimizer.state`` in torch's form (a ``defaultdict(dict)`` keyed by parameter) that
    counts its mutations in ``_version``: the driver's cached launch tables are revalidated
    only when a state entry was added, replaced or removed. Per-parameter values are
    :class:`fastact.optim.driver.ParamState` dicts (pickled as plain dicts)."""

    def __init__(self, default_factory: Any = None, items: Any = ()) -> None:
        super().__init__(dict)
        self._version = 0
        for k, v in items.items() if isinstance(items, dict) else items:
            self[k] = v

    def _wrap(self, value: Any) -> Any:
        if isinstance(value, driver.ParamState) and value._owner is self:
            return value
        if isinstance(value, dict):
            return driver.ParamState(self, value)
        return value

    def __missing__(self, key: Any) -> driver.ParamState:
        value = driver.ParamState(self)
        dict.__setitem__(self, key, value)
        self._version += 1
        return value

    def __setitem__(self, key: Any, value: Any) -> None:
        dict.__setitem__(self, key, self._wrap(value))
        self._version += 1

    def __delitem__(self, key: Any) -> None:
        dict.__delitem__(self, key)
        self._version += 1

    def pop(self, *args: Any) -> Any:
        self._version += 1
        return dict.pop(self, *args)

    def popitem(self) -> tuple:
        self._version += 1
        return dict.popitem(self)

    def clear(self) -> None:
        dict.clear(self)
        self._version += 1

    def update(self, *args: Any, **kwargs: Any) -> None:
        for k, v in dict(*args, **kwargs).items():
            self[k] = v

    def setdefault(self, key: Any, default: Any = None) -> Any:
        if key not in self:
            self[key] = default
        return dict.__getitem__(self, key)

    def __reduce__(self) -> tuple:
        return (StateMap, (dict, list(self.items())), {"blocks": driver.saved_blocks(self)})

    def __setstate__(self, state: dict) -> None:
        # the block sizes of the 8-bit codes (driver.block_records), re-keyed
        driver.restore_blocks(self, state.get("blocks", ()))


#: the launches' count buffers by address, weakly held (each lives as long as the storage of
#: its counts): :meth:`TensorSteps.load` finds the buffer a count was moved into
_STEP_BUFFERS: weakref.WeakValueDictionary = weakref.WeakValueDictionary()


class TensorSteps:
    """``state['step']`` as torch's 0-d step tensor (the driver's ``_steps``; see
    :class:`fastact.optim.driver.FloatSteps` for the four functions).

    The counts of one launch (a param group and dtype) are 0-d views of one NumPy buffer,
    made when the launch tables are built (loaded or new counts are copied in): a step reads
    them, adds 1 in the counts' dtype (float32: torch's ``step_t += 1``) and writes them back
    with one vector operation each. A count replaced in the state (``load_state_dict``, a
    user) is copied into a new buffer when the tables are rebuilt; one changed in place is
    read at the next step."""

    @staticmethod
    def load(plan: driver.Plan, names: list[str]) -> bool:
        steps: list[float] = []
        base: Any = None
        homed = True
        for col, (st, name) in enumerate(zip(plan.sts, names, strict=True)):
            s = None if st is None else st.get("step")
            if s is None:
                steps.append(0.0)
                homed = False
                continue
            if isinstance(s, torch.Tensor):
                if s.numel() != 1:
                    raise TypeError(
                        f"state[{name}]['step'] must be a number or a one-element tensor, "
                        f"got a tensor of shape {tuple(s.shape)}"
                    )
                steps.append(float(s))
                if col == 0:  # the launch buffer it lives in (the others: by address below)
                    base = _STEP_BUFFERS.get(s.untyped_storage().data_ptr())
                continue
            try:
                steps.append(float(s))
            except (TypeError, ValueError):
                raise TypeError(f"state[{name}]['step'] must be a number, got {s!r}") from None
            homed = False
        for count, name in zip(steps, names, strict=True):
            driver.check_step(count, name)
        buf = base
        if homed and buf is not None and buf.size == len(steps):
            at = [buf.ctypes.data + col * buf.itemsize for col in range(buf.size)]
            counts = [st["step"] for st in plan.sts]
            homed = [s.data_ptr() for s in counts] == at  # none given other memory (.data =)
        else:
            homed = False
        if homed:
            plan.counter = buf
            plan.watch += counts
            plan.watch_ptrs += at
        plan.steps = steps
        return not homed

    @staticmethod
    def check(plan: driver.Plan, k0: int) -> None:
        """ValueError (before anything is written) for a count edited in place to a negative,
        infinite or NaN value (one vector test of the launch's counts)."""
        buf = plan.counter
        if not (buf.min() >= 0 and buf.max() < np.inf):  # NaN fails both
            col = int(np.argmax(~((buf >= 0) & (buf < np.inf))))
            driver.check_step(float(buf[col]), f"params[{k0 + plan.js[col]}]")

    @staticmethod
    def create(plan: driver.Plan) -> None:
        """The launch's counts into one new buffer. A count that is already a 0-d CPU tensor
        of the buffer's dtype is moved there itself (``set_``: the same tensor object, so a
        reference to ``state['step']`` taken earlier, e.g. in a ``state_dict()``, stays
        live, as torch's in-place ``step_t += 1`` keeps it); any other count is replaced by
        a 0-d view of the buffer."""
        buf = np.array(plan.steps, dtype=_NP_OF[_scalar_dtype()])
        base = torch.from_numpy(buf)
        _STEP_BUFFERS[buf.ctypes.data] = buf  # (no attribute on the counts: torch.save
        # pickles a tensor's attributes, and a weights_only load refuses NumPy arrays)
        for col, st in enumerate(plan.sts):
            count = st.get("step")
            if (
                type(count) is torch.Tensor
                and count.dtype == base.dtype
                and count.dim() == 0
                and count.device.type == "cpu"
                and not count.requires_grad
            ):
                count.set_(base.untyped_storage(), col, (), ())
            else:
                count = base[col]
                dict.__setitem__(st, "step", count)  # a count moved, not a state change
            plan.watch.append(count)
            plan.watch_ptrs.append(buf.ctypes.data + col * buf.itemsize)
        plan.counter = buf

    @staticmethod
    def advance(plan: driver.Plan) -> list[float]:
        buf = plan.counter
        if buf is None:  # counts that create() will put in a buffer from plan.steps
            buf = np.array(plan.steps, dtype=_NP_OF[_scalar_dtype()])
        return (buf + buf.dtype.type(1)).tolist()

    @staticmethod
    def store(plan: driver.Plan, steps: list[float]) -> None:
        plan.counter[...] = steps
        plan.steps = steps


def _entry(p: Any, name: str) -> Any:
    """The host executor's entry of parameter ``p`` (TypeError / ValueError naming it)."""
    hint = (
        "fastact.torch.optim steps CPU float32/float64/bfloat16 tensors: keep "
        f"{name} in a torch.optim"
    )
    if isinstance(p, torch.Tensor):
        if p.device.type != "cpu":
            raise TypeError(f"{name} is on {p.device}; {hint} optimizer")
        if p.dtype not in _PARAM_DTYPES:
            raise TypeError(f"{name} has dtype {p.dtype}; {hint} optimizer")
    return host.entry(p, name)


class Optimizer(torch.optim.Optimizer):
    """Base class: a ``torch.optim.Optimizer`` whose ``step`` is fastact's fused driver.

    Subclasses set ``_spec`` (their entry of :data:`fastact.kernels.optim.OPTIMIZERS`) and
    ``_fastact`` (the :mod:`fastact.optim` class whose ``_options`` reads a param group)."""

    _spec: Optim
    _fastact: type
    #: ``state['step']`` is torch's 0-d step tensor
    _steps = TensorSteps
    #: the state_dtype values the class accepts (the 8-bit classes add '8bit')
    _STATE_DTYPES: tuple = (None, "float32", "bfloat16")
    #: storage defaults of the 8-bit classes (block_size, min_8bit_size), set before __init__
    _extra_defaults: dict = {}

    def __init__(self, params: Any, defaults: dict[str, Any]) -> None:
        defaults = {**defaults, **self._extra_defaults}
        self._cache: dict[int, driver.GroupCache] = {}
        #: True when the last ``step(skip_nonfinite=True)`` was skipped (non-finite gradient).
        self.found_inf = False
        #: Steps skipped by ``skip_nonfinite=True`` since construction.
        self.skipped_steps = 0
        self._check_group(dict(defaults))
        super().__init__(params, defaults)
        self.state = StateMap(dict, self.state)
        # GradScaler: unscale and skip in Python (the generic path), never pass grad_scale
        self._step_supports_amp_scaling = False

    # ------------------------------------------------------------------------- groups
    def _check_group(self, group: dict[str, Any], loading: bool = False) -> None:
        """Validate a group's numeric options like the constructor's arguments (torch's
        messages; torch checks only the constructor's); a loaded lr (``loading``; every step
        checks its groups so too) may be any real number (as in fastact.optim's classes)."""
        for key, value in group.items():
            rule = _fa._real if loading and key == "lr" else _fa._RULES.get(key)
            if rule is not None:
                rule(value, key)
        if group.get("differentiable"):
            raise ValueError("differentiable=True is not supported: fastact steps are not autograd")
        if group.get("capturable"):
            raise ValueError("capturable=True is not supported: it needs a CUDA-like device")
        if "state_dtype" in group and group["state_dtype"] not in self._STATE_DTYPES:
            raise ValueError(
                f"state_dtype must be one of {self._STATE_DTYPES} for {type(self).__name__}, "
                f"got {group['state_dtype']!r}"
                + (" (use the 8-bit classes, e.g. AdamW8bit)" if group["state_dtype"] == "8bit"
                   else "")
            )  # fmt: skip
        self._fastact._check_options(group, loading)

    def _options(self, group: dict, gi: int) -> dict:
        """The group's options under the functional API's names (the spec's input)."""
        return self._fastact._options(self, group, gi)

    def _step_options(self, group: dict, gi: int) -> dict:
        """``_options`` plus the storage options (state_dtype, block_size, min_8bit_size,
        stochastic_rounding, seed), missing ones taken from the defaults."""
        o = self._options(group, gi)
        d = self.defaults
        for key, default in _fa._STORAGE_DEFAULTS.items():
            o[key] = group.get(key, d.get(key, default))
        return o

    def _layout(self, options: dict, e: Any, name: str) -> Any:
        """The storage layout of entry ``e`` (TypeError when its dtype cannot have it)."""
        return driver.entry_layout(host, options, e, name)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """torch's ``add_param_group`` (defaults filled in, names, checks), then fastact's
        checks of the new group: its options, every parameter a CPU float32/float64 tensor in
        a contiguous layout, no parameter twice and none sharing memory with another. The
        group is not added when a check fails."""
        with warnings.catch_warnings():  # fastact raises for duplicates (below)
            warnings.filterwarnings("ignore", "optimizer contains a parameter group with dup")
            super().add_param_group(param_group)
        group = self.param_groups[-1]
        gi = len(self.param_groups) - 1
        try:
            self._check_group(group)
            names = [f"param_groups[{gi}]['params'][{k}]" for k in range(len(group["params"]))]
            entries = [_entry(p, name) for p, name in zip(group["params"], names, strict=True)]
            if len({id(p) for p in group["params"]}) != len(group["params"]):
                raise ValueError(
                    "optimizer contains a parameter group with duplicate parameters; fused "
                    "parallel updates need each parameter once"
                )
            driver.check_overlap(self, host)
            options = self._step_options(group, gi)
            for e, name in zip(entries, names, strict=True):
                self._layout(options, e, name)  # TypeError for unsupported storage
        except Exception:
            self.param_groups.pop()
            raise
        self._cache[id(group)] = driver.GroupCache(group, entries)
        # Adagrad's state of a group added later is made at its first step, as in torch

    # ------------------------------------------------------------------------- step
    def step(
        self,
        closure: Callable[[], Any] | None = None,
        *,
        check_finite: bool = False,
        skip_nonfinite: bool = False,
    ) -> Any:
        """One step over every param group (fastact's fused kernels, in place); returns
        ``closure()``'s value when a closure is given (called with grad enabled, like
        torch). Parameters whose ``.grad`` is None are skipped. ``check_finite=True`` raises
        ValueError on a NaN/inf gradient before any update; ``skip_nonfinite=True`` skips the
        whole step instead (``found_inf`` tells, ``skipped_steps`` counts)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if type(self.state) is not StateMap:  # reassigned, e.g. a reset to defaultdict(dict)
            self.state = StateMap(dict, self.state)
        work = driver.prepare(self, host, None)
        if check_finite or skip_nonfinite:
            k = driver.first_nonfinite(host, work)
            if k is not None:
                if skip_nonfinite:
                    self.found_inf = True
                    self.skipped_steps += 1
                    return loss
                raise ValueError(f"grads[{k}] contains NaN or infinite values (check_finite=True)")
        driver.apply(self, host, work)
        self.found_inf = False
        return loss

    # ------------------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        """torch's ``state_dict`` (references to the state tensors, step counts included),
        each parameter's state a plain dict, so that ``torch.load(weights_only=True)``
        reads a saved one. A group's ``block_size`` is the one its 8-bit codes were written
        in (a block_size changed in place since, not yet refused by a step, is not saved
        beside codes of the old blocks)."""
        blocks, k0 = [], 0
        for gi, group in enumerate(self.param_groups):
            blocks.append(driver.saved_block_size(self.state, group, gi, k0))
            k0 += len(group["params"])
        sd = super().state_dict()
        state = sd.get("state") if isinstance(sd, dict) else None
        if isinstance(state, dict):
            sd["state"] = {
                k: dict(v) if isinstance(v, driver.ParamState) else v for k, v in state.items()
            }
        packed = sd.get("param_groups") if isinstance(sd, dict) else None
        if isinstance(packed, list) and len(packed) == len(blocks):
            for g, block in zip(packed, blocks, strict=True):
                if block is not None and isinstance(g, dict) and "block_size" in g:
                    g["block_size"] = block
        return sd

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """torch's ``load_state_dict`` (pre- and post-hooks, the group checks, the options of
        the saved groups), with each parameter's state converted to the storage that the
        loaded options give it (:func:`fastact.host.optim.load_param_state`) instead of
        torch's cast to the parameter's dtype: a float32 state loads into
        ``state_dtype='bfloat16'`` or an 8-bit class (rounded to nearest even, quantized
        block-wise), 8-bit codes with their ``<key>_f8absmax`` scales into a float32 class
        (decoded). State tensors are copied in the parameter's memory order, step counts
        stay what they were (tensors copied), other values are deep-copied. All-or-nothing:
        every state is converted and checked before the optimizer changes. The storage
        options (``state_dtype``, ``block_size``, ``min_8bit_size``) stay this optimizer's:
        an 8-bit state dict loads into ``AdamW`` as float32 state and back."""
        state_dict = state_dict.copy()
        for pre_hook in self._optimizer_load_state_dict_pre_hooks.values():
            hooked = pre_hook(self, state_dict)
            if hooked is not None:
                state_dict = hooked
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
        for g, sg in zip(groups, saved_groups, strict=True):
            sg["params"] = g["params"]
            if "param_names" in g and "param_names" not in sg:
                sg["param_names"] = g["param_names"]
            driver.keep_storage(sg, g)  # the storage is this optimizer's: the state converts
            for key, value in self.defaults.items():
                sg.setdefault(key, value)
            self._check_group(sg, loading=True)
            new_groups.append(sg)
        where = {id(p): gi for gi, g in enumerate(new_groups) for p in g["params"]}
        keys = [k for k, _a in self._spec.state]
        rows = dict(zip(keys, self._spec.signed or (True,) * len(keys), strict=True))
        state = StateMap()
        for k, value in state_dict["state"].items():
            if k not in id_map:  # torch keeps state of unknown parameters as it is
                state[k] = value
                continue
            p = id_map[k]
            name = f"state_dict['state'][{k!r}]"
            if not isinstance(value, dict):
                raise TypeError(f"{name} must be a dict, got {type(value).__name__}")
            gi = where[id(p)]
            options = self._step_options(new_groups[gi], gi)
            layout = self._layout(options, _entry(p, name), name)
            arrays = {key: v for key, v in value.items() if key != "step" and v is not None}
            block = int(state_dict["param_groups"][gi].get("block_size") or 0)  # the codes'
            st = host.load_param_state(p, arrays, name, layout, rows, block)
            if layout.q8:  # the loaded codes are in this layout's blocks now
                driver.record_block(state, p, layout.block)
            for key, v in value.items():
                if key == "step":
                    st[key] = v.detach().clone() if isinstance(v, torch.Tensor) else copy.copy(v)
                elif v is None:
                    st[key] = None
            state[p] = st
        self.__setstate__({"state": state, "param_groups": new_groups})
        for post_hook in self._optimizer_load_state_dict_post_hooks.values():
            post_hook(self)

    def __setstate__(self, state: dict[str, Any]) -> None:
        """torch's (unpickling, ``load_state_dict``), then the state as a :class:`StateMap`,
        group options missing from an older state dict filled from the defaults, and the
        launch caches dropped."""
        super().__setstate__(state)
        if not isinstance(self.state, StateMap):
            self.state = StateMap(dict, self.state)
        for group in self.param_groups:
            for key, value in self.defaults.items():
                group.setdefault(key, value)
            group.update(self._fastact._FIXED)  # AdamW's decoupled decay, as torch's __setstate__
        self.__dict__["_cache"] = {}
        self.__dict__.setdefault("found_inf", False)
        self.__dict__.setdefault("skipped_steps", 0)
        self._step_supports_amp_scaling = False


# --------------------------------------------------------------------------------------------
# the optimizers: torch's signatures and defaults
# --------------------------------------------------------------------------------------------


def torch_variant(fa: type, base: type) -> type:
    """The ``torch.optim.Optimizer`` class of fastact.optim class ``fa``: its signature,
    defaults and checks (:func:`fastact.optim.optimizers.constructor_defaults`, tensor
    betas kept as torch keeps them), with ``base`` (:class:`Optimizer` or the variant of
    ``fa``'s base: AdamW is an Adam, as in torch)."""
    name = fa.__name__
    sig = inspect.signature(fa.__init__)

    def __init__(self: Optimizer, *args: Any, **kwargs: Any) -> None:
        try:
            bound = sig.bind(self, *args, **kwargs)
        except TypeError as e:
            raise TypeError(f"{name}(): {e}") from None
        bound.apply_defaults()
        params, defaults = _fa.constructor_defaults(fa, bound.arguments, float_betas=False)
        Optimizer.__init__(self, params, defaults)
        if fa._EAGER_STATE:
            driver.eager_state(self, host)

    __init__.__signature__ = sig  # type: ignore[attr-defined]
    __init__.__qualname__ = f"{name}.__init__"
    doc = f"torch.optim.{name} as a ``torch.optim.Optimizer`` (fastact's fused step). "
    namespace = {"__init__": __init__, "__doc__": doc + (fa.__doc__ or "")}
    namespace.update(_spec=fa._spec, _fastact=fa, __module__=__name__, __qualname__=name)
    return type(name, (base,), namespace)


SGD = torch_variant(_fa.SGD, Optimizer)
Adam = torch_variant(_fa.Adam, Optimizer)
AdamW = torch_variant(_fa.AdamW, Adam)
Adamax = torch_variant(_fa.Adamax, Optimizer)
RMSprop = torch_variant(_fa.RMSprop, Optimizer)
Rprop = torch_variant(_fa.Rprop, Optimizer)
Adagrad = torch_variant(_fa.Adagrad, Optimizer)
Adadelta = torch_variant(_fa.Adadelta, Optimizer)


# --------------------------------------------------------------------------------------------
# 8-bit states: fastact.optim's 8-bit classes as torch.optim.Optimizers
# --------------------------------------------------------------------------------------------

_EIGHT_BIT_DOC = """

    8-bit states (as in :class:`fastact.optim.AdamW8bit`): every state tensor of at
    least ``min_8bit_size`` elements is one byte per element (a dynamic float8-like code,
    signed for moments and momentum buffers, unsigned for second moments and sums; see
    :mod:`fastact.kernels.lowp`) plus one float32
    scale per ``block_size`` elements, ``<key>`` (a uint8 tensor) and ``<key>_f8absmax`` (a 1-d
    float32 tensor) in the state dict; smaller tensors keep float32 state. The update is the
    float32 class's, in float32 on the decoded block. Parameters are float32 or bfloat16
    tensors (``stochastic_rounding=True``: stochastic write-back). The state dict saves and
    loads with ``torch.save`` / ``torch.load(weights_only=True)``; it loads into any
    ``fastact.torch.optim`` class of the same rule (decoded for float32 states), and a
    ``torch.optim`` state dict loads into an 8-bit class (quantized on load)."""


SGD8bit = _fa.eight_bit_variant(SGD, _EIGHT_BIT_DOC, __name__)
Adam8bit = _fa.eight_bit_variant(Adam, _EIGHT_BIT_DOC, __name__)
AdamW8bit = _fa.eight_bit_variant(AdamW, _EIGHT_BIT_DOC, __name__)
RMSprop8bit = _fa.eight_bit_variant(RMSprop, _EIGHT_BIT_DOC, __name__)
Adagrad8bit = _fa.eight_bit_variant(Adagrad, _EIGHT_BIT_DOC, __name__)


#: name -> class (the tests and the benchmark iterate it).
OPTIMIZERS: dict[str, type[Optimizer]] = {
    cls.__name__: cls for cls in (SGD, Adam, AdamW, Adamax, RMSprop, Rprop, Adagrad, Adadelta)
}

#: The 8-bit optimizers: name -> class.
OPTIMIZERS_8BIT: dict[str, type[Optimizer]] = {
    cls.__name__: cls for cls in (SGD8bit, Adam8bit, AdamW8bit, RMSprop8bit, Adagrad8bit)
}
