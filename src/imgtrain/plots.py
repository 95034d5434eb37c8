"""PNG plots: training history, confusion matrices, reliability, precision-recall, image grids."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .files import atomic_file


def pyplot() -> Any:
    """matplotlib's pyplot, drawing off-screen (Agg) and every text literally: class names, file names and parameter
    values are user data, and a class named `$\\foo$` was parsed as mathtext and failed the whole figure."""
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["text.parse_math"] = False
    from matplotlib import pyplot as plt

    return plt


def plot_history(history: list[dict[str, Any]], path: Path) -> None:
    """Loss (train, validation) and accuracy (train top-1, validation top-1/top-5) per epoch, as a PNG."""
    plt = pyplot()

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
    _save(fig, path)


def _save(fig, path: Path) -> None:
    from matplotlib import pyplot as plt

    try:
        with atomic_file(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=100, format="png")
    finally:
        plt.close(fig)


def plot_confusion_matrix(
    matrix, classes: list[str], path: Path, title: str = "Confusion matrix", xlabel: str = "predicted class"
) -> None:
    """Counts of true (rows) against predicted (columns) classes, as a PNG heat map."""
    plt = pyplot()

    k = len(classes)
    side = min(4 + 0.45 * k, 30)
    fig, ax = plt.subplots(figsize=(side + 1, side), constrained_layout=True)
    image = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(image, ax=ax, shrink=0.8)
    labels = [c if len(c) <= 18 else c[:17] + "…" for c in classes]
    ax.set_xticks(range(k), labels, rotation=90 if k > 6 else 0)
    ax.set_yticks(range(k), labels)
    ax.set(xlabel=xlabel, ylabel="true class", title=title)
    if k <= 30:
        threshold = matrix.max() / 2 if matrix.size else 0
        for i in range(k):
            for j in range(k):
                ax.text(
                    j,
                    i,
                    str(int(matrix[i, j])),
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if matrix[i, j] > threshold else "black",
                )
    _save(fig, path)


def plot_reliability(calibration: dict, path: Path) -> None:
    """A reliability diagram: each confidence bin's accuracy against the diagonal of perfect calibration."""
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(5, 5), constrained_layout=True)
    filled = [b for b in calibration["bins"] if b["images"]]
    width = calibration["bins"][0]["upper"] - calibration["bins"][0]["lower"]
    ax.bar(
        [b["lower"] for b in filled],
        [b["accuracy"] for b in filled],
        width=width,
        align="edge",
        edgecolor="black",
        label="accuracy of the images in the bin",
    )
    ax.plot([0, 1], [0, 1], linestyle="--", color="gray", label="perfect calibration")
    ax.set(
        xlim=(0, 1),
        ylim=(0, 1),
        xlabel="confidence (top-1 probability)",
        ylabel="accuracy",
        title=f"Reliability (ECE {calibration['ece']:.3f})",
    )
    ax.legend(loc="upper left")
    _save(fig, path)


def plot_class_confusions(per_class: dict[str, dict[str, int]], path: Path) -> None:
    """Each class's 2x2 confusion (true without / with the class against given without / with), small multiples."""
    plt = pyplot()

    cols = min(4, max(1, len(per_class)))
    rows = max(1, -(-len(per_class) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.6 * rows), squeeze=False, constrained_layout=True)
    fig.suptitle("Per class: true (rows) against given (columns), without / with the class")
    for ax in axes.flat:
        ax.axis("off")
    for ax, (name, c) in zip(axes.flat, per_class.items(), strict=False):
        matrix = np.array([[c["tn"], c["fp"]], [c["fn"], c["tp"]]])
        ax.axis("on")
        ax.imshow(matrix, cmap="Blues")
        ax.set_xticks([0, 1], ["without", "with"])
        ax.set_yticks([0, 1], ["without", "with"])
        ax.set_title(name if len(name) <= 24 else name[:23] + "…", fontsize=9)
        for i in range(2):
            for j in range(2):
                colour = "white" if matrix[i, j] > matrix.max() / 2 else "black"
                ax.text(j, i, str(int(matrix[i, j])), ha="center", va="center", fontsize=9, color=colour)
    _save(fig, path)


def plot_precision_recall(curves: dict[str, tuple[list[float], list[float]]], path: Path) -> None:
    """One precision-recall curve per class (name -> (recall, precision)), as a PNG."""
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(6, 5), constrained_layout=True)
    for name, (recall, precision) in curves.items():
        ax.step([0.0, *recall], [precision[0] if precision else 1.0, *precision], where="pre", label=name)
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="recall", ylabel="precision", title="Precision-recall per class")
    if curves:
        ax.legend(loc="lower left", fontsize=8)
    _save(fig, path)


def plot_image_grid(items: list[tuple[str | None, str]], path: Path, title: str) -> None:
    """Images with captions in a grid, as a PNG; unreadable or missing images show as blanks."""
    plt = pyplot()

    from .data.imaging import BadImage, load_rgb

    cols = min(4, max(1, len(items)))
    rows = max(1, -(-len(items) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 3.2 * rows), squeeze=False, constrained_layout=True)
    fig.suptitle(title if items else f"{title}: none")
    for ax in axes.flat:
        ax.axis("off")
    for ax, (image_path, caption) in zip(axes.flat, items, strict=False):
        try:
            ax.imshow(load_rgb(Path(image_path)) if image_path else None)
        except (BadImage, TypeError):
            ax.text(0.5, 0.5, "image not found", ha="center", va="center")
        ax.set_title(caption, fontsize=9)
    _save(fig, path)
