"""Property tests of the activations.

* Backward agrees with central finite differences of the float64 forward (hypothesis,
  deterministic examples, away from the kinks) for every element-wise activation and
  parameter set, float32 and float64, and for the axis activations (softmax family, glu,
  prelu including its weight, maxout, rrelu in training mode with a fixed seed).
* Accuracy sampling: millions of float32 points (random bit patterns restricted to finite
  values plus dense ranges around the interesting regions) for sigmoid, tanh, softplus,
  logsigmoid, silu, elu and gelu against the float64 references, with the maximum ULP error
  bounded by the values measured with the current ``fastact._core.math`` cores.
"""

from __future__ import annotations

import numpy as np
import pytest
from activation_cases import CASES, DTYPES, default_params, ulp_error
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fastact

DT_IDS = ["f32", "f64"]
PARAM_CASES = [(n, i) for n, c in CASES.items() for i in range(len(c.param_sets))]
PARAM_IDS = [f"{n}-{i}" for n, i in PARAM_CASES]

FD = settings(
    max_examples=12,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

finite = st.floats(-30.0, 30.0, allow_nan=False, allow_subnormal=False)


def _central(f, x: np.ndarray, h: np.ndarray) -> np.ndarray:
    return (f(x + h) - f(x - h)) / (2 * h)


@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("name,pi", PARAM_CASES, ids=PARAM_IDS)
@FD
@given(
    xs=hnp.arrays(np.float64, st.integers(1, 16), elements=finite),
    gs=hnp.arrays(np.float64, 16, elements=st.floats(-2, 2)),
)
def test_backward_matches_finite_differences(name, pi, dtype, xs, gs):
    c = CASES[name]
    p = c.param_sets[pi]
    full = c.full_params(p)
    rp = c.ref_params(p, dtype)
    x = xs.astype(dtype).astype(np.float64)  # representable in dtype
    kinks = np.array(c.kinks(**rp), dtype=np.float64)  # incl. threshold's jump
    h = 1e-6 * np.maximum(1.0, np.abs(x))
    if kinks.size:
        far = np.all(np.abs(x[:, None] - kinks[None, :]) > 1e3 * h[:, None], axis=1)
        x, h = x[far], h[far]
    if x.size == 0:
        return
    g = gs[: x.size]
    g = np.where(np.abs(g) < 1e-3, 1.0, g).astype(dtype).astype(np.float64)  # no underflow
    fd = g * _central(lambda v: c.forward(v, **full), x, h)
    an = c.backward(g.astype(dtype), x.astype(dtype), **full).astype(np.float64)
    fx = np.abs(c.forward(x, **full))
    # FD error ~ eps * |f| / h + h^2 |f'''|; float32 gradients add a few float32 ULP
    tol = (1e-6 if dtype == np.float64 else 2e-5) * (np.abs(g) + np.abs(an)) + 1e-14 * fx / h
    bad = ~(np.abs(an - fd) <= tol)
    assert not bad.any(), (
        f"{name} {p}: x={x[bad]}, analytic {an[bad]}, central differences {fd[bad]}"
    )


def _directional(fun, grads, args, directions, g):
    """sum(g * (F(args + h d) - F(args - h d)) / 2h) vs sum(grad * d)."""
    h = 1e-6
    plus = fun(*[a + h * d for a, d in zip(args, directions, strict=True)])
    minus = fun(*[a - h * d for a, d in zip(args, directions, strict=True)])
    fd = np.sum(g * (plus - minus)) / (2 * h)
    an = sum(np.sum(gr * d) for gr, d in zip(grads, directions, strict=True))
    return fd, an


small = hnp.arrays(np.float64, (3, 4), elements=st.floats(-5, 5, allow_subnormal=False))


@pytest.mark.parametrize("name", ["softmax", "log_softmax", "softmin"])
@FD
@given(
    x=small, gd=hnp.arrays(np.float64, (2, 3, 4), elements=st.floats(-1, 1)), dim=st.integers(-2, 1)
)
def test_softmax_family_finite_differences(name, x, gd, dim):
    fwd = getattr(fastact, name)
    bwd = getattr(fastact, name + "_backward")
    g, d = gd
    fd, an = _directional(lambda v: fwd(v, dim), [bwd(g, x, dim)], [x], [d], g)
    assert abs(fd - an) <= 1e-6 * (1 + np.sum(np.abs(g))), (fd, an)
    fd2, an2 = _directional(
        lambda v: fwd(v, dim), [bwd(g, output=fwd(x, dim), dim=dim)], [x], [d], g
    )
    assert abs(fd2 - an2) <= 1e-6 * (1 + np.sum(np.abs(g))), (fd2, an2)


@FD
@given(
    x=hnp.arrays(np.float64, (4, 2, 6), elements=st.floats(-8, 8, allow_subnormal=False)),
    d=hnp.arrays(np.float64, (4, 2, 6), elements=st.floats(-1, 1)),
    dim=st.integers(-3, 2),
)
def test_glu_finite_differences(x, d, dim):
    y = fastact.glu(x, dim)
    g = np.cos(np.arange(y.size)).reshape(y.shape)
    fd, an = _directional(
        lambda v: fastact.glu(v, dim), [fastact.glu_backward(g, x, dim)], [x], [d], g
    )
    assert abs(fd - an) <= 1e-6 * (1 + np.sum(np.abs(g) * (1 + np.abs(x).max()))), (fd, an)


@FD
@given(
    x=hnp.arrays(np.float64, (2, 3, 4), elements=st.floats(-4, 4, allow_subnormal=False)),
    w=hnp.arrays(np.float64, st.sampled_from([1, 3]), elements=st.floats(-1, 1)),
    dx=hnp.arrays(np.float64, (2, 3, 4), elements=st.floats(-1, 1)),
)
def test_prelu_finite_differences(x, w, dx):
    x = np.where(np.abs(x) < 1e-3, 0.5, x)  # away from the kink
    dw = np.linspace(-1, 1, w.size)
    g = np.sin(np.arange(x.size)).reshape(x.shape)
    gx, gw = fastact.prelu_backward(g, x, w)
    fd, an = _directional(lambda a, b: fastact.prelu(a, b), [gx, gw], [x, w], [dx, dw], g)
    assert abs(fd - an) <= 1e-6 * (1 + np.sum(np.abs(g) * (1 + np.abs(x)))), (fd, an)


@FD
@given(
    x=hnp.arrays(
        np.float64, (2, 6, 3), elements=st.floats(-4, 4, allow_subnormal=False), unique=True
    ),
    d=hnp.arrays(np.float64, (2, 6, 3), elements=st.floats(-1, 1)),
    pieces=st.sampled_from([1, 2, 3, 6]),
)
def test_maxout_finite_differences(x, d, pieces):
    y = fastact.maxout(x, pieces, 1)
    grouped = np.sort(x.reshape(2, 6 // pieces, pieces, 3), axis=2)
    if pieces > 1 and np.min(np.diff(grouped, axis=2)) < 1e-3:
        return  # a near-tie: the max is not differentiable within the step
    g = np.cos(np.arange(y.size)).reshape(y.shape)
    fd, an = _directional(
        lambda v: fastact.maxout(v, pieces, 1),
        [fastact.maxout_backward(g, x, pieces, 1)],
        [x],
        [d],
        g,
    )
    assert abs(fd - an) <= 1e-6 * (1 + np.sum(np.abs(g))), (fd, an)


@FD
@given(
    x=hnp.arrays(np.float64, 20, elements=st.floats(-5, 5, allow_subnormal=False)),
    d=hnp.arrays(np.float64, 20, elements=st.floats(-1, 1)),
    seed=st.integers(0, 2**32),
)
def test_rrelu_training_finite_differences(x, d, seed):
    x = np.where(np.abs(x) < 1e-3, -0.5, x)
    g = np.cos(np.arange(20.0))

    def fun(v):
        return fastact.rrelu(v, 0.1, 0.3, True, generator=seed)

    gx = fastact.rrelu_backward(g, x, 0.1, 0.3, True, generator=seed)
    fd, an = _directional(fun, [gx], [x], [d], g)
    assert abs(fd - an) <= 1e-6 * (1 + np.sum(np.abs(g))), (fd, an)


# ----------------------------------------------------------------------------- ULP sampling
#: Max float32 ULP errors against the float64 references over the sample below: (forward,
#: gradient), measured with the polynomial fastact._core.math cores of 2026-11-27 21:07
#: (rounded up to the next quarter ULP; tanh and gelu re-measured 2026-11-28 with their
#: cheaper float32 cores). gelu's float32 core splits x^2 exactly, so its error no longer
#: grows like x^2/2 in the negative tail; GELU_CONDITIONED (the error divided by
#: max(1, x^2/2)) still checks that.
ULP_BOUNDS = {
    "sigmoid": (2.5, 4.5),  # measured 2.475, 4.310
    "tanh": (1.5, 4.0),  # 1.327, 3.848 (single-word core since 2026-11-28; exhaustive: 1.422)
    "softplus": (1.75, 2.5),  # 1.567, 2.475
    "logsigmoid": (1.75, 2.75),  # 1.626, 2.610
    "silu": (3.25, 4.25),  # 3.193, 4.146
    "elu": (1.0, 1.0),  # 0.793, 0.840
    "gelu": (4.0, 11.0),  # 3.070, 10.313 at x=-13.31 (subnormal grad); all 2**32: 3.817 fwd
}
GELU_CONDITIONED = (4.5, 2.5)  # 4.228 at x=-1.43, 2.227 at x=-1.54


def _sample_points() -> np.ndarray:
    rng = np.random.default_rng(20261127)
    bits = rng.integers(0, 2**32, size=1_000_000, dtype=np.uint64).astype(np.uint32)
    b = bits.view(np.float32)
    b = b[np.isfinite(b)]
    parts = [
        b,  # the whole float32 range
        rng.uniform(-20, 20, 400_000),  # the curved part
        rng.uniform(-4, 4, 200_000),
        rng.uniform(-110, -80, 100_000),  # exp underflow, subnormal results
        rng.uniform(80, 90, 50_000),  # exp overflow
        rng.uniform(15, 25, 100_000),  # softplus threshold
        rng.uniform(-16, -5, 100_000),  # gelu's negative tail
        np.concatenate([s * np.logspace(-45, 0, 100_000) for s in (1, -1)]),  # near 0
    ]
    return np.concatenate(parts).astype(np.float32)


@pytest.fixture(scope="module")
def sample():
    x = _sample_points()
    return x, x.astype(np.float64)


@pytest.mark.parametrize("name", list(ULP_BOUNDS))
def test_float32_ulp_error_sampled(name, sample):
    x, x64 = sample
    assert x.size > 2_000_000
    c = CASES[name]
    full = c.full_params(default_params(c))
    rp = c.ref_params(default_params(c), np.float32)
    y = c.forward(x, **full)
    gx = c.backward(np.ones_like(x), x, **full)
    with np.errstate(all="ignore"):
        ry = c.ref(x64, **rp)
        rg = c.dref(x64, **rp)
        ds = c.dscale(x64, **rp)
    e = ulp_error(y, ry, np.float32)
    eg = ulp_error(gx, rg, np.float32, scale=ds)  # scale: the terms where f' crosses zero
    fb, gb = ULP_BOUNDS[name]
    i, j = int(np.argmax(e)), int(np.argmax(eg))
    msg = (
        f"{name}: max forward error {e[i]:.3f} ULP at x={x[i]!r} (bound {fb}), max "
        f"gradient error {eg[j]:.3f} ULP at x={x[j]!r} (bound {gb})"
    )
    print(msg)
    assert e[i] <= fb and eg[j] <= gb, msg
    if name == "gelu":
        ec = ulp_error(y, ry, np.float32, cond=c.cond(x64))
        egc = ulp_error(gx, rg, np.float32, scale=ds, cond=c.dcond(x64))
        assert ec.max() <= GELU_CONDITIONED[0] and egc.max() <= GELU_CONDITIONED[1], (
            ec.max(),
            egc.max(),
        )
