"""Losses on CUDA device arrays: the kernels and the executor's loss launches.

The element-wise losses run one grid-stride kernel around the host's scalar ``f(a, b, c, w1,
w2, prm) -> (value, d1, d2, bad)`` (:data:`fastact.kernels.losses.ELEMENTWISE_SCALARS`,
compiled for the device), reducing the values in float64 per block (shared-memory tree); a
one-block second pass divides by the loss's divisor. The reduced loss is a 0-d device array
of the input's library (a torch 0-d CUDA tensor for torch input), so nothing waits for the
GPU, except: losses with a domain check (binary_cross_entropy, gaussian_nll_loss) read one
count back, a weighted ``'mean'`` reads ``sum(weight)`` back first, and cross_entropy /
nll_loss with class-index targets validate the indices on the device and read the
out-of-range count and ``sum(w[y])`` (the 'mean' divisor) back.

Row-wise losses (cross_entropy, nll_loss, cosine_embedding_loss, triplet_margin_loss,
multilabel_soft_margin_loss): one block per row of a contiguous axis (threads over its
elements, shared-memory float64 block reductions), one thread per sample for cross_entropy
over (N, C, d1, ...) inputs; no global atomics. The front end (:mod:`fastact.losses`) is the
host's; :class:`LossLaunches` gives the CUDA executor the host executor's loss functions.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import cuda, float64

from fastact._core.math import exp, lit
from fastact.cuda import _runtime as rt
from fastact.cuda._reduce import block_max, block_sum
from fastact.cuda._retarget import device_function, kernel
from fastact.cuda._runtime import THREADS
from fastact.kernels import losses as LK
from fastact.kernels.losses import diff_eps, norm_terms

__all__ = ["LossLaunches"]


# ----------------------------------------------------------------------------- kernels
def _ew_loss(a, b, c, w1, w2, prm, gscale, ga, gb, out, partials):
    """Grid-stride loss over 1-D arrays; partials[0, block] = float64 sum of the values,
    partials[1, block] = count of out-of-domain elements. None arrays are pruned."""
    sh = cuda.shared.array(THREADS, float64)
    n = a.size
    i = cuda.grid(1)
    stride = cuda.gridsize(1)
    acc = 0.0
    nbad = 0.0
    while i < n:
        ai = a[i]
        if w1 is None:
            w1i = lit(ai, 1.0)  # noqa: F821 (bound below)
        else:
            w1i = w1[i]
        if w2 is None:
            w2i = lit(ai, 1.0)
        else:
            w2i = w2[i]
        v, d1, d2, isbad = f(ai, b[i], c[i], w1i, w2i, prm)  # noqa: F821 (bound per loss)
        acc += v
        nbad += isbad
        if out is not None:
            out[i] = v
        if ga is not None:
            ga[i] = d1 * gscale
        if gb is not None:
            gb[i] = d2 * gscale
        i += stride
    total = block_sum(acc, sh)
    bad = block_sum(nbad, sh)
    if cuda.threadIdx.x == 0:
        partials[0, cuda.blockIdx.x] = total
        partials[1, cuda.blockIdx.x] = bad


def _finalize(partials, div, loss, count):
    """One block: loss[0] = sum(partials[0]) / div (in the loss dtype), count[0] = bad."""
    sh = cuda.shared.array(THREADS, float64)
    acc = 0.0
    nbad = 0.0
    for j in range(cuda.threadIdx.x, partials.shape[1], THREADS):
        acc += partials[0, j]
        nbad += partials[1, j]
    total = block_sum(acc, sh)
    bad = block_sum(nbad, sh)
    if cuda.threadIdx.x == 0:
        loss[0] = total / div
        count[0] = bad


def _sum(x, partials):
    """partials[0, block] = float64 sum of x over the block's elements (row 1: zero)."""
    sh = cuda.shared.array(THREADS, float64)
    i = cuda.grid(1)
    stride = cuda.gridsize(1)
    acc = 0.0
    while i < x.size:
        acc += float64(x[i])
        i += stride
    total = block_sum(acc, sh)
    if cuda.threadIdx.x == 0:
        partials[0, cuda.blockIdx.x] = total
        partials[1, cuda.blockIdx.x] = 0.0


