"""Multi-label training (issue 28) against one model per class, on composites made here, at equal epochs.

Each image is 48x48 px, a 2x2 grid of cells on a noisy background. The classes are scikit-learn's digits 0-4
(d0 ... d4); an image shows 0 to 3 different ones, each in its own random cell, and its label is the list of those
present. Cells left over may hold a distractor digit (5-9), which is no class. Train, validation and test images are
drawn from disjoint sets of source digits, so no digit image of the test part was seen in training.

Two ways, the same resnet18 from scratch, the same images, epochs, batch and seed:

- multi-label: one image directory whose labels are lists; imgtrain trains one sigmoid per class with binary
  cross-entropy and keeps each class's threshold, chosen on the validation set, in the model directory.
- one model per class: for each class a single-label image directory of the same images labelled yes / no, five
  trainings; P(yes) is the class's probability, given at 0.5 or at the F1-best threshold on the validation set.

Every model is trained at each of a few learning rates and keeps the one its validation set prefers (mAP for the
multi-label model, the class's average precision for each one-class model), so neither way is held to a rate that
suits the other. Reported on the test part: micro and macro F1, mAP, exact match, Hamming loss (evaluate's own
metrics), and the training time of the five one-class models as a ratio to the multi-label model's: the sum of their
fastest epochs over its fastest epoch (this machine is shared; the fastest epoch is the least disturbed one).

    .venv/bin/python bench/multilabel.py            # the figures of docs/performance.md (about 10 minutes)
    .venv/bin/python bench/multilabel.py --quick    # small sizes, a minute or two
    .venv/bin/python bench/multilabel.py --seeds 1 2 3

tests/test_multilabel_bench.py runs the same functions at a tiny size.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

#: The classes: digits 0-4 (name -> digit); digits 5-9 appear as distractors only.
CLASSES = {f"d{k}": k for k in range(5)}
DISTRACTORS = (5, 6, 7, 8, 9)
#: How many classes an image shows: 0, 1, 2 or 3, with these chances (mean 1.75 of 5: 35% positives per class).
CLASS_COUNTS = (0.1, 0.3, 0.35, 0.25)
#: The chance that a cell without a class holds a distractor digit.
DISTRACTOR_RATE = 0.4
#: Where each part's source digits come from: these shares of every digit's images, disjoint.
SOURCE_SHARES = {"train": 0.5, "valid": 0.2, "test": 0.3}
FULL = {"train": 500, "valid": 250, "test": 400, "epochs": 8}
QUICK = {"train": 200, "valid": 100, "test": 100, "epochs": 3}
#: The learning rates every model is trained at (it keeps the best on validation). Measured on these composites: the
#: multi-label model's best is near 0.1 (0.3 diverges), a one-class model's near 0.01 (its loss is one binary
#: cross-entropy; the multi-label loss averages five, so each class's gradient is a fifth as large).
RATES = (0.01, 0.03, 0.1)
SPEC_ARGS = {"resize": False, "center_crop": False, "random_horizontal_flip": False}  # digits do not flip
METHODS = (
    "multi-label, validation thresholds",
    "multi-label, threshold 0.5",
    "one model per class, threshold 0.5",
    "one model per class, validation thresholds",
)


def source_digits(seed: int) -> dict[str, dict[int, np.ndarray]]:
    """The 8x8 digit images (0-1 floats) each part may use, by digit; no image is in two parts."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(seed)
    pools: dict[str, dict[int, np.ndarray]] = {part: {} for part in SOURCE_SHARES}
    for digit in range(10):
        images = digits.images[rng.permutation(np.flatnonzero(digits.target == digit))] / 16.0
        start = 0
        for part, share in SOURCE_SHARES.items():
            end = len(images) if part == "test" else start + round(share * len(images))
            pools[part][digit] = images[start:end]
            start = end
    return pools


