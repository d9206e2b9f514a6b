#!/usr/bin/env python
"""Check fastact's CUDA kernels against its CPU kernels and time them on a real GPU.

    python scripts/gpu_check.py                  # GPU machine: every kernel, large inputs
    python scripts/gpu_check.py --only sigmoid,softmax,adam --size 16777216 --dtypes float32
    python scripts/gpu_check.py --simulate       # numba's CUDA simulator: tiny, no timing
    python scripts/gpu_check.py --compile-only   # PTX for every kernel, no GPU needed
                                                 # (needs NVVM + NVRTC: pip install
                                                 #  nvidia-nvvm nvidia-cuda-nvrtc)

Every case runs the fastact.cuda call on torch CUDA tensors (or numba device arrays when torch
has no CUDA) and the CPU function on host copies of the same data, and compares them. On a GPU
each case is also timed with CUDA events (median of ``--reps`` back-to-back calls into
preallocated outputs where the API has ``out=``) next to torch's CUDA equivalent and to the
device's measured copy bandwidth (a device-to-device copy of the bytes the case reads and
writes); the table shows the effective bandwidth as a percentage of that copy.
Targets: element-wise kernels >= 85 % of copy bandwidth on large arrays; fused optimizer steps
at least as fast as torch's fused (or foreach) optimizer.

Exit status: 0 all results match; 1 a result differs from the CPU (or a case fails to run);
2 the environment cannot run the check; 3 (only with ``--strict``) a target is missed.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

EXIT_OK, EXIT_MISMATCH, EXIT_ENV, EXIT_TARGET = 0, 1, 2, 3
EW_TARGET = 0.85  # fraction of copy bandwidth for element-wise kernels
TOL = {np.dtype(np.float32): (2e-5, 2e-6), np.dtype(np.float64): (1e-11, 1e-13)}


# ============================================================================= cases
@dataclass
class Case:
    """One kernel call: ``gpu()`` returns device results, ``cpu()`` the host reference."""

    name: str
    group: str  # activation | axis | loss | optim
    dtype: np.dtype
    n: int  # elements of the main array
    gpu: Callable[[], Any]
    cpu: Callable[[], Any]
    nbytes: int  # bytes a perfect kernel reads + writes
    torch: Callable[[], Any] | None = None
    tol: tuple[float, float] | None = None
    fetch: Callable[[Any], list[np.ndarray]] | None = None
    results: dict = field(default_factory=dict)


class Env:
    """Device arrays and host copies for the cases (torch CUDA tensors when available)."""

    def __init__(self, simulate: bool, seed: int) -> None:
        from numba import cuda

        self.cuda = cuda
        self.simulate = simulate
        self.rng = np.random.default_rng(seed)
        self._pool: dict = {}
        self.torch = None
        if not simulate:
            try:
                import torch

                if torch.cuda.is_available():
                    self.torch = torch
            except ImportError:
                pass

    def normal(self, n: int, dtype, scale: float = 1.0) -> np.ndarray:
        """``n`` standard normal samples times ``scale`` as ``dtype``: a copy of a slice at a
        random offset of one cached draw per (n, dtype), so that a check over ~70 arrays of
        64M elements spends seconds, not minutes, drawing random numbers."""
        dt = np.dtype(dtype)
        base = self._pool.get((n, dt))
        if base is None:
            base = self._pool[(n, dt)] = self.rng.standard_normal(n + 4096).astype(dt)
        off = int(self.rng.integers(0, 4097))
        return base[off : off + n] * dt.type(scale)

    def dev(self, a: np.ndarray):
        if self.torch is not None:
            return self.torch.from_numpy(np.ascontiguousarray(a)).cuda()
        return self.cuda.to_device(np.ascontiguousarray(a))

    def host(self, d: Any) -> np.ndarray:
        if d is None:
            return None
        if self.torch is not None and isinstance(d, self.torch.Tensor):
            return d.detach().cpu().numpy()
        if hasattr(d, "copy_to_host"):
            return d.copy_to_host()
        return np.asarray(d)

    def tdev(self, a: np.ndarray):
        """A torch CUDA tensor of ``a`` (for torch's timing), or None."""
        return None if self.torch is None else self.torch.from_numpy(np.ascontiguousarray(a)).cuda()


def _flatten(x: Any) -> list:
    if isinstance(x, (tuple, list)):
        out = []
        for v in x:
            out.extend(_flatten(v))
        return out
    return [x]


def activation_cases(env: Env, n: int, dtypes, only) -> list[Case]:
    import fastact
    import fastact.cuda as fc
    from fastact.activations import ACTIVATIONS, REQUIRED

    cases = []
    for name, op in ACTIVATIONS.items():
        vals = tuple(0.5 if d is REQUIRED else d for _, d in op.params)
        if name == "threshold":
            vals = (0.5, -1.0)
        gelu = name.startswith("gelu")
        approx = "tanh" if name == "gelu_tanh" else "none"
        for dt in dtypes:
            xh = env.normal(n, dt, 4.0)
            gh = env.normal(n, dt)
            x, g = env.dev(xh), env.dev(gh)
            if gelu:
                fwd_g = lambda x=x, a=approx: fc.gelu(x, a)  # noqa: E731
                fwd_c = lambda xh=xh, a=approx: fastact.gelu(xh, a)  # noqa: E731
                bwd_g = lambda g=g, x=x, a=approx: fc.gelu_backward(g, x, a)  # noqa: E731
                bwd_c = lambda gh=gh, xh=xh, a=approx: fastact.gelu_backward(gh, xh, a)  # noqa: E731
            else:
                fwd_g = lambda x=x, n=name, v=vals: getattr(fc, n)(x, *v)  # noqa: E731
                fwd_c = lambda xh=xh, n=name, v=vals: getattr(fastact, n)(xh, *v)  # noqa: E731
                bwd_g = lambda g=g, x=x, n=name, v=vals: getattr(fc, n + "_backward")(g, x, *v)  # noqa: E731
                bwd_c = lambda gh=gh, xh=xh, n=name, v=vals: getattr(fastact, n + "_backward")(  # noqa: E731
                    gh, xh, *v
                )
            tfn = _torch_activation(env, name, op, vals, xh)
            it = np.dtype(dt).itemsize
            cases.append(
                Case(f"{name}", "activation", np.dtype(dt), n, fwd_g, fwd_c, 2 * n * it, tfn)
            )
            cases.append(
                Case(f"{name}_backward", "activation", np.dtype(dt), n, bwd_g, bwd_c, 3 * n * it)
            )
            if op.scalars["grad_output"] is not None:
                yh = fwd_c()
                y = env.dev(yh)
                kw = dict(zip(op.param_names, vals, strict=False))
                cases.append(
                    Case(
                        f"{name}_backward(output=)",
                        "activation",
                        np.dtype(dt),
                        n,
                        lambda g=g, y=y, n_=name, kw=kw: getattr(fc, n_ + "_backward")(
                            g, input=None, output=y, **kw
                        ),
                        lambda gh=gh, yh=yh, n_=name, kw=kw: getattr(fastact, n_ + "_backward")(
                            gh, input=None, output=yh, **kw
                        ),
                        3 * n * it,
                    )
                )
    return [c for c in cases if _selected(c.name, only)]


def _torch_activation(env: Env, name: str, op, vals, xh):
    torch = env.torch
    if torch is None:
        return None
    import torch.nn.functional as tf

    xt = env.tdev(xh)
    if name == "gelu_tanh":
        return lambda: tf.gelu(xt, approximate="tanh")
    fn = getattr(tf, op.torch_name, None) or getattr(torch, op.torch_name, None)
    if fn is None:
        return None
    return lambda: fn(xt, *vals)


def axis_cases(env: Env, n: int, dtypes, only) -> list[Case]:
    import fastact
    import fastact.cuda as fc

    cases: list[Case] = []
    cols = 1024 if n >= 1 << 16 else 8
    rows = max(1, n // cols)

    def for_dtype(dt) -> None:
        it = np.dtype(dt).itemsize
        xh = env.rng.standard_normal((rows, cols)).astype(dt) * 3
        gh = env.rng.standard_normal((rows, cols)).astype(dt)
        x, g = env.dev(xh), env.dev(gh)
        m = rows * cols
        t = env.torch
        xt = env.tdev(xh)
        for fname in ("softmax", "log_softmax", "softmin"):
            tf = None
            if t is not None:
                import torch.nn.functional as F

                tfn = getattr(F, fname)
                tf = lambda f=tfn: f(xt, -1)  # noqa: E731
            cases.append(
                Case(
                    f"{fname}(dim=-1)",
                    "axis",
                    np.dtype(dt),
                    m,
                    lambda f=fname: getattr(fc, f)(x, -1),
                    lambda f=fname: getattr(fastact, f)(xh, -1),
                    2 * m * it,
                    tf,
                )
            )
            cases.append(
                Case(
                    f"{fname}(dim=0)",
                    "axis",
                    np.dtype(dt),
                    m,
                    lambda f=fname: getattr(fc, f)(x, 0),
                    lambda f=fname: getattr(fastact, f)(xh, 0),
                    2 * m * it,
                )
            )
            cases.append(
                Case(
                    f"{fname}_backward",
                    "axis",
                    np.dtype(dt),
                    m,
                    lambda f=fname: getattr(fc, f + "_backward")(g, x, -1),
                    lambda f=fname: getattr(fastact, f + "_backward")(gh, xh, -1),
                    4 * m * it,
                )
            )
        c4 = min(cols, 64)
        x4h = env.rng.standard_normal((max(1, m // (c4 * 16)), c4, 16)).astype(dt)
        g4h = env.rng.standard_normal(x4h.shape).astype(dt)
        wh = env.rng.random(c4).astype(dt)
        x4, g4, w = env.dev(x4h), env.dev(g4h), env.dev(wh)
        m4 = x4h.size
        tf = None
        if t is not None:
            import torch.nn.functional as F

            x4t, wt = env.tdev(x4h), env.tdev(wh)
            tf = lambda: F.prelu(x4t, wt)
        cases.append(
            Case(
                "prelu",
                "axis",
                np.dtype(dt),
                m4,
                lambda: fc.prelu(x4, w),
                lambda: fastact.prelu(x4h, wh),
                2 * m4 * it,
                tf,
            )
        )
        cases.append(
            Case(
                "prelu_backward",
                "axis",
                np.dtype(dt),
                m4,
                lambda: fc.prelu_backward(g4, x4, w),
                lambda: fastact.prelu_backward(g4h, x4h, wh),
                3 * m4 * it,
                tol=(1e-4, 1e-5) if dt == np.float32 else None,
            )
        )
        wch = np.full(cols, 0.25, dt)
        wc = env.dev(wch)
        cases.append(
            Case(
                "prelu_backward(N,C)",
                "axis",
                np.dtype(dt),
                m,
                lambda: fc.prelu_backward(g, x, wc),
                lambda: fastact.prelu_backward(gh, xh, wch),
                3 * m * it,
                tol=(1e-4, 1e-5) if dt == np.float32 else None,
            )
        )
        cases.append(
            Case(
                "glu(dim=-1)",
                "axis",
                np.dtype(dt),
                m,
                lambda: fc.glu(x, -1),
                lambda: fastact.glu(xh, -1),
                3 * m * it // 2,
            )
        )
        cases.append(
            Case(
                "maxout(4, dim=1)",
                "axis",
                np.dtype(dt),
                m,
                lambda: fc.maxout(x, 4, 1),
                lambda: fastact.maxout(xh, 4, 1),
                5 * m * it // 4,
            )
        )
        cases.append(
            Case(
                "rrelu(training)",
                "axis",
                np.dtype(dt),
                m,
                lambda: fc.rrelu(x, training=True, generator=7),
                lambda: fastact.rrelu(xh, training=True, generator=7),
                2 * m * it,
            )
        )

    for dt in dtypes:
        for_dtype(dt)
    return [c for c in cases if _selected(c.name, only)]


def loss_cases(env: Env, n: int, dtypes, only) -> list[Case]:
    from fastact import losses as L
    from fastact.cuda import losses as CL

    cases = []
    for dt in dtypes:
        it = np.dtype(dt).itemsize
        xh = env.rng.standard_normal(n).astype(dt)
        th = env.rng.standard_normal(n).astype(dt)
        ph = env.rng.uniform(0.01, 0.99, n).astype(dt)
        qh = env.rng.uniform(0, 1, n).astype(dt)
        yh = np.where(env.rng.random(n) < 0.5, -1, 1).astype(dt)
        vh = env.rng.uniform(0.1, 2, n).astype(dt)
        d = {k: env.dev(v) for k, v in dict(x=xh, t=th, p=ph, q=qh, y=yh, v=vh).items()}
        h = dict(x=xh, t=th, p=ph, q=qh, y=yh, v=vh)
        specs = [
            ("mse_loss", ("x", "t"), {}, "mse_loss"),
            ("l1_loss", ("x", "t"), {}, "l1_loss"),
            ("smooth_l1_loss", ("x", "t"), {"beta": 0.5}, "smooth_l1_loss"),
            ("huber_loss", ("x", "t"), {"delta": 0.7}, "huber_loss"),
            ("binary_cross_entropy", ("p", "q"), {}, "binary_cross_entropy"),
            (
                "binary_cross_entropy_with_logits",
                ("x", "q"),
                {},
                "binary_cross_entropy_with_logits",
            ),
            ("soft_margin_loss", ("x", "y"), {}, "soft_margin_loss"),
            ("kl_div", ("x", "q"), {"reduction": "batchmean"}, "kl_div"),
            ("poisson_nll_loss", ("x", "v"), {}, "poisson_nll_loss"),
            ("gaussian_nll_loss", ("x", "t", "v"), {}, "gaussian_nll_loss"),
            ("hinge_embedding_loss", ("x", "y"), {}, "hinge_embedding_loss"),
            ("margin_ranking_loss", ("x", "t", "y"), {}, "margin_ranking_loss"),
        ]
        for name, args, kw, tname in specs:
            tf = None
            if env.torch is not None:
                import torch.nn.functional as F

                targs = [env.tdev(h[a]) for a in args]
                tfn = getattr(F, tname)
                tf = lambda f=tfn, a=targs, k=kw: f(*a, **k)  # noqa: E731
            red = kw.get("reduction", "mean")
            dev_fn, cpu_fn = getattr(CL, name), getattr(L, name)
            for mode in ("", "(none)"):
                kk = dict(kw, reduction="none") if mode else kw
                if mode and red == "batchmean":
                    continue
                cases.append(
                    Case(
                        f"{name}{mode}",
                        "loss",
                        np.dtype(dt),
                        n,
                        lambda f=dev_fn, a=[d[x] for x in args], k=kk: f(*a, **k, return_grad=True),
                        lambda f=cpu_fn, a=[h[x] for x in args], k=kk: f(*a, **k, return_grad=True),
                        (len(args) + 1 + (1 if mode else 0)) * n * it,
                        None if mode else tf,
                        tol=(5e-5, 1e-6) if dt == np.float32 else None,
                    )
                )
    cases += row_loss_cases(env, n, dtypes)
    return [c for c in cases if _selected(c.name, only)]


def row_loss_cases(env: Env, n: int, dtypes) -> list[Case]:
    """cross_entropy (rows, spatial, probabilities), nll_loss, cosine_embedding_loss,
    triplet_margin_loss, multilabel_soft_margin_loss on ``n``-element inputs."""
    from fastact import losses as L
    from fastact.cuda import losses as CL

    big = n >= 1 << 16
    cases: list[Case] = []
    for dt in dtypes:
        dt = np.dtype(dt)
        it = dt.itemsize
        tol = (1e-4, 1e-6) if dt == np.float32 else None
        c_rows = 1000 if big else 7
        rows = max(1, n // c_rows)
        x = env.rng.standard_normal((rows, c_rows)).astype(dt)
        y = env.rng.integers(0, c_rows, rows)
        y[::7] = -100
        w = env.rng.random(c_rows).astype(dt)
        q = env.rng.random((rows, c_rows)).astype(dt)
        q /= q.sum(axis=1, keepdims=True)
        c_sp = 21 if big else 3
        d_sp = max(1, n // (4 * c_sp))
        xs = env.rng.standard_normal((4, c_sp, d_sp)).astype(dt)
        ys = env.rng.integers(0, c_sp, (4, d_sp))
        d_feat = 256 if big else 5
        r_feat = max(1, n // d_feat)
        a, b, c = (env.rng.standard_normal((r_feat, d_feat)).astype(dt) for _ in range(3))
        t_cos = np.where(env.rng.random(r_feat) < 0.5, -1, 1).astype(dt)
        t_ml = (env.rng.random((r_feat, d_feat)) < 0.3).astype(dt)
        specs = [
            ("cross_entropy", (x, y), {"weight": w, "label_smoothing": 0.1}, x.size),
            ("cross_entropy(probs)", (x, q), {}, 2 * x.size),
            ("cross_entropy(N,C,d)", (xs, ys), {}, xs.size),
            ("nll_loss", (x, y), {"weight": w}, x.size),
            ("nll_loss(N,C,d)", (xs, ys), {"reduction": "none"}, xs.size),
            ("cosine_embedding_loss", (a, b, t_cos), {"margin": 0.1}, 2 * a.size),
            ("triplet_margin_loss", (a, b, c), {}, 3 * a.size),
            ("triplet_margin_loss(p=3)", (a, b, c), {"p": 3.0, "swap": True}, 3 * a.size),
            ("multilabel_soft_margin_loss", (a, t_ml), {}, 2 * a.size),
        ]
        for name, args, kw, nread in specs:
            fname = name.split("(")[0]
            dev_fn, cpu_fn = getattr(CL, fname), getattr(L, fname)
            dargs = [env.dev(v) for v in args]
            dkw = {k: (env.dev(v) if isinstance(v, np.ndarray) else v) for k, v in kw.items()}
            tf = None
            if env.torch is not None:
                import torch.nn.functional as F

                targs = [env.tdev(v) for v in args]
                tkw = {k: (env.tdev(v) if isinstance(v, np.ndarray) else v) for k, v in kw.items()}
                tfn = getattr(F, fname)
                tf = lambda f=tfn, a=targs, k=tkw: f(*a, **k)  # noqa: E731
            cases.append(
                Case(
                    name,
                    "loss",
                    dt,
                    int(args[0].size),
                    lambda f=dev_fn, a=dargs, k=dkw: f(*a, **k, return_grad=True),
                    lambda f=cpu_fn, a=args, k=kw: f(*a, **k, return_grad=True),
                    (nread + int(args[0].size) * (2 if fname.startswith("triplet") else 1)) * it,
                    tf,
                    tol=tol,
                )
            )
    return cases


_OPTIMS = {
    # name: (state names, kwargs, torch class name)
    "adam": (("exp_avgs", "exp_avg_sqs"), {"lr": 1e-3, "weight_decay": 0.01}, "Adam"),
    "adamw": (("exp_avgs", "exp_avg_sqs"), {"lr": 1e-3, "weight_decay": 0.01}, "AdamW"),
    "sgd": (("momentum_buffers",), {"lr": 0.1, "momentum": 0.9}, "SGD"),
    "adamax": (("exp_avgs", "exp_infs"), {"lr": 2e-3}, "Adamax"),
    "rmsprop": (("square_avgs",), {"lr": 1e-2, "alpha": 0.99}, "RMSprop"),
    "rprop": (("prevs", "step_sizes"), {}, "Rprop"),
    "adagrad": (("state_sums",), {"lr": 1e-2}, "Adagrad"),
    "adadelta": (("square_avgs", "acc_deltas"), {"lr": 1.0}, "Adadelta"),
}
_STEP = {"adam", "adamw", "adamax", "adagrad"}
_STATE_BYTES = {
    "adam": 7,
    "adamw": 7,
    "sgd": 5,
    "adamax": 6,
    "rmsprop": 5,
    "rprop": 6,
    "adagrad": 5,
    "adadelta": 6,
}


def optim_cases(env: Env, n: int, dtypes, only) -> list[Case]:
    from fastact.optim import functional as OF

    CO = OF  # one functional API: device arrays run on the GPU
    cases = []
    if n >= 1 << 16:  # a model-like group: a few big matrices and many small vectors
        sizes = [n // 4, n // 4, n // 8, n // 8] + [n // 512] * 64 + [1024] * 100
    else:
        sizes = [max(1, n // 3), max(1, n // 5), 7, 1]
    for name, (snames, kw, tcls) in _OPTIMS.items():
        if not _selected(name, only):
            continue
        for dt in dtypes:
            it = np.dtype(dt).itemsize
            total = sum(sizes)
            ph = [env.rng.standard_normal(s).astype(dt) for s in sizes]
            gh = [env.rng.standard_normal(s).astype(dt) for s in sizes]

            def init_state(sname, s, dt=dt):
                if sname == "step_sizes":
                    return np.full(s, 0.01, dt)
                return np.zeros(s, dt)

            sh = {sn: [init_state(sn, s) for s in sizes] for sn in snames}
            pd = [env.dev(a) for a in ph]
            gd = [env.dev(a) for a in gh]
            sd = {sn: [env.dev(a) for a in v] for sn, v in sh.items()}
            ph2 = [a.copy() for a in ph]
            sh2 = {sn: [a.copy() for a in v] for sn, v in sh.items()}
            step_kw = {"step": 1} if name in _STEP else {}

            def gpu(name=name, pd=pd, gd=gd, sd=sd, step_kw=step_kw, kw=kw):
                getattr(CO, name)(pd, gd, *sd.values(), **step_kw, **kw)
                return pd

            def cpu(name=name, ph2=ph2, gh=gh, sh2=sh2, step_kw=step_kw, kw=kw):
                getattr(OF, name)(ph2, gh, *sh2.values(), **step_kw, **kw)
                return ph2

            tf = _torch_optim(env, tcls, ph, gh, kw)
            c = Case(
                f"{name} step ({len(sizes)} tensors)",
                "optim",
                np.dtype(dt),
                total,
                gpu,
                cpu,
                _STATE_BYTES[name] * total * it,
                tf,
                tol=(1e-5, 1e-6) if dt == np.float32 else None,
            )
            c.results["once"] = True  # compared after exactly one step
            cases.append(c)
    return cases + optim_class_cases(env, sizes, dtypes, only)


def optim_class_cases(env: Env, sizes: list[int], dtypes, only) -> list[Case]:
    """The optimizer classes (fastact.optim.Adam ...) on device parameters: one step of
    the class on device arrays against the same class on host copies (state created by
    the step, so a second call measures a steady-state step)."""
    import fastact.optim as O

    cases = []
    for name, (_snames, kw, tcls) in _OPTIMS.items():
        if not (_selected(tcls, only) or _selected(f"{tcls}_class", only)):
            continue
        for dt in dtypes:
            it = np.dtype(dt).itemsize
            ph = [env.rng.standard_normal(s).astype(dt) for s in sizes]
            gh = [env.rng.standard_normal(s).astype(dt) for s in sizes]
            pd = [env.dev(a) for a in ph]
            gd = [env.dev(a) for a in gh]
            dopt = getattr(O, tcls)(pd, **kw)
            hopt = getattr(O, tcls)(ph, **kw)

            def gpu(dopt=dopt, pd=pd, gd=gd):
                dopt.step(gd)
                return pd

            def cpu(hopt=hopt, ph=ph, gh=gh):
                hopt.step(gh)
                return ph

            c = Case(
                f"{tcls} class step ({len(sizes)} tensors)",
                "optim",
                np.dtype(dt),
                sum(sizes),
                gpu,
                cpu,
                _STATE_BYTES[name] * sum(sizes) * it,
                _torch_optim(env, tcls, ph, gh, kw),
                tol=(1e-5, 1e-6) if dt == np.float32 else None,
            )
            c.results["once"] = True
            cases.append(c)
    return cases


def _torch_optim(env: Env, tcls: str, ph, gh, kw):
    torch = env.torch
    if torch is None:
        return None
    params = [torch.nn.Parameter(env.tdev(a)) for a in ph]
    for p, g in zip(params, gh, strict=False):
        p.grad = env.tdev(g)
    cls = getattr(torch.optim, tcls)
    opt = None
    for extra in ({"fused": True}, {"foreach": True}, {}):
        try:
            opt = cls(params, **kw, **extra)
            opt.step()  # fails here if fused is unsupported for this class/dtype
            break
        except (RuntimeError, TypeError, ValueError):
            opt = None
    if opt is None:
        return None
    opt.fastact_mode = (
        next(k for k in ("fused", "foreach") if opt.defaults.get(k))
        if any(opt.defaults.get(k) for k in ("fused", "foreach"))
        else "single"
    )
    return opt.step


def _selected(name: str, only) -> bool:
    if not only:
        return True
    base = name.split("(")[0].split(" ")[0]
    return any(
        o == base
        or o == name
        or (o.endswith("*") and base.startswith(o[:-1]))
        or base == o + "_backward"
        for o in only
    )


# ============================================================================= running
def compare(got: Any, want: Any, dtype: np.dtype, tol=None, host=np.asarray) -> tuple[bool, float]:
    """(ok, worst relative error) of device results ``got`` against CPU results ``want``:
    same NaN pattern, same infinities, |got - want| <= atol + rtol |want| elsewhere."""
    rtol, atol = tol or TOL[np.dtype(dtype)]
    worst = 0.0
    gs, ws = _flatten(got), _flatten(want)
    if len(gs) != len(ws):
        return False, math.inf
    for g, w in zip(gs, ws, strict=False):
        g = np.asarray(host(g), dtype=np.float64)
        w = np.asarray(w, dtype=np.float64)
        if g.shape != w.shape:
            return False, math.inf
        gn, wn = np.isnan(g), np.isnan(w)
        if not np.array_equal(gn, wn):
            return False, math.inf
        fin = np.isfinite(w) & ~gn
        if not np.array_equal(g[np.isinf(w)], w[np.isinf(w)]):
            return False, math.inf
        if fin.any():
            err = np.abs(g[fin] - w[fin])
            worst = max(worst, float(np.max(err / (np.abs(w[fin]) + atol / rtol))))
            if np.any(err > atol + rtol * np.abs(w[fin])):
                return False, worst
    return True, worst


def time_ms(cuda, fn: Callable[[], Any], reps: int) -> float:
    """Median over 3 rounds of the mean time of ``reps`` back-to-back calls (CUDA events)."""
    fn()
    cuda.synchronize()
    rounds = []
    for _ in range(3):
        start, end = cuda.event(), cuda.event()
        start.record()
        for _ in range(reps):
            fn()
        end.record()
        end.synchronize()
        rounds.append(cuda.event_elapsed_time(start, end) / reps)
    return float(np.median(rounds))


class CopyBandwidth:
    """Device-to-device copy bandwidth (bytes read + written per second), per byte count."""

    def __init__(self, cuda, reps: int) -> None:
        self.cuda, self.reps, self.cache = cuda, reps, {}

    def __call__(self, nbytes: int) -> float:
        half = max(1, nbytes // 2)
        bw = self.cache.get(half)
        if bw is None:
            a = self.cuda.device_array(half, dtype=np.uint8)
            b = self.cuda.device_array(half, dtype=np.uint8)
            ms = time_ms(self.cuda, lambda: b.copy_to_device(a), self.reps)
            bw = self.cache[half] = 2 * half / (ms * 1e-3)
        return bw


class _GpuLock:
    """An exclusive file lock (path in ``GPU_CHECK_LOCK``) held while a case is timed, so that
    two checks (e.g. one per dtype) can share a GPU: they compile and compute their CPU
    references at the same time but never time kernels at the same time. A no-op without
    the variable."""

    def __init__(self) -> None:
        path = os.environ.get("GPU_CHECK_LOCK")
        self.fd = os.open(path, os.O_CREAT | os.O_RDWR) if path else None

    def __enter__(self) -> None:
        if self.fd is not None:
            import fcntl

            fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            import fcntl

            fcntl.flock(self.fd, fcntl.LOCK_UN)


def run(cases: list[Case], env: Env, reps: int, timing: bool) -> list[dict]:
    rows = []
    copy_bw = CopyBandwidth(env.cuda, reps) if timing else None
    lock = _GpuLock()
    for c in cases:
        row = {"name": c.name, "group": c.group, "dtype": c.dtype.name, "n": c.n}
        try:
            got = c.gpu()
            env.cuda.synchronize()
            want = c.cpu()
            ok, err = compare(got, want, c.dtype, c.tol, env.host)
            row.update(ok=ok, err=err)
            if timing:
                with lock:
                    ms = time_ms(env.cuda, c.gpu, reps)
                    bw = c.nbytes / (ms * 1e-3)
                    row.update(ms=ms, gbs=bw / 1e9, pct=bw / copy_bw(c.nbytes))
                    if c.torch is not None:
                        row["torch_ms"] = time_ms(env.cuda, c.torch, reps)
        except Exception as exc:  # report and go on: the summary exits non-zero
            row.update(ok=False, err=math.inf, error=f"{type(exc).__name__}: {exc}")
            if os.environ.get("GPU_CHECK_TRACEBACK"):
                traceback.print_exc()
        rows.append(row)
        _print_row(row, timing)
    return rows


_HEADER = (
    f"{'case':<44}{'dtype':>8}{'elements':>12}{'ok':>5}{'max rel err':>13}"
    f"{'ms':>10}{'GB/s':>8}{'%copy':>7}{'torch ms':>10}{'speedup':>9}"
)


def _print_row(r: dict, timing: bool) -> None:
    ok = "yes" if r.get("ok") else "NO"
    line = f"{r['name'][:43]:<44}{r['dtype']:>8}{r['n']:>12}{ok:>5}{r.get('err', 0):>13.2e}"
    if timing and "ms" in r:
        line += f"{r['ms']:>10.4f}{r['gbs']:>8.0f}{100 * r['pct']:>6.0f}%"
        if "torch_ms" in r:
            line += f"{r['torch_ms']:>10.4f}{r['torch_ms'] / r['ms']:>8.2f}x"
    print(line, flush=True)
    if "error" in r:
        print(f"    error: {r['error'][:300]}", flush=True)


def summarize(rows: list[dict], timing: bool) -> tuple[int, list[str]]:
    """(exit status, messages): mismatches first, then missed targets."""
    msgs = []
    bad = [r for r in rows if not r.get("ok")]
    for r in bad:
        msgs.append(
            f"MISMATCH {r['name']} [{r['dtype']}]: "
            + r.get("error", f"max relative error {r['err']:.3g}")
        )
    missed = []
    if timing:
        for r in rows:
            if r["group"] == "activation" and r["n"] >= 1 << 22 and r.get("pct", 1) < EW_TARGET:
                missed.append(
                    f"BELOW TARGET {r['name']} [{r['dtype']}]: {100 * r['pct']:.0f}% "
                    f"of copy bandwidth (target {100 * EW_TARGET:.0f}%)"
                )
            if r["group"] == "optim" and r.get("torch_ms") and r["ms"] > r["torch_ms"]:
                missed.append(
                    f"BELOW TARGET {r['name']} [{r['dtype']}]: {r['ms']:.3f} ms vs "
                    f"torch {r['torch_ms']:.3f} ms"
                )
    return (EXIT_MISMATCH if bad else (EXIT_TARGET if missed else EXIT_OK)), msgs + missed


# ============================================================================= compile only
def _fused_examples() -> list[tuple[str, Any, str]]:
    """``@fastact.elementwise`` functions whose device kernels the checks compile: (label,
    function, argument pattern)."""
    import fastact
    from fastact.scalar import exp, gelu, leaky_relu

    @fastact.elementwise
    def prep(x):
        return gelu(leaky_relu(2 * x + 1, 0.1))

    @fastact.elementwise
    def mul_exp(x, y, a):
        return x * y + exp(x) * a

    return [("prep", prep, "a"), ("mul_exp", mul_exp, "aas")]


def compile_only(cc: tuple[int, int], only) -> int:
    """Compile every fastact CUDA kernel to PTX for ``cc`` without a GPU."""
    import numba.cuda.dispatcher as dispatcher
    from numba import cuda, types

    class _Device:  # device functions ask the current device for its compute capability
        compute_capability = cc
        id = 0

    dispatcher.get_current_device = lambda: _Device()
    import fastact.cuda as fc

    fc._AVAILABLE = True  # nothing is launched: only the compiler is needed
    from fastact.activations import ACTIVATIONS
    from fastact.cuda import _axis, _elementwise
    from fastact.cuda import _losses as losses
    from fastact.cuda import _optim as optim
    from fastact.cuda._reduce import _column_sums
    from fastact.kernels.losses import ELEMENTWISE_SCALARS

    failures = 0
    count = 0
    t0 = time.perf_counter()
    for ty in (types.float32, types.float64):
        a1 = ty[::1]
        jobs: list[tuple[str, Any, tuple]] = []
        for name, op in ACTIVATIONS.items():
            for kind in ("forward", "grad", "grad_output"):
                if op.scalars[kind] is not None:
                    nin = 1 if kind == "forward" else 2
                    jobs.append(
                        (
                            f"{name}.{kind}",
                            _elementwise.kernel(op, kind),
                            (a1,) * (nin + 1) + (ty,) * len(op.params),
                        )
                    )
        for label, fn, pattern in _fused_examples():  # @fastact.elementwise functions
            spec = fn._forward.spec(pattern, np.dtype(str(ty)))
            jobs.append(
                (
                    f"fused.{label}",
                    _elementwise.kernel(spec, "forward"),
                    (a1,) * (spec.arity + 1) + (ty,) * len(spec.params),
                )
            )
        a2, a3, a4 = ty[:, ::1], ty[:, :, ::1], ty[:, :, :, ::1]
        i64, f64 = types.int64, types.float64
        p2 = types.float64[:, ::1]
        jobs += [
            ("prelu_forward", _axis.get("prelu_forward"), (a1, a1, a1, i64)),
            (
                "prelu_backward_channels",
                _axis.get("prelu_backward_channels"),
                (a1, a1, a1, a1, p2, i64, i64),
            ),
            ("prelu_backward_rows", _axis.get("prelu_backward_rows"), (a1, a1, a1, a1, p2, i64)),
            ("glu_forward", _axis.get("glu_forward"), (a3, a2)),
            ("glu_backward", _axis.get("glu_backward"), (a2, a3, a3)),
            ("maxout_forward", _axis.get("maxout_forward"), (a4, a3)),
            ("maxout_backward", _axis.get("maxout_backward"), (a3, a4, a4)),
            (
                "rrelu_train",
                _axis.get("rrelu_train", ty.name),
                (a1, a1, a1, ty, ty, types.uint64, types.boolean),
            ),
            (
                "rrelu_train_grad",
                _axis.get("rrelu_train_grad", ty.name),
                (a1, a1, a1, ty, ty, types.uint64),
            ),
            ("softmax_rows", _axis.get("softmax_rows"), (a2, a2, types.boolean, ty)),
            ("softmax_columns", _axis.get("softmax_columns"), (a3, a3, types.boolean, ty)),
            (
                "softmax_rows_backward",
                _axis.get("softmax_rows_backward"),
                (a2, a2, a2, types.boolean, ty),
            ),
            (
                "softmax_columns_backward",
                _axis.get("softmax_columns_backward"),
                (a3, a3, a3, types.boolean, ty),
            ),
            (
                "softmax_columns_chunk_stats",
                _axis.get("softmax_columns_chunk_stats"),
                (a3, types.float64[::1], p2, p2, ty, i64, types.boolean, types.boolean),
            ),
            ("column_max", _axis.get("column_max"), (p2, types.float64[::1])),
            (
                "softmax_columns_write",
                _axis.get("softmax_columns_write"),
                (
                    a3,
                    a3,
                    types.float64[::1],
                    types.float64[::1],
                    types.float64[::1],
                    types.boolean,
                    ty,
                ),
            ),
            (
                "softmax_columns_backward_chunk_sum",
                _axis.get("softmax_columns_backward_chunk_sum"),
                (a3, a3, p2, types.boolean, i64),
            ),
            (
                "softmax_columns_backward_write",
                _axis.get("softmax_columns_backward_write"),
                (a3, a3, a3, types.float64[::1], types.boolean, ty),
            ),
            ("mul", _axis.get("mul"), (a1, a1, a1)),
            (
                "cast",
                _axis.get("cast"),
                (a1, types.float64[::1] if ty == types.float32 else types.float32[::1]),
            ),
            ("loss_finalize", losses._get("finalize"), (p2, f64, a1, types.float64[::1])),
            ("loss_sum", losses._get("sum"), (a1, p2)),
            ("column_sums", _column_sums, (p2, a1)),
        ]
        for lname in ELEMENTWISE_SCALARS:
            prm = types.UniTuple(ty, 2 if lname in ("smooth_l1", "gaussian_nll") else 1)
            for w in (types.none, a1):
                jobs.append(
                    (
                        f"loss.{lname}",
                        losses._get(lname),
                        (a1, a1, a1, w, w, prm, ty, a1, a1, a1, p2),
                    )
                )
                jobs.append(
                    (
                        f"loss.{lname}",
                        losses._get(lname),
                        (a1, a1, a1, w, w, prm, ty, types.none, types.none, types.none, p2),
                    )
                )
        jobs += _row_loss_jobs(losses, ty)
        import inspect

        from fastact.kernels.optim import TEMPLATES

        tables = (a1, types.int64[:, ::1], types.int64[:, ::1], p2)
        bools = {"nesterov", "maximize", "has_buffer", "amsgrad", "centered"}
        for kind in optim.KINDS:
            names = list(inspect.signature(TEMPLATES[kind]).parameters)[4:]
            jobs.append(
                (
                    f"optim.{kind}",
                    optim._kernel(kind),
                    tables + tuple(types.boolean if p in bools else f64 for p in names),
                )
            )
        jobs.append(
            (
                "optim.nonfinite",
                optim._kernel("nonfinite"),
                (a1, types.int64[:, ::1], i64, types.int64[:, ::1], types.boolean[::1]),
            )
        )
        for label, disp, sig in jobs:
            if (
                only
                and not _selected(label.split(".")[-1] if "." in label else label, only)
                and not _selected(label.split(".")[0], only)
            ):
                continue
            count += 1
            try:
                cuda.compile_ptx(disp.py_func, sig, cc=cc)
            except Exception as exc:
                failures += 1
                print(f"FAIL {label} {ty}: {type(exc).__name__}: {str(exc)[:400]}", flush=True)
    print(
        f"compiled {count - failures}/{count} kernels to PTX for sm_{cc[0]}{cc[1]} in "
        f"{time.perf_counter() - t0:.0f} s",
        flush=True,
    )
    return EXIT_MISMATCH if failures else EXIT_OK


def _row_loss_jobs(losses, ty) -> list[tuple[str, Any, tuple]]:
    """PTX jobs of the row-wise loss kernels (cross_entropy, nll, cosine, triplet,
    multilabel soft margin) for float type ``ty``: full and minimal variants."""
    from numba import types

    none, f64, i64, b1 = types.none, types.float64, types.int64, types.boolean
    a1, a2, a3 = ty[::1], ty[:, ::1], ty[:, :, ::1]
    p2 = types.float64[:, ::1]
    y1, y2 = types.int64[::1], types.int64[:, ::1]
    k = losses._row_kernel
    jobs: list[tuple[str, Any, tuple]] = [
        ("loss.class_stats", k("class_stats"), (y1, a1, i64, i64, p2)),
        ("loss.class_stats", k("class_stats"), (types.int32[::1], none, i64, i64, p2)),
        ("loss.zero", k("zero"), (a1,)),
    ]
    for w in (none, a1):
        for y, q in ((y1, none), (none, a2)):
            for g, out in ((a2, a1), (none, none)):
                jobs.append(
                    ("loss.ce_rows", k("ce_rows"), (a2, y, q, w, f64, f64, i64, f64, g, out, p2))
                )
        for y, q in ((y2, none), (none, a3)):
            for g, out in ((a3, a2), (none, none)):
                jobs.append(
                    (
                        "loss.ce_columns",
                        k("ce_columns"),
                        (a3, y, q, w, f64, f64, i64, f64, g, out, p2),
                    )
                )
        for g, out in ((a3, a2), (none, none)):
            jobs.append(("loss.nll", k("nll"), (a3, y2, w, i64, f64, g, out, p2)))
    for g, out in ((a2, a1), (none, none)):
        jobs.append(
            ("loss.cosine_rows", k("cosine_rows"), (a2, a2, a1, f64, ty, f64, g, g, out, p2))
        )
        for kind in ("p2", "p1", "pgen"):
            jobs.append(
                (
                    f"loss.triplet_{kind}",
                    k(f"triplet_{kind}"),
                    (a2, a2, a2, f64, f64, f64, b1, ty, f64, g, g, g, out, p2),
                )
            )
        for w in (none, a2):
            jobs.append(
                (
                    "loss.msm_rows",
                    k("msm_rows"),
                    (a2, a2, w, types.UniTuple(ty, 1), ty, g, out, p2),
                )
            )
    return jobs


# ============================================================================= main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--simulate",
        action="store_true",
        help="run under numba's CUDA simulator (tiny sizes, no timing)",
    )
    ap.add_argument(
        "--compile-only", action="store_true", help="compile every kernel to PTX (no GPU needed)"
    )
    ap.add_argument("--cc", default="9.0", help="compute capability for --compile-only")
    ap.add_argument(
        "--size",
        type=int,
        default=None,
        help="elements per array (default 2**25 on a GPU, 24 simulated)",
    )
    ap.add_argument("--dtypes", default="float32,float64")
    ap.add_argument("--only", default="", help="comma-separated case names (prefix*)")
    ap.add_argument("--groups", default="activation,axis,loss,optim")
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--strict", action="store_true", help="exit 3 when a target is missed")
    args = ap.parse_args(argv)
    only = [s.strip() for s in args.only.split(",") if s.strip()]

    try:
        import numba_cuda  # noqa: F401
    except ImportError:
        print(
            "gpu_check: numba-cuda is not installed (pip install 'fastact[cuda]')", file=sys.stderr
        )
        return EXIT_ENV
    if args.compile_only:
        if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
            print(
                "gpu_check: --compile-only cannot run under NUMBA_ENABLE_CUDASIM=1", file=sys.stderr
            )
            return EXIT_ENV
        major, minor = (int(v) for v in args.cc.split("."))
        try:
            return compile_only((major, minor), only)
        except Exception as exc:
            print(
                f"gpu_check: cannot compile ({type(exc).__name__}: {exc}); NVVM and NVRTC "
                "are needed: pip install nvidia-nvvm nvidia-cuda-nvrtc",
                file=sys.stderr,
            )
            return EXIT_ENV
    if args.simulate:
        if "numba.cuda" in sys.modules and not sys.modules["numba.cuda"].config.ENABLE_CUDASIM:
            print(
                "gpu_check: numba.cuda was imported before --simulate could enable the simulator",
                file=sys.stderr,
            )
            return EXIT_ENV
        os.environ["NUMBA_ENABLE_CUDASIM"] = "1"
        if "numba" in sys.modules:  # numba read its environment when first imported
            sys.modules["numba"].core.config.reload_config()
    import fastact.cuda as fc

    if not fc.is_available():
        print(
            f"gpu_check: no usable GPU: {fc._REASON} (use --simulate or --compile-only)",
            file=sys.stderr,
        )
        return EXIT_ENV
    from numba import cuda

    simulate = bool(cuda.config.ENABLE_CUDASIM)
    n = args.size or (24 if simulate else 1 << 25)
    dtypes = [np.dtype(d) for d in args.dtypes.split(",") if d]
    env = Env(simulate, args.seed)
    timing = not simulate
    if not simulate:
        dev = cuda.get_current_device()
        print(
            f"device: {dev.name.decode() if isinstance(dev.name, bytes) else dev.name}, "
            f"{dev.MULTIPROCESSOR_COUNT} SMs, cc {dev.compute_capability}; torch CUDA: "
            f"{'yes' if env.torch is not None else 'no'}",
            flush=True,
        )
    groups = set(args.groups.split(","))
    makers = [
        ("activation", activation_cases),
        ("axis", axis_cases),
        ("loss", loss_cases),
        ("optim", optim_cases),
    ]
    print(_HEADER)
    rows = []
    for group, make in makers:
        if group in groups:
            rows += run(make(env, n, dtypes, only), env, args.reps, timing)
    if not rows:
        print("gpu_check: no case selected", file=sys.stderr)
        return EXIT_ENV
    status, msgs = summarize(rows, timing)
    print(f"\n{len(rows)} cases, {sum(1 for r in rows if r.get('ok'))} match the CPU kernels")
    for m in msgs:
        print(m)
    if status == EXIT_TARGET and not args.strict:
        status = EXIT_OK
    return status


if __name__ == "__main__":
    sys.exit(main())
