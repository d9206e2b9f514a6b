"""The one optimizer step driver: prepare, plan, apply, for the classes and the functional API,
on the host executor or the CUDA one.

A step validates every parameter, gradient and state array first (``TypeError`` /
``ValueError`` naming it; nothing is written before all checks pass), builds a launch plan
per (param group, dtype): a pointer table (rows: parameter, gradient, state arrays in the
kernel order of :data:`fastact.kernels.optim.OPTIMIZERS`) and a chunk table, then launches
the fused kernel once per plan. The executor (:mod:`fastact.host` or the device executor of
:mod:`fastact.cuda`) supplies the array-specific pieces with the same names: ``entry``
(a validated parameter with its address), ``state_address``, ``no_overlap``, ``new_states``,
``stale_entries``, ``gradients``, ``optim_launch``, ``optim_nonfinite`` and ``OPTIM_CHUNK``.
After the launches the torch tensors written (parameters, state tensors, step counts) have
their version counters advanced (:func:`fastact._core.arrays.written`), as torch's steps do.
The classes cache their plans between steps (rebuilt when a parameter, its storage or the
state changes).

Where a class keeps ``state['step']`` is its ``_steps`` (:class:`FloatSteps`: a Python float,
fastact.optim's classes; fastact.torch.optim's classes keep torch's 0-d step tensors), and
its state map counts mutations in ``_version`` (per-parameter dicts are :class:`ParamState`).
"""

from __future__ import annotations

import math
import weakref
from collections import deque
from itertools import repeat
from operator import is_
from typing import Any

import numpy as np

from fastact import host
from fastact._core.arrays import is_tensor
from fastact._core.arrays import written as tensors_written
from fastact._core.backend import device, on_device
from fastact._core.torch_pool import pool_threads
from fastact.kernels.optim import (
    BF16,
    LOWP_ROWS,
    SCALE_SUFFIX,
    Layout,
    Optim,
    chunk_table,
    layout_of,
    next_step,
)

__all__ = [
    "FloatSteps",
    "ParamState",
    "executor_of",
    "functional_step",
    "positive_steps",
    "seq",
    "per_tensor",
    "entry_layout",
    "row_signs",
    "rounding_key",
]


def executor_of(objs: list, what: str = "params") -> Any:
    """The executor of a list of parameters: all on the host or all on one CUDA device."""
    flags = [on_device(p) for p in objs]
    if not any(flags):
        return host
    if not all(flags):
        raise ValueError(
            f"{what} mixes CUDA device arrays and host arrays (NumPy arrays, CPU tensors); "
            "one step runs on one of them"
        )
    return device(*objs)


def seq(x: Any, name: str) -> list:
    """An array or a list/tuple of arrays as a list (TypeError naming ``name`` otherwise)."""
    if x is None:
        raise TypeError(f"{name} must be a sequence of arrays, got None")
    if isinstance(x, np.ndarray) or host.is_param(x) or on_device(x):
        return [x]
    if not isinstance(x, (list, tuple)):
        raise TypeError(
            f"{name} must be an array or a list/tuple of arrays, got {type(x).__name__}"
        )
    return list(x)


def per_tensor(x: Any, n: int, name: str) -> list[float]:
    """A number, or one number per tensor."""

    def num(v: Any, where: str) -> float:
        if isinstance(v, (str, bytes, complex)):
            raise TypeError(f"{where} must be a real number, got {type(v).__name__}")
        try:
            return float(v)
        except (TypeError, ValueError):
            raise TypeError(f"{where} must be a real number, got {type(v).__name__}") from None

    if isinstance(x, (list, tuple)) or (
        (isinstance(x, np.ndarray) or host.is_param(x)) and x.ndim > 0
    ):
        if len(x) != n:
            raise ValueError(f"{name} has {len(x)} entries but there are {n} parameters")
        return [num(v, f"{name}[{k}]") for k, v in enumerate(x)]
    if isinstance(x, (str, bytes)) or x is None:
        raise TypeError(f"{name} must be a number or a sequence of numbers, got {type(x).__name__}")
    return [num(x, name)] * n


def positive_steps(step: Any, n: int) -> list[float]:
    steps = per_tensor(step, n, "step")
    for s in steps:
        if not s >= 1:
            raise ValueError(f"step must be >= 1 (the step count after its increment), got {s}")
    return steps


# ============================================================================ storage
def entry_layout(ex: Any, options: dict, e: Any, name: str) -> Layout:
    """The storage of parameter entry ``e`` under ``options`` (see
    :func:`fastact.kernels.optim.layout_of`); TypeError when the executor or the parameter's
    dtype cannot have it (low-precision states and bfloat16 parameters are host-only; they
    need float32 or bfloat16 parameters)."""
    layout = layout_of(options, e.dtype if not getattr(e, "bf16", False) else BF16, e.size)
    if layout.native:
        return layout
    if ex.NAME != "host":
        raise TypeError(
            f"{name}: {layout.describe()} optimizer states and bfloat16 parameters are "
            "supported on the host only (NumPy arrays, CPU tensors), not on CUDA devices"
        )
    if layout.param == np.float64:
        raise TypeError(
            f"{name} has dtype float64; {layout.describe()} optimizer states need float32 or "
            "bfloat16 parameters"
        )
    return layout


