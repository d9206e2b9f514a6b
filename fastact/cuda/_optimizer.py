"""The device branch of the optimizer classes (:mod:`fastact.optim.optimizers`).

An optimizer whose parameters are CUDA device arrays (numba device arrays, CuPy arrays, torch
CUDA tensors) keeps the CPU class's options, state layout and step semantics; only the step
driver, the state allocation and the state-dict copies run here. A step validates every
gradient and state array first (all-or-nothing, ``TypeError``/``ValueError`` naming the
argument), then runs :func:`fastact.cuda.optim.launch` once per (param group, dtype) over the
pointer/chunk tables of the CPU class: the update rules are the CPU templates compiled for the
device (see :mod:`fastact.cuda.optim`), never written twice.

State arrays live on the device, allocated by the parameter's own library (torch, CuPy or
numba); ``state['step']`` stays a Python float like on the CPU.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from fastact.cuda import require

require("a fastact optimizer got CUDA device parameters")

from numba import cuda  # noqa: E402

from fastact.cuda import _runtime as rt  # noqa: E402
from fastact.cuda import optim as CO  # noqa: E402
from fastact.optim import functional as F  # noqa: E402

__all__ = ["DeviceEntry", "entries", "check_overlap", "step", "init_state", "copy_state"]


class DeviceEntry:
    """Validated view of one device parameter (user object, numba view, address, identity)."""

    __slots__ = ("obj", "d", "addr", "dtype", "shape", "tptr")

    def __init__(self, obj: Any, name: str) -> None:
        self.obj = obj
        self.d = CO._param(obj, name)
        self.addr = rt._pointer(self.d)
        self.dtype = self.d.dtype
        self.shape = tuple(self.d.shape)
        self.tptr = obj.data_ptr() if F.is_tensor(obj) else 0

    def stale(self) -> bool:
        """A torch tensor whose storage or shape was replaced since validation."""
        t = self.obj
        return bool(self.tptr) and (t.data_ptr() != self.tptr or tuple(t.shape) != self.shape)


def entries(params: list, names: list[str]) -> list[DeviceEntry]:
    """Validate device parameters (float, writable, contiguous)."""
    return [DeviceEntry(p, n) for p, n in zip(params, names, strict=True)]


def check_overlap(opt: Any, extra: list[tuple[DeviceEntry, str]] = ()) -> None:
    """ValueError if two parameters of the optimizer (plus ``extra``) share device memory."""
    arrays, names = [], []
    for gi, g in enumerate(opt.param_groups):
        for k, p in enumerate(g["params"]):
            name = f"param_groups[{gi}]['params'][{k}]"
            arrays.append(rt.view(p, name))
            names.append(name)
    for e, name in extra:
        arrays.append(e.d)
        names.append(name)
    CO._check_no_overlap(arrays, names)


def _group_entries(opt: Any, group: dict, k0: int) -> tuple[Any, list[DeviceEntry]]:
    """The group's validated entries, rebuilt when its params or their storage changed."""
    from fastact.optim.optimizers import _GroupCache

    cache = opt._cache.get(id(group))
    if cache is None or cache.group is not group:
        cache = opt._cache[id(group)] = _GroupCache(group)
    params = group["params"]
    ents = cache.entries
    if (
        ents is None
        or len(ents) != len(params)
        or any(e.obj is not p for e, p in zip(ents, params, strict=True))
        or any(e.stale() for e in ents)
    ):
        ents = [DeviceEntry(p, f"params[{k0 + j}]") for j, p in enumerate(params)]
        check_overlap(opt)
        cache.entries = ents
        cache.plans.clear()
    return cache, ents


def _filled(e: DeviceEntry, value: float, stream) -> Any:
    """A new device array like parameter ``e`` (its library, its memory order) = ``value``."""
    obj = e.obj
    lib = rt._library(obj)
    if lib == "torch":
        torch = F._torch()
        return torch.full_like(obj.detach(), value, memory_format=torch.preserve_format)
    if lib == "cupy":
        import cupy

        with obj.device:
            return cupy.full(e.shape, value, dtype=e.dtype, order=CO._layout(e.d) or "C")
    order = "F" if CO._layout(e.d) == "F" and len(e.shape) > 1 else "C"
    return cuda.to_device(np.full(e.shape, value, dtype=e.dtype, order=order), stream=stream)


