"""The optimizer family: one ``step`` of fastact's fused optimizers against torch.optim.

Cases: one parameter of each requested size (``1 tensor``), and with ``model=True`` a
transformer-like list of ~160 tensors of mixed shapes (:func:`model_shapes`, ~30M elements),
the cost of many small tensors. torch contributes three columns, each timed in its own block
of the torch process: its default CPU implementation (``torch``: the per-parameter for-loop),
``foreach=True`` (``torch_foreach``) and ``fused=True`` (``torch_fused``, where torch has a
CPU fused kernel: SGD, Adam, AdamW, Adagrad). Gradients are fixed arrays (``p.grad`` for
torch); every timed call is a real step (state updated in place).

The roofline of an optimizer is the time its unavoidable memory traffic takes: a step reads
the gradient and reads and writes the parameter and each state array once, ``2 w + 1`` streams
for ``w`` parameter-plus-state arrays; the bandwidth is that of the ``stream<w>`` probe
(``a_k[i] = a_k[i] * s + g[i]``) over the same number of elements, measured in the same run.

``python -m fastact bench optim`` runs this family alone, with the model-like case, and prints
each case's fastact cost per element; it takes the options of ``python -m fastact bench``.
"""

from __future__ import annotations

import functools
import math
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from .timing import Runner, Unsupported

__all__ = ["CONFIGS", "TORCH_FUSED", "Inputs", "build", "cases", "model_shapes", "names"]

FAMILY = "optimizer"
COLUMNS = {"fastact": ("fastact",), "torch": ("torch", "torch_foreach", "torch_fused")}

#: Optimizer -> (fastact/torch keyword arguments, parameter + state arrays read-modify-written).
CONFIGS: dict[str, tuple[dict[str, Any], int]] = {
    "SGD": ({"lr": 1e-3, "momentum": 0.9}, 2),
    "Adam": ({}, 3),
    "AdamW": ({}, 3),
    "Adamax": ({}, 3),
    "RMSprop": ({}, 2),
    "Rprop": ({}, 3),
    "Adagrad": ({}, 2),
    "Adadelta": ({}, 3),
}
#: Optimizers with a CPU ``fused=True`` kernel in torch.
TORCH_FUSED = frozenset({"SGD", "Adam", "AdamW", "Adagrad"})


def names() -> list[str]:
    """The optimizers this family times."""
    return list(CONFIGS)


