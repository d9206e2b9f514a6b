"""fastact.torch.optim: fastact's fused optimizers as torch.optim.Optimizer subclasses.

* Each class is a ``torch.optim.Optimizer`` with torch's constructor signature and defaults.
* The torch twin: a torch MLP trained for 200 steps with ``fastact.torch.optim.X`` and with
  ``torch.optim.X`` (same initial weights, same batches), each with one of torch's own
  schedulers: parameters, state and learning rates agree at every step.
* Every class of ``torch.optim.lr_scheduler`` and ``torch.optim.swa_utils`` (SWALR,
  AveragedModel, update_bn) drives them unchanged, with the learning rates and parameters of
  the same run on torch's optimizer.
* State dicts go both ways mid-run (through torch.save/torch.load) with no change in the
  trajectory; hooks, closures, add_param_group, zero_grad, pickling, ZeroRedundancyOptimizer.
* Bad options and unsupported parameters raise, and nothing is half-added.
"""

from __future__ import annotations

import copy
import inspect
import io
import math
import pickle
import warnings

import numpy as np
import pytest
import torch

import fastact.torch.optim as FO
from fastact import optim as fastact_optim

torch.set_num_threads(1)

STEPS = 200
N_IN, HIDDEN, N_CLASSES, BATCH = 12, 20, 4, 32
#: Parameters: |fastact - torch| <= atol + rtol |torch| at every step. The kernels contract
#: multiply-adds that torch rounds twice, so trajectories drift by float32 ulps (measured worst
#: over the 200 steps: 3e-6 absolute); the bounds leave a ~5x margin.
PARAM_TOL = dict(rtol=2e-4, atol=2e-5)

# (optimizer kwargs, scheduler, its kwargs): every optimizer, the learning rate changing
CONFIGS = {
    "SGD": (
        dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-4),
        "LambdaLR",
        dict(lr_lambda=lambda s: 0.995**s),
    ),
    "Adam": (dict(lr=5e-3, amsgrad=True), "CosineAnnealingLR", dict(T_max=STEPS, eta_min=1e-4)),
    "AdamW": (dict(lr=5e-3, weight_decay=0.05), "OneCycleLR", dict(max_lr=1e-2, total_steps=STEPS)),
    "Adamax": (dict(lr=1e-2, weight_decay=1e-3), "StepLR", dict(step_size=50, gamma=0.5)),
    "RMSprop": (
        dict(lr=2e-3, momentum=0.5, centered=True, eps=1e-4),
        "ExponentialLR",
        dict(gamma=0.995),
    ),
    "Rprop": (dict(lr=1e-3), "MultiStepLR", dict(milestones=[60, 120], gamma=0.5)),
    "Adagrad": (dict(lr=5e-2, lr_decay=1e-3), "LinearLR", dict(start_factor=0.5, total_iters=40)),
    "Adadelta": (
        dict(lr=1.0, weight_decay=1e-4),
        "PolynomialLR",
        dict(total_iters=STEPS, power=2.0),
    ),
}


def _data(seed: int = 0, steps: int = STEPS):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(N_CLASSES, N_IN, generator=g) * 1.5
    y = torch.randint(0, N_CLASSES, (512,), generator=g)
    x = centres[y] + torch.randn(512, N_IN, generator=g)
    batches = [torch.randperm(512, generator=g)[:BATCH] for _ in range(steps)]
    return x, y, batches


def _model(seed: int = 0, dtype=torch.float32) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(N_IN, HIDDEN),
        torch.nn.PReLU(HIDDEN),
        torch.nn.Linear(HIDDEN, HIDDEN),
        torch.nn.Tanh(),
        torch.nn.Linear(HIDDEN, N_CLASSES),
    ).to(dtype)


def _train_step(model, opt, xb, yb) -> float:
    opt.zero_grad()
    loss = torch.nn.functional.cross_entropy(model(xb), yb)
    loss.backward()
    opt.step()
    return loss.item()


def _assert_params_close(a, b, where: str) -> float:
    worst = 0.0
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        p, q = p.detach().double(), q.detach().double()
        ratio = float(((p - q).abs() / (PARAM_TOL["atol"] + PARAM_TOL["rtol"] * q.abs())).max())
        worst = max(worst, ratio)
        assert ratio <= 1.0, f"{where}: parameters differ ({ratio:.2f} x tolerance)"
    return worst


