"""Reports of a benchmark run: text and Markdown tables, JSON, and the ratio plot.

:func:`format_report` puts the machine, its threading layer and any missing peer first (they
decide how to read every number), then a summary table (per family, variant and size: the
geometric-mean ratio against each peer, the cases fastact wins, the median roofline
fraction), then one table per family, then the timing method and the notes.
:func:`figure` draws the ratios as horizontal bars on a log axis, laid out from the number of
cases (a fixed height per bar, full labels, one legend); :func:`plot` saves it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .rows import size_label, size_text

__all__ = ["figure", "format_report", "plot", "summary_rows", "table_rows"]

#: Peer columns in display order (others follow in the order they appear).
_PEER_ORDER = ("torch", "numpy", "numexpr", "torch_foreach", "torch_fused")
_TITLES = {"activation": "Activations", "loss": "Losses", "optimizer": "Optimizers"}
_COLORS = {
    "torch": "#ee4c2c",
    "numpy": "#4d77cf",
    "numexpr": "#2ca02c",
    "torch_foreach": "#f5a623",
    "torch_fused": "#8b1a0e",
}


def fmt_time(s: float | None) -> str:
    """``1.5e-6`` -> ``'1.5 µs'`` (3 significant digits)."""
    if s is None or not math.isfinite(s):
        return ""
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if s >= scale:
            return f"{s / scale:.3g} {unit}"
    return f"{s * 1e9:.3g} ns"


def _fmt_ratio(r: float | None) -> str:
    return "" if r is None else f"{r:.2f}x"


def peers_in(rows: Sequence[dict]) -> list[str]:
    """The peer columns with at least one time in ``rows``, in display order."""
    seen = [p for p in _PEER_ORDER if any(p in r.get("times", {}) for r in rows)]
    for r in rows:
        for lb in r.get("times", {}):
            if lb != "fastact" and lb not in seen:
                seen.append(lb)
    return seen


def _variant(r: dict) -> str:
    if r.get("variant") == "backward" and r.get("grad_from") == "output":
        return "backward (y)"
    return str(r.get("variant", ""))


def table_rows(rows: list[dict]) -> tuple[list[str], list[list[str]]]:
    """Header and string cells of a results table (one family's rows)."""
    peers = peers_in(rows)
    header = ["function", "variant", "size", "fastact"]
    for lb in peers:
        header += [lb, f"{lb}/fastact"]
    header.append("roofline")
    cells = []
    for r in rows:
        line = [r["function"], _variant(r), size_text(r), fmt_time(r["times"].get("fastact"))]
        for lb in peers:
            line += [fmt_time(r["times"].get(lb)), _fmt_ratio(r.get("ratios", {}).get(lb))]
        frac = r.get("roofline_fraction")
        line.append("" if frac is None else f"{100 * frac:.0f}%")
        cells.append(line)
    return header, cells


def _by_family(report: dict) -> list[tuple[str, list[dict]]]:
    groups: dict[str, list[dict]] = {}
    for r in report["results"]:
        groups.setdefault(str(r.get("family", "")), []).append(r)
    return list(groups.items())


def summary_rows(report: dict) -> tuple[list[str], list[list[str]]]:
    """Per family, variant and size: the geometric-mean ratio against each peer, how many
    cases fastact wins (ratio >= 1), and the median roofline fraction."""
    groups: dict[tuple, list[dict]] = {}
    for r in report["results"]:
        groups.setdefault((r["family"], str(r.get("variant", "")), r["size"]), []).append(r)
    peers = [p for p in peers_in(report["results"]) if p != "torch_foreach"]
    header = ["family", "variant", "size", "cases"]
    for p in peers:
        header += [f"vs {p} (geomean)", f"wins vs {p}"]
    header.append("roofline (median)")
    cells = []
    for (family, variant, size), rows in groups.items():
        label = size_label(size) if isinstance(size, int) else str(size)
        line = [family, variant, label, str(len(rows))]
        for p in peers:
            rs = [r["ratios"][p] for r in rows if p in r.get("ratios", {})]
            if rs:
                gm = math.exp(sum(math.log(v) for v in rs) / len(rs))
                line += [_fmt_ratio(gm), f"{sum(v >= 1 for v in rs)}/{len(rs)}"]
            else:
                line += ["", ""]
        fr = [r["roofline_fraction"] for r in rows if r.get("roofline_fraction")]
        line.append(f"{100 * float(np.median(fr)):.0f}%" if fr else "")
        cells.append(line)
    return header, cells


def _table(header: list[str], cells: list[list[str]], fmt: str, right: set[int]) -> list[str]:
    if fmt == "markdown":
        out = ["| " + " | ".join(header) + " |"]
        out.append(
            "|" + "|".join("---:" if i in right else "---" for i in range(len(header))) + "|"
        )
        return out + ["| " + " | ".join(c) + " |" for c in cells]
    widths = [
        max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(header)
    ]

    def line(vals: list[str]) -> str:
        return "  ".join(
            v.rjust(w) if i in right else v.ljust(w)
            for i, (v, w) in enumerate(zip(vals, widths, strict=True))
        ).rstrip()

    return [line(header), line(["-" * w for w in widths])] + [line(c) for c in cells]


def machine_line(meta: dict) -> str:
    """``Machine: <cpu> (<simd>), <cpus> CPUs; <threads> threads (numba's tbb layer); ...``."""
    libs = ", ".join(
        f"{k} {meta[k]}" for k in ("fastact", "numba", "numpy", "torch", "numexpr") if k in meta
    )
    cpu = str(meta.get("cpu", "?"))
    if meta.get("simd"):
        cpu += f", {meta['simd']}"
    cpus = f", {meta['cpus']} CPUs" if meta.get("cpus") else ""
    layer = f" (numba's {meta['threading_layer']} layer)" if meta.get("threading_layer") else ""
    return (
        f"Machine: {cpu}{cpus}; {meta.get('threads')} threads{layer}; {meta.get('dtype')}; {libs}."
    )


def _head_and_tail(report: dict) -> tuple[list[str], list[str]]:
    """Lines above the tables (machine, layer, missing peers, oversubscription) and below."""
    m = report["meta"]
    notes = list(report.get("notes", []))
    head = [machine_line(m)]
    head += [f"Note: {n}" for n in notes if "not installed" in n or "oversubscribed" in n]
    tail = [
        "Timing: median per call"
        + (
            f" (median of {m['rounds']} rounds, libraries alternating)"
            if m.get("rounds", 1) > 1
            else ""
        )
        + "; ratio = peer time / fastact time (>1: fastact faster); "
        f"isolation: {m.get('isolation')}; run took {m.get('elapsed_s')} s"
        + (
            " (" + ", ".join(f"{k} {v:.0f} s" for k, v in m["block_s"].items()) + ")."
            if m.get("block_s")
            else "."
        )
    ]
    by_size: dict[int, list[str]] = {}
    for b in report.get("bandwidth", []):
        by_size.setdefault(b["size"], []).append(f"{b['probe']} {b['Bps'] / 1e9:.1f} GB/s")
    if by_size:
        tail.append(
            "Roofline = bytes moved / streaming bandwidth measured in this run ("
            + "; ".join(f"{size_label(n)}: {', '.join(v)}" for n, v in by_size.items())
            + ")."
        )
    tail += [f"Note: {n}" for n in notes if f"Note: {n}" not in head]
    errs = [
        f"{r['function']} {r['variant']} {size_label(r['size'])}: {lb}: {e}"
        for r in report["results"]
        for lb, e in r.get("errors", {}).items()
    ]
    tail += [f"Error: {e}" for e in errs[:20]]
    return head, tail


def format_report(report: dict, fmt: str = "text") -> str:
    """The report as ``'markdown'``, ``'json'`` or ``'text'``."""
    if fmt == "json":
        return json.dumps(_finite(report), indent=1, default=_json_default, allow_nan=False)
    if fmt not in ("markdown", "text"):
        raise ValueError(f"format must be markdown, json or text, got {fmt!r}")
    out: list[str] = []
    header, cells = summary_rows(report)
    if cells:
        out += ["### Summary", ""] if fmt == "markdown" else ["== Summary =="]
        out += _table(header, cells, fmt, set(range(3, len(header)))) + [""]
    for family, rows in _by_family(report):
        header, cells = table_rows(rows)
        name = _TITLES.get(family, family)
        out += [f"### {name}", ""] if fmt == "markdown" else [f"== {name} =="]
        out += _table(header, cells, fmt, set(range(3, len(header)))) + [""]
    head, tail = _head_and_tail(report)
    if fmt == "markdown":
        head, tail = [f"{s}  " for s in head], [f"{s}  " for s in tail]
    return "\n".join(head + [""] + out + tail) + "\n"


def _finite(o: Any) -> Any:
    """``o`` with NaN/inf floats replaced by None (strict JSON)."""
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_finite(v) for v in o]
    if isinstance(o, (float, np.floating)):
        return float(o) if math.isfinite(o) else None
    return o


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