def composite(
    rng: np.random.Generator, pool: dict[int, np.ndarray], cell: int, distractors: float = DISTRACTOR_RATE
) -> tuple[Image.Image, list[str]]:
    """One 2x2 composite of `cell`-pixel cells and the sorted names of the classes it shows; each cell left over
    holds a distractor digit with probability `distractors`."""
    size, digit_side = 2 * cell, cell * 3 // 4
    pixels = rng.normal(rng.uniform(10, 50), 18, (size, size, 3))
    count = rng.choice(len(CLASS_COUNTS), p=CLASS_COUNTS)
    shown = sorted(rng.choice(list(CLASSES), size=count, replace=False).tolist())
    cells = rng.permutation(4)
    contents = [CLASSES[name] for name in shown]
    contents += [int(rng.choice(DISTRACTORS)) if rng.random() < distractors else None for _ in cells[count:]]
    for where, digit in zip(cells, contents, strict=True):
        if digit is None:
            continue
        source = pool[digit][rng.integers(len(pool[digit]))]
        glyph = Image.fromarray(np.round(source * 255).astype(np.uint8), "L").resize((digit_side, digit_side))
        ink = np.asarray(glyph, dtype=float)[..., None] / 255 * rng.uniform(150, 230) * rng.uniform(0.7, 1.0, 3)
        top, left, room = (where // 2) * cell, (where % 2) * cell, cell - digit_side + 1
        y, x = top + rng.integers(room), left + rng.integers(room)  # a random place within the cell
        area = pixels[y : y + digit_side, x : x + digit_side]
        area[:] = np.maximum(area, ink)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)), shown


