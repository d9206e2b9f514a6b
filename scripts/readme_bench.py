"""Copy the summary of a ``python -m fastact bench --format markdown`` run into README.md.

    python -m fastact bench --rounds 3 --format markdown -o notes/bench_results.md \
        --plot notes/bench_ratios.png
    python scripts/readme_bench.py notes/bench_results.md

Replaces what lies between the ``bench-summary:start`` and ``bench-summary:end`` markers of
the README with the command, the machine line and the summary table of that file, so every
number in the README's "Measured" section comes from a run anyone can repeat.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def summary(text: str) -> str:
    """The summary table and the Machine/Timing/Roofline lines of a bench markdown file."""
    lines = text.splitlines()
    start = lines.index("### Summary") + 1
    table = []
    for line in lines[start:]:
        if line.startswith("|"):
            table.append(line)
        elif table:
            break
    tail = [ln for ln in lines if ln.startswith(("Machine:", "Timing:", "Roofline ="))]
    if not table or len(tail) < 3:
        raise ValueError("not the markdown output of `python -m fastact bench`")
    return "\n".join(table) + "\n\n" + "\n".join(tail)


def main(argv: list[str]) -> int:
    src = Path(argv[0] if argv else "notes/bench_results.md")
    block = (
        "Produced by `python -m fastact bench --rounds 3 --format markdown "
        "-o notes/bench_results.md "
        "--plot notes/bench_ratios.png` (every row: [notes/bench_results.md]"
        "(notes/bench_results.md)). Ratio = peer time / fastact time, geometric mean over the "
        "cases; wins = cases where fastact is at least as fast; roofline = median fraction of "
        "the streaming bandwidth measured in the same run.\n\n" + summary(src.read_text())
    )
    readme = ROOT / "README.md"
    text = readme.read_text()
    pat = re.compile(r"(<!-- bench-summary:start[^\n]*-->\n).*?(<!-- bench-summary:end -->)", re.S)
    if not pat.search(text):
        raise SystemExit("README.md has no bench-summary markers")
    readme.write_text(pat.sub(lambda m: m.group(1) + block + "\n" + m.group(2), text))
    print(f"README.md: summary copied from {src}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
