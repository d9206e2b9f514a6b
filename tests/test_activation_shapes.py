"""Element-wise activations on every shape, layout and input type (NumPy conventions).

* 0-d, empty, 1-d, N-d, transposed, sliced with steps, negative strides, Fortran order:
  forward, backward, ``out=`` and in-place on views agree bitwise with contiguous copies;
* int/bool/float16 inputs follow NumPy's casting (``np.exp``'s result dtype) out of place;
  Python scalars and lists are accepted;
* array-valued parameters broadcast like ufunc arguments (against NumPy references);
* arrays above the parallel threshold (> 2**15 elements) equal the serial small-array path;
* Dask arrays give lazy Dask results equal to the NumPy ones.
"""

from __future__ import annotations

import warnings
import zlib

import numba
import numpy as np
import pytest
from activation_cases import (
    CASES,
    DTYPES,
    assert_same,
    assert_ulp,
    default_params,
    edge_values,
)

import fastact
from fastact._core.thresholds import PARALLEL_THRESHOLD

DT_IDS = ["f32", "f64"]
NAMES = list(CASES)


def _rng(*key) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def _full(name):
    c = CASES[name]
    return c, c.full_params(default_params(c))


def _layouts(base: np.ndarray) -> dict[str, np.ndarray]:
    """Views of a (6, 7, 5) array with every kind of memory layout."""
    return {
        "c": base,
        "fortran": np.asfortranarray(base),
        "transposed": base.transpose(2, 0, 1),
        "sliced": base[::2, 1::3, :],
        "negative": base[::-1, :, ::-2],
        "step1d": base.reshape(-1)[5::7],
        "flat": base.reshape(-1),
        "0d": base[1, 2, 3, ...],
        "empty": base[:, :0, :],
        "empty1d": base.reshape(-1)[:0],
    }


@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("name", NAMES)
def test_layouts(name, dtype):
    c, full = _full(name)
    rng = _rng("layout", name, np.dtype(dtype).name)
    base = (rng.standard_normal((6, 7, 5)) * 3).astype(dtype)
    gbase = rng.standard_normal((6, 7, 5)).astype(dtype)
    for lname, v in _layouts(base).items():
        what = f"{name} {lname}"
        gv = _layouts(gbase)[lname]
        vc = v.copy(order="C")
        want = c.forward(vc, **full)
        gwant = c.backward(gv.copy(order="C"), vc, **full)
        y = c.forward(v, **full)
        assert isinstance(y, np.ndarray) and y.shape == v.shape and y.dtype == v.dtype, what
        assert_same(y, want, f"{what} forward")
        gx = c.backward(gv, v, **full)
        assert gx.shape == v.shape and gx.dtype == v.dtype, what
        assert_same(gx, gwant, f"{what} backward")
        # a non-contiguous out buffer of the right shape
        out = np.full(v.shape[::-1], 9, dtype).T
        assert c.forward(v, **full, out=out) is out
        assert_same(out, want, f"{what} forward out=")
        gout = np.full(v.shape[::-1], 9, dtype).T
        assert c.backward(gv, v, **full, out=gout) is gout
        assert_same(gout, gwant, f"{what} backward out=")
        # in place on a view: exactly the view's elements change
        if c.op.inplace:
            b2 = base.copy()
            view = _layouts(b2)[lname]
            expect = base.copy()
            _layouts(expect)[lname][...] = want
            r = getattr(fastact, c.public_name + "_")(view, **full)
            assert r is view
            assert_same(b2, expect, f"{what} in place on a view")
        if c.op.scalars["grad_output"] is not None:
            go = c.backward(gv, None, **full, output=want)
            assert go.shape == v.shape, what


