"""fastact's host kernels on torch's OpenMP thread pool (fastact._core.torch_pool).

* The runtime found is the one torch's ``libtorch_cpu`` binds ``GOMP_parallel`` to (the file
  it is mapped from), and a launch runs on a team of that runtime: a probe kernel reads
  ``omp_get_thread_num``/``omp_get_num_threads`` of that library inside its shares.
* Every share runs exactly once, whatever the number of threads the runtime grants (the
  trampoline called from one thread, with no team, still does all the work).
* Optimizer steps and element-wise kernels (plain API on tensors, fastact.torch autograd)
  give the same bits on the pool as on numba's layer, and they do take the pool there.
* FASTACT_TORCH_POOL: ``always`` (the default: NumPy arrays too), ``tensors`` (NumPy arrays
  stay on numba's layer), ``never``; a bad value is a ValueError naming the variable.
* A forked child runs on numba's layer; concurrent callers get correct results.
"""

from __future__ import annotations

import ctypes
import math
import multiprocessing as mp
import os
import threading

import numba
import numpy as np
import pytest
import torch
from numba import njit

import fastact
import fastact.optim as fo
import fastact.torch.nn as FN
from fastact import losses
from fastact._core import torch_pool as tp
from fastact._core.jit import fetch_add
from fastact.host.optim import SERIAL_BELOW
from fastact.kernels.activations import ACTIVATIONS

N_OPT = SERIAL_BELOW * 3 + 1001  # several chunks, a ragged last one
N_ACT = 1 << 18  # past every activation's crossover
N_ACT += 77  # shares end between alignment steps


@pytest.fixture(autouse=True)
def _two_torch_threads(monkeypatch):
    n = torch.get_num_threads()
    torch.set_num_threads(2)
    monkeypatch.delenv("FASTACT_TORCH_POOL", raising=False)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def launches(monkeypatch):
    """Counts of run_split and address_launch calls (the launches that went to the pool)."""
    calls = []
    original = tp.run_split

    def spy(kernel, args, split, threads, align=1):
        calls.append((kernel.py_func.__name__, threads))
        return original(kernel, args, split, threads, align)

    monkeypatch.setattr(tp, "run_split", spy)
    import fastact.host.launch as hl
    import fastact.host.losses as hls
    import fastact.host.optim as ho
    import fastact.torch.autograd as ta

    for mod in (hl, hls, ho):
        monkeypatch.setattr(mod, "run_split", spy)
    # fastact.torch's element-wise launches go by the tensors' addresses
    original_address = tp.address_launch

    def address_spy(kernel, dtype, k, nf, align=1):
        run = original_address(kernel, dtype, k, nf, align)

        def counted(threads, n, *args):
            calls.append((kernel.py_func.__name__, threads))
            return run(threads, n, *args)

        return counted

    monkeypatch.setattr(ta, "address_launch", address_spy)
    monkeypatch.setattr(ta, "_POOL_RUNS", {})
    return calls


def _runtime_library() -> str:
    rt = tp._runtime()
    assert rt is not None, tp.report()
    return rt["library"]


def test_runtime_is_the_one_torch_links():
    lib = _runtime_library()
    assert os.path.isfile(lib)
    # the file libtorch_cpu resolves GOMP_parallel to: look the symbol up in its scope
    mapped = [line.split()[-1] for line in open("/proc/self/maps") if "libtorch_cpu" in line]
    handle = ctypes.CDLL(mapped[0])
    addr = ctypes.cast(handle.GOMP_parallel, ctypes.c_void_p).value
    assert tp._mapped_file(addr) == lib
    # and torch says it runs on OpenMP
    assert "OpenMP" in torch.__config__.parallel_info()
    shipped = [
        os.path.join(torch.__path__[0], "lib", f)
        for f in os.listdir(os.path.join(torch.__path__[0], "lib"))
        if f.startswith("libgomp")
    ]
    if shipped:  # the pip wheel ships its own libgomp: that one, not the system's
        assert any(os.path.samefile(lib, f) for f in shipped)
    assert tp.report()["torch_pool_runtime"] == lib


