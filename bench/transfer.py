"""Does fine-tuning pretrained weights beat training from scratch? A real transfer run, offline.

ImageNet weights cannot be fetched here, so a resnet18 is pretrained on one task (the first 1,000
of scikit-learn's digits, upright) and its weights file is used as `--weights` for a different task
(the other 797 digits, rotated 90 degrees) with few images per class. Same epochs, same defaults (the
designer's SGD, lr 0.001), four ways: from scratch; fine-tuned with imgtrain's default (the new head at 10x
the learning rate); fine-tuned at the designer's single rate (--head-lr-scale 1); fine-tuned with the head
trained alone first (--freeze-epochs 1).

    .venv/bin/python bench/transfer.py                   # prints the table, writes docs/transfer.png
    .venv/bin/python bench/transfer.py --shots 5 10 20   # images per class of the new task
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

WAYS = {"scratch": {}, "fine-tuned (default)": {}, "fine-tuned, one rate (--head-lr-scale 1)": {"head_lr_scale": 1},
        "fine-tuned, head first (--freeze-epochs 1)": {"freeze_epochs": 1}}


def prepare(root: Path, pretrain_epochs: int = 3) -> tuple[Path, Path]:
    """Pretrain a resnet18 on upright digits (its weights file returned); other digits, rotated, are the new task."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    import imgtrain
    from imgtrain.demo import DIGITS_TRANSFORM

    digits = load_digits()
    for i, (pixels, target) in enumerate(zip(digits.images, digits.target)):
        image = Image.fromarray(np.round(pixels * (255 / 16)).astype(np.uint8), "L").resize((32, 32))
        part = "old" if i < 1000 else "new"
        (root / part / str(target)).mkdir(parents=True, exist_ok=True)
        (image if part == "old" else image.rotate(90)).save(root / part / str(target) / f"{i}.png")
    imgtrain.convert(root / "old", root / "old-images", progress=False)
    imgtrain.split(root / "old-images", root / "old-train", root / "old-valid", fraction=0.9)
    imgtrain.create_model_directory(root / "scratch", imgtrain.Architecture("resnet", "resnet18"), pretrained=False)
    imgtrain.train(root / "scratch", root / "old-train", root / "old-valid", root / "pretrained",
                   imgtrain.TrainConfig(epochs=pretrain_epochs, learning_rate=0.01, progress=False), DIGITS_TRANSFORM)
    imgtrain.convert(root / "new", root / "new-images", progress=False)
    return root / "pretrained" / "model.safetensors", root / "new-images"


def compare(root: Path, weights: Path, images: Path, shots: int, epochs: int = 5,
            ways: dict[str, dict] = WAYS) -> dict[str, float]:
    """Best validation accuracy of each way on the new task, `shots` training images per class."""
    import imgtrain
    from imgtrain.demo import DIGITS_TRANSFORM

    directory = imgtrain.ImageDirectory.open(images)
    fraction = shots * len(directory.classes) / len(directory)
    train, valid = root / f"new-train-{shots}", root / f"new-valid-{shots}"
    if not train.exists():
        imgtrain.split(images, train, valid, fraction=fraction)
    results = {}
    for way, options in ways.items():
        untrained = root / f"untrained-{way}"
        if not untrained.exists():
            imgtrain.create_model_directory(untrained, imgtrain.Architecture("resnet", "resnet18"),
                                            pretrained=not way.startswith("scratch"),
                                            weights=None if way.startswith("scratch") else weights)
        config = imgtrain.TrainConfig(epochs=epochs, batch_size=min(16, shots * 5), patience=epochs, progress=False,
                                      **options)
        history = imgtrain.train(untrained, train, valid, root / f"model-{way}-{shots}", config, DIGITS_TRANSFORM)
        results[way] = max(row["val_top1"] for row in history)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shots", type=int, nargs="+", default=[5, 10, 20])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--plot", default=str(Path(__file__).resolve().parents[1] / "docs" / "transfer.png"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        weights, images = prepare(root)
        table = {shots: compare(root, weights, images, shots, args.epochs) for shots in args.shots}
    print(f"best validation accuracy after {args.epochs} epochs (designer defaults: SGD, lr 0.001), rotated digits:")
    for way in WAYS:
        print(f"{way:>44}: " + "  ".join(f"{shots} images/class {row[way]:.3f}" for shots, row in table.items()))
    _plot(table, args.epochs, Path(args.plot))


def _plot(table: dict[int, dict[str, float]], epochs: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), constrained_layout=True)
    for way in WAYS:
        ax.plot(list(table), [table[s][way] for s in table], marker="o", label=way)
    ax.set(xlabel="training images per class (rotated digits)", ylabel="best validation accuracy",
           title=f"resnet18, {epochs} epochs: pretrained on upright digits vs scratch", ylim=(0, 1))
    ax.legend()
    fig.savefig(path, dpi=100)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
