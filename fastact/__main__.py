"""``python -m fastact bench|info``: the benchmark command and the environment report.

``bench``: see :mod:`fastact.bench` (``python -m fastact bench --help``); ``info``: see
:mod:`fastact.info`.
"""

from __future__ import annotations

import sys

_USAGE = """usage: python -m fastact {bench,info} ...

commands:
  bench  time fastact against torch, NumPy and numexpr on this machine
         (bench losses | bench optim: one family with its full cases)
         (python -m fastact bench --help for its options)
  info   version, CPU, threads and threading layer, vector width, compile cache, GPU path
"""


def _main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        sys.stdout.write(_USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "info":
        if rest and rest[0] in ("-h", "--help"):
            sys.stdout.write("usage: python -m fastact info\n\nPrints what fastact runs with.\n")
            return 0
        if rest:
            sys.stderr.write(f"python -m fastact info: unexpected arguments {rest}\n")
            return 2
        from fastact import info

        sys.stdout.write(info.format(info.report()))
        return 0
    if command == "bench":
        from fastact.bench.cli import main

        return main(rest)
    sys.stderr.write(f"python -m fastact: unknown command {command!r}\n\n{_USAGE}")
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
