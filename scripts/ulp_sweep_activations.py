"""ULP sweep of every float32 activation, forward and backward, fastact and torch (not a test).

Every float32 bit pattern (or every ``--step``-th one, from 0) goes through, for each activation
in :data:`fastact.kernels.activations.ACTIVATIONS` at torch's default parameters (``threshold``:
``threshold=1.0, value=0.5``):

* ``forward``            fastact's ``f(x)``; torch's ``torch.nn.functional`` function;
* ``backward (input)``   the gradient from the input with grad_output = 1: fastact's
  ``f_backward(1, x)``; torch's autograd gradient of its forward (what ``.backward()`` gives);
* ``backward (output)``  where fastact offers it, the gradient from the output
  ``f_backward(1, output=y)`` with ``y`` = fastact's float32 forward of ``x``; torch's
  result-based op on the same ``y`` (``sigmoid_backward``, ``tanh_backward``,
  ``threshold_backward``, ``leaky_relu_backward(.., True)``, ``hardtanh_backward``,
  ``elu_backward(.., is_result=True, ..)``: the ops torch's autograd uses after in-place
  forwards), or none ("-").

Both libraries run their public array functions on the same arrays, chunk by chunk
(``--chunk``, 2^23 elements by default: about 0.6 GB at a time). Each result is compared with
the references of ``scripts/ulp_reference.py`` (within 3.6e-7 float32 ULP of mpmath, Taylor
series about the derivatives' roots with the root in two words where float64 cancels; checked
by ``tests/test_ulp_reference.py``). The error is in float32 ULPs of the exact result, ``|y -
ref| / 2^(max(floor(log2|ref|), -126) - 23)`` (subnormal spacing below the smallest normal).
Reported apart from the ULP figures, each with a count and an example:

* ``NaN in``: the reference is NaN (a NaN input) but the result is a number;
* ``non-finite``: a NaN result where the exact one is a number, or an infinity that the exact
  result rounded to float32 is not (or a finite result where it is);
* ``zeros``: inputs whose exact result is 0 (flat parts, kinks, hardswish'(-1.5), and exact
  results below 1e-308) and how many of them did not come out exactly +-0.

Usage::

    python scripts/ulp_sweep_activations.py --step 10007                  # quick run, all
    python scripts/ulp_sweep_activations.py --func gelu,silu --direction backward --step 101
    python scripts/ulp_sweep_activations.py --no-torch --threads 2 --out /tmp/sweep
    python scripts/ulp_sweep_activations.py                               # all 2**32 inputs
    python scripts/ulp_sweep_activations.py --shard 3/64 --out /tmp/s3   # 1/64 of them
    python scripts/ulp_sweep_activations.py --merge /tmp/s0 ... /tmp/s63 --out /tmp/all

writes ``DIR/sweep.md`` (the table) and ``DIR/sweep.json`` (all figures, examples, timings)
under ``--out`` (default: ``fastact_ulp_sweep`` in the temporary folder) and prints the
table. A run over all inputs can be cut into ``--shard K/N`` parts (separate processes,
machines or sessions) whose folders ``--merge`` puts together: the merged table is the one a
run in one part gives (same maxima at the same inputs, same counts), and parts of different
fastact commits, repeated parts or missing parts are refused.

Runtime (2 Zen 3 cores shared with other jobs, ``--threads 2``): ``--step 101`` (42.5M
inputs per function) gives the whole table in 1.5 to 4 minutes depending on the load (98 s
on a quiet machine; 1.1 GB peak memory with the default chunk). One function over all 2^32
inputs: gelu forward and backward, both libraries, 237 s wall (6 CPU-minutes, 0.76 GB); at
about 2 minutes per function and direction, the whole table over all 2^32 inputs (51
function-directions) takes roughly 2 hours, up to about 4 on a loaded machine.
On a 2-core Intel Xeon VM (2026-12-04, shared with other work) all 22 activations over all
2^32 inputs took 88 minutes in 84 parts (``notes/ulp_sweep_float32_all.md``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time

import numba
import numpy as np

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, _HERE)
sys.path.insert(0, os.path.join(_HERE, ".."))

import ulp_reference as R  # noqa: E402

import fastact  # noqa: E402
from fastact.kernels.activations import ACTIVATIONS  # noqa: E402

_BLK = 1 << 16  # elements per parallel block of the statistics kernel
DIRECTIONS = ("forward", "backward (input)", "backward (output)")
_NI = 12  # integer statistics per block, see _stats


# ----------------------------------------------------------------------------- numba kernels
@numba.njit(parallel=True)
def _patterns(start, step, first, n, out):
    """out[i] = float32 with bit pattern start + (first + i) * step."""
    for i in numba.prange(n):
        out[i] = np.uint32(start + (first + i) * step).view(np.float32)


_MAPS: dict = {}


def _mapper(f):
    """Parallel ``out[i] = f(float64(x[i]))`` for a jitted scalar reference ``f``."""
    m = _MAPS.get(f)
    if m is None:

        @numba.njit(parallel=True, error_model="numpy")
        def m(x, out):
            for i in numba.prange(x.size):
                out[i] = f(np.float64(x[i]))

        _MAPS[f] = m
    return m


@numba.njit(inline="always")
def _ulp_err(v, r):
    ex = ((np.int64(np.float64(r).view(np.int64)) >> 52) & 0x7FF) - 1023
    return abs(np.float64(v) - r) / math.ldexp(1.0, max(ex, -126) - 23)


@numba.njit(parallel=True, error_model="numpy")
def _stats(y, ref, out_max, out_i):
    """Per block of _BLK elements: out_max = worst finite ULP error; out_i = [argmax, >0.5,
    >1, >2, >4, NaN-in count, its first index, non-finite count, first index, zeros,
    zeros not 0, first index] (indexes -1 when none)."""
    n = y.size
    nblk = out_max.size
    for b in numba.prange(nblk):
        lo = b * _BLK
        hi = min(lo + _BLK, n)
        best = -1.0
        besti = -1
        c05 = 0
        c1 = 0
        c2 = 0
        c4 = 0
        nan_c = 0
        nan_i = -1
        nf_c = 0
        nf_i = -1
        z_c = 0
        zb_c = 0
        zb_i = -1
        for i in range(lo, hi):
            r = ref[i]
            v = y[i]
            if r != r:
                if v == v:
                    if nan_c == 0:
                        nan_i = i
                    nan_c += 1
                continue
            if v != v:
                if nf_c == 0:
                    nf_i = i
                nf_c += 1
                continue
            r32 = np.float32(r)
            if np.isinf(r32) or np.isinf(v):
                if v != r32:
                    if nf_c == 0:
                        nf_i = i
                    nf_c += 1
                continue
            if r == 0.0:
                z_c += 1
                if v != 0.0:
                    if zb_c == 0:
                        zb_i = i
                    zb_c += 1
            e = _ulp_err(v, r)
            if e > best:
                best = e
                besti = i
            if e > 0.5:
                c05 += 1
                if e > 1.0:
                    c1 += 1
                    if e > 2.0:
                        c2 += 1
                        if e > 4.0:
                            c4 += 1
        out_max[b] = best
        o = out_i[b]
        o[0] = besti
        o[1] = c05
        o[2] = c1
        o[3] = c2
        o[4] = c4
        o[5] = nan_c
        o[6] = nan_i
        o[7] = nf_c
        o[8] = nf_i
        o[9] = z_c
        o[10] = zb_c
        o[11] = zb_i


# ----------------------------------------------------------------------------- accumulation
def _example(x, inp, y, ref, i):
    ex = {"x": float(x[i]), "bits": f"{int(x[i : i + 1].view(np.uint32)[0]):#010x}"}
    if inp is not x:
        ex["input"] = float(inp[i])
    ex["result"] = float(y[i])
    ex["exact"] = float(ref[i])
    return ex


class Acc:
    """Running statistics of one (function, direction, library)."""

    def __init__(self):
        self.max_ulp = -1.0
        self.at = None
        self.count = 0
        self.over = {"0.5": 0, "1": 0, "2": 0, "4": 0}
        self.nan_in = 0
        self.nan_in_example = None
        self.nonfinite = 0
        self.nonfinite_example = None
        self.zeros = 0
        self.zeros_wrong = 0
        self.zeros_wrong_example = None
        self.seconds = 0.0

    def add(self, x, inp, y, ref, seconds):
        nblk = (y.size + _BLK - 1) // _BLK
        mx = np.empty(nblk)
        st = np.empty((nblk, _NI), np.int64)
        _stats(y, ref, mx, st)
        self.count += y.size
        self.seconds += seconds
        j = int(np.argmax(mx))
        if mx[j] > self.max_ulp:
            self.max_ulp = float(mx[j])
            self.at = _example(x, inp, y, ref, int(st[j, 0]))
        tot = st.sum(axis=0)
        for k, key in enumerate(self.over, start=1):
            self.over[key] += int(tot[k])
        for cnt, idx, attr in ((5, 6, "nan_in"), (7, 8, "nonfinite"), (10, 11, "zeros_wrong")):
            if tot[cnt]:
                if getattr(self, attr) == 0:
                    first = int(st[np.nonzero(st[:, cnt])[0][0], idx])
                    setattr(self, attr + "_example", _example(x, inp, y, ref, first))
                setattr(self, attr, getattr(self, attr) + int(tot[cnt]))
        self.zeros += int(tot[9])

    def as_dict(self):
        return {k: v for k, v in vars(self).items()}

    @classmethod
    def from_dict(cls, d):
        a = cls()
        for k, v in d.items():
            setattr(a, k, dict(v) if isinstance(v, dict) and k == "over" else v)
        return a

    def merge(self, other):
        """Fold in the statistics of ``other`` (another part of the inputs): the larger
        maximum with its input, counts added, each example from the first part that has one."""
        if other.max_ulp > self.max_ulp:
            self.max_ulp, self.at = other.max_ulp, other.at
        self.count += other.count
        self.seconds += other.seconds
        self.zeros += other.zeros
        for key in self.over:
            self.over[key] += other.over[key]
        for attr in ("nan_in", "nonfinite", "zeros_wrong"):
            if getattr(other, attr) and not getattr(self, attr):
                setattr(self, attr + "_example", getattr(other, attr + "_example"))
            setattr(self, attr, getattr(self, attr) + getattr(other, attr))


# ----------------------------------------------------------------------------- the libraries
def _fastact_ops(name, params):
    """(forward(x), backward_input(g, x), backward_output(g, y) or None) of fastact."""
    base, kw = name, dict(params)
    if name == "gelu_tanh":
        base, kw = "gelu", {"approximate": "tanh"}
    fwd = getattr(fastact, base)
    bwd = getattr(fastact, base + "_backward")
    out = None
    if ACTIVATIONS[name].scalars["grad_output"] is not None:

        def out(g, y):
            return bwd(g, input=None, output=y, **kw)

    return (lambda x: fwd(x, **kw)), (lambda g, x: bwd(g, x, **kw)), out


def _torch_ops(name, params):
    """(forward(x), backward from the output (g, y) or None) of torch."""
    import torch

    F = torch.nn.functional
    A = torch.ops.aten
    p = params
    if name in ("sigmoid", "tanh"):
        fwd = getattr(torch, name)
    elif name == "gelu_tanh":
        fwd = lambda x: F.gelu(x, approximate="tanh")  # noqa: E731
    elif name == "threshold":
        fwd = lambda x: F.threshold(x, p["threshold"], p["value"])  # noqa: E731
    else:
        f = getattr(F, name)
        fwd = lambda x: f(x, **p)  # noqa: E731
    a = p.get("alpha", 1.0)
    out = {
        "sigmoid": lambda g, y: A.sigmoid_backward(g, y),
        "tanh": lambda g, y: A.tanh_backward(g, y),
        "relu": lambda g, y: A.threshold_backward(g, y, 0),
        "leaky_relu": lambda g, y: A.leaky_relu_backward(g, y, p.get("negative_slope"), True),
        "hardtanh": lambda g, y: A.hardtanh_backward(g, y, -1.0, 1.0),
        "relu6": lambda g, y: A.hardtanh_backward(g, y, 0.0, 6.0),
        "elu": lambda g, y: A.elu_backward(g, a, 1, 1, True, y),
        "celu": lambda g, y: A.elu_backward(g, a, 1, 1 / a, True, y),
        "selu": lambda g, y: A.elu_backward(g, R.SELU_ALPHA, R.SELU_SCALE, 1, True, y),
        "threshold": lambda g, y: A.threshold_backward(g, y, p.get("threshold")),
    }.get(name)
    return fwd, out


# ----------------------------------------------------------------------------- the sweep
def special_inputs() -> np.ndarray:
    """Inputs a sampled run adds: +-0, +-inf, NaN, the extreme and subnormal magnitudes, the
    kinks (+-0.5, +-1, +-3, 6, 20, -1.5 ...) and the derivatives' roots, each with its 16
    float32 neighbours on either side."""
    f32 = np.float32
    centres = [0.5, 1.0, 1.5, 3.0, 6.0, 20.0, 1e-3, 0.125]
    centres = centres + [-c for c in centres] + [r[0] for r in R.ROOTS.values()]
    out = [f32(0.0), f32(-0.0), f32(np.inf), f32(-np.inf), f32(np.nan)]
    fi = np.finfo(f32)
    out += [fi.max, -fi.max, fi.smallest_subnormal, -fi.smallest_subnormal, fi.tiny, -fi.tiny]
    for c in centres:
        lo = hi = f32(c)
        out.append(lo)
        for _ in range(16):
            lo, hi = np.nextafter(lo, f32(-np.inf)), np.nextafter(hi, f32(np.inf))
            out += [lo, hi]
    return np.unique(np.array(out, f32).view(np.uint32)).view(f32)


def pattern_count(step: int) -> int:
    """How many bit patterns a run with ``step`` tests (0, step, 2 step, ... below 2^32)."""
    return ((1 << 32) + step - 1) // step


def shard_range(step: int, shard: int, shards: int) -> tuple[int, int]:
    """The pattern indexes [lo, hi) of part ``shard`` (0-based) of ``shards`` equal parts."""
    total = pattern_count(step)
    return shard * total // shards, (shard + 1) * total // shards


def sweep_function(name, step, chunk, directions, with_torch, lo=0, hi=None, specials=None):
    """{direction: {"fastact": Acc, "torch": Acc or None}} for activation ``name``, over the
    bit patterns ``(lo + i) * step`` below ``hi * step`` (default: all), plus the special
    inputs (default: when sampling, ``step > 1``)."""
    if name not in R.FORWARD or name not in R.GRAD:
        raise KeyError(f"{name}: no reference in scripts/ulp_reference.py (add one)")
    params = R.PARAMS.get(name, {})
    declared = {k for k, _ in ACTIVATIONS[name].params}
    if set(params) != declared:
        raise KeyError(f"{name}: parameters {sorted(declared)} vs reference {sorted(params)}")
    fa_fwd, fa_bwd, fa_out = _fastact_ops(name, params)
    dirs = [d for d in directions if d != "backward (output)" or fa_out is not None]
    if "backward (output)" in dirs and name not in R.GRAD_OUTPUT:
        raise KeyError(f"{name}: fastact offers output=, no reference for it (add one)")
    t_fwd = t_out = None
    if with_torch:
        import torch

        t_fwd, t_out = _torch_ops(name, params)
    res = {d: {"fastact": Acc(), "torch": Acc() if with_torch else None} for d in dirs}
    if "backward (output)" in dirs and t_out is None:
        res["backward (output)"]["torch"] = None
    hi = pattern_count(step) if hi is None else hi
    total = hi - lo
    x = np.empty(max(1, min(chunk, total)), np.float32)
    ref = np.empty(x.size)

    def run_chunk(xs, rs):
        n = xs.size
        g = np.ones(n, np.float32)
        y_fa = None
        if "forward" in dirs or "backward (output)" in dirs:
            t0 = time.perf_counter()
            y_fa = fa_fwd(xs)
            dt = time.perf_counter() - t0
            if "forward" in dirs:
                _mapper(R.FORWARD[name])(xs, rs)
                res["forward"]["fastact"].add(xs, xs, y_fa, rs, dt)
                if with_torch:
                    t0 = time.perf_counter()
                    with torch.no_grad():
                        y_t = t_fwd(torch.from_numpy(xs)).numpy()
                    res["forward"]["torch"].add(xs, xs, y_t, rs, time.perf_counter() - t0)
        if "backward (input)" in dirs:
            _mapper(R.GRAD[name])(xs, rs)
            acc = res["backward (input)"]
            t0 = time.perf_counter()
            d = fa_bwd(g, xs)
            acc["fastact"].add(xs, xs, d, rs, time.perf_counter() - t0)
            if with_torch:
                t0 = time.perf_counter()
                xt = torch.from_numpy(xs.copy()).requires_grad_(True)
                (d,) = torch.autograd.grad(t_fwd(xt), xt, torch.from_numpy(g))
                acc["torch"].add(xs, xs, d.numpy(), rs, time.perf_counter() - t0)
        if "backward (output)" in dirs:
            _mapper(R.GRAD_OUTPUT[name])(y_fa, rs)
            acc = res["backward (output)"]
            t0 = time.perf_counter()
            d = fa_out(g, y_fa)
            acc["fastact"].add(xs, y_fa, d, rs, time.perf_counter() - t0)
            if acc["torch"] is not None:
                t0 = time.perf_counter()
                with torch.no_grad():
                    d = t_out(torch.from_numpy(g), torch.from_numpy(y_fa)).numpy()
                acc["torch"].add(xs, y_fa, d, rs, time.perf_counter() - t0)

    for first in range(0, total, chunk):
        n = min(chunk, total - first)
        _patterns(0, step, lo + first, n, x[:n])
        run_chunk(x[:n], ref[:n])
    if step > 1 if specials is None else specials:  # add the kinks, roots, special values
        sp = special_inputs()
        run_chunk(sp, np.empty(sp.size))
    return res


# ----------------------------------------------------------------------------- reporting
def _fmt_ulp(a):
    if a is None:
        return "-", "-"
    if a.at is None:
        return "no finite result", "-"
    x = a.at["x"]
    where = f"{x:.9g}"
    if "input" in a.at:
        where = f"y={a.at['input']:.9g} (x={x:.9g})"
    return f"{a.max_ulp:.3g}", where


def _fmt_count(a, attr):
    if a is None:
        return "-"
    return str(a.over["4"] if attr == "over4" else getattr(a, attr))


def _fmt_example(a, attr):
    ex = getattr(a, attr + "_example") if a is not None else None
    if ex is None:
        return ""
    s = f"x={ex['x']:.9g}"
    if "input" in ex:
        s = f"y={ex['input']:.9g} (x={ex['x']:.9g})"
    return f"{s}: {ex['result']!r} vs exact {ex['exact']!r}"


def markdown(results, meta) -> str:
    lines = [
        "# float32 activations: ULP errors of fastact and torch",
        "",
        meta["header"],
        "",
        "| function | direction | fastact max ULP | at | torch max ULP | at |"
        " >4 ULP (fastact / torch) | exact zeros wrong (fastact / torch) |"
        " NaN in, number out (fastact / torch) | other non-finite mismatches (fastact / torch) |",
        "|---|---|---:|---|---:|---|---:|---:|---:|---:|",
    ]
    details = []
    for name, by_dir in results.items():
        for d, libs in by_dir.items():
            fa, to = libs["fastact"], libs["torch"]
            fu, fw = _fmt_ulp(fa)
            tu, tw = _fmt_ulp(to)
            zf = f"{fa.zeros_wrong} of {fa.zeros}"
            zt = "-" if to is None else f"{to.zeros_wrong} of {to.zeros}"
            lines.append(
                f"| {name} | {d} | {fu} | {fw} | {tu} | {tw} |"
                f" {fa.over['4']} / {_fmt_count(to, 'over4')} |"
                f" {zf} / {zt} | {fa.nan_in} / {_fmt_count(to, 'nan_in')} |"
                f" {fa.nonfinite} / {_fmt_count(to, 'nonfinite')} |"
            )
            for lib, a in (("fastact", fa), ("torch", to)):
                for attr, what in (
                    ("zeros_wrong", "exact zero not 0"),
                    ("nan_in", "NaN in, number out"),
                    ("nonfinite", "non-finite mismatch"),
                ):
                    ex = _fmt_example(a, attr)
                    if ex:
                        n = getattr(a, attr)
                        details.append(f"- {name} {d}, {lib}: {what} ({n}), e.g. {ex}")
    if details:
        lines += ["", "Examples of the mismatches counted apart:", ""] + details
    lines += ["", meta["footer"], ""]
    return "\n".join(lines)


def _machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} CPUs visible, numba {numba.__version__}"


def _commit() -> str:
    """The last commit that changed fastact/ (the code measured), and whether it is edited."""
    root = os.path.join(_HERE, "..")

    def git(*a):
        return subprocess.run(
            ["git", *a], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()

    try:
        c = git("log", "-1", "--format=%h", "--", "fastact")
        return c + (" (with uncommitted edits)" if git("status", "--porcelain", "fastact") else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _parse_shard(text: str) -> tuple[int, int]:
    k, _, n = text.partition("/")
    shard, shards = int(k), int(n)
    if not 0 <= shard < shards:
        raise ValueError(f"--shard {text}: need 0 <= K < N")
    return shard, shards


def merge_runs(blobs: list[dict]) -> tuple[dict, dict]:
    """(results, meta) of the shard runs ``blobs`` (their sweep.json contents) taken together.
    Every run must use the same step and shard count and measure the same fastact commit;
    a function enters the result only where the runs cover all its shards (ValueError
    otherwise, naming what is missing or repeated)."""
    if not blobs:
        raise ValueError("nothing to merge")
    metas = [b["meta"] for b in blobs]
    for key in ("step", "shards", "commit"):
        values = {str(m.get(key)) for m in metas}
        if len(values) > 1:
            raise ValueError(f"the runs differ in {key}: {sorted(values)}")
    shards = int(metas[0].get("shards", 1))
    parts: dict[str, dict[int, dict]] = {}
    for b in blobs:
        k = int(b["meta"].get("shard", 0))
        for name, by_dir in b["results"].items():
            if k in parts.setdefault(name, {}):
                raise ValueError(f"{name}: shard {k}/{shards} is in two runs")
            parts[name][k] = by_dir
    results, seconds = {}, {}
    for name, by_shard in parts.items():
        missing = sorted(set(range(shards)) - set(by_shard))
        if missing:
            raise ValueError(f"{name}: shards {missing} of {shards} are missing")
        merged: dict = {}
        for k in range(shards):
            for d, libs in by_shard[k].items():
                slot = merged.setdefault(d, {})
                for lib, a in libs.items():
                    if a is None:
                        slot.setdefault(lib, None)
                    elif slot.get(lib) is None:
                        slot[lib] = Acc.from_dict(a)
                    else:
                        slot[lib].merge(Acc.from_dict(a))
        results[name] = merged
        seconds[name] = sum(
            sum(a["seconds"] for libs in by_shard[k].values() for a in libs.values() if a)
            for k in range(shards)
        )
    m0 = metas[0]
    meta = {
        "step": m0["step"],
        "inputs": m0.get("total_inputs", m0["inputs"]),
        "commit": m0["commit"],
        "machines": sorted({m["machine"] for m in metas}),
        "versions": sorted({m.get("versions", "") for m in metas}),
        "shards": shards,
        "runs": len(blobs),
        "kernel_seconds": seconds,
        "seconds": sum(m["seconds"] for m in metas),
    }
    return results, meta


def _write(out: str, results: dict, header: str, footer: str, meta: dict) -> str:
    os.makedirs(out, exist_ok=True)
    md = markdown(results, {"header": header, "footer": footer})
    with open(os.path.join(out, "sweep.md"), "w") as fh:
        fh.write(md)
    blob = {
        "meta": meta,
        "results": {
            n: {
                d: {lib: (a.as_dict() if a is not None else None) for lib, a in libs.items()}
                for d, libs in by_dir.items()
            }
            for n, by_dir in results.items()
        },
    }
    with open(os.path.join(out, "sweep.json"), "w") as fh:
        json.dump(blob, fh, indent=1)
    return md


_REFERENCE_NOTE = (
    "Errors in float32 ULPs of the exact result (subnormal spacing below 2^-126), against "
    "the references of scripts/ulp_reference.py (checked against mpmath by "
    "tests/test_ulp_reference.py). 'backward (output)': fastact's gradient from its own "
    "float32 forward result y, measured against the exact gradient at that y; torch's "
    "result-based op on the same y."
)


def _describe_inputs(step: int) -> str:
    if step == 1:
        return "all 2^32 float32 inputs"
    return (
        f"a SAMPLED run: every {step}-th bit pattern ({pattern_count(step)} inputs of 2^32), "
        f"plus {special_inputs().size} special inputs (kinks, roots of the derivatives and "
        "their float32 neighbours, +-0, +-inf, NaN, extremes)"
    )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--func", default="", help="comma-separated activations (default: all)")
    ap.add_argument("--step", type=int, default=1, help="test every STEP-th bit pattern")
    ap.add_argument("--threads", type=int, default=0, help="numba and torch threads")
    ap.add_argument("--direction", choices=("forward", "backward", "all"), default="all")
    ap.add_argument("--torch", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--chunk", type=int, default=1 << 23, help="inputs per chunk")
    ap.add_argument(
        "--shard",
        default="0/1",
        help="K/N: only the K-th (0-based) of N equal parts of the inputs (the special "
        "inputs go with the last part); --merge puts the parts together",
    )
    ap.add_argument(
        "--merge",
        nargs="+",
        metavar="DIR",
        help="no sweep: merge the sweep.json of these --out folders (shard runs) into --out",
    )
    ap.add_argument(
        "--out",
        default=os.path.join(tempfile.gettempdir(), "fastact_ulp_sweep"),
        help="folder for sweep.md and sweep.json",
    )
    args = ap.parse_args(argv)
    cmd = "python scripts/ulp_sweep_activations.py " + " ".join(argv or sys.argv[1:])
    if args.merge:
        blobs = []
        for d in args.merge:
            with open(os.path.join(d, "sweep.json")) as fh:
                blobs.append(json.load(fh))
        try:
            results, meta = merge_runs(blobs)
        except ValueError as exc:
            ap.error(str(exc))
        header = (
            f"{_describe_inputs(meta['step'])}, in {meta['shards']} parts run separately "
            f"and merged (`{cmd}`); grad_output = 1; parameters at torch's defaults "
            f"(threshold: 1.0, 0.5). fastact at {meta['commit']} (last change to fastact/), "
            f"{'; '.join(v for v in meta['versions'] if v)}{', '.join(meta['machines'])}. "
            + _REFERENCE_NOTE
        )
        per = ", ".join(f"{k} {v:.0f} s" for k, v in meta["kernel_seconds"].items())
        footer = (
            f"Runtime: {meta['seconds']:.0f} s in {meta['runs']} runs; time inside the "
            f"libraries' calls: {per}."
        )
        print(_write(args.out, results, header, footer, meta))
        return 0
    if args.step < 1 or args.chunk < 1:
        ap.error("--step and --chunk must be >= 1")
    try:
        shard, shards = _parse_shard(args.shard)
    except ValueError as exc:
        ap.error(str(exc))
    if args.threads:
        numba.set_num_threads(args.threads)
        if args.torch:
            import torch

            torch.set_num_threads(args.threads)
    names = [n.strip() for n in args.func.split(",") if n.strip()] or list(ACTIVATIONS)
    unknown = [n for n in names if n not in ACTIVATIONS]
    if unknown:
        ap.error(f"unknown activations {unknown}; choose from {list(ACTIVATIONS)}")
    directions = {
        "forward": ("forward",),
        "backward": DIRECTIONS[1:],
        "all": DIRECTIONS,
    }[args.direction]
    lo, hi = shard_range(args.step, shard, shards)
    specials = args.step > 1 and shard == shards - 1  # last, as in a run in one part
    t_start = time.perf_counter()
    results, seconds = {}, {}
    for name in names:
        t0 = time.perf_counter()
        results[name] = sweep_function(
            name, args.step, args.chunk, directions, args.torch, lo, hi, specials
        )
        seconds[name] = time.perf_counter() - t0
        for d, libs in results[name].items():
            fu, fw = _fmt_ulp(libs["fastact"])
            tu, tw = _fmt_ulp(libs["torch"])
            print(f"{name:12s} {d:18s} fastact {fu:>9s} at {fw:28s} torch {tu:>9s} at {tw}")
        print(f"{name:12s} {seconds[name]:.1f} s", flush=True)
    elapsed = time.perf_counter() - t_start
    if args.torch:
        import torch as _t

        versions = f"torch {_t.__version__}, "
    else:
        versions = "without torch, "
    part = "" if shards == 1 else f" (part {shard} of {shards}: patterns {lo} to {hi - 1})"
    header = (
        f"{_describe_inputs(args.step)}{part}; grad_output = 1; parameters at torch's "
        f"defaults (threshold: 1.0, 0.5). Command: `{cmd}`. fastact at {_commit()} (last "
        f"change to fastact/), {versions}{_machine()}, "
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC. " + _REFERENCE_NOTE
    )
    per = ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items())
    footer = f"Runtime: {elapsed:.0f} s ({per})."
    meta = {
        "command": cmd,
        "step": args.step,
        "inputs": hi - lo,
        "total_inputs": pattern_count(args.step),
        "shard": shard,
        "shards": shards,
        "commit": _commit(),
        "machine": _machine(),
        "versions": versions,
        "seconds": elapsed,
        "seconds_per_function": seconds,
    }
    print(_write(args.out, results, header, footer, meta))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
