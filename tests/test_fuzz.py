"""Hypothesis-driven bad-input fuzz over fastact's public functions and constructors.

Every call starts from a valid call and replaces one argument with a value drawn from a
catalogue of bad (or merely unusual) inputs. The call must either raise ``TypeError`` /
``ValueError`` whose message names the replaced argument, leaving every array it was given
unchanged (no partial write), or return the same result as the call on canonical inputs
(C-contiguous, writeable NumPy copies). Any other exception type (a numba ``TypingError``,
an ``IndexError``, a crash) fails. Each test counts the cases it tried and asserts the count.
"""

from __future__ import annotations

import inspect
import math
import os
from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastact
import fastact.losses as L
import fastact.optim as O
import fastact.optim.functional as OF
from fastact.kernels import activations as kernel_activations

# The scalar cores exported next to the activations are numba dispatchers meant for user
# @njit code (fastact.scalar); they are not array functions and are fuzzed separately below.
SCALAR_CORES = {"sigmoid_core", "sigmoid_pair"}
ACTS = [n for n in fastact.ACTIVATION_FUNCTIONS if n not in SCALAR_CORES]
COUNTS: Counter = Counter()
SETTINGS = settings(
    max_examples=30,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)


class _Marker:
    """Stand-in for 'leave the argument out'."""


# ------------------------------------------------------------------------------ helpers


def _snapshot(values) -> list:
    return [(v, v.copy()) for v in values if isinstance(v, np.ndarray)]


def _eq(a: np.ndarray, b: np.ndarray) -> bool:
    if a.dtype.kind in "fc":
        return np.array_equal(a, b, equal_nan=True)
    return a.shape == b.shape and bool(np.all(a == b))


def _unchanged(snap) -> bool:
    return all(_eq(a, b) for a, b in snap)


def _canon(v):
    """A canonical NumPy copy of an array-like argument (None/scalars/strings unchanged)."""
    if isinstance(v, np.ndarray):
        return np.array(v, order="C", copy=True)
    if isinstance(v, (list, tuple)):
        try:
            return np.array(v)
        except ValueError:
            return v
    return v


def _same(a, b) -> bool:
    if isinstance(a, tuple) or isinstance(b, tuple):
        return (
            isinstance(a, tuple)
            and isinstance(b, tuple)
            and len(a) == len(b)
            and all(_same(x, y) for x, y in zip(a, b, strict=True))
        )
    if a is None or b is None:
        return a is b
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and a.dtype == b.dtype and _eq(a, b)


# torch's own wording for some arguments (messages copied from torch.optim)
_SYNONYMS = {
    "lr": ("learning rate",),
    "betas": ("beta",),
    "eps": ("epsilon",),
    "etas": ("eta",),
    "step_sizes": ("step size", "step_size"),
    "weight_decay": ("weight_decay", "weight decay"),
    "momentum": ("momentum",),
    "rho": ("rho",),
    "alpha": ("alpha",),
    "lr_decay": ("lr_decay",),
    "initial_accumulator_value": ("initial_accumulator_value", "initial accumulator"),
    "params": ("param",),
}
VIOLATIONS: list[str] = []


def _violation(fn_name: str, target: str, what: str, msg: str) -> None:
    key = f"{fn_name}/{target}/{what}"
    if os.environ.get("FASTACT_FUZZ_COLLECT"):
        VIOLATIONS.append(f"{key}: {msg}")
        print("VIOLATION", key, "|", msg[:160].replace("\n", " "))
        return
    raise AssertionError(f"{fn_name}({target}={what}): {msg}")


