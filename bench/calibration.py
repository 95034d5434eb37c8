"""Which calibration rule to ship (issue 25): temperatures fitted on small and large validation sets, judged on
images no fit saw. The figures of docs/trust.md's "Calibration" section.

    .venv/bin/python bench/calibration.py                  # digits and photos, every validation size
    .venv/bin/python bench/calibration.py --only photos --draws 10

One model per task is trained (calibration off); its logits on a pool of images it never trained on are kept.
Validation sets of 24 to 400 images are drawn from the pool many times; each rule picks a temperature from the
drawn set alone, and the rest of the pool judges it: log loss, ECE and the mean top probability against the
accuracy. Rules: `raw` (T = 1), `fit-all` (the old rule: T fitted on the whole set within 0.05-20, always
kept) and `shipped` (imgtrain.calibration.temperature_report: minimum size, no fit on a perfect set, fit within
FIT_RANGE, kept only when 5-fold cross-validation lowers the log loss).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import make_photos  # noqa: E402

SIZES = (24, 50, 100, 200, 400)


def logits_of(model_dir: Path, images: Path) -> tuple[np.ndarray, np.ndarray]:
    """The raw logits (fp32) and true class indices of a labeled image directory under a trained model."""
    import imgtrain
    from imgtrain.data.imaging import read_image_file

    model = imgtrain.load_model(model_dir, precision="fp32")
    directory = imgtrain.ImageDirectory.open(images)
    rows, labels = [], []
    with torch.inference_mode():
        for record in directory:
            tensor = model.model_input.from_bytes(read_image_file(directory.root / record.path))
            rows.append(model.network(tensor[None]).float()[0].numpy())
            labels.append(model.classes.index(record.label))
    return np.array(rows, dtype=np.float64), np.array(labels)


def digits_task(root: Path, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A resnet18 trained 6 epochs on 300 digits at 32 px (learning rate 0.01): logits on 1,397 it never saw."""
    import imgtrain
    from imgtrain.demo import DIGITS_TRANSFORM

    from trust import digits_splits

    parts = digits_splits(root, train=300, valid=100)
    imgtrain.create_model_directory(root / "untrained", imgtrain.Architecture("resnet", "resnet18"), pretrained=False)
    imgtrain.train(root / "untrained", parts["train"], parts["valid"], root / "model",
                   imgtrain.TrainConfig(epochs=6, learning_rate=0.01, seed=seed, progress=False, calibrate=False),
                   DIGITS_TRANSFORM)
    return logits_of(root / "model", parts["test"])


def photos_task(root: Path, seed: int, epochs: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """The issue's phone export: 4 classes x 54 camera-like photos (640x480 JPEG), the module's defaults for
    `epochs`; logits on 4 x 150 more photos of the same kind."""
    import imgtrain

    make_photos(root / "train-src", 216, width=640, height=480, seed=seed)
    make_photos(root / "pool-src", 600, width=640, height=480, seed=seed + 1000)
    for part in ("train", "pool"):
        imgtrain.convert(root / f"{part}-src", root / part, workers=1, progress=False)
    imgtrain.create_model_directory(root / "untrained", imgtrain.Architecture("resnet", "resnet18"), pretrained=False)
    imgtrain.train(root / "untrained", root / "train", root / "train", root / "model",
                   imgtrain.TrainConfig(epochs=epochs, seed=seed, progress=False, calibrate=False))
    return logits_of(root / "model", root / "pool")


def judged(logits: np.ndarray, labels: np.ndarray, temperature: float) -> dict[str, float]:
    """Log loss, ECE, mean top probability and accuracy of softmax(logits / temperature)."""
    from imgtrain.calibration import calibration, negative_log_likelihood, softmax

    probs = softmax(logits, temperature)
    correct = (probs.argmax(1) == labels).astype(np.float64)
    return {"nll": negative_log_likelihood(logits, labels, temperature),
            "ece": calibration(probs.max(1), correct)["ece"], "confidence": float(probs.max(1).mean()),
            "accuracy": float(correct.mean())}


def rules(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """The temperature each rule picks from a validation set."""
    from imgtrain.calibration import TEMPERATURE_RANGE, fit_temperature, temperature_report

    return {"raw": 1.0, "fit-all": fit_temperature(logits, labels, TEMPERATURE_RANGE),
            "shipped": temperature_report(logits, labels)["temperature"]}


def compare(logits: np.ndarray, labels: np.ndarray, sizes=SIZES, draws: int = 20, seed: int = 0) -> list[dict]:
    """Per validation size and rule: the mean over draws of the judged figures on the rest of the pool."""
    rng = np.random.default_rng(seed)
    out = []
    for size in sizes:
        if size >= len(labels):
            continue
        sums: dict[str, dict[str, float]] = {}
        for _ in range(draws):
            chosen = np.zeros(len(labels), dtype=bool)
            chosen[rng.choice(len(labels), size, replace=False)] = True
            for rule, t in rules(logits[chosen], labels[chosen]).items():
                figures = {**judged(logits[~chosen], labels[~chosen], t), "T": t, "kept": float(t != 1.0)}
                for key, value in figures.items():
                    sums.setdefault(rule, {}).setdefault(key, 0.0)
                    sums[rule][key] += value / draws
        out += [{"size": size, "rule": rule, **figures} for rule, figures in sums.items()]
    return out


TASKS = {"digits": digits_task, "photos": photos_task,
         "photos-6-epochs": lambda root, seed: photos_task(root, seed, epochs=6)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=TASKS, default=tuple(TASKS))
    parser.add_argument("--logits", type=Path, help="keep each task's logits here and reuse them on the next run")
    parser.add_argument("--draws", type=int, default=20, help="validation sets drawn per size")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(2)
    for task in args.only:
        kept = args.logits / f"{task}-{args.seed}.npz" if args.logits else None
        if kept is not None and kept.is_file():
            logits, labels = np.load(kept)["logits"], np.load(kept)["labels"]
        else:
            with tempfile.TemporaryDirectory() as tmp:
                logits, labels = TASKS[task](Path(tmp), args.seed)
            if kept is not None:
                kept.parent.mkdir(parents=True, exist_ok=True)
                np.savez(kept, logits=logits, labels=labels)
        print(f"\n{task}: pool of {len(labels)} images, accuracy {judged(logits, labels, 1.0)['accuracy']:.4f}")
        print("| validation images | rule | mean T | kept | held-out log loss | held-out ECE | mean top p |")
        print("|---|---|---|---|---|---|---|")
        for row in compare(logits, labels, draws=args.draws):
            print(f"| {row['size']} | {row['rule']} | {row['T']:.3f} | {row['kept']:.0%} | {row['nll']:.4f} | "
                  f"{row['ece']:.4f} | {row['confidence']:.4f} |", flush=True)


if __name__ == "__main__":
    main()
