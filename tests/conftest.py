"""Shared pytest setup: the tests folder is importable (``activation_cases``), and every test
leaves numba's thread count as it found it."""

from __future__ import annotations

import os
import sys

import numba
import pytest

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)


@pytest.fixture(autouse=True)
def _restore_numba_threads():
    n = numba.get_num_threads()
    yield
    numba.set_num_threads(n)
