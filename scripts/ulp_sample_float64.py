#!/usr/bin/env python
"""ULP sample of every float64 activation, forward and backward, fastact and torch (not a test).

The float64 counterpart of ``scripts/ulp_sweep_activations.py`` (which covers all 2^32
float32 inputs): float64 has too many inputs to sweep, so each function and direction is
measured on

* ``wide``: ``--n`` inputs with log-uniform magnitudes 1e-300 .. 1e300, both signs;
* ``moderate``: ``--n // 10`` inputs with log-uniform magnitudes 1e-4 .. 1e3, both signs
  (where the activations bend; ``wide`` puts under 2% of its inputs there);
* ``bands``: ``--band`` inputs around each zero of the derivative (silu', mish', gelu',
  gelu-tanh'): half the consecutive float64 values centred on the root, half uniform within
  1/32 of it;
* ``edges``: +-0, +-inf, NaN, the smallest subnormal and normal, the largest finite, the kinks
  and thresholds (+-0.5, +-1, -1.5, +-3, 6, 20, exp's overflow and underflow points ...), and
  each one's 16 float64 neighbours on either side;

against the long double references of ``scripts/ulp_reference_f64.py`` (within 0.05 ULP,
0.3 in gelu(tanh)'s far tail; tests/test_ulp_reference_f64.py). Errors are in float64 ULPs of
the exact result (the subnormal spacing 2^-1074 below the smallest normal); a result that is
NaN or infinite where the exact value is finite (or the reverse) counts separately as "wrong
kind" (e.g. silu(-inf): the limit is 0, fastact and torch give NaN). NaN inputs are left
out: their results follow torch's rules (docs/torch_semantics.md), which tests check.
"backward (output)" feeds the backward the float64 output of fastact's forward (the
reference is the gradient written with that output).

Usage::

    python scripts/ulp_sample_float64.py --n 1000000                       # quick, all
    python scripts/ulp_sample_float64.py --func gelu,silu --direction backward
    python scripts/ulp_sample_float64.py --n 100000000 --out /tmp/f64      # issue #18's 1e8

writes ``DIR/sample64.md`` and ``DIR/sample64.json``. Cost: the references are NumPy long
double (x87, single-threaded): ~0.3-1 s per million inputs per function and direction
(gelu's continued fraction more where |x| is 1.4-4.2), so 1e8 inputs for every function and
direction take about an hour.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time

import numpy as np

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, _HERE)
sys.path.insert(0, os.path.join(_HERE, ".."))

import ulp_reference as R32  # noqa: E402
import ulp_reference_f64 as R  # noqa: E402
import ulp_sweep_activations as S  # noqa: E402

DIRECTIONS = ("forward", "backward (input)", "backward (output)")
LD = np.longdouble
_TINY = np.ldexp(LD(1), -1074)


def ulp_errors(got: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(float64 ULP errors of ``got`` against the long double ``ref``, mask of "wrong kind"
    results: NaN where a number is due or the reverse, a wrong infinity)."""
    g = got.astype(LD)
    with np.errstate(over="ignore"):  # an exact value beyond float64's range rounds to +-inf
        ref = np.where(np.isinf(ref.astype(np.float64)), ref.astype(np.float64), ref)
    rn, gn = np.isnan(ref), np.isnan(g)
    rinf, ginf = np.isinf(ref), np.isinf(g)
    wrong = (rn != gn) | ((rinf | ginf) & ~rn & ~gn & (g != ref))
    fin = ~(rn | gn | rinf | ginf)
    r = np.where(fin, ref, LD(1))
    _, e = np.frexp(r)
    ulp = np.ldexp(LD(1), np.maximum(e.astype(np.int64) - 1, -1022) - 52)
    ulp = np.where(r == 0, _TINY, ulp)
    err = np.where(fin, np.abs(np.where(fin, g, LD(0)) - r) / ulp, LD(0))
    return err.astype(np.float64), wrong


class Acc:
    """Worst error and counts of one (function, direction, library)."""

    def __init__(self) -> None:
        self.max_ulp, self.at, self.count, self.over4, self.wrong = 0.0, None, 0, 0, 0
        self.wrong_example = None

    def add(self, x, inp, got, ref) -> None:
        err, wrong = ulp_errors(got, ref)
        self.count += x.size
        self.over4 += int((err > 4).sum())
        i = int(np.argmax(err))
        if err[i] > self.max_ulp or self.at is None:
            self.max_ulp = float(err[i])
            self.at = {
                "x": float(x[i]),
                "input": float(inp[i]),
                "result": float(got[i]),
                "exact": repr(ref[i]),
            }
        if wrong.any():
            j = int(np.nonzero(wrong)[0][0])
            if self.wrong == 0:
                self.wrong_example = {
                    "x": float(x[j]),
                    "result": float(got[j]),
                    "exact": repr(ref[j]),
                }
            self.wrong += int(wrong.sum())


def _log_uniform(rng, n, lo, hi) -> np.ndarray:
    mag = np.exp(rng.uniform(math.log(lo), math.log(hi), n))
    return mag * rng.choice(np.array([-1.0, 1.0]), n)


def edges() -> np.ndarray:
    f = np.finfo(np.float64)
    centres = [
        0.5,
        1.0,
        1.5,
        3.0,
        6.0,
        20.0,
        0.125,
        0.25,
        1e-3,
        709.782712893384,
        745.1332191019411,
        36.04365338911715,
        37.42994775023705,
        19.0,
        40.0,
    ]
    centres = centres + [-c for c in centres] + [float(r[0]) for r in R.ROOTS64.values()]
    out = [
        0.0,
        -0.0,
        np.inf,
        -np.inf,
        np.nan,
        f.max,
        -f.max,
        f.smallest_subnormal,
        -f.smallest_subnormal,
        f.tiny,
        -f.tiny,
    ]
    for c in centres:
        lo = hi = np.float64(c)
        out.append(lo)
        for _ in range(16):
            lo, hi = np.nextafter(lo, -np.inf), np.nextafter(hi, np.inf)
            out += [lo, hi]
    return np.unique(np.array(out, np.float64))