# ============================================================================ plot
_ROW_IN = 0.19  # inches per bar group (one case)
_PANEL_IN = 3.0  # width of one panel's plotting area
_CHAR_IN = 0.055  # width of one character of a 7-pt label


def _panels(report: dict) -> list[list[tuple[str, list[dict]]]]:
    """Bands of panels: the activations, one panel per size side by side (same cases, same
    order); then the losses and the optimizers, one panel per size each."""
    rows = [r for r in report["results"] if r.get("ratios")]
    bands: dict[str, dict[str, list[dict]]] = {}
    for r in rows:
        fam = r["family"]
        band = "activation" if fam == "activation" else "other"
        title = f"{_TITLES.get(fam, fam).lower()}, {size_label(r['size'])}"
        bands.setdefault(band, {}).setdefault(
            (fam != "activation", fam, r["size"], title), []
        ).append(r)
    return [
        [(key[-1], rows) for key, rows in sorted(bands[b].items())]
        for b in ("activation", "other")
        if b in bands
    ]


def _label(r: dict) -> str:
    if r["family"] == "activation":
        return f"{r['function']} {_variant(r)}"
    label = f"{r['function']} {r.get('variant', '')}".strip()
    shape = r.get("shape")
    if shape and len(shape) > 1:
        label += " (" + "x".join(str(s) for s in shape) + ")"
    return label


