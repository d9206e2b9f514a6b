"""fastact on a dask.distributed LocalCluster with two worker processes (examples/
dask_preprocess.py): activations and a loss over a chunked array match the NumPy run and a
float64 NumPy reference, and the kernels ran in the worker processes."""

from __future__ import annotations

import importlib.util
import logging
import math
import os
from pathlib import Path

import dask.array as da
import distributed
import numpy as np
import pytest

import fastact

TIMEOUT = 240  # seconds for any one result (workers load or compile the kernels first)


def _load_example():
    path = Path(__file__).resolve().parent.parent / "examples" / "dask_preprocess.py"
    spec = importlib.util.spec_from_file_location("_example_dask_preprocess", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def client():
    cluster = c = None
    try:
        cluster = distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.ERROR,
        )
        c = distributed.Client(cluster, timeout="120s")
        c.wait_for_workers(2, timeout=120)
        yield c
    finally:
        if c is not None:
            c.close()
        if cluster is not None:
            cluster.close()


def _get(client, *collections):
    futures = client.compute(list(collections))
    return [f.result(timeout=TIMEOUT) for f in futures]


def _reference(x: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, float]:
    """float64 NumPy: standardize, leaky_relu(0.1), tanh-GELU, mean BCE-with-logits."""
    x = x.astype(np.float64)
    z = (x - x.mean(axis=0)) / x.std(axis=0)
    h = np.where(z > 0, z, 0.1 * z)
    h = 0.5 * h * (1 + np.tanh(math.sqrt(2 / math.pi) * (h + 0.044715 * h**3)))
    bce = np.maximum(h, 0) - h * t + np.log1p(np.exp(-np.abs(h)))
    return h, float(bce.mean())


def test_pipeline_on_two_worker_processes_matches_numpy(client):
    ex = _load_example()
    workers = client.scheduler_info()["workers"]
    assert len(workers) == 2
    x, t = ex.make_data(24_000, 8, 3_000, seed=3)
    assert x.numblocks == (8, 1)
    h, loss = ex.pipeline(x, t)
    # fastact kept everything lazy: dask collections, nothing computed yet
    assert isinstance(h, da.Array) and isinstance(loss, da.Array)
    assert h.dtype == np.float32 and h.chunks == x.chunks
    xn, tn, hd, loss_d = _get(client, x, t, h, loss)
    hn, loss_n = ex.pipeline(xn, tn)  # the same code on one NumPy array
    assert hd.dtype == np.float32 and hd.shape == (24_000, 8)
    np.testing.assert_allclose(hd, hn, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(float(loss_d), loss_n, rtol=1e-6)  # per-chunk float64 sums
    h64, loss64 = _reference(xn, tn)
    np.testing.assert_allclose(hd, h64, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(float(loss_d), loss64, rtol=1e-5)


def test_fastact_kernels_run_in_the_worker_processes(client):
    worker_pids = set(client.run(os.getpid).values())
    assert len(worker_pids) == 2 and os.getpid() not in worker_pids
    xn = np.linspace(-4, 4, 16_000, dtype=np.float32).reshape(8, 2_000)
    x = da.from_array(xn, chunks=(1, 2_000))
    assert x.numblocks == (8, 1)
    y = fastact.softplus(fastact.silu(x), beta=2.0)

    def pid_block(b: np.ndarray) -> np.ndarray:
        return np.full((1, 1), os.getpid(), dtype=np.int64)

    (yd, pids) = _get(client, y, y.map_blocks(pid_block, chunks=(1, 1), dtype=np.int64))
    assert set(pids.ravel()) <= worker_pids  # computed by the workers, not in this process
    np.testing.assert_array_equal(yd, fastact.softplus(fastact.silu(xn), beta=2.0))
    # a loss over chunks: map_blocks gives one partial sum per chunk, dask adds them
    t = da.zeros_like(x)

    def chunk_mse(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.full((1, 1), float(fastact.losses.mse_loss(a, b, reduction="sum")))

    total = y.map_blocks(chunk_mse, t, chunks=(1, 1), dtype=np.float64).sum()
    (total_v,) = _get(client, total)
    ref = np.sum(np.asarray(yd, np.float64) ** 2)
    np.testing.assert_allclose(total_v, ref, rtol=1e-6)


def test_example_main_connects_to_a_running_scheduler(client, capsys):
    """``--scheduler ADDRESS``: the path to a multi-machine cluster (here the local one)."""
    ex = _load_example()
    addr = client.scheduler.address
    res = ex.main(
        ["--scheduler", addr, "--rows", "20000", "--cols", "4", "--rows-per-chunk", "5000"]
    )
    out = capsys.readouterr().out
    assert f"2 workers at {addr}" in out and "NumPy check" in out
    assert client.scheduler_info()["workers"]  # the example closed only its own client
    assert abs(res["loss"] / res["numpy_loss"] - 1) < 1e-6
    assert res["max_feature_diff"] < 1e-6
