"""End to end: a fastact network trained next to its torch twin, and fastact.optim driving a
torch model.

* The twin: ``Linear -> PReLU(C) -> Linear -> ELU -> Linear`` with CrossEntropyLoss
  (label smoothing) built in fastact.nn and in torch.nn with identical initial weights (PReLU
  slopes randomized per channel), trained for 200 steps on the same batches with every
  optimizer of fastact.optim and a scheduler. At every step the losses, the gradients, every
  parameter (PReLU's slopes included) and the learning rates must agree (tolerances below).
* fastact.optim.AdamW over ``torch_model.parameters()`` (zero-copy, reading ``.grad``)
  against torch.optim.AdamW step for step.
* examples/train_digits.py, short run: >= 95% test accuracy and the PNG written.
"""

from __future__ import annotations

import copy
import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import fastact.nn as nn
from fastact import optim
from fastact.optim import lr_scheduler as fsched

torch.set_num_threads(1)

STEPS = 200
N_IN, HIDDEN, N_CLASSES, BATCH = 16, 24, 5, 32

#: Stated float32 tolerances, checked at every one of the 200 steps. The two implementations
#: round differently (matmul blocking, fused multiply-adds, fastact's float64 loss sums), so
#: the trajectories drift apart by a few float32 ulps per step. Measured worst cases over the
#: 200 steps: loss 3e-7 relative, gradients 3e-5 of the tensor's largest entry, parameters
#: 4e-6 absolute (Adagrad; Rprop stays bitwise equal). The bounds leave a ~5-10x margin.
#: parameters: |fastact - torch| <= atol + rtol * |torch|
PARAM_TOL = dict(rtol=2e-4, atol=2e-5)
#: gradients: max |fastact - torch| relative to the largest |torch| entry of the tensor
GRAD_TOL = 2e-4
#: the loss (a float32 scalar): relative
LOSS_RTOL = 1e-5

# (optimizer, its kwargs, scheduler, its kwargs) -- every optimizer with a scheduler, the
# schedulers stepped once per step so the learning rate changes during the 200 steps
CONFIGS = {
    "SGD": (
        dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-4),
        "LambdaLR",
        dict(lr_lambda=lambda s: 0.995**s),
    ),
    "Adam": (dict(lr=5e-3, amsgrad=True), "CosineAnnealingLR", dict(T_max=STEPS, eta_min=1e-4)),
    "AdamW": (
        dict(lr=5e-3, weight_decay=0.05),
        "OneCycleLR",
        dict(max_lr=1e-2, total_steps=STEPS),
    ),
    "Adamax": (dict(lr=1e-2), "StepLR", dict(step_size=50, gamma=0.5)),
    # centered RMSprop divides by sqrt(v - mean(g)^2) + eps: with the default eps=1e-8 the
    # cancellation where v ~ mean(g)^2 amplifies any rounding difference (any two float32
    # implementations diverge there), so the twin uses eps=1e-4
    "RMSprop": (
        dict(lr=2e-3, momentum=0.5, centered=True, eps=1e-4),
        "ExponentialLR",
        dict(gamma=0.995),
    ),
    "Rprop": (dict(lr=1e-3), "MultiStepLR", dict(milestones=[60, 120], gamma=0.5)),
    "Adagrad": (dict(lr=5e-2, lr_decay=1e-3), "LinearLR", dict(start_factor=0.5, total_iters=40)),
    "Adadelta": (
        dict(lr=1.0, weight_decay=1e-4),
        "LambdaLR",
        dict(lr_lambda=lambda s: min(1.0, (s + 1) / 20)),
    ),
}


def test_every_fastact_optimizer_is_twinned():
    assert set(CONFIGS) == set(dict(optim.OPTIMIZERS))


