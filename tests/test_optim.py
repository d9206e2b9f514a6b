"""fastact.optim vs torch.optim: trajectories, in-place torch params, convergence, state dicts,
all-or-nothing errors, functional API (vs float64 NumPy references), chunked launches.

Tolerances (stated once): parameters are compared after every step with the error measured
relative to the tensor's scale: max|fastact - torch| over the largest magnitude the tensor's
trajectory has passed through so far (max over the steps of max|torch| and max|torch's
update|). A rounding difference is relative to the operands of the step that made it and is
carried into later steps, so after a cancellation (a 0-d parameter going from -0.07 to -0.004
in one step, then a small update) the current value alone is no scale for it: measured against
it, one ulp of the earlier operands looked like 16 ulp.
* float64: <= 1e-12 over 100 steps (observed <= 2e-13).
* float32: <= 8 ulp (8 * 2**-23) for the first 3 steps, <= 2e-4 over 100 steps. Both sides
  round every operation to float32 but in different orders (torch rounds after each tensor op,
  fastact's fused loop may contract a*b+c into one FMA), and momentum methods accumulate those
  last-bit differences (observed <= 4e-5).
"""

from __future__ import annotations

import copy
import warnings
import zlib

import numpy as np
import pytest
import torch

import fastact.host
import fastact.optim as fo
from fastact.host import optim as host_optim
from fastact.kernels.optim import chunk_table
from fastact.optim import functional as F

torch.set_num_threads(1)

ULP32 = 2.0**-23
F64_TOL = 1e-12
F32_FIRST_TOL = 8 * ULP32
F32_TOL = 2e-4

# ---------------------------------------------------------------------------------------------
# the registry: one table of optimizer configurations drives every test below
# ---------------------------------------------------------------------------------------------

CONFIGS: list[tuple[str, dict]] = [
    ("SGD", {"lr": 0.1}),
    ("SGD", {"lr": 0.05, "momentum": 0.9}),
    ("SGD", {"lr": 0.05, "momentum": 0.9, "nesterov": True}),
    ("SGD", {"lr": 0.05, "momentum": 0.9, "dampening": 0.3, "weight_decay": 0.01}),
    (
        "SGD",
        {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01, "maximize": True},
    ),
    ("Adam", {"lr": 1e-2}),
    ("Adam", {"lr": 1e-2, "weight_decay": 0.1, "amsgrad": True}),
    ("Adam", {"lr": 1e-2, "betas": (0.3, 0.9), "maximize": True}),  # lerp weight >= 0.5 form
    ("Adam", {"lr": 1e-2, "weight_decay": 0.1, "decoupled_weight_decay": True}),
    ("AdamW", {"lr": 1e-2}),
    ("AdamW", {"lr": 1e-2, "amsgrad": True, "weight_decay": 0.05, "maximize": True}),
    ("Adamax", {"lr": 1e-2}),
    ("Adamax", {"lr": 1e-2, "weight_decay": 0.1, "betas": (0.3, 0.99), "maximize": True}),
    ("RMSprop", {"lr": 1e-2}),
    ("RMSprop", {"lr": 1e-2, "momentum": 0.5}),
    ("RMSprop", {"lr": 1e-2, "centered": True}),
    ("RMSprop", {"lr": 1e-2, "momentum": 0.9, "weight_decay": 0.1}),
    ("RMSprop", {"lr": 1e-2, "momentum": 0.9, "centered": True, "maximize": True, "alpha": 0.3}),
    ("Rprop", {"lr": 1e-2}),
    ("Rprop", {"lr": 1e-2, "etas": (0.3, 1.5), "step_sizes": (1e-4, 0.05), "maximize": True}),
    ("Adagrad", {"lr": 0.1}),
    (
        "Adagrad",
        {
            "lr": 0.1,
            "lr_decay": 0.01,
            "weight_decay": 0.1,
            "initial_accumulator_value": 0.1,
            "maximize": True,
        },
    ),
    ("Adadelta", {}),
    ("Adadelta", {"lr": 0.5, "rho": 0.8, "weight_decay": 0.1, "maximize": True}),
]
NAMES = list(fo.OPTIMIZERS)
#: the richest configuration of each optimizer (the last one listed; the first ones take the
#: kernels' branch-free fast loops, the richest ones the general loop)
RICH = {name: kw for name, kw in CONFIGS}
PLAIN = {name: kw for name, kw in reversed(CONFIGS) if name != "SGD"} | {
    "SGD": {"lr": 0.05, "momentum": 0.9}
}
#: options that make each optimizer converge on the test problems (steps, options)
CONVERGE: dict[str, dict] = {
    "SGD": {"lr": 1e-3, "momentum": 0.9},
    "Adam": {"lr": 5e-2},
    "AdamW": {"lr": 5e-2, "weight_decay": 1e-4},
    "Adamax": {"lr": 0.1},
    "RMSprop": {"lr": 3e-3, "momentum": 0.5},
    "Rprop": {"lr": 1e-2},
    "Adagrad": {"lr": 0.3},
    "Adadelta": {"lr": 1.0},
}


def _cid(cfg: tuple[str, dict]) -> str:
    name, kw = cfg
    return name + "-" + "-".join(f"{k}={v}" for k, v in kw.items()) if kw else name


def _shapes() -> list[tuple]:
    return [(3, 5), (7,), (2, 3, 4), (), (0,), (40,)]


def _make(rng, dtype, shapes) -> list[np.ndarray]:
    ps = [np.array(rng.standard_normal(s), dtype=dtype) for s in shapes]
    ps[0] = np.asfortranarray(ps[0])  # a Fortran-ordered parameter (its grads arrive C-ordered)
    return ps


def _grads(rng, ps, it: int, skip: int | None = 1) -> list:
    gs = []
    for p in ps:
        g = rng.standard_normal(p.shape) * (rng.random(p.shape) > 0.1)  # 10% exact zeros
        gs.append(np.array(g, dtype=p.dtype))
    if skip is not None and it % 7 == 3:
        gs[skip] = None  # that parameter skips this step (like a missing .grad)
    return gs


def _torch_like(ps) -> list[torch.Tensor]:
    return [torch.tensor(np.array(p), requires_grad=True) for p in ps]


def _set_grads(tps, gs) -> None:
    for t, g in zip(tps, gs, strict=True):
        if g is None:
            t.grad = None
        else:
            t.grad = g.clone() if isinstance(g, torch.Tensor) else torch.from_numpy(np.array(g))


def _rel_err(a: np.ndarray, b: np.ndarray) -> float:
    """max|a - b| over max|b| (states after many steps)."""
    if a.size == 0:
        return 0.0
    scale = float(np.max(np.abs(b)))
    return float(np.max(np.abs(a.astype(np.float64) - b))) / (scale if scale > 0 else 1.0)


def _values(t) -> np.ndarray:
    return t.detach().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)


