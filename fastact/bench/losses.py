"""The loss family: each loss's value and gradient in one call, against torch and NumPy.

For a requested size ``n`` every loss of :mod:`fastact.losses` gets inputs of about ``n``
elements: the element-wise losses 1-d arrays of ``n``, ``cross_entropy`` ``(n // 1000,
1000)`` logits with class indices, ``nll_loss`` and ``multilabel_soft_margin_loss`` ``(n //
1024, 1024)`` rows, ``cosine_embedding_loss`` and ``triplet_margin_loss`` ``(n // 128, 128)``
embeddings. Two variants:

* ``value+grad``: ``loss(..., return_grad=True)`` (allocates the gradient) against torch's
  forward plus ``backward()`` (autograd allocates too) and a plain NumPy expression of the
  loss and its gradient (:data:`fastact.bench.peers.NP_LOSSES`);
* ``grad_out``: fastact alone, writing into a reused ``grad_out`` buffer (no page faults of a
  fresh gradient): the call a training loop makes, and the one that shows the roofline.

Bytes moved: every input read once and every gradient written once (``nll_loss`` reads one
input element per row); the roofline's bandwidth is the ``triad`` probe (``z = x + y``).

``python -m fastact bench losses`` runs this family alone with NumPy's formulas (the default
``python -m fastact bench`` leaves those out: seconds per call at 16M); it takes the options of
``python -m fastact bench``.
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from . import peers
from .timing import Runner, Unsupported

__all__ = ["LOSSES", "Inputs", "build", "case_inputs", "cases", "names"]

FAMILY = "loss"
COLUMNS = {"fastact": ("fastact",), "torch": ("torch",), "numpy": ("numpy",)}
VARIANTS = ("value+grad", "grad_out")

#: loss -> (input kinds, differentiable argument indices, keyword arguments). Input kinds:
#: ``x``, ``t``, ``y`` normal, ``u`` uniform (0.001, 0.999), ``v`` uniform (0.1, 2), ``pm1``
#: random signs, ``logu`` log of uniform (0.01, 1), ``pos`` uniform (0.01, 1), ``poisson``
#: Poisson(2) counts, ``bits`` random 0/1, ``cls`` class indices; ``*_rows``: the (n // 1024,
#: 1024) layout, ``*_emb``: (n // 128, 128), ``*_ce``: (n // 1000, 1000).
LOSSES: dict[str, tuple[tuple[str, ...], tuple[int, ...], dict[str, Any]]] = {
    "mse_loss": (("x", "t"), (0,), {}),
    "l1_loss": (("x", "t"), (0,), {}),
    "smooth_l1_loss": (("x", "t"), (0,), {}),
    "huber_loss": (("x", "t"), (0,), {}),
    "binary_cross_entropy": (("u", "u01"), (0,), {}),
    "binary_cross_entropy_with_logits": (("x", "u01"), (0,), {}),
    "kl_div": (("logu", "pos"), (0,), {"reduction": "batchmean"}),
    "poisson_nll_loss": (("x", "poisson"), (0,), {}),
    "gaussian_nll_loss": (("x", "t", "v"), (0, 2), {}),
    "soft_margin_loss": (("x", "pm1"), (0,), {}),
    "margin_ranking_loss": (("x", "t", "pm1"), (0, 1), {}),
    "hinge_embedding_loss": (("x", "pm1"), (0,), {}),
    "cross_entropy": (("x_ce", "cls_ce"), (0,), {}),
    "nll_loss": (("x_rows", "cls_rows"), (0,), {}),
    "multilabel_soft_margin_loss": (("x_rows", "bits_rows"), (0,), {}),
    "cosine_embedding_loss": (("x_emb", "t_emb", "pm1_emb"), (0, 1), {}),
    "triplet_margin_loss": (("x_emb", "t_emb", "y_emb"), (0, 1, 2), {}),
}
_WIDTHS = {"ce": 1000, "rows": 1024, "emb": 128}


def names() -> list[str]:
    """The losses this family times (every loss of :mod:`fastact.losses`)."""
    return list(LOSSES)


def _shape(kind: str, n: int) -> tuple[int, ...]:
    base, _, layout = kind.partition("_")
    if not layout:
        return (n,)
    width = _WIDTHS[layout]
    rows = max(1, n // width)
    return (rows,) if base in ("cls", "pm1") else (rows, width)


def cases(
    patterns: Sequence[str] | None,
    sizes: Sequence[int],
    dtype: str = "float32",
    with_numpy: bool = True,
) -> list[dict]:
    """Benchmark cases of the losses matching ``patterns`` at each size (see the module
    docstring); ``with_numpy=False`` leaves NumPy's formulas out."""
    from .rows import matches

    dt = np.dtype(dtype)
    out = []
    for name in (n for n in names() if matches(n, patterns)):
        kinds, grads, _kw = LOSSES[name]
        for n in sizes:
            shapes = [_shape(k, n) for k in kinds]
            elements = [int(np.prod(s)) for s in shapes]
            if name == "nll_loss":  # one input element per row, the targets, the gradient
                nbytes = shapes[0][0] * (dt.itemsize + 8) + elements[0] * dt.itemsize
            else:
                itemsizes = [8 if k.startswith("cls") else dt.itemsize for k in kinds]
                nbytes = sum(e * s for e, s in zip(elements, itemsizes, strict=True))
                nbytes += sum(elements[i] * dt.itemsize for i in grads)
            for variant in VARIANTS:
                case: dict[str, Any] = {
                    "family": FAMILY,
                    "function": name,
                    "variant": variant,
                    "size": int(n),
                    "dtype": dt.name,
                    "shape": list(shapes[0]),
                    "bytes": int(nbytes),
                    "probe": "triad",
                }
                if variant == "grad_out":
                    case["columns"] = ["fastact"]
                elif not with_numpy:
                    case["columns"] = ["fastact", "torch"]
                out.append(case)
    return out


