"""PNG plots: training loss and accuracy per epoch."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any


def plot_history(history: list[dict[str, Any]], path: Path) -> None:
    """Loss (train, validation) and accuracy (train top-1, validation top-1/top-5) per epoch, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    epochs = [row["epoch"] for row in history]
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    loss_ax.plot(epochs, [r["train_loss"] for r in history], "o-", label="training")
    loss_ax.plot(epochs, [r["val_loss"] for r in history], "o-", label="validation")
    loss_ax.set(title="Loss", xlabel="epoch", ylabel="cross-entropy")
    acc_ax.plot(epochs, [r["train_top1"] for r in history], "o-", label="training top-1")
    acc_ax.plot(epochs, [r["val_top1"] for r in history], "o-", label="validation top-1")
    if history and history[0].get("val_top5") is not None:
        acc_ax.plot(epochs, [r["val_top5"] for r in history], "o--", label="validation top-5")
    acc_ax.set(title="Accuracy", xlabel="epoch", ylabel="accuracy", ylim=(0, 1.02))
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
        ax.legend()
        ax.xaxis.get_major_locator().set_params(integer=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".png", dir=path.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=100)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.unlink(tmp)
