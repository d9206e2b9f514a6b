"""torch.optim-compatible optimizers whose step is one fused parallel kernel per param group.

Parameters are writable float32/float64 NumPy arrays (any shape, C or Fortran contiguous) or
CPU torch tensors, which are updated in place through zero-copy NumPy views; or, in the whole
optimizer, CUDA device arrays (``__cuda_array_interface__``: numba, CuPy, torch CUDA), whose
steps run on the GPU (:mod:`fastact.cuda._optimizer`, needs ``fastact[cuda]``; state on the
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
  defaults).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Iterator, MutableMapping, Sequence
from itertools import chain
from typing import Any

import numpy as np

from fastact.cuda import is_device_array as _is_device_array
from fastact.optim import functional as F

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
]


class _Required:
    def __repr__(self) -> str:
        return "<required parameter>"


required = _Required()

_F32_LIMIT = float(2**24)


def _next_step(s: float) -> float:
    """s + 1 as torch's float32 step tensor computes it (exact below 2**24)."""
    if s < _F32_LIMIT:
        return s + 1.0
    return float(np.float32(s) + np.float32(1.0))


def _typename(x: Any) -> str:
    t = type(x)
    return t.__name__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


def _is_param(x: Any) -> bool:
    return isinstance(x, np.ndarray) or F.is_tensor(x)


def _device_impl():
    """fastact.cuda's optimizer driver (imported on the first device parameter)."""
    from fastact.cuda import require

    require("a fastact optimizer got CUDA device parameters")
    from fastact.cuda import _optimizer

    return _optimizer


def _tensor_type() -> type:
    torch = F._torch()
    return torch.Tensor if torch is not None else _NoTensor


class _NoTensor:
    pass


class _ParamState(dict):
    """One parameter's state dict. Any mutation bumps the owning map's version, so a step
    revalidates its cached pointer tables only when some state entry was replaced."""

    __slots__ = ("_owner",)

    def __init__(self, owner: _StateMap | None, *args: Any, **kwargs: Any) -> None:
        dict.__init__(self, *args, **kwargs)
        self._owner = owner

    def _touch(self) -> None:
        if self._owner is not None:
            self._owner._version += 1

    def __setitem__(self, key: Any, value: Any) -> None:
        dict.__setitem__(self, key, value)
        self._touch()

    def __delitem__(self, key: Any) -> None:
        dict.__delitem__(self, key)
        self._touch()

    def update(self, *args: Any, **kwargs: Any) -> None:
        dict.update(self, *args, **kwargs)
        self._touch()

    def pop(self, *args: Any) -> Any:
        self._touch()
        return dict.pop(self, *args)

    def popitem(self) -> tuple:
        self._touch()
        return dict.popitem(self)

    def clear(self) -> None:
        dict.clear(self)
        self._touch()

    def setdefault(self, key: Any, default: Any = None) -> Any:
        self._touch()
        return dict.setdefault(self, key, default)

    def __reduce__(self) -> tuple:
        return (dict, (dict(self),))


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
        # keyed by id(): pickle/deepcopy the (param, state) pairs and re-key on load
        return {"items": [(p, dict(st)) for p, st in self._d.values()]}

    def __setstate__(self, state: dict) -> None:
        self._d = {}
        self._version = 0
        for p, st in state["items"]:
            self._d[id(p)] = (p, _ParamState(self, st))


class _Entry:
    """Validated view of one parameter: NumPy array, address, layout, torch identity."""

    __slots__ = ("obj", "arr", "addr", "dtype", "shape", "c", "f", "tdtype", "tptr")

    def __init__(self, obj: Any, name: str) -> None:
        self.obj = obj
        arr = F.as_array(obj, name)
        F.check_param(arr, name)
        self.arr = arr
        self.addr = F.address(arr)
        self.dtype = arr.dtype
        self.shape = arr.shape
        self.c = arr.flags.c_contiguous
        self.f = arr.flags.f_contiguous
        if F.is_tensor(obj):
            self.tdtype = obj.dtype
            self.tptr = obj.data_ptr()
        else:
            self.tdtype = None
            self.tptr = 0

    def grad(self, g: Any, k: int, tensor_type: type) -> tuple[Any, int]:
        """Validate gradient ``g`` (grads[k]); return (object to keep alive, address)."""
        if type(g) is np.ndarray:
            if g.dtype == self.dtype and g.shape == self.shape:
                fl = g.flags
                if fl.aligned and ((self.c and fl.c_contiguous) or (self.f and fl.f_contiguous)):
                    return g, F.address(g)
        elif isinstance(g, tensor_type):
            if (
                g.dtype is self.tdtype
                and self.c
                and g.shape == self.shape
                and g.is_cpu
                and g.layout is F._torch().strided
                and g.is_contiguous()
            ):
                return g, g.data_ptr()
        a = F.grad_array(g, self.arr, f"grads[{k}]", f"params[{k}]")
        return a, F.address(a)


