"""Does fine-tuning pretrained weights beat training from scratch? A real transfer run, offline.

ImageNet weights cannot be fetched here, so a resnet18 is pretrained on one task (the first 1,000
of scikit-learn's digits, upright) and its weights file is used as `--weights` for a different task
(the other 797 digits, rotated 90 degrees) with few images per class. Same epochs, same defaults (the
designer's SGD, lr 0.001), four ways: from scratch; fine-tuned with imgtrain's default (the new head at 10x
the learning rate); fine-tuned at the designer's single rate (--head-lr-scale 1); fine-tuned with the head
trained alone first (--freeze-epochs 1).

    .venv/bin/python bench/transfer.py                   # prints the table, writes docs/transfer.png
    .venv/bin/python bench/transfer.py --shots 5 10 20   # images per class of the new task

Real features (`--real`): timm's efficientnet_lite0 with real ImageNet-1k weights (bench/imagenet_backbone.py)
fine-tuned on bench/real_photos.py's eight classes of crops of real photographs, against the same network from
scratch, each with the designer's recipe and `--recipe modern`, at 5/10/20 images per class and equal epochs; then
each piece of the modern recipe added alone to the designer's, and the fine-tuning options, at 10 per class. The
accuracy is the saved model's (the best epoch by validation loss) on 30 validation crops per class, averaged over
--seeds.

    .venv/bin/python bench/transfer.py --real --out results.json   # ~40 minutes on 2 cores
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


#: The modern recipe's pieces, each added alone to the designer's recipe.
PIECES = {"optimizer": "adamw", "augment": "trivialaugment", "mixup": 0.2, "cutmix": 1.0, "label_smoothing": 0.1,
          "ema": 0.99}
#: The fine-tuning options re-decided on real features (the designer's recipe, pretrained only).
FINE_TUNING = {"one rate (--head-lr-scale 1)": {"head_lr_scale": 1},
               "head first (--freeze-epochs 1)": {"freeze_epochs": 1}}
REAL_SIZE = 128  # pixels: the crops are resized to this and not cropped further (2 CPU cores)


def real_run(root: Path, pretrained: bool, shots: int, options: dict, epochs: int, seed: int,
             tta: bool = False) -> float:
    """The saved model's validation accuracy: efficientnet_lite0 (ImageNet or random) trained on `shots` crops per
    class of real photographs with `options` (TrainConfig's); with `tta`, the accuracy of its scores with and
    without the mirror image averaged in, less that without (what --tta adds)."""
    import imgtrain

    real_photos = _bench("real_photos")
    data = root / f"data-{seed}"
    if not (data / f"train-{shots}-dir").exists():
        train, valid = real_photos.make_texture_photos(data / "src", shots, seed=seed, size=REAL_SIZE)
        imgtrain.convert(train, data / f"train-{shots}-dir", progress=False)
        if not (data / "valid-dir").exists():
            imgtrain.convert(valid, data / "valid-dir", progress=False)
    untrained = root / ("lite0-imagenet" if pretrained else "lite0-scratch")
    if not untrained.exists():
        weights = _bench("imagenet_backbone").write_backbone(root / "lite0.safetensors") if pretrained else None
        imgtrain.create_model_directory(untrained, imgtrain.Architecture.from_catalog("timm/efficientnet_lite0"),
                                        pretrained=pretrained, weights=weights)
    out = root / "model"
    config = imgtrain.TrainConfig(epochs=epochs, patience=epochs, seed=seed, progress=False, overwrite=True,
                                  workers=0, **options)
    spec = imgtrain.TransformSpec(size=REAL_SIZE, crop_size=REAL_SIZE)
    result = imgtrain.train(untrained, data / f"train-{shots}-dir", data / "valid-dir", out, config, spec)
    if tta:
        plain, mirrored = (
            imgtrain.score(imgtrain.load_model(out, precision="fp32", tta=t), data / "valid-dir", progress=False)
            for t in (False, True)
        )
        return sum(r["Scored Labels"] == r["label"] for r in mirrored) / len(mirrored) - sum(
            r["Scored Labels"] == r["label"] for r in plain) / len(plain)
    return next(row["val_top1"] for row in result.history if row["epoch"] == result.best_epoch)


def real_features(root: Path, shots_list: list[int], epochs: int, seeds: list[int], part: str = "all") -> dict:
    """The tables of the real-features section (`part`: all, or pieces (each piece alone and the fine-tuning
    options: run first, they decide what --recipe modern holds) or recipes): {table: {row: {column: accuracy}}}."""
    import statistics
    import time

    def mean_of(pretrained: bool, shots: int, options: dict, tta: bool = False) -> float:
        started = time.perf_counter()
        value = statistics.mean(real_run(root, pretrained, shots, options, epochs, seed, tta) for seed in seeds)
        print(f"  {'pretrained' if pretrained else 'scratch':>10} {shots:>2}/class {options}: {value:.3f} "
              f"({time.perf_counter() - started:.0f} s)", flush=True)
        return value

    recipes = {"designer": {}, "modern": {"recipe": "modern"}, "designer + adamw": {"optimizer": "adamw"}}
    tables: dict[str, dict[str, dict[str, float]]] = {}
    middle = shots_list[len(shots_list) // 2]
    if part in ("all", "pieces"):
        alone = {"designer": {}, **{f"designer + {piece} {value}": {piece: value} for piece, value in PIECES.items()}}
        tables["pieces"] = {
            row: {start: mean_of(start == "pretrained", middle, options) for start in ("pretrained", "scratch")}
            for row, options in alone.items()
        }
        tables["fine_tuning"] = {way: {"pretrained": mean_of(True, middle, options)}
                                 for way, options in FINE_TUNING.items()}
    if part in ("all", "tta"):
        tables["tta"] = {
            f"{start}, {recipe}": {"--tta gain": mean_of(start == "pretrained", middle, options, tta=True)}
            for start in ("pretrained", "scratch")
            for recipe, options in recipes.items()
        }
    if part in ("all", "recipes"):
        tables["recipes"] = {
            f"{start}, {recipe}": {str(shots): mean_of(start == "pretrained", shots, options) for shots in shots_list}
            for start in ("pretrained", "scratch")
            for recipe, options in recipes.items()
        }
    return tables


def _bench(name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"bench_{name}", Path(__file__).with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shots", type=int, nargs="+", default=[5, 10, 20])
    parser.add_argument("--epochs", type=int, default=None, help="default: 5 (digits), 8 (--real)")
    parser.add_argument("--plot", default=str(Path(__file__).resolve().parents[1] / "docs" / "transfer.png"))
    parser.add_argument("--real", action="store_true", help="the real-features section instead of the digits")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="--real: seeds averaged over")
    parser.add_argument("--out", type=Path, help="--real: also write the tables as JSON here")
    parser.add_argument("--part", choices=["all", "pieces", "recipes", "tta"], default="all",
                        help="--real: which tables")
    args = parser.parse_args()
    if args.real:
        import json

        with tempfile.TemporaryDirectory() as tmp:
            tables = real_features(Path(tmp), args.shots, args.epochs or 8, args.seeds, args.part)
        print(json.dumps(tables, indent=1))
        if args.out:
            args.out.write_text(json.dumps(tables, indent=1))
        return
    args.epochs = args.epochs or 5
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