_KERNELS: dict[str, Any] = {}


def _get(name: str):
    k = _KERNELS.get(name)
    if k is None:
        from fastact._core.math import lit

        if name == "finalize":
            k = kernel(_finalize, "loss_finalize_cuda")
        elif name == "sum":
            k = kernel(_sum, "loss_sum_cuda")
        else:
            f = device_function(LK.ELEMENTWISE_SCALARS[name])
            k = kernel(_ew_loss, f"loss_{name}_cuda", f=f, lit=lit)
        _KERNELS[name] = k
    return k


_NEG_INF = -math.inf


def _class_stats(y, w, ignore_index, n_classes, partials):
    """Class-index targets: partials[0] = sum of w[y] over kept targets (w None: count),
    [1] = out-of-range count, [2] = max of -(position) over the bad ones, [3] = sum of w."""
    sh = cuda.shared.array(THREADS, float64)
    i = cuda.grid(1)
    stride = cuda.gridsize(1)
    kept = 0.0
    nbad = 0.0
    first = _NEG_INF
    while i < y.size:
        yi = y[i]
        if yi != ignore_index:
            if yi < 0 or yi >= n_classes:
                nbad += 1.0
                if -float64(i) > first:
                    first = -float64(i)
            elif w is None:
                kept += 1.0
            else:
                kept += float64(w[yi])
        i += stride
    wsum = 0.0
    if w is not None:
        j = cuda.grid(1)
        while j < w.size:
            wsum += float64(w[j])
            j += stride
    a = block_sum(kept, sh)
    b = block_sum(nbad, sh)
    c = block_max(first, sh)
    d = block_sum(wsum, sh)
    if cuda.threadIdx.x == 0:
        partials[0, cuda.blockIdx.x] = a
        partials[1, cuda.blockIdx.x] = b
        partials[2, cuda.blockIdx.x] = c
        partials[3, cuda.blockIdx.x] = d


def _ce_rows(x, y, q, w, wsum, eps, ignore_index, gscale, g, out, partials):
    """cross_entropy over (N, C) rows, one block per row (blocks stride over rows).

    Index target ``y`` (q None): (1 - eps) w_y (lse - x_y) + eps/C (lse W - sum_c w_c x_c);
    probabilities ``q``: with q' = (1 - eps) q + eps/C, sum_c w_c q'_c (lse - x_c). Gradient
    p_j coef - (smoothed target terms), like the CPU's ``_ce_row`` (same operation order).
    """
    sh = cuda.shared.array(THREADS, float64)
    n_rows, n_cls = x.shape
    tid = cuda.threadIdx.x
    acc = 0.0
    r = cuda.blockIdx.x
    while r < n_rows:
        yr = 0
        skip = False
        if y is not None:
            yr = y[r]
            skip = yr == ignore_index
        if skip:
            if g is not None:
                for c in range(tid, n_cls, THREADS):
                    g[r, c] = lit(x[r, c], 0.0)
            if tid == 0 and out is not None:
                out[r] = 0.0
        else:
            m = _NEG_INF
            for c in range(tid, n_cls, THREADS):
                v = float64(x[r, c])
                if v > m or m != m:
                    m = v
            mt = lit(x[r, 0], block_max(m, sh))
            keep = lit(mt, 1.0 - eps)
            spread = lit(mt, eps / n_cls)
            s = 0.0
            sx = 0.0
            sq = 0.0
            for c in range(tid, n_cls, THREADS):
                xc = x[r, c]
                s += exp(xc - mt)
                wc = lit(xc, 1.0) if w is None else w[c]
                if q is None:
                    if eps != 0:
                        sx += wc * xc
                else:
                    wq = wc * (q[r, c] * keep + spread)
                    sx += wq * xc
                    sq += wq
            s = block_sum(s, sh)
            if q is not None or eps != 0:  # the same for every thread of the block
                sx = block_sum(sx, sh)
            if q is not None:
                sq = block_sum(sq, sh)
            lse = mt + math.log(s)
            if q is None:
                wy = 1.0 if w is None else float64(w[yr])
                xy = x[r, yr]
                loss = (1.0 - eps) * wy * (lse - xy) + (eps / n_cls) * (lse * wsum - sx)
                coef = gscale * ((1.0 - eps) * wy + eps * wsum / n_cls)
            else:
                wy = 0.0
                loss = sq * lse - sx
                coef = gscale * sq
            if g is not None:
                a = lit(mt, coef / s)
                if q is None:
                    b = lit(mt, gscale * eps / n_cls)
                    cy = lit(mt, gscale * (1.0 - eps) * wy)
                    for c in range(tid, n_cls, THREADS):
                        wc = lit(mt, 1.0) if w is None else w[c]
                        gv = exp(x[r, c] - mt) * a - b * wc
                        if c == yr:
                            gv -= cy
                        g[r, c] = gv
                else:
                    gs = lit(mt, gscale)
                    for c in range(tid, n_cls, THREADS):
                        wc = lit(mt, 1.0) if w is None else w[c]
                        g[r, c] = exp(x[r, c] - mt) * a - gs * wc * (q[r, c] * keep + spread)
            if tid == 0 and out is not None:
                out[r] = loss
            acc += loss
        r += cuda.gridDim.x
    if tid == 0:
        partials[0, cuda.blockIdx.x] = acc
        partials[1, cuda.blockIdx.x] = 0.0