def _call_checked(fn, args: dict, target: str, what: str, *, outputs=(), names_ok=()):
    """Call ``fn(**args)``; check the error contract; return ('ok', result) or ('err', exc)."""
    fname = getattr(fn, "__qualname__", fn.__name__)
    COUNTS[fname] += 1
    protected = [v for k, v in args.items() if k not in outputs]
    outs = [args[k] for k in outputs if k in args]
    snap_in = _snapshot(protected)
    snap_out = _snapshot(outs)
    try:
        res = fn(**args)
    except (TypeError, ValueError) as e:
        msg = str(e)
        if not (_unchanged(snap_in) and _unchanged(snap_out)):
            _violation(fname, target, what, f"partial write before {type(e).__name__}: {msg}")
        elif type(e).__module__ != "builtins":
            _violation(fname, target, what, f"non-builtin {type(e).__name__} leaked: {msg}")
        elif not any(n in msg for n in (target, *names_ok, *_SYNONYMS.get(target, ()))):
            _violation(fname, target, what, f"message does not name {target!r}: {msg}")
        return "err", e
    except Exception as e:  # any other type is a bug
        _violation(fname, target, what, f"raised {type(e).__module__}.{type(e).__name__}: {e}")
        return "err", e
    return "ok", res


def _check(cond: bool, fn_name: str, target: str, what: str, msg: str) -> None:
    if not cond:
        _violation(fn_name, target, what, msg)


# ------------------------------------------------------------------------------ catalogue


def _bad_arrays(valid: np.ndarray) -> dict:
    """Unusual values for an array argument, keyed by a short description."""
    ro = valid.copy()
    ro.flags.writeable = False
    big = np.zeros((valid.shape[0] * 2,) + valid.shape[1:], valid.dtype)
    big[::2] = valid
    return {
        "None": None,
        "str": "abc",
        "bytes": b"abc",
        "object": object(),
        "dict": {"a": 1},
        "set": {1.0},
        "ragged list": [[1.0, 2.0], [3.0]],
        "list": valid.tolist(),
        "scalar": 0.5,
        "0-d": np.float32(0.25),
        "bool scalar": True,
        "complex": valid.astype(np.complex64),
        "bool array": valid > 0,
        "int32": (valid * 3).astype(np.int32),
        "int8": (valid * 3).astype(np.int8),
        "uint64": np.abs(valid * 3).astype(np.uint64),
        "float16": valid.astype(np.float16),
        "float64": valid.astype(np.float64),
        "object array": np.array(valid.tolist(), dtype=object),
        "str array": valid.astype(str),
        "datetime": np.zeros(valid.shape, "datetime64[s]"),
        "wrong shape": np.ones((3, 5), valid.dtype),
        "1-d": np.ones(7, valid.dtype),
        "empty": np.ones((0,) + valid.shape[1:], valid.dtype),
        "32-d": np.ones((1,) * 30 + valid.shape, valid.dtype) * valid,
        "64-d": np.ones((1,) * 62 + (2, 2), valid.dtype),
        "nan/inf": np.where(valid > 0, np.nan, np.inf).astype(valid.dtype),
        "read-only": ro,
        "strided": big[::2],
        "transposed": np.asfortranarray(valid),
        "negative strides": valid[::-1].copy()[::-1],
        "broadcast view": np.broadcast_to(valid[:1], valid.shape),
    }


_BAD_SCALARS = {
    "None": None,
    "str": "abc",
    "list": [0.1, 0.2],
    "empty list": [],
    "nan": math.nan,
    "inf": math.inf,
    "-inf": -math.inf,
    "negative": -1.5,
    "zero": 0.0,
    "huge": 1e300,
    "bool": True,
    "complex": 1j,
    "object": object(),
    "array(7)": np.ones(7),
    "0-d array": np.array(0.3),
    "int": 2,
    "np.float32": np.float32(0.2),
}

_BAD_OPTIONS = {  # for str/int options such as dim, approximate, reduction, pieces
    "None": None,
    "str": "bad",
    "float": 1.5,
    "huge int": 10**20,
    "out of range": 99,
    "negative": -99,
    "bool": True,
    "list": [0],
    "np.int64": np.int64(1),
    "nan": math.nan,
}