def row_signs(spec: Optim, inits: tuple) -> tuple:
    """Per state row: None when unused, else whether its values can be negative."""
    signs = spec.signed or (True,) * len(spec.state)
    return tuple(None if init is None else sg for init, sg in zip(inits, signs, strict=True))


def rounding_key(options: dict, counter: int) -> int:
    """The 32-bit key of stochastic rounding (-1: round to nearest even) for a seed and a
    step counter: a different stream of random bits for every step."""
    if not options.get("stochastic_rounding", False):
        return -1
    seed = int(options.get("seed", 0))
    return ((seed * 0x9E3779B1) ^ (counter * 0x85EBCA77 + 0x165667B1)) & 0xFFFFFFFF


def bucket_key(key: int, group: int, bucket: int) -> int:
    """The rounding key of one launch: ``key`` mixed with the param group's and the launch's
    (storage layout bucket's) index, so that no two tensors of an optimizer share a stream
    (the kernels add the tensor's index within the launch). The first launch of the first
    group keeps ``key``; -1 (round to nearest even) stays -1."""
    if key < 0 or (group == 0 and bucket == 0):
        return key
    h = (key ^ ((group + 1) * 0x27D4EB2F) ^ ((bucket + 1) * 0x9E3779B1)) & 0xFFFFFFFF
    return (h * 0x85EBCA6B + (h >> 16)) & 0xFFFFFFFF


def _ptr_rows(layout: Layout, n_state: int) -> int:
    return 2 + n_state if layout.native else LOWP_ROWS


def _state_rows(layout: Layout, r: int) -> list[int]:
    """Pointer-table rows of state row ``r``'s arrays (main array, block scales)."""
    if layout.native or not layout.q8:
        return [2 + r]
    return [2 + r, 5 + r]


# ============================================================================ functional
def check_coef_options(options: dict) -> None:
    """ValueError naming the option unless the functional options that a step's coefficients
    are computed from are in the constructors' ranges: ``beta1`` and ``beta2`` in [0, 1)
    (Adam, AdamW, Adamax; else a bias correction 1 - beta**t can be 0, or negative under a
    square root) and ``lr_decay`` >= 0 (Adagrad; else 1 + (t - 1) lr_decay can be 0).
    torch's functional API raises ZeroDivisionError or computes a complex number there."""
    for key in ("beta1", "beta2"):
        v = options.get(key)
        if v is not None and not 0.0 <= float(v) < 1.0:  # float(): a tensor beta
            raise ValueError(f"Invalid {key} value: {v} (need 0 <= {key} < 1)")
    v = options.get("lr_decay")
    if v is not None and not v >= 0.0:
        raise ValueError(f"Invalid lr_decay value: {v} (need lr_decay >= 0)")