def _data(seed: int = 0):
    """A 5-class problem: Gaussian clusters around random centres, and 200 batches."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((N_CLASSES, N_IN)) * 1.5
    y = rng.integers(0, N_CLASSES, 512)
    x = (centres[y] + rng.standard_normal((512, N_IN))).astype(np.float32)
    batches = [rng.choice(512, BATCH, replace=False) for _ in range(STEPS)]
    return x, y.astype(np.int64), batches


def _twins(seed: int = 0):
    torch.manual_seed(seed)
    tm = torch.nn.Sequential(
        torch.nn.Linear(N_IN, HIDDEN),
        torch.nn.PReLU(HIDDEN),
        torch.nn.Linear(HIDDEN, HIDDEN),
        torch.nn.ELU(alpha=0.9),
        torch.nn.Linear(HIDDEN, N_CLASSES),
    )
    with torch.no_grad():
        tm[1].weight.uniform_(0.05, 0.45)  # a different slope per channel
    m = nn.Sequential(
        nn.Linear(N_IN, HIDDEN),
        nn.PReLU(HIDDEN),
        nn.Linear(HIDDEN, HIDDEN),
        nn.ELU(alpha=0.9),
        nn.Linear(HIDDEN, N_CLASSES),
    )
    m.load_state_dict(tm.state_dict())
    return tm, m


def _close(a: np.ndarray, b: np.ndarray, rtol: float, atol: float) -> float:
    """Largest violation ratio of |a - b| <= atol + rtol |b| (<= 1 passes)."""
    return float(np.max(np.abs(a.astype(np.float64) - b) / (atol + rtol * np.abs(b))))


@pytest.mark.parametrize("name", list(CONFIGS))
def test_twin_trajectories_match_torch(name):
    opt_kw, sched_name, sched_kw = CONFIGS[name]
    x, y, batches = _data()
    tm, m = _twins()
    names = [n for n, _ in m.named_parameters()]
    assert names == [n for n, _ in tm.named_parameters()]
    assert "1.weight" in names  # PReLU's slopes are optimizer parameters
    params, t_params = m.parameters(), list(tm.parameters())
    opt = getattr(optim, name)(params, **opt_kw)
    t_opt = getattr(torch.optim, name)(t_params, **opt_kw)
    sched = getattr(fsched, sched_name)(opt, **sched_kw)
    t_sched = getattr(torch.optim.lr_scheduler, sched_name)(t_opt, **sched_kw)
    crit = nn.CrossEntropyLoss(label_smoothing=0.1)
    t_crit = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    slopes0 = np.array(m[1].weight)
    worst = {"loss": 0.0, "grad": 0.0, "param": 0.0}
    for step, idx in enumerate(batches):
        xb, yb = x[idx], y[idx]
        # fastact: forward, fused loss + gradient, explicit backward, fused update
        loss = crit(m(xb), yb)
        m.zero_grad()
        m.backward(crit.backward())
        opt.step([p.grad for p in params])
        sched.step()
        # torch: autograd
        t_opt.zero_grad()
        t_loss = t_crit(tm(torch.from_numpy(xb)), torch.from_numpy(yb))
        t_loss.backward()
        t_opt.step()
        t_sched.step()

        where = f"{name} step {step}"
        err = abs(float(loss) - t_loss.item()) / abs(t_loss.item())
        worst["loss"] = max(worst["loss"], err)
        assert err <= LOSS_RTOL, f"{where}: loss {float(loss)} vs {t_loss.item()}"
        for n, p, tp in zip(names, params, t_params, strict=True):
            tg = tp.grad.numpy()
            gerr = float(np.max(np.abs(p.grad - tg))) / float(np.max(np.abs(tg)))
            worst["grad"] = max(worst["grad"], gerr)
            assert gerr <= GRAD_TOL, f"{where}: {n}.grad differs by {gerr:.2e} (relative)"
            perr = _close(p, tp.detach().numpy(), **PARAM_TOL)
            worst["param"] = max(worst["param"], perr)
            assert perr <= 1.0, f"{where}: parameter {n} differs ({perr:.2f} x tolerance)"
        # the schedulers' lr sequences are the same Python-float computations
        assert sched.get_last_lr() == t_sched.get_last_lr(), where
        for g, tg in zip(opt.param_groups, t_opt.param_groups, strict=True):
            assert g["lr"] == tg["lr"], where
            if "betas" in g:
                assert tuple(g["betas"]) == tuple(tg["betas"]), where
            if "momentum" in g:
                assert g["momentum"] == tg["momentum"], where
    # training did something (and the twins agreed while it did)
    assert not np.allclose(m[1].weight, slopes0)
    assert float(loss) < 0.5 * math.log(N_CLASSES)
    print(
        f"{name}: worst loss {worst['loss']:.1e}, grad {worst['grad']:.1e}, param x tol "
        f"{worst['param']:.2f}"
    )


# ----------------------------------------------------------------------------- torch model
def test_fastact_adamw_trains_a_torch_model_like_torch_adamw():
    """fastact.optim.AdamW(model.parameters()) updates the tensors in place (zero-copy) from
    their ``.grad``, step for step like torch.optim.AdamW."""
    torch.manual_seed(1)
    a = torch.nn.Sequential(
        torch.nn.Linear(N_IN, HIDDEN),
        torch.nn.PReLU(HIDDEN),
        torch.nn.Linear(HIDDEN, N_CLASSES),
    )
    b = copy.deepcopy(a)
    kw = dict(lr=3e-3, betas=(0.8, 0.99), weight_decay=0.02, amsgrad=True)
    opt = optim.AdamW(a.parameters(), **kw)
    t_opt = torch.optim.AdamW(b.parameters(), **kw)
    sched = fsched.CosineAnnealingLR(opt, T_max=100)
    t_sched = torch.optim.lr_scheduler.CosineAnnealingLR(t_opt, T_max=100)
    ptrs = [p.data_ptr() for p in a.parameters()]
    x, y, batches = _data(1)
    worst = 0.0
    for step, idx in enumerate(batches[:100]):
        xb, yb = torch.from_numpy(x[idx]), torch.from_numpy(y[idx])
        for model, o in ((a, opt), (b, t_opt)):
            o.zero_grad()
            torch.nn.functional.cross_entropy(model(xb), yb).backward()
        if step == 0:  # identical weights: identical gradients
            pairs = zip(a.parameters(), b.parameters(), strict=True)
            assert all(torch.equal(p.grad, q.grad) for p, q in pairs)
        opt.step()  # reads each tensor's .grad
        t_opt.step()
        sched.step()
        t_sched.step()
        for p, q in zip(a.parameters(), b.parameters(), strict=True):
            d = float((p.detach() - q.detach()).abs().max())
            worst = max(worst, d)
            assert d <= 1e-6, f"step {step}: parameters differ by {d}"  # measured 9e-8
        assert opt.param_groups[0]["lr"] == t_opt.param_groups[0]["lr"]
    assert [p.data_ptr() for p in a.parameters()] == ptrs  # updated in place
    st, t_st = opt.state[a[1].weight], t_opt.state[b[1].weight]
    assert st["step"] == float(t_st["step"]) == 100.0
    for key in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
        torch.testing.assert_close(torch.as_tensor(st[key]), t_st[key], rtol=1e-5, atol=1e-8)
    # optimizer.zero_grad resets the torch gradients as torch's does
    opt.zero_grad()
    assert all(p.grad is None for p in a.parameters())
    print(f"AdamW on a torch model: worst parameter difference {worst:.1e}")


# ----------------------------------------------------------------------------- the example
def _load_example(name: str):
    path = Path(__file__).resolve().parent.parent / "examples" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_example_{name}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_train_digits_example_reaches_95_percent(tmp_path, capsys):
    ex = _load_example("train_digits")
    res = ex.main(["--epochs", "8", "--seed", "0", "--out-dir", str(tmp_path), "--no-progress"])
    out = capsys.readouterr().out
    assert res["test_acc"] >= 0.95
    assert out.count("epoch ") >= 8 and "test accuracy" in out
    hist = res["history"]
    assert len(hist["test_acc"]) == 8 and hist["train_loss"][-1] < hist["train_loss"][0]
    # LambdaLR: warm-up then cosine decay
    assert hist["lr"][0] < hist["lr"][1] and hist["lr"][-1] < hist["lr"][1]
    # the slopes were learned (per channel) by the optimizer
    assert res["slopes"].shape == (128,) and np.ptp(res["slopes"]) > 0.05
    png = tmp_path / "train_digits.png"
    assert png == res["png"] and png.stat().st_size > 10_000
    import matplotlib.image

    img = matplotlib.image.imread(png)
    assert img.ndim == 3 and img.shape[1] > img.shape[0] > 200