def model_shapes(target: int = 30_000_000, layers: int = 13, d: int = 432) -> list[tuple]:
    """A transformer-like list of tensors (~12 per layer + embeddings/head): ~160 tensors.

    Each layer: qkv (d, 3d) + bias, proj (d, d) + bias, fc1 (d, 4d) + bias, fc2 (4d, d) +
    bias, two LayerNorms (weight, bias). The embedding's vocabulary fills up to ``target``.
    """
    shapes: list[tuple] = []
    for _ in range(layers):
        shapes += [(d, 3 * d), (3 * d,), (d, d), (d,), (d, 4 * d), (4 * d,), (4 * d, d), (d,)]
        shapes += [(d,), (d,), (d,), (d,)]
    shapes += [(1024, d), (d,), (d,)]  # positions, final LayerNorm
    used = sum(math.prod(s) for s in shapes)
    vocab = max(1, (target - used) // d)
    shapes.insert(0, (vocab, d))
    return shapes


def cases(
    patterns: Sequence[str] | None,
    sizes: Sequence[int],
    dtype: str = "float32",
    model: bool = False,
) -> list[dict]:
    """Benchmark cases of the optimizers matching ``patterns``: one tensor of each size, and
    with ``model=True`` the tensors of :func:`model_shapes` (30M elements; below a largest size
    of 30M, a narrower model of about that size)."""
    from .rows import matches

    dt = np.dtype(dtype)
    layouts: list[tuple[str, int, list[list[int]]]] = [
        ("1 tensor", int(n), [[int(n)]]) for n in sizes
    ]
    if model:
        big = max(sizes)
        shapes = model_shapes() if big >= 30_000_000 else model_shapes(max(big, 1 << 20), d=108)
        total = sum(math.prod(s) for s in shapes)
        layouts.append((f"{len(shapes)} tensors", total, [list(s) for s in shapes]))
    out = []
    for name in (n for n in names() if matches(n, patterns)):
        _kw, w = CONFIGS[name]
        for variant, n, shapes in layouts:
            case: dict[str, Any] = {
                "family": FAMILY,
                "function": name,
                "variant": variant,
                "size": n,
                "dtype": dt.name,
                "bytes": (2 * w + 1) * n * dt.itemsize,
                "probe": f"stream{w}",
            }
            if len(shapes) > 1:
                case["shapes"] = shapes
            if name not in TORCH_FUSED:
                case["columns"] = ["fastact", "torch", "torch_foreach"]
            out.append(case)
    return out


class Inputs:
    """Parameters and gradients per layout (shared by the optimizers of one worker)."""

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._data: tuple[list[np.ndarray], list[np.ndarray]] = ([], [])

    def get(self, case: dict) -> tuple[list[np.ndarray], list[np.ndarray]]:
        shapes = [tuple(s) for s in case.get("shapes", [[case["size"]]])]
        key = (tuple(shapes), case["dtype"])
        if key != self._key:
            self._data = ([], [])  # free the previous layout first
            rng = np.random.default_rng(zlib.crc32(repr(key).encode()))
            dt = np.dtype(case["dtype"])
            pblock = rng.standard_normal(1 << 16).astype(dt)
            gblock = (rng.standard_normal(1 << 16) * 1e-3).astype(dt)
            params = [np.resize(pblock, math.prod(s)).reshape(s) for s in shapes]
            grads = [np.resize(gblock, math.prod(s)).reshape(s) for s in shapes]
            self._key, self._data = key, (params, grads)
        return self._data


def build(column: str, case: dict, inputs: Inputs | None = None) -> Runner:
    """The :class:`Runner` of one optimizer step: ``fastact``, ``torch`` (for-loop),
    ``torch_foreach`` or ``torch_fused``. Every runner steps its own copy of the parameters."""
    name = case["function"]
    if case.get("family", FAMILY) != FAMILY or name not in CONFIGS:
        raise Unsupported(f"not an optimizer case: {case.get('family')} {name}")
    params, grads = (inputs or Inputs()).get(case)
    kwargs, _w = CONFIGS[name]
    if column == "fastact":
        from fastact.optim import OPTIMIZERS

        ps = [p.copy() for p in params]
        opt = OPTIMIZERS[name](ps, **kwargs)
        return Runner(functools.partial(opt.step, grads), keep=(opt, ps))
    flags = {"torch": {"foreach": False}, "torch_foreach": {"foreach": True}}.get(column)
    if column == "torch_fused":
        if name not in TORCH_FUSED:
            raise Unsupported(f"torch has no fused CPU {name}")
        flags = {"fused": True}
    if flags is None:
        raise Unsupported(f"no {column} column for optimizers")
    return _torch_runner(name, kwargs, params, grads, flags)


def _torch_step(opt: Any, no_grad: Any) -> None:
    with no_grad():
        opt.step()


def _torch_runner(name: str, kwargs: dict, params: list, grads: list, flags: dict) -> Runner:
    import torch

    tp = [torch.from_numpy(p.copy()).requires_grad_() for p in params]
    for t, g in zip(tp, grads, strict=True):
        t.grad = torch.from_numpy(g)
    opt = getattr(torch.optim, name)(tp, **kwargs, **flags)
    return Runner(functools.partial(_torch_step, opt, torch.no_grad), keep=(opt, tp))


def per_element_lines(report: dict) -> list[str]:
    """fastact's step cost per element for each optimizer and case (cache and many-tensor
    effects: compare the model-like case with one tensor of about its size)."""
    rows = [r for r in report["results"] if r["family"] == FAMILY and "fastact" in r["times"]]
    out = []
    for name in dict.fromkeys(r["function"] for r in rows):
        parts = [
            f"{r['variant']} {r['size'] / 1e6:.1f}M: {1e9 * r['times']['fastact'] / r['size']:.3f}"
            for r in rows
            if r["function"] == name
        ]
        out.append(f"{name}: " + ", ".join(parts) + " ns/element")
    return out
