"""Train an MLP on scikit-learn's bundled digits with fastact alone (no torch, no autograd).

    python examples/train_digits.py --epochs 30 --seed 0 --out-dir digits_out

The network is ``Linear(64, 128) -> PReLU(128) -> Linear(128, 64) -> SiLU -> Linear(64, 10)``
trained with ``CrossEntropyLoss(label_smoothing=0.05)``, ``fastact.optim.Adam`` and a
``LambdaLR`` (linear warm-up, then cosine decay). Every piece is a fastact kernel: the
activations' forward/backward, the fused loss+gradient, the fused Adam update.

PReLU's slopes are learned: ``PReLU.backward`` accumulates ``weight.grad`` (one slope per
channel), and the optimizer updates ``weight`` in place like every other parameter. The PNG
written to ``--out-dir`` shows the learning curves and the learned slopes.

Needs ``scikit-learn`` (the data ships with it: no download) and ``matplotlib``; shows a
progress bar with ``tqdm`` when it is installed and stdout is a terminal.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

import fastact.nn as nn
from fastact import optim
from fastact.optim.lr_scheduler import LambdaLR


def load_data(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Digits (1797 images of 8x8 pixels, values 0..16), standardized, split 75/25."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.25, random_state=seed, stratify=y)
    mean, std = x_tr.mean(axis=0), x_tr.std(axis=0) + 1.0
    return (
        ((x_tr - mean) / std).astype(np.float32),
        ((x_te - mean) / std).astype(np.float32),
        y_tr.astype(np.int64),
        y_te.astype(np.int64),
    )


def build_model(seed: int, hidden: int = 128) -> nn.Sequential:
    rng = np.random.default_rng(seed)
    return nn.Sequential(
        nn.Linear(64, hidden, generator=rng),
        nn.PReLU(hidden),  # one learnable slope per channel, init 0.25
        nn.Linear(hidden, 64, generator=rng),
        nn.SiLU(),
        nn.Linear(64, 10, generator=rng),
    )


def evaluate(
    model: nn.Module, x: np.ndarray, y: np.ndarray, batch_size: int = 128
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy, forward passes only, in batches."""
    loss_fn = nn.CrossEntropyLoss(reduction="sum")
    total = correct = 0.0
    for start in range(0, len(x), batch_size):
        logits = model(x[start : start + batch_size])
        total += float(loss_fn(logits, y[start : start + batch_size]))
        correct += float(np.sum(logits.argmax(axis=1) == y[start : start + batch_size]))
    return total / len(x), correct / len(x)


def _progress(iterable: Any, enabled: bool, total: int) -> Any:
    # a bar only on a terminal: written to a file or a pipe, its redraws would land between
    # the log lines
    if enabled and sys.stdout.isatty():
        try:
            from tqdm import tqdm

            return tqdm(iterable, total=total, desc="epochs", unit="epoch", file=sys.stdout)
        except ImportError:
            pass
    return iterable


