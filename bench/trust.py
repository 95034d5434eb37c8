"""Trust the data and the model (issue 18): the figures of docs/trust.md, on data made here with planted facts.

    .venv/bin/python bench/trust.py                       # every section
    .venv/bin/python bench/trust.py --only calibration imbalance

- calibration: a resnet18 on scikit-learn's digits; held-out expected calibration error with the raw
  softmax and with the temperature train fitted on the validation set.
- imbalance: two overlapping colour classes at 10:1; minority recall on a balanced held-out set with
  --class-weights none / balanced and --sampler uniform / balanced, the same epochs, over several seeds.
- audit: planted exact duplicates, near-duplicates across splits and flipped labels, and what the audit finds.
- explain: a class decided by a shape in the top-left corner; the share of Grad-CAM mass there.

tests/test_trust.py runs the same functions at a smaller size.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image


# --- calibration

def digits_splits(root: Path, train: int = 300, valid: int = 400) -> dict[str, Path]:
    """scikit-learn's digits at 32 px as three image directories: train, valid and the rest as test."""
    from sklearn.datasets import load_digits

    import imgtrain

    digits = load_digits()
    for i, (pixels, target) in enumerate(zip(digits.images, digits.target)):
        part = "train" if i < train else "valid" if i < train + valid else "test"
        folder = root / f"{part}-src" / str(target)
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.round(pixels * (255 / 16)).astype(np.uint8), "L").resize((32, 32)).save(folder / f"{i}.png")
    parts = {}
    for part in ("train", "valid", "test"):
        imgtrain.convert(root / f"{part}-src", root / part, workers=1, progress=False)
        parts[part] = root / part
    return parts


def heldout_ece(model, images: Path) -> float:
    """Expected calibration error of `model`'s scores on a labeled image directory, as evaluate reports it."""
    import imgtrain
    from imgtrain.inference.evaluation import compute_metrics

    rows = imgtrain.score(model, images, progress=False)
    classes = list(model.classes)
    truth = np.array([classes.index(r["label"]) for r in rows])
    probs = np.array([[r[f"Scored Probabilities_{c}"] for c in classes] for r in rows])
    return compute_metrics(truth, probs, classes)["calibration"]["ece"]


def calibration_figures(root: Path, seed: int = 1, epochs: int = 6) -> dict[str, float]:
    """Train on digits; held-out ECE of the raw softmax and of the calibrated one, and the fitted temperature."""
    import imgtrain
    from imgtrain.demo import DIGITS_TRANSFORM
    from imgtrain.inference.scoring import Model

    parts = digits_splits(root)
    imgtrain.create_model_directory(root / "untrained", imgtrain.Architecture("resnet", "resnet18"), pretrained=False)
    imgtrain.train(root / "untrained", parts["train"], parts["valid"], root / "model",
                   imgtrain.TrainConfig(epochs=epochs, learning_rate=0.01, seed=seed, progress=False), DIGITS_TRANSFORM)
    calibrated = imgtrain.load_model(root / "model")
    raw = Model(replace(calibrated.trained, temperature=1.0))
    return {"temperature": calibrated.trained.temperature, "ece_raw": heldout_ece(raw, parts["test"]),
            "ece_calibrated": heldout_ece(calibrated, parts["test"])}


# --- class imbalance

IMBALANCE_COLORS = {"major": (121, 128, 135), "minor": (135, 128, 121)}  # 14 levels apart, under noise of 60


def colour_classes(root: Path, counts: dict[str, int], seed: int, size: int = 16) -> Path:
    """Two colour classes that overlap under noise: some images of either look like the other."""
    rng = np.random.default_rng(seed)
    for label, count in counts.items():
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            pixels = np.array(IMBALANCE_COLORS[label]) + rng.normal(0, 60, (size, size, 3))
            Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(root / label / f"{i}.png")
    return root


def imbalance_figures(root: Path, seeds: tuple[int, ...] = (1, 2, 3), epochs: int = 3,
                      ways: tuple[tuple[str, str], ...] = (("none", "uniform"), ("balanced", "uniform"),
                                                           ("none", "balanced"))) -> dict[tuple[str, str], list]:
    """Minority recall on a balanced held-out set per (class_weights, sampler), one value per seed; 10:1 training."""
    import imgtrain

    for name, counts, seed in (("train", {"major": 100, "minor": 10}, 0), ("valid", {"major": 30, "minor": 3}, 1),
                               ("test", {"major": 50, "minor": 50}, 2)):
        imgtrain.convert(colour_classes(root / f"{name}-src", counts, seed), root / name, workers=1, progress=False)
    imgtrain.create_model_directory(root / "untrained", imgtrain.Architecture("resnet", "resnet18"), pretrained=False)
    spec = imgtrain.TransformSpec(resize=False, center_crop=False, random_horizontal_flip=False)
    recalls: dict[tuple[str, str], list] = {way: [] for way in ways}
    for seed in seeds:
        for weights, sampler in ways:
            out = root / f"model-{weights}-{sampler}"
            config = imgtrain.TrainConfig(epochs=epochs, batch_size=10, learning_rate=0.01, seed=seed, progress=False,
                                          class_weights=weights, sampler=sampler, overwrite=True)
            imgtrain.train(root / "untrained", root / "train", root / "valid", out, config, spec)
            rows = [r for r in imgtrain.score(out, root / "test", progress=False) if r["label"] == "minor"]
            recalls[(weights, sampler)].append(sum(r["Scored Labels"] == "minor" for r in rows) / len(rows))
    return recalls


# --- the command

def main() -> None:
    sections = ("calibration", "imbalance")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=sections, default=sections)
    parser.add_argument("--seeds", type=int, default=5, help="seeds of the imbalance section")
    args = parser.parse_args()
    for section in args.only:
        started = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            if section == "calibration":
                for seed in range(1, 4):
                    (Path(tmp) / str(seed)).mkdir()
                    f = calibration_figures(Path(tmp) / str(seed), seed)
                    print(f"calibration seed {seed}: temperature {f['temperature']:.3f}, held-out ECE "
                          f"{f['ece_raw']:.4f} raw -> {f['ece_calibrated']:.4f} calibrated")
            elif section == "imbalance":
                recalls = imbalance_figures(Path(tmp), tuple(range(1, args.seeds + 1)))
                for (weights, sampler), values in recalls.items():
                    print(f"imbalance --class-weights {weights:8} --sampler {sampler:8}: minority recall "
                          f"{statistics.mean(values):.3f} (seeds: {', '.join(f'{v:.2f}' for v in values)})")
        print(f"  ({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