class _Plan:
    """Cached launch data of one (group, dtype) bucket: which parameters take part, the
    pointer table (row 1, the gradients, is refilled every step), the chunk table, the state
    dicts and their steps. Valid while the state map's version is unchanged."""

    __slots__ = (
        "js",
        "keys",
        "smap",
        "version",
        "ptrs",
        "chunks",
        "total",
        "sts",
        "steps",
        "missing",
        "fresh",
        "proto",
        "tparams",
    )


class _GroupCache:
    __slots__ = ("group", "entries", "plans")

    def __init__(self, group: dict) -> None:
        self.group = group
        self.entries: list[_Entry] | None = None
        self.plans: dict = {}


def _num(group: dict, key: str, gi: int) -> float:
    try:
        return float(group[key])
    except KeyError:
        raise KeyError(f"param_groups[{gi}] has no '{key}' option") from None
    except (TypeError, ValueError):
        raise TypeError(
            f"param_groups[{gi}]['{key}'] must be a number, got {group[key]!r}"
        ) from None


class Optimizer:
    """Base class: param groups, state, step driver, state_dict (torch.optim.Optimizer API).

    Subclasses define ``_kind`` (kernel name), ``_has_step``, ``_state_spec(group)`` (state
    keys in kernel row order with their initial value, ``None`` for an unused row),
    ``_scalars(group, gi)`` (the kernel's group arguments) and ``_coefs(group, gi, step)``.
    """

    _kind: str = ""
    _has_step: bool = True

    def __init__(self, params: Any, defaults: dict[str, Any]) -> None:
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
        self._cache: dict[int, _GroupCache] = {}
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

    def _check_group(self, group: dict[str, Any]) -> None:
        """Validate a group's options like the constructor's arguments (``_RULES``)."""
        for key, value in group.items():
            rule = _RULES.get(key)
            if rule is not None:
                rule(value, key)

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
            if F.is_tensor(p) and not (p.is_leaf or p.retains_grad):
                raise ValueError("can't optimize a non-leaf Tensor")
        names_k = [f"param_groups[{gi}]['params'][{k}]" for k in range(len(tensors))]
        if device:
            dev_impl = _device_impl()
            entries = dev_impl.entries(tensors, names_k)
        else:
            entries = [_Entry(p, n) for p, n in zip(tensors, names_k, strict=True)]
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
        if device:
            dev_impl.check_overlap(self, list(zip(entries, names_k, strict=True)))
        else:
            self._check_overlap(extra=[(e.arr, n) for e, n in zip(entries, names_k, strict=True)])
        # all checks passed: commit (the caller's dict gets the defaults, like torch)
        param_group.clear()
        param_group.update(new_group)
        self._device = device
        self.param_groups.append(param_group)
        cache = _GroupCache(param_group)
        cache.entries = entries
        self._cache[id(param_group)] = cache

    def _check_overlap(self, extra: Sequence[tuple[np.ndarray, str]] = ()) -> None:
        arrays, names = [], []
        for gi, g in enumerate(self.param_groups):
            for k, p in enumerate(g["params"]):
                name = f"param_groups[{gi}]['params'][{k}]"
                arrays.append(F.as_array(p, name))
                names.append(name)
        for a, name in extra:
            arrays.append(a)
            names.append(name)
        F.check_no_overlap(arrays, names)

    def _entries(self, group: dict, k0: int) -> tuple[_GroupCache, list[_Entry]]:
        """The group's validated entries (rebuilt when the params or their storage changed)."""
        cache = self._cache.get(id(group))
        if cache is None or cache.group is not group:
            cache = _GroupCache(group)
            self._cache[id(group)] = cache
        params = group["params"]
        ents = cache.entries
        if (
            ents is None
            or len(ents) != len(params)
            or any(e.obj is not p for e, p in zip(ents, params, strict=True))
        ):
            ents = [_Entry(p, f"params[{k0 + j}]") for j, p in enumerate(params)]
            self._check_overlap()
            cache.entries = ents
            cache.plans.clear()
            return cache, ents
        for j, e in enumerate(ents):
            if e.tdtype is not None:
                t = e.obj
                if t.data_ptr() != e.tptr or t.shape != e.shape or t.dtype is not e.tdtype:
                    ents[j] = _Entry(t, f"params[{k0 + j}]")
                    self._check_overlap()
                    cache.plans.clear()
            elif not e.arr.flags.writeable:
                raise ValueError(f"params[{k0 + j}] is read-only; parameters are updated in place")
        return cache, ents

    # ----------------------------------------------------------------------------- step

    def _state_spec(self, group: dict) -> list[tuple[str, Any] | None]:
        raise NotImplementedError

    def _scalars(self, group: dict, gi: int) -> tuple:
        raise NotImplementedError

    def _coefs(self, group: dict, gi: int, step: float) -> tuple:
        return (0.0,)

    def _new_states(self, ents: list[_Entry], value: float) -> list[tuple[Any, int]]:
        """State arrays for ``ents`` (one dtype), filled with ``value``: views into one flat
        buffer (each start padded to 64 bytes), so big models get few large allocations
        (huge pages) instead of many small ones. Returns (state object, address) pairs."""
        if not ents:
            return []
        dt = ents[0].dtype
        pad = max(1, 64 // dt.itemsize)
        sizes = [e.arr.size for e in ents]
        offsets = np.cumsum([0] + [-(-n // pad) * pad for n in sizes])
        buf = np.zeros(int(offsets[-1]), dtype=dt)
        if value != 0:
            buf.fill(value)
        out = []
        for e, n, off in zip(ents, sizes, offsets[:-1], strict=True):
            a = buf[int(off) : int(off) + n].reshape(e.shape, order="C" if e.c else "F")
            obj = F._torch().from_numpy(a) if e.tdtype is not None else a
            out.append((obj, F.address(a)))
        return out

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
            loss = closure()
        if self._device:
            skipped = _device_impl().step(self, grads, check_finite, skip_nonfinite)
            if skipped:
                self.skipped_steps += 1
            self.found_inf = skipped
            self._opt_called = True
            return loss
        work = self._prepare(grads)
        if check_finite or skip_nonfinite:
            tables, where = [], []
            for _group, _gi, _scal, _spec, buckets in work:
                for plan, _gkeep, ks in buckets:
                    tables.append((plan.proto, plan.ptrs, plan.chunks, plan.total))
                    where.append(ks)
            bad = F.first_nonfinite(tables)
            if bad is not None:
                if skip_nonfinite:
                    self.found_inf = True
                    self.skipped_steps += 1
                    self._opt_called = True
                    return loss
                k = where[bad[0]][bad[1]]
                raise ValueError(f"grads[{k}] contains NaN or infinite values (check_finite=True)")
        self._apply(work)
        self.found_inf = False
        self._opt_called = True
        return loss

    def _prepare(self, grads: Any) -> list:
        """Phase 1: validate everything and build the launch plans; writes no array."""
        groups = self.param_groups
        if grads is not None:
            total = sum(len(g["params"]) for g in groups)
            if _is_param(grads) or not isinstance(grads, (list, tuple)):
                raise TypeError(
                    "grads must be a list or tuple aligned with the parameters, got "
                    + _typename(grads)
                )
            if len(grads) != total:
                raise ValueError(
                    f"grads has {len(grads)} entries but the optimizer has {total} parameters"
                )
        ttype = _tensor_type()
        work = []
        k0 = 0
        for gi, group in enumerate(groups):
            cache, ents = self._entries(group, k0)
            scal = self._scalars(group, gi)
            spec = self._state_spec(group)
            keys = tuple(None if s is None else s[0] for s in spec)
            by_dt: dict = {}
            for j, e in enumerate(ents):
                k = k0 + j
                if grads is not None:
                    g = grads[k]
                elif e.tdtype is not None or hasattr(e.obj, "grad"):
                    g = e.obj.grad  # torch tensors and arrays with .grad (fastact.nn.Parameter)
                else:
                    raise TypeError(
                        f"params[{k}] is a NumPy array: pass its gradient, step(grads=[...])"
                    )
                if g is None:
                    continue
                keep, gaddr = e.grad(g, k, ttype)
                b = by_dt.get(e.dtype)
                if b is None:
                    b = by_dt[e.dtype] = ([], [], [], [])
                b[0].append(j)
                b[1].append(keep)
                b[2].append(gaddr)
                b[3].append(k)
            buckets = []
            for dt, (js, keep, gaddrs, ks) in by_dt.items():
                js = tuple(js)
                plan = cache.plans.get(dt)
                if (
                    plan is None
                    or plan.js != js
                    or plan.keys != keys
                    or plan.smap is not self.state
                    or plan.version != self.state._version
                ):
                    plan = self._plan(ents, js, keys, ks, dt)
                    cache.plans[dt] = plan
                plan.ptrs[1] = gaddrs
                buckets.append((plan, keep, ks))
            work.append((group, gi, scal, spec, buckets))
            k0 += len(ents)
        return work

    def _plan(self, ents: list[_Entry], js: tuple, keys: tuple, ks: list, dt: np.dtype) -> _Plan:
        """Build (and validate) the launch data for the parameters ``js`` of one bucket."""
        m = len(js)
        ptrs = np.zeros((2 + len(keys), m), dtype=np.int64)
        sts, steps, missing, arrays, names = [], [], [], [], []
        for col, j in enumerate(js):
            e = ents[j]
            k = ks[col]
            ptrs[0, col] = e.addr
            arrays.append(e.arr)
            names.append(f"params[{k}]")
            st = self.state.get(e.obj)
            sts.append(st)
            for r, key in enumerate(keys):
                x = None if (key is None or st is None) else st.get(key)
                if key is None:
                    ptrs[2 + r, col] = e.addr
                elif x is None:
                    missing.append((col, r))
                else:
                    name = f"state[params[{k}]]['{key}']"
                    a = F.state_array(x, e.arr, name, f"params[{k}]")
                    ptrs[2 + r, col] = F.address(a)
                    arrays.append(a)
                    names.append(name)
            if self._has_step:
                s = 0.0 if st is None else st.get("step", 0.0)
                try:
                    steps.append(float(s))
                except (TypeError, ValueError):
                    raise TypeError(
                        f"state[params[{k}]]['step'] must be a number, got {s!r}"
                    ) from None
        F.check_no_overlap(arrays, names)
        plan = _Plan()
        plan.js, plan.keys, plan.smap, plan.version = js, keys, self.state, self.state._version
        plan.ptrs, plan.sts, plan.missing = ptrs, sts, missing
        plan.steps = steps if self._has_step else None
        plan.fresh = bool(missing) or (
            self._has_step and any(st is None or "step" not in st for st in sts)
        )
        plan.proto = np.empty(0, dt)
        plan.tparams = [ents[j].obj for j in js if ents[j].tdtype is not None]
        sizes = np.array([ents[j].arr.size for j in js], dtype=np.int64)
        plan.chunks = F.chunk_table(sizes)
        plan.total = int(sizes.sum())
        return plan

    def _apply(self, work: list) -> None:
        """Phase 2: create missing state, launch one kernel per bucket, advance the steps."""
        for group, gi, scal, spec, buckets in work:
            ents = self._cache[id(group)].entries
            for plan, _keep, _ks in buckets:
                firsts = None
                if plan.fresh:
                    firsts = self._create_state(group, spec, ents, plan)
                if plan.steps is None:
                    m = len(plan.js)
                    coefs = np.zeros((m, 1), dtype=np.float64)
                    if firsts:
                        coefs[firsts, 0] = 1.0
                    new_steps = None
                else:
                    new_steps = [_next_step(s) for s in plan.steps]
                    coefs = self._coef_table(group, gi, new_steps)
                F.launch(self._kind, plan.proto, plan.ptrs, plan.chunks, coefs, scal, plan.total)
                if plan.tparams:  # tell autograd the tensors changed in place (as torch does)
                    F._torch().autograd.graph.increment_version(plan.tparams)
                if new_steps is not None:
                    for st, s in zip(plan.sts, new_steps, strict=True):
                        dict.__setitem__(st, "step", s)
                    plan.steps = new_steps

    def _create_state(self, group: dict, spec: list, ents: list[_Entry], plan: _Plan) -> list:
        """Create the state that ``plan`` found missing; return the columns that got any."""
        cols = sorted({col for col, _r in plan.missing})
        for col in range(len(plan.js)) if self._has_step else cols:
            if plan.sts[col] is None:
                plan.sts[col] = self.state[ents[plan.js[col]].obj]
            if self._has_step and "step" not in plan.sts[col]:
                plan.sts[col]["step"] = 0.0
        rows: dict[int, list[int]] = {}
        for col, r in plan.missing:
            rows.setdefault(r, []).append(col)
        for r, rcols in rows.items():
            key, init = spec[r]
            value = init(group) if callable(init) else init
            made = self._new_states([ents[plan.js[c]] for c in rcols], value)
            for c, (obj, addr) in zip(rcols, made, strict=True):
                plan.sts[c][key] = obj
                plan.ptrs[2 + r, c] = addr
        plan.missing = []
        plan.fresh = False
        plan.version = self.state._version
        return cols

    def _coef_table(self, group: dict, gi: int, steps: list) -> np.ndarray:
        uniq = {s: self._coefs(group, gi, s) for s in set(steps)}
        if len(uniq) == 1:
            row = next(iter(uniq.values()))
            out = np.empty((len(steps), len(row)), dtype=np.float64)
            out[:] = row
            return out
        return np.array([uniq[s] for s in steps], dtype=np.float64)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset ``.grad`` of torch parameters and of arrays carrying one (fastact.nn.Parameter):
        None, or zeros."""
        for group in self.param_groups:
            for p in group["params"]:
                if not F.is_tensor(p) and getattr(p, "grad", None) is not None:
                    if set_to_none:
                        p.grad = None
                    else:
                        p.grad[...] = 0
                elif F.is_tensor(p) and p.grad is not None:
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
        for group in self.param_groups:
            packed = {k: copy.deepcopy(v) for k, v in group.items() if k != "params"}
            for p in group["params"]:
                mapping.setdefault(id(p), len(mapping))
            packed["params"] = [mapping[id(p)] for p in group["params"]]
            groups.append(packed)
        torch = F._torch()
        state = {}
        for p, st in self.state._d.values():
            if id(p) not in mapping:
                continue
            is_t = F.is_tensor(p)
            out = {}
            for key, v in st.items():
                if key == "step":
                    out[key] = torch.tensor(float(v), dtype=torch.float32) if is_t else float(v)
                elif self._device:
                    out[key] = _device_impl().copy_state(v)
                elif isinstance(v, np.ndarray):
                    out[key] = torch.from_numpy(np.copy(v, order="K")) if is_t else v.copy("K")
                elif F.is_tensor(v):
                    out[key] = v.detach().clone(memory_format=torch.preserve_format)
                else:
                    out[key] = copy.deepcopy(v)
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
            self._check_group(s)
            new_groups.append(s)
        new_state = _StateMap()
        for key, value in state_dict["state"].items():
            if key not in id_map:
                continue
            p = id_map[key]
            name = f"state_dict['state'][{key!r}]"
            if self._device:
                new_state[p] = _device_impl().load_param_state(p, value, name)
            else:
                new_state[p] = self._load_param_state(p, value, name)
        self.state = new_state
        self.param_groups = new_groups
        self._cache = {}

    def _load_param_state(self, p: Any, value: Any, name: str) -> dict:
        if not isinstance(value, dict):
            raise TypeError(f"{name} must be a dict, got {_typename(value)}")
        arr = F.as_array(p, "parameter")
        out = {}
        for key, v in value.items():
            if key == "step":
                try:
                    out[key] = float(v)
                except (TypeError, ValueError):
                    raise TypeError(f"{name}['step'] must be a number, got {v!r}") from None
            elif isinstance(v, np.ndarray) or F.is_tensor(v):
                a = F.as_array(v, f"{name}[{key!r}]")
                if a.shape != arr.shape:
                    raise ValueError(
                        f"{name}[{key!r}] has shape {a.shape} but its parameter has shape "
                        f"{arr.shape}"
                    )
                if a.dtype.kind != "f":
                    raise TypeError(f"{name}[{key!r}] has non-float dtype {a.dtype}")
                order = "C" if arr.flags.c_contiguous else "F"
                a = np.array(a, dtype=arr.dtype, order=order, copy=True)
                out[key] = F._torch().from_numpy(a) if F.is_tensor(p) else a
            elif v is None:
                continue
            else:
                out[key] = copy.deepcopy(v)
        return out

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
    if F.is_tensor(value):
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
}


def _check_flags(capturable: bool, differentiable: bool, foreach: Any, fused: Any) -> None:
    if fused and foreach:
        raise RuntimeError("`fused` and `foreach` cannot be `True` together.")
    if fused and differentiable:
        raise RuntimeError("`fused` does not support `differentiable`")
    if differentiable:
        raise ValueError("differentiable=True is not supported: fastact steps are not autograd ops")
    if capturable:
        raise ValueError("capturable=True is not supported: it needs a CUDA-like device")


def _betas(group: dict, gi: int) -> tuple[float, float]:
    b = group["betas"]
    try:
        return float(b[0]), float(b[1])
    except (TypeError, ValueError, IndexError):
        raise TypeError(
            f"param_groups[{gi}]['betas'] must be a pair of numbers, got {b!r}"
        ) from None


# --------------------------------------------------------------------------------------------
# optimizers
# --------------------------------------------------------------------------------------------


class SGD(Optimizer):
    """SGD with momentum/dampening/nesterov/weight_decay/maximize (torch.optim.SGD).

    g ← ±g + wd·p; buf ← g on the first step, else μ·buf + (1−dampening)·g;
    g ← g + μ·buf (nesterov) or buf; p ← p − lr·g.
    """

    _kind = "sgd"
    _has_step = False

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
    ) -> None:
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "dampening": dampening,
            "weight_decay": weight_decay,
            "nesterov": nesterov,
            "maximize": maximize,
            "foreach": foreach,
            "differentiable": differentiable,
            "fused": fused,
        }
        _check_flags(False, differentiable, foreach, fused)
        super().__init__(params, defaults)

    def _check_group(self, group: dict) -> None:
        super()._check_group(group)
        if group["nesterov"] and (float(group["momentum"]) <= 0 or float(group["dampening"]) != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")

    def _state_spec(self, group: dict) -> list:
        return [("momentum_buffer", 0.0)] if group["momentum"] != 0 else [None]

    def _scalars(self, group: dict, gi: int) -> tuple:
        mom = _num(group, "momentum", gi)
        return (
            _num(group, "lr", gi),
            _num(group, "weight_decay", gi),
            mom,
            _num(group, "dampening", gi),
            bool(group["nesterov"]),
            bool(group["maximize"]),
            mom != 0.0,
        )


class Adam(Optimizer):
    """Adam / AMSGrad (torch.optim.Adam); ``decoupled_weight_decay=True`` is AdamW.

    m ← lerp(m, g, 1−β1); v ← β2·v + (1−β2)·g²; (amsgrad: vmax ← max(vmax, v), v ← vmax);
    p ← p − (lr/(1−β1ᵗ))·m/(√v/√(1−β2ᵗ) + eps); L2 g ← g + wd·p or decoupled p ← p·(1 − lr·wd).
    """

    _kind = "adam"

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
    ) -> None:
        _RULES["betas"](betas, "betas")
        if not all(isinstance(b, float) for b in betas) and not all(F.is_tensor(b) for b in betas):
            raise ValueError("betas must be either both floats or both Tensors")
        betas = tuple(float(b) for b in betas)
        defaults = {
            "lr": lr,
            "betas": betas,
            "eps": eps,
            "weight_decay": weight_decay,
            "amsgrad": amsgrad,
            "maximize": maximize,
            "foreach": foreach,
            "capturable": capturable,
            "differentiable": differentiable,
            "fused": fused,
            "decoupled_weight_decay": decoupled_weight_decay,
        }
        _check_flags(capturable, differentiable, foreach, fused)
        super().__init__(params, defaults)

    def _state_spec(self, group: dict) -> list:
        return [
            ("exp_avg", 0.0),
            ("exp_avg_sq", 0.0),
            ("max_exp_avg_sq", 0.0) if group["amsgrad"] else None,
        ]

    def _scalars(self, group: dict, gi: int) -> tuple:
        lr, wd = _num(group, "lr", gi), _num(group, "weight_decay", gi)
        beta1, beta2 = _betas(group, gi)
        decoupled = bool(group.get("decoupled_weight_decay", False))
        decay = 1 - lr * wd if (decoupled and wd != 0) else 1.0
        return (
            beta1,
            beta2,
            _num(group, "eps", gi),
            0.0 if decoupled else wd,
            decay,
            bool(group["amsgrad"]),
            bool(group["maximize"]),
        )

    def _coefs(self, group: dict, gi: int, step: float) -> tuple:
        beta1, beta2 = _betas(group, gi)
        return F.adam_coefs(step, _num(group, "lr", gi), beta1, beta2)


class AdamW(Adam):
    """AdamW (torch.optim.AdamW): Adam with decoupled weight decay p ← p·(1 − lr·wd), wd=1e-2."""

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
    ) -> None:
        super().__init__(
            params,
            lr,
            betas,
            eps,
            weight_decay,
            amsgrad,
            foreach=foreach,
            maximize=maximize,
            capturable=capturable,
            differentiable=differentiable,
            fused=fused,
            decoupled_weight_decay=True,
        )


class Adamax(Optimizer):
    """Adamax (torch.optim.Adamax): m ← lerp(m, g, 1−β1); u ← max(β2·u, |g| + eps);
    p ← p − (lr/(1−β1ᵗ))·m/u."""

    _kind = "adamax"

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
    ) -> None:
        defaults = {
            "lr": lr,
            "betas": betas,
            "eps": eps,
            "weight_decay": weight_decay,
            "foreach": foreach,
            "maximize": maximize,
            "differentiable": differentiable,
            "capturable": capturable,
        }
        _check_flags(capturable, differentiable, foreach, None)
        super().__init__(params, defaults)

    def _state_spec(self, group: dict) -> list:
        return [("exp_avg", 0.0), ("exp_inf", 0.0)]

    def _scalars(self, group: dict, gi: int) -> tuple:
        beta1, beta2 = _betas(group, gi)
        return (
            beta1,
            beta2,
            _num(group, "eps", gi),
            _num(group, "weight_decay", gi),
            bool(group["maximize"]),
        )

    def _coefs(self, group: dict, gi: int, step: float) -> tuple:
        return F.adamax_coefs(step, _num(group, "lr", gi), _betas(group, gi)[0])


class RMSprop(Optimizer):
    """RMSprop (torch.optim.RMSprop): v ← α·v + (1−α)·g²; avg = √v + eps (centered:
    √(v − ḡ²) + eps with ḡ ← lerp(ḡ, g, 1−α)); momentum: buf ← μ·buf + g/avg, p ← p − lr·buf,
    else p ← p − lr·g/avg."""

    _kind = "rmsprop"

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
    ) -> None:
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "alpha": alpha,
            "eps": eps,
            "centered": centered,
            "weight_decay": weight_decay,
            "capturable": capturable,
            "foreach": foreach,
            "maximize": maximize,
            "differentiable": differentiable,
        }
        _check_flags(capturable, differentiable, foreach, None)
        super().__init__(params, defaults)

    def _state_spec(self, group: dict) -> list:
        return [
            ("square_avg", 0.0),
            ("momentum_buffer", 0.0) if group["momentum"] > 0 else None,
            ("grad_avg", 0.0) if group["centered"] else None,
        ]

    def _scalars(self, group: dict, gi: int) -> tuple:
        return (
            _num(group, "lr", gi),
            _num(group, "alpha", gi),
            _num(group, "eps", gi),
            _num(group, "weight_decay", gi),
            _num(group, "momentum", gi),
            bool(group["centered"]),
            bool(group["maximize"]),
        )


class Rprop(Optimizer):
    """Rprop (torch.optim.Rprop): step sizes grow by η+ / shrink by η− on sign agreement /
    flip (clamped to step_sizes); where the sign flipped the gradient is zeroed;
    p ← p − sign(g)·step_size. No weight decay; ``lr`` only sets the initial step size."""

    _kind = "rprop"

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
    ) -> None:
        defaults = {
            "lr": lr,
            "etas": etas,
            "step_sizes": step_sizes,
            "foreach": foreach,
            "maximize": maximize,
            "differentiable": differentiable,
            "capturable": capturable,
        }
        _check_flags(capturable, differentiable, foreach, None)
        super().__init__(params, defaults)

    def _state_spec(self, group: dict) -> list:
        return [("prev", 0.0), ("step_size", lambda g: float(g["lr"]))]

    def _scalars(self, group: dict, gi: int) -> tuple:
        etaminus, etaplus = (float(x) for x in group["etas"])
        lo, hi = (float(x) for x in group["step_sizes"])
        return (etaminus, etaplus, lo, hi, bool(group["maximize"]))


class Adagrad(Optimizer):
    """Adagrad (torch.optim.Adagrad, dense): clr = lr/(1 + (t−1)·lr_decay); sum ← sum + g²;
    p ← p − clr·g/(√sum + eps). State is created in the constructor (sum = init value)."""

    _kind = "adagrad"

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
    ) -> None:
        defaults = {
            "lr": lr,
            "lr_decay": lr_decay,
            "eps": eps,
            "weight_decay": weight_decay,
            "initial_accumulator_value": initial_accumulator_value,
            "foreach": foreach,
            "maximize": maximize,
            "differentiable": differentiable,
            "fused": fused,
        }
        _check_flags(False, differentiable, foreach, fused)
        super().__init__(params, defaults)
        if self._device:
            _device_impl().init_state(self, "sum", float(initial_accumulator_value))
            return
        for gi, group in enumerate(self.param_groups):
            ents = [
                _Entry(p, f"param_groups[{gi}]['params'][{k}]")
                for k, p in enumerate(group["params"])
            ]
            for dt in dict.fromkeys(e.dtype for e in ents):
                sub = [e for e in ents if e.dtype == dt]
                made = self._new_states(sub, float(initial_accumulator_value))
                for e, (obj, _addr) in zip(sub, made, strict=True):
                    st = self.state[e.obj]
                    st["step"] = 0.0
                    st["sum"] = obj

    def _state_spec(self, group: dict) -> list:
        # like torch, lazily created state uses the constructor's accumulator value
        return [("sum", lambda g: float(self.defaults["initial_accumulator_value"]))]

    def _scalars(self, group: dict, gi: int) -> tuple:
        return (_num(group, "eps", gi), _num(group, "weight_decay", gi), bool(group["maximize"]))

    def _coefs(self, group: dict, gi: int, step: float) -> tuple:
        return F.adagrad_coefs(step, _num(group, "lr", gi), _num(group, "lr_decay", gi))


class Adadelta(Optimizer):
    """Adadelta (torch.optim.Adadelta): v ← ρv + (1−ρ)g²; δ = √(u + eps)/√(v + eps)·g;
    u ← ρu + (1−ρ)δ²; p ← p − lr·δ."""

    _kind = "adadelta"

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
    ) -> None:
        defaults = {
            "lr": lr,
            "rho": rho,
            "eps": eps,
            "weight_decay": weight_decay,
            "maximize": maximize,
            "capturable": capturable,
            "foreach": foreach,
            "differentiable": differentiable,
        }
        _check_flags(capturable, differentiable, foreach, None)
        super().__init__(params, defaults)

    def _state_spec(self, group: dict) -> list:
        return [("square_avg", 0.0), ("acc_delta", 0.0)]

    def _scalars(self, group: dict, gi: int) -> tuple:
        return (
            _num(group, "lr", gi),
            _num(group, "rho", gi),
            _num(group, "eps", gi),
            _num(group, "weight_decay", gi),
            bool(group["maximize"]),
        )


#: Registry: name -> class (used by the tests and the benchmark).
OPTIMIZERS: dict[str, type[Optimizer]] = {
    cls.__name__: cls for cls in (SGD, Adam, AdamW, Adamax, RMSprop, Rprop, Adagrad, Adadelta)
}