def init_state(opt: Any, key: str, value: float) -> None:
    """Create ``state[p][key] = value`` (and ``step = 0``) for every parameter (Adagrad's
    constructor)."""
    for gi, group in enumerate(opt.param_groups):
        for k, p in enumerate(group["params"]):
            e = DeviceEntry(p, f"param_groups[{gi}]['params'][{k}]")
            st = opt.state[p]
            st["step"] = 0.0
            st[key] = _filled(e, value, rt.stream_of(p))


def copy_state(v: Any) -> Any:
    """A copy of one state value for ``state_dict``: device arrays stay on the device."""
    if F.is_tensor(v):
        torch = F._torch()
        return v.detach().clone(memory_format=torch.preserve_format)
    if rt.is_numba_array(v) or rt.interface(v) is not None:
        d = rt.view(v, "state")
        if rt._library(v) == "cupy":
            return v.copy()
        out = cuda.device_array(tuple(d.shape), d.dtype, order="F" if CO._layout(d) == "F" else "C")
        rt.assign(out, d, rt.stream_of(v))
        return out
    if isinstance(v, np.ndarray):
        return v.copy("K")
    return copy.deepcopy(v)


def load_param_state(p: Any, value: Any, name: str) -> dict:
    """``load_state_dict``'s per-parameter state for device parameter ``p``: arrays (device
    arrays, NumPy arrays or torch tensors) are copied to the device in ``p``'s dtype and
    memory order; ``step`` becomes a float. Validates everything before allocating."""
    if not isinstance(value, dict):
        raise TypeError(f"{name} must be a dict, got {type(value).__name__}")
    e = DeviceEntry(p, "parameter")
    staged = {}
    for key, v in value.items():
        label = f"{name}[{key!r}]"
        if key == "step":
            try:
                staged[key] = ("step", float(v))
            except (TypeError, ValueError):
                raise TypeError(f"{name}['step'] must be a number, got {v!r}") from None
        elif v is None:
            continue
        elif rt.is_numba_array(v) or rt.interface(v) is not None:
            d = rt.view(v, label)
            if d.dtype.kind != "f":
                raise TypeError(f"{label} has non-float dtype {d.dtype}")
            if tuple(d.shape) != e.shape:
                raise ValueError(
                    f"{label} has shape {tuple(d.shape)} but its parameter has shape {e.shape}"
                )
            staged[key] = ("device", d)
        elif isinstance(v, np.ndarray) or F.is_tensor(v):
            a = F.as_array(v, label)
            if a.dtype.kind != "f":
                raise TypeError(f"{label} has non-float dtype {a.dtype}")
            if a.shape != e.shape:
                raise ValueError(
                    f"{label} has shape {a.shape} but its parameter has shape {e.shape}"
                )
            staged[key] = ("host", a)
        else:
            staged[key] = ("copy", copy.deepcopy(v))
    out = {}
    stream = rt.stream_of(p)
    for key, (kind, v) in staged.items():
        if kind in ("step", "copy"):
            out[key] = v
            continue
        if kind == "device":
            if v.dtype != e.dtype:
                v = v.copy_to_host(stream=stream)  # cast on the host (rare: dtype change)
                kind = "host"
        if kind == "host":
            order = "F" if CO._layout(e.d) == "F" and len(e.shape) > 1 else "C"
            v = cuda.to_device(np.array(v, dtype=e.dtype, order=order), stream=stream)
        target = _filled(e, 0.0, stream)
        rt.assign(rt.view(target, key), v, stream)
        out[key] = target
    return out


def _grads(opt: Any, grads: Any) -> Any:
    if grads is None:
        return None
    total = sum(len(g["params"]) for g in opt.param_groups)
    if not isinstance(grads, (list, tuple)):
        raise TypeError(
            "grads must be a list or tuple aligned with the parameters, got " + type(grads).__name__
        )
    if len(grads) != total:
        raise ValueError(f"grads has {len(grads)} entries but the optimizer has {total} parameters")
    return grads