def _omp_probe():
    lib = ctypes.CDLL(_runtime_library())
    tnum, tcount = lib.omp_get_thread_num, lib.omp_get_num_threads
    for f in (tnum, tcount):
        f.restype, f.argtypes = ctypes.c_int, []

    @numba.njit
    def probe(ids, teams, hits, arrived, meet):
        # each share first waits (up to about a second) until ``meet`` shares have started:
        # under load (another process on the other core) the first thread could otherwise
        # claim every share before the second is scheduled
        fetch_add(arrived.ctypes.data, 1)
        k = 0
        while fetch_add(arrived.ctypes.data, 0) < meet and k < 50_000_000:
            k += 1
        for i in range(ids.shape[0]):
            ids[i] = tnum()
            teams[i] = tcount()
            hits[i] += 1
            # ~1 us of work per element: a share outlasts a sleeping worker's wake-up, so
            # the first thread cannot claim every share before the second arrives
            acc = 0.0
            for j in range(400):
                acc = acc * 0.999 + math.sqrt(j + i)
            hits[i] += acc < 0  # keeps the loop (never true)

    return probe


def test_launch_runs_on_a_team_of_torchs_runtime():
    probe = _omp_probe()
    n = 10_000  # 2 shares of ~5 ms
    ids, teams, hits = (np.zeros(n, np.int64) for _ in range(3))
    tp.run_split(probe, (ids, teams, hits, np.zeros(1, np.int64), 2), (0, 1, 2), 2, align=64)
    assert (hits == 1).all()
    assert (teams == 2).all()
    assert set(ids.tolist()) == {0, 1}
    # contiguous shares starting at multiples of 64
    change = np.flatnonzero(np.diff(ids)) + 1
    assert len(change) == 1 and change[0] % 64 == 0


def test_every_share_runs_once_without_a_team():
    """The trampoline called on this thread alone (no OpenMP team) claims all 4 shares."""
    probe = _omp_probe()
    n = 1000
    ids, teams, hits = (np.zeros(n, np.int64) for _ in range(3))
    tramp, blk, _fl = tp.prepare(probe, (ids, teams, hits, np.zeros(1, np.int64), 0), (0, 1, 2),
                                 4, align=8)  # fmt: skip
    ctypes.CFUNCTYPE(None, ctypes.c_void_p)(tramp.address)(blk.ctypes.data)
    assert (hits == 1).all()
    assert (teams == 1).all()
    assert blk[2] == 5  # 4 shares claimed, then one claim past the end


def test_split_arrays_must_agree():
    probe = _omp_probe()
    with pytest.raises(ValueError, match="one leading length"):
        tp.run_split(probe, (np.zeros(3, np.int64), np.zeros(4, np.int64), np.zeros(3, np.int64),
                             np.zeros(1, np.int64), 0), (0, 1), 2)  # fmt: skip


def test_scaled_split_takes_whole_chunks_of_the_other_arrays():
    """A split entry (i, k): a share of rows [lo, hi) of the first array takes rows
    [k lo, k hi) of args[i], clipped to its length (a chunked kernel's last partial chunk;
    an empty array stays empty); None and tuples of numbers pass through."""

    @njit
    def chunk_sums(sums, x, ids, empty, nothing, pair):
        for k in range(sums.size):
            sums[k] = x[k * 7 : (k + 1) * 7].sum() + pair[0] * pair[1]
        for i in range(x.size):
            ids[i] = ids[i] + 1 if nothing is None else -1
        for i in range(empty.size):
            empty[i] = 1.0

    x = np.arange(100, dtype=np.float64)  # 15 chunks of 7, the last of 2
    sums, ids, empty = np.zeros(15), np.zeros(100, np.int64), np.zeros(0)
    tramp, blk, _fl = tp.prepare(
        chunk_sums, (sums, x, ids, empty, None, (2.0, 3)), (0, (1, 7), (2, 7), (3, 7)), 4
    )
    ctypes.CFUNCTYPE(None, ctypes.c_void_p)(tramp.address)(blk.ctypes.data)
    assert np.array_equal(sums, [x[k * 7 : (k + 1) * 7].sum() + 6.0 for k in range(15)])
    assert (ids == 1).all()  # every element in exactly one share
    with pytest.raises(ValueError, match="first one 1"):
        tp.prepare(chunk_sums, (sums, x, ids, empty, None, (2.0, 3)), ((1, 7), 0), 2)


def _rows(x):
    """Rows of 100 classes."""
    return x.reshape(-1, 100)


def _labels(t):
    """One class index in [0, 100) per row of :func:`_rows`."""
    return (np.abs(t[::100]) * 30).astype(np.int64) % 100