def functional_step(
    spec: Optim,
    options: dict,
    params: Any,
    grads: Any,
    states: dict[str, Any],
    steps: Any,
    check_finite: bool,
    skip_nonfinite: bool,
) -> bool:
    """One functional step of ``spec`` (see :mod:`fastact.optim.functional`): validate
    everything, then one launch per storage layout; True when ``skip_nonfinite`` skipped it.

    ``states``: the functional argument of each state row (a sequence, or None for an unused
    row); SGD's momentum rows accept None entries, which receive new buffers (a list is
    required then, like torch's functional sgd). ``steps``: the ``step=`` argument of the
    optimizers with step-dependent coefficients. ``options['state_dtype']`` (None, 'float32'
    or 'bfloat16') is the states' storage; bfloat16 parameters take bfloat16 states by
    default, like torch."""
    plist = seq(params, "params")
    n = len(plist)
    if n == 0:
        return False
    glist = seq(grads, "grads")
    if len(glist) != n:
        raise ValueError(f"grads has {len(glist)} entries but params has {n}")
    step_list = positive_steps(steps, n) if spec.coefs is not None else None
    check_coef_options(options)
    ex = executor_of(plist)
    ents = [ex.entry(p, f"params[{k}]") for k, p in enumerate(plist)]
    layouts = [entry_layout(ex, options, e, f"params[{k}]") for k, e in enumerate(ents)]
    inits = spec.rows(options)
    allocate = not spec.has_step  # SGD: None buffers are created (first step: buf = g)
    addrs: list[list] = []
    written = [e.arr for e in ents]
    wnames = [f"params[{k}]" for k in range(n)]
    missing: list[int] = []
    slists: list = []  # the state rows' arguments (their torch tensors: versions advanced)
    for (_key, arg), init in zip(spec.state, inits, strict=True):
        if init is None:
            addrs.append([e.addr for e in ents])  # an unused row points at the parameter
            continue
        slist = seq(states[arg], arg)
        slists.append(slist)
        if len(slist) != n:
            raise ValueError(f"{arg} has {len(slist)} entries but params has {n}")
        if allocate and any(s is None for s in slist) and not isinstance(states[arg], list):
            raise TypeError(f"{arg} must be a list to receive new buffers for None")
        row = []
        for k, s in enumerate(slist):
            if s is None and allocate:
                row.append(None)  # created below
                missing.append(k)
                continue
            lay = layouts[k]
            where = (s, ents[k], f"{arg}[{k}]", f"params[{k}]")
            if lay.native:
                a, addr = ex.state_address(*where)
            else:
                a, addr = ex.state_address(*where, lay.arrays()[0])
            row.append(addr)
            written.append(a)
            wnames.append(f"{arg}[{k}]")
        addrs.append(row)
    keep = [None if g is None else ents[k].grad(g, k) for k, g in enumerate(glist)]
    ex.no_overlap(written, wnames)
    if step_list is not None:
        coefs_all = [spec.coefs(options, s) for s in step_list]  # may raise before any write
    else:
        created = set(missing)
        coefs_all = [(1.0 if k in created else 0.0,) for k in range(n)]
    by_layout: dict[Layout, list[int]] = {}
    for k in range(n):
        if keep[k] is not None:
            by_layout.setdefault(layouts[k], []).append(k)
    # all checks done: allocate missing buffers, then launch
    made: dict[int, Any] = {}
    for k in missing:
        if keep[k] is not None:
            lay = layouts[k]
            if lay.native:
                obj, addr = ex.new_states([ents[k]], 0.0)[0]
            else:
                obj, addr = ex.new_states([ents[k]], 0.0, lay.arrays()[0])[0]
            made[k] = obj
            for row in addrs:
                if row[k] is None:
                    row[k] = addr
    plans = []
    for lay, idx in by_layout.items():
        ptrs = np.empty((_ptr_rows(lay, len(addrs)), len(idx)), dtype=np.int64)
        for jj, k in enumerate(idx):
            ptrs[:, jj] = ents[k].addr
            ptrs[1, jj] = keep[k][1]
            for r, row in enumerate(addrs):
                ptrs[2 + r, jj] = row[k]
        sizes = np.array([ents[k].size for k in idx], dtype=np.int64)
        chunks = chunk_table(sizes, lay.chunk(ex.OPTIM_CHUNK))
        plans.append((lay, ptrs, chunks, int(sizes.sum()), idx))
    tensors = any(e.is_torch for e in ents)  # torch's pool in FASTACT_TORCH_POOL=tensors
    if check_finite or skip_nonfinite:
        for lay, ptrs, chunks, total, idx in plans:
            bad = ex.optim_nonfinite(lay.param, ptrs, 1, chunks, total, tensors=tensors)
            if bad.any():
                if skip_nonfinite:
                    return True
                k = idx[int(chunks[int(np.argmax(bad)), 0])]
                raise ValueError(f"grads[{k}] contains NaN or infinite values (check_finite=True)")
    scalars = spec.scalars(options)
    rows = row_signs(spec, inits)
    key = rounding_key(options, 0)
    for bi, (lay, ptrs, chunks, total, idx) in enumerate(plans):
        coefs = np.array([coefs_all[k] for k in idx], dtype=np.float64).reshape(len(idx), -1)
        if lay.native:
            ex.optim_launch(spec.kernel, lay.param, ptrs, chunks, coefs, scalars, total,
                            tensors=tensors)  # fmt: skip
        else:
            ex.optim_launch(spec.kernel, lay, ptrs, chunks, coefs, scalars, total, rows,
                            bucket_key(key, 0, bi), tensors=tensors)  # fmt: skip
    # autograd's record of the writes (torch's steps bump each tensor they update in place):
    # the parameters and state tensors of the launches (new buffers are not the caller's)
    done = [k for idx in by_layout.values() for k in idx]
    touched = [plist[k] for k in done if ents[k].is_torch]
    touched += [s for sl in slists for k in done if is_tensor(s := sl[k])]
    tensors_written(*touched)
    for k, obj in made.items():
        for (_key, arg), init in zip(spec.state, inits, strict=True):
            if init is not None and states[arg][k] is None:
                states[arg][k] = obj
    return False


# ============================================================================ classes
class ParamState(dict):
    """One parameter's state dict. Any mutation bumps the owning map's ``_version``, so a step
    revalidates its cached pointer tables only when some state entry was replaced (the driver
    itself writes the step counts with ``dict.__setitem__``, which does not count)."""

    __slots__ = ("_owner",)

    def __init__(self, owner: Any, *args: Any, **kwargs: Any) -> None:
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

    def __ior__(self, other: Any) -> ParamState:  # st |= {...} (dict's own skips update)
        self.update(other)
        return self

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


def check_step(s: float, name: str) -> None:
    """ValueError unless a loaded or edited step count is a finite number >= 0 (a negative
    one made the bias correction complex, a NaN one the parameters NaN)."""
    if not 0.0 <= s < math.inf:
        raise ValueError(f"state[{name}]['step'] must be a finite number >= 0, got {s}")


