"""Data-parallel training of a torch model with fastact's activations and optimizer, under
``torch.distributed`` (gloo backend, CPU tensors), launched by ``torchrun``.

One machine, 2 processes::

    torchrun --standalone --nproc_per_node 2 examples/train_ddp.py --optimizer adamw8bit --zero

Several machines (run the same command on each, node_rank 0..N-1; HOST:PORT reachable by all)::

    torchrun --nnodes 2 --nproc_per_node 2 --node_rank 0 \
        --rdzv_backend c10d --rdzv_endpoint HOST:29500 examples/train_ddp.py --zero

Without torchrun it runs as a single process (world size 1).

The model is an MLP (``--depth`` x Linear(``--width``) with fastact's GELU) fitted to a
synthetic regression; each rank trains on its own slice of every batch and
``DistributedDataParallel`` averages the gradients. ``--zero`` wraps the optimizer in
``torch.distributed.optim.ZeroRedundancyOptimizer``: each rank keeps the state of its shard of
the parameters only (with ``adamw8bit``: about 2 bytes per parameter of the shard). Each rank
prints its optimizer state bytes (per parameter of the whole model), the median step time and
the median time of ``optimizer.step()`` (with ZeRO, including the broadcast of the updated
shards).

Optimizers: ``adamw`` (fastact.torch.optim.AdamW), ``adamw-bf16`` (its ``state_dtype=
'bfloat16'``), ``adamw8bit`` (fastact.torch.optim.AdamW8bit), ``torch-adamw`` and
``torch-adamw-fused`` (torch.optim.AdamW, default and ``fused=True``) for comparison.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
import torch.distributed as dist
from torch.distributed.optim import ZeroRedundancyOptimizer
from torch.nn.parallel import DistributedDataParallel

import fastact.torch.nn as FN
import fastact.torch.optim as FO

OPTIMIZERS = {
    "adamw": (FO.AdamW, {}),
    "adamw-bf16": (FO.AdamW, {"state_dtype": "bfloat16"}),
    "adamw8bit": (FO.AdamW8bit, {}),
    "torch-adamw": (torch.optim.AdamW, {}),
    "torch-adamw-fused": (torch.optim.AdamW, {"fused": True}),
}


def model(width: int, depth: int, n_in: int, n_out: int) -> torch.nn.Module:
    torch.manual_seed(0)  # the same initial weights on every rank (DDP also broadcasts them)
    layers: list[torch.nn.Module] = [torch.nn.Linear(n_in, width), FN.GELU()]
    for _ in range(depth - 2):
        layers += [torch.nn.Linear(width, width), FN.GELU()]
    layers.append(torch.nn.Linear(width, n_out))
    return torch.nn.Sequential(*layers)


def state_bytes(opt: torch.optim.Optimizer) -> int:
    """Bytes of the optimizer's state tensors on this rank (step counts left out)."""
    if isinstance(opt, ZeroRedundancyOptimizer):
        opt = opt.optim
    return sum(
        v.numel() * v.element_size()
        for st in opt.state.values()
        for k, v in st.items()
        if k != "step" and isinstance(v, torch.Tensor)
    )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--optimizer", choices=list(OPTIMIZERS), default="adamw")
    ap.add_argument("--zero", action="store_true", help="shard the optimizer state (ZeRO)")
    ap.add_argument("--width", type=int, default=1024)
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--batch", type=int, default=256, help="global batch (split over ranks)")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=0, help="per rank (0: cores / local ranks)")
    a = ap.parse_args(argv)

    if "RANK" not in os.environ:  # plain `python train_ddp.py`: a world of one
        os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_WORLD_SIZE="1")
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", "29511")
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    local = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    threads = a.threads or max(1, (os.cpu_count() or 1) // local)
    torch.set_num_threads(threads)
    import numba

    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))

    n_in, n_out = 64, 8
    net = DistributedDataParallel(model(a.width, a.depth, n_in, n_out))
    cls, kw = OPTIMIZERS[a.optimizer]
    if a.zero:
        opt = ZeroRedundancyOptimizer(net.parameters(), optimizer_class=cls, lr=a.lr, **kw)
    else:
        opt = cls(net.parameters(), lr=a.lr, **kw)

    g = torch.Generator().manual_seed(1)
    w_true = torch.randn(n_in, n_out, generator=g) / n_in**0.5
    per_rank = a.batch // world
    steps, opt_steps, loss = [], [], torch.tensor(0.0)
    for t in range(a.steps):
        gen = torch.Generator().manual_seed(1000 + t)  # batch t, the same on every rank
        x = torch.randn(a.batch, n_in, generator=gen)
        y = torch.tanh(x @ w_true) + 0.05 * torch.randn(a.batch, n_out, generator=gen)
        xs, ys = (
            x[rank * per_rank : (rank + 1) * per_rank],
            y[rank * per_rank : (rank + 1) * per_rank],
        )
        t0 = time.perf_counter()
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(net(xs), ys)
        loss.backward()
        t1 = time.perf_counter()
        opt.step()
        t2 = time.perf_counter()
        if t >= 3:  # after warm-up (state creation, first compilations)
            steps.append(t2 - t0)
            opt_steps.append(t2 - t1)
        if rank == 0 and (t % 10 == 0 or t == a.steps - 1):
            print(f"step {t:4d}  loss (rank 0's slice) {loss.item():.5f}", flush=True)

    n = sum(p.numel() for p in net.parameters())
    b = state_bytes(opt)
    med = statistics.median
    line = (
        f"rank {rank}/{world}: {a.optimizer}{' + ZeRO' if a.zero else ''}, {n / 1e6:.2f}M "
        f"parameters, state {b / 1e6:.2f} MB = {b / n:.3f} bytes/parameter, step "
        f"{med(steps) * 1e3:.1f} ms (optimizer.step {med(opt_steps) * 1e3:.1f} ms), "
        f"{threads} threads, final loss {loss.item():.5f}"
    ) if steps else f"rank {rank}/{world}: too few steps to time"  # fmt: skip
    for r in range(world):  # one rank after the other
        if r == rank:
            print(line, flush=True)
        dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
