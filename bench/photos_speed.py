"""Camera photos: imgtrain's data path against the plain PyTorch loop and the model-only ceiling, in one run.

    .venv/bin/python bench/photos_speed.py                      # 96 + 24 photos of 4032x3024, 2 epochs
    .venv/bin/python bench/photos_speed.py --images 200 --width 4032 --height 3024 --epochs 3

Generates JPEGs (quality 90, textured, 3-5 MB each: bench/common.make_photos), then, each in a fresh process
(its own peak RSS), measures images/s of:
  plain     the loop a user writes: ImageFolder, Resize(256), CenterCrop(224), ToTensor, Normalize, DataLoader
            defaults (no workers), resnet18, SGD
  plain+w   the same with num_workers = cores (the tuned plain loop)
  imgtrain  `imgtrain train` / `imgtrain score` with default options: training reads the decoded-image cache
            that convert filled (as a user's run does); scoring once with an empty cache of its own (cold), then
            with convert's cache ("score warm")
  full decode  imgtrain training with JPEGs decoded in full and no cache: the accuracy to compare
  ceiling   the same model and precision on tensors already in memory (no data at all)
for training (epoch 1 and the later epochs apart), scoring (cold cache, then warm), and convert (1 and 2
processes). Ratios are taken inside this run, so machine drift between runs does not enter them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import make_photos, peak_rss_mb, run_child  # noqa: E402

CORES = len(os.sched_getaffinity(0))


def _plain_data(folder: Path, workers: int, shuffle: bool):
    import torch
    from torchvision import datasets, transforms

    steps = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(),
                                transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
    data = datasets.ImageFolder(folder, steps)
    return data, torch.utils.data.DataLoader(data, batch_size=16, shuffle=shuffle, num_workers=workers)


def plain_train(data: Path, args, workers: int) -> dict:
    """The tutorial loop; seconds of each epoch."""
    import torch
    import torchvision

    torch.manual_seed(1)
    dataset, loader = _plain_data(data / "photos-train", workers, shuffle=True)
    net = torchvision.models.resnet18(num_classes=len(dataset.classes))
    optimizer = torch.optim.SGD(net.parameters(), lr=0.001, momentum=0.9)
    rates = []
    for _ in range(args.epochs):
        start = time.perf_counter()
        for images, labels in loader:
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(net(images), labels).backward()
            optimizer.step()
        rates.append(len(dataset) / (time.perf_counter() - start))
    return {"epoch1": rates[0], "later": _mean(rates[1:]), "rss_mb": peak_rss_mb()}


def plain_score(data: Path, args, workers: int) -> dict:
    import torch
    import torchvision

    dataset, loader = _plain_data(data / "photos-train", workers, shuffle=False)
    net = torchvision.models.resnet18(num_classes=len(dataset.classes)).eval()
    start = time.perf_counter()
    with torch.no_grad():
        for images, _ in loader:
            torch.softmax(net(images), 1)
    return {"score": len(dataset) / (time.perf_counter() - start), "rss_mb": peak_rss_mb()}


def imgtrain_train(data: Path, args) -> dict:
    import imgtrain

    work = Path(tempfile.mkdtemp(prefix="imgtrain-bench-"))
    os.environ["IMGTRAIN_CACHE_DIR"] = str(data / "cache")  # as a user runs it: what convert kept
    imgtrain.create_model_directory(work / "untrained", imgtrain.Architecture("resnet", "resnet18"), pretrained=False)
    config = imgtrain.TrainConfig(epochs=args.epochs, patience=args.epochs, progress=False, cache=not args.no_cache)
    history = imgtrain.train(work / "untrained", data / "train", data / "valid", work / "model", config)
    precision = imgtrain.open_model_directory(work / "model").meta["training"]["precision"]
    rates = [row["images_per_second"] for row in history]
    return {"epoch1": rates[0], "later": _mean(rates[1:]), "rss_mb": peak_rss_mb(), "train_precision": precision,
            "accuracy": max(row["val_top1"] for row in history)}


def imgtrain_score(data: Path, args) -> dict:
    """Scoring the training photos twice: with an empty cache of its own (cold), then as a user's run after convert
    does (the cache convert filled). The precision `auto` is chosen before the clock starts (a one-time
    1-2 s measurement that 96 photos would not amortise)."""
    import torch

    import imgtrain

    work = Path(tempfile.mkdtemp(prefix="imgtrain-bench-"))
    imgtrain.create_model_directory(work / "untrained", imgtrain.Architecture("resnet", "resnet18"), pretrained=False)
    imgtrain.train(work / "untrained", data / "valid", data / "valid", work / "model",
                   imgtrain.TrainConfig(epochs=1, progress=False, cache=False))
    model = imgtrain.load_model(work / "model")
    model.probabilities(torch.zeros(32, 3, 224, 224))
    rates = []
    for cache in (work / "cache", data / "cache"):
        os.environ["IMGTRAIN_CACHE_DIR"] = str(cache)
        start = time.perf_counter()
        rows = imgtrain.score(model, data / "train", progress=False, cache=not args.no_cache)
        rates.append(len(rows) / (time.perf_counter() - start))
    return {"score": rates[0], "score_warm": rates[1], "rss_mb": peak_rss_mb(), "precision": model.precision}


def full_decoding(data: Path, args) -> dict:
    """imgtrain's training with JPEGs decoded in full (no reduced scale, no cache): the accuracy to compare."""
    from imgtrain.data import decoding, imaging

    def open_full(data: bytes, short_side: int, max_pixels: int = imaging.MAX_IMAGE_PIXELS):
        return imaging.open_reduced(data, 2**40, max_pixels)  # a short side no image has: never reduced

    decoding.open_reduced = open_full
    args.no_cache = True
    result = imgtrain_train(data, args)
    return {"epoch1": result["epoch1"], "later": result["later"], "accuracy": result["accuracy"],
            "rss_mb": result["rss_mb"]}


