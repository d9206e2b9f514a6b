"""fastact inside torch programs: optimizer steps of ``fastact.torch.optim`` against torch's
default, foreach and fused steps, activations inside autograd (``fastact.torch.autograd``)
against ``torch.nn.functional``, forward + backward, and a torch MLP training step with
fastact's GELU and AdamW against all-torch, end to end and by parts.

Every case alternates the implementations within each round (so drifting machine load hits
them alike) and reports the median per-call time over the rounds; ratio = torch / fastact
(> 1: fastact faster). The optimizer part also reports the step's memory traffic against the
streaming bandwidth measured in the same run (``a += b`` by torch, 2 threads): the roofline.

    python scripts/bench_torch_ops.py --part optim   # 4 x 2048^2 MLP params, 160 small tensors
    python scripts/bench_torch_ops.py --part act     # 1K, 1M, 16M elements (--dtype float64)
    python scripts/bench_torch_ops.py --part mlp     # MLP training step, end to end + parts

Run it on a quiet machine (``flock -x /work/wt/cpu.lock ...`` in this project).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import numpy as np
import torch

import fastact
import fastact.torch.autograd as AF
import fastact.torch.optim as FO

#: bytes read + written per parameter per step, as multiples of the element size
#: (the arrays each kernel reads and writes once: parameter, gradient, state)
TRAFFIC = {
    "SGD": 5,  # p, g, buf read; p, buf written (momentum > 0)
    "Adam": 7,
    "AdamW": 7,
    "Adamax": 7,
    "RMSprop": 5,
    "Rprop": 7,
    "Adagrad": 5,
    "Adadelta": 7,
}
#: low-precision rows (against torch's float32 class): (torch class, fastact options, bytes
#: moved per parameter: p and g read, p written, each state's storage read and written)
LOWP = {
    "AdamW bf16 states": ("AdamW", {"state_dtype": "bfloat16"}, 12 + 2 * 2 * 2),
    "AdamW8bit": ("AdamW", {}, 12 + 2 * 2 * 1),
}
FUSED = {"SGD", "Adam", "AdamW", "Adagrad"}  # torch has a fused CPU step for these
OPTIONS = {"SGD": dict(lr=1e-3, momentum=0.9)}


def _rounds(fns: dict, rounds: int, number: int) -> dict:
    """Median per-call seconds of each function, alternating them within every round."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(3):  # warm up (state creation, compilation, page faults, and the C
        for f in fns.values():  # library's heap: its first frees of large blocks move its
            f()  # thresholds; one call left the first 1M row 3x slower in torch)
    for r in range(rounds):
        order = list(fns) if r % 2 == 0 else list(fns)[::-1]
        for k in order:
            t0 = time.perf_counter()
            for _ in range(number):
                fns[k]()
            times[k].append((time.perf_counter() - t0) / number)
    return {k: statistics.median(v) for k, v in times.items()}


def bandwidth() -> float:
    """Streaming bandwidth (bytes/s) of the in-place ``a += b`` over 2 x 64 MB float32 by
    torch (2 threads): 12 bytes per element, read-modify-write like an optimizer step."""
    n = 16 << 20
    a, b = torch.rand(n), torch.rand(n)
    t = _rounds({"rmw": lambda: a.add_(b)}, 7, 5)["rmw"]
    return 12 * n / t