# ------------------------------------------------------------------------------ activations

_RNG = np.random.default_rng(1234)
_X = _RNG.standard_normal((4, 6)).astype(np.float32)
_X[0, :3] = [0.0, -0.0, 20.0]
_REQUIRED = {"threshold": 0.1, "value": 20.0, "pieces": 2}


def _activation_call(name: str) -> dict:
    """Valid keyword arguments for activation ``name``."""
    fn = getattr(fastact, name)
    sig = inspect.signature(fn)
    args: dict = {}
    fwd = name[: -len("_backward")] if name.endswith("_backward") else None
    for pname, p in sig.parameters.items():
        if p.kind is p.KEYWORD_ONLY:
            continue
        if pname == "input":
            args[pname] = _X.copy()
        elif pname == "grad_output":
            continue  # set below, once the forward's output shape is known
        elif pname == "weight":
            args[pname] = np.full(6, 0.25, np.float32)
        elif p.default is inspect.Parameter.empty:
            args[pname] = _REQUIRED[pname]
        elif pname != "inplace":
            args[pname] = p.default
    if fwd is not None:
        fargs = {
            k: v
            for k, v in args.items()
            if k in inspect.signature(getattr(fastact, fwd)).parameters and k not in ("training",)
        }
        y = getattr(fastact, fwd)(**fargs)
        args["grad_output"] = np.linspace(-1, 1, y.size, dtype=np.float32).reshape(y.shape)
    return args


def _targets(name: str) -> list[str]:
    args = _activation_call(name)
    t = list(args)
    if not name.endswith("_"):
        t.append("out")
    return t


def _bad_for(name: str, target: str, args: dict) -> dict:
    if target == "out":
        ref = getattr(fastact, name)(
            **{k: np.copy(v) if isinstance(v, np.ndarray) else v for k, v in args.items()}
        )
        ref = ref[0] if isinstance(ref, tuple) else ref
        ro = np.empty_like(ref)
        ro.flags.writeable = False
        big = np.empty((ref.shape[0] * 2,) + ref.shape[1:], ref.dtype)
        flat = np.empty(ref.size + 1, ref.dtype)
        return {
            "None": None,
            "list": ref.tolist(),
            "wrong dtype": np.empty(
                ref.shape, np.float64 if ref.dtype == np.float32 else np.float32
            ),
            "int dtype": np.empty(ref.shape, np.int32),
            "wrong shape": np.empty((ref.size,), ref.dtype),
            "32-d": np.empty((1,) * 30 + ref.shape, ref.dtype),
            "read-only": ro,
            "strided": big[::2],
            "fortran": np.empty(ref.shape, ref.dtype, order="F"),
            "overlap input": "OVERLAP",
            "same as input": "SAME",
            "offset view": flat[1:].reshape(ref.shape),
            "tensor": "TENSOR",
        }
    v = args[target]
    if isinstance(v, np.ndarray):
        return _bad_arrays(v)
    if isinstance(v, str) or target in ("dim", "pieces"):
        return _BAD_OPTIONS
    if target == "training":
        return {"None": None, "str": "yes", "int": 1, "np.bool_": np.bool_(True)}
    return _BAD_SCALARS


def _materialize(value, args: dict, target: str):
    if isinstance(value, str) and value in ("OVERLAP", "SAME", "TENSOR"):
        src = args.get("input", args.get("grad_output"))
        if value == "SAME":
            return src
        if value == "TENSOR":
            import torch

            return torch.empty(src.shape, dtype=torch.float32)
        if src is None:
            return None
        buf = np.empty(src.size + 1, src.dtype)
        buf[1:] = src.reshape(-1)
        args["input" if "input" in args else "grad_output"] = buf[1:].reshape(src.shape)
        return buf[:-1].reshape(src.shape)
    if isinstance(value, np.ndarray):
        return value.copy() if value.flags.writeable and value.base is None else value
    return value