def ceiling(data: Path, args) -> dict:
    """The model alone, on random tensors: imgtrain's training step (fused SGD, in the precision imgtrain's own
    training run picked here) and its scoring network (in the precision scoring picks)."""
    import torch
    import torchvision

    import imgtrain
    from imgtrain.devices import autocast_for
    from imgtrain.inference.scoring import Model

    work = Path(tempfile.mkdtemp(prefix="imgtrain-bench-"))
    imgtrain.create_model_directory(work / "untrained", imgtrain.Architecture("resnet", "resnet18"), pretrained=False)
    imgtrain.train(work / "untrained", data / "valid", data / "valid", work / "model",
                   imgtrain.TrainConfig(epochs=1, progress=False, cache=False))
    precision = args.train_precision  # what imgtrain's training run chose (its `auto` measures, and may differ)
    net = torchvision.models.resnet18(num_classes=4)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.001, momentum=0.9, nesterov=True, fused=True)
    x, y = torch.randn(16, 3, 224, 224), torch.randint(0, 4, (16,))
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < 8 or steps < 3:
        optimizer.zero_grad()
        with autocast_for(torch.device("cpu"), precision):
            loss = torch.nn.functional.cross_entropy(net(x), y)
        loss.backward()
        optimizer.step()
        steps += 1
    train_rate = 16 * steps / (time.perf_counter() - start)
    model = Model(imgtrain.open_model_directory(work / "model"))
    batch = torch.randn(32, 3, 224, 224)
    model.probabilities(batch)  # picks the precision, warms up
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < 5 or steps < 3:
        model.probabilities(batch)
        steps += 1
    return {"later": train_rate, "epoch1": train_rate, "score": 32 * steps / (time.perf_counter() - start),
            "rss_mb": peak_rss_mb(), "precision": f"train {precision}, score {model.precision}"}


def convert(data: Path, args, workers: int) -> dict:
    import imgtrain

    import imgtrain.data.convert  # noqa: F401  (torch and torchvision load before the clock starts: ~2 s)

    out = Path(tempfile.mkdtemp(prefix="imgtrain-bench-")) / "images"
    os.environ["IMGTRAIN_CACHE_DIR"] = str(out.parent / "cache")
    start = time.perf_counter()
    directory = imgtrain.convert(data / "photos-train", out, workers=workers, progress=False)
    return {"convert": len(directory) / (time.perf_counter() - start), "rss_mb": peak_rss_mb()}


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