class FloatSteps:
    """``state['step']`` as a Python float (fastact.optim's classes), advanced like torch's
    float32 step tensor (:func:`fastact.kernels.optim.next_step`).

    A class's ``_steps`` has these four functions, called with a bucket's :class:`Plan`:
    ``load`` (phase 1, writes nothing: ``plan.steps`` from ``plan.sts``; True when some state
    lacks its count and :func:`apply` must call ``create``), ``create`` (make the missing
    counts, at 0), ``advance`` (phase 1 too, writes nothing: the counts after this step, as
    floats for the coefficients, also of counts ``create`` has yet to make) and ``store``
    (write them, after the launch)."""

    @staticmethod
    def load(plan: Plan, names: list[str]) -> bool:
        steps = []
        for st, name in zip(plan.sts, names, strict=True):
            s = 0.0 if st is None else st.get("step", 0.0)
            try:
                steps.append(float(s))
            except (TypeError, ValueError):
                raise TypeError(f"state[{name}]['step'] must be a number, got {s!r}") from None
            check_step(steps[-1], name)
        plan.steps = steps
        return any(st is None or "step" not in st for st in plan.sts)

    @staticmethod
    def create(plan: Plan) -> None:
        for st in plan.sts:
            if "step" not in st:
                st["step"] = 0.0

    @staticmethod
    def advance(plan: Plan) -> list[float]:
        steps = plan.steps
        if steps and steps.count(steps[0]) == len(steps):  # the usual case: all equal
            return [next_step(steps[0])] * len(steps)
        return [next_step(s) for s in steps]

    @staticmethod
    def store(plan: Plan, steps: list[float]) -> None:
        # dict.__setitem__ bypasses ParamState's version bump (the plan stays valid); map()
        # runs the loop in C
        deque(map(dict.__setitem__, plan.sts, repeat("step"), steps), 0)
        plan.steps = steps


class GroupCache:
    """A param group's validated entries, their storage layouts (for the group's storage
    options ``fmt``) and its launch plans per layout."""

    __slots__ = ("group", "entries", "objs", "plans", "fmt", "layouts", "single")

    def __init__(self, group: dict, entries: list | None = None) -> None:
        self.group = group
        self.entries = entries
        # the entries' parameter objects, compared by identity with the group's every step
        self.objs: list = [] if entries is None else [e.obj for e in entries]
        self.plans: dict = {}
        self.fmt: tuple | None = None
        self.layouts: list = []
        self.single: Layout | None = None  # the layout when every entry has the same


class Plan:
    """Cached launch data of one (group, layout) bucket: which parameters take part, the
    pointer table (row 1, the gradients, is refilled every step), the chunk table, the state
    dicts and their steps. Valid while the state map's version is unchanged."""

    __slots__ = (
        "dt",
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
        "tparams",
        "counter",
        "watch",
        "watch_ptrs",
    )


#: a group's storage options: they decide each parameter's layout
STORAGE_KEYS = ("state_dtype", "block_size", "min_8bit_size")


def keep_storage(saved: dict, own: dict) -> None:
    """A loaded group ``saved`` takes the loading group's storage options (``own``'s, or
    none where it has none): the state converts to this optimizer's storage on load."""
    for key in STORAGE_KEYS:
        if key in own:
            saved[key] = own[key]
        else:
            saved.pop(key, None)


def check_overlap(opt: Any, ex: Any, extra: list = ()) -> None:
    """ValueError if two parameters of the optimizer (plus ``extra``: (entry, name)) share
    memory."""
    arrays, names = [], []
    for gi, g in enumerate(opt.param_groups):
        for k, p in enumerate(g["params"]):
            name = f"param_groups[{gi}]['params'][{k}]"
            arrays.append(ex.entry(p, name).arr)
            names.append(name)
    for e, name in extra:
        arrays.append(e.arr)
        names.append(name)
    ex.no_overlap(arrays, names)


def group_entries(opt: Any, ex: Any, group: dict, k0: int) -> tuple[GroupCache, list]:
    """The group's validated entries (rebuilt when the params or their storage changed)."""
    cache = opt._cache.get(id(group))
    if cache is None or cache.group is not group:
        cache = opt._cache[id(group)] = GroupCache(group)
    params = group["params"]
    ents = cache.entries
    if ents is None or len(ents) != len(params) or not all(map(is_, cache.objs, params)):
        ents = [ex.entry(p, f"params[{k0 + j}]") for j, p in enumerate(params)]
        check_overlap(opt, ex)
        cache.entries = ents
        cache.objs = [e.obj for e in ents]
        cache.plans.clear()
        cache.fmt = None
        return cache, ents
    stale = ex.stale_entries(ents, k0)
    if stale:
        for j in stale:
            ents[j] = ex.entry(ents[j].obj, f"params[{k0 + j}]")
        check_overlap(opt, ex)
        cache.plans.clear()
        cache.fmt = None
    return cache, ents