class _Scale:
    """Per tensor, the largest magnitude its (torch) trajectory has passed through: the max
    over the steps so far of max|parameter| and max|update| (see the module docstring)."""

    def __init__(self, tps) -> None:
        self.prev = [_values(t).astype(np.float64) for t in tps]
        self.scale = [float(np.max(np.abs(v), initial=0.0)) for v in self.prev]

    def step(self, tps) -> None:
        for k, t in enumerate(tps):
            v = _values(t).astype(np.float64)
            if v.size:
                moved = float(np.max(np.abs(v - self.prev[k])))
                self.scale[k] = max(self.scale[k], float(np.max(np.abs(v))), moved)
            self.prev[k] = v


def _check(ps, tps, tol: float, what: str, scale: _Scale) -> None:
    """fastact's parameters ``ps`` against torch's ``tps`` after a step (``scale`` is updated
    with this step first)."""
    scale.step(tps)
    for k, (p, t) in enumerate(zip(ps, tps, strict=True)):
        pv, tv = _values(p), _values(t)
        assert pv.shape == tv.shape and pv.dtype == tv.dtype
        if not tv.size:
            continue
        err = float(np.max(np.abs(pv.astype(np.float64) - tv))) / (scale.scale[k] or 1.0)
        assert err <= tol, f"{what}: params[{k}] off by {err:.3g} (tol {tol:.3g})"


def _tol(dtype, it: int) -> float:
    if np.dtype(dtype) == np.float64:
        return F64_TOL
    return F32_FIRST_TOL if it < 3 else F32_TOL


# ---------------------------------------------------------------------------------------------
# trajectories vs torch
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("cfg", CONFIGS, ids=_cid)
def test_trajectory_matches_torch(cfg, dtype):
    name, kw = cfg
    rng = np.random.default_rng(zlib.crc32(_cid(cfg).encode()))  # same data in every process
    ps = _make(rng, dtype, _shapes())
    tps = _torch_like(ps)
    opt = fo.OPTIMIZERS[name](ps, **kw)
    ref = getattr(torch.optim, name)(tps, **kw)
    scale = _Scale(tps)
    for it in range(100):
        gs = _grads(rng, ps, it)
        opt.step(gs)
        _set_grads(tps, gs)
        ref.step()
        _check(ps, tps, _tol(dtype, it), f"{name} step {it}", scale)
    # state: same keys, same step counts, same values
    for p, t in zip(ps, tps, strict=True):
        ts, fs = ref.state[t], opt.state[p]
        assert set(fs) == set(ts)
        for key, v in ts.items():
            if key == "step":
                assert fs[key] == float(v)
            else:
                assert _rel_err(fs[key], v.numpy()) <= _tol(dtype, 99)