@contextlib.contextmanager
def _one_blas_thread() -> Iterator[None]:
    """Small matrix products gain nothing from BLAS threads, and on a busy machine OpenBLAS's
    thread hand-off can cost milliseconds per product: use one thread (threadpoolctl comes
    with scikit-learn)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def _say(bar: Any, text: str) -> None:
    (bar.write if hasattr(bar, "write") else print)(text)


def train(
    epochs: int = 30,
    seed: int = 0,
    batch_size: int = 64,
    lr: float = 3e-3,
    progress: bool = True,
    make_optimizer: Any = None,
) -> dict[str, Any]:
    """Train and return the history, the model and the initial PReLU slopes.

    ``make_optimizer(params, lr)`` builds the optimizer (default ``fastact.optim.Adam``; the
    low-precision comparison in scripts/lowp_quality.py passes AdamW and AdamW8bit)."""
    x_tr, x_te, y_tr, y_te = load_data(seed)
    model = build_model(seed)
    prelu = model[1]
    slopes0 = np.array(prelu.weight)
    params = model.parameters()
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.05)
    opt = optim.Adam(params, lr=lr) if make_optimizer is None else make_optimizer(params, lr)
    warmup = 2

    def schedule(epoch: int) -> float:  # LambdaLR: lr = base_lr * schedule(epoch)
        if epoch < warmup:
            return (epoch + 1) / warmup
        return 0.5 * (1.0 + math.cos(math.pi * (epoch - warmup) / max(1, epochs - warmup)))

    sched = LambdaLR(opt, schedule)
    rng = np.random.default_rng(seed)
    hist: dict[str, list] = {k: [] for k in ("lr", "train_loss", "train_acc", "test_loss")}
    hist["test_acc"] = []
    n = len(x_tr)
    bar = _progress(range(epochs), progress, epochs)
    t0 = time.perf_counter()
    with _one_blas_thread():
        for epoch in bar:
            model.train()
            order = rng.permutation(n)
            tot_loss = tot_correct = 0.0
            for start in range(0, n, batch_size):
                idx = order[start : start + batch_size]
                xb, yb = x_tr[idx], y_tr[idx]
                logits = model(xb)
                loss = loss_fn(logits, yb)  # the loss and its gradient, in one pass
                model.zero_grad()
                model.backward(loss_fn.backward())  # fills every p.grad, PReLU's slopes included
                opt.step([p.grad for p in params])  # fused Adam update, in place
                tot_loss += float(loss) * len(idx)
                tot_correct += float(np.sum(logits.argmax(axis=1) == yb))
            hist["lr"].append(opt.param_groups[0]["lr"])
            sched.step()
            model.eval()
            te_loss, te_acc = evaluate(model, x_te, y_te)
            hist["train_loss"].append(tot_loss / n)
            hist["train_acc"].append(tot_correct / n)
            hist["test_loss"].append(te_loss)
            hist["test_acc"].append(te_acc)
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{tot_loss / n:.3f}", test_acc=f"{te_acc:.3f}")
            _say(
                bar,
                f"epoch {epoch + 1:3d}/{epochs}  lr {hist['lr'][-1]:.2e}  "
                f"train loss {tot_loss / n:.4f} acc {tot_correct / n:.4f}  "
                f"test loss {te_loss:.4f} acc {te_acc:.4f}",
            )
    if hasattr(bar, "close"):
        bar.close()
    return {
        "history": hist,
        "model": model,
        "slopes_init": slopes0,
        "slopes": np.array(prelu.weight),
        "test_acc": hist["test_acc"][-1],
        "seconds": time.perf_counter() - t0,
    }


def plot(result: dict[str, Any], path: Path) -> Path:
    """Learning curves (loss, accuracy) and the learned PReLU slopes, as one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    h = result["history"]
    ep = np.arange(1, len(h["train_loss"]) + 1)
    fig, ax = plt.subplots(1, 3, figsize=(15, 4.2))
    ax[0].plot(ep, h["train_loss"], label="train (label smoothing 0.05)")
    ax[0].plot(ep, h["test_loss"], label="test")
    ax[0].set(xlabel="epoch", ylabel="cross-entropy", title="loss", yscale="log")
    ax[0].legend()
    ax[1].plot(ep, h["train_acc"], label="train")
    ax[1].plot(ep, h["test_acc"], label="test")
    ax[1].axhline(0.95, color="grey", ls=":", lw=1, label="95%")
    ax[1].set(xlabel="epoch", ylabel="accuracy", title=f"accuracy (test {h['test_acc'][-1]:.3f})")
    ax[1].set_ylim(max(0.0, min(h["test_acc"] + h["train_acc"]) - 0.02), 1.002)
    ax[1].legend(loc="lower right")
    s, s0 = result["slopes"], result["slopes_init"]
    order = np.argsort(s)
    ax[2].bar(np.arange(s.size), s[order], width=1.0, color="tab:purple", label="learned")
    ax[2].axhline(float(s0[0]), color="k", ls="--", lw=1, label=f"init {s0[0]:.2f}")
    ax[2].set(
        xlabel="channel (sorted by slope)",
        ylabel="slope a",
        title=f"learned PReLU slopes ({s.size} channels)",
    )
    ax[2].legend()
    fig.suptitle("fastact MLP on sklearn digits: Adam + LambdaLR, PReLU + SiLU")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--out-dir", type=Path, default=Path("digits_out"))
    ap.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")
    args = ap.parse_args(argv)
    if args.epochs < 1:
        ap.error("--epochs must be >= 1")
    result = train(args.epochs, args.seed, args.batch_size, args.lr, not args.no_progress)
    png = plot(result, args.out_dir / "train_digits.png")
    s = result["slopes"]
    print(
        f"test accuracy {result['test_acc']:.4f} after {args.epochs} epochs "
        f"({result['seconds']:.1f} s); PReLU slopes: min {s.min():.3f} "
        f"median {np.median(s):.3f} max {s.max():.3f} (init {result['slopes_init'][0]:.2f})"
    )
    print(f"wrote {png}")
    result["png"] = png
    return result


if __name__ == "__main__":
    main()