def _ce_columns(x, y, q, w, wsum, eps, ignore_index, gscale, g, out, partials):
    """cross_entropy over (N, C, D) with D > 1: one thread per sample (n, d), float64 block
    sum of the losses. Same formulas as ``_ce_rows``."""
    sh = cuda.shared.array(THREADS, float64)
    n_s, n_cls, n_d = x.shape
    j = cuda.grid(1)
    stride = cuda.gridsize(1)
    acc = 0.0
    while j < n_s * n_d:
        n = j // n_d
        d = j - n * n_d
        yr = 0
        skip = False
        if y is not None:
            yr = y[n, d]
            skip = yr == ignore_index
        loss = 0.0
        if skip:
            if g is not None:
                for c in range(n_cls):
                    g[n, c, d] = lit(x[n, 0, d], 0.0)
        else:
            mt = x[n, 0, d]
            for c in range(1, n_cls):
                v = x[n, c, d]
                if v > mt or mt != mt:
                    mt = v
            keep = lit(mt, 1.0 - eps)
            spread = lit(mt, eps / n_cls)
            s = 0.0
            sx = 0.0
            sq = 0.0
            for c in range(n_cls):
                xc = x[n, c, d]
                s += exp(xc - mt)
                wc = lit(xc, 1.0) if w is None else w[c]
                if q is None:
                    if eps != 0:
                        sx += wc * xc
                else:
                    wq = wc * (q[n, c, d] * keep + spread)
                    sx += wq * xc
                    sq += wq
            lse = mt + math.log(s)
            if q is None:
                wy = 1.0 if w is None else float64(w[yr])
                loss = (1.0 - eps) * wy * (lse - x[n, yr, d]) + (eps / n_cls) * (lse * wsum - sx)
                coef = gscale * ((1.0 - eps) * wy + eps * wsum / n_cls)
            else:
                wy = 0.0
                loss = sq * lse - sx
                coef = gscale * sq
            if g is not None:
                a = lit(mt, coef / s)
                if q is None:
                    b = lit(mt, gscale * eps / n_cls)
                    cy = lit(mt, gscale * (1.0 - eps) * wy)
                    for c in range(n_cls):
                        wc = lit(mt, 1.0) if w is None else w[c]
                        gv = exp(x[n, c, d] - mt) * a - b * wc
                        if c == yr:
                            gv -= cy
                        g[n, c, d] = gv
                else:
                    gs = lit(mt, gscale)
                    for c in range(n_cls):
                        wc = lit(mt, 1.0) if w is None else w[c]
                        g[n, c, d] = exp(x[n, c, d] - mt) * a - gs * wc * (
                            q[n, c, d] * keep + spread
                        )
        if out is not None:
            out[n, d] = loss
        acc += loss
        j += stride
    total = block_sum(acc, sh)
    if cuda.threadIdx.x == 0:
        partials[0, cuda.blockIdx.x] = total
        partials[1, cuda.blockIdx.x] = 0.0


