"""fastact beyond one machine: a preprocessing pipeline on a chunked dask array, run by a
dask.distributed cluster, checked against the same pipeline on one NumPy array.

    python examples/dask_preprocess.py                       # LocalCluster, 2 worker processes
    python examples/dask_preprocess.py --scheduler tcp://host:8786   # an existing cluster

The pipeline, per row-chunk of an (N, D) float32 array ``x`` and binary targets ``t``:

1. standardize the columns with dask's own reductions (global mean and std);
2. ``h = gelu(leaky_relu(z, 0.1), approximate='tanh')``: fastact activations on a dask array
   return lazy dask arrays (one ``map_blocks`` per activation, the kernels run on the workers);
3. ``loss = sum over chunks of binary_cross_entropy_with_logits(h, t, reduction='sum') / x.size``
   (``map_blocks`` produces one partial sum per chunk, dask adds them up).

On a real cluster every worker machine needs ``pip install fastact``; each worker process
compiles (or loads from its ``FASTACT_CACHE_DIR``) the kernels on first use, and numba runs
them on that machine's cores (``threads_per_worker=1`` leaves the cores to numba).
Needs ``dask[array]`` and ``distributed``.
"""

from __future__ import annotations

import argparse
import logging
import time
from typing import Any

import numpy as np

import fastact
from fastact import losses


def make_data(n_rows: int, n_cols: int, rows_per_chunk: int, seed: int = 0):
    """Lazy random data, generated on the workers chunk by chunk (deterministic per seed)."""
    import dask.array as da

    rng = da.random.default_rng(seed)
    chunks = (rows_per_chunk, n_cols)
    x = (rng.standard_normal((n_rows, n_cols), chunks=chunks) * 3.0 + 1.0).astype(np.float32)
    t = (rng.random((n_rows, n_cols), chunks=chunks) < 0.3).astype(np.float32)
    return x, t


def _chunk_bce_sum(h: np.ndarray, t: np.ndarray) -> np.ndarray:
    """One chunk's summed loss as a (1, 1) float64 block (runs on a worker)."""
    s = losses.binary_cross_entropy_with_logits(h, t, reduction="sum")
    return np.full((1, 1), float(s))


def pipeline(x: Any, t: Any) -> tuple[Any, Any]:
    """Features and mean loss. With dask arrays both are lazy; with NumPy arrays the same
    code runs eagerly on one machine (the reference the dask result is checked against)."""
    mean = x.mean(axis=0, dtype=np.float64).astype(np.float32)
    std = x.std(axis=0, dtype=np.float64).astype(np.float32)
    z = (x - mean) / std
    h = fastact.gelu(fastact.leaky_relu(z, 0.1), approximate="tanh")
    if isinstance(h, np.ndarray):
        loss = losses.binary_cross_entropy_with_logits(h, t, reduction="sum") / h.size
        return h, float(loss)
    if len(h.chunks[1]) != 1:
        raise ValueError("chunk the arrays by rows only (one chunk across the columns)")
    partial = h.map_blocks(_chunk_bce_sum, t, chunks=((1,) * h.numblocks[0], (1,)), dtype=float)
    return h, partial.sum() / h.size


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    ap.add_argument("--rows", type=int, default=400_000)
    ap.add_argument("--cols", type=int, default=16)
    ap.add_argument("--rows-per-chunk", type=int, default=50_000)
    ap.add_argument("--workers", type=int, default=2, help="LocalCluster worker processes")
    ap.add_argument("--scheduler", default=None, help="address of an existing dask scheduler")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-check", action="store_true", help="skip the NumPy comparison")
    args = ap.parse_args(argv)

    from dask.distributed import Client, LocalCluster

    cluster = None
    if args.scheduler is None:
        cluster = LocalCluster(
            n_workers=args.workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.ERROR,
        )
    client = Client(args.scheduler or cluster, timeout="60s")
    try:
        workers = client.scheduler_info()["workers"]
        print(f"dask cluster: {len(workers)} workers at {client.scheduler.address}")
        x, t = make_data(args.rows, args.cols, args.rows_per_chunk, args.seed)
        h, loss = pipeline(x, t)
        t0 = time.perf_counter()
        # features stay distributed (persist); only the statistics come back
        h = client.persist(h)
        loss_v, h_mean, h_max = client.compute([loss, h.mean(), h.max()], sync=True)
        secs = time.perf_counter() - t0
        print(
            f"{args.rows} x {args.cols} in {x.numblocks[0]} chunks: loss {loss_v:.6f}, "
            f"feature mean {h_mean:.5f}, max {h_max:.4f} ({secs:.2f} s)"
        )
        result: dict[str, Any] = {"loss": float(loss_v), "seconds": secs}
        if not args.no_check:
            xn, tn = client.compute([x, t], sync=True)
            hn, loss_n = pipeline(xn, tn)
            hd = h.compute()
            err = float(np.max(np.abs(hd - hn)))
            print(
                f"NumPy check: loss {loss_n:.6f} (rel diff {abs(loss_v / loss_n - 1):.1e}), "
                f"features max abs diff {err:.1e}"
            )
            result.update(numpy_loss=loss_n, max_feature_diff=err)
        return result
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


if __name__ == "__main__":
    main()
