"""The functional optimizer API (torch.optim's update rules) for trainers that keep their own
state: ``sgd``, ``adam``, ``adamw``, ``adamax``, ``rmsprop``, ``rprop``, ``adagrad``,
``adadelta``.

Each updates parameters and state arrays in place with one fused launch per dtype (see
:mod:`fastact.kernels.optim` for the kernels and their pointer and chunk tables) and
increments nothing: the caller passes the step number ``t`` that torch would use, i.e. after
its increment. Arrays are NumPy arrays or CPU torch tensors (updated through zero-copy
views), or, for the whole call, CUDA device arrays (numba, CuPy, torch CUDA; the same
kernels compiled for the GPU). Arguments are validated completely before any array is
written (:mod:`fastact.optim.driver`), among them the options the step's coefficients are
computed from, by the constructors' rules: ``beta1`` and ``beta2`` in [0, 1) and
``lr_decay`` >= 0 (a ValueError naming the option; torch's functional API divides by zero
or computes a complex number there); the other options are taken as torch's functional API
takes them. Every function returns True when
``skip_nonfinite=True`` skipped the step (a NaN or inf gradient), else False;
``check_finite=True`` raises ValueError naming the gradient instead.
"""

from __future__ import annotations

from typing import Any

from fastact._core.arrays import is_tensor
from fastact.kernels.optim import OPTIMIZERS
from fastact.optim.driver import functional_step

__all__ = ["sgd", "adam", "adamw", "adamax", "rmsprop", "rprop", "adagrad", "adadelta"]


#: the options the step coefficients are computed from: a torch tensor among them stays a
#: tensor, so that the coefficients are computed in its dtype, as torch's functional API does
#: (a float32 lr: ``lr / bias_correction1`` and ``1 - lr * weight_decay`` in float32)
_COEF_OPTIONS = ("lr", "beta1", "beta2")


def _options(coefs: bool = False, **kw: Any) -> dict:
    """The options as floats (bools kept), with TypeError naming a non-number; ``coefs``:
    tensors among :data:`_COEF_OPTIONS` kept (detached)."""
    out = {}
    for k, v in kw.items():
        if isinstance(v, bool):
            out[k] = v
            continue
        if isinstance(v, (str, bytes, complex)):
            raise TypeError(f"{k} must be a real number, got {type(v).__name__}")
        try:
            out[k] = float(v)
        except (TypeError, ValueError):
            raise TypeError(f"{k} must be a real number, got {type(v).__name__}") from None
        if coefs and k in _COEF_OPTIONS and is_tensor(v):
            out[k] = v.detach()
    return out


def sgd(
    params,
    grads,
    momentum_buffers=None,
    *,
    lr: float = 1e-3,
    momentum: float = 0.0,
    dampening: float = 0.0,
    weight_decay: float = 0.0,
    nesterov: bool = False,
    maximize: bool = False,
    check_finite: bool = False,
    skip_nonfinite: bool = False,
) -> bool:
    """SGD step in place (torch.optim.sgd single-tensor rule).

    g ← ±g + wd·p; with momentum μ: buf ← μ·buf + (1−dampening)·g (a ``None`` entry of
    ``momentum_buffers`` is replaced by a new buffer holding g, like torch); g ← g + μ·buf if
    nesterov else buf; p ← p − lr·g. Grad entries may be None (that tensor is skipped).
    """
    if momentum != 0 and momentum_buffers is None:
        raise TypeError(
            "momentum_buffers is required when momentum != 0 (a list; None entries "
            "receive new buffers)"
        )
    options = _options(
        lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
        nesterov=nesterov, maximize=maximize,
    )  # fmt: skip
    if options["nesterov"] and (options["momentum"] <= 0 or options["dampening"] != 0):
        raise ValueError("Nesterov momentum requires a momentum and zero dampening")
    return functional_step(
        OPTIMIZERS["SGD"], options, params, grads, {"momentum_buffers": momentum_buffers}, None,
        check_finite, skip_nonfinite,
    )  # fmt: skip


def adam(
    params,
    grads,
    exp_avgs,
    exp_avg_sqs,
    max_exp_avg_sqs=None,
    *,
    step,
    lr: float = 1e-3,
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    amsgrad: bool = False,
    maximize: bool = False,
    decoupled_weight_decay: bool = False,
    check_finite: bool = False,
    skip_nonfinite: bool = False,
) -> bool:
    """Adam step in place (torch.optim.adam single-tensor rule); ``step`` is t (>= 1).

    L2: g ← ±g + wd·p (decoupled: p ← p·(1 − lr·wd)); m ← lerp(m, g, 1−β1);
    v ← β2·v + (1−β2)·g²; amsgrad: vmax ← max(vmax, v), v ← vmax;
    p ← p − (lr/(1−β1ᵗ))·m / (√v/√(1−β2ᵗ) + eps).
    """
    options = _options(
        coefs=True, lr=lr, beta1=beta1, beta2=beta2, eps=eps, weight_decay=weight_decay,
        amsgrad=amsgrad, maximize=maximize, decoupled_weight_decay=decoupled_weight_decay,
    )  # fmt: skip
    states = {"exp_avgs": exp_avgs, "exp_avg_sqs": exp_avg_sqs, "max_exp_avg_sqs": max_exp_avg_sqs}
    return functional_step(
        OPTIMIZERS["Adam"], options, params, grads, states, step, check_finite, skip_nonfinite
    )