def _nll(x, y, w, ignore_index, gscale, g, out, partials):
    """nll_loss over (N, C, D): loss = -w_y x[n, y, d]; g (zeroed before) gets -w_y gscale."""
    sh = cuda.shared.array(THREADS, float64)
    n_s, n_cls, n_d = x.shape
    j = cuda.grid(1)
    stride = cuda.gridsize(1)
    acc = 0.0
    while j < n_s * n_d:
        n = j // n_d
        d = j - n * n_d
        yi = y[n, d]
        loss = 0.0
        if yi != ignore_index:
            wy = 1.0 if w is None else float64(w[yi])
            loss = -wy * x[n, yi, d]
            if g is not None:
                g[n, yi, d] = -wy * gscale
        if out is not None:
            out[n, d] = loss
        acc += loss
        j += stride
    total = block_sum(acc, sh)
    if cuda.threadIdx.x == 0:
        partials[0, cuda.blockIdx.x] = total
        partials[1, cuda.blockIdx.x] = 0.0


def _zero(a):
    """a[:] = 0 over a flat array (grid-stride)."""
    i = cuda.grid(1)
    stride = cuda.gridsize(1)
    while i < a.size:
        a[i] = 0
        i += stride


def _cosine_rows(x1, x2, y, margin, z0, gscale, g1, g2, out, partials):
    """cosine_embedding_loss, one block per row: cos = x1.x2 / sqrt((|x1|^2 + 1e-12)
    (|x2|^2 + 1e-12)); 1 - cos where y = 1, max(0, cos - margin) where y = -1, else 0."""
    sh = cuda.shared.array(THREADS, float64)
    n_rows, n_d = x1.shape
    tid = cuda.threadIdx.x
    acc = 0.0
    r = cuda.blockIdx.x
    while r < n_rows:
        dot = 0.0
        n1 = 0.0
        n2 = 0.0
        for j in range(tid, n_d, THREADS):
            u = x1[r, j]
            v = x2[r, j]
            dot += u * v
            n1 += u * u
            n2 += v * v
        dot = block_sum(dot, sh)
        n1 = block_sum(n1, sh)
        n2 = block_sum(n2, sh)
        a_ = n1 + 1e-12
        b_ = n2 + 1e-12
        den = math.sqrt(a_ * b_)
        cs = dot / den
        yr = y[r]
        if yr == 1:
            loss = 1.0 - cs
            dl = -1.0
        elif yr == -1:
            z = cs - margin
            loss = 0.0 if z < 0 else z
            dl = 1.0 if z >= 0 else 0.0
        else:
            loss = 0.0
            dl = 0.0
        if tid == 0 and out is not None:
            out[r] = loss
        acc += loss
        if g1 is not None:
            c = gscale * dl
            p = lit(z0, c / den)
            s1 = lit(z0, c * cs / a_)
            s2 = lit(z0, c * cs / b_)
            for j in range(tid, n_d, THREADS):
                u = x1[r, j]
                v = x2[r, j]
                g1[r, j] = p * v - s1 * u
                g2[r, j] = p * u - s2 * v
        r += cuda.gridDim.x
    if tid == 0:
        partials[0, cuda.blockIdx.x] = acc
        partials[1, cuda.blockIdx.x] = 0.0


