"""The shape of the package as a checked contract: layers, no cycles, one front end, specs.

* The import-linter contract in pyproject.toml (imports point down the layers) is kept.
* There is no import cycle among fastact's modules (grimp's import graph, function-level
  imports included).
* Every name ``fastact.cuda`` exports is the host's front end itself (one function object per
  name: the device path is an executor below it, never a twin with its own signature).
* The spec tables drive the public API: every loss of ``LOSSES`` is a function of
  ``fastact.losses`` and a module of ``fastact.nn``, every optimizer of ``OPTIMIZERS`` a class
  of ``fastact.optim`` and a function of ``fastact.optim.functional``.
"""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

import fastact
import fastact.cuda
import fastact.losses
import fastact.nn
import fastact.optim
import fastact.optim.functional
from fastact.kernels.activations import ACTIVATIONS
from fastact.kernels.losses import LOSSES
from fastact.kernels.optim import OPTIMIZERS

ROOT = Path(__file__).resolve().parents[1]


def test_layers_contract_is_kept():
    exe = Path(sys.executable).with_name("lint-imports")
    r = subprocess.run([str(exe)], cwd=ROOT, capture_output=True, text=True, env=None, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "1 kept, 0 broken" in r.stdout


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(edges.get(w, ())))))
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
    return out


def test_no_import_cycles():
    graph = grimp.build_graph("fastact")
    edges = {
        m: {i for i in graph.find_modules_directly_imported_by(m) if i.startswith("fastact")}
        for m in graph.modules
    }
    assert _cycles(edges) == []
    # the check finds a cycle when there is one
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def _device_exports() -> list[tuple[str, object, object]]:
    names = [n for n in dir(fastact.cuda) if not n.startswith("_")]
    names = [n for n in names if n not in fastact.cuda.__all__ and n not in ("losses", "optim")]
    pairs = [(n, getattr(fastact.cuda, n), getattr(fastact, n)) for n in names]
    for n in fastact.losses.__all__:
        pairs.append((f"losses.{n}", getattr(fastact.cuda.losses, n), getattr(fastact.losses, n)))
    for n in fastact.optim.functional.__all__:
        pairs.append(
            (f"optim.{n}", getattr(fastact.cuda.optim, n), getattr(fastact.optim.functional, n))
        )
    return pairs


def test_one_front_end_for_host_and_device():
    pairs = _device_exports()
    # every activation (forward, in-place, backward), loss and functional optimizer
    assert len(pairs) >= 3 * len(ACTIVATIONS) + len(LOSSES) + 8
    for name, dev, cpu in pairs:
        assert dev is cpu, name
        assert inspect.signature(dev) == inspect.signature(cpu), name
    # the device losses take grad_out= like the host's (they did not before one front end)
    for n in LOSSES:
        assert "grad_out" in inspect.signature(getattr(fastact.cuda.losses, n)).parameters, n


def test_spec_tables_drive_the_public_api():
    assert list(fastact.losses.__all__) == list(LOSSES)
    for spec in LOSSES.values():
        fn = getattr(fastact.losses, spec.name)
        params = inspect.signature(fn).parameters
        for arg in spec.inputs + spec.arrays:
            assert arg in params, (spec.name, arg)
        assert fastact.nn.LOSS_MODULES[spec.module].__name__ == spec.module
    assert set(fastact.nn.LOSS_MODULES) == {s.module for s in LOSSES.values()}
    assert list(fastact.optim.OPTIMIZERS) == list(OPTIMIZERS)
    for spec in OPTIMIZERS.values():
        cls = fastact.optim.OPTIMIZERS[spec.name]
        assert cls._spec is spec
        fn = getattr(fastact.optim.functional, spec.functional)
        params = inspect.signature(fn).parameters
        for _key, arg in spec.state:
            assert arg in params, (spec.functional, arg)


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_optimizer_state_rows_are_the_classes_state(name):
    """The spec's state keys are exactly the state a step of the class creates (options that
    use every row)."""
    import numpy as np

    spec = OPTIMIZERS[name]
    full = {"SGD": {"momentum": 0.9}, "Adam": {"amsgrad": True}, "AdamW": {"amsgrad": True},
            "RMSprop": {"momentum": 0.9, "centered": True}}.get(name, {})  # fmt: skip
    p = np.ones(4, np.float32)
    opt = fastact.optim.OPTIMIZERS[name]([p], **full)
    opt.step([np.ones(4, np.float32)])
    keys = set(opt.state[p]) - {"step"}
    assert keys == {k for k, _arg in spec.state}
    assert ("step" in opt.state[p]) == spec.has_step