@pytest.mark.parametrize("name", ACTS)
def test_fuzz_activation(name):
    fn = getattr(fastact, name)
    targets = _targets(name)
    ran: list = []

    @SETTINGS
    @given(st.data())
    def inner(data):
        args = _activation_call(name)
        target = data.draw(st.sampled_from(targets), label="target")
        catalogue = _bad_for(name, target, args)
        what = data.draw(st.sampled_from(sorted(catalogue)), label="value")
        value = _materialize(catalogue[what], args, target)
        if target == "out":
            args["out"] = value
        else:
            args[target] = value
        outputs = ("out",) + (
            ("input",) if name.endswith("_") or target == "out" and what == "same as input" else ()
        )
        # correct result: the same call with canonical (copied, contiguous) arguments
        canon = {k: _canon(v) for k, v in args.items() if k != "out"}
        names_ok = ("out",) if target == "out" else ()
        if name.startswith(("glu", "maxout")):
            names_ok += ("dim", "pieces")  # torch's messages name the split dimension
        if name.endswith("_backward"):
            names_ok += ("input", "grad_output")  # a shape mismatch names either side
        status, res = _call_checked(fn, args, target, what, outputs=outputs, names_ok=names_ok)
        ran.append(status)
        if status == "err" or (name.startswith("rrelu") and args.get("training")):
            return  # rrelu in training mode draws random slopes: no canonical result
        try:
            want = fn(**canon)
        except (TypeError, ValueError) as e:
            # any accepted value must also be accepted in canonical form
            _violation(name, target, what, f"accepted, but canonical form rejected: {e}")
            return
        if target == "out" and value is not None and not isinstance(value, list):
            got = value.numpy() if hasattr(value, "numpy") else value
            first = res[0] if isinstance(res, tuple) else res
            w0 = want[0] if isinstance(want, tuple) else want
            _check(_same(got, w0), name, target, what, "out holds wrong values")
            _check(
                first is value or (hasattr(value, "numpy") and first is not None),
                name,
                target,
                what,
                "did not return out",
            )
        elif name.endswith("_"):
            _check(res is args["input"], name, target, what, "in-place call did not return input")
            _check(_same(res, want), name, target, what, "in-place result differs")
        else:
            _check(_same(res, want), name, target, what, "result differs from canonical call")

    inner()
    assert len(ran) >= 20, len(ran)


def test_fuzz_scalar_cores_documented():
    """The scalar cores are numba dispatchers (for @njit user code): called from Python on a
    float they return the right value."""
    for n in SCALAR_CORES:
        f = getattr(kernel_activations, n)
        r = f(0.5)
        v = r[0] if isinstance(r, tuple) else r
        assert abs(v - 1 / (1 + math.exp(-0.5))) < 1e-12


# ------------------------------------------------------------------------------ losses

_P = np.clip(_RNG.random((4, 3)), 0.05, 0.95).astype(np.float32)
_T01 = (_RNG.random((4, 3)) > 0.5).astype(np.float32)
_PM1 = np.array([1.0, -1.0, 1.0, -1.0], np.float32)
_CLS = np.array([0, 2, 1, 2], np.int64)


def _loss_call(name: str) -> dict:
    x = _X[:, :3].copy()
    t = _RNG.standard_normal((4, 3)).astype(np.float32)
    if name in ("cross_entropy", "nll_loss"):
        return {"input": x, "target": _CLS.copy()}
    if name == "binary_cross_entropy":
        return {"input": _P.copy(), "target": _T01.copy()}
    if name in ("binary_cross_entropy_with_logits", "multilabel_soft_margin_loss"):
        return {"input": x, "target": _T01.copy()}
    if name in ("soft_margin_loss",):
        return {"input": x, "target": np.sign(t) + (t == 0)}
    if name == "hinge_embedding_loss":
        return {"input": x, "target": np.where(t > 0, 1.0, -1.0).astype(np.float32)}
    if name == "margin_ranking_loss":
        return {"input1": x[:, 0].copy(), "input2": x[:, 1].copy(), "target": _PM1.copy()}
    if name == "cosine_embedding_loss":
        return {"input1": x, "input2": t, "target": _PM1.copy()}
    if name == "triplet_margin_loss":
        return {"anchor": x, "positive": t, "negative": t[::-1].copy()}
    if name == "gaussian_nll_loss":
        return {"input": x, "target": t, "var": np.abs(t) + 0.1}
    if name == "kl_div":
        return {"input": np.log(_P), "target": _P[::-1].copy()}
    return {"input": x, "target": t}