LOSS_CASES = {
    "mse": lambda x, t, w, red: losses.mse_loss(x, t, reduction=red, return_grad=True),
    "bce_with_logits (weights)": lambda x, t, w, red: losses.binary_cross_entropy_with_logits(
        x, (t > 0).astype(x.dtype), weight=w, pos_weight=w, reduction=red, return_grad=True
    ),
    "poisson_nll": lambda x, t, w, red: losses.poisson_nll_loss(
        x, np.abs(t), reduction=red, return_grad=True
    ),
    "cross_entropy": lambda x, t, w, red: losses.cross_entropy(
        _rows(x), _labels(t), reduction=red, return_grad=True, label_smoothing=0.1
    ),
    "cross_entropy (probabilities)": lambda x, t, w, red: losses.cross_entropy(
        _rows(x), _rows(np.abs(t)), reduction=red, return_grad=True
    ),
    "cross_entropy (spatial)": lambda x, t, w, red: losses.cross_entropy(
        x[: 20 * 50 * 1000].reshape(20, 50, 1000),
        (np.abs(t[: 20 * 1000]) * 30).astype(np.int64).reshape(20, 1000) % 50,
        reduction=red,
        return_grad=True,
        weight=w[:50],
    ),
    "nll": lambda x, t, w, red: losses.nll_loss(
        _rows(x), _labels(t), reduction=red, return_grad=True, ignore_index=3
    ),
    "multilabel_soft_margin": lambda x, t, w, red: losses.multilabel_soft_margin_loss(
        _rows(x), _rows((t > 0).astype(x.dtype)), reduction=red, return_grad=True
    ),
}


@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("name", list(LOSS_CASES))
def test_losses_same_bits_on_the_pool(name, reduction, launches):
    """The chunked loss kernels on the pool (each thread on whole chunks): the values,
    chunk sums and gradients of numba's parallel kernel, bit for bit."""
    rng = np.random.default_rng(7)
    n = 1_000_300  # chunks of 16384 and a partial last one
    x, t, w = (rng.standard_normal(n).astype(np.float32) for _ in range(3))
    got = LOSS_CASES[name](x, t, np.abs(w), reduction)
    assert len(launches) == 1
    os.environ["FASTACT_TORCH_POOL"] = "never"
    try:
        ref = LOSS_CASES[name](x, t, np.abs(w), reduction)
    finally:
        del os.environ["FASTACT_TORCH_POOL"]
    for a, b in zip(ref, got, strict=True):
        assert np.array_equal(np.asarray(a).view(np.uint32), np.asarray(b).view(np.uint32))


def test_loss_domain_errors_on_the_pool(launches):
    """A chunk's count of elements outside the domain reaches the caller from the pool."""
    p = np.full(200_000, 0.5, np.float32)
    p[123_457] = 1.5
    with pytest.raises(ValueError, match="between 0 and 1"):
        losses.binary_cross_entropy(p, np.zeros_like(p), return_grad=True)
    assert len(launches) == 1


OPTIMIZERS = [
    ("SGD", dict(lr=0.01, momentum=0.9, nesterov=True)),
    ("Adam", dict(lr=1e-3, amsgrad=True)),
    ("AdamW", dict(lr=1e-3)),
    ("Adamax", dict(lr=1e-3)),
    ("RMSprop", dict(lr=1e-3, momentum=0.5, centered=True)),
    ("Rprop", dict(lr=1e-3)),
    ("Adagrad", dict(lr=1e-2)),
    ("Adadelta", dict(lr=1.0)),
    ("AdamW8bit", dict(lr=1e-3)),
    ("SGD8bit", dict(lr=0.01, momentum=0.9)),
    ("AdamW", dict(lr=1e-3, state_dtype="bfloat16")),
]


def _trajectory(name, kw, mode, dtype=torch.float32, steps=3):
    os.environ["FASTACT_TORCH_POOL"] = mode
    try:
        g = torch.Generator().manual_seed(0)
        ps = [torch.randn(N_OPT, generator=g).to(dtype), torch.randn(257, generator=g).to(dtype)]
        opt = getattr(fo, name)(ps, **kw)
        for s in range(steps):
            for p in ps:
                p.grad = (torch.randn(p.shape, generator=g) * (s + 1)).to(dtype)
            opt.step()
        return [p.clone() for p in ps], opt.state_dict()
    finally:
        del os.environ["FASTACT_TORCH_POOL"]


