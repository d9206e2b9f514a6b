"""The element-wise loops over raw addresses (``fastact.host.elementwise.address_kernels``,
used by ``fastact.torch`` on tensor memory): bit for bit the array loops' results, serial and
parallel, every kind, float32 and float64, odd sizes (vector tails), in place included (a
parfor over an array made by ``carray`` in the same function lost its stores: the parallel
in-place loop once wrote nothing)."""

from __future__ import annotations

import numpy as np
import pytest

from fastact.activations import scalar_params
from fastact.host.elementwise import address_kernels, kernels
from fastact.kernels.activations import ACTIVATIONS

#: one of each family: exact, parametrized, transcendental, piecewise, with grad_output
CASES = [
    ("relu", ()),
    ("leaky_relu", (0.2,)),
    ("elu", (0.7,)),
    ("sigmoid", ()),
    ("gelu", ()),
    ("mish", ()),
    ("hardswish", ()),
    ("softplus", (2.0, 5.0)),
]


def _arrays(n: int, dtype: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(n) * 4).astype(dtype)
    special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan], dtype)
    x[: min(n, 5)] = special[: min(n, 5)]
    return x, rng.standard_normal(n).astype(dtype)


@pytest.mark.parametrize("mode", [0, 1], ids=["serial", "parallel"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name,values", CASES, ids=[c[0] for c in CASES])
def test_address_loops_are_the_array_loops(name, values, dtype, mode):
    op = ACTIVATIONS[name]
    kp = scalar_params(op, values, np.dtype(dtype))
    for n in (1, 37, 70001):  # one element, a vector tail, many blocks
        x, g = _arrays(n, dtype)
        ref = np.empty_like(x)
        kernels(op, "forward")[0](x, ref, *kp)
        out = np.full_like(x, np.nan)
        address_kernels(op, "forward", dtype)[mode](x.ctypes.data, out.ctypes.data, n, *kp)
        np.testing.assert_array_equal(out, ref)
        z = x.copy()
        address_kernels(op, "inplace", dtype)[mode](z.ctypes.data, n, *kp)
        np.testing.assert_array_equal(z, ref)
        kinds = [("grad", x)] + ([("grad_output", ref)] if op.scalars["grad_output"] else [])
        for kind, v in kinds:
            gref = np.empty_like(x)
            kernels(op, kind)[0](g, v, gref, *kp)
            gout = np.full_like(x, np.nan)
            address_kernels(op, kind, dtype)[mode](
                g.ctypes.data, v.ctypes.data, gout.ctypes.data, n, *kp
            )
            np.testing.assert_array_equal(gout, gref)
    # the loops touch exactly n elements
    x, _ = _arrays(64, dtype)
    out = np.full(66, 7.0, dtype)
    address_kernels(op, "forward", dtype)[mode](x.ctypes.data, out[1:].ctypes.data, 64, *kp)
    assert out[0] == 7.0 and out[65] == 7.0
