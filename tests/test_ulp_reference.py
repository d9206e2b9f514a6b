"""The references of the float32 activation sweep (``scripts/ulp_reference.py``, used by
``scripts/ulp_sweep_activations.py``) are exact to far below a float32 ULP.

Every reference (forward, gradient from the input, gradient from the output) is compared with
mpmath at 256 bits (more where ``x - tanh x`` cancels) on random points in each region that
matters: log-uniform magnitudes over the whole float32 range, the core [-12, 12], dense bands
and the float32 neighbours of each derivative's root (gelu', gelu-tanh', silu', mish',
hardswish'), tanhshrink near 0, the kinks and the special values. The bound is 1e-4 float32
ULPs of the exact value (subnormal spacing below 2^-126); exact zeros must be exactly 0 and NaN
inputs give NaN. The mpmath formulas (``tests/activation_mp.py``, shared with the float64
test) are written independently of the module's (closed forms, checked against
``mpmath.diff`` here), so a broken reference or a broken band fails here.
"""

from __future__ import annotations

import importlib.util
import math
import sys
import zlib
from pathlib import Path

import mpmath
import numpy as np
import pytest

_SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


def _load():
    if str(_SCRIPTS) not in sys.path:
        sys.path.insert(0, str(_SCRIPTS))
    spec = importlib.util.spec_from_file_location("ulp_reference", _SCRIPTS / "ulp_reference.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


R = _load()
BOUND = 1e-4  # float32 ULPs
PREC = 256
mp = mpmath.mp

from activation_mp import FWD, GRAD, GRAD_OUTPUT  # noqa: E402  (the exact definitions)

ROOTS = {"silu": -1.2785, "mish": -1.1924, "gelu": -0.7518, "gelu_tanh": -0.7522}
KINKS = [0.0, 0.5, 1.0, 1.5, 3.0, 6.0, 20.0, -0.5, -1.0, -1.5, -3.0, -6.0, -20.0]


# ----------------------------------------------------------------------------- sampling
def _f32(v):
    return np.asarray(v, dtype=np.float32)


def _neighbours(v, k):
    """float32(v) and its k float32 neighbours on either side."""
    lo = hi = np.float32(v)
    out = [lo]
    for _ in range(k):
        lo = np.nextafter(lo, np.float32(-np.inf))
        hi = np.nextafter(hi, np.float32(np.inf))
        out += [lo, hi]
    return np.array(out, np.float32)


def _regions(name, rng):
    """name -> float32 sample points, by region."""
    n = 2000
    mag = np.exp2(rng.uniform(-149, 127.99, n))
    out = {
        "wide": _f32(mag * rng.choice([-1.0, 1.0], n)),
        "core": _f32(rng.uniform(-12, 12, n)),
        "special": np.concatenate(
            [_neighbours(k, 3) for k in KINKS]
            + [_f32([np.finfo(np.float32).max, -np.finfo(np.float32).max, 1e-45, -1e-45])]
        ),
    }
    if name in ROOTS:
        r = ROOTS[name]
        w = 2 * 0.0625
        out["root band"] = _f32(rng.uniform(r - w, r + w, 2500))
        out["root neighbours"] = _neighbours(R.ROOTS[name][0], 100)
        out["band edges"] = np.concatenate(
            [_neighbours(r + s * 0.0625, 50) for s in (-1, 1)]
        )  # either side of the switch
    if name == "hardswish":
        out["root neighbours"] = _neighbours(-1.5, 200)
    if name == "tanhshrink":
        m = np.exp2(rng.uniform(-50, 1, 2500))
        out["near 0"] = _f32(m * rng.choice([-1.0, 1.0], m.size))
        out["series edge"] = np.concatenate([_neighbours(s * 0.125, 50) for s in (-1, 1)])
    return out


def _ulps(ref, exact):
    """|ref - exact| in float32 ULPs of exact (subnormal spacing below 2^-126)."""
    if exact == 0:
        return 0.0 if ref == 0 else math.inf
    e = int(mpmath.floor(mpmath.log(abs(exact), 2)))
    ulp = mpmath.ldexp(1, max(e, -126) - 23)
    return float(abs(mpmath.mpf(ref) - exact) / ulp)


def _worst(fn, exact, xs):
    worst, at = 0.0, None
    with mpmath.workprec(PREC):
        for x in xs:
            xv = float(x)
            err = _ulps(fn(xv), exact(mpmath.mpf(xv)))
            if not err <= worst:
                worst, at = err, xv
    return worst, at


# ----------------------------------------------------------------------------- the tests
NAMES = sorted(R.FORWARD)


def test_every_activation_has_references():
    from fastact.kernels.activations import ACTIVATIONS

    assert set(R.FORWARD) == set(ACTIVATIONS) == set(R.GRAD) == set(FWD) == set(GRAD)
    with_output = {n for n, op in ACTIVATIONS.items() if op.scalars["grad_output"] is not None}
    assert with_output <= set(R.GRAD_OUTPUT) <= set(GRAD_OUTPUT)


@pytest.mark.parametrize("name", NAMES)
def test_forward_reference(name):
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    for region, xs in _regions(name, rng).items():
        worst, at = _worst(R.FORWARD[name], FWD[name], xs)
        assert worst <= BOUND, f"{name} forward, {region}: {worst:.3g} ULP at x={at!r}"


@pytest.mark.parametrize("name", NAMES)
def test_gradient_reference(name):
    rng = np.random.default_rng(zlib.crc32(name.encode()) + 1)
    for region, xs in _regions(name, rng).items():
        if name in ("tanhshrink",) and region == "near 0":
            xs = xs[:300]  # tanh^2: no cancellation, fewer points
        worst, at = _worst(R.GRAD[name], GRAD[name], xs)
        assert worst <= BOUND, f"{name} gradient, {region}: {worst:.3g} ULP at x={at!r}"


@pytest.mark.parametrize("name", sorted(R.GRAD_OUTPUT))
def test_gradient_from_output_reference(name):
    rng = np.random.default_rng(zlib.crc32(name.encode()) + 2)
    for region, xs in _regions(name, rng).items():
        with np.errstate(over="ignore"):
            ys = np.array([R.FORWARD[name](float(x)) for x in xs]).astype(np.float32)
            ys = np.concatenate([ys, np.nextafter(ys, np.float32(np.inf))])
        worst, at = _worst(R.GRAD_OUTPUT[name], GRAD_OUTPUT[name], ys)
        assert worst <= BOUND, f"{name} from output, {region}: {worst:.3g} ULP at y={at!r}"


@pytest.mark.parametrize("name", NAMES)
def test_special_values(name):
    """NaN in, NaN out; +-inf give the limits."""
    nan, inf = math.nan, math.inf
    assert math.isnan(R.FORWARD[name](nan)) and math.isnan(R.GRAD[name](nan))
    if name in R.GRAD_OUTPUT:
        assert math.isnan(R.GRAD_OUTPUT[name](nan))
    with mpmath.workprec(PREC):
        for x in (-inf, inf):
            big = mpmath.mpf(float(np.finfo(np.float32).max)) * (1 if x > 0 else -1)
            fwd, grad = R.FORWARD[name](x), R.GRAD[name](x)
            ef, eg = FWD[name](big), GRAD[name](big)
            if abs(ef) > 1e30:  # unbounded: the limit is the signed infinity
                assert fwd == math.copysign(inf, float(ef)), (name, x, fwd)
            else:
                assert abs(fwd - float(ef)) <= 1e-15 * abs(float(ef)) + 1e-30, (name, x, fwd)
            assert abs(grad - float(eg)) <= 1e-15 * abs(float(eg)) + 1e-30, (name, x, grad)


def test_closed_forms_match_numerical_derivatives():
    """The hand-written exact gradients above equal mpmath.diff of the exact forwards."""
    rng = np.random.default_rng(7)
    xs = [float(v) for v in rng.uniform(-8, 8, 12)] + [-1.2785, -1.1924, -0.7518, 2.5e-3]
    with mpmath.workprec(PREC):
        for name, d in GRAD.items():
            for x in xs:
                if any(abs(x - k) < 1e-3 for k in KINKS) or (name == "softplus" and x > 20):
                    continue
                exact = d(mpmath.mpf(x))
                num = mpmath.diff(FWD[name], mpmath.mpf(x))
                assert abs(num - exact) <= mpmath.mpf(2) ** -120 * (1 + abs(exact)), (name, x)


@pytest.mark.parametrize("name", sorted(ROOTS))
def test_band_is_needed(name):
    """Without the series band, float64 loses far more than the bound near the root (so the
    tests above would catch a band that is switched off or misplaced)."""
    xs = _neighbours(R.ROOTS[name][0], 100)
    worst, _ = _worst(R.naive_grad(name), GRAD[name], xs)
    assert worst > 100 * BOUND


def _sweep_module():
    spec = importlib.util.spec_from_file_location(
        "ulp_sweep_activations", _SCRIPTS / "ulp_sweep_activations.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_sweep_error_measure():
    """The sweep's statistics: ULPs of the exact value (subnormal spacing at the bottom), NaN
    inputs, non-finite mismatches and exact zeros counted apart."""
    S = _sweep_module()
    f32 = np.float32
    big = float(np.finfo(f32).max)
    cases = [  # (result, exact): what it counts as
        (1.0, 1.0),  # 0 ULP
        (1.0 + 2.0**-23, 1.0),  # 1 ULP
        (1.0, 1.0 + 2.0**-25),  # 0.25 ULP
        (0.75, 0.75 + 2.0**-22),  # 4 ULP (spacing 2^-24 below 1)
        (2.0**-140, 2.0**-140 + 2.0**-148),  # 2 subnormal spacings
        (np.nan, 1.0),  # non-finite mismatch
        (1.0, np.nan),  # NaN in, number out
        (np.nan, np.nan),  # fine
        (np.inf, 1e300),  # overflow as the exact value rounds: fine
        (big, 1e300),  # non-finite mismatch
        (0.0, 0.0),  # an exact zero, right
        (-0.0, 0.0),  # right
        (2.0**-149, 0.0),  # an exact zero, wrong: 1 ULP
    ]
    y = np.array([c[0] for c in cases], f32)
    ref = np.array([c[1] for c in cases], np.float64)
    x = np.arange(y.size, dtype=f32)
    a = S.Acc()
    a.add(x, x, y, ref, 0.0)
    assert a.max_ulp == 4.0 and a.at["x"] == 3.0
    assert a.over == {"0.5": 4, "1": 2, "2": 1, "4": 0}
    assert (a.nan_in, a.nan_in_example["x"]) == (1, 6.0)
    assert (a.nonfinite, a.nonfinite_example["x"]) == (2, 5.0)
    assert (a.zeros, a.zeros_wrong, a.zeros_wrong_example["x"]) == (3, 1, 12.0)


def test_sweep_tool_runs(tmp_path):
    """A coarse run of two activations writes the table and the JSON; relu is exact."""
    import json

    S = _sweep_module()
    S.main(["--func", "relu,hardswish", "--step", "4000037", "--out", str(tmp_path)])
    blob = json.loads((tmp_path / "sweep.json").read_text())
    res = blob["results"]
    n = blob["meta"]["inputs"] + S.special_inputs().size
    for d in ("forward", "backward (input)", "backward (output)"):
        for lib in ("fastact", "torch"):
            assert res["relu"][d][lib]["max_ulp"] == 0 and res["relu"][d][lib]["count"] == n
    assert "backward (output)" not in res["hardswish"]
    assert res["hardswish"]["backward (input)"]["torch"]["zeros"] >= 1  # -1.5 is a special
    assert "| hardswish | backward (input) |" in (tmp_path / "sweep.md").read_text()


def test_sweep_shards_merge_to_the_whole_run(tmp_path):
    """A run in three parts, merged, gives the figures of the same run in one part: the same
    maxima at the same inputs, the same counts; parts that overlap or are missing are
    refused."""
    import json

    S = _sweep_module()
    args = ["--func", "sigmoid,hardswish", "--step", "3000017", "--no-torch"]
    S.main([*args, "--out", str(tmp_path / "whole")])
    for k in range(3):
        S.main([*args, "--shard", f"{k}/3", "--out", str(tmp_path / f"part{k}")])
    parts = [str(tmp_path / f"part{k}") for k in range(3)]
    S.main(["--merge", *parts, "--out", str(tmp_path / "merged")])
    whole = json.loads((tmp_path / "whole" / "sweep.json").read_text())["results"]
    merged = json.loads((tmp_path / "merged" / "sweep.json").read_text())["results"]
    assert whole.keys() == merged.keys()
    for name, by_dir in whole.items():
        for d, libs in by_dir.items():
            w, m = libs["fastact"], merged[name][d]["fastact"]
            for key in ("max_ulp", "at", "count", "over", "zeros", "zeros_wrong", "nan_in"):
                assert w[key] == m[key], (name, d, key)
            assert w["count"] > 1400  # every part contributed
    blobs = [json.loads((tmp_path / p / "sweep.json").read_text()) for p in ("part0", "part1")]
    with pytest.raises(ValueError, match="missing"):
        S.merge_runs(blobs)
    with pytest.raises(ValueError, match="two runs"):
        S.merge_runs([blobs[0], blobs[0]])