@pytest.mark.parametrize("name", NAMES)
def test_zero_d_and_python_inputs(name):
    c, full = _full(name)
    for dtype in DTYPES:
        z = np.array(-0.75, dtype)
        y = c.forward(z, **full)
        assert np.ndim(y) == 0 and y.dtype == dtype
        assert_same(y, c.forward(np.array([-0.75], dtype), **full)[0], f"{name} 0-d")
        gz = c.backward(np.array(2.0, dtype), z, **full)
        assert np.ndim(gz) == 0 and gz.dtype == dtype
    for v in (-0.75, 2, True, [1.5, -2.0], [[1, -2], [3, 4]], (0.25,)):
        want_dt = np.exp(np.asarray(v)).dtype
        y = c.forward(v, **full)
        assert np.asarray(y).dtype == want_dt, (name, v)
        assert np.shape(y) == np.shape(v)
        ref = c.forward(
            np.asarray(v, dtype=want_dt if want_dt.itemsize >= 4 else np.float32), **full
        )
        assert_same(np.asarray(y), np.asarray(ref).astype(want_dt), f"{name} {v!r}")
    with pytest.raises(TypeError):
        c.forward([1.0, "a"], **full)


@pytest.mark.parametrize("name", NAMES)
def test_numpy_scalars_give_scalars_forward_and_backward(name):
    """The backwards follow the forwards' rule (as NumPy's ufuncs): NumPy scalars and Python
    numbers give a NumPy scalar, an array among the arguments (0-d too) an array; the
    backwards returned a 0-d array for scalars."""
    c, full = _full(name)
    for dtype in (*DTYPES, np.float16):
        x, g = dtype(-0.75), dtype(2.0)
        y = c.forward(x, **full)
        assert isinstance(y, np.generic) and y.dtype == dtype, (name, dtype)
        gx = c.backward(g, x, **full)
        assert isinstance(gx, np.generic) and gx.dtype == dtype, (name, dtype)
        assert_same(np.asarray(gx), c.backward(np.array([g]), np.array([x]), **full)[0], name)
        if c.op.scalars["grad_output"] is not None:
            go = c.backward(g, None, **full, output=y)
            assert isinstance(go, np.generic) and go.dtype == dtype, (name, dtype)
        g0 = c.backward(g, np.array(x), **full)  # a 0-d array: a 0-d array, as the forward
        assert type(g0) is np.ndarray and g0.ndim == 0
    assert isinstance(c.backward(2.0, -0.75, **full), np.float64), name


@pytest.mark.parametrize("name", NAMES)
def test_integer_bool_float16_inputs_follow_numpy(name):
    c, full = _full(name)
    vals = np.array([-5, -3, -1, 0, 1, 2, 3, 6, 7, 100])
    for dt in (
        np.int8,
        np.uint8,
        np.int16,
        np.uint16,
        np.int32,
        np.int64,
        np.uint64,
        np.bool_,
        np.float16,
    ):
        x = (vals > 0) if dt is np.bool_ else vals.astype(dt)
        rdt = np.exp(x[:0]).dtype
        y = c.forward(x, **full)
        assert y.dtype == rdt, (name, dt, y.dtype, rdt)
        compute = np.float32 if rdt.itemsize <= 4 else np.float64
        want = c.forward(x.astype(compute), **full).astype(rdt)
        assert_same(y, want, f"{name} {np.dtype(dt).name} input")
        out = np.empty(x.shape, rdt)
        assert c.forward(x, **full, out=out) is out
        assert_same(out, want, f"{name} {np.dtype(dt).name} input out=")
        with pytest.raises(TypeError):
            c.forward(x, **full, out=np.empty(x.shape, np.int64))
        # the backward follows the same rule (it returned float32 for float16 and int8)
        gx = c.backward(x, x, **full)
        assert gx.dtype == rdt, (name, dt, "backward", gx.dtype, rdt)
        xc = x.astype(compute)
        assert_same(gx, c.backward(xc, xc, **full).astype(rdt), f"{name} {dt} backward")
        out = np.empty(x.shape, rdt)
        assert c.backward(x, x, **full, out=out) is out
        assert_same(out, gx, f"{name} {np.dtype(dt).name} backward out=")
        # a float32 gradient widens the result to float32, as NumPy's promotion does
        if rdt == np.float16:
            assert c.backward(xc, x, **full).dtype == np.float32
    with pytest.raises(TypeError):
        c.forward(np.array(["1"]), **full)
    with pytest.raises(TypeError):
        c.forward(np.array([1 + 1j]), **full)