_LOSS_OPTIONS = {
    "reduction": "mean",
    "beta": 1.0,
    "delta": 1.0,
    "margin": 0.5,
    "eps": 1e-6,
    "label_smoothing": 0.1,
    "ignore_index": -100,
    "weight": None,
    "pos_weight": None,
    "log_target": False,
    "log_input": True,
    "full": False,
    "p": 2,
    "swap": False,
}


@pytest.mark.parametrize("name", L.__all__)
def test_fuzz_loss(name):
    fn = getattr(L, name)
    params = inspect.signature(fn).parameters
    base = _loss_call(name)
    targets = list(base) + [k for k in _LOSS_OPTIONS if k in params] + ["grad_out"]
    ran: list = []

    @SETTINGS
    @given(st.data())
    def inner(data):
        args = {k: v.copy() for k, v in _loss_call(name).items()}
        target = data.draw(st.sampled_from(targets), label="target")
        return_grad = data.draw(st.booleans(), label="return_grad")
        if target in base:
            catalogue = _bad_arrays(args[target])
        elif target == "grad_out":
            catalogue = {
                "None": None,
                "nan": math.nan,
                "str": "abc",
                "array": np.ones(3),
                "list": [1.0],
                "2.0": 2.0,
                "object": object(),
            }
        elif target in ("weight", "pos_weight"):
            catalogue = {**_bad_arrays(np.ones(3, np.float32)), "right": np.ones(3, np.float32)}
        elif target == "reduction":
            catalogue = {**_BAD_OPTIONS, "sum": "sum", "none": "none", "upper": "MEAN"}
        elif target in ("log_target", "log_input", "full", "swap"):
            catalogue = {"None": None, "str": "yes", "int": 1, "True": True}
        elif target == "ignore_index":
            catalogue = _BAD_OPTIONS
        else:
            catalogue = _BAD_SCALARS
        what = data.draw(st.sampled_from(sorted(catalogue)), label="value")
        args[target] = _materialize(catalogue[what], args, target)
        args["return_grad"] = return_grad
        canon = {k: _canon(v) for k, v in args.items()}
        # a shape mismatch between array arguments may name either side
        names_ok = tuple(base) if target in base else ()
        status, res = _call_checked(fn, args, target, what, names_ok=names_ok)
        ran.append(status)
        if status == "err":
            return
        try:
            want = fn(**canon)
        except (TypeError, ValueError) as e:
            _violation(name, target, what, f"accepted, but canonical form rejected: {e}")
            return
        _check(_same(res, want), name, target, what, "result differs from canonical call")

    inner()
    assert len(ran) >= 20, len(ran)


# ------------------------------------------------------------------------------ optimizers

