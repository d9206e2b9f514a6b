"""Type stubs of the modules whose functions and classes are made at import time.

``scripts/make_stubs.py`` writes ``fastact/__init__.pyi``, ``activations.pyi``, ``scalar.pyi``
and ``nn.pyi`` from the runtime objects. Here: the committed stubs are what the generator
writes today (so a new or changed function cannot ship without its stub); every function and
method of a stub has the runtime signature (names, kinds, defaults), parsed from the stub file
itself; and mypy's stubtest agrees (numbagg's check of its own generated functions).
"""

from __future__ import annotations

import ast
import importlib
import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import make_stubs  # noqa: E402

STUBBED = make_stubs.MODULES


def test_committed_stubs_are_current(capsys):
    assert make_stubs.main(["--check"]) == 0, capsys.readouterr().out


def _stub_params(fn: ast.FunctionDef) -> list[tuple[str, str, bool, object]]:
    """(name, kind, has default, literal default or ...) of a stub function's parameters."""
    a = fn.args
    out = []
    pos = a.posonlyargs + a.args
    defaults = [None] * (len(pos) - len(a.defaults)) + list(a.defaults)
    for arg, d in zip(pos, defaults, strict=True):
        kind = "POSITIONAL_ONLY" if arg in a.posonlyargs else "POSITIONAL_OR_KEYWORD"
        out.append((arg.arg, kind, d is not None, _literal(d)))
    if a.vararg:
        out.append((a.vararg.arg, "VAR_POSITIONAL", False, None))
    for arg, d in zip(a.kwonlyargs, a.kw_defaults, strict=True):
        out.append((arg.arg, "KEYWORD_ONLY", d is not None, _literal(d)))
    if a.kwarg:
        out.append((a.kwarg.arg, "VAR_KEYWORD", False, None))
    return out


def _literal(node):
    if node is None:
        return None
    if isinstance(node, ast.Constant) and node.value is Ellipsis:
        return ...
    return ast.literal_eval(node)


def _runtime_params(fn, skip_first: bool) -> list[tuple[str, str, bool, object]]:
    params = list(inspect.signature(fn).parameters.values())
    out = []
    for p in params:
        has = p.default is not p.empty
        out.append((p.name, p.kind.name, has, p.default if has else None))
    return out


def _same(stub, runtime, where: str) -> None:
    assert [s[:3] for s in stub] == [r[:3] for r in runtime], where
    for (name, _k, has, sd), (_n, _k2, _h, rd) in zip(stub, runtime, strict=True):
        if has and sd is not ...:
            assert sd == rd and type(sd) is type(rd), f"{where}: default of {name}"


@pytest.mark.parametrize("modname", STUBBED)
def test_stub_signatures_match_the_runtime(modname):
    mod = importlib.import_module(modname)
    tree = ast.parse(make_stubs.path_of(modname).read_text())
    checked = 0
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            _same(_stub_params(node), _runtime_params(getattr(mod, node.name), False), node.name)
            checked += 1
        elif isinstance(node, ast.ClassDef):
            cls = getattr(mod, node.name)
            for item in node.body:
                if isinstance(item, ast.FunctionDef):
                    where = f"{node.name}.{item.name}"
                    if any(
                        isinstance(d, ast.Name) and d.id == "property" for d in item.decorator_list
                    ):
                        assert isinstance(inspect.getattr_static(cls, item.name), property), where
                        continue
                    runtime = inspect.getattr_static(cls, item.name)
                    fn = (
                        runtime.__func__
                        if isinstance(runtime, (staticmethod, classmethod))
                        else runtime
                    )
                    _same(_stub_params(item), _runtime_params(fn, False), where)
                    checked += 1
    public = getattr(mod, "__all__", None)
    if public is not None:  # every public name is in the stub
        names = {getattr(n, "name", None) for n in tree.body}
        names |= {t.id for n in tree.body if isinstance(n, ast.AnnAssign) for t in [n.target]}
        names |= {
            a.asname or a.name for n in tree.body if isinstance(n, ast.ImportFrom) for a in n.names
        }
        assert set(public) <= names, set(public) - names
    assert checked > 0


def test_the_signature_check_catches_a_difference():
    fn = ast.parse("def f(x: Any, y: float = 0.5, *, out: Any = None) -> Any: ...").body[0]

    def g(x, y=0.25, *, out=None):
        return x

    with pytest.raises(AssertionError):
        _same(_stub_params(fn), _runtime_params(g, False), "f")


def test_mypy_stubtest():
    pytest.importorskip("mypy")
    env = {**os.environ, "MYPYPATH": str(ROOT), "PYTHONPATH": str(ROOT)}
    r = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", *[m for m in STUBBED if m != "fastact"]],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(ROOT),
        timeout=600,
    )
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