# ---------------------------------------------------------------------- dask
@pytest.mark.parametrize("name", NAMES)
def test_dask_arrays_stay_lazy(name):
    # (placed before the array-parameter tests: once an activation has built its NumPy ufunc
    # for array parameters, each dask call costs ~1 s, dask tokenizing the closure over the
    # Elementwise object that holds the numba DUFunc -- reported to the lead)
    import dask
    import dask.array as da

    c, full = _full(name)
    calls = []

    def make(dtype):
        def block():
            calls.append(1)
            return np.linspace(-6, 6, 30, dtype=dtype).reshape(5, 6)

        return da.from_delayed(dask.delayed(block)(), shape=(5, 6), dtype=dtype)

    for dtype in DTYPES:
        calls.clear()
        dx = make(dtype).rechunk((2, 3))
        y = c.forward(dx, **full)
        assert isinstance(y, da.Array), type(y)
        assert calls == [], "the activation computed its dask input eagerly"
        assert y.dtype == dtype and y.shape == (5, 6)
        got = y.compute()
        assert calls, "compute() did not evaluate the graph"
        want = c.forward(np.linspace(-6, 6, 30, dtype=dtype).reshape(5, 6), **full)
        assert isinstance(got, np.ndarray)
        assert_same(got, want, f"{name} dask {np.dtype(dtype).name}")
    # parameters are checked at the call (they were first checked in compute), and a vector
    # parameter of any kind is refused (a tensor or dask array applied per block)
    if full:
        dx = da.from_array(np.linspace(-1, 1, 4), chunks=2)
        pname = next(iter(full))
        if pname != "approximate":
            for bad, exc in (("a", TypeError), (da.from_array(np.ones(2)), TypeError)):
                with pytest.raises(exc, match=pname):
                    c.forward(dx, **{**full, pname: bad})
    yi = c.forward(da.from_array(np.arange(-3, 3, dtype=np.int16), chunks=2), **full)
    assert yi.dtype == np.exp(np.arange(3, dtype=np.int16)).dtype
    assert_same(yi.compute(), c.forward(np.arange(-3, 3, dtype=np.int16), **full), "dask int")


