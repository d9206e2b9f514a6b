"""The host loops' streaming form (pieces with software prefetch, ``fastact._core.stream``):
the same bits as the plain loops, taken where it should be, and a hint that never faults."""

from __future__ import annotations

import numpy as np
import pytest

from fastact._core.stream import STREAM_MIN_BYTES
from fastact.host.elementwise import kernels
from fastact.kernels.activations import ACTIVATIONS
from fastact.kernels.elementwise import REQUIRED

#: parameter values for the specs without defaults
_PARAMS = {"threshold": (1.0, 0.5)}


def _params(op):
    if op.name in _PARAMS:
        return _PARAMS[op.name]
    return tuple(float(v) for _, v in op.params if v is not REQUIRED)


def _inputs(dtype, n, seed=0):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(n) * 3).astype(dtype)
    x[::997] = np.nan  # NaN, infinities and signed zeros go through the pieces too
    x[1::1009] = np.inf
    x[2::1013] = -np.inf
    x[3::1019] = -0.0
    g = rng.standard_normal(n).astype(dtype)
    return g, x


def _kinds(op):
    kinds = ["forward", "grad"]
    if op.scalars["grad_output"] is not None:
        kinds.append("grad_output")
    if op.inplace:
        kinds.append("inplace")
    return kinds


def _run(op, kind, g, x, chunk):
    """The parallel loop over the whole arrays (chunk=None) or the serial one over chunks
    small enough for the plain loop."""
    p = _params(op)
    serial, parallel = kernels(op, kind)
    out = np.empty_like(x)
    src = x.copy()
    spans = [(0, x.size)] if chunk is None else [(i, i + chunk) for i in range(0, x.size, chunk)]
    k = parallel if chunk is None else serial
    for lo, hi in spans:
        if kind == "inplace":
            k(src[lo:hi], *p)
        elif kind == "forward":
            k(src[lo:hi], out[lo:hi], *p)
        else:
            k(g[lo:hi], src[lo:hi], out[lo:hi], *p)
    return src if kind == "inplace" else out


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_streamed_loops_give_the_plain_loops_bits(name):
    """float32 arrays past STREAM_MIN_BYTES (not a multiple of a piece) through every kind:
    bit for bit the values of the plain loop run over chunks below the streaming size."""
    op = ACTIVATIONS[name]
    n = STREAM_MIN_BYTES // 4 + 1003
    g, x = _inputs(np.float32, n)
    for kind in _kinds(op):
        whole = _run(op, kind, g, x, None)
        parts = _run(op, kind, g, x, 1 << 16)
        np.testing.assert_array_equal(whole, parts, err_msg=f"{name} {kind}")


@pytest.mark.parametrize("name", ["sigmoid", "gelu", "gelu_tanh"])
def test_streamed_loops_give_the_plain_loops_bits_float64(name):
    op = ACTIVATIONS[name]
    n = STREAM_MIN_BYTES // 8 + 517
    g, x = _inputs(np.float64, n, seed=1)
    for kind in _kinds(op):
        np.testing.assert_array_equal(
            _run(op, kind, g, x, None), _run(op, kind, g, x, 1 << 15), err_msg=f"{name} {kind}"
        )


def _ir(kernel):
    """The kernel's LLVM IR. A function loaded from fastact's on-disk cache carries no IR:
    recompile it in memory first (same pipeline and options, the cache set aside)."""
    from numba.core.caching import NullCache

    ir = "\n".join(kernel.inspect_llvm().values())
    if "define " not in ir:
        kernel._cache = NullCache()
        kernel.recompile()
        ir = "\n".join(kernel.inspect_llvm().values())
    assert "define " in ir
    return ir


def test_prefetch_is_compiled_where_the_spec_streams():
    """The fact behind the speed: the compiled loops of a streaming spec hold the prefetch
    hint; relu's (``stream=False``: the hint cost its memory-bound loop 10-25%) and relu6's
    forward do not."""
    x = np.ones(STREAM_MIN_BYTES // 4 + 1, np.float32)
    out = np.empty_like(x)
    cases = (("gelu_tanh", True, True), ("sigmoid", True, True), ("relu", False, False))
    for name, *flags in (*cases, ("relu6", False, True)):
        op = ACTIVATIONS[name]
        for kind, streams in zip(("forward", "grad"), flags, strict=True):
            assert (kind in op.stream) is streams
            serial, parallel = kernels(op, kind)
            if kind == "forward":
                parallel(x, out)
            else:
                parallel(x, x, out)
            assert ("llvm.prefetch" in _ir(parallel)) is streams, (name, kind)


def test_user_kernels_stream_when_they_call_fastact_cores(monkeypatch):
    """``@fastact.elementwise``: a function calling a math core or a streaming activation
    streams (and gives the plain loop's bits); arithmetic alone, or relu alone, does not.
    (On numba's layer: the parallel kernel inspected below is the one that runs; with torch
    imported by an earlier test, torch's pool would run the serial one.)"""
    import fastact

    monkeypatch.setenv("FASTACT_TORCH_POOL", "never")
    from fastact.scalar import exp, gelu, leaky_relu, relu

    @fastact.elementwise
    def chain(x):
        return gelu(leaky_relu(2 * x + 1, 0.1))

    @fastact.elementwise
    def soft(x):
        return x * exp(-x * x)

    @fastact.elementwise
    def affine(x):
        return 2 * x + 1

    @fastact.elementwise
    def shifted_relu(x):
        return relu(x - 1)

    n = STREAM_MIN_BYTES // 4 + 77
    _, x = _inputs(np.float32, n, seed=2)
    for f, streams in ((chain, True), (soft, True), (affine, False), (shifted_relu, False)):
        whole = f(x)
        parts = np.concatenate([f(x[i : i + 50000]) for i in range(0, n, 50000)])
        np.testing.assert_array_equal(whole, parts, err_msg=f.__name__)
        (sp,) = f._forward.specs.values()
        assert ("forward" in sp.stream) is streams, f.__name__
        assert ("llvm.prefetch" in _ir(sp.host["forward"][1])) is streams, f.__name__