def _triplet_rows(an, po, ne, margin, p, eps, swap, z0, gscale, ga, gp, gn, out, partials):
    """triplet_margin_loss, one block per row: max(0, margin + d(a, p) - d(a, n)) with
    d(x, y) = ||x - y + eps||_p (swap: min(d(a, n), d(p, n)), ties split the gradient)."""
    sh = cuda.shared.array(THREADS, float64)
    n_rows, n_d = an.shape
    tid = cuda.threadIdx.x
    e = lit(z0, eps)
    acc = 0.0
    r = cuda.blockIdx.x
    while r < n_rows:
        sap = 0.0
        san = 0.0
        spn = 0.0
        for j in range(tid, n_d, THREADS):
            a = an[r, j]
            b = po[r, j]
            c = ne[r, j]
            sap += powabs(diff_eps(a, b, e), p)  # noqa: F821 (bound per kind of p)
            san += powabs(diff_eps(a, c, e), p)  # noqa: F821
            spn += powabs(diff_eps(b, c, e), p)  # noqa: F821
        sap = block_sum(sap, sh)
        san = block_sum(san, sh)
        spn = block_sum(spn, sh)
        dap = root(sap, p)  # noqa: F821
        dan = root(san, p)  # noqa: F821
        dpn = root(spn, p)  # noqa: F821
        alpha = 1.0
        beta = 0.0
        dneg = dan
        if swap:
            if dpn < dan:
                dneg = dpn
                alpha = 0.0
                beta = 1.0
            elif dpn == dan:
                alpha = 0.5
                beta = 0.5
        z = margin + dap - dneg
        loss = 0.0 if z < 0 else z
        if tid == 0 and out is not None:
            out[r] = loss
        acc += loss
        if ga is not None:
            cf = gscale if z >= 0 else 0.0
            ca = lit(e, cf)
            cal = lit(e, cf * alpha)
            cbe = lit(e, cf * beta)
            iap, lap = norm_terms(dap)
            ian, lan = norm_terms(dan)
            ipn, lpn = norm_terms(dpn)
            for j in range(tid, n_d, THREADS):
                a = an[r, j]
                b = po[r, j]
                c = ne[r, j]
                uap = dnorm(diff_eps(a, b, e), p, iap, lap)  # noqa: F821
                uan = dnorm(diff_eps(a, c, e), p, ian, lan)  # noqa: F821
                upn = dnorm(diff_eps(b, c, e), p, ipn, lpn)  # noqa: F821
                ga[r, j] = ca * uap - cal * uan
                gp[r, j] = -ca * uap - cbe * upn
                gn[r, j] = cal * uan + cbe * upn
        r += cuda.gridDim.x
    if tid == 0:
        partials[0, cuda.blockIdx.x] = acc
        partials[1, cuda.blockIdx.x] = 0.0


def _msm_rows(x, t, w, prm, gscale, g, out, partials):
    """multilabel_soft_margin_loss, one block per row of C classes: the row's mean of the
    BCE-with-logits terms (the CPU's scalar ``f``); ``w`` is (1, C) or (R, C)."""
    sh = cuda.shared.array(THREADS, float64)
    n_rows, n_cls = x.shape
    tid = cuda.threadIdx.x
    acc = 0.0
    r = cuda.blockIdx.x
    while r < n_rows:
        s = 0.0
        for c in range(tid, n_cls, THREADS):
            xc = x[r, c]
            one = lit(xc, 1.0)
            if w is None:
                wc = one
            elif w.shape[0] == 1:
                wc = w[0, c]
            else:
                wc = w[r, c]
            v, d1, _d2, _bad = f(xc, t[r, c], xc, wc, one, prm)  # noqa: F821 (bce_logits)
            s += v
            if g is not None:
                g[r, c] = d1 * gscale
        total = block_sum(s, sh)
        if tid == 0 and out is not None:
            out[r] = total / n_cls
        acc += total
        r += cuda.gridDim.x
    if tid == 0:
        partials[0, cuda.blockIdx.x] = acc
        partials[1, cuda.blockIdx.x] = 0.0


_ROW_TEMPLATES = {
    "class_stats": _class_stats,
    "ce_rows": _ce_rows,
    "ce_columns": _ce_columns,
    "nll": _nll,
    "zero": _zero,
    "cosine_rows": _cosine_rows,
    "msm_rows": _msm_rows,
}


def _row_kernel(name: str):
    """The compiled row-wise kernel ``name`` (``triplet_p2`` / ``_p1`` / ``_pgen`` per p)."""
    k = _KERNELS.get(name)
    if k is None:
        glb: dict[str, Any] = {}
        if name.startswith("triplet_"):
            pieces = LK.PNORM_PIECES[name.split("_", 1)[1]]
            glb.update({key: device_function(fn) for key, fn in pieces.items()})
            template = _triplet_rows
        else:
            template = _ROW_TEMPLATES[name]
            if name == "msm_rows":
                glb["f"] = device_function(LK.ELEMENTWISE_SCALARS["bce_logits"])
        k = _KERNELS[name] = kernel(template, f"loss_{name}_cuda", **glb)
    return k