def group_layouts(ex: Any, cache: GroupCache, options: dict, k0: int, state: Any = None) -> list:
    """The storage layout of each entry of the group (cached per storage options); with
    ``state`` (the optimizer's), ValueError for a block_size changed under 8-bit state."""
    fmt = tuple(options.get(k) for k in STORAGE_KEYS)
    if cache.fmt != fmt:
        # equal layouts interned to one object: a step buckets its entries by id() (a frozen
        # dataclass hashes and compares its fields on every lookup, ~1 us per parameter)
        interned: dict = {}
        layouts = []
        for j, e in enumerate(cache.entries):
            lay = entry_layout(ex, options, e, f"params[{k0 + j}]")
            layouts.append(interned.setdefault(lay, lay))
        if state is not None:
            _recorded_blocks(cache, state, layouts, k0)
        cache.layouts = layouts
        cache.single = layouts[0] if len(interned) == 1 else None
        cache.fmt = fmt
    return cache.layouts


def block_records(state: Any) -> dict:
    """The state map's record of the block size each parameter's 8-bit codes were written
    with: ``{id(param): (weakref to param, block_size)}`` (pickled and deep-copied by the
    state maps for the parameters that hold state, re-keyed there; seeded by the loads). A
    parameter moved to a group with another block_size, or a block_size changed together
    with the params list or after a copy clears the group's cached layouts: the record
    still knows, and catches an edit in place as well."""
    rec = getattr(state, "_q8_blocks", None)
    if rec is None:
        rec = {}
        try:
            state._q8_blocks = rec
        except AttributeError:  # a state map of the user's (no attributes): no record
            pass
    return rec


def record_block(state: Any, p: Any, block: int) -> None:
    """Note that ``p``'s 8-bit codes are (or will be) in blocks of ``block`` (held weakly:
    a parameter dropped from the optimizer is not kept alive by the record)."""
    rec = block_records(state)
    rec[id(p)] = (weakref.ref(p), block)
    if len(rec) > 2 * len(state) + 64:  # dead parameters' entries
        for key, (ref, _) in list(rec.items()):
            if ref() is None:
                del rec[key]


def saved_blocks(state: Any) -> list:
    """(param, block size) of the record's parameters that hold state: what the state maps
    pickle (re-keyed by :func:`restore_blocks`)."""
    out = []
    for ref, block in getattr(state, "_q8_blocks", {}).values():
        p = ref()
        if p is not None and state.get(p):
            out.append((p, block))
    return out


def saved_block_size(state: Any, group: dict, gi: int, k0: int) -> int | None:
    """The block size the 8-bit codes of ``group``'s parameters (``params[k0]`` on) were
    written in, which ``state_dict`` saves as the group's ``block_size`` (a block_size
    changed in place since, not yet refused by a step, would decode the codes in the wrong
    blocks): None when none of them holds recorded codes. ValueError when two of them hold
    codes in different blocks (one block_size cannot describe both)."""
    rec = getattr(state, "_q8_blocks", None)
    if not rec:
        return None
    found = None
    for j, p in enumerate(group["params"]):
        old = rec.get(id(p))
        if old is None or old[0]() is not p or not holds_codes(state.get(p)):
            continue
        if found is None:
            found = (old[1], j)
        elif found[0] != old[1]:
            raise ValueError(
                f"params[{k0 + found[1]}] holds 8-bit state quantized in blocks of {found[0]} "
                f"and params[{k0 + j}] in blocks of {old[1]}, but param_groups[{gi}] saves one "
                f"block_size: move the parameters back to groups of their block sizes, or "
                "start their state afresh"
            )
    return None if found is None else found[0]


def restore_blocks(state: Any, pairs: Any) -> None:
    state._q8_blocks = {id(p): (weakref.ref(p), b) for p, b in pairs}


def holds_codes(st: Any) -> bool:
    """Whether a parameter's state ``st`` holds 8-bit codes (block scales beside them)."""
    return bool(st) and any(str(k).endswith(SCALE_SUFFIX) for k in st)


def _recorded_blocks(cache: GroupCache, state: Any, layouts: list, k0: int) -> None:
    """ValueError when a parameter's 8-bit state was written in blocks other than its new
    layout's; else record the layout's block size for the parameters that hold 8-bit state
    (or will: a fresh 8-bit layout). A parameter that holds 8-bit codes keeps its record
    under a layout that is not 8-bit (the step then refuses the codes' dtype; the record
    still knows their blocks when the options are set back, so a refused step forgets
    nothing)."""
    rec = block_records(state)
    for j, (e, lay) in enumerate(zip(cache.entries, layouts, strict=True)):
        p = e.obj
        old = rec.get(id(p))
        live = old is not None and old[0]() is p
        if not lay.q8:
            if not (live and holds_codes(state.get(p))):
                rec.pop(id(p), None)
            continue
        if live and old[1] != lay.block and holds_codes(state.get(p)):
            raise ValueError(
                f"block_size changed from {old[1]} to {lay.block} while params[{k0 + j}] "
                f"holds 8-bit state quantized in blocks of {old[1]}: set it back, or start "
                "the state afresh (opt.state.clear())"
            )
        record_block(state, p, lay.block)