# ----------------------------------------------------------------------------- the classes
@pytest.mark.parametrize("name", list(FO.OPTIMIZERS))
def test_torch_optimizer_subclass_with_torchs_signature_and_defaults(name):
    cls, tcls = FO.OPTIMIZERS[name], getattr(torch.optim, name)
    assert issubclass(cls, torch.optim.Optimizer)
    sig, tsig = inspect.signature(cls.__init__), inspect.signature(tcls.__init__)
    ours = [(p.name, p.kind, p.default) for p in sig.parameters.values()]
    theirs = [(p.name, p.kind, p.default) for p in tsig.parameters.values()]
    assert ours[: len(theirs)] == theirs
    # plus fastact.optim's storage options, keyword-only (absent from the groups by default)
    kw = inspect.Parameter.KEYWORD_ONLY
    assert ours[len(theirs) :] == [
        ("state_dtype", kw, None),
        ("stochastic_rounding", kw, False),
        ("seed", kw, 0),
    ]
    p = torch.nn.Parameter(torch.zeros(3))
    opt, topt = cls([p]), tcls([torch.nn.Parameter(torch.zeros(3))])
    assert opt.defaults == topt.defaults
    assert opt.state_dict()["param_groups"] == topt.state_dict()["param_groups"]


def test_every_fastact_optimizer_has_a_torch_class():
    assert set(FO.OPTIMIZERS) == set(fastact_optim.OPTIMIZERS) == set(CONFIGS)


# ----------------------------------------------------------------------------- the twin
@pytest.mark.parametrize("name", list(CONFIGS))
def test_twin_trajectories_match_torch(name):
    opt_kw, sched_name, sched_kw = CONFIGS[name]
    x, y, batches = _data()
    a, b = _model(), _model()
    ptrs = [p.data_ptr() for p in a.parameters()]
    opt = FO.OPTIMIZERS[name](a.parameters(), **opt_kw)
    t_opt = getattr(torch.optim, name)(b.parameters(), **opt_kw)
    sched = getattr(torch.optim.lr_scheduler, sched_name)(opt, **sched_kw)
    t_sched = getattr(torch.optim.lr_scheduler, sched_name)(t_opt, **sched_kw)
    worst = 0.0
    for step, idx in enumerate(batches):
        loss = _train_step(a, opt, x[idx], y[idx])
        t_loss = _train_step(b, t_opt, x[idx], y[idx])
        sched.step()
        t_sched.step()
        assert math.isclose(loss, t_loss, rel_tol=1e-4), f"{name} step {step}"
        worst = max(worst, _assert_params_close(a, b, f"{name} step {step}"))
        assert sched.get_last_lr() == t_sched.get_last_lr()
    assert [p.data_ptr() for p in a.parameters()] == ptrs  # updated in place
    # the state has torch's keys, dtypes and values
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        st, t_st = opt.state[p], t_opt.state[q]
        assert st.keys() == t_st.keys()
        for key, v in t_st.items():
            assert isinstance(st[key], torch.Tensor)
            assert st[key].dtype == v.dtype and st[key].shape == v.shape
            if key == "step":
                assert float(st[key]) == float(v) == STEPS
            else:
                torch.testing.assert_close(st[key], v, rtol=2e-3, atol=1e-5)
    assert loss < 0.5 * math.log(N_CLASSES)
    print(f"{name}: worst parameter difference {worst:.2f} x tolerance")


