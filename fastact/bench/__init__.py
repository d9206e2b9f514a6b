"""fastact's benchmark harness: ``python -m fastact bench`` (fastact against torch, NumPy and
numexpr on this machine). Nothing in fastact's runtime imports this package.

Modules: :mod:`~fastact.bench.harness` (cases of every family, one process per library,
rounds, rows; :func:`run`), :mod:`~fastact.bench.timing` (the one timer, :func:`measure`),
:mod:`~fastact.bench.rows` (the row schema), :mod:`~fastact.bench.activations`,
:mod:`~fastact.bench.losses` and :mod:`~fastact.bench.optim` (the families: cases and
runners), :mod:`~fastact.bench.peers` (torch calls, NumPy and numexpr formulas),
:mod:`~fastact.bench.bandwidth` (the roofline's probes), :mod:`~fastact.bench.report`
(tables, JSON, plot) and :mod:`~fastact.bench.cli` (the command line).
"""

from __future__ import annotations

from .harness import DEFAULT_SIZES, FAMILIES, LIBRARIES, PEERS, run
from .report import figure, format_report, plot
from .rows import parse_size
from .timing import Runner, Unsupported, measure

__all__ = [
    "DEFAULT_SIZES",
    "FAMILIES",
    "LIBRARIES",
    "PEERS",
    "Runner",
    "Unsupported",
    "figure",
    "format_report",
    "measure",
    "parse_size",
    "plot",
    "run",
]