def prepare(opt: Any, ex: Any, grads: Any) -> list:
    """Phase 1: validate every group's options, every gradient (and, when the state changed,
    every state array), fill the launch tables and compute the step counts and coefficients
    the launches will use; writes no array."""
    groups = opt.param_groups
    pool_threads(0, 1)  # a bad FASTACT_TORCH_POOL raises here, not at a later group's launch
    if grads is not None:
        total = sum(len(g["params"]) for g in groups)
        if host.is_param(grads) or not isinstance(grads, (list, tuple)):
            raise TypeError(
                "grads must be a list or tuple aligned with the parameters, got "
                + type(grads).__name__
            )
        if len(grads) != total:
            raise ValueError(
                f"grads has {len(grads)} entries but the optimizer has {total} parameters"
            )
    work = []
    k0 = 0
    spec = opt._spec
    steps = opt._steps
    for gi, group in enumerate(groups):
        cache, ents = group_entries(opt, ex, group, k0)
        options = opt._step_options(group, gi)
        check_group_options(opt, group, gi)
        layouts = group_layouts(ex, cache, options, k0, opt.state)
        inits = opt._spec.rows(options)
        keys = tuple(
            None if init is None else key
            for (key, _arg), init in zip(opt._spec.state, inits, strict=True)
        )
        n = len(ents)
        if grads is not None:
            glist = grads[k0 : k0 + n]
        else:
            glist = [attached_grad(ex, e, k0 + j) for j, e in enumerate(ents)]
        js_all, keeps, gaddrs = ex.gradients(ents, glist, k0)
        if cache.single is not None:  # one storage layout in the group: one bucket
            split = [(cache.single, js_all, keeps, gaddrs)] if js_all else []
        else:
            by_lay: dict = {}
            for i, j in enumerate(js_all):
                lay = layouts[j]
                b = by_lay.get(id(lay))
                if b is None:
                    b = by_lay[id(lay)] = (lay, [], [], [])
                b[1].append(j)
                b[2].append(keeps[i])
                b[3].append(gaddrs[i])
            split = list(by_lay.values())
        buckets = []
        for dt, js, keep, addrs in split:
            js = tuple(js)
            plan = cache.plans.get(dt)
            if (
                plan is None
                or plan.js != js
                or plan.keys != keys
                or plan.smap is not opt.state
                or plan.version != opt.state._version
                or (plan.watch and moved(plan))
            ):
                plan = _plan(opt, ex, ents, js, keys, k0, dt)
                cache.plans[dt] = plan
            elif plan.counter is not None:  # counts edited in place since (fill_, copy_)
                steps.check(plan, k0)
            plan.ptrs[1] = addrs
            if plan.steps is None:  # no step count (SGD): coefficients made at the launch
                new_steps = coefs = None
            else:
                new_steps = steps.advance(plan)
                coefs = _coef_table(spec, options, new_steps)
            buckets.append((plan, keep, k0, new_steps, coefs))
        work.append((group, gi, options, inits, ents, buckets))
        k0 += len(ents)
    return work


def check_group_options(opt: Any, group: dict, gi: int) -> None:
    """A step's check of ``param_groups[gi]``'s options: the constructor's rules (an option
    set out of range after construction, e.g. ``betas[0] = 1.0``, would divide by zero or
    make a bias correction complex once the step had written the groups before it), with a
    step's lr any real number as a loaded group's (a schedule decaying to 0 can end at
    -1e-17); TypeError / ValueError naming the group and the option."""
    try:
        opt._check_group(group, loading=True)
    except (TypeError, ValueError) as e:
        raise (TypeError if isinstance(e, TypeError) else ValueError)(
            f"param_groups[{gi}]: {e}"
        ) from None


def attached_grad(ex: Any, e: Any, k: int) -> Any:
    """The gradient attached to parameter ``e`` (params[k]): a torch tensor's or a
    fastact.nn.Parameter's ``.grad``; TypeError for a plain array."""
    if e.is_torch or hasattr(e.obj, "grad"):
        return e.obj.grad
    what = "a NumPy array" if ex.NAME == "host" else "a device array without .grad"
    raise TypeError(f"params[{k}] is {what}: pass its gradient, step(grads=[...])")


def moved(plan: Plan) -> bool:
    """Whether a torch state tensor of ``plan`` (or a step count's view) no longer has the
    memory its pointer table holds: its storage replaced in place (``t.data = ...``,
    ``t.set_(...)``, ``t.share_memory_()``), which the state map's version does not see.
    The tables are then rebuilt (writing through the old address would update memory the
    tensor no longer shows, or memory already freed)."""
    # torch's data_ptr as an unbound C method mapped over the tensors: ~60 ns a tensor
    return list(map(type(plan.watch[0]).data_ptr, plan.watch)) != plan.watch_ptrs


def _watch(plan: Plan, obj: Any, addr: int) -> None:
    """Check ``obj`` (a torch tensor: the only state whose storage can be swapped under it)
    at ``addr`` every step (:func:`moved`)."""
    if hasattr(type(obj), "data_ptr"):
        plan.watch.append(obj)
        plan.watch_ptrs.append(addr)