def _params(kind: str, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    if kind == "mlp":  # the MLP of scripts/bench_torch_mlp.py: 4 x Linear(2048, 2048)
        shapes = [(2048, 2048), (2048,)] * 4
    else:  # a model-like set of small tensors (scripts/call_overhead.py)
        rng = np.random.default_rng(seed)
        shapes = [(int(n),) for n in rng.integers(16, 400, 160)]
    ps = [torch.nn.Parameter(torch.randn(s, generator=g) * 0.02) for s in shapes]
    for p in ps:
        p.grad = torch.randn(p.shape, generator=g) * 1e-3
    return ps


def bench_optim(rounds: int, kinds: list[str]) -> None:
    bw = bandwidth()
    print(f"streaming bandwidth (torch a += b, 2 threads): {bw / 1e9:.1f} GB/s\n")
    print("| optimizer | params | fastact | torch default | torch foreach | torch fused | "
          "vs default | vs foreach | vs fused | fastact roofline |")  # fmt: skip
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for kind in kinds:
        n = sum(p.numel() for p in _params(kind))
        number = 3 if kind == "mlp" else 50
        for row in list(FO.OPTIMIZERS) + list(LOWP):
            name, fextra, traffic = LOWP[row] if row in LOWP else (row, {}, TRAFFIC[row] * 4)
            kw = OPTIONS.get(name, {})
            fcls = FO.OPTIMIZERS_8BIT[row] if row in FO.OPTIMIZERS_8BIT else FO.OPTIMIZERS[name]
            variants = {"fastact": (fcls, fextra)}
            tcls = getattr(torch.optim, name)
            variants["default"] = (tcls, {})
            variants["foreach"] = (tcls, {"foreach": True})
            if name in FUSED:
                variants["fused"] = (tcls, {"fused": True})
            steps = {}
            for label, (cls, extra) in variants.items():
                opt = cls(_params(kind), **kw, **extra)
                steps[label] = opt.step
            t = _rounds(steps, rounds, number)
            fa = t["fastact"]
            roof = traffic * n / bw
            cells = [f"{t[k] * 1e3:.3f} ms" if k in t else "-" for k in
                     ("fastact", "default", "foreach", "fused")]  # fmt: skip
            ratios = [
                f"{t[k] / fa:.2f}x" if k in t else "-" for k in ("default", "foreach", "fused")
            ]
            label = "4 x 2048^2 (16.8M)" if kind == "mlp" else f"160 small ({n})"
            print(f"| {row} | {label} | " + " | ".join(cells + ratios) +
                  f" | {roof / fa:.0%} |")  # fmt: skip


class _Bare(torch.autograd.Function):
    """The floor of any Python autograd node: allocates its output, saves it, passes the
    gradient through (no arithmetic)."""

    @staticmethod
    def forward(ctx, x):
        y = torch.empty_like(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        return g


ACTIVATIONS = ["relu", "gelu", "silu", "tanh", "sigmoid", "elu", "leaky_relu", "mish",
               "hardswish", "softplus"]  # fmt: skip


def bench_act(rounds: int, sizes: list[int], names: list[str], dtype: torch.dtype) -> None:
    """Forward alone and forward + backward (``torch.autograd.backward(f(x), g)``, which
    also accumulates into ``x.grad``) of each activation by torch.nn.functional and by
    fastact.torch.autograd, alternating within each round. The effective bandwidth of a
    forward + backward counts the arrays it must stream: the forward reads x and writes y,
    the backward reads g and the saved tensor and writes the input gradient, the
    accumulation reads x.grad and it and writes x.grad: 8 arrays of n elements. The
    roofline is a plain copy of n elements into a preallocated tensor by torch (``y.copy_``,
    2 arrays), measured per size in the same run: it moves no fresh memory, so it also shows
    what page faults of fresh outputs cost. The last row of a small size, "(bare Function)",
    is a Python ``torch.autograd.Function`` that computes nothing (:class:`_Bare`), in the
    fastact columns against torch's relu: the call overhead of any such node."""
    size = torch.tensor([], dtype=dtype).element_size()
    print("| activation | elements | torch fwd | fastact fwd | fwd ratio | torch fwd+bwd | "
          "fastact fwd+bwd | fwd+bwd ratio | torch GB/s | fastact GB/s | copy GB/s |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n in sizes:
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(n, generator=gen, dtype=dtype).requires_grad_(True)
        g = torch.randn(n, dtype=dtype)
        number = 2000 if n <= 4096 else max(3, int(3e6 // n))
        src, dst = torch.randn(n, dtype=dtype), torch.empty(n, dtype=dtype)
        copy = _rounds({"copy": lambda s=src, d=dst: d.copy_(s)}, rounds, number)["copy"]
        copy_bw = 2 * n * size / copy
        for name in [*names, "(bare Function)"] if n <= 4096 else names:
            if name == "(bare Function)":
                tf, af = torch.nn.functional.relu, AF._direct_apply(_Bare)  # as fastact calls
            else:
                tf, af = getattr(torch.nn.functional, name), getattr(AF, name)
            fns = {
                "tf": lambda tf=tf, x=x: tf(x),
                "af": lambda af=af, x=x: af(x),
                "tfb": lambda tf=tf, x=x, g=g: torch.autograd.backward(tf(x), g),
                "afb": lambda af=af, x=x, g=g: torch.autograd.backward(af(x), g),
            }
            t = _rounds(fns, rounds, number)
            x.grad = None

            def us(v: float) -> str:
                return f"{v * 1e6:.1f} us"

            def bw(v: float, nbytes: int = 8 * n * size) -> str:
                return f"{nbytes / v / 1e9:.1f}"

            print(f"| {name} | {n} | {us(t['tf'])} | {us(t['af'])} | {t['tf'] / t['af']:.2f}x | "
                  f"{us(t['tfb'])} | {us(t['afb'])} | {t['tfb'] / t['afb']:.2f}x | "
                  f"{bw(t['tfb'])} | {bw(t['afb'])} | {copy_bw / 1e9:.1f} |")  # fmt: skip


def _mlp(width: int, depth: int, seed: int = 0) -> torch.nn.Sequential:
    """``depth`` x Linear(width, width) with torch's GELU between them."""
    torch.manual_seed(seed)
    layers: list[torch.nn.Module] = []
    for i in range(depth):
        layers.append(torch.nn.Linear(width, width))
        if i < depth - 1:
            layers.append(torch.nn.GELU())
    return torch.nn.Sequential(*layers)


def bench_mlp(rounds: int, width: int, depth: int, batch: int) -> None:
    """One training step of the MLP (zero_grad, forward, MSE loss, backward, AdamW step),
    all-torch (torch.nn.GELU, torch.optim.AdamW default and fused) against fastact's GELU
    (fastact.torch.nn) and AdamW (fastact.torch.optim) in the same torch model, with the same
    weights and batch; then the parts of a step timed alone in the same run: the linear
    layers forward + backward without activations (the matmuls, bias gradients and the loss),
    the activations forward + backward (``depth - 1`` GELUs of ``batch x width``), and the
    optimizer step."""
    import fastact.torch.nn as FN

    x = torch.randn(batch, width, generator=torch.Generator().manual_seed(1))
    y = torch.randn(batch, width, generator=torch.Generator().manual_seed(2))
    base = _mlp(width, depth)
    variants = {
        "all-torch (AdamW default)": (torch.nn.GELU, lambda ps: torch.optim.AdamW(ps, lr=1e-4)),
        "all-torch (AdamW fused)": (
            torch.nn.GELU,
            lambda ps: torch.optim.AdamW(ps, lr=1e-4, fused=True),
        ),
        "fastact GELU + AdamW": (FN.GELU, lambda ps: FO.AdamW(ps, lr=1e-4)),
    }
    models, opts, steps = {}, {}, {}
    for label, (act, make_opt) in variants.items():
        m = _mlp(width, depth)
        m.load_state_dict(base.state_dict())
        for i, mod in enumerate(m):
            if isinstance(mod, torch.nn.GELU):
                m[i] = act()
        opt = make_opt(m.parameters())
        models[label], opts[label] = m, opt

        def step(m=m, opt=opt) -> None:
            opt.zero_grad()
            torch.nn.functional.mse_loss(m(x), y).backward()
            opt.step()

        steps[label] = step
    total = _rounds(steps, rounds, 2)

    # the parts, alone
    lin = torch.nn.Sequential(
        *[mod for mod in _mlp(width, depth) if isinstance(mod, torch.nn.Linear)]
    )

    def linear_part() -> None:
        lin.zero_grad()
        torch.nn.functional.mse_loss(lin(x), y).backward()

    h = torch.randn(batch, width).requires_grad_(True)
    gh = torch.randn(batch, width)
    tg, fg = torch.nn.GELU(), FN.GELU()

    def act_part(f) -> None:
        for _ in range(depth - 1):
            torch.autograd.backward(f(h), gh)

    parts = {
        "linear": linear_part,
        "act torch": lambda: act_part(tg),
        "act fastact": lambda: act_part(fg),
    }
    for label, opt in opts.items():  # gradients from one step; the steps keep moving
        parts["opt " + label] = opt.step
    part = _rounds(parts, rounds, 2)
    n_params = sum(p.numel() for p in base.parameters())
    print(f"MLP: {depth} x Linear({width}, {width}), GELU between, batch {batch}, float32, "
          f"{n_params / 1e6:.1f}M parameters, MSE loss; step = zero_grad + forward + loss + "
          "backward + AdamW step\n")  # fmt: skip
    print("| variant | step | vs all-torch default | linear layers fwd+bwd | "
          "activations fwd+bwd | optimizer step | rest |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|")
    ref = total["all-torch (AdamW default)"]
    for label in variants:
        t = total[label]
        a = part["act fastact" if label.startswith("fastact") else "act torch"]
        o = part["opt " + label]
        ln = part["linear"]
        rest = t - ln - a - o

        def cell(v: float, t: float = t) -> str:
            return f"{v * 1e3:.1f} ms ({v / t:.0%})"

        print(f"| {label} | {t * 1e3:.1f} ms | {ref / t:.2f}x | {cell(ln)} | {cell(a)} | "
              f"{cell(o)} | {cell(rest)} |")  # fmt: skip


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=["optim", "act", "mlp", "all"], default="all")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--params", default="mlp,small", help="optimizer parameter sets")
    ap.add_argument("--sizes", default="1024,1048576,16777216", help="activation sizes")
    ap.add_argument("--activations", default=",".join(ACTIVATIONS))
    ap.add_argument("--dtype", choices=["float32", "float64"], default="float32",
                    help="activations' dtype")  # fmt: skip
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--mlp", default="2048,4,256", help="MLP width,depth,batch")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    import numba

    numba.set_num_threads(a.threads)
    print(f"machine: {cpu_name()}, {a.threads} threads; "
          f"torch {torch.__version__}, fastact {fastact.__version__}; {a.dtype} activations; "
          f"median of {a.rounds} rounds\n")  # fmt: skip
    if a.part in ("optim", "all"):
        bench_optim(a.rounds, a.params.split(","))
        print()
    if a.part in ("act", "all"):
        sizes = [int(s) for s in a.sizes.split(",")]
        bench_act(a.rounds, sizes, a.activations.split(","), getattr(torch, a.dtype))
        print()
    if a.part in ("mlp", "all"):
        width, depth, batch = (int(v) for v in a.mlp.split(","))
        bench_mlp(a.rounds, width, depth, batch)


if __name__ == "__main__":
    main()