class _Plan:
    """Cached launch data of one (group, dtype): which parameters take part, the pointer
    table (row 1, the gradients, is refilled every step), the chunk table, the state dicts,
    their steps and the missing state. Valid while the state map's version is unchanged."""

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
    )


def _grad_address(g: Any, e: DeviceEntry, k: int, stream) -> tuple[Any, int]:
    """Validate gradient ``g`` of parameter ``e`` (grads[k]): (array to keep alive until the
    launch, its device address). Fast paths for numba arrays and torch CUDA tensors of the
    parameter's dtype, shape and layout; other layouts are copied into the parameter's."""
    if rt.is_numba_array(g):
        if g.dtype == e.dtype and g.shape == e.shape and CO._layout(g) == CO._layout(e.d):
            return g, rt._pointer(g)
    elif e.tptr and F.is_tensor(g):
        if (
            g.is_cuda
            and g.dtype == e.obj.dtype
            and tuple(g.shape) == e.shape
            and g.is_contiguous()
            and CO._layout(e.d) == "C"
        ):
            return g, g.data_ptr()
    d = CO._like(g, e.d, f"grads[{k}]", f"params[{k}]", False, stream)
    return d, rt._pointer(d)


def _plan(opt: Any, ents: list, js: tuple, keys: tuple, ks: list, dt, stream) -> _Plan:
    """Build (and validate) the launch data for the parameters ``js`` of one bucket."""
    m = len(js)
    ptrs = np.zeros((2 + len(keys), m), dtype=np.int64)
    sts, steps, missing, arrays, names = [], [], [], [], []
    for col, j in enumerate(js):
        e = ents[j]
        k = ks[col]
        ptrs[0, col] = e.addr
        arrays.append(e.d)
        names.append(f"params[{k}]")
        st = opt.state.get(e.obj)
        sts.append(st)
        for r, key in enumerate(keys):
            x = None if (key is None or st is None) else st.get(key)
            if key is None:
                ptrs[2 + r, col] = e.addr
            elif x is None:
                missing.append((col, r))
            else:
                name = f"state[params[{k}]]['{key}']"
                sd = CO._like(x, e.d, name, f"params[{k}]", True, stream)
                ptrs[2 + r, col] = rt._pointer(sd)
                arrays.append(sd)
                names.append(name)
        if opt._has_step:
            s = 0.0 if st is None else st.get("step", 0.0)
            try:
                steps.append(float(s))
            except (TypeError, ValueError):
                raise TypeError(f"state[params[{k}]]['step'] must be a number, got {s!r}") from None
    CO._check_no_overlap(arrays, names)
    plan = _Plan()
    plan.dt, plan.js, plan.keys = dt, js, keys
    plan.smap, plan.version = opt.state, opt.state._version
    plan.ptrs, plan.sts, plan.missing = ptrs, sts, missing
    plan.steps = steps if opt._has_step else None
    plan.fresh = bool(missing) or (
        opt._has_step and any(st is None or "step" not in st for st in sts)
    )
    plan.tparams = [ents[j].obj for j in js if ents[j].tptr]
    sizes = np.array([ents[j].d.size for j in js], dtype=np.int64)
    plan.chunks = F.chunk_table(sizes, CO.CHUNK)
    plan.total = int(sizes.sum())
    return plan