# ----------------------------------------------------------------------------- schedulers
def _scheduler(name: str, opt):
    S = torch.optim.lr_scheduler
    if name == "LambdaLR":
        return S.LambdaLR(opt, lambda s: 1 / (1 + s))
    if name == "MultiplicativeLR":
        return S.MultiplicativeLR(opt, lambda s: 0.97)
    if name == "StepLR":
        return S.StepLR(opt, step_size=7, gamma=0.5)
    if name == "MultiStepLR":
        return S.MultiStepLR(opt, milestones=[5, 15], gamma=0.3)
    if name == "ConstantLR":
        return S.ConstantLR(opt, factor=0.5, total_iters=10)
    if name == "LinearLR":
        return S.LinearLR(opt, start_factor=0.2, total_iters=12)
    if name == "ExponentialLR":
        return S.ExponentialLR(opt, gamma=0.95)
    if name == "SequentialLR":
        parts = [S.ConstantLR(opt, factor=0.3, total_iters=5), S.ExponentialLR(opt, gamma=0.9)]
        return S.SequentialLR(opt, parts, milestones=[5])
    if name == "CosineAnnealingLR":
        return S.CosineAnnealingLR(opt, T_max=10, eta_min=1e-4)
    if name == "ChainedScheduler":
        return S.ChainedScheduler([S.ConstantLR(opt, 0.5, 6), S.ExponentialLR(opt, 0.9)])
    if name == "ReduceLROnPlateau":
        return S.ReduceLROnPlateau(opt, patience=2, factor=0.5, threshold=0.05)
    if name == "CyclicLR":  # cycles the momentum (SGD) or beta1 (Adam) too
        return S.CyclicLR(opt, base_lr=1e-3, max_lr=2e-2, step_size_up=4)
    if name == "CosineAnnealingWarmRestarts":
        return S.CosineAnnealingWarmRestarts(opt, T_0=5, T_mult=2)
    if name == "OneCycleLR":
        return S.OneCycleLR(opt, max_lr=2e-2, total_steps=30)
    if name == "PolynomialLR":
        return S.PolynomialLR(opt, total_iters=20, power=1.5)
    if name == "SWALR":
        return torch.optim.swa_utils.SWALR(opt, swa_lr=5e-3, anneal_epochs=5)
    raise AssertionError(name)


SCHEDULERS = [n for n in torch.optim.lr_scheduler.__all__ if n != "LRScheduler"] + ["SWALR"]


def test_every_torch_scheduler_is_tested():
    """A scheduler added to torch.optim.lr_scheduler shows up here (and must be tested)."""
    S = torch.optim.lr_scheduler
    public = {
        n
        for n, c in vars(S).items()
        if isinstance(c, type) and issubclass(c, (S.LRScheduler, S.ReduceLROnPlateau))
        and not n.startswith("_") and n not in ("LRScheduler", "_LRScheduler")
    }  # fmt: skip
    assert public <= set(SCHEDULERS)


@pytest.mark.parametrize("opt_name", ["SGD", "Adam"])
@pytest.mark.parametrize("sched_name", SCHEDULERS)
def test_every_scheduler_drives_the_optimizers_like_torchs(sched_name, opt_name):
    kw = dict(lr=1e-2, momentum=0.9) if opt_name == "SGD" else dict(lr=1e-2)
    x, y, batches = _data(1, steps=30)
    a, b = _model(1), _model(1)
    opt = FO.OPTIMIZERS[opt_name](a.parameters(), **kw)
    t_opt = getattr(torch.optim, opt_name)(b.parameters(), **kw)
    sched, t_sched = _scheduler(sched_name, opt), _scheduler(sched_name, t_opt)
    lrs = set()
    for step, idx in enumerate(batches):
        loss = _train_step(a, opt, x[idx], y[idx])
        t_loss = _train_step(b, t_opt, x[idx], y[idx])
        if sched_name == "ReduceLROnPlateau":
            sched.step(round(loss, 1))
            t_sched.step(round(t_loss, 1))
        else:
            sched.step()
            t_sched.step()
        for g, tg in zip(opt.param_groups, t_opt.param_groups, strict=True):
            assert g["lr"] == tg["lr"], f"{sched_name} step {step}"
            for key in ("momentum", "betas"):
                if key in g:
                    assert g[key] == tg[key], f"{sched_name} step {step}: {key}"
            lrs.add(g["lr"])
        _assert_params_close(a, b, f"{sched_name} step {step}")
    assert len(lrs) > 1  # the schedule changed the learning rate the kernels used
    assert sched.state_dict().keys() == t_sched.state_dict().keys()


def test_swa_utils_average_a_model_trained_by_a_fastact_optimizer():
    x, y, batches = _data(2, steps=20)
    a, b = _model(2), _model(2)
    opt, t_opt = FO.SGD(a.parameters(), lr=0.05), torch.optim.SGD(b.parameters(), lr=0.05)
    swa, t_swa = torch.optim.swa_utils.AveragedModel(a), torch.optim.swa_utils.AveragedModel(b)
    sch = torch.optim.swa_utils.SWALR(opt, swa_lr=0.01, anneal_epochs=3)
    t_sch = torch.optim.swa_utils.SWALR(t_opt, swa_lr=0.01, anneal_epochs=3)
    for idx in batches:
        _train_step(a, opt, x[idx], y[idx])
        _train_step(b, t_opt, x[idx], y[idx])
        swa.update_parameters(a)
        t_swa.update_parameters(b)
        sch.step()
        t_sch.step()
        assert opt.param_groups[0]["lr"] == t_opt.param_groups[0]["lr"]
    loader = [(x[i],) for i in batches[:3]]
    torch.optim.swa_utils.update_bn(loader, swa)
    _assert_params_close(swa, t_swa, "averaged model")
    assert int(swa.n_averaged) == len(batches)