CHILDREN = {
    "plain": lambda d, a: {**plain_train(d, a, 0), **plain_score(d, a, 0)},
    "plain+w": lambda d, a: {**plain_train(d, a, CORES), **plain_score(d, a, CORES)},
    "imgtrain": lambda d, a: {**imgtrain_train(d, a), **imgtrain_score(d, a)},
    "full decode": full_decoding,
    "ceiling": ceiling,
    "convert x1": lambda d, a: convert(d, a, 1),
    "convert x2": lambda d, a: convert(d, a, 2),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=120, help="photos in all; 80%% train, 20%% validation")
    parser.add_argument("--width", type=int, default=4032)
    parser.add_argument("--height", type=int, default=3024)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--no-cache", action="store_true", help="imgtrain without the decoded-image cache")
    parser.add_argument("--child", choices=list(CHILDREN))
    parser.add_argument("--train-precision", default="fp32", help=argparse.SUPPRESS)
    parser.add_argument("--data")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(CHILDREN[args.child](Path(args.data), args)))
        return
    import imgtrain

    with tempfile.TemporaryDirectory(prefix="imgtrain-bench-") as tmp:
        data = Path(tmp)
        os.environ["IMGTRAIN_CACHE_DIR"] = str(data / "cache")
        n_train = int(args.images * 0.8)
        make_photos(data / "photos-train", n_train, args.width, args.height)
        make_photos(data / "photos-valid", args.images - n_train, args.width, args.height, seed=1)
        imgtrain.convert(data / "photos-train", data / "train", progress=False)
        imgtrain.convert(data / "photos-valid", data / "valid", progress=False)
        mb = sum(f.stat().st_size for f in (data / "photos-train").rglob("*.jpg")) / n_train / 2**20
        options = ["--data", str(data), "--epochs", str(args.epochs)] + (["--no-cache"] if args.no_cache else [])
        results: dict[str, dict] = {}
        for name in CHILDREN:  # the ceiling after imgtrain: it trains in the precision imgtrain chose
            chosen = results.get("imgtrain", {}).get("train_precision", "fp32")
            results[name] = run_child(__file__, ["--child", name, "--train-precision", chosen, *options])
        for name in ("convert x1", "convert x2"):  # short runs: a second round each, the better one kept
            again = run_child(__file__, ["--child", name, *options])
            results[name] = max(results[name], again, key=lambda r: r["convert"])
    print(f"{n_train} training photos of {args.width}x{args.height} (JPEG q90, {mb:.1f} MB each), "
          f"{args.images - n_train} validation; resnet18 at 224 px, batch 16; {CORES} cores; "
          f"precision: imgtrain train {results['imgtrain']['train_precision']}, score {results['imgtrain']['precision']}; "
          f"ceiling {results['ceiling']['precision']}")
    _table(results)


def _table(results: dict[str, dict]) -> None:
    print(f"{'':12}{'train ep1':>11}{'train ep2+':>11}{'score':>9}{'score warm':>11}{'convert':>9}{'peak RSS':>10}")
    for name, r in results.items():
        cells = [r.get(k) for k in ("epoch1", "later", "score", "score_warm", "convert")]
        print(f"{name:12}" + "".join(f"{c:>{w}.1f}" if c else f"{'':>{w}}" for c, w in zip(cells, (11, 11, 9, 11, 9)))
              + f"{r['rss_mb']:>8.0f}MB")
    img, plain, tuned, top = results["imgtrain"], results["plain"], results["plain+w"], results["ceiling"]
    print("images/s. imgtrain against the others (targets in brackets):")
    print(f"  train epochs 2+: {img['later'] / top['later']:.0%} of the ceiling (>= 85%), "
          f"{img['later'] / plain['later']:.2f}x plain (>= 3x), {img['later'] / tuned['later']:.2f}x plain+w; "
          f"epoch 1: {img['epoch1'] / plain['epoch1']:.2f}x plain; accuracy {img['accuracy']:.3f}")
    print(f"  score after convert (its cache): {img['score_warm'] / plain['score']:.2f}x plain (>= 5x), "
          f"{img['score_warm'] / tuned['score']:.2f}x plain+w (>= 2x); with an empty cache "
          f"{img['score'] / plain['score']:.2f}x plain, {img['score'] / tuned['score']:.2f}x plain+w")
    print(f"  validation accuracy, same data and seed: reduced decoding + cache {img['accuracy']:.3f}, full "
          f"decoding {results['full decode']['accuracy']:.3f}")
    print(f"  convert: 2 processes {results['convert x2']['convert'] / results['convert x1']['convert']:.2f}x one "
          f"(>= 1.7x)")


if __name__ == "__main__":
    main()