def _prepare(opt: Any, grads: Any) -> tuple[list, Any]:
    """Phase 1: validate every gradient (and, when the state changed, every state array)
    and fill the launch tables; writes nothing."""
    grads = _grads(opt, grads)
    work = []
    stream = None
    k0 = 0
    for gi, group in enumerate(opt.param_groups):
        cache, ents = _group_entries(opt, group, k0)
        if stream is None and ents:
            stream = rt.stream_of(ents[0].obj)
        scal = opt._scalars(group, gi)
        spec = opt._state_spec(group)
        keys = tuple(None if s is None else s[0] for s in spec)
        by_dt: dict = {}
        for j, e in enumerate(ents):
            k = k0 + j
            if grads is not None:
                g = grads[k]
            elif hasattr(e.obj, "grad"):
                g = e.obj.grad
            else:
                raise TypeError(
                    f"params[{k}] is a device array without .grad: pass its gradient, "
                    "step(grads=[...])"
                )
            if g is None:
                continue
            g, addr = _grad_address(g, e, k, stream)
            b = by_dt.get(e.dtype)
            if b is None:
                b = by_dt[e.dtype] = ([], [], [], [])
            b[0].append(j)
            b[1].append(g)
            b[2].append(addr)
            b[3].append(k)
        buckets = []
        for dt, (js, keep, gaddrs, ks) in by_dt.items():
            js = tuple(js)
            plan = cache.plans.get(dt)
            if (
                plan is None
                or plan.js != js
                or plan.keys != keys
                or plan.smap is not opt.state
                or plan.version != opt.state._version
            ):
                plan = _plan(opt, ents, js, keys, ks, dt, stream)
                cache.plans[dt] = plan
            plan.ptrs[1] = gaddrs
            buckets.append((plan, keep, ks))
        work.append((group, gi, scal, spec, ents, buckets))
        k0 += len(ents)
    return work, stream


def step(opt: Any, grads: Any, check_finite: bool, skip_nonfinite: bool) -> bool:
    """One device step of optimizer ``opt``; True when ``skip_nonfinite`` skipped it."""
    from fastact.optim.optimizers import _next_step

    work, stream = _prepare(opt, grads)
    if stream is None:
        stream = cuda.default_stream()
    if check_finite or skip_nonfinite:
        for *_, buckets in work:
            for plan, _keep, ks in buckets:
                if not plan.chunks.shape[0]:
                    continue
                bad = CO.nonfinite_chunks(plan.dt, plan.ptrs, 1, plan.chunks, stream)
                if bad.any():
                    if skip_nonfinite:
                        return True
                    k = ks[int(plan.chunks[int(np.argmax(bad)), 0])]
                    raise ValueError(
                        f"grads[{k}] contains NaN or infinite values (check_finite=True)"
                    )
    torch_params = []
    for group, gi, scal, spec, ents, buckets in work:
        for plan, _keep, _ks in buckets:
            firsts = None
            if plan.fresh:
                firsts = _create_state(opt, group, spec, ents, plan, stream)
            if plan.steps is None:
                new_steps = None
                coefs = np.zeros((len(plan.js), 1), dtype=np.float64)
                if firsts:
                    coefs[firsts, 0] = 1.0
            else:
                new_steps = [_next_step(s) for s in plan.steps]
                coefs = opt._coef_table(group, gi, new_steps)
            CO.launch(opt._kind, plan.dt, plan.ptrs, plan.chunks, coefs, scal, plan.total, stream)
            torch_params += plan.tparams
            if new_steps is not None:
                for st, s in zip(plan.sts, new_steps, strict=True):
                    dict.__setitem__(st, "step", s)
                plan.steps = new_steps
    if torch_params:  # tell autograd the tensors changed in place (as torch does)
        F._torch().autograd.graph.increment_version(torch_params)
    return False


def _create_state(opt: Any, group: dict, spec: list, ents: list, plan: _Plan, stream) -> list:
    """Create the state that ``plan`` found missing (the CPU class's rules); return the
    columns that got any."""
    cols = sorted({col for col, _r in plan.missing})
    for col in range(len(plan.js)) if opt._has_step else cols:
        if plan.sts[col] is None:
            plan.sts[col] = opt.state[ents[plan.js[col]].obj]
        if opt._has_step and "step" not in plan.sts[col]:
            plan.sts[col]["step"] = 0.0
    for col, r in plan.missing:
        key, init = spec[r]
        value = init(group) if callable(init) else init
        obj = _filled(ents[plan.js[col]], float(value), stream)
        plan.sts[col][key] = obj
        plan.ptrs[2 + r, col] = rt._pointer(rt.view(obj, key))
    plan.missing = []
    plan.fresh = False
    plan.version = opt.state._version
    return cols
