"""``python -m fastact bench|info``: the benchmark command and the environment report.

See :mod:`fastact.bench` (``python -m fastact bench --help``).
"""

from __future__ import annotations

import sys


def _main() -> int:
    from fastact.bench import main

    return main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(_main())