def _ratio_ticks(lo: float, hi: float) -> list[float]:
    """Readable ticks (..., 0.5, 1, 2, 5, 10, ...) spanning [lo, hi], at most ~7."""
    for mantissas in ((1, 2, 5), (1, 3), (1,)):
        ticks = [m * 10.0**e for e in range(-4, 5) for m in mantissas if lo <= m * 10.0**e <= hi]
        if len(ticks) <= 7:
            return ticks
    decades = [t for t in ticks if t >= 1]  # still too many: every other decade, from 1 up
    below = [t for t in ticks if t < 1][::-1]
    return sorted(below[1::2] + decades[::2])


def figure(report: dict) -> Any:
    """The ratio chart of a report as a matplotlib Figure (Agg backend): horizontal bars of
    peer time / fastact time on a log axis (right of the line at 1: fastact faster).

    The activations form one band of panels, one per size, sharing one column of labels
    (``function variant``); losses and optimizers form a second band, each panel with its own
    labels. Heights follow the number of cases, widths the longest label."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    bands = _panels(report)
    if not bands:
        raise ValueError("plot: no ratios to draw (no peer library was timed)")
    every = [r for band in bands for _t, rows in band for r in rows]
    peers = peers_in(every)
    xmin, xmax = _ratio_range(every)
    ticks = _ratio_ticks(xmin, xmax)
    # per band: the label of every bar group, in order (shared by the activation panels)
    band_keys = []
    for band in bands:
        if band[0][1][0]["family"] == "activation":
            keys = list(dict.fromkeys(_label(r) for _t, rows in band for r in rows))
            band_keys.append([keys] * len(band))
        else:
            band_keys.append([[_label(r) for r in rows] for _t, rows in band])
    heights = [max(len(k) for k in keys) * _ROW_IN + 0.8 for keys in band_keys]
    label_in = max(len(k) for keys in band_keys for ks in keys for k in ks) * _CHAR_IN
    ncols = max(len(band) for band in bands)
    width = max(7.0, label_in + ncols * _PANEL_IN + (ncols - 1) * 0.25 * label_in + 0.5)
    fig = plt.figure(figsize=(width, sum(heights) + 1.1), layout="constrained")
    subfigs = fig.subfigures(len(bands), 1, height_ratios=heights, squeeze=False)[:, 0]
    for sf, band, keys in zip(subfigs, bands, band_keys, strict=True):
        shared = band[0][1][0]["family"] == "activation"
        axes = sf.subplots(1, len(band), sharey=shared, squeeze=False)[0]
        for ax, (title, rows), labels in zip(axes, band, keys, strict=True):
            at = {_label(r): r for r in rows}
            ys = np.arange(len(labels))
            w = 0.8 / max(1, len(peers))
            for k, p in enumerate(peers):
                vals = [at[lb]["ratios"].get(p, np.nan) if lb in at else np.nan for lb in labels]
                ax.barh(ys + k * w - 0.4 + w / 2, vals, height=w, color=_COLORS.get(p, f"C{k}"))
            ax.axvline(1.0, color="k", lw=0.8)
            ax.set_xscale("log")
            ax.set_xlim(xmin, xmax)
            ax.xaxis.set_major_locator(FixedLocator(ticks))
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}x"))
            ax.xaxis.set_minor_locator(NullLocator())
            ax.tick_params(axis="both", labelsize=7)
            ax.grid(axis="x", lw=0.3, alpha=0.5)
            ax.set_yticks(ys, labels)
            ax.set_ylim(len(labels) - 0.5, -0.5)
            ax.set_title(title, fontsize=9)
            ax.set_xlabel("peer time / fastact time", fontsize=7)
        for ax in axes[1:] if shared else ():
            ax.tick_params(axis="y", labelleft=False)
    m = report["meta"]
    title = (
        f"fastact {m.get('fastact', '')} against its peers (right of 1: fastact faster); "
        f"{m.get('cpu', '')}, {m.get('threads')} threads, {m.get('dtype')}"
    )
    handles = [Patch(color=_COLORS.get(p, f"C{k}"), label=p) for k, p in enumerate(peers)]
    fig.legend(
        handles=handles,
        loc="outside upper center",
        ncols=len(handles),
        fontsize=8,
        title=title,
        title_fontsize=9,
        frameon=False,
    )
    return fig


def _ratio_range(rows: list[dict]) -> tuple[float, float]:
    vals = [v for r in rows for v in r["ratios"].values() if v and math.isfinite(v)]
    lo, hi = min(vals + [1.0]), max(vals + [1.0])
    return lo / 1.4, hi * 1.4


def plot(report: dict, path: str) -> str:
    """Save :func:`figure` of the report as a PNG at ``path``; returns ``path``."""
    import matplotlib.pyplot as plt

    fig = figure(report)
    try:
        fig.savefig(path, dpi=110)
    finally:
        plt.close(fig)
    return path