_OPT_OPTIONS = {
    "lr": _BAD_SCALARS,
    "momentum": _BAD_SCALARS,
    "dampening": _BAD_SCALARS,
    "weight_decay": _BAD_SCALARS,
    "eps": _BAD_SCALARS,
    "alpha": _BAD_SCALARS,
    "rho": _BAD_SCALARS,
    "lr_decay": _BAD_SCALARS,
    "initial_accumulator_value": _BAD_SCALARS,
    "betas": {
        "None": None,
        "str": "ab",
        "1-tuple": (0.9,),
        "3-tuple": (0.9, 0.9, 0.9),
        ">1": (1.5, 0.9),
        "nan": (math.nan, 0.9),
        "neg": (-0.1, 0.9),
        "float": 0.9,
    },
    "etas": {"None": None, "swapped": (1.2, 0.5), "1-tuple": (0.5,), "nan": (math.nan, 1.2)},
    "step_sizes": {"None": None, "swapped": (50, 1e-6), "str": "ab", "nan": (math.nan, 1)},
    "nesterov": {"None": None, "str": "yes", "True": True},
    "amsgrad": {"None": None, "str": "yes", "True": True},
    "centered": {"None": None, "str": "yes", "True": True},
    "maximize": {"None": None, "str": "yes", "True": True},
}


def _params():
    rng = np.random.default_rng(7)
    return [
        rng.standard_normal(5).astype(np.float32),
        rng.standard_normal((3, 4)).astype(np.float32),
        rng.standard_normal(2),
    ]  # float64


def _grads(params):
    return [np.full_like(p, 0.5) for p in params]


def _bad_params() -> dict:
    p = _params()
    ro = p[0].copy()
    ro.flags.writeable = False
    return {
        "None": None,
        "str": "abc",
        "empty list": [],
        "array": p[0],
        "list of lists": [p[0].tolist()],
        "int array": [np.ones(3, np.int32)],
        "read-only": [ro],
        "non-contiguous": [np.ones(10, np.float32)[::2]],
        "duplicate": [p[0], p[0]],
        "overlap": [p[1].reshape(-1)[:6], p[1].reshape(-1)[4:]],
        "32-d": [np.ones((1,) * 30 + (2, 2), np.float32)],
        "dicts without params": [{"lr": 0.1}],
        "generator": (q for q in p),
        "float16": [np.ones(3, np.float16)],
        "scalar": 3.0,
    }


def _bad_grads(params) -> dict:
    g = _grads(params)
    nc = np.zeros((3, 8), np.float32)[:, ::2]
    return {
        "None": None,
        "too short": g[:-1],
        "too long": g + [g[0]],
        "array": g[0],
        "None entry": [None, g[1], g[2]],
        "wrong shape": [g[0], np.ones((4, 3), np.float32), g[2]],
        "wrong dtype": [g[0].astype(np.float64), g[1], g[2]],
        "int dtype": [np.ones(5, np.int32), g[1], g[2]],
        "list entry": [g[0].tolist(), g[1], g[2]],
        "str entry": [g[0], g[1], "abc"],
        "nan": [g[0], np.full((3, 4), np.nan, np.float32), g[2]],
        "inf last": [g[0], g[1], np.array([np.inf, 1.0])],
        "non-contiguous": [g[0], nc, g[2]],
        "fortran": [g[0], np.asfortranarray(g[1]), g[2]],
        "32-d": [np.ones((1,) * 31 + (5,), np.float32), g[1], g[2]],
        "complex": [g[0].astype(np.complex64), g[1], g[2]],
        "tuple": tuple(g),
        "dict": {0: g[0]},
    }


def _state_snapshot(opt) -> list:
    arrays = []
    for st_ in opt.state.values():
        for v in st_.values():
            arrays.append(np.copy(v) if isinstance(v, np.ndarray) else v)
    return arrays