def _plan(opt: Any, ex: Any, ents: list, js: tuple, keys: tuple, k0: int, lay: Layout) -> Plan:
    """Build (and validate) the launch data for the parameters ``js`` of one bucket (the
    group's parameters start at ``params[k0]``)."""
    m = len(js)
    ptrs = np.zeros((_ptr_rows(lay, len(keys)), m), dtype=np.int64)
    sts, missing, arrays, names = [], [], [], []
    has_step = opt._spec.has_step
    storages = None if lay.native else lay.arrays()
    plan = Plan()
    plan.watch, plan.watch_ptrs = [], []
    for col, j in enumerate(js):
        e = ents[j]
        k = k0 + j
        ptrs[:, col] = e.addr
        arrays.append(e.arr)
        names.append(f"params[{k}]")
        st = opt.state.get(e.obj)
        sts.append(st)
        for r, key in enumerate(keys):
            if key is None:
                continue
            if storages is None:
                x = None if st is None else st.get(key)
                if x is None:
                    missing.append((col, r))
                    continue
                name = f"state[params[{k}]]['{key}']"
                a, ptrs[2 + r, col] = ex.state_address(x, e, name, f"params[{k}]")
                _watch(plan, x, int(ptrs[2 + r, col]))
                arrays.append(a)
                names.append(name)
                continue
            xs = [None if st is None else st.get(key + sto.suffix) for sto in storages]
            if any(x is None for x in xs):
                if any(x is not None for x in xs):  # codes without scales, or the reverse
                    _mixed_storage(st, key, xs, storages, k)
                missing.append((col, r))
                continue
            for x, sto, row in zip(xs, storages, _state_rows(lay, r), strict=True):
                name = f"state[params[{k}]]['{key + sto.suffix}']"
                a, ptrs[row, col] = ex.state_address(x, e, name, f"params[{k}]", sto)
                _watch(plan, x, int(ptrs[row, col]))
                arrays.append(a)
                names.append(name)
    if has_step:
        _complete_or_empty(opt, sts, missing, keys, js, k0)
    ex.no_overlap(arrays, names)
    plan.dt, plan.js, plan.keys = lay, js, keys
    plan.smap, plan.version = opt.state, opt.state._version
    plan.ptrs, plan.sts, plan.missing = ptrs, sts, missing
    plan.steps = plan.counter = None
    counts_missing = has_step and opt._steps.load(plan, [f"params[{k0 + j}]" for j in js])
    plan.fresh = bool(missing) or counts_missing
    plan.tparams = [ents[j].obj for j in js if ents[j].is_torch]
    sizes = np.array([ents[j].size for j in js], dtype=np.int64)
    plan.chunks = chunk_table(sizes, lay.chunk(ex.OPTIM_CHUNK))
    plan.total = int(sizes.sum())
    return plan


def _mixed_storage(st: dict, key: str, xs: list, storages: Any, k: int) -> None:
    """ValueError for a state entry stored otherwise than the group's storage options say
    (float32 state after min_8bit_size or state_dtype changed to 8-bit: the codes' key holds
    the float32 array and the scales are absent), before it is silently made afresh."""
    have = [key + sto.suffix for x, sto in zip(xs, storages, strict=True) if x is not None]
    lack = [key + sto.suffix for x, sto in zip(xs, storages, strict=True) if x is None]
    raise ValueError(
        f"state[params[{k}]] has {have} but not {lack}: it is stored otherwise than the "
        "group's state_dtype, block_size and min_8bit_size now say (changed under existing "
        "state?); set them back, convert the state through state_dict()/load_state_dict(), "
        f"or delete the parameter's state to start it afresh (it has {sorted(map(str, st))})"
    )


def _complete_or_empty(opt: Any, sts: list, missing: list, keys: tuple, js: tuple, k0: int):
    """ValueError for a parameter whose state holds some of what its optimizer keeps but not
    all of it (a truncated or edited state dict; torch.optim raises KeyError at its step):
    creating the rest afresh would silently restart them. An absent or empty state is made
    at the first step. (SGD's momentum buffer, which torch also creates when absent, has no
    step count and is not checked here.)"""
    gaps = [(col, keys[r]) for col, r in missing]
    gaps += [(col, "step") for col, st in enumerate(sts) if st is not None and "step" not in st]
    for col, key in gaps:
        st = sts[col]
        if st:
            raise ValueError(
                f"state[params[{k0 + js[col]}]] lacks '{key}' (absent or None; it has "
                f"{sorted(map(str, st))}): an incomplete optimizer state, e.g. from a truncated "
                "or edited state dict; load a complete one, or delete the parameter's state "
                "to start it afresh"
            )