@pytest.mark.parametrize("which", ["plain", "rich"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("name", NAMES)
def test_parallel_chunked_path_matches_torch(name, dtype, which, monkeypatch):
    """Force the prange kernel with tiny chunks: tensors span many chunks of one launch."""
    monkeypatch.setattr(fastact.host, "OPTIM_CHUNK", 64)
    monkeypatch.setattr(host_optim, "SERIAL_BELOW", 0)
    kw = RICH[name] if which == "rich" else PLAIN[name]
    rng = np.random.default_rng(7)
    ps = _make(rng, dtype, [(9, 30), (300,), (1,), (129,), (64,), (2, 2, 33)])
    tps = _torch_like(ps)
    opt = fo.OPTIMIZERS[name](ps, **kw)
    ref = getattr(torch.optim, name)(tps, **kw)
    scale = _Scale(tps)
    for it in range(25):
        gs = _grads(rng, ps, it)
        opt.step(gs)
        _set_grads(tps, gs)
        ref.step()
        _check(ps, tps, _tol(dtype, it), f"{name} step {it}", scale)


def test_chunk_table_covers_every_element_once():
    rng = np.random.default_rng(0)
    for chunk in (1, 7, 64, 16384):
        sizes = rng.integers(0, 300, size=25)
        sizes[3] = 0
        tab = chunk_table(sizes, chunk)
        assert tab.dtype == np.int64 and tab.flags.c_contiguous and tab.shape[1] == 3
        assert np.all(tab[:, 2] >= 1) and np.all(tab[:, 2] <= chunk)
        seen = [np.zeros(s, dtype=int) for s in sizes]
        for j, start, n in tab:
            seen[j][start : start + n] += 1
        assert all(np.all(s == 1) for s in seen)


def test_one_kernel_launch_per_group_and_dtype(monkeypatch):
    calls = []
    real = fastact.host.optim_launch

    def counting(kind, dt, ptrs, chunks, *args, **kw):
        calls.append((kind, np.dtype(dt), ptrs.shape[1], chunks.shape[0]))
        return real(kind, dt, ptrs, chunks, *args, **kw)

    monkeypatch.setattr(fastact.host, "optim_launch", counting)
    rng = np.random.default_rng(1)
    ps = [rng.standard_normal(int(n)).astype(np.float32) for n in rng.integers(1, 500, 60)]
    opt = fo.Adam(ps)
    opt.step([np.ones_like(p) for p in ps])
    assert calls == [("adam", np.float32, 60, 60)]
    calls.clear()
    mixed = ps[:30] + [p.astype(np.float64) for p in ps[30:]]
    opt = fo.Adam(mixed)
    opt.step([np.ones_like(p) for p in mixed])
    assert sorted((c[1].name, c[2]) for c in calls) == [("float32", 30), ("float64", 30)]


def test_mixed_dtypes_in_one_group_match_torch():
    rng = np.random.default_rng(2)
    ps = [
        rng.standard_normal(s).astype(d)
        for s, d in [
            ((5, 4), np.float32),
            ((9,), np.float64),
            ((3,), np.float32),
            ((2, 2), np.float64),
        ]
    ]
    tps = _torch_like(ps)
    opt, ref = fo.AdamW(ps, lr=0.01), torch.optim.AdamW(tps, lr=0.01)
    scale = _Scale(tps)
    for it in range(60):
        gs = _grads(rng, ps, it, skip=None)
        opt.step(gs)
        _set_grads(tps, gs)
        ref.step()
        scale.step(tps)
        for k, (p, t) in enumerate(zip(ps, tps, strict=True)):
            err = float(np.max(np.abs(p - t.detach().numpy()))) / scale.scale[k]
            assert err <= _tol(p.dtype, it)


def test_param_groups_and_add_param_group_match_torch():
    rng = np.random.default_rng(3)
    ps = [rng.standard_normal(s) for s in [(4, 3), (6,), (5,)]]
    tps = _torch_like(ps)

    def groups(x):
        return [
            {"params": [x[0]], "lr": 0.05, "amsgrad": True},
            {"params": [x[1]], "weight_decay": 0.1, "betas": (0.5, 0.9)},
        ]

    opt, ref = fo.Adam(groups(ps), lr=0.01), torch.optim.Adam(groups(tps), lr=0.01)
    assert [set(g) for g in opt.param_groups] == [set(g) for g in ref.param_groups]
    scale = _Scale(tps)
    for it in range(40):
        if it == 15:
            opt.add_param_group({"params": ps[2], "lr": 0.2})
            ref.add_param_group({"params": tps[2], "lr": 0.2})
        n = 2 if it < 15 else 3
        gs = _grads(rng, ps[:n], it, skip=None)
        opt.step(gs)
        _set_grads(tps[:n], gs)
        ref.step()
        _check(ps, tps, F64_TOL, f"step {it}", scale)
    assert opt.state[ps[2]]["step"] == 25.0 and opt.state[ps[0]]["step"] == 40.0


# ---------------------------------------------------------------------------------------------
# torch tensors as parameters
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cfg", CONFIGS[1::2], ids=_cid)
def test_torch_params_updated_in_place(cfg):
    name, kw = cfg
    torch.manual_seed(0)
    tps = [torch.randn(s, requires_grad=True) for s in [(6, 5), (11,), ()]]
    refs = [t.detach().clone().requires_grad_() for t in tps]
    addrs = [t.data_ptr() for t in tps]
    opt, ref = fo.OPTIMIZERS[name](tps, **kw), getattr(torch.optim, name)(refs, **kw)
    scale = _Scale(refs)
    for it in range(30):
        for t, r in zip(tps, refs, strict=True):
            g = torch.randn(t.shape)
            t.grad, r.grad = g.clone(), g.clone()
        opt.step()  # reads .grad
        ref.step()
        _check(tps, refs, _tol(np.float32, it), f"{name} step {it}", scale)
    assert [t.data_ptr() for t in tps] == addrs  # same memory: zero-copy in-place updates
    assert all(t._version >= 30 for t in tps)  # autograd sees the in-place updates
    assert all(t.requires_grad and t.is_leaf for t in tps)
    for key in ref.state[refs[0]]:
        v = opt.state[tps[0]][key]
        assert isinstance(v, float) if key == "step" else isinstance(v, torch.Tensor)
    opt.zero_grad(set_to_none=False)
    assert all(t.grad is not None and not t.grad.any() for t in tps)
    opt.zero_grad()
    assert all(t.grad is None for t in tps)
    before = [t.detach().clone() for t in tps]
    opt.step()  # every .grad is None: nothing moves
    assert all(torch.equal(a, t.detach()) for a, t in zip(before, tps, strict=True))


def test_numpy_params_are_the_same_objects_and_memory():
    p = np.zeros((3, 4), dtype=np.float32)
    base = p.ctypes.data
    opt = fo.SGD([p], lr=0.5)
    opt.step([np.ones_like(p)])
    assert opt.param_groups[0]["params"][0] is p and p.ctypes.data == base
    np.testing.assert_array_equal(p, -0.5)


def test_torch_param_storage_swap_is_followed():
    t = torch.zeros(5, requires_grad=True)
    opt = fo.SGD([t], lr=1.0)
    t.grad = torch.ones(5)
    opt.step()
    t.data = torch.full((5,), 10.0)  # new storage behind the same Parameter
    opt.step()
    np.testing.assert_array_equal(t.detach().numpy(), 9.0)


@pytest.mark.parametrize("second_group", [False, True])
def test_param_replaced_in_group_is_followed(second_group):
    """A parameter object swapped into group['params'] after steps is validated and updated
    (the cached plan must notice; groups from the constructor and add_param_group)."""
    a, b = np.zeros(5, np.float32), np.zeros(3, np.float32)
    opt = fo.Adam([np.zeros(2, np.float32)] if second_group else [a, b], lr=0.1)
    if second_group:
        opt.add_param_group({"params": [a, b]})
    g = opt.param_groups[-1]
    grads = [np.ones(2, np.float32)] * second_group + [
        np.ones(5, np.float32),
        np.ones(3, np.float32),
    ]
    opt.step(grads)
    c = np.zeros(3, np.float32)
    g["params"][1] = c
    opt.step(grads)
    np.testing.assert_allclose(c, -0.1, rtol=1e-6)  # a fresh Adam state: first step is -lr
    np.testing.assert_allclose(b, -0.1, rtol=1e-6)  # b left after one step
    assert opt.state[c]["step"] == 1.0


def test_torch_grads_with_other_layout_are_handled():
    t = torch.zeros(4, 3, requires_grad=True)
    opt = fo.SGD([t], lr=1.0)
    g = torch.arange(12.0).reshape(3, 4).t()  # non-contiguous view
    opt.step([g])
    np.testing.assert_array_equal(t.detach().numpy(), -g.numpy())


# ---------------------------------------------------------------------------------------------
# convergence
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_converges_on_quadratic(name):
    kw = CONVERGE[name]
    rng = np.random.default_rng(4)
    a = rng.uniform(0.5, 2.0, 50)
    c = rng.standard_normal(50)
    x = rng.standard_normal(50) * 2

    def f(x):
        return 0.5 * float(np.sum(a * (x - c) ** 2))

    f0 = f(x)
    opt = fo.OPTIMIZERS[name]([x], **kw)
    for _ in range(1500):
        opt.step([a * (x - c)])
    assert f(x) < 1e-6 * f0, f"{name}: f {f0:.3g} -> {f(x):.3g}"


@pytest.mark.parametrize("name", NAMES)
def test_converges_on_rosenbrock(name):
    kw = CONVERGE[name]
    rng = np.random.default_rng(5)
    xy = np.stack([rng.uniform(-1.5, -0.5, 16), rng.uniform(0.5, 2.0, 16)], axis=1)

    def f(v):
        x, y = v[:, 0], v[:, 1]
        return float(np.sum((1 - x) ** 2 + 100 * (y - x**2) ** 2))

    def grad(v):
        x, y = v[:, 0], v[:, 1]
        return np.stack([-2 * (1 - x) - 400 * x * (y - x**2), 200 * (y - x**2)], axis=1)

    f0 = f(xy)
    opt = fo.OPTIMIZERS[name]([xy], **kw)
    for _ in range(3000):
        opt.step([grad(xy)])
    assert f(xy) < 0.02 * f0, f"{name}: f {f0:.3g} -> {f(xy):.3g}"


# ---------------------------------------------------------------------------------------------
# state dicts
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cfg", CONFIGS, ids=_cid)
def test_state_dict_round_trip_resumes_identically(cfg):
    name, kw = cfg
    rng = np.random.default_rng(6)
    ps = _make(rng, np.float32, _shapes())
    groups = [{"params": ps[:3]}, {"params": ps[3:], "lr": 0.003}]
    opt = fo.OPTIMIZERS[name](groups, **kw)
    for it in range(10):
        opt.step(_grads(rng, ps, it))
    sd = opt.state_dict()
    saved = [p.copy("K") for p in ps]
    future = [_grads(rng, ps, it) for it in range(10, 20)]
    for gs in future:
        opt.step(gs)
    a = [p.copy() for p in ps]
    sd_copy = copy.deepcopy(sd)
    ps2 = [s.copy("K") for s in saved]
    opt2 = fo.OPTIMIZERS[name]([{"params": ps2[:3]}, {"params": ps2[3:]}], **kw)
    opt2.load_state_dict(sd)
    assert opt2.param_groups[1]["lr"] == 0.003
    for gs in future:
        opt2.step(gs)
    for x, y in zip(a, ps2, strict=True):
        np.testing.assert_array_equal(x, y)  # bit-identical continuation
    # the returned dict is a snapshot: later steps did not change it
    for k, st in sd["state"].items():
        for key, v in st.items():
            assert np.array_equal(v, sd_copy["state"][k][key])
    # same structure as torch's
    tps = _torch_like(saved)
    ref = getattr(torch.optim, name)([{"params": tps[:3]}, {"params": tps[3:], "lr": 0.003}], **kw)
    for it in range(2):
        _set_grads(tps, _grads(rng, saved, it, skip=None))
        ref.step()
    tsd = ref.state_dict()
    assert [set(g) for g in sd["param_groups"]] == [set(g) for g in tsd["param_groups"]]
    assert [g["params"] for g in sd["param_groups"]] == [g["params"] for g in tsd["param_groups"]]
    assert sd["state"].keys() == tsd["state"].keys()
    assert all(set(sd["state"][k]) == set(tsd["state"][k]) for k in sd["state"])


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_interoperates_with_torch_optim(name):
    kw = RICH[name]
    torch.manual_seed(1)
    a = [torch.randn(s, requires_grad=True) for s in [(4, 5), (3,)]]
    b = [x.detach().clone().requires_grad_() for x in a]
    grads = [[torch.randn(x.shape) for x in a] for _ in range(20)]
    fopt, topt = fo.OPTIMIZERS[name](a, **kw), getattr(torch.optim, name)(b, **kw)
    for gs in grads[:5]:
        _set_grads(a, gs)
        _set_grads(b, gs)
        fopt.step()
        topt.step()
    # swap: torch continues from fastact's state and vice versa
    fsd, tsd = fopt.state_dict(), topt.state_dict()
    fopt2, topt2 = fo.OPTIMIZERS[name](b, **kw), getattr(torch.optim, name)(a, **kw)
    fopt2.load_state_dict(tsd)
    topt2.load_state_dict(fsd)
    for gs in grads[5:]:
        _set_grads(a, gs)
        _set_grads(b, gs)
        topt2.step()
        fopt2.step()
    for x, y in zip(a, b, strict=True):
        assert _rel_err(x.detach().numpy(), y.detach().numpy()) <= F32_TOL


def test_load_state_dict_errors_change_nothing():
    rng = np.random.default_rng(8)
    ps = [rng.standard_normal((3, 2)), rng.standard_normal(4)]
    opt = fo.Adam(ps, lr=0.01)
    opt.step([np.ones((3, 2)), np.ones(4)])
    good = opt.state_dict()
    bad_groups = copy.deepcopy(good)
    bad_groups["param_groups"].append(dict(bad_groups["param_groups"][0], params=[]))
    bad_size = copy.deepcopy(good)
    bad_size["param_groups"][0]["params"] = [0]
    bad_shape = copy.deepcopy(good)
    bad_shape["state"][1]["exp_avg"] = np.zeros(5)
    bad_lr = copy.deepcopy(good)
    bad_lr["param_groups"][0]["lr"] = "fast"  # (a negative lr loads, as in torch)
    bad_lr["state"][0]["exp_avg"][:] = 123.0
    cases = [
        (bad_groups, ValueError, "different number of parameter groups"),
        (bad_size, ValueError, "doesn't match the size"),
        (bad_shape, ValueError, r"state_dict\['state'\]\[1\]\['exp_avg'\] has shape"),
        (bad_lr, TypeError, "lr must be a real number"),
        ({"state": {}}, TypeError, "param_groups"),
    ]
    for sd, exc, msg in cases:
        with pytest.raises(exc, match=msg):
            opt.load_state_dict(sd)
        now = opt.state_dict()
        assert now["param_groups"] == good["param_groups"]
        for k in good["state"]:
            for key in good["state"][k]:
                assert np.array_equal(now["state"][k][key], good["state"][k][key])


@pytest.mark.parametrize("cls", ["Adam", "AdamW8bit", "RMSprop", "Rprop"])
def test_incomplete_state_refused(cls):
    """A parameter state missing one of its entries (a truncated or edited state dict) is
    refused at the next step, naming the entry, with nothing written; it was silently made
    afresh (a restarted second moment or step count: a different trajectory). torch.optim
    raises KeyError there. An empty state is started afresh, and SGD's momentum buffer may be
    absent (torch creates it too)."""
    rng = np.random.default_rng(3)
    p = rng.standard_normal(5000).astype(np.float32)
    g = rng.standard_normal(5000).astype(np.float32)
    opt = getattr(fo, cls)([p], min_8bit_size=0) if cls.endswith("8bit") else getattr(fo, cls)([p])
    opt.step([g])
    good = opt.state_dict()
    for key in good["state"][0]:
        sd = copy.deepcopy(good)
        del sd["state"][0][key]
        q = p.copy()
        o2 = type(opt)([q], min_8bit_size=0) if cls.endswith("8bit") else type(opt)([q])
        with pytest.raises(ValueError, match=key.removesuffix("_f8absmax")):
            o2.load_state_dict(sd)  # (8-bit codes without their scales: refused here)
            o2.step([g])
        assert np.array_equal(q, p), key
    sd = copy.deepcopy(good)
    sd["state"][0] = {}
    q = p.copy()
    o2 = type(opt)([q], min_8bit_size=0) if cls.endswith("8bit") else type(opt)([q])
    o2.load_state_dict(sd)
    o2.step([g])  # started afresh
    assert o2.state_dict()["state"][0].keys() == good["state"][0].keys()


def test_state_replaced_with_in_place_or_is_used():
    """st |= {...} (dict's own __ior__ skips update) replaced a state array without the step
    noticing: it went on writing the detached array (freed memory for a large one: a
    segfault) and read stale values. torch uses the new array."""
    n = 1 << 20
    p = np.ones(n, np.float32)
    ref = torch.ones(n, requires_grad=True)
    opt, topt = fo.Adam([p], lr=0.1), torch.optim.Adam([ref], lr=0.1)
    g = np.ones(n, np.float32)
    opt.step([g])
    ref.grad = torch.from_numpy(g)
    topt.step()
    st = opt.state[p]
    st |= {"exp_avg": np.zeros(n, np.float32), "exp_avg_sq": np.zeros(n, np.float32)}
    tst = topt.state[ref]
    tst |= {"exp_avg": torch.zeros(n), "exp_avg_sq": torch.zeros(n)}
    opt.step([g])
    topt.step()
    np.testing.assert_allclose(p, ref.detach().numpy(), rtol=1e-6)
    np.testing.assert_allclose(st["exp_avg"], tst["exp_avg"].numpy(), rtol=1e-6)


def test_loaded_lr_may_be_slightly_negative():
    """A schedule decaying to 0 can end at -1.85e-17 (torch too); its checkpoint loads (torch
    loads it; the constructor still refuses a negative lr)."""
    from fastact.optim.lr_scheduler import LinearLR

    p = np.zeros(3, np.float32)
    opt = fo.SGD([p], lr=1.0)
    sched = LinearLR(opt, start_factor=1 / 3, end_factor=0.0, total_iters=4)
    for _ in range(4):
        opt.step([np.ones(3, np.float32)])
        sched.step()
    lr = opt.param_groups[0]["lr"]
    assert lr < 0
    other = fo.SGD([p.copy()], lr=1.0)
    other.load_state_dict(opt.state_dict())
    assert other.param_groups[0]["lr"] == lr
    sd = opt.state_dict()
    sd["param_groups"][0]["lr"] = "fast"
    with pytest.raises(TypeError, match="lr must be a real number"):
        other.load_state_dict(sd)
    with pytest.raises(ValueError, match="Invalid learning rate"):
        fo.SGD([p], lr=lr)


def test_sgd_momentum_buffer_may_be_absent():
    p = np.linspace(-1, 1, 6)
    opt = fo.SGD([p], lr=0.1, momentum=0.9)
    opt.step([np.ones(6)])
    sd = opt.state_dict()
    del sd["state"][0]["momentum_buffer"]
    ref = torch.tensor(p.copy(), requires_grad=True)
    topt = torch.optim.SGD([ref], lr=0.1, momentum=0.9)
    topt.load_state_dict(sd)
    opt.load_state_dict(sd)
    ref.grad = torch.ones(6, dtype=torch.float64)
    topt.step()
    opt.step([np.ones(6)])
    np.testing.assert_array_equal(p, ref.detach().numpy())


# ---------------------------------------------------------------------------------------------
# all-or-nothing steps and input validation
# ---------------------------------------------------------------------------------------------


def _bad_cases():
    def shape(gs, ps):
        return gs[:2] + [np.zeros(ps[2].size + 1, ps[2].dtype)]

    def dtype(gs, ps):
        return gs[:2] + [gs[2].astype(np.float32)]

    def nonarray(gs, ps):
        return gs[:2] + [gs[2].tolist()]

    return [
        ("short", lambda gs, ps: gs[:2], {}, ValueError, "grads has 2 entries"),
        ("shape", shape, {}, ValueError, r"grads\[2\] has shape"),
        ("dtype", dtype, {}, TypeError, r"grads\[2\] has dtype"),
        ("nonarray", nonarray, {}, TypeError, r"grads\[2\] must be a NumPy array"),
        ("notlist", lambda gs, ps: gs[2], {}, TypeError, "grads must be a list"),
        (
            "nan",
            lambda gs, ps: gs[:2] + [np.where(gs[2] > 0, np.nan, gs[2])],
            {"check_finite": True},
            ValueError,
            r"grads\[2\] contains NaN",
        ),
        (
            "inf",
            lambda gs, ps: gs[:2] + [np.where(gs[2] > 0, -np.inf, gs[2])],
            {"check_finite": True},
            ValueError,
            r"grads\[2\] contains NaN or inf",
        ),
    ]


@pytest.mark.parametrize("case", _bad_cases(), ids=lambda c: c[0])
@pytest.mark.parametrize("name", NAMES)
def test_failed_step_changes_nothing(name, case):
    _, make_bad, kwargs, exc, msg = case
    rng = np.random.default_rng(9)
    ps = [rng.standard_normal(s) for s in [(4, 3), (5,), (6,)]]
    opt = fo.OPTIMIZERS[name]([{"params": ps[:2]}, {"params": ps[2:]}], **RICH[name])
    for it in range(3):
        opt.step(_grads(rng, ps, it, skip=None))
    before_p = [p.copy() for p in ps]
    before_s = opt.state_dict()
    gs = _grads(rng, ps, 0, skip=None)
    with pytest.raises(exc, match=msg):
        opt.step(make_bad(gs, ps), **kwargs)
    for a, b in zip(before_p, ps, strict=True):
        np.testing.assert_array_equal(a, b)
    after = opt.state_dict()
    for k, st in before_s["state"].items():
        for key, v in st.items():
            assert np.array_equal(v, after["state"][k][key])
    opt.step(gs, check_finite=True)  # a good step still works afterwards
    assert any(not np.array_equal(a, b) for a, b in zip(before_p, ps, strict=True))


@pytest.mark.parametrize("name", NAMES)
def test_read_only_param_and_bad_state_rejected_before_writing(name):
    rng = np.random.default_rng(10)
    ps = [rng.standard_normal(5) for _ in range(3)]
    opt = fo.OPTIMIZERS[name](ps, **RICH[name])
    opt.step([np.ones(5)] * 3)
    before = [p.copy() for p in ps]
    ps[2].flags.writeable = False
    with pytest.raises(ValueError, match=r"params\[2\] is read-only"):
        opt.step([np.ones(5)] * 3)
    ps[2].flags.writeable = True
    key = next(k for k in opt.state[ps[2]] if k != "step")
    good = opt.state[ps[2]][key]
    opt.state[ps[2]][key] = np.zeros(6)
    with pytest.raises(ValueError, match=rf"state\[params\[2\]\]\['{key}'\] has shape"):
        opt.step([np.ones(5)] * 3)
    opt.state[ps[2]][key] = good.astype(np.float32)
    with pytest.raises(TypeError, match="has dtype float32"):
        opt.step([np.ones(5)] * 3)
    for a, b in zip(before, ps, strict=True):
        np.testing.assert_array_equal(a, b)
    opt.state[ps[2]][key] = good
    opt.step([np.ones(5)] * 3)


@pytest.mark.parametrize("name", NAMES)
def test_nan_and_inf_propagate_like_torch(name):
    kw = RICH[name]
    g = np.array([1.0, np.nan, -np.inf, np.inf, 0.0, -2.0, np.nan, 3.0])
    p = np.linspace(-1, 1, 8)
    t = torch.tensor(p.copy(), requires_grad=True)
    opt, ref = fo.OPTIMIZERS[name]([p], **kw), getattr(torch.optim, name)([t], **kw)
    for it in range(4):
        gi = np.roll(g, it)
        opt.step([gi])
        t.grad = torch.from_numpy(gi.copy())
        ref.step()
        np.testing.assert_allclose(p, t.detach().numpy(), rtol=1e-12, atol=0, equal_nan=True)


# constructor validation: same exception type and message as torch
BAD_ARGS = [
    ("SGD", {"lr": -0.1}),
    ("SGD", {"momentum": -0.5}),
    ("SGD", {"weight_decay": -1.0}),
    ("SGD", {"nesterov": True}),
    ("SGD", {"nesterov": True, "momentum": 0.9, "dampening": 0.1}),
    ("SGD", {"fused": True, "foreach": True}),
    ("Adam", {"lr": -1.0}),
    ("Adam", {"eps": -1.0}),
    ("Adam", {"betas": (1.0, 0.999)}),
    ("Adam", {"betas": (0.9, -0.1)}),
    ("Adam", {"weight_decay": -0.1}),
    ("Adam", {"betas": (0, 0.99)}),
    ("AdamW", {"betas": (0.9, 1.0)}),
    ("Adamax", {"lr": -1.0}),
    ("Adamax", {"betas": (1.5, 0.9)}),
    ("Adamax", {"eps": -1.0}),
    ("RMSprop", {"alpha": -0.1}),
    ("RMSprop", {"momentum": -1.0}),
    ("RMSprop", {"eps": -1.0}),
    ("Rprop", {"etas": (1.5, 1.2)}),
    ("Rprop", {"etas": (0.5, 0.9)}),
    ("Rprop", {"lr": -1.0}),
    ("Adagrad", {"lr_decay": -1.0}),
    ("Adagrad", {"initial_accumulator_value": -1.0}),
    ("Adagrad", {"eps": -1.0}),
    ("Adadelta", {"rho": 1.5}),
    ("Adadelta", {"eps": -1.0}),
    ("Adadelta", {"weight_decay": -1.0}),
]


@pytest.mark.parametrize("cfg", BAD_ARGS, ids=_cid)
def test_constructor_validation_matches_torch(cfg):
    name, kw = cfg
    with pytest.raises(Exception) as theirs:
        getattr(torch.optim, name)([torch.zeros(2, requires_grad=True)], **kw)
    with pytest.raises(type(theirs.value)) as ours:
        fo.OPTIMIZERS[name]([np.zeros(2)], **kw)
    assert str(ours.value) == str(theirs.value)


def test_param_validation():
    a = np.zeros((4, 4))
    cases = [
        (lambda: fo.SGD([]), ValueError, "empty parameter list"),
        (lambda: fo.SGD(a), TypeError, "should be an iterable"),
        (lambda: fo.SGD([np.zeros(3, np.int64)]), TypeError, "only float32, float64 and bfloat16"),
        (
            lambda: fo.SGD([np.zeros(3, np.float16)]),
            TypeError,
            "only float32, float64 and bfloat16",
        ),
        (lambda: fo.SGD([a[:, ::2]]), ValueError, "not contiguous"),
        (lambda: fo.SGD([a[0], a[1], a.reshape(-1)[2:6]]), ValueError, "share memory"),
        (lambda: fo.SGD([a, a]), ValueError, "duplicate parameters"),
        (lambda: fo.SGD([{"params": [a]}, {"params": [a]}]), ValueError, "more than one"),
        (lambda: fo.SGD([{"params": {torch.zeros(2, requires_grad=True)}}]), TypeError, "ordered"),
        (lambda: fo.SGD([[1.0, 2.0]]), TypeError, "can only optimize"),
        (lambda: fo.SGD([torch.zeros(2, requires_grad=True) * 2]), ValueError, "non-leaf"),
        (
            lambda: fo.SGD([torch.zeros(3, dtype=torch.int32)]),
            TypeError,
            "float32, float64 and bfloat16",
        ),
        (lambda: fo.Adam([np.zeros(2)], differentiable=True), ValueError, "differentiable"),
        (lambda: fo.Adam([np.zeros(2)], capturable=True), ValueError, "capturable"),
    ]
    ro = np.zeros(3)
    ro.flags.writeable = False
    cases.append((lambda: fo.SGD([ro]), ValueError, "read-only"))
    for make, exc, msg in cases:
        with pytest.raises(exc, match=msg):
            make()
    with pytest.raises(TypeError, match=r"params\[0\] is a NumPy array"):
        fo.SGD([np.zeros(2)]).step()


@pytest.mark.parametrize("name", ["Adam", "SGD"])
def test_deepcopy_and_pickle_are_independent(name):
    import pickle

    rng = np.random.default_rng(13)
    ps = [rng.standard_normal((3, 4)), rng.standard_normal(5)]
    opt = fo.OPTIMIZERS[name](ps, **RICH[name])
    for it in range(3):
        opt.step(_grads(rng, ps, it, skip=None))
    gs = _grads(rng, ps, 3, skip=None)
    for clone in (copy.deepcopy(opt), pickle.loads(pickle.dumps(opt))):
        cps = clone.param_groups[0]["params"]
        assert all(c is not p and np.array_equal(c, p) for c, p in zip(cps, ps, strict=True))
        before = [p.copy() for p in ps]
        clone.step(gs)
        assert all(np.array_equal(a, p) for a, p in zip(before, ps, strict=True))
        assert all(p in clone.state for p in cps) and not any(p in clone.state for p in ps)
        expected = copy.deepcopy(opt)
        expected.step(gs)
        for a, b in zip(cps, expected.param_groups[0]["params"], strict=True):
            np.testing.assert_array_equal(a, b)


def test_state_mapping_and_repr():
    ps = [np.zeros(3), np.zeros(2)]
    opt = fo.RMSprop(ps, momentum=0.5, centered=True)
    assert len(opt.state) == 0 and ps[0] not in opt.state
    opt.step([np.ones(3), None])
    assert len(opt.state) == 1 and ps[0] in opt.state and ps[1] not in opt.state
    assert list(opt.state) == [ps[0]]
    assert list(opt.state[ps[0]]) == ["step", "square_avg", "momentum_buffer", "grad_avg"]
    text = repr(opt)
    assert text.startswith("RMSprop (") and "momentum: 0.5" in text and "centered: True" in text


def test_step_closure_and_lr_tensor():
    p = np.array([1.0, 2.0])
    opt = fo.SGD([p], lr=torch.tensor(0.5))
    assert opt.step([np.ones(2)], closure=lambda: 3.0) == 3.0
    np.testing.assert_array_equal(p, [0.5, 1.5])
    t = torch.tensor([1.0, 2.0], requires_grad=True)
    opt = fo.SGD([t], lr=0.5)

    def closure():
        t.grad = torch.ones(2)
        return 7.0

    assert opt.step(closure) == 7.0
    np.testing.assert_array_equal(t.detach().numpy(), [0.5, 1.5])


# ---------------------------------------------------------------------------------------------
# functional API vs plain float64 NumPy references
# ---------------------------------------------------------------------------------------------


def _lerp(a, b, w):
    return a + w * (b - a)


def _ref(name, kw, p, g, s, t):
    """One float64 NumPy step of optimizer ``name`` (torch's documented update rules)."""
    g = -g if kw.get("maximize") else g
    wd = kw.get("weight_decay", 0.0)
    if name == "sgd":
        g = g + wd * p
        mu, d = kw.get("momentum", 0.0), kw.get("dampening", 0.0)
        if mu:
            s["buf"] = g.copy() if "buf" not in s else mu * s["buf"] + (1 - d) * g
            g = g + mu * s["buf"] if kw.get("nesterov") else s["buf"]
        return p - kw["lr"] * g
    if name in ("adam", "adamw"):
        lr, b1, b2, eps = kw["lr"], kw["beta1"], kw["beta2"], kw["eps"]
        if name == "adamw":
            p = p * (1 - lr * wd)
        else:
            g = g + wd * p
        s["m"] = _lerp(s["m"], g, 1 - b1)
        s["v"] = b2 * s["v"] + (1 - b2) * g * g
        v = s["v"]
        if kw.get("amsgrad"):
            s["vmax"] = np.maximum(s["vmax"], v)
            v = s["vmax"]
        denom = np.sqrt(v) / np.sqrt(1 - b2**t) + eps
        return p - lr / (1 - b1**t) * s["m"] / denom
    if name == "adamax":
        g = g + wd * p
        s["m"] = _lerp(s["m"], g, 1 - kw["beta1"])
        s["u"] = np.maximum(kw["beta2"] * s["u"], np.abs(g) + kw["eps"])
        return p - kw["lr"] / (1 - kw["beta1"] ** t) * s["m"] / s["u"]
    if name == "rmsprop":
        g = g + wd * p
        al = kw["alpha"]
        s["v"] = al * s["v"] + (1 - al) * g * g
        if kw.get("centered"):
            s["ga"] = _lerp(s["ga"], g, 1 - al)
            avg = np.sqrt(s["v"] - s["ga"] ** 2) + kw["eps"]
        else:
            avg = np.sqrt(s["v"]) + kw["eps"]
        if kw.get("momentum", 0) > 0:
            s["buf"] = kw["momentum"] * s["buf"] + g / avg
            return p - kw["lr"] * s["buf"]
        return p - kw["lr"] * g / avg
    if name == "rprop":
        sign = np.sign(g * s["prev"])
        factor = np.where(sign > 0, kw["etaplus"], np.where(sign < 0, kw["etaminus"], 1.0))
        s["ss"] = np.clip(s["ss"] * factor, kw["step_size_min"], kw["step_size_max"])
        g = np.where(sign < 0, 0.0, g)
        s["prev"] = g
        return p - np.sign(g) * s["ss"]
    if name == "adagrad":
        g = g + wd * p
        clr = kw["lr"] / (1 + (t - 1) * kw["lr_decay"])
        s["sum"] = s["sum"] + g * g
        return p - clr * g / (np.sqrt(s["sum"]) + kw["eps"])
    if name == "adadelta":
        g = g + wd * p
        rho, eps = kw["rho"], kw["eps"]
        s["v"] = rho * s["v"] + (1 - rho) * g * g
        delta = np.sqrt(s["u"] + eps) / np.sqrt(s["v"] + eps) * g
        s["u"] = rho * s["u"] + (1 - rho) * delta * delta
        return p - kw["lr"] * delta
    raise AssertionError(name)


FUNCTIONAL = [
    ("sgd", {"lr": 0.05, "momentum": 0.9, "dampening": 0.2, "weight_decay": 0.1}, ["buf"]),
    ("sgd", {"lr": 0.05, "momentum": 0.9, "nesterov": True, "maximize": True}, ["buf"]),
    (
        "adam",
        {
            "lr": 0.01,
            "beta1": 0.8,
            "beta2": 0.99,
            "eps": 1e-8,
            "weight_decay": 0.1,
            "amsgrad": True,
        },
        ["m", "v", "vmax"],
    ),
    (
        "adamw",
        {"lr": 0.01, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.1},
        ["m", "v"],
    ),
    (
        "adamax",
        {
            "lr": 0.01,
            "beta1": 0.9,
            "beta2": 0.99,
            "eps": 1e-8,
            "weight_decay": 0.1,
            "maximize": True,
        },
        ["m", "u"],
    ),
    (
        "rmsprop",
        {
            "lr": 0.01,
            "alpha": 0.9,
            "eps": 1e-8,
            "weight_decay": 0.1,
            "momentum": 0.5,
            "centered": True,
        },
        ["v", "buf", "ga"],
    ),
    (
        "rprop",
        {"etaminus": 0.4, "etaplus": 1.3, "step_size_min": 1e-5, "step_size_max": 0.3},
        ["prev", "ss"],
    ),
    ("adagrad", {"lr": 0.1, "lr_decay": 0.05, "weight_decay": 0.1, "eps": 1e-10}, ["sum"]),
    ("adadelta", {"lr": 0.7, "rho": 0.85, "eps": 1e-6, "weight_decay": 0.1}, ["v", "u"]),
]
_STEPPED = {"adam", "adamw", "adamax", "adagrad"}


@pytest.mark.parametrize("cfg", FUNCTIONAL, ids=lambda c: c[0] if not isinstance(c, dict) else "")
def test_functional_matches_numpy_reference(cfg):
    name, kw, keys = cfg
    rng = np.random.default_rng(11)
    shapes = [(4, 5), (9,), ()]
    ps = [rng.standard_normal(s) for s in shapes]
    refp = [p.copy() for p in ps]
    states = {k: [np.zeros(s) for s in shapes] for k in keys}
    if name == "rprop":
        states["ss"] = [np.full(s, 0.01) for s in shapes]
    if name == "sgd":
        states["buf"] = [None] * len(shapes)  # filled by the first call, like torch
    refs = [{k: v[i].copy() for k, v in states.items() if v[i] is not None} for i in range(3)]
    fn = getattr(F, name)
    for t in range(1, 31):
        gs = [rng.standard_normal(s) for s in shapes]
        args = [states[k] for k in keys]
        extra = {"step": t} if name in _STEPPED else {}
        fn(ps, gs, *args, **kw, **extra)
        for i in range(3):
            refp[i] = _ref(name, kw, refp[i], gs[i], refs[i], t)
        for a, b in zip(ps, refp, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def test_functional_validation_and_per_tensor_steps():
    ps = [np.zeros(3), np.zeros(2)]
    gs = [np.ones(3), np.ones(2)]
    m, v = [np.zeros(3), np.zeros(2)], [np.zeros(3), np.zeros(2)]
    with pytest.raises(ValueError, match="exp_avgs has 1 entries"):
        F.adam(ps, gs, m[:1], v, step=1)
    with pytest.raises(ValueError, match=r"exp_avg_sqs\[1\] has shape"):
        F.adam(ps, gs, m, [np.zeros(3), np.zeros(3)], step=1)
    with pytest.raises(ValueError, match="step must be >= 1"):
        F.adam(ps, gs, m, v, step=0)
    with pytest.raises(ValueError, match="share memory"):
        F.adam(ps, gs, [ps[0], m[1]], v, step=1)
    with pytest.raises(TypeError, match="momentum_buffers is required"):
        F.sgd(ps, gs, lr=0.1, momentum=0.9)
    assert all(not p.any() for p in ps + m + v)  # nothing written by the failed calls
    F.adam(ps, gs, m, v, step=[1, 5], lr=0.1)  # per-tensor step counts
    np.testing.assert_allclose(ps[0], -0.1 / (1 + 1e-8), rtol=1e-12)
    lr5 = 0.1 / (1 - 0.9**5) * 0.1 / (np.sqrt(0.001) / np.sqrt(1 - 0.999**5) + 1e-8)
    np.testing.assert_allclose(ps[1], -lr5, rtol=1e-12)


def test_functional_and_class_agree_bitwise():
    rng = np.random.default_rng(12)
    p1 = rng.standard_normal((8, 8)).astype(np.float32)
    p2 = p1.copy()
    m, v = np.zeros_like(p1), np.zeros_like(p1)
    opt = fo.Adam([p2], lr=0.01, weight_decay=0.01, amsgrad=True)
    vmax = np.zeros_like(p1)
    for t in range(1, 21):
        g = rng.standard_normal(p1.shape).astype(np.float32)
        F.adam([p1], [g], [m], [v], [vmax], step=t, lr=0.01, weight_decay=0.01, amsgrad=True)
        opt.step([g])
    np.testing.assert_array_equal(p1, p2)
    np.testing.assert_array_equal(m, opt.state[p2]["exp_avg"])


def test_float32_step_counter_saturates_like_torch():
    p = np.zeros(2)
    opt = fo.Adam([p])
    opt.step([np.ones(2)])
    opt.state[p]["step"] = 2.0**24
    opt.step([np.ones(2)])
    t = torch.tensor(2.0**24)
    t += 1
    assert opt.state[p]["step"] == float(t) == 2.0**24


def test_scheduler_changes_reach_the_kernel():
    p = np.zeros(3)
    opt = fo.SGD([p], lr=1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sched = fo.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
        for _ in range(3):
            opt.step([np.ones(3)])
            sched.step()
    np.testing.assert_array_equal(p, -(1.0 + 0.5 + 0.25))


def test_closure_runs_with_grad_enabled_on_torch_parameters():
    """step(closure) under torch.no_grad(): the closure's backward works (torch.optim's
    steps enable grad around the closure; fastact.optim's did not)."""
    p = torch.ones(3, requires_grad=True)
    opt = fo.SGD([p], lr=0.1)

    def closure():
        opt.zero_grad()
        loss = (p**2).sum()
        loss.backward()
        return loss

    with torch.no_grad():
        loss = opt.step(closure)
    assert float(loss) == 3.0
    torch.testing.assert_close(p.detach(), torch.full((3,), 0.8))


def test_older_state_dicts_get_the_missing_options():
    """A state dict from an older torch (groups without maximize, foreach, differentiable,
    fused; Adam without amsgrad) loads with this optimizer's defaults, as torch.optim's
    does (fastact.optim raised KeyError)."""
    for cls, drop in (
        ("Adagrad", ("maximize", "foreach", "differentiable", "fused")),
        ("Adam", ("amsgrad", "maximize")),
        ("SGD", ("nesterov", "maximize")),
    ):
        p = torch.zeros(3, requires_grad=True)
        t = getattr(torch.optim, cls)([p], lr=0.1)
        p.grad = torch.ones(3)
        t.step()
        sd = t.state_dict()
        for k in drop:
            sd["param_groups"][0].pop(k)
        q = p.detach().clone().requires_grad_()
        o = getattr(fo, cls)([q], lr=0.1)
        o.load_state_dict(sd)
        for k in drop:
            assert o.param_groups[0][k] == o.defaults[k], (cls, k)
        q.grad = torch.ones(3)
        o.step()
        p.grad = torch.ones(3)
        t.step()
        torch.testing.assert_close(q.detach(), p.detach())  # the same trajectory


def test_a_string_option_set_mid_run_is_refused():
    """param_groups[i]['lr'] = '0.5' is a TypeError at the step (float() parsed it; torch
    raises TypeError too), nothing written."""
    p = np.ones(3, np.float32)
    opt = fo.SGD([p], lr=0.1)
    opt.param_groups[0]["lr"] = "0.5"
    with pytest.raises(TypeError, match=r"\['lr'\] must be a number"):
        opt.step([np.ones(3, np.float32)])
    np.testing.assert_array_equal(p, 1.0)


def test_masked_parameters_and_gradients_refused():
    """A numpy.ma.MaskedArray parameter raised numba's NumbaTypeError (not a TypeError, no
    argument named); a masked gradient's mask was dropped (the masked elements stepped the
    parameter). Both: a TypeError naming them, nothing written."""
    from fastact.optim import functional as F

    m = np.ma.array(np.ones(3, np.float32), mask=[0, 1, 0])
    with pytest.raises(TypeError, match=r"params'\]\[0\] is a numpy\.ma\.MaskedArray"):
        fo.SGD([m], lr=0.1)
    with pytest.raises(TypeError, match=r"^params\[0\] is a numpy\.ma\.MaskedArray"):
        F.sgd([m], [np.ones(3, np.float32)], lr=0.1)
    np.testing.assert_array_equal(m.data, 1.0)
    p = np.ones(3, np.float32)
    with pytest.raises(TypeError, match=r"^grads\[0\] is a numpy\.ma\.MaskedArray"):
        F.sgd([p], [m], lr=0.1)
    with pytest.raises(TypeError, match=r"^grads\[0\] is a numpy\.ma\.MaskedArray"):
        fo.SGD([p], lr=0.1).step([m])
    np.testing.assert_array_equal(p, 1.0)


def test_unaligned_parameters_and_states_are_called_unaligned():
    """A C-contiguous parameter at an odd address (np.frombuffer at offset 1) was refused as
    "not contiguous in memory"; it is (and a state array alike): "is not aligned"."""
    from fastact.optim import functional as F

    def unaligned():
        a = np.frombuffer(bytearray(13), np.float32, count=3, offset=1)
        a.flags.writeable = True  # (a bytearray's memory: writable)
        assert a.flags.c_contiguous and not a.flags.aligned
        return a

    p = unaligned()
    with pytest.raises(ValueError, match=r"^params\[0\] is not aligned"):
        F.sgd([p], [np.ones(3, np.float32)], lr=0.1)
    with pytest.raises(ValueError, match=r"params'\]\[0\] is not aligned"):
        fo.SGD([p], lr=0.1)
    assert not p.any()
    q = np.ones(3, np.float32)
    m = unaligned()
    with pytest.raises(ValueError, match=r"^exp_avgs\[0\] is not aligned"):
        F.adam([q], [np.ones(3, np.float32)], [m], [np.zeros(3, np.float32)], step=1)
    np.testing.assert_array_equal(q, 1.0)
    assert not m.any()


def test_unaligned_tensor_parameters_get_a_tensor_remedy():
    """The unaligned-array message told a torch user to pass np.array(...) (np.frombuffer);
    for a tensor it names torch.frombuffer and .clone()."""
    from fastact.optim import functional as F

    p = torch.frombuffer(bytearray(13), dtype=torch.float32, count=3, offset=1)
    with pytest.raises(ValueError, match=r"torch\.frombuffer.*\(\.clone\(\)\)"):
        F.sgd([p], [torch.ones(3)], lr=0.1)
    a = np.frombuffer(bytearray(13), np.float32, count=3, offset=1)
    a.flags.writeable = True
    with pytest.raises(ValueError, match=r"np\.frombuffer.*\(np\.array\(\.\.\.\)\)"):
        F.sgd([a], [np.ones(3, np.float32)], lr=0.1)