# ----------------------------------------------------------------------------- launches
class LossLaunches:
    """The host executor's loss functions (:mod:`fastact.host.losses`) for device arrays;
    mixed into :class:`fastact.cuda._executor.Executor` (``self.stream``)."""

    stream: Any

    # ------------------------------------------------------------------ array edge
    def real_input(self, x: Any, name: str):
        d = rt.view(x, name)
        if d.dtype.kind not in "iuf":
            raise TypeError(f"{name} must be an array of real numbers, got dtype {d.dtype}")
        return d

    def float_inputs(self, names: tuple, *xs: Any) -> tuple:
        views = tuple(rt.float_view(x, n) for x, n in zip(xs, names, strict=False))
        for d, n in zip(views[1:], names[1:], strict=False):
            if d.dtype != views[0].dtype:
                raise TypeError(
                    f"{n} has dtype {d.dtype} but {names[0]} has dtype {views[0].dtype}; "
                    "device arrays must share one dtype"
                )
        return views

    def typed_input(self, x: Any, name: str, dt: np.dtype):
        d = rt.float_view(x, name)
        if d.dtype != dt:
            raise TypeError(
                f"{name} has dtype {d.dtype} but input has dtype {dt}; device arrays must "
                "share one dtype"
            )
        return d

    def flat(self, d, shape: tuple):
        """``d`` broadcast to ``shape`` as a C-contiguous 1-D device array."""
        if d is None:
            return None
        if tuple(d.shape) == tuple(shape):
            return rt.flat(rt.contiguous(d, self.stream))
        src = rt.contiguous(d, self.stream).reshape(
            *((1,) * (len(shape) - d.ndim) + tuple(d.shape))
        )
        tmp = cuda.device_array(tuple(shape), dtype=d.dtype, stream=self.stream)
        rt.assign(tmp, src, self.stream)
        return rt.flat(tmp)

    def sum_to_shape(self, g, shape: tuple, name: str):
        if tuple(g.shape) == tuple(shape):
            return g
        raise ValueError(
            f"{name} of shape {tuple(shape)} is broadcast to {tuple(g.shape)}: its gradient "
            "would be summed over the broadcast dimensions, which the CUDA path does not do; "
            f"pass {name} at the broadcast shape"
        )

    def float_sum(self, a) -> float:
        """float64 sum of a device array, read back to the host (synchronises)."""
        x = rt.flat(rt.contiguous(rt.float_view(a, "array"), self.stream))
        nb = rt.blocks(max(x.size, 1))
        partials = cuda.device_array((2, nb), dtype=np.float64, stream=self.stream)
        _get("sum")[nb, THREADS, self.stream](x, partials)
        loss = cuda.device_array(1, dtype=np.float64, stream=self.stream)
        count = cuda.device_array(1, dtype=np.float64, stream=self.stream)
        _get("finalize")[1, THREADS, self.stream](partials, 1.0, loss, count)
        return float(loss.copy_to_host(stream=self.stream)[0])

    def grad_buffer(self, buf: Any, shape: tuple, dt: np.dtype, label: str, inputs: tuple):
        d = rt.check_out(buf, shape, dt, (), label)
        if not d.is_c_contiguous():
            raise ValueError(f"{label} must be C-contiguous")
        for other in inputs:
            if other is None:
                continue
            o = other if rt.is_numba_array(other) else None
            if o is None and rt.interface(other) is not None:
                o = rt.view(other, "argument")
            if o is not None and o.size and d.size and rt.overlaps(d, o):
                raise ValueError(f"{label} shares memory with an argument or another buffer")
        return buf, d

    def copy_into(self, dst, src) -> None:
        rt.assign(dst, src, self.stream)

    def full(self, like: Any, shape: tuple, value: float, dt: np.dtype):
        return cuda.to_device(np.full(tuple(shape), value, dt), stream=self.stream)

    @staticmethod
    def unit_interval_message(p, t) -> str:
        return "all elements of input and target should be between 0 and 1"

    # ------------------------------------------------------------------ reductions
    def _finish(self, partials, reduction: str, div: float, like: Any, out_res: Any, dt):
        """The loss: ``out_res`` for 'none', else a 0-d device array sum(partials) / div;
        also the out-of-domain count array (partials[1])."""
        count = cuda.device_array(1, dtype=np.float64, stream=self.stream)
        if reduction == "none":
            res = out_res
            _get("finalize")[1, THREADS, self.stream](
                partials, 1.0, cuda.device_array(1, np.float64, stream=self.stream), count
            )
        else:
            res, lv = rt.empty(like, (), dt, self.stream)
            _get("finalize")[1, THREADS, self.stream](
                partials, float(div) if reduction == "mean" else 1.0, lv.reshape(1), count
            )
        return res, count

    def _out(self, reduction: str, like: Any, shape: tuple, dt, rows: int):
        if reduction != "none":
            return None, None
        out_res, o = rt.empty(like, tuple(shape), dt, self.stream)
        return out_res, o.reshape(rows)

    # ------------------------------------------------------------------ launches
    def loss_map(self, kernel_name, arrays, weights, prm, gscale, grads, reduction, div, check,
                 like, shape):  # fmt: skip
        a = arrays[0]
        dt = a.dtype
        n = a.size
        out_res, out = self._out(reduction, like, shape, dt, n)
        nb = rt.blocks(max(n, 1))
        partials = cuda.device_array((2, nb), dtype=np.float64, stream=self.stream)
        c = arrays[2] if len(arrays) > 2 else a
        prm_t = tuple(dt.type(p) for p in prm)
        w1, w2 = weights
        ga, gb = grads
        _get(kernel_name)[nb, THREADS, self.stream](
            a, arrays[1], c, w1, w2, prm_t, dt.type(gscale), ga, gb, out, partials
        )
        res, count = self._finish(partials, reduction, div, like, out_res, dt)
        if check and n and count.copy_to_host(stream=self.stream)[0] > 0:
            raise ValueError(check() if callable(check) else check)
        return res

    def multilabel_soft_margin(self, x2, t2, w, gscale, g2, reduction, div, out_shape, like):
        rows, n_cls = x2.shape
        dt = x2.dtype
        w2 = w  # None, (1, C) or (rows, C), C-contiguous
        out_res, out = self._out(reduction, like, out_shape, dt, rows)
        nb = min(max(1, rows), rt.max_blocks())
        if rows:
            partials = cuda.device_array((2, nb), dtype=np.float64, stream=self.stream)
            _row_kernel("msm_rows")[nb, THREADS, self.stream](
                x2, t2, w2, (dt.type(0.0),), dt.type(gscale), g2, out, partials
            )
        else:
            partials = cuda.to_device(np.zeros((2, 1)), stream=self.stream)
        # loss = sum / div for 'mean' and 'sum' alike (the host divides 'sum' by C too)
        red = reduction if reduction == "none" else "mean"
        return self._finish(partials, red, div, like, out_res, dt)[0]

    def class_weight(self, weight: Any, n_cls: int, dt: np.dtype):
        if weight is None:
            return None
        w = self.typed_input(weight, "weight", dt)
        if tuple(w.shape) != (n_cls,):
            raise ValueError(
                f"weight must have shape ({n_cls},) (one per class), got {tuple(w.shape)}"
            )
        return rt.contiguous(w, self.stream)

    def class_targets(self, target: Any, sample_shape: tuple, n_cls: int, ignore_index: int, w):
        """Validated class indices (reads 4 float64 per block back: one synchronisation), the
        sum of w[y] over kept targets and the sum of w."""
        y = rt.view(target, "target")
        if y.dtype.kind not in "iu":
            raise TypeError(f"target must hold integer class indices, got dtype {y.dtype}")
        if tuple(y.shape) != tuple(sample_shape):
            raise ValueError(f"target has shape {tuple(y.shape)}, expected {tuple(sample_shape)}")
        y = rt.contiguous(y, self.stream)
        yf = rt.flat(y)
        nb = rt.blocks(max(yf.size, 1))
        partials = cuda.device_array((4, nb), dtype=np.float64, stream=self.stream)
        _row_kernel("class_stats")[nb, THREADS, self.stream](yf, w, ignore_index, n_cls, partials)
        h = partials.copy_to_host(stream=self.stream)
        if h[1].sum() > 0:
            pos = int(-h[2].max())
            val = int(yf[pos : pos + 1].copy_to_host(stream=self.stream)[0])
            raise ValueError(
                f"target {val} is out of bounds for {n_cls} classes (ignore_index={ignore_index})"
            )
        return y, float(h[0].sum()), (float(n_cls) if w is None else float(h[3].sum()))

    def cross_entropy(self, x3, y, q, w, wsum, eps, ignore_index, gscale, g3, reduction, div,
                      shape, like):  # fmt: skip
        n_s, n_cls, n_d = x3.shape
        dt = x3.dtype
        out_res, out = self._out(reduction, like, shape, dt, n_s * n_d)
        if n_d == 1:
            nb = min(max(1, n_s), rt.max_blocks())
            partials = cuda.device_array((2, nb), dtype=np.float64, stream=self.stream)
            _row_kernel("ce_rows")[nb, THREADS, self.stream](
                x3.reshape(n_s, n_cls),
                None if y is None else y.reshape(n_s),
                None if q is None else q.reshape(n_s, n_cls),
                w, wsum, eps, ignore_index, gscale,
                None if g3 is None else g3.reshape(n_s, n_cls),
                out, partials,
            )  # fmt: skip
        else:
            nb = rt.blocks(n_s * n_d)
            partials = cuda.device_array((2, nb), dtype=np.float64, stream=self.stream)
            _row_kernel("ce_columns")[nb, THREADS, self.stream](
                x3, y, q, w, wsum, eps, ignore_index, gscale, g3,
                None if out is None else out.reshape(n_s, n_d), partials,
            )  # fmt: skip
        return self._finish(partials, reduction, div, like, out_res, dt)[0]

    def nll(self, x3, y2, w, ignore_index, gscale, g3, reduction, div, shape, like):
        n_s, n_cls, n_d = x3.shape
        dt = x3.dtype
        if g3 is not None:
            gf = g3.reshape(g3.size)
            _row_kernel("zero")[rt.blocks(max(gf.size, 1)), THREADS, self.stream](gf)
        out_res, out = self._out(reduction, like, shape, dt, n_s * n_d)
        nb = rt.blocks(max(n_s * n_d, 1))
        partials = cuda.device_array((2, nb), dtype=np.float64, stream=self.stream)
        _row_kernel("nll")[nb, THREADS, self.stream](
            x3, y2, w, ignore_index, gscale, g3,
            None if out is None else out.reshape(n_s, n_d), partials,
        )  # fmt: skip
        return self._finish(partials, reduction, div, like, out_res, dt)[0]

    def cosine_embedding(self, a, b, yy, margin, gscale, g1, g2, reduction, div, shape, like):
        rows = a.shape[0]
        dt = a.dtype
        out_res, out = self._out(reduction, like, shape, dt, rows)
        nb = min(max(1, rows), rt.max_blocks())
        partials = cuda.device_array((2, nb), dtype=np.float64, stream=self.stream)
        _row_kernel("cosine_rows")[nb, THREADS, self.stream](
            a, b, yy, margin, dt.type(0), gscale, g1, g2, out, partials
        )
        return self._finish(partials, reduction, div, like, out_res, dt)[0]

    def triplet_margin(self, kind, arrs, margin, p, eps, swap, gscale, gs, reduction, div,
                       shape, like):  # fmt: skip
        if kind == "any":
            raise ValueError(
                f"p={p} (not a positive finite norm) is supported for host arrays only"
            )
        rows = arrs[0].shape[0]
        dt = arrs[0].dtype
        out_res, out = self._out(reduction, like, shape, dt, rows)
        nb = min(max(1, rows), rt.max_blocks())
        partials = cuda.device_array((2, nb), dtype=np.float64, stream=self.stream)
        _row_kernel(f"triplet_{kind}")[nb, THREADS, self.stream](
            *arrs, margin, p, eps, swap, dt.type(0), gscale, *gs, out, partials
        )
        return self._finish(partials, reduction, div, like, out_res, dt)[0]
