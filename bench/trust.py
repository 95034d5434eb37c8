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
from typing import Any

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
    calibrated = imgtrain.load_model(root / "model", precision="fp32")  # both in fp32: only T differs
    raw = Model(replace(calibrated.trained, temperature=1.0), precision="fp32")
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
            model = imgtrain.load_model(out, precision="fp32")
            rows = [r for r in imgtrain.score(model, root / "test", progress=False) if r["label"] == "minor"]
            recalls[(weights, sampler)].append(sum(r["Scored Labels"] == "minor" for r in rows) / len(rows))
    return recalls


# --- audit

AUDIT_PALETTE = {"sea": (40, 90, 170), "forest": (40, 140, 60), "desert": (200, 170, 90)}


def scene(rng: np.random.Generator, label: str, size: int = 96) -> Image.Image:
    """A generated photo stand-in: a background of the class's colour (varied) with random shapes and noise."""
    from PIL import ImageDraw

    base = np.clip(np.array(AUDIT_PALETTE[label]) + rng.normal(0, 25, 3), 0, 255)
    img = Image.new("RGB", (size, size), tuple(int(v) for v in base))
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(3, 7))):
        x, y = (int(v) for v in rng.integers(0, size - 10, 2))
        w, h = (int(v) for v in rng.integers(10, size // 2, 2))
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape([x, y, x + w, y + h], fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    pixels = np.asarray(img).astype(float) + rng.normal(0, 8, (size, size, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def near_copy(img: Image.Image, rng: np.random.Generator, kind: str) -> Image.Image:
    """A resized, re-encoded (JPEG quality 60) or slightly cropped (up to 5% off each side) copy."""
    import io

    w, h = img.size
    if kind == "resized":
        return img.resize((int(w * rng.uniform(0.5, 0.8)), int(h * rng.uniform(0.5, 0.8))), Image.BILINEAR)
    if kind == "re-encoded":
        buffer = io.BytesIO()
        img.save(buffer, "JPEG", quality=60)
        return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    left, top, right, bottom = rng.uniform(0, 0.05, 4)
    return img.crop((round(left * w), round(top * h), round(w - right * w), round(h - bottom * h)))


def planted_dataset(root: Path, per_class: int = 100, seed: int = 0) -> dict[str, Any]:
    """train/ and valid/ image directories with planted faults; returns what was planted (source file names).

    train: `per_class` scenes per class, 10% of them with a wrong label (the flips), 10 exact copies under a
    second name, 5 exact copies under another class (conflicting labels). valid: 30 fresh scenes, 30 near
    copies of training scenes (10 resized, 10 re-encoded, 10 cropped) and 5 exact copies (leakage).
    """
    import imgtrain

    rng = np.random.default_rng(seed)
    classes = list(AUDIT_PALETTE)
    originals: list[tuple[str, Image.Image]] = []
    planted: dict[str, Any] = {"flipped": [], "exact": [], "conflicting": [], "near": [], "leaked": []}
    for label in classes:
        for i in range(per_class):
            originals.append((label, scene(rng, label)))
    order = rng.permutation(len(originals))
    flips, copies, conflicts, nears, leaks = (order[:len(order) // 10], order[-10:], order[-15:-10],
                                              order[-45:-15], order[-50:-45])

    def save(part: str, label: str, name: str, img: Image.Image) -> str:
        (root / part / label).mkdir(parents=True, exist_ok=True)
        img.save(root / part / label / name)
        return name

    for k, (label, img) in enumerate(originals):
        shown = classes[(classes.index(label) + 1) % len(classes)] if k in flips else label
        name = save("train-src", shown, f"{k}.png", img)
        if k in flips:
            planted["flipped"].append(name)
        if k in copies:
            planted["exact"].append((name, save("train-src", shown, f"{k}-copy.png", img)))
        if k in conflicts:
            other = classes[(classes.index(shown) + 2) % len(classes)]
            planted["conflicting"].append((name, save("train-src", other, f"{k}-relabelled.png", img)))
    for n, k in enumerate(nears):
        label, img = originals[k]
        kind = ("resized", "re-encoded", "cropped")[n % 3]
        planted["near"].append((f"{k}.png", save("valid-src", label, f"near-{k}.png", near_copy(img, rng, kind))))
    for k in leaks:
        planted["leaked"].append((f"{k}.png", save("valid-src", originals[k][0], f"leak-{k}.png", originals[k][1])))
    for i in range(30):
        save("valid-src", classes[i % 3], f"fresh-{i}.png", scene(rng, classes[i % 3]))
    for part in ("train", "valid"):
        imgtrain.convert(root / f"{part}-src", root / part, workers=1, progress=False)
    return planted


def audit_figures(root: Path, per_class: int = 100, workers: int | None = 1) -> dict[str, float]:
    """Audit the planted dataset: the share of each planted fault the audit found."""
    import imgtrain

    planted = planted_dataset(root, per_class)
    report = imgtrain.audit(root / "train", against=[root / "valid"], out=root / "audit", workers=workers,
                            progress=False)
    name = lambda ref: Path(ref["source"]).name  # noqa: E731 - the file name before convert

    def pairs(groups: list[dict]) -> set[frozenset]:
        found = set()
        for group in groups:
            names = [name(r) for r in group["images"]]
            found |= {frozenset((a, b)) for a in names for b in names if a != b}
        return found

    exact, leakage, conflicts = (pairs(report[k]) for k in ("exact_duplicates", "leakage", "conflicting_labels"))
    issues = report["label_issues"]["issues"]
    top = {name(i) for i in issues[:report["directories"][0]["images"] // 10]}  # the top-10% list
    return {
        "exact": sum(frozenset(p) in exact for p in planted["exact"] + planted["conflicting"] + planted["leaked"])
                 / len(planted["exact"] + planted["conflicting"] + planted["leaked"]),
        "near_across_splits": sum(frozenset(p) in leakage for p in planted["near"]) / len(planted["near"]),
        "conflicting": sum(frozenset(p) in conflicts for p in planted["conflicting"]) / len(planted["conflicting"]),
        "flipped_in_top_10_percent": len(top & set(planted["flipped"])) / len(planted["flipped"]),
        "false_near_pairs": len(pairs(report["near_duplicates"]) - {frozenset(p) for p in planted["near"]}),
        "report": report,
    }


# --- explanations

CORNER_CLASSES = ("square", "disc", "triangle", "bar")


def corner_image(rng: np.random.Generator, label: str, size: int = 128) -> Image.Image:
    """Noise with grey distractor blobs anywhere, and the class's own object (a red square, a blue disc, a green
    triangle or a yellow bar) in the top-left quarter: only that corner decides the class, and every class has
    something there to see (with two classes a network can learn one as "not the other", whose evidence is then
    everywhere)."""
    from PIL import ImageDraw

    img = Image.fromarray(rng.integers(0, 120, (size, size, 3), dtype=np.uint8))
    draw = ImageDraw.Draw(img)
    half, side = size // 2, size // 4
    for _ in range(4):
        x, y = (int(v) for v in rng.integers(0, size - side // 2, 2))
        grey = int(rng.integers(130, 230))
        draw.ellipse([x, y, x + side // 2, y + side // 3], fill=(grey, grey, grey))
    x, y = (int(v) for v in rng.integers(2, half - side - 2, 2))
    box = [x, y, x + side, y + side]
    if label == "square":
        draw.rectangle(box, fill=(230, 40, 40))
    elif label == "disc":
        draw.ellipse(box, fill=(40, 60, 230))
    elif label == "triangle":
        draw.polygon([(x, y + side), (x + side, y + side), (x + side // 2, y)], fill=(40, 200, 60))
    else:
        draw.rectangle([x, y + side // 3, x + side, y + 2 * side // 3], fill=(230, 220, 40))
    return img


def explain_figures(root: Path, per_class: int = 80, epochs: int = 6, seed: int = 1, size: int = 128
                    ) -> dict[str, float]:
    """Train on the corner task; the mean share of Grad-CAM mass in the top-left quarter over the explained images."""
    import imgtrain
    from imgtrain.inference.explain import explain

    rng = np.random.default_rng(0)
    for part, count in (("train", per_class), ("valid", per_class // 4)):
        for label in CORNER_CLASSES:
            (root / f"{part}-src" / label).mkdir(parents=True, exist_ok=True)
            for i in range(count):
                corner_image(rng, label, size).save(root / f"{part}-src" / label / f"{i}.png")
        imgtrain.convert(root / f"{part}-src", root / part, workers=1, progress=False)
    imgtrain.create_model_directory(root / "untrained", imgtrain.Architecture("resnet", "resnet18"), pretrained=False)
    spec = imgtrain.TransformSpec(resize=False, center_crop=False, random_horizontal_flip=False)
    history = imgtrain.train(root / "untrained", root / "train", root / "valid", root / "model",
                             imgtrain.TrainConfig(epochs=epochs, learning_rate=0.01, seed=seed, progress=False), spec)
    document = explain(root / "model", root / "valid", root / "explained", errors=4, correct=16, progress=False)
    from safetensors.numpy import load_file

    maps = load_file(root / "explained" / "heatmaps.safetensors")
    shares = [float(m[:m.shape[0] // 2, :m.shape[1] // 2].sum() / max(m.sum(), 1e-9)) for m in maps.values()]
    return {"accuracy": max(r["val_top1"] for r in history), "corner_share": float(np.mean(shares)),
            "images": len(document["images"])}


# --- the command

def catalog_layers() -> dict[str, str]:
    """The layer explain picks in each catalog network at 224 px (shapes only, on the meta device)."""
    import torch

    from imgtrain.inference.explain import head_modules, target_layer_name
    from imgtrain.models.catalog import _meta_network, catalog_names, head_keys

    return {name: target_layer_name(_meta_network(name, 7), torch.empty(1, 3, 224, 224, device="meta"),
                                    head_modules(head_keys("torchvision", name))) for name in catalog_names()}


def scale_figures(root: Path, images: int = 10_000) -> dict[str, float]:
    """Audit `images` generated 96 px scenes (plus the planted validation part) in a fresh process: seconds and
    peak memory of the audit alone (the main process and its image-reading workers)."""
    import json
    import subprocess
    import sys

    planted_dataset(root, per_class=images // 3)
    child = subprocess.run([sys.executable, __file__, "--audit-child", str(root)], capture_output=True, text=True,
                           check=True)
    return json.loads(child.stdout.strip().splitlines()[-1])


def _audit_child(root: Path) -> None:
    import json
    import resource

    import imgtrain

    started = time.perf_counter()
    report = imgtrain.audit(root / "train", against=[root / "valid"], out=root / "audit", progress=False)
    seconds = time.perf_counter() - started
    print(json.dumps({"images": report["summary"]["images"], "seconds": seconds,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "worker_peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
                      "summary": report["summary"]}))


def main() -> None:
    sections = ("calibration", "imbalance", "audit", "explain", "catalog", "scale")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=sections, default=sections)
    parser.add_argument("--seeds", type=int, default=5, help="seeds of the imbalance section")
    parser.add_argument("--images", type=int, default=10_000, help="images of the scale section")
    parser.add_argument("--audit-child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.audit_child:
        return _audit_child(args.audit_child)
    for section in args.only:
        started = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            _section(section, Path(tmp), args)
        print(f"  ({time.perf_counter() - started:.0f} s)", flush=True)


def _section(section: str, tmp: Path, args: argparse.Namespace) -> None:
    if section == "calibration":
        for seed in range(1, 4):
            (tmp / str(seed)).mkdir()
            f = calibration_figures(tmp / str(seed), seed)
            print(f"calibration seed {seed}: temperature {f['temperature']:.3f}, held-out ECE "
                  f"{f['ece_raw']:.4f} raw -> {f['ece_calibrated']:.4f} calibrated")
    elif section == "imbalance":
        for (weights, sampler), values in imbalance_figures(tmp, tuple(range(1, args.seeds + 1))).items():
            print(f"imbalance --class-weights {weights:8} --sampler {sampler:8}: minority recall "
                  f"{statistics.mean(values):.3f} (seeds: {', '.join(f'{v:.2f}' for v in values)})")
    elif section == "audit":
        f = audit_figures(tmp)
        f.pop("report")
        print("audit, share of planted faults found: " + ", ".join(f"{k} {v:.2f}" for k, v in f.items()))
    elif section == "explain":
        for seed in (1, 2, 3):
            (tmp / str(seed)).mkdir()
            f = explain_figures(tmp / str(seed), per_class=60, seed=seed)
            print(f"explain seed {seed}: validation accuracy {f['accuracy']:.3f}, Grad-CAM mass in the deciding "
                  f"quarter {f['corner_share']:.3f} over {f['images']} images (uniform: 0.25)")
    elif section == "catalog":
        layers = catalog_layers()
        print(f"explain finds a layer in {len(layers)} catalog networks: " + ", ".join(
            f"{name} {layer}" for name, layer in layers.items()))
    else:
        f = scale_figures(tmp, args.images)
        print(f"audit of {f['images']} images: {f['seconds']:.1f} s, peak RSS {f['peak_rss_mb']:.0f} MB main, "
              f"{f['worker_peak_rss_mb']:.0f} MB largest worker; found {json_summary(f['summary'])}")


def json_summary(summary: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in summary.items() if k != "images")


if __name__ == "__main__":
    main()