def inputs(name: str, n: int, band: int, chunk: int, seed: int):
    """Yields (set name, float64 inputs) in chunks of at most ``chunk``."""
    rng = np.random.default_rng(seed)
    for label, total, lo, hi in (("wide", n, 1e-300, 1e300), ("moderate", n // 10, 1e-4, 1e3)):
        done = 0
        while done < total:
            k = min(chunk, total - done)
            yield label, _log_uniform(rng, k, lo, hi)
            done += k
    if name in R.ROOTS64 and band:
        r = np.float64(R.ROOTS64[name][0])
        half = band // 2
        bits = r.view(np.int64) + np.arange(-(half // 2), half - half // 2, dtype=np.int64)
        yield "bands", bits.view(np.float64)
        yield "bands", r + rng.uniform(-1 / 32, 1 / 32, band - half)
    yield "edges", edges()


def sample_function(name, n, band, chunk, directions, with_torch, seed):
    params = R32.PARAMS.get(name, {})
    fa_fwd, fa_bwd, fa_out = S._fastact_ops(name, params)
    dirs = [d for d in directions if d != "backward (output)" or fa_out is not None]
    if "backward (output)" in dirs and name not in R.GRAD_OUTPUT64:
        raise KeyError(f"{name}: fastact offers output=, no float64 reference for it")
    torch = t_fwd = t_out = None
    if with_torch:
        import torch

        t_fwd, t_out = S._torch_ops(name, params)
    res = {d: {"fastact": Acc(), "torch": Acc() if with_torch else None} for d in dirs}
    if "backward (output)" in dirs and t_out is None:
        res["backward (output)"]["torch"] = None
    for _label, x in inputs(name, n, band, chunk, seed):
        x = x[~np.isnan(x)]  # NaN inputs: torch's rules, held by the tests, not accuracy
        ones = np.ones_like(x)
        y = np.asarray(fa_fwd(x))
        if "forward" in dirs:
            ref = R.FORWARD64[name](x)
            res["forward"]["fastact"].add(x, x, y, ref)
            if torch is not None:
                res["forward"]["torch"].add(x, x, t_fwd(torch.from_numpy(x)).numpy(), ref)
        if "backward (input)" in dirs:
            ref = R.GRAD64[name](x)
            res["backward (input)"]["fastact"].add(x, x, np.asarray(fa_bwd(ones, x)), ref)
            if torch is not None:
                xt = torch.from_numpy(x.copy()).requires_grad_()
                t_fwd(xt).backward(torch.from_numpy(ones))
                res["backward (input)"]["torch"].add(x, x, xt.grad.numpy(), ref)
        if "backward (output)" in dirs:
            ref = R.GRAD_OUTPUT64[name](y)
            res["backward (output)"]["fastact"].add(x, y, np.asarray(fa_out(ones, y)), ref)
            acc = res["backward (output)"]["torch"]
            if acc is not None:
                got = t_out(torch.from_numpy(ones), torch.from_numpy(y)).numpy()
                acc.add(x, y, got, ref)
    return res


def table(results: dict) -> str:
    lines = [
        "| function | direction | fastact max ULP | where (x) | > 4 ULP | wrong kind "
        "| torch max ULP | torch where (x) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, per_dir in results.items():
        for d, libs in per_dir.items():
            fa, to = libs["fastact"], libs["torch"]
            tcol = f"{to.max_ulp:.3g} | {to.at['x']:.17g}" if to is not None else "- | -"
            lines.append(
                f"| {name} | {d} | {fa.max_ulp:.3g} | {fa.at['x']:.17g} | {fa.over4} | "
                f"{fa.wrong} | {tcol} |"
            )
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--func", default="", help="comma-separated activations (default: all)")
    ap.add_argument("--n", type=int, default=1_000_000, help="wide-range inputs per function")
    ap.add_argument("--band", type=int, default=1_000_000, help="inputs around each root")
    ap.add_argument("--chunk", type=int, default=1_000_000)
    ap.add_argument("--direction", choices=("forward", "backward", "all"), default="all")
    ap.add_argument("--torch", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=os.path.join(tempfile.gettempdir(), "fastact_ulp_f64"))
    args = ap.parse_args(argv)
    names = [s for s in args.func.split(",") if s] or list(R.FORWARD64)
    directions = {
        "forward": ("forward",),
        "backward": DIRECTIONS[1:],
        "all": DIRECTIONS,
    }[args.direction]
    results, seconds = {}, {}
    for name in names:
        t0 = time.perf_counter()
        results[name] = sample_function(
            name, args.n, args.band, args.chunk, directions, args.torch, args.seed
        )
        seconds[name] = time.perf_counter() - t0
        print(f"{name}: {seconds[name]:.1f} s", flush=True)
    md = table(results)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "sample64.md"), "w") as fh:
        fh.write(md + "\n")
    with open(os.path.join(args.out, "sample64.json"), "w") as fh:
        json.dump(
            {
                "n": args.n,
                "band": args.band,
                "seconds": seconds,
                "results": {
                    k: {
                        d: {lib: (a.__dict__ if a else None) for lib, a in v.items()}
                        for d, v in per.items()
                    }
                    for k, per in results.items()
                },
            },
            fh,
            indent=1,
        )
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