class Inputs:
    """Deterministic loss inputs per (kind, size, dtype): a random block of 64K values tiled
    to the size (fast to make at 16M, unpredictable for the branches), one size at a time."""

    def __init__(self) -> None:
        self._cache: dict[tuple, np.ndarray] = {}
        self._size: tuple | None = None

    def get(self, kind: str, n: int, dtype: str) -> np.ndarray:
        if self._size != (n, dtype):
            self._cache.clear()
            self._size = (n, dtype)
        if kind not in self._cache:
            self._cache[kind] = _make(kind, n, np.dtype(dtype))
        return self._cache[kind]


def _make(kind: str, n: int, dt: np.dtype) -> np.ndarray:
    shape = _shape(kind, n)
    size = int(np.prod(shape))
    base = kind.partition("_")[0]
    rng = np.random.default_rng(zlib.crc32(kind.encode()))
    block = min(size, 1 << 16)
    if base == "cls":
        width = _WIDTHS[kind.partition("_")[2]]
        vals: np.ndarray = rng.integers(0, width, block)
    else:
        draw: dict[str, Callable[[], np.ndarray]] = {
            "x": lambda: rng.standard_normal(block),
            "t": lambda: rng.standard_normal(block),
            "y": lambda: rng.standard_normal(block),
            "u": lambda: rng.uniform(0.001, 0.999, block),
            "u01": lambda: rng.uniform(0.0, 1.0, block),
            "v": lambda: rng.uniform(0.1, 2.0, block),
            "pm1": lambda: np.where(rng.random(block) < 0.5, -1.0, 1.0),
            "logu": lambda: np.log(rng.uniform(0.01, 1.0, block)),
            "pos": lambda: rng.uniform(0.01, 1.0, block),
            "poisson": lambda: rng.poisson(2.0, block).astype(np.float64),
            "bits": lambda: (rng.random(block) < 0.5).astype(np.float64),
        }
        vals = draw[base]().astype(dt)
    return np.resize(vals, size).reshape(shape)


def case_inputs(case: dict, inputs: Inputs | None = None) -> tuple[np.ndarray, ...]:
    """The input arrays of a loss case (shared by every column)."""
    inputs = inputs or Inputs()
    kinds = LOSSES[case["function"]][0]
    return tuple(inputs.get(k, case["size"], case["dtype"]) for k in kinds)


def build(column: str, case: dict, inputs: Inputs | None = None) -> Runner:
    """The :class:`Runner` of ``column`` (fastact, torch or numpy) for a loss case."""
    name, variant = case["function"], case["variant"]
    if case.get("family", FAMILY) != FAMILY or name not in LOSSES:
        raise Unsupported(f"not a loss case: {case.get('family')} {name}")
    if variant == "grad_out" and column != "fastact":
        raise Unsupported("only fastact writes into a caller's gradient buffer")
    args = case_inputs(case, inputs)
    _kinds, grads, kw = LOSSES[name]
    if column == "fastact":
        from fastact import losses as L

        fa = getattr(L, name)
        if variant == "grad_out":
            bufs = tuple(np.empty_like(args[i]) for i in grads)
            gout = bufs[0] if len(bufs) == 1 else bufs
            return Runner(
                functools.partial(fa, *args, return_grad=True, grad_out=gout, **kw), keep=bufs
            )
        return Runner(functools.partial(fa, *args, return_grad=True, **kw))
    if column == "torch":
        return _torch_runner(name, args, grads, kw)
    if column == "numpy":
        return Runner(functools.partial(peers.NP_LOSSES[name], *args))
    raise Unsupported(f"no {column} column for losses")


def _torch_step(fn: Callable, targs: list, grads: tuple[int, ...], kw: dict) -> None:
    fn(*targs, **kw).backward()
    for i in grads:
        targs[i].grad = None


def _torch_runner(name: str, args: tuple, grads: tuple[int, ...], kw: dict) -> Runner:
    import torch
    import torch.nn.functional as F

    targs = [torch.from_numpy(a) for a in args]
    for i in grads:
        targs[i].requires_grad_(True)
    return Runner(functools.partial(_torch_step, getattr(F, name), targs, grads, kw), keep=targs)
