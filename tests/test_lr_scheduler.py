"""fastact.optim.lr_scheduler vs torch.optim.lr_scheduler: exact lr (and momentum/beta1)
sequences over 300 steps, restarts and milestones, state dicts, warnings and errors."""

from __future__ import annotations

import copy
import math
import warnings

import numpy as np
import pytest
import torch
import torch.optim.lr_scheduler as tls

import fastact.optim as fo
from fastact.optim import lr_scheduler as fls

STEPS = 300


class Halving:
    """A callable object: its __dict__ goes into LambdaLR's state_dict (functions do not)."""

    def __init__(self, every: int) -> None:
        self.every = every

    def __call__(self, epoch: int) -> float:
        return 0.5 ** (epoch // self.every)


# (scheduler, kwargs, optimizer, optimizer kwargs); lists give one value per param group
SCHEDULERS = [
    ("LambdaLR", {"lr_lambda": lambda e: 0.97**e}, "SGD", {}),
    ("LambdaLR", {"lr_lambda": [lambda e: 1 / (1 + e), Halving(40)]}, "Adam", {}),
    ("MultiplicativeLR", {"lr_lambda": lambda e: 0.99 if e % 3 else 0.9}, "SGD", {}),
    ("StepLR", {"step_size": 30, "gamma": 0.5}, "SGD", {}),
    ("MultiStepLR", {"milestones": [30, 80, 80, 200], "gamma": 0.3}, "Adam", {}),
    ("ConstantLR", {"factor": 0.25, "total_iters": 40}, "SGD", {}),
    ("LinearLR", {"start_factor": 0.2, "end_factor": 0.9, "total_iters": 50}, "SGD", {}),
    ("ExponentialLR", {"gamma": 0.985}, "RMSprop", {}),
    ("PolynomialLR", {"total_iters": 120, "power": 2.0}, "SGD", {}),
    ("CosineAnnealingLR", {"T_max": 37, "eta_min": 1e-3}, "SGD", {}),
    ("CosineAnnealingWarmRestarts", {"T_0": 10, "T_mult": 2, "eta_min": 1e-3}, "Adam", {}),
    ("CosineAnnealingWarmRestarts", {"T_0": 25}, "SGD", {}),
    ("CyclicLR", {"base_lr": 0.01, "max_lr": 0.1, "step_size_up": 20}, "SGD",
     {"momentum": 0.9}),
    ("CyclicLR", {"base_lr": 0.01, "max_lr": [0.1, 0.2], "step_size_up": 20,
                  "mode": "triangular2"}, "Adam", {}),
    ("CyclicLR", {"base_lr": [0.01, 0.02], "max_lr": 0.1, "step_size_up": 20,
                  "step_size_down": 13, "mode": "exp_range", "gamma": 0.99}, "RMSprop",
     {"momentum": 0.5}),
    ("CyclicLR", {"base_lr": 0.01, "max_lr": 0.1, "step_size_up": 15,
                  "scale_fn": lambda x: 1 / (1 + 0.1 * x), "scale_mode": "iterations",
                  "cycle_momentum": False}, "Adagrad", {}),
    ("OneCycleLR", {"max_lr": 0.5, "total_steps": STEPS + 1}, "SGD", {"momentum": 0.9}),
    ("OneCycleLR", {"max_lr": [0.5, 1.0], "epochs": 10, "steps_per_epoch": 31,
                    "three_phase": True, "anneal_strategy": "linear"}, "Adamax", {}),
]  # fmt: skip


def _sid(cfg) -> str:
    return cfg[0] + "-" + "-".join(f"{k}" for k in cfg[1])


def _pair(opt_name: str, okw: dict, n_groups: int = 2):
    ps = [np.zeros(3) for _ in range(n_groups)]
    tps = [torch.zeros(3, dtype=torch.float64, requires_grad=True) for _ in range(n_groups)]

    def groups(x):
        return [{"params": [p], "lr": 0.1 * (i + 1)} for i, p in enumerate(x)]

    return fo.OPTIMIZERS[opt_name](groups(ps), **okw), getattr(torch.optim, opt_name)(
        groups(tps), **okw
    )


def _momenta(opt) -> list:
    return [g.get("betas", g.get("momentum")) for g in opt.param_groups]


def _lrs(opt) -> list[float]:
    return [g["lr"] for g in opt.param_groups]


def _step_opt(opt) -> None:
    opt.step([np.zeros(3)] * len(opt.param_groups))


def _run_pair(fs, ts, fopt, topt, steps: int, check=True) -> list:
    seq = []
    for _ in range(steps):
        if check:
            assert _lrs(fopt) == _lrs(topt)
            assert _momenta(fopt) == _momenta(topt)
            assert fs.get_last_lr() == ts.get_last_lr()
        seq.append(_lrs(fopt))
        _step_opt(fopt)
        topt.step()
        fs.step()
        ts.step()
    return seq


@pytest.mark.parametrize("cfg", SCHEDULERS, ids=_sid)
def test_lr_sequence_matches_torch_exactly(cfg):
    name, kw, opt_name, okw = cfg
    fopt, topt = _pair(opt_name, okw)
    fs = getattr(fls, name)(fopt, **kw)
    ts = getattr(tls, name)(topt, **kw)
    seq = _run_pair(fs, ts, fopt, topt, STEPS)
    assert len({tuple(s) for s in seq}) >= 2  # the schedule really moves
    assert {k: v for k, v in fopt.param_groups[0].items() if k != "params"} == {
        k: v for k, v in topt.param_groups[0].items() if k != "params"
    }


@pytest.mark.parametrize("cfg", SCHEDULERS, ids=_sid)
def test_state_dict_round_trip(cfg):
    name, kw, opt_name, okw = cfg
    fopt, _ = _pair(opt_name, okw)
    fs = getattr(fls, name)(fopt, **kw)
    for _ in range(120):
        _step_opt(fopt)
        fs.step()
    osd, ssd = fopt.state_dict(), copy.deepcopy(fs.state_dict())
    assert "optimizer" not in ssd
    expected = []
    for _ in range(100):
        _step_opt(fopt)
        fs.step()
        expected.append((_lrs(fopt), _momenta(fopt), fs.get_last_lr()))
    fopt2, _ = _pair(opt_name, okw)
    fs2 = getattr(fls, name)(fopt2, **kw)
    fopt2.load_state_dict(osd)
    fs2.load_state_dict(ssd)
    for exp in expected:
        _step_opt(fopt2)
        fs2.step()
        assert (_lrs(fopt2), _momenta(fopt2), fs2.get_last_lr()) == exp


def test_lambda_lr_construction_semantics():
    fopt, topt = _pair("SGD", {})
    fs = fls.LambdaLR(fopt, lambda e: e)
    tls.LambdaLR(topt, lambda e: e)
    assert _lrs(fopt) == [0.0, 0.0] == _lrs(topt)
    assert fs.last_epoch == 0 and fs.base_lrs == [0.1, 0.2]
    assert [g["initial_lr"] for g in fopt.param_groups] == [0.1, 0.2]
    # a second scheduler keeps the first initial_lr
    fs2 = fls.LambdaLR(fopt, lambda e: 2.0)
    assert fs2.base_lrs == [0.1, 0.2] and _lrs(fopt) == [0.2, 0.4]
    with pytest.raises(ValueError, match="Expected 2 lr_lambdas, but got 3"):
        fls.LambdaLR(fopt, [lambda e: 1.0] * 3)
    fopt3, _ = _pair("SGD", {})
    with pytest.raises(KeyError, match="initial_lr"):
        fls.LambdaLR(fopt3, lambda e: 1.0, last_epoch=5)
    # state_dict: functions are saved as None, callable objects by their __dict__
    obj = Halving(7)
    fs3 = fls.LambdaLR(fopt3, [lambda e: 1.0, obj])
    sd = fs3.state_dict()
    assert sd["lr_lambdas"] == [None, {"every": 7}]
    obj.every = 99
    fs3.load_state_dict(sd)
    assert obj.every == 7


def test_resume_with_last_epoch_matches_torch():
    fopt, topt = _pair("SGD", {"momentum": 0.9})
    for opt in (fopt, topt):
        for g in opt.param_groups:
            g["initial_lr"] = g["lr"]
    fs = fls.CosineAnnealingLR(fopt, T_max=20, last_epoch=7)
    ts = tls.CosineAnnealingLR(topt, T_max=20, last_epoch=7)
    _run_pair(fs, ts, fopt, topt, 60)


def test_sequential_and_chained_match_torch():
    fopt, topt = _pair("SGD", {"momentum": 0.9})
    fs = fls.SequentialLR(
        fopt,
        [
            fls.LinearLR(fopt, 0.1, total_iters=10),
            fls.CosineAnnealingLR(fopt, T_max=50),
            fls.StepLR(fopt, 20, gamma=0.5),
        ],
        milestones=[10, 60],
    )
    ts = tls.SequentialLR(
        topt,
        [
            tls.LinearLR(topt, 0.1, total_iters=10),
            tls.CosineAnnealingLR(topt, T_max=50),
            tls.StepLR(topt, 20, gamma=0.5),
        ],
        milestones=[10, 60],
    )
    _run_pair(fs, ts, fopt, topt, STEPS)
    sd = fs.state_dict()
    assert len(sd["_schedulers"]) == 3 and sd["_milestones"] == [10, 60]

    fopt, topt = _pair("Adam", {})
    fs = fls.ChainedScheduler(
        [fls.ConstantLR(fopt, 0.1, total_iters=10), fls.ExponentialLR(fopt, gamma=0.98)]
    )
    ts = tls.ChainedScheduler(
        [tls.ConstantLR(topt, 0.1, total_iters=10), tls.ExponentialLR(topt, gamma=0.98)]
    )
    _run_pair(fs, ts, fopt, topt, STEPS)


@pytest.mark.parametrize(
    "kw",
    [
        {"patience": 3, "cooldown": 2, "min_lr": [1e-3, 2e-3]},
        {"mode": "max", "threshold_mode": "abs", "threshold": 0.01, "factor": 0.5},
        {"patience": 0, "eps": 1e-2, "min_lr": 0.05},
    ],
)
def test_reduce_lr_on_plateau_matches_torch(kw):
    fopt, topt = _pair("SGD", {})
    fs, ts = fls.ReduceLROnPlateau(fopt, **kw), tls.ReduceLROnPlateau(topt, **kw)
    rng = np.random.default_rng(0)
    changes = 0
    for i in range(STEPS):
        m = 1.0 / (1 + i) ** 0.3 + 0.05 * rng.standard_normal()
        before = _lrs(fopt)
        fs.step(m)
        ts.step(m)
        changes += before != _lrs(fopt)
        assert _lrs(fopt) == _lrs(topt) and fs.get_last_lr() == ts.get_last_lr()
        assert (fs.num_bad_epochs, fs.cooldown_counter, fs.best) == (
            ts.num_bad_epochs,
            ts.cooldown_counter,
            ts.best,
        )
    assert changes >= 1
    fs2 = fls.ReduceLROnPlateau(fopt, **kw)
    fs2.load_state_dict(copy.deepcopy(fs.state_dict()))
    for i in range(20):
        fs.step(float(i))
        fs2.step(float(i))
        assert fs2.num_bad_epochs == fs.num_bad_epochs and fs2.best == fs.best


def test_step_with_epoch_uses_closed_form_like_torch():
    for name, kw in [
        ("StepLR", {"step_size": 7, "gamma": 0.5}),
        ("MultiStepLR", {"milestones": [5, 9], "gamma": 0.1}),
        ("ExponentialLR", {"gamma": 0.9}),
        ("CosineAnnealingLR", {"T_max": 10}),
        ("LinearLR", {"total_iters": 8}),
        ("PolynomialLR", {"total_iters": 9, "power": 1.5}),
        ("ConstantLR", {"factor": 0.5, "total_iters": 6}),
    ]:
        fopt, topt = _pair("SGD", {})
        fs, ts = getattr(fls, name)(fopt, **kw), getattr(tls, name)(topt, **kw)
        for epoch in [3, 12, 5, 0, 8, 20]:
            _step_opt(fopt)
            topt.step()
            with pytest.warns(UserWarning, match="deprecated"):
                fs.step(epoch)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ts.step(epoch)
            assert _lrs(fopt) == _lrs(topt), (name, epoch)
    fopt, topt = _pair("SGD", {})
    fs = fls.CosineAnnealingWarmRestarts(fopt, T_0=4, T_mult=2)
    ts = tls.CosineAnnealingWarmRestarts(topt, T_0=4, T_mult=2)
    for epoch in [0.5, 1.25, 3.9, 4.0, 7.5, 13.0, 30.2, 2.0]:
        fs.step(epoch)
        ts.step(epoch)
        assert _lrs(fopt) == _lrs(topt) and fs.T_i == ts.T_i and fs.T_cur == ts.T_cur


def test_warns_when_scheduler_steps_before_optimizer():
    fopt, _ = _pair("SGD", {})
    fs = fls.StepLR(fopt, 3)
    with pytest.warns(UserWarning, match="before `optimizer.step\\(\\)`"):
        fs.step()
    fopt2, _ = _pair("SGD", {})
    fs2 = fls.StepLR(fopt2, 3)
    _step_opt(fopt2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fs2.step()
        assert fs2.get_last_lr() == [0.1, 0.2]
    with pytest.warns(UserWarning, match="get_last_lr"):
        fs2.get_lr()


def test_works_with_torch_optimizers_too():
    _, topt = _pair("SGD", {"momentum": 0.9})
    _, topt2 = _pair("SGD", {"momentum": 0.9})
    fs = fls.OneCycleLR(topt, max_lr=1.0, total_steps=100)
    ts = tls.OneCycleLR(topt2, max_lr=1.0, total_steps=100)
    for _ in range(99):
        topt.step()
        topt2.step()
        fs.step()
        ts.step()
        assert _lrs(topt) == _lrs(topt2) and _momenta(topt) == _momenta(topt2)


ERRORS = [
    ("ConstantLR", {"factor": 1.5}),
    ("LinearLR", {"start_factor": 0.0}),
    ("LinearLR", {"end_factor": 1.5}),
    ("CosineAnnealingWarmRestarts", {"T_0": 0}),
    ("CosineAnnealingWarmRestarts", {"T_0": 5, "T_mult": 0}),
    ("CosineAnnealingWarmRestarts", {"T_0": 5, "eta_min": "x"}),
    ("CyclicLR", {"base_lr": 0.1, "max_lr": 1.0, "mode": "nope"}),
    ("CyclicLR", {"base_lr": [0.1], "max_lr": 1.0}),
    ("OneCycleLR", {"max_lr": 1.0}),
    ("OneCycleLR", {"max_lr": 1.0, "total_steps": 0}),
    ("OneCycleLR", {"max_lr": 1.0, "total_steps": 10, "pct_start": 1.5}),
    ("OneCycleLR", {"max_lr": 1.0, "total_steps": 10, "anneal_strategy": "exp"}),
    ("ReduceLROnPlateau", {"factor": 1.0}),
    ("ReduceLROnPlateau", {"mode": "avg"}),
    ("ReduceLROnPlateau", {"threshold_mode": "x"}),
    ("ReduceLROnPlateau", {"min_lr": [0.1]}),
    ("MultiplicativeLR", {"lr_lambda": 0.5}),
]


@pytest.mark.parametrize("cfg", ERRORS, ids=lambda c: c[0] + "-" + "-".join(c[1]))
def test_errors_match_torch(cfg):
    name, kw = cfg
    fopt, topt = _pair("SGD", {"momentum": 0.9})
    with pytest.raises(Exception) as theirs:
        getattr(tls, name)(topt, **kw)
    with pytest.raises(type(theirs.value)) as ours:
        getattr(fls, name)(fopt, **kw)
    assert str(ours.value).split(".")[0] == str(theirs.value).split(".")[0]


def test_composite_and_misc_errors():
    fopt, _ = _pair("SGD", {"momentum": 0.9})
    other, _ = _pair("SGD", {})
    a, b = fls.StepLR(fopt, 3), fls.StepLR(other, 3)
    with pytest.raises(ValueError, match="same optimizer"):
        fls.SequentialLR(fopt, [a, b], milestones=[5])
    with pytest.raises(ValueError, match="number of milestones"):
        fls.SequentialLR(fopt, [a, fls.StepLR(fopt, 2)], milestones=[5, 6])
    with pytest.raises(ValueError, match="does not support `ReduceLROnPlateau`"):
        fls.ChainedScheduler([a, fls.ReduceLROnPlateau(fopt)])
    with pytest.raises(TypeError, match="is not an Optimizer"):
        fls.StepLR(object(), 3)
    adagrad, _ = _pair("Adagrad", {})
    with pytest.raises(ValueError, match="momentum or beta1"):
        fls.CyclicLR(adagrad, 0.01, 0.1)
    oc = fls.OneCycleLR(fopt, max_lr=1.0, total_steps=3)
    for _ in range(2):
        _step_opt(fopt)
        oc.step()
    with pytest.raises(ValueError, match="Tried to step 4 times"):
        oc.step()
        oc.step()
    assert math.isfinite(fopt.param_groups[0]["lr"])


# ----------------------------------------------------------------------------------------
# fuzz findings: bad arguments, the order warning, resuming at a scheduled momentum of 0


def _np_sgd(**kw):
    groups = [{"params": [np.zeros(3, np.float32)]}, {"params": [np.zeros(2, np.float32)]}]
    return fo.SGD(groups, lr=0.1, **kw)


def _np_grads():
    return [np.ones(3, np.float32), np.ones(2, np.float32)]


def _groups(opt) -> list[dict]:
    return [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups]


@pytest.mark.parametrize(
    ("make", "error"),
    [
        (lambda o: fls.CyclicLR(o, 0.001, 0.01, mode="bogus"), ValueError),
        (lambda o: fls.CyclicLR(o, 0.001, [0.01, 0.02, 0.03]), ValueError),
        (lambda o: fls.CyclicLR(o, 0.001, 0.01, base_momentum=[0.8]), ValueError),
        (lambda o: fls.CyclicLR(o, 0.001, 0.01, step_size_up=0), ValueError),
        (lambda o: fls.CyclicLR(o, 0.001, 0.01, step_size_down=-1), ValueError),
        (lambda o: fls.OneCycleLR(o, 0.1, total_steps=10, max_momentum=[0.9]), ValueError),
        (lambda o: fls.OneCycleLR(o, [0.1], total_steps=10), ValueError),
        (lambda o: fls.LambdaLR(o, 0.5), TypeError),
        (lambda o: fls.LambdaLR(o, [lambda e: 1.0, 0.5]), TypeError),
        (lambda o: fls.StepLR(o, 0), ValueError),
        (lambda o: fls.CosineAnnealingLR(o, 0), ValueError),
    ],
)
def test_bad_arguments_change_no_group(make, error):
    """Every check runs before the first write (torch overwrites the lrs, initial_lr, ...
    first: a later scheduler then started from them); counts a step divides by are refused
    at construction (torch: ZeroDivisionError at a later step)."""
    opt = _np_sgd(momentum=0.5)
    opt.param_groups[1]["lr"] = 0.2
    before = copy.deepcopy(_groups(opt))
    with pytest.raises(error):
        make(opt)
    assert _groups(opt) == before


def test_one_cycle_without_momentum_changes_no_group():
    opt = fo.Adagrad([np.zeros(3, np.float32)], lr=0.1)
    before = copy.deepcopy(_groups(opt))
    with pytest.raises(ValueError, match="momentum"):
        fls.OneCycleLR(opt, 0.5, total_steps=10)
    with pytest.raises(ValueError, match="momentum"):
        fls.CyclicLR(opt, 0.01, 0.1)
    assert _groups(opt) == before


def test_constant_lr_factor_zero_restores_the_base_lr():
    """factor=0 (freeze for total_iters steps; torch divides by it there): the base lr comes
    back at total_iters, as the closed form gives."""
    opt = _np_sgd()
    s = fls.ConstantLR(opt, factor=0.0, total_iters=3)
    seen = []
    for _ in range(5):
        seen.append(opt.param_groups[0]["lr"])
        s.step()
    assert seen == [0.0, 0.0, 0.0, 0.1, 0.1]


def _order_warned(make_sched, opt, step_first=None) -> bool:
    if step_first is not None:
        step_first()
    s = make_sched(opt)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        s.step()
    return any("before `optimizer.step()`" in str(x.message) for x in w)


def test_order_warning_on_torch_optimizers_and_after_an_early_step():
    """torch's rule: the scheduler stepped before any ``optimizer.step()`` since the first
    scheduler was attached warns, on torch optimizers too (their step is wrapped, with
    torch's own marker, so that torch's and fastact's schedulers wrap it once)."""
    import fastact.torch.optim as fto

    def topt(mod):
        p = torch.nn.Parameter(torch.zeros(2))
        p.grad = torch.ones(2)
        return mod.SGD([p], lr=0.1)

    def step_sched(o):
        return fls.StepLR(o, 2)

    assert _order_warned(step_sched, topt(torch.optim))
    assert _order_warned(step_sched, topt(fto))
    o = _np_sgd()
    assert _order_warned(step_sched, o, lambda: o.step(_np_grads()))
    # stepped in order: no warning, whoever wrapped the step first
    for mod in (torch.optim, fto):
        o = topt(mod)
        tls.StepLR(o, 2)  # torch's scheduler wraps first
        s = fls.StepLR(o, 2)
        assert hasattr(o.step, "_wrapped_by_lr_sched")
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            o.step()
            s.step()
    o = _np_sgd()
    s = fls.StepLR(o, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        o.step(_np_grads())
        s.step()
    pickle_roundtrip = copy.deepcopy(o)  # the marker pickles with the optimizer
    assert pickle_roundtrip._opt_called


@pytest.mark.parametrize("flavour", ["numpy", "torch"])
def test_nesterov_state_saved_at_scheduled_zero_momentum_loads(flavour):
    """CyclicLR(base_momentum=0) drives an SGD(nesterov=True) to momentum 0; a state dict
    saved then loads (torch checks nesterov only in the constructor) and the run goes on
    as torch's."""
    n = 6
    rng = np.random.default_rng(3)
    grads = [rng.standard_normal(n).astype(np.float32) for _ in range(8)]
    tp = torch.nn.Parameter(torch.ones(n))
    topt = torch.optim.SGD([tp], lr=0.1, momentum=0.9, nesterov=True)
    tsched = tls.CyclicLR(topt, 0.01, 0.1, step_size_up=2, base_momentum=0.0, max_momentum=0.9)
    if flavour == "numpy":
        fp = np.ones(n, np.float32)
        fopt = fo.SGD([fp], lr=0.1, momentum=0.9, nesterov=True)
    else:
        import fastact.torch.optim as fto

        fpt = torch.nn.Parameter(torch.ones(n))
        fopt = fto.SGD([fpt], lr=0.1, momentum=0.9, nesterov=True)
        fp = fpt.detach().numpy()
    fsched = fls.CyclicLR(fopt, 0.01, 0.1, step_size_up=2, base_momentum=0.0, max_momentum=0.9)

    def both_step(g):
        tp.grad = torch.from_numpy(g.copy())
        topt.step()
        if flavour == "numpy":
            fopt.step([g])
        else:
            fpt.grad = torch.from_numpy(g.copy())
            fopt.step()
        tsched.step()
        fsched.step()

    done = 0
    for g in grads:
        both_step(g)
        done += 1
        if fopt.param_groups[0]["momentum"] == 0.0:
            fopt.load_state_dict(copy.deepcopy(fopt.state_dict()))
            break
    assert fopt.param_groups[0]["momentum"] == 0.0 and done < len(grads) - 2
    for g in grads[done:]:
        both_step(g)
    np.testing.assert_allclose(fp, tp.detach().numpy(), rtol=1e-6, atol=1e-7)