# ---------------------------------------------------------------------- array parameters
#: (name, {param: array}) broadcasting cases; arrays of shape (C,) or (N, 1) against (N, C)
ARRAY_PARAMS = [
    ("leaky_relu", {"negative_slope": np.array([0.01, 0.2, -0.5, 1.5])}),
    ("hardtanh", {"min_val": np.array([-1.0, -0.5, 0.0, 0.25]), "max_val": 1.0}),
    ("hardtanh", {"min_val": -2.0, "max_val": np.array([[0.5], [1.0], [2.0]])}),
    ("elu", {"alpha": np.array([1.0, 0.5, 2.5, 0.1])}),
    ("celu", {"alpha": np.array([1.0, 0.5, 3.0, 0.1])}),
    ("softplus", {"beta": np.array([1.0, 2.0, 0.5, 64.0]), "threshold": 20.0}),
    ("softplus", {"beta": 1.0, "threshold": np.array([[20.0], [1.0], [5.0]])}),
    ("softshrink", {"lambd": np.array([0.5, 0.0, 1.5, 0.3])}),
    ("hardshrink", {"lambd": np.array([[0.5], [0.0], [1.5]])}),
    (
        "threshold",
        {"threshold": np.array([0.5, -1.0, 0.0, 0.1]), "value": np.array([-2.0, 7.0, 0.0, 20.0])},
    ),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize(
    "name,params", ARRAY_PARAMS, ids=[f"{n}-{i}" for i, (n, _) in enumerate(ARRAY_PARAMS)]
)
def test_array_parameters_broadcast(name, params, dtype):
    c = CASES[name]
    rng = _rng("arrp", name, np.dtype(dtype).name)
    x = (rng.standard_normal((3, 4)) * 4).astype(dtype)
    x[0, :] = [0.0, -3.0, 1.5, 0.5]  # some kinks
    g = rng.standard_normal((3, 4)).astype(dtype)
    full = c.full_params(params)
    y = c.forward(x, **full)
    assert y.shape == (3, 4) and y.dtype == dtype
    gx = c.backward(g, x, **full)
    assert gx.shape == (3, 4) and gx.dtype == dtype
    # NumPy reference, with the parameters rounded to dtype like the kernel's
    rp = {k: np.asarray(v, dtype).astype(np.float64) for k, v in full.items()}
    x64 = x.astype(np.float64)
    with np.errstate(all="ignore"):
        ry = c.ref(x64, **rp)
        rg = g * c.dref(x64, **rp)
    assert_ulp(y, ry, dtype, 4, x=x, what=f"{name} array params forward")
    assert_ulp(gx, rg, dtype, 4, x=x, scale=np.abs(g), what=f"{name} array params backward")
    # and element by element against the scalar-parameter call
    bc = {k: np.broadcast_to(np.asarray(v), (3, 4)) for k, v in full.items()}
    for i in range(3):
        for j in range(4):
            pij = {k: float(v[i, j]) for k, v in bc.items()}
            yi = c.forward(x[i : i + 1, j], **pij)[0]
            gi = c.backward(g[i : i + 1, j], x[i : i + 1, j], **pij)[0]
            assert_ulp(y[i, j], yi, dtype, 2, x=x[i, j], what=f"{name} [{i},{j}] vs scalar")
            assert_ulp(
                gx[i, j],
                gi,
                dtype,
                2,
                x=x[i, j],
                scale=abs(g[i, j]),
                what=f"{name} [{i},{j}] backward vs scalar",
            )
    # positional parameters, out=, and a parameter that broadcasts beyond the input
    out = np.empty_like(x)
    assert c.forward(x, *full.values(), out=out) is out
    assert_same(out, y, f"{name} positional array params out=")
    row = x[0]
    y_big = c.forward(row, **full)
    assert y_big.shape == np.broadcast_shapes(row.shape, *[np.shape(v) for v in full.values()])
    if c.op.inplace:
        a = x.copy()
        assert getattr(fastact, name + "_")(a, **full) is a
        assert_same(a, y, f"{name}_ with array params")
        if y_big.shape != row.shape:
            r = row.copy()
            with pytest.raises(ValueError):
                getattr(fastact, name + "_")(r, **full)
            assert_same(r, row, f"{name}_ with a broadcast-enlarging parameter wrote")
    with pytest.raises(ValueError):
        c.forward(
            x, **{k: (np.ones(5) if isinstance(v, np.ndarray) else v) for k, v in full.items()}
        )


@pytest.mark.parametrize(
    "name,pname", [("leaky_relu", "negative_slope"), ("elu", "alpha"), ("celu", "alpha")]
)
def test_array_parameters_with_output(name, pname):
    """The gradient from the output with array-valued parameters (the non-negativity check
    raised NumPy's "truth value of an array is ambiguous"): equal to the one from the input;
    a negative entry is refused, naming the parameter."""
    x = np.linspace(-3, 3, 8).reshape(2, 4)
    p = np.array([0.1, 0.2, 0.3, 0.4])
    y = getattr(fastact, name)(x, p)
    g = np.linspace(0.5, 1.5, 8).reshape(2, 4)
    back = getattr(fastact, name + "_backward")
    want = back(g, x, **{pname: p})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no spurious floating-point warnings either
        got = back(g, output=y, **{pname: p})
        want = back(g, x, **{pname: p})
    # (from the output, y + alpha cancels where y is near -alpha: an absolute error of ulp(1))
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)
    with pytest.raises(ValueError, match=pname):
        back(g, output=y, **{pname: np.array([0.1, -0.2, 0.3, 0.4])})


def test_array_parameter_overflow():
    """A 0-d or 1-element float64 parameter array beyond float32's range is refused like a
    scalar one (it became inf: the result -inf and NaN), without a RuntimeWarning."""
    x = np.float32([-1.0, 0.0, 1.0])
    for v in (np.array(1e40), np.array([1e40]), np.array([0.5, 1e40, 0.5])[:, None]):
        with pytest.raises(ValueError, match="negative_slope"):
            fastact.leaky_relu(x, v)
    # an infinite slope is no overflow: -inf, and 0 * inf = NaN at 0 as torch
    np.testing.assert_array_equal(fastact.leaky_relu(x, np.array([np.inf])), [-np.inf, np.nan, 1])
    assert fastact.leaky_relu(x.astype(np.float64), np.array(1e40))[0] == -1e40