def write_part(
    folder: Path,
    count: int,
    pool: dict[int, np.ndarray],
    seed: int,
    cell: int = 24,
    distractors: float = DISTRACTOR_RATE,
) -> list[dict]:
    """`count` composites saved as folder/N.png, and their JSON-lines manifest folder/list.jsonl; returns its rows."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(count):
        image, shown = composite(rng, pool, cell, distractors)
        image.save(folder / f"{i}.png")
        rows.append({"path": f"{i}.png", "label": shown})
    write_manifest(folder / "list.jsonl", rows)
    return rows


def write_manifest(path: Path, rows: list[dict]) -> Path:
    """A JSON-lines manifest, one row a line."""
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def make_data(
    root: Path, sizes: dict[str, int], seed: int, cell: int = 24, distractors: float = DISTRACTOR_RATE
) -> dict[str, list[dict]]:
    """Train, valid and test composites under root/PART-src, converted to multi-label image directories root/PART;
    and, for each class and part, a yes / no manifest of the same images converted to root/PART-CLASS."""
    import imgtrain

    pools = source_digits(seed)
    parts = {}
    for k, part in enumerate(SOURCE_SHARES):
        rows = write_part(root / f"{part}-src", sizes[part], pools[part], seed * 10 + k, cell, distractors)
        imgtrain.convert(root / f"{part}-src" / "list.jsonl", root / part, workers=1, progress=False)
        for name in CLASSES:
            yes_no = [{"path": r["path"], "label": "yes" if name in r["label"] else "no"} for r in rows]
            manifest = write_manifest(root / f"{part}-src" / f"{name}.jsonl", yes_no)
            imgtrain.convert(manifest, root / f"{part}-{name}", workers=1, progress=False)
        parts[part] = rows
    return parts


def _train(
    root: Path, train: Path, valid: Path, out: Path, epochs: int, seed: int, learning_rate: float
) -> tuple[float, float]:
    """Train a fresh resnet18 from scratch for exactly `epochs` epochs; (its fastest epoch's seconds, wall seconds).

    The ratios use the fastest epoch (training steps only), the one other work on this shared machine disturbed least;
    every training runs the same number of epochs."""
    import imgtrain

    untrained = root / "untrained"
    if not untrained.exists():
        imgtrain.create_model_directory(untrained, imgtrain.Architecture("resnet", "resnet18"), pretrained=False)
    config = imgtrain.TrainConfig(
        epochs=epochs,
        batch_size=16,
        learning_rate=learning_rate,
        seed=seed,
        patience=epochs,
        overwrite=True,
        progress=False,
    )
    start = time.perf_counter()
    history = imgtrain.train(untrained, train, valid, out, config, imgtrain.TransformSpec(**SPEC_ARGS)).history
    return min(row["seconds"] for row in history), time.perf_counter() - start


def probabilities(model: Path, images: Path, order: list[str], classes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """`model`'s scores of `images` as (probabilities, given) arrays of (image, class), rows in the order of the
    manifest paths `order`; `given` is whether the class is among 'Scored Labels' (the model's own thresholds)."""
    import imgtrain

    rows = {Path(r["source"]).name: r for r in imgtrain.score(model, images, progress=False)}
    probs = np.array([[rows[path][f"Scored Probabilities_{c}"] for c in classes] for path in order])
    given = np.array([[c in rows[path]["Scored Labels"] for c in classes] for path in order])
    return probs, given


def metrics(truth: np.ndarray, probs: np.ndarray, given: np.ndarray) -> dict[str, float]:
    """The headline figures of evaluate's multi-label metrics."""
    from imgtrain.inference.multilabel_metrics import compute_multilabel_metrics

    m = compute_multilabel_metrics(truth, probs, given, list(CLASSES))
    return {
        "micro-F1": m["micro_avg"]["f1"],
        "macro-F1": m["macro_avg"]["f1"],
        "mAP": m["mean_average_precision"],
        "exact match": m["subset_accuracy"],
        "Hamming loss": m["hamming_loss"],
    }


def compare(
    root: Path,
    sizes: dict[str, int],
    seed: int = 1,
    learning_rates: tuple[float, ...] = RATES,
    cell: int = 24,
    distractors: float = DISTRACTOR_RATE,
) -> dict[str, dict[str, Any]]:
    """Both ways on fresh composites: each method's test metrics and 'train time ratio' (to multi-label's).

    Each learning rate of `learning_rates` trains every model; the multi-label model keeps the rate of the best
    validation mAP, each class's model the rate of its class's best validation average precision."""
    import imgtrain
    from imgtrain.inference.multilabel_metrics import average_precision
    from imgtrain.thresholds import choose_thresholds

    epochs, classes = sizes["epochs"], list(CLASSES)
    parts = make_data(root, sizes, seed, cell, distractors)
    paths = {part: [r["path"] for r in rows] for part, rows in parts.items()}
    truth = {part: np.array([[c in r["label"] for c in classes] for r in rows]) for part, rows in parts.items()}
    for task in ("", "-d0"):  # a first training pays for imports and first-call set-up: not timed
        _train(root, root / f"valid{task}", root / f"valid{task}", root / "warm-up", 1, seed, learning_rates[0])

    multi: dict[float, dict[str, Any]] = {}  # learning rate -> seconds, validation mAP, test scores
    for lr in learning_rates:
        out = root / f"multilabel-{lr}"
        epoch, wall = _train(root, root / "train", root / "valid", out, epochs, seed, lr)
        valid, _ = probabilities(out, root / "valid", paths["valid"], classes)
        test, given = probabilities(out, root / "test", paths["test"], classes)
        multi[lr] = {
            "epoch": epoch,
            "wall": wall,
            "valid mAP": metrics(truth["valid"], valid, valid >= 0.5)["mAP"],
            "test": test,
            "given": given,
            "thresholds": imgtrain.open_model_directory(out).thresholds,
        }
    best = multi[max(learning_rates, key=lambda lr: multi[lr]["valid mAP"])]

    per_class: dict[str, dict[str, Any]] = {}  # class -> the chosen learning rate's seconds and scores
    for k, name in enumerate(classes):
        tried = {}
        for lr in learning_rates:
            out = root / f"model-{name}-{lr}"
            epoch, wall = _train(root, root / f"train-{name}", root / f"valid-{name}", out, epochs, seed, lr)
            valid = probabilities(out, root / f"valid-{name}", paths["valid"], ["yes"])[0][:, 0]
            test = probabilities(out, root / f"test-{name}", paths["test"], ["yes"])[0][:, 0]
            tried[lr] = {
                "epoch": epoch,
                "wall": wall,
                "valid AP": average_precision(valid, truth["valid"][:, k]) or 0.0,
                "valid": valid,
                "test": test,
                "lr": lr,
            }
        per_class[name] = max(tried.values(), key=lambda t: t["valid AP"])
        per_class[name]["valid AP by rate"] = {lr: t["valid AP"] for lr, t in tried.items()}
    test = np.stack([per_class[c]["test"] for c in classes], axis=1)
    thresholds = np.array(choose_thresholds(np.stack([per_class[c]["valid"] for c in classes], 1), truth["valid"]))

    ratio = sum(per_class[c]["epoch"] for c in classes) / best["epoch"]
    results: dict[str, dict[str, Any]] = {
        METHODS[0]: {**metrics(truth["test"], best["test"], best["given"]), "train time ratio": 1.0},
        METHODS[1]: {**metrics(truth["test"], best["test"], best["test"] >= 0.5), "train time ratio": 1.0},
        METHODS[2]: {**metrics(truth["test"], test, test >= 0.5), "train time ratio": ratio},
        METHODS[3]: {**metrics(truth["test"], test, test >= thresholds), "train time ratio": ratio},
    }
    results["_info"] = {
        "positive rate": round(float(truth["test"].mean()), 3),
        "multi-label": {lr: _seconds(m) | {"valid mAP": round(m["valid mAP"], 3)} for lr, m in multi.items()},
        "one model per class": {
            c: _seconds(t) | {"lr": t["lr"], "valid AP": {lr: round(v, 3) for lr, v in t["valid AP by rate"].items()}}
            for c, t in per_class.items()
        },
        "test AP": {
            way: {
                c: round(average_precision(probs[:, k], truth["test"][:, k]) or 0.0, 3) for k, c in enumerate(classes)
            }
            for way, probs in (("multi-label", best["test"]), ("one model per class", test))
        },
        "thresholds": {
            "multi-label": [round(t, 3) for t in best["thresholds"]],
            "one model per class": [round(t, 3) for t in thresholds],
        },
    }
    return results


def _seconds(run: dict[str, Any]) -> dict[str, float]:
    """A training's fastest epoch and whole run, in seconds, for the printed details."""
    return {"fastest epoch s": round(run["epoch"], 2), "wall s": round(run["wall"])}


def table(runs: list[dict[str, dict[str, Any]]]) -> str:
    """A Markdown table of the methods' mean figures over the runs (min-max after it when there are several)."""
    columns = ("micro-F1", "macro-F1", "mAP", "exact match", "Hamming loss", "train time ratio")
    lines = ["| method | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    for method in METHODS:
        cells = []
        for column in columns:
            values = [run[method][column] for run in runs]
            mean = statistics.mean(values)
            if column == "train time ratio":
                cells.append(f"{mean:.2f}×")
            else:
                cells.append(f"{mean:.3f}" + (f" ({min(values):.3f}–{max(values):.3f})" if len(values) > 1 else ""))
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes (a minute or two)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1], help="one run per seed (data and training)")
    parser.add_argument("--epochs", type=int, help="override the size's epochs")
    parser.add_argument("--learning-rates", type=float, nargs="+", help="each model keeps the best on validation")
    args = parser.parse_args()
    sizes = dict(QUICK if args.quick else FULL)
    rates = tuple(args.learning_rates or ((0.01, 0.1) if args.quick else RATES))
    if args.epochs:
        sizes["epochs"] = args.epochs
    start = time.perf_counter()
    runs = []
    for seed in args.seeds:
        with tempfile.TemporaryDirectory() as tmp:
            runs.append(compare(Path(tmp), sizes, seed, rates))
        print(f"seed {seed}: " + json.dumps(runs[-1]["_info"]))
    print(
        f"\nresnet18 from scratch, {sizes['train']} training / {sizes['valid']} validation / {sizes['test']} test "
        f"composites, {sizes['epochs']} epochs, batch 16, learning rates {list(rates)}, seeds {args.seeds}:\n"
    )
    print(table(runs))
    print(f"\n{time.perf_counter() - start:.0f} s in all")


if __name__ == "__main__":
    main()
