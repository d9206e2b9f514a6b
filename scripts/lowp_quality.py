"""Quality evidence for the low-precision optimizer states.

1. **Digits trainer** (examples/train_digits.py: fastact.nn + fastact.optim): test accuracy
   after ``--epochs`` epochs with ``AdamW`` and with ``AdamW8bit`` (``min_8bit_size=0``:
   every tensor, biases included, keeps 8-bit state), for three seeds.
2. **Torch-model twin**: a torch MLP trained with autograd on a fixed synthetic
   classification stream, from one initialization, by fastact ``AdamW`` (float32 states,
   the reference), ``AdamW8bit``, ``AdamW(state_dtype="bfloat16")`` and torch's fused AdamW
   (float32: the size of float32 rounding noise), each on its own copy of the model; the
   relative parameter deviation ``||p - p_ref|| / ||p_ref - p_0||`` from the reference is
   reported per step (every ``--every`` steps) together with the training losses.

    python scripts/lowp_quality.py [--epochs 30] [--steps 500]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib.util
import io
import sys
from pathlib import Path
from typing import Any

import fastact.optim as fo

_ROOT = Path(__file__).resolve().parent.parent


def _digits_module() -> Any:
    spec = importlib.util.spec_from_file_location(
        "train_digits", _ROOT / "examples" / "train_digits.py"
    )
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("train_digits", mod)
    spec.loader.exec_module(mod)
    return mod


def digits(seeds=(0, 1, 2), epochs: int = 30) -> list[dict]:
    """Test accuracy of AdamW and AdamW8bit per seed."""
    td = _digits_module()
    makers = {
        "AdamW": lambda ps, lr: fo.AdamW(ps, lr=lr),
        "AdamW8bit": lambda ps, lr: fo.AdamW8bit(ps, lr=lr, min_8bit_size=0),
    }
    out = []
    for seed in seeds:
        row = {"seed": seed}
        for name, make in makers.items():
            with contextlib.redirect_stdout(io.StringIO()):  # the trainer's per-epoch lines
                res = td.train(epochs=epochs, seed=seed, progress=False, make_optimizer=make)
            row[name] = res["test_acc"]
        out.append(row)
    return out


def twin(steps: int = 500, every: int = 50, seed: int = 0, hidden: int = 256) -> dict[str, Any]:
    """Per-step relative parameter deviation of each variant from fastact's float32 AdamW."""
    import torch

    torch.manual_seed(seed)
    base = torch.nn.Sequential(
        torch.nn.Linear(64, hidden), torch.nn.GELU(), torch.nn.Linear(hidden, hidden),
        torch.nn.GELU(), torch.nn.Linear(hidden, 10),
    )  # fmt: skip
    w_true = torch.randn(64, 10)
    gen = torch.Generator().manual_seed(seed + 1)
    batches = []
    for _ in range(steps):
        x = torch.randn(128, 64, generator=gen)
        y = (x @ w_true + 0.5 * torch.randn(128, 10, generator=gen)).argmax(1)
        batches.append((x, y))
    variants = {
        "fastact AdamW (reference)": lambda ps: fo.AdamW(ps, lr=1e-3),
        "fastact AdamW8bit": lambda ps: fo.AdamW8bit(ps, lr=1e-3, min_8bit_size=0, block_size=256),
        "fastact AdamW bf16 states": lambda ps: fo.AdamW(ps, lr=1e-3, state_dtype="bfloat16"),
        "torch AdamW fused": lambda ps: torch.optim.AdamW(ps, lr=1e-3, fused=True),
    }  # fmt: skip
    models = {k: copy.deepcopy(base) for k in variants}
    opts = {k: make(list(models[k].parameters())) for k, make in variants.items()}
    p0 = torch.cat([p.detach().flatten() for p in base.parameters()])
    ref = "fastact AdamW (reference)"
    rows = []
    for t, (x, y) in enumerate(batches, 1):
        losses = {}
        for k, m in models.items():
            m.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(m(x), y)
            loss.backward()
            opts[k].step()
            losses[k] = loss.item()
        if t == 1 or t % every == 0:
            flat = {
                k: torch.cat([p.detach().flatten() for p in m.parameters()])
                for k, m in models.items()
            }
            moved = float((flat[ref] - p0).norm())
            row = {"step": t, "moved": moved}
            for k in variants:
                if k != ref:
                    row[k] = float((flat[k] - flat[ref]).norm()) / moved
                row[f"loss {k}"] = losses[k]
            rows.append(row)
    return {"rows": rows, "variants": list(variants), "reference": ref}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--every", type=int, default=50)
    args = ap.parse_args(argv)
    print(f"## digits, {args.epochs} epochs: test accuracy")
    print("| seed | AdamW | AdamW8bit (all tensors 8-bit) | difference (points) |")
    print("|---:|---:|---:|---:|")
    for r in digits(epochs=args.epochs):
        d = 100 * (r["AdamW8bit"] - r["AdamW"])
        print(f"| {r['seed']} | {100 * r['AdamW']:.2f}% | {100 * r['AdamW8bit']:.2f}% | {d:+.2f} |")
    res = twin(args.steps, args.every)
    others = [k for k in res["variants"] if k != res["reference"]]
    print(f"\n## torch MLP twin, {args.steps} steps: ||p - p_ref|| / ||p_ref - p0||")
    print("| step | " + " | ".join(others) + " | loss ref | loss 8bit |")
    print("|---:|" + "---:|" * (len(others) + 2))
    for r in res["rows"]:
        cells = " | ".join(f"{r[k]:.2e}" for k in others)
        print(f"| {r['step']} | {cells} | {r['loss ' + res['reference']]:.4f} | "
              f"{r['loss fastact AdamW8bit']:.4f} |")  # fmt: skip


if __name__ == "__main__":
    main()