# ----------------------------------------------------------------------------- state dicts
def _roundtrip(sd: dict) -> dict:
    buf = io.BytesIO()
    torch.save(sd, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("direction", ["torch->fastact", "fastact->torch"])
def test_switching_implementations_mid_run_keeps_the_trajectory(name, direction):
    """Train 30 steps with one implementation, save (torch.save), load into the other and
    train 30 more: the parameters follow the uninterrupted run of the first."""
    opt_kw = CONFIGS[name][0]
    x, y, batches = _data(3, steps=60)
    first, second = (
        (getattr(torch.optim, name), FO.OPTIMIZERS[name])
        if direction == "torch->fastact"
        else (FO.OPTIMIZERS[name], getattr(torch.optim, name))
    )
    ref, run = _model(3), _model(3)
    ref_opt, opt = first(ref.parameters(), **opt_kw), first(run.parameters(), **opt_kw)
    for idx in batches[:30]:
        _train_step(ref, ref_opt, x[idx], y[idx])
        _train_step(run, opt, x[idx], y[idx])
    sd = _roundtrip(opt.state_dict())
    opt2 = second(run.parameters(), **opt_kw)
    opt2.load_state_dict(sd)
    for p in run.parameters():
        st, st_ref = opt2.state[p], ref_opt.state[ref_opt.param_groups[0]["params"][0]]
        assert st.keys() == st_ref.keys()
        if "step" in st:
            assert isinstance(st["step"], torch.Tensor) and st["step"].dtype == torch.float32
            assert float(st["step"]) == 30
    for step, idx in enumerate(batches[30:], 30):
        _train_step(ref, ref_opt, x[idx], y[idx])
        _train_step(run, opt2, x[idx], y[idx])
        _assert_params_close(run, ref, f"{name} {direction} step {step}")
    assert opt2.state_dict()["param_groups"] == ref_opt.state_dict()["param_groups"]


def test_state_dict_is_torchs_format_and_references_the_state():
    model = _model()
    opt = FO.Adam(model.parameters(), lr=1e-3, amsgrad=True)
    x, y, batches = _data(steps=3)
    for idx in batches:
        _train_step(model, opt, x[idx], y[idx])
    sd = opt.state_dict()
    assert sorted(sd) == ["param_groups", "state"]
    assert sorted(sd["state"]) == list(range(len(list(model.parameters()))))
    for k, p in enumerate(model.parameters()):
        st = sd["state"][k]
        assert sorted(st) == ["exp_avg", "exp_avg_sq", "max_exp_avg_sq", "step"]
        assert st["step"].shape == () and st["step"].dtype == torch.float32
        assert float(st["step"]) == 3
        assert st["exp_avg"] is opt.state[p]["exp_avg"]  # torch returns references
        assert st["exp_avg"].shape == p.shape and st["exp_avg"].is_contiguous()
    # a saved state is plain torch objects (weights_only loading accepts it)
    loaded = _roundtrip(sd)
    assert type(loaded["state"][0]) is dict and float(loaded["state"][0]["step"]) == 3


def test_a_replaced_or_edited_state_entry_is_used_by_the_next_step():
    p = torch.nn.Parameter(torch.ones(5))
    q = torch.nn.Parameter(torch.ones(5))
    opt, t_opt = FO.Adam([p], lr=0.1), torch.optim.Adam([q], lr=0.1)
    for _ in range(2):
        for par, o in ((p, opt), (q, t_opt)):
            par.grad = torch.full_like(par, 0.5)
            o.step()
    for o, par in ((opt, p), (t_opt, q)):
        o.state[par]["exp_avg"] = torch.full_like(par, 3.0)  # replaced
        o.state[par]["step"].fill_(10.0)  # edited in place
        par.grad = torch.full_like(par, -1.0)
        o.step()
    torch.testing.assert_close(p.detach(), q.detach())
    assert float(opt.state[p]["step"]) == float(t_opt.state[q]["step"]) == 11


def _state_edits(opt, par, how):
    """Give a state tensor (and a step count) of ``par`` new storage in place."""
    st = opt.state[par]
    if how == "share_memory":  # Hogwild-style: moves every state tensor's storage
        for v in st.values():
            if v.dim():
                v.share_memory_()
    elif how == "data":
        st["exp_avg"].data = torch.zeros_like(st["exp_avg"])
        st["step"].data = torch.tensor(100.0)
    else:  # set_
        st["exp_avg_sq"].set_(torch.full_like(st["exp_avg_sq"], 0.25))


@pytest.mark.parametrize("how", ["share_memory", "data", "set_"])
def test_state_tensors_given_new_storage_in_place_are_followed(how):
    """The cached pointer tables hold the state tensors' addresses: a tensor whose storage is
    replaced under it (its version in the state map unchanged) must be re-read, or the kernel
    writes into memory the tensor no longer shows (freed memory: heap corruption)."""
    n = 100_000  # large enough that a freed storage goes back to the system
    ps = [torch.nn.Parameter(torch.ones(n)) for _ in range(2)]
    opts = FO.Adam([ps[0]], lr=0.1), torch.optim.Adam([ps[1]], lr=0.1)
    for par, o in zip(ps, opts, strict=True):
        par.grad = torch.full_like(par, 0.5)
        o.step()
        _state_edits(o, par, how)
        for _ in range(2):
            par.grad = torch.full_like(par, -1.0)
            o.step()
    torch.testing.assert_close(ps[0].detach(), ps[1].detach(), rtol=0, atol=0)
    for key in ("exp_avg", "exp_avg_sq", "step"):
        torch.testing.assert_close(opts[0].state[ps[0]][key], opts[1].state[ps[1]][key])


def test_step_counts_given_new_storage_one_by_one_are_followed():
    """Step counts of one launch are views of one buffer: a count given other memory
    (``.data =``, whichever column) is read from there at the next step."""
    runs = []
    for make in (FO.Adam, torch.optim.Adam):
        ps = [torch.nn.Parameter(torch.ones(5)) for _ in range(3)]
        o = make(ps, lr=0.1)
        for q in ps:
            q.grad = torch.ones(5)
        o.step()
        o.state[ps[0]]["step"].data = torch.tensor(50.0)
        o.state[ps[2]]["step"].data = torch.tensor(7.0)
        o.step()
        runs.append(([float(o.state[q]["step"]) for q in ps], [q.detach().clone() for q in ps]))
    assert runs[0][0] == runs[1][0] == [51.0, 2.0, 8.0]
    for a, b in zip(runs[0][1], runs[1][1], strict=True):
        torch.testing.assert_close(a, b)


def test_state_reset_by_assigning_a_new_dict():
    """``opt.state = defaultdict(dict)`` (a common reset) starts the state afresh, as torch's."""
    from collections import defaultdict

    ps = [torch.nn.Parameter(torch.ones(3)) for _ in range(2)]
    opts = FO.Adam([ps[0]], lr=0.1), torch.optim.Adam([ps[1]], lr=0.1)
    for par, o in zip(ps, opts, strict=True):
        par.grad = torch.ones(3)
        o.step()
        o.state = defaultdict(dict)
        o.step()
    torch.testing.assert_close(ps[0].detach(), ps[1].detach())
    assert float(opts[0].state[ps[0]]["step"]) == 1.0


def test_adamw_loading_an_adam_state_dict_stays_adamw():
    """torch's AdamW forces ``decoupled_weight_decay=True`` on load (its __setstate__): an Adam
    state dict (with L2 decay) loaded into AdamW steps with decoupled decay, in both APIs."""
    runs = []
    for make in (FO.AdamW, torch.optim.AdamW):
        p = torch.nn.Parameter(torch.ones(3))
        src = torch.optim.Adam([p], lr=0.1, weight_decay=0.5)
        p.grad = torch.ones(3)
        src.step()
        o = make([p], lr=0.1, weight_decay=0.5)
        o.load_state_dict(src.state_dict())
        assert o.param_groups[0]["decoupled_weight_decay"] is True
        o.step()
        runs.append(p.detach().clone())
    torch.testing.assert_close(runs[0], runs[1])
    a = np.ones(3, np.float32)
    src = fastact_optim.Adam([a], lr=0.1, weight_decay=0.5)
    src.step(grads=[np.ones(3, np.float32)])
    o = fastact_optim.AdamW([a], lr=0.1, weight_decay=0.5)
    o.load_state_dict(src.state_dict())
    assert o.param_groups[0]["decoupled_weight_decay"] is True
    o.step(grads=[np.ones(3, np.float32)])
    np.testing.assert_allclose(a, runs[1].numpy(), rtol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_adadelta_with_an_overflowing_square_average_like_torch(dtype):
    """float32 g^2 = inf: torch's step is sqrt(u + eps) / sqrt(inf) g = 0 and its state stays
    finite; fast-math's reciprocal (``arcp``) made it NaN (the flag is off for Adadelta)."""
    huge = 1e30 if dtype == torch.float32 else 1e200
    runs = []
    for make in (FO.Adadelta, torch.optim.Adadelta):
        p = torch.nn.Parameter(torch.zeros(40, dtype=dtype))
        o = make([p])
        for g in (1.0, huge, 1.0):
            p.grad = torch.full_like(p, g)
            o.step()
        runs.append((p.detach().clone(), o.state[p]["acc_delta"].clone()))
    assert torch.isfinite(runs[0][0]).all() and torch.isfinite(runs[0][1]).all()
    for a, b in zip(runs[0], runs[1], strict=True):
        torch.testing.assert_close(a, b)


def test_adagrad_group_added_later_gets_its_state_at_its_first_step():
    """torch's Adagrad makes the state of its constructor's groups at once and of a group
    added later lazily (with the defaults' initial_accumulator_value): same state dict."""
    runs = []
    for make in (FO.Adagrad, torch.optim.Adagrad):
        p, q = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(3))
        o = make([p], lr=0.1, initial_accumulator_value=0.5)
        o.add_param_group({"params": [q], "initial_accumulator_value": 2.0})
        before = sorted(o.state_dict()["state"])
        p.grad, q.grad = torch.ones(3), torch.ones(3)
        o.step()
        runs.append((before, q.detach().clone(), o.state[q]["sum"].clone()))
    assert runs[0][0] == runs[1][0] == [0]
    torch.testing.assert_close(runs[0][1], runs[1][1])
    torch.testing.assert_close(runs[0][2], runs[1][2])


# ----------------------------------------------------------------------------- torch API
def test_hooks_closure_zero_grad_and_add_param_group():
    a, b = _model(4), _model(4)
    opt = FO.SGD(list(a.parameters())[:2], lr=0.1, momentum=0.9)
    t_opt = torch.optim.SGD(list(b.parameters())[:2], lr=0.1, momentum=0.9)
    calls = []
    opt.register_step_pre_hook(lambda o, args, kw: calls.append(("pre", o)))
    opt.register_step_post_hook(lambda o, args, kw: calls.append(("post", o)))
    opt.register_state_dict_post_hook(lambda o, sd: calls.append(("sd", o)))
    opt.register_load_state_dict_pre_hook(lambda o, sd: calls.append(("load", o)))
    x, y, batches = _data(4, steps=10)
    for o, m in ((opt, a), (t_opt, b)):
        o.add_param_group({"params": list(m.parameters())[2:], "lr": 0.02, "nesterov": True})
    assert opt.param_groups[1]["momentum"] == 0.9 and opt.param_groups[1]["nesterov"]
    for idx in batches:
        for o, m in ((opt, a), (t_opt, b)):
            o.zero_grad(set_to_none=False)

            def closure(m=m, idx=idx):
                assert torch.is_grad_enabled()
                loss = torch.nn.functional.cross_entropy(m(x[idx]), y[idx])
                loss.backward()
                return loss

            with torch.no_grad():
                loss = o.step(closure)
            assert isinstance(loss, torch.Tensor) and loss.requires_grad
        _assert_params_close(a, b, "closure run")
    assert [c[0] for c in calls[:4]] == ["pre", "post", "pre", "post"]
    assert all(c[1] is opt for c in calls)
    opt.load_state_dict(opt.state_dict())
    assert [c[0] for c in calls[-2:]] == ["sd", "load"]
    opt.zero_grad(set_to_none=False)
    assert all(p.grad is not None and not p.grad.any() for p in a.parameters())
    opt.zero_grad()
    assert all(p.grad is None for p in a.parameters())


def test_parameters_without_grad_are_skipped_and_storage_changes_are_followed():
    p, q = torch.nn.Parameter(torch.ones(4)), torch.nn.Parameter(torch.ones(3))
    opt = FO.AdamW([p, q], lr=0.1)
    p.grad = torch.ones(4)
    opt.step()
    assert q not in opt.state and float(opt.state[p]["step"]) == 1
    assert torch.equal(q.detach(), torch.ones(3))
    # the parameter gets new storage (e.g. model.to(), a bucket view): the next step follows
    with torch.no_grad():
        p.data = torch.full((4,), 2.0)
    t = torch.nn.Parameter(torch.full((4,), 2.0))
    t_opt = torch.optim.AdamW([t, torch.nn.Parameter(torch.ones(3))], lr=0.1)
    t_opt.load_state_dict(_roundtrip(opt.state_dict()))
    p.grad, t.grad = torch.ones(4), torch.ones(4)
    opt.step()
    t_opt.step()
    torch.testing.assert_close(p.detach(), t.detach())


def test_pickle_deepcopy_and_repr():
    model = _model()
    opt = FO.RMSprop(model.parameters(), lr=1e-2, momentum=0.5)
    x, y, batches = _data(steps=4)
    for idx in batches[:2]:
        _train_step(model, opt, x[idx], y[idx])
    twin, opt2 = copy.deepcopy((model, opt))
    assert isinstance(opt2.state, FO.StateMap)
    for idx in batches[2:]:
        _train_step(model, opt, x[idx], y[idx])
        _train_step(twin, opt2, x[idx], y[idx])
    for p, q in zip(model.parameters(), twin.parameters(), strict=True):
        assert torch.equal(p, q)
    opt3 = pickle.loads(pickle.dumps(opt))
    assert float(opt3.state[opt3.param_groups[0]["params"][0]]["step"]) == 4
    assert repr(opt).startswith("RMSprop (") and "lr: 0.01" in repr(opt)


def test_check_finite_and_skip_nonfinite():
    p = torch.nn.Parameter(torch.ones(3))
    opt = FO.Adam([p], lr=0.1)
    p.grad = torch.tensor([1.0, math.nan, 0.0])
    with pytest.raises(ValueError, match="NaN or infinite"):
        opt.step(check_finite=True)
    assert torch.equal(p.detach(), torch.ones(3)) and p not in opt.state
    opt.step(skip_nonfinite=True)
    assert opt.found_inf and opt.skipped_steps == 1 and p not in opt.state
    p.grad = torch.ones(3)
    opt.step(skip_nonfinite=True)
    assert not opt.found_inf and float(opt.state[p]["step"]) == 1


def test_zero_redundancy_optimizer_takes_it_as_optimizer_class(tmp_path):
    """One process of torch.distributed (gloo): ZeRO builds, steps and consolidates a
    fastact.torch.optim.AdamW like a torch.optim.AdamW."""
    import torch.distributed as dist
    from torch.distributed.optim import ZeroRedundancyOptimizer

    store = dist.FileStore(str(tmp_path / "store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        x, y, batches = _data(5, steps=10)
        a, b = _model(5), _model(5)
        opts = [
            ZeroRedundancyOptimizer(m.parameters(), optimizer_class=cls, lr=1e-2)
            for m, cls in ((a, FO.AdamW), (b, torch.optim.AdamW))
        ]
        assert isinstance(opts[0].optim, FO.AdamW)
        for idx in batches:
            _train_step(a, opts[0], x[idx], y[idx])
            _train_step(b, opts[1], x[idx], y[idx])
            _assert_params_close(a, b, "ZeRO")
        for o in opts:
            o.consolidate_state_dict(to=0)
        sd, t_sd = (o.state_dict() for o in opts)
        assert sd["state"].keys() == t_sd["state"].keys()
        assert float(sd["state"][0]["step"]) == float(t_sd["state"][0]["step"]) == 10
    finally:
        dist.destroy_process_group()


# ----------------------------------------------------------------------------- errors
def test_unsupported_options_raise_and_selectors_are_accepted():
    p = [torch.nn.Parameter(torch.zeros(2))]
    with pytest.raises(ValueError, match="differentiable"):
        FO.Adam(p, differentiable=True)
    with pytest.raises(ValueError, match="capturable"):
        FO.AdamW(p, capturable=True)
    with pytest.raises(RuntimeError, match="cannot be `True` together"):
        FO.SGD(p, foreach=True, fused=True)
    for kw in (dict(foreach=True), dict(fused=True), dict(foreach=False)):
        opt = FO.Adam(p, **kw)
        assert all(opt.defaults[k] == v for k, v in kw.items())
    with pytest.raises(ValueError, match="Invalid learning rate"):
        FO.SGD(p, lr=-1)
    with pytest.raises(ValueError, match="Nesterov"):
        FO.SGD(p, nesterov=True)
    with pytest.raises(ValueError, match="Invalid beta"):
        FO.Adam(p, betas=(0.9, 1.5))


def test_bad_parameters_and_groups_raise_and_add_nothing():
    ok = torch.nn.Parameter(torch.zeros(4))
    with pytest.raises(TypeError, match="float16.*torch.optim"):
        FO.AdamW([torch.nn.Parameter(torch.zeros(3, dtype=torch.float16))])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="duplicate"):
            FO.Adam([ok, ok])
    base = torch.zeros(10)
    with pytest.raises(ValueError, match="share memory"):
        FO.Adam([torch.nn.Parameter(base[:6]), torch.nn.Parameter(base[4:])])
    with pytest.raises(ValueError, match="not contiguous"):
        FO.Adam([torch.nn.Parameter(torch.zeros(4, 4)[:, ::2])])
    opt = FO.Adam([ok])
    other = torch.nn.Parameter(torch.zeros(2))
    with pytest.raises(ValueError, match="Invalid learning rate"):
        opt.add_param_group({"params": [other], "lr": -1.0})
    with pytest.raises(ValueError, match="more than one parameter group"):
        opt.add_param_group({"params": [ok]})
    assert len(opt.param_groups) == 1
    # a wrong gradient is named, and nothing is written
    other.grad = torch.ones(2)
    opt.add_param_group({"params": [other]})
    ok.grad = torch.ones(4).to_sparse()
    with pytest.raises(TypeError, match=r"grads\[0\] is a sparse"):
        opt.step()
    assert not opt.state and torch.equal(other.detach(), torch.zeros(2))


def test_float64_parameters_and_a_transposed_parameter():
    a = torch.nn.Parameter(torch.randn(3, 5, dtype=torch.float64))
    w = torch.nn.Parameter(torch.randn(5, 3).t())  # Fortran-ordered view
    a2, w2 = (torch.nn.Parameter(t.detach().clone()) for t in (a, w))
    opt = FO.Adam([a, w], lr=0.1)
    t_opt = torch.optim.Adam([a2, w2], lr=0.1)
    for _ in range(3):
        for ps in ((a, w), (a2, w2)):
            for p in ps:
                p.grad = torch.cos(p.detach() * 3)
        opt.step()
        t_opt.step()
    torch.testing.assert_close(a.detach(), a2.detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(w.detach(), w2.detach(), rtol=1e-6, atol=1e-6)
    assert opt.state[a]["exp_avg"].dtype == torch.float64
    assert opt.state[w]["exp_avg"].stride() == w.stride()
    assert np.isfinite(a.detach().numpy()).all()


def test_step_counts_stay_the_same_tensors_when_buckets_change():
    """state['step'] is one tensor object for the whole run, as torch's (stepped in place):
    a reference taken earlier (directly, or in a state_dict()) stays live when the set of
    parameters with a gradient changes (the launch's count buffer is rebuilt) and after a
    load (the counts were replaced by views of a new buffer: the references went stale while
    the moments stayed live)."""
    for cls in ("Adam", "AdamW", "Adagrad"):
        a, b = torch.zeros(3, requires_grad=True), torch.zeros(3, requires_grad=True)
        ta, tb = a.detach().clone().requires_grad_(), b.detach().clone().requires_grad_()
        opt = getattr(FO, cls)([a, b], lr=0.1)
        ref_opt = getattr(torch.optim, cls)([ta, tb], lr=0.1)
        for o, (x, y) in ((opt, (a, b)), (ref_opt, (ta, tb))):
            x.grad, y.grad = torch.ones(3), torch.ones(3)
            o.step()
        sd = opt.state_dict()
        held = opt.state[a]["step"]
        for o, y in ((opt, b), (ref_opt, tb)):
            y.grad = None
            o.step()
            o.step()
        assert opt.state[a]["step"] is held
        assert float(held) == float(sd["state"][0]["step"]) == 3.0
        assert float(opt.state[b]["step"]) == 1.0
        opt.load_state_dict(ref_opt.state_dict())
        held = opt.state[a]["step"]
        a.grad = torch.ones(3)
        opt.step()
        assert opt.state[a]["step"] is held and float(held) == 4.0