@pytest.mark.parametrize(
    "name,kw", OPTIMIZERS, ids=[f"{n}-{i}" for i, (n, _) in enumerate(OPTIMIZERS)]
)
def test_optimizer_steps_same_bits_on_the_pool(name, kw, launches, monkeypatch):
    """The pool runs the serial build by shares of the chunk table: the bits of the serial
    build over the whole table on this thread. (The parallel build on numba's layer may
    differ in the last bit where LLVM contracts a multiply-add differently: RMSprop.)"""
    import fastact.host.optim as ho

    with monkeypatch.context() as m:
        m.setattr(ho, "SERIAL_BELOW", 1 << 60)
        ref, ref_state = _trajectory(name, kw, "never")
    assert launches == []
    got, got_state = _trajectory(name, kw, "tensors")
    assert launches and all(t == 2 for _, t in launches)
    for a, b in zip(ref, got, strict=True):
        assert torch.equal(a, b)
    for k, st in ref_state["state"].items():
        for key, v in st.items():
            w = got_state["state"][k][key]
            if torch.is_tensor(v):
                assert torch.equal(v.view(-1).view(torch.uint8), w.view(-1).view(torch.uint8))
            else:
                assert np.array_equal(np.asarray(v), np.asarray(w)), (k, key)
    par, _ = _trajectory(name, kw, "never")  # numba's parallel build: within an ulp or two
    for a, b in zip(par, got, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("state_dtype", ["float32", "bfloat16"])
def test_one_kernel_in_two_dtypes_gets_two_trampolines(state_dtype, launches, monkeypatch):
    """One low-precision loop runs float32 and bfloat16 parameters (two specializations of one
    dispatcher): each gets its own trampoline, in memory and in fastact's cache (a cache key
    without the argument types once loaded the float32 code for bfloat16 tensors: a heap
    overrun that crashed the process later)."""
    import fastact.host.optim as ho

    kw = dict(lr=1e-3, state_dtype=state_dtype)
    for dtype in (torch.float32, torch.bfloat16):  # the float32 one compiled (cached) first
        with monkeypatch.context() as m:
            m.setattr(ho, "SERIAL_BELOW", 1 << 60)
            ref, _ = _trajectory("AdamW", kw, "never", dtype)
        got, _ = _trajectory("AdamW", kw, "tensors", dtype)
        for a, b in zip(ref, got, strict=True):
            assert a.dtype == dtype and torch.equal(a, b)
    assert len(launches) >= 6
    if state_dtype == "bfloat16":  # both through the bfloat16-state loop
        srcs = {k[1] for k in tp._tramps if k[0] in {id(v) for v in ho._LOWP.values()}}
        assert len(srcs) >= 2  # float32 and bfloat16 argument descriptions


def test_bfloat16_params_with_stochastic_rounding_same_bits(launches):
    kw = dict(lr=1e-3, stochastic_rounding=True)
    ref, _ = _trajectory("AdamW8bit", kw, "never", torch.bfloat16)
    got, _ = _trajectory("AdamW8bit", kw, "tensors", torch.bfloat16)
    assert launches
    for a, b in zip(ref, got, strict=True):
        assert torch.equal(a, b)


def test_nonfinite_check_on_the_pool(launches, monkeypatch):
    monkeypatch.setenv("FASTACT_TORCH_POOL", "tensors")
    p = torch.zeros(N_OPT)
    p.grad = torch.zeros(N_OPT)
    p.grad[N_OPT - 3] = float("nan")  # in the last share
    opt = fo.SGD([p], lr=0.1)
    opt.step(skip_nonfinite=True)
    assert any(k.startswith("optim_nonfinite") for k, _ in launches)
    assert opt.found_inf and torch.equal(p, torch.zeros(N_OPT))  # the step was skipped
    p.grad[N_OPT - 3] = 1.0
    opt.step(skip_nonfinite=True)
    assert not opt.found_inf and p[N_OPT - 3] == -0.1


UNARY = sorted(
    name
    for name, op in ACTIVATIONS.items()
    if op.arity == 1 and hasattr(fastact, name + "_backward")
)
#: One of each loop shape (the trampoline is one generated function for all of them): no
#: parameter, the streaming and the plain loops, the split loops of the accurate gradients
#: (gelu, silu, mish), one, two and required parameters, the in-place forms. Each costs a
#: few seconds of compilation on a cold cache, so not all of UNARY.
ELEMENTWISE = ["relu", "gelu", "silu", "mish", "elu", "hardtanh", "threshold", "softplus",
               "tanhshrink", "logsigmoid", "leaky_relu"]  # fmt: skip


def test_the_sample_of_activations_is_unary():
    assert set(ELEMENTWISE) <= set(UNARY) and len(UNARY) >= 20


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_activations_same_bits_on_the_pool(name, launches):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(N_ACT, generator=g) * 4
    x[::1000] = torch.tensor([float("nan"), float("inf"), -float("inf"), -0.0] * 66)[
        : x[::1000].numel()
    ]
    gy = torch.randn(N_ACT, generator=g)
    fwd, bwd = getattr(fastact, name), getattr(fastact, name + "_backward")
    params = (0.5, -1.0) if name == "threshold" else ()  # its required parameters
    out = {}
    for mode in ("never", "tensors"):
        os.environ["FASTACT_TORCH_POOL"] = mode
        try:
            y = fwd(x, *params)
            dx = bwd(gy, x, *params)
            xi = x.clone()
            inplace = getattr(fastact, name + "_", None)
            if inplace is not None:
                inplace(xi, *params)
            out[mode] = (y, dx, xi)
        finally:
            del os.environ["FASTACT_TORCH_POOL"]
        if mode == "never":
            assert launches == []
    assert launches, "the tensor calls did not take the pool"
    for a, b in zip(out["never"], out["tensors"], strict=True):
        assert (
            torch.equal(a, b)
            or (a.isnan() == b.isnan()).all()
            and torch.equal(a.nan_to_num(0.0), b.nan_to_num(0.0))
        )


@pytest.mark.parametrize("name", ["gelu", "silu", "relu", "softplus"])
def test_numpy_arrays_take_the_pool_by_default_with_the_same_bits(name, launches):
    """With torch imported, NumPy work takes torch's pool too (FASTACT_TORCH_POOL unset):
    the bits of numba's layer."""
    rng = np.random.default_rng(3)
    x = (rng.standard_normal(N_ACT) * 4).astype(np.float32)
    gy = rng.standard_normal(N_ACT).astype(np.float32)
    fwd, bwd = getattr(fastact, name), getattr(fastact, name + "_backward")
    got = (fwd(x), bwd(gy, x))
    assert len(launches) == 2
    os.environ["FASTACT_TORCH_POOL"] = "never"
    try:
        ref = (fwd(x), bwd(gy, x))
    finally:
        del os.environ["FASTACT_TORCH_POOL"]
    assert len(launches) == 2
    for a, b in zip(ref, got, strict=True):
        assert np.array_equal(a.view(np.uint32), b.view(np.uint32))


@pytest.mark.parametrize("name", ["softmax", "log_softmax", "softmin"])
@pytest.mark.parametrize("shape,dim", [((1031, 257), -1), ((64, 37, 129), 1)])
def test_softmax_family_same_bits_on_the_pool(name, shape, dim, launches):
    """Rows (the leading axis of the (outer, C, inner) view) split between the team: the
    bits of numba's parallel kernel, forward and backward from the output."""
    rng = np.random.default_rng(5)
    x = (rng.standard_normal(shape) * 3).astype(np.float32)
    g = rng.standard_normal(shape).astype(np.float32)
    fwd, bwd = getattr(fastact, name), getattr(fastact, name + "_backward")

    def both():
        y = fwd(x, dim)
        return y, bwd(g, output=y, dim=dim)

    got = both()
    assert len(launches) == 2
    os.environ["FASTACT_TORCH_POOL"] = "never"
    try:
        ref = both()
    finally:
        del os.environ["FASTACT_TORCH_POOL"]
    for a, b in zip(ref, got, strict=True):
        assert np.array_equal(a.view(np.uint32), b.view(np.uint32))


def test_softmax_with_few_rows_stays_on_numbas_layer(launches):
    """Fewer than MIN_ROWS_PER_THREAD rows per thread: numba's kernel, which also splits
    inside the rows' blocks."""
    from fastact.host.launch import MIN_ROWS_PER_THREAD

    x = np.random.default_rng(6).standard_normal((MIN_ROWS_PER_THREAD, 16, 8192))
    y = fastact.softmax(x.astype(np.float32), 1)
    assert launches == []
    assert np.allclose(y.sum(axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("module", ["GELU", "SiLU", "Tanh", "Mish", "ELU"])
def test_autograd_modules_same_bits_on_the_pool(module, launches):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(N_ACT, generator=g)
    gy = torch.randn(N_ACT, generator=g)
    res = {}
    for mode in ("never", "tensors"):
        os.environ["FASTACT_TORCH_POOL"] = mode
        try:
            xr = x.clone().requires_grad_(True)
            y = getattr(FN, module)()(xr)
            y.backward(gy)
            res[mode] = (y.detach(), xr.grad)
        finally:
            del os.environ["FASTACT_TORCH_POOL"]
    kinds = {k for k, _ in launches}
    assert any("forward" in k for k in kinds) and any("grad" in k for k in kinds), kinds
    for a, b in zip(res["never"], res["tensors"], strict=True):
        assert torch.equal(a, b)


def test_modes(launches, monkeypatch):
    x = np.random.default_rng(0).standard_normal(N_ACT).astype(np.float32)
    t = torch.from_numpy(x.copy())
    fastact.gelu(x)  # unset: the default, always
    assert len(launches) == 1
    launches.clear()
    monkeypatch.setenv("FASTACT_TORCH_POOL", "tensors")
    fastact.gelu(x)
    assert launches == []  # NumPy arrays stay on numba's layer
    fastact.gelu(t)
    assert len(launches) == 1
    monkeypatch.setenv("FASTACT_TORCH_POOL", "always")
    fastact.gelu(x)
    assert len(launches) == 2
    monkeypatch.setenv("FASTACT_TORCH_POOL", "never")
    fastact.gelu(t)
    assert len(launches) == 2
    monkeypatch.setenv("FASTACT_TORCH_POOL", "sometimes")
    with pytest.raises(ValueError, match="FASTACT_TORCH_POOL"):
        fastact.gelu(t)
    monkeypatch.setenv("FASTACT_TORCH_POOL", "tensors")
    fastact.gelu(t[:1000])  # below the crossover: the serial loop on this thread
    assert len(launches) == 2


def test_one_torch_thread_or_one_numba_thread_stays_off_the_pool(launches):
    t = torch.randn(N_ACT)
    torch.set_num_threads(1)
    fastact.gelu(t)
    torch.set_num_threads(2)
    numba.set_num_threads(1)
    fastact.gelu(t)
    assert launches == []
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    fastact.gelu(t)
    assert len(launches) == (1 if numba.get_num_threads() > 1 else 0)


def _ones() -> torch.Tensor:
    """A tensor of ones made without a torch operator."""
    return torch.from_numpy(np.ones(N_OPT, np.float32))


def _child(q):
    try:
        p = _ones()
        p.grad = _ones()
        fo.SGD([p], lr=0.5).step()
        # torch's own parallel operators: they waited forever on the parent's OpenMP pool,
        # which fastact had started (torch runs them on one thread in the child now)
        big = torch.from_numpy(np.ones(1 << 22, np.float32))
        total = float((big.clone() * 2).sum())
        q.put((tp.pool_threads(N_OPT, 0, True), float(p.numpy().sum()), total))
    except Exception as e:  # pragma: no cover - reported to the parent
        q.put(repr(e))


def test_forked_child_runs_on_numbas_layer():
    p = _ones()
    p.grad = _ones()
    fo.SGD([p], lr=0.5).step()  # the parent has used the pool
    assert tp.pool_threads(N_OPT, 0, True) == 2
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    proc = ctx.Process(target=_child, args=(q,), daemon=True)
    proc.start()
    try:
        res = q.get(timeout=120)  # a launch on the inherited pool would hang the child
        proc.join(60)
        assert proc.exitcode == 0
        assert res == (0, 0.5 * N_OPT, 2.0 * (1 << 22))
    finally:
        if proc.is_alive():
            proc.kill()


def test_concurrent_callers():
    os.environ["FASTACT_TORCH_POOL"] = "tensors"
    try:
        ref = []
        for seed in range(4):
            g = torch.Generator().manual_seed(seed)
            ref.append(fastact.silu(torch.randn(N_ACT, generator=g)))
        got = [None] * 4

        def work(i):
            g = torch.Generator().manual_seed(i)
            x = torch.randn(N_ACT, generator=g)
            for _ in range(20):
                got[i] = fastact.silu(x)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        for a, b in zip(ref, got, strict=True):
            assert torch.equal(a, b)
    finally:
        del os.environ["FASTACT_TORCH_POOL"]


def test_info_reports_the_pool():
    from fastact.info import report

    d = report()
    assert d["torch_pool_mode"] == "always"
    assert d["torch_pool_runtime"] == _runtime_library()
    assert d["torch_pool_forked_child"] is False


def test_element_wise_launch_block_is_the_general_one():
    """The element-wise launches (arrays split along one length, then Python floats) run
    through a compiled launcher that builds the block in jit code: the same trampoline as the
    general description, and the same bits as that block run directly and as the serial
    kernel (no float, two, one); anything else has no launcher and takes the general path."""
    from fastact.activations import scalar_params
    from fastact.host.elementwise import kernels

    for name, values in (("relu", ()), ("hardtanh", (-0.5, 0.25)), ("elu", (0.7,))):
        op = ACTIVATIONS[name]
        k = kernels(op, "forward")[0]
        x = np.random.default_rng(0).standard_normal(1000)
        y, z, w = np.empty_like(x), np.empty_like(x), np.empty_like(x)
        args = (x, y, *scalar_params(op, values, x.dtype))
        tramp, launcher = tp._flat_entry(k, args, range(2), 64)
        ref, blk, _fl = tp.prepare(k, (x, w, *args[2:]), range(2), 2, 64)
        assert tramp is ref
        tp.run_split(k, args, range(2), 2, 64)
        ctypes.CFUNCTYPE(None, ctypes.c_void_p)(ref.address)(blk.ctypes.data)
        k(x, z, *args[2:])
        np.testing.assert_array_equal(y, z)
        np.testing.assert_array_equal(w, z)
    # the general path: a 2-d array, two dtypes, a NumPy scalar, a split that is not range(k)
    x2 = x.reshape(10, 100)
    assert tp._flat_entry(k, (x2, np.empty_like(x2), *args[2:]), range(2), 64) is None
    assert tp._flat_entry(k, (x, y.astype(np.float32), *args[2:]), range(2), 64) is None
    assert tp._flat_entry(k, (x, y, np.float64(0.7)), range(2), 64) is None
    assert tp._flat_entry(k, args, (0, 1), 64) is None


def test_element_wise_launch_releases_the_gil():
    """The compiled launcher of the element-wise launches (one jit call that builds the block
    and calls GOMP_parallel) runs without the GIL, as the ctypes call did: another Python
    thread keeps running during a long launch."""
    import threading
    import time

    from fastact.activations import scalar_params
    from fastact.host.elementwise import kernels

    op = ACTIVATIONS["gelu"]
    k = kernels(op, "forward")[0]
    x = np.random.default_rng(1).standard_normal(1 << 23)
    y = np.empty_like(x)
    args = (x, y, *scalar_params(op, (), x.dtype))
    tp.run_split(k, args, range(2), 2, 256)  # compiled and warm
    ticks = []
    stop = threading.Event()

    def tick():
        while not stop.is_set():
            ticks.append(time.perf_counter())

    t = threading.Thread(target=tick)
    t.start()
    time.sleep(0.01)
    t0 = time.perf_counter()
    tp.run_split(k, args, range(2), 2, 256)
    t1 = time.perf_counter()
    stop.set()
    t.join()
    during = [v for v in ticks if t0 < v < t1]
    assert len(during) > 10, (len(during), t1 - t0)
    assert tp._flat_entry(k, args, range(2), 256) is not None  # the compiled path ran


def test_bad_pool_setting_raises_before_an_optimizer_writes(monkeypatch):
    """An unknown FASTACT_TORCH_POOL raised only at the first launch past the crossover: a
    small group was stepped (and its count advanced) before a large one raised. Now the step
    raises first, nothing written."""
    import fastact.optim as fo

    small = np.ones(1000, np.float32)
    large = np.ones(1 << 17, np.float32)
    opt = fo.AdamW([{"params": [small]}, {"params": [large]}], lr=0.1)
    monkeypatch.setenv("FASTACT_TORCH_POOL", "bogus")
    with pytest.raises(ValueError, match="FASTACT_TORCH_POOL"):
        opt.step([np.ones_like(small), np.ones_like(large)])
    assert (small == 1).all() and (large == 1).all() and len(opt.state) == 0
    monkeypatch.setenv("FASTACT_TORCH_POOL", "tensors")
    opt.step([np.ones_like(small), np.ones_like(large)])
    assert (small < 1).all() and (large < 1).all()