def test_array_parameter_validation():
    x = np.linspace(-2, 2, 4)
    with pytest.raises(ValueError):
        fastact.hardtanh(x, np.array([0.0, 2.0, 0.0, 0.0]), 1.0)
    with pytest.raises(ValueError):
        fastact.celu(x, np.array([1.0, 0.0, 1.0, 1.0]))
    with pytest.raises(ValueError):
        fastact.softshrink(x, np.array([0.5, -0.1, 0.5, 0.5]))
    with pytest.raises(TypeError):
        fastact.leaky_relu(x, np.array(["a"] * 4))


# ---------------------------------------------------------------------- parallel path
@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("name", NAMES)
def test_parallel_path_equals_serial(name, dtype):
    """> 2**15 elements run the prange kernel; chunks below the threshold the serial one."""
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.fail("the parallel path needs numba to have at least 2 threads")
    c, full = _full(name)
    thr = c.op.threshold  # the activation's measured serial/parallel crossover
    n = 2 * thr + 4321
    rng = _rng("par", name, np.dtype(dtype).name)
    x = (rng.standard_normal(n) * 5).astype(dtype)
    e = edge_values(dtype, c.kinks(**c.ref_params(default_params(c), dtype)))
    x[: e.size] = e
    g = rng.standard_normal(n).astype(dtype)
    old = numba.get_num_threads()
    numba.set_num_threads(2)
    try:
        y = c.forward(x, **full)
        gx = c.backward(g, x, **full)
        go = (
            c.backward(g, None, **full, output=y)
            if c.op.scalars["grad_output"] is not None
            else None
        )
    finally:
        numba.set_num_threads(old)
    chunks = np.array_split(np.arange(n), 16 * thr // min(thr, PARALLEL_THRESHOLD))
    assert all(ch.size < min(thr, PARALLEL_THRESHOLD) for ch in chunks)
    ys = np.concatenate([c.forward(x[ch], **full) for ch in chunks])
    gs = np.concatenate([c.backward(g[ch], x[ch], **full) for ch in chunks])
    assert_same(y, ys, f"{name} parallel forward")
    assert_same(gx, gs, f"{name} parallel backward")
    if go is not None:
        gos = np.concatenate([c.backward(g[ch], None, **full, output=y[ch]) for ch in chunks])
        assert_same(go, gos, f"{name} parallel backward from output")
    if c.op.inplace:
        a = x.copy()
        getattr(fastact, c.public_name + "_")(a, **full)
        assert_same(a, y, f"{name} parallel in place")
    # one thread: the serial kernel on the large array gives the same bits
    numba.set_num_threads(1)
    try:
        assert_same(c.forward(x, **full), y, f"{name} one thread")
    finally:
        numba.set_num_threads(old)


def test_matrix_outputs_refused():
    """An np.matrix to be written (out=, grad_out=, in place) is refused with a TypeError
    naming it and nothing written: its reshapes stay 2-D, so the flat loops assigned whole
    rows past the buffer's end (heap corruption). np.matrix inputs still work."""
    import fastact.losses as L

    buf = np.zeros(40, np.float32)
    m = buf[:12].reshape(3, 4).view(np.matrix)
    x = np.arange(1, 13, dtype=np.float32).reshape(3, 4) - 6
    calls = {
        "out": lambda: fastact.relu(x, out=m),
        "backward out": lambda: fastact.silu_backward(np.ones_like(x), x, out=m),
        "in place": lambda: fastact.relu_(m),
        "softmax out": lambda: fastact.softmax(x, dim=1, out=m),
        "rrelu out": lambda: fastact.rrelu(x, training=True, generator=0, out=m),
        "grad_out": lambda: L.mse_loss(x, np.zeros_like(x), return_grad=True, grad_out=m),
    }
    for what, call in calls.items():
        with pytest.raises(TypeError, match="matrix"):
            call()
        assert not buf.any(), what
    np.testing.assert_array_equal(fastact.relu(x.view(np.matrix)), np.maximum(x, 0))


def _masked():
    return np.ma.array([5.0, -5.0, 5.0], mask=[0, 1, 0])


@pytest.mark.parametrize(
    "what, name, call",
    [
        ("input", "input", lambda m: fastact.tanh(m)),
        ("softmax input", "input", lambda m: fastact.softmax(m, 0)),
        ("backward input", "input", lambda m: fastact.relu_backward(np.ones(3), m)),
        ("slope", "negative_slope", lambda m: fastact.leaky_relu(np.ones(3), m)),
        ("prelu weight", "weight", lambda m: fastact.prelu(np.ones((1, 3)), m)),
        ("in place", "input", lambda m: fastact.relu_(m)),
        ("inplace=True", "input", lambda m: fastact.relu(m, inplace=True)),
        ("nn.ReLU(inplace=True)", "input", lambda m: fastact.nn.ReLU(inplace=True)(m)),
        ("out=", "out", lambda m: fastact.softsign(np.ones(3), out=m)),
        ("array slope out=", "out", lambda m: fastact.leaky_relu(np.ones(3), np.ones(3), out=m)),
        ("backward out=", "out", lambda m: fastact.relu_backward(np.ones(3), np.ones(3), out=m)),
        ("softmax out=", "out", lambda m: fastact.softmax(np.ones(3), 0, out=m)),
        ("fused argument", "a", lambda m: fastact.elementwise(lambda a: a * 2)(m)),
        ("fused .inplace", "a", lambda m: fastact.elementwise(lambda a: a * 2).inplace(m)),
        ("fused out=", "out", lambda m: fastact.elementwise(lambda a: a * 2)(np.ones(3), out=m)),
    ],
)
def test_masked_arrays_refused(what, name, call):
    """A numpy.ma.MaskedArray is refused with a TypeError naming the argument, and nothing
    written (mask and data as they were): read, its mask was dropped (the masked elements
    took part in the result, a softmax's sum); written (in place, out=), numba raised its
    NumbaTypeError (not a TypeError, no argument named) before the kernel's signature was
    compiled in the process and wrote it afterwards, and the array-parameter path cleared
    an out= mask."""
    m = _masked()
    with pytest.raises(TypeError, match=rf"^{name} is a numpy\.ma\.MaskedArray; .*{name}\.filled"):
        call(m)
    np.testing.assert_array_equal(m.data, [5.0, -5.0, 5.0], err_msg=what)
    np.testing.assert_array_equal(m.mask, [False, True, False], err_msg=what)


def test_subclass_outputs_written_and_returned_as_themselves(tmp_path):
    """Subclasses of ndarray written by fastact (a memmap, a user's subclass, fastact's own
    Parameter; out=, in place, the array-parameter path, a backward, along an axis, a fused
    function, a loss's grad_out) are written through plain ndarray views (what the kernels
    take) and returned as the caller's object."""
    import fastact.losses as L

    class Sub(np.ndarray):
        pass

    mm = np.memmap(tmp_path / "a.bin", np.float64, "w+", shape=(3,))
    fused = fastact.elementwise(lambda a: a * 2)
    x = np.array([-1.0, 2.0, -3.0])
    for make in (
        lambda: x.copy().view(Sub),
        lambda: mm,
        lambda: fastact.nn.Parameter(x, np.float64),
    ):
        calls = [
            (lambda o: fastact.relu_(o), np.maximum(x, 0)),
            (lambda o: fastact.tanh(x, out=o), np.tanh(x)),
            (lambda o: fastact.leaky_relu(x, np.full(3, 0.5), out=o), np.where(x > 0, x, x / 2)),
            (lambda o: fastact.leaky_relu_(o, np.full(3, 0.5)), np.where(x > 0, x, x / 2)),
            (lambda o: fastact.relu_backward(np.ones(3), x, out=o), (x > 0) * 1.0),
            (lambda o: fastact.softmax(x, 0, out=o), np.exp(x) / np.exp(x).sum()),
            (lambda o: fused.inplace(o), 2 * x),
            (lambda o: fused(x, out=o), 2 * x),
            (lambda o: L.mse_loss(x, np.zeros(3), return_grad=True, grad_out=o)[1], 2 * x / 3),
        ]
        for call, want in calls:
            o = make()
            o[...] = x
            got = call(o)
            assert got is o, type(o)
            np.testing.assert_allclose(np.asarray(o), want, rtol=1e-15)


@pytest.mark.parametrize("dt", DTYPES, ids=DT_IDS)
def test_array_parameters_into_strided_out(dt):
    """Array-valued parameters (the broadcasting ufunc path) into a strided ``out=`` (a
    column, a reversed view): the values of a contiguous run, nothing written beside the
    view (numba's vectorized functions wrote a strided out as if it were C-contiguous: wrong
    elements and, with a negative stride, memory past the view)."""
    x = np.array([-3.0, -1.0, 0.5, 2.0, 7.0], dt)
    g = np.linspace(0.5, 1.5, 5).astype(dt)
    slope = np.linspace(0.1, 0.3, 5).astype(dt)
    alpha = np.full(5, 2.0, dt)
    calls = {
        "leaky_relu": lambda out: fastact.leaky_relu(x, slope, out=out),
        "leaky_relu_backward": lambda out: fastact.leaky_relu_backward(g, x, slope, out=out),
        "elu_backward": lambda out: fastact.elu_backward(g, x, alpha, out=out),
        "hardtanh": lambda out: fastact.hardtanh(x, -slope, alpha, out=out),
    }
    for name, call in calls.items():
        ref = call(None)
        buf = np.full((5, 2), 9.0, dt)
        assert call(buf[:, 0]) is not None
        assert_same(buf[:, 0], ref, f"{name} column")
        assert (buf[:, 1] == 9).all(), name
        big = np.full(20, 9.0, dt)
        call(big[14:4:-2])
        assert_same(big[14:4:-2], ref, f"{name} reversed")
        assert (np.delete(big, [14, 12, 10, 8, 6]) == 9).all(), name
    # in place on a strided view with an array slope
    buf = np.stack([x, np.full(5, 9.0, dt)], axis=1)
    fastact.leaky_relu_(buf[:, 0], slope)
    assert_same(buf[:, 0], fastact.leaky_relu(x, slope), "in place column")
    assert (buf[:, 1] == 9).all()


def test_empty_outputs_with_a_zero_length_axis():
    """An empty (3, 0) array (NumPy gives it zero strides) is a valid out= and in-place
    target, not an expanded one."""
    z16 = np.zeros((3, 0), np.float16)
    assert fastact.relu_backward(z16, z16, out=np.zeros((3, 0), np.float16)).shape == (3, 0)
    z = np.zeros((3, 0))
    assert fastact.gelu_backward(z.astype(np.float32), z, out=np.zeros((3, 0))).shape == (3, 0)
    out = np.zeros((3, 0), np.float16)
    assert fastact.sigmoid(np.zeros((3, 0), np.int8), out=out) is out
    e = np.zeros((3, 0), np.float32)
    assert fastact.leaky_relu_(e, np.array([0.1], np.float32)) is e


def test_python_numbers_beside_arrays_are_weak():
    """A Python number as grad_output or input takes the other argument's dtype, as NumPy's
    ufuncs treat Python scalars (np.multiply(1.0, float32 array) is float32)."""
    x32 = np.array(-3.0, np.float32)
    assert fastact.celu_backward(1.0, x32, 0.3).dtype == np.float32
    assert fastact.relu_backward(1, np.array(2.0, np.float16)).dtype == np.float16
    assert fastact.sigmoid_backward(np.ones((), np.float32), 0.5).dtype == np.float32
    assert fastact.sigmoid_backward(np.float64(1.0), x32).dtype == np.float64  # not weak
    np.testing.assert_allclose(
        fastact.celu_backward(2.0, x32, 0.3), 2 * np.exp(np.float32(-10.0)), rtol=1e-6
    )
