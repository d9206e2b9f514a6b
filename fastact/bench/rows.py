"""The benchmark's one row type, and the small helpers every family shares.

A row (``run()['results']``) is a plain dict (JSON-ready, picklable)::

    {"family": "activation" | "loss" | "optimizer",
     "function": "sigmoid" | "cross_entropy" | "Adam",
     "variant": "forward" | "backward" | "inplace"     (activations)
              | "value+grad" | "grad_out"              (losses)
              | "1 tensor" | "160 tensors"             (optimizers),
     "size": 16777216 (the requested element count), "dtype": "float32",
     "shape": [16384, 1024] (losses, optimizers: the first input's shape, when not 1-d),
     "times": {"fastact": s, "torch": s, ...}   (median seconds per call, per column),
     "ratios": {"torch": t_torch / t_fastact, ...},
     "bytes": bytes the call must move, "probe": the bandwidth probe of its roofline,
     "roofline_s": bytes / bandwidth, "roofline_fraction": roofline_s / t_fastact,
     "grad_from": "input" | "output" (activation backward only),
     "errors": {column: "ExceptionType: first line"} (only when a column failed)}

Cases are rows without ``times``: the families make them, the harness fills them in.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["MAX_SIZE", "finish_row", "matches", "parse_size", "size_label", "size_text"]


def size_label(n: int) -> str:
    """``1024`` -> ``'1K'``, ``16777216`` -> ``'16M'`` (binary multiples), else the number."""
    for shift, suffix in ((30, "G"), (20, "M"), (10, "K")):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return f"{n >> shift}{suffix}"
    return str(n)


def size_text(row: dict) -> str:
    """The size column of a row: ``16M``, with the shape when it is not 1-d (``16M
    (16384x1024)``)."""
    size = row.get("size")
    label = size_label(size) if isinstance(size, int) else str(size)
    shape = row.get("shape")
    if shape and len(shape) > 1 and row.get("family") != "activation":
        label += " (" + "x".join(str(s) for s in shape) + ")"
    return label


#: The largest element count a size may name: 2**40 (4 TiB of float32), past any machine's
#: memory, so that a typo (``1e30``) is refused here instead of failing inside a worker.
MAX_SIZE = 1 << 40


def parse_size(text: str | int) -> int:
    """``'1K'`` -> 1024, ``'256K'``, ``'16M'``, ``'1G'`` (binary multiples; ``'1KiB'`` and
    ``'1KB'`` alike), or a plain number: a whole, positive element count up to
    :data:`MAX_SIZE` (else ValueError)."""
    not_positive = f"sizes: {text!r} is not a positive element count"
    too_large = f"sizes: {text!r} is more than 2**40 elements"
    if isinstance(text, (int, np.integer)):
        n = int(text)
    else:
        s = str(text).strip().upper().removesuffix("B")  # 1KiB -> 1KI -> 1K
        if s[-1:] == "I" and s[-2:-1] in ("K", "M", "G"):
            s = s[:-1]
        mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(s[-1:], 1)
        digits = s[:-1] if mult > 1 else s
        try:
            value = float(digits) * mult
            if math.isnan(value):
                raise ValueError
        except ValueError:
            raise ValueError(f"sizes: cannot read {text!r} (use e.g. 1024, 256K, 16M)") from None
        # checked as a float: int() of inf (1e400) raised OverflowError, 1e30 failed in a worker
        if value <= 0:
            raise ValueError(not_positive)
        if value > MAX_SIZE:
            raise ValueError(too_large)
        if value != int(value):
            raise ValueError(f"sizes: {text!r} is not a whole element count")
        n = int(value)
    if n < 1:
        raise ValueError(not_positive)
    if n > MAX_SIZE:
        raise ValueError(too_large)
    return n


def matches(name: str, patterns: Sequence[str] | None) -> bool:
    """Whether ``name`` matches one of the (case-insensitive) names or globs; no patterns:
    everything matches."""
    if not patterns:
        return True
    low = name.lower()
    return any(fnmatch.fnmatchcase(low, p.lower()) for p in patterns)


def finish_row(row: dict[str, Any], bandwidth_Bps: float | None) -> dict[str, Any]:
    """Add ``ratios`` and, given the bandwidth of the row's probe, the roofline fields."""
    times = row.get("times", {})
    tf = times.get("fastact")
    row["ratios"] = {lb: t / tf for lb, t in times.items() if lb != "fastact" and tf}
    if bandwidth_Bps and row.get("bytes"):
        row["roofline_s"] = row["bytes"] / bandwidth_Bps
        if tf:
            row["roofline_fraction"] = row["roofline_s"] / tf
    return row