def first_nonfinite(ex: Any, work: list) -> int | None:
    """The index of the first gradient holding NaN or inf (``grads[k]``), or None."""
    for *_, buckets in work:
        for plan, _keep, k0, *_ in buckets:
            bad = ex.optim_nonfinite(plan.dt.param, plan.ptrs, 1, plan.chunks, plan.total,
                                     tensors=bool(plan.tparams))  # fmt: skip
            if bad.any():
                return k0 + plan.js[int(plan.chunks[int(np.argmax(bad)), 0])]
    return None


def apply(opt: Any, ex: Any, work: list) -> None:
    """Phase 2: create missing state, launch one kernel per bucket, store the step counts
    (computed by :func:`prepare`, with the coefficients)."""
    spec = opt._spec
    scalars_of = spec.scalars
    steps = opt._steps
    touched = []
    for group, gi, options, inits, ents, buckets in work:
        scal = scalars_of(options)
        rows = None
        key = -1
        for bi, (plan, _keep, _k0, new_steps, coefs) in enumerate(buckets):
            firsts = None
            if plan.fresh:
                firsts = _create_state(opt, ex, inits, ents, plan, spec)
            if new_steps is None:  # SGD: coefs[j, 0] flags a momentum buffer made now
                coefs = np.zeros((len(plan.js), 1), dtype=np.float64)
                if firsts:
                    coefs[firsts, 0] = 1.0
            lay = plan.dt
            if lay.native:
                ex.optim_launch(spec.kernel, lay.param, plan.ptrs, plan.chunks, coefs, scal,
                                plan.total, tensors=bool(plan.tparams))  # fmt: skip
            else:
                if rows is None:
                    rows = row_signs(spec, inits)
                    key = rounding_key(options, int(group.get("rounding_step", 0)))
                ex.optim_launch(spec.kernel, lay, plan.ptrs, plan.chunks, coefs, scal,
                                plan.total, rows, bucket_key(key, gi, bi),
                                tensors=bool(plan.tparams))  # fmt: skip
            touched += plan.tparams
            touched += plan.watch  # its torch state tensors and step counts, as torch's
            if new_steps is not None:
                steps.store(plan, new_steps)
        if key >= 0:
            group["rounding_step"] = int(group.get("rounding_step", 0)) + 1
    tensors_written(*touched)


def _create_state(opt: Any, ex: Any, inits: tuple, ents: list, plan: Plan, spec: Optim) -> list:
    """Create the state that ``plan`` found missing; return the columns that got any."""
    has_step = spec.has_step
    cols = sorted({col for col, _r in plan.missing})
    for col in range(len(plan.js)) if has_step else cols:
        if plan.sts[col] is None:
            plan.sts[col] = opt.state[ents[plan.js[col]].obj]
    if has_step:
        opt._steps.create(plan)
    rows: dict[int, list[int]] = {}
    for col, r in plan.missing:
        rows.setdefault(r, []).append(col)
    lay = plan.dt
    signs = row_signs(spec, inits)
    for r, rcols in rows.items():
        key = plan.keys[r]
        sub = [ents[plan.js[c]] for c in rcols]
        if lay.native:
            made = ex.new_states(sub, float(inits[r]))
            for c, (obj, addr) in zip(rcols, made, strict=True):
                plan.sts[c][key] = obj
                plan.ptrs[2 + r, c] = addr
                _watch(plan, obj, int(addr))
            continue
        for sto, prow in zip(lay.arrays(), _state_rows(lay, r), strict=True):
            made = ex.new_states(sub, sto.fill(float(inits[r]), bool(signs[r])), sto)
            for c, (obj, addr) in zip(rcols, made, strict=True):
                plan.sts[c][key + sto.suffix] = obj
                plan.ptrs[prow, c] = addr
                _watch(plan, obj, int(addr))
    plan.missing = []
    plan.fresh = False
    plan.version = opt.state._version
    return cols


def eager_state(opt: Any, ex: Any) -> None:
    """Create every parameter's state now (Adagrad does in its constructor, like torch), in
    each parameter's storage layout."""
    spec = opt._spec
    k0 = 0
    for gi, group in enumerate(opt.param_groups):
        cache, ents = group_entries(opt, ex, group, k0)
        options = opt._step_options(group, gi)
        layouts = group_layouts(ex, cache, options, k0)
        inits = spec.rows(options)
        keys = tuple(None if i is None else k for (k, _a), i in zip(spec.state, inits, strict=True))
        by: dict = {}
        for j, lay in enumerate(layouts):
            by.setdefault(lay, []).append(j)
        for lay, js in by.items():
            plan = _plan(opt, ex, ents, tuple(js), keys, k0, lay)
            if plan.fresh:
                _create_state(opt, ex, inits, ents, plan, spec)
        k0 += len(ents)


def _coef_table(spec: Optim, options: dict, steps: list) -> np.ndarray:
    if spec.coefs is None:
        return np.zeros((len(steps), 1), dtype=np.float64)
    uniq = {s: spec.coefs(options, s) for s in set(steps)}
    if len(uniq) == 1:
        row = next(iter(uniq.values()))
        out = np.empty((len(steps), len(row)), dtype=np.float64)
        out[:] = row
        return out
    return np.array([uniq[s] for s in steps], dtype=np.float64)