@pytest.mark.parametrize(
    "cls",
    [getattr(O, n) for n in O.__all__ if n in [c.__name__ for c in O.OPTIMIZERS.values()]]
    if isinstance(O.OPTIMIZERS, dict)
    else list(O.OPTIMIZERS),
)
def test_fuzz_optimizer(cls):
    sig = inspect.signature(cls)
    options = [k for k in sig.parameters if k in _OPT_OPTIONS]
    targets = ["params", "grads", "grads+check_finite"] + options
    ran: list = []

    @SETTINGS
    @given(st.data())
    def inner(data):
        target = data.draw(st.sampled_from(targets), label="target")
        params = _params()
        if target == "params":
            cat = _bad_params()
            what = data.draw(st.sampled_from(sorted(cat)), label="value")
            value = cat[what]
            snap = _snapshot(value if isinstance(value, list) else [])
            status, res = _call_checked(cls, {"params": value}, "params", what, names_ok=("param",))
            ran.append(status)
            _check(_unchanged(snap), cls.__name__, "params", what, "constructor wrote params")
            if (
                status == "ok"
                and isinstance(value, list)
                and value
                and isinstance(value[0], np.ndarray)
            ):
                res.step([np.ones_like(p) for p in value])  # usable
            return
        if target in options:
            cat = _OPT_OPTIONS[target]
            what = data.draw(st.sampled_from(sorted(cat)), label="value")
            kwargs = {"params": params, target: cat[what]}
            if cls.__name__ == "SGD" and target == "nesterov":
                kwargs["momentum"] = 0.9
            status, opt = _call_checked(cls, kwargs, target, what)
            ran.append(status)
            if status == "ok":
                st2, _ = _call_checked(opt.step, {"grads": _grads(params)}, "grads", "valid")
                _check(st2 == "ok", cls.__name__, target, what, "accepted but step failed")
            return
        opt = cls(params, lr=0.01)
        opt.step(_grads(params))  # state exists
        cat = _bad_grads(params)
        what = data.draw(st.sampled_from(sorted(cat)), label="value")
        args = {"grads": cat[what]}
        if target == "grads+check_finite":
            args["check_finite"] = True
        p_before = [p.copy() for p in params]
        s_before = _state_snapshot(opt)
        status, _ = _call_checked(opt.step, args, "grads", what)
        ran.append(status)
        fname = f"{cls.__name__}.step"
        if status == "err":
            _check(
                all(_eq(a, b) for a, b in zip(params, p_before, strict=True)),
                fname,
                target,
                what,
                "partial parameter write",
            )
            after = _state_snapshot(opt)
            _check(
                len(after) == len(s_before)
                and all(_same(a, b) for a, b in zip(after, s_before, strict=True)),
                fname,
                target,
                what,
                "partial state write",
            )
        elif target == "grads+check_finite":
            _check(
                what not in ("nan", "inf last"),
                fname,
                target,
                what,
                "check_finite accepted a non-finite gradient",
            )

    inner()
    assert len(ran) >= 20, len(ran)


@pytest.mark.parametrize("name", OF.__all__[:8])
def test_fuzz_functional_optimizer(name):
    fn = getattr(OF, name)
    params_sig = inspect.signature(fn).parameters
    state_args = [
        k
        for k, p in params_sig.items()
        if p.default is inspect.Parameter.empty and k not in ("params", "grads")
    ]
    ran: list = []

    @SETTINGS
    @given(st.data())
    def inner(data):
        params = _params()
        grads = _grads(params)
        args = {"params": params, "grads": grads}
        for k in state_args:
            p = params_sig[k]
            args[k] = [np.zeros_like(q) for q in params] if "step" not in k else [1.0] * 3
            del p
        target = data.draw(st.sampled_from(["grads", "params"] + state_args), label="target")
        cat = _bad_grads(params)
        what = data.draw(st.sampled_from(sorted(cat)), label="value")
        args[target] = (
            cat[what]
            if target == "grads"
            else [
                v if i != 1 else (np.ones((4, 3), np.float32) if what != "None entry" else None)
                for i, v in enumerate(args[target])
            ]
            if target != "params" or what != "None"
            else None
        )
        outputs = ("params", *state_args)
        status, _ = _call_checked(
            fn, args, target, what, outputs=outputs, names_ok=("param", "grads", *state_args)
        )
        ran.append(status)

    inner()
    assert len(ran) >= 20, len(ran)