def adamw(
    params,
    grads,
    exp_avgs,
    exp_avg_sqs,
    max_exp_avg_sqs=None,
    *,
    step,
    lr: float = 1e-3,
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 1e-2,
    amsgrad: bool = False,
    maximize: bool = False,
    check_finite: bool = False,
    skip_nonfinite: bool = False,
) -> bool:
    """AdamW step in place: :func:`adam` with decoupled weight decay p ← p·(1 − lr·wd)."""
    return adam(
        params,
        grads,
        exp_avgs,
        exp_avg_sqs,
        max_exp_avg_sqs,
        step=step,
        lr=lr,
        beta1=beta1,
        beta2=beta2,
        eps=eps,
        weight_decay=weight_decay,
        amsgrad=amsgrad,
        maximize=maximize,
        decoupled_weight_decay=True,
        check_finite=check_finite,
        skip_nonfinite=skip_nonfinite,
    )


def adamax(
    params,
    grads,
    exp_avgs,
    exp_infs,
    *,
    step,
    lr: float = 2e-3,
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    maximize: bool = False,
    check_finite: bool = False,
    skip_nonfinite: bool = False,
) -> bool:
    """Adamax step in place (torch.optim.adamax): m ← lerp(m, g, 1−β1);
    u ← max(β2·u, |g| + eps); p ← p − (lr/(1−β1ᵗ))·m/u."""
    options = _options(
        coefs=True, lr=lr, beta1=beta1, beta2=beta2, eps=eps, weight_decay=weight_decay,
        maximize=maximize,
    )  # fmt: skip
    states = {"exp_avgs": exp_avgs, "exp_infs": exp_infs}
    return functional_step(
        OPTIMIZERS["Adamax"], options, params, grads, states, step, check_finite, skip_nonfinite
    )


def rmsprop(
    params,
    grads,
    square_avgs,
    grad_avgs=None,
    momentum_buffers=None,
    *,
    lr: float = 1e-2,
    alpha: float = 0.99,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    momentum: float = 0.0,
    centered: bool = False,
    maximize: bool = False,
    check_finite: bool = False,
    skip_nonfinite: bool = False,
) -> bool:
    """RMSprop step in place (torch.optim.rmsprop): v ← α·v + (1−α)·g²;
    centered: ḡ ← lerp(ḡ, g, 1−α), avg = √(v − ḡ²) + eps, else avg = √v + eps (eps outside);
    momentum: buf ← μ·buf + g/avg, p ← p − lr·buf; else p ← p − lr·g/avg."""
    options = _options(
        lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum,
        centered=centered, maximize=maximize,
    )  # fmt: skip
    states = {
        "square_avgs": square_avgs,
        "momentum_buffers": momentum_buffers,
        "grad_avgs": grad_avgs,
    }
    return functional_step(
        OPTIMIZERS["RMSprop"], options, params, grads, states, None, check_finite, skip_nonfinite
    )


def rprop(
    params,
    grads,
    prevs,
    step_sizes,
    *,
    step_size_min: float = 1e-6,
    step_size_max: float = 50.0,
    etaminus: float = 0.5,
    etaplus: float = 1.2,
    maximize: bool = False,
    check_finite: bool = False,
    skip_nonfinite: bool = False,
) -> bool:
    """Rprop step in place (torch.optim.rprop): s = sign(g·prev) selects η+ / η− / 1;
    step_size ← clamp(step_size·factor, min, max); where the sign flipped g ← 0;
    p ← p − sign(g)·step_size; prev ← g. State starts as prev = 0, step_size = lr."""
    options = _options(
        etaminus=etaminus, etaplus=etaplus, step_size_min=step_size_min,
        step_size_max=step_size_max, maximize=maximize, lr=0.0,
    )  # fmt: skip
    states = {"prevs": prevs, "step_sizes": step_sizes}
    return functional_step(
        OPTIMIZERS["Rprop"], options, params, grads, states, None, check_finite, skip_nonfinite
    )


def adagrad(
    params,
    grads,
    state_sums,
    *,
    step,
    lr: float = 1e-2,
    lr_decay: float = 0.0,
    weight_decay: float = 0.0,
    eps: float = 1e-10,
    maximize: bool = False,
    check_finite: bool = False,
    skip_nonfinite: bool = False,
) -> bool:
    """Adagrad step in place (torch.optim.adagrad, dense): clr = lr/(1 + (t−1)·lr_decay);
    sum ← sum + g²; p ← p − clr·g/(√sum + eps)."""
    options = _options(
        coefs=True, lr=lr, lr_decay=lr_decay, weight_decay=weight_decay, eps=eps, maximize=maximize,
        initial_accumulator_value=0.0,
    )  # fmt: skip
    return functional_step(
        OPTIMIZERS["Adagrad"], options, params, grads, {"state_sums": state_sums}, step,
        check_finite, skip_nonfinite,
    )  # fmt: skip


def adadelta(
    params,
    grads,
    square_avgs,
    acc_deltas,
    *,
    lr: float = 1.0,
    rho: float = 0.9,
    eps: float = 1e-6,
    weight_decay: float = 0.0,
    maximize: bool = False,
    check_finite: bool = False,
    skip_nonfinite: bool = False,
) -> bool:
    """Adadelta step in place (torch.optim.adadelta): v ← ρv + (1−ρ)g²;
    δ = √(u + eps)/√(v + eps)·g; u ← ρu + (1−ρ)δ²; p ← p − lr·δ."""
    options = _options(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay, maximize=maximize)
    states = {"square_avgs": square_avgs, "acc_deltas": acc_deltas}
    return functional_step(
        OPTIMIZERS["Adadelta"], options, params, grads, states, None, check_finite, skip_nonfinite
    )
