"""fastact.torch.optim under torch.distributed: 2 local processes (gloo, CPU, a file store),
a small MLP trained for 50 steps, each rank on its half of every batch.

* DDP + ``fastact.torch.optim.AdamW`` follows DDP + ``torch.optim.AdamW`` step for step.
* ``ZeroRedundancyOptimizer`` with fastact's AdamW follows it with torch's AdamW; each rank
  keeps the state of its own shard only.
* ZeRO with ``AdamW8bit`` (every tensor 8-bit) trains like float32: its loss after 50 steps
  is within 5% of float32's, at a quarter of the state bytes.
* A state dict consolidated from the 2-rank ZeRO run at step 25 resumes in one process
  (a plain fastact optimizer over every parameter, the gradient DDP computes) on the 2-rank
  trajectory, bit for bit.
"""

from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

WORLD = 2
STEPS = 50
HALF = 25
BATCH = 32  # per rank
N_IN, HIDDEN, N_OUT = 16, 64, 4
LR = 1e-2
EIGHT_BIT = {"block_size": 64, "min_8bit_size": 0}
#: parameters of two implementations after the same steps (float32 rounding, 50 steps)
TOL = {"atol": 2e-5, "rtol": 1e-4}


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    """STEPS batches of WORLD * BATCH samples of a noisy tanh regression."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(STEPS, WORLD * BATCH, N_IN, generator=g)
    w = torch.randn(N_IN, N_OUT, generator=g)
    y = torch.tanh(x @ w) + 0.1 * torch.randn(STEPS, WORLD * BATCH, N_OUT, generator=g)
    return x, y


def _model() -> torch.nn.Module:
    import fastact.torch.nn as FN

    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(N_IN, HIDDEN),
        FN.GELU(),
        torch.nn.Linear(HIDDEN, HIDDEN),
        FN.GELU(),
        torch.nn.Linear(HIDDEN, N_OUT),
    )


def _flat(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()]).clone()


def _state_bytes(opt: torch.optim.Optimizer) -> int:
    return sum(
        v.numel() * v.element_size()
        for st in opt.state.values()
        for k, v in st.items()
        if k != "step" and isinstance(v, torch.Tensor)
    )


def _worker(rank: int, path: str) -> None:
    """One rank: the five runs; writes its losses, parameters per step and state bytes."""
    import numba
    from torch.distributed.optim import ZeroRedundancyOptimizer
    from torch.nn.parallel import DistributedDataParallel

    import fastact.torch.optim as FO

    torch.set_num_threads(1)
    numba.set_num_threads(1)
    store = dist.FileStore(os.path.join(path, "store"), WORLD)
    dist.init_process_group("gloo", store=store, rank=rank, world_size=WORLD)
    try:
        x, y = _data()
        xs = x[:, rank * BATCH : (rank + 1) * BATCH]
        ys = y[:, rank * BATCH : (rank + 1) * BATCH]

        def zero(cls, **kw):
            return lambda ps: ZeroRedundancyOptimizer(ps, optimizer_class=cls, lr=LR, **kw)

        runs = {
            "ddp_fastact": lambda ps: FO.AdamW(ps, lr=LR),
            "ddp_torch": lambda ps: torch.optim.AdamW(ps, lr=LR),
            "zero_fastact": zero(FO.AdamW),
            "zero_torch": zero(torch.optim.AdamW),
            "zero_8bit": zero(FO.AdamW8bit, **EIGHT_BIT),
        }
        out: dict = {}
        for name, make in runs.items():
            model = DistributedDataParallel(_model())
            opt = make(model.parameters())
            losses, snaps = [], []
            for t in range(STEPS):
                opt.zero_grad()
                loss = torch.nn.functional.mse_loss(model(xs[t]), ys[t])
                loss.backward()
                opt.step()
                total = loss.detach().clone()
                dist.all_reduce(total)
                losses.append(float(total) / WORLD)
                snaps.append(_flat(model))
                if t == HALF - 1 and name.startswith("zero_") and name != "zero_torch":
                    opt.consolidate_state_dict(to=0)
                    if rank == 0:
                        torch.save(
                            {"model": model.module.state_dict(), "optim": opt.state_dict()},
                            os.path.join(path, f"{name}.pt"),
                        )
            local = opt.optim if isinstance(opt, ZeroRedundancyOptimizer) else opt
            out[name] = {
                "losses": losses,
                "params": torch.stack(snaps),
                "state_bytes": _state_bytes(local),
                "n_local": sum(p.numel() for p in local.state),
            }
        torch.save(out, os.path.join(path, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    path = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(str(path),), nprocs=WORLD, join=True)
    ranks = [torch.load(path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
    return ranks, path


def _close(a: torch.Tensor, b: torch.Tensor, what: str) -> None:
    for t in range(a.shape[0]):
        torch.testing.assert_close(a[t], b[t], **TOL, msg=lambda m, t=t: f"{what}, step {t}: {m}")


def test_ddp_with_fastacts_adamw_follows_torchs_step_for_step(runs):
    ranks, _ = runs
    for r in ranks:
        _close(r["ddp_fastact"]["params"], r["ddp_torch"]["params"], "DDP")
    # DDP keeps the replicas equal
    torch.testing.assert_close(ranks[0]["ddp_fastact"]["params"], ranks[1]["ddp_fastact"]["params"])
    assert ranks[0]["ddp_fastact"]["losses"][-1] < 0.5 * ranks[0]["ddp_fastact"]["losses"][0]


def test_zero_with_fastacts_adamw_follows_zero_with_torchs(runs):
    ranks, _ = runs
    for r in ranks:
        _close(r["zero_fastact"]["params"], r["zero_torch"]["params"], "ZeRO")
    n = ranks[0]["zero_fastact"]["params"].shape[1]
    # each rank steps (and keeps state for) its own shard: together, every parameter once
    locals_ = [r["zero_fastact"]["n_local"] for r in ranks]
    assert sum(locals_) == n and all(0 < k < n for k in locals_)
    assert sum(r["zero_fastact"]["state_bytes"] for r in ranks) == 8 * n
    assert [r["zero_torch"]["n_local"] for r in ranks] == locals_


def test_zero_with_adamw8bit_trains_like_float32_at_a_quarter_of_the_state(runs):
    ranks, _ = runs
    l8, l32 = ranks[0]["zero_8bit"]["losses"], ranks[0]["zero_fastact"]["losses"]
    assert l8[-1] < 0.5 * l8[0]
    assert abs(l8[-1] - l32[-1]) <= 0.05 * l32[-1], (l8[-1], l32[-1])
    n = ranks[0]["zero_8bit"]["params"].shape[1]
    bytes8 = sum(r["zero_8bit"]["state_bytes"] for r in ranks)
    # 2 bytes of codes + 2 float32 scales per 64 elements (rounded up per tensor)
    assert 2 * n < bytes8 <= 2 * n + 2 * 4 * (n // 64 + 6)


@pytest.mark.parametrize("name", ["zero_fastact", "zero_8bit"])
def test_consolidated_state_resumes_in_one_process(runs, name):
    import fastact.torch.optim as FO

    ranks, path = runs
    ck = torch.load(path / f"{name}.pt", weights_only=True)
    model = _model()
    model.load_state_dict(ck["model"])
    opt = FO.AdamW8bit(model.parameters(), lr=LR, **EIGHT_BIT) if name == "zero_8bit" else (
        FO.AdamW(model.parameters(), lr=LR)
    )  # fmt: skip
    opt.load_state_dict(ck["optim"])
    assert float(opt.state[next(iter(model.parameters()))]["step"]) == HALF
    x, y = _data()
    want = ranks[0][name]["params"]
    params = list(model.parameters())
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the ranks ran
    try:
        for t in range(HALF, STEPS):
            # the gradient DDP gives every rank: each rank's half-batch gradient times
            # 1 / WORLD, summed (the mean over the full batch rounds differently, and an 8-bit
            # state that lands near a midpoint between two codes then takes the other one)
            grads = [torch.zeros_like(p) for p in params]
            for r in range(WORLD):
                opt.zero_grad()
                half = slice(r * BATCH, (r + 1) * BATCH)
                torch.nn.functional.mse_loss(model(x[t, half]), y[t, half]).backward()
                for acc, p in zip(grads, params, strict=True):
                    acc += p.grad * (1.0 / WORLD)
            for acc, p in zip(grads, params, strict=True):
                p.grad = acc
            opt.step()
            # bit for bit: the ranks' shards and the one process take the same 8-bit steps
            torch.testing.assert_close(
                _flat(model), want[t], rtol=0, atol=0, msg=lambda m, t=t: f"{t}: {m}"
            )
    finally:
        torch.set_num_threads(threads)
