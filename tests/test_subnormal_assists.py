"""Saturated inputs (the result is 0, +-1 or x) run without subnormal intermediates: on Intel
CPUs each vector operation with a subnormal operand or result takes a microcode assist, and
gelu(tanh) at x = 20, gelu at 20, tanh' at 60 or sigmoid at 100 took 7-12x the time of
x = 2. Checked through the fact itself: the x86 underflow and denormal flags of the thread
that ran the (serial) loop, and the values."""

from __future__ import annotations

import numpy as np
import pytest
from fpflags import X86, raised

from fastact.host.elementwise import kernels
from fastact.kernels.activations import ACTIVATIONS

pytestmark = pytest.mark.skipif(not X86, reason="reads the x86 MXCSR register")

F32 = (20.0, 60.0, 100.0, 1e4, 3e38)
F64 = (800.0, 1e4, 1e300)


def _x(values, signs, dtype):
    return np.array([s * v for v in values for s in signs], dtype)


#: (function, kind, params, signs of the saturated inputs per dtype)
CASES = [
    ("sigmoid", "forward", (), (1,)),
    ("tanh", "grad", (), (1, -1)),
    ("softplus", "forward", (1.0, 20.0), (1,)),
    ("softplus", "grad", (1.0, 20.0), (1,)),
    ("logsigmoid", "forward", (), (-1,)),
    ("gelu", "grad", (), (1, -1)),
    ("gelu_tanh", "forward", (), (1,)),
    ("gelu_tanh", "grad", (), (1, -1)),
]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(("name", "kind", "params", "signs"), CASES)
def test_saturated_inputs_raise_no_underflow(name, kind, params, signs, dtype):
    op = ACTIVATIONS[name]
    values = F32 if dtype == "float32" else F64
    if name == "tanh":  # tanh' is 0 from |x| = 52 (float32) on; at 20 it is 1.7e-17
        values = tuple(v for v in values if v > 52)
    x = _x(values, signs, dtype)
    x = np.repeat(x, 16)  # whole vectors of each value, and a scalar remainder
    x = np.concatenate([x, x[:5]])
    g = np.ones_like(x)
    out = np.empty_like(x)
    serial, _ = kernels(op, kind)
    if kind == "forward":
        call = lambda: serial(x, out, *params)  # noqa: E731
    else:
        call = lambda: serial(g, x, out, *params)  # noqa: E731
    call()  # compile first
    assert raised(call) == 0, f"{name} {kind} {dtype}: underflow or denormal flag raised"
    # the saturated values themselves
    expect = {
        ("sigmoid", "forward"): np.ones_like(x),
        ("softplus", "forward"): x,
        ("logsigmoid", "forward"): x,
        ("gelu_tanh", "forward"): x,
        ("tanh", "grad"): np.zeros_like(x),
        ("softplus", "grad"): np.ones_like(x),
        ("gelu", "grad"): np.where(x > 0, 1.0, 0.0).astype(dtype),
        ("gelu_tanh", "grad"): np.where(x > 0, 1.0, 0.0).astype(dtype),
    }[(name, kind)]
    np.testing.assert_array_equal(out, expect)


@pytest.mark.parametrize("dtype", ["float32"])
def test_gelu_forward_saturated_without_underflow(dtype):
    """gelu at |x| >= 14.5: x itself above, -0 below (float32)."""
    op = ACTIVATIONS["gelu"]
    x = np.repeat(np.array([20.0, 60.0, 1e30, -20.0, -1e30], dtype), 16)
    out = np.empty_like(x)
    serial, _ = kernels(op, "forward")
    serial(x, out)
    assert raised(lambda: serial(x, out)) == 0
    np.testing.assert_array_equal(out, np.where(x > 0, x, -0.0))
    assert np.signbit(out[x < 0]).all()


def test_the_flags_are_read():
    """The check can fail: a product that underflows raises the flag."""
    x = np.full(64, 1e-30, np.float32)
    out = np.empty_like(x)
    assert raised(lambda: np.multiply(x, x, out=out)) != 0
    assert raised(lambda: np.multiply(x, 2, out=out)) == 0


def test_the_inputs_near_saturation_keep_their_values():
    """Just inside the bounds the formulas run on x itself (values against float64 math)."""
    import math

    import fastact

    x = np.array([12.9, 9.4, -9.0, -11.4, 86.0], np.float32)
    np.testing.assert_allclose(
        fastact.gelu_backward(np.ones_like(x), x, approximate="tanh")[:2], [1.0, 1.0]
    )
    t = np.array([51.0, -51.0], np.float32)  # a subnormal result: within 4 spacings
    ref = [4 * math.exp(-2 * 51.0) / (1 + math.exp(-2 * 51.0)) ** 2] * 2
    np.testing.assert_allclose(fastact.tanh_backward(np.ones_like(t), t), ref, atol=4 * 2.0**-149)
