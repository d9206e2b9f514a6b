"""Benchmark: low-precision optimizer states (8-bit, bfloat16) against float32 states, torch's
fused AdamW and, when installed, bitsandbytes' CPU optimizers.

For one tensor of 2**24 parameters and a 160-tensor model-like set of the same total
(``fastact.bench.optim.model_shapes``), the implementations' steps are timed round-robin in
one process, alternating step by step (median of ``--repeat`` steps each after warm-up; before
each step a pause, so that the previous library's worker threads stop spinning, then the
gradients rewritten by a torch operator, as a backward pass leaves them and torch's OpenMP
workers spinning), and their state bytes per parameter are counted. Float32 parameters and
gradients, then bfloat16 ones (torch bfloat16 tensors).

    flock -x /work/wt/cpu.lock python scripts/bench_lowp_optim.py [--repeat 9] [--blocks]

``--blocks`` also times AdamW8bit over block sizes (the default block size is the best).

The ``floor ms`` column is each case's memory floor measured in the same run
(:func:`fastact.bench.bandwidth.measure_state_floor`: the parameter and both states read and
written and the gradient read, no arithmetic, over all the parameters as one array), and
``of floor`` the floor's share of the step (1.00: the step runs at the floor).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import time
from collections.abc import Callable

import numpy as np
import torch

import fastact.optim as fo
from fastact.bench.bandwidth import measure_state_floor
from fastact.bench.optim import model_shapes

_QUIET = 0.03


def _state_bytes(opt) -> int:
    total = 0
    for st in opt.state.values():
        for k, v in st.items():
            if k != "step" and hasattr(v, "nbytes"):
                total += int(v.nbytes)
            elif k != "step" and torch.is_tensor(v):
                total += v.numel() * v.element_size()
    return total


def _median(fn: Callable[[], None], repeat: int) -> float:
    for _ in range(2):
        fn()
    ts = []
    for _ in range(repeat):
        time.sleep(_QUIET)
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


def _alternating(opts, repeat: int, bnb_repeat: int) -> dict[str, float]:
    """Median step time per implementation, the implementations alternating step by step
    (a burst of load on the machine then hits them alike); bitsandbytes takes part in the
    first ``bnb_repeat`` rounds only. Two untimed warm-up steps each first. Before each
    timed step the implementation's gradients are rewritten in place (untimed), as a
    backward pass leaves them: a step right after another optimizer's step on clean
    gradients is not a training loop's case (measured: with fastact's prefetching 8-bit and
    bfloat16 loops one of two such optimizers took 1.5x its time after a backward pass).
    The pause comes before that rewrite: the step starts while torch's OpenMP workers still
    spin after it, as they do after a backward pass (fastact's steps on torch tensors run on
    that pool; ``numba's layer`` rows show the same step on numba's threads)."""
    for _name, opt, _ps in opts:
        for _ in range(2):
            opt.step()
    ts: dict[str, list[float]] = {name: [] for name, _opt, _ps in opts}
    for r in range(repeat):
        for name, opt, ps in opts:
            if r >= bnb_repeat and name.startswith("bitsandbytes"):
                continue
            time.sleep(_QUIET)
            with torch.no_grad():
                for p in ps:
                    p.grad.mul_(1.0)
            t0 = time.perf_counter()
            opt.step()
            ts[name].append(time.perf_counter() - t0)
    return {name: float(np.median(t)) for name, t in ts.items()}


def _tensors(shapes, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    ps = [torch.nn.Parameter(torch.randn(s, generator=g).to(dtype)) for s in shapes]
    for p in ps:
        p.grad = (torch.randn(p.shape, generator=g) * 1e-3).to(dtype)
    return ps


class _OnNumbaLayer:
    """An optimizer whose steps run on numba's threading layer, not on torch's pool
    (``FASTACT_TORCH_POOL=never`` during the step)."""

    def __init__(self, opt) -> None:
        self.opt, self.state = opt, opt.state

    def step(self) -> None:
        before = os.environ.get("FASTACT_TORCH_POOL")
        os.environ["FASTACT_TORCH_POOL"] = "never"
        try:
            self.opt.step()
        finally:
            if before is None:
                del os.environ["FASTACT_TORCH_POOL"]
            else:
                os.environ["FASTACT_TORCH_POOL"] = before


def _cases(bf16: bool, with_bnb: bool) -> list[tuple[str, Callable]]:
    cases = [
        ("torch AdamW fused", lambda ps: torch.optim.AdamW(ps, fused=True)),
        ("fastact AdamW", lambda ps: fo.AdamW(ps)),
        ("fastact AdamW state_dtype=bfloat16", lambda ps: fo.AdamW(ps, state_dtype="bfloat16")),
        ("fastact AdamW8bit", lambda ps: fo.AdamW8bit(ps)),
        ("fastact AdamW8bit, numba's layer", lambda ps: _OnNumbaLayer(fo.AdamW8bit(ps))),
    ]  # fmt: skip
    if bf16:
        f32 = ("fastact AdamW state_dtype=float32", lambda ps: fo.AdamW(ps, state_dtype="float32"))
        cases.insert(2, f32)
    if with_bnb:
        import bitsandbytes as bnb

        cases.append(("bitsandbytes AdamW8bit (CPU)", lambda ps: bnb.optim.AdamW8bit(ps)))
    return cases


def run(repeat: int, with_bnb: bool, bnb_repeat: int, log2: int = 24) -> list[dict]:
    n = 1 << log2
    floors = {
        (pb, sb): measure_state_floor(n, pb, sb, budget=0.3)["seconds"]
        for pb in (4, 2)
        for sb in (4, 2, 1)
    }
    sets = {
        "one tensor": [(n,)],
        "160-tensor model": model_shapes(target=n, d=288 if log2 >= 24 else 16),
    }
    rows = []
    for dtype in (torch.float32, torch.bfloat16):
        for set_name, shapes in sets.items():
            cases = _cases(dtype == torch.bfloat16, with_bnb)
            opts = []
            for name, make in cases:
                ps = _tensors(shapes, dtype)
                opt = make(ps)
                opt.step()  # creates the state
                opts.append((name, opt, ps))
            total = sum(math.prod(s) for s in shapes)
            times = _alternating(opts, repeat, bnb_repeat)
            base = times[cases[0][0]]
            bf16 = dtype == torch.bfloat16
            for name, opt, _ps in opts:
                # bytes per element of each of the two states: the measured width nearest
                # to the state's size (8-bit tensors below min_8bit_size keep float32 ones)
                per_state = _state_bytes(opt) / total / 2
                width = min((4, 2, 1), key=lambda w: abs(w - per_state))
                floor = floors[2 if bf16 else 4, width] * total / n
                rows.append({
                    "params": str(dtype).replace("torch.", ""),
                    "set": f"{set_name} ({len(shapes)} tensors, {total / 1e6:.1f}M)",
                    "impl": name,
                    "ms": times[name] * 1e3,
                    "vs_torch": base / times[name],
                    "bytes": _state_bytes(opt) / total,
                    "floor_ms": floor * 1e3,
                    "of_floor": floor / times[name],
                })  # fmt: skip
            del opts
    return rows


def blocks(repeat: int, sizes=(256, 512, 1024, 2048, 4096, 8192)) -> dict[int, float]:
    ps = _tensors([(1 << 24,)], torch.float32)
    out = {}
    opts = {b: fo.AdamW8bit(ps, block_size=b) for b in sizes}
    for b, opt in opts.items():
        out[b] = _median(opt.step, repeat) * 1e3
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=9)
    ap.add_argument("--bnb-repeat", type=int, default=3)
    ap.add_argument("--no-bnb", action="store_true")
    ap.add_argument("--blocks", action="store_true")
    ap.add_argument("--log2", type=int, default=24, help="parameters: 2**log2 (smoke tests)")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    try:
        import bitsandbytes  # noqa: F401

        with_bnb = not args.no_bnb
    except ImportError:
        with_bnb = False
    print(f"# {platform.processor() or platform.machine()}, torch threads 2, "
          f"bitsandbytes {'yes' if with_bnb else 'not used'}")  # fmt: skip
    if args.blocks and args.log2 == 24:
        print("AdamW8bit block size sweep (2**24 float32 params, ms):", blocks(args.repeat))
    rows = run(args.repeat, with_bnb, args.bnb_repeat, args.log2)
    print("| params | set | implementation | step ms | vs torch fused | state B/param | "
          "floor ms | of floor |")  # fmt: skip
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['params']} | {r['set']} | {r['impl']} | {r['ms']:.1f} | "
              f"{r['vs_torch']:.2f}x | {r['bytes']:.3f} | {r['floor_ms']:.1f} | "
              f"{r['of_floor']:.2f} |")  # fmt: skip


if __name__ == "__main__":
    main()
