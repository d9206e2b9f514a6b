"""Per-rank optimizer state and step time of ``examples/train_ddp.py`` under ``torchrun`` on
this machine: 1 rank and 2 ranks with ZeRO, fastact's AdamW (float32, bfloat16 states,
8-bit) against torch's AdamW (default and fused), one run after the other.

    python scripts/bench_ddp.py                      # width 2048, depth 4, 20 steps
    python scripts/bench_ddp.py --width 1024 --steps 30

Prints a markdown table: per rank, the optimizer state in bytes per parameter of the whole
model, the median training step and the median ``optimizer.step()`` (with ZeRO including the
broadcast of the updated shards); for 2 ranks the larger of the two ranks' values.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLE = os.path.join(HERE, "..", "examples", "train_ddp.py")
LINE = re.compile(
    r"rank (\d+)/(\d+): (\S+?)( \+ ZeRO)?, ([\d.]+)M parameters, state [\d.]+ MB = "
    r"([\d.]+) bytes/parameter, step ([\d.]+) ms \(optimizer.step ([\d.]+) ms\)"
)
OPTIMIZERS = ["torch-adamw", "torch-adamw-fused", "adamw", "adamw-bf16", "adamw8bit"]


def run(nproc: int, optimizer: str, zero: bool, a: argparse.Namespace) -> list[tuple]:
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        f"--nproc_per_node={nproc}", EXAMPLE, "--optimizer", optimizer,
        "--width", str(a.width), "--depth", str(a.depth), "--steps", str(a.steps),
        "--batch", str(a.batch),
    ] + (["--zero"] if zero else [])  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    rows = [m.groups() for m in LINE.finditer(out.stdout)]
    if out.returncode or len(rows) != nproc:
        sys.stderr.write(out.stdout + out.stderr)
        raise SystemExit(f"{' '.join(cmd)} failed")
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=int, default=2048)
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=256)
    a = ap.parse_args(argv)
    print("| optimizer | ranks | state bytes/param (per rank) | step (per rank) | "
          "optimizer.step (per rank) |")  # fmt: skip
    print("|---|---:|---:|---:|---:|")
    params = None
    for nproc, zero in ((1, False), (2, True)):
        for opt in OPTIMIZERS:
            rows = run(nproc, opt, zero, a)
            params = rows[0][4]
            state = max(float(r[5]) for r in rows)
            step = max(float(r[6]) for r in rows)
            ostep = max(float(r[7]) for r in rows)
            label = f"{nproc}" + (" (ZeRO)" if zero else "")
            print(f"| {opt} | {label} | {state:.3f} | {step:.1f} ms | {ostep:.1f} ms |",
                  flush=True)  # fmt: skip
    print(
        f"\n{params}M parameters ({a.depth} layers of width {a.width}), global batch "
        f"{a.batch}, {a.steps} steps (medians after 3), threads per rank: cores / ranks"
    )


if __name__ == "__main__":
    main()
