"""``python -m fastact bench``: the command line of the benchmark (and of its families).

A run prints its tables and, unless ``--no-files``, writes them as Markdown and JSON plus the
ratio plot (PNG, with matplotlib) into one results folder, named at the end of the run.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence

__all__ = ["family_main", "main", "parser"]

_DESCRIPTION = (
    "Time fastact against torch, NumPy and numexpr on this machine: every activation's "
    "forward, backward and in-place call, every loss's value plus gradient, every optimizer's "
    "step. For each case: the median time of fastact and of each installed peer, the ratio "
    "peer time / fastact time (above 1: fastact is faster), and the fraction of the memory "
    "bandwidth roofline fastact reaches. Each library runs in its own process."
)
_FILES = ("bench.md", "bench.json", "bench.png")
#: The results folders' folder without ``--output-dir`` (in the current folder).
_DEFAULT_FOLDER = "fastact-bench-results"


def parser(prog: str = "python -m fastact bench", description: str = _DESCRIPTION):
    """The argument parser of the bench command."""
    b = argparse.ArgumentParser(prog=prog, description=description)
    b.add_argument(
        "--functions",
        "-f",
        action="append",
        metavar="NAMES",
        help="comma-separated names or globs (repeatable), e.g. 'sigmoid,gelu*,Adam'",
    )
    b.add_argument(
        "--sizes",
        "-s",
        default=None,
        metavar="LIST",
        help="comma-separated element counts (1K = 1024, 16M = 16*2**20); default 1K,256K,16M "
        "for activations and the largest of them for losses and optimizers",
    )
    b.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    b.add_argument(
        "--threads",
        "-t",
        type=int,
        default=None,
        help="threads for every library (default: the CPUs this process may use)",
    )
    b.add_argument(
        "--families",
        default=None,
        metavar="LIST",
        help="activation,loss,optimizer,fused (default: all that match --functions)",
    )
    b.add_argument(
        "--libraries",
        default=None,
        metavar="LIST",
        help="peers to time: torch,numpy,numexpr (default: all installed)",
    )
    b.add_argument(
        "--format", default="text", choices=["text", "markdown", "json"], help="stdout format"
    )
    b.add_argument(
        "--output", "-o", default=None, metavar="FILE", help="write the table there, not stdout"
    )
    b.add_argument(
        "--output-dir",
        default=None,
        metavar="DIR",
        help="results folder for bench.md, bench.json and bench.png "
        "(default: fastact-bench-results/<date>_<time> in the current folder)",
    )
    b.add_argument(
        "--no-files", action="store_true", help="write no results folder (tables on stdout only)"
    )
    b.add_argument(
        "--plot",
        default=None,
        metavar="FILE.png",
        help="also draw the ratios there (needs matplotlib)",
    )
    b.add_argument("--quick", action="store_true", help="fewer repetitions (noisier)")
    b.add_argument(
        "--rounds",
        type=int,
        default=1,
        metavar="N",
        help="run every library's block N times, libraries alternating, and report the median "
        "over rounds (steadier ratios on a shared or noisy machine); default 1",
    )
    b.add_argument(
        "--model-like",
        action="store_true",
        help="also step the optimizers over a transformer-like list of ~160 tensors",
    )
    b.add_argument(
        "--in-process",
        action="store_true",
        help="time every library in this process (one block each) instead of "
        "one spawned process per library",
    )
    b.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    return b


def _have_matplotlib() -> bool:
    import importlib.util

    return importlib.util.find_spec("matplotlib") is not None


def _writable_folder(folder: str) -> bool:
    """Whether files can be created in the existing folder ``folder``."""
    return os.access(folder, os.W_OK | os.X_OK)


def _file_problem(path: str) -> str | None:
    """Why ``path`` cannot be written as a file (a folder, a missing or read-only parent
    folder), or None. Checked before the run, which may take minutes, not after it."""
    if os.path.isdir(path):
        return "is a folder"
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        return f"no folder {parent}"
    if not _writable_folder(parent) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        return "not writable"
    return None


def _folder_problem(folder: str) -> str | None:
    """Why the results folder ``folder`` cannot be made and written, or None: an existing
    path must be a writable folder; for a missing one (made with its missing parents after
    the run) the nearest existing ancestor must be (a regular file or a read-only folder
    there ended the command only after the run, which may take minutes)."""
    path = os.path.abspath(folder)
    if os.path.lexists(path):
        if not os.path.isdir(path):
            return "is not a folder"
        return None if _writable_folder(path) else "not writable"
    ancestor = os.path.dirname(path)
    while not os.path.lexists(ancestor):  # the root exists, so this ends
        ancestor = os.path.dirname(ancestor)
    if not os.path.isdir(ancestor):
        return f"cannot be made: {ancestor} is not a folder"
    if not _writable_folder(ancestor):
        return f"cannot be made: {ancestor} is not writable"
    return None


def _plot_formats() -> list[str]:
    """The file formats matplotlib can save a figure as (its ``savefig`` extensions)."""
    from matplotlib.backend_bases import FigureCanvasBase

    return sorted(FigureCanvasBase.get_supported_filetypes())


def _check_paths(args: argparse.Namespace) -> str | None:
    """The first problem with ``--output``, ``--plot`` or ``--output-dir``, or None."""
    for option, path in (("--output", args.output), ("--plot", args.plot)):
        problem = path is not None and _file_problem(path)
        if problem:
            return f"{option} {path}: {problem}"
    if args.plot:
        ext = os.path.splitext(args.plot)[1][1:].lower()
        formats = _plot_formats()
        if ext and ext not in formats:
            return f"--plot {args.plot}: matplotlib cannot save .{ext} (use {', '.join(formats)})"
    if not args.no_files:
        if args.output_dir is not None:
            problem = _folder_problem(args.output_dir)
            if problem:
                return f"--output-dir {args.output_dir}: {problem}"
        else:
            problem = _folder_problem(_DEFAULT_FOLDER)
            if problem:
                return (
                    f"results folder {_DEFAULT_FOLDER}: {problem} (give --output-dir DIR "
                    "or --no-files)"
                )
    return None


def write_results(report: dict, folder: str) -> list[str]:
    """Write bench.md, bench.json and (with matplotlib) bench.png into ``folder``."""
    from .report import format_report, plot

    os.makedirs(folder, exist_ok=True)
    written = []
    for name, fmt in (("bench.md", "markdown"), ("bench.json", "json")):
        path = os.path.join(folder, name)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(format_report(report, fmt))
        written.append(path)
    if _have_matplotlib() and any(r.get("ratios") for r in report["results"]):
        written.append(plot(report, os.path.join(folder, "bench.png")))
    return written


def _run_command(
    args: argparse.Namespace,
    prog: str,
    epilogue: Callable[[dict], str] | None = None,
    **fixed: object,
) -> tuple[int, dict | None]:
    """Run the benchmark with ``args`` (and the ``fixed`` arguments of a family command) and
    print or write its report; ``epilogue(report)``: text appended to a text-format report,
    on stdout or in ``--output`` alike. Returns the exit status and the report."""
    from .harness import WorkerFailed, default_threads, run, usable_threads
    from .report import format_report, plot

    if args.plot and not _have_matplotlib():
        sys.stderr.write(f"{prog}: --plot needs matplotlib (pip install matplotlib)\n")
        return 2, None
    problem = _check_paths(args)
    if problem:
        sys.stderr.write(f"{prog}: {problem}\n")
        return 2, None
    cpus = default_threads()
    threads = args.threads  # the count every library runs on (run() refuses one below 1)
    if threads is not None and threads >= 1:
        usable = usable_threads(threads, not args.in_process)
        if usable < threads:
            sys.stderr.write(
                f"{prog}: warning: --threads {threads} is above numba's pool of {usable} "
                f"threads in this process (NUMBA_NUM_THREADS): with --in-process every "
                f"library runs on {usable}; the report says so at the top\n"
            )
            threads = usable
        if threads > cpus:
            sys.stderr.write(
                f"{prog}: warning: --threads {threads} on {cpus} CPUs oversubscribes the "
                "cores (every parallel call time-shares them); the report says so at the top\n"
            )
    kwargs = dict(
        functions=args.functions,
        sizes=args.sizes,  # comma-separated strings: harness.run splits them
        dtype=args.dtype,
        threads=args.threads,
        libraries=args.libraries,
        families=args.families,
        quick=args.quick,
        isolate=not args.in_process,
        progress=not args.no_progress,
        rounds=args.rounds,
        model=args.model_like,
    )
    kwargs.update(fixed)
    try:
        report = run(**kwargs)
    except ValueError as e:
        sys.stderr.write(f"{prog}: {e}\n")
        return 2, None
    except WorkerFailed as e:  # e.g. a threading layer that numba knows but cannot load
        sys.stderr.write(f"{prog}: fastact's benchmark worker failed: {e.last_line}\n")
        return 1, None
    text = format_report(report, args.format)
    if epilogue is not None and args.format == "text":
        text += epilogue(report)
    rc = 0  # a file that fails to be written still leaves the others (and the results folder)
    if args.output:
        try:
            with open(args.output, "w", encoding="utf-8") as fh:
                fh.write(text)
            sys.stderr.write(f"wrote {args.output}\n")
        except OSError as e:
            sys.stderr.write(f"{prog}: could not write --output {args.output}: {e}\n")
            rc = 1
    else:
        sys.stdout.write(text)
        sys.stdout.flush()
    if args.plot:
        try:
            plot(report, args.plot)
            sys.stderr.write(f"wrote {args.plot}\n")
        except (OSError, ValueError) as e:
            sys.stderr.write(f"{prog}: could not write --plot {args.plot}: {e}\n")
            rc = 1
    if not args.no_files:
        folder = args.output_dir or os.path.join(_DEFAULT_FOLDER, time.strftime("%Y-%m-%d_%H%M%S"))
        try:
            written = write_results(report, folder)
        except OSError as e:
            sys.stderr.write(f"{prog}: could not write the results folder {folder}: {e}\n")
            return 1, report
        names = ", ".join(os.path.basename(p) for p in written)
        missing = (
            ""
            if any(p.endswith(".png") for p in written)
            else (" (no plot: pip install matplotlib)" if not _have_matplotlib() else "")
        )
        sys.stderr.write(f"Results: {os.path.abspath(folder)}/ ({names}){missing}\n")
    return rc, report


FAMILY_COMMANDS = {"losses": "loss", "optim": "optimizer", "fused": "fused"}


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m fastact bench [options]``; ``python -m fastact bench losses|optim|fused
    [options]`` runs one family with its full cases."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in FAMILY_COMMANDS:
        return family_main(FAMILY_COMMANDS[argv[0]], argv[1:])
    args = parser().parse_args(argv)
    return _run_command(args, "python -m fastact bench")[0]


def family_main(family: str, argv: Sequence[str]) -> int:
    """``python -m fastact bench losses`` / ``python -m fastact bench optim``: one family with
    its full cases (NumPy's loss formulas; the optimizers' model-like tensor list)."""
    mod = {"loss": "losses", "optimizer": "optim", "fused": "fused"}[family]
    prog = f"python -m fastact bench {mod}"
    p = parser(prog, f"The {family} family of the fastact benchmark, with its full cases.")
    args = p.parse_args(list(argv))
    fixed: dict[str, object] = {"families": [family]}
    epilogue = None
    if family == "optimizer":
        fixed["model"] = True
        epilogue = _step_costs  # part of the report: in --output too, not only on stdout
    return _run_command(args, prog, epilogue, **fixed)[0]


def _step_costs(report: dict) -> str:
    """The optimizer command's closing lines: fastact's step cost per element."""
    from . import optim

    lines = "\n".join(optim.per_element_lines(report))
    return f"\nfastact's step cost per element:\n{lines}\n"
