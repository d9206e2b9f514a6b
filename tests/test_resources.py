"""Resources: no memory growth over many calls, no allocations in in-place calls and optimizer
steps, and indexing past 2**31 elements."""

from __future__ import annotations

import gc
import tracemalloc

import numpy as np
import psutil
import pytest

import fastact
import fastact.losses as L
import fastact.optim as O
from fastact.host.elementwise import kernels as host_kernels

MB = 1 << 20


def _small_calls(n: int, x, y, t, p, g, opt) -> None:
    for i in range(n):
        k = i % 5
        if k == 0:
            fastact.sigmoid(x, out=y)
        elif k == 1:
            fastact.relu_(y)
        elif k == 2:
            fastact.gelu_backward(x, y)
        elif k == 3:
            L.mse_loss(x, t, return_grad=True)
        else:
            opt.step([g])


@pytest.mark.slow
def test_no_rss_growth_over_100k_calls():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(64).astype(np.float32)
    y = np.empty_like(x)
    t = rng.standard_normal(64).astype(np.float32)
    p = rng.standard_normal(64).astype(np.float32)
    g = np.full_like(p, 1e-3)
    opt = O.Adam([p], lr=1e-4)
    proc = psutil.Process()
    _small_calls(10_000, x, y, t, p, g, opt)  # warm up: compile, caches, allocator pools
    gc.collect()
    before = proc.memory_info().rss
    _small_calls(100_000, x, y, t, p, g, opt)
    gc.collect()
    growth = proc.memory_info().rss - before
    # a leak of even 64 bytes per call would be ~6 MB
    assert growth < 4 * MB, f"RSS grew by {growth / MB:.1f} MB over 100,000 calls"
    assert np.isfinite(p).all()


def _peak_bytes(fn, repeats: int = 3) -> int:
    fn()  # warm up (compilation, cached plans)
    gc.collect()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base, _ = tracemalloc.get_traced_memory()
        for _ in range(repeats):
            fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak - base


N = 1 << 20
# "a few KB" of launch bookkeeping (a launch on torch's pool builds its argument block: ~0.5
# KB); any array copy of a 1M-element input would be 4 MB
LIMIT = 8192


@pytest.mark.parametrize(
    "call",
    [
        lambda x: fastact.relu_(x),
        lambda x: fastact.leaky_relu_(x, 0.1),
        lambda x: fastact.silu_(x),
        lambda x: fastact.hardtanh_(x, -2.0, 2.0),
        lambda x: fastact.elu(x, inplace=True),
        lambda x: fastact.sigmoid(x, out=x),
        lambda x: fastact.tanh_backward(x, x, out=x),
    ],
    ids=[
        "relu_",
        "leaky_relu_",
        "silu_",
        "hardtanh_",
        "elu-inplace",
        "sigmoid-out",
        "tanh_backward-out",
    ],
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_inplace_activations_allocate_nothing(call, dtype):
    x = np.linspace(-1, 1, N, dtype=dtype)
    peak = _peak_bytes(lambda: call(x))
    assert peak < LIMIT, f"peak {peak} bytes"


@pytest.mark.parametrize(
    "name", ["SGD", "Adam", "AdamW", "Adamax", "RMSprop", "Rprop", "Adagrad", "Adadelta"]
)
def test_optimizer_step_allocates_nothing(name):
    rng = np.random.default_rng(1)
    params = [
        rng.standard_normal(N).astype(np.float32),
        rng.standard_normal((256, 64)).astype(np.float32),
    ]
    grads = [np.full_like(q, 1e-3) for q in params]
    kwargs = {"momentum": 0.9} if name in ("SGD", "RMSprop") else {}
    opt = getattr(O, name)(params, lr=1e-3, **kwargs)
    opt.step(grads)  # creates the state
    peak = _peak_bytes(lambda: opt.step(grads))
    assert peak < LIMIT, f"{name}.step peak {peak} bytes"


def test_functional_step_allocates_nothing():
    import fastact.optim.functional as OF

    p = np.zeros(N, np.float32)
    g = np.full(N, 1e-3, np.float32)
    m, v = np.zeros_like(p), np.zeros_like(p)
    peak = _peak_bytes(lambda: OF.adam([p], [g], [m], [v], step=1.0, lr=1e-3))
    # the functional form builds its small launch tables (pointers, chunks) on every call:
    # about 12 KB here, independent of the data size (a copy would be 4 MB)
    assert peak < 16 * LIMIT, f"peak {peak} bytes"


@pytest.mark.slow
def test_indexing_past_2_31_elements():
    """Element-wise kernels loop over more than 2**31 elements without wrapping.

    Zero-stride views (np.lib.stride_tricks.as_strided) give the kernels an array of
    2**31 + 17 elements backed by a few bytes, so no 8 GiB buffer is needed. With a 32-bit
    loop counter the loop would run zero or a wrapped number of iterations.
    """
    n = (1 << 31) + 17
    op = fastact.ACTIVATIONS["relu"]
    src = np.array([-3.0, 5.0], np.float32)
    dst = np.full(4, np.nan, np.float32)
    x = np.lib.stride_tricks.as_strided(src[1:], shape=(n,), strides=(0,))
    out = np.lib.stride_tricks.as_strided(dst[2:], shape=(n,), strides=(0,))
    for kernel in host_kernels(op, "forward"):  # serial and parallel
        dst[:] = np.nan
        kernel(x, out)
        assert dst[2] == 5.0 and np.isnan(dst[[0, 1, 3]]).all()
    # the last element (index 2**31 + 16) of a strided view is where it should be
    big = np.lib.stride_tricks.as_strided(src, shape=(2, n), strides=(4, 0))
    assert big.shape[1] > 2**31 and big[1, n - 1] == 5.0
